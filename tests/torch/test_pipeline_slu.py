"""SLU gates inside pipeline stages: the gates' recurrent state and the executed FLOPs ratio
travel with the activation (forward) and their gradients with the activation gradient
(backward); stashing covers the gates' parameters."""
import copy

import pytest
import torch
import torch.nn.functional as F

from e2train.torch.distributed.config import DistConfig
from e2train.torch.distributed.pipeline import train_pipeline
from e2train.torch.distributed.stages import layers_of, stage_module
from e2train.torch.models import build_model
from e2train.torch.slu import SLU, set_gate_cell, soft_exec_ratio
from e2train.torch.trainer import ConfigError, TrainConfig, train

SPLIT2 = [0, 2, 5]        # resnet8: stem, block0 | block1, block2, head
SLU_POLICY = SLU(alpha=0.2)


def _cfg(**kw):
    base = dict(dataset="digits", model="resnet8", epochs=1, batch_size=32, max_batches=6, threads=1,
                augment=False, progress=False, device="cpu", slu=True)
    base.update(kw)
    return TrainConfig(**base)


def _last_loss(out, y):
    logits, r = out
    return F.cross_entropy(logits, y) + SLU_POLICY.penalty(r.reshape(()))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_two_stages_in_one_process_give_the_one_process_outputs_gates_and_gradients(cell):
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10, gated=True).train()
    if cell != "lstm":
        set_gate_cell(model, cell)
    # one copy per stage, as each process builds its own: the shared gate cell is two weights
    copies = [copy.deepcopy(model) for _ in range(2)]
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    torch.manual_seed(1)
    logits = model(x)
    loss = F.cross_entropy(logits, y) + SLU_POLICY.penalty(soft_exec_ratio(model, (8, 8)))
    loss.backward()
    masks = [m.clone() for m in model.last_masks]

    stages = [stage_module(layers_of(c, (8, 8)), SPLIT2, s) for s, c in enumerate(copies)]
    torch.manual_seed(1)
    carry = stages[0](x)
    n_state = 2 if cell == "lstm" else 1
    assert len(carry) == 2 + n_state + len(list(copies[0].gates.rnn.parameters())) + 2  # x, r, state, cell

    sent = tuple(t.detach().requires_grad_(True) for t in carry)
    out = stages[1](sent)
    assert torch.allclose(out[0], logits, atol=1e-6)
    assert torch.allclose(out[1], torch.tensor([model.exec_ratio((8, 8))]), atol=1e-6)
    assert masks[0].float().mean() < 1 or masks[1].float().mean() < 1 or masks[2].float().mean() < 1
    _last_loss(out, y).backward()
    torch.autograd.backward(carry, tuple(t.grad for t in sent))
    # each parameter of the model is a parameter of exactly one stage, with the one-process gradient
    ref = dict(model.named_parameters())
    seen = []
    for c, st in zip(copies, stages):
        name_of = {id(p): n for n, p in c.named_parameters()}
        for p in st.parameters():
            n = name_of[id(p)]
            seen.append(n)
            want = ref[n].grad if ref[n].grad is not None else torch.zeros_like(p)
            assert p.grad is not None and torch.allclose(p.grad, want, rtol=1e-4, atol=1e-6), n
    assert sorted(seen) == sorted(ref)
    # the cell's gradient from stage 1's gates came back in the carry: without it stage 0's would differ
    assert sent[2 + n_state].grad.abs().sum() > 0


def _wrong_grads(res, replay):
    """(stage, mb) whose applied gradient differs from the one recomputed from the trace; and the
    number of stale ones."""
    torch.manual_seed(0)
    return replay(res, layers_of(build_model("resnet8", 1, 10, gated=True), (8, 8)), _last_loss)


def test_stashing_covers_the_gates_and_their_state(replay_pipeline_grads):
    res = train_pipeline(_cfg(), DistConfig(pipeline=2, split=SPLIT2, trace=True, timeout_s=60))
    wrong, stale = _wrong_grads(res, replay_pipeline_grads)
    assert stale >= 4 and wrong == []
    names0 = set(res["traces"][0][0]["applied"])
    assert any("cell.rnn" in n for n in names0) and any("embed" in n for n in names0)
    assert not any("cell" in n for n in res["traces"][1][0]["applied"])    # the cell lives on stage 0
    off = train_pipeline(_cfg(), DistConfig(pipeline=2, split=SPLIT2, stash=False, trace=True, timeout_s=60))
    wrong_off, _ = _wrong_grads(off, replay_pipeline_grads)
    assert len(wrong_off) >= 4 and all(s == 0 for s, _ in wrong_off)


def test_slu_pipeline_skips_blocks_and_trains_like_one_process():
    kw = dict(epochs=3, max_batches=None, slu_alpha=0.5, lr=0.05)
    one = train(_cfg(**kw))
    pipe = train_pipeline(_cfg(**kw), DistConfig(pipeline=2, split=SPLIT2, timeout_s=120))
    skipped, skipped_one = 1 - pipe["records"][-1]["exec_ratio"], 1 - one.records[-1]["exec_ratio"]
    assert 0.2 < skipped < 1                       # measured 0.44 (one process 0.45)
    assert abs(skipped - skipped_one) < 0.1
    assert abs(pipe["final_test_acc"] - one.final_test_acc) <= 2.0, (pipe["final_test_acc"], one.final_test_acc)


@pytest.mark.parametrize("dist_kw", [dict(pipe_schedule="gpipe", split=SPLIT2), dict(split="balanced"),
                                     dict(split=SPLIT2, vertical_sync=True)])
def test_slu_pipeline_refuses_what_it_does_not_run(dist_kw):
    with pytest.raises(ConfigError, match="slu"):
        train_pipeline(_cfg(), DistConfig(pipeline=2, timeout_s=30, **dist_kw))

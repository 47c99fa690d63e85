"""The papers' training protocols in the trainer: step / cyclic LR schedules, iteration-based
training, a validation split that decisions read, top-5 accuracy, SWA with PSG, and the SLU
rules (FLOPs cost, GRU gate, stochastic depth matched to SLU's dropping ratio)."""
import math

import pytest
import torch

from e2train.torch import data as tdata
from e2train.torch.methods import make
from e2train.torch.psg import PSGConv2d
from e2train.torch.slu import SLU, RNNGates, StochasticDepth
from e2train.torch.trainer import TrainConfig, lr_factor, sync_psg_average, train

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")

RUN = dict(batch_size=16, progress=False, max_batches=4, seed=3)


def test_step_schedule_divides_by_ten_at_the_given_epochs_or_iterations():
    """E2-Train (paper 004, section 4.1): lr 0.1 "decayed by 10 at the 32k and 48k
    iterations"; WUS (paper 002, section 4.1): divided by 10 after 30 epochs."""
    it = TrainConfig(schedule="step", lr_steps="32000,48000", lr_step_unit="iteration")
    assert [lr_factor(it, 0, 0, s) for s in (0, 31999, 32000, 47999, 48000, 63999)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    ep = TrainConfig(schedule="step", lr_steps="30")
    assert lr_factor(ep, 0, 29.9, 0) == 1.0 and lr_factor(ep, 0, 30.0, 0) == pytest.approx(0.1)


def test_cyclic_schedule_restarts_every_cycle():
    cfg = TrainConfig(schedule="cyclic", lr_cycle=2)
    assert lr_factor(cfg, 0, 0.0) == 1.0
    assert lr_factor(cfg, 0, 1.0) == pytest.approx(0.5)
    assert lr_factor(cfg, 0, 2.0) == 1.0 and lr_factor(cfg, 0, 3.0) == pytest.approx(0.5)


def test_iteration_based_training_runs_exactly_that_many_steps(tiny):
    res = train(TrainConfig(iterations=10, schedule="step", lr_steps="6", lr_step_unit="iteration", **RUN),
                data=tiny)
    assert [r["batches_run"] for r in res.records] == [4, 4, 2]       # 4 batches an epoch, 10 steps
    assert res.records[0]["lr"] == pytest.approx(0.1)                 # step 3: before the step at 6
    assert res.records[-1]["lr"] == pytest.approx(0.01)


def test_validation_split_is_held_out_and_read_by_decisions(digits):
    """A validation split from the training set (paper 000's guideline: decisions must not
    read the test set). The split is disjoint from training; WUS reads val_acc."""
    d = tdata.split_validation(digits, 0.2, seed=1)
    n = digits.x_train.shape[0]
    assert d.x_val.shape[0] == round(0.2 * n) and d.x_train.shape[0] + d.x_val.shape[0] == n
    ids = tdata.Data("digits", torch.arange(50.0).view(50, 1, 1, 1), torch.arange(50), digits.x_test, digits.y_test)
    s = tdata.split_validation(ids, 0.2, seed=1)
    assert set(s.y_val.tolist()).isdisjoint(s.y_train.tolist())
    assert sorted(s.y_val.tolist() + s.y_train.tolist()) == list(range(50))
    assert torch.equal(s.x_val.view(-1).long(), s.y_val)      # inputs and labels move together
    with pytest.raises(ValueError, match="non-empty"):
        tdata.split_validation(tdata.Data("digits", digits.x_train[:2], digits.y_train[:2],
                                          digits.x_test, digits.y_test), 0.1)
    sub = tdata.Data("digits", digits.x_train[:160], digits.y_train[:160], digits.x_test[:64], digits.y_test[:64])
    wus = make("wus", std_threshold=100.0, window=2, settle_epochs=1)
    seen = []
    orig = wus.ctl.end_epoch
    wus.ctl.end_epoch = lambda acc, lr=None: (seen.append(acc), orig(acc, lr))[1]
    res = train(TrainConfig(epochs=2, val_split=0.25, **RUN), [wus], data=sub)
    assert all(r["val_acc"] is not None for r in res.records)
    assert seen == [r["val_acc"] for r in res.records]
    assert res.config["val_split"] == 0.25


def test_top5_accuracy_is_reported(tiny):
    res = train(TrainConfig(epochs=1, **RUN), data=tiny)
    r = res.records[0]
    assert r["test_acc"] <= r["test_top5"] <= 100.0 and r["val_acc"] is None


def test_swa_with_psg_averages_the_masters_float_view(tiny):
    """E2-Train (paper 004, section 4.1): SWA is used "when PSG is adopted". The averaged
    model's master weights are its averaged float view on the live layer's grid."""
    res = train(TrainConfig(epochs=3, precision="psg", swa=True, swa_start=0.3, psg_exact=False, **RUN),
                data=tiny)
    assert "swa_test_acc" in res.records[-1]
    for m in res.model.modules():
        if isinstance(m, PSGConv2d):
            f = int(m.frac_bits)
            assert torch.equal(m.w_master, torch.round(m.weight.double() * 2.0 ** f).to(torch.int32))
    # the sync itself, on a constructed average: half-way between two master grids
    a, b = PSGConv2d(2, 2, 3, beta=0.0), PSGConv2d(2, 2, 3, beta=0.0)
    with torch.no_grad():
        a.weight.copy_(b.weight + 0.25 * 2.0 ** -int(b.frac_bits))
    sync_psg_average(a, b)
    assert torch.equal(a.w_master, b.w_master)           # +0.25 of a grid step rounds back


def test_psg_paper_preset_is_signsgd_at_lr_003_with_swa():
    from e2train.torch.cli import PRESETS
    p = PRESETS["psg-paper"]
    assert p["precision"] == "psg" and p["lr"] == p["conv_lr"] == 0.03 and p["swa"] is True
    TrainConfig.from_dict(p)


def test_slu_cost_is_the_flops_of_the_selected_layers_by_default():
    """E2-Train (paper 004, section 3.2, Eq. 1): min L + alpha C(W, G), C the FLOPs of the
    selected layers. The old penalty alpha (r - target)^2 pushed gates back *on* below the
    target; the FLOPs cost always pushes towards fewer FLOPs."""
    class Net(torch.nn.Module):
        def block_flops_fractions(self, hw):
            return [0.25, 0.75]
    net = Net()
    g = torch.tensor([0.2, 0.2], requires_grad=True)
    net.last_gate_values = [g, torch.tensor([1.0, 0.0])]
    ctx = type("C", (), {"model": net, "x": torch.zeros(2, 1, 8, 8)})()
    cost = SLU(alpha=2.0).extra_loss(ctx)
    assert float(cost.detach()) == pytest.approx(2.0 * (0.25 * 0.2 + 0.75 * 0.5))
    cost.backward()
    assert (g.grad > 0).all()                            # lowering a gate lowers the cost
    g.grad = None
    SLU(alpha=2.0, cost="target", target=0.9).extra_loss(ctx).backward()
    assert (g.grad < 0).all()                            # the target pull raises gates below it


def test_gru_gates_train_and_are_tallied(tiny):
    res = train(TrainConfig(epochs=1, slu=True, slu_cell="gru", **RUN), data=tiny)
    gates = res.model.gates
    assert isinstance(gates, RNNGates) and isinstance(gates.rnn, torch.nn.GRUCell)
    lstm = train(TrainConfig(epochs=1, slu=True, **RUN), data=tiny)
    assert isinstance(lstm.model.gates.rnn, torch.nn.LSTMCell)
    from e2train.torch.work_meter import WorkMeter
    cell = torch.nn.Sequential(torch.nn.GRUCell(10, 10))
    meter = WorkMeter(cell)
    meter.active = True
    cell(torch.zeros(4, 10, requires_grad=True))
    # GRU: 3 gates x hidden x (input + hidden) per sample; forward and the two backward products
    assert meter.work.total_macs == 4 * 3 * 10 * 20 * 3


def test_stochastic_depth_p_last_matches_a_measured_dropping_ratio():
    """E2-Train (paper 004, section 4.3): "we adjust p_L so that the SD dropping ratio is
    always the same as SLU"."""
    frac = [0.1, 0.2, 0.3, 0.4]
    for drop in (0.0, 0.1, 0.3):
        p = StochasticDepth.matched_p_last(drop, frac)
        sd = StochasticDepth(p)
        got = sum(f * (1 - s) for f, s in zip(frac, sd.survival(len(frac))))
        assert got == pytest.approx(drop)
    with pytest.raises(ValueError, match="no p_L"):
        StochasticDepth.matched_p_last(0.9, frac)
    # equal blocks: ratio = (1 - p_L)(L + 1) / 2L
    assert StochasticDepth.matched_p_last(0.25, [1.0] * 3) == pytest.approx(1 - 0.25 * 6 / 4)


def test_batch_loading_is_on_the_training_clock(tiny, monkeypatch):
    """Paper 000: the clock counts everything a method causes, loading the batches it drops
    included. A slow loader must show in wall_s, which it did not when the clock started
    after the batch was made."""
    import time as _time

    from e2train.torch import data as tdata
    real = tdata.train_batches

    def slow(*a, **k):
        for item in real(*a, **k):
            _time.sleep(0.05)
            yield item
    monkeypatch.setattr(tdata, "train_batches", slow)
    from e2train.torch.policy import RandomBatchOmission
    res = train(TrainConfig(epochs=1, **RUN), [RandomBatchOmission(0.5, seed=0)], data=tiny)
    assert res.records[0]["batches_skipped"] == 2
    assert res.wall_s >= 4 * 0.05            # four batches loaded, two of them dropped


def test_peak_memory_counts_what_a_skipping_method_frees(tiny):
    """Paper 000, GSkip's "memory decrease": with a layer prefix skipping its gradient, the
    step keeps fewer tensors for the backward and fewer gradients. On CPU the figure is the
    autograd saved-tensor peak plus parameters and gradients (memory.py); the process's RSS
    would depend on what trained before in it."""
    from e2train.torch.memory import KIND_SAVED, PeakMemory
    res = train(TrainConfig(epochs=1, device="cpu", **RUN), data=tiny)
    assert res.records[0]["peak_mem_mb"] > 0 and res.records[0]["peak_mem_kind"] == KIND_SAVED
    m = res.model.train()
    full, part = PeakMemory(torch.device("cpu"), m), PeakMemory(torch.device("cpu"), m)
    x = tiny.x_train[:16]
    with full.step():
        m(x).sum().backward()
    for p in list(m.parameters())[:6]:           # the stem and the first block's first conv
        p.requires_grad_(False)
    with part.step():
        m(x).sum().backward()
    assert 0 < part.peak_bytes < full.peak_bytes


def test_mean_memory_falls_when_gskip_skips(tiny):
    """Paper 000, Fig. 2: GSkip's average memory footprint falls as it skips (its peak,
    set during warm-up, does not)."""
    from e2train.torch.methods import make
    base = train(TrainConfig(epochs=2, **RUN), data=tiny)
    pol = make("gskip", warmup_steps=1, loss_threshold=10.0, asc_init=-10, recheck_every=1000)
    gs = train(TrainConfig(epochs=2, **RUN), [pol], data=tiny)
    if base.records[0]["peak_mem_kind"].startswith("cuda"):
        pytest.skip("on CUDA the allocator's figure after the step is not the saved-tensor tally")
    assert pol.skip_ratios()["layer-step"] > 0
    assert gs.records[-1]["mean_mem_mb"] < base.records[-1]["mean_mem_mb"]
    assert gs.records[-1]["peak_mem_mb"] == pytest.approx(base.records[-1]["peak_mem_mb"])

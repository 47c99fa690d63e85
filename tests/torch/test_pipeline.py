"""Pipeline-parallel training on torch.distributed (gloo on 127.0.0.1, spawned processes):
weight stashing, the asynchronous 1F1B order of paper 003 / PipeDream, accuracy against
sequential training, and a clean end when a stage dies."""
import time

import pytest
import torch
import torch.nn.functional as F

from e2train.torch.distributed.config import DistConfig
from e2train.torch.distributed.launch import DistributedError
from e2train.torch.distributed.partition import PAPER_SPLITS, analytic_speedup, analytic_step_time, balance
from e2train.torch.distributed.pipeline import train_pipeline
from e2train.torch.distributed.stages import layers_of
from e2train.torch.models import build_model
from e2train.torch.trainer import TrainConfig, train

# resnet8 as a chain: stem, block0, block1, block2, head
SPLIT3 = [0, 1, 3, 5]


def _cfg(**kw):
    base = dict(dataset="digits", model="resnet8", epochs=1, batch_size=32, max_batches=6, threads=1,
                augment=False, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def stashed():
    return train_pipeline(_cfg(), DistConfig(pipeline=3, split=SPLIT3, trace=True, timeout_s=60))


@pytest.fixture(scope="module")
def unstashed():
    return train_pipeline(_cfg(), DistConfig(pipeline=3, split=SPLIT3, stash=False, trace=True, timeout_s=60))


def _wrong_weight_grads(res, replay) -> tuple[list, int]:
    """(stage, mb) whose applied gradient is not the gradient at the weights its forward used,
    and the number of (stage, mb) whose weights were updated between forward and backward."""
    torch.manual_seed(0)
    return replay(res, layers_of(build_model("resnet8", 1, 10)), F.cross_entropy)


def test_stashing_backward_uses_the_forward_weights(stashed, unstashed, replay_pipeline_grads):
    wrong, stale = _wrong_weight_grads(stashed, replay_pipeline_grads)
    assert stale >= 5          # updates did come between forwards and backwards (stages 0 and 1)
    assert wrong == []
    # the same check catches the schedule without stashing: its backward ran on newer weights
    wrong_off, stale_off = _wrong_weight_grads(unstashed, replay_pipeline_grads)
    assert stale_off == stale and len(wrong_off) >= 5
    assert all(s < 2 for s, _ in wrong_off)          # the last stage updates only after its own backward
    mem = stashed["stages"]
    assert [m["stash_peak_versions"] for m in mem] == [3, 2, 1]       # S - s versions in flight
    assert mem[0]["stash_peak_bytes"] == 3 * mem[0]["live_weight_bytes"]


# PipeDream (Harlap et al. 2018, Fig. 4), the figure paper 003's Figure 1b follows, for 3 stages
# and 6 mini-batches (1-based as in the figure); after each B the stage updates its weights.
FIGURE = {
    0: "F1 F2 F3 B1 F4 B2 F5 B3 F6 B4 B5 B6",
    1: "F1 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 B6",
    2: "F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6",
}


def test_async_update_order_matches_the_figure(stashed):
    for s, want in FIGURE.items():
        ops = stashed["stages"][s]["ops_epoch1"]
        got = " ".join(f"{o}{mb + 1}" for o, mb, _ in ops if o != "U")
        assert got == want, f"stage {s}"
        # every backward is followed at once by its update (no flush, asynchronous)
        for a, b in zip(ops, ops[1:]):
            if a[0] == "B":
                assert b[0] == "U" and b[1] == a[1]
    # paper 003, "Weight Stashing": machine 1 runs minibatch 4's forward after minibatch 1's
    # backward has updated its weights, and minibatch 4's backward uses those same weights
    ops0 = stashed["stages"][0]["ops_epoch1"]
    f4 = next(v for o, mb, v in ops0 if (o, mb) == ("F", 3))
    b4 = next(v for o, mb, v in ops0 if (o, mb) == ("B", 3))
    u1 = next(v for o, mb, v in ops0 if (o, mb) == ("U", 0))
    assert f4 == b4 == u1 == 1


def test_vertical_sync_runs_each_minibatch_on_stage0s_version(replay_pipeline_grads):
    res = train_pipeline(_cfg(), DistConfig(pipeline=3, split=SPLIT3, vertical_sync=True, trace=True, timeout_s=60))
    fwd = [{mb: v for o, mb, v in st["ops_epoch1"] if o == "F"} for st in res["stages"]]
    assert fwd[1] == fwd[0] and fwd[2] == fwd[0]
    assert max(fwd[0].values()) >= 1          # versions did move on during the epoch
    wrong, _ = _wrong_weight_grads(res, replay_pipeline_grads)
    assert wrong == []
    assert res["stages"][1]["stash_peak_versions"] > 2      # the kept history is counted


def test_paper_analytic_step_time_and_splits():
    # paper 003, Table 4 stage times and its section 4 results: 250.20 ms, 1.597x; 148.81 ms, 2.918x
    two = [(95.42, 137.79), (53.90, 112.41)]
    four = [(50.43, 88.94), (58.05, 58.41), (29.50, 62.15), (26.91, 59.87)]
    assert analytic_step_time(two) == pytest.approx(250.20)
    assert analytic_speedup(two) == pytest.approx(1.597, abs=1e-3)
    assert analytic_step_time(four) == pytest.approx(148.81)
    assert analytic_speedup(four) == pytest.approx(2.918, abs=1e-3)
    # the balanced split of Table 1's per-layer times (forward + backward)
    t1 = [1.740 + 5.889, 2.135 + 4.045, 9.606 + 1.649, 20.263 + 36.960, 10.355 + 17.948, 23.306 + 3.494,
          22.732 + 46.944, 24.248 + 55.594, 16.418 + 29.770, 2.081 + 0.654, 0.036 + 0.013, 2.410 + 0.236,
          0.916 + 1.614, 0.781 + 0.059, 0.160 + 0.300, 0.051 + 0.262]
    import itertools
    for S in (2, 3, 4):
        got = balance(t1, S)
        best = min(max(sum(t1[a:b]) for a, b in zip(c, c[1:]))
                   for cuts in itertools.combinations(range(1, 16), S - 1) for c in [(0, *cuts, 16)])
        assert max(sum(t1[a:b]) for a, b in zip(got, got[1:])) == pytest.approx(best)
    assert PAPER_SPLITS["modified_alexnet"][2] == [0, 7, 16]
    assert balance([1, 1, 1, 1], 2) == [0, 2, 4] and balance([5, 1, 1, 1, 1, 1], 2) == [0, 1, 6]


def test_two_stage_run_reaches_sequential_accuracy():
    cfg = _cfg(epochs=6, batch_size=64, max_batches=None, augment=True, lr=0.05)
    seq = train(cfg)
    pipe = train_pipeline(cfg, DistConfig(pipeline=2, split=[0, 2, 5], timeout_s=60))
    assert seq.final_test_acc > 90
    assert pipe["final_test_acc"] >= seq.final_test_acc - 1.0, (pipe["final_test_acc"], seq.final_test_acc)


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_every_process_ends_when_one_dies(how):
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match="rank 1") as e:
        train_pipeline(_cfg(max_batches=20), DistConfig(pipeline=2, split=[0, 2, 5], timeout_s=20,
                                                         fail_at=[1, 3, how]))
    assert time.monotonic() - t0 < 20           # the other stage did not wait out its timeout
    assert "\n" not in str(e.value)


def test_the_first_failure_is_named_not_the_peer_that_noticed_it(tmp_path):
    """torch names whichever failed rank it checks first; when a rank dies, its peer fails a
    moment later on the reset connection and may be checked first. The launcher names the rank
    that died without a word (exit 9 here), else the earliest recorded error; ranks the parent
    stopped (SIGTERM) are not causes."""
    import signal
    from types import SimpleNamespace
    from e2train.torch.distributed.launch import _first_failure
    procs = lambda *codes: SimpleNamespace(processes=[SimpleNamespace(exitcode=c) for c in codes])  # noqa: E731
    (tmp_path / "fail-0").write_text("105.5\nRuntimeError: Connection reset by peer")
    assert _first_failure(procs(3, 9), str(tmp_path), 0, 3) == (1, 9)
    (tmp_path / "fail-1").write_text("100.25\nRuntimeError: injected failure")
    assert _first_failure(procs(3, 3), str(tmp_path), 0, 3) == (1, 3)
    assert _first_failure(procs(3, -signal.SIGTERM), str(tmp_path), 0, 3) == (0, 3)
    assert _first_failure(procs(0, -signal.SIGTERM), str(tmp_path), 1, 7) == (1, 7)


def test_smd_drops_the_same_batches_on_every_stage_as_in_one_process():
    cfg = _cfg(smd=True, epochs=2)
    pipe = train_pipeline(cfg, DistConfig(pipeline=2, split=[0, 2, 5], timeout_s=60))
    seq = train(cfg)
    assert [r["batches_skipped"] for r in pipe["records"]] == [r["batches_skipped"] for r in seq.records]
    assert sum(r["batches_skipped"] for r in pipe["records"]) > 0
    # both stages ran exactly the kept mini-batches (a disagreement would stop the run)
    assert [sum(o[0] == "F" for o in s["ops_epoch1"]) for s in pipe["stages"]] == [pipe["records"][0]["batches_run"]] * 2


def test_cli_pipeline_flags_and_config_section(tmp_path, capsys):
    from e2train.app.cli import main
    conf = tmp_path / "run.toml"
    conf.write_text('model = "resnet8"\nepochs = 1\nmax_batches = 3\nbatch_size = 32\nthreads = 1\ndevice = "cpu"\n'
                    '[distributed]\npipeline = 2\nsplit = [0, 2, 5]\n')
    assert main(["torch-train", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "stages 2 (async, stashing), split [0, 2, 5]" in out and "stash peak" in out
    assert main(["torch-train", "--config", str(conf), "--split", "0,9"]) == 2
    assert "split [0, 9] has 1 stages, pipeline has 2" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--nproc", "--pipeline"])
def test_cli_refuses_a_process_count_below_one(flag, capsys):
    """--nproc 0 used to train one process silently; a count below 1 on the command line is a
    one-line error before anything trains."""
    from e2train.app.cli import main
    assert main(["torch-train", flag, "0", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag} must be at least 1, got 0" in err[0]


@pytest.mark.parametrize("exact", [True, False])
def test_psg_backward_uses_the_codes_its_forward_ran_on(exact):
    # a PSG layer is stashed by its own graph: an update between forward and backward (as in
    # the async pipeline) must not change the input gradient sent upstream
    from e2train.torch.psg import PSGConv2d
    torch.manual_seed(0)
    a = PSGConv2d(8, 8, 3, beta=0.05, exact=exact).train()
    b = PSGConv2d(8, 8, 3, beta=0.05, exact=exact).train()
    b.load_state_dict(a.state_dict())
    x = torch.relu(torch.randn(4, 8, 6, 6))
    gy = torch.randn(4, 8, 6, 6)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = a(xa), b(xb)
    a.weight.grad = torch.ones_like(a.weight)
    a.sign_step(0.05, 0.0)                          # a's masters move on before its backward
    a.weight.grad = None
    assert not torch.equal(a.w_codes, b.w_codes)
    ya.backward(gy)
    yb.backward(gy)
    assert torch.equal(xa.grad, xb.grad) and torch.equal(a.weight.grad, b.weight.grad)


def test_psg_pipeline_trains_like_sequential_psg():
    # PSG layers inside both stages (fast emulation: the bit-exact one is tested layer by layer above)
    cfg = _cfg(precision="psg", psg_exact=False, epochs=2, batch_size=64, max_batches=None, lr=0.1, conv_lr=2e-3)
    pipe = train_pipeline(cfg, DistConfig(pipeline=2, split=[0, 2, 5], timeout_s=60))
    seq = train(cfg)
    assert pipe["final_test_acc"] >= seq.final_test_acc - 3.0 and pipe["final_test_acc"] > 90, \
        (pipe["final_test_acc"], seq.final_test_acc)
    assert pipe["stages"][0]["stash_peak_bytes"] > 2 * pipe["stages"][0]["live_weight_bytes"]   # codes counted

"""The device trainer's profile: where its modelled critical path went, by layer and by ARM kind."""
from __future__ import annotations

import pytest

from e2train.core import golden
from e2train.device import step_profile
from e2train.device.trainer import Trainer

FAST_ARM = 1.2e9          # side work fits under some of this tiny network's calls
TINY = dict(model="resnet8", width=4, batch_size=32, augment_shift=1, progress_every=0, conv_lr=0.01, epochs=1,
            seed=0, arm_ops_per_second=FAST_ARM, slu_sampling=False)


def _run(data, **kw):
    x_tr, y_tr, x_te, y_te = data
    tr = Trainer(dict(TINY, **kw), (x_tr, y_tr, x_te, y_te), golden)
    return tr, tr.run()


@pytest.fixture(scope="module")
def runs(small_digits):
    return {"baseline": _run(small_digits, smd=False, slu=False, precision="int8_int16grad"),
            "e2train": _run(small_digits, smd=True, slu=True)}


@pytest.mark.parametrize("name", ["baseline", "e2train"])
def test_the_profile_parts_add_up_to_the_runs_fabric_time_and_critical_path(runs, name):
    tr, res = runs[name]
    prof, w = res["profile"], tr.work
    fabric = sum(prof["fabric_seconds"].values())
    assert fabric == pytest.approx(w.seconds - w.arm_seconds, rel=1e-9)
    # every call of the run is a layer's: a conv by its name, a BN call by its BN's
    layers = {k.rpartition("/")[0] for k in prof["fabric_seconds"]}
    assert layers <= {c.name for c in tr.model.convs()} | set(tr.model.bns())
    # the synchronous driver: the path is the calls plus the ARM work not hidden under them
    on_path = sum(step_profile.arm_path_ops(res).values()) / FAST_ARM
    assert fabric + on_path == pytest.approx(res["modelled"]["critical_path_seconds"], rel=1e-9)
    hidden = sum(prof["arm_ops_under_calls"].values())
    assert 0 < hidden < sum(res["skips"]["arm_ops_by_kind"].values())


def test_the_profile_table_compares_the_runs_row_by_row(runs):
    (_, b), (_, e) = runs["baseline"], runs["e2train"]
    rows = step_profile.rows(b, e)
    by_block = {item: (sb, se) for sec, item, sb, se in rows if sec == "fabric by block"}
    assert set(by_block) == {"stem", "block0 (gated)", "block1", "block2"}       # resnet8: block0 is gated
    assert sum(sb for sb, _ in by_block.values()) == pytest.approx(sum(b["profile"]["fabric_seconds"].values()))
    calls = {item for sec, item, _, _ in rows if sec == "fabric by call"}
    assert calls == {"conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg", "bn_act", "bn_bwd_reduce", "bn_bwd_apply"}
    arm = {item: se for sec, item, _, se in rows if sec == "ARM on the path"}
    assert arm.get("gate", 0) > 0           # the gates' forward runs between the calls, E²-Train only
    text = step_profile.table(b, e)
    crit = e["modelled"]["critical_path_seconds"] / b["modelled"]["critical_path_seconds"]
    assert text.splitlines()[-2].startswith("| critical path | all |") and f"{crit:.3f}" in text.splitlines()[-2]


def test_the_gate_kinds_are_what_a_gated_run_tallies_and_a_gateless_one_does_not(runs, small_digits):
    from e2train.device.nn_layers import GATE_KINDS
    _, plain = _run(small_digits, smd=True, slu=False)
    with_gates = set(runs["e2train"][1]["skips"]["arm_ops_by_kind"])
    without = set(plain["skips"]["arm_ops_by_kind"])
    assert with_gates - without == GATE_KINDS & with_gates and not GATE_KINDS & without
    assert {"gate", "gate_ew", "sigmoid", "gate_grad"} <= with_gates


def test_the_slu_floor_takes_off_the_gated_blocks_and_the_gates_alone(runs):
    tr, e = runs["e2train"]
    _, b = runs["baseline"]
    gated = [f"block{blk.index}" for blk in tr.model.blocks if blk.gate is not None]
    assert e["profile"]["gated_blocks"] == gated == ["block0"]        # resnet8: the stride-1 block and b["profile"]["gated_blocks"] == []
    assert step_profile.slu_floor_seconds(b) == b["modelled"]["critical_path_seconds"]    # nothing gated
    fabric = e["profile"]["fabric_seconds"]
    ungated = sum(s for k, s in fabric.items() if k.split(".")[0].split("/")[0] not in gated)
    floor = step_profile.slu_floor_seconds(e)
    # what is left: the ungated calls and the ARM's path work but the gates'
    arm_left = sum(v for k, v in step_profile.arm_path_ops(e).items() if not k.startswith(("gate", "sigmoid", "tanh")))
    assert floor == pytest.approx(ungated + arm_left / FAST_ARM, rel=1e-9)
    assert step_profile.table(b, e).splitlines()[-1].startswith("| floor |")


def test_a_resumed_run_keeps_the_profile_of_the_steps_before(small_digits, tmp_path):
    """Stopped after its first checkpoint and resumed: the same profile as the run that went
    through (the checkpoint carries it)."""
    x_tr, y_tr, x_te, y_te = small_digits
    cfg = dict(TINY, smd=True, slu=True, epochs=2, checkpoint_every=2)
    whole = Trainer(cfg, (x_tr, y_tr, x_te, y_te), golden).run()["profile"]
    first = Trainer(cfg, (x_tr, y_tr, x_te, y_te), golden, checkpoint=tmp_path / "ck.npz")
    first.on_event = lambda ev: first.stop() if ev["event"] == "epoch" else None
    first.run()
    events = []
    again = Trainer(cfg, (x_tr, y_tr, x_te, y_te), golden, checkpoint=tmp_path / "ck.npz",
                    on_event=events.append).run()["profile"]
    assert events[0]["resumed_at"] == {"epoch": 1, "batch": 0}      # it did resume, after the first epoch
    assert again["fabric_seconds"] == pytest.approx(whole["fabric_seconds"], rel=1e-9)
    assert again["arm_ops_under_calls"] == whole["arm_ops_under_calls"]


def test_the_demo_summary_shows_the_profile_when_both_runs_carry_one(runs):
    from e2train.app.demo import summary_md
    reports = {name: {"config": {}, "results": dict(res, summary={})} for name, (_, res) in runs.items()}
    md = summary_md(reports, "TABLE")
    assert "## Where the modelled critical path went" in md
    assert step_profile.table(reports["baseline"]["results"], reports["e2train"]["results"]) in md
    del reports["baseline"]["results"]["profile"]         # a report from a board without it
    assert "Where the modelled" not in summary_md(reports, "TABLE")


def test_each_tallied_call_takes_the_measured_wait_of_the_call_it_made():
    """The backend's waits (PynqBackend.take_waits) go to the call tallied after each: one wait,
    one call; no wait (an empty sample list, no call made), nothing; more than one, a count that
    says the pairing broke."""
    from e2train.core.shapes import ConvShape
    from e2train.device.nn_tally import KernelTally
    pending: list = []

    def take():
        got = pending[:]
        pending.clear()
        return got
    kt = KernelTally(waits=take)
    shape = ConvShape(4, 8, 6, 6, 8, 3, 1, 1)
    pending.append(0.25)
    kt.kernel("conv_fwd", shape, 4, layer="a")
    pending.append(0.5)
    kt.block("bn_act", (4, 8, 6, 6), 4, layer="a.bn")
    kt.kernel("conv_fwd", shape, 0, layer="b")                   # no call made
    pending.append(0.125)
    kt.kernel("conv_fwd", shape, 4, layer="a")
    assert kt.fabric_wall_s == {"a/conv_fwd": 0.375, "a.bn/bn_act": 0.5} and kt.unmatched_waits == 0
    pending.extend([1.0, 2.0])
    kt.kernel("conv_bwd_data", shape, 4, layer="a")
    assert kt.unmatched_waits == 2 and "a/conv_bwd_data" not in kt.fabric_wall_s


def test_a_run_on_the_board_backend_gives_every_call_its_measured_wait(small_digits):
    """Over the PYNQ backend (the simulated board) every call the backend made reaches the
    profile under its layer; where the device ends each call at once the waits are labelled as
    not board time, and where calls take time (busy polls) as the board's."""
    from pathlib import Path

    from e2train.device.overlay import KernelOverlay
    x_tr, y_tr, _, _ = small_digits
    ov = KernelOverlay(Path(__file__).resolve().parents[3] / "bitstreams" / "sim", sim_impl="golden")
    cfg = dict(TINY, smd=True, slu=True)
    for busy, source in ((0, "simulated"), (2, "board")):
        if busy:
            ov.device.set_busy_reads(busy)
        backend = ov.backend()
        backend._waits.append(9.0)           # a call made before the trainer: not one of its own
        taken = []
        take = backend.take_waits
        backend.take_waits = lambda: taken.extend(got := take()) or got      # noqa: E731
        prof = Trainer(cfg, (x_tr, y_tr), backend).run()["profile"]     # no test set: every call is training's
        assert prof["wall_source"] == source and prof["unmatched_waits"] == 0
        assert taken[0] == 9.0                                  # drained when the trainer started
        assert len(taken) - 1 == sum(backend.calls.values()) > 0              # every call's wait taken
        assert set(prof["fabric_wall_seconds"]) <= set(prof["fabric_seconds"])
        assert sum(prof["fabric_wall_seconds"].values()) == pytest.approx(sum(taken[1:]), rel=1e-9)
        if busy:
            assert all(v > 0 for v in prof["fabric_wall_seconds"].values())


def test_a_board_runs_summary_sets_measured_fabric_time_beside_the_model(small_digits):
    """On a board (calls that take time) the run's summary.md compares each block's measured
    fabric seconds with the modelled; on the simulated board, whose calls end at once, it says
    there is nothing to compare instead of printing times that are not the board's."""
    from pathlib import Path

    from e2train.app.run_report import run_summary_md
    from e2train.device.overlay import KernelOverlay
    x_tr, y_tr, _, _ = small_digits
    ov = KernelOverlay(Path(__file__).resolve().parents[3] / "bitstreams" / "sim", sim_impl="golden")
    cfg = dict(TINY, smd=True, slu=True)
    sim = Trainer(cfg, (x_tr, y_tr), ov.backend()).run()
    assert "not board time" in step_profile.measured_table(sim)
    ov.device.set_busy_reads(2)
    res = Trainer(cfg, (x_tr, y_tr), ov.backend()).run()
    table = step_profile.measured_table(res)
    prof = res["profile"]
    last = table.splitlines()[-1]
    tm, tw = sum(prof["fabric_seconds"].values()), sum(prof["fabric_wall_seconds"].values())
    assert last == f"| fabric | all | {tm:.3f} | {tw:.3f} | {tw / tm:.2f} |"
    assert any(ln.startswith("| fabric by block | stem |") for ln in table.splitlines())
    report = {"run_id": "r", "config": cfg, "results": dict(res, summary={}, state="finished")}
    md = run_summary_md(report, commit="x")
    assert "## Fabric time, modelled and measured" in md and table in md
    assert step_profile.measured_table(dict(res, profile={})) is None       # a backend that measures nothing

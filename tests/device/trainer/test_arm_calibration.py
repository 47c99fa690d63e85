"""ARM throughput calibration: what it counts, what it excludes, and how the trainer uses it."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.work import Work
from e2train.device.arm_calibration import TimedBackend, arm_ops, calibrate, run
from e2train.device.nn_layers import ArmTally
from e2train.device.train_config import ConfigError, TrainConfig
from e2train.device.trainer import Trainer

TINY = {"model": "resnet8", "width": 4, "batch_size": 16, "epochs": 1, "progress_every": 0}


class SlowGolden:
    """The golden kernels, each call made slower by a fixed sleep (time the ARM did not spend)."""

    DELAY = 0.02

    def __getattr__(self, name):
        fn = getattr(golden, name)

        def slow(*a, **kw):
            time.sleep(self.DELAY)
            return fn(*a, **kw)
        return slow


@pytest.mark.parametrize("form", ["floats", "pixels"])
def test_counts_exactly_the_arm_ops_of_the_timed_steps(small_digits, digits_pixels, form):
    """The timed steps' ops: each batch's gather (and, for 8-bit codes, its lookup: what the board
    does with an uploaded set) and its training step."""
    data = small_digits if form == "floats" else tuple(a[:192] for a in digits_pixels)
    res = calibrate(TINY, data, golden, steps=2, warmup=1)
    # The same three steps by hand: the ops of steps 2 and 3 are what was timed.
    tr = Trainer(TINY, data, golden)
    per_step = []
    for t in range(3):
        tr.arm = ArmTally(Work())
        idx = np.arange(t * 16, (t + 1) * 16)
        tr.train_step(tr._input(idx, np.zeros((192, 2), np.int64)), tr.y_train[idx], t)
        per_step.append(arm_ops(tr.arm.work))
        assert ("standardise" in tr.arm.by_kind) == (form == "pixels")
    assert res["arm_ops"] == per_step[1] + per_step[2]
    assert res["arm_ops_per_second"] == pytest.approx(res["arm_ops"] / res["arm_seconds"])
    assert res["steps"] == 2 and res["batch_size"] == 16
    assert "measured" in res["label"]


def test_kernel_time_is_excluded(small_digits):
    res = calibrate(TINY, small_digits, SlowGolden(), steps=2, warmup=0)
    assert res["kernel_calls"] > 0
    assert res["kernel_seconds"] >= SlowGolden.DELAY * res["kernel_calls"]
    # The sleeps are in the kernel time, not in the ARM time.
    fast = calibrate(TINY, small_digits, golden, steps=2, warmup=0)
    assert res["arm_seconds"] < fast["arm_seconds"] + SlowGolden.DELAY * res["kernel_calls"] / 2


def test_timed_backend_passes_results_and_other_attributes_through():
    class B:
        version = 3

        def conv_fwd(self, a):
            return a + 1
    tb = TimedBackend(B())
    assert tb.conv_fwd(1) == 2 and tb.calls == 1 and tb.seconds >= 0
    assert tb.version == 3


def test_trainer_prices_arm_work_at_the_configured_rate(small_digits):
    x, y = small_digits[0][:16], small_digits[1][:16]
    secs, ops = [], []
    for rate in (1.2e8, 4.8e8):
        tr = Trainer(dict(TINY, arm_ops_per_second=rate), small_digits, golden)
        tr.train_step(x, y, 0)
        secs.append(tr.work.seconds)
        ops.append(arm_ops(Work(ops=tr.work.ops, macs=tr.work.macs)))
    assert ops[0] == ops[1] > 0
    # Kernel seconds are the same in both; the ARM's share scales with 1/rate.
    assert secs[0] - secs[1] == pytest.approx(ops[0] / 1.2e8 - ops[0] / 4.8e8, rel=1e-9)


@pytest.mark.parametrize("bad", [0, -1.0, 1e3, 1e12, "fast"])
def test_bad_rate_is_rejected_before_anything_runs(bad):
    with pytest.raises(ConfigError, match="arm_ops_per_second"):
        TrainConfig.from_dict({"arm_ops_per_second": bad})


def test_cli_reports_and_writes_json(tmp_path, capsys, small_digits, monkeypatch):
    import numpy as np
    data = tmp_path / "d.npz"
    np.savez(data, x_train=small_digits[0], y_train=small_digits[1], x_test=small_digits[2], y_test=small_digits[3])
    out = tmp_path / "cal.json"

    class A:
        backend, bitstream, steps, warmup = "golden", None, 1, 0
        config = json.dumps(TINY)
        json = str(out)
    A.data = str(data)
    assert run(A) == 0
    text = capsys.readouterr()
    assert "ARM-side throughput" in text.out and "arm_ops_per_second=" in text.out
    res = json.loads(out.read_text())
    assert res["arm_ops_per_second"] > 0 and res["config"]["width"] == 4
    A.config = '{"depth": 9}'
    assert run(A) == 2
    assert "depth" in capsys.readouterr().err
    A.config = json.dumps(TINY)
    A.data = str(tmp_path / "missing.npz")
    assert run(A) == 2
    assert "missing.npz" in capsys.readouterr().err
    A.data, A.steps = str(data), 0
    assert run(A) == 2
    assert "steps" in capsys.readouterr().err


def test_on_the_pynq_backend_side_work_stays_outside_the_timed_calls_and_the_overhead_is_reported(small_digits):
    """A board's driver would run the ARM's side work inside its waits, where it would be timed
    as kernel time: the timed backend declines the hook (and clears the backend's). The PYNQ
    backend's time beyond waiting for the fabric (copies, cache maintenance, register writes)
    is reported apart, with the bytes it copied."""
    from pathlib import Path

    from e2train.device.overlay import KernelOverlay
    ov = KernelOverlay(Path(__file__).resolve().parents[3] / "bitstreams" / "sim", sim_impl="golden")
    be = ov.backend()
    be.set_idle(lambda remaining_s: False)
    timed = TimedBackend(be)
    assert timed.set_idle(lambda remaining_s: True) is False and be._idle is None
    res = calibrate(TINY, small_digits, be, steps=2, warmup=1)
    assert be._idle is None
    assert res["call_overhead_seconds"] == pytest.approx(res["kernel_seconds"] - res["fabric_wait_seconds"])
    assert 0 <= res["fabric_wait_seconds"] <= res["kernel_seconds"]
    assert res["copied_bytes_per_step"] > 0 and res["flushed_bytes_per_step"] > 0
    assert "call_overhead_seconds" not in calibrate(TINY, small_digits, golden, steps=1, warmup=0)

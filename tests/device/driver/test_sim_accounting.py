"""The simulated board's modelled clock and energy advance by what the engine's call pricing
(core.call_price) and the energy model say for the calls made, and by nothing for skipped
samples."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from e2train.core import call_price, perfmodel
from e2train.core.energy import EnergyModel
from e2train.core.shapes import ConvShape


def test_clock_and_energy_follow_the_models(any_overlay, rng):
    be = any_overlay.backend()
    dev = any_overlay.device
    model = EnergyModel.zynq7020()
    shape = ConvShape(6, 8, 6, 6, 8, 3, 1, 1)
    x = rng.integers(0, 256, shape.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, shape.w_shape).astype(np.int8)
    gy = rng.integers(-3000, 3000, shape.y_shape).astype(np.int16)
    wm = rng.integers(-(1 << 20), 1 << 20, shape.w_shape).astype(np.int32)

    t_start = time.monotonic()
    be.conv_fwd(x, w, None, (1, 12), pad=1)                     # all 6 samples
    be.conv_fwd(x, w, None, (1, 12), pad=1, samples=[4, 1])     # SLU: 2 of 6
    be.conv_fwd(x, w, None, (1, 12), pad=1, samples=[])         # nothing runs
    be.conv_bwd_data(gy, w, (1, 12), in_hw=(6, 6), pad=1, samples=[0, 2, 3])
    r = be.conv_bwd_weight_psg(x, gy, wm, pad=1, beta_q=3277, lr_q=9, samples=[5])
    t_end = time.monotonic()

    calls = [("conv_fwd", 6, {}), ("conv_fwd", 2, {}), ("conv_bwd_data", 3, {}),
             ("conv_bwd_weight_psg", 1, {"predicted": r.predicted})]
    if dev.impl_name == "csim":        # the C simulation's one sweep: no block read twice
        from e2train.core import csim
        _, st = csim.conv_bwd_weight_psg_stats(x, gy, wm, pad=1, beta_q=3277, lr_q=9, samples=[5])
        assert st.tiles_skipped == call_price.blocks(shape)
    priced = [call_price.price_call(k, shape, n, **kw) for k, n, kw in calls]
    cycles = [c for _, c in priced]
    dyn = [model.dynamic_j(w) for w, _ in priced]
    assert dev.modelled_seconds == pytest.approx(sum(cycles) / perfmodel.CLOCK_HZ, rel=1e-12)
    assert dev.modelled_dynamic_j == pytest.approx(sum(dyn), rel=1e-12)
    # the trainer's tally charges the same calls the same (one pricing: core.call_price)
    from e2train.device.nn_tally import KernelTally
    kt = KernelTally()
    for k, n, kw in calls:
        kt.kernel(k, shape, n, predicted=kw.get("predicted"), predictor_on=True)
    assert kt.work.seconds == pytest.approx(dev.modelled_seconds, rel=1e-12)
    assert model.dynamic_j(kt.work) == pytest.approx(dev.modelled_dynamic_j, rel=1e-12)
    fwd = dev.engine.stats["conv_fwd"]       # one IP, its calls counted per pass
    assert fwd.calls == 2 and fwd.samples == 8 and dev.engine.stats["conv_bwd_data"].calls == 1
    assert fwd.work.total_macs == shape.macs(8)
    # skipping samples saved modelled time and energy: 2 samples cost less than 6
    assert cycles[1] < cycles[0] and dyn[1] < dyn[0]
    act = dev.activity()
    assert act["energy_kind"] == "modelled" and act["impl"] == dev.impl_name

    # on the wall clock: static power over the window plus exactly the dynamic energy
    e = dev.energy_between(t_start - 0.5, t_end + 0.5)
    assert e == pytest.approx(dev.static_w * (t_end - t_start + 1.0) + sum(dyn), rel=1e-9)
    assert dev.mean_power_w(t_start - 0.5, t_end + 0.5) > dev.static_w
    assert dev.power_w(t_end + 1.0) == dev.static_w


def test_power_over_wall_time_is_exact(overlay):
    dev = overlay.device
    s = dev.static_w
    assert s == EnergyModel.zynq7020().idle_power_w() > 0
    dev.record_activity(100.0, 102.0, 4.0)
    dev.record_activity(103.0, 104.0, 1.0)
    assert dev.power_w(99.0) == s and dev.power_w(101.0) == pytest.approx(s + 2.0)
    assert dev.power_w(102.5) == s and dev.power_w(103.5) == pytest.approx(s + 1.0)
    assert dev.energy_between(99.0, 101.0) == pytest.approx(2 * s + 2.0)
    assert dev.energy_between(101.5, 103.5) == pytest.approx(2 * s + 1.0 + 0.5)
    assert dev.energy_between(90.0, 110.0) == pytest.approx(20 * s + 5.0)
    assert dev.energy_between(100.5, 101.5) == pytest.approx(s + 2.0)    # inside one interval
    # a meter that reports mean power per sample integrates to the same energy
    ts = np.linspace(99.0, 105.0, 37)
    meter = sum(dev.mean_power_w(a, b) * (b - a) for a, b in zip(ts[:-1], ts[1:]))
    assert meter == pytest.approx(dev.energy_between(99.0, 105.0))
    with pytest.raises(ValueError):
        dev.record_activity(105.0, 106.0, -1.0)


def test_board_side_modules_import_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import e2train.device.kernel_iface, e2train.device.driver, e2train.device.simdevice\n"
        "import e2train.device.overlay, e2train.device.backend_pynq, e2train.device.manifest\n"
        "from e2train.device.overlay import KernelOverlay\n"
        "ov = KernelOverlay(sys.argv[1], sim_impl='golden')\n"
        "import numpy as np\n"
        "ov.backend().conv_fwd(np.ones((1, 1, 3, 3), np.int8), np.ones((1, 1, 1, 1), np.int8), None, (1, 0))\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'sklearn', 'scipy') if sys.modules.get(m) is not None]\n"
        "assert not heavy, heavy\n"
    )
    sim_manifest = Path(__file__).resolve().parents[3] / "bitstreams" / "sim"
    p = subprocess.run([sys.executable, "-c", code, str(sim_manifest)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_a_board_that_finds_no_address_space_collects_the_dropped_ones(monkeypatch):
    """A 32-bit host (armv7) runs out of address space after a few simulated boards whose
    kernel/device cycle the collector has not reached yet: the DDR views are retried once after
    a collection, and a second failure is the MemoryError itself."""
    from e2train.device import simdevice

    real_zeros, calls, collected = np.zeros, [], []

    def zeros(n, dtype):
        calls.append(n)
        if len(calls) == 1 and n == 4096:
            raise MemoryError("no address space")
        return real_zeros(n, dtype)

    monkeypatch.setattr(simdevice.np, "zeros", zeros)
    monkeypatch.setattr(simdevice.gc, "collect", lambda: collected.append(1) or 0)
    cpu, ddr = simdevice._ddr_pair(4096)
    assert collected == [1] and cpu.shape == ddr.shape == (4096,) and cpu is not ddr

    monkeypatch.setattr(simdevice.np, "zeros", lambda n, dtype: (_ for _ in ()).throw(MemoryError("none")))
    with pytest.raises(MemoryError):
        simdevice._ddr_pair(4096)

"""The PYNQ driver at the register level, over pynq's own MMIO on the simulated board."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pynq
import pytest

from e2train.device import kernel_iface as ki
from e2train.device.driver import KernelError, KernelTimeout
from e2train.device.simdevice import SimulatedBusError

REPO = Path(__file__).resolve().parents[3]


def _c_params(kernel: str) -> list[str]:
    """Parameter names of a function in hls/include/e2t_kernels.h, in order."""
    text = (REPO / "hls" / "include" / "e2t_kernels.h").read_text()
    m = re.search(rf"\bint\s+{kernel}\s*\(([^)]*)\)", text)
    assert m, f"{kernel} not declared in e2t_kernels.h"
    return [re.findall(r"[A-Za-z_]\w*", p)[-1] for p in m.group(1).split(",")]


def test_interface_matches_hls_top_function():
    # Vitis HLS lays the registers out in argument order: the order must be the C one
    assert list(ki.KERNELS) == ["e2t_engine"]
    assert [a.name for a in ki.E2T_ENGINE.args] == _c_params("e2t_engine")


@pytest.mark.parametrize("name", sorted(ki.PASSES))
def test_each_pass_reads_the_arguments_of_its_c_entry_point(name):
    assert list(ki.PASSES[name].args) == _c_params(name)
    text = (REPO / "hls" / "include" / "e2t_kernels.h").read_text()
    assert re.search(rf"E2T_OP_\w+ = {ki.PASSES[name].op}\b", text)
    entry = (REPO / "hls" / "csim" / "pass_entry.cpp").read_text()
    op = {0: "E2T_OP_FWD", 1: "E2T_OP_BWD_DATA", 2: "E2T_OP_BWD_WEIGHT_PSG", 3: "E2T_OP_BN_ACT",
          4: "E2T_OP_BN_BWD_REDUCE", 5: "E2T_OP_BN_BWD_APPLY"}[ki.PASSES[name].op]
    body = entry[entry.index(f"int {name}("):]
    assert body[body.index("return e2t_engine(") + len("return e2t_engine("):].startswith(op)


def test_pointer_width_matches_the_hls_script():
    tcl = (REPO / "hls" / "scripts" / "kernel.tcl").read_text()
    m = re.search(r"-m_axi_addr64(?:=|\s+)(\w+)", tcl)
    addr64 = True if m is None else m.group(1).lower() in ("true", "1")     # Vitis HLS default: 64-bit
    assert ki.M_AXI_ADDR64 == addr64
    assert re.search(r"-vendor\s+(\S+)\s+-library\s+(\S+)\s+-version\s+\$version", tcl).groups() == \
        (ki.VENDOR, ki.LIBRARY)
    assert re.search(r"^set version (\S+)$", tcl, re.M).group(1) == ki.VERSION
    assert re.search(r"^set_top (\S+)$", tcl, re.M).group(1) == ki.E2T_ENGINE.name


def test_register_layout_is_vitis_hls():
    k = ki.E2T_ENGINE
    regs = {r.name: r.offset for r in k.registers()}
    assert (regs["CTRL"], regs["GIER"], regs["IP_IER"], regs["IP_ISR"], regs["ap_return"]) == (0, 4, 8, 0xC, 0x10)
    # op, then 12 pointers (x .. samples), then 17 int scalars (n_samples .. wd_q), from 0x18
    ptrs = ("x", "w", "bias", "y", "g_y", "g_x", "w_master", "sign", "predicted", "gmsb", "stats", "samples")
    assert regs["op"] == 0x18 and regs["op_reserved"] == 0x1C
    if ki.M_AXI_ADDR64:           # two data words and a reserved one per pointer
        assert [regs[f"{p}_1"] for p in ptrs] == [0x20 + 12 * i for i in range(12)]
        first_scalar = 0x20 + 12 * 12
    else:                         # one data word and a reserved one
        assert [regs[p] for p in ptrs] == [0x20 + 8 * i for i in range(12)]
        assert regs["x_reserved"] == 0x24
        first_scalar = 0x20 + 8 * 12
    assert [regs[s] for s in ("n_samples", "n", "ci")] == [first_scalar, first_scalar + 8, first_scalar + 16]
    assert regs["wd_q"] == first_scalar + 16 * 8
    # 2.1: the block operations' 9 pointers (b_y .. b_sums), then 14 int scalars (b_flags .. gb_lo)
    bptrs = ("b_y", "b_o", "b_r", "b_ga", "b_gb", "b_gm", "b_gy", "b_coef", "b_sums")
    first_bptr = first_scalar + 17 * 8
    step = 12 if ki.M_AXI_ADDR64 else 8
    assert [regs[f"{p}_1" if ki.M_AXI_ADDR64 else p] for p in bptrs] == [first_bptr + step * i for i in range(9)]
    first_bscalar = first_bptr + 9 * step
    assert (regs["b_flags"], regs["gb_lo"]) == (first_bscalar, first_bscalar + 13 * 8)
    assert k.map_size == first_bscalar + 14 * 8
    if not ki.M_AXI_ADDR64:
        assert (k.map_size, k.addr_width) == (448, 9)
    assert len({r.offset for r in k.registers()}) == len(list(k.registers()))


def _words(ov):
    return ov.device.engine.words


def _all_args(name: str, **args) -> dict:
    """Every argument of e2t_engine as the driver writes them for pass ``name``."""
    return {**{a.name: 0 for a in ki.E2T_ENGINE.args}, **args, "op": ki.PASSES[name].op}


def test_execute_writes_every_argument_where_the_map_says(overlay, rng):
    drv = overlay.engine
    n, ci, h, w, co = 3, 4, 5, 5, 8
    gy = pynq.allocate((n, co, h, w), np.int16)
    wt = pynq.allocate((co, ci, 3, 3), np.int8)
    gx = pynq.allocate((n, ci, h, w), np.int16)
    smp = pynq.allocate((2,), np.int32)
    gy[:] = rng.integers(-500, 500, gy.shape)
    wt[:] = rng.integers(-100, 100, wt.shape)
    smp[:] = [2, 0]
    args = dict(g_y=gy, w=wt, g_x=gx, samples=smp, n_samples=2, n=n, ci=ci, h=h, wd=w, co=co, k=3,
                stride=1, pad=1, mult_m=20000, mult_s=20)
    drv.conv_bwd_data(**args)
    words = _words(overlay)
    iface = ki.E2T_ENGINE
    for a in iface.args:
        off = iface.offset(a.name) // 4
        if a.name not in args:    # op, and what the input-gradient pass does not read: 0
            assert int(words[off]) == (1 if a.name == "op" else 0), a.name
        elif a.kind == "ptr":
            addr = args[a.name].device_address
            assert addr >= 1 << 28 and int(words[off]) == addr & 0xFFFFFFFF
            assert int(words[off + 1]) == (addr >> 32 if ki.M_AXI_ADDR64 else 0)
        else:
            assert int(words[off]) == args[a.name], a.name
    # pynq's RegisterMap, built from the same map, names the same registers (arguments are
    # write-only in a Vitis HLS .hwh, so it is read back through the MMIO)
    rm = drv.register_map
    gy_reg = rm.g_y_1 if ki.M_AXI_ADDR64 else rm.g_y
    assert (gy_reg.address, rm.ci.address) == (iface.offset("g_y"), iface.offset("ci"))
    assert drv.mmio.read(gy_reg.address) == gy.device_address & 0xFFFFFFFF and drv.mmio.read(rm.ci.address) == ci
    rm.mult_s = 21
    assert int(words[iface.offset("mult_s") // 4]) == 21
    assert drv.calls == 1 and drv.pass_calls["conv_bwd_data"] == 1 and drv.status() == 0


def test_handshake_done_is_clear_on_read(overlay):
    drv = overlay.engine
    k = overlay.device.engine
    assert drv.read_ctrl() & (ki.AP_IDLE | ki.AP_START | ki.AP_DONE) == ki.AP_IDLE
    x = pynq.allocate((1, 1, 3, 3), np.int8)
    w = pynq.allocate((1, 1, 1, 1), np.int8)
    y = pynq.allocate((1, 1, 3, 3), np.int8)
    s = pynq.allocate((1,), np.int32)
    drv.write_args(**_all_args("conv_fwd", x=x, w=w, y=y, samples=s, n_samples=1, n=1, ci=1, h=3, wd=3, co=1,
                                k=1, stride=1, pad=0, mult_m=1))
    drv.mmio.write(ki.IP_IER, 1)
    drv.mmio.write(ki.GIER, 1)
    drv.mmio.write(ki.CTRL, ki.AP_START)
    assert k.stats["conv_fwd"].calls == 1 and k.pass_name == "conv_fwd"
    first = drv.read_ctrl()
    assert first & ki.AP_DONE and first & ki.AP_IDLE and first & ki.AP_READY and not first & ki.AP_START
    assert first & ki.INTERRUPT                         # ap_done with IER and GIE set
    second = drv.read_ctrl()
    assert not second & ki.AP_DONE and not second & ki.AP_READY and second & ki.AP_IDLE
    assert drv.mmio.read(ki.IP_ISR) == 1
    drv.mmio.write(ki.IP_ISR, 1)                       # toggle on write clears it
    assert drv.mmio.read(ki.IP_ISR) == 0 and not drv.read_ctrl() & ki.INTERRUPT
    drv.mmio.write(ki.CTRL, ki.AP_DONE | ki.AP_IDLE)   # read-only bits do not stick, no start
    assert k.stats["conv_fwd"].calls == 1 and not drv.read_ctrl() & ki.AP_DONE
    # the driver still sees a completed call whose ap_done someone else consumed
    drv.mmio.write(ki.CTRL, ki.AP_START)
    drv.read_ctrl()
    assert drv.wait(0.5) < 0.5 and k.stats["conv_fwd"].calls == 2


def _bwd_data_args(rng):
    n, ci, h, w, co = 2, 3, 4, 4, 5
    gy, wt = pynq.allocate((n, co, h, w), np.int16), pynq.allocate((co, ci, 3, 3), np.int8)
    gx, smp = pynq.allocate((n, ci, h, w), np.int16), pynq.allocate((n,), np.int32)
    gy[:], wt[:], smp[:] = rng.integers(-500, 500, gy.shape), rng.integers(-100, 100, wt.shape), [0, 1]
    return dict(g_y=gy, w=wt, g_x=gx, samples=smp, n_samples=n, n=n, ci=ci, h=h, wd=w, co=co, k=3,
                stride=1, pad=1, mult_m=20000, mult_s=20)


def test_side_work_runs_while_the_call_is_busy_one_task_per_busy_poll_in_order(overlay, rng):
    """The driver's idle hook (ArmTally.idle): after each poll that finds the IP busy, one
    pending task that fits, first deferred first; none once CTRL says done, none before the start."""
    from e2train.device.nn_layers import ArmTally
    drv, k = overlay.engine, overlay.device.engine
    args = _bwd_data_args(rng)
    arm, seen = ArmTally(ops_per_second=1.0), []
    for i in range(5):
        # each task notes the calls started so far and whether the IP had finished (CTRL's
        # ap_idle, read from the register file without the clear-on-read of a bus read)
        arm.defer(lambda i=i: seen.append((i, k.stats["conv_bwd_data"].calls, bool(k.words[0] & ki.AP_IDLE))), ops=0)
    overlay.device.set_busy_reads(3)
    drv.conv_bwd_data(idle=arm.idle, modelled_s=1.0, **args)
    # three polls found it busy: a task after each, in order, all after the start; the call ended
    # during the third (the task the driver is in when the call ends runs to its end)
    assert seen == [(0, 1, False), (1, 1, False), (2, 1, True)] and arm.pending == 2
    assert drv.read_ctrl() & ki.AP_IDLE
    overlay.device.set_busy_reads(0)                  # done at the first poll: no task runs
    drv.conv_bwd_data(idle=arm.idle, modelled_s=1.0, **args)
    assert len(seen) == 3 and arm.pending == 2 and drv.pass_calls["conv_bwd_data"] == 2
    # without a hook (or with nothing pending) the driver just polls
    overlay.device.set_busy_reads(2)
    drv.conv_bwd_data(**args)
    arm.flush()
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4] and arm.idle(1.0) is False
    drv.conv_bwd_data(idle=arm.idle, modelled_s=1.0, **args)
    assert drv.pass_calls["conv_bwd_data"] == 4
    with pytest.raises(KernelError, match="needs the call's modelled duration"):
        drv.conv_bwd_data(idle=arm.idle, **args)


def test_the_driver_runs_a_task_only_if_it_fits_in_what_is_left_of_the_call(overlay, rng):
    """The hook gets the call's modelled duration less the wall time since ap_start: a task whose
    modelled time fits runs under the call, one that does not waits, and with it only the task
    that names it (``after``); an independent task behind it that fits overtakes it. The driver
    polls on until the call is done either way."""
    from e2train.device.nn_layers import ArmTally
    drv = overlay.engine
    args = _bwd_data_args(rng)
    arm, order = ArmTally(ops_per_second=1.0), []             # 1 op: 1 modelled second
    handles = {}
    for name, ops, after in (("a", 2, None), ("b", 50, None), ("c", 1, "b"), ("d", 1, None)):
        handles[name] = arm.defer(lambda name=name, ops=ops: order.append(name) or arm.ops("augment", ops), ops=ops,
                                  after=handles.get(after))
    overlay.device.set_busy_reads(4)
    left = []
    drv.conv_bwd_data(idle=lambda r: left.append(r) or arm.idle(r), modelled_s=10.0, **args)
    # a (2 s) fits in the ~10 s left; b (50 s) does not, c (1 s) waits for b, d (1 s) overtakes them
    assert order == ["a", "d"] and arm.pending == 2 and len(left) == 4
    assert all(0 < r <= 10.0 for r in left) and left == sorted(left, reverse=True)
    drv.conv_bwd_data(idle=arm.idle, modelled_s=60.0, **args)      # a longer call: b, then c
    assert order == ["a", "d", "b", "c"] and arm.pending == 0
    arm.defer(lambda: order.append("e") or arm.ops("augment", 1), ops=1)
    drv.conv_bwd_data(idle=arm.idle, modelled_s=0.5, **args)       # 1 s does not fit in 0.5 s
    assert order == ["a", "d", "b", "c"] and arm.pending == 1


def test_hung_kernel_times_out_with_a_clear_error(overlay):
    overlay.device.inject_hang()
    be = overlay.backend(timeout_s=0.05)
    x = np.ones((2, 3, 4, 4), np.int8)
    w = np.ones((5, 3, 3, 3), np.int8)
    t0 = time.monotonic()
    with pytest.raises(KernelTimeout, match=r"conv_fwd: e2t_engine .*did not finish within 0.05 s.*reload the bitstream"):
        be.conv_fwd(x, w, None, (1, 4), pad=1)
    assert time.monotonic() - t0 < 2.0
    ctrl = overlay.engine.read_ctrl()
    assert ctrl & ki.AP_START and not ctrl & ki.AP_IDLE
    with pytest.raises(KernelError, match="busy"):
        be.conv_fwd(x, w, None, (1, 4), pad=1)
    # one IP: every pass waits for it (the engine is shared); reloading clears the hang
    with pytest.raises(KernelError, match="conv_bwd_data: e2t_engine is busy"):
        be.conv_bwd_data(np.ones((2, 5, 4, 4), np.int16), w, (1, 4), in_hw=(4, 4), pad=1)
    overlay.reload()
    assert be.conv_fwd(x, w, None, (1, 4), pad=1).shape == (2, 5, 4, 4)
    assert be.conv_bwd_data(np.ones((2, 5, 4, 4), np.int16), w, (1, 4), in_hw=(4, 4), pad=1).shape == x.shape


def test_kernel_status_and_bad_pointers_are_errors(overlay):
    drv = overlay.engine
    x = pynq.allocate((2, 1, 3, 3), np.int8)
    w = pynq.allocate((1, 1, 1, 1), np.int8)
    y = pynq.allocate((2, 1, 3, 3), np.int8)
    s = pynq.allocate((3,), np.int32)
    s[:] = [5, 0, 0]                                    # 5 not in [0, 2)
    args = dict(x=x, w=w, bias=0, y=y, samples=s, n_samples=1, n=2, ci=1, h=3, wd=3, co=1, k=1,
                stride=1, pad=0, x_unsigned=0, has_bias=0, relu=0, mult_m=1, mult_s=0)
    with pytest.raises(KernelError, match=r"conv_fwd: e2t_engine returned status 0x2 .*sample list invalid"):
        drv.conv_fwd(**args)
    s[:] = [1, 1, 0]                                    # a repeated index: counted twice in dW, refused
    s.flush()
    with pytest.raises(KernelError, match="status 0x2 .*repeated index"):
        drv.conv_fwd(**{**args, "n_samples": 2})
    with pytest.raises(KernelError, match="status 0x2 "):   # more entries than the batch
        drv.conv_fwd(**{**args, "n_samples": 3})
    assert "n_samples 3 outside [0, 2]" in overlay.device.engine.last_error
    with pytest.raises(KernelError, match="status 0x1 .*shape"):
        drv.conv_fwd(**{**args, "k": 5, "samples": 0, "n_samples": 0})
    with pytest.raises(KernelError, match="status 0x1 .*op"):   # no pass has op 6
        drv.execute(**{**_all_args("conv_fwd", **args), "op": 6})
    assert "op 6 is none of the passes" in overlay.device.engine.last_error
    with pytest.raises(SimulatedBusError, match="not inside one allocated buffer"):
        drv.conv_fwd(**{**args, "n": 8, "samples": 0, "n_samples": 0})   # buffers too small for n=8
    with pytest.raises(KernelError, match="missing arguments"):
        drv.conv_fwd(x=x)
    with pytest.raises(KernelError, match=r"unknown \['g_y'\]"):   # another pass's argument
        drv.conv_fwd(**args, g_y=0)
    with pytest.raises(KernelError, match="missing arguments"):
        drv.execute(x=x)
    with pytest.raises(KernelError, match="pynq.allocate"):
        drv.conv_fwd(**{**args, "x": np.zeros(18, np.int8)})


def test_buffers_are_not_coherent_without_flush(overlay):
    """The simulated DDR is what the fabric sees: CPU writes reach it only by flush(),
    and the CPU sees kernel writes only after invalidate(), as with cacheable buffers."""
    drv = overlay.engine
    x = pynq.allocate((1, 1, 2, 2), np.int8)
    w = pynq.allocate((1, 1, 1, 1), np.int8)
    y = pynq.allocate((1, 1, 2, 2), np.int8)
    s = pynq.allocate((1,), np.int32)
    x[:] = 7
    w[:] = 1
    s.flush()
    w.flush()                                         # x deliberately not flushed
    drv.write_args(**_all_args("conv_fwd", x=x, w=w, y=y, samples=s, n_samples=1, n=1, ci=1, h=2, wd=2, co=1,
                                k=1, stride=1, pad=0, mult_m=1))
    drv.start()
    drv.wait(1.0)
    y.invalidate()
    assert (y == 0).all()                             # the kernel read stale (zero) DDR
    y[:] = 0
    drv.conv_fwd(x=x, w=w, bias=0, y=y, samples=s, n_samples=1, n=1, ci=1, h=2, wd=2, co=1, k=1,
                 stride=1, pad=0, x_unsigned=0, has_bias=0, relu=0, mult_m=1, mult_s=0)
    assert (y == 7).all()                             # execute() flushes and invalidates

"""cocotb bench: the PYNQ driver against the RTL through AXI bus models (top
fpga/rtl/kernel_axi_top.v: the control block axil_ctrl.v sized for the one IP's register map,
kernel_iface.E2T_ENGINE, and the engine train_engine_hls.v). The driver's pass methods write
``op``; the shell model picks the pass by it.

* ``control_registers``: the control block's register semantics, from kernel_iface's
  register map, with AxiLiteMaster and the kernel-side handshake driven by hand.
* ``driver_conv_fwd_vs_golden``: the project's ``EngineDriver.conv_fwd`` (unmodified, in a
  ``cocotb.bridge`` thread) allocates buffers with ``pynq.allocate``, writes the argument
  registers over AXI4-Lite, starts the kernel and polls CTRL; the shell model
  (shell_model.py) reads the buffers over AXI4 from the AxiRam, runs every MAC in the RTL
  engine and writes y back; the driver invalidates y and the bench compares it with
  ``core.golden.conv_fwd`` bit for bit, samples not listed untouched.
* ``driver_status_word``: calls the IP refuses (a 2x2 kernel, a sample index out of range, a
  list longer than the batch, a repeated index, an op that is no pass) come back through
  ap_return as the status bits the driver turns into its KernelError, with nothing written;
  the IP then takes a valid call.
* ``driver_after_a_stolen_done``: another reader takes the clear-on-read ap_done first;
  the driver still finishes (ap_idle with ap_start taken) with a correct y.
* ``driver_conv_bwd_data_vs_golden``: the same for ``EngineDriver.conv_bwd_data`` and
  ``core.golden.conv_bwd_data``, on the same top (op 1).
* ``driver_under_random_backpressure``: a forward and a weight-gradient call as above with
  every AXI channel paused at random on both sides (the driver's AXI4-Lite master and the
  control block, the shell's AXI4 master and the AxiRam) and the engine's FIFO flags off at
  random: the same results, bit for bit.
* ``driver_conv_bwd_weight_psg_vs_golden``: the same for the PSG weight gradient (op 2): the
  updated master weights (an inout buffer), signs, decisions and the stats words against
  ``core.golden.conv_bwd_weight_psg``, predictor on and off; a call with lr_q out of range is
  refused before the engine runs. ``driver_conv_fwd_vs_golden`` also takes one call with
  BN's batch sums on (``BF_BN_SUMS``).

Environment: ENG_ROWS, ENG_COLS.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
import pynq
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from e2train.core import block_ops, golden
from e2train.core.fixedpoint import MASTER_LIMIT, Dyadic, beta_to_fixed
from e2train.core.shapes import ConvShape
from e2train.device import kernel_iface as ki
from e2train.device.driver import DRIVERS, KernelError
from e2train.device.overlay import ip_description
from engine_model import bwd_data_acc
from psg_bus import u
from pynq_axi import AxiBoard, quiet
from shell_model import ShellModel

IFACE = ki.E2T_ENGINE
ROWS = int(os.environ.get("ENG_ROWS", "2"))
COLS = int(os.environ.get("ENG_COLS", "3"))
WAIT_S = 600.0      # the driver's poll timeout, wall clock: the simulators are slow, not hung


async def start(dut) -> None:
    """Clock, every top-level input idle, ap_rst_n low for three cycles."""
    idle = ("ap_start", "head_empty_n", "in_empty_n", "out_full_n", "mode", "x_unsigned", "exact_en",
            "pred_en", "clr_dsp", "clr_fab", "pred_rows", "pred_cols", "emit", "head_dout", "in_dout",
            "ctrl_ap_done", "ctrl_ap_ready", "ctrl_ap_idle", "ctrl_ap_return")
    Clock(dut.ap_clk, 10, unit="ns").start()
    for name in idle:
        getattr(dut, name).value = 0
    dut.ap_continue.value = 1
    dut.ap_rst_n.value = 0
    for _ in range(3):
        await RisingEdge(dut.ap_clk)
    dut.ap_rst_n.value = 1
    await RisingEdge(dut.ap_clk)


async def board_with_shell(dut):
    """The AXI device (made pynq's active device), the driver bound to it, the shell model running."""
    await start(dut)
    board = AxiBoard(dut, IFACE)
    pynq.Device.active_device = board
    drv = DRIVERS[IFACE.name](ip_description(IFACE, board))
    drv.timeout_s = WAIT_S
    shell = ShellModel(dut, IFACE, ROWS, COLS)
    cocotb.start_soon(shell.run())
    return board, drv, shell


def buffer(a: np.ndarray):
    buf = pynq.allocate(a.shape, a.dtype)
    buf[...] = a
    return buf


# ---- the control block alone ---------------------------------------------------------------

@cocotb.test()
async def control_registers(dut):
    await start(dut)
    ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk, dut.ap_rst_n,
                         reset_active_level=False)
    quiet(ctrl)
    clk = dut.ap_clk

    async def rd(off: int) -> int:
        return int.from_bytes((await ctrl.read(off, 4)).data, "little")

    async def wr(off: int, v: int) -> None:
        await ctrl.write(off, int(v).to_bytes(4, "little"))

    async def pulse(**sigs) -> None:
        for k, v in sigs.items():
            getattr(dut, k).value = v
        await RisingEdge(clk)
        for k in sigs:
            if k != "ctrl_ap_return":
                getattr(dut, k).value = 0
        await RisingEdge(clk)

    dut.ctrl_ap_idle.value = 1
    await RisingEdge(clk)
    await RisingEdge(clk)
    assert await rd(ki.CTRL) == ki.AP_IDLE, "after reset CTRL must read ap_idle only"
    # argument words: read back as written, byte strobes honoured; reserved words read 0
    values = {a.name: (0x1000_0040 + 0x100 * i if a.kind == "ptr" else (-i) & 0xFFFF_FFFF)
              for i, a in enumerate(IFACE.args)}
    for name, v in values.items():
        await wr(IFACE.offset(name), v)
    for name, v in values.items():
        assert await rd(IFACE.offset(name)) == v, f"{name} reads back wrong"
        assert await rd(IFACE.offset(name) + 4) == 0, f"{name}'s reserved word is not 0"
    words = u(dut.ctrl_args)
    for i, a in enumerate(IFACE.args):
        assert (words >> (32 * ((IFACE.offset(a.name) - ki.FIRST_ARG) // 8))) & 0xFFFF_FFFF == values[a.name], \
            f"{a.name} is not the kernel's argument word"
    first = IFACE.args[0].name
    await ctrl.write(IFACE.offset(first) + 1, b"\xab")          # one byte lane
    assert await rd(IFACE.offset(first)) == (values[first] & ~0xFF00) | 0xAB00, "byte strobes ignored"
    # ap_start: set by a write of 1, held until the kernel's ap_ready, then cleared
    await wr(ki.CTRL, ki.AP_START)
    await ReadOnly()
    assert u(dut.ctrl_ap_start) == 1, "writing ap_start did not start the kernel"
    await RisingEdge(clk)
    dut.ctrl_ap_idle.value = 0
    for _ in range(3):
        await RisingEdge(clk)
    assert await rd(ki.CTRL) == ki.AP_START, "a running kernel reads ap_start only"
    # ap_done with a status word; IER/GIER route it to the interrupt
    await wr(ki.IP_IER, 1)
    await wr(ki.GIER, 1)
    dut.ctrl_ap_idle.value = 1
    await pulse(ctrl_ap_done=1, ctrl_ap_ready=1, ctrl_ap_return=0x5)
    await ReadOnly()
    assert u(dut.ctrl_ap_start) == 0, "ap_ready did not clear ap_start"
    assert u(dut.interrupt) == 1, "ap_done with IER bit 0 and GIER set must raise the interrupt"
    await RisingEdge(clk)
    word = await rd(ki.CTRL)
    assert word == ki.AP_DONE | ki.AP_IDLE | ki.AP_READY | ki.INTERRUPT, f"CTRL after done: {word:#x}"
    assert await rd(ki.CTRL) == ki.AP_IDLE | ki.INTERRUPT, "ap_done/ap_ready are clear on read"
    assert await rd(ki.AP_RETURN) == 0x5, "ap_return is not the kernel's status word"
    await wr(ki.AP_RETURN, 0x77)
    assert await rd(ki.AP_RETURN) == 0x5, "ap_return must be read-only"
    # IP_ISR toggles on write: a 1 clears the pending bit, a second 1 sets it again
    assert await rd(ki.IP_ISR) == 1
    await wr(ki.IP_ISR, 1)
    assert await rd(ki.IP_ISR) == 0 and u(dut.interrupt) == 0, "writing 1 to ISR bit 0 did not clear it"
    await wr(ki.IP_ISR, 1)
    assert await rd(ki.IP_ISR) == 1, "ISR is toggle-on-write"
    await wr(ki.GIER, 0)
    assert u(dut.interrupt) == 0, "GIER = 0 must mask the interrupt"
    await wr(ki.IP_ISR, 1)
    assert await rd(ki.GIER) == 0 and await rd(ki.IP_IER) == 1
    # auto_restart keeps ap_start across the handshake
    await wr(ki.CTRL, ki.AP_START | ki.AUTO_RESTART)
    await pulse(ctrl_ap_done=1, ctrl_ap_ready=1)
    assert await rd(ki.CTRL) & (ki.AP_START | ki.AUTO_RESTART) == ki.AP_START | ki.AUTO_RESTART, \
        "auto_restart must keep ap_start set"
    await wr(ki.CTRL, 0)
    await pulse(ctrl_ap_ready=1)
    assert await rd(ki.CTRL) & (ki.AP_START | ki.AUTO_RESTART) == 0


# ---- the driver through the whole path ---------------------------------------------------------

def _fwd_case(rng, shape: ConvShape, unsigned: bool):
    lo, hi = (0, 256) if unsigned else (-128, 128)
    x = rng.integers(lo, hi, shape.x_shape).astype(np.uint8 if unsigned else np.int8)
    w = rng.integers(-128, 128, shape.w_shape).astype(np.int8)
    # extremes where the engine's FWD packing is tightest (docs/rtl.md)
    x.reshape(-1)[:4] = (255, 255, 0, 1) if unsigned else (-128, 127, -128, 0)
    w.reshape(-1)[:2] = (-128, 127)
    bias = rng.integers(-5000, 5000, shape.co).astype(np.int32)
    acc = golden.conv_fwd_acc(x, w, shape)
    mult = Dyadic(max(1, int(140 * 2 ** 20 / max(1, np.abs(acc).max()))), 20)   # some outputs saturate
    return x, w, bias, mult


def _run_fwd(drv, x, w, bias, y0, samples, shape, unsigned, relu, mult, has_bias=1, k=None, bn_sums=None):
    """The host program: pynq buffers, one driver call; returns y as the ARM reads it (and,
    given ``bn_sums``, the initial int64[2*co + ci] stats buffer, read back: the BN sums, then the
    weights' sums of |w| per input channel)."""
    bx, bw, bb, by, bs = (buffer(a) for a in (x, w, bias, y0, samples))
    extra = {} if bn_sums is None else {"stats": buffer(bn_sums), "b_flags": ki.BF_BN_SUMS | ki.BF_W_SUMS}
    drv.conv_fwd(x=bx, w=bw, bias=bb, y=by, samples=bs, n_samples=len(samples), n=shape.n, ci=shape.ci,
                 h=shape.h, wd=shape.w, co=shape.co, k=shape.k if k is None else k, stride=shape.stride,
                 pad=shape.pad, x_unsigned=int(unsigned), has_bias=has_bias, relu=int(relu),
                 mult_m=mult.m, mult_s=mult.s, **extra)
    return np.array(by) if bn_sums is None else (np.array(by), np.array(extra["stats"]))


@cocotb.test()
async def driver_conv_fwd_vs_golden(dut):
    board, drv, shell = await board_with_shell(dut)
    rng = np.random.default_rng(5)
    cases = [(ConvShape(3, 3, 5, 5, 3, 3, 1, 1), True, True, np.array([2, 0], np.int32)),
             (ConvShape(2, 2, 6, 5, 3, 3, 2, 1), False, False, np.array([1, 0], np.int32)),
             (ConvShape(1, 3, 3, 4, 2, 1, 1, 0), True, False, np.array([0], np.int32))]
    for shape, unsigned, relu, samples in cases:
        x, w, bias, mult = _fwd_case(rng, shape, unsigned)
        ydt = np.uint8 if relu else np.int8
        y0 = np.full(shape.y_shape, 0x5A, ydt)               # what unlisted samples must keep
        got = await bridge(_run_fwd)(drv, x, w, bias, y0, samples, shape, unsigned, relu, mult)
        want = golden.conv_fwd(x, w, bias, mult, stride=shape.stride, pad=shape.pad, relu=relu,
                               samples=samples, out=y0.copy())
        bad = np.argwhere(got != want)
        assert not bad.size, f"{shape} unsigned={unsigned} relu={relu}: y differs from golden at " \
                             f"{bad[:4].tolist()}: got {got[tuple(bad[0])]}, want {want[tuple(bad[0])]}"
        assert shell.last_args["n_samples"] == len(samples) and shell.last_args["mult_m"] == mult.m
        assert shell.last_args["op"] == ki.PASSES["conv_fwd"].op and shell.last_args["g_y"] == 0
        dut._log.info(f"{shape}: y = golden bit for bit ({shell.engine_calls} engine calls so far, "
                      f"{board.register_writes} register writes, {board.register_reads} reads)")
    # BN's batch sums from the output stage (b_flags BF_BN_SUMS): sum y, sum y^2 per channel of
    # the listed samples' codes, into the stats buffer; after them the weight load's sums of |w|
    # per input channel (BF_W_SUMS)
    shape, samples = ConvShape(3, 2, 4, 4, 3, 3, 1, 1), np.array([0, 2], np.int32)
    x, w, bias, mult = _fwd_case(rng, shape, True)
    y0 = np.zeros(shape.y_shape, np.uint8)
    got, st = await bridge(_run_fwd)(drv, x, w, bias, y0, samples, shape, True, True, mult,
                                     bn_sums=np.full(2 * shape.co + shape.ci, -7, np.int64))
    want = golden.conv_fwd(x, w, bias, mult, stride=1, pad=1, relu=True, samples=samples, out=y0.copy())
    assert np.array_equal(got, want), "y is wrong with the BN sums on"
    want_sums = block_ops.conv_fwd_stats(want, samples)
    sums = st[:2 * shape.co].reshape(shape.co, 2)
    assert np.array_equal(sums, want_sums), f"BN sums {sums.tolist()}, want {want_sums.tolist()}"
    want_w = np.abs(w.astype(np.int64)).sum(axis=(0, 2, 3))
    assert np.array_equal(st[2 * shape.co:], want_w), f"weights' sums {st[2 * shape.co:].tolist()}, want {want_w.tolist()}"
    assert shell.last_args["b_flags"] == ki.BF_BN_SUMS | ki.BF_W_SUMS and shell.last_args["stats"] != 0
    assert drv.calls == len(cases) + 1 and shell.calls == len(cases) + 1


@cocotb.test()
async def driver_status_word(dut):
    board, drv, shell = await board_with_shell(dut)
    rng = np.random.default_rng(6)
    shape = ConvShape(2, 2, 4, 4, 2, 3, 1, 1)
    x, w, bias, mult = _fwd_case(rng, shape, True)
    y0 = np.full(shape.y_shape, 0x5A, np.int8)
    bad_calls = [("a 2x2 kernel", dict(k=2), 1), ("sample index 2 in a batch of 2", dict(samples=np.array([0, 2], np.int32)), 2),
                 ("3 samples listed in a batch of 2", dict(samples=np.array([0, 1, 0], np.int32)), 2),
                 ("sample 1 listed twice", dict(samples=np.array([1, 1], np.int32)), 2)]
    for what, change, bit in bad_calls:
        samples = change.get("samples", np.array([0, 1], np.int32))

        def call():
            try:
                _run_fwd(drv, x, w, bias, y0, samples, shape, True, False, mult, k=change.get("k"))
            except KernelError as e:
                return str(e)
            return None
        msg = await bridge(call)()
        assert msg is not None, f"{what}: the driver raised no error"
        assert f"status {bit:#x}" in msg and ki.STATUS_BITS[bit] in msg, f"{what}: {msg}"
        assert shell.engine_calls == 0, f"{what}: the kernel ran the engine"
        dut._log.info(f"{what}: {msg}")
    def no_such_op():      # op 6: no pass; the driver's pass methods never write it
        args = {a.name: 0 for a in IFACE.args}
        args.update(op=6, n=2, ci=2, h=4, wd=4, co=2, k=3, stride=1, pad=1)
        try:
            drv.execute(**args)
        except KernelError as e:
            return str(e)
        return None
    msg = await bridge(no_such_op)()
    assert msg is not None and "status 0x1" in msg and shell.engine_calls == 0, f"op 6: {msg}"
    got = await bridge(_run_fwd)(drv, x, w, bias, y0, np.array([0, 1], np.int32), shape, True, False, mult)
    want = golden.conv_fwd(x, w, bias, mult, stride=1, pad=1, samples=np.array([0, 1]), out=y0.copy())
    assert np.array_equal(got, want), "a valid call after refused ones is wrong"


@cocotb.test()
async def driver_after_a_stolen_done(dut):
    """ap_done is clear-on-read: another reader of CTRL (a register_map print, a debugger)
    can take it before the driver's poll does. The driver must still see the call finish
    (ap_idle with ap_start taken) and read a correct y."""
    board, drv, shell = await board_with_shell(dut)
    rng = np.random.default_rng(8)
    shape = ConvShape(2, 2, 4, 4, 2, 3, 1, 1)
    x, w, bias, mult = _fwd_case(rng, shape, False)
    y0 = np.zeros(shape.y_shape, np.int8)
    stolen = []

    async def other_reader():
        await RisingEdge(dut.ctrl_ap_done)          # the kernel's done pulse
        stolen.append(int.from_bytes((await board.ctrl.read(ki.CTRL, 4)).data, "little"))
    cocotb.start_soon(other_reader())
    samples = np.array([0, 1], np.int32)
    got = await bridge(_run_fwd)(drv, x, w, bias, y0, samples, shape, False, False, mult)
    assert stolen and stolen[0] & ki.AP_DONE, f"the other reader did not take ap_done (read {stolen})"
    want = golden.conv_fwd(x, w, bias, mult, stride=1, pad=1, samples=samples, out=y0.copy())
    assert np.array_equal(got, want), "y is wrong after ap_done was read by someone else"
    assert board.register_reads > 0


def _run_bwd(drv, g, w, gx0, samples, shape, mult):
    bg, bw, bgx, bs = (buffer(a) for a in (g, w, gx0, samples))
    drv.conv_bwd_data(g_y=bg, w=bw, g_x=bgx, samples=bs, n_samples=len(samples), n=shape.n, ci=shape.ci,
                      h=shape.h, wd=shape.w, co=shape.co, k=shape.k, stride=shape.stride, pad=shape.pad,
                      mult_m=mult.m, mult_s=mult.s)
    return np.array(bgx)


@cocotb.test()
async def driver_conv_bwd_data_vs_golden(dut):
    board, drv, shell = await board_with_shell(dut)
    rng = np.random.default_rng(7)
    for shape, samples in ((ConvShape(2, 3, 5, 5, 2, 3, 1, 1), np.array([1], np.int32)),
                           (ConvShape(2, 2, 5, 6, 3, 3, 2, 1), np.array([1, 0], np.int32))):
        g = rng.integers(-32768, 32768, shape.y_shape).astype(np.int16)
        w = rng.integers(-128, 128, shape.w_shape).astype(np.int8)
        g.reshape(-1)[:2] = (-32768, 32767)
        w.reshape(-1)[:2] = (-128, 127)
        peak = max(1, int(np.abs(bwd_data_acc(g, w, shape)).max()))
        mult = Dyadic(max(1, int(20000 * 2 ** 20 / peak)), 20)        # the extremes saturate
        gx0 = np.full(shape.x_shape, 0x1234, np.int16)
        got = await bridge(_run_bwd)(drv, g, w, gx0, samples, shape, mult)
        want = golden.conv_bwd_data(g, w, mult, in_hw=(shape.h, shape.w), stride=shape.stride, pad=shape.pad,
                                    samples=samples, out=gx0.copy())
        bad = np.argwhere(got != want)
        assert not bad.size, f"{shape}: g_x differs from golden at {bad[:4].tolist()}"
        assert shell.last_args["op"] == ki.PASSES["conv_bwd_data"].op and shell.last_args["x"] == 0
        dut._log.info(f"{shape}: g_x = golden bit for bit")
    assert drv.calls == 2 and drv.pass_calls["conv_bwd_data"] == 2


def _run_wgrad(drv, x, g, wm, samples, shape, unsigned, beta_q, lr_q, wd_q, gmsb0):
    """The host program of a weight-gradient call; returns the buffers as the ARM reads them
    after it: w_master (in and out), sign, predicted, the gmsb scratch, stats."""
    bx, bg, bw, bs, bgm = (buffer(a) for a in (x, g, wm, samples, gmsb0))
    bsign = buffer(np.full(shape.w_shape, 0x55, np.int8))
    bpred = buffer(np.full(shape.w_shape, 7, np.uint8))
    bst = buffer(np.full(ki.PSG_STATS_LEN, -9, np.int64))
    drv.conv_bwd_weight_psg(x=bx, g_y=bg, w_master=bw, sign=bsign, predicted=bpred, gmsb=bgm, stats=bst,
                            samples=bs, n_samples=len(samples), n=shape.n, ci=shape.ci, h=shape.h, wd=shape.w,
                            co=shape.co, k=shape.k, stride=shape.stride, pad=shape.pad, x_unsigned=int(unsigned),
                            beta_q=beta_q, lr_q=lr_q, wd_q=wd_q)
    return tuple(np.array(b) for b in (bw, bsign, bpred, bgm, bst))


def _wgrad_case(rng, shape: ConvShape, unsigned: bool):
    lo, hi = (0, 256) if unsigned else (-128, 128)
    x = rng.integers(lo, hi, shape.x_shape).astype(np.uint8 if unsigned else np.int8)
    g = rng.integers(-32768, 32768, shape.y_shape).astype(np.int16)
    x.reshape(-1)[:2] = (255, 255) if unsigned else (-128, 127)
    g.reshape(-1)[:2] = (-32768, 32767)
    wm = rng.integers(-(1 << 29), 1 << 29, shape.w_shape).astype(np.int32)
    wm.reshape(-1)[:2] = (MASTER_LIMIT, -MASTER_LIMIT)       # the update saturates here
    return x, g, wm


@cocotb.test()
async def driver_conv_bwd_weight_psg_vs_golden(dut):
    """The PSG weight gradient through the driver (op 2): every exact MAC and every predictor
    product in the RTL engine, the decision and the sign update of the int32 master weights
    (an inout buffer: flushed before, invalidated after) equal to ``core.golden`` bit for bit,
    and the stats words the C++ writes."""
    board, drv, shell = await board_with_shell(dut)
    rng = np.random.default_rng(9)
    cases = [(ConvShape(3, 2, 4, 4, 3, 3, 1, 1), True, beta_to_fixed(0.05), np.array([2, 0], np.int32)),
             (ConvShape(2, 3, 5, 4, 2, 3, 2, 1), False, 0, np.array([1], np.int32)),
             (ConvShape(2, 2, 3, 3, 2, 1, 1, 0), True, beta_to_fixed(0.5), np.array([0, 1], np.int32))]
    lr_q, wd_q = 1 << 14, 3 << 18
    for shape, unsigned, beta_q, samples in cases:
        x, g, wm = _wgrad_case(rng, shape, unsigned)
        gmsb0 = np.full(shape.w_shape, 0x1234, np.int32)
        got_w, got_sign, got_pred, got_gmsb, got_stats = await bridge(_run_wgrad)(
            drv, x, g, wm, samples, shape, unsigned, beta_q, lr_q, wd_q, gmsb0)
        want = golden.conv_bwd_weight_psg(x, g, wm.copy(), stride=shape.stride, pad=shape.pad, beta_q=beta_q,
                                          lr_q=lr_q, wd_q=wd_q, samples=samples)
        for what, a, b in (("w_master", got_w, want.w_master), ("sign", got_sign, want.sign),
                           ("predicted", got_pred, want.predicted.astype(np.uint8))):
            bad = np.argwhere(a != b)
            assert not bad.size, f"{shape} beta_q={beta_q}: {what} differs from golden at {bad[:4].tolist()}"
        if beta_q:
            assert 0 < want.n_predicted < wm.size, f"{shape}: the case decides {want.n_predicted} of {wm.size}"
        npos, nw = len(samples) * shape.ho * shape.wo, wm.size
        blocks = -(-shape.co // ROWS) * -(-(shape.ci * shape.k * shape.k) // COLS)
        want_stats = [want.n_predicted, want.gmsb_absmax, int(np.abs(want.w_master.astype(np.int64)).max()),
                      npos * nw, blocks, npos * nw, npos * blocks, 0]
        assert got_stats.tolist() == want_stats, f"{shape}: stats {got_stats.tolist()}, want {want_stats}"
        assert (got_gmsb == 0x1234).all(), "one weight group keeps G_msb on chip: the scratch is not written"
        assert shell.last_args["op"] == ki.PASSES["conv_bwd_weight_psg"].op and shell.last_args["w"] == 0
        dut._log.info(f"{shape} beta_q={beta_q}: W, sign, predicted = golden ({want.n_predicted}/{nw} decided)")
    # a refused call: lr_q out of range, status 1 before anything is read or written
    shape, samples = cases[0][0], np.array([0], np.int32)
    x, g, wm = _wgrad_case(rng, shape, True)
    calls_before = shell.engine_calls

    def refused():
        try:
            _run_wgrad(drv, x, g, wm, samples, shape, True, 100, 1 << 30, 0, np.zeros(shape.w_shape, np.int64))
        except KernelError as e:
            return str(e)
        return None
    msg = await bridge(refused)()
    assert msg is not None and "status 0x1" in msg, f"lr_q = 2^30: {msg}"
    assert shell.engine_calls == calls_before, "a refused call ran the engine"
    assert drv.pass_calls["conv_bwd_weight_psg"] == len(cases)


def _pause(seed: int, p: float):
    """An endless pause pattern: each cycle paused with probability p."""
    r = random.Random(seed)
    while True:
        yield r.random() < p


@cocotb.test()
async def driver_under_random_backpressure(dut):
    board, drv, shell = await board_with_shell(dut)
    channels = [board.ctrl.write_if.aw_channel, board.ctrl.write_if.w_channel, board.ctrl.write_if.b_channel,
                board.ctrl.read_if.ar_channel, board.ctrl.read_if.r_channel]
    for side in (board.ram, shell.gmem):
        channels += [side.write_if.aw_channel, side.write_if.w_channel, side.write_if.b_channel,
                     side.read_if.ar_channel, side.read_if.r_channel]
    for i, ch in enumerate(channels):
        ch.set_pause_generator(_pause(100 + i, 0.4))
    shell.busy = 0.3
    stalls = {"b": 0, "r": 0, "in": 0}

    async def count_stalls():
        # the control block holding a response the master does not take, and the engine
        # finding its input FIFO empty while a call streams: the backpressure happened
        while True:
            await RisingEdge(dut.ap_clk)
            await ReadOnly()
            stalls["b"] += u(dut.s_axi_control_bvalid) and not u(dut.s_axi_control_bready)
            stalls["r"] += u(dut.s_axi_control_rvalid) and not u(dut.s_axi_control_rready)
            stalls["in"] += not u(dut.in_empty_n) and not u(dut.ap_idle)
    cocotb.start_soon(count_stalls())
    rng = np.random.default_rng(11)
    shape, samples = ConvShape(3, 2, 4, 4, 3, 3, 1, 1), np.array([2, 0], np.int32)
    x, w, bias, mult = _fwd_case(rng, shape, True)
    y0 = np.full(shape.y_shape, 0x5A, np.uint8)
    got = await bridge(_run_fwd)(drv, x, w, bias, y0, samples, shape, True, True, mult)
    want = golden.conv_fwd(x, w, bias, mult, stride=1, pad=1, relu=True, samples=samples, out=y0.copy())
    assert np.array_equal(got, want), "conv_fwd under backpressure differs from golden"
    x, g, wm = _wgrad_case(rng, shape, True)
    kw = dict(beta_q=beta_to_fixed(0.05), lr_q=1 << 14, wd_q=3 << 18)
    got_w, got_sign, got_pred, _, _ = await bridge(_run_wgrad)(
        drv, x, g, wm, samples, shape, True, kw["beta_q"], kw["lr_q"], kw["wd_q"], np.zeros(shape.w_shape, np.int64))
    want_r = golden.conv_bwd_weight_psg(x, g, wm.copy(), stride=1, pad=1, samples=samples, **kw)
    assert np.array_equal(got_w, want_r.w_master) and np.array_equal(got_sign, want_r.sign)
    assert np.array_equal(got_pred, want_r.predicted.astype(np.uint8))
    assert drv.calls == 2 and shell.calls == 2
    assert all(stalls.values()), f"no backpressure seen on some path: {stalls}"
    dut._log.info(f"stalled cycles: {stalls}")

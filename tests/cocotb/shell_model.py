"""``ShellModel``: a Python model of the HLS shell around the training engine, for the bench
of the PYNQ driver against the RTL (tb_kernel_axi.py, top fpga/rtl/kernel_axi_top.v).

On a board the shell is HLS-generated logic (its loops, its ``m_axi`` DMA, the requantisers)
with the engine (``train_engine_hls.v``) as its RTL blackbox. Vitis HLS is not available
here, so the shell is modelled; everything on either side of it is real:

* its **control** is the RTL control block (``axil_ctrl.v``): the model waits for the
  block's ``ap_start``, reads the argument words from the block's registers (the values the
  driver wrote over AXI4-Lite), and answers with the ap_ctrl_hs handshake (``ap_idle`` low
  while it runs, then ``ap_done`` and ``ap_ready`` for one cycle with ``ap_return``);
* its **DDR traffic** is AXI4 (cocotbext-axi's ``AxiMaster`` on the top's ``shell_gmem``
  port, wired to ``m_axi_gmem`` and the AxiRam there): x, w, bias and the sample list are
  read from the addresses in the argument registers in the layout the kernels' C signature
  defines (hls/include/e2t_kernels.h: x NCHW, w OIHW, row-major), and the output is written
  back the same way, only for the listed samples;
* its **compute** is the RTL engine: every MAC runs in ``train_engine_hls.v``, fed through
  its ap_fifo ports call by call as ``e2train.core.engine_map`` lays the pass out (the
  software-pipelined read-out: call k emits call k-1's rows, a flush call the last ones);
* its **output stage** is ``core.fixedpoint.requantize`` (what ``core.golden`` applies and
  the HLS C++ mirrors, ``e2t_requant``).

The argument checks are the HLS top's (hls/src/e2t_engine.cpp, the passes, e2t_shape.h), in
their order: an op that is no pass returns E2T_ERR_SHAPE; a shape or multiplier outside what
the pass accepts returns E2T_ERR_SHAPE, a sample list longer than the batch, an index outside
[0, n) or a repeated index E2T_ERR_SAMPLE, all before anything else is read or anything
written; a requantisation overflow returns E2T_ERR_OVERFLOW (the model writes nothing then;
the C++ writes saturated codes).

The weight-gradient pass follows hls/src/conv_bwd_weight_psg.cpp: one sweep in which every
block's exact sums (the engine's DSPs, P) and G_msb (its predictor, acc_lo) run on the same
beats, chunk by chunk, added into the partial sums; then the shell's decide-and-update loop,
which is ``core.golden``'s ``psg_decide`` and ``sign_update`` (the rules the C++ mirrors); then
the stats words the C++ writes, counted from the calls this model made. G_msb goes to the gmsb
scratch only where the C++ spills it (beta_q > 0 and more weights than the on-chip partial
sums hold). conv_fwd's BN sums (``BF_BN_SUMS``) are ``core.block_ops.conv_fwd_stats`` of the
codes the output stage wrote (sum y and sum y^2 per channel), as the C++ accumulates them; its
weights' sums (``BF_W_SUMS``) are ``kernel_args.w_abs_sums`` of the weights it read, after them.

Generic over ``kernel_iface.KernelIface``: the argument words are decoded from the iface's
argument order and offsets, and the pass is chosen by the ``op`` argument
(``kernel_iface.PASS_BY_OP``; ``PASSES`` here: the three convolution passes). The block
operations (ops 3..5) are HLS only, with no RTL to drive; a call of one fails the bench.
"""
from __future__ import annotations

import random

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster

from e2train.core import block_ops, engine_map, golden
from e2train.core.fixedpoint import INT8, INT16, UINT8, requantize
from e2train.core.kernel_args import check_beta_q, check_mult, fwd_stats_layout, w_abs_sums
from e2train.core.shapes import ConvShape, ShapeError, check_wgrad_shape
from e2train.device import kernel_iface as ki
from engine_model import Args
from pynq_axi import quiet
from psg_bus import u
from tb_train_engine_hls import hls_call

E2T_ERR_SHAPE, E2T_ERR_SAMPLE, E2T_ERR_OVERFLOW = 1, 2, 4


class KernelStatus(Exception):
    """A call the kernel refuses: its status word."""

    def __init__(self, status: int):
        super().__init__(ki.describe_status(status))
        self.status = status


def arg_slots(iface: ki.KernelIface) -> dict[str, int]:
    """Argument name -> its word in the control block (axil_ctrl.v keeps one data word per
    8-byte argument slot from FIRST_ARG: the layout with 32-bit m_axi offsets)."""
    slots = {}
    for a in iface.args:
        off = iface.offset(a.name) - ki.FIRST_ARG
        if a.nbytes != 8 or off % 8:
            raise ValueError(f"{iface.name}.{a.name}: {a.nbytes}-byte slot at {off + ki.FIRST_ARG:#x}; "
                             f"axil_ctrl.v implements 8-byte slots (M_AXI_ADDR64 = False)")
        slots[a.name] = off // 8
    return slots


class ShellModel:
    def __init__(self, dut, iface: ki.KernelIface, rows: int, cols: int):
        self.dut, self.iface, self.rows, self.cols = dut, iface, rows, cols
        self.slots = arg_slots(iface)
        self.gmem = AxiMaster(AxiBus.from_prefix(dut, "shell_gmem"), dut.ap_clk, dut.ap_rst_n,
                              reset_active_level=False)
        quiet(self.gmem)
        self.rng = random.Random(0)       # hls_call's FIFO-flag randomness
        self.busy = 0.0                   # probability a FIFO flag is off in a cycle (0: full rate)
        self.calls = 0                    # kernel calls answered
        self.engine_calls = 0             # engine calls (flushes included)
        self.last_args: dict | None = None
        dut.ctrl_ap_done.value = 0
        dut.ctrl_ap_ready.value = 0
        dut.ctrl_ap_idle.value = 1
        dut.ctrl_ap_return.value = 0

    # --- ap_ctrl_hs ---------------------------------------------------------------------
    async def run(self) -> None:
        """Serve kernel calls forever (start it with cocotb.start_soon)."""
        d = self.dut
        while True:
            await RisingEdge(d.ap_clk)
            await ReadOnly()
            if not u(d.ctrl_ap_start):
                continue
            args = self.decode(u(d.ctrl_args))
            await RisingEdge(d.ap_clk)
            d.ctrl_ap_idle.value = 0
            try:
                status = await self.dispatch(args)
            except KernelStatus as e:
                status = e.status
            self.last_args = args
            d.ctrl_ap_return.value = status & 0xFFFF_FFFF
            d.ctrl_ap_done.value = 1
            d.ctrl_ap_ready.value = 1
            await RisingEdge(d.ap_clk)
            d.ctrl_ap_done.value = 0
            d.ctrl_ap_ready.value = 0
            d.ctrl_ap_idle.value = 1
            self.calls += 1

    async def dispatch(self, args: dict) -> int:
        """The pass that op names (e2t_engine's switch)."""
        p = ki.PASS_BY_OP.get(args["op"])
        if p is None:
            raise KernelStatus(E2T_ERR_SHAPE)          # no such pass: nothing read, nothing written
        if p.name not in PASSES:
            raise NotImplementedError(f"the shell model has no {p.name} pass (op {p.op})")
        return await PASSES[p.name](self, args)

    def decode(self, words: int) -> dict[str, int]:
        """The argument words as the kernel's C arguments: pointers unsigned, ints signed."""
        out = {}
        for a in self.iface.args:
            v = (words >> (32 * self.slots[a.name])) & 0xFFFF_FFFF
            out[a.name] = v if a.kind == "ptr" else v - ((v >> 31) << 32)
        return out

    # --- DDR over AXI4 --------------------------------------------------------------------
    async def read(self, addr: int, count: int, dtype) -> np.ndarray:
        dt = np.dtype(dtype)
        if count == 0:
            return np.zeros(0, dt)
        resp = await self.gmem.read(addr, count * dt.itemsize)
        return np.frombuffer(bytes(resp.data), dt).copy()

    async def write(self, addr: int, values: np.ndarray) -> None:
        if values.size:
            await self.gmem.write(addr, np.ascontiguousarray(values).tobytes())

    async def per_sample(self, base: int, samples: np.ndarray, shape: tuple, dtype) -> np.ndarray:
        """The listed samples of an NCHW tensor at base, in list order."""
        per = int(np.prod(shape))
        item = np.dtype(dtype).itemsize
        parts = [await self.read(base + int(s) * per * item, per, dtype) for s in samples]
        return np.stack(parts).reshape(len(samples), *shape) if parts else np.zeros((0, *shape), dtype)

    async def write_samples(self, base: int, samples: np.ndarray, values: np.ndarray) -> None:
        per = values[0].size if len(values) else 0
        for s, v in zip(samples, values):
            await self.write(base + int(s) * per * values.itemsize, v)

    # --- checks, in the HLS kernels' order ------------------------------------------------
    async def checked(self, a: dict, scalars=None) -> tuple[ConvShape, np.ndarray]:
        """The shape, the pass's scalars (``scalars(a)`` raises ValueError; default the
        requantisation multiplier), then the sample list."""
        try:
            shape = ConvShape(a["n"], a["ci"], a["h"], a["wd"], a["co"], a["k"], a["stride"], a["pad"])
            (scalars or _mult_ok)(a)
        except (ShapeError, ValueError):
            raise KernelStatus(E2T_ERR_SHAPE) from None
        # e2t_samples_ok (hls/include/e2t_shape.h): the list's length, then each index, then
        # repeats (the seen-bit per sample: a repeat would count a sample twice in dW)
        if not 0 <= a["n_samples"] <= shape.n:
            raise KernelStatus(E2T_ERR_SAMPLE)
        samples = await self.read(a["samples"], a["n_samples"], np.int32)
        if samples.size and (samples.min() < 0 or samples.max() >= shape.n
                             or np.unique(samples).size != samples.size):
            raise KernelStatus(E2T_ERR_SAMPLE)
        return shape, samples

    # --- the engine -------------------------------------------------------------------------
    async def engine(self, calls: list, args_of) -> list[dict]:
        """Run the calls through the blackbox, software-pipelined: call k's rows come out
        during call k+1 (emit), the last ones with a flush call (mode 3). Returns each call's
        cell sums {"p", "lo", "hi"} (rows, cols), as engine_map's collectors take them."""
        d, R, C = self.dut, self.rows, self.cols
        results = []
        for i, c in enumerate(calls):
            pr = c.prows if c.prows is not None else np.zeros((c.beats, R), np.int64)
            pc = c.pcols if c.pcols is not None else np.zeros((c.beats, C), np.int64)
            rows, _ = await hls_call(d, self.rng, args_of(c), c.rows, c.cols, pr, pc, emit=i > 0, busy=self.busy)
            if i:
                results.append(_sums(rows, R, C))
        flush = Args(3, False, False, False, False, False, np.zeros((R, C), bool))
        none = np.zeros((0, R), np.int64), np.zeros((0, C), np.int64)
        rows, _ = await hls_call(d, self.rng, flush, none[0], none[1], none[0], none[1], emit=True, busy=self.busy)
        results.append(_sums(rows, R, C))
        self.engine_calls += len(calls) + 1
        return results

    # --- the passes ---------------------------------------------------------------------------
    async def conv_fwd(self, a: dict) -> int:
        shape, samples = await self.checked(a)
        xdt = np.uint8 if a["x_unsigned"] else np.int8
        fmt = UINT8 if a["relu"] else INT8
        x = await self.per_sample(a["x"], samples, (shape.ci, shape.h, shape.w), xdt)
        w = (await self.read(a["w"], int(np.prod(shape.w_shape)), np.int8)).reshape(shape.w_shape)
        bias = await self.read(a["bias"], shape.co, np.int32) if a["has_bias"] else None
        if a["b_flags"] & ki.BF_W_SUMS:
            # the weight load's sums of |w| per input channel, after the BN sums (with or without samples)
            _, n_bn, _ = fwd_stats_layout(shape.co, shape.ci, bool(a["b_flags"] & ki.BF_BN_SUMS), True)
            await self.write(a["stats"] + 8 * n_bn, w_abs_sums(w))
        if not samples.size:
            return ki.E2T_OK
        listed = ConvShape(len(samples), shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride, shape.pad)
        calls = engine_map.fwd_calls(x, w, listed, rows=self.rows, cols=self.cols)
        unsigned = bool(a["x_unsigned"])
        results = await self.engine(calls, lambda c: Args(0, unsigned, True, False, True, True, c.cell_en))
        acc = engine_map.fwd_collect(calls, results, listed, len(samples))
        if bias is not None:
            acc = acc + bias.astype(np.int64)[None, :, None, None]
        try:
            y = requantize(acc, check_mult((a["mult_m"], a["mult_s"])), fmt)
        except OverflowError:
            return E2T_ERR_OVERFLOW
        await self.write_samples(a["y"], samples, y.astype(fmt.dtype))
        if a["b_flags"] & ki.BF_BN_SUMS:
            # the output stage's BN sums of the codes it wrote: stats[co][2] = sum y, sum y^2
            await self.write(a["stats"], block_ops.conv_fwd_stats(y.astype(fmt.dtype)))
        return ki.E2T_OK

    async def conv_bwd_data(self, a: dict) -> int:
        shape, samples = await self.checked(a)
        g = await self.per_sample(a["g_y"], samples, (shape.co, shape.ho, shape.wo), np.int16)
        w = (await self.read(a["w"], int(np.prod(shape.w_shape)), np.int8)).reshape(shape.w_shape)
        if not samples.size:
            return ki.E2T_OK
        listed = ConvShape(len(samples), shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride, shape.pad)
        calls = engine_map.bwd_calls(g, w, listed, rows=self.rows, cols=self.cols)
        results = await self.engine(calls, lambda c: Args(1, False, True, False, True, True, c.cell_en))
        acc = engine_map.bwd_collect(calls, results, listed, len(samples))
        try:
            gx = requantize(acc, check_mult((a["mult_m"], a["mult_s"])), INT16)
        except OverflowError:
            return E2T_ERR_OVERFLOW
        await self.write_samples(a["g_x"], samples, gx.astype(np.int16))
        return ki.E2T_OK


    async def conv_bwd_weight_psg(self, a: dict) -> int:
        shape, samples = await self.checked(a, _psg_scalars_ok)
        xdt = np.uint8 if a["x_unsigned"] else np.int8
        x = await self.per_sample(a["x"], samples, (shape.ci, shape.h, shape.w), xdt)
        g = await self.per_sample(a["g_y"], samples, (shape.co, shape.ho, shape.wo), np.int16)
        w = (await self.read(a["w_master"], int(np.prod(shape.w_shape)), np.int32)).reshape(shape.w_shape)
        beta_q, taps = a["beta_q"], shape.ci * shape.k * shape.k
        R, C = self.rows, self.cols
        n_blocks = -(-shape.co // R) * -(-taps // C)
        listed = ConvShape(len(samples), shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride, shape.pad)
        npos = len(samples) * shape.ho * shape.wo
        if npos:
            # one sweep: every block's exact sums and G_msb on the same beats (cell_en and the
            # predictor's cells both the block's nr x nc)
            calls = engine_map.wgrad_calls(x, g, listed, rows=R, cols=C)
            unsigned = bool(a["x_unsigned"])
            results = await self.engine(calls, lambda c: Args(2, unsigned, True, True, True, True, c.cell_en,
                                                              pred_rows=c.place["exact"]["nr"],
                                                              pred_cols=c.place["exact"]["nc"]))
            g_exact = engine_map.wgrad_sum(calls, results, listed, "exact").reshape(shape.w_shape)
            g_msb = engine_map.wgrad_sum(calls, results, listed, "pred").reshape(shape.w_shape)
            terms = sum(c.beats * c.place["exact"]["nr"] * c.place["exact"]["nc"] for c in calls)
            beats = sum(c.beats for c in calls)
        else:
            g_exact = g_msb = np.zeros(shape.w_shape, np.int64)
            terms = beats = 0
        if g_exact.size and (g_exact.max() > ACC_MAX or g_exact.min() < -ACC_MAX - 1):
            return E2T_ERR_OVERFLOW                 # a 48-bit sum out of range: W untouched
        sign, predicted, amax = golden.psg_decide(g_msb, g_exact, beta_q if npos else 0)
        w_new = golden.sign_update(w, sign, a["lr_q"], a["wd_q"])
        spill = beta_q > 0 and npos > 0 and not _one_group(shape, R, C)
        if spill:
            await self.write(a["gmsb"], g_msb.astype(np.int32))
        await self.write(a["sign"], sign.astype(np.int8))
        await self.write(a["predicted"], predicted.astype(np.uint8))
        await self.write(a["w_master"], w_new.astype(np.int32))
        stats = np.zeros(ki.PSG_STATS_LEN, np.int64)
        stats[:8] = (int(predicted.sum()), amax, int(np.abs(w_new.astype(np.int64)).max()), terms, n_blocks, terms,
                     beats, w_new.size if spill else 0)
        await self.write(a["stats"], stats)
        return ki.E2T_OK


# The passes this model implements, by kernel_iface pass name (dispatch picks one by op).
PASSES = {"conv_fwd": ShellModel.conv_fwd, "conv_bwd_data": ShellModel.conv_bwd_data,
          "conv_bwd_weight_psg": ShellModel.conv_bwd_weight_psg}

ACC_MAX = (1 << 47) - 1          # the engine's 48-bit P (psg::kAccMax)


def _mult_ok(a: dict) -> None:
    check_mult((a["mult_m"], a["mult_s"]))


def _psg_scalars_ok(a: dict) -> None:
    """wgrad_pass's own checks: n*ho*wo within its partial sums' word and the x rows of a chunk
    within its chunk buffer (core.shapes check_wgrad_shape), beta_q in [0, 2^16], 0 <= lr_q < 2^30, 0 <= wd_q < 2^30."""
    check_wgrad_shape(ConvShape(a["n"], a["ci"], a["h"], a["wd"], a["co"], a["k"], a["stride"], a["pad"]))
    check_beta_q(a["beta_q"])
    if not (0 <= a["lr_q"] < 1 << 30 and 0 <= a["wd_q"] < 1 << 30):
        raise ValueError("lr_q or wd_q out of range")


def _one_group(shape: ConvShape, R: int, C: int) -> bool:
    """wgrad::one_group: the layer's partial sums all on chip (its G_msb never spills)."""
    part, taps = engine_map.WGRAD_PART_WEIGHTS, shape.ci * shape.k * shape.k
    rows_per_group = (part // (R * taps)) * R if R * taps <= part else R
    cols_per_group = taps if R * taps <= part else (part // (R * C)) * C
    return shape.co <= rows_per_group and taps <= cols_per_group


def _sums(rows: list, R: int, C: int) -> dict:
    assert len(rows) == R, f"the engine wrote {len(rows)} result rows, expected {R}"
    arr = np.array(rows, np.int64)
    return {"p": arr[:, :C], "lo": arr[:, C: 2 * C], "hi": arr[:, 2 * C:]}

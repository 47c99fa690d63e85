"""The simulated board: a ``pynq.Device`` whose registers start the passes' C simulation.

Everything the driver touches is pynq's own: ``pynq.MMIO`` over ``mmap``, ``pynq.allocate``
returning ``PynqBuffer``, ``DefaultIP`` subclasses. What is simulated sits behind them:

* **DDR and the ARM caches.** Buffers are *not* coherent, as on a Zynq with cacheable
  buffers: the ARM reads and writes a CPU view; ``flush()`` copies a range to the DDR
  the kernels see, ``invalidate()`` copies it back. A driver that forgets either reads
  stale data here as it would on a board.
* **The IP's register file** (``kernel_iface.E2T_ENGINE``, one IP for the conv passes and the
  block operations): CTRL with ap_start / ap_done (clear on read) / ap_idle / ap_ready,
  interrupt registers, ap_return, argument registers. Writing ap_start decodes ``op`` and runs
  that op's C simulation (``core.csim``; ``core.golden`` where asked, where the C-sim library
  is not built, or for an op the library does not have yet) on the DDR at the addresses in
  the registers, synchronously, then reports done. Registers the kernel would refuse come
  back as its status bits (ap_return), with nothing written.
* **Time and energy, modelled.** Each call advances a modelled clock by the training engine's
  cycles for the call (``core.call_price``: ``price_call`` for a conv pass, from its shape, its
  sample list and, for the weight gradient, the decisions the kernel made; ``price_block`` for
  a block operation, from its tensor, its sample list and its b_flags) at the fabric clock, and
  modelled dynamic energy by the energy model's price of the call's work (``core.energy``).
  Only the samples in the list are counted: skipped samples cost nothing.

Modelled activity over wall-clock time (what a simulated power meter reads)
--------------------------------------------------------------------------
Each kernel call (and any activity recorded with ``record_activity``, e.g. ARM-side
layers) is an interval [t0, t1] of ``time.monotonic()`` in which it ran on this machine,
carrying its modelled dynamic energy E. Power at wall time t is

    power_w(t) = static_w + sum of E / (t1 - t0) over the intervals that contain t

so that the integral of power over any wall-clock window is exactly static_w times the
window plus the modelled dynamic energy of what ran inside it (``energy_between``). It is
the modelled board's energy *laid on this machine's wall clock*, not the energy the modelled
board would draw over its own (modelled) time: the C simulation is slower than the fabric,
so the dynamic part appears as a lower power over a longer time. A meter that samples
should report ``mean_power_w(t_prev, t)`` for each sample (what averaging meters do), so
that its integral is exact however short the calls are.
"""
from __future__ import annotations

import bisect
import gc
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import pynq
from pynq.buffer import PynqBuffer

from ..core import energy as _energy
from ..core import call_price, golden, kernel_args, perfmodel
from ..core.block_ops import Shortcut
from ..core.fixedpoint import Dyadic, absmax
from ..core.shapes import ConvShape
from ..core.work import Work
from . import kernel_iface as ki

DDR_BASE = 0x1000_0000           # physical base of the simulated CMA region
DDR_BYTES = 256 << 20            # zero pages are lazily backed: unused space costs nothing
_ALIGN = 64                      # cache-line alignment, as pynq's CMA allocator


class SimulatedBusError(RuntimeError):
    """A kernel was started with an address outside the buffers allocated on the device
    (on a board: a bus error, a hang or memory corruption)."""


@dataclass
class KernelStats:
    calls: int = 0
    cycles: int = 0
    samples: int = 0                 # samples processed (SLU: listed ones only)
    work: Work = field(default_factory=Work)
    dynamic_j: float = 0.0


_UNKNOWN = object()


class _RegisterArray(np.ndarray):
    """A numpy view of a kernel's register file that tells the kernel about every access,
    so that pynq's ``MMIO`` (which reads and writes ``mmio.array``) and ``RegisterMap``
    work unchanged on the simulated board."""

    def __array_finalize__(self, obj):
        self._sim = getattr(obj, "_sim", None)
        self._off = _UNKNOWN

    def _offset(self):
        """Byte offset of this array in the register file, or None for an array that does
        not lie in it (arithmetic on a view). Known once: a view never moves, and the driver
        touches the same views at every call."""
        off = self._off
        if off is _UNKNOWN:
            words = self._sim.words
            base = words.__array_interface__["data"][0]
            ptr = self.__array_interface__["data"][0]
            off = self._off = ptr - base if base <= ptr < base + words.nbytes else None
        return off

    def _span(self, key):
        """Word range of the register file that ``self[key]`` touches, or None."""
        if self._sim is None or (off := self._offset()) is None:
            return None                       # not a view of the registers
        if isinstance(key, (int, np.integer)) and self.ndim == 1:
            i = int(key) + (self.shape[0] if key < 0 else 0)
            lo = off + i * self.strides[0]
            return lo // 4, (lo + self.itemsize - 1) // 4
        return off // 4, (off + max(self.nbytes, 1) - 1) // 4

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        span = self._span(key)
        if span is not None:
            self._sim.on_write(*span)

    def __getitem__(self, key):
        val = super().__getitem__(key)
        if not isinstance(val, np.ndarray):
            span = self._span(key)
            if span is not None:
                self._sim.on_read(*span)
        return val


class SimKernel:
    """The IP's register file and behaviour; ``stats`` per pass, ``pass_name`` the pass of
    the last call (decoded from op)."""

    def __init__(self, iface: ki.KernelIface, device: "SimDevice"):
        self.iface = iface
        self.device = device
        self.words = np.zeros(ki.ADDR_RANGE // 4, np.uint32)
        self.stats = {name: KernelStats() for name in ki.PASSES}
        self.pass_name: str | None = None
        self.busy_reads = 0        # a call stays busy for this many reads of CTRL (kept by reset)
        self.reset()

    def reset(self) -> None:
        """Power-on state. ``hang`` is the fault injection: accept ap_start, never finish.
        ``busy_reads``: a call's first this many reads of CTRL find it busy (ap_idle low), as a
        real call lasts while the driver polls; it is done after the last (0: done at once)."""
        self.words[:] = 0          # in place: the drivers' MMIO views stay valid
        self._done = self._ready = self._busy = self.hang = False
        self._running: tuple[int, int] | None = None   # (status, CTRL reads left) of a busy call
        self._isr = 0              # IP_ISR bits
        self._status = 0           # ap_return of the last call
        self.last_error: str | None = None
        self._compose()

    def view(self, offset: int, length: int) -> _RegisterArray:
        arr = self.words[offset // 4: (offset + length + 3) // 4].view(_RegisterArray)
        arr._sim = self
        return arr

    # --- register semantics -------------------------------------------------------
    def _compose(self) -> None:
        w = int(self.words[0])
        ctrl = w & ki.AUTO_RESTART
        ctrl |= ki.AP_DONE if self._done else 0
        ctrl |= ki.AP_READY if self._ready else 0
        ctrl |= 0 if self._busy else ki.AP_IDLE
        ctrl |= ki.AP_START if (self._busy and self.hang and not self._ready) else 0
        isr = int(self.words[ki.IP_ISR // 4]) & 3
        if int(self.words[ki.GIER // 4]) & 1 and isr & int(self.words[ki.IP_IER // 4]):
            ctrl |= ki.INTERRUPT
        self.words[0] = ctrl

    def on_read(self, lo: int, hi: int) -> None:
        if lo <= 0 <= hi and self._running is not None:   # a call still busy: one read less
            status, left = self._running
            self._running = None if left <= 1 else (status, left - 1)
            if self._running is None:
                self._finish(status)
        elif lo <= 0 <= hi:          # ap_done and ap_ready are clear-on-read
            self._done = self._ready = False
            self._compose()

    def on_write(self, lo: int, hi: int) -> None:
        words = self.words
        if lo <= ki.IP_ISR // 4 <= hi:           # toggle on write
            self._isr ^= int(words[ki.IP_ISR // 4]) & 3
            words[ki.IP_ISR // 4] = self._isr
        if lo <= ki.AP_RETURN // 4 <= hi:        # read-only: a write does not stick
            words[ki.AP_RETURN // 4] = self._status & 0xFFFF_FFFF
        start = lo <= 0 <= hi and int(words[0]) & ki.AP_START
        if lo <= ki.IP_ISR // 4:
            self._compose()       # read-only CTRL bits are not writable; interrupt follows GIE/IER/ISR
        if start and not self._busy:
            self._start()

    def _finish(self, status: int) -> None:
        self._status = status
        self.words[ki.AP_RETURN // 4] = status & 0xFFFF_FFFF
        self._busy = False
        self._done = self._ready = True
        if int(self.words[ki.IP_IER // 4]) & 1:
            self._isr |= 1
            self.words[ki.IP_ISR // 4] = self._isr
        self._compose()

    def _start(self) -> None:
        self._busy = True
        if self.hang:
            self._compose()
            return
        t0 = time.monotonic()
        try:
            status, shape, n_active, perf_kw = self.device._run_kernel(self)
        except SimulatedBusError:
            self._finish(1)
            raise
        t1 = time.monotonic()
        if status == ki.E2T_OK:
            self.device._account(self, shape, n_active, perf_kw, t0, t1)
        if self.busy_reads > 0:
            self._running = (status, int(self.busy_reads))
            self._compose()
            return
        self._finish(status)

    # --- decoded arguments --------------------------------------------------------
    def arg(self, name: str) -> int:
        a = self.iface.arg(name)
        off = self.iface.offset(name) // 4
        if a.kind == "ptr":
            hi = int(self.words[off + 1]) << 32 if ki.M_AXI_ADDR64 else 0
            return int(self.words[off]) | hi
        v = int(self.words[off])
        return v - (1 << 32) if v & 0x8000_0000 else v


def _ddr_pair(ddr_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The two views of the simulated DDR. Zero pages cost no memory, but they do cost address
    space: a 32-bit host (an armv7 board running the simulated board, `make board-test-armv7`)
    has about 3 GiB of it, and a dropped SimDevice is only freed when the cycle collector runs
    (its kernels point back at it). So when the space runs out, collect and try once more."""
    try:
        return np.zeros(ddr_bytes, np.uint8), np.zeros(ddr_bytes, np.uint8)
    except MemoryError:
        gc.collect()
    return np.zeros(ddr_bytes, np.uint8), np.zeros(ddr_bytes, np.uint8)


class SimDevice(pynq.Device):
    """A simulated Zynq-7020 board with the e2train IP (e2t_engine) in its fabric."""

    def __init__(self, *, impl: str = "auto", ddr_bytes: int = DDR_BYTES,
                 energy_model: _energy.EnergyModel | None = None):
        super().__init__("e2train-sim")
        self.name = "e2train simulated board"
        self.capabilities = {"MEMORY_MAPPED": True, "REGISTER_RW": False, "CALLABLE": False}
        self.impl_name, self.impl = _kernel_impl(impl)
        # the block operations and conv_fwd's BN sums: from the same implementation where it
        # has them, else from the golden models (the C simulation may not have them yet)
        self.block_impl = self.impl if all(hasattr(self.impl, op) for op in call_price.BLOCK_OPS) else golden
        self.block_impl_name = self.impl_name if self.block_impl is self.impl else "golden"
        if self.block_impl_name != self.impl_name:
            warnings.warn(f"simulated board: the {self.impl_name} kernels have no block operations; running "
                          f"golden's (rebuild the C simulation with `make csim`)", RuntimeWarning, stacklevel=2)
        self._fwd_stats = kernel_args.takes_arg(self.impl.conv_fwd, "stats")
        self._fwd_w_sums = kernel_args.takes_arg(self.impl.conv_fwd, "w_sums")
        self._cpu, self._ddr = _ddr_pair(ddr_bytes)   # what the ARM sees through its caches; what the fabric sees
        self._free: list[tuple[int, int]] = [(0, ddr_bytes)]   # (offset, size), sorted
        self._allocs: dict[int, int] = {}             # offset -> size
        self._lock = threading.Lock()
        self.kernels = {name: SimKernel(iface, self) for name, iface in ki.KERNELS.items()}
        self.engine = self.kernels[ki.E2T_ENGINE.name]
        self.energy_model = energy_model or _energy.EnergyModel.zynq7020()
        self.modelled_seconds = 0.0
        self.modelled_dynamic_j = 0.0
        self.work = Work()
        # activity on the wall clock: sorted, non-overlapping intervals with their energy
        self._t0: list[float] = []
        self._t1: list[float] = []
        self._ej: list[float] = []
        self._cum: list[float] = [0.0]              # prefix sums of _ej

    # --- pynq.Device ----------------------------------------------------------------
    @property
    def default_memory(self):
        return self

    def allocate(self, shape, dtype, cacheable=True, **kwargs) -> PynqBuffer:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if np.ndim(shape) else int(shape)
        nbytes = max(count * dtype.itemsize, 1)
        size = -(-nbytes // _ALIGN) * _ALIGN
        with self._lock:
            for i, (off, free) in enumerate(self._free):
                if free >= size:
                    break
            else:
                raise MemoryError(f"simulated board out of buffer memory: {nbytes} bytes asked, "
                                  f"{sum(f for _, f in self._free)} free in {len(self._free)} pieces")
            if free == size:
                del self._free[i]
            else:
                self._free[i] = (off + size, free - size)
            self._allocs[off] = size
        phys = DDR_BASE + off
        buf = PynqBuffer(shape, dtype, buffer=self._cpu, offset=off, device=self,
                         device_address=phys, bo=phys, coherent=False)
        weakref.finalize(buf, self._release, off)
        return buf

    def _release(self, off: int) -> None:
        with self._lock:
            size = self._allocs.pop(off)
            i = bisect.bisect(self._free, (off, 0))
            self._free.insert(i, (off, size))
            # merge with the neighbours
            if i + 1 < len(self._free) and off + size == self._free[i + 1][0]:
                self._free[i] = (off, size + self._free.pop(i + 1)[1])
            if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == off:
                prev = self._free.pop(i - 1)
                self._free[i - 1] = (prev[0], prev[1] + self._free[i - 1][1])

    def _range(self, bo: int, offset: int, size: int) -> slice:
        lo = bo + offset - DDR_BASE
        return slice(lo, lo + size)

    def flush(self, bo, offset, ptr, size):
        r = self._range(bo, offset, size)
        self._ddr[r] = self._cpu[r]

    def invalidate(self, bo, offset, ptr, size):
        r = self._range(bo, offset, size)
        self._cpu[r] = self._ddr[r]

    def mmap(self, base_addr: int, length: int):
        for k in self.kernels.values():
            b = k.iface.base_addr
            if b <= base_addr and base_addr + length <= b + ki.ADDR_RANGE:
                return k.view(base_addr - b, length)
        if DDR_BASE <= base_addr and base_addr + length <= DDR_BASE + self._ddr.size:
            lo = base_addr - DDR_BASE                # an uncached mapping of DDR
            return self._ddr[lo: lo + length].view(np.uint32)
        raise SimulatedBusError(f"nothing is mapped at {base_addr:#x}+{length:#x} on the simulated board")

    def close(self):
        pass

    @property
    def calls_end_at_once(self) -> bool:
        """A call is done at the first read of CTRL (no busy reads): no board time passes inside
        it, so a driver polling it has no time to run the ARM's side work in (PynqBackend.set_idle)."""
        return self.engine.busy_reads == 0

    # --- fault injection --------------------------------------------------------------
    def set_busy_reads(self, reads: int) -> None:
        """Make every call's first ``reads`` reads of CTRL find it busy (0: done at once)."""
        if int(reads) < 0:
            raise ValueError(f"busy_reads must be >= 0, got {reads!r}")
        self.engine.busy_reads = int(reads)

    def inject_hang(self, hang: bool = True) -> None:
        """Make the IP accept ap_start and never finish (until ``reset_kernels``)."""
        self.engine.hang = hang

    def reset_kernels(self) -> None:
        """What reloading the bitstream does: every kernel idle, registers zero, faults
        cleared (the modelled totals are kept)."""
        for k in self.kernels.values():
            k.reset()

    # --- running a kernel -------------------------------------------------------------
    def _ddr_array(self, addr: int, shape, dtype, what: str) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        off = addr - DDR_BASE
        # the range must lie inside one live allocation, as a kernel given a correct
        # buffer would read; anything else is a driver bug to report, not to simulate
        starts = sorted(self._allocs)
        i = bisect.bisect_right(starts, off) - 1
        if addr == 0 or i < 0 or off + nbytes > starts[i] + self._allocs[starts[i]]:
            raise SimulatedBusError(
                f"{what}: {nbytes} bytes at {addr:#x} are not inside one allocated buffer "
                f"(a wrong pointer or a buffer too small for the shape in the registers)")
        return self._ddr[off: off + nbytes].view(dtype).reshape(shape)

    def _run_kernel(self, k: SimKernel):
        """Decode the registers, run the pass that op names on DDR. Returns (status, shape,
        n_active, what else the performance model needs). Arguments the IP would reject come
        back as its status bits (hls/src/e2t_engine.cpp and the passes, in their order)."""
        g = k.arg
        p = ki.PASS_BY_OP.get(g("op"))
        k.pass_name = None
        if p is None:
            k.last_error = f"op {g('op')} is none of the passes {sorted(ki.PASS_BY_OP)}"
            return 1, None, 0, {}
        name = k.pass_name = p.name
        if name in call_price.BLOCK_OPS:
            return self._run_block_op(k, name)
        try:
            shape = ConvShape(g("n"), g("ci"), g("h"), g("wd"), g("co"), g("k"), g("stride"), g("pad"))
        except ValueError as e:
            k.last_error = str(e)
            return 1, None, 0, {}
        ns = g("n_samples")
        if not 0 <= ns <= shape.n:
            k.last_error = f"n_samples {ns} outside [0, {shape.n}]"
            return 2, None, 0, {}
        samples = (self._ddr_array(g("samples"), (ns,), np.int32, f"{name}.samples").copy()
                   if ns else np.zeros(0, np.int32))
        if ns and (samples.min() < 0 or samples.max() >= shape.n or np.unique(samples).size != ns):
            k.last_error = f"sample list {samples.tolist()} invalid for a batch of {shape.n}"
            return 2, None, 0, {}
        arr = lambda arg, shp, dt: self._ddr_array(g(arg), shp, dt, f"{name}.{arg}")  # noqa: E731
        perf_kw: dict = {}
        try:
            if name == "conv_fwd":
                xdt = np.uint8 if g("x_unsigned") else np.int8
                ydt = np.uint8 if g("relu") else np.int8
                x = arr("x", shape.x_shape, xdt)
                w = arr("w", shape.w_shape, np.int8)
                bias = arr("bias", (shape.co,), np.int32) if g("has_bias") else None
                y = arr("y", shape.y_shape, ydt)
                bn, ws = bool(g("b_flags") & ki.BF_BN_SUMS), bool(g("b_flags") & ki.BF_W_SUMS)
                _, n_bn, n_st = kernel_args.fwd_stats_layout(shape.co, shape.ci, bn, ws)
                out_st = arr("stats", (n_st,), np.int64) if n_st else None
                kw = dict(stride=shape.stride, pad=shape.pad, relu=bool(g("relu")), samples=samples, out=y)
                st, wsum = np.zeros((shape.co, 2), np.int64), np.zeros(shape.ci, np.int64)
                if bn and self._fwd_stats:
                    kw["stats"] = st
                if ws and self._fwd_w_sums:
                    kw["w_sums"] = wsum
                self.impl.conv_fwd(x, w, bias, Dyadic(g("mult_m"), g("mult_s")), **kw)
                # the output stage's and the weight load's sums (golden's definitions where impl has none)
                if bn:
                    out_st[:n_bn] = (st if self._fwd_stats else golden.conv_fwd_stats(y, samples)).ravel()
                    perf_kw["bn_sums"] = True
                if ws:
                    out_st[n_bn:] = wsum if self._fwd_w_sums else kernel_args.w_abs_sums(w)
                    perf_kw["w_sums"] = True
            elif name == "conv_bwd_data":
                gy = arr("g_y", shape.y_shape, np.int16)
                w = arr("w", shape.w_shape, np.int8)
                gx = arr("g_x", shape.x_shape, np.int16)
                self.impl.conv_bwd_data(gy, w, Dyadic(g("mult_m"), g("mult_s")), in_hw=(shape.h, shape.w),
                                        stride=shape.stride, pad=shape.pad, samples=samples, out=gx)
            else:
                x = arr("x", shape.x_shape, np.uint8 if g("x_unsigned") else np.int8)
                gy = arr("g_y", shape.y_shape, np.int16)
                wm = arr("w_master", shape.w_shape, np.int32)
                sign = arr("sign", shape.w_shape, np.int8)
                pred = arr("predicted", shape.w_shape, np.uint8)
                gmsb = arr("gmsb", shape.w_shape, np.int32)
                stats = arr("stats", (ki.PSG_STATS_LEN,), np.int64)
                kw = dict(stride=shape.stride, pad=shape.pad, beta_q=g("beta_q"), lr_q=g("lr_q"),
                          wd_q=g("wd_q"), samples=samples)
                stats[:] = -1           # counters the golden model does not produce: "not reported"
                if hasattr(self.impl, "conv_bwd_weight_psg_stats"):      # the C simulation
                    res, st = self.impl.conv_bwd_weight_psg_stats(x, gy, wm.copy(), **kw)
                    stats[ki.STAT_EXACT_TERMS] = st.exact_terms
                    stats[ki.STAT_TILES_SKIPPED] = st.tiles_skipped
                else:
                    res = self.impl.conv_bwd_weight_psg(x, gy, wm.copy(), **kw)
                wm[...] = res.w_master
                sign[...] = res.sign
                pred[...] = res.predicted
                # the decisions the kernel made say which blocks its exact sweep ran (stats[4])
                perf_kw.update(predictor_on=g("beta_q") > 0,
                               predicted=np.asarray(res.predicted, bool).copy() if g("beta_q") > 0 else None)
                stats[ki.STAT_N_PREDICTED] = res.n_predicted
                stats[ki.STAT_GMSB_ABSMAX] = res.gmsb_absmax
                stats[ki.STAT_W_ABSMAX] = res.w_absmax if res.w_absmax is not None else absmax(res.w_master)
                gmsb[...] = 0          # scratch: its contents are not part of the contract
        except SimulatedBusError:
            raise
        except OverflowError as e:
            k.last_error = str(e)
            return 4, None, 0, {}
        except (ValueError, TypeError, RuntimeError) as e:
            k.last_error = str(e)
            return 1, None, 0, {}
        k.last_error = None
        return ki.E2T_OK, shape, int(ns), perf_kw

    def _run_block_op(self, k: SimKernel, name: str):
        """Ops 3..5 (``kernel_iface.PASSES``): decode the block tensor (n, co, h, wd), the sample
        list, b_flags and the shortcut geometries, run the op on DDR. Returns what
        ``_run_kernel`` does, the shape being the block tensor's (n, c, h, w) and the extra
        the flags that ``call_price.price_block`` prices."""
        g = k.arg
        flags, shift = g("b_flags"), g("b_shift")

        def refuse(status: int, why: str):
            k.last_error = why
            return status, None, 0, {}

        # the tensor before anything is read (its extent sizes the reads); the shift, the
        # multipliers and the shortcut geometry are checked by the op's argument check
        # (core.kernel_args, the one copy every back-end runs), a refusal there is status 1
        try:
            n, c, h, w = kernel_args.check_block_shape(name, (g("n"), g("co"), g("h"), g("wd")))
        except ValueError as e:
            return refuse(1, str(e))
        ns = g("n_samples")
        if not 0 <= ns <= n:
            return refuse(2, f"n_samples {ns} outside [0, {n}]")
        samples = (self._ddr_array(g("samples"), (ns,), np.int32, f"{name}.samples").copy()
                   if ns else np.zeros(0, np.int32))
        if ns and (samples.min() < 0 or samples.max() >= n or np.unique(samples).size != ns):
            return refuse(2, f"sample list {samples.tolist()} invalid for a batch of {n}")
        nchw = (n, c, h, w)
        arr = lambda arg, shp, dt: self._ddr_array(g(arg), shp, dt, f"{name}.{arg}")  # noqa: E731

        def source(ptr: str, pre: str):
            """A tensor read through a shortcut: (array, Shortcut), its extent checked first."""
            sc = Shortcut(g(f"{pre}_stride"), g(f"{pre}_lo"))
            shp = kernel_args.check_block_shape(f"{name}.{ptr}", (n, g(f"{pre}_c"), g(f"{pre}_h"), g(f"{pre}_w")))
            dt = np.uint8 if ptr == "b_r" else np.int16
            return arr(ptr, shp, dt), sc

        bi = self.block_impl
        residual = bool(flags & ki.BF_RESIDUAL)
        try:
            if name == "bn_act":
                relu = bool(flags & ki.BF_RELU)
                r, sc = source("b_r", "r") if residual else (None, Shortcut())
                coef = arr("b_coef", (2, c), np.int64)
                o = arr("b_o", nchw, np.uint8 if relu else np.int8)
                sums = arr("b_sums", (n * c + n,), np.int64)
                out, pooled, vmax = bi.bn_act(arr("b_y", nchw, np.int8), coef[0], coef[1], shift, r=r,
                                              r_mult=g("b_m1"), shortcut=sc, samples=samples, relu=relu)
                # the kernel writes the samples it processes: every one with a shortcut (the
                # unlisted take it alone), only the listed ones without (hls/src/block_ops.cpp)
                rows = slice(None) if residual else samples
                o[rows] = out[rows]
                sums[: n * c].reshape(n, c)[rows] = pooled[rows]
                sums[n * c:][rows] = vmax[rows]
                price = dict(residual=residual)
            elif name == "bn_bwd_reduce":
                two = bool(flags & ki.BF_TWO_SOURCES)
                r, rsc = source("b_r", "r") if residual else (None, Shortcut())
                gb, gsc = source("b_gb", "gb") if two else (None, Shortcut())
                g_m = arr("b_gm", nchw, np.int16)
                sums = arr("b_sums", (3 * c + 2 * n,), np.int64)
                gm, red, gate = bi.bn_bwd_reduce(arr("b_o", nchw, np.uint8), arr("b_y", nchw, np.int8),
                                                 arr("b_ga", nchw, np.int16), ma=g("b_m1"), g_b=gb, mb=g("b_m2"),
                                                 b_shortcut=gsc, shift=shift, r=r, r_shortcut=rsc, samples=samples)
                g_m[...] = gm
                sums[: 3 * c] = red.reshape(-1)
                sums[3 * c:] = gate.reshape(-1)
                price = dict(two_sources=two, gate=residual)
            else:
                coef = arr("b_coef", (3, c), np.int64)
                g_y = arr("b_gy", nchw, np.int16)
                res = bi.bn_bwd_apply(arr("b_gm", nchw, np.int16), arr("b_y", nchw, np.int8), coef[0], coef[1],
                                      coef[2], shift, samples=samples)
                if ns:
                    g_y[samples] = res[samples]     # the listed samples only, as the kernel writes
                price = {}
        except SimulatedBusError:
            raise
        except (ValueError, TypeError) as e:
            return refuse(1, str(e))
        k.last_error = None
        return ki.E2T_OK, nchw, int(ns), price

    def _account(self, k: SimKernel, shape, n_active: int, perf_kw: dict,
                 t0: float, t1: float) -> None:
        name = k.pass_name
        if name in call_price.BLOCK_OPS:
            work, cycles = call_price.price_block(name, shape, n_active, **perf_kw)
        else:
            work, cycles = call_price.price_call(name, shape, n_active, **perf_kw)
        dyn = self.energy_model.dynamic_j(work)
        s = k.stats[name]
        s.calls += 1
        s.cycles += cycles
        s.samples += n_active
        s.work += work
        s.dynamic_j += dyn
        self.work += work
        self.modelled_seconds += cycles / perfmodel.CLOCK_HZ
        self.modelled_dynamic_j += dyn
        self.record_activity(t0, t1, dyn)

    # --- modelled activity on the wall clock --------------------------------------------
    def record_activity(self, t0: float, t1: float, energy_j: float) -> None:
        """Add modelled dynamic energy spent between wall-clock times t0 and t1
        (``time.monotonic()``). Intervals must not go back in time."""
        if not energy_j >= 0:
            raise ValueError(f"energy must be >= 0 J, got {energy_j!r}")
        with self._lock:
            start = max(t0, self._t1[-1]) if self._t1 else t0
            end = max(t1, start + 1e-9)       # a zero-length interval would be infinite power
            self._t0.append(start)
            self._t1.append(end)
            self._ej.append(float(energy_j))
            self._cum.append(self._cum[-1] + float(energy_j))

    @property
    def static_w(self) -> float:
        return self.energy_model.idle_power_w()

    def dynamic_between(self, ta: float, tb: float) -> float:
        """Modelled dynamic energy (J) laid on the wall-clock window [ta, tb]."""
        if tb <= ta:
            return 0.0
        with self._lock:
            i = bisect.bisect_right(self._t1, ta)        # first interval ending after ta
            j = bisect.bisect_left(self._t0, tb)         # intervals starting before tb
            if j <= i:
                return 0.0
            total = self._cum[j] - self._cum[i]
            for idx in {i, j - 1}:                       # partial overlap at the ends
                a, b, e = self._t0[idx], self._t1[idx], self._ej[idx]
                inside = max(0.0, min(b, tb) - max(a, ta))
                total -= e - e * inside / (b - a)
            return total

    def energy_between(self, ta: float, tb: float) -> float:
        """Modelled energy (J) over the wall-clock window: static power plus dynamic."""
        return self.static_w * max(0.0, tb - ta) + self.dynamic_between(ta, tb)

    def mean_power_w(self, ta: float, tb: float) -> float:
        if not tb > ta:
            raise ValueError(f"mean power needs tb > ta, got [{ta}, {tb}]")
        return self.energy_between(ta, tb) / (tb - ta)

    def power_w(self, t: float) -> float:
        """Instantaneous modelled power (W) at wall-clock time t."""
        with self._lock:
            i = bisect.bisect_right(self._t0, t) - 1
            if i >= 0 and self._t0[i] <= t < self._t1[i]:
                return self.static_w + self._ej[i] / (self._t1[i] - self._t0[i])
        return self.static_w

    def activity(self) -> dict:
        """Totals so far, each labelled as modelled."""
        return {
            "energy_kind": _energy.ENERGY_KIND,
            "impl": self.impl_name,
            "block_impl": self.block_impl_name,
            "modelled_seconds": self.modelled_seconds,
            "modelled_dynamic_j": self.modelled_dynamic_j,
            "kernels": {n: {"calls": s.calls, "cycles": s.cycles, "samples": s.samples,
                            "dynamic_j": s.dynamic_j, "macs": s.work.total_macs}
                        for k in self.kernels.values() for n, s in k.stats.items()},
        }


def _kernel_impl(impl: str):
    """The kernels' implementation: the C simulation, or the golden model where asked
    (or, for "auto", where the C-sim library has not been built: ``make csim``)."""
    if impl == "golden":
        return "golden", golden
    if impl not in ("csim", "auto"):
        raise ValueError(f"kernel implementation must be 'csim', 'golden' or 'auto', got {impl!r}")
    try:
        from ..core import csim
        csim.load()
        return "csim", csim
    except (ImportError, OSError, RuntimeError) as e:
        if impl == "csim":
            raise RuntimeError(f"the kernels' C simulation is not available ({e}); build it with "
                               f"`make csim`") from e
        warnings.warn(f"simulated board: C simulation unavailable ({e}); running the golden "
                      f"models instead (build it with `make csim`)", RuntimeWarning, stacklevel=3)
        return "golden", golden

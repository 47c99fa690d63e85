"""The conv backend over the PYNQ driver: the kernel functions of ``core.golden`` (the three
conv passes, conv_fwd's BN sums, and the block operations ``bn_act``, ``bn_bwd_reduce``,
``bn_bwd_apply``), with the same signatures and results, computed by the fabric's one IP, each
an op of e2t_engine (or by the simulated board).

Tensors stay where the fabric wrote them. Once a caller has marked a training step
(``begin_step``, which the trainer calls before each step and each evaluation batch), every
activation-sized output (y, o, g_m, g_y, g_x), the block operations' sums and the weight
gradient's signs and decisions are written into the next buffer of a *step arena* and handed
back as numpy views of it; a later call that takes such a view as an input passes the buffer
itself to the kernel, with no copy. The master weights get a buffer of their own, which the
weight-gradient call updates in place and hands back; a caller can ask for one for any array it
rewrites and passes again (``pinned``: the trainer re-derives each layer's int8 weights into
one). On a board the ARM would otherwise memcpy every tensor into a CMA buffer and back out
around every call: 6.7 MB a step of the demo's 8-bit baseline, 28 KB now. It copies only
what it made itself (the network input, the loss gradient,
a layer's master weights and int8 weights the first time) and conv_fwd's BN sums into the
caller's array: docs/board.md, "Tensors stay in place".

The arena has a pool for the step's forward outputs and two for the backward, which a block
and the next one use in turn (``backward_block``): a block's backward outputs are read by the
next block's backward only, so each block reuses the buffers of the block two before it. An
output takes the smallest free buffer of its pool that holds it; buffers unused for a few
steps go back. Buffers are handed out again from the next ``begin_step`` on, so once the pools
have settled a step allocates nothing; an array from a step before the last ``begin_step``
must not be read any more (the trainer keeps none). The arena is capped
(``arena_bytes``); past the cap, or before any ``begin_step``, outputs go through per-role
buffers and are copied out, as every call did before. ``copy_stats`` counts the bytes copied
and the bytes passed in place.

The driver flushes every buffer it hands the kernel before the call (outputs too, so no
dirty line can land on what the kernel writes) and invalidates the outputs after it; rows
the kernel does not write (samples not listed) are zeroed by the ARM after the invalidate,
so a view reads as the golden model's result. The views handed out are read-only, so the ARM
writes arena and master-weight buffers only here, and the backend knows which of them hold a
dirty line; the others go to the driver with a flush that does nothing (``_Clean``), which
saves walking their cache lines. While the driver waits for a call it runs the
ARM's side work through the hook the trainer sets (``set_idle``). Not thread-safe: one
caller at a time, as the kernels.
"""
from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
import pynq

from ..core import call_price, kernel_args, perfmodel
from ..core.block_ops import IDENTITY, Shortcut
from ..core.fixedpoint import Dyadic
from ..core.golden import PsgResult
from ..core.shapes import ConvShape
from . import kernel_iface as ki
from .driver import DEFAULT_TIMEOUT_S

# A call may take this many times its modelled duration before it counts as hung (the
# model is an estimate; a hung fabric never finishes at all).
TIMEOUT_MARGIN = 20.0
# The cap on the buffers kept in place (the step arena and the buffers of their own). PYNQ's
# images reserve 128 MiB of CMA, about 8 of it taken by the kernel (Xilinx/PYNQ pull request
# 1424: "by default only 128M of which ~8M is already used by the kernel"); half of it leaves
# room for everything else. ResNet-20 at CIFAR's shapes and batch 64 holds 48.8 MiB once
# settled (72.1 in its first, calibrating step); `e2train board --cma-arena-mb` sets the cap.
ARENA_BYTES = 64 << 20
# An arena buffer that has held no output for this many steps is given back (the first step's
# calibration outputs, shapes that stopped coming); a few steps, so that buffers of blocks
# that SLU skips now and then stay.
ARENA_AGE_STEPS = 4
# The calls' measured waits kept for a caller that takes them (the trainer takes each call's at
# once); a caller that never takes them keeps the backend from growing a list without end.
MAX_WAITS_KEPT = 1024


class PynqBackend:
    """Implements the conv backend interface over an overlay's engine driver."""

    name = "pynq"

    def __init__(self, overlay, timeout_s: float | None = None, arena_bytes: int = ARENA_BYTES):
        self.overlay = overlay
        self.engine = overlay.engine            # driver.EngineDriver: one method per pass
        self.timeout_s = timeout_s
        self._bufs: dict[str, pynq.buffer.PynqBuffer] = {}
        if not 0 <= int(arena_bytes):
            raise ValueError(f"arena_bytes must be >= 0 (0: copy every tensor), got {arena_bytes}")
        self.arena_bytes = int(arena_bytes)
        # The step arena: pool 0 for the step's forward (kept to the end of the step), pools 1
        # and 2 for the backward of one block after another, in turn (``backward_block``).
        self._pools: list[list] = [[], [], []]  # each pool's buffers
        self._taken: list[set] = [set(), set(), set()]    # buffers holding live outputs, by pointer
        self._arena_at: dict[int, object] = {}  # a buffer's data pointer -> the buffer
        self._last_used: dict[int, int] = {}    # a buffer's data pointer -> the step it last held an output
        self._pool = 0                          # the pool outputs go to now
        self._step = 0
        self._stepping = False                  # a step has begun: the arena is in use
        self._own: dict[int, object] = {}       # buffers of their own for good (master weights,
                                                # pinned arrays), by data pointer
        self.copied_bytes = {"in": 0, "out": 0}   # what the ARM copied into and out of CMA buffers
        self.in_place_bytes = 0                 # inputs passed as the buffer the kernel wrote them in
        self._dirty: set[int] = set()           # arena and master buffers the ARM wrote since their last flush
        self._pinned: set[int] = set()          # the buffers of their own that the caller writes
        self.sync_bytes = {"flushed": 0, "flush_skipped": 0}    # buffers handed to the driver
        self.calls = {name: 0 for name in ki.PASSES}
        self.skipped_calls = {name: 0 for name in ki.PASSES}   # empty sample lists: no call
        self.wait_s = 0.0
        self._waits: list[float] = []           # each call's wait (ap_start to ap_done seen), not taken yet
        self._idle = None                       # the driver's hook while a call runs (set_idle)

    def set_idle(self, idle) -> bool:
        """``idle(remaining_s)`` runs one piece of the ARM's side work if it fits in the call's
        modelled time left and returns whether it ran one; the driver calls it between polls of
        every call (``driver.KernelDriver.wait``), with the call's modelled duration (the same
        price the timeouts come from). None: plain polling. Returns whether the driver will run
        the side work: not on a simulated board whose calls end at once (no board time passes
        in a call there, it is modelled; the trainer's model places the side work by the same
        rule instead)."""
        if idle is not None and getattr(self.overlay.device, "calls_end_at_once", False):
            self._idle = None
            return False
        self._idle = idle
        return idle is not None

    # --- buffers ----------------------------------------------------------------------
    def _buf(self, role: str, shape, dtype) -> np.ndarray:
        nbytes = max(_nbytes(shape, dtype), 1)
        cur = self._bufs.get(role)
        if cur is None or cur.nbytes < nbytes:
            if cur is not None:
                nbytes = max(nbytes, 2 * cur.nbytes)     # grow geometrically, then stay
                del self._bufs[role]
            cur = self._bufs[role] = pynq.allocate((nbytes,), np.uint8, target=self.overlay.device)
        return cur[:_nbytes(shape, dtype)].view(dtype).reshape(shape)

    def _put(self, role: str, a: np.ndarray, dtype=None) -> np.ndarray:
        """An input for the kernel: the arena buffer it already lies in, else a copy in the role's
        buffer."""
        a = np.asarray(a)
        if dtype is None or np.dtype(dtype) == a.dtype:
            at = self._resident(a)
            if at is not None:
                self.in_place_bytes += a.nbytes
                return at
        b = self._buf(role, a.shape, dtype or a.dtype)
        b[...] = a
        self.copied_bytes["in"] += b.nbytes
        return b

    # --- the step arena -----------------------------------------------------------------
    def begin_step(self) -> None:
        """A training step (or an evaluation batch) begins: the arena's buffers are handed out
        again from the first, so the previous step's outputs are overwritten from here on."""
        self._stepping = True
        self._pool = 0
        self._step += 1
        for k, pool in enumerate(self._pools):
            # a buffer no step has used for a while (the first step's calibration calls, a
            # shape gone) goes back to CMA
            stale = [b for b in pool if self._step - self._last_used[_ptr(b)] > ARENA_AGE_STEPS]
            for b in stale:
                self._drop(k, b)
            self._taken[k] = set()

    def backward_block(self) -> None:
        """The backward of one more block begins. Its outputs go to the backward pool the last
        block's did not use, from its first buffer: what the block before the last wrote there
        is dead (the last block's backward read it), while the last block's outputs, this
        block's inputs, stay. So a step's backward holds two blocks' gradients at a time, not
        every block's. The caller calls it before each block whose backward runs, and before
        the stem's."""
        if not self._stepping:
            return
        self._pool = 2 if self._pool == 1 else 1
        self._taken[self._pool] = set()

    def copy_stats(self) -> dict:
        """Bytes the ARM copied into and out of CMA buffers, and inputs passed in place."""
        return {"copied_in": self.copied_bytes["in"], "copied_out": self.copied_bytes["out"],
                "in_place": self.in_place_bytes, "arena_buffers": sum(len(p) for p in self._pools),
                "arena_bytes": sum(b.nbytes for p in self._pools for b in p),
                "own_bytes": sum(b.nbytes for b in self._own.values()),
                "flushed": self.sync_bytes["flushed"], "flush_skipped": self.sync_bytes["flush_skipped"]}

    def _resident(self, a: np.ndarray):
        """The kernel's view of ``a`` when ``a`` is (the start of) an arena buffer or a buffer of
        its own (``pinned``), else None."""
        if not a.flags.c_contiguous or a.size == 0:
            return None
        ptr = _ptr(a)
        buf = self._arena_at.get(ptr)
        if buf is None:
            buf = self._own.get(ptr)
        if buf is None or buf.nbytes < a.nbytes:
            return None
        return buf[: a.nbytes].view(a.dtype).reshape(a.shape)

    def pinned(self, shape, dtype) -> np.ndarray | None:
        """A buffer of its own, for good, for an array the caller rewrites in place and passes to
        calls step after step (a layer's int8 weights, re-derived after each update): a numpy
        view of it, which every call that takes it passes in place. None past the cap or out of
        contiguous memory: the caller keeps its own array, copied into each call."""
        need = max(_nbytes(shape, dtype), 1)
        buf = self._allocate(need)
        if buf is None:
            return None
        self._own[_ptr(buf)] = buf
        self._pinned.add(_ptr(buf))
        return np.asarray(buf[: need].view(dtype).reshape(shape)).view(np.ndarray)

    def _arena_out(self, shape, dtype):
        """An arena buffer for an output of ``shape``: the smallest free one of the current pool
        that holds it, else a new one; None when no step has begun, or past the cap (after
        giving back free buffers) or out of contiguous memory: the caller copies out of a role
        buffer."""
        if not self._stepping:
            return None
        nbytes = _nbytes(shape, dtype)
        need = max(nbytes, 1)
        pool, taken = self._pools[self._pool], self._taken[self._pool]
        free = [b for b in pool if _ptr(b) not in taken]
        fits = [b for b in free if b.nbytes >= need]
        if fits:
            buf = min(fits, key=lambda b: b.nbytes)
        else:
            # a free buffer of the same tensor at a smaller size (a later stage's, in the
            # backward pools that the stages share) makes way for one that holds both
            near = [b for b in free if 4 * b.nbytes >= need]
            if near:
                self._drop(self._pool, max(near, key=lambda b: b.nbytes))
            buf = self._new_buffer(need)
        if buf is None:
            return None
        taken.add(_ptr(buf))
        self._last_used[_ptr(buf)] = self._step
        return buf[:nbytes].view(dtype).reshape(shape)

    def _new_buffer(self, need: int):
        """A new buffer in the current pool, within the cap: free buffers of every pool (no live
        output in them) are given back first, smallest first, while the cap is in the way."""
        if self._held() + need > self.arena_bytes:
            spare = sorted(((k, b) for k, pool in enumerate(self._pools) for b in pool
                            if _ptr(b) not in self._taken[k]), key=lambda kb: kb[1].nbytes)
            for k, b in spare:
                if self._held() + need <= self.arena_bytes:
                    break
                self._drop(k, b)
        buf = self._allocate(need)
        if buf is None:
            return None
        self._pools[self._pool].append(buf)
        self._arena_at[_ptr(buf)] = buf
        self._dirty.add(_ptr(buf))           # a new buffer: flushed once before its first use
        return buf

    def _reclaim_masters(self) -> None:
        """Give back the master-weight buffers that nobody holds a view of any more: a caller
        that passes a new array each time, instead of the view it got back, would otherwise
        take a buffer a call."""
        for ptr in [q for q in self._own if q not in self._pinned]:
            if sys.getrefcount(self._own[ptr]) <= 2:       # the dict's and getrefcount's own
                del self._own[ptr]
                self._dirty.discard(ptr)

    def _allocate(self, need: int):
        """A CMA buffer of ``need`` bytes within the cap on what is kept in place, or None (over
        the cap, or out of contiguous memory)."""
        if self._held() + need > self.arena_bytes:
            return None
        try:
            return pynq.allocate((need,), np.uint8, target=self.overlay.device)
        except (RuntimeError, MemoryError):
            return None

    def _drop(self, k: int, buf) -> None:
        """Give an arena buffer back (it goes when no view of it is left)."""
        self._pools[k] = [b for b in self._pools[k] if b is not buf]
        ptr = _ptr(buf)
        del self._arena_at[ptr]
        self._dirty.discard(ptr)
        self._last_used.pop(ptr, None)

    def _output(self, role: str, shape, dtype, fill: np.ndarray | None = None):
        """A call's activation-sized output: an arena buffer, or the role's buffer when the
        caller gave its own ``out`` (``fill``) or the arena has none."""
        if fill is None:
            buf = self._arena_out(shape, dtype)
            if buf is not None:
                return buf
        return self._buf(role, shape, dtype)

    def _result(self, buf, rows, shape, dtype, fill: np.ndarray | None = None) -> np.ndarray:
        """What a call returns from its output buffer ``buf``, of which the kernel wrote
        ``rows`` (an index array or a slice): an arena buffer is handed back in place, its other
        rows zeroed; a role buffer is copied out into zeros (or into ``fill``, the caller's out)."""
        if fill is None and self._is_arena(buf):
            unlisted = _unlisted(rows, shape[0])
            if unlisted is not None:
                buf[unlisted] = 0
                self._dirty.add(_ptr(buf))
            return _read_only(buf)
        out = np.zeros(shape, dtype) if fill is None else fill
        out[rows] = buf[rows]
        self.copied_bytes["out"] += out[rows].nbytes
        return out

    def _master(self, w_master: np.ndarray):
        """The weight gradient's master weights (inout: the kernel updates them). Once a step
        has begun they live in a buffer of their own for good: the first call copies the
        caller's array in, the result is a view of that buffer, and the caller's next call with
        that view passes it in place (the caller keeps its master weights across steps, so
        they are not in the step arena). Before any step, or when no buffer can be had: the
        role buffer, copied in and out."""
        w_master = np.asarray(w_master)
        if self._stepping and w_master.flags.c_contiguous and w_master.dtype == np.int32:
            buf = self._own.get(_ptr(w_master))
            if buf is not None and buf.nbytes >= w_master.nbytes:
                self.in_place_bytes += w_master.nbytes
                return buf[: w_master.nbytes].view(np.int32).reshape(w_master.shape)
            self._reclaim_masters()
            buf = self._allocate(max(w_master.nbytes, 1))
            if buf is not None:
                self._own[_ptr(buf)] = buf
                self._dirty.add(_ptr(buf))
                view = buf[: w_master.nbytes].view(np.int32).reshape(w_master.shape)
                view[...] = w_master
                self.copied_bytes["in"] += w_master.nbytes
                return view
        return self._put("w_master", w_master)

    def _held(self) -> int:
        """Bytes of the buffers kept in place: the step arena's and those of their own."""
        return sum(b.nbytes for p in self._pools for b in p) + sum(b.nbytes for b in self._own.values())

    def _is_own(self, buf) -> bool:
        return _ptr(buf) in self._own

    def _copy_out(self, buf) -> np.ndarray:
        self.copied_bytes["out"] += buf.nbytes
        return np.array(buf)

    def _for_driver(self, v):
        """A call's argument as the driver gets it. The driver flushes every buffer before a call
        (the ARM's writes must reach DDR, and no dirty line may land on what the kernel writes);
        an arena buffer or master-weight buffer the ARM has not written since its last flush or
        invalidate has no dirty line, so it goes wrapped so that its flush, a walk over every
        cache line of it, is skipped. The ARM writes those buffers only here (zeroed rows, a
        new buffer, a master's first copy: ``_dirty``); the views it hands out are read-only."""
        if not isinstance(v, np.ndarray) or v.size == 0:
            return v
        ptr = _ptr(v)
        tracked = ptr in self._arena_at or (ptr in self._own and ptr not in self._pinned)
        if not tracked:                       # role buffers; pinned arrays, which the caller writes
            self.sync_bytes["flushed"] += v.nbytes
            return v
        if ptr in self._dirty:
            self._dirty.discard(ptr)
            self.sync_bytes["flushed"] += v.nbytes
            return v
        self.sync_bytes["flush_skipped"] += v.nbytes
        return _Clean(v)

    def _is_arena(self, buf) -> bool:
        i = self._arena_at.get(_ptr(buf))
        return i is not None

    def _samples(self, idx: np.ndarray) -> np.ndarray:
        # a zero-length list still needs a valid pointer; the kernel reads none of it
        buf = self._buf("samples", (max(idx.size, 1),), np.int32)
        buf[: idx.size] = idx
        return buf

    def _call(self, name: str, modelled: float, **args) -> None:
        timeout = self.timeout_s if self.timeout_s is not None else _timeout(modelled)
        args = {k: self._for_driver(v) for k, v in args.items()}
        waited = self.engine.run_pass(name, timeout_s=timeout, idle=self._idle, modelled_s=modelled, **args)
        self.wait_s += waited
        self._waits.append(waited)
        if len(self._waits) > MAX_WAITS_KEPT:             # nobody takes them: keep the latest only
            del self._waits[:-MAX_WAITS_KEPT]
        self.calls[name] += 1

    def take_waits(self) -> list[float]:
        """The measured waits of the calls made since the last take, in order (seconds from
        ap_start to the driver seeing ap_done: the fabric's time, plus any overrun of side work
        the driver ran while it waited). The trainer's kernel tally takes them call by call."""
        got, self._waits = self._waits, []
        return got

    @property
    def wall_source(self) -> str:
        """What the waits measure: "board", or "simulated" where the device ends each call at once
        (no board time passes; the C simulation's time is this computer's)."""
        return "simulated" if getattr(self.overlay.device, "calls_end_at_once", False) else "board"

    def _run(self, kernel: str, shape: ConvShape, **args) -> None:
        self._call(kernel, _modelled_s(kernel, shape, int(args["n_samples"])), **args)

    def _run_block(self, op: str, nchw: tuple, n_listed: int, price_kw: dict, **args) -> None:
        self._call(op, _modelled_block_s(op, nchw, n_listed, **price_kw), **args)

    def close(self) -> None:
        self._bufs.clear()

    # --- the backend interface --------------------------------------------------------
    def conv_fwd(self, x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
                 samples=None, out: np.ndarray | None = None, stats: np.ndarray | None = None,
                 w_sums: np.ndarray | None = None) -> np.ndarray:
        fill = out
        a = kernel_args.check_conv_fwd(x, w, bias, mult, stride=stride, pad=pad, relu=relu,
                                       samples=samples, out=out)
        shape, idx, out, bias = a.shape, a.idx, a.out, a.bias
        kernel_args.check_stats_out(stats, shape.co)
        kernel_args.check_w_sums_out(w_sums, shape.ci)
        if idx.size == 0 and w_sums is None:     # the weights' sums need the call even without a sample
            self.skipped_calls["conv_fwd"] += 1
            if stats is not None:
                stats[...] = 0     # sums over no sample
            return out
        sbuf = self._samples(idx)
        y = self._output("y", shape.y_shape, a.fmt.dtype, fill)
        flags, n_bn, n_st = kernel_args.fwd_stats_layout(shape.co, shape.ci, stats is not None, w_sums is not None)
        sums = self._buf("stats", (n_st,), np.int64) if n_st else 0
        self._run("conv_fwd", shape,
                  x=self._put("x", x), w=self._put("w", w),
                  bias=self._put("bias", bias) if bias is not None else self._buf("bias", (1,), np.int32),
                  y=y, stats=sums, samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  x_unsigned=int(x.dtype == np.uint8), has_bias=int(bias is not None), relu=int(bool(relu)),
                  **_mult(a.mult), b_flags=flags)
        out = self._result(y, idx, shape.y_shape, a.fmt.dtype, fill)   # the kernel wrote the listed samples
        if stats is not None:
            stats[...] = sums[:n_bn].reshape(shape.co, 2)
        if w_sums is not None:
            w_sums[...] = sums[n_bn:]
        if n_st:
            self.copied_bytes["out"] += sums.nbytes
        return out

    def conv_bwd_data(self, g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                      samples=None, out: np.ndarray | None = None) -> np.ndarray:
        fill = out
        a = kernel_args.check_conv_bwd_data(g_y, w, mult, in_hw=in_hw, stride=stride, pad=pad,
                                            samples=samples, out=out)
        shape, idx, out = a.shape, a.idx, a.out
        if idx.size == 0:
            self.skipped_calls["conv_bwd_data"] += 1
            return out
        gx = self._output("g_x", shape.x_shape, np.int16, fill)
        self._run("conv_bwd_data", shape, g_y=self._put("g_y", g_y), w=self._put("w", w), g_x=gx,
                  samples=self._samples(idx), n_samples=idx.size, **_shape_args(shape),
                  **_mult(a.mult))
        return self._result(gx, idx, shape.x_shape, np.int16, fill)

    def conv_bwd_weight_psg(self, x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                            lr_q: int, wd_q: int = 0, samples=None) -> PsgResult:
        a = kernel_args.check_conv_bwd_weight_psg(x, g_y, w_master, stride=stride, pad=pad, beta_q=beta_q,
                                                  lr_q=lr_q, wd_q=wd_q, samples=samples)
        # an empty sample list still runs: the weight decay applies with sign 0, as in the
        # golden model
        shape, idx, sbuf = a.shape, a.idx, self._samples(a.idx)
        wm = self._master(w_master)
        sign = self._output("sign", shape.w_shape, np.int8)
        pred = self._output("predicted", shape.w_shape, np.uint8)
        stats = self._buf("stats", (ki.PSG_STATS_LEN,), np.int64)
        gmsb = self._output("gmsb", shape.w_shape, np.int32)     # the kernel's scratch: nobody reads it
        self._run("conv_bwd_weight_psg", shape, x=self._put("x", x), g_y=self._put("g_y", g_y), w_master=wm,
                  sign=sign, predicted=pred, gmsb=gmsb, stats=stats,
                  samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  x_unsigned=int(x.dtype == np.uint8), beta_q=int(beta_q), lr_q=int(lr_q), wd_q=int(wd_q))
        # the master weights stay in their buffer (updated in place, handed back in place) once
        # a step has begun; the signs and the decisions are this step's (every row written)
        every = slice(None)
        w_new = _read_only(wm) if self._is_own(wm) else self._copy_out(wm)
        return PsgResult(w_new, self._result(sign, every, shape.w_shape, np.int8),
                         self._result(pred, every, shape.w_shape, np.uint8) != 0, int(stats[ki.STAT_GMSB_ABSMAX]),
                         int(stats[ki.STAT_W_ABSMAX]))

    # --- the block operations (core.block_ops; docs/fixed-point.md section 9) ------------------
    def bn_act(self, y, a, b, shift: int, *, r=None, r_mult: int = 0, shortcut: Shortcut = IDENTITY,
               samples=None, relu: bool = True):
        y, r = np.asarray(y), None if r is None else np.asarray(r)
        chk = kernel_args.check_bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=shortcut, samples=samples)
        (n, c, h, w), idx = chk.nchw, chk.idx
        odt = np.uint8 if relu else np.int8
        if idx.size == 0 and r is None:
            # no sample listed and no shortcut: every output is shift_round(0) = 0; nothing to run
            self.skipped_calls["bn_act"] += 1
            return np.zeros((n, c, h, w), odt), np.zeros((n, c), np.int64), np.zeros(n, np.int64)
        coef = self._buf("b_coef", (2, c), np.int64)
        coef[0], coef[1] = chk.a, chk.b
        o = self._output("b_o", (n, c, h, w), odt)
        sums = self._output("b_sums", (n * c + n,), np.int64)
        flags = (ki.BF_RELU if relu else 0) | (ki.BF_RESIDUAL if r is not None else 0)
        self._run_block("bn_act", chk.nchw, idx.size, dict(residual=r is not None),
                        b_y=self._put("b_y", y), b_o=o, b_coef=coef, b_sums=sums,
                        **_source_args("b_r", "r", self._put("b_r", r) if r is not None else None, shortcut),
                        samples=self._samples(idx), n_samples=idx.size, n=n, h=h, wd=w, co=c,
                        b_flags=flags, b_shift=int(shift), b_m1=int(r_mult))
        # the kernel writes the samples it processes: every one with a shortcut, only the listed
        # ones without (the buffers' other rows hold an earlier call's data: the others are 0)
        rows = slice(None) if r is not None else idx
        out = self._result(o, rows, (n, c, h, w), odt)
        if self._is_arena(sums):              # pooled sums and maxima read where the kernel wrote them
            pooled, vmax = sums[: n * c].reshape(n, c), sums[n * c:]
            unlisted = _unlisted(rows, n)
            if unlisted is not None:
                pooled[unlisted], vmax[unlisted] = 0, 0
                self._dirty.add(_ptr(sums))
            return out, _read_only(pooled), _read_only(vmax)
        pooled, vmax = np.zeros((n, c), np.int64), np.zeros(n, np.int64)
        pooled[rows], vmax[rows] = sums[: n * c].reshape(n, c)[rows], sums[n * c:][rows]
        self.copied_bytes["out"] += sums.nbytes
        return out, pooled, vmax

    def bn_bwd_reduce(self, o, y, g_a, *, ma: int = 1, g_b=None, mb: int = 0, b_shortcut: Shortcut = IDENTITY,
                      shift: int = 0, r=None, r_shortcut: Shortcut = IDENTITY, samples=None):
        o, y, g_a = np.asarray(o), np.asarray(y), np.asarray(g_a)
        g_b, r = (None if v is None else np.asarray(v) for v in (g_b, r))
        chk = kernel_args.check_bn_bwd_reduce(o, y, g_a, ma=ma, g_b=g_b, mb=mb, b_shortcut=b_shortcut, shift=shift,
                                              r=r, r_shortcut=r_shortcut, samples=samples)
        (n, c, h, w), idx = chk.nchw, chk.idx
        # g_m and the gate sums cover every sample whatever the list: the call always runs
        g_m = self._output("b_gm", (n, c, h, w), np.int16)
        sums = self._output("b_sums", (3 * c + 2 * n,), np.int64)
        flags = (ki.BF_RESIDUAL if r is not None else 0) | (ki.BF_TWO_SOURCES if g_b is not None else 0)
        self._run_block("bn_bwd_reduce", chk.nchw, idx.size, dict(two_sources=g_b is not None, gate=r is not None),
                        b_y=self._put("b_y", y), b_o=self._put("b_o", o), b_ga=self._put("b_ga", g_a),
                        **_source_args("b_r", "r", self._put("b_r", r) if r is not None else None, r_shortcut),
                        **_source_args("b_gb", "gb", self._put("b_gb", g_b) if g_b is not None else None,
                                       b_shortcut),
                        b_gm=g_m, b_sums=sums, samples=self._samples(idx), n_samples=idx.size, n=n, h=h, wd=w,
                        co=c, b_flags=flags, b_shift=int(shift), b_m1=int(ma), b_m2=int(mb))
        g_m = self._result(g_m, slice(None), (n, c, h, w), np.int16)
        if self._is_arena(sums):              # every sum written: read in place
            sums = _read_only(sums)
            return g_m, sums[: 3 * c].reshape(c, 3), sums[3 * c:].reshape(n, 2)
        return g_m, self._copy_out(sums[: 3 * c]).reshape(c, 3), self._copy_out(sums[3 * c:]).reshape(n, 2)

    def bn_bwd_apply(self, g_m, y, p, q, t, shift: int, *, samples=None) -> np.ndarray:
        g_m, y = np.asarray(g_m), np.asarray(y)
        chk = kernel_args.check_bn_bwd_apply(g_m, y, p, q, t, shift, samples=samples)
        (n, c, h, w), idx = chk.nchw, chk.idx
        if idx.size == 0:
            self.skipped_calls["bn_bwd_apply"] += 1
            return np.zeros((n, c, h, w), np.int16)
        coef = self._buf("b_coef", (3, c), np.int64)
        coef[0], coef[1], coef[2] = chk.p, chk.q, chk.t
        g_y = self._output("b_gy", (n, c, h, w), np.int16)
        self._run_block("bn_bwd_apply", chk.nchw, idx.size, {},
                        b_y=self._put("b_y", y), b_gm=self._put("b_gm", g_m), b_gy=g_y, b_coef=coef,
                        samples=self._samples(idx), n_samples=idx.size, n=n, h=h, wd=w, co=c, b_shift=int(shift))
        return self._result(g_y, idx, (n, c, h, w), np.int16)     # the kernel writes the listed samples only


class _Clean:
    """An arena buffer with no dirty cache line, as the driver gets it: its address and its
    invalidate (after the call, for an output), and a flush that has nothing to write back."""

    def __init__(self, buf):
        self._buf = buf

    @property
    def device_address(self) -> int:
        return self._buf.device_address

    @property
    def physical_address(self) -> int:
        return self._buf.device_address

    def flush(self) -> None:
        pass

    def invalidate(self) -> None:
        self._buf.invalidate()


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _unlisted(rows, n: int) -> np.ndarray | None:
    """The mask of the n samples a call did not write (``rows``: the index array or slice it
    wrote), or None when it wrote every one."""
    if isinstance(rows, slice) and rows == slice(None):
        return None
    keep = np.zeros(n, bool)
    keep[rows] = True
    return None if keep.all() else ~keep


def _ptr(buf) -> int:
    """A buffer's data pointer: what identifies it here."""
    return np.asarray(buf).__array_interface__["data"][0]


def _read_only(buf) -> np.ndarray:
    """A plain numpy view of a buffer kept in place, read-only: the caller reads the fabric's
    results where they lie, and an ARM write to them (which the next call would read from DDR
    only after a flush, and the next step would overwrite) fails at once instead."""
    v = np.asarray(buf).view(np.ndarray)
    v.flags.writeable = False
    return v


def _source_args(ptr: str, prefix: str, buf, sc: Shortcut) -> dict:
    """A tensor read through an option-A shortcut (b_r, b_gb): its pointer and geometry
    registers, all 0 when there is none (its flag is off and the kernel reads none of them)."""
    if buf is None:
        return {ptr: 0, f"{prefix}_c": 0, f"{prefix}_h": 0, f"{prefix}_w": 0, f"{prefix}_stride": 0,
                f"{prefix}_lo": 0}
    return {ptr: buf, f"{prefix}_c": buf.shape[1], f"{prefix}_h": buf.shape[2], f"{prefix}_w": buf.shape[3],
            f"{prefix}_stride": int(sc.stride), f"{prefix}_lo": int(sc.lo)}


@lru_cache(maxsize=256)
def _modelled_block_s(op: str, nchw: tuple, n_listed: int, **kw) -> float:
    """A block call's modelled duration (its price)."""
    return call_price.price_block(op, nchw, n_listed, **kw)[1] / perfmodel.CLOCK_HZ


@lru_cache(maxsize=256)
def _modelled_s(kernel: str, shape: ConvShape, n_active: int) -> float:
    """A conv call's modelled duration (the weight gradient's price: its one sweep and the decision)."""
    return call_price.call_cycles(kernel, shape, n_active) / perfmodel.CLOCK_HZ


def _timeout(modelled_s: float) -> float:
    """The modelled duration with a wide margin."""
    return max(DEFAULT_TIMEOUT_S, TIMEOUT_MARGIN * modelled_s)


def _mult(mult: Dyadic) -> dict:
    """A checked requantisation multiplier as the kernels' two ints."""
    return {"mult_m": mult.m, "mult_s": mult.s}


def _shape_args(s: ConvShape) -> dict:
    return dict(n=s.n, ci=s.ci, h=s.h, wd=s.w, co=s.co, k=s.k, stride=s.stride, pad=s.pad)

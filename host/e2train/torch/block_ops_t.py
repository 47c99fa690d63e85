"""The fabric's block operations (``core.block_ops``, docs/fixed-point.md section 9) on torch
tensors, on any device, bit for bit.

Every intermediate of the contract fits 48 bits (the argument checks hold the operand limits
that guarantee it), so the arithmetic here is int64 throughout: products, sums, the
requantisation's ``(v + 2^(S-1)) >> S`` (``>>`` on a signed tensor is the arithmetic shift,
a floor, as numpy's) and the saturations give the golden model's integers on a CPU and a GPU
alike, in any order of summation. tests/torch/test_block_ops_t.py compares the two on random
shapes, sample lists, shortcut geometries and coefficients at their limits.

Refusals: each operation calls the argument check of ``core.kernel_args`` that the golden
model calls (``check_bn_act``, ``check_bn_bwd_reduce``, ``check_bn_bwd_apply``, as the C
simulation and the PYNQ back-end do; ``check_fwd_stats``; ``check_shortcut`` for ``gather``
and ``scatter``), so it refuses exactly what golden refuses, with the same exception and
message, before anything is computed. The checks read only the dtype and shape of the data tensors
(metadata, on the host whatever the device: they see a data-free numpy stand-in of each), and
the values of the coefficients and the sample list. Given as host data (numpy arrays, lists,
numbers: what the ARM-side folds ``core.block_ops.fold_*`` give) those are checked where they
are and reach the device by an asynchronous copy, so a call queues its work without waiting
for the device, and the results (``pooled``, ``vmax``, ``red``, ``gate``) stay device tensors
for the caller to read once. Given as tensors on a GPU they are copied to the host together
and waited for once (one synchronisation per call), because a refusal has to be raised before
anything is computed. Beyond the shared checks the data must be torch tensors on one device,
of a dtype numpy has.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..core import kernel_args
from ..core.block_ops import IDENTITY, Shortcut
from ..core.fixedpoint import INT8, INT16, UINT8


def _tensor(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__} (torch.from_numpy converts an array)")
    return t


def _same_device(op: str, ref: torch.Tensor, **others) -> None:
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device}, the other operands on {ref.device} (move it with .to)")


@lru_cache(maxsize=None)
def _numpy_dtype(dt: torch.dtype) -> np.dtype | None:
    try:
        # an empty CPU probe: only its dtype is read, never data
        return torch.empty(0, dtype=dt, device="cpu").numpy().dtype
    except (TypeError, RuntimeError):
        return None


def _np_dtype(name: str, t: torch.Tensor) -> np.dtype:
    dt = _numpy_dtype(t.dtype)
    if dt is None:
        raise ValueError(f"{name} is a {str(t.dtype).replace('torch.', '')} tensor, a dtype numpy lacks: the block "
                         "operations take integer codes (int8, uint8, int16) and integer coefficients")
    return dt


def _like(name: str, t: torch.Tensor | None) -> np.ndarray | None:
    """A numpy stand-in of a data tensor for kernel_args' checks, which read its dtype and shape
    only: a read-only view of one zero with the tensor's shape (no data, nothing read from the
    device)."""
    if t is None:
        return None
    return np.broadcast_to(np.zeros((), _np_dtype(name, t)), tuple(t.shape))


def _on_host(**vals) -> list:
    """The values given as tensors copied to the host as numpy arrays (the others as they
    are): the copies from each GPU are queued together and waited for once."""
    out, streams = [], {}
    for name, v in vals.items():
        if isinstance(v, torch.Tensor):
            _np_dtype(name, v)
            if v.device.type == "cuda":
                # queued on the tensor's stream (into pinned memory), so that the copies of one
                # call are waited for together: valid after the synchronisation below
                streams.setdefault(v.device, torch.cuda.current_stream(v.device))
                v = v.detach().to("cpu", non_blocking=True)
            else:
                v = v.detach().cpu()
        out.append(v)
    for stream in streams.values():
        stream.synchronize()
    return [v.resolve_conj().resolve_neg().numpy() if isinstance(v, torch.Tensor) else v for v in out]


def _to(h: np.ndarray, dev: torch.device) -> torch.Tensor:
    """Host int64 data onto ``dev`` without waiting for the device: an asynchronous copy from
    pageable memory is staged at once (no stream synchronisation), unlike a blocking one."""
    return torch.from_numpy(np.ascontiguousarray(h, np.int64)).to(dev, non_blocking=dev.type != "cpu")


def _index(idx: np.ndarray, samples, dev: torch.device) -> torch.Tensor | None:
    """The checked sample list as an int64 index tensor on ``dev`` (None: every sample)."""
    return None if samples is None else _to(idx, dev)


def _shift_round_(v: torch.Tensor, s: int) -> torch.Tensor:
    """(v + 2^(s-1)) >> s in place: round half up (``core.fixedpoint.shift_round_up``)."""
    if s:
        v.add_(1 << (s - 1))
        v >>= s
    return v


def _read_view(sc: Shortcut, src: torch.Tensor, hw) -> tuple[slice, torch.Tensor]:
    """What a checked shortcut reads, without a copy: (the output channels it lands on, the
    strided view of src)."""
    s, lo = int(sc.stride), int(sc.lo)
    return slice(lo, lo + src.shape[1]), src[:, :, ::s, ::s][:, :, : int(hw[0]), : int(hw[1])]


def _write_view(sc: Shortcut, g: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a checked shortcut's adjoint writes, without a copy: (the strided view of dst at
    the source's positions, the part of g that lands there)."""
    s, lo = int(sc.stride), int(sc.lo)
    return dst[:, :, ::s, ::s][:, :, : g.shape[2], : g.shape[3]], g[:, lo: lo + dst.shape[1]]


def gather(sc: Shortcut, src: torch.Tensor, c_out: int, hw: tuple[int, int]) -> torch.Tensor:
    """``Shortcut.gather``: (n, c_out, h, w) int64, reading src at (n, c - lo, y*stride,
    x*stride); channels outside the source read 0."""
    src = _tensor("src", src)
    kernel_args.check_shortcut(sc, tuple(src.shape), c_out, hw)
    chans, xs = _read_view(sc, src, hw)
    out = torch.zeros((src.shape[0], int(c_out)) + tuple(int(v) for v in hw), dtype=torch.int64, device=src.device)
    out[:, chans] = xs
    return out


def scatter(sc: Shortcut, g: torch.Tensor, src_shape: tuple) -> torch.Tensor:
    """``Shortcut.scatter``, the adjoint of ``gather``: g (n, c_out, h, w) -> int64 of the
    source's shape."""
    g = _tensor("g", g)
    kernel_args.check_shortcut(sc, tuple(src_shape), g.shape[1], tuple(g.shape[2:]))
    out = torch.zeros(tuple(int(v) for v in src_shape), dtype=torch.int64, device=g.device)
    view, part = _write_view(sc, g, out)
    view.copy_(part)
    return out


def _listed(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return t if idx is None else t.index_select(0, idx)


def _max_abs(t: torch.Tensor, dims, size: int) -> torch.Tensor:
    """max |t| over dims (0 where t is empty), in two reductions rather than a copy of |t|."""
    if not t.numel():
        return torch.zeros(size, dtype=torch.int64, device=t.device)
    return torch.maximum(t.amax(dim=dims), t.amin(dim=dims).neg())


# -- forward ----------------------------------------------------------------------------------
def conv_fwd_stats(y: torch.Tensor, samples=None) -> torch.Tensor:
    """``core.block_ops.conv_fwd_stats``: (co, 2) int64, per output channel the sum of y and of
    y^2 over the listed samples."""
    y = _tensor("y", y)
    (sam,) = _on_host(samples=samples)
    idx = _index(kernel_args.check_fwd_stats(_like("y", y), sam), samples, y.device)
    v = _listed(y, idx).to(torch.int64)
    return torch.stack([v.sum(dim=(0, 2, 3)), (v * v).sum(dim=(0, 2, 3))], dim=1)


def bn_act(y: torch.Tensor, a, b, shift: int, *, r: torch.Tensor | None = None, r_mult: int = 0,
           shortcut: Shortcut = IDENTITY, samples=None, relu: bool = True):
    """``core.block_ops.bn_act``: out = sat(shift_round(y*a[c] + b[c] + sc(r)*r_mult)) for the
    listed samples, sat(shift_round(sc(r)*r_mult)) for the others. Returns (out uint8 [int8
    without the ReLU], pooled int64 (n, c), vmax int64 (n,)), on y's device."""
    y = _tensor("y", y)
    if r is not None:
        _same_device("bn_act", y, r=_tensor("r", r))
    a, b, r_mult, sam = _on_host(a=a, b=b, r_mult=r_mult, samples=samples)
    k = kernel_args.check_bn_act(_like("y", y), a, b, shift, r=_like("r", r), r_mult=r_mult, shortcut=shortcut,
                                 samples=sam)
    (n, c, h, w), dev = k.nchw, y.device
    a4, b4 = _to(k.a, dev).view(1, c, 1, 1), _to(k.b, dev).view(1, c, 1, 1)
    idx = _index(k.idx, samples, dev)
    if idx is None:
        acc = y.to(torch.int64).mul_(a4).add_(b4)
    else:
        acc = torch.zeros((n, c, h, w), dtype=torch.int64, device=dev)
        acc.index_copy_(0, idx, y.index_select(0, idx).to(torch.int64).mul_(a4).add_(b4))
    if r is not None:
        chans, xs = _read_view(shortcut, r, (h, w))
        acc[:, chans] += xs.to(torch.int64) * int(r_mult)
    v = _shift_round_(acc, int(shift))
    lo_v, hi_v = v.reshape(n, -1).aminmax(dim=1)     # the block shape has no empty dimension
    vmax = torch.maximum(hi_v, lo_v.neg())
    fmt = UINT8 if relu else INT8
    out = v.clamp_(fmt.lo, fmt.hi)
    return out.to(torch.uint8 if relu else torch.int8), out.sum(dim=(2, 3)), vmax


# -- backward ---------------------------------------------------------------------------------
def bn_bwd_reduce(o: torch.Tensor, y: torch.Tensor, g_a: torch.Tensor, *, ma: int = 1, g_b: torch.Tensor | None = None,
                  mb: int = 0, b_shortcut: Shortcut = IDENTITY, shift: int = 0, r: torch.Tensor | None = None,
                  r_shortcut: Shortcut = IDENTITY, samples=None):
    """``core.block_ops.bn_bwd_reduce``: gc = sat16(shift_round(g_a*ma + sc_b^T(g_b)*mb)),
    g_m = gc where o > 0 else 0. Returns (g_m int16 for every sample, red int64 (c, 3) = [sum
    g_m, sum g_m*y, max|g_m|] over the listed samples, gate int64 (n, 2) = [sum gc*o, sum
    gc*sc_r(r)] per sample), on o's device."""
    o, y, g_a = _tensor("o", o), _tensor("y", y), _tensor("g_a", g_a)
    g_b = None if g_b is None else _tensor("g_b", g_b)
    r = None if r is None else _tensor("r", r)
    _same_device("bn_bwd_reduce", o, y=y, g_a=g_a, g_b=g_b, r=r)
    ma, mb, sam = _on_host(ma=ma, mb=mb, samples=samples)
    k = kernel_args.check_bn_bwd_reduce(_like("o", o), _like("y", y), _like("g_a", g_a), ma=ma, g_b=_like("g_b", g_b),
                                        mb=mb, b_shortcut=b_shortcut, shift=shift, r=_like("r", r),
                                        r_shortcut=r_shortcut, samples=sam)
    (n, c, h, w), dev = k.nchw, o.device
    idx = _index(k.idx, samples, dev)
    acc = g_a.to(torch.int64)
    if int(ma) != 1:
        acc.mul_(int(ma))
    if g_b is not None:
        view, part = _write_view(b_shortcut, g_b, acc)
        view += part.to(torch.int64) * int(mb)
    gc = _shift_round_(acc, int(shift)).clamp_(INT16.lo, INT16.hi)
    g_m = torch.where(o > 0, gc, torch.zeros((), dtype=torch.int64, device=dev))
    gl, yl = _listed(g_m, idx), _listed(y, idx).to(torch.int64)
    red = torch.stack([gl.sum(dim=(0, 2, 3)), (gl * yl).sum(dim=(0, 2, 3)), _max_abs(gl, (0, 2, 3), c)], dim=1)
    gate0 = (gc * o).sum(dim=(1, 2, 3))
    if r is not None:
        chans, xs = _read_view(r_shortcut, r, (h, w))
        gate1 = (gc[:, chans] * xs.to(torch.int64)).sum(dim=(1, 2, 3))
    else:
        gate1 = torch.zeros_like(gate0)
    return g_m.to(torch.int16), red, torch.stack([gate0, gate1], dim=1)


def bn_bwd_apply(g_m: torch.Tensor, y: torch.Tensor, p, q, t, shift: int, *, samples=None) -> torch.Tensor:
    """``core.block_ops.bn_bwd_apply``: g_y = sat16(shift_round(g_m*p[c] + y*q[c] + t[c])) for
    the listed samples (the others 0), int16 on g_m's device."""
    g_m, y = _tensor("g_m", g_m), _tensor("y", y)
    _same_device("bn_bwd_apply", g_m, y=y)
    p, q, t, sam = _on_host(p=p, q=q, t=t, samples=samples)
    k = kernel_args.check_bn_bwd_apply(_like("g_m", g_m), _like("y", y), p, q, t, shift, samples=sam)
    (n, c, h, w), dev = k.nchw, g_m.device
    idx = _index(k.idx, samples, dev)
    acc = _listed(g_m, idx).to(torch.int64).mul_(_to(k.p, dev).view(1, c, 1, 1))
    acc += _listed(y, idx).to(torch.int64).mul_(_to(k.q, dev).view(1, c, 1, 1))
    acc += _to(k.t, dev).view(1, c, 1, 1)
    res = _shift_round_(acc, int(shift)).clamp_(INT16.lo, INT16.hi).to(torch.int16)
    if idx is None:
        return res
    return torch.zeros(g_m.shape, dtype=torch.int16, device=dev).index_copy_(0, idx, res)


__all__ = ["Shortcut", "IDENTITY", "gather", "scatter", "conv_fwd_stats", "bn_act", "bn_bwd_reduce", "bn_bwd_apply"]

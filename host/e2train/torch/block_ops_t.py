"""The fabric's block operations (``core.block_ops``, docs/fixed-point.md section 9) on torch
tensors, on any device, bit for bit.

Every intermediate of the contract fits 48 bits (the golden model checks the operand limits
that guarantee it), so the arithmetic here is int64 throughout: products, sums, the
requantisation's ``(v + 2^(S-1)) >> S`` (``>>`` on a signed tensor is the arithmetic shift,
a floor, as numpy's) and the saturations give the golden model's integers on a CPU and a GPU
alike, in any order of summation. tests/torch/test_block_ops_t.py compares the two on random
shapes, sample lists, shortcut geometries and coefficients at their limits.

Nothing is read back to the host inside a call when the per-channel coefficients and the
sample list arrive as host data (numpy arrays, lists, numbers: what the ARM-side folds
``core.block_ops.fold_*`` give): their refusals are checked on the host, they reach the
device by an asynchronous copy, and the results (``pooled``, ``vmax``, ``red``, ``gate``)
stay device tensors for the caller to read once. Coefficients or a sample list handed over
as tensors are checked where they live and the verdict read back once per call (on a GPU one
synchronisation), because a refusal has to be raised before anything is computed.

What the golden model refuses is refused here, with a one-line ``ValueError`` raised before
anything is computed: the golden model's own message where it writes one, a message naming
the operand where numpy's broadcasting is what refuses there (a shortcut whose samples or
geometry do not fit). Beyond those the data tensors must share one device. One difference: a
shortcut stride below 1 is refused here (numpy's slicing reads a negative stride backwards,
which is no shortcut).
"""
from __future__ import annotations

import numpy as np
import torch

from ..core import block_ops as bo
from ..core.block_ops import IDENTITY, Shortcut

_I16_LO, _I16_HI = -(1 << 15), (1 << 15) - 1


def _desc(t) -> str:
    """dtype and shape as the golden model prints them (``int8(2, 3, 4, 4)``)."""
    if isinstance(t, torch.Tensor):
        return f"{str(t.dtype).replace('torch.', '')}{tuple(t.shape)}"
    a = np.asarray(t)
    return f"{a.dtype}{a.shape}"


def _tensor(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__} (torch.from_numpy converts an array)")
    return t


def _same_device(op: str, ref: torch.Tensor, **others) -> None:
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device}, the other operands on {ref.device} (move it with .to)")


class _Checks:
    """Refusals of values that live on a device: each a 0-d bool tensor with its message,
    read back together, once (``raise_first``), and raised in the golden model's order."""

    def __init__(self):
        self.items: list[tuple[torch.Tensor | bool, str]] = []

    def add(self, flag, msg: str) -> None:
        self.items.append((flag, msg))

    def raise_first(self) -> None:
        by_dev: dict = {}
        for i, (f, _) in enumerate(self.items):
            if isinstance(f, torch.Tensor):
                by_dev.setdefault(f.device, []).append(i)
        verdict = {}
        for ids in by_dev.values():                 # one read per device holding a check
            verdict.update(zip(ids, torch.stack([self.items[i][0].reshape(()) for i in ids]).tolist()))
        for i, (f, msg) in enumerate(self.items):
            if verdict.get(i, f):
                raise ValueError(msg)


def _host_int64(v) -> np.ndarray | None:
    """A coefficient given as host data (numpy, a list, a number) as an int64 array; None for a
    tensor, which is checked where it lives."""
    return None if isinstance(v, torch.Tensor) else np.asarray(v, np.int64)


def _to(h: np.ndarray, dev: torch.device) -> torch.Tensor:
    """Host int64 data onto ``dev`` without waiting for the device: an asynchronous copy from
    pageable memory is staged at once (no stream synchronisation), unlike a blocking one."""
    return torch.from_numpy(h).to(dev, non_blocking=dev.type != "cpu")


def _coeffs(op: str, dev: torch.device, shift, mults, consts, checks: _Checks, scalars=()) -> tuple[int, list, list]:
    """The per-channel coefficients as int64 tensors on ``dev`` and the shift as an int, with
    the golden model's limits (|multiplier| < 2^24, |constant| < 2^44, 0 <= shift <= 40)
    checked on the host where the values are there, else added to ``checks``. ``scalars``
    (r_mult, ma, mb: numbers) are checked as multipliers and stay on the host."""
    shift = int(shift)
    host_m = [_host_int64(m) for m in mults]
    host_c = [_host_int64(c) for c in consts]
    host_s = [np.asarray([int(v)], np.int64) for v in scalars]
    if all(h is not None for h in host_m + host_c):
        bo._check_coeffs(op, shift, host_m + host_s, host_c)
    else:
        checks.add(not 0 <= shift <= bo.MAX_BLOCK_SHIFT, f"{op}: shift {shift} outside 0..{bo.MAX_BLOCK_SHIFT}")
        for vals, hosts, limit, msg in (
                (list(mults) + host_s, host_m + host_s, bo.MULT_LIMIT,
                 "a multiplier reaches 2^24 (fold the scales with a smaller shift)"),
                (consts, host_c, bo.CONST_LIMIT, "a constant reaches 2^44 (the output scale is far too fine)")):
            for v, h in zip(vals, hosts):
                if h is not None:
                    checks.add(bool(h.size) and int(np.abs(h).max()) >= limit, f"{op}: {msg}")
                elif v.numel():
                    checks.add(v.to(torch.int64).abs().max() >= limit, f"{op}: {msg}")

    def dev_t(v, h):
        return (_to(h, dev) if h is not None else v.to(dev, torch.int64)).reshape(-1)

    return shift, [dev_t(v, h) for v, h in zip(mults, host_m)], [dev_t(v, h) for v, h in zip(consts, host_c)]


def _samples(samples, n: int, dev: torch.device, checks: _Checks) -> torch.Tensor | None:
    """The listed samples as an int64 index tensor on ``dev`` (None: every sample), with the
    golden model's refusals (``core.block_ops._sample_index``)."""
    if samples is None:
        return None
    if isinstance(samples, torch.Tensor):
        idx = samples.to(torch.int64).reshape(-1)
        if idx.numel():
            checks.add((idx.min() < 0) | (idx.max() >= n), f"sample list names samples outside 0..{n - 1}")
            srt = torch.sort(idx).values
            checks.add((srt[1:] == srt[:-1]).any(), "sample list repeats a sample")
        return idx.to(dev)
    return _to(bo._sample_index(samples, n), dev)


def _shift_round_(v: torch.Tensor, s: int) -> torch.Tensor:
    """(v + 2^(s-1)) >> s in place: round half up (``core.block_ops._shift_round``)."""
    if s:
        v.add_(1 << (s - 1))
        v >>= s
    return v


def _stride(sc: Shortcut) -> int:
    s = int(sc.stride)
    if s < 1:
        raise ValueError(f"shortcut stride {s} must be at least 1")
    return s


def _broadcasts(src: tuple, dst: tuple) -> bool:
    """Whether an array of shape src can be written into one of shape dst (numpy's rule, which
    torch's in-place operations follow)."""
    return len(src) <= len(dst) and all(a == b or a == 1 for a, b in zip(src[::-1], dst[::-1]))


def _read_view(sc: Shortcut, src: torch.Tensor, c_out: int, hw: tuple[int, int]) -> tuple[slice, torch.Tensor]:
    """What the shortcut reads, without a copy: (the output channels it lands on, the strided
    view of src), with ``Shortcut.gather``'s refusals."""
    if src.ndim != 4:
        raise ValueError(f"shortcut source must be NCHW, got shape {tuple(src.shape)}")
    s = _stride(sc)
    xs = src[:, :, ::s, ::s][:, :, : hw[0], : hw[1]]
    if tuple(xs.shape[2:]) != tuple(hw):
        raise ValueError(f"shortcut source {tuple(src.shape)} does not cover {tuple(hw)} at stride {s}")
    if sc.lo < 0 or sc.lo + src.shape[1] > c_out:
        raise ValueError(f"shortcut source channels {src.shape[1]} at offset {sc.lo} exceed {c_out}")
    return slice(sc.lo, sc.lo + src.shape[1]), xs


def _write_view(sc: Shortcut, g: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the adjoint writes, without a copy: (the strided view of dst at the source's
    positions, the part of g that lands there), with numpy's refusals of ``Shortcut.scatter``."""
    if g.ndim != 4:
        raise ValueError(f"shortcut gradient must be NCHW, got shape {tuple(g.shape)}")
    s = _stride(sc)
    view = dst[:, :, ::s, ::s][:, :, : g.shape[2], : g.shape[3]]
    part = g[:, sc.lo: sc.lo + dst.shape[1]]
    if not _broadcasts(tuple(part.shape), tuple(view.shape)):
        raise ValueError(f"shortcut gradient {tuple(g.shape)} at offset {sc.lo}, stride {s} does not map onto "
                         f"{tuple(dst.shape)}")
    return view, part


def gather(sc: Shortcut, src: torch.Tensor, c_out: int, hw: tuple[int, int]) -> torch.Tensor:
    """``Shortcut.gather``: (n, c_out, h, w) int64, reading src at (n, c - lo, y*stride,
    x*stride); channels outside the source read 0."""
    chans, xs = _read_view(sc, src, c_out, hw)
    out = torch.zeros((src.shape[0], c_out) + tuple(hw), dtype=torch.int64, device=src.device)
    out[:, chans] = xs
    return out


def scatter(sc: Shortcut, g: torch.Tensor, src_shape: tuple) -> torch.Tensor:
    """``Shortcut.scatter``, the adjoint of ``gather``: g (n, c_out, h, w) -> int64 of the
    source's shape."""
    out = torch.zeros(tuple(src_shape), dtype=torch.int64, device=g.device)
    view, part = _write_view(sc, g, out)
    view.copy_(part)
    return out


def _residual_rows(op: str, r: torch.Tensor, n: int) -> None:
    # the golden model adds the gathered shortcut by numpy broadcasting: one sample or n
    if r.ndim >= 1 and r.shape[0] not in (1, n):
        raise ValueError(f"{op}: shortcut source has {r.shape[0]} samples, the block {n}")


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
    if y.ndim != 4:
        raise ValueError(f"y must be NCHW, got shape {tuple(y.shape)}")
    checks = _Checks()
    idx = _samples(samples, y.shape[0], y.device, checks)
    checks.raise_first()
    v = _listed(y, idx).to(torch.int64)
    return torch.stack([v.sum(dim=(0, 2, 3)), (v * v).sum(dim=(0, 2, 3))], dim=1)


def bn_act(y: torch.Tensor, a, b, shift: int, *, r: torch.Tensor | None = None, r_mult: int = 0,
           shortcut: Shortcut = IDENTITY, samples=None, relu: bool = True):
    """``core.block_ops.bn_act``: out = sat(shift_round(y*a[c] + b[c] + sc(r)*r_mult)) for the
    listed samples, sat(shift_round(sc(r)*r_mult)) for the others. Returns (out uint8 [int8
    without the ReLU], pooled int64 (n, c), vmax int64 (n,)), on y's device."""
    y = _tensor("y", y)
    if y.ndim != 4 or y.dtype != torch.int8:
        raise ValueError(f"bn_act: y must be int8 NCHW, got {_desc(y)}")
    if r is not None:
        _same_device("bn_act", y, r=_tensor("r", r))
    n, c, h, w = y.shape
    checks = _Checks()
    a_h, b_h = _host_int64(a), _host_int64(b)
    shape_a = a_h.reshape(-1).shape if a_h is not None else tuple(a.reshape(-1).shape)
    shape_b = b_h.reshape(-1).shape if b_h is not None else tuple(b.reshape(-1).shape)
    if shape_a != (c,) or shape_b != (c,):
        raise ValueError(f"bn_act: a and b need one value per channel ({c}), got {shape_a}, {shape_b}")
    shift, (a_t,), (b_t,) = _coeffs("bn_act", y.device, shift, (a,), (b,), checks, scalars=(r_mult,))
    idx = _samples(samples, n, y.device, checks)
    checks.raise_first()
    if r is not None:
        chans, xs = _read_view(shortcut, r, c, (h, w))
        _residual_rows("bn_act", r, n)
    a4, b4 = a_t.view(1, c, 1, 1), b_t.view(1, c, 1, 1)
    if idx is None:
        acc = y.to(torch.int64).mul_(a4).add_(b4)
    else:
        acc = torch.zeros((n, c, h, w), dtype=torch.int64, device=y.device)
        acc.index_copy_(0, idx, y.index_select(0, idx).to(torch.int64).mul_(a4).add_(b4))
    if r is not None:
        acc[:, chans] += xs.to(torch.int64) * int(r_mult)
    v = _shift_round_(acc, shift)
    if v.numel():
        lo_v, hi_v = v.reshape(n, -1).aminmax(dim=1)
        vmax = torch.maximum(hi_v, lo_v.neg())
    else:
        vmax = torch.zeros(n, dtype=torch.int64, device=y.device)
    out = v.clamp_(*((0, 255) if relu else (-128, 127)))
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
    if o.ndim != 4 or o.dtype != torch.uint8:
        raise ValueError(f"bn_bwd_reduce: o must be the uint8 NCHW output of bn_act, got {_desc(o)}")
    if y.shape != o.shape or y.dtype != torch.int8:
        raise ValueError(f"bn_bwd_reduce: y must be int8 of o's shape {tuple(o.shape)}, got {_desc(y)}")
    if g_a.shape != o.shape or g_a.dtype != torch.int16:
        raise ValueError(f"bn_bwd_reduce: g_a must be int16 of o's shape {tuple(o.shape)}, got {_desc(g_a)}")
    _same_device("bn_bwd_reduce", o, y=y, g_a=g_a, g_b=None if g_b is None else _tensor("g_b", g_b),
                 r=None if r is None else _tensor("r", r))
    checks = _Checks()
    shift, _, _ = _coeffs("bn_bwd_reduce", o.device, shift, (), (), checks, scalars=(ma, mb))
    if g_b is not None and g_b.dtype != torch.int16:
        raise ValueError(f"bn_bwd_reduce: g_b must be int16, got {str(g_b.dtype).replace('torch.', '')}")
    n, c, h, w = o.shape
    acc = g_a.to(torch.int64)
    if int(ma) != 1:
        acc.mul_(int(ma))
    if g_b is not None:
        view, part = _write_view(b_shortcut, g_b, acc)
    idx = _samples(samples, n, o.device, checks)
    checks.raise_first()
    if r is not None:
        chans, xs = _read_view(r_shortcut, r, c, (h, w))
        _residual_rows("bn_bwd_reduce", r, n)
    if g_b is not None:
        view += part.to(torch.int64) * int(mb)
    gc = _shift_round_(acc, shift).clamp_(_I16_LO, _I16_HI)
    g_m = torch.where(o > 0, gc, torch.zeros((), dtype=torch.int64, device=o.device))
    gl, yl = _listed(g_m, idx), _listed(y, idx).to(torch.int64)
    red = torch.stack([gl.sum(dim=(0, 2, 3)), (gl * yl).sum(dim=(0, 2, 3)), _max_abs(gl, (0, 2, 3), c)], dim=1)
    gate0 = (gc * o).sum(dim=(1, 2, 3))
    gate1 = (gc[:, chans] * xs.to(torch.int64)).sum(dim=(1, 2, 3)) if r is not None else torch.zeros_like(gate0)
    return g_m.to(torch.int16), red, torch.stack([gate0, gate1], dim=1)


def bn_bwd_apply(g_m: torch.Tensor, y: torch.Tensor, p, q, t, shift: int, *, samples=None) -> torch.Tensor:
    """``core.block_ops.bn_bwd_apply``: g_y = sat16(shift_round(g_m*p[c] + y*q[c] + t[c])) for
    the listed samples (the others 0), int16 on g_m's device."""
    g_m, y = _tensor("g_m", g_m), _tensor("y", y)
    if g_m.ndim != 4 or g_m.dtype != torch.int16 or y.shape != g_m.shape or y.dtype != torch.int8:
        raise ValueError(f"bn_bwd_apply: g_m int16 and y int8 of one NCHW shape, got {_desc(g_m)}, {_desc(y)}")
    _same_device("bn_bwd_apply", g_m, y=y)
    n, c = g_m.shape[:2]
    shapes = []
    for v in (p, q, t):
        h = _host_int64(v)
        shapes.append(h.reshape(-1).shape if h is not None else tuple(v.reshape(-1).shape))
    if not shapes[0] == shapes[1] == shapes[2] == (c,):
        raise ValueError(f"bn_bwd_apply: p, q, t need one value per channel ({c})")
    checks = _Checks()
    shift, (p_t, q_t), (t_t,) = _coeffs("bn_bwd_apply", g_m.device, shift, (p, q), (t,), checks)
    idx = _samples(samples, n, g_m.device, checks)
    checks.raise_first()
    acc = _listed(g_m, idx).to(torch.int64).mul_(p_t.view(1, c, 1, 1))
    acc += _listed(y, idx).to(torch.int64).mul_(q_t.view(1, c, 1, 1))
    acc += t_t.view(1, c, 1, 1)
    res = _shift_round_(acc, shift).clamp_(_I16_LO, _I16_HI).to(torch.int16)
    if idx is None:
        return res
    return torch.zeros(g_m.shape, dtype=torch.int16, device=g_m.device).index_copy_(0, idx, res)


__all__ = ["Shortcut", "IDENTITY", "gather", "scatter", "conv_fwd_stats", "bn_act", "bn_bwd_reduce", "bn_bwd_apply"]

"""The argument check of the three kernel calls, one copy for every back-end.

The golden models (:mod:`e2train.core.golden`), the C simulation (:mod:`e2train.core.csim`)
and the fabric (:mod:`e2train.device.backend_pynq`) all call these before they compute, so
a bad call is refused by each of them with the same exception and the same message, and
the checks cannot drift apart (they had: the square-kernel check and the beta bound).

Each check returns what the back-ends need next: the validated :class:`ConvShape`, the
sample list as int32 indices, the ``out`` array to fill (made when the caller passed none)
and the multiplier as a :class:`Dyadic`. Everything is checked whether or not the sample
list is empty, so a call that is wrong is wrong on every batch. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixedpoint import (
    BETA_FRAC_BITS,
    DECAY_FRAC_BITS,
    INT8,
    INT16,
    MAX_SHIFT,
    UINT8,
    Dyadic,
    QFormat,
    format_of,
)
from .shapes import MAX_BIAS, ConvShape, ShapeError, check_samples

# lr_q is a Q2.30-style step added to a master weight held below 2**30 (golden.sign_update).
LR_Q_LIMIT = 1 << 30


@dataclass(frozen=True)
class FwdArgs:
    shape: ConvShape
    idx: np.ndarray            # int32 sample indices
    fmt: QFormat               # of y: UINT8 with the ReLU fused, else INT8
    out: np.ndarray
    bias: np.ndarray | None    # int32 (co,)
    mult: Dyadic


@dataclass(frozen=True)
class BwdDataArgs:
    shape: ConvShape
    idx: np.ndarray
    out: np.ndarray            # int16, the shape of x
    mult: Dyadic


@dataclass(frozen=True)
class PsgArgs:
    shape: ConvShape
    idx: np.ndarray


def check_x(x: np.ndarray) -> None:
    if format_of(x) not in (INT8, UINT8):
        raise TypeError(f"x must be int8 or uint8 codes, got {x.dtype}")


def check_w(w: np.ndarray) -> None:
    if format_of(w) is not INT8:
        raise TypeError(f"w must be int8 codes, got {w.dtype}")


def check_g_y(g_y: np.ndarray) -> None:
    if format_of(g_y) is not INT16:
        raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")


def check_mult(mult) -> Dyadic:
    """A requantisation multiplier (a Dyadic or an (m, s) pair) in the kernels' range."""
    m, s = (int(v) for v in mult)
    if m < 0 or m >= 1 << 31 or not 0 <= s <= MAX_SHIFT:
        raise ValueError(f"requantisation multiplier out of range: {Dyadic(m, s)} "
                         f"(need 0 <= m < 2**31, 0 <= s <= {MAX_SHIFT})")
    return Dyadic(m, s)


def _out(out: np.ndarray | None, shape: tuple, dtype: np.dtype, name: str) -> np.ndarray:
    if out is None:
        return np.zeros(shape, dtype)
    if out.shape != shape or out.dtype != dtype:
        raise ShapeError(f"out must be {name}{shape}, got {out.dtype}{out.shape}")
    if not out.flags.writeable:
        raise ShapeError("out must be writeable (the kernel writes the listed samples into it)")
    return out


def _bias(bias, co: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.shape != (co,) or b.dtype != np.int32:
        raise ShapeError(f"bias must be int32 of shape ({co},), got {b.dtype}{b.shape}")
    if b.size and int(np.abs(b.astype(np.int64)).max()) > MAX_BIAS:
        raise ShapeError(f"bias magnitude above {MAX_BIAS} could overflow the int32 accumulator")
    return b


def check_conv_fwd(x, w, bias, mult, *, stride, pad, relu, samples, out) -> FwdArgs:
    check_x(x)
    check_w(w)
    shape = ConvShape.of(x, w, stride, pad)
    idx = check_samples(samples, shape.n)
    fmt = UINT8 if relu else INT8
    out = _out(out, shape.y_shape, fmt.dtype, fmt.name)
    return FwdArgs(shape, idx, fmt, out, _bias(bias, shape.co), check_mult(mult))


def _square_4d(w: np.ndarray, name: str) -> None:
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ShapeError(f"{name} must be 4-D OIHW with a square kernel, got {w.shape}")


def check_conv_bwd_data(g_y, w, mult, *, in_hw, stride, pad, samples, out) -> BwdDataArgs:
    check_g_y(g_y)
    check_w(w)
    if g_y.ndim != 4:
        raise ShapeError(f"g_y must be 4-D NCHW, got {g_y.shape}")
    _square_4d(w, "w")
    h, wd = (int(v) for v in in_hw)
    shape = ConvShape(int(g_y.shape[0]), int(w.shape[1]), h, wd, int(w.shape[0]), int(w.shape[2]),
                      stride, pad)
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    idx = check_samples(samples, shape.n)
    out = _out(out, shape.x_shape, np.dtype(np.int16), "int16")
    return BwdDataArgs(shape, idx, out, check_mult(mult))


def check_conv_bwd_weight_psg(x, g_y, w_master, *, stride, pad, beta_q, lr_q, wd_q, samples) -> PsgArgs:
    check_x(x)
    check_g_y(g_y)
    if w_master.dtype != np.int32 or w_master.ndim != 4:
        raise TypeError(f"w_master must be 4-D int32, got {w_master.dtype}{w_master.shape}")
    if x.ndim != 4 or g_y.ndim != 4:
        raise ShapeError(f"x and g_y must be 4-D NCHW, got {x.shape} and {g_y.shape}")
    _square_4d(w_master, "w_master")
    shape = ConvShape(int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]),
                      int(w_master.shape[0]), int(w_master.shape[2]), stride, pad)
    if w_master.shape != shape.w_shape:
        raise ShapeError(f"w_master must be {shape.w_shape}, got {w_master.shape}")
    if g_y.shape != shape.y_shape:
        raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
    if not 0 <= int(lr_q) < LR_Q_LIMIT or not 0 <= int(wd_q) < 1 << DECAY_FRAC_BITS:
        raise ValueError(f"lr_q {lr_q} or wd_q {wd_q} out of range "
                         f"(need 0 <= lr_q < 2**30, 0 <= wd_q < 2**{DECAY_FRAC_BITS})")
    check_beta_q(beta_q)
    return PsgArgs(shape, check_samples(samples, shape.n))


def check_beta_q(beta_q) -> int:
    if not 0 <= int(beta_q) <= 1 << BETA_FRAC_BITS:
        raise ValueError(f"beta_q must be in [0, {1 << BETA_FRAC_BITS}] (0 = predictor off), got {beta_q}")
    return int(beta_q)

"""``core.fixedpoint``'s dyadic scales as tensors on the device: the same integers (m, s),
computed without reading a value back to the host.

A GPU step that read every scale back (``float()``) would wait for the device once per
scale, several times per layer. Here a scale is a pair of 0-d int64 tensors (m, s) on the
operands' device, computed by the same float64 steps as ``Dyadic.from_float`` (frexp, an
exact power-of-two scaling, floor(. + 1/2), the carry and the shift limits), so it equals
the host's (m, s) bit for bit; tests/torch/test_psg_sync_free.py checks that on random and
edge values. Powers of two are built from their bits (exact by construction; ``pow`` on a
GPU is not specified to be exact). What the host would raise (a non-finite or out-of-range
value) is returned as a bool tensor ``bad`` for the caller to check at a point where it
syncs anyway.
"""
from __future__ import annotations

import torch

from ..core import fixedpoint as fxp


class DyadicT:
    """m * 2**-s with m, s 0-d int64 tensors (``core.fixedpoint.Dyadic`` on the device)."""

    __slots__ = ("m", "s")

    def __init__(self, m: torch.Tensor, s: torch.Tensor):
        self.m, self.s = m, s

    @property
    def value(self) -> torch.Tensor:
        """m * 2**-s as a 0-d float64 tensor (exact)."""
        return self.m.double() * pow2(-self.s)


def pow2(e: torch.Tensor) -> torch.Tensor:
    """2**e as float64 from its bits, for int64 e clamped to the normal range [-1022, 1023]
    (the callers' exponents stay far inside it, or mark the result bad)."""
    e = e.to(torch.int64).clamp(-1022, 1023)
    return torch.bitwise_left_shift(e + 1023, 52).view(torch.float64)


def from_float(r: torch.Tensor) -> tuple[DyadicT, torch.Tensor]:
    """``Dyadic.from_float`` of a 0-d float64 tensor: (DyadicT, bad) where bad marks what the
    host raises on (r not finite or <= 0, a mantissa of 31 bits or more, r below 2**-62)."""
    bad = ~torch.isfinite(r) | (r <= 0)
    r = torch.where(bad, torch.ones_like(r), r)
    f, e = torch.frexp(r)                                     # r = f * 2**e, f in [0.5, 1)
    e = e.to(torch.int64)
    m = torch.floor(f * float(1 << fxp.MANT_BITS) + 0.5)     # f * 2**15 is exact
    s = fxp.MANT_BITS - e
    carry = m == float(1 << fxp.MANT_BITS)                    # rounding carried into a new bit
    m = torch.where(carry, m * 0.5, m)
    s = torch.where(carry, s - 1, s)
    big = s < 0                                               # r >= 2**15: keep s = 0
    m = torch.where(big, m * pow2(torch.where(big, -s, torch.zeros_like(s))), m)
    s = torch.where(big, torch.zeros_like(s), s)
    bad = bad | (m >= float(1 << 31))
    small = s > fxp.MAX_SHIFT                                 # very small r: lose mantissa bits
    m_small = torch.floor(m * pow2(torch.where(small, fxp.MAX_SHIFT - s, torch.zeros_like(s))) + 0.5)
    m = torch.where(small, m_small, m)
    s = torch.where(small, torch.full_like(s, fxp.MAX_SHIFT), s)
    bad = bad | (m == 0)
    return DyadicT(m.to(torch.int64), s), bad


def scale_for(maxabs: torch.Tensor, fmt: fxp.QFormat) -> tuple[DyadicT, torch.Tensor]:
    """``fxp.scale_for`` of a 0-d float64 tensor: maxabs onto the top code (1.0 for a max <= 0;
    bad where maxabs is not finite)."""
    nonfinite = ~torch.isfinite(maxabs)
    pos = maxabs > 0
    d, bad = from_float(torch.where(pos, maxabs, torch.ones_like(maxabs)) / float(fmt.hi))
    one = torch.ones_like(d.m)
    return DyadicT(torch.where(pos, d.m, one), torch.where(pos, d.s, torch.zeros_like(d.s))), nonfinite | (pos & bad)


def requant_multiplier(acc_scale: torch.Tensor, out_scale: DyadicT) -> tuple[DyadicT, torch.Tensor]:
    """``fxp.requant_multiplier``: the dyadic nearest acc_scale / out_scale."""
    return from_float(acc_scale / out_scale.value)

"""Expected results of the PSG lane array, from the golden model in e2train.core.

A round of the lane array (psg_lanes.v, psg::lanes_round) is a window stream; lane l sums the
pairs (x[:, xsel[l]], g[:, gsel[l]]) onto its initial value. That is the diagonal of a 1x1
convolution with n = beats, ci = co = lanes and a 1x1 image (weight (l, l) sums
x[n, l] * g[n, l]), so the bench asks golden.wgrad_terms for G_msb and G_exact: nothing of
the arithmetic is re-implemented here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from e2train.core import golden
from e2train.core.shapes import MAX_BATCH, ConvShape


def tile_terms(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G_msb, G_exact) per lane: x (beats, lanes) uint8/int8, g (beats, lanes) int16.

    Both are sums over beats, so a tile longer than the golden model's batch limit is
    summed in chunks.
    """
    if x.shape != g.shape or x.ndim != 2:
        raise ValueError(f"x and g must both be (beats, lanes), got {x.shape} and {g.shape}")
    beats, lanes = x.shape
    idx = np.arange(lanes)
    g_msb = np.zeros(lanes, np.int64)
    g_exact = np.zeros(lanes, np.int64)
    for lo in range(0, beats, MAX_BATCH):
        n = min(MAX_BATCH, beats - lo)
        shape = ConvShape(n, lanes, 1, 1, lanes, 1, 1, 0)
        m, e = golden.wgrad_terms(x[lo:lo + n].reshape(n, lanes, 1, 1), g[lo:lo + n].reshape(n, lanes, 1, 1),
                                  shape, np.arange(n))
        g_msb += m[idx, idx, 0, 0]
        g_exact += e[idx, idx, 0, 0]
    return g_msb, g_exact


@dataclass
class Round:
    """One round of the lane array: arguments, head and window beats."""
    x_unsigned: bool
    n_active: int
    msb_en: bool
    exact_en: bool
    xsel: np.ndarray          # (lanes,) window x slot per lane
    gsel: np.ndarray          # (lanes,) window g slot per lane
    init_msb: np.ndarray      # (lanes,) int64
    init_exact: np.ndarray    # (exact lanes,) int64
    x: np.ndarray             # (beats, x slots) uint8 or int8 codes
    g: np.ndarray             # (beats, g slots) int16


def expected(r: Round, history: list[Round] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Each lane's (G_msb, G) after the round: its initial value plus the golden sums over the
    pairs it selected, in the rounds of ``history`` (whose results fed the initial values of
    the next; pass the first round's initial values in ``r``) and in this one. Lanes past
    n_active, and paths that are off, add nothing; only the first len(init_exact) lanes have
    an exact sum."""
    lanes, exact_lanes = r.xsel.size, r.init_exact.size
    msb, exact = r.init_msb.astype(np.int64), r.init_exact.astype(np.int64)
    for rr in list(history) + [r]:
        m, e = tile_terms(rr.x[:, rr.xsel], rr.g[:, rr.gsel])
        on = np.arange(lanes) < rr.n_active
        if rr.msb_en:
            msb = msb + np.where(on, m, 0)
        if rr.exact_en:
            exact = exact + np.where(on[:exact_lanes], e[:exact_lanes], 0)
    return msb, exact


def random_round(rng: np.random.Generator, lanes: int, exact_lanes: int, xslots: int, gslots: int, *, beats: int,
                 extreme: bool = False, **fields) -> Round:
    """A random round (random enables, n_active in 0..lanes, selects, initial sums up to 2^40);
    ``extreme``: x and g only from the ends of their ranges and 0. ``fields`` override."""
    xu = bool(fields.pop("x_unsigned", rng.integers(0, 2)))
    if extreme:
        codes = [0, 255] if xu else [-128, 127, 0]
        x = rng.choice(codes, (beats, xslots)).astype(np.uint8 if xu else np.int8)
        g = rng.choice([-32768, 32767, 0, -1], (beats, gslots)).astype(np.int16)
    else:
        x = (rng.integers(0, 256, (beats, xslots)).astype(np.uint8) if xu
             else rng.integers(-128, 128, (beats, xslots)).astype(np.int8))
        g = np.clip(rng.normal(0, 9000, (beats, gslots)), -32768, 32767).astype(np.int16)
    r = Round(xu, int(rng.integers(0, lanes + 1)), bool(rng.integers(0, 2)), bool(rng.integers(0, 2)),
              rng.integers(0, xslots, lanes), rng.integers(0, gslots, lanes),
              rng.integers(-(1 << 40), 1 << 40, lanes), rng.integers(-(1 << 40), 1 << 40, exact_lanes), x, g)
    for k, v in fields.items():
        setattr(r, k, v)
    return r

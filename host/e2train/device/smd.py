"""Stochastic mini-batch dropping (SMD) and the rest of an epoch's random plan.

An epoch's plan -- the shuffle, which mini-batches SMD drops, the augmentation shifts -- is
drawn up front from counter-based streams ``default_rng([seed, epoch, stream])``. Two things
follow: a run can resume mid-epoch from (seed, epoch, batch index) alone and draw exactly what
the uninterrupted run drew; and runs with and without SMD see the same shuffles and shifts, so
a comparison differs only in what SMD dropped.

A dropped batch costs nothing: the trainer never reads, augments, quantises or computes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STREAM_SHUFFLE, STREAM_DROP, STREAM_SHIFT, STREAM_GATE = 1, 2, 3, 4   # STREAM_GATE: the trainer's gate draws


@dataclass
class EpochPlan:
    epoch: int
    batches: list[np.ndarray]       # sample indices of each mini-batch, in order
    dropped: np.ndarray             # bool per batch: SMD skips it entirely
    shifts: np.ndarray              # (n_samples, 2) int: the augmentation shift of each sample

    @property
    def n_batches(self) -> int:
        return len(self.batches)


def epoch_plan(n_samples: int, batch_size: int, epoch: int, seed: int, p_drop: float,
               max_shift: int) -> EpochPlan:
    if n_samples < 1:
        raise ValueError("the training set is empty")
    order = np.random.default_rng([seed, epoch, STREAM_SHUFFLE]).permutation(n_samples)
    batches = [order[i:i + batch_size] for i in range(0, n_samples, batch_size)]
    if p_drop > 0:
        dropped = np.random.default_rng([seed, epoch, STREAM_DROP]).random(len(batches)) < p_drop
    else:
        dropped = np.zeros(len(batches), bool)
    if max_shift > 0:
        shifts = np.random.default_rng([seed, epoch, STREAM_SHIFT]).integers(
            -max_shift, max_shift + 1, size=(n_samples, 2))
    else:
        shifts = np.zeros((n_samples, 2), np.int64)
    return EpochPlan(epoch, batches, dropped, shifts)


def shift_images(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate each NCHW image by its (dy, dx), filling with zeros (the standardised mean)."""
    s = int(np.abs(shifts).max()) if shifts.size else 0
    if s == 0:
        return x
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
    out = np.empty_like(x)
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            sel = np.nonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))[0]
            if sel.size:
                out[sel] = xp[sel, :, s - dy: s - dy + h, s - dx: s - dx + w]
    return out

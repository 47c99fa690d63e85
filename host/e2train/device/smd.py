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


def batch_moves(idx: np.ndarray, shifts: np.ndarray) -> bool:
    """Whether any image of the batch ``idx`` is shifted (``batch_images`` then augments it)."""
    return _moves(np.asarray(shifts)[np.asarray(idx)])


def _moves(sh: np.ndarray) -> bool:
    """Whether any of the batch's (dy, dx) shifts is not zero."""
    return bool(sh.size and np.abs(sh).max())


def batch_images(data: np.ndarray, idx: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, bool]:
    """The batch ``data[idx]`` (NCHW), each image translated by its (dy, dx) with zeros shifted
    in (the standardised mean); and whether any image moved. One pass an element without a
    shift (the gather); with shifts two (each image's kept part gathered from the data set, then
    stored where it lands; the borders it leaves are zeroed instead), no padded copy."""
    idx = np.asarray(idx)
    sh = np.asarray(shifts)[idx]
    if not _moves(sh):
        return data[idx], False
    _, c, h, w = data.shape
    out = np.empty((len(idx), c, h, w), data.dtype)
    for dy, dx in np.unique(sh, axis=0):
        sel = np.nonzero((sh[:, 0] == dy) & (sh[:, 1] == dx))[0]
        # where the kept part lands, clamped (a shift past the image keeps nothing)
        r0, r1 = min(max(dy, 0), h), max(h + min(dy, 0), 0)
        c0, c1 = min(max(dx, 0), w), max(w + min(dx, 0), 0)
        if r0 < r1 and c0 < c1:
            out[sel, :, r0:r1, c0:c1] = data[idx[sel], :, r0 - dy:r1 - dy, c0 - dx:c1 - dx]
        r1, c1 = max(r0, r1), max(c0, c1)
        for rows, cols in ((slice(0, r0), slice(None)), (slice(r1, h), slice(None)),
                           (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, w))):
            out[sel, :, rows, cols] = 0
    return out, True

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

from ..core.pixels import Pixels, standardise
from ..core.train_keys import AUGMENT_PADS

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


def pad_fill(data: np.ndarray | Pixels) -> np.ndarray:
    """Each channel's lowest value over the data set (NCHW): the ``"min"`` padding's fill."""
    if isinstance(data, Pixels):
        return data.channel_min()
    return data.min(axis=(0, 2, 3))


def batch_images(data: np.ndarray | Pixels, idx: np.ndarray, shifts: np.ndarray, pad: str = "mean",
                 fill: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """The batch ``data[idx]`` (NCHW, float32), each image translated by its (dy, dx), and
    whether any image moved: out[r, c] = x[r - dy, c - dx] where that lies in the image. Images
    kept as 8-bit codes (``core.pixels.Pixels``) are standardised through their table as they
    are gathered: the same numbers as gathering the float32 images. Where a shifted pixel lies
    outside the image, ``pad`` says what shows (``core.train_keys.AUGMENT_PADS``):

    * ``"mean"`` (the default): zero, the standardised mean, as He et al.'s zero padding of
      mean-subtracted CIFAR; on digits a grey band on a black background;
    * ``"edge"``: the nearest edge pixel, x[clamp(r - dy), clamp(c - dx)]: the row or column
      repeated is like the one pushed out, so the batch keeps the unshifted images' statistics;
    * ``"min"``: ``fill``, one value per channel: the data set's lowest (``pad_fill``), black
      for images standardised from pixels that start at 0 (torchvision's padding before
      normalising).

    Why it can matter (docs/device-training.md, "The augmentation's border"): BN's running
    statistics follow the shifted images and evaluation sees unshifted ones; on digits, with the
    mean's grey band, the stem's statistics differ enough that the SLU gates open blocks at
    evaluation that training barely ran. (Held out, the other paddings trained no better.)

    One pass an element without a shift (the gather); with shifts two (the gather, then the store
    where each pixel lands), no padded copy."""
    if pad not in AUGMENT_PADS:
        raise ValueError(f"augment_pad must be one of {', '.join(AUGMENT_PADS)}, not {pad!r}")
    if isinstance(data, Pixels):
        src, table, dtype = data.codes, data.table, np.dtype(np.float32)
        look = lambda codes: standardise(codes, table)      # noqa: E731
    else:
        src, dtype, look = data, data.dtype, lambda x: x     # noqa: E731
    idx = np.asarray(idx)
    sh = np.asarray(shifts)[idx]
    if not _moves(sh):
        return look(src[idx]), False
    if pad == "min" and (fill is None or np.shape(fill) != (data.shape[1],)):
        raise ValueError(f"augment_pad 'min' needs one fill value per channel ({data.shape[1]}): pass pad_fill(data)")
    _, c, h, w = data.shape
    out = np.empty((len(idx), c, h, w), dtype)
    border = np.asarray(fill, dtype)[:, None, None] if pad == "min" else 0     # "edge" uses none
    for dy, dx in np.unique(sh, axis=0):
        sel = np.nonzero((sh[:, 0] == dy) & (sh[:, 1] == dx))[0]
        if pad == "edge":
            rows = np.clip(np.arange(h) - dy, 0, h - 1)
            cols = np.clip(np.arange(w) - dx, 0, w - 1)
            out[sel] = look(src[idx[sel][:, None, None, None], np.arange(c)[None, :, None, None],
                                rows[None, None, :, None], cols[None, None, None, :]])
            continue
        # where the kept part lands, clamped (a shift past the image keeps nothing)
        r0, r1 = min(max(dy, 0), h), max(h + min(dy, 0), 0)
        c0, c1 = min(max(dx, 0), w), max(w + min(dx, 0), 0)
        if r0 < r1 and c0 < c1:
            out[sel, :, r0:r1, c0:c1] = look(src[idx[sel], :, r0 - dy:r1 - dy, c0 - dx:c1 - dx])
        r1, c1 = max(r0, r1), max(c0, c1)
        for rows, cols in ((slice(0, r0), slice(None)), (slice(r1, h), slice(None)),
                           (slice(r0, r1), slice(0, c0)), (slice(r0, r1), slice(c1, w))):
            out[sel, :, rows, cols] = border
    return out, True

"""Batches for the torch trainer: ``e2train.data.datasets`` arrays as tensors, with augmentation.

The data sets are small enough to live in memory as one tensor, so batching is an index
permutation (seeded per epoch: a resumed run sees the same batches) and augmentation is
done on the whole batch in torch:

* digits (8x8): random shifts of up to +-1 pixel (zero padding), as in the calibration;
* MNIST (28x28): random shifts of up to +-2 pixels;
* CIFAR (32x32), Imagenette: random crops from a 4-pixel zero padding and horizontal flips.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch

from ..data import datasets


@dataclass
class Data:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None    # held out of the training set (``split_validation``)
    y_val: torch.Tensor | None = None

    @cached_property
    def pad_fill(self) -> torch.Tensor:
        """Each channel's lowest training value, the ``augment_pad`` "min" fill: one reduction a
        run, not one an epoch (``replace`` makes a new Data, which computes its own)."""
        return self.x_train.amin(dim=(0, 2, 3))

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        return datasets.num_classes(self.name)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])


def load(name: str, data_dir=None, limit_train: int | None = None) -> Data:
    xtr, ytr, xte, yte = datasets.load(name, data_dir)
    if limit_train:
        xtr, ytr = xtr[:limit_train], ytr[:limit_train]
    t = torch.from_numpy
    return Data(name.lower().replace("-", ""), t(xtr), t(ytr), t(xte), t(yte))


def split_validation(data: Data, fraction: float, seed: int = 0) -> Data:
    """Hold ``fraction`` of the training set out as a validation split (a seeded, class-blind
    random choice); the rest stays the training set, in its original order. The test set is
    untouched: decisions read the validation split, the test set only reports."""
    keep, val = (torch.from_numpy(i) for i in datasets.holdout_indices(data.x_train.shape[0], fraction, seed))
    return replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                   x_val=data.x_train[val], y_val=data.y_train[val])


def augment(x: torch.Tensor, name: str, gen: torch.Generator, pad_mode: str = "mean",
            fill: torch.Tensor | None = None) -> torch.Tensor:
    """Random shifts (digits: +-1 px; MNIST: +-2 px; CIFAR, Imagenette: +-4 px crop and
    horizontal flip). Digits are not flipped (a mirrored digit is another symbol). The border a
    shift leaves shows ``pad_mode`` (config ``augment_pad``, the device's ``smd.batch_images``
    rule): zero, the standardised mean ("mean"); the image's edge pixels ("edge"); or ``fill``,
    each channel's lowest training value ("min")."""
    pad = {"digits": 1, "mnist": 2}.get(name, 4)
    n, c, h, w = x.shape
    if pad_mode == "edge":
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    elif pad_mode == "min":
        xp = fill.to(x.dtype)[None, :, None, None].expand(n, c, h + 2 * pad, w + 2 * pad).clone()
        xp[:, :, pad:pad + h, pad:pad + w] = x
    else:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])             # n x h
    cols = (dx[:, None] + torch.arange(w)[None, :])             # n x w
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    if name not in ("digits", "mnist"):
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(3)
    return out


def train_batches(data: Data, batch_size: int, epoch: int, seed: int, augmentation: bool = True,
                  pad_mode: str = "mean"):
    """Yields (x, y, indices) for one epoch; the order depends only on (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    fill = data.pad_fill if augmentation and pad_mode == "min" else None
    perm = torch.randperm(data.x_train.shape[0], generator=gen)
    for i in range(0, perm.numel(), batch_size):
        idx = perm[i: i + batch_size]
        x = data.x_train[idx]
        if augmentation:
            x = augment(x, data.name, gen, pad_mode, fill)
        yield x, data.y_train[idx], idx


def num_batches(data: Data, batch_size: int) -> int:
    return -(-data.x_train.shape[0] // batch_size)

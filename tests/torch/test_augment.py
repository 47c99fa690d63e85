"""The torch trainer's shifts pad the border by the same rule as the device's (config
``augment_pad``; device: ``smd.batch_images``): for the same shifts the two give the same images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from e2train.device.smd import batch_images, pad_fill
from e2train.torch import data as tdata


@pytest.mark.parametrize("pad_mode", ["mean", "edge", "min"])
@pytest.mark.parametrize("name, pad", [("digits", 1), ("mnist", 2)])
def test_torch_shifts_are_the_devices_for_every_padding(name, pad, pad_mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 7, 5)).astype(np.float32)
    fill = pad_fill(x)
    got = tdata.augment(torch.from_numpy(x), name, torch.Generator().manual_seed(11), pad_mode,
                        torch.from_numpy(fill))
    # the same draws again: torch takes the crop at (dy', dx') of the padded image, which is a
    # shift by (pad - dy', pad - dx') in batch_images's terms
    gen = torch.Generator().manual_seed(11)
    dy = torch.randint(0, 2 * pad + 1, (6,), generator=gen).numpy()
    dx = torch.randint(0, 2 * pad + 1, (6,), generator=gen).numpy()
    shifts = np.stack([pad - dy, pad - dx], axis=1)
    assert np.abs(shifts).max() > 0
    want, _ = batch_images(x, np.arange(6), shifts, pad_mode, fill)
    np.testing.assert_array_equal(got.numpy(), want)


def test_train_batches_fill_the_min_padding_with_the_training_sets_channel_minimum():
    """Same seed, same draws: the "min" batches are the "mean" batches with every border pixel
    (exactly 0 there; the data has no zeros) replaced by its channel's lowest training value."""
    x = torch.randn(10, 3, 6, 6)
    d = tdata.Data("digits", x, torch.zeros(10, dtype=torch.long), x[:2], torch.zeros(2, dtype=torch.long))
    lo = x.amin(dim=(0, 2, 3))[None, :, None, None]
    borders = 0
    for (xm, _, im), (xn, _, inn) in zip(tdata.train_batches(d, 4, 0, 0, True, "mean"),
                                         tdata.train_batches(d, 4, 0, 0, True, "min")):
        assert torch.equal(im, inn)
        border = xm == 0
        borders += int(border.sum())
        assert torch.equal(xn, torch.where(border, lo.expand_as(xm), xm))
    assert borders > 0

"""Images kept as 8-bit codes (core.pixels.Pixels, what `e2train train` uploads): the trainer
standardises each batch as it gathers it and trains on the same numbers as from float32
images; the only difference is the lookup's ARM work, tallied."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.pixels import Pixels
from e2train.device.nn_layers import op_count
from e2train.device.smd import batch_images, pad_fill
from e2train.device.trainer import Trainer

TINY = dict(model="resnet8", width=4, batch_size=32, augment_shift=2, progress_every=0, conv_lr=0.01,
            slu_downsample=True)


def _pixels(n=9, channels=2, seed=7):
    rng = np.random.default_rng(seed)
    table = np.sort(rng.standard_normal((channels, 256)), axis=1).astype(np.float32)
    return Pixels(rng.integers(0, 256, (n, channels, 5, 4), dtype=np.uint8), table)


@pytest.mark.parametrize("pad", ["mean", "edge", "min"])
def test_a_batch_of_codes_is_the_batch_of_their_standardised_images(pad):
    """batch_images and pad_fill on Pixels equal them on the float32 images, for every padding
    and shifts of up to 2 px and past the image; the result is float32."""
    px = _pixels()
    floats = px.standardised()
    rng = np.random.default_rng(8)
    idx = np.array([4, 0, 7, 7, 2])
    shifts = rng.integers(-2, 3, size=(9, 2))
    shifts[2], shifts[7] = (6, -1), (1, -5)
    assert np.array_equal(pad_fill(px), pad_fill(floats))
    fill = pad_fill(px) if pad == "min" else None
    for sh in (shifts, np.zeros_like(shifts)):
        got, moved = batch_images(px, idx, sh, pad, fill)
        want, want_moved = batch_images(floats, idx, sh, pad, fill)
        assert got.dtype == np.float32 and moved == want_moved
        assert np.array_equal(got, want)


@pytest.mark.parametrize("pad", ["mean", "min"])
def test_training_on_codes_is_training_on_their_images(digits_pixels, pad):
    """Two epochs with SMD, SLU, PSG and shifts: the same losses, accuracies and weights to the
    bit; the ARM work differs by one lookup an element of every batch run and every evaluation
    image, and nothing else."""
    x_tr, y_tr, x_te, y_te = digits_pixels
    px = (x_tr[:160], y_tr[:160], x_te[:64], y_te[:64])
    fl = (px[0].standardised(), px[1], px[2].standardised(), px[3])
    cfg = dict(TINY, epochs=2, seed=3, augment_pad=pad)
    runs = {}
    for name, data in (("pixels", px), ("floats", fl)):
        tr = Trainer(cfg, data, golden)
        runs[name] = (tr, tr.run())
    (tp, rp), (tf, rf) = runs["pixels"], runs["floats"]
    assert [h["train_loss"] for h in rp["history"]] == [h["train_loss"] for h in rf["history"]]
    assert rp["test_acc"] == rf["test_acc"]
    assert rp["skips"]["batch_drop_ratio"] == rf["skips"]["batch_drop_ratio"]
    for (n, a), (m, b) in zip(tp.model.state().items(), tf.model.state().items()):
        assert n == m and np.array_equal(a, b), n
    kinds_p, kinds_f = dict(tp.arm.by_kind), dict(tf.arm.by_kind)
    looked_up = kinds_p.pop("standardise")
    assert kinds_p == kinds_f and "standardise" not in kinds_f
    # one lookup an element gathered ("batch" counts the gathered elements, one op each)
    assert looked_up == op_count("standardise", kinds_p["batch"] // op_count("batch", 1)) > 0
    # evaluation (once an epoch) looked each test image up too, and did nothing else more
    evaluated = len(rp["history"]) * px[2].size
    assert tp.eval_work.arm_ops - tf.eval_work.arm_ops == op_count("standardise", evaluated)
    assert tp.eval_work.macs == tf.eval_work.macs


def test_floats_and_codes_do_not_mix_and_codes_need_their_table():
    px = _pixels()
    y = np.zeros(9, np.int64)
    with pytest.raises(ValueError, match="both be pixel codes or both float images"):
        Trainer(dict(TINY, epochs=1), (px, y, px.standardised(), y), golden)
    with pytest.raises(ValueError, match="8-bit pixel codes without a pixel_table"):
        Trainer(dict(TINY, epochs=1), (px.codes, y), golden)

"""core.pixels: images kept as 8-bit codes give the float32 images' numbers bit for bit.

The expected values are computed here from the raw codes with the standardisation written
out (float32 pixel values, float64 statistics, float32 result), not through the loader's
helpers, so a table that drifted from it by one rounding would fail.
"""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from e2train.core.pixels import Pixels, check_table, code_table, standardise
from e2train.data import datasets


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _standardised(x: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """The whole-array standardisation, written out."""
    axes = (0, 2, 3) if per_channel else None
    mean = x.mean(axis=axes, keepdims=per_channel, dtype=np.float64)
    std = x.std(axis=axes, keepdims=per_channel, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return ((x - mean) / std).astype(np.float32)


@pytest.mark.parametrize("channels, per_channel, scale", [(3, True, 255.0), (1, False, None), (4, True, 255.0)])
def test_the_table_gives_the_standardised_images_bit_for_bit(channels, per_channel, scale):
    rng = np.random.default_rng(channels)
    codes = rng.integers(0, 256, (37, channels, 9, 7), dtype=np.uint8)
    values = np.arange(256).astype(np.float32) / scale if scale else np.arange(256).astype(np.float32)
    x = codes.astype(np.float32) / scale if scale else codes.astype(np.float32)
    want = _standardised(x, per_channel)
    axes = (0, 2, 3) if per_channel else None
    table = code_table(values, x.mean(axis=axes, keepdims=per_channel, dtype=np.float64),
                       x.std(axis=axes, keepdims=per_channel, dtype=np.float64))
    got = standardise(codes, np.repeat(table, channels, axis=0) if table.shape[0] == 1 else table)
    assert got.dtype == np.float32 and np.array_equal(_bits(got), _bits(want))


def _write_cifar(root, n_train, n_test, rng):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    raw = []
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        raw.append(data.reshape(-1, 3, 32, 32))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(rng.integers(0, 10, n))}, f, protocol=2)
    return np.concatenate(raw[:5]), raw[5]


def test_cifar_as_pixels_is_its_codes_and_standardises_to_the_float_loader(tmp_path):
    codes_tr, codes_te = _write_cifar(tmp_path, 6, 5, np.random.default_rng(3))
    xtr, _, xte, _ = datasets.load("cifar10", tmp_path, pixels=True)
    assert isinstance(xtr, Pixels) and np.array_equal(xtr.codes, codes_tr) and np.array_equal(xte.codes, codes_te)
    ftr, _, fte, _ = datasets.load("cifar10", tmp_path)
    # the float images, written out: pixels / 255 as float32, the training set's statistics
    f = codes_tr.astype(np.float32) / 255.0
    mean = f.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = f.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    want_te = ((codes_te.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    assert np.array_equal(_bits(ftr), _bits(_standardised(f))) and np.array_equal(_bits(fte), _bits(want_te))
    assert np.array_equal(_bits(xtr.standardised()), _bits(ftr))
    assert xtr.codes.nbytes * 4 == ftr.nbytes                         # a byte a pixel, not four


def test_mnist_as_pixels(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "mnist"
    folder.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (11, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 11, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4, dtype=np.uint8)}
    for name, a in arrays.items():
        head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        with gzip.open(folder / (name + ".gz"), "wb") as f:
            f.write(head + a.tobytes())
    xtr, _, xte, _ = datasets.load("mnist", tmp_path, pixels=True)
    assert np.array_equal(xtr.codes[:, 0], arrays["train-images-idx3-ubyte"])
    f = arrays["train-images-idx3-ubyte"].astype(np.float32)[:, None] / 255.0
    assert np.array_equal(_bits(datasets.load("mnist", tmp_path)[0]), _bits(_standardised(f)))
    assert np.array_equal(_bits(xtr.standardised()), _bits(_standardised(f)))


def test_digits_as_pixels_keeps_the_float_loaders_numbers():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    xtr, ytr, xte, yte = datasets.load("digits", pixels=True)
    ftr, fytr, fte, fyte = datasets.load("digits")
    d = load_digits()
    x = d.images.astype(np.float32)[:, None]
    x_tr, x_te, _, _ = train_test_split(x, d.target, test_size=datasets.DIGITS_TEST, stratify=d.target, random_state=0)
    mean, std = x_tr.mean(dtype=np.float64), x_tr.std(dtype=np.float64)         # one scalar for all pixels
    assert np.array_equal(_bits(ftr), _bits(((x_tr - mean) / std).astype(np.float32)))
    assert np.array_equal(_bits(fte), _bits(((x_te - mean) / std).astype(np.float32)))
    assert np.array_equal(_bits(xtr.standardised()), _bits(ftr)) and np.array_equal(_bits(xte.standardised()), _bits(fte))
    assert np.array_equal(ytr, fytr) and np.array_equal(yte, fyte)
    assert xtr.codes.max() == 16 and xtr.table.shape == (1, 256)


def test_a_set_that_is_not_made_of_pixels_stays_float():
    xtr, _, _, _ = datasets.load("sat6synthetic", pixels=True)
    assert isinstance(xtr, np.ndarray) and xtr.dtype == np.float32


def test_selecting_images_keeps_the_table_and_the_channel_minimum_is_the_lowest_code():
    rng = np.random.default_rng(5)
    table = np.sort(rng.normal(size=(2, 256)), axis=1).astype(np.float32)
    px = Pixels(rng.integers(7, 200, (10, 2, 4, 4), dtype=np.uint8), table)
    sub = px[[1, 3, 5]]
    assert isinstance(sub, Pixels) and sub.table is px.table and sub.shape == (3, 2, 4, 4) and len(sub) == 3
    assert np.array_equal(sub.standardised(), px.standardised()[[1, 3, 5]])
    assert np.array_equal(px.channel_min(), px.standardised().min(axis=(0, 2, 3)))


@pytest.mark.parametrize("table, match", [
    (np.zeros((3, 256)), r"must be 2 x 256"),
    (np.zeros((2, 255)), r"must be 2 x 256"),
    (np.array([[0.0] * 255 + [np.inf]] * 2), r"finite floats"),
    (np.zeros((2, 256), np.int32), r"finite floats"),
    (np.tile(np.linspace(1, 0, 256), (2, 1)), r"must not decrease"),
])
def test_a_bad_table_is_refused(table, match):
    with pytest.raises(ValueError, match=match):
        check_table(table, 2)
    with pytest.raises(ValueError, match=match):
        Pixels(np.zeros((1, 2, 3, 3), np.uint8), table)


def test_codes_that_are_not_uint8_nchw_are_refused():
    table = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (1, 1))
    for codes in (np.zeros((1, 1, 3, 3), np.int16), np.zeros((1, 3, 3), np.uint8)):
        with pytest.raises(ValueError, match="pixel codes must be uint8 NCHW"):
            Pixels(codes, table)

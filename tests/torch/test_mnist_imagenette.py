"""MNIST and Imagenette from local files in their published formats (the idx files; the
imagenette2-160 folder layout), built here in miniature; missing files are a one-line error."""
import gzip

import numpy as np
import pytest

from e2train.data import datasets
from e2train.data.datasets import DatasetError


def _idx(path, arr, gz):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    xtr, ytr = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    xte, yte = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    for name, arr in zip(datasets.MNIST_FILES, (xtr, ytr, xte, yte)):
        _idx(d / name, arr, gz)
    a, b, c, e = datasets.load("mnist", tmp_path)
    assert a.shape == (20, 1, 28, 28) and c.shape == (6, 1, 28, 28) and a.dtype == np.float32
    assert np.array_equal(b, ytr) and np.array_equal(e, yte) and b.dtype == np.int64
    assert abs(float(a.mean())) < 1e-4 and abs(float(a.std()) - 1) < 1e-3
    # the pixel order survives: standardisation is monotone
    assert np.array_equal(np.argsort(a[0].ravel(), kind="stable"), np.argsort(xtr[0].ravel(), kind="stable"))


def test_mnist_missing_or_bad_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte") as e:
        datasets.load("mnist", tmp_path)
    assert "\n" not in str(e.value)
    d = tmp_path / "mnist"
    d.mkdir()
    for name in datasets.MNIST_FILES:
        (d / name).write_bytes(b"\x00\x00\x09\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="bad magic"):
        datasets.load("mnist", tmp_path)


def test_imagenette_folder_layout(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    root = tmp_path / datasets.IMAGENETTE_DIR
    wnids = [f"n0{i:07d}" for i in range(10)]
    for part, n in (("train", 2), ("val", 1)):
        for k, w in enumerate(wnids):
            (root / part / w).mkdir(parents=True)
            for j in range(n):
                img = rng.integers(0, 256, (40 + k, 60, 3)).astype(np.uint8)     # not square
                Image.fromarray(img).save(root / part / w / f"{w}_{j}.JPEG")
    xtr, ytr, xte, yte = datasets.load("imagenette", tmp_path)
    s = datasets.IMAGENETTE_SIZE
    assert xtr.shape == (20, 3, s, s) and xte.shape == (10, 3, s, s)
    assert list(ytr) == [k for k in range(10) for _ in range(2)] and list(yte) == list(range(10))
    assert datasets.num_classes("imagenette") == 10


def test_imagenette_missing_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="imagenette2-160.tgz") as e:
        datasets.load("imagenette", tmp_path)
    assert "\n" not in str(e.value)

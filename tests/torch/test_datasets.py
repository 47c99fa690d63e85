"""e2train.data.datasets: digits split and scaling, the CIFAR python format, refusals."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

from e2train.data import datasets
from e2train.data.datasets import DatasetError


def test_digits_split_and_standardisation(digits):
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert str(digits.x_train.dtype) == "torch.float32" and str(digits.y_train.dtype) == "torch.int64"
    assert abs(float(digits.x_train.mean())) < 1e-4 and abs(float(digits.x_train.std()) - 1) < 1e-3
    assert np.bincount(digits.y_test.numpy()).min() >= 35          # stratified


def _write_batch(path, n, rng, labels_key=b"labels", ncls=10):
    d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), labels_key: list(rng.integers(0, ncls, n)),
         b"batch_label": b"synthetic"}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_cifar10_python_format(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _write_batch(root / f"data_batch_{i}", 7, rng)
    _write_batch(root / "test_batch", 5, rng)
    xtr, ytr, xte, yte = datasets.load("cifar10", tmp_path)
    assert xtr.shape == (35, 3, 32, 32) and xte.shape == (5, 3, 32, 32)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert np.allclose(xtr.mean(axis=(0, 2, 3)), 0, atol=1e-4)


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _write_batch(root / "train", 9, rng, b"fine_labels", 100)
    _write_batch(root / "test", 4, rng, b"fine_labels", 100)
    _, ytr, _, _ = datasets.load("cifar100", tmp_path)
    assert ytr.shape == (9,) and datasets.num_classes("cifar100") == 100


def test_missing_cifar_says_what_to_download(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        datasets.load("cifar10", tmp_path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_with_code_is_refused(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for name in ("train", "test"):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": Evil(), b"fine_labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        datasets.load("cifar100", tmp_path)


def test_garbage_and_unknown_names(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    (root / "train").write_bytes(b"\x00garbage")
    (root / "test").write_bytes(b"\x00garbage")
    with pytest.raises(DatasetError, match="not a readable CIFAR"):
        datasets.load("cifar100", tmp_path)
    with pytest.raises(DatasetError, match="unknown data set"):
        datasets.load("imagenet")


def test_board_side_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['sklearn'] = None; "
            "import e2train.core.energy, e2train.data.datasets; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

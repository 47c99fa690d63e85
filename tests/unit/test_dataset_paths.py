"""Where the user's data set files may lie: the folder an archive extracts to under --data-dir,
or --data-dir that folder itself; an archive left unextracted is named with the command."""
import gzip
import pickle

import numpy as np
import pytest

from e2train.data import datasets
from e2train.data.datasets import DatasetError


def _cifar10_files(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(d))


def test_cifar_data_dir_may_be_the_extracted_folder_itself(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10_files(folder)
    under = datasets.load("cifar10", tmp_path)
    itself = datasets.load("cifar10", folder)
    assert under[0].shape == itself[0].shape == (20, 3, 32, 32)
    assert np.array_equal(under[0], itself[0]) and np.array_equal(under[1], itself[1])


def test_an_unextracted_cifar_archive_is_named_with_the_command(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not opened")
    with pytest.raises(DatasetError) as e:
        datasets.load("cifar10", tmp_path)
    msg = str(e.value)
    assert f"tar xzf {tmp_path / 'cifar-10-python.tar.gz'} -C {tmp_path}" in msg and "\n" not in msg


def test_a_folder_missing_one_batch_is_still_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10_files(folder)
    (folder / "data_batch_3").unlink()
    for where in (tmp_path, folder):
        with pytest.raises(DatasetError, match="data_batch_3 is missing"):
            datasets.load("cifar10", where)


def _idx(path, arr):
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(head + arr.astype(np.uint8).tobytes()))


def test_mnist_data_dir_may_be_the_folder_of_its_four_files(tmp_path):
    rng = np.random.default_rng(1)
    for name, shape in zip(datasets.MNIST_FILES, [(6, 28, 28), (6,), (3, 28, 28), (3,)]):
        _idx(tmp_path / (name + ".gz"), rng.integers(0, 10 if len(shape) == 1 else 256, shape))
    xtr, ytr, xte, yte = datasets.load("mnist", tmp_path)
    assert xtr.shape == (6, 1, 28, 28) and yte.shape == (3,)

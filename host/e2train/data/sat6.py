"""DeepSat SAT-6 (Basu et al. 2015) from its published CSV files, and a same-shaped stand-in.

numpy-only, like ``e2train.data.datasets`` (which dispatches the names ``sat6`` and
``sat6-synthetic`` here). The published form (Kaggle "DeepSat (SAT-6) Airborne Dataset", the
source paper 003 cites) is four headerless CSV files:

* ``X_train_sat6.csv`` / ``X_test_sat6.csv``: one image per row, 3136 integers 0..255, the
  28 x 28 x 4 patch in row-major H, W, C order (channels R, G, B, NIR);
* ``y_train_sat6.csv`` / ``y_test_sat6.csv``: one-hot rows of 6 labels, in the order of
  ``sat6annotations.csv`` (building, barren land, trees, grassland, road, water).

The loader returns float32 N x 4 x 28 x 28 standardised per channel with the training set's
statistics and int64 labels. Reading the full CSVs (about 1.4 GB of text) takes minutes with
numpy; ``limit`` reads only the first rows of each file.

``synthetic(...)``: a seeded stand-in of the same shape and class count for tests and the
benchmark (no download): each class is a fixed random 4 x 28 x 28 template plus per-image
noise, so a small CNN learns it in a few epochs but not in one step.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CLASSES = ("building", "barren_land", "trees", "grassland", "road", "water")
SHAPE = (4, 28, 28)
FILES = ("X_train_sat6.csv", "y_train_sat6.csv", "X_test_sat6.csv", "y_test_sat6.csv")
URL = "https://www.kaggle.com/datasets/crawford/deepsat-sat6"
SUBDIR = "sat6"


def _error(msg: str) -> Exception:
    from .datasets import DatasetError     # one error type for every data set
    return DatasetError(msg)


def _read_rows(path: Path, width: int, limit: int | None) -> np.ndarray:
    rows: list[np.ndarray] = []
    with open(path, "r") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            v = np.array(line.split(","), dtype=np.float32)
            if v.size != width:
                raise _error(f"{path}: line {i + 1} has {v.size} values, expected {width}: "
                             f"not the published SAT-6 CSV (download it from {URL})")
            rows.append(v)
    if not rows:
        raise _error(f"{path} is empty: download the SAT-6 CSVs from {URL}")
    return np.stack(rows)


def find_files(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the four CSVs (``data_dir`` or ``data_dir/sat6``); a one-line
    DatasetError naming the first missing file and where to get it otherwise."""
    from .datasets import default_data_dir
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = root if (root / FILES[0]).is_file() else root / SUBDIR
    missing = [folder / n for n in FILES if not (folder / n).is_file()]
    if missing:
        raise _error(f"sat6 not found: {missing[0]} is missing. Download the four CSVs ({', '.join(FILES)}) "
                     f"from {URL} into {root / SUBDIR}, or pass data_dir= / set E2TRAIN_DATA.")
    return folder


def load_csv(data_dir: str | os.PathLike | None = None, limit: int | None = None):
    """(x_train, y_train, x_test, y_test) from the four CSVs under ``data_dir`` or
    ``data_dir/sat6`` (default: ``$E2TRAIN_DATA``)."""
    from .datasets import UNIT_VALUES, _pixel_set, _standardise
    folder = find_files(data_dir)
    out = []
    for xname, yname in ((FILES[0], FILES[1]), (FILES[2], FILES[3])):
        x = _read_rows(folder / xname, int(np.prod(SHAPE)), limit)
        y1 = _read_rows(folder / yname, len(CLASSES), limit)
        if x.shape[0] != y1.shape[0]:
            raise _error(f"{folder / xname} has {x.shape[0]} rows but {folder / yname} has {y1.shape[0]}")
        if not np.all(y1.sum(1) == 1):
            raise _error(f"{folder / yname}: labels are not one-hot rows of 6")
        # rows are H, W, C: to N, C, H, W
        out.append((x.reshape(-1, 28, 28, 4).transpose(0, 3, 1, 2), y1.argmax(1).astype(np.int64)))
    (xtr, ytr), (xte, yte) = out
    if all(((v >= 0) & (v <= 255) & (v == np.round(v))).all() for v in (xtr, xte)):
        # the published files hold 8-bit pixels: kept as codes (core.pixels)
        xtr, xte = _pixel_set(xtr.astype(np.uint8), xte.astype(np.uint8), UNIT_VALUES, per_channel=True)
    else:
        xtr, xte = _standardise(np.ascontiguousarray(xtr / 255.0, dtype=np.float32),
                                np.ascontiguousarray(xte / 255.0, dtype=np.float32), per_channel=True)
    return xtr, ytr, xte, yte


def synthetic(n_train: int = 2048, n_test: int = 512, seed: int = 0, noise: float = 1.5):
    """The stand-in: same shape (4 x 28 x 28), 6 classes, balanced, standardised."""
    rng = np.random.default_rng(seed)
    # smooth class templates (a blurred random field), so that convolutions and pooling matter
    base = rng.standard_normal((len(CLASSES), *SHAPE)).astype(np.float32)
    for _ in range(2):
        base = (base + np.roll(base, 1, 2) + np.roll(base, 1, 3) + np.roll(base, -1, 2) + np.roll(base, -1, 3)) / 5
    base /= base.std(axis=(1, 2, 3), keepdims=True)

    def draw(n: int):
        y = np.arange(n) % len(CLASSES)
        rng.shuffle(y)
        x = base[y] + noise * rng.standard_normal((n, *SHAPE)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    from .datasets import _standardise
    xtr, xte = _standardise(xtr, xte, per_channel=True)
    return xtr, ytr, xte, yte

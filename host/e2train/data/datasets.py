"""Data sets as numpy arrays: float32 NCHW, standardised, int64 labels.

numpy-only at import (the on-device trainer's host side uses it); scikit-learn is imported
lazily inside the digits loader. Augmentation and batching live in ``e2train.torch.data``.

    x_train, y_train, x_test, y_test = load("digits")
    load("cifar10", pixels=True)         # images as 8-bit codes and their table (core.pixels)
    load("cifar10", data_dir="~/data")   # expects ~/data/cifar-10-batches-py/
    load("mnist", data_dir="~/data")     # expects ~/data/mnist/ with the four idx files
    load("imagenette", data_dir="~/data")  # expects ~/data/imagenette2-160/{train,val}/<wnid>/*.JPEG
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ..core.pixels import CODES, Pixels, code_table

NAMES = ("digits", "cifar10", "cifar100", "mnist", "imagenette", "sat6", "sat6synthetic")
DIGITS_TEST = 360          # 1437 train / 360 test, stratified, random_state 0
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


class DatasetError(ValueError):
    """A data set that is missing, unknown or malformed; the message says what to do."""


def default_data_dir() -> Path:
    """``$E2TRAIN_DATA`` if set, else ``~/.cache/e2train/data``."""
    env = os.environ.get("E2TRAIN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "e2train" / "data"


def load(name: str, data_dir: str | os.PathLike | None = None, pixels: bool = False):
    """(x_train, y_train, x_test, y_test): float32 NCHW standardised with the training
    set's statistics, int64 labels. With ``pixels`` the images of a set made of 8-bit pixels
    come as ``core.pixels.Pixels`` (their codes and the table that standardises them,
    bit-identical to the float32 images) -- what the board keeps; a set of other values
    (``sat6synthetic``) still comes as float32."""
    key = name.lower().replace("-", "")
    if key == "digits":
        out = load_digits()
    elif key in CIFAR_DIRS:
        out = load_cifar(key, data_dir)
    elif key == "mnist":
        out = load_mnist(data_dir)
    elif key == "imagenette":
        out = load_imagenette(data_dir)
    elif key in ("sat6", "sat6synthetic"):           # DeepSat SAT-6 (paper 003), e2train.data.sat6
        from . import sat6
        out = sat6.load_csv(data_dir) if key == "sat6" else sat6.synthetic()
    else:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
    if pixels:
        return out
    xtr, ytr, xte, yte = out
    return _floats(xtr), ytr, _floats(xte), yte


def _floats(x):
    return x.standardised() if isinstance(x, Pixels) else x


def holdout_indices(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` training samples into (kept, held out): ``fraction`` of them held out as a
    validation part, a seeded class-blind random choice, both parts in their original order.
    Settings are chosen on the held-out part; the test set only reports."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"a validation fraction must be in (0, 1), not {fraction!r}")
    k = int(round(n * fraction))
    if k < 1 or k >= n:
        raise ValueError(f"a validation fraction of {fraction} leaves {n - k} of {n} training samples: "
                         f"choose one that keeps both parts non-empty")
    perm = np.random.default_rng(10_007 + int(seed)).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def num_classes(name: str) -> int:
    return {"digits": 10, "cifar10": 10, "cifar100": 100, "mnist": 10,
            "imagenette": 10, "sat6": 6, "sat6synthetic": 6}[name.lower().replace("-", "")]


def _statistics(x_train: np.ndarray, per_channel: bool):
    """The training images' mean and standard deviation (float64; a zero deviation reads as 1)."""
    axes = (0, 2, 3) if per_channel else None
    mean = x_train.mean(axis=axes, keepdims=per_channel, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=per_channel, dtype=np.float64)
    return mean, np.where(std > 0, std, 1.0)


def _standardise(x_train: np.ndarray, x_test: np.ndarray, per_channel: bool):
    """Float images (of values that are not 8-bit codes) standardised with the training set's statistics."""
    mean, std = _statistics(x_train, per_channel)
    f = lambda v: ((v - mean) / std).astype(np.float32)  # noqa: E731
    return f(x_train), f(x_test)


# what each 8-bit code reads as: the pixel scaled to [0, 1], or the code itself (digits' 0..16)
UNIT_VALUES = np.arange(CODES).astype(np.float32) / 255.0
CODE_VALUES = np.arange(CODES).astype(np.float32)


def _pixel_set(codes_train: np.ndarray, codes_test: np.ndarray, values: np.ndarray, per_channel: bool):
    """Images of 8-bit codes as ``Pixels``: the statistics are those of the float images
    (``values[codes]``, the same array and reduction a float loader standardises), so the
    table reproduces its standardisation bit for bit."""
    codes_train = np.ascontiguousarray(codes_train, np.uint8)
    codes_test = np.ascontiguousarray(codes_test, np.uint8)
    mean, std = _statistics(values[codes_train], per_channel)
    table = code_table(values, mean, std)
    return Pixels(codes_train, table), Pixels(codes_test, table)


def load_digits():
    """scikit-learn's 8x8 digits (ships with sklearn, no download): 1 x 8 x 8 images.

    One scalar mean/std over all training pixels: per-pixel statistics would divide the
    always-zero border pixels by zero.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - sklearn is in the host extra
        # Only a host has it (the board side is numpy-only; never suggest the torch host extra there).
        raise DatasetError("the digits data set needs scikit-learn, which only the host has: on the host run "
                           "'pip install scikit-learn' and let `e2train train` upload the data; on the board "
                           "give an uploaded .npz (or --data synthetic to calibrate-arm)") from e
    d = _sk_digits()
    x = d.images.astype(np.uint8)[:, None, :, :]           # the 0..16 counts, exact in a byte
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=DIGITS_TEST, stratify=y, random_state=0)
    x_tr, x_te = _pixel_set(x_tr, x_te, CODE_VALUES, per_channel=False)
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Loads the CIFAR python-format batches, which hold dicts of bytes, lists and numpy
    arrays; refuses every other global so that a tampered file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DatasetError(f"refusing to load {module}.{name} from a data file: "
                           "a CIFAR batch holds only arrays, lists and bytes")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{path} is not a readable CIFAR python-format batch ({e}); "
                           "delete it and extract the archive again") from e
    if not isinstance(d, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    label_key = "labels" if "labels" in d else "fine_labels"
    if "data" not in d or label_key not in d:
        raise DatasetError(f"{path}: missing 'data' or labels (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DatasetError(f"{path}: data {data.shape} and labels {labels.shape} are not N x 3072 and N")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def _archive_hint(root: Path, url: str) -> str:
    """Where the data set's archive lies in ``root`` unextracted: the command that extracts it."""
    archive = root / url.rsplit("/", 1)[-1]
    return f" {archive} is there but not extracted: run `tar xzf {archive} -C {root}`." if archive.is_file() else ""


def load_cifar(name: str, data_dir=None):
    """CIFAR-10/100 from the standard python-format files, extracted under ``data_dir`` (or
    ``data_dir`` the extracted folder itself)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10"
             else ["train", "test"])
    # the folder the archive extracts to, or a data_dir that names that folder itself
    folder = root / CIFAR_DIRS[name]
    if not folder.is_dir() and any((root / n).is_file() for n in names):
        folder = root
    train_files, test_files = [folder / n for n in names[:-1]], [folder / names[-1]]
    missing = [p for p in train_files + test_files if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{name} not found: {missing[0]} is missing.{_archive_hint(root, CIFAR_URLS[name])} Download "
            f"{CIFAR_URLS[name]} and extract it into {root} (so that {root / CIFAR_DIRS[name]} exists), "
            "or pass data_dir= / set E2TRAIN_DATA.")
    tr = [_read_batch(p) for p in train_files]
    te = [_read_batch(p) for p in test_files]
    x_tr = np.concatenate([b[0] for b in tr])
    y_tr = np.concatenate([b[1] for b in tr])
    x_te = np.concatenate([b[0] for b in te])
    y_te = np.concatenate([b[1] for b in te])
    n_cls = num_classes(name)
    for lab, what in ((y_tr, "train"), (y_te, "test")):
        if lab.size and (lab.min() < 0 or lab.max() >= n_cls):
            raise DatasetError(f"{name} {what} labels outside [0, {n_cls}): the files are corrupt or of the other CIFAR")
    x_tr, x_te = _pixel_set(x_tr, x_te, UNIT_VALUES, per_channel=True)
    return x_tr, y_tr, x_te, y_te


# --- MNIST: the four idx files as published (LeCun et al.), gzipped or not ----------------
MNIST_DIR = "mnist"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: zero, zero, type code 0x08, rank; then the dims)."""
    import gzip
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte idx file (bad magic number): re-download it")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} holds {body.size} bytes of data but its header says {dims}: the file is truncated")
    return body.reshape(dims)


def load_mnist(data_dir=None):
    """MNIST from its published idx files (``.gz`` or extracted) under ``data_dir/mnist``."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = root / MNIST_DIR
    if not folder.is_dir() and all(any((root / n).is_file() for n in (f, f + ".gz")) for f in MNIST_FILES):
        folder = root                   # data_dir names the folder of the four files itself
    paths = []
    for name in MNIST_FILES:
        found = [folder / n for n in (name, name + ".gz") if (folder / n).is_file()]
        if not found:
            raise DatasetError(f"mnist not found: {folder / name}(.gz) is missing. Download the four files "
                               f"{', '.join(f + '.gz' for f in MNIST_FILES)} from {MNIST_URL} into {folder}, "
                               f"or pass data_dir= / set E2TRAIN_DATA.")
        paths.append(found[0])
    x_tr, y_tr, x_te, y_te = (_read_idx(p) for p in paths)
    if x_tr.shape[0] != y_tr.shape[0] or x_te.shape[0] != y_te.shape[0]:
        raise DatasetError(f"mnist: image and label counts differ in {folder}: the files do not belong together")
    x_tr, x_te = _pixel_set(x_tr[:, None], x_te[:, None], UNIT_VALUES, per_channel=True)
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


# --- Imagenette: the published folder layout (fast.ai), JPEGs per WordNet id ---------------
IMAGENETTE_DIR = "imagenette2-160"
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
IMAGENETTE_SIZE = 64       # side of the in-memory images: shorter side resized, centre crop


def _read_image_folder(folder: Path, classes: list[str], size: int):
    from PIL import Image          # Pillow comes with matplotlib (host extra)
    xs, ys = [], []
    for k, wnid in enumerate(classes):
        for p in sorted((folder / wnid).iterdir()):
            if p.suffix.lower() not in (".jpeg", ".jpg", ".png"):
                continue
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = size / min(w, h)
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                w, h = im.size
                l, t = (w - size) // 2, (h - size) // 2
                xs.append(np.asarray(im.crop((l, t, l + size, t + size)), np.uint8))
            ys.append(k)
    if not xs:
        raise DatasetError(f"imagenette: no images under {folder}")
    return np.stack(xs).transpose(0, 3, 1, 2), np.asarray(ys, np.int64)


def load_imagenette(data_dir=None, size: int = IMAGENETTE_SIZE):
    """Imagenette (160 px version) from its published layout under ``data_dir``:
    ``imagenette2-160/train/<wnid>/*.JPEG`` and ``.../val/<wnid>/*.JPEG``; classes are the
    ten WordNet ids in sorted order. Images are held in memory at ``size`` x ``size``."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = root / IMAGENETTE_DIR
    for part in ("train", "val"):
        if not (folder / part).is_dir():
            raise DatasetError(f"imagenette not found: {folder / part} is missing. Download {IMAGENETTE_URL} "
                               f"and extract it into {root}, or pass data_dir= / set E2TRAIN_DATA.")
    classes = sorted(d.name for d in (folder / "train").iterdir() if d.is_dir())
    val_classes = sorted(d.name for d in (folder / "val").iterdir() if d.is_dir())
    if len(classes) != 10 or classes != val_classes:
        raise DatasetError(f"imagenette: expected the same 10 class folders under train/ and val/ in {folder}, "
                           f"found {len(classes)} and {len(val_classes)}")
    x_tr, y_tr = _read_image_folder(folder / "train", classes, size)
    x_te, y_te = _read_image_folder(folder / "val", classes, size)
    x_tr, x_te = _pixel_set(x_tr, x_te, UNIT_VALUES, per_channel=True)
    return x_tr, y_tr, x_te, y_te

"""SAT-6 in its published CSV form, the stand-in, and paper 003's model."""
import numpy as np
import pytest

from e2train.data import datasets
from e2train.data.datasets import DatasetError


def _write(folder, n, rng):
    img = rng.integers(0, 256, (n, 28, 28, 4))                   # H, W, C as published
    lab = rng.integers(0, 6, n)
    np.savetxt(folder / f"X_{folder.name}_sat6.csv", img.reshape(n, -1), fmt="%d", delimiter=",")
    np.savetxt(folder / f"y_{folder.name}_sat6.csv", np.eye(6, dtype=int)[lab], fmt="%d", delimiter=",")
    return img, lab


def test_csv_layout_labels_and_missing_files(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "sat6"
    d.mkdir()
    with pytest.raises(DatasetError, match="X_train_sat6.csv is missing"):
        datasets.load("sat6", tmp_path)
    for part, n in (("train", 7), ("test", 3)):
        sub = tmp_path / part
        sub.mkdir()
        _write(sub, n, rng)
        for f in sub.iterdir():
            f.rename(d / f.name)
    xtr, ytr, xte, yte = datasets.load("sat6", tmp_path)
    assert xtr.shape == (7, 4, 28, 28) and xte.shape == (3, 4, 28, 28) and ytr.dtype == np.int64
    raw = np.loadtxt(d / "X_train_sat6.csv", delimiter=",").reshape(7, 28, 28, 4)
    onehot = np.loadtxt(d / "y_train_sat6.csv", delimiter=",")
    assert (ytr == onehot.argmax(1)).all()
    # channel 3 (NIR) of pixel (5, 9) of image 2, standardised with the train set's channel statistics
    ch = raw[..., 3] / 255.0
    assert xtr[2, 3, 5, 9] == pytest.approx((raw[2, 5, 9, 3] / 255.0 - ch.mean()) / ch.std(), rel=1e-4)
    # the published files hold 8-bit pixels: as the board keeps them, their codes, NCHW
    px, _, _, _ = datasets.load("sat6", tmp_path, pixels=True)
    assert px.codes.dtype == np.uint8 and np.array_equal(px.codes, raw.transpose(0, 3, 1, 2))
    assert np.array_equal(px.standardised(), xtr)
    # values that are no 8-bit pixel stay float images, standardised the same way
    (d / "X_train_sat6.csv").write_text("\n".join(",".join(["12.5"] + ["3"] * 3135) for _ in range(7)) + "\n")
    odd, _, _, _ = datasets.load("sat6", tmp_path, pixels=True)
    assert isinstance(odd, np.ndarray) and odd.dtype == np.float32 and odd.shape == (7, 4, 28, 28)
    (d / "y_test_sat6.csv").write_text("1,0,0\n")
    with pytest.raises(DatasetError, match="expected 6"):
        datasets.load("sat6", tmp_path)


def test_stand_in_and_paper_model():
    import torch
    from e2train.torch.models import build_model
    xtr, ytr, xte, yte = datasets.load("sat6-synthetic")
    assert xtr.shape[1:] == (4, 28, 28) and set(np.unique(ytr)) == set(range(6)) and datasets.num_classes("sat6") == 6
    m = build_model("modified_alexnet", 4, 6)
    assert len(m) == 16 and sum(p.numel() for p in m.parameters()) > 600_000        # Table 1; "more than 600,000"
    h = torch.zeros(2, 4, 28, 28)
    for i, layer in enumerate(m):
        h = layer(h)
        if i == 6:
            assert h.shape[1:] == (96, 12, 12)       # the fourth conv's input (paper 003, sec. 4)
        if i == 7:
            assert h.shape[1:] == (64, 12, 12)
    assert h.shape == (2, 6)

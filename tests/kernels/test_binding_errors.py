"""Bad input through the ctypes binding: a clear error before any C code runs."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import csim
from e2train.core.fixedpoint import Dyadic, beta_to_fixed
from e2train.core.shapes import ShapeError

M = Dyadic(16384, 20)


def test_wrong_dtypes(csim_lib, t):
    with pytest.raises(TypeError, match="x must be int8 or uint8"):
        csim.conv_fwd(t["x"].astype(np.int16), t["w"], None, M, pad=1)
    with pytest.raises(TypeError, match="w must be int8"):
        csim.conv_fwd(t["x"], t["w"].astype(np.uint8), None, M, pad=1)
    with pytest.raises(TypeError, match="no fixed-point format for dtype float32"):
        csim.conv_fwd(t["x"].astype(np.float32), t["w"], None, M, pad=1)
    with pytest.raises(TypeError, match="g_y must be int16"):
        csim.conv_bwd_data(t["g"].astype(np.int32), t["w"], M, in_hw=(5, 5), pad=1)
    with pytest.raises(TypeError, match="w_master must be 4-D int32"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"].astype(np.int64), pad=1, beta_q=1, lr_q=1)
    with pytest.raises(ShapeError, match="bias must be int32"):
        csim.conv_fwd(t["x"], t["w"], np.zeros(4, np.int64), M, pad=1)


def test_mismatched_shapes(csim_lib, t):
    with pytest.raises(ShapeError, match="x has 3 channels but w expects 2"):
        csim.conv_fwd(t["x"], t["w"][:, :2], None, M, pad=1)
    with pytest.raises(ShapeError, match="bias must be int32 of shape"):
        csim.conv_fwd(t["x"], t["w"], np.zeros(5, np.int32), M, pad=1)
    with pytest.raises(ShapeError, match="out must be int8"):
        csim.conv_fwd(t["x"], t["w"], None, M, pad=1, out=np.zeros((2, 4, 4, 4), np.int8))
    with pytest.raises(ShapeError, match="g_y must be"):
        csim.conv_bwd_data(t["g"][:, :, :4], t["w"], M, in_hw=(5, 5), pad=1)
    with pytest.raises(ShapeError, match="g_y must be"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"], pad=0, beta_q=1, lr_q=1)
    with pytest.raises(ShapeError, match="w_master must be"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"][:, :2], pad=1, beta_q=1, lr_q=1)
    # a strided ``out`` is filled through a contiguous copy (test_same_refusals.py); one the
    # kernel cannot write is refused
    with pytest.raises(ShapeError, match="out must be writeable"):
        out = np.zeros((2, 4, 5, 5), np.int8)
        out.flags.writeable = False
        csim.conv_fwd(t["x"], t["w"], None, M, pad=1, out=out)


def test_unsupported_kernel_stride_padding(csim_lib, t):
    with pytest.raises(ShapeError, match="stride 3 not supported"):
        csim.conv_fwd(t["x"], t["w"], None, M, stride=3)
    w5 = np.zeros((4, 3, 5, 5), np.int8)
    with pytest.raises(ShapeError, match="kernel size 5 not supported"):
        csim.conv_fwd(t["x"], w5, None, M)
    with pytest.raises(ShapeError, match="padding 2 not supported"):
        csim.conv_fwd(t["x"], t["w"], None, M, pad=2)
    with pytest.raises(ShapeError, match="only square kernels"):
        csim.conv_fwd(t["x"], np.zeros((4, 3, 3, 1), np.int8), None, M)


def test_bad_sample_lists(csim_lib, t):
    with pytest.raises(ShapeError, match="sample index 2 out of range for a batch of 2"):
        csim.conv_fwd(t["x"], t["w"], None, M, pad=1, samples=[0, 2])
    with pytest.raises(ShapeError, match="sample index -1 out of range"):
        csim.conv_bwd_data(t["g"], t["w"], M, in_hw=(5, 5), pad=1, samples=[-1])
    with pytest.raises(ShapeError, match="duplicate"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"], pad=1, beta_q=1, lr_q=1, samples=[1, 1])
    with pytest.raises(ShapeError, match="must hold integers"):
        csim.conv_fwd(t["x"], t["w"], None, M, pad=1, samples=[0.5])


def test_bad_scalars(csim_lib, t):
    for beta in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"PSG beta must be in \(0, 1\]"):
            beta_to_fixed(beta)
    with pytest.raises(ValueError, match="beta_q must be in"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"], pad=1, beta_q=65537, lr_q=1)
    with pytest.raises(ValueError, match="lr_q"):
        csim.conv_bwd_weight_psg(t["x"], t["g"], t["wm"], pad=1, beta_q=1, lr_q=1 << 30)
    with pytest.raises(ValueError, match="requantisation multiplier out of range"):
        csim.conv_fwd(t["x"], t["w"], None, Dyadic(-1, 3), pad=1)
    with pytest.raises(ValueError, match="requantisation multiplier out of range"):
        csim.conv_bwd_data(t["g"], t["w"], Dyadic(1, 63), in_hw=(5, 5), pad=1)


def test_missing_library_says_make_csim(tmp_path, monkeypatch):
    with pytest.raises(csim.CsimUnavailable, match="run `make csim`"):
        csim.load(tmp_path / "nope.so")
    monkeypatch.setenv("E2TRAIN_CSIM_LIB", str(tmp_path / "nope.so"))
    assert csim.library_path() == tmp_path / "nope.so"


def test_kernel_rejects_bad_shapes_itself(csim_lib):
    """Defence in depth: the C top function checks its scalars too and writes nothing."""
    y = np.full(16, 99, np.uint8)
    x = np.zeros(16, np.uint8)
    w = np.zeros(16, np.int8)
    s = np.array([0, 5], np.int32)
    args = lambda stride, samples, ns: (x.ctypes.data, w.ctypes.data, None, y.ctypes.data, None, samples.ctypes.data,
                                        ns, 1, 1, 4, 4, 1, 1, stride, 0, 1, 0, 0, 1, 0, 0)
    assert csim_lib.conv_fwd(*args(3, s, 1)) == csim.E2T_ERR_SHAPE
    assert csim_lib.conv_fwd(*args(1, s, 2)) == csim.E2T_ERR_SAMPLE
    assert (y == 99).all()

"""The three back-ends (golden, C simulation, PYNQ over the simulated board) refuse the same
bad calls with the same exception and the same message: they share one argument check
(e2train.core.kernel_args), and this holds them to it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic, beta_to_fixed

SIM_MANIFEST = Path(__file__).resolve().parents[2] / "bitstreams" / "sim"
M = Dyadic(16384, 20)


@pytest.fixture(scope="module")
def backends(csim_lib):
    from e2train.core import csim
    from e2train.device.overlay import KernelOverlay
    pynq_be = KernelOverlay(SIM_MANIFEST, sim_impl="golden").backend()
    return {"golden": golden, "csim": csim, "pynq": pynq_be}


def _tensors():
    rng = np.random.default_rng(0)
    return dict(
        x=rng.integers(0, 256, (2, 3, 5, 5)).astype(np.uint8),
        w=rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8),
        g=rng.integers(-1000, 1000, (2, 4, 5, 5)).astype(np.int16),
        wm=rng.integers(-1000, 1000, (4, 3, 3, 3)).astype(np.int32),
        b=np.zeros(4, np.int32),
    )


def _fwd(t, **kw):
    args = dict(x=t["x"], w=t["w"], bias=t["b"], mult=M)
    opts = dict(stride=1, pad=1, relu=True, samples=None, out=None)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "conv_fwd", (args["x"], args["w"], args["bias"], args["mult"]), opts


def _bwd(t, **kw):
    args = dict(g_y=t["g"], w=t["w"], mult=M)
    opts = dict(in_hw=(5, 5), stride=1, pad=1, samples=None, out=None)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "conv_bwd_data", (args["g_y"], args["w"], args["mult"]), opts


def _psg(t, **kw):
    args = dict(x=t["x"], g_y=t["g"], w_master=t["wm"])
    opts = dict(stride=1, pad=1, beta_q=beta_to_fixed(0.1), lr_q=100, wd_q=0, samples=None)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "conv_bwd_weight_psg", (args["x"], args["g_y"], args["w_master"]), opts


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


T = _tensors()
BAD = {
    # conv_fwd
    "fwd x float": _fwd(T, x=T["x"].astype(np.float32)),
    "fwd x int16": _fwd(T, x=T["x"].astype(np.int16)),
    "fwd w uint8": _fwd(T, w=T["w"].astype(np.uint8)),
    "fwd x 3-D": _fwd(T, x=T["x"][0]),
    "fwd w not square": _fwd(T, w=np.zeros((4, 3, 3, 1), np.int8)),
    "fwd channels": _fwd(T, w=T["w"][:, :2]),
    "fwd kernel 5": _fwd(T, w=np.zeros((4, 3, 5, 5), np.int8)),
    "fwd stride 3": _fwd(T, stride=3),
    "fwd pad 2": _fwd(T, pad=2),
    "fwd bias dtype": _fwd(T, bias=np.zeros(4, np.int64)),
    "fwd bias length": _fwd(T, bias=np.zeros(5, np.int32)),
    "fwd bias too big": _fwd(T, bias=np.full(4, 1 << 30, np.int32)),
    "fwd mult m": _fwd(T, mult=Dyadic(1 << 31, 20)),
    "fwd mult s": _fwd(T, mult=Dyadic(1, 63)),
    "fwd out shape": _fwd(T, out=np.zeros((2, 4, 4, 4), np.uint8)),
    "fwd out dtype (relu gives uint8)": _fwd(T, out=np.zeros((2, 4, 5, 5), np.int8)),
    "fwd out read-only": _fwd(T, out=_readonly(np.zeros((2, 4, 5, 5), np.uint8))),
    "fwd samples 2-D": _fwd(T, samples=[[0, 1]]),
    "fwd samples range": _fwd(T, samples=[0, 2]),
    "fwd samples duplicate": _fwd(T, samples=[1, 1]),
    "fwd samples float": _fwd(T, samples=[0.0]),
    # bad arguments are refused on an empty sample list too
    "fwd bias on empty list": _fwd(T, bias=np.zeros(5, np.int32), samples=[]),
    "fwd mult on empty list": _fwd(T, mult=Dyadic(-1, 0), samples=[]),
    # conv_bwd_data
    "bwd g_y int32": _bwd(T, g_y=T["g"].astype(np.int32)),
    "bwd w int16": _bwd(T, w=T["w"].astype(np.int16)),
    "bwd g_y 3-D": _bwd(T, g_y=T["g"][0]),
    "bwd w not square": _bwd(T, w=np.zeros((4, 3, 3, 1), np.int8)),
    "bwd w 3-D": _bwd(T, w=T["w"][0]),
    "bwd g_y shape": _bwd(T, g_y=T["g"][:, :, :4]),
    "bwd in_hw": _bwd(T, in_hw=(6, 5)),
    "bwd stride 4": _bwd(T, stride=4),
    "bwd mult": _bwd(T, mult=Dyadic(5, -1)),
    "bwd out shape": _bwd(T, out=np.zeros((2, 3, 4, 5), np.int16)),
    "bwd out dtype": _bwd(T, out=np.zeros((2, 3, 5, 5), np.int32)),
    "bwd out read-only": _bwd(T, out=_readonly(np.zeros((2, 3, 5, 5), np.int16))),
    "bwd samples range": _bwd(T, samples=[-1]),
    "bwd mult on empty list": _bwd(T, mult=Dyadic(1 << 31, 0), samples=[]),
    # conv_bwd_weight_psg
    "psg x int8 ok but g_y int8": _psg(T, g_y=T["g"].astype(np.int8)),
    "psg x float": _psg(T, x=T["x"].astype(np.float64)),
    "psg w_master int64": _psg(T, w_master=T["wm"].astype(np.int64)),
    "psg w_master 3-D": _psg(T, w_master=T["wm"][0]),
    "psg x 3-D": _psg(T, x=T["x"][0]),
    "psg w_master not square": _psg(T, w_master=np.zeros((4, 3, 3, 1), np.int32)),
    "psg w_master channels": _psg(T, w_master=T["wm"][:, :2]),
    "psg g_y shape": _psg(T, pad=0),
    "psg beta above 1": _psg(T, beta_q=(1 << 16) + 1),
    "psg beta negative": _psg(T, beta_q=-1),
    "psg lr_q": _psg(T, lr_q=1 << 30),
    "psg wd_q negative": _psg(T, wd_q=-1),
    "psg samples duplicate": _psg(T, samples=[0, 0]),
    "psg beta on empty list": _psg(T, beta_q=1 << 17, samples=[]),
}


def _refusal(be, call):
    name, args, opts = call
    with pytest.raises(Exception) as e:
        getattr(be, name)(*args, **opts)
    return type(e.value), str(e.value)


@pytest.mark.parametrize("case", list(BAD))
def test_three_backends_refuse_alike(backends, case):
    got = {name: _refusal(be, BAD[case]) for name, be in backends.items()}
    assert issubclass(got["golden"][0], (TypeError, ValueError)), got    # ShapeError is a ValueError
    assert got["csim"] == got["golden"] and got["pynq"] == got["golden"], got


@pytest.mark.parametrize("call", [_fwd(T), _fwd(T, relu=False, bias=None), _bwd(T), _psg(T),
                                  _fwd(T, samples=[]), _psg(T, samples=[1])])
def test_the_unbroken_calls_are_accepted_and_agree(backends, call):
    """The refusals above come from the one broken argument, not from the base call."""
    name, args, opts = call
    res = [getattr(be, name)(*args, **opts) for be in backends.values()]
    for r in res[1:]:
        if name == "conv_bwd_weight_psg":
            assert np.array_equal(r.w_master, res[0].w_master) and np.array_equal(r.sign, res[0].sign)
        else:
            assert np.array_equal(r, res[0])


def test_csim_fills_an_out_that_is_not_contiguous(backends):
    """The C kernel writes a dense buffer; a strided ``out`` is filled through a copy, so the
    back-ends accept the same ``out`` arrays."""
    name, args, opts = _fwd(T, samples=[1])
    base = np.full((2, 4, 5, 10), 7, np.uint8)
    outs = {k: base.copy()[..., ::2] for k in backends}
    for k, be in backends.items():
        getattr(be, name)(*args, **{**opts, "out": outs[k]})
    assert not outs["csim"].flags.c_contiguous
    assert np.array_equal(outs["csim"], outs["golden"]) and np.array_equal(outs["pynq"], outs["golden"])
    assert (outs["golden"][0] == 7).all() and not (outs["golden"][1] == 7).all()

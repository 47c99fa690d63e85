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


# each case: a call built from the fixture's valid tensors `t` with one argument broken
BAD = {
    # conv_fwd
    "fwd x float": lambda t: _fwd(t, x=t["x"].astype(np.float32)),
    "fwd x int16": lambda t: _fwd(t, x=t["x"].astype(np.int16)),
    "fwd w uint8": lambda t: _fwd(t, w=t["w"].astype(np.uint8)),
    "fwd x 3-D": lambda t: _fwd(t, x=t["x"][0]),
    "fwd w not square": lambda t: _fwd(t, w=np.zeros((4, 3, 3, 1), np.int8)),
    "fwd channels": lambda t: _fwd(t, w=t["w"][:, :2]),
    "fwd kernel 5": lambda t: _fwd(t, w=np.zeros((4, 3, 5, 5), np.int8)),
    "fwd stride 3": lambda t: _fwd(t, stride=3),
    "fwd pad 2": lambda t: _fwd(t, pad=2),
    "fwd bias dtype": lambda t: _fwd(t, bias=np.zeros(4, np.int64)),
    "fwd bias length": lambda t: _fwd(t, bias=np.zeros(5, np.int32)),
    "fwd bias too big": lambda t: _fwd(t, bias=np.full(4, 1 << 30, np.int32)),
    "fwd mult m": lambda t: _fwd(t, mult=Dyadic(1 << 31, 20)),
    "fwd mult s": lambda t: _fwd(t, mult=Dyadic(1, 63)),
    "fwd out shape": lambda t: _fwd(t, out=np.zeros((2, 4, 4, 4), np.uint8)),
    "fwd out dtype (relu gives uint8)": lambda t: _fwd(t, out=np.zeros((2, 4, 5, 5), np.int8)),
    "fwd out read-only": lambda t: _fwd(t, out=_readonly(np.zeros((2, 4, 5, 5), np.uint8))),
    "fwd samples 2-D": lambda t: _fwd(t, samples=[[0, 1]]),
    "fwd samples range": lambda t: _fwd(t, samples=[0, 2]),
    "fwd samples duplicate": lambda t: _fwd(t, samples=[1, 1]),
    "fwd samples float": lambda t: _fwd(t, samples=[0.0]),
    # bad arguments are refused on an empty sample list too
    "fwd bias on empty list": lambda t: _fwd(t, bias=np.zeros(5, np.int32), samples=[]),
    "fwd mult on empty list": lambda t: _fwd(t, mult=Dyadic(-1, 0), samples=[]),
    # conv_bwd_data
    "bwd g_y int32": lambda t: _bwd(t, g_y=t["g"].astype(np.int32)),
    "bwd w int16": lambda t: _bwd(t, w=t["w"].astype(np.int16)),
    "bwd g_y 3-D": lambda t: _bwd(t, g_y=t["g"][0]),
    "bwd w not square": lambda t: _bwd(t, w=np.zeros((4, 3, 3, 1), np.int8)),
    "bwd w 3-D": lambda t: _bwd(t, w=t["w"][0]),
    "bwd g_y shape": lambda t: _bwd(t, g_y=t["g"][:, :, :4]),
    "bwd in_hw": lambda t: _bwd(t, in_hw=(6, 5)),
    "bwd stride 4": lambda t: _bwd(t, stride=4),
    "bwd mult": lambda t: _bwd(t, mult=Dyadic(5, -1)),
    "bwd out shape": lambda t: _bwd(t, out=np.zeros((2, 3, 4, 5), np.int16)),
    "bwd out dtype": lambda t: _bwd(t, out=np.zeros((2, 3, 5, 5), np.int32)),
    "bwd out read-only": lambda t: _bwd(t, out=_readonly(np.zeros((2, 3, 5, 5), np.int16))),
    "bwd samples range": lambda t: _bwd(t, samples=[-1]),
    "bwd mult on empty list": lambda t: _bwd(t, mult=Dyadic(1 << 31, 0), samples=[]),
    # conv_bwd_weight_psg
    "psg x int8 ok but g_y int8": lambda t: _psg(t, g_y=t["g"].astype(np.int8)),
    "psg x float": lambda t: _psg(t, x=t["x"].astype(np.float64)),
    "psg w_master int64": lambda t: _psg(t, w_master=t["wm"].astype(np.int64)),
    "psg w_master 3-D": lambda t: _psg(t, w_master=t["wm"][0]),
    "psg x 3-D": lambda t: _psg(t, x=t["x"][0]),
    "psg w_master not square": lambda t: _psg(t, w_master=np.zeros((4, 3, 3, 1), np.int32)),
    "psg w_master channels": lambda t: _psg(t, w_master=t["wm"][:, :2]),
    "psg g_y shape": lambda t: _psg(t, pad=0),
    "psg beta above 1": lambda t: _psg(t, beta_q=(1 << 16) + 1),
    "psg beta negative": lambda t: _psg(t, beta_q=-1),
    "psg lr_q": lambda t: _psg(t, lr_q=1 << 30),
    "psg wd_q negative": lambda t: _psg(t, wd_q=-1),
    "psg samples duplicate": lambda t: _psg(t, samples=[0, 0]),
    "psg beta on empty list": lambda t: _psg(t, beta_q=1 << 17, samples=[]),
}


def _refusal(be, call):
    name, args, opts = call
    with pytest.raises(Exception) as e:
        getattr(be, name)(*args, **opts)
    return type(e.value), str(e.value)


@pytest.mark.parametrize("case", list(BAD))
def test_three_backends_refuse_alike(backends, t, case):
    got = {name: _refusal(be, BAD[case](t)) for name, be in backends.items()}
    assert issubclass(got["golden"][0], (TypeError, ValueError)), got    # ShapeError is a ValueError
    assert got["csim"] == got["golden"] and got["pynq"] == got["golden"], got


@pytest.mark.parametrize("make", [_fwd, lambda t: _fwd(t, relu=False, bias=None), _bwd, _psg,
                                  lambda t: _fwd(t, samples=[]), lambda t: _psg(t, samples=[1])])
def test_the_unbroken_calls_are_accepted_and_agree(backends, t, make):
    """The refusals above come from the one broken argument, not from the base call."""
    name, args, opts = make(t)
    res = [getattr(be, name)(*args, **opts) for be in backends.values()]
    for r in res[1:]:
        if name == "conv_bwd_weight_psg":
            assert np.array_equal(r.w_master, res[0].w_master) and np.array_equal(r.sign, res[0].sign)
        else:
            assert np.array_equal(r, res[0])


def test_csim_fills_an_out_that_is_not_contiguous(backends, t):
    """The C kernel writes a dense buffer; a strided ``out`` is filled through a copy, so the
    back-ends accept the same ``out`` arrays."""
    name, args, opts = _fwd(t, samples=[1])
    base = np.full((2, 4, 5, 10), 7, np.uint8)
    outs = {k: base.copy()[..., ::2] for k in backends}
    for k, be in backends.items():
        getattr(be, name)(*args, **{**opts, "out": outs[k]})
    assert not outs["csim"].flags.c_contiguous
    assert np.array_equal(outs["csim"], outs["golden"]) and np.array_equal(outs["pynq"], outs["golden"])
    assert (outs["golden"][0] == 7).all() and not (outs["golden"][1] == 7).all()

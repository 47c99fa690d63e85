"""The three back-ends (golden, C simulation, PYNQ over the simulated board) refuse the same
bad calls with the same exception and the same message: they share one argument check
(e2train.core.kernel_args, the conv passes' and the block operations'), and this holds them
to it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.block_ops import Shortcut
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


# the block operations (core.block_ops' checks): a (2, 4, 5, 5) block after the conv above
def _blk(t):
    rng = np.random.default_rng(1)
    shp = (2, 4, 5, 5)
    return dict(y=rng.integers(-128, 128, shp).astype(np.int8), o=rng.integers(0, 256, shp).astype(np.uint8),
                g=t["g"], c=np.ones(4, np.int64), r=rng.integers(0, 256, (2, 2, 10, 10)).astype(np.uint8),
                gb=rng.integers(-99, 99, (2, 8, 3, 3)).astype(np.int16))


def _act(t, **kw):
    b = _blk(t)
    args = dict(y=b["y"], a=b["c"], b=b["c"], shift=8)
    opts = dict(r=b["r"], r_mult=3, shortcut=Shortcut(2, 1), samples=None, relu=True)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "bn_act", tuple(args.values()), opts


def _red(t, **kw):
    b = _blk(t)
    args = dict(o=b["o"], y=b["y"], g_a=b["g"])
    opts = dict(ma=2, g_b=b["gb"], mb=3, b_shortcut=Shortcut(2, 3), shift=1, r=b["r"], r_shortcut=Shortcut(2, 2),
                samples=None)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "bn_bwd_reduce", tuple(args.values()), opts


def _app(tensors, **kw):
    b = _blk(tensors)
    args = dict(g_m=b["g"], y=b["y"], p=b["c"], q=b["c"], t=b["c"], shift=4)
    opts = dict(samples=None)
    for k, v in kw.items():
        (args if k in args else opts)[k] = v
    return "bn_bwd_apply", tuple(args.values()), opts


BLOCK_BAD = {
    "act y uint8": lambda t: _act(t, y=_blk(t)["o"]),
    "act y 3-D": lambda t: _act(t, y=_blk(t)["y"][0]),
    "act a length": lambda t: _act(t, a=np.ones(3, np.int64)),
    "act a at 2^24": lambda t: _act(t, a=np.full(4, 1 << 24)),
    "act b at 2^44": lambda t: _act(t, b=np.full(4, -(1 << 44))),
    "act r_mult at 2^24": lambda t: _act(t, r_mult=1 << 24),
    "act shift 41": lambda t: _act(t, shift=41),
    "act shift negative": lambda t: _act(t, shift=-1),
    "act samples range": lambda t: _act(t, samples=[2]),
    "act samples repeated": lambda t: _act(t, samples=[1, 1]),
    "act r int8": lambda t: _act(t, r=_blk(t)["r"].view(np.int8)),
    "act r batch": lambda t: _act(t, r=_blk(t)["r"][:1]),
    "act r does not cover": lambda t: _act(t, r=_blk(t)["r"][:, :, :8]),
    "act r channels past c": lambda t: _act(t, shortcut=Shortcut(2, 3)),
    "act stride 0": lambda t: _act(t, shortcut=Shortcut(0, 1)),
    "act bad on empty list": lambda t: _act(t, shift=41, samples=[]),
    "red o int8": lambda t: _red(t, o=_blk(t)["y"]),
    "red y shape": lambda t: _red(t, y=_blk(t)["y"][:, :3]),
    "red g_a int32": lambda t: _red(t, g_a=t["g"].astype(np.int32)),
    "red ma at 2^24": lambda t: _red(t, ma=-(1 << 24)),
    "red mb at 2^24": lambda t: _red(t, mb=1 << 24),
    "red g_b int8": lambda t: _red(t, g_b=_blk(t)["gb"].astype(np.int8)),
    "red g_b 3-D": lambda t: _red(t, g_b=_blk(t)["gb"][0]),
    "red g_b too small": lambda t: _red(t, g_b=_blk(t)["gb"][:, :6]),
    "red g_b not covered at stride 3": lambda t: _red(t, b_shortcut=Shortcut(3, 3)),
    "red r channels past c": lambda t: _red(t, r_shortcut=Shortcut(1, 3)),
    "red samples range": lambda t: _red(t, samples=[-1]),
    "red shift 41": lambda t: _red(t, shift=41, samples=[]),
    "app g_m int8": lambda t: _app(t, g_m=_blk(t)["y"]),
    "app y shape": lambda t: _app(t, y=_blk(t)["y"][:1]),
    "app p length": lambda t: _app(t, p=np.ones(5, np.int64)),
    "app q at 2^24": lambda t: _app(t, q=np.full(4, 1 << 24)),
    "app t at 2^44": lambda t: _app(t, t=np.full(4, 1 << 44)),
    "app shift 41": lambda t: _app(t, shift=41),
    "app samples repeated on": lambda t: _app(t, samples=[0, 0]),
    "app bad on empty list": lambda t: _app(t, p=np.full(4, 1 << 24), samples=[]),
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


@pytest.mark.parametrize("case", list(BLOCK_BAD))
def test_block_ops_refuse_alike(backends, t, case):
    """The block operations: golden and the PYNQ back-end (and the C simulation once it has
    them) refuse alike, with one line, before anything runs."""
    have = {k: be for k, be in backends.items() if hasattr(be, BLOCK_BAD[case](t)[0])}
    assert {"golden", "pynq"} <= set(have)
    got = {name: _refusal(be, BLOCK_BAD[case](t)) for name, be in have.items()}
    assert issubclass(got["golden"][0], ValueError) and "\n" not in got["golden"][1], got   # ShapeError too
    assert all(g == got["golden"] for g in got.values()), got


@pytest.mark.parametrize("case", list(BLOCK_BAD))
def test_torch_block_ops_refuse_as_golden(t, case):
    """The torch block operations (e2train.torch.block_ops_t, the data as CPU tensors) refuse
    the same calls with golden's exception and message: they call the same checks."""
    torch = pytest.importorskip("torch")
    from e2train.torch import block_ops_t
    name, args, opts = BLOCK_BAD[case](t)
    data = {"bn_act": (0,), "bn_bwd_reduce": (0, 1, 2), "bn_bwd_apply": (0, 1)}[name]
    targs = tuple(torch.from_numpy(np.ascontiguousarray(v)) if i in data else v for i, v in enumerate(args))
    topts = {k: torch.from_numpy(np.ascontiguousarray(v)) if k in ("r", "g_b") and v is not None else v
             for k, v in opts.items()}
    assert _refusal(block_ops_t, (name, targs, topts)) == _refusal(golden, (name, args, opts))


@pytest.mark.parametrize("make", [_act, _red, _app, lambda t: _act(t, samples=[], r=None),
                                  lambda t: _red(t, g_b=None, r=None, samples=[1])])
def test_the_unbroken_block_calls_are_accepted_and_agree(backends, t, make):
    name, args, opts = make(t)
    res = [getattr(be, name)(*args, **opts) for be in backends.values() if hasattr(be, name)]
    assert len(res) >= 2
    for r in res[1:]:
        for a, b in zip(r if isinstance(r, tuple) else (r,), res[0] if isinstance(res[0], tuple) else (res[0],)):
            assert a.dtype == b.dtype and np.array_equal(a, b)


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

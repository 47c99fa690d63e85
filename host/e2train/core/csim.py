"""The HLS kernels' C simulation (hls/src compiled by g++), called through ctypes.

Same signatures and return types as the golden models in :mod:`e2train.core.golden`, and
the same argument checks (:mod:`e2train.core.kernel_args`, which every back-end calls), so
either can stand in for the other. Checks run *before* the library is called: a wrong
call raises a clear error and never hands the C code a buffer of the wrong size. Inputs
that are not C-contiguous are copied; so is an ``out`` that is not (the kernel writes
into a contiguous copy, which is then copied back).

numpy + ctypes only (importable on the board, where no library need exist). The library
is found at ``$E2TRAIN_CSIM_LIB``, else ``<repo>/build/csim/libe2t_kernels.so`` (built by
``make csim``); ``E2TRAIN_CSIM_SAN=1`` picks the ASan+UBSan build next to it instead, which
must then be loaded into a process started with ``LD_PRELOAD=$(g++ -print-file-name=libasan.so)``.
"""
from __future__ import annotations

import ctypes
import os
import threading
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import kernel_args
from .fixedpoint import UINT8, Dyadic, format_of
from .block_ops import IDENTITY, Shortcut
from .kernel_args import BF_BN_SUMS, BF_RELU, BF_RESIDUAL, BF_TWO_SOURCES
from .golden import PsgResult
from .shapes import ConvShape

REPO_ROOT = Path(__file__).resolve().parents[3]
LIB_NAME = "libe2t_kernels.so"
SAN_LIB_NAME = "libe2t_kernels_san.so"

# Status bits of the kernels (hls/include/e2t_fixed.h).
E2T_ERR_SHAPE, E2T_ERR_SAMPLE, E2T_ERR_OVERFLOW = 1, 2, 4
# stats[] of conv_bwd_weight_psg (hls/include/e2t_kernels.h).
(STAT_N_PREDICTED, STAT_GMSB_ABSMAX, STAT_W_ABSMAX, STAT_EXACT_TERMS, STAT_TILES_SKIPPED,
 STAT_PREDICT_TERMS, STAT_DECIDE_BEATS, STAT_GMSB_SPILLED) = range(8)
STAT_LEN = 8


class CsimUnavailable(RuntimeError):
    """The C-simulation library is not built or cannot be loaded."""


def library_path() -> Path:
    env = os.environ.get("E2TRAIN_CSIM_LIB")
    if env:
        return Path(env)
    name = SAN_LIB_NAME if os.environ.get("E2TRAIN_CSIM_SAN") == "1" else LIB_NAME
    return REPO_ROOT / "build" / "csim" / name


_lib = None
_lib_lock = threading.Lock()
_P = ctypes.c_void_p
_I = ctypes.c_int
_I32 = ctypes.c_int32

_SIGNATURES = {
    "conv_fwd": [_P, _P, _P, _P, _P, _P, _I] + [_I] * 8 + [_I, _I, _I, _I32, _I, _I],
    "conv_bwd_data": [_P, _P, _P, _P, _I] + [_I] * 8 + [_I32, _I],
    "conv_bwd_weight_psg": [_P] * 8 + [_I] + [_I] * 8 + [_I, _I32, _I32, _I32],
    "bn_act": [_P] * 6 + [_I] * 13,
    "bn_bwd_reduce": [_P] * 8 + [_I] * 19,
    "bn_bwd_apply": [_P] * 5 + [_I] * 6,
    "e2t_block_trips": [_P],
    "e2t_wgrad_staging": [_P],
    "e2t_fwd_staging": [_P],
    "e2t_staging_check": [_I],
    "e2t_bwd_staging": [_P],
}


def load(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (once) and return the kernel library; a clear error if it is missing."""
    global _lib
    with _lib_lock:
        if _lib is not None and path is None:
            return _lib
        p = Path(path) if path is not None else library_path()
        if not p.is_file():
            raise CsimUnavailable(
                f"kernel C-simulation library not found at {p}: run `make csim` in {REPO_ROOT} "
                "(or point E2TRAIN_CSIM_LIB at a built libe2t_kernels.so)")
        try:
            lib = ctypes.CDLL(str(p))
        except OSError as e:
            hint = (" (a sanitizer build must be preloaded: LD_PRELOAD=$(g++ -print-file-name=libasan.so))"
                    if "san" in p.name else "; rebuild it with `make csim`")
            raise CsimUnavailable(f"cannot load {p}: {e}{hint}") from e
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = None if name.startswith("e2t_") else ctypes.c_int
        if path is None:
            _lib = lib
        return lib


def available() -> bool:
    try:
        load()
        return True
    except CsimUnavailable:
        return False


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _contig(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _raise_status(kernel: str, rc: int) -> None:
    if rc & E2T_ERR_OVERFLOW:
        raise OverflowError(f"{kernel}: acc * M would exceed 62 bits; choose a smaller requantisation multiplier")
    if rc:
        # The binding checks everything the kernel checks first; reaching here is a bug.
        raise RuntimeError(f"{kernel} rejected its arguments (status {rc}) after the host checks passed")


def _run_guarded(kernel: str, out: np.ndarray, may_overflow: bool, call) -> np.ndarray:
    """Run ``call(dst)``; on a contiguous copy of ``out`` where the requantisation could
    overflow (so that an OverflowError, raised like the golden model's, leaves ``out``
    untouched) or where ``out`` is not C-contiguous (the kernel writes a dense buffer)."""
    dst = np.array(out, order="C", copy=True) if may_overflow or not out.flags.c_contiguous else out
    rc = call(dst)
    _raise_status(kernel, rc)
    if dst is not out:
        out[...] = dst
    return out


def conv_fwd(x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
             samples=None, out: np.ndarray | None = None, stats: np.ndarray | None = None,
             w_sums: np.ndarray | None = None) -> np.ndarray:
    """C simulation of ``golden.conv_fwd`` (same arguments, same result, bit for bit); ``stats``
    is filled by the kernel's output stage (b_flags BN sums), ``w_sums`` by its weight load
    (b_flags W sums: the kernel's stats buffer holds them after the BN sums)."""
    a = kernel_args.check_conv_fwd(x, w, bias, mult, stride=stride, pad=pad, relu=relu,
                                   samples=samples, out=out)
    shape, idx, out, mult = a.shape, a.idx, a.out, a.mult
    kernel_args.check_stats_out(stats, shape.co)
    kernel_args.check_w_sums_out(w_sums, shape.ci)
    if idx.size == 0 and stats is None and w_sums is None:
        return out
    b = _contig(a.bias) if a.bias is not None else np.zeros(1, np.int32)
    xc, wc = _contig(x), _contig(w)
    unsigned = format_of(x) is UINT8
    flags, n_bn, n_st = kernel_args.fwd_stats_layout(shape.co, shape.ci, stats is not None, w_sums is not None)
    st = np.zeros(n_st, np.int64) if flags else None
    lib = load()
    # |acc| < 2**31 and M < 2**31: acc * M < 2**62 always, the golden model cannot overflow here.
    _run_guarded("conv_fwd", out, False, lambda dst: lib.conv_fwd(
        _ptr(xc), _ptr(wc), _ptr(b), _ptr(dst), None if st is None else _ptr(st), _ptr(idx), idx.size,
        shape.n, shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride, shape.pad,
        int(unsigned), int(bias is not None), int(bool(relu)), mult.m, mult.s, flags))
    if stats is not None:
        stats[...] = st[:n_bn].reshape(shape.co, 2)
    if w_sums is not None:
        w_sums[...] = st[n_bn:]
    return out


def _bwd_data_acc_bound(shape: ConvShape) -> int:
    """Largest |acc| of conv_bwd_data: co * ceil(k/stride)**2 terms of |g*w| <= 32768*128."""
    taps = -(-shape.k // shape.stride)
    return shape.co * taps * taps * 32768 * 128


def conv_bwd_data(g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                  samples=None, out: np.ndarray | None = None) -> np.ndarray:
    """C simulation of ``golden.conv_bwd_data``."""
    a = kernel_args.check_conv_bwd_data(g_y, w, mult, in_hw=in_hw, stride=stride, pad=pad,
                                        samples=samples, out=out)
    shape, idx, out, mult = a.shape, a.idx, a.out, a.mult
    if idx.size == 0:
        return out
    gc, wc = _contig(g_y), _contig(w)
    lib = load()
    may_overflow = _bwd_data_acc_bound(shape) * mult.m >= 1 << 62
    return _run_guarded("conv_bwd_data", out, may_overflow, lambda dst: lib.conv_bwd_data(
        _ptr(gc), _ptr(wc), _ptr(dst), _ptr(idx), idx.size,
        shape.n, shape.ci, shape.h, shape.w, shape.co, shape.k, shape.stride, shape.pad,
        mult.m, mult.s))


@dataclass(frozen=True)
class PsgStats:
    """Counters the weight-gradient kernel reports besides the PsgResult."""

    n_predicted: int
    gmsb_absmax: int
    w_absmax: int            # max |W| after the update
    exact_terms: int         # exact cell-MACs issued (every weight: one sweep)
    tiles_skipped: int       # engine blocks not read from DDR a second time (all of them: one sweep)
    predict_terms: int       # predictor cell-MACs (every weight, beside the exact ones)
    decide_beats: int        # beats streamed through the engine (over all its blocks)
    n_weights: int
    beats_per_tile: int      # listed samples * ho * wo
    gmsb_spilled: int        # weights whose G_msb went through the DDR scratch (0: kept on chip)


def conv_bwd_weight_psg_stats(x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                              lr_q: int, wd_q: int = 0, samples=None) -> tuple[PsgResult, PsgStats]:
    """``conv_bwd_weight_psg`` plus the kernel's counters (proof of what it skipped)."""
    a = kernel_args.check_conv_bwd_weight_psg(x, g_y, w_master, stride=stride, pad=pad, beta_q=beta_q,
                                              lr_q=lr_q, wd_q=wd_q, samples=samples)
    shape, idx = a.shape, a.idx
    xc, gc = _contig(x), _contig(g_y)
    w_new = np.array(w_master, dtype=np.int32, order="C", copy=True)
    nw = w_new.size
    sign = np.zeros(shape.w_shape, np.int8)
    pred = np.zeros(shape.w_shape, np.uint8)
    gmsb = np.zeros(nw, np.int32)
    stats = np.zeros(STAT_LEN, np.int64)
    lib = load()
    rc = lib.conv_bwd_weight_psg(
        _ptr(xc), _ptr(gc), _ptr(w_new), _ptr(sign), _ptr(pred), _ptr(gmsb), _ptr(stats),
        _ptr(idx), idx.size, shape.n, shape.ci, shape.h, shape.w, shape.co, shape.k,
        shape.stride, shape.pad, int(format_of(x) is UINT8), int(beta_q), int(lr_q), int(wd_q))
    _raise_status("conv_bwd_weight_psg", rc)
    result = PsgResult(w_new, sign, pred.astype(bool), int(stats[STAT_GMSB_ABSMAX]), int(stats[STAT_W_ABSMAX]))
    st = PsgStats(int(stats[STAT_N_PREDICTED]), int(stats[STAT_GMSB_ABSMAX]), int(stats[STAT_W_ABSMAX]),
                  int(stats[STAT_EXACT_TERMS]), int(stats[STAT_TILES_SKIPPED]),
                  int(stats[STAT_PREDICT_TERMS]), int(stats[STAT_DECIDE_BEATS]), nw,
                  int(idx.size) * shape.ho * shape.wo, int(stats[STAT_GMSB_SPILLED]))
    return result, st


def conv_bwd_weight_psg(x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                        lr_q: int, wd_q: int = 0, samples=None) -> PsgResult:
    """C simulation of ``golden.conv_bwd_weight_psg``."""
    return conv_bwd_weight_psg_stats(x, g_y, w_master, stride=stride, pad=pad, beta_q=beta_q,
                                     lr_q=lr_q, wd_q=wd_q, samples=samples)[0]


# -- the block unit (e2t_engine ops 3..5; hls/src/block_ops.cpp) ---------------------------------
def _geometry(src: np.ndarray | None, sc: Shortcut) -> tuple[int, int, int, int, int]:
    """A shortcut source's (c, h, w, stride, lo) registers (zeros when it is not read)."""
    if src is None:
        return 0, 0, 0, 0, 0
    return int(src.shape[1]), int(src.shape[2]), int(src.shape[3]), int(sc.stride), int(sc.lo)


def bn_act(y, a, b, shift: int, *, r=None, r_mult: int = 0, shortcut: Shortcut = IDENTITY, samples=None,
           relu: bool = True):
    """C simulation of ``golden.bn_act``: (out, pooled, vmax), bit for bit."""
    k = kernel_args.check_bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=shortcut, samples=samples)
    n, c, h, w = k.nchw
    yc = _contig(y)
    rc = None if r is None else _contig(np.asarray(r))
    coef = np.concatenate([k.a, k.b]).astype(np.int64)
    out = np.zeros((n, c, h, w), np.uint8)            # unprocessed samples: the kernel leaves them 0
    sums = np.zeros(n * c + n, np.int64)
    flags = (BF_RELU if relu else 0) | (BF_RESIDUAL if r is not None else 0)
    lib = load()
    _raise_status("bn_act", lib.bn_act(
        _ptr(yc), _ptr(out), None if rc is None else _ptr(rc), _ptr(coef), _ptr(sums), _ptr(k.idx), k.idx.size,
        n, h, w, c, flags, int(shift), int(r_mult), *_geometry(rc, shortcut)))
    return (out if relu else out.view(np.int8)), sums[: n * c].reshape(n, c), sums[n * c:].copy()


def bn_bwd_reduce(o, y, g_a, *, ma: int = 1, g_b=None, mb: int = 0, b_shortcut: Shortcut = IDENTITY,
                  shift: int = 0, r=None, r_shortcut: Shortcut = IDENTITY, samples=None):
    """C simulation of ``golden.bn_bwd_reduce``: (g_m, red, gate), bit for bit."""
    k = kernel_args.check_bn_bwd_reduce(o, y, g_a, ma=ma, g_b=g_b, mb=mb, b_shortcut=b_shortcut, shift=shift,
                                        r=r, r_shortcut=r_shortcut, samples=samples)
    n, c, h, w = k.nchw
    oc, yc, gac = _contig(o), _contig(y), _contig(g_a)
    gbc = None if g_b is None else _contig(np.asarray(g_b))
    rc = None if r is None else _contig(np.asarray(r))
    g_m = np.zeros((n, c, h, w), np.int16)
    sums = np.zeros(3 * c + 2 * n, np.int64)
    flags = (BF_RESIDUAL if r is not None else 0) | (BF_TWO_SOURCES if g_b is not None else 0)
    lib = load()
    _raise_status("bn_bwd_reduce", lib.bn_bwd_reduce(
        _ptr(yc), _ptr(oc), None if rc is None else _ptr(rc), _ptr(gac), None if gbc is None else _ptr(gbc),
        _ptr(g_m), _ptr(sums), _ptr(k.idx), k.idx.size, n, h, w, c, flags, int(shift), int(ma), int(mb),
        *_geometry(rc, r_shortcut), *_geometry(gbc, b_shortcut)))
    return g_m, sums[: 3 * c].reshape(c, 3), sums[3 * c:].reshape(n, 2)


def bn_bwd_apply(g_m, y, p, q, t, shift: int, *, samples=None) -> np.ndarray:
    """C simulation of ``golden.bn_bwd_apply``: g_y int16 (unlisted samples 0), bit for bit."""
    k = kernel_args.check_bn_bwd_apply(g_m, y, p, q, t, shift, samples=samples)
    n, c, h, w = k.nchw
    gmc, yc = _contig(g_m), _contig(y)
    coef = np.concatenate([k.p, k.q, k.t]).astype(np.int64)
    g_y = np.zeros((n, c, h, w), np.int16)
    lib = load()
    _raise_status("bn_bwd_apply", lib.bn_bwd_apply(
        _ptr(yc), _ptr(gmc), _ptr(g_y), _ptr(coef), _ptr(k.idx), k.idx.size, n, h, w, c, int(shift)))
    return g_y


@dataclass(frozen=True)
class BlockTrips:
    """Loop trips of the last block-unit call (hls/include/e2t_block.h e2t_block_trips; counted
    process-wide: read them right after the call, on the thread that made it)."""

    list: int       # the sample list's check: a bit cleared per batch sample, one per entry
    coef: int       # coefficient words loaded into the BRAM (bn_bwd_reduce: its sums zeroed)
    beats: int      # iterations of the streaming loop over a row, E2T_BLOCK_LANES elements each
    tails: int      # the loop's extra iteration per sample (a second per-sample word written)
    sums: int       # words of the per-channel sums written after the loop
    skips: int      # the loop's one iteration per sample not processed
    setup: int      # the setup products' shift-and-add steps, one bit a cycle


def _counters(fn: str, cls):
    """One of the C simulation's counter sets (the calling thread's), as ``cls``."""
    t = np.zeros(len(dataclasses.fields(cls)), np.int64)
    getattr(load(), fn)(_ptr(t))
    return cls(*(int(v) for v in t))


def block_trips() -> BlockTrips:
    return _counters("e2t_block_trips", BlockTrips)


@dataclass(frozen=True)
class WgradStaging:
    """The weight gradient's chunk-buffer traffic in its last call (hls/include/e2t_passes.h
    e2t_wgrad_staging; per thread: read it right after the call, on the thread that made it)."""

    x_bytes: int          # x read from DDR into the x chunk buffer
    g_bytes: int          # g read from DDR into the g chunk buffer
    x_trips: int          # the x stager's loop trips (a 64-bit word each)
    g_trips: int          # the g stager's
    prologue: int         # the first step's staging before any call: the larger of its x and g trips
    staging_calls: int    # engine calls whose stagers wrote the next step
    call_trips: int       # over those calls, the sum of each call's larger of x and g trips
    bank_misses: int      # column reads whose bank held another word (the layout says 0)
    out_trips: int        # the output stage's trips (the rows into the partial sums, beside the calls)
    loop_trips: int       # the loops outside the calls, a weight a trip (the update; the partial sums read out when more than one group)


def wgrad_staging() -> WgradStaging:
    return _counters("e2t_wgrad_staging", WgradStaging)


@dataclass(frozen=True)
class FwdStaging:
    """The forward's x-buffer traffic in its last call (hls/include/e2t_passes.h e2t_fwd_staging;
    per thread: read it right after the call, on the thread that made it)."""

    x_bytes: int          # x read from DDR into the x buffer (the staged row spans' in-image codes)
    trips: int            # the stager's loop trips (a 64-bit word's window of codes, one phase, each)
    prologue: int         # the first step's trips, staged before any call
    staging_calls: int    # engine calls whose stager wrote the next step
    call_trips: int       # over those calls, the sum of each call's trips
    bank_misses: int      # position reads that found another segment's or step's code (the layout says 0)
    w_trips: int          # the weight loader's trips (a byte each; the engine waits for them)
    chan_cycles: int      # the per-channel loops outside the calls (bias into cA, BN sums; forward only)
    out_trips: int        # the output stage's trips (beside the calls: a row read, a position a cycle)
    zero_trips: int       # input gradient: zeros written outside the calls to the phases without taps (0 otherwise)


def staging_check(on: bool) -> None:
    """Turn the forward's and the input gradient's staging checks on or off, on this thread: the
    stagers run the trip loops Vitis HLS builds, and every feeder read is checked against what
    the stager wrote (``bank_misses``)."""
    load().e2t_staging_check(1 if on else 0)


def fwd_staging() -> FwdStaging:
    return _counters("e2t_fwd_staging", FwdStaging)


def bwd_staging() -> FwdStaging:
    """The input gradient's g-buffer traffic in its last call, in the same fields (x_bytes: the
    bytes of g_y read)."""
    return _counters("e2t_bwd_staging", FwdStaging)

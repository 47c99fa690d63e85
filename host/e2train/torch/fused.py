"""The elementwise passes of the fixed-point emulation, each run as one loop over memory.

Quantising, requantising (with dequantisation), splitting codes into predictor limbs and the
PSG decision are chains of float64/float32 operations; as torch operations each link is a pass over memory
with its own temporary, and at the sizes of a CIFAR ResNet those passes cost as much as the
convolutions they feed. Each pass is written below once as a torch function -- the
reference, and what runs on GPUs and for unusual dtypes or layouts -- and once as a C loop
(``fused_passes.c``) that performs the same IEEE operations in the same order, so both give
the same bits (``tests/torch/test_psg.py`` compares them on random and tie-heavy values).

The C file is compiled on first use with the system's C compiler (``cc``, or $CC) into a
per-user cache (``$E2TRAIN_CACHE`` or ``~/.cache/e2train``), keyed by the source, the flags
and the CPU, and loaded with ctypes: no torch headers, about a second to build. Where that
fails (no compiler), one warning is printed and the torch functions run instead -- slower,
same results. ``E2TRAIN_FUSE=torch`` selects the torch functions without trying.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

ENV = "E2TRAIN_FUSE"
SOURCE = Path(__file__).with_name("fused_passes.c")
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC"]
SLOT = {"x": 0, "h": 1, "l": 2}          # fused_passes.c's SLOT_*

_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "error": None,
                "enabled": os.environ.get(ENV, "c").strip().lower() != "torch"}


def _cpu_id() -> str:
    """What -march=native compiles for: the machine and its CPU flags (a cache shared over
    NFS by different CPUs must not hand one of them the other's instructions)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
    except OSError:
        pass
    return platform.machine() + flags


def _cache_path(cc: str) -> Path:
    """Where the built library lives: keyed by the source, the compiler, its flags and the CPU."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *CFLAGS]).encode() + _cpu_id().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("E2TRAIN_CACHE") or Path.home() / ".cache" / "e2train")
    return cache / f"fused_passes-{key}.so"


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC", "cc")
    lib = _cache_path(cc)
    cache = lib.parent
    if lib.exists():
        try:
            return _declare(ctypes.CDLL(str(lib)))
        except (OSError, AttributeError):    # a damaged cache file: build it again
            lib.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        # a compiler without OpenMP (Apple clang) or without -march=native still gives the
        # same results, one thread / baseline instructions: try those before giving up
        drop = ({}, {"-fopenmp"}, {"-fopenmp", "-march=native"})
        for without in drop:
            flags = [f for f in CFLAGS if f not in without]
            r = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True)
            if not r.returncode:
                break
        else:
            raise OSError(f"{cc} failed: {(r.stderr or r.stdout).strip()[:300]}")
        os.replace(tmp, lib)          # atomic: a concurrent build of the same key is identical
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return _declare(ctypes.CDLL(str(lib)))


def _declare(dll: ctypes.CDLL) -> ctypes.CDLL:
    """The C functions' signatures (an AttributeError if one is missing)."""
    i64, f64, f32, i32, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    dll.e2_quantize.argtypes = [ptr, ptr, i64, i64, i32, f64, f64, i32]
    dll.e2_quantize.restype = None
    dll.e2_requantize.argtypes = [ptr, i32, ptr, i64, f64, f64, f64, f64, f64, f64, ptr, i32]
    dll.e2_requantize.restype = f64
    dll.e2_split.argtypes = [ptr, ptr, i64, i64, f32, f32, f32, f32, f32, ptr, i32, i32, i32]
    dll.e2_split.restype = None
    dll.e2_decide.argtypes = [ptr, ptr, i64, f64, f64, f64, ptr, ptr]
    dll.e2_decide.restype = i64
    return dll


def _lib() -> ctypes.CDLL | None:
    if not _state["enabled"]:
        return None
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                try:
                    _state["lib"] = _build()
                except (OSError, AttributeError, subprocess.SubprocessError) as e:
                    _state["error"] = e
                    print(f"e2train: the fused C passes are not available ({e}); the fixed-point "
                          f"emulation runs them as torch operations (slower, same results). A C "
                          f"compiler (cc / gcc, or $CC) enables them; {ENV}=torch silences this.",
                          file=sys.stderr)
                _state["tried"] = True
    return _state["lib"]


def available() -> bool:
    """Whether the C passes are in use (built and loaded, and not turned off)."""
    return _lib() is not None


def set_enabled(enabled: bool) -> bool:
    """Use the C passes (when they build) or the torch functions; returns the previous setting."""
    prev, _state["enabled"] = _state["enabled"], bool(enabled)
    return prev


def _c_ok(*tensors, dtypes=(torch.float32,)) -> bool:
    """The C loops take contiguous CPU tensors of the given dtypes (None: absent operand).
    (A plain loop: this runs several times per layer and step.)"""
    for t in tensors:
        if t is not None and not (t.is_cpu and t.dtype in dtypes and t.is_contiguous()):
            return False
    return True


def _p(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


# --- quantise ------------------------------------------------------------------------------

def quantize_torch(x, m: int, s: int, lo: float, hi: float, out) -> None:
    out.copy_(torch.clamp(torch.floor(x.double() / math.ldexp(m, -s) + 0.5), lo, hi))


def quantize_(x: torch.Tensor, m: int, s: int, lo: float, hi: float, out: torch.Tensor) -> None:
    """out = clamp(floor(x / (m*2**-s) + 1/2), lo, hi), the quotient rounded in float64
    (``core.fixedpoint.quantize``; NaN stays NaN: the caller maps it to 0)."""
    lib = _lib()
    if lib is not None and _c_ok(x, out) and x.shape == out.shape:
        lib.e2_quantize(_p(x), _p(out), x.numel(), int(m), int(s), lo, hi, torch.get_num_threads())
    else:
        quantize_torch(x, m, s, lo, hi, out)


# --- requantise (and dequantise) ---------------------------------------------------------

def requantize_torch(p0, c0: float, p1, c1: float, half: float, lo: float, hi: float, v: float, out) -> float:
    acc = p0.double() * c0
    if p1 is not None:
        acc = acc + p1.double() * c1
    q = torch.clamp(torch.floor(acc + half), lo, hi)
    out.copy_(q * v)
    return float(q.abs().max()) if q.numel() else 0.0


def requantize_(p0: torch.Tensor, c0: float, p1: torch.Tensor | None, c1: float, half: float,
                lo: float, hi: float, v: float, out: torch.Tensor) -> float:
    """codes = clamp(floor(p0*c0 + p1*c1 + half), lo, hi) in float64 (``p1`` may be None); writes
    codes*v rounded once to ``out``'s dtype and returns max |code|. The caller proves every
    product and partial sum exact in float64 (``psg._requantize_parts``)."""
    lib = _lib()
    if (lib is not None and _c_ok(p0, dtypes=(torch.float32, torch.float64)) and _c_ok(p1, out)
            and p0.numel() == out.numel() and (p1 is None or p1.numel() == out.numel())):
        return lib.e2_requantize(_p(p0), int(p0.dtype == torch.float64), _p(p1), out.numel(), c0, c1,
                                 half, lo, hi, v, _p(out), torch.get_num_threads())
    return requantize_torch(p0, c0, p1, c1, half, lo, hi, v, out)


# --- predictor limbs -------------------------------------------------------------------------

def split_torch(x, half: float, inv: float, step: float, lo: float, hi: float, out, slots: tuple,
                batch_major: bool) -> None:
    a = torch.floor((x.abs() + half) * inv)
    h = torch.clamp(torch.where(x < 0, -a, a), lo, hi)
    limbs = {"x": x, "h": h, "l": x - step * h}
    n, p = x.shape[0], len(slots)
    o = out.view(p, n, -1) if batch_major else out.view(n, p, -1)
    for i, name in enumerate(slots):
        (o[i] if batch_major else o[:, i]).copy_(limbs[name].reshape(n, -1))


def split_(x: torch.Tensor, half: float, inv: float, step: float, lo: float, hi: float, out: torch.Tensor,
           slots: tuple, batch_major: bool) -> None:
    """Limbs of float codes x (first dimension: samples): h = clamp(sign(x) * floor((|x| +
    half) * inv), lo, hi) (to nearest, ties away from zero: contract v2) and l = x - step*h, in x's dtype (exact for these integers; ``inv`` = 1/step, a
    power of two). Slot i of ``out`` gets limb ``slots[i]`` ("x", "h" or "l"); ``out`` is
    (P*n, ...) when ``batch_major``, else (n, P, ...)."""
    lib = _lib()
    n, p = x.shape[0], len(slots)
    if lib is not None and _c_ok(x, out) and out.numel() == p * x.numel() and n:
        codes = (ctypes.c_int32 * p)(*(SLOT[s] for s in slots))
        lib.e2_split(_p(x), _p(out), n, x.numel() // n, half, inv, step, lo, hi, codes, p,
                     int(batch_major), torch.get_num_threads())
    else:
        split_torch(x, half, inv, step, lo, hi, out, slots, batch_major)


# --- the PSG decision ------------------------------------------------------------------------

def decide_torch(g_msb, g_exact, one: float, beta_q: int, amax: float):
    predicted = (g_msb.abs() * one >= float(beta_q) * amax) & (g_msb != 0) & (beta_q > 0)
    return torch.where(predicted, torch.sign(g_msb), torch.sign(g_exact)), predicted


def decide(g_msb: torch.Tensor, g_exact: torch.Tensor, one: float, beta_q: int, amax: float):
    """``core.golden.psg_decide`` on float64 tensors of integers with amax = max|G_msb| and
    amax * one < 2**53 (every comparison exact; one = 2**BETA_FRAC_BITS): predicted where
    |G_msb| * one >= beta_q * amax and G_msb != 0; sign from G_msb there, else from G_exact.
    Returns (sign float64, predicted bool)."""
    lib = _lib()
    if lib is not None and _c_ok(g_msb, g_exact, dtypes=(torch.float64,)) and g_msb.shape == g_exact.shape:
        sign = torch.empty_like(g_msb)
        predicted = torch.empty(g_msb.shape, dtype=torch.bool, device=g_msb.device)
        lib.e2_decide(_p(g_msb), _p(g_exact), g_msb.numel(), one, float(beta_q), amax, _p(sign), _p(predicted))
        return sign, predicted
    return decide_torch(g_msb, g_exact, one, beta_q, amax)

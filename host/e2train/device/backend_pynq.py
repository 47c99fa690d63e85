"""The conv backend over the PYNQ drivers: the three kernel functions of ``core.golden``,
with the same signatures and results, computed by the fabric (or the simulated board).

Each call copies the arrays into pynq buffers, lets the driver flush, start, wait and
invalidate, and copies the results out. Buffers are kept per role and grown when a larger
shape comes, so a training step does not allocate (contiguous memory is scarce on a board
and allocation is slow there). Not thread-safe: one caller at a time, as the kernels.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pynq

from ..core import perfmodel
from ..core.fixedpoint import DECAY_FRAC_BITS, INT8, INT16, UINT8, Dyadic
from ..core.golden import PsgResult
from ..core.shapes import ConvShape, ShapeError, check_samples
from . import kernel_iface as ki
from .driver import DEFAULT_TIMEOUT_S

# A call may take this many times its modelled duration before it counts as hung (the
# model is an estimate; a hung fabric never finishes at all).
TIMEOUT_MARGIN = 20.0


class PynqBackend:
    """Implements the conv backend interface over an overlay's kernel drivers."""

    name = "pynq"

    def __init__(self, overlay, timeout_s: float | None = None):
        self.overlay = overlay
        self.drivers = overlay.kernels          # name -> KernelDriver
        self.timeout_s = timeout_s
        self._bufs: dict[str, pynq.buffer.PynqBuffer] = {}
        self.calls = {name: 0 for name in ki.KERNELS}
        self.skipped_calls = {name: 0 for name in ki.KERNELS}   # empty sample lists: no call
        self.wait_s = 0.0

    # --- buffers ----------------------------------------------------------------------
    def _buf(self, role: str, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        cur = self._bufs.get(role)
        if cur is None or cur.nbytes < nbytes:
            if cur is not None:
                nbytes = max(nbytes, 2 * cur.nbytes)     # grow geometrically, then stay
                del self._bufs[role]
            cur = self._bufs[role] = pynq.allocate((nbytes,), np.uint8, target=self.overlay.device)
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return cur[:need].view(dtype).reshape(shape)

    def _put(self, role: str, a: np.ndarray, dtype=None) -> np.ndarray:
        b = self._buf(role, a.shape, dtype or a.dtype)
        b[...] = a
        return b

    def _samples(self, samples, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = check_samples(samples, n)
        # a zero-length list still needs a valid pointer; the kernel reads none of it
        buf = self._buf("samples", (max(idx.size, 1),), np.int32)
        buf[: idx.size] = idx
        return idx, buf

    def _timeout(self, kernel: str, shape: ConvShape, n_active: int) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return _auto_timeout(kernel, shape, n_active)

    def _run(self, kernel: str, shape: ConvShape, **args) -> None:
        timeout = self._timeout(kernel, shape, int(args["n_samples"]))
        self.wait_s += self.drivers[kernel].execute(timeout_s=timeout, **args)
        self.calls[kernel] += 1

    def close(self) -> None:
        self._bufs.clear()

    # --- the backend interface --------------------------------------------------------
    def conv_fwd(self, x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
                 samples=None, out: np.ndarray | None = None) -> np.ndarray:
        _check_x(x)
        if w.dtype != INT8.dtype:
            raise TypeError(f"w must be int8 codes, got {w.dtype}")
        shape = ConvShape.of(x, w, stride, pad)
        idx, sbuf = self._samples(samples, shape.n)
        fmt = UINT8 if relu else INT8
        if out is None:
            out = np.zeros(shape.y_shape, fmt.dtype)
        elif out.shape != shape.y_shape or out.dtype != fmt.dtype:
            raise ShapeError(f"out must be {fmt.name}{shape.y_shape}, got {out.dtype}{out.shape}")
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (shape.co,) or bias.dtype != np.int32:
                raise ShapeError(f"bias must be int32 of shape ({shape.co},), got {bias.dtype}{bias.shape}")
        if idx.size == 0:
            self.skipped_calls["conv_fwd"] += 1
            return out
        y = self._buf("y", shape.y_shape, fmt.dtype)
        self._run("conv_fwd", shape,
                  x=self._put("x", x), w=self._put("w", w),
                  bias=self._put("bias", bias) if bias is not None else self._buf("bias", (1,), np.int32),
                  y=y, samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  x_unsigned=int(x.dtype == np.uint8), has_bias=int(bias is not None), relu=int(bool(relu)),
                  **_mult(mult))
        out[idx] = y[idx]          # the kernel wrote only the listed samples
        return out

    def conv_bwd_data(self, g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                      samples=None, out: np.ndarray | None = None) -> np.ndarray:
        if g_y.dtype != INT16.dtype:
            raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")
        if w.dtype != INT8.dtype:
            raise TypeError(f"w must be int8 codes, got {w.dtype}")
        if g_y.ndim != 4:
            raise ShapeError(f"g_y must be 4-D NCHW, got {g_y.shape}")
        shape = ConvShape(int(g_y.shape[0]), int(w.shape[1]), int(in_hw[0]), int(in_hw[1]), int(w.shape[0]),
                          int(w.shape[2]), stride, pad)
        if g_y.shape != shape.y_shape:
            raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
        idx, sbuf = self._samples(samples, shape.n)
        if out is None:
            out = np.zeros(shape.x_shape, np.int16)
        elif out.shape != shape.x_shape or out.dtype != np.int16:
            raise ShapeError(f"out must be int16{shape.x_shape}, got {out.dtype}{out.shape}")
        if idx.size == 0:
            self.skipped_calls["conv_bwd_data"] += 1
            return out
        gx = self._buf("g_x", shape.x_shape, np.int16)
        self._run("conv_bwd_data", shape, g_y=self._put("g_y", g_y), w=self._put("w", w), g_x=gx,
                  samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  **_mult(mult))
        out[idx] = gx[idx]
        return out

    def conv_bwd_weight_psg(self, x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                            lr_q: int, wd_q: int = 0, samples=None) -> PsgResult:
        _check_x(x)
        if g_y.dtype != INT16.dtype:
            raise TypeError(f"g_y must be int16 codes, got {g_y.dtype}")
        if w_master.dtype != np.int32 or w_master.ndim != 4:
            raise TypeError(f"w_master must be 4-D int32, got {w_master.dtype}{w_master.shape}")
        shape = ConvShape(int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3]),
                          int(w_master.shape[0]), int(w_master.shape[2]), stride, pad)
        if w_master.shape != shape.w_shape:
            raise ShapeError(f"w_master must be {shape.w_shape}, got {w_master.shape}")
        if g_y.shape != shape.y_shape:
            raise ShapeError(f"g_y must be {shape.y_shape} for this conv, got {g_y.shape}")
        if not 0 <= int(lr_q) < 1 << 30 or not 0 <= int(wd_q) < 1 << DECAY_FRAC_BITS:
            raise ValueError(f"lr_q {lr_q} or wd_q {wd_q} out of range")
        if not 0 <= int(beta_q) <= 1 << 16:
            raise ValueError(f"beta_q must be in [0, 65536] (0 = predictor off), got {beta_q}")
        # an empty sample list still runs: the weight decay applies with sign 0, as in the
        # golden model
        idx, sbuf = self._samples(samples, shape.n)
        wm = self._put("w_master", w_master)
        sign = self._buf("sign", shape.w_shape, np.int8)
        pred = self._buf("predicted", shape.w_shape, np.uint8)
        stats = self._buf("stats", (ki.PSG_STATS_LEN,), np.int64)
        self._run("conv_bwd_weight_psg", shape, x=self._put("x", x), g_y=self._put("g_y", g_y), w_master=wm,
                  sign=sign, predicted=pred, gmsb=self._buf("gmsb", shape.w_shape, np.int64), stats=stats,
                  samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  x_unsigned=int(x.dtype == np.uint8), beta_q=int(beta_q), lr_q=int(lr_q), wd_q=int(wd_q))
        return PsgResult(np.array(wm), np.array(sign), np.array(pred) != 0,
                         int(stats[ki.STAT_GMSB_ABSMAX]))


@lru_cache(maxsize=256)
def _auto_timeout(kernel: str, shape: ConvShape, n_active: int) -> float:
    """The modelled duration with a wide margin (upper bound: nothing predicted)."""
    modelled = perfmodel.kernel_cycles(kernel, shape, n_active) / perfmodel.CLOCK_HZ
    return max(DEFAULT_TIMEOUT_S, TIMEOUT_MARGIN * modelled)


def _check_x(x) -> None:
    if x.dtype not in (INT8.dtype, UINT8.dtype):
        raise TypeError(f"x must be int8 or uint8 codes, got {x.dtype}")


def _mult(mult) -> dict:
    """A requantisation multiplier (a Dyadic or an (m, s) pair) as the kernels' two ints."""
    m, s = (int(v) for v in mult)
    if not (0 <= m < 1 << 31 and 0 <= s <= 62):
        raise ValueError(f"requantisation multiplier out of range: {Dyadic(m, s)} (need 0 <= m < 2**31, 0 <= s <= 62)")
    return {"mult_m": m, "mult_s": s}


def _shape_args(s: ConvShape) -> dict:
    return dict(n=s.n, ci=s.ci, h=s.h, wd=s.w, co=s.co, k=s.k, stride=s.stride, pad=s.pad)

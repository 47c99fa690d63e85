"""The conv backend over the PYNQ driver: the three kernel functions of ``core.golden``,
with the same signatures and results, computed by the fabric's one IP, each a pass of
e2t_engine (or by the simulated board).

Each call copies the arrays into pynq buffers, lets the driver flush, start, wait and
invalidate, and copies the results out. Buffers are kept per role and grown when a larger
shape comes, so a training step does not allocate (contiguous memory is scarce on a board
and allocation is slow there). Not thread-safe: one caller at a time, as the kernels.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pynq

from ..core import call_price, kernel_args, perfmodel
from ..core.fixedpoint import Dyadic
from ..core.golden import PsgResult
from ..core.shapes import ConvShape
from . import kernel_iface as ki
from .driver import DEFAULT_TIMEOUT_S

# A call may take this many times its modelled duration before it counts as hung (the
# model is an estimate; a hung fabric never finishes at all).
TIMEOUT_MARGIN = 20.0


class PynqBackend:
    """Implements the conv backend interface over an overlay's engine driver."""

    name = "pynq"

    def __init__(self, overlay, timeout_s: float | None = None):
        self.overlay = overlay
        self.engine = overlay.engine            # driver.EngineDriver: one method per pass
        self.timeout_s = timeout_s
        self._bufs: dict[str, pynq.buffer.PynqBuffer] = {}
        self.calls = {name: 0 for name in ki.PASSES}
        self.skipped_calls = {name: 0 for name in ki.PASSES}   # empty sample lists: no call
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

    def _samples(self, idx: np.ndarray) -> np.ndarray:
        # a zero-length list still needs a valid pointer; the kernel reads none of it
        buf = self._buf("samples", (max(idx.size, 1),), np.int32)
        buf[: idx.size] = idx
        return buf

    def _timeout(self, kernel: str, shape: ConvShape, n_active: int) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return _auto_timeout(kernel, shape, n_active)

    def _run(self, kernel: str, shape: ConvShape, **args) -> None:
        timeout = self._timeout(kernel, shape, int(args["n_samples"]))
        self.wait_s += self.engine.run_pass(kernel, timeout_s=timeout, **args)
        self.calls[kernel] += 1

    def close(self) -> None:
        self._bufs.clear()

    # --- the backend interface --------------------------------------------------------
    def conv_fwd(self, x, w, bias, mult: Dyadic, *, stride: int = 1, pad: int = 0, relu: bool = False,
                 samples=None, out: np.ndarray | None = None) -> np.ndarray:
        a = kernel_args.check_conv_fwd(x, w, bias, mult, stride=stride, pad=pad, relu=relu,
                                       samples=samples, out=out)
        shape, idx, out, bias = a.shape, a.idx, a.out, a.bias
        if idx.size == 0:
            self.skipped_calls["conv_fwd"] += 1
            return out
        sbuf = self._samples(idx)
        y = self._buf("y", shape.y_shape, a.fmt.dtype)
        self._run("conv_fwd", shape,
                  x=self._put("x", x), w=self._put("w", w),
                  bias=self._put("bias", bias) if bias is not None else self._buf("bias", (1,), np.int32),
                  y=y, samples=sbuf, n_samples=idx.size, **_shape_args(shape),
                  x_unsigned=int(x.dtype == np.uint8), has_bias=int(bias is not None), relu=int(bool(relu)),
                  **_mult(a.mult))
        out[idx] = y[idx]          # the kernel wrote only the listed samples
        return out

    def conv_bwd_data(self, g_y, w, mult: Dyadic, *, in_hw: tuple[int, int], stride: int = 1, pad: int = 0,
                      samples=None, out: np.ndarray | None = None) -> np.ndarray:
        a = kernel_args.check_conv_bwd_data(g_y, w, mult, in_hw=in_hw, stride=stride, pad=pad,
                                            samples=samples, out=out)
        shape, idx, out = a.shape, a.idx, a.out
        if idx.size == 0:
            self.skipped_calls["conv_bwd_data"] += 1
            return out
        gx = self._buf("g_x", shape.x_shape, np.int16)
        self._run("conv_bwd_data", shape, g_y=self._put("g_y", g_y), w=self._put("w", w), g_x=gx,
                  samples=self._samples(idx), n_samples=idx.size, **_shape_args(shape),
                  **_mult(a.mult))
        out[idx] = gx[idx]
        return out

    def conv_bwd_weight_psg(self, x, g_y, w_master, *, stride: int = 1, pad: int = 0, beta_q: int,
                            lr_q: int, wd_q: int = 0, samples=None) -> PsgResult:
        a = kernel_args.check_conv_bwd_weight_psg(x, g_y, w_master, stride=stride, pad=pad, beta_q=beta_q,
                                                  lr_q=lr_q, wd_q=wd_q, samples=samples)
        # an empty sample list still runs: the weight decay applies with sign 0, as in the
        # golden model
        shape, idx, sbuf = a.shape, a.idx, self._samples(a.idx)
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
    """The modelled duration with a wide margin (the weight gradient's price: its one sweep and
    the decision)."""
    modelled = call_price.call_cycles(kernel, shape, n_active) / perfmodel.CLOCK_HZ
    return max(DEFAULT_TIMEOUT_S, TIMEOUT_MARGIN * modelled)


def _mult(mult: Dyadic) -> dict:
    """A checked requantisation multiplier as the kernels' two ints."""
    return {"mult_m": mult.m, "mult_s": mult.s}


def _shape_args(s: ConvShape) -> dict:
    return dict(n=s.n, ci=s.ci, h=s.h, wd=s.w, co=s.co, k=s.k, stride=s.stride, pad=s.pad)

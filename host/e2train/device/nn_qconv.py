"""A convolution layer whose three passes run in a conv *backend* (the kernels), in fixed point.

The layer owns the int32 master weights, re-derives the int8 compute copy after every PSG
update (``core.fixedpoint.weight_codes``) and keeps the scale state of its outputs. Its input
arrives as codes with their scale (the previous block operation's output, ``nn_block``; the
network input quantised by ``quantize_input``), its output gradient likewise (``bn_bwd_apply``'s
g_y): nothing is quantised or dequantised here. The policy for each scale (one dyadic scale per
tensor, full range, ``core.fixedpoint.scale_for``):

* network input x (int8): *running max*, an exponential moving average (momentum 0.9) of the
  batch's max |x| ("batch_max") or of the mean over its samples of each sample's max |x|
  ("mean_sample_max"; ``core.fixedpoint.act_batch_max``), including the current batch; the
  values above it saturate. Evaluation uses the running value as it stands. (The block
  outputs, the other convs' inputs, follow the same policy in ``nn_block``.)
* output y (int8, the kernel requantises the accumulator before the ARM sees it): running max
  as for x, estimated after the call from the BN sums the conv's output stage returns (no pass
  over the codes): max over channels of |mean| + Y_SIGMAS standard deviations, in codes. When
  that estimate reaches the top code, it counts as twice the range, so a range that is too
  small grows by 10% a step. The very first call calibrates: it runs once with the exact
  worst-case bound (max_o sum |w| * max|x|), measures max |y| (one ARM pass, once), and runs
  again.
* input gradient g_x (int16, requantised in the kernel): the exact worst-case bound from g_y's
  (``fold_bn_bwd`` chooses g_y's scale so its codes never saturate: |g_y| <= 32767 s_gy) and
  the weights (max over input channels of sum |w|): it never saturates and needs no pass over
  the codes; int16 leaves ample resolution under that bound. The sums of |w| per input channel
  come from the training forward's weight load on the fabric (conv_fwd's ``w_sums``, the same
  codes the input gradient reads); a backend without them leaves them to the ARM (two passes).

Nothing here computes a convolution: every MAC goes through ``backend``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.block_ops import channel_moments
from ..core.fixedpoint import (
    INT8,
    INT16,
    UINT8,
    Dyadic,
    absmax,
    act_batch_max,
    master_frac_bits,
    quantize,
    requant_multiplier,
    requantize,
    requantize_fits,
    scale_for,
    weight_code_scale,
)
from ..core.kernel_args import takes_arg, w_abs_sums
from ..core.shapes import ConvShape
from .nn_layers import FC_GRAD_CHUNK_OPS, ArmTally, op_count
from .nn_tally import KernelTally

RUNNING_MOMENTUM = 0.9
# y's range estimate from its per-channel mean and variance: about the max of the few thousand
# codes of a channel in a batch if they were Gaussian
Y_SIGMAS = 4.0


def running(prev: float | None, batch: float) -> float:
    """The running max after one more batch's estimate."""
    return batch if prev is None else RUNNING_MOMENTUM * prev + (1 - RUNNING_MOMENTUM) * batch


def maxabs_code(codes: np.ndarray, arm: ArmTally) -> int:
    """max |code| of an integer tensor (a min and a max, tallied)."""
    arm.ops("maxabs", codes.size)
    return absmax(codes)


def y_range_codes(sums: np.ndarray, count: int, arm: ArmTally) -> float:
    """y's range in codes from the conv's BN sums (co, 2) over ``count`` elements per channel:
    max over channels of |mean| + Y_SIGMAS * std (a few operations per channel)."""
    arm.ops("y_range", sums.shape[0])
    mean, var = channel_moments(sums, count)
    return float((np.abs(mean) + Y_SIGMAS * np.sqrt(var)).max(initial=0.0))


def quantize_input(x: np.ndarray, x_max: float | None, train: bool, policy: str, arm: ArmTally):
    """The network input (float32 NCHW) as int8 codes: (codes, scale, the new running max).
    The ARM's one per-element pass over activations: the images arrive as floats. Tallies
    ``quantize_input_ops`` in full before it refuses a batch (a side task must tally what it
    declared)."""
    n = x.shape[0]
    if policy == "batch_max" or not x.size:
        stat = float(np.abs(x).max()) if x.size else 0.0
    else:                                   # each sample's max |x| in the same passes, then their mean
        stat = act_batch_max(np.abs(x).reshape(n, -1).max(axis=1), policy)
        arm.ops("scale_stat", n)
    arm.ops("maxabs", x.size)
    arm.ops("quantize", x.size)
    if not math.isfinite(stat):     # NaN or inf in the images: no scale or code means anything
        raise ValueError(f"the input batch holds non-finite values (max |x| = {stat}): check the data set's files")
    if train or x_max is None:
        x_max = running(x_max, stat) if train else stat
    s_x = scale_for(x_max, INT8)
    return quantize(x, s_x, INT8, finite=True), s_x, x_max


def quantize_input_ops(n_elements: int, n_samples: int, policy: str) -> int:
    """The ARM ops ``quantize_input`` tallies for a batch of ``n_samples`` images of
    ``n_elements`` values in all: what ``ArmTally.defer`` is told when it runs as side work."""
    stat = op_count("scale_stat", n_samples) if policy != "batch_max" and n_elements else 0
    return stat + op_count("maxabs", n_elements) + op_count("quantize", n_elements)


@dataclass
class ConvCache:
    xq: np.ndarray            # the input codes the kernel saw (full batch; listed rows read)
    idx: np.ndarray | None    # the sample list (None = every sample)
    n: int
    in_hw: tuple[int, int]


# The int8 copy's re-derivation after an update, on the ARM in numpy, counted pass by pass (one
# op an element, as every ARM op): per weight requantize's 3 ("weight_codes": the multiply that
# widens to int64, add, and the shift that stores into the int8 copy; its range check takes the
# update's max |W|, no pass, and shows that no code leaves int8, so no clip runs), 4 where it
# cannot show it ("weight_codes_sat": the clip that stores instead). The backward gain's sums of |w| per input channel are the next
# training forward's (its weight load on the fabric adds them up, conv_fwd's ``w_sums``); a
# backend without them leaves them to the ARM where the gain is read ("weight_gain": |.| into
# int16, the sum per input channel). The gains' maxima ("gain_max", per channel) are taken where
# they are read: the backward gain's by the layer's input gradient, the forward gain (max over
# output channels of sum |w|) only when a layer calibrates its output scale (its first forward),
# not after every update. The tasks hold whole output channels, at most REDERIVE_CHUNK_OPS ops
# (one channel at least): the classifier gradient's task size (nn_layers.FC_GRAD_CHUNK_OPS),
# which fits under the median fabric call of the demo's runs.
REDERIVE_CHUNK_OPS = FC_GRAD_CHUNK_OPS


def rederive_ops(n_out: int, per_out: int, saturate: bool = False) -> int:
    """ARM ops of re-deriving ``n_out`` output channels of ``per_out`` weights each (``saturate``:
    a code could leave int8, the clip runs)."""
    n = n_out * per_out
    return op_count("weight_codes", n) + (op_count("weight_codes_sat", n) if saturate else 0)


def rederive_slices(co: int, per_out: int) -> list[tuple[int, int]]:
    """The (first, end) output channels of each task of a re-derivation: as many channels as
    ``REDERIVE_CHUNK_OPS`` allows, one at least."""
    rows = max(1, REDERIVE_CHUNK_OPS // max(1, rederive_ops(1, per_out, saturate=True)))
    cuts = list(range(0, co, rows)) + [co]
    return list(zip(cuts[:-1], cuts[1:]))


class QConv:
    """k x k convolution (no bias: BN follows) through the backend's three kernels."""

    def __init__(self, name: str, ci: int, co: int, k: int, stride: int, rng: np.random.Generator,
                 x_unsigned: bool = True, input_grad: bool = True):
        self.name = name
        self.input_grad = input_grad      # False: no input gradient is ever asked (the stem), no gain
        self.ci, self.co, self.k, self.stride, self.pad = ci, co, k, stride, k // 2
        self.x_fmt = UINT8 if x_unsigned else INT8
        # Kaiming normal, fan_out mode (as torchvision's ResNets)
        std = math.sqrt(2.0 / (co * k * k))
        w = rng.standard_normal((co, ci, k, k)) * std
        self.frac_bits = master_frac_bits(float(np.abs(w).max()))
        self.w_master = np.round(np.ldexp(w, self.frac_bits)).astype(np.int32)
        self._pin, self._pin_for = None, None   # the int8 weights' buffer of their own, and whose
        self._w_sums_for = None                 # (backend, whether its conv_fwd forms the weights' sums)
        self._rederive()
        # scale state (floats: the max each tensor's full-range scale is chosen from)
        self.y_max: float | None = None

    # -- state -------------------------------------------------------------------------
    def _rederive(self, backend=None) -> None:
        """The int8 compute copy from the master weights, at once and untallied: at
        initialisation and when a checkpoint is loaded (after an update, ``_derive`` with the
        update's max |W|, priced)."""
        self._derive(absmax(self.w_master), backend)

    def _derive(self, wmax: int, backend=None, arm: ArmTally | None = None) -> None:
        """The int8 compute copy of the master weights (``core.fixedpoint.weight_codes``) and its
        scale, for weights whose largest magnitude is ``wmax``; the backward gain's sums are then
        unknown until the next training forward (or the ARM) forms them. A backend that
        keeps arrays in place (``pinned``: the PYNQ backend's CMA buffers) gets the codes in a
        buffer of its own, which both conv passes then read with no copy.

        With ``arm`` (after an update) the ARM's work is tallied and goes as side work
        (``ArmTally.defer``): nothing reads the copy or its scale before this layer's next forward
        (this step's input gradient read the old copy before the update), and the optimiser's
        flush runs what is left, so the next step finds them whole. Tasks of whole output
        channels (``rederive_slices``), in any order; the codes are element-wise given the scale,
        so any split gives the whole tensor's results, bit for bit."""
        pinned = getattr(backend, "pinned", None)
        if callable(pinned) and self._pin_for is not backend:
            self._pin, self._pin_for = pinned(self.w_master.shape, np.int8), backend
        own = backend is not None and self._pin_for is backend and self._pin is not None   # None: no room for one
        out = self._pin if own else np.empty(self.w_master.shape, np.int8)
        wm, (scale, mult) = self.w_master, weight_code_scale(wmax, self.frac_bits)
        sat = mult is not None and not requantize_fits(wmax, mult, INT8)
        per_o = int(np.prod(wm.shape[1:]))
        slices = rederive_slices(self.co, per_o) if arm is not None else [(0, self.co)]
        left = [len(slices)]
        self._col_sums = None           # the gain's sums belong to the old copy

        def rows(o0: int, o1: int) -> None:
            if arm is not None:
                arm.ops("weight_codes", (o1 - o0) * per_o)
                if sat:
                    arm.ops("weight_codes_sat", (o1 - o0) * per_o)
            if mult is None:
                out[o0:o1] = 0
            else:
                requantize(wm[o0:o1], mult, INT8, out[o0:o1], peak=wmax)
            left[0] -= 1
            if left[0] == 0:            # the last to run, whichever it is
                self.w_codes, self.w_scale = out, scale
        for o0, o1 in slices:
            if arm is None:
                rows(o0, o1)
            else:
                arm.defer(lambda o0=o0, o1=o1: rows(o0, o1), ops=rederive_ops(o1 - o0, per_o, sat))

    def state(self) -> dict[str, np.ndarray]:
        f = lambda v: np.float64(np.nan if v is None else v)   # noqa: E731
        return {"w_master": self.w_master, "frac_bits": np.int64(self.frac_bits),
                "y_max": f(self.y_max)}

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        g = lambda v: None if np.isnan(v) else float(v)         # noqa: E731
        if d["w_master"].shape != self.w_master.shape or d["w_master"].dtype != np.int32:
            raise ValueError(f"{self.name}: master weights {d['w_master'].dtype}{d['w_master'].shape} "
                             f"do not fit this model ({self.w_master.dtype}{self.w_master.shape})")
        self.w_master = d["w_master"].copy()
        self.frac_bits = int(d["frac_bits"])
        self.y_max = g(d["y_max"])
        self._rederive()

    def _backward_gain(self, arm: ArmTally) -> float:
        """max over input channels of sum |w| (|acc| <= gain * max|g_y|), from the sums the
        training forward's weight load formed on the fabric; where the backend formed none, the
        ARM sums the int8 copy here (two passes a weight)."""
        if self._col_sums is None:
            arm.ops("weight_gain", self.w_codes.size)
            self._col_sums = w_abs_sums(self.w_codes)
        arm.ops("gain_max", self.ci)
        return float(self._col_sums.max())

    def _forward_gain(self, arm: ArmTally) -> float:
        """max over output channels of sum |w| (|acc| <= gain * max|x|), from the int8 copy: read
        only by the output scale's calibration, so computed there."""
        arm.ops("weight_gain", self.w_codes.size)
        arm.ops("gain_max", self.co)
        return float(np.abs(self.w_codes, dtype=np.int16).sum(axis=(1, 2, 3), dtype=np.int64).max())

    def weights_float(self) -> np.ndarray:
        """The master weights as floats (for inspection and reference computations)."""
        return np.ldexp(self.w_master.astype(np.float64), -self.frac_bits)

    def shape(self, n: int, h: int, w: int) -> ConvShape:
        return ConvShape(n, self.ci, h, w, self.co, self.k, self.stride, self.pad)

    # -- forward -----------------------------------------------------------------------
    def forward(self, xq: np.ndarray, s_x: Dyadic, idx: np.ndarray | None, train: bool, backend,
                tally: KernelTally, arm: ArmTally):
        """xq: the input codes (full batch; the listed rows are read), s_x their scale. Returns
        (y int8 codes of the full batch, the listed rows written; y's scale; BN's sums (co, 2)
        over the listed samples from the conv's output stage; the cache for ``backward``)."""
        n, h, w = xq.shape[0], xq.shape[2], xq.shape[3]
        shape = self.shape(n, h, w)
        n_act = n if idx is None else idx.size
        acc_scale = s_x.value * self.w_scale.value
        if self.y_max is None:
            # calibration: the exact bound on |acc| never saturates; measure, then run for real
            xa = xq if idx is None else xq[idx]
            bound = acc_scale * maxabs_code(xa, arm) * self._forward_gain(arm)
            s_cal = scale_for(bound, INT8)
            y = self._fwd_call(backend, xq, s_cal, acc_scale, idx, shape, n_act, tally, None)
            self.y_max = maxabs_code(y if idx is None else y[idx], arm) * s_cal.value or None
        s_y = scale_for(self.y_max or 0.0, INT8)
        sums = np.zeros((self.co, 2), np.int64)
        # the gain's sums of this copy, for this step's input gradient, from the weight load
        if self._w_sums_for is None or self._w_sums_for[0] is not backend:    # asked once a backend
            self._w_sums_for = (backend, takes_arg(backend.conv_fwd, "w_sums"))
        w_sums = np.zeros(self.ci, np.int64) if train and self.input_grad and self._w_sums_for[1] else None
        y = self._fwd_call(backend, xq, s_y, acc_scale, idx, shape, n_act, tally, sums, w_sums)
        if w_sums is not None:
            self._col_sums = w_sums
        if train and n_act:
            top = y_range_codes(sums, n_act * shape.ho * shape.wo, arm)
            est = 2 * self.y_max if (top >= INT8.hi and self.y_max) else top * s_y.value
            self.y_max = running(self.y_max, est) if est > 0 else self.y_max
        return y, s_y, sums, ConvCache(xq, idx, n, (h, w))

    def _fwd_call(self, backend, xq, s_y: Dyadic, acc_scale: float, idx, shape, n_act, tally, sums, w_sums=None):
        mult = requant_multiplier(acc_scale, s_y)
        kw = {} if w_sums is None else {"w_sums": w_sums}
        y = backend.conv_fwd(xq, self.w_codes, None, mult, stride=self.stride, pad=self.pad,
                             relu=False, samples=idx, out=None, stats=sums, **kw)
        tally.kernel("conv_fwd", shape, n_act, x_unsigned=self.x_fmt.unsigned, layer=self.name,
                     bn_sums=sums is not None, w_sums=w_sums is not None)
        return y

    # -- backward ----------------------------------------------------------------------
    def backward(self, gyq: np.ndarray, s_gy: Dyadic, cache: ConvCache, backend, tally: KernelTally,
                 arm: ArmTally, *, lr_q: int, wd_q: int, beta_q: int, need_gx: bool = True):
        """gyq: int16 codes of the output gradient (full batch; the listed rows are read), s_gy
        their scale. Updates the master weights (PSG + sign step) and returns (g_x codes or
        None, g_x's scale or None, number of weights decided by the predictor)."""
        idx, n = cache.idx, cache.n
        h, w = cache.in_hw
        shape = self.shape(n, h, w)
        n_act = n if idx is None else idx.size
        gxq, s_gx = None, None
        if need_gx:
            acc_scale = s_gy.value * self.w_scale.value
            s_gx = scale_for(acc_scale * INT16.hi * self._backward_gain(arm), INT16)
            mult = requant_multiplier(acc_scale, s_gx)
            gxq = backend.conv_bwd_data(gyq, self.w_codes, mult, in_hw=(h, w), stride=self.stride,
                                        pad=self.pad, samples=idx, out=None)
            tally.kernel("conv_bwd_data", shape, n_act, layer=self.name)

        res = backend.conv_bwd_weight_psg(cache.xq, gyq, self.w_master, stride=self.stride,
                                          pad=self.pad, beta_q=beta_q, lr_q=lr_q, wd_q=wd_q,
                                          samples=idx)
        n_pred = res.n_predicted
        tally.kernel("conv_bwd_weight_psg", shape, n_act, n_predicted=n_pred,
                     x_unsigned=self.x_fmt.unsigned, layer=self.name, n_weights=self.w_master.size,
                     predictor_on=beta_q > 0, predicted=res.predicted)
        self.w_master = np.asarray(res.w_master, dtype=np.int32)
        wmax = res.w_absmax
        if wmax is None:            # a backend that does not report the update's max |W|: the ARM finds it
            arm.ops("maxabs", self.w_master.size)
            wmax = absmax(self.w_master)
        self._derive(int(wmax), backend, arm)
        return gxq, s_gx, n_pred

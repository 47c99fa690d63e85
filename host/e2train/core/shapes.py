"""Convolution shapes the kernels accept, and the limits that keep their accumulators exact.

One definition, used by the golden models, the C-sim binding, the PYNQ driver, the
performance model and the torch reference, so that "what the kernels accept" cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KERNEL_SIZES = (1, 3)
STRIDES = (1, 2)
MAX_DIM = 1024                 # H, W, C limits (also bounds the DDR tensors' sizes)
MAX_BATCH = 4096
# conv_fwd: |x*w| <= 255*128 < 2**15; ci*k*k <= 2**15 terms keep |acc| < 2**30, so adding
# a bias with |b| < 2**30 cannot wrap int32.
MAX_FWD_TERMS = 1 << 15
MAX_BIAS = (1 << 30) - 1
# conv_bwd_weight: |x*g| <= 255*32768 < 2**23; n*ho*wo <= 2**24 terms keep the exact sum
# inside 47 bits (the 48-bit DSP48 accumulator, signed).
MAX_WGRAD_TERMS = 1 << 24
# The weight-gradient pass keeps each weight's partial sums on chip in one 72-bit BRAM word
# (fpga/fit.py): the exact sum in 41 bits and G_msb in 31. n*ho*wo <= 2**17 positions keep both
# in range: |x*g| <= 255*32768 < 2**23, so |G| < 2**40; |x_h*g_h| <= 15*512 < 2**13, so
# |G_msb| < 2**30. (Batch 128 at 32x32 is exactly 2**17.)
MAX_WGRAD_CALL_TERMS = 1 << 17
# The forward and input-gradient passes hold one output-channel tile's (or input-channel
# tile's) weights on chip, a row per channel and tap: ci*k*k (forward) and co*k*k (input
# gradient) rows of the engine's 8 banks, 4608 B each (one RAMB36 + one RAMB18 per bank in
# fpga/fit.py). 4608 = 512 channels at 3x3, 4608 at 1x1.
MAX_TAPS = 4608


class ShapeError(ValueError):
    """A tensor shape or convolution parameter the kernels do not accept."""


def check_wgrad_terms(shape: "ConvShape") -> None:
    """The weight-gradient pass's own limit on positions (MAX_WGRAD_CALL_TERMS): its partial sums'
    on-chip word. The other passes take any shape ConvShape accepts."""
    terms = shape.n * shape.ho * shape.wo
    if terms > MAX_WGRAD_CALL_TERMS:
        fits = MAX_WGRAD_CALL_TERMS // (shape.ho * shape.wo)
        fix = (f"use a batch of at most {fits} at {shape.ho}x{shape.wo} outputs" if fits else
               f"no batch fits at {shape.ho}x{shape.wo} outputs: downsample the input")
        raise ShapeError(f"the weight gradient sums n*ho*wo = {terms} positions, above its {MAX_WGRAD_CALL_TERMS} "
                         f"(the on-chip partial sums' 72-bit word): {fix}")


def check_wgrad_stage(shape: "ConvShape") -> None:
    """The weight-gradient pass's x chunk buffer (core.engine_map.wgrad_plan): the input rows
    that a chunk of WGRAD_CHUNK positions reaches must fit for one block's channels at least (a
    3x3 block's pair, a 1x1 block's 18); more channels than fit run in further weight groups.
    Checked at the full batch: a chunk of fewer listed samples reaches no more rows."""
    from . import engine_map as em
    if em.wgrad_plan(shape)[1]:
        return
    slots = max(em.chunk_slots(shape, p0, p1) for p0, p1 in em.wgrad_chunks(shape.n * shape.ho * shape.wo))
    need = em.WGRAD_X_BANKS // (2 * shape.k * shape.k)                     # channel pairs of one block
    per_pair = -(-slots // 3) * em.row_words(shape)
    words = 7 * ((3 * em.WGRAD_X_WORDS) // (-(-slots // 3) * need))
    raise ShapeError(f"the weight gradient stages the input rows a chunk of {em.WGRAD_CHUNK} positions reaches: "
                     f"{slots} rows of {shape.w} codes, {per_pair} words a channel pair, and a {shape.k}x{shape.k} "
                     f"block's {2 * need} channels need {need * per_pair}, over the x chunk buffer's "
                     f"{3 * em.WGRAD_X_WORDS} a logical bank: narrow the input to about "
                     f"{words - 2 * shape.pad + shape.k - 1} columns or fewer")


def check_wgrad_shape(shape: "ConvShape") -> None:
    """Every limit of the weight-gradient pass beyond ConvShape's: its positions
    (check_wgrad_terms) and its x chunk buffer (check_wgrad_stage)."""
    check_wgrad_terms(shape)
    check_wgrad_stage(shape)


@dataclass(frozen=True)
class ConvShape:
    n: int
    ci: int
    h: int
    w: int
    co: int
    k: int
    stride: int = 1
    pad: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "ci", "h", "w", "co"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ShapeError(f"{name} must be a positive integer, got {v!r}")
        if self.k not in KERNEL_SIZES:
            raise ShapeError(f"kernel size {self.k} not supported (kernels do {KERNEL_SIZES})")
        if self.stride not in STRIDES:
            raise ShapeError(f"stride {self.stride} not supported (kernels do {STRIDES})")
        if not 0 <= self.pad <= self.k // 2:
            raise ShapeError(f"padding {self.pad} not supported for a {self.k}x{self.k} kernel (0..{self.k // 2})")
        if max(self.ci, self.co, self.h, self.w) > MAX_DIM:
            raise ShapeError(f"channels and spatial sizes are limited to {MAX_DIM}: {self}")
        if self.n > MAX_BATCH:
            raise ShapeError(f"batch {self.n} above the kernels' limit of {MAX_BATCH}")
        if self.ho < 1 or self.wo < 1:
            raise ShapeError(f"output would be empty: {self.h}x{self.w} input, k={self.k}, pad={self.pad}")
        if max(self.ci, self.co) * self.k * self.k > MAX_TAPS:
            raise ShapeError(f"channels*k*k = {max(self.ci, self.co) * self.k * self.k} exceeds {MAX_TAPS} (the kernels' "
                             f"on-chip weight tile: at most {MAX_TAPS // 9} channels at 3x3, {MAX_TAPS} at 1x1)")
        if self.ci * self.k * self.k > MAX_FWD_TERMS:
            raise ShapeError(f"ci*k*k = {self.ci * self.k * self.k} exceeds {MAX_FWD_TERMS} (int32 accumulator bound)")
        if self.n * self.ho * self.wo > MAX_WGRAD_TERMS:
            raise ShapeError(f"n*ho*wo = {self.n * self.ho * self.wo} exceeds {MAX_WGRAD_TERMS} (48-bit accumulator bound)")

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.pad - self.k) // self.stride + 1

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.ci, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.co, self.ci, self.k, self.k)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.co, self.ho, self.wo)

    def macs(self, n_active: int | None = None) -> int:
        """Multiply-accumulates of one pass (fwd, bwd-data and bwd-weight all have this many)."""
        n = self.n if n_active is None else n_active
        return n * self.co * self.ho * self.wo * self.ci * self.k * self.k

    @classmethod
    def of(cls, x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> "ConvShape":
        if x.ndim != 4 or w.ndim != 4:
            raise ShapeError(f"x and w must be 4-D (NCHW, OIHW); got {x.shape} and {w.shape}")
        if w.shape[2] != w.shape[3]:
            raise ShapeError(f"only square kernels are supported, got {w.shape[2]}x{w.shape[3]}")
        if x.shape[1] != w.shape[1]:
            raise ShapeError(f"x has {x.shape[1]} channels but w expects {w.shape[1]}")
        n, ci, h, wd = (int(v) for v in x.shape)
        return cls(n, ci, h, wd, int(w.shape[0]), int(w.shape[2]), int(stride), int(pad))


def check_samples(samples, n: int) -> np.ndarray:
    """Validate an SLU sample list: 1-D, integer, unique, each in [0, n). Returns int32."""
    if samples is None:
        return np.arange(n, dtype=np.int32)
    s = np.asarray(samples)
    if s.ndim != 1:
        raise ShapeError(f"sample list must be 1-D, got shape {s.shape}")
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise ShapeError(f"sample list must hold integers, got {s.dtype}")
    s = s.astype(np.int64)
    if s.size and (s.min() < 0 or s.max() >= n):
        bad = s[(s < 0) | (s >= n)][0]
        raise ShapeError(f"sample index {int(bad)} out of range for a batch of {n}")
    if np.unique(s).size != s.size:
        raise ShapeError("sample list has duplicate indices")
    return s.astype(np.int32)

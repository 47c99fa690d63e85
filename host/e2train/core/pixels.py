"""Images kept as their 8-bit pixel codes, standardised a batch at a time through a table.

A standardised image is a function of its pixel codes: each channel maps code p to
``(value(p) - mean[c]) / std[c]`` as float32, where value(p) is what the loader reads the
code as (p / 255 for CIFAR, MNIST, Imagenette and SAT-6, p itself for digits). So a data set of 8-bit
pixels needs one byte an element and a (channels x 256) float32 table, not four bytes an
element: CIFAR-10's 60,000 images are 184 MB of codes against 737 MB of float32, which a
512 MB PYNQ-Z2 cannot hold. The board keeps the codes and looks each batch up in the table
as it gathers it; the table is built with the same arithmetic as a standardisation of the whole
array, so the lookup is bit-identical to it (``tests/unit/test_pixels.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CODES = 256


def code_table(values: np.ndarray, mean, std) -> np.ndarray:
    """The (channels, 256) float32 table ``(values[p] - mean[c]) / std[c]``: element for element
    what standardising the images computes. ``values``: the 256 codes as the loader reads them
    (float32). ``mean``, ``std``: as the whole-array statistics give them, (1, C, 1, 1) float64
    arrays per channel, or scalars for one over all pixels; they are used as given, so numpy
    promotes exactly as it does for the images (NumPy 1.x computes a float32 array less a
    float64 scalar in float32, and an array of statistics in float64)."""
    values = np.asarray(values)
    if values.shape != (CODES,):
        raise ValueError(f"a code table needs the value of each of the {CODES} codes, got shape {values.shape}")
    return ((values.reshape(1, 1, 1, CODES) - mean) / std).astype(np.float32).reshape(-1, CODES)


def standardise(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Codes (uint8, N x C x ...) to standardised float32 images through ``table``."""
    out = np.empty(codes.shape, np.float32)
    for c in range(codes.shape[1]):
        np.take(table[c], codes[:, c], out=out[:, c], mode="clip")    # clip: uint8 is always in range, no buffering
    return out


def check_table(table, channels: int) -> np.ndarray:
    """The table as float32 (channels, 256), or ValueError saying what is wrong with it."""
    t = np.asarray(table)
    if t.shape != (channels, CODES):
        raise ValueError(f"pixel_table must be {channels} x {CODES} (one row a channel, one column a code), "
                         f"got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.floating) or not np.isfinite(t).all():
        raise ValueError("pixel_table must hold finite floats")
    if (np.diff(t, axis=1) < 0).any():
        raise ValueError("pixel_table must not decrease along a row (a brighter pixel standardises higher)")
    return t.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Pixels:
    """Images as 8-bit codes (uint8 NCHW) with the table that standardises them. Indexing
    selects images and keeps the table; ``shape`` and ``size`` are the images'."""
    codes: np.ndarray
    table: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.codes, np.ndarray) or self.codes.dtype != np.uint8 or self.codes.ndim != 4:
            raise ValueError(f"pixel codes must be uint8 NCHW, got "
                             f"{getattr(self.codes, 'dtype', type(self.codes).__name__)} "
                             f"{getattr(self.codes, 'shape', '')}")
        object.__setattr__(self, "table", check_table(self.table, self.codes.shape[1]))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def size(self) -> int:
        return self.codes.size

    def __len__(self) -> int:
        return self.codes.shape[0]

    def __getitem__(self, idx) -> Pixels:
        return Pixels(self.codes[idx], self.table)

    def standardised(self) -> np.ndarray:
        return standardise(self.codes, self.table)

    def channel_min(self) -> np.ndarray:
        """Each channel's lowest standardised value (the table rises with the code, so it is the
        lowest code's entry): one pass over the codes."""
        lo = self.codes.min(axis=(0, 2, 3))
        return self.table[np.arange(self.codes.shape[1]), lo]

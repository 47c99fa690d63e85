"""Shared fixtures of the device trainer's tests: data and a recording conv backend."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.block_ops import IDENTITY


@pytest.fixture(scope="session")
def digits_pixels():
    """The digits split of e2train.data.datasets (sklearn's 8x8 digits, 1437/360) as the host
    uploads it to a board: its images as 8-bit codes and their table (``core.pixels.Pixels``).

    Under ``make board-test`` (the PYNQ image's versions, no scikit-learn) it is that upload: the
    npz named by E2TRAIN_DIGITS_NPZ, read by the agent's own loader.
    """
    path = os.environ.get("E2TRAIN_DIGITS_NPZ")
    if path:
        from e2train.device.agent import load_dataset_npz
        return load_dataset_npz(Path(path))
    from e2train.data import datasets
    return datasets.load("digits", pixels=True)


@pytest.fixture(scope="session")
def digits(digits_pixels):
    """The same split with standardised float32 images (``datasets.load("digits")``'s numbers):
    for tests that hand batches to a step or a layer directly."""
    x_tr, y_tr, x_te, y_te = digits_pixels
    return x_tr.standardised(), y_tr, x_te.standardised(), y_te


@pytest.fixture(scope="session")
def small_digits(digits):
    """A 192/96 slice of digits: enough for a few steps with every code path."""
    x_tr, y_tr, x_te, y_te = digits
    return x_tr[:192], y_tr[:192], x_te[:96], y_te[:96]


class SpyBackend:
    """Delegates to the golden models and records every call (kernel, batch, sample list).

    With ``poison=True`` it overwrites the rows *not* in the sample list with random codes
    before delegating: if any result depended on them, training would change.
    """

    def __init__(self, poison: bool = False, seed: int = 0):
        self.calls: list[tuple[str, int, np.ndarray | None]] = []
        self.poison = poison
        self.rng = np.random.default_rng(seed)
        self.layer = None            # set by tests that track which layer calls
        self.step = None             # set by tests that track which training step calls

    def _record(self, kernel, n, samples):
        s = None if samples is None else np.asarray(samples).copy()
        self.calls.append((kernel, n, s, self.layer, self.step))

    def _poisoned(self, a, samples):
        if not self.poison or samples is None:
            return a
        a = a.copy()
        off = np.setdiff1d(np.arange(a.shape[0]), samples)
        info = np.iinfo(a.dtype)
        a[off] = self.rng.integers(info.min, info.max, size=a[off].shape, endpoint=True, dtype=a.dtype)
        return a

    def conv_fwd(self, x, w, bias, mult, *, stride, pad, relu, samples, out, stats=None):
        self._record("conv_fwd", x.shape[0], samples)
        return golden.conv_fwd(self._poisoned(x, samples), w, bias, mult, stride=stride, pad=pad,
                               relu=relu, samples=samples, out=out, stats=stats)

    def conv_bwd_data(self, g_y, w, mult, *, in_hw, stride, pad, samples, out):
        self._record("conv_bwd_data", g_y.shape[0], samples)
        return golden.conv_bwd_data(self._poisoned(g_y, samples), w, mult, in_hw=in_hw, stride=stride,
                                    pad=pad, samples=samples, out=out)

    def conv_bwd_weight_psg(self, x, g_y, w_master, *, stride, pad, beta_q, lr_q, wd_q, samples):
        self._record("conv_bwd_weight_psg", x.shape[0], samples)
        return golden.conv_bwd_weight_psg(self._poisoned(x, samples), self._poisoned(g_y, samples),
                                          w_master, stride=stride, pad=pad, beta_q=beta_q, lr_q=lr_q,
                                          wd_q=wd_q, samples=samples)

    # the block operations: bn_act and bn_bwd_apply read only the listed samples' y (and g_m);
    # bn_bwd_reduce reads every sample (the shortcut's gradient flows for all of them)
    def bn_act(self, y, a, b, shift, *, r=None, r_mult=0, shortcut=IDENTITY, samples=None, relu=True):
        self._record("bn_act", y.shape[0], samples)
        return golden.bn_act(self._poisoned(y, samples), a, b, shift, r=r, r_mult=r_mult, shortcut=shortcut,
                             samples=samples, relu=relu)

    def bn_bwd_reduce(self, o, y, g_a, **kw):
        self._record("bn_bwd_reduce", o.shape[0], kw.get("samples"))
        return golden.bn_bwd_reduce(o, self._poisoned(y, kw.get("samples")), g_a, **kw)

    def bn_bwd_apply(self, g_m, y, p, q, t, shift, *, samples=None):
        self._record("bn_bwd_apply", g_m.shape[0], samples)
        return golden.bn_bwd_apply(self._poisoned(g_m, samples), self._poisoned(y, samples), p, q, t, shift,
                                   samples=samples)


@pytest.fixture
def spy():
    return SpyBackend()


@pytest.fixture
def spy_factory():
    return SpyBackend

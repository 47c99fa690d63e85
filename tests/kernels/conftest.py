"""Shared fixtures of the kernel tests: the C-simulation library, built on demand."""
from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CSIM_DIR = REPO / "build" / "csim"


def _build_csim() -> None:
    """`make csim` once, serialised across pytest-xdist workers (make is a no-op when fresh)."""
    CSIM_DIR.mkdir(parents=True, exist_ok=True)
    with open(CSIM_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = subprocess.run(["make", "-s", "csim"], cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"`make csim` failed:\n{r.stdout}\n{r.stderr}")


@pytest.fixture(scope="session")
def csim_lib():
    if "E2TRAIN_CSIM_LIB" not in os.environ:
        _build_csim()
    from e2train.core import csim
    return csim.load()


@pytest.fixture(scope="session")
def san_driver():
    _build_csim()
    path = CSIM_DIR / "e2t_san_driver"
    assert path.is_file(), "make csim did not build the sanitizer driver"
    return path


@pytest.fixture(scope="session")
def codes():
    """The random-code generator below (a fixture: test modules cannot import conftest)."""
    return rand_codes


def rand_codes(rng: np.random.Generator, shape, dtype, extreme: bool) -> np.ndarray:
    """Random codes of ``dtype``; ``extreme`` draws mostly the ends of the range (saturation)."""
    info = np.iinfo(dtype)
    if extreme:
        choices = np.array([info.min, info.min + 1, info.max - 1, info.max, 0], dtype=np.int64)
        v = rng.choice(choices, size=shape)
        mix = rng.random(shape) < 0.2
        v[mix] = rng.integers(info.min, int(info.max) + 1, size=int(mix.sum()))
    else:
        v = rng.integers(info.min, int(info.max) + 1, size=shape)
    return v.astype(dtype)


@pytest.fixture
def t():
    """One small, valid conv call's tensors (3x3, pad 1): x uint8, w int8, g (g_y) int16,
    wm (w_master) int32, b (bias) int32, for tests that break one argument at a time."""
    rng = np.random.default_rng(0)
    return dict(
        x=rng.integers(0, 256, (2, 3, 5, 5)).astype(np.uint8),
        w=rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8),
        g=rng.integers(-1000, 1000, (2, 4, 5, 5)).astype(np.int16),
        wm=rng.integers(-1000, 1000, (4, 3, 3, 3)).astype(np.int32),
        b=np.zeros(4, np.int32),
    )

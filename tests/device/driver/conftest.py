"""Fixtures for the driver tests: the simulated board loaded through its manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2train.core import csim

REPO = Path(__file__).resolve().parents[3]
SIM_MANIFEST = REPO / "bitstreams" / "sim"

IMPLS = ["golden", pytest.param("csim", marks=pytest.mark.skipif(
    not csim.available(), reason="C-simulation library not built (make csim)"))]


@pytest.fixture
def overlay():
    from e2train.device.overlay import KernelOverlay
    return KernelOverlay(SIM_MANIFEST, sim_impl="golden")


@pytest.fixture(params=IMPLS)
def any_overlay(request):
    from e2train.device.overlay import KernelOverlay
    return KernelOverlay(SIM_MANIFEST, sim_impl=request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

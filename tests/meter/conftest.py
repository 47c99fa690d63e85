"""Shared fixtures of the meter tests: the real Watts Up? capture and short emulator runs."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAN_RAW = REPO.parent / "shared" / "fixtures" / "wattsup" / "fan.raw"


@pytest.fixture
def fan_raw() -> bytes:
    if not FAN_RAW.exists():
        pytest.skip(f"real Watts Up? capture not found at {FAN_RAW} (the shared fixtures live next to the repo)")
    return FAN_RAW.read_bytes()


@pytest.fixture
def fan_raw_path(fan_raw) -> Path:
    return FAN_RAW

"""A real meter, opt-in: E2TRAIN_HW=1 E2TRAIN_METER=<spec> pytest tests/meter -m hardware."""
from __future__ import annotations

import math
import os
import time

import pytest

from e2train.meter import open_meter, close_meter
from e2train.meter.recorder import Recorder

SPEC = os.environ.get("E2TRAIN_METER")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(os.environ.get("E2TRAIN_HW") != "1" or not SPEC,
                       reason="needs a real meter: set E2TRAIN_HW=1 and E2TRAIN_METER=<spec>"),
]


def test_real_meter_gives_plausible_samples():
    m = open_meter(SPEC)
    try:
        samples = [m.read() for _ in range(3)]
    finally:
        close_meter(m)
    for s in samples:
        assert math.isfinite(s.watts) and 0 <= s.watts < 5000
    assert samples[0].t_host_monotonic < samples[-1].t_host_monotonic


def test_real_meter_records_without_gaps():
    with Recorder(SPEC) as rec:
        time.sleep(5.0)
    s = rec.summary()
    assert s["energy_kind"] == "measured"
    assert s["samples"] >= 3 and s["gap_count"] == 0 and s["error"] is None

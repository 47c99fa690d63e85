"""The real Watts Up? capture replayed by the emulator, through driver and recorder."""
from __future__ import annotations

import time

import numpy as np
import pytest

from e2train.meter import open_meter
from e2train.meter.emulate import start_emulator
from e2train.meter.recorder import Recorder
from e2train.meter.wattsup import parse_data


def test_real_capture_replayed_through_the_recorder(fan_raw, fan_raw_path):
    expected = [parse_data(r + b";", 0.0).watts for r in fan_raw.split(b";") if r.strip(b"\r\n\0")]
    with start_emulator("wattsup", interval_s=0.005, replay=str(fan_raw_path)) as em:
        meter = open_meter(em.spec)                 # a Meter object works as well as a spec
        with Recorder(meter) as rec:
            deadline = time.monotonic() + 20
            while len(rec.samples) < 200 and time.monotonic() < deadline:
                time.sleep(0.02)
        s = rec.summary()
        dropped = em.dropped_bytes
    got = [x.watts for x in rec.samples]
    assert len(got) >= 200
    if dropped == 0:
        assert s["bad_lines"] == 0
        assert got == expected[:len(got)]          # the capture's records, in order, none lost
    else:
        # A machine too busy to read for a while: the pty filled and the emulator dropped what it
        # could not write (as a real meter's bytes would be lost: bad lines); what parsed is in order.
        it = iter(expected)
        assert all(any(w == e for e in it) for w in got)
    assert s["energy_kind"] == "modelled"           # an emulator, even replaying a real capture
    assert s["avg_power_w"] == pytest.approx(np.mean(got), rel=0.2)

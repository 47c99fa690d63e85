"""Faults of real meters, injected by the emulators: every one is counted or named, none hangs."""
from __future__ import annotations

import csv
import time

import pytest

from e2train.meter import BaudRateError, MeterError, close_meter, open_meter
from e2train.meter.emulate import start_emulator
from e2train.meter.recorder import Recorder


def wait_until(cond, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("protocol", ["csv", "wattsup", "wt310", "um"])
@pytest.mark.parametrize("fault", ["garbage_every", "truncate_every", "nan_every"])
def test_bad_records_are_counted_never_fatal(protocol, fault):
    with start_emulator(protocol, lambda t: 2.0, interval_s=0.01, **{fault: 4}) as em:
        with Recorder(em.spec + "&reply_timeout=0.5") as rec:
            assert wait_until(lambda: rec.bad_lines >= 3 and len(rec.samples) >= 15, 10)
        s = rec.summary()
    assert s["error"] is None
    assert s["bad_lines"] >= 3 and s["bad_line_examples"]
    assert all(x.watts == pytest.approx(2.0, abs=0.01) for x in rec.samples)   # no bad value got through


def test_silent_meter_is_a_gap_within_bounded_time():
    with start_emulator("csv", lambda t: 1.0, interval_s=0.02, silent_after_s=0.4, silent_for_s=0.6) as em:
        t_start = time.monotonic()
        rec = Recorder(em.spec, silence_warn_s=0.3).start()
        assert wait_until(lambda: rec.gaps, 5)
        rec.stop()
        assert rec.t_stop - t_start < 5           # stop() returns promptly even while data flows
    s = rec.summary()
    long_gaps = [g for g in s["gaps"] if g["duration_s"] > 0.4]   # a busy machine may add short ones
    assert len(long_gaps) == 1
    assert 0.5 < long_gaps[0]["duration_s"] < 2.0     # 0.6 s of silence, plus scheduling slack
    assert any(e["kind"] == "silent" for e in s["events"])
    assert s["energy_in_gaps_j"] == pytest.approx(1.0 * s["gap_time_s"], rel=0.05)


def test_stop_returns_while_the_meter_is_silent():
    with start_emulator("wattsup", lambda t: 1.0, interval_s=0.05, silent_after_s=0.3, silent_for_s=30) as em:
        rec = Recorder(em.spec).start()
        time.sleep(0.6)
        t = time.monotonic()
        rec.stop()
        assert time.monotonic() - t < 2.0          # not the 3-interval read deadline, nor a hang
    s = rec.summary()
    assert s["gaps"][-1]["ongoing_at_stop"] and s["gaps"][-1]["duration_s"] > 0.2


@pytest.mark.parametrize("protocol", ["csv", "wattsup"])
def test_unplugged_and_back_the_run_goes_on(protocol, tmp_path):
    with start_emulator(protocol, lambda t: 3.0, interval_s=0.02, unplug_after_s=0.5, unplug_for_s=0.5) as em:
        rec = Recorder(em.spec, out_dir=tmp_path, max_backoff_s=0.1).start()
        assert wait_until(lambda: rec.disconnects >= 1, 5)
        before = (tmp_path / "samples.csv").read_text().splitlines()
        assert wait_until(lambda: rec.reconnects >= 1, 5)
        n_at_reconnect = len(rec.samples)
        assert wait_until(lambda: len(rec.samples) > n_at_reconnect + 10, 5)
        rec.stop()
        assert em.unplugs == 1
    s = rec.summary()
    assert s["disconnects"] == 1 and s["reconnects"] == 1 and s["error"] is None
    assert s["gap_count"] >= 1 and 0.4 < max(g["duration_s"] for g in s["gaps"]) < 3.0
    after = (tmp_path / "samples.csv").read_text().splitlines()
    assert after[:len(before)] == before              # nothing recorded before the unplug is lost
    assert len(after) - 1 == s["samples_total"] >= len(before) + 10
    assert len(list(csv.reader(after))) == len(after)
    kinds = [e["kind"] for e in s["events"]]
    assert kinds.index("disconnect") < kinds.index("reconnect")


@pytest.mark.parametrize("protocol,baud", [("csv", 115200), ("wattsup", 115200), ("wt310", 9600), ("um", 9600)])
def test_wrong_baud_is_detected_and_named(protocol, baud):
    with start_emulator(protocol, lambda t: 1.0, interval_s=0.005, wrong_baud=True) as em:
        t = time.monotonic()
        with pytest.raises(MeterError, match=rf"check the baud rate \(expected {baud}\)"):
            rec = Recorder(em.spec + "&reply_timeout=0.5", first_sample_timeout_s=5)
            rec.start()
        assert time.monotonic() - t < 6


def test_wrong_baud_mid_stream_is_a_baud_error():
    with start_emulator("csv", lambda t: 1.0, interval_s=0.002, wrong_baud=True) as em:
        m = open_meter(em.spec)
        with pytest.raises(BaudRateError, match="115200"):
            for _ in range(1000):
                try:
                    m.read()
                except Exception as e:
                    if isinstance(e, BaudRateError):
                        raise
        close_meter(m)


def test_nothing_on_the_port_is_a_clear_error():
    with start_emulator("wt310", lambda t: 1.0, silent_after_s=0, silent_for_s=60) as em:
        with pytest.raises(MeterError, match=r"no answer to \*IDN\?"):
            open_meter(em.spec + "&reply_timeout=0.3")


@pytest.mark.parametrize("spec,msg", [
    ("nosuch:/dev/x", "protocol one of"),
    ("wattsup", "expected <protocol>:<port>"),
    ("wattsup:", "no port"),
    ("wattsup:/dev/x?bogus=1", "unknown option"),
    ("wattsup:/dev/x?interval=fast", "not a number"),
    ("wattsup:/nonexistent/ttyUSB9", "cannot open"),
    ("sim:nosuch", "no emulator"),
])
def test_bad_specs_say_what_to_do(spec, msg):
    with pytest.raises(MeterError, match=msg):
        open_meter(spec)


def test_scpi_supply_without_power_query_through_the_emulator():
    with start_emulator("scpi", lambda t: 2.0, interval_s=0.01, no_power_query=True) as em:
        m = open_meter(em.spec + "&reply_timeout=0.3")
        assert m.has_power is False
        s = m.read()
        assert (s.watts, s.volts, s.amps) == pytest.approx((2.0, 5.0, 0.4))
        close_meter(m)


def test_emulator_rejects_unknown_options():
    with pytest.raises(ValueError, match="garbage_evry"):
        start_emulator("csv", garbage_evry=3)
    with pytest.raises(ValueError, match="no UM model"):
        start_emulator("um", model="UM99")

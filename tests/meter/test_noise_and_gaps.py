"""Recording survives noise mid-run; gaps are judged on the meter's interval and clock;
`e2train measure` exits with the command's own code and reports meter faults apart."""
from __future__ import annotations

import random
import sys
import time

import pytest

from e2train.app.cli import main
from e2train.meter import BadRecord, NoData
from e2train.meter.base import Meter, Sample
from e2train.meter.dialogue import ExpectedDialogue
from e2train.meter.emulate import start_emulator
from e2train.meter.recorder import Recorder
from e2train.meter.wattsup import FIELDS, WattsUp, parse_data

_RNG = random.Random(13)
NOISE = bytes(_RNG.randrange(256) for _ in range(300))


class TricklePort(ExpectedDialogue):
    """An ExpectedDialogue that hands bytes over a little at a time, as a UART does."""

    def __init__(self, pairs, chunk: int = 64):
        super().__init__(pairs)
        self.chunk = chunk

    @property
    def in_waiting(self) -> int:
        return min(len(self.rx), self.chunk)

    def read(self, size: int = 1) -> bytes:
        return super().read(min(size, self.chunk))


def _records(raw: bytes) -> list[bytes]:
    return [r for r in raw.split(b";") if r.strip(b"\r\n\0")]


def test_noise_burst_in_the_real_capture_loses_no_later_record(fan_raw):
    assert b";" in NOISE and b"#" in NOISE and sum(b >= 0x80 for b in NOISE) > 120
    cut = fan_raw.index(b";", len(fan_raw) // 2) + 1          # between two records, mid-capture
    stream = fan_raw[:cut] + NOISE + fan_raw[cut:]
    header = b"#h,-,18," + b",".join(n.encode() for n, _ in FIELDS) + b";\r\n"
    port = TricklePort([(b"#V,R,0;", b"#v,-,1,x;\r\n"), (b"#H,R,0;", header), (b"#L,W,3,E,,1;", b""),
                        (b"", stream)])
    m = WattsUp(port, interval_s=1, reply_timeout_s=0.2)
    m.interval_s = 0.05            # the read deadline, not the meter's: the stream is all there
    got, bad = [], 0
    while True:
        try:
            got.append(m.read().watts)
        except BadRecord as e:
            bad += len(e.raw)
        except NoData:
            break
    expected = [parse_data(r + b";", 0).watts for r in _records(fan_raw)]
    assert got == expected                 # every record, before and after the burst, in order
    assert 0 < bad <= len(NOISE)
    port.assert_done()


def test_noise_burst_mid_run_does_not_stop_the_recorder(fan_raw, fan_raw_path):
    expected = [parse_data(r + b";", 0).watts for r in _records(fan_raw)]
    with start_emulator("wattsup", interval_s=0.005, replay=str(fan_raw_path), noise_after_s=0.4) as em:
        with Recorder(em.spec) as rec:
            deadline = time.monotonic() + 20
            while (em.noise_sent_at is None or len(rec.samples) < 300) and time.monotonic() < deadline:
                time.sleep(0.02)
            after = [s for s in rec.samples if em.noise_sent_at and s.t_host_monotonic > em.noise_sent_at + 0.05]
            n_after = len(after)
            time.sleep(0.2)
        s = rec.summary()
        dropped = em.dropped_bytes
    assert em.noise_sent_at is not None and s["error"] is None
    assert len(rec.samples) > n_after > 20          # records kept coming after the burst
    assert 0 < s["bad_bytes"] <= 300 + 200          # the burst (and at most the record it hit)
    got = [x.watts for x in rec.samples]
    if dropped == 0:
        # Nothing lost: the capture's records in order, except at most the one the burst ran into.
        assert len(got) >= len(got) and got[:10] == expected[:10]
        missing = len(expected[:len(got) + 1]) - len(got)
        assert 0 <= missing <= 1
        it = iter(expected)
        assert all(any(w == e for e in it) for w in got)


class ScriptedMeter(Meter):
    """A meter whose samples (host time, meter clock) are given; then silence."""

    protocol = "script"

    def __init__(self, samples: list[Sample], interval_s: float):
        super().__init__(None, interval_s=interval_s)
        self.todo = list(samples)

    def read(self) -> Sample:
        if not self.todo:
            self.cancelled.wait(0.01)
            raise NoData()
        return self.todo.pop(0)

    def close(self) -> None:
        pass


def _run(samples: list[Sample], interval_s: float) -> dict:
    rec = Recorder(ScriptedMeter(samples, interval_s))
    rec.start()
    end = time.monotonic() + 5
    while len(rec.samples) < len(samples) and time.monotonic() < end:
        time.sleep(0.005)
    rec.stop()
    return rec.summary()


def test_no_false_gap_when_the_host_reads_late_but_no_record_was_lost():
    # A 1 kHz board; the host took its lines 40 ms late, all at once: nothing was lost.
    t0 = time.monotonic()
    host = [t0 + i * 0.001 for i in range(50)] + [t0 + 0.090 + i * 1e-5 for i in range(50, 100)]
    samples = [Sample(h, 1.0, 5.0, 0.2, b"x", i * 0.001) for i, h in enumerate(host)]
    s = _run(samples, 0.001)
    assert s["gap_count"] == 0


def test_a_record_lost_on_the_meter_clock_is_a_gap():
    t0 = time.monotonic()
    ms = list(range(50)) + list(range(60, 100))               # ten lines never arrived
    samples = [Sample(t0 + k * 0.001, 1.0, 5.0, 0.2, b"x", k * 0.001) for k in ms]
    s = _run(samples, 0.001)
    assert s["gap_count"] == 1 and s["gaps"][0]["duration_s"] == pytest.approx(0.011, abs=1e-6)


def test_without_a_meter_clock_the_interval_decides():
    t0 = time.monotonic()
    host = [t0, t0 + 1.0, t0 + 2.0, t0 + 5.5, t0 + 6.5]       # a Watts Up? at 1 s; 3.5 s missing
    s = _run([Sample(h, 1.0, None, None, b"x") for h in host], 1.0)
    assert [g["duration_s"] for g in s["gaps"] if not g["ongoing_at_stop"]] == [pytest.approx(3.5)]


def test_measure_returns_the_commands_code_and_reports_meter_faults_apart(tmp_path, capsys):
    # The meter vanishes 0.3 s in and never returns.
    with start_emulator("csv", lambda t: 1.0, interval_s=0.02, unplug_after_s=0.3, unplug_for_s=60) as em:
        rc = main(["measure", "--meter", em.spec, "--out", str(tmp_path / "a"), "--no-plot", "--",
                   sys.executable, "-c", "import time; time.sleep(0.8); raise SystemExit(7)"])
        err = capsys.readouterr().err
        assert rc == 7 and "meter fault" in err and "own code 7" in err
    with start_emulator("csv", lambda t: 1.0, interval_s=0.02, unplug_after_s=0.3, unplug_for_s=60) as em:
        rc = main(["measure", "--meter", em.spec, "--out", str(tmp_path / "b"), "--no-plot", "--",
                   sys.executable, "-c", "import time; time.sleep(0.8)"])
        assert rc == 3 and "meter fault" in capsys.readouterr().err
    rc = main(["measure", "--meter", "wattsup:/nonexistent/tty", "--out", str(tmp_path / "c"), "--", "true"])
    assert rc == 3 and "the command was not run" in capsys.readouterr().err


def test_a_held_up_emulator_catches_up_on_its_own_clock():
    # The emulator's thread is held up for 0.4 s (as on a loaded machine): the records that fell
    # due meanwhile still go out, with their own times, so the recording has no gap and no loss.
    t0 = time.monotonic()
    held = []

    def power(t):
        if not held and t > t0 + 0.3:
            held.append(t)
            time.sleep(0.4)
        return 1.0

    with start_emulator("csv", power, interval_s=0.02) as em:
        with Recorder(em.spec) as rec:
            time.sleep(1.2)
    s = rec.summary()
    assert held and s["gap_count"] == 0 and "missed_lines" not in s["meter_info"]
    n = [int(x.raw.split(b",")[0]) for x in rec.samples]
    assert n == list(range(n[0], n[0] + len(n)))
    t_ms = [float(x.raw.split(b",")[1]) for x in rec.samples]
    assert len(n) >= 0.9 * (t_ms[-1] - t_ms[0]) / 20


def test_marks_are_placed_on_the_boards_clock():
    # The board's clock is an hour off; its first event arrived at once, the second 0.5 s late:
    # the second phase starts when the board said, not when the host heard of it.
    rec = Recorder(ScriptedMeter([], 1.0))
    board_offset = 3600.0
    t1 = rec.mark("train", t_board=time.time() + board_offset)
    assert t1 == pytest.approx(time.monotonic(), abs=0.05)
    time.sleep(0.8)
    t2 = rec.mark("epoch", t_board=time.time() + board_offset - 0.5, epoch=0)
    assert time.monotonic() - t2 == pytest.approx(0.5, abs=0.05)
    assert rec.mark("done") >= t2                       # no board time: now, and never before the last

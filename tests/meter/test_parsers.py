"""Parsers on real-format records, and the shared tables that the emulators pack with."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.meter import BadRecord, BaudRateError
from e2train.meter.base import BaudWatch
from e2train.meter.dialogue import ExpectedDialogue
from e2train.meter.inacsv import DEFAULT_COLUMNS, data_line, parse_line
from e2train.meter.um import MODELS, pack_frame, unpack_frame
from e2train.meter.wattsup import FIELDS, WattsUp, format_data, parse_data


def test_every_record_of_the_real_capture_parses(fan_raw):
    records = [r for r in fan_raw.split(b";") if r.strip(b"\r\n\0 ")]
    assert len(records) == 1792                      # the capture's own count (see fixtures/README.md)
    samples = [parse_data(r + b";", float(i)) for i, r in enumerate(records)]
    w = np.array([s.watts for s in samples])
    v = np.array([s.volts for s in samples])
    a = np.array([s.amps for s in samples])
    # A fan on a 120 V / 60 Hz mains line: 0-46 W, 118-122 V, under 0.5 A, and a power factor
    # W / (V*A) just under one while it runs (one transitional record in the capture is not).
    assert w.min() == 0.0 and 40 < w.max() <= 46
    assert 118 < v.min() and v.max() < 122
    assert 0 <= a.min() and a.max() < 0.5
    on = a > 0.1
    assert on.sum() > 1700
    assert 0.85 < np.median(w[on] / (v[on] * a[on])) < 1.0
    assert 131 == fan_raw.count(b"\0")              # stray NULs of the real capture, ignored by the parser


def test_the_driver_reads_the_real_stream(fan_raw):
    # The capture pushed through the driver exactly as the meter sent it (after a handshake).
    header = b"#h,-,18," + b",".join(n.encode() for n, _ in FIELDS) + b";\r\n"
    port = ExpectedDialogue([(b"#V,R,0;", b"#v,-,1,x;\r\n"), (b"#H,R,0;", header),
                             (b"#L,W,3,E,,1;", b""), (b"", fan_raw)])
    m = WattsUp(port, interval_s=1)
    got = [m.read() for _ in range(1792)]
    assert sum(s.watts for s in got) == pytest.approx(sum(parse_data(r + b";", 0).watts
                                                          for r in fan_raw.split(b";") if r.strip(b"\r\n\0")))
    port.assert_done()


def test_wattsup_format_round_trips_through_the_parser():
    s = parse_data(format_data(12.3, 230.1, 0.0535), 1.0)
    assert (s.watts, s.volts, s.amps) == pytest.approx((12.3, 230.1, 0.054))  # amps in thousandths
    for bad, why in [(b"#d,-,18,1,2;", "truncated"), (b"garbage", "not a Watts Up"),
                     (b"#d,-,x,1;", "count"), (b"#s,-,1,1;", "not a data")]:
        with pytest.raises(BadRecord, match=why):
            parse_data(bad, 0.0)


@pytest.mark.parametrize("model", sorted(MODELS.values()))
def test_um_frame_layout_round_trip(model):
    frame = pack_frame(model, volts=5.05, amps=0.321, watts=1.621, temp_c=31, ohms=15.7, record_wh=1.234)
    assert len(frame) == 130 and frame[-2:] == b"\xff\xf1"
    d = unpack_frame(frame)
    assert d["model_name"] == model
    assert (d["volts"], d["amps"], d["watts"], d["temp_c"], d["ohms"], d["record_wh"]) == pytest.approx(
        (5.05, 0.321, 1.621, 31, 15.7, 1.234))
    # The UM25C's extra decimal: the same 5.05 V is 5050 (mV) there and 505 (10 mV) elsewhere.
    assert int.from_bytes(frame[2:4], "big") == (5050 if model == "UM25C" else 505)
    with pytest.raises(BadRecord, match="130"):
        unpack_frame(frame[:100])
    with pytest.raises(BadRecord, match="model id"):
        unpack_frame(b"\x12\x34" + frame[2:])


def test_csv_line_parser():
    s = parse_line(data_line(10, 5012, 412.5).strip(), 2.0, DEFAULT_COLUMNS)
    assert (s.watts, s.volts, s.amps) == pytest.approx((5.012 * 0.4125, 5.012, 0.4125))
    for bad in (b"1,2", b"1,2,x", b"1,2,nan", b"1,2,inf"):
        with pytest.raises(BadRecord):
            parse_line(bad, 0.0, DEFAULT_COLUMNS)


def test_baud_watch_tolerates_scattered_garbage_but_not_a_garbled_stream():
    w = BaudWatch(115200, "X")
    with pytest.raises(BaudRateError, match=r"check the baud rate \(expected 115200\)"):
        for _ in range(20):                  # a garbled stream before any record: the baud rate
            w.feed(bytes(range(0x80, 0x90)))
    w = BaudWatch(115200, "X")
    for _ in range(100):                     # long printable stream without records: not a baud error
        w.feed(b"hello world, hello world\r\n")
    w.good()
    for _ in range(50):                      # junk between good records: never a baud error
        w.feed(bytes(range(0x80, 0x90)))
        w.good()
    for _ in range(100):                     # once the meter has spoken, a garbled run is noise,
        w.feed(bytes(range(0x80, 0x90)))     # counted by the reader, never fatal
    assert w.suspect()

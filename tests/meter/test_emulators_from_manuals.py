"""The emulators answer what the instruments' manuals say they answer, and nothing else.

A driver that sends a command its instrument lacks must fail against the emulator as it would
against the instrument (the WT310's ``:SYST:ERR?`` was such a command).
"""
from __future__ import annotations

import struct
import time

import pytest

from e2train.meter import MeterError, close_meter, open_meter
from e2train.meter import wt310 as wt310_driver
from e2train.meter.emulate import Emulator, start_emulator
from e2train.meter.scpi_grammar import CommandTable, compile_pattern, match, split_message


def words(header: str) -> list[str]:
    return split_message(header)[0].words


@pytest.mark.parametrize("header,ok", [
    (":NUM:NORM:VAL", True), (":NUMERIC:NORMAL:VALUE", True), (":num:val", True), ("NUMeric:VALue", True),
    (":NUMER:VAL", False), (":NUM:NORM:VALU", False), (":NUM:NORM", False),
])
def test_header_short_long_optional_any_case(header, ok):
    pat = compile_pattern(":NUMeric[:NORMal]:VALue?")
    assert match(pat, words(header), query=True)[0] is ok
    assert match(pat, words(header), query=False)[0] is False      # a query is not a command


def test_numeric_suffix_and_relative_units():
    pat = compile_pattern(":NUMeric[:NORMal]:ITEM<x>")
    assert match(pat, words(":NUM:NORM:ITEM12"), False) == (True, [12])
    assert match(pat, words(":NUM:ITEM"), False) == (True, [1])
    units = split_message(":NUM:NORM:ITEM1 P,1;ITEM2 U,1;:INTEG:STAR")
    assert [u.words for u in units] == [["NUM", "NORM", "ITEM1"], ["NUM", "NORM", "ITEM2"], ["INTEG", "STAR"]]
    assert units[1].args == ["U", "1"]


def test_undefined_header_is_queued_and_not_answered():
    t = CommandTable(undefined=(113, "Undefined header"))
    t.add(":STATus:ERRor?", lambda s, a: '%d,"%s"' % t.pop_error())
    assert t.execute(":SYST:ERR?") == b""
    assert t.execute(":STAT:ERR?") == b'113,"Undefined header"\n'
    assert t.execute(":STAT:ERR?") == b'0,"No error"\n'


def _wt310_table():
    em = Emulator.__new__(Emulator)            # the protocol object alone, without a pty
    em.power_w, em.volts, em.faults, em.counts = (lambda t: 3.0), 5.0, {}, {}
    from e2train.meter.emulate import _Wt310
    return _Wt310(em)


def test_wt310_emulator_follows_the_manual():
    wt = _wt310_table()
    ex = wt.on_command
    assert ex(b"*IDN?").startswith(b"YOKOGAWA,WT310E")
    # Headers are on by default: the answer names its header.
    assert ex(b":NUM:NORM:NUM?") == b":NUMERIC:NORMAL:NUMBER 15\n"
    assert ex(b":COMM:HEAD OFF") == b""
    assert ex(b":NUM:NORM:NUM 3;ITEM1 P,1;ITEM2 U,1;ITEM3 I,1") == b""
    assert ex(b":NUMeric:VALue?") == b"3.0000E+00,5.0000E+00,6.0000E-01\n"
    assert ex(b":STAT:ERR?") == b'0,"No error"\n'
    # Not implemented by a WT310: error 113, no answer.
    assert ex(b":SYST:ERR?") == b""
    assert ex(b":STAT:ERR?") == b'113,"Undefined header"\n'
    # Bad parameters: the manual's numbers.
    ex(b":NUM:NORM:ITEM1 XYZ,1")
    ex(b":NUM:NORM:ITEM1 P,2")                 # a WT310E has one element
    ex(b":NUM:NORM:NUM 300")
    assert [ex(b":STAT:ERR?") for _ in range(3)] == [b'224,"Illegal parameter value"\n',
                                                     b'222,"Data out of range"\n', b'222,"Data out of range"\n']
    # Items left at NONE read as NAN; *CLS empties the queue.
    ex(b":NUM:NORM:NUM 4")
    assert ex(b":NUM:VAL?").endswith(b",NAN\n")
    ex(b":BOGUS")
    ex(b"*CLS")
    assert ex(b":STAT:ERR?") == b'0,"No error"\n'
    # FLOat: IEEE single precision, big-endian, as block data.
    ex(b":NUM:FORM FLO")
    ans = ex(b":NUM:VAL?")
    assert ans[:3] == b"#21" and struct.unpack(">4f", ans[4:20])[0] == pytest.approx(3.0)


def test_wt310_driver_against_the_emulator():
    with start_emulator("wt310", lambda t: 2.5, interval_s=0.01) as em:
        m = open_meter(em.spec + "&integrate=1")
        try:
            s = m.read()
            assert (s.watts, s.volts, s.amps) == pytest.approx((2.5, 5.0, 0.5))
            time.sleep(0.05)
            m.read()
            assert m.info["meter_wh"] > 0
        finally:
            close_meter(m)


def test_a_driver_sending_syst_err_fails_against_the_emulator(monkeypatch):
    # What the WT310 driver did before: the emulator, like the meter, does not answer it.
    monkeypatch.setattr(wt310_driver, "ERROR_QUERY", ":SYST:ERR?")
    with start_emulator("wt310", lambda t: 2.5, interval_s=0.01) as em:
        with pytest.raises(MeterError, match=r"no answer to :SYST:ERR\?"):
            open_meter(em.spec + "&reply_timeout=0.3")


def test_scpi_supply_emulator_answers_only_its_commands():
    with start_emulator("scpi", lambda t: 2.0, interval_s=0.01) as em:
        t = em.proto.table
        assert t.execute("MEASURE:SCALAR:POWER:DC?") == b"2.0000\n"
        assert t.execute("meas:volt?") == b"5.0000\n"
        assert t.execute(":STAT:ERR?") == b""           # a WT command: undefined here
        assert t.execute("SYST:ERR?") == b'-113,"Undefined header"\n'
        m = open_meter(em.spec)
        try:
            assert m.has_power and m.read().watts == pytest.approx(2.0)
        finally:
            close_meter(m)


def _proto(name, **faults):
    from e2train.meter.emulate import PROTOCOLS
    em = Emulator.__new__(Emulator)
    em.power_w, em.volts, em.faults, em.counts = (lambda t: 3.0), 5.0, faults, {}
    return PROTOCOLS[name](em)


def test_wattsup_emulator_answers_the_protocol_documents_commands_only():
    wu = _proto("wattsup")
    assert wu.on_command(b"#V,R,0").startswith(b"#v,")
    assert wu.on_command(b"#H,R,0").startswith(b"#h,-,18,W,V,A,")
    assert wu.on_command(b"#V,R,1") == b""              # count says one argument, none given
    assert wu.on_command(b"#X,R,0") == b"" and wu.on_command(b"*IDN?") == b""
    assert not wu.push
    wu.on_command(b"#L,W,3,I,,1")                       # internal logging: nothing on the line
    assert not wu.push
    wu.on_command(b"#L,W,3,E,,2")
    assert wu.push and wu.requested_interval_s == 2
    wu.on_command(b"#C,W,18," + b",".join([b"1"] * 3 + [b"0"] * 15))
    rec = wu.record(0.0)
    assert rec.startswith(b"#d,-,18,30,50,600,_,_,") and rec.count(b"_") == 15


def test_um_emulator_commands_change_the_frame_and_unknown_bytes_are_ignored():
    from e2train.meter.um import unpack_frame
    u = _proto("um")
    assert u.on_command(b"\x00\x42\xff") == b""
    assert u.on_command(b"\xa3\xd2\xe4\xb5") == b""
    d = unpack_frame(u.on_command(b"\xf0"))
    assert (d["group"], d["brightness"], d["screen_timeout_min"]) == (3, 2, 4)
    assert d["record_threshold_a"] == pytest.approx(0.05)

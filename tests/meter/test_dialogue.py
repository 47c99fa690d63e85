"""Byte-exact dialogues of every driver with a scripted instrument (ExpectedDialogue)."""
from __future__ import annotations

import pytest

from e2train.meter import BadRecord, MeterError
from e2train.meter.dialogue import DialogueError, ExpectedDialogue
from e2train.meter.inacsv import InaCsv
from e2train.meter.scpi import ScpiSupply
from e2train.meter.um import UMMeter, pack_frame
from e2train.meter.wattsup import WattsUp
from e2train.meter.wt310 import WT310

WU_HEADER = b"#h,-,18,W,V,A,WH,Cost,WH/Mo,Cost/Mo,Wmax,Vmax,Amax,Wmin,Vmin,Amin,PF,DC,PC,Hz,VA;\r\n"
WU_REC = b"#d,-,18,416,1192,360,88,0,0,0,416,1193,361,416,1190,360,88,0,0,599,469;\r\n"


def test_helper_rejects_wrong_bytes_and_leftovers():
    port = ExpectedDialogue([(b"A\n", b"1\n")])
    with pytest.raises(DialogueError, match="expected"):
        port.write(b"B\n")
    port = ExpectedDialogue([(b"A\n", b"1\n"), (b"B\n", b"2\n")])
    port.write(b"A\n")
    with pytest.raises(DialogueError, match="never reached"):
        port.assert_done()
    port.write(b"B\n")
    with pytest.raises(DialogueError, match="never read"):
        port.assert_done()


def test_wattsup_handshake_and_records():
    port = ExpectedDialogue([
        (b"#V,R,0;", b"#v,-,8,1,1,PRO,0,0,0,0,x;\r\n"),
        (b"#H,R,0;", b"\0" + WU_HEADER),
        (b"#L,W,3,E,,2;", b""),
        (b"", WU_REC + b"#d,-,18,4;\r\n" + WU_REC.replace(b"416", b"nan", 1)),
    ])
    m = WattsUp(port, interval_s=2)
    assert m.info["fields"][:3] == ["W", "V", "A"]
    s = m.read()
    assert (s.watts, s.volts, s.amps) == pytest.approx((41.6, 119.2, 0.360))
    with pytest.raises(BadRecord, match="truncated"):
        m.read()
    with pytest.raises(BadRecord, match="not an integer"):
        m.read()
    port.assert_done()


def test_wattsup_silent_meter_is_a_clear_error():
    port = ExpectedDialogue([(b"#V,R,0;", b"")])
    with pytest.raises(MeterError, match="no answer to #V,R,0;.*115200"):
        WattsUp(port, reply_timeout_s=0.05)
    port.assert_done()


WT_SETUP = [
    (b"*IDN?\n", b"YOKOGAWA,WT310,C2QA01234,F1.03\n"),
    (b"*CLS\n", b""),
    (b":COMM:HEAD OFF\n", b""),
    (b":NUM:FORM ASC\n", b""),
    (b":NUM:NORM:NUM 3\n", b""),
    (b":NUM:NORM:ITEM1 P,1\n", b""),
    (b":NUM:NORM:ITEM2 U,1\n", b""),
    (b":NUM:NORM:ITEM3 I,1\n", b""),
]


def test_wt310_setup_poll_and_nan():
    port = ExpectedDialogue(WT_SETUP + [
        (b":STAT:ERR?\n", b'0,"No error"\n'),
        (b":NUM:NORM:VAL?\n", b"3.2100E+00,5.0100E+00,6.4072E-01\n"),
        (b":NUM:NORM:VAL?\n", b"NAN,5.0100E+00,6.4072E-01\n"),
    ])
    m = WT310(port, interval_s=0.001)
    assert m.info["idn"].startswith("YOKOGAWA")
    s = m.read()
    assert (s.watts, s.volts, s.amps) == pytest.approx((3.21, 5.01, 0.64072))
    with pytest.raises(BadRecord, match="P"):
        m.read()
    port.assert_done()


def test_wt310_integration_commands():
    setup = [p for p in WT_SETUP if b"NUM 3" not in p[0]]
    setup.insert(4, (b":NUM:NORM:NUM 4\n", b""))
    port = ExpectedDialogue(setup + [
        (b":NUM:NORM:ITEM4 WH,1\n", b""),
        (b":STAT:ERR?\n", b'0,"No error"\n'),
        (b":INTEG:RES\n", b""), (b":STAT:ERR?\n", b'0,"No error"\n'),
        (b":INTEG:STAR\n", b""), (b":STAT:ERR?\n", b'0,"No error"\n'),
        (b":NUM:NORM:VAL?\n", b"2.0E+00,5.0E+00,4.0E-01,1.5E-03\n"),
        (b":INTEG:STOP\n", b""), (b":STAT:ERR?\n", b'0,"No error"\n'),
    ])
    m = WT310(port, interval_s=0.001, integrate=True)
    assert m.read().watts == pytest.approx(2.0)
    assert m.info["meter_wh"] == pytest.approx(1.5e-3)
    m.close()
    port.assert_done()


def test_wt310_error_reply_raises_with_meters_message():
    # The WT300 series numbers its errors without a sign (IM WT310E-17EN, appendix).
    port = ExpectedDialogue(WT_SETUP + [(b":STAT:ERR?\n", b'224,"Illegal parameter value"\n')])
    with pytest.raises(MeterError, match="error 224, 'Illegal parameter value'"):
        WT310(port)
    port.assert_done()


def test_wt310_refuses_another_instrument():
    port = ExpectedDialogue([(b"*IDN?\n", b"KEITHLEY,2280S,1,1\n")])
    with pytest.raises(MeterError, match="not a Yokogawa"):
        WT310(port)
    port.assert_done()


def test_scpi_supply_with_power_query():
    port = ExpectedDialogue([
        (b"*IDN?\n", b"RIGOL,DP832,1,1\n"),
        (b"MEAS:POW?\n", b"1.2500\n"),
        (b"MEAS:POW?\n", b"1.5000\n"),
    ])
    m = ScpiSupply(port, interval_s=0.001)
    assert m.has_power
    assert m.read().watts == pytest.approx(1.5)
    port.assert_done()


def test_scpi_supply_falls_back_to_volts_times_amps_once():
    port = ExpectedDialogue([
        (b"*IDN?\n", b"OLD,SUPPLY,1,1\n"),
        (b"MEAS:POW?\n", b""),                            # silent: not supported
        (b":SYST:ERR?\n", b'-113,"Undefined header"\n'),  # the queued error is cleared
        (b"MEAS:VOLT?\n", b"5.000\n"), (b"MEAS:CURR?\n", b"0.500\n"),
        (b"MEAS:VOLT?\n", b"5.000\n"), (b"MEAS:CURR?\n", b"9.91E+37\n"),
    ])
    m = ScpiSupply(port, interval_s=0.001, reply_timeout_s=0.05)
    assert not m.has_power
    s = m.read()
    assert (s.watts, s.volts, s.amps) == pytest.approx((2.5, 5.0, 0.5))
    with pytest.raises(BadRecord, match="NaN"):
        m.read()
    port.assert_done()


@pytest.mark.parametrize("model,volts,amps", [("UM25C", 5.123, 0.4567), ("UM34C", 12.34, 1.234), ("UM24C", 5.01, 0.5)])
def test_um_models_and_scaling(model, volts, amps):
    frame = pack_frame(model, volts=volts, amps=amps, watts=volts * amps, temp_c=25)
    port = ExpectedDialogue([(b"\xf0", frame), (b"\xf0", frame)])
    m = UMMeter(port, interval_s=0.001)
    assert m.model == model
    s = m.read()
    assert (s.volts, s.amps) == pytest.approx((volts, amps))
    assert s.watts == pytest.approx(volts * amps, abs=1e-3)
    port.assert_done()


def test_um_model_mismatch_and_bad_frame():
    frame = pack_frame("UM34C", volts=5, amps=1, watts=5)
    port = ExpectedDialogue([(b"\xf0", frame)])
    with pytest.raises(MeterError, match="UM25C but the tester says it is a UM34C"):
        UMMeter(port, expect_model="um25c")
    bad = frame[:128] + b"\x00\x00"
    port = ExpectedDialogue([(b"\xf0", frame), (b"\xf0", bad)])
    m = UMMeter(port, interval_s=0.001)
    with pytest.raises(BadRecord, match="trailer"):
        m.read()
    port.assert_done()


def test_csv_banner_header_and_lines():
    port = ExpectedDialogue([
        (b"?\n", b"# e2train-ina 1 sensor=INA219 interval_ms=5 shunt_mohm=100\r\nt_ms,mV,mW\r\n"
                 b"10,5000,2500\r\n10,5000\r\n"),
    ])
    m = InaCsv(port)
    s = m.read()
    assert (s.watts, s.volts, s.amps) == pytest.approx((2.5, 5.0, None))
    assert m.interval_s == pytest.approx(0.005) and m.info["sensor"] == "INA219"
    with pytest.raises(BadRecord, match="2 values for 3 columns"):
        m.read()
    port.assert_done()


def test_csv_board_error_and_version_are_clear():
    port = ExpectedDialogue([(b"?\n", b"#error INA226 not found at 0x40\n")])
    with pytest.raises(MeterError, match="INA226 not found"):
        InaCsv(port).read()
    port = ExpectedDialogue([(b"?\n", b"# e2train-ina 2 sensor=X\n")])
    with pytest.raises(MeterError, match="version"):
        InaCsv(port).read()


def test_csv_sample_counter_counts_lost_lines():
    port = ExpectedDialogue([(b"?\n", b"n,t_ms,mV,mA\n0,0,5000,100\n1,1,5000,100\n5,5,5000,100\n6,6,5000,100\n")])
    m = InaCsv(port, batch_s=0)
    assert [m.read().watts for _ in range(4)] == pytest.approx([0.5] * 4)
    assert m.info["missed_lines"] == 3
    port.assert_done()

"""Yokogawa WT310 / WT310E / WT330 family over SCPI (RS-232 or the USB virtual COM port).

Every command below is checked against the communication manual, IM WT310E-17EN (section
numbers in docs/meters.md). At open: ``*IDN?`` (must name YOKOGAWA), ``*CLS`` (empties the
error queue of whatever an earlier session left there), headers off, ASCII numbers, then the normal-mode
numeric list: ``:NUM:NORM:NUM 3`` and ``:NUM:NORM:ITEM1 P,1`` / ``ITEM2 U,1`` / ``ITEM3 I,1``
(element 1: power, voltage, current), plus ``ITEM4 WH,1`` with ``?integrate=1``, which also
resets and starts the meter's own integrator (``:INTEG:RES`` / ``:INTEG:STAR``) as an independent
check of the recorder's energy. ``:STAT:ERR?`` after the set-up (the WT300 series' error
queue query, §7.5; it does not implement SCPI's ``:SYST:ERR?``): any error raises with the
meter's own message. Then ``:NUM:NORM:VAL?`` once per interval answers ``P,U,I[,WH]``.
The meter answers ``NAN`` (no data) or ``INF`` (overrange) in place of a number: a bad record.
"""
from __future__ import annotations

from .base import BadRecord, Meter, MeterError, NoData, Sample
from .scpi import Scpi, parse_number

# (item function, element) in the order of :NUM:NORM:VAL?; one table for driver and emulator.
ITEMS: tuple[tuple[str, int], ...] = (("P", 1), ("U", 1), ("I", 1))
INTEG_ITEM = ("WH", 1)
BAUD = 9600
ERROR_QUERY = ":STAT:ERR?"


def setup_commands(integrate: bool) -> list[str]:
    items = ITEMS + ((INTEG_ITEM,) if integrate else ())
    cmds = ["*CLS", ":COMM:HEAD OFF", ":NUM:FORM ASC", f":NUM:NORM:NUM {len(items)}"]
    cmds += [f":NUM:NORM:ITEM{k} {fn},{el}" for k, (fn, el) in enumerate(items, 1)]
    return cmds


class WT310(Meter):
    protocol = "wt310"
    default_baud = BAUD

    def __init__(self, port, *, interval_s: float = 1.0, simulated: bool = False, baud: int = BAUD,
                 integrate: bool = False, reply_timeout_s: float = 2.0):
        super().__init__(port, interval_s=interval_s, simulated=simulated)
        self.scpi = Scpi(port, "WT310", baud, reply_timeout_s, self.cancelled, error_query=ERROR_QUERY)
        idn = self.scpi.ask_text("*IDN?")
        if "YOKOGAWA" not in idn.upper():
            raise MeterError(f"the instrument on this port is {idn!r}, not a Yokogawa WT3xx: "
                             f"use the scpi: driver for a generic SCPI instrument")
        self.info["idn"] = idn
        self.integrate = integrate
        for cmd in setup_commands(integrate):
            self.scpi.write(cmd)
        self.scpi.check("numeric item set-up")
        if integrate:
            self.integ_reset()
            self.integ_start()

    # The meter's own integrator (energy counted inside the instrument).
    def integ_start(self) -> None:
        self.scpi.write(":INTEG:STAR")
        self.scpi.check(":INTEG:STAR")

    def integ_stop(self) -> None:
        self.scpi.write(":INTEG:STOP")
        self.scpi.check(":INTEG:STOP")

    def integ_reset(self) -> None:
        self.scpi.write(":INTEG:RES")
        self.scpi.check(":INTEG:RES")

    def read(self) -> Sample:
        self.wait_slot()
        try:
            t, ans = self.scpi.ask(":NUM:NORM:VAL?")
        except (BadRecord, NoData):
            self.scpi.resync()
            raise
        parts = ans.split(b",")
        want = len(ITEMS) + (1 if self.integrate else 0)
        if len(parts) != want:
            raise BadRecord(ans, f"expected {want} values, got {len(parts)}")
        p, u, i = (parse_number(x, name) for x, (name, _) in zip(parts, ITEMS))
        if self.integrate:
            self.info["meter_wh"] = parse_number(parts[3], "WH")
        return Sample(t, p, u, i, ans)

    def close(self) -> None:
        if self.integrate:
            try:
                self.integ_stop()
            except Exception:   # closing after an unplug: the integrator state no longer matters
                pass
        super().close()

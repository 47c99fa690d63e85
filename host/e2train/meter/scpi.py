"""SCPI over a serial line (commands and answers end in LF), and a generic SCPI DC supply.

The supply is polled once per interval: ``MEAS:POW?`` where the supply has it, else
``MEAS:VOLT?`` and ``MEAS:CURR?`` and their product. Which of the two is decided once, at open,
from the supply's own answer: a number means supported; no answer (a SCPI instrument queues
-113 "Undefined header" for a header it lacks and stays silent) or junk means not, and the
queued error is popped with ``:SYST:ERR?`` so it cannot be blamed on a later command.
"""
from __future__ import annotations

import math
import time

from .base import BadRecord, BaudWatch, LineReader, Meter, MeterError, NoData, Sample


def parse_number(raw: bytes, what: str) -> float:
    try:
        x = float(raw.strip().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRecord(raw, f"{what}: not a number") from None
    # 9.91E+37 is SCPI's NaN; +-9.9E+37 its infinities (SCPI-99 7.2.1.5).
    if not math.isfinite(x) or abs(x) >= 9.9e37:
        raise BadRecord(raw, f"{what}: the instrument reports no valid value (NaN/overrange)")
    return x


class Scpi:
    """Ask/answer over a line-terminated port, with the instrument's error queue."""

    def __init__(self, port, name: str, baud: int, reply_timeout_s: float = 2.0, cancel=None,
                 error_query: str = ":SYST:ERR?"):
        self.port = port
        # The error-queue query differs between instruments: SCPI-99's :SYSTem:ERRor? on supplies,
        # :STATus:ERRor? on the Yokogawa WT300 series (which does not implement :SYSTem:ERRor?).
        self.error_query = error_query
        self.name = name
        self.lines = LineReader(port, terminator=b"\n", cancel=cancel)
        self.baud_watch = BaudWatch(baud, name, window=64)
        self.reply_timeout_s = reply_timeout_s

    def write(self, cmd: str) -> None:
        self.port.write(cmd.encode("ascii") + b"\n")

    def ask(self, cmd: str, timeout_s: float | None = None) -> tuple[float, bytes]:
        """Send a query, return (t_arrival, answer without terminator); NoData on silence."""
        self.write(cmd)
        deadline = time.monotonic() + (self.reply_timeout_s if timeout_s is None else timeout_s)
        t, ans = self.lines.read_record(deadline, self.baud_watch.feed)
        ans = ans.rstrip(b"\r")
        try:
            ans.decode("ascii")
        except UnicodeDecodeError:
            raise BadRecord(ans, f"{self.name}: answer to {cmd} is not ASCII") from None
        self.baud_watch.good()
        return t, ans

    def ask_text(self, cmd: str) -> str:
        try:
            return self.ask(cmd)[1].decode("ascii")
        except NoData:
            if self.baud_watch.suspect():
                raise self.baud_watch.error() from None
            raise MeterError(f"{self.name}: no answer to {cmd} within {self.reply_timeout_s:g} s: "
                             f"is it connected and powered, on this port, at {self.baud_watch.baud} baud, "
                             f"with its remote interface set to serial (RS-232/USB) and LF terminator?") from None
        except BadRecord as e:
            raise MeterError(f"{self.name}: garbled answer to {cmd} ({e.raw[:40]!r}): check the baud "
                             f"rate (expected {self.baud_watch.baud})") from None

    def resync(self) -> None:
        """Drop a late or partial answer so that the next answer matches the next query."""
        self.lines.clear()
        try:
            self.port.reset_input_buffer()
        except (OSError, AttributeError):
            pass

    def error(self) -> tuple[int, str]:
        """Pop the instrument's error queue: (code, message); code 0 is no error."""
        ans = self.ask_text(self.error_query)
        code, _, msg = ans.partition(",")
        try:
            return int(code), msg.strip().strip('"')
        except ValueError:
            raise MeterError(f"{self.name}: unexpected answer to {self.error_query}: {ans!r}") from None

    def check(self, after: str) -> None:
        code, msg = self.error()
        if code != 0:
            raise MeterError(f"{self.name} rejected {after!r}: error {code}, {msg!r}")


class ScpiSupply(Meter):
    protocol = "scpi"
    default_baud = 9600

    def __init__(self, port, *, interval_s: float = 1.0, simulated: bool = False, baud: int = 9600,
                 reply_timeout_s: float = 2.0):
        super().__init__(port, interval_s=interval_s, simulated=simulated)
        self.scpi = Scpi(port, "SCPI supply", baud, reply_timeout_s, self.cancelled)
        self.info["idn"] = self.scpi.ask_text("*IDN?")
        self.info["power_query"] = self.has_power = self._detect_power()

    def _detect_power(self) -> bool:
        try:
            _, ans = self.scpi.ask("MEAS:POW?")
            parse_number(ans, "MEAS:POW?")
            return True
        except (NoData, BadRecord):
            # Unsupported: the supply stays silent or answers junk and queues an error; clear it.
            self.scpi.resync()
            self.scpi.error()
            return False

    def read(self) -> Sample:
        self.wait_slot()
        try:
            if self.has_power:
                t, ans = self.scpi.ask("MEAS:POW?")
                return Sample(t, parse_number(ans, "MEAS:POW?"), None, None, ans)
            _, v_raw = self.scpi.ask("MEAS:VOLT?")
            t, i_raw = self.scpi.ask("MEAS:CURR?")
        except (BadRecord, NoData):
            self.scpi.resync()
            raise
        v, i = parse_number(v_raw, "MEAS:VOLT?"), parse_number(i_raw, "MEAS:CURR?")
        return Sample(t, v * i, v, i, v_raw + b"," + i_raw)

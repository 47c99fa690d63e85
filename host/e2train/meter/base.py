"""What every meter driver shares: the sample, the errors, the port, a line splitter.

A driver's ``read()`` returns one ``Sample`` or raises one of the errors below; the recorder
decides what each error means for a run (count it, wait, reconnect, or stop). Drivers never
sleep forever: every read is bounded by the port's timeout.
"""
from __future__ import annotations

import math
import threading
from collections import deque
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import serial


class Sample(NamedTuple):
    t_host_monotonic: float      # time.monotonic() when the record finished arriving
    watts: float
    volts: float | None
    amps: float | None
    raw: bytes                   # the record as it came off the wire (for the CSV and for debugging)
    # The meter's own clock (s), where its records carry one (the INA CSV board's t_ms): gaps are
    # judged on it, so a late read on the host is not taken for a lost record.
    t_meter: float | None = None


class MeterError(RuntimeError):
    """The meter cannot be used as configured (wrong protocol, wrong baud rate, an error it reported)."""


class BaudRateError(MeterError):
    """Bytes arrive but never form a record: the classic symptom of a wrong baud rate."""


class BadRecord(Exception):
    """One record could not be parsed (garbage, truncated, NaN). Counted, never fatal."""

    def __init__(self, raw: bytes, why: str):
        super().__init__(f"{why}: {raw[:80]!r}")
        self.raw = raw
        self.why = why


class NoData(Exception):
    """Nothing arrived within the read timeout (the meter is silent, or slower than expected)."""


# A dropped USB-serial adapter or a closed pty shows up as one of these.
DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)


@dataclass
class PortOptions:
    baud: int
    timeout: float = 0.2


def open_port(url: str, opts: PortOptions) -> serial.SerialBase:
    """Open a serial port, a ``socket://`` or ``loop://`` URL, or a pty path alike."""
    return serial.serial_for_url(url, baudrate=opts.baud, timeout=opts.timeout,
                                 write_timeout=max(1.0, opts.timeout))


def finite(x: float, what: str, raw: bytes) -> float:
    if not math.isfinite(x):
        raise BadRecord(raw, f"{what} is not a finite number")
    return x


# Bytes a text protocol may send: printable ASCII, CR, LF, TAB and NUL (real Watts Up?
# captures carry stray NULs). Anything else (high-bit bytes, other control characters) is what
# a UART at the wrong baud rate makes of a text stream.
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\r\n\t\0"


def count_garbled(data: bytes) -> int:
    return len(data.translate(None, _TEXT_BYTES))


@dataclass
class BaudWatch:
    """Decides that a stream is undecodable: many bytes, no good record, mostly garbled bytes.

    Scattered garbage between good records is a bad line, not a baud problem; only a long run of
    bytes with no record at all and a majority of impossible bytes raises, and only while the
    meter has not yet sent one good record. After that a garbled run is a burst of noise (a
    cable knocked, a USB hub re-enumerating, another program opening the port at a wrong rate):
    the reader resynchronises at the next terminator and the run goes on; the bytes are counted
    as bad records by whoever reads them.
    """
    baud: int
    protocol: str
    window: int = 256
    binary: bool = False         # a binary protocol: every byte outside a good frame counts
    _since_good: int = 0
    _garbled: int = 0
    ever_good: bool = False

    def good(self) -> None:
        self._since_good = 0
        self._garbled = 0
        self.ever_good = True

    def suspect(self) -> bool:
        """Whatever arrived since the last good record was mostly garbled (too little to be sure)."""
        return self._since_good > 0 and self._garbled * 2 > self._since_good

    def error(self) -> BaudRateError:
        return BaudRateError(f"{self.protocol}: only garbled bytes arrived ({self._since_good} bytes, no "
                             f"{self.protocol} record): check the baud rate (expected {self.baud})")

    def feed(self, data: bytes) -> None:
        self._since_good += len(data)
        self._garbled += len(data) if self.binary else count_garbled(data)
        if self._since_good >= self.window and self._garbled * 2 > self._since_good:
            n, g = self._since_good, self._garbled
            self._since_good = self._garbled = 0
            if self.ever_good:
                return           # noise mid-run: counted by the reader, never fatal
            raise BaudRateError(
                f"{self.protocol}: {n} bytes received and no {self.protocol} record in them "
                f"({g} of them unusable): check the baud rate "
                f"(expected {self.baud}) and that the meter on this port speaks {self.protocol}")


@dataclass
class LineReader:
    """Splits a byte stream into records at a terminator, timestamping each on arrival.

    pyserial's readline() reads one byte per system call; at 1 kHz that alone costs a good part
    of a core, so this reads whatever is waiting and splits it here.
    """
    port: serial.SerialBase
    terminator: bytes = b"\n"
    max_len: int = 4096
    cancel: threading.Event | None = None
    # Fast streams: wait this long between reads so that one wake-up takes many lines (each
    # wake-up costs tens of microseconds of CPU; at 1 kHz, one per line is several % of a core).
    batch_s: float = 0.0
    _buf: bytearray = field(default_factory=bytearray)
    _ready: deque = field(default_factory=deque)
    batch_last: bytes = b""      # the last record of the read that delivered the current one

    def read_record(self, deadline: float, on_bytes=None) -> tuple[float, bytes]:
        """Return (t_monotonic, record without terminator); raises NoData at the deadline."""
        while not self._ready:
            if time.monotonic() >= deadline or (self.cancel is not None and self.cancel.is_set()):
                raise NoData()
            if self.batch_s and self.cancel is not None:
                self.cancel.wait(self.batch_s)
            chunk = self.port.read(max(1, self.port.in_waiting))
            if not chunk:
                continue
            if self.port.in_waiting:           # the rest of what arrived with the first byte
                chunk += self.port.read(self.port.in_waiting)
            t = time.monotonic()
            if on_bytes is not None:
                on_bytes(chunk)
            self._buf += chunk
            batch = []
            while True:
                i = self._buf.find(self.terminator)
                if i < 0:
                    break
                batch.append(bytes(self._buf[:i]))
                del self._buf[:i + len(self.terminator)]
            if len(self._buf) > self.max_len:
                # No terminator in a long run: hand it over as one bad record instead of growing.
                batch.append(bytes(self._buf))
                self._buf.clear()
            if batch:
                last = batch[-1]
                self._ready.extend((t, r, last) for r in batch)
        t, rec, self.batch_last = self._ready.popleft()
        return t, rec

    def clear(self) -> None:
        self._buf.clear()
        self._ready.clear()


class Meter:
    """Base class of the drivers. ``interval_s`` is how often a sample is expected."""

    protocol = "meter"
    default_baud = 115200

    def __init__(self, port: serial.SerialBase, *, interval_s: float = 1.0, simulated: bool = False):
        self.port = port
        self.interval_s = float(interval_s)
        self.simulated = simulated
        self.info: dict = {}
        self.spec: str | None = None
        # Set by cancel(): a read in progress returns (NoData) within one port timeout.
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def pending(self) -> int:
        """Records already received and not yet returned by read() (0 for polled meters)."""
        lines = getattr(self, "lines", None)
        return len(lines._ready) if isinstance(lines, LineReader) else 0

    def wait_slot(self) -> None:
        """Polled meters: sleep until the next poll is due, so the interval holds."""
        now = time.monotonic()
        if not hasattr(self, "_next_poll"):
            self._next_poll = now
        if self._next_poll > now:
            self.cancelled.wait(self._next_poll - now)
        self._next_poll = max(self._next_poll + self.interval_s, time.monotonic())

    def read(self) -> Sample:          # pragma: no cover - every driver overrides it
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.port.close()
        except DISCONNECT_ERRORS:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

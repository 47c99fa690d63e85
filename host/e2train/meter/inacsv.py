"""The e2train CSV line protocol for INA219/INA226 sensor boards (firmware/ina_csv/ina_csv.ino).

A push protocol at 115200 baud, 8N1, lines ending in LF (CR LF accepted)::

    # e2train-ina 1 sensor=INA226 interval_ms=10 shunt_mohm=100
    n,t_ms,mV,mA
    0,0,5012,412
    1,10,5013,415.5

* The host may send ``?`` + LF at any time; the board answers with its banner and column
  header (boards with native USB do not reset when the port opens, so the host asks).
* ``#`` lines are information. ``# e2train-ina <version> key=value ...`` announces the stream
  (sent at every reset: most Arduinos reset when the port opens); ``#error <text>`` reports a
  fault on the board (sensor missing) and stops the run with that text; others are comments.
* The column header names the columns, from ``n`` (sample counter, so the host can count
  lines lost on the way), ``t_ms`` (board clock, ms), ``mV`` (bus voltage), ``mA`` (current),
  ``mW`` (power). It must have ``mW``, or ``mV`` and ``mA``. Without a header
  (the port opened after the reset) the default ``t_ms,mV,mA`` applies.
* Data lines: numbers (integer or decimal) in those columns. Power is ``mW`` when present,
  else ``mV * mA``. The host timestamps each line on arrival; ``t_ms`` stays in the raw record.
Documented in docs/meters.md.
"""
from __future__ import annotations

import math
import time

from .base import BadRecord, BaudWatch, LineReader, Meter, MeterError, Sample

MAGIC = "e2train-ina"
VERSION = 1
DEFAULT_COLUMNS = ("t_ms", "mV", "mA")
KNOWN_COLUMNS = {"n", "t_ms", "mV", "mA", "mW"}
FIRMWARE_COLUMNS = ("n", "t_ms", "mV", "mA")
BAUD = 115200
REQUEST_BANNER = b"?\n"


def banner(sensor: str = "INA226", interval_ms: float = 10, shunt_mohm: float = 100) -> bytes:
    return f"# {MAGIC} {VERSION} sensor={sensor} interval_ms={interval_ms:g} shunt_mohm={shunt_mohm:g}\n".encode()


def header(columns=FIRMWARE_COLUMNS) -> bytes:
    return (",".join(columns) + "\n").encode()


def data_line(t_ms: float, mv: float, ma: float, n: int | None = None) -> bytes:
    """A line in FIRMWARE_COLUMNS (or DEFAULT_COLUMNS when n is None)."""
    head = "" if n is None else f"{n},"
    return f"{head}{int(t_ms)},{mv:.0f},{ma:.1f}\n".encode()


def parse_columns(line: str) -> tuple[str, ...]:
    cols = tuple(c.strip() for c in line.split(","))
    unknown = set(cols) - KNOWN_COLUMNS
    if unknown or not ({"mW"} <= set(cols) or {"mV", "mA"} <= set(cols)):
        raise MeterError(f"CSV meter header {line!r}: columns must come from {sorted(KNOWN_COLUMNS)} "
                         f"and include mW, or mV and mA (see docs/meters.md)")
    return cols


def parse_values(raw: bytes, columns: tuple[str, ...]) -> list[float]:
    """The numbers of one data line, in column order; BadRecord unless all are finite.

    This runs a thousand times a second on fast boards, hence the one-pass shape.
    """
    parts = raw.split(b",")
    if len(parts) != len(columns):
        raise BadRecord(raw, f"{len(parts)} values for {len(columns)} columns {','.join(columns)}")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        bad = next(c for c, p in zip(columns, parts) if not _is_number(p))
        raise BadRecord(raw, f"{bad} is not a number") from None
    if not math.isfinite(sum(vals)):
        bad = next(c for c, v in zip(columns, vals) if not math.isfinite(v))
        raise BadRecord(raw, f"{bad} is not a finite number")
    return vals


def _is_number(tok: bytes) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def column_index(columns: tuple[str, ...]) -> tuple[int | None, ...]:
    """Positions of n, t_ms, mV, mA, mW in a header (None where absent)."""
    return tuple(columns.index(k) if k in columns else None for k in ("n", "t_ms", "mV", "mA", "mW"))


def to_sample(t: float, vals: list[float], c: tuple[int | None, ...], raw: bytes) -> Sample:
    """Watts from mW when the board sends it, else mV x mA."""
    v = vals[c[2]] / 1000 if c[2] is not None else None
    a = vals[c[3]] / 1000 if c[3] is not None else None
    t_meter = vals[c[1]] / 1000 if c[1] is not None else None
    return Sample(t, vals[c[4]] / 1000 if c[4] is not None else v * a, v, a, raw, t_meter)


def parse_line(raw: bytes, t: float, columns: tuple[str, ...]) -> Sample:
    raw = raw.strip()
    return to_sample(t, parse_values(raw, columns), column_index(columns), raw)


class InaCsv(Meter):
    protocol = "csv"
    default_baud = BAUD

    def __init__(self, port, *, interval_s: float = 1.0, simulated: bool = False, baud: int = BAUD,
                 batch_s: float | None = None):
        super().__init__(port, interval_s=interval_s, simulated=simulated)
        self.lines = LineReader(port, terminator=b"\n", cancel=self.cancelled)
        self._batch_s = batch_s
        self.baud_watch = BaudWatch(baud, "CSV (e2train-ina)")
        self.columns = DEFAULT_COLUMNS         # also sets the read batching
        port.write(REQUEST_BANNER)

    def _info(self, text: str) -> None:
        body = text[1:].strip()
        if body.lower().startswith("error"):
            raise MeterError(f"the sensor board reports: {body}")
        words = body.split()
        if words and words[0] == MAGIC:
            if len(words) < 2 or words[1] != str(VERSION):
                raise MeterError(f"sensor board speaks {MAGIC} version {words[1:2]}, this host reads "
                                 f"version {VERSION}: flash firmware/ina_csv/ina_csv.ino from this release")
            self.info.update(w.split("=", 1) for w in words[2:] if "=" in w)
            if "interval_ms" in self.info:
                self.interval_s = float(self.info["interval_ms"]) / 1000
                self._set_batch()

    def _set_batch(self) -> None:
        # Above 100 lines/s, take them 50 ms at a time (see LineReader.batch_s), but only when the
        # board's t_ms can space the lines of one read (_stamp); without it each line is read alone.
        fast = self.interval_s < 0.01 and "t_ms" in self.columns
        self.lines.batch_s = self._batch_s if self._batch_s is not None else (0.05 if fast else 0.0)

    def _stamp(self, t: float, t_ms: float | None) -> float:
        """Host time of a line that arrived in one read with later lines.

        The read's arrival time belongs to its last line; an earlier line is placed back from it by
        the board's own clock (t_ms differences, at most a batch apart). Host time anchors every
        sample; the board's clock only spaces lines within one read.
        """
        last = self.lines.batch_last
        if t_ms is None or not last:
            return t
        if last is not self._last_ref:
            self._last_ref = last
            try:
                self._last_ms = float(last.split(b",")[self.columns.index("t_ms")])
            except (ValueError, IndexError):
                self._last_ms = None
        if self._last_ms is None:
            return t
        back = (self._last_ms - t_ms) / 1000
        return t - back if 0 <= back <= 0.5 else t

    def read(self) -> Sample:
        deadline = time.monotonic() + max(3 * self.interval_s, 0.5)
        while True:
            t, raw = self.lines.read_record(deadline, self.baud_watch.feed)
            raw = raw.rstrip(b"\r")
            if raw[:1].isdigit() or raw[:1] in (b"-", b"."):
                return self._sample(t, raw)
            text = raw.decode("ascii", errors="replace").strip()
            if not text:
                continue
            if text.startswith("#"):
                self._info(text)
                continue
            if text[0].isalpha() and "," in text and set(text.split(",")) <= KNOWN_COLUMNS | {""}:
                self.columns = parse_columns(text)
                continue
            return self._sample(t, raw)

    def _sample(self, t: float, raw: bytes) -> Sample:
        vals = parse_values(raw, self.columns)
        self.baud_watch.good()
        c = self._cols
        if c[0] is not None:
            self._count(int(vals[c[0]]))
        return to_sample(self._stamp(t, vals[c[1]] if c[1] is not None else None), vals, c, raw)

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    @columns.setter
    def columns(self, cols: tuple[str, ...]) -> None:
        self._columns = cols
        self._cols = column_index(cols)      # looked up once per header, not once per line
        self._last_ref, self._last_ms = None, None
        if hasattr(self, "lines"):
            self._set_batch()

    def _count(self, n: int) -> None:
        # Lines lost between the board and here (a full buffer, a bad line) show as a jump in n.
        last = getattr(self, "_last_n", None)
        if last is not None and n > last + 1:
            self.info["missed_lines"] = self.info.get("missed_lines", 0) + (n - last - 1)
        self._last_n = n

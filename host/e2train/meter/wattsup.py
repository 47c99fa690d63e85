"""Watts Up? PRO / .net: ASCII records ``#d,-,18,<fields>;`` pushed once per logging interval.

Commands (Watts Up? communications protocol, 2009): ``#V,R,0;`` asks the version, ``#H,R,0;``
the field header, ``#L,W,3,E,,<s>;`` starts external logging (a record every <s> seconds,
pushed on the serial line). 115200 baud, 8N1. A record is a command letter, a sub-command
(``-``), the field count, then the fields; integers in fixed units (table below). Real
captures carry stray NUL bytes and CR LF between records; both are ignored.
"""
from __future__ import annotations

import time

from .base import BadRecord, BaudWatch, LineReader, Meter, MeterError, NoData, Sample

# (name, scale to SI) in the order the meter sends them. One table for the parser and the emulator.
FIELDS: tuple[tuple[str, float], ...] = (
    ("W", 0.1), ("V", 0.1), ("A", 0.001), ("WH", 0.1), ("Cost", 0.001), ("WH/Mo", 1.0),
    ("Cost/Mo", 0.001), ("Wmax", 0.1), ("Vmax", 0.1), ("Amax", 0.001), ("Wmin", 0.1),
    ("Vmin", 0.1), ("Amin", 0.001), ("PF", 1.0), ("DC", 1.0), ("PC", 1.0), ("Hz", 0.1), ("VA", 0.1),
)
FIELD_INDEX = {name: i for i, (name, _) in enumerate(FIELDS)}
BAUD = 115200

CMD_VERSION = b"#V,R,0;"
CMD_HEADER = b"#H,R,0;"


def cmd_external_logging(interval_s: float) -> bytes:
    # The meter takes whole seconds, at least one.
    return b"#L,W,3,E,,%d;" % max(1, round(interval_s))


def split_record(raw: bytes) -> tuple[bytes, list[bytes]]:
    """Clean one ``;``-terminated record (NULs, CR LF) and return (command, fields)."""
    text = raw.replace(b"\0", b"").strip()
    if text.endswith(b";"):
        text = text[:-1]
    tokens = text.split(b",")
    if len(tokens) < 3 or not tokens[0].startswith(b"#"):
        raise BadRecord(raw, "not a Watts Up? record")
    try:
        count = int(tokens[2])
    except ValueError:
        raise BadRecord(raw, "field count is not a number") from None
    fields = tokens[3:]
    if len(fields) != count:
        raise BadRecord(raw, f"truncated record: {len(fields)} of {count} fields")
    return tokens[0], fields


def parse_data(raw: bytes, t: float) -> Sample:
    """One ``#d`` record -> Sample (watts, volts, amps). Raises BadRecord."""
    cmd, fields = split_record(raw)
    if cmd != b"#d":
        raise BadRecord(raw, "not a data record")
    if len(fields) != len(FIELDS):
        raise BadRecord(raw, f"expected the {len(FIELDS)}-field record, got {len(fields)} fields")

    def value(name: str, required: bool) -> float | None:
        tok = fields[FIELD_INDEX[name]].strip()
        if tok in (b"_", b"") and not required:
            return None          # a field deselected with #C prints as '_'
        try:
            return int(tok) * FIELDS[FIELD_INDEX[name]][1]
        except ValueError:
            raise BadRecord(raw, f"field {name} is not an integer") from None

    return Sample(t, value("W", True), value("V", False), value("A", False), raw.replace(b"\0", b"").strip())


def format_data(watts: float, volts: float, amps: float, extra: dict | None = None) -> bytes:
    """The emulator's record, built from the same field table the parser reads."""
    vals = {"W": watts, "V": volts, "A": amps, "VA": volts * amps, "PF": 100 if watts else 0, "Hz": 60.0}
    vals.update(extra or {})
    ints = [str(round(vals.get(name, 0) / scale)).encode() for name, scale in FIELDS]
    return b"#d,-,%d," % len(FIELDS) + b",".join(ints) + b";\r\n"


def format_header() -> bytes:
    return b"#h,-,%d," % len(FIELDS) + b",".join(n.encode() for n, _ in FIELDS) + b";\r\n"


class WattsUp(Meter):
    protocol = "wattsup"
    default_baud = BAUD

    def __init__(self, port, *, interval_s: float = 1.0, simulated: bool = False,
                 baud: int = BAUD, reply_timeout_s: float = 3.0, handshake: bool = True):
        super().__init__(port, interval_s=interval_s, simulated=simulated)
        self.lines = LineReader(port, terminator=b";", cancel=self.cancelled)
        self.baud_watch = BaudWatch(baud, "Watts Up?")
        self.reply_timeout_s = reply_timeout_s
        if handshake:
            self.info["version"] = self.query(CMD_VERSION, b"#v").decode(errors="replace")
            header = self.query(CMD_HEADER, b"#h")
            names = [f.decode(errors="replace") for f in split_record(header)[1]]
            if names[:3] != ["W", "V", "A"]:
                raise MeterError(f"Watts Up? header lists fields {names}; this driver reads W, V, A "
                                 f"first: reset the meter's field selection (#C) to all fields")
            self.info["fields"] = names
            port.write(cmd_external_logging(self.interval_s))
        # A real meter logs in whole seconds, at least one: that is the interval gaps are judged by.
        # (The emulator pushes at any interval, so that tests need not wait seconds per record.)
        if not simulated:
            self.interval_s = float(max(1, round(self.interval_s)))

    def query(self, cmd: bytes, reply: bytes) -> bytes:
        """Send a command and wait for the record that answers it, skipping data records."""
        self.port.write(cmd)
        deadline = time.monotonic() + self.reply_timeout_s
        while True:
            try:
                _, rec = self.lines.read_record(deadline, self.baud_watch.feed)
            except NoData:
                if self.baud_watch.suspect():
                    raise self.baud_watch.error() from None
                raise MeterError(f"no answer to {cmd.decode()} from the Watts Up? within "
                                 f"{self.reply_timeout_s:g} s: is it plugged in and powered, and "
                                 f"is the port right (115200 baud)?") from None
            if rec.replace(b"\0", b"").strip().startswith(reply):
                self.baud_watch.good()
                return rec.replace(b"\0", b"").strip() + b";"

    _pending: Sample | None = None

    def read(self) -> Sample:
        if self._pending is not None:
            s, self._pending = self._pending, None
            return s
        deadline = time.monotonic() + max(3 * self.interval_s, 0.5)
        while True:
            t, rec = self.lines.read_record(deadline, self.baud_watch.feed)
            clean = rec.replace(b"\0", b"").strip()
            if not clean:
                continue
            cut = clean.rfind(b"#")
            if cut > 0:
                # Garbage or a truncated record ran into a good one (no ';' in between): keep the
                # good record for the next call and report the rest as one bad record.
                try:
                    self._pending = parse_data(clean[cut:] + b";", t)
                    self.baud_watch.good()
                except BadRecord:
                    pass
                raise BadRecord(clean[:cut], "garbage before a record")
            if not clean.startswith(b"#d"):
                if clean.startswith((b"#v", b"#h", b"#s", b"#l")):
                    continue      # answers and status records are not samples
                raise BadRecord(rec, "not a Watts Up? record")
            s = parse_data(rec + b";", t)
            self.baud_watch.good()
            return s

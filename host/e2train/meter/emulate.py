"""Emulators of every meter protocol, on a pseudo-terminal, for the tests and the simulated board.

    from e2train.meter.emulate import start_emulator
    with start_emulator("wattsup", power_w=lambda t: 3.2, interval_s=0.1) as em:
        meter = open_meter(em.spec)          # or f"wattsup:{em.port}"

Each emulator speaks the byte protocol of the real meter, built from the same tables as the
driver that reads it (field lists, frame layouts). ``power_w(t)`` is called with
the ``time.monotonic()`` at which each sample falls due (push meters keep their own clock and
catch up after a stall rather than skip), or at which a query arrives; volts are fixed (``volts``) and amps are ``P / volts``.

``em.port`` is a stable path (a symlink to the current pty slave), so that an "unplugged" meter
can come back at the same name, as a USB adapter does with a udev rule. Faults for tests
(keyword arguments):

- ``garbage_every=N``: random junk bytes before every N-th record.
- ``truncate_every=N``: every N-th record cut in half.
- ``nan_every=N``: every N-th record carries NaN/no-data in its power field.
- ``silent_after_s=T, silent_for_s=S``: sends and answers nothing from T to T+S seconds after start.
- ``unplug_after_s=T, unplug_for_s=S``: closes the pty at T (the reader sees the device vanish)
  and opens a new one under the same name S seconds later.
- ``wrong_baud=True``: every byte sent comes out as a UART set to the wrong rate would show it.
- ``noise_after_s=T, noise_bytes=N``: one burst of N random bytes (default 300) at T seconds,
  between two records: a knocked cable or a moment at the wrong rate. ``em.noise_sent_at``
  is the monotonic time it went out.
- ``no_power_query=True`` (scpi): the supply lacks ``MEAS:POW?``.
- ``model="UM34C"`` (um): which tester to be.
- ``replay=path`` (wattsup): send the records of a raw capture (e.g. fan.raw) in a loop.
"""
from __future__ import annotations

import errno
import logging
import os
import random
import select
import shutil
import tempfile
import threading
import time
from typing import Callable

from . import inacsv, um, wattsup, wt310
from .raw_pty import open_raw_pty

# What the simulated meter shows with no power function: a Zynq-7020 board (PYNQ-Z2 class)
# idling at 5 V with the PL configured draws on the order of 2 W; this constant is a stand-in for
# `sim:` alone, not a measurement. The simulated board passes its own modelled power instead.
DEFAULT_IDLE_W = 2.0

log = logging.getLogger("e2train.meter")

# Pty ports of emulators started in this process: open_meter marks meters on them as simulated.
SIMULATED_PORTS: set[str] = set()


def _scramble(data: bytes) -> bytes:
    # What a UART at the wrong rate delivers: framing errors that turn text into high-bit junk.
    return bytes(((b * 0x9D + 0x5B) & 0xFF) | 0x80 for b in data)


class _Protocol:
    push = False                 # records sent on a timer (True) or only in answer to queries
    terminator = b"\n"

    def __init__(self, em: "Emulator"):
        self.em = em

    def on_command(self, cmd: bytes) -> bytes:
        return b""

    def record(self, t: float, nan: bool = False) -> bytes:
        raise NotImplementedError


class _WattsUp(_Protocol):
    terminator = b";"

    def __init__(self, em):
        super().__init__(em)
        self.logging = False
        self.requested_interval_s: int | None = None
        self.selected = [True] * len(wattsup.FIELDS)
        self._replay = None
        if em.faults.get("replay"):
            with open(em.faults["replay"], "rb") as f:
                recs = [r + b";\r\n" for r in (x.replace(b"\0", b"").strip() for x in f.read().split(b";")) if r]
            self._replay = recs
            self._i = 0

    @property
    def push(self):
        return self.logging

    def on_command(self, cmd: bytes) -> bytes:
        """A command as the protocol document defines it: ``#<cmd>,<sub>,<count>[,<arg>...];``.

        Answered: ``#V,R,0`` (version), ``#H,R,0`` (field header), ``#L,W,3,<mode>,,<s>`` (logging:
        E = external, records pushed every <s> s; I = internal memory, nothing pushed),
        ``#R,W,0`` (clear memory, no reply), ``#C,W,18,<18 flags>`` (field selection: a field
        whose flag is 0 prints as ``_``). Anything else, or a count that does not match the
        arguments, is ignored without a reply: the meter defines no error answer.
        """
        tokens = cmd.replace(b"\0", b"").strip().split(b",")
        if len(tokens) < 3 or not tokens[2].isdigit() or int(tokens[2]) != len(tokens) - 3:
            return b""
        c, sub, args = tokens[0], tokens[1], tokens[3:]
        if (c, sub) == (b"#V", b"R") and not args:
            return b"#v,-,8,1,1,PRO,0,0,0,0,e2train-emulator;\r\n"
        if (c, sub) == (b"#H", b"R") and not args:
            return wattsup.format_header()
        if (c, sub) == (b"#L", b"W") and len(args) == 3 and args[0] in (b"E", b"I") and args[2].isdigit():
            self.logging = args[0] == b"E"
            self.requested_interval_s = max(1, int(args[2]))
        elif (c, sub) == (b"#C", b"W") and len(args) == len(wattsup.FIELDS) and set(args) <= {b"0", b"1"}:
            self.selected = [a == b"1" for a in args]
        return b""

    def record(self, t, nan=False):
        if self._replay is not None:
            rec = self._replay[self._i % len(self._replay)]
            self._i += 1
        else:
            p = self.em.power_w(t)
            rec = wattsup.format_data(p, self.em.volts, p / self.em.volts)
            if not all(self.selected):
                head, body = rec.split(b",", 3)[:3], rec.split(b",", 3)[3].rstrip(b";\r\n").split(b",")
                body = [v if on else b"_" for v, on in zip(body, self.selected)]
                rec = b",".join(head + body) + b";\r\n"
        if nan:
            parts = rec.split(b",")
            parts[3] = b"nan"
            rec = b",".join(parts)
        return rec


class _Csv(_Protocol):
    push = True

    def __init__(self, em):
        super().__init__(em)
        self.t0 = time.monotonic()
        self.started = False
        self.n = 0

    def on_command(self, cmd: bytes) -> bytes:
        if cmd.strip() == inacsv.REQUEST_BANNER.strip():
            return inacsv.banner(interval_ms=self.em.interval_s * 1000) + inacsv.header()
        return b""

    def record(self, t, nan=False):
        p = self.em.power_w(t)
        v = self.em.volts
        line = inacsv.data_line((t - self.t0) * 1000, v * 1000, (p / v) * 1000, n=self.n)
        self.n += 1
        if nan:
            line = line.rsplit(b",", 1)[0] + b",nan\n"
        if not self.started:      # the board's reset banner, as the firmware sends it
            self.started = True
            line = inacsv.banner(interval_ms=self.em.interval_s * 1000) + inacsv.header() + line
        return line


class _Wt310(_Protocol):
    """A Yokogawa WT310E (one input element), from its communication manual IM WT310E-17EN.

    Implements only these headers (ch. 6, command groups; short or long forms, any case):
    ``*IDN?``, ``*CLS``, ``*RST`` (common commands); ``:COMMunicate:HEADer`` (COMMunicate group);
    ``:NUMeric:FORMat``, ``:NUMeric[:NORMal]:NUMber``, ``:NUMeric[:NORMal]:ITEM<x>``,
    ``:NUMeric[:NORMal]:VALue?`` (NUMeric group); ``:INTEGrate:STARt|STOP|RESet``, ``:INTEGrate:STATe?``
    (INTEGrate group); ``:STATus:ERRor?`` (STATus group; the error queue, §7.5). Anything else,
    ``:SYSTem:ERRor?`` included, is what the real meter makes of it: error 113 "Undefined
    header" in the queue and no answer. Error numbers are the manual's, without a sign.
    Numeric answers are ``<NR3>`` with a 5-digit mantissa (6 for integrated values), ``NAN``
    where there is no data (§5.4 and the NUMeric group's "numeric data format").
    """

    FUNCTIONS = {"U", "I", "P", "S", "Q", "LAMBDA", "LAMB", "PHI", "FU", "FI", "TIME", "WH", "WHP",
                 "WHM", "AH", "AHP", "AHM", "NONE"}

    def __init__(self, em):
        super().__init__(em)
        from .scpi_grammar import CommandTable
        t = self.table = CommandTable(undefined=(113, "Undefined header"))
        t.add("*IDN?", lambda s, a: "YOKOGAWA,WT310E,C2QA00000,F1.03")
        t.add("*CLS", lambda s, a: t.errors.clear())
        t.add("*RST", lambda s, a: self._reset())
        t.add(":COMMunicate:HEADer", self._header)
        q = self._query
        q(":COMMunicate:HEADer?", lambda s, a: "1" if self.headers else "0")
        t.add(":NUMeric:FORMat", self._format)
        q(":NUMeric:FORMat?", lambda s, a: self.fmt)
        t.add(":NUMeric[:NORMal]:NUMber", self._number)
        q(":NUMeric[:NORMal]:NUMber?", lambda s, a: str(self.n_items))
        t.add(":NUMeric[:NORMal]:ITEM<x>", self._item)
        q(":NUMeric[:NORMal]:VALue?", self._value)
        t.add(":INTEGrate:STARt", lambda s, a: self._integ("start"))
        t.add(":INTEGrate:STOP", lambda s, a: self._integ("stop"))
        t.add(":INTEGrate:RESet", lambda s, a: self._integ("reset"))
        q(":INTEGrate:STATe?", lambda s, a: "START" if self.integ else ("STOP" if self.t_integ else "RESET"))
        q(":STATus:ERRor?", lambda s, a: '%d,"%s"' % t.pop_error())
        self._reset()

    def _query(self, pattern, fn):
        # With :COMMunicate:HEADer ON (the default) an answer starts with its header (long form,
        # upper case, optional nodes included): a driver that forgets HEAD OFF gets words, not numbers.
        from .scpi_grammar import compile_pattern
        head = ":" + ":".join(n.long for n in compile_pattern(pattern).nodes)

        def answer(s, a):
            out = fn(s, a)
            return f"{head} {out}" if self.headers and out is not None else out
        self.table.add(pattern, answer)

    def _reset(self):
        self.headers = True          # the factory default: answers carry their header
        self.fmt = "ASCII"
        self.n_items = 15
        self.items = {k: ("NONE", 1) for k in range(1, 256)}
        self.integ, self.t_integ, self.wh, self.ah, self._last = False, 0.0, 0.0, 0.0, None

    def _err(self, code, msg):
        from .scpi_grammar import ParameterError
        return ParameterError(code, msg)

    def _header(self, sfx, args):
        if len(args) != 1 or args[0].upper() not in ("ON", "OFF", "1", "0"):
            raise self._err(224, "Illegal parameter value")
        self.headers = args[0].upper() in ("ON", "1")

    def _format(self, sfx, args):
        fmt = args[0].upper() if len(args) == 1 else ""
        if fmt in ("ASC", "ASCII"):
            self.fmt = "ASCII"
        elif fmt in ("FLO", "FLOAT"):
            self.fmt = "FLOAT"
        else:
            raise self._err(224, "Illegal parameter value")

    def _number(self, sfx, args):
        try:
            n = int(float(args[0]))
        except (IndexError, ValueError):
            raise self._err(224, "Illegal parameter value") from None
        if not 1 <= n <= 255:
            raise self._err(222, "Data out of range")
        self.n_items = n

    def _item(self, sfx, args):
        k = sfx[0]
        if not 1 <= k <= 255:
            raise self._err(114, "Header suffix out of range")
        fn = args[0].upper() if args else ""
        if fn not in self.FUNCTIONS:
            raise self._err(224, "Illegal parameter value")
        el = args[1] if len(args) > 1 else "1"
        if el not in ("1",):                # a WT310E has one input element
            raise self._err(222, "Data out of range")
        self.items[k] = (fn, 1)

    def _integ(self, what):
        now = time.monotonic()
        self._accumulate(now)
        if what == "start":
            self.integ, self._last = True, None
        elif what == "stop":
            self.integ = False
        else:
            self.wh, self.ah, self.t_integ, self._last = 0.0, 0.0, 0.0, None

    def _accumulate(self, t):
        if not self.integ:
            return
        p = self.em.power_w(t)
        if self._last is not None:
            dt = t - self._last[0]
            self.wh += (self._last[1] + p) / 2 * dt / 3600
            self.ah += (self._last[1] + p) / 2 / self.em.volts * dt / 3600
            self.t_integ += dt
        self._last = (t, p)

    def _value(self, sfx, args):
        t = time.monotonic()
        self._accumulate(t)
        nan = self.em._take_fault("nan_every")
        p, u = self.em.power_w(t), self.em.volts
        vals = {"U": u, "I": p / u, "P": p, "S": p, "Q": 0.0, "LAMBDA": 1.0, "LAMB": 1.0, "PHI": 0.0,
                "FU": 50.0, "FI": 50.0, "TIME": self.t_integ, "WH": self.wh, "WHP": self.wh, "WHM": 0.0,
                "AH": self.ah, "AHP": self.ah, "AHM": 0.0}
        ks = range(1, self.n_items + 1)
        if args:
            ks = [int(float(args[0]))]
        out = []
        for k in ks:
            fn = self.items[k][0]
            x = None if fn == "NONE" or (nan and k == 1) else vals[fn]
            out.append(x)
        if self.fmt == "FLOAT":
            import struct
            data = b"".join(struct.pack(">f", 9.91e37 if x is None else x) for x in out)
            n = str(len(data))
            return "#" + str(len(n)) + n + data.decode("latin-1")
        integ = ("WH", "WHP", "WHM", "AH", "AHP", "AHM")
        return ",".join("NAN" if x is None else
                        (f"{x:.5E}" if self.items[k][0] in integ else f"{x:.4E}") for k, x in zip(ks, out))

    def on_command(self, cmd: bytes) -> bytes:
        return self.table.execute(cmd.decode("ascii", errors="replace").strip("\r\n "))

    def record(self, t, nan=False):
        raise NotImplementedError("the WT310 answers queries only")


class _ScpiSupply(_Protocol):
    """A generic SCPI DC supply: SCPI-99's MEASure subsystem and SYSTem:ERRor? error queue.

    Implements ``*IDN?``, ``*CLS``, ``SYSTem:ERRor[:NEXT]?``, ``MEASure[:SCALar]:VOLTage[:DC]?``,
    ``MEASure[:SCALar]:CURRent[:DC]?`` and, unless ``no_power_query``, ``MEASure[:SCALar]:POWer[:DC]?``.
    Anything else queues -113 "Undefined header" and is not answered. 9.91E+37 is SCPI's NaN.
    """

    def __init__(self, em):
        super().__init__(em)
        from .scpi_grammar import CommandTable
        t = self.table = CommandTable(undefined=(-113, "Undefined header"))
        t.add("*IDN?", lambda s, a: "E2TRAIN,EMULATED-SUPPLY,0,1.0")
        t.add("*CLS", lambda s, a: t.errors.clear())
        t.add("SYSTem:ERRor[:NEXT]?", lambda s, a: '%d,"%s"' % t.pop_error())
        t.add("MEASure[:SCALar]:VOLTage[:DC]?", lambda s, a: f"{self.em.volts:.4f}")
        t.add("MEASure[:SCALar]:CURRent[:DC]?", lambda s, a: self._meas("I"))
        if not em.faults.get("no_power_query"):
            t.add("MEASure[:SCALar]:POWer[:DC]?", lambda s, a: self._meas("P"))

    def _meas(self, what):
        if self.em._take_fault("nan_every"):
            return "9.91E+37"
        p = self.em.power_w(time.monotonic())
        return f"{p:.4f}" if what == "P" else f"{p / self.em.volts:.5f}"

    def on_command(self, cmd: bytes) -> bytes:
        return self.table.execute(cmd.decode("ascii", errors="replace").strip("\r\n "))


class _UM(_Protocol):
    """RDTech UM24C/UM25C/UM34C: one-byte commands (rdserialtool's rdserial/um, libsigrok's rdtech-um).

    0xF0 asks for the 130-byte frame; 0xF1/0xF2/0xF3 next/rotate/previous screen, 0xF4 clears
    the data group, 0xA0+n selects group n (0-9), 0xB0+n sets the recording threshold to
    n x 10 mA (0-30), 0xD0+n the brightness (0-5), 0xE0+n the screen timeout in minutes (0-9).
    Those change what the next frame reports; any other byte is ignored, as the testers do.
    """

    def __init__(self, em):
        super().__init__(em)
        self.model = em.faults.get("model", "UM25C").upper()
        if self.model not in um.MODEL_IDS:
            raise ValueError(f"no UM model {self.model!r}; choose from {sorted(um.MODEL_IDS)}")
        self.state = {"group": 0, "screen": 0, "brightness": 5, "screen_timeout_min": 0,
                      "record_threshold_a": 0.10}

    def on_command(self, cmd: bytes) -> bytes:
        out = b""
        st = self.state
        for b in cmd:
            if b == um.REQUEST[0]:
                frame = self.record(time.monotonic(), nan=self.em._take_fault("nan_every"))
                if self.em._take_fault("truncate_every"):
                    frame = frame[:len(frame) // 2]
                out += frame
            elif b in (0xF1, 0xF2):
                st["screen"] = (st["screen"] + 1) % 6
            elif b == 0xF3:
                st["screen"] = (st["screen"] - 1) % 6
            elif 0xA0 <= b <= 0xA9:
                st["group"] = b - 0xA0
            elif 0xB0 <= b <= 0xCE:
                st["record_threshold_a"] = (b - 0xB0) * 0.01
            elif 0xD0 <= b <= 0xD5:
                st["brightness"] = b - 0xD0
            elif 0xE0 <= b <= 0xE9:
                st["screen_timeout_min"] = b - 0xE0
        return out

    def record(self, t, nan=False):
        p = self.em.power_w(t)
        frame = um.pack_frame(self.model, volts=self.em.volts, amps=p / self.em.volts, watts=p, temp_c=30,
                              **self.state)
        if nan:   # a binary frame has no NaN: the closest is a frame that fails its check
            frame = frame[:128] + b"\x00\x00"
        return frame


FAULTS = {"garbage_every", "truncate_every", "nan_every", "silent_after_s", "silent_for_s", "unplug_after_s",
          "unplug_for_s", "wrong_baud", "no_power_query", "model", "replay", "seed", "noise_after_s", "noise_bytes"}

PROTOCOLS: dict[str, type[_Protocol]] = {
    "wattsup": _WattsUp, "csv": _Csv, "wt310": _Wt310, "scpi": _ScpiSupply, "um": _UM,
    "um25c": _UM, "um24c": _UM, "um34c": _UM,
}


class Emulator:
    def __init__(self, protocol: str, power_w: Callable[[float], float] | None = None,
                 interval_s: float = 1.0, volts: float = 5.0, **faults):
        if protocol not in PROTOCOLS:
            raise ValueError(f"no emulator for {protocol!r}; choose from {sorted(PROTOCOLS)}")
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown emulator option(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        if protocol in ("um25c", "um24c", "um34c"):
            faults.setdefault("model", protocol.upper())
        self.protocol = protocol
        self.power_w = power_w or (lambda t: DEFAULT_IDLE_W)
        self.interval_s = float(interval_s)
        self.volts = float(volts)
        self.faults = faults
        self.counts: dict[str, int] = {}
        self.sent_records = 0
        self.dropped_bytes = 0
        self.unplugs = 0
        self.error: str | None = None
        self.noise_sent_at: float | None = None
        self._rng = random.Random(faults.get("seed", 0))
        self.proto = PROTOCOLS[protocol](self)     # first: a bad option fails before a pty exists
        self._dir = tempfile.mkdtemp(prefix="e2train-meter-")
        self.port = os.path.join(self._dir, "tty")
        self._master = self._slave = -1
        self._lock = threading.Lock()
        self._open_pty()
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"meter-emulator-{protocol}", daemon=True)
        self._thread.start()
        SIMULATED_PORTS.add(self.port)

    @property
    def spec(self) -> str:
        """A spec for open_meter, marked simulated (energy from this emulator's power function)."""
        proto = {"um25c": "um", "um24c": "um", "um34c": "um"}.get(self.protocol, self.protocol)
        return f"{proto}:{self.port}?interval={self.interval_s:g}&sim=1"

    # -- the pty ------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = open_raw_pty("the simulated meter", "run without it (--meter none)")
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.port + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        if os.path.lexists(self.port):
            os.unlink(self.port)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    # -- faults -------------------------------------------------------------------------------
    def _take_fault(self, name: str) -> bool:
        """Count events of one kind and say whether this one gets the fault."""
        every = int(self.faults.get(name) or 0)
        if not every:
            return False
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name] % every == 0

    def _window(self, name: str, now: float) -> bool:
        after = self.faults.get(f"{name}_after_s")
        if after is None:
            return False
        start = self.t0 + after
        return start <= now < start + self.faults.get(f"{name}_for_s", 1.0)

    # -- the loop -------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.faults.get("wrong_baud"):
            data = _scramble(data)
        try:
            n = os.write(self._master, data)
            self.dropped_bytes += len(data) - n
        except BlockingIOError:
            # Nobody reads and the pty buffer is full: a real meter's bytes would be lost too.
            self.dropped_bytes += len(data)

    def _emit_record(self, t: float) -> None:
        rec = self.proto.record(t, nan=self._take_fault("nan_every"))
        if self._take_fault("truncate_every"):
            rec = rec[:len(rec) // 2]
        if self._take_fault("garbage_every"):
            rec = bytes(self._rng.randrange(256) for _ in range(12)) + b"\n" + rec
        self._send(rec)
        self.sent_records += 1

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:      # e.g. the power function raised: say so, the meter goes silent
            self.error = f"{type(e).__name__}: {e}"
            log.error("meter emulator (%s) stopped: %s", self.protocol, self.error)

    def _loop(self) -> None:
        next_t = time.monotonic()
        inbuf = bytearray()
        plugged = True
        while not self._stop.is_set():
            now = time.monotonic()
            if self._window("unplug", now):
                if plugged:
                    with self._lock:
                        self._close_pty()
                    plugged = False
                    self.unplugs += 1
                time.sleep(0.01)
                continue
            if not plugged:
                with self._lock:
                    self._open_pty()
                plugged = True
                inbuf.clear()
                next_t = now               # nothing was sampled while unplugged
            silent = self._window("silent", now)
            if (self.noise_sent_at is None and "noise_after_s" in self.faults
                    and now >= self.t0 + self.faults["noise_after_s"]):
                n = int(self.faults.get("noise_bytes", 300))
                self._send(bytes(self._rng.randrange(256) for _ in range(n)))
                self.noise_sent_at = now
            timeout = max(0.0, next_t - now) if self.proto.push else 0.05
            try:
                r, _, _ = select.select([self._master], [], [], min(timeout, 0.05))
            except (OSError, ValueError):
                break
            if r:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not silent:
                    inbuf += data
                    self._handle_input(inbuf)
            now = time.monotonic()
            if self.proto.push:
                # A meter samples on its own clock. When this thread was held up (a busy machine),
                # the records that fell due meanwhile go out now, each with its own time, as a
                # board with a transmit buffer would send them: none is skipped, so the count
                # and the meter's clock follow the run's length, not this machine's speed. Only
                # a stall of seconds (a suspended process) restarts the clock.
                if now - next_t > 5.0:
                    next_t = now
                n = 0
                while now >= next_t and n < 2000:
                    if not self._window("silent", next_t):
                        self._emit_record(next_t)
                    next_t += self.interval_s
                    n += 1
            else:
                next_t = now

    def _handle_input(self, inbuf: bytearray) -> None:
        if isinstance(self.proto, _UM):
            cmd, inbuf[:] = bytes(inbuf), b""
            if cmd:
                self._answer(self.proto.on_command(cmd), count=False)
            return
        term = self.proto.terminator
        while True:
            i = inbuf.find(term)
            if i < 0:
                return
            cmd = bytes(inbuf[:i])
            del inbuf[:i + len(term)]
            self._answer(self.proto.on_command(cmd))

    def _answer(self, reply: bytes, count: bool = True) -> None:
        if not reply:
            return
        if count and self._take_fault("truncate_every"):
            # An answer cut short still ends at the terminator the instrument always sends.
            reply = reply[:len(reply) // 2] + self.proto.terminator
        if self._take_fault("garbage_every"):
            reply = bytes(self._rng.randrange(256) for _ in range(12)) + reply
        self._send(reply)

    # -- lifetime -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()
        SIMULATED_PORTS.discard(self.port)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_emulator(protocol: str, power_w: Callable[[float], float] | None = None,
                   interval_s: float = 1.0, volts: float = 5.0, **faults) -> Emulator:
    """Start an emulator of `protocol` on a new pty in a background thread (see the module doc)."""
    return Emulator(protocol, power_w, interval_s, volts, **faults)

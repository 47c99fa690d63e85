"""The energy recorder: reads a meter in the background and integrates what it draws.

    with Recorder("wattsup:/dev/ttyUSB0", idle_s=10, out_dir="runs/x") as rec:
        rec.mark("train")
        ...                       # the work being measured
        rec.mark("epoch", n=3)
    print(rec.summary()["total_energy_j"]); rec.save("runs/x")

* Every sample is timestamped on the host's monotonic clock when it arrives, appended to
  ``samples.csv`` (when ``out_dir`` is given) and flushed at once, so a crash or an unplugged
  meter loses nothing recorded before.
* Energy is the trapezoid integral of power over the run window, from the end of the idle
  window (or the start) to ``stop()``; the window's edges hold the nearest sample's power.
* Idle power is the mean power over the ``idle_s`` window measured before the run starts;
  "energy above idle" subtracts it over the run's duration.
* Gaps are judged against the meter's own interval (the one it announces or was set to, e.g.
  whole seconds on a Watts Up?): no sample for more than ``gap_factor`` intervals. Where records
  carry the meter's own clock (``Sample.t_meter``), the gap is measured on that clock, so a host
  that reads late (records waiting in the port's buffer) makes no false gap; only records the
  meter did not deliver do. Gaps are recorded with their times, and the energy integrated across
  them (a straight line, not a measurement) is reported apart. Unparsable records are counted,
  with their bytes (``bad_bytes``) and examples; a burst of noise or wrong-baud bytes mid-run is
  such bad records, and recording goes on at the next good record. A disconnect (the device vanished) is
  recorded, the port re-opened with exponential backoff, and the run goes on.
* ``energy_kind`` is "measured" for a real meter and "modelled" for a simulated one (its power
  comes from the energy model), and the summary says so in words.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from .base import DISCONNECT_ERRORS, BadRecord, Meter, MeterError, NoData, Sample
from .connect import open_meter

log = logging.getLogger("e2train.meter")

CSV_COLUMNS = ("t_s", "t_monotonic", "watts", "volts", "amps", "raw")
MEASURED_NOTE = "measured with a power meter"
MODELLED_NOTE = "measured through the simulated meter (power from the energy model)"


def integrate_energy(t: np.ndarray, p: np.ndarray, t0: float | None = None, t1: float | None = None) -> float:
    """Trapezoid integral of power p (W) over times t (s) within [t0, t1], in joules.

    The window's edges take the power interpolated between the neighbouring samples (held at
    the first/last sample beyond the data).
    """
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    if t.size == 0:
        return 0.0
    t0 = t[0] if t0 is None else t0
    t1 = t[-1] if t1 is None else t1
    if t1 <= t0:
        return 0.0
    inside = (t > t0) & (t < t1)
    tt = np.concatenate(([t0], t[inside], [t1]))
    pp = np.concatenate(([np.interp(t0, t, p)], p[inside], [np.interp(t1, t, p)]))
    return float(np.sum((pp[1:] + pp[:-1]) * np.diff(tt)) / 2)


def _raw_text(raw: bytes) -> str:
    return raw.decode("ascii", errors="backslashreplace")


class Recorder:
    def __init__(self, meter: str | Meter, *, idle_s: float = 0.0, out_dir: str | os.PathLike | None = None,
                 gap_factor: float = 3.0, energy_kind: str | None = None, energy_note: str | None = None,
                 first_sample_timeout_s: float = 10.0, max_backoff_s: float = 2.0, silence_warn_s: float = 5.0):
        if isinstance(meter, str):
            self.spec, self.meter = meter, None
        else:
            self.spec, self.meter = getattr(meter, "spec", None), meter
        if energy_kind not in (None, "measured", "modelled"):
            raise ValueError(f"energy_kind must be 'measured' or 'modelled', not {energy_kind!r}")
        self.idle_s = float(idle_s)
        self.gap_factor = float(gap_factor)
        self.first_sample_timeout_s = first_sample_timeout_s
        self.max_backoff_s = max_backoff_s
        self.silence_warn_s = silence_warn_s
        self._energy_kind, self._energy_note = energy_kind, energy_note
        self.out_dir = Path(out_dir) if out_dir is not None else None

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self._t: list[float] = []
        self._p: list[float] = []
        self._v: list[float | None] = []
        self._a: list[float | None] = []
        self._raw: list[str] = []
        self.marks: list[tuple[float, str, dict]] = []
        self.events: list[dict] = []
        self.gaps: list[dict] = []
        self.bad_lines = 0
        self.bad_bytes = 0
        self.bad_examples: list[str] = []
        self._last_t_meter: float | None = None
        self._board_offset: float | None = None
        self._read_period = 0.0
        self.disconnects = 0
        self.reconnects = 0
        self.error: str | None = None
        self.idle_w: float | None = None
        self.t0 = time.monotonic()
        self.t_run: float | None = None
        self.t_stop: float | None = None
        self._csv_file = None
        self._csv = None
        self._interval = 1.0
        self._meter_info: dict = {}
        self._protocol = None
        self._simulated = False
        self._reopen_spec: str | None = None
        self._emulator = None
        self._last_reconnect_error: str | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> "Recorder":
        """Open the meter, wait for its first sample, measure idle power; then the run begins."""
        if self.meter is None:
            self.meter = open_meter(self.spec)      # a MeterError here says what to check
        # Re-open the concrete port after a disconnect (for sim: the emulator's pty, not a new one).
        self._reopen_spec = self.meter.spec or self.spec
        self._emulator = getattr(self.meter, "emulator", None)
        self._adopt(self.meter)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._csv_file = open(self.out_dir / "samples.csv", "w", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(CSV_COLUMNS)
            self._csv_file.flush()
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._reader, name="meter-recorder", daemon=True)
        self._thread.start()
        if not self._first.wait(self.first_sample_timeout_s) or self.error:
            why = self.error or (f"no sample from the meter within {self.first_sample_timeout_s:g} s "
                                 f"({self.bad_lines} unreadable records)")
            self.stop()
            raise MeterError(f"{self.spec or self._protocol}: {why}")
        if self.idle_s > 0:
            t_idle = self.mark("idle")
            self._stop.wait(self.idle_s)
            t_end = time.monotonic()
            t, p = self._arrays()
            self.idle_w = integrate_energy(t, p, t_idle, t_end) / (t_end - t_idle)
        self.t_run = self.mark("run")
        return self

    def _adopt(self, meter: Meter) -> None:
        self._interval = meter.interval_s
        lines = getattr(meter, "lines", None)
        self._read_period = float(getattr(lines, "batch_s", 0.0) or 0.0)
        self._meter_info = dict(meter.info)
        self._protocol = meter.protocol
        self._simulated = bool(meter.simulated)

    def stop(self) -> "Recorder":
        if self.t_stop is not None:
            return self
        self.t_stop = time.monotonic()
        self._stop.set()
        with self._lock:
            meter = self.meter
        if meter is not None:
            meter.cancel()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            meter = self.meter
        if meter is not None:
            self._meter_info.update(meter.info)
            meter.close()
        if self._emulator is not None:
            self._emulator.stop()
        with self._lock:
            # Records the reader had not yet taken (read in batches of _read_period) are not lost.
            if self._t and self.t_stop - self._t[-1] > self.gap_factor * max(self._interval, self._read_period):
                self._gap(self._t[-1], self.t_stop, ongoing=True)
            if self._csv_file is not None:
                self._csv_file.close()
                self._csv_file = None
        return self

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def mark(self, name: str, *, t_board: float | None = None, **info) -> float:
        """Mark the start of a phase (train, epoch n=3, upload, ...); returns its time.

        ``t_board``: when the phase began on the board's own clock (an event's ``t``, the board's
        ``time.time()``). The mark is then placed at that moment, not when the event reached the
        host (a slow link delays events by up to seconds): the board clock's offset from this
        host's is estimated as the smallest (arrival - board time) seen, i.e. the fastest event.
        """
        now = time.monotonic()
        t = now
        if t_board is not None:
            wall = time.time()
            offset = wall - t_board
            self._board_offset = offset if self._board_offset is None else min(self._board_offset, offset)
            t = now - max(0.0, offset - self._board_offset)
        with self._lock:
            if self.marks and t < self.marks[-1][0]:
                t = self.marks[-1][0]            # phases stay in order
            self.marks.append((t, name, info))
        return t

    # -- the reader thread ------------------------------------------------------------------------
    def _event(self, kind: str, **detail) -> None:
        self.events.append({"t_s": round(time.monotonic() - self.t0, 6), "kind": kind, **detail})

    def _gap(self, t_start: float, t_end: float, ongoing: bool = False) -> None:
        self.gaps.append({"t_start_s": round(t_start - self.t0, 6), "t_end_s": round(t_end - self.t0, 6),
                          "duration_s": round(t_end - t_start, 6), "ongoing_at_stop": ongoing})

    def _append(self, s: Sample, flush: bool = True) -> None:
        with self._lock:
            limit = self.gap_factor * self._interval
            # (A meter clock that went backwards was reset: judge that step on the host's clock.)
            if s.t_meter is not None and self._last_t_meter is not None and s.t_meter >= self._last_t_meter:
                lost = s.t_meter - self._last_t_meter > limit     # on the meter's clock
            else:
                lost = bool(self._t) and s.t_host_monotonic - self._t[-1] > limit
            if lost and self._t:
                self._gap(self._t[-1], s.t_host_monotonic)
            self._last_t_meter = s.t_meter
            self._t.append(s.t_host_monotonic)
            self._p.append(s.watts)
            self._v.append(s.volts)
            self._a.append(s.amps)
            raw = _raw_text(s.raw)
            self._raw.append(raw)
            if self._csv is not None:
                self._csv.writerow((f"{s.t_host_monotonic - self.t0:.6f}", f"{s.t_host_monotonic:.6f}",
                                    repr(s.watts), "" if s.volts is None else repr(s.volts),
                                    "" if s.amps is None else repr(s.amps), raw))
                if flush:
                    self._csv_file.flush()
        if not self._first.is_set():
            self._first.set()

    def _reader(self) -> None:
        meter = self.meter
        backoff = 0.05
        warned_silence = False
        while not self._stop.is_set():
            if meter is None:
                try:
                    meter = open_meter(self._reopen_spec)
                except (MeterError, *DISCONNECT_ERRORS) as e:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    self._last_reconnect_error = str(e)
                    continue
                with self._lock:
                    self.meter = meter
                self.reconnects += 1
                self._event("reconnect")
                log.warning("meter reconnected")
                backoff = 0.05
            try:
                s = meter.read()
            except BadRecord as e:
                with self._lock:
                    self.bad_lines += 1
                    self.bad_bytes += len(e.raw)
                    if len(self.bad_examples) < 10:
                        self.bad_examples.append(f"{e.why}: {_raw_text(e.raw[:80])}")
                continue
            except NoData:
                last = self._t[-1] if self._t else self.t0
                if not warned_silence and time.monotonic() - last > self.silence_warn_s:
                    warned_silence = True
                    self._event("silent", since_s=round(last - self.t0, 6))
                    log.warning("no sample from the meter for %.1f s", time.monotonic() - last)
                continue
            except MeterError as e:
                self.error = str(e)
                self._event("error", message=str(e))
                log.error("meter: %s", e)
                self._first.set()
                return
            except DISCONNECT_ERRORS as e:
                self.disconnects += 1
                self._event("disconnect", message=str(e))
                log.warning("meter disconnected (%s); re-opening with backoff", e)
                if self._reopen_spec is None:
                    self.error = f"meter disconnected and cannot be re-opened (no spec): {e}"
                    self._first.set()
                    return
                try:
                    meter.close()       # the port only: a sim: emulator keeps running
                except Exception:
                    pass
                meter = None
                self._last_t_meter = None          # a re-opened board may restart its clock
                continue
            warned_silence = False
            self._interval = meter.interval_s      # a csv board announces its interval in its banner
            # Flush once the records that arrived together are all in: one write per read of the port.
            self._append(s, flush=meter.pending() == 0)

    # -- results ----------------------------------------------------------------------------------
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return np.array(self._t, dtype=float), np.array(self._p, dtype=float)

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return [Sample(*x) for x in zip(self._t, self._p, self._v, self._a,
                                            (r.encode() for r in self._raw))]

    def energy_kind(self) -> tuple[str, str]:
        kind = self._energy_kind or ("modelled" if self._simulated else "measured")
        note = self._energy_note or (MODELLED_NOTE if kind == "modelled" else MEASURED_NOTE)
        return kind, note

    def summary(self) -> dict:
        t, p = self._arrays()
        t_end = self.t_stop if self.t_stop is not None else time.monotonic()
        t_run = self.t_run if self.t_run is not None else self.t0
        duration = max(0.0, t_end - t_run)
        total = integrate_energy(t, p, t_run, t_end) if t.size else 0.0
        in_run = (t >= t_run) & (t <= t_end)
        gap_energy = 0.0
        for g in self.gaps:
            gap_energy += integrate_energy(t, p, max(self.t0 + g["t_start_s"], t_run),
                                           min(self.t0 + g["t_end_s"], t_end)) if t.size else 0.0
        with self._lock:
            marks = list(self.marks)
        phases = []
        for k, (tm, name, info) in enumerate(marks):
            te = marks[k + 1][0] if k + 1 < len(marks) else t_end
            e = integrate_energy(t, p, tm, te) if t.size else 0.0
            phases.append({"name": name, **({"info": info} if info else {}),
                           "t_start_s": round(tm - self.t0, 6), "t_end_s": round(te - self.t0, 6),
                           "duration_s": round(te - tm, 6), "energy_j": e,
                           "avg_power_w": e / (te - tm) if te > tm else None})
        kind, note = self.energy_kind()
        with self._lock:
            if self.meter is not None:
                self._meter_info.update(self.meter.info)
        above = None if self.idle_w is None else total - self.idle_w * duration
        return {
            "energy_kind": kind,
            "energy_note": note,
            "meter": self.spec,
            "protocol": self._protocol,
            "meter_info": self._meter_info,
            "total_energy_j": total,
            "energy_above_idle_j": above,
            "idle_power_w": self.idle_w,
            "idle_window_s": self.idle_s,
            "avg_power_w": total / duration if duration > 0 else None,
            "duration_s": duration,
            "samples": int(np.count_nonzero(in_run)),
            "samples_total": int(t.size),
            "expected_interval_s": self._interval,
            "gaps": list(self.gaps),
            "gap_count": len(self.gaps),
            "gap_time_s": sum(g["duration_s"] for g in self.gaps),
            "energy_in_gaps_j": gap_energy,
            "bad_lines": self.bad_lines,
            "bad_bytes": self.bad_bytes,
            "bad_line_examples": list(self.bad_examples),
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "last_reconnect_error": self._last_reconnect_error if self.disconnects > self.reconnects else None,
            "events": list(self.events),
            "phases": phases,
            "error": self.error,
        }

    def save(self, out_dir: str | os.PathLike | None = None, plot: bool = True) -> dict[str, Path]:
        """Write samples.csv (unless already streamed there), summary.json and power.png."""
        d = Path(out_dir) if out_dir is not None else self.out_dir
        if d is None:
            raise ValueError("save() needs a directory (or give out_dir to the Recorder)")
        d.mkdir(parents=True, exist_ok=True)
        paths = {"csv": d / "samples.csv", "summary": d / "summary.json"}
        if self.out_dir is None or d.resolve() != self.out_dir.resolve():
            with self._lock, open(paths["csv"], "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(CSV_COLUMNS)
                for tt, pp, vv, aa, rr in zip(self._t, self._p, self._v, self._a, self._raw):
                    w.writerow((f"{tt - self.t0:.6f}", f"{tt:.6f}", repr(pp), "" if vv is None else repr(vv),
                                "" if aa is None else repr(aa), rr))
        summary = self.summary()
        if plot:
            try:
                from .plot import plot_power
                t, p = self._arrays()
                paths["plot"] = plot_power(t - self.t0, p, summary, d / "power.png")
            except ImportError as e:       # matplotlib is a host extra; the numbers do not need it
                summary["plot_error"] = f"no plot: {e}"
        paths["summary"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return paths


def format_summary(s: dict) -> str:
    """The lines `e2train measure` prints."""
    kind = s["energy_kind"]
    tag = f"({kind}: {s['energy_note']})"

    def j(x):
        return "n/a" if x is None else f"{x:.3f} J"

    def w(x):
        return "n/a" if x is None else f"{x:.3f} W"

    lines = [
        f"energy {tag}",
        f"  total          {j(s['total_energy_j'])}",
        f"  above idle     {j(s['energy_above_idle_j'])}"
        + ("" if s["idle_power_w"] is None else f"  (idle {s['idle_power_w']:.3f} W over {s['idle_window_s']:g} s)"),
        f"  average power  {w(s['avg_power_w'])}",
        f"  duration       {s['duration_s']:.3f} s",
        f"  samples        {s['samples']}",
        f"  gaps           {s['gap_count']} ({s['gap_time_s']:.3f} s, {s['energy_in_gaps_j']:.3f} J interpolated across them)",
        f"  bad lines      {s['bad_lines']} ({s.get('bad_bytes', 0)} bytes)",
        f"  disconnects    {s['disconnects']} (reconnected {s['reconnects']})",
    ]
    if s.get("error"):
        lines.append(f"  meter error    {s['error']}")
    return "\n".join(lines)

"""``e2train measure --meter SPEC [--idle S] [--out DIR] -- COMMAND...``: the energy of any command.

Exit status: the measured command's own, always, when it ran and failed (a meter fault is then
reported on stderr but does not mask the command's code). ``EXIT_METER`` (3) when the meter
could not be started (the command is not run) or when the command succeeded but the meter
failed during it: recording stopped (``error``) or the meter was unplugged and never came back.
``EXIT_USAGE`` (2) for a bad command line. Documented in docs/meters.md.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from .base import MeterError
from .recorder import Recorder, format_summary

EXIT_USAGE = 2
EXIT_METER = 3


def meter_fault(summary: dict) -> str | None:
    """Why the recording of a run cannot be trusted to its end, or None."""
    if summary.get("error"):
        return summary["error"]
    if summary.get("disconnects", 0) > summary.get("reconnects", 0):
        why = summary.get("last_reconnect_error") or "it did not come back"
        return f"the meter was disconnected and not re-opened before the end ({why})"
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--meter", required=True, metavar="SPEC",
                   help="meter spec, e.g. wattsup:/dev/ttyUSB0, wt310:socket://host:port, csv:/dev/ttyACM0, "
                        "sim: (see docs/meters.md)")
    p.add_argument("--idle", type=float, default=0.0, metavar="S",
                   help="seconds of idle power measured before the command starts (default 0: no idle)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where samples.csv, summary.json and power.png go (default runs/measure-<time>)")
    p.add_argument("--gap-factor", type=float, default=3.0,
                   help="a gap is no sample for more than this many meter intervals (default 3)")
    p.add_argument("--no-plot", action="store_true", help="skip power.png")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to measure")


def run(args: argparse.Namespace) -> int:
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("e2train measure: give the command to measure after --, e.g. "
              "e2train measure --meter sim: -- sleep 2", file=sys.stderr)
        return EXIT_USAGE
    if args.idle < 0:
        print("e2train measure: --idle must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or Path("runs") / time.strftime("measure-%Y%m%d-%H%M%S")
    logging.basicConfig(level=logging.WARNING, format="e2train measure: %(message)s")
    rec = Recorder(args.meter, idle_s=args.idle, out_dir=out, gap_factor=args.gap_factor)
    try:
        rec.start()
    except MeterError as e:
        print(f"e2train measure: {e} (the command was not run)", file=sys.stderr)
        return EXIT_METER
    rc = 127
    try:
        rec.mark("command", argv=" ".join(cmd))
        try:
            rc = subprocess.call(cmd)
        except OSError as e:
            print(f"e2train measure: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        rec.mark("done", exit_code=rc)
    finally:
        rec.stop()
        paths = rec.save(out, plot=not args.no_plot)
    s = rec.summary()
    print(format_summary(s))
    print(f"  files          {', '.join(str(p) for p in paths.values())}")
    fault = meter_fault(s)
    if fault:
        print(f"e2train measure: meter fault: {fault}"
              + ("" if rc == 0 else f"; exiting with the command's own code {rc}"), file=sys.stderr)
    if rc != 0:
        return rc
    return EXIT_METER if fault else 0

"""Recorder overhead at 1 kHz: samples/s sustained, lines lost, CPU of the reader thread, jitter.

An emulated INA226 board (the CSV line protocol, with its sample counter `n`) runs in its own
process, as a real meter would be outside this one, and streams 1,000 lines a second on a pty
for DURATION seconds; the Recorder reads, timestamps, integrates and appends every sample to a
flushed CSV as in a real run. Printed, side by side in one run: the reader thread's CPU time
(its own per-thread clock) as a share of one core, for the default read batching (fast streams
are read every 50 ms) and for one read per line (batch=0), lines sent vs samples received,
lines lost according to the counter, and the jitter of the host timestamps.
Goal: nothing lost at 1 kHz and < 2% of a core.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np

from e2train.meter.recorder import Recorder

EMULATOR = """
import sys
from e2train.meter.emulate import start_emulator
em = start_emulator("csv", lambda t: 2.0 + (0.5 if int(t) % 2 else 0.0), interval_s=float(sys.argv[1]))
print(em.spec, flush=True)
sys.stdin.readline()                 # the bench says when the measured window starts
print(em.sent_records, flush=True)
sys.stdin.readline()                 # ... and when it ends
print(em.sent_records, flush=True)
sys.stdin.read()
em.stop()
"""


def measure(rate: float, duration: float, extra: str) -> dict:
    emu = subprocess.Popen([sys.executable, "-c", EMULATOR, str(1.0 / rate)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        spec = emu.stdout.readline().strip() + extra
        with tempfile.TemporaryDirectory() as d:
            rec = Recorder(spec, out_dir=d).start()
            time.sleep(0.3)
            clock = time.pthread_getcpuclockid(rec._thread.ident)
            emu.stdin.write("start\n")
            emu.stdin.flush()
            sent0 = int(emu.stdout.readline())
            cpu0, w0 = time.clock_gettime(clock), time.monotonic()
            time.sleep(duration)
            emu.stdin.write("end\n")
            emu.stdin.flush()
            sent1 = int(emu.stdout.readline())
            cpu1, w1 = time.clock_gettime(clock), time.monotonic()
            time.sleep(0.2)                  # the last lines in flight
            rec.stop()
            s = rec.summary()
            t = np.array([x.t_host_monotonic for x in rec.samples])
    finally:
        emu.stdin.close()
        emu.wait(timeout=10)
    inside = t[(t >= w0) & (t <= w1)]
    dt = np.diff(inside)
    return {"wall": w1 - w0, "sent": sent1 - sent0, "received": inside.size, "cpu": cpu1 - cpu0,
            "missed": s["meter_info"].get("missed_lines", 0), "bad": s["bad_lines"], "gaps": s["gap_count"],
            "jitter_ms": 1e3 * dt.std(), "mean_ms": 1e3 * dt.mean(), "max_ms": 1e3 * dt.max(),
            "energy": f"{s['total_energy_j']:.3f} J {s['energy_kind']} ({s['energy_note']})"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="samples per second (default 1000)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per configuration (default 5)")
    args = ap.parse_args()
    rows = [("default (50 ms batches)", measure(args.rate, args.duration, "")),
            ("one read per line", measure(args.rate, args.duration, "&batch=0"))]
    print(f"meter recorder at {args.rate:g} Hz, {args.duration:g} s each (emulated INA226 in another process, "
          f"over a pty; CSV flushed per read)")
    print(f"  {'reads':24} {'sent':>6} {'recv':>6} {'lines/s':>8} {'lost':>5} {'bad':>4} {'gaps':>5} "
          f"{'CPU % core':>10} {'us/sample':>9} {'mean ms':>8} {'jitter ms':>9} {'max ms':>7}")
    for name, r in rows:
        print(f"  {name:24} {r['sent']:6d} {r['received']:6d} {r['received'] / r['wall']:8.1f} {r['missed']:5d} "
              f"{r['bad']:4d} {r['gaps']:5d} {100 * r['cpu'] / r['wall']:10.2f} "
              f"{1e6 * r['cpu'] / max(1, r['received']):9.1f} {r['mean_ms']:8.3f} {r['jitter_ms']:9.3f} {r['max_ms']:7.3f}")
    for name, r in rows:
        if r["sent"] < 0.9 * args.rate * r["wall"]:
            print(f"  note: the emulator sent only {r['sent'] / r['wall']:.0f} of {args.rate:g} lines/s in "
                  f"'{name}': this machine is too busy to hold the rate, so that row is not a {args.rate:g} Hz result")
    base, one = rows[0][1], rows[1][1]
    print(f"  CPU ratio, one read per line / batched: {one['cpu'] / base['cpu']:.2f}x   (goal: batched < 2% of a core, "
          f"nothing lost)")
    print(f"  energy: {base['energy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

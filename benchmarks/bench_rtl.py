"""RTL PSG engine: simulated throughput and simulator speed, Icarus vs Verilator, one run.

Builds fpga/rtl/psg_engine.v (LANES lanes, optimised Verilator build) on both simulators
and streams the same tiles through each (tests/cocotb/tb_psg_throughput.py):
  constant  s_valid held high, constant data: the simulator runs on its own (its speed)
  random    new random data from Python every cycle: cocotb-bound, as the tests run
Printed side by side: pairs per lane per cycle (goal 1.0 at full stream rate; a cycle count
from the simulation, identical on both simulators), simulated cycles per wall-clock second,
and Verilator's speed as a multiple of Icarus's. Results are checked against the golden model.

    python benchmarks/bench_rtl.py [--lanes 8] [--beats 10000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cocotb"))   # the bench modules and simulator plumbing

from rtl_sims import SIMS, SimulatorMissing, build, run_test  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--beats", type=int, default=10000, help="beats of the constant tile (random: a tenth)")
    args = ap.parse_args(argv)
    if not 1 <= args.lanes <= 32 or not 1 <= args.beats < 1 << 24:
        ap.error("lanes must be 1..32 and beats 1..2^24-1")
    params = {"LANES": args.lanes, "MAX_BEATS_LOG2": 24}
    build_root = ROOT / "build" / "bench-rtl"
    rows, build_s = [], {}
    for sim in SIMS:
        try:
            t0 = time.monotonic()
            bdir = build(sim, "psg_engine", params, build_root, optimise=True)
            build_s[sim] = time.monotonic() - t0
        except SimulatorMissing as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.jsonl"
            env = {"PSG_LANES": str(args.lanes), "PSG_SIM": sim, "PSG_BENCH_BEATS": str(args.beats),
                   "PSG_BENCH_OUT": str(out)}
            for test in ("stream_constant", "stream_random"):
                problems = run_test(sim, "psg_engine", params, bdir, "tb_psg_throughput", test, Path(tmp), env)
                if problems:
                    print(f"error: {sim} {test} failed:\n" + "\n".join(problems), file=sys.stderr)
                    return 1
            rows += [json.loads(line) for line in out.read_text().splitlines()]

    print(f"PSG engine, {args.lanes} lanes, simulated (cycle counts from the RTL; wall time of this machine)")
    print(f"build time (s, cached builds are near 0): " + ", ".join(f"{s} {t:.1f}" for s, t in build_s.items()))
    print(f"{'driver':9} {'sim':10} {'beats':>7} {'cycles':>7} {'pairs/lane/cycle':>17} {'pairs/cycle':>12} "
          f"{'cycles/s':>10}")
    speed = {}
    for r in rows:
        per_lane = r["beats"] / r["cycles"]
        cps = r["cycles"] / r["seconds"]
        speed[(r["driver"], r["sim"])] = cps
        print(f"{r['driver']:9} {r['sim']:10} {r['beats']:>7} {r['cycles']:>7} {per_lane:>17.4f} "
              f"{per_lane * r['lanes']:>12.2f} {cps:>10.0f}")
    for driver in ("constant", "random"):
        if (driver, "icarus") in speed and (driver, "verilator") in speed:
            print(f"{driver}: Verilator runs {speed[(driver, 'verilator')] / speed[(driver, 'icarus')]:.1f}x "
                  f"the cycles per second of Icarus")
    print("goal: 1 pair per lane per cycle at full stream rate (the remainder is the fixed start/drain latency)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

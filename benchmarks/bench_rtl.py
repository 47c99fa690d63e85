"""RTL PSG datapath: simulated throughput and simulator speed, Icarus vs Verilator, one run.

Builds, on both simulators (optimised Verilator builds), the kernel's lane array
fpga/rtl/psg_lanes.v (--array-lanes lanes, --exact-lanes of them exact, the kernel's 72 + 8
slot window), and streams the same data through it (tests/cocotb/tb_psg_lanes_throughput.py):
  constant  s_valid held high, constant data: the simulator runs on its own (its speed)
  random    new random data from Python every cycle: cocotb-bound, as the tests run
Printed side by side: beats per cycle (goal 1.0 at full stream rate: one beat per clock; a
cycle count from the simulation, identical on both simulators), pairs (lane MACs) per cycle,
simulated cycles per wall-clock second, and Verilator's speed as a multiple of Icarus's.
Results are checked against the golden model.

    python benchmarks/bench_rtl.py [--array-lanes 192] [--exact-lanes 48] [--array-beats 1000]
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


def run_top(top: str, module: str, tests: tuple, params: dict, env: dict, build_s: dict) -> list[dict] | None:
    build_root = ROOT / "build" / "bench-rtl"
    rows = []
    for sim in SIMS:
        try:
            t0 = time.monotonic()
            bdir = build(sim, top, params, build_root, optimise=True)
            build_s[(top, sim)] = time.monotonic() - t0
        except SimulatorMissing as e:
            print(f"error: {e}", file=sys.stderr)
            return None
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.jsonl"
            for test in tests:
                problems = run_test(sim, top, params, bdir, module, test, Path(tmp),
                                    {**env, "PSG_SIM": sim, "PSG_BENCH_OUT": str(out)})
                if problems:
                    print(f"error: {sim} {top} {test} failed:\n" + "\n".join(problems), file=sys.stderr)
                    return None
            rows += [{"top": top, **json.loads(line)} for line in out.read_text().splitlines()]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array-lanes", type=int, default=192, help="lane array lanes (the kernel's: 192)")
    ap.add_argument("--exact-lanes", type=int, default=48, help="lane array lanes with a DSP (the kernel's: 48)")
    # Icarus simulates the 192-lane array at a few dozen cycles per second: a short stream.
    ap.add_argument("--array-beats", type=int, default=1000, help="beats of the constant stream (random: a tenth)")
    args = ap.parse_args(argv)
    if not 1 <= args.array_beats < 1 << 24:
        ap.error("--array-beats must be in 1..2^24-1")
    if not 1 <= args.exact_lanes <= args.array_lanes <= 1024:
        ap.error("need 1 <= --exact-lanes <= --array-lanes <= 1024")
    build_s: dict = {}
    array_params = {"LANES": args.array_lanes, "EXACT_LANES": args.exact_lanes, "XSLOTS": 72, "GSLOTS": 8}
    array = run_top("psg_lanes", "tb_psg_lanes_throughput", ("lanes_constant", "lanes_random"), array_params,
                    {**{f"PSG_{k}": str(v) for k, v in array_params.items()}, "PSG_BENCH_BEATS": str(args.array_beats)},
                    build_s)
    if array is None:
        return 1

    print(f"PSG RTL, simulated: lane array {args.array_lanes} lanes "
          f"({args.exact_lanes} exact, every lane on, both paths). Cycle counts from the RTL; wall time of this machine")
    print("build time (s, cached builds are near 0): " + ", ".join(f"{t} {s} {v:.1f}" for (t, s), v in build_s.items()))
    print(f"{'top':11} {'driver':9} {'sim':10} {'lanes':>5} {'beats':>7} {'cycles':>7} {'beats/cycle':>12} "
          f"{'pairs/cycle':>12} {'cycles/s':>10}")
    speed = {}
    for r in array:
        per_cycle = r["beats"] / r["cycles"]
        cps = r["cycles"] / r["seconds"]
        speed[(r["top"], r["driver"], r["sim"])] = cps
        print(f"{r['top']:11} {r['driver']:9} {r['sim']:10} {r['lanes']:>5} {r['beats']:>7} {r['cycles']:>7} "
              f"{per_cycle:>12.4f} {per_cycle * r['lanes']:>12.2f} {cps:>10.0f}")
    for top in ("psg_lanes",):
        for driver in ("constant", "random"):
            if (top, driver, "icarus") in speed and (top, driver, "verilator") in speed:
                print(f"{top} {driver}: Verilator runs {speed[(top, driver, 'verilator')] / speed[(top, driver, 'icarus')]:.1f}x "
                      f"the cycles per second of Icarus")
    print("goal: 1 beat per cycle at full stream rate, i.e. every lane one pair per cycle (the remainder is the "
          "fixed start/drain latency)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The torch reference's accuracy/energy acceptance on digits, from one command.

For each model and seed: fp32 for 40 epochs (``--preset fp32``) and E2-Train for 60 base
epochs (``--preset e2train``: SMD at energy ratio 0.67 turns them into 80 with about half
the batches dropped, so about as many batches are computed as fp32's 40 epochs; SLU and
PSG cut the work inside them). A seed passes when E2-Train's final test accuracy is within
1.5 points of its fp32 run's and its modelled training energy is at most 25% of the fp32
run's. Prints one line per seed as it finishes and a table, writes the results as JSON.
Runs are spread over ``--jobs`` processes (one torch thread each). Energy is modelled
(``core.energy``), never measured.

Usage: python benchmarks/accept_torch.py [--models resnet8:5,resnet14:3] [--jobs 2]
       [--out runs/accept-torch.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

GAP_POINTS, ENERGY_RATIO = 1.5, 0.25
RUNS = {"fp32": dict(preset="fp32", epochs=40), "e2train": dict(preset="e2train", epochs=60)}


def config(job: tuple[str, str, int]):
    """The run's TrainConfig (checked: a bad model name ends here, before any process starts)."""
    from e2train.torch.cli import PRESETS
    from e2train.torch.trainer import TrainConfig
    kind, model, seed = job
    spec = RUNS[kind]
    return TrainConfig.from_dict({**PRESETS[spec["preset"]], "model": model, "epochs": spec["epochs"],
                                  "seed": seed, "threads": 1, "progress": False})


def run_one(job: tuple[str, str, int]) -> dict:
    import torch
    from e2train.torch.trainer import train
    kind, model, seed = job
    torch.set_num_threads(1)
    cfg = config(job)
    t = time.time()
    res = train(cfg)
    pf = [r["predicted_frac"] for r in res.records if r.get("predicted_frac") is not None]
    return {"kind": kind, "model": model, "seed": seed, "test_acc": res.final_test_acc,
            "energy_j": res.energy_j, "energy_kind": res.energy_kind, "energy_platform": res.energy_platform,
            "energy_parts_j": res.energy_parts_j, "wall_s": round(time.time() - t, 1),
            "predicted_frac": sum(pf) / len(pf) if pf else None,
            "exec_ratio": sum(r["exec_ratio"] for r in res.records) / len(res.records)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8:5,resnet14:3", help="model:seeds,... (seeds 0..N-1)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/accept-torch.json")
    args = ap.parse_args()
    from e2train.core.energy import BASELINE_FP32, PARTS, ratio_parts
    from e2train.torch.trainer import ConfigError
    try:
        plan = [(m, int(n)) for m, n in (item.split(":") for item in args.models.split(","))]
    except ValueError:
        sys.exit(f"--models: expected model:seeds,... (e.g. resnet8:5), got {args.models!r}")
    if args.jobs < 1 or any(n < 1 for _, n in plan):
        sys.exit("--jobs and every model's seed count must be at least 1")
    jobs = [(kind, m, s) for m, n in plan for s in range(n) for kind in RUNS]
    try:
        for job in jobs:
            config(job).validate()
    except ConfigError as e:
        sys.exit(f"accept_torch: {e}")
    # longest first, so two workers finish together
    jobs.sort(key=lambda j: (j[1] != "resnet14", j[0] != "e2train"))
    results: dict = {}
    print(f"{len(jobs)} runs on {args.jobs} processes (one torch thread each)", flush=True)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap_unordered(run_one, jobs):
            results[(r["kind"], r["model"], r["seed"])] = r
            print(f"  {r['model']:9s} seed {r['seed']} {r['kind']:8s} {r['test_acc']:6.2f}%  "
                  f"{r['energy_j']:.4g} J ({r['energy_kind']})  {r['wall_s']:.0f} s", flush=True)
    rows, ok = [], True
    # the fp32 run is the 32-bit SGD baseline; both are priced on the torch reference's platform
    print(f"\n| model | seed | fp32 | E2-Train | gap (points) | energy / {BASELINE_FP32} (modelled, horowitz45) "
          "| of which compute / on-chip / DRAM / static | predicted | blocks run | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, n in plan:
        for s in range(n):
            f, e = results[("fp32", m, s)], results[("e2train", m, s)]
            gap, ratio = f["test_acc"] - e["test_acc"], e["energy_j"] / f["energy_j"]
            parts = ratio_parts(*({"platform": r["energy_platform"], "parts_j": r["energy_parts_j"],
                                   "total_j": r["energy_j"]} for r in (e, f)))
            passed = gap <= GAP_POINTS and ratio <= ENERGY_RATIO
            ok &= passed
            rows.append({"model": m, "seed": s, "fp32": f, "e2train": e, "gap_points": gap,
                         "energy_ratio": ratio, "energy_ratio_parts": parts, "baseline": BASELINE_FP32,
                         "passed": passed})
            print(f"| {m} | {s} | {f['test_acc']:.2f}% | {e['test_acc']:.2f}% | {gap:.2f} | {ratio:.1%} | "
                  f"{' / '.join(f'{parts[k]:.1%}' for k in PARTS)} | "
                  f"{e['predicted_frac']:.1%} | {e['exec_ratio']:.2f} | {'pass' if passed else 'FAIL'} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"criteria": {"gap_points_max": GAP_POINTS, "energy_ratio_max": ENERGY_RATIO,
                                            "energy": "modelled", "platform": "horowitz45",
                                            "baseline": BASELINE_FP32}, "rows": rows, "all_passed": ok}, indent=1))
    print(f"\n{'every seed passed' if ok else 'NOT every seed passed'} (within {GAP_POINTS} points of fp32 at "
          f"<= {ENERGY_RATIO:.0%} of its modelled energy); results in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

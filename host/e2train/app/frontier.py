"""`e2train frontier`: E²-Train's modelled energy against its accuracy, over settings and seeds.

One baseline run per seed (the 8-bit fabric baseline of the demo's model) and one E²-Train run
per seed and setting, on the device trainer (C simulation of every kernel, as `make demo` runs
them, without the link). Each setting gets its accuracy change on every seed, the worst of
them, and its modelled energy over both named baselines (core.energy); the table marks which
settings keep every seed within ``--max-drop`` points and which reach ``--goal``, and a plot
shows the trade-off (each seed a point, each setting's mean a marker).

The default settings are SMD's energy budget, the knob the paper sweeps (Sec. 4.2, Fig. 3a):
0.67 (epochs x 4/3 on half the batches: the paper's choice and the demo's), 0.58, and 0.5
(the plain epochs: "SMD can directly half the training cost").

``--holdout F`` chooses settings without the test set: every run trains on the training set
less a held-out fraction F (one seeded split, the same for every run) and reports its accuracy
on that held-out part; the test set is not read. Confirm the chosen setting on the test set
with a second sweep without ``--holdout``.

Every run is saved as it ends (``<out>/runs/<name>-s<seed>.json``): an interrupted sweep
rerun with the same ``--out`` trains only what is missing (a run whose settings, data, backend
or model differ is trained again: the model is a hash of the trainer's and the pricing's source,
``model_fingerprint``, so a run priced by an older model is not mixed into a new table). Energy
is modelled, never measured.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..core.train_keys import ConfigError

DEFAULT_SETTINGS = {
    "smd-budget-0.67": {"smd_energy_ratio": 0.67},
    "smd-budget-0.58": {"smd_energy_ratio": 0.58},
    "smd-budget-0.50": {"smd_energy_ratio": 0.5},
}
BASELINE = "baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=JSON",
                   help="an E²-Train setting over the demo's (repeatable; default: SMD budgets 0.67, 0.58, 0.5)")
    p.add_argument("--config", default="{}", metavar="JSON", help="settings shared by every run, baseline included")
    p.add_argument("--data", default="digits", help="data set (e2train.data.datasets)")
    p.add_argument("--data-dir", default=None, help="where a data set other than digits lies (CIFAR: the user's files)")
    p.add_argument("--backend", choices=("csim", "golden"), default="csim",
                   help="the kernels' C simulation, or the numpy golden model (same bits, slower)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once")
    p.add_argument("--max-drop", type=float, default=1.5, help="accuracy points E²-Train may lose on any seed")
    p.add_argument("--goal", type=float, default=0.25, help="energy ratio to the 8-bit fabric baseline to reach")
    p.add_argument("--arm-rates", default="4e8", metavar="OPS,…",
                   help="ARM rates (ops/s) to re-price every run at, beside the config's and the ARM at no cost")
    p.add_argument("--holdout", type=float, default=0.0, metavar="F",
                   help="hold out this fraction of the training set and report accuracy on it instead of the "
                        "test set (to choose settings; 0: the test set)")
    p.add_argument("--out", default=None, help="directory (default runs/frontier-<time>); an existing one resumes")


def _json_arg(text: str, what: str) -> dict:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} is not valid JSON ({e}): give an object such as '{{\"smd_p\": 0.6}}'") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a JSON object of trainer settings, not {type(d).__name__}")
    return d


def parse_settings(items: list[str]) -> dict[str, dict]:
    if not items:
        return dict(DEFAULT_SETTINGS)
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--setting {item!r} is not NAME=JSON: e.g. --setting 'p06={{\"smd_p\": 0.6}}'")
        if name.strip() == BASELINE or name.strip() in out:
            raise ConfigError(f"--setting name {name.strip()!r} is taken: give each setting its own name")
        out[name.strip()] = _json_arg(text, f"--setting {name.strip()}")
    return out


def run_configs(shared: dict, settings: dict[str, dict], seeds: list[int]) -> dict[tuple[str, int], dict]:
    """Every run's full trainer config, validated before anything trains."""
    from ..device.train_config import TrainConfig
    from ..device.trainer import BASELINE_SWITCHES, COMPARE_BASE
    runs = {}
    for s in seeds:
        runs[(BASELINE, s)] = dict(COMPARE_BASE, **shared, **BASELINE_SWITCHES, seed=s)
        for name, over in settings.items():
            runs[(name, s)] = dict(COMPARE_BASE, **shared, **over, seed=s)
    for (name, s), cfg in runs.items():
        try:
            TrainConfig.from_dict(cfg)
        except ConfigError as e:
            raise ConfigError(f"setting {name}: {e}") from None
    return runs


def model_fingerprint() -> str:
    """A hash of what a saved run's figures come from: the source of e2train.core (the kernels'
    bindings, the performance and energy models) and e2train.device (the trainer), and the C
    simulation library the csim backend runs, where it is built."""
    import hashlib
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("core", "device"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    try:
        from ..core import csim
        lib = csim.library_path()
        if lib.exists():
            h.update(lib.read_bytes())
    except (ImportError, AttributeError, OSError):
        pass
    return h.hexdigest()[:16]


HOLDOUT_SPLIT_SEED = 0      # one split for every run and seed: the settings compare on the same images


def run_data(data: str, data_dir: str | None, holdout: float = 0.0) -> tuple:
    """(x_train, y_train, x_eval, y_eval): the test set as the evaluation set, or with ``holdout``
    a held-out part of the training set (datasets.holdout_indices) and the rest to train on."""
    from ..data import datasets
    xtr, ytr, xte, yte = datasets.load(data, data_dir, pixels=True)     # as `e2train train` uploads it
    if not holdout:
        return xtr, ytr, xte, yte
    keep, held = datasets.holdout_indices(len(ytr), holdout, HOLDOUT_SPLIT_SEED)
    return xtr[keep], ytr[keep], xtr[held], ytr[held]


def train_one(cfg: dict, data: str, data_dir: str | None, backend: str, holdout: float = 0.0) -> dict:
    """One run on the device trainer; what the table needs (the work tally prices it)."""
    from ..device.trainer import Trainer, _backend
    from ..device.step_profile import slu_floor_seconds
    r = Trainer(cfg, run_data(data, data_dir, holdout), _backend(backend)).run()
    return {"config": cfg, "test_acc": r["test_acc"], "work": r["work"], "skips": r["skips"],
            "critical_path_s": r["modelled"]["critical_path_seconds"], "energy_j": r["modelled"]["energy_j"],
            "slu_floor_s": slu_floor_seconds(r)}


def summarise(results: dict[tuple[str, int], dict], settings: list[str], seeds: list[int],
              max_drop: float, goal: float, arm_rates: tuple[float, ...] = ()) -> list[dict]:
    """Per setting: accuracy change per seed, energy ratios to both baselines per seed, their
    means and worst cases, and whether the setting holds the accuracy bound and reaches the goal.
    Beside them the mean ratio with both runs re-priced at each of ``arm_rates`` and with the ARM
    at no cost (core.energy.arm_rate_table: each step's critical path recomputed; nothing
    re-trained): how much of the gap is the assumed ARM rate's."""
    from ..bench.stats import t_interval
    from ..core import energy
    from ..core.work import Work
    from ..device.trainer import PLATFORM
    base = {s: results[(BASELINE, s)] for s in seeds}
    base_work = {s: Work.from_dict(b["work"]) for s, b in base.items()}
    priced_base = {s: energy.price(w, PLATFORM) for s, w in base_work.items()}
    priced_sgd = {s: energy.price(energy.as_32bit_sgd(w), PLATFORM) for s, w in base_work.items()}
    rates = [*arm_rates, float("inf")]
    rows = []
    for name in settings:
        deltas, r8, r32, at_rates, floors = [], [], [], [], []
        for s in seeds:
            r = results[(name, s)]
            # the critical path with SLU skipping every gated block at no cost, over the baseline's
            floors.append(r["slu_floor_s"] / base[s]["critical_path_s"] if "slu_floor_s" in r else None)
            work = Work.from_dict(r["work"])
            e = energy.price(work, PLATFORM)
            deltas.append(100.0 * (r["test_acc"] - base[s]["test_acc"]))
            r8.append(e["total_j"] / priced_base[s]["total_j"])
            r32.append(e["total_j"] / priced_sgd[s]["total_j"])
            table = energy.arm_rate_table(work, base_work[s], rates=rates, on=PLATFORM)
            at_rates.append([row["ratio_to_8bit"] for row in table])
        n = len(seeds)
        by_rate = [sum(a[i] for a in at_rates) / n for i in range(len(arm_rates) + 1)]
        ci = t_interval(deltas)               # across seeds (bench.stats: Student's t, the harness's rule)
        rows.append({"setting": name, "deltas": deltas, "worst_delta": min(deltas), "mean_delta": sum(deltas) / n,
                     "mean_delta_ci95": None if ci.n < 2 else ci.half,     # None: one seed, no interval
                     "ratio_8bit": r8, "mean_ratio_8bit": sum(r8) / n, "max_ratio_8bit": max(r8),
                     "mean_ratio_fp32": sum(r32) / n,
                     "mean_ratio_8bit_at_arm_rates": dict(zip(map(str, arm_rates), by_rate[:-1])),
                     "mean_ratio_8bit_arm_free": by_rate[-1],
                     "mean_slu_floor": None if None in floors else sum(floors) / n,
                     "within_bound": min(deltas) >= -max_drop - 1e-9, "reaches_goal": sum(r8) / n <= goal})
    return rows


def table_md(rows: list[dict], seeds: list[int], max_drop: float, goal: float) -> str:
    rates = list(rows[0]["mean_ratio_8bit_at_arm_rates"]) if rows else []
    lines = [f"| setting | accuracy change per seed ({', '.join(map(str, seeds))}; points) | worst | "
             f"mean ratio to the 8-bit fabric baseline (modelled; max) | mean ratio to 32-bit SGD (modelled) | every seed within "
             f"{max_drop:g} points | mean ratio ≤ {goal:g} | "
             + "".join(f"mean ratio, ARM at {float(r):.3g} ops/s | " for r in rates) + "mean ratio, ARM at no cost | "
             "critical-path floor, SLU skipping every gated block at no cost | "
             "mean accuracy change, 95% t-interval over the seeds (points) |",
             "|---|---|---|---|---|---|---|" + "---|" * (len(rates) + 3)]
    for r in rows:
        lines.append(f"| {r['setting']} | {' / '.join(f'{d:+.2f}' for d in r['deltas'])} | {r['worst_delta']:+.2f} | "
                     f"{r['mean_ratio_8bit']:.3f} ({r['max_ratio_8bit']:.3f}) | {r['mean_ratio_fp32']:.3f} | "
                     f"{'yes' if r['within_bound'] else 'no'} | {'yes' if r['reaches_goal'] else 'no'} | "
                     + "".join(f"{v:.3f} | " for v in r["mean_ratio_8bit_at_arm_rates"].values())
                     + f"{r['mean_ratio_8bit_arm_free']:.3f} | "
                     + ("-" if r.get("mean_slu_floor") is None else f"{r['mean_slu_floor']:.3f}") + " | "
                     + _change_ci(r) + " |")
    return "\n".join(lines)


def _change_ci(row: dict) -> str:
    half = row.get("mean_delta_ci95")
    if half is None:
        return f"{row['mean_delta']:+.2f} (n={len(row['deltas'])})"
    return f"{row['mean_delta']:+.2f} ± {half:.2f}"


def plot(rows: list[dict], path: Path, max_drop: float, goal: float, evaluated: str = "test") -> None:
    """Accuracy change against modelled energy ratio: a point per seed, a marker per setting's
    mean; the region that meets both bounds shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [x for r in rows for x in r["ratio_8bit"]]
    ys = [y for r in rows for y in r["deltas"]]
    lo, hi = min(xs + [goal]) - 0.02, max(xs + [goal]) + 0.02
    top = max(ys + [0.0]) + 0.5
    ax.fill_between([lo, goal], -max_drop, top, color="tab:green", alpha=0.08, lw=0)
    ax.set_ylim(min(ys + [-max_drop]) - 0.5, top)
    ax.axhline(-max_drop, color="gray", lw=0.8, ls="--")
    ax.axvline(goal, color="gray", lw=0.8, ls="--")
    for i, r in enumerate(rows):
        c = f"C{i}"
        ax.scatter(r["ratio_8bit"], r["deltas"], color=c, s=14, alpha=0.6)
        ax.scatter([r["mean_ratio_8bit"]], [r["mean_delta"]], color=c, marker="D", s=50, label=r["setting"])
    ax.set_xlim(lo, hi)
    ax.set_xlabel("E²-Train energy / 8-bit fabric baseline energy (modelled, xc7z020)")
    ax.set_ylabel(f"{evaluated} accuracy change (points)")
    ax.set_title(f"goal: ratio ≤ {goal:g} with every seed above −{max_drop:g} points (dashed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise ConfigError("--seeds is empty: give at least one seed, e.g. --seeds 0")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs} must be at least 1")
    try:
        arm_rates = tuple(float(v) for v in str(args.arm_rates).split(",") if v.strip())
    except ValueError:
        arm_rates = (0.0,)
    if any(not 0 < r < float("inf") for r in arm_rates):
        raise ConfigError(f"--arm-rates {args.arm_rates!r} is not a comma-separated list of positive ops/s, e.g. 4e8,1e9")
    settings = parse_settings(args.setting)
    runs = run_configs(_json_arg(args.config, "--config"), settings, seeds)
    from ..data import datasets
    if not 0.0 <= args.holdout < 1.0:
        raise ConfigError(f"--holdout {args.holdout:g} is not a fraction in [0, 1): e.g. --holdout 0.25")
    datasets.load(args.data, args.data_dir)      # a data set that is not there: one line before anything starts
    out = Path(args.out or time.strftime("runs/frontier-%Y%m%d-%H%M%S"))
    (out / "runs").mkdir(parents=True, exist_ok=True)
    results, todo, stale = {}, {}, 0
    source = {"data": args.data, "data_dir": args.data_dir, "backend": args.backend, "model": model_fingerprint(),
              "holdout": args.holdout}
    for key, cfg in runs.items():
        f = out / "runs" / f"{key[0]}-s{key[1]}.json"
        if f.exists():
            try:
                saved = json.loads(f.read_text())
            except (OSError, ValueError):
                saved = {}                    # a run cut short while saving: train it again
            if saved.get("config") == json.loads(json.dumps(cfg)):       # the config as saved (JSON)
                if saved.get("source") == source:
                    results[key] = saved
                    continue
                # the same run, priced by another model
                stale += {**(saved.get("source") or {}), "model": None} == {**source, "model": None}
        todo[key] = cfg
    evaluated = f"held-out {args.holdout:g}" if args.holdout else "test"
    t0 = time.monotonic()
    print(f"frontier: {len(runs)} runs, {len(results)} already in {out}/runs, {len(todo)} to train "
          f"({args.jobs} at once)" + (f"; {stale} of them saved under another model version (the trainer's or "
                                      "the pricing's source changed): trained again" if stale else ""),
          file=sys.stderr)
    with ProcessPoolExecutor(max(1, min(args.jobs, len(todo) or 1))) as ex:
        futs = {ex.submit(train_one, cfg, args.data, args.data_dir, args.backend, args.holdout): key
                for key, cfg in todo.items()}
        for i, fut in enumerate(as_completed(futs), 1):
            key = futs[fut]
            results[key] = dict(fut.result(), source=source)
            path = out / "runs" / f"{key[0]}-s{key[1]}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results[key], default=float))
            tmp.replace(path)
            print(f"frontier: [{i}/{len(todo)}] {key[0]} seed {key[1]}: {evaluated} acc "
                  f"{100 * results[key]['test_acc']:.2f}% ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    rows = summarise(results, list(settings), seeds, args.max_drop, args.goal, arm_rates)
    table = table_md(rows, seeds, args.max_drop, args.goal)
    print(table)
    head = ["# E²-Train's energy/accuracy frontier on the simulated board", "",
            "Energy modelled (xc7z020, core.energy; ARM at the config's rate, and re-priced at the rates named "
            "and at no cost), accuracy on "
            + (f"the held-out {args.holdout:g} of the training set (validation: the runs train on the rest and the "
               "test set is not read)" if args.holdout else "the test set")
            + "; each E²-Train run against the 8-bit fabric baseline of the same seed.", "",
            f"- shared config: `{args.config}`"]
    head += [f"- {name}: `{json.dumps(over, sort_keys=True)}`" for name, over in settings.items()]
    (out / "summary.md").write_text("\n".join(head + ["", table, ""]))
    (out / "frontier.json").write_text(json.dumps({"seeds": seeds, "settings": settings, "holdout": args.holdout,
                                                   "rows": rows}, indent=1))
    plot(rows, out / "frontier.png", args.max_drop, args.goal, evaluated)
    print(f"frontier: {out}/summary.md, frontier.png ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return 0

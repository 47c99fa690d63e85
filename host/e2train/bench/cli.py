"""`e2train bench`: run a grid of methods x budgets x seeds with controls, and report it.

    e2train bench --preset e2train                     # the E2-Train grid on digits
    e2train bench --methods fp32,smd --budgets 5,10 --seeds 0-2
    e2train bench --report-only runs/bench/runs.csv    # re-analyse a finished grid
    e2train bench --compare runs/demo/e2train runs/torch   # a device run beside a torch run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .grid import GridError, GridSpec, parse_list, parse_seeds, parse_targets
from .presets import PRESETS
from .records import Budget


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="a named grid; " + "; ".join(f"{k}: {v['about']}" for k, v in PRESETS.items())
                   + ". Explicit options below override the preset's.")
    p.add_argument("--methods", help="comma-separated registered method names (see --list)")
    p.add_argument("--budgets", help="comma-separated budgets: epochs ('10' or '10ep') or modelled "
                                      "energy in joules ('50J')")
    p.add_argument("--seeds", help="'0,1,2' or '0-2' (default 0,1)")
    p.add_argument("--targets", help="accuracy targets for time/energy-to-accuracy, e.g. '0.9,0.95' "
                                      "or '90,95' (default 0.9,0.95)")
    p.add_argument("--dataset", help="digits (default) or cifar10 (where its files exist)")
    p.add_argument("--model", help="model name, e.g. resnet8 (default)")
    p.add_argument("--baseline", help="the standard training the fewer-iterations controls run "
                                       "(default fp32)")
    p.add_argument("--no-random-controls", action="store_true", help="skip the random-skipping controls")
    p.add_argument("--no-fewer-iters", action="store_true", help="skip the fewer-iterations controls")
    p.add_argument("--lr-grid", help="also run each fewer-iterations control at these base learning rates, "
                                     "e.g. '0.1,0.12,0.14,0.16,0.18,0.2' (E2-Train's Fig. 3b control)")
    p.add_argument("--ci-level", type=float, default=0.95, help="confidence level across seeds (default 0.95)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (default: the trainer's, 64)")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--limit-train", type=int, metavar="N",
                   help="train on the first N training samples only (quick looks; say so when reporting)")
    p.add_argument("--data-dir", help="where CIFAR's python-format files are (default $E2TRAIN_DATA)")
    p.add_argument("--out", type=Path, help="output directory (default runs/bench-<preset>-<time>)")
    p.add_argument("--report-only", type=Path, metavar="RUNS_CSV",
                   help="re-write summary.md and the plots from an existing runs.csv; trains nothing")
    p.add_argument("--compare", nargs="+", type=Path, metavar="RUN",
                   help="print these runs side by side (run records or run directories of `e2train train` and "
                        "`e2train torch-train --out`, docs/records.md); with --out, also compare.md and compare.png "
                        "there; trains nothing")
    p.add_argument("--list", action="store_true", help="list registered methods, data sets and models")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    # every job as a distributed run: torch-train's own flags (docs/harness.md, distributed grids)
    from ..torch.distributed.cli import add_arguments as add_distributed
    add_distributed(p)


def build_spec(args: argparse.Namespace) -> GridSpec:
    """The grid from a preset and/or explicit options (explicit options win)."""
    base = dict(PRESETS[args.preset]) if args.preset else {}
    base.pop("about", None)
    if args.methods:
        base["methods"] = parse_list(args.methods, "methods")
    if args.budgets:
        try:
            base["budgets"] = [Budget.parse(b) for b in parse_list(args.budgets, "budgets")]
        except ValueError as e:
            raise GridError(str(e)) from None
    if args.seeds:
        base["seeds"] = parse_seeds(args.seeds)
    if args.targets:
        base["targets"] = parse_targets(args.targets)
    for k in ("dataset", "model", "baseline"):
        if getattr(args, k):
            base[k] = getattr(args, k)
    if "methods" not in base:
        raise GridError("no methods: give --preset e2train, or --methods (e.g. fp32,smd); "
                        "--list shows what is registered")
    if getattr(args, "lr_grid", None):
        try:
            base["lr_grid"] = [float(v) for v in parse_list(args.lr_grid, "lr-grid")]
        except ValueError:
            raise GridError(f"--lr-grid {args.lr_grid!r}: write learning rates, e.g. '0.1,0.15,0.2'") from None
    from ..torch.distributed.cli import dist_config
    from ..torch.distributed.config import DistConfigError
    try:
        dcfg = dist_config(args, base.get("distributed", {}))
    except DistConfigError as e:
        raise GridError(f"distributed: {e}") from None
    base["distributed"] = dcfg.to_dict() if dcfg is not None else {}
    base.setdefault("budgets", [Budget("epochs", 5)])
    base.setdefault("seeds", [0, 1])
    return GridSpec(random_controls=not args.no_random_controls,
                    fewer_iters_controls=not args.no_fewer_iters, level=args.ci_level, **base)


def run_compare(runs: list[Path], out: Path | None) -> int:
    from ..core.run_record import RecordError, load
    from .compare import comparison, plot
    try:
        recs = [load(r) for r in runs]
    except RecordError as e:
        print(f"e2train bench: {e}", file=sys.stderr)
        return 2
    table = comparison(recs)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(table + "\n")
        print(f"wrote {out / 'compare.md'}\nwrote {plot(recs, out / 'compare.png')}")
    return 0


def run(args: argparse.Namespace) -> int:
    from .output import write_outputs

    if args.compare:
        return run_compare(args.compare, args.out)
    if args.report_only:
        from .records import read_csv
        try:
            runs = read_csv(args.report_only)
        except (OSError, ValueError) as e:
            print(f"e2train bench: cannot read {args.report_only}: {e}", file=sys.stderr)
            return 2
        out = args.out or args.report_only.parent
        targets = parse_targets(args.targets) if args.targets else [0.9, 0.95]
        for name, path in write_outputs(runs, out, targets, args.ci_level).items():
            print(f"wrote {path}")
        return 0

    try:
        spec = build_spec(args) if not args.list else None
    except GridError as e:
        print(f"e2train bench: {e}", file=sys.stderr)
        return 2

    from .torch_backend import BackendUnavailable, TorchBackend
    try:
        for k in ("threads", "batch_size", "limit_train"):
            v = getattr(args, k)
            if v is not None and v < 1:
                raise GridError(f"--{k.replace('_', '-')} must be >= 1, not {v}")
        base = dict(spec.train_config) if spec is not None else {}
        if args.batch_size:
            base["batch_size"] = args.batch_size
        if args.device:
            base["device"] = args.device
        backend = TorchBackend(threads=args.threads, verbose=not args.quiet, data_dir=args.data_dir,
                               limit_train=args.limit_train, base_config=base)
    except (BackendUnavailable, GridError) as e:
        print(f"e2train bench: {e}", file=sys.stderr)
        return 2
    if args.list:
        print("methods:  " + ", ".join(backend.methods()))
        print("skipping: " + ", ".join(backend.skipping_methods()))
        print("datasets: " + ", ".join(backend.datasets()))
        print("models:   " + ", ".join(backend.models()))
        return 0

    from .runner import run_grid, validate_for
    try:
        if args.preset == "methods":
            backend.require_methods(spec.methods, "--preset methods")
        validate_for(spec, backend)
    except GridError as e:
        print(f"e2train bench: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("runs") / f"bench-{args.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"e2train bench -> {out}  ({spec.n_method_runs} method runs, plus controls; energy is modelled)")
    try:
        runs = run_grid(spec, backend, out, progress=lambda s: print(s, flush=True))
    except GridError as e:
        print(f"e2train bench: {e}\n(runs finished so far are in {out / 'runs.csv'})", file=sys.stderr)
        return 2
    title = f"e2train bench: {args.preset or 'custom'} ({spec.dataset}, {spec.model})"
    for name, path in write_outputs(runs, out, spec.targets, spec.level, title, spec.headline_target).items():
        print(f"wrote {path}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return 0

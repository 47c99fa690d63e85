"""A benchmark grid (methods x budgets x seeds on one model and data set), checked up front.

Every mistake in a grid is reported before the first run starts, all at once, with what to
write instead: a typo in the last method name must not surface an hour into the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .records import Budget


class GridError(ValueError):
    """A grid that cannot run; the message lists every problem and how to fix it."""


@dataclass
class GridSpec:
    methods: list[str]
    budgets: list[Budget]
    seeds: list[int]
    baseline: str = "fp32"              # the standard training that fewer-iterations controls run
    dataset: str = "digits"
    model: str = "resnet8"
    targets: list[float] = field(default_factory=lambda: [0.9, 0.95])
    random_controls: bool = True
    fewer_iters_controls: bool = True
    level: float = 0.95                 # confidence level of the intervals across seeds
    method_options: dict[str, dict] = field(default_factory=dict)
    # trainer settings for every run of the grid, methods and their controls alike (so a
    # control differs from its method only in what it skips)
    train_config: dict = field(default_factory=dict)
    # the accuracy target the summary leads with (energy- and time-to-target per method), for
    # grids whose budget leaves some arms short of convergence
    headline_target: float | None = None
    # E2-Train's learning-rate grid control (its Fig. 3b): the fewer-iterations control run
    # again at each of these base learning rates (e.g. 0.1, 0.12, ..., 0.2)
    lr_grid: list[float] = field(default_factory=list)
    # every job as a distributed run: the keys of torch-train's [distributed] section
    # (DistConfig: nproc = N for data parallel, pipeline = S with pipe_schedule, split, ...);
    # empty: one process per job
    distributed: dict = field(default_factory=dict)

    @property
    def n_method_runs(self) -> int:
        return len(self.methods) * len(self.budgets) * len(self.seeds)


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise GridError(f"empty entry in --{what} {text!r}: give a comma-separated list with no blanks")
    return items


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or a range '0-4' (inclusive)."""
    t = text.strip()
    try:
        if "-" in t and "," not in t and not t.startswith("-"):
            lo, hi = (int(v) for v in t.split("-"))
            if hi < lo:
                raise GridError(f"--seeds {text!r}: the range is empty (write low-high, e.g. 0-2)")
            return list(range(lo, hi + 1))
        return [int(v) for v in parse_list(t, "seeds")]
    except ValueError as e:
        if isinstance(e, GridError):
            raise
        raise GridError(f"--seeds {text!r}: write whole numbers, e.g. '0,1,2' or '0-2'") from None


def parse_targets(text: str) -> list[float]:
    """Accuracy targets as fractions ('0.9') or percentages ('90' or '90%')."""
    out = []
    for t in parse_list(text, "targets"):
        try:
            v = float(t.rstrip("%"))
        except ValueError:
            raise GridError(f"--targets: {t!r} is not a number; write e.g. '0.9,0.95' or '90,95'") from None
        v = v / 100 if (t.endswith("%") or v > 1) else v
        if not 0 < v <= 1:
            raise GridError(f"--targets: {t!r} is not an accuracy in (0, 1] or (0, 100]%")
        out.append(v)
    return out


def validate(spec: GridSpec, known_methods: Sequence[str], datasets: Sequence[str],
             models: Sequence[str], skipping: Sequence[str] = ()) -> None:
    """Raise GridError listing every problem of the grid (or return if it can run)."""
    problems = []
    known = set(known_methods)
    names = ", ".join(sorted(known))
    for m in spec.methods:
        if m not in known:
            problems.append(f"unknown method {m!r}; registered methods: {names}")
    dup = sorted({m for m in spec.methods if spec.methods.count(m) > 1})
    if dup:
        problems.append(f"method(s) listed twice: {', '.join(dup)}")
    if not spec.methods:
        problems.append("no methods: name at least one with --methods")
    if spec.fewer_iters_controls and any(m in skipping for m in spec.methods) and spec.baseline not in known:
        problems.append(f"the fewer-iterations controls run the baseline {spec.baseline!r}, which is not "
                        f"registered; pick one of: {names} with --baseline, or pass --no-fewer-iters")
    if not spec.budgets:
        problems.append("no budgets: give --budgets, e.g. '10' (epochs) or '50J' (modelled energy)")
    if len(set(spec.budgets)) != len(spec.budgets):
        problems.append("a budget is listed twice in --budgets")
    if not spec.seeds:
        problems.append("no seeds: give --seeds, e.g. '0,1,2'")
    if len(set(spec.seeds)) != len(spec.seeds):
        problems.append("a seed is listed twice in --seeds; repeated seeds would be counted as independent")
    if any(s < 0 for s in spec.seeds):
        problems.append("seeds must be >= 0")
    if spec.dataset not in datasets:
        problems.append(f"unknown data set {spec.dataset!r}; available: {', '.join(datasets)}")
    if spec.model not in models:
        problems.append(f"unknown model {spec.model!r}; available: {', '.join(models)}")
    if not spec.targets:
        problems.append("no accuracy targets: give --targets, e.g. '0.9,0.95'")
    if any(not (lr > 0) for lr in spec.lr_grid):
        problems.append(f"--lr-grid needs positive learning rates, not {spec.lr_grid}")
    if not 0 < spec.level < 1:
        problems.append(f"--ci-level must lie in (0, 1), not {spec.level}")
    if problems:
        raise GridError("bad benchmark grid (nothing has run):\n  - " + "\n  - ".join(problems))

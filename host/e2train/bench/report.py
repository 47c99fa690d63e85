"""summary.md: one table row per arm and budget, then the Pareto fronts; all from run records."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .metrics import AXES, Point, pareto_front, seed_curve, tta_over_seeds
from .records import KIND_METHOD, Budget, RunRecord
from .stats import Interval, t_interval


@dataclass
class Arm:
    """All seeds of one method (or control) under one budget."""

    method: str
    kind: str
    control_of: str
    budget: Budget
    skip_unit: str
    energy_source: str
    runs: list[RunRecord]

    @property
    def name(self) -> str:
        return self.runs[0].arm

    def final_acc(self, level: float = 0.95) -> Interval:
        return t_interval([r.final.acc for r in self.runs], level)

    def mean_final(self, attr: str) -> float:
        return statistics.fmean(getattr(r.final, attr) for r in self.runs)


def group_arms(runs: Iterable[RunRecord]) -> list[Arm]:
    """Group runs by (arm, budget), keeping first-seen order (methods before their controls)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in runs:
        groups[(r.method, r.kind, r.control_of, r.budget)].append(r)
    arms = []
    for (method, kind, control_of, budget), rs in groups.items():
        sources = {r.energy_source for r in rs}
        if len(sources) != 1:
            raise ValueError(f"{rs[0].arm} mixes measured and modelled energy across seeds; "
                             f"they cannot be averaged")
        arms.append(Arm(method, kind, control_of, budget, rs[0].skip_unit, sources.pop(), sorted(rs, key=lambda r: r.seed)))
    return arms


def pareto_points(arm: Arm, axis: str) -> list[Point]:
    """Candidate points of one arm: its seed-mean checkpoint after every epoch.

    Each checkpoint is a model that was really evaluated after that much cost, so it is an
    honest "stop here" point (with the caveat, documented, that a schedule planned for the
    whole budget was not finished there)."""
    return [Point(getattr(c, axis), c.acc.mean, f"{arm.name}@{arm.budget.label}:ep{c.epoch}", c.acc.half)
            for c in seed_curve(arm.runs)]


def fronts_by_method(arms: Sequence[Arm], axis: str) -> dict[str, list[Point]]:
    """Pareto front per arm name, pooled over that arm's budgets."""
    pooled: dict[str, list[Point]] = defaultdict(list)
    for a in arms:
        pooled[a.name].extend(pareto_points(a, axis))
    return {name: pareto_front(pts) for name, pts in pooled.items()}


def _fmt_skip(arm: Arm) -> str:
    """Mean measured skip ratio over seeds, at every granularity the arm skips at."""
    units = list(arm.runs[0].final.skips) if arm.runs[0].epochs else []
    if len(units) > 1 and all(set(r.final.skips) == set(units) for r in arm.runs):
        return "; ".join(f"{100 * statistics.fmean(r.final.skips[u] for r in arm.runs):.1f}% {u}" for u in units)
    s = statistics.fmean(r.skip_ratio for r in arm.runs)
    if math.isnan(s):
        return "-"
    unit = f" {arm.skip_unit}" if arm.skip_unit else ""
    return f"{100 * s:.1f}%{unit}"


def _pct(p: Point) -> str:
    ci = "" if math.isnan(p.acc_half) else f" ± {100 * p.acc_half:.2f}"
    return f"{100 * p.acc:.2f}{ci}%"


def summary_markdown(runs: Sequence[RunRecord], targets: Sequence[float], level: float = 0.95,
                     title: str = "e2train bench") -> str:
    arms = group_arms(runs)
    sources = sorted({a.energy_source for a in arms})
    elabel = "/".join(sources) or "modelled"
    pct = f"{round(100 * level)}%"
    lines = [f"# {title}", "",
             f"Accuracy: test-set top-1, mean ± {pct} Student-t interval over seeds. "
             f"Energy: **{elabel}** (J, mean over seeds). Wall-clock: training time only, "
             f"mean over seeds. Time/energy-to-accuracy: median over seeds of the first evaluated "
             f"epoch at or above the target (k/n = seeds that reached it).", ""]
    head = ["method", "control-of", "budget", "seeds", "skip ratio", f"final acc % (± {pct} CI)",
            f"energy ({elabel}) J", "wall-clock s", "steps"]
    for t in targets:
        head += [f"time-to-{100 * t:g}% s", f"energy-to-{100 * t:g}% J ({elabel})"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in arms:
        row = [a.method, a.control_of or "-", a.budget.label, str(len(a.runs)), _fmt_skip(a),
               a.final_acc(level).fmt(100, 2), f"{a.mean_final('energy_j'):.3g}",
               f"{a.mean_final('wall_s'):.1f}", f"{a.mean_final('steps'):.0f}"]
        for t in targets:
            row += [tta_over_seeds(a.runs, t, "wall_s").fmt(1), tta_over_seeds(a.runs, t, "energy_j").fmt(3)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    controls = [a for a in arms if a.kind != KIND_METHOD]
    if controls:
        lines += ["Controls: `random-skip[M]` skips at the skip ratio that method M measured in its "
                  "own run of the same seed and budget, at M's granularity; `fewer-iters[M]` is "
                  "standard training stopped at M's energy.", ""]
    for axis in ("energy_j", "wall_s"):
        label = f"energy ({elabel}) J" if axis == "energy_j" else AXES[axis]
        lines += [f"## Pareto front per method: accuracy vs {label}", "",
                  "(cost, accuracy mean ± CI over seeds). Candidates: every epoch checkpoint "
                  "(seed mean) of every budget of the method.", ""]
        for name, front in fronts_by_method(arms, axis).items():
            pts = ", ".join(f"({p.cost:.3g}, {_pct(p)})" for p in front)
            lines.append(f"- **{name}**: {pts}")
        lines.append("")
    return "\n".join(lines)


def write_summary(runs: Sequence[RunRecord], path: str | Path, targets: Sequence[float],
                  level: float = 0.95, title: str = "e2train bench") -> Path:
    path = Path(path)
    path.write_text(summary_markdown(runs, targets, level, title))
    return path

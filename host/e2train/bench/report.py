"""summary.md: one table row per arm and budget, then the Pareto fronts; all from run records."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..core.energy import ENERGY_KIND, PARTS, parts_text, ratio_parts, ratio_text
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


def _baseline_arm(arms: Sequence[Arm], a: Arm, baseline: str) -> Arm | None:
    for b in arms:
        if b.method == baseline and b.kind == KIND_METHOD and b.budget == a.budget:
            return b
    return None


def saving_ratio(a: Arm, base: Arm | None) -> str:
    """Measured wall-clock saving over the modelled (energy) saving, against the baseline
    of the same budget (paper 000: does the theoretical saving reach the clock?)."""
    if base is None or a is base:
        return "-"
    sw = 1.0 - a.mean_final("wall_s") / base.mean_final("wall_s")
    se = 1.0 - a.mean_final("energy_j") / base.mean_final("energy_j")
    r = f"{sw / se:.2f}" if abs(se) > 1e-9 else "-"
    return f"{r} (clock {100 * sw:+.1f}%, modelled {100 * se:+.1f}%)"


def control_ratio(a: Arm) -> str:
    """A random control's target ratio and what it realised (mean over seeds)."""
    tgt = [r.target_skip_ratio for r in a.runs if not math.isnan(r.target_skip_ratio)]
    if not tgt:
        return "-"
    t, got = statistics.fmean(tgt), statistics.fmean(r.skip_ratio for r in a.runs)
    off = abs(got - t) / t if t else 0.0
    return f"{100 * t:.1f}% -> {100 * got:.1f}% {a.skip_unit} ({100 * off:.1f}% off)"


def _test_acc(a: Arm) -> str:
    """The test set's accuracy when ``acc`` is the validation split's (reported only)."""
    vals = [r.final.test_acc for r in a.runs if not math.isnan(r.final.test_acc)]
    return f"{100 * statistics.fmean(vals):.2f}" if vals else "(= final acc)"


def _peak_mem(a: Arm) -> str:
    vals = [r.final.peak_mem_mb for r in a.runs if not math.isnan(r.final.peak_mem_mb)]
    return f"{statistics.fmean(vals):.0f}" if vals else "-"


def poly_fit(points: Sequence[Point], degree: int = 2):
    """Least-squares polynomial acc(cost) through an arm's checkpoints (paper 000, Fig. 4:
    "the dotted lines indicate polynomial fits"); degree lowered to what the points allow.
    Returns numpy's coefficients (highest power first), or None under two distinct costs."""
    import numpy as np
    xs = [p.cost for p in points]
    if len(set(xs)) < 2:
        return None
    deg = min(degree, len(set(xs)) - 1)
    return np.polyfit(xs, [p.acc for p in points], deg)


def best_by(points: Sequence[Point], cost: float) -> float:
    """The Pareto front as a staircase: the best accuracy reached at or below ``cost``
    (0 before the first point)."""
    return max((p.acc for p in points if p.cost <= cost), default=0.0)


def beats(method_pts: Sequence[Point], control_pts: Sequence[Point], n: int = 256) -> bool | None:
    """Verdict of a method against one control on the Pareto front: the mean gap between the
    two fronts (as staircases, ``best_by``) over the union of their cost ranges is positive.
    A method whose whole run costs more than the control needed to reach its accuracy loses
    on the stretch where only the control has a model. None without points."""
    if not method_pts or not control_pts:
        return None
    lo = min(min(p.cost for p in method_pts), min(p.cost for p in control_pts))
    hi = max(max(p.cost for p in method_pts), max(p.cost for p in control_pts))
    if not hi > lo:
        return None
    xs = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
    gap = sum(best_by(method_pts, x) - best_by(control_pts, x) for x in xs) / n
    return gap > 0


def verdict_lines(arms: Sequence[Arm], axis: str = "wall_s") -> list[str]:
    """Per method with controls: does it beat each control (and all of them) on the front?"""
    pts: dict[str, list[Point]] = defaultdict(list)
    for a in arms:
        pts[a.name].extend(pareto_points(a, axis))
    out = []
    for m in dict.fromkeys(a.method for a in arms if a.kind == KIND_METHOD):
        ctl = list(dict.fromkeys(a.name for a in arms if a.kind != KIND_METHOD and a.control_of == m))
        if not ctl:
            continue
        parts, all_yes = [], True
        for c in ctl:
            v = beats(pts[m], pts[c])
            all_yes = all_yes and v is True
            parts.append(f"{c}: {'yes' if v else 'no' if v is False else 'n/a (no points)'}")
        fit = poly_fit(pts[m])
        coef = "" if fit is None else " fit " + ", ".join(f"{c:.3g}" for c in fit)
        out.append(f"- **{m}** beats its controls: **{'yes' if all_yes else 'no'}** ({'; '.join(parts)});"
                   f" polynomial fit of accuracy on {AXES[axis]}:{coef or ' -'}")
    return out


def headline_lines(arms: Sequence[Arm], target: float, elabel: str) -> list[str]:
    """Energy and time to reach ``target`` per method (not controls), leading the summary of a
    grid whose budget leaves some arms unconverged: final accuracy at such a budget compares
    how far each got, not which trains better for the cost."""
    lines = [f"## Headline: cost to reach {100 * target:g}% accuracy", "",
             f"Median over seeds of the first evaluated epoch at or above {100 * target:g}% "
             f"(k/n: seeds that got there). Read this before the final accuracies below, which are "
             f"taken wherever each arm's budget ended.", "",
             f"| method | energy-to-{100 * target:g}% J ({elabel}) | time-to-{100 * target:g}% s | final acc % |",
             "|---|---|---|---|"]
    for a in arms:
        if a.kind != KIND_METHOD:
            continue
        lines.append(f"| {a.method} | {tta_over_seeds(a.runs, target, 'energy_j').fmt(3)} | "
                     f"{tta_over_seeds(a.runs, target, 'wall_s').fmt(1)} | {a.final_acc().fmt(100, 2)} |")
    return lines + [""]


def _priced(a: Arm) -> dict | None:
    """The arm's final modelled energy in parts (mean over seeds), as ``core.energy.price`` gives
    it; None when a run recorded no parts or the seeds were priced on different platforms."""
    plats = {r.energy_platform for r in a.runs}
    if a.energy_source != ENERGY_KIND or len(plats) != 1 or not all(set(PARTS) <= set(r.final.energy_parts)
                                                                    for r in a.runs):
        return None
    parts = {k: statistics.fmean(r.final.energy_parts[k] for r in a.runs) for k in PARTS}
    return {"kind": ENERGY_KIND, "platform": plats.pop() or "unnamed", "parts_j": parts,
            "total_j": sum(parts.values())}


def energy_parts_lines(arms: Sequence[Arm], baseline: str) -> list[str]:
    """Each arm's final training energy in parts (compute / on-chip / DRAM / static, platform
    named), and its ratio to the baseline method at the same budget, part by part."""
    lines = []
    for a in arms:
        p = _priced(a)
        if p is None:
            continue
        line = f"- **{a.name}** ({a.budget.label}): {parts_text(p)}"
        b = _baseline_arm(arms, a, baseline)
        pb = _priced(b) if b is not None and b is not a else None
        if pb is not None and pb["platform"] == p["platform"] and pb["total_j"] > 0:
            line += f"; over {baseline}: " + ratio_text(ratio_parts(p, pb), baseline)
        lines.append(line)
    if not lines:
        return []
    return ["## Energy in parts (modelled)", "",
            f"Final training energy per arm, mean over seeds, in the energy model's parts on the platform "
            f"named; the ratio divides each part by the baseline ({baseline}, same budget)'s total, so the "
            "parts add up to the ratio.", "", *lines, ""]


def process_layouts(arms: Sequence[Arm]) -> list[str]:
    """'fp32: 2 processes (ddp)' per arm of distributed runs; empty when every run had one process."""
    out = []
    for a in arms:
        kinds = sorted({(r.nproc, r.schedule) for r in a.runs})
        if any(n > 1 or s for n, s in kinds):
            out.append(f"{a.name}: " + ", ".join(f"{n} processes ({s or 'one process'})" for n, s in kinds))
    return out


def summary_markdown(runs: Sequence[RunRecord], targets: Sequence[float], level: float = 0.95,
                     title: str = "e2train bench", baseline: str = "fp32",
                     headline_target: float | None = None) -> str:
    arms = group_arms(runs)
    sources = sorted({a.energy_source for a in arms})
    elabel = "/".join(sources) or "modelled"
    pct = f"{round(100 * level)}%"
    lines = [f"# {title}", "",
             f"Wall-clock first (paper 000, guideline 4): training time only, evaluation excluded, "
             f"mean over seeds; loading every batch (dropped ones too) and a method's own work "
             f"(Learn&Drop's cache fill, DeadHorse's decision forward) are in it. Energy: **{elabel}** (J, mean over seeds). "
             f"Accuracy: top-1 of the run's held-out validation split when the grid holds one out "
             f"(train_config val_split), else of the test set; mean ± {pct} Student-t interval over "
             f"seeds. Saving ratio: the measured wall-clock saving over the modelled saving, both "
             f"against {baseline} at the same budget. Peak memory (MiB): CUDA allocator peak, or on CPU the autograd "
             f"saved-tensor peak plus parameters and gradients. Time/energy-to-accuracy: median over "
             f"seeds of the first evaluated epoch at or above the target (k/n = seeds that reached it).",
             ""]
    layouts = process_layouts(arms)
    if layouts:
        lines += ["Processes (torch.distributed; wall clock of the whole group, no energy modelled for "
                  "distributed runs): " + "; ".join(layouts) + ".", ""]
    if headline_target is not None:
        lines += headline_lines(arms, headline_target, elabel)
    head = ["wall-clock s", f"energy ({elabel}) J", "method", "control-of", "budget", "seeds", "skip ratio",
            "control target -> realised", "clock/modelled saving", "peak mem MiB",
            f"final acc % (± {pct} CI)", "final test acc %", "steps"]
    for t in targets:
        head += [f"time-to-{100 * t:g}% s", f"energy-to-{100 * t:g}% J ({elabel})"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in arms:
        row = [f"{a.mean_final('wall_s'):.1f}", f"{a.mean_final('energy_j'):.3g}",
               a.method, a.control_of or "-", a.budget.label, str(len(a.runs)), _fmt_skip(a),
               control_ratio(a), saving_ratio(a, _baseline_arm(arms, a, baseline)), _peak_mem(a),
               a.final_acc(level).fmt(100, 2), _test_acc(a), f"{a.mean_final('steps'):.0f}"]
        for t in targets:
            row += [tta_over_seeds(a.runs, t, "wall_s").fmt(1), tta_over_seeds(a.runs, t, "energy_j").fmt(3)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += energy_parts_lines(arms, baseline)
    controls = [a for a in arms if a.kind != KIND_METHOD]
    if controls:
        lines += ["Controls: `random-skip[M]` skips at random at what method M measured in its own run "
                  "of the same seed and budget: at M's granularity, except GSkip, Learn&Drop and "
                  "freezing (random mini-batch omission at M's workload ratio, paper 000's Table 2 "
                  "control), SLU (stochastic depth with p_L matched to SLU's dropping ratio, E2-Train "
                  "Fig. 4) and DeadHorse (its per-epoch rates, with the decision forward of a reactive "
                  "policy); `fewer-iters[M]` is standard training stopped at M's energy.", ""]
        verdicts = verdict_lines(arms, "wall_s")
        if verdicts:
            lines += ["## Verdict per method: does it beat its controls on accuracy vs wall-clock?", "",
                      "A method beats a control when its Pareto front (the best seed-mean accuracy "
                      "reached by each wall-clock time, over every epoch checkpoint) lies above the "
                      "control's on average over the union of their time ranges (before its first "
                      "checkpoint a run has no model: accuracy 0). The polynomial fits (degree <= 2, "
                      "least squares over the same checkpoints; coefficients from the highest power) "
                      "describe each method's curve, as paper 000's Fig. 4 does.", "", *verdicts, ""]
    for axis in ("wall_s", "energy_j"):
        if axis == "energy_j" and sources == ["none"]:
            continue          # distributed runs only: no energy to rank by
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
                  level: float = 0.95, title: str = "e2train bench", baseline: str = "fp32",
                  headline_target: float | None = None) -> Path:
    path = Path(path)
    path.write_text(summary_markdown(runs, targets, level, title, baseline, headline_target))
    return path

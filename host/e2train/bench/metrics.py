"""Time-to-accuracy, seed-averaged learning curves and Pareto fronts, from run records alone.

Definitions (docs/harness.md gives the reasons):

* **time-to-accuracy** of one run at target ``a``: the cumulative training cost (wall-clock
  seconds, or joules) at the end of the *first* epoch whose test accuracy is >= ``a``. Only
  evaluated checkpoints count -- no interpolation between epochs, which would credit a run
  with an accuracy nobody measured. A run that never reaches ``a`` has TTA = +inf.
* Across seeds: the **median** TTA, unreached runs counted as +inf, so the figure is finite
  only if more than half of the seeds got there (for an even n, the two middle ones must
  both have); it is always reported with "k/n reached". A mean over only the seeds that
  reached the target would reward a method for the seeds it lost.
* **Pareto front** (maximise accuracy, minimise cost): the points that no other point
  dominates, where p dominates q iff p.cost <= q.cost and p.acc >= q.acc with at least one
  strict. Exact duplicates dominate neither each other, so both stay on the front.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from .records import RunRecord
from .stats import Interval, t_interval

AXES = {"wall_s": "wall-clock (s)", "energy_j": "energy (J)"}


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, not {axis!r}")


def time_to_accuracy(run: RunRecord, target: float, axis: str = "wall_s") -> float:
    """Cost at the first evaluated epoch with acc >= target; +inf if never reached."""
    _check_axis(axis)
    for e in run.epochs:
        if e.acc >= target:
            return float(getattr(e, axis))
    return math.inf


@dataclass(frozen=True)
class SeedTTA:
    median: float      # +inf when not reached by more than half of the seeds
    reached: int
    n: int

    def fmt(self, digits: int = 1) -> str:
        if self.n == 0:
            return "-"
        v = "not reached" if math.isinf(self.median) else f"{self.median:.{digits}f}"
        return f"{v} ({self.reached}/{self.n})"


def tta_over_seeds(runs: Sequence[RunRecord], target: float, axis: str = "wall_s") -> SeedTTA:
    vals = [time_to_accuracy(r, target, axis) for r in runs]
    if not vals:
        return SeedTTA(math.inf, 0, 0)
    # statistics.median averages the two middle values for even n; inf + finite = inf,
    # which is the rule stated above.
    return SeedTTA(float(statistics.median(vals)), sum(not math.isinf(v) for v in vals), len(vals))


@dataclass(frozen=True)
class CurvePoint:
    epoch: int
    wall_s: float       # mean over seeds
    energy_j: float     # mean over seeds
    acc: Interval       # mean and CI over seeds
    skip_ratio: float   # mean over seeds


def seed_curve(runs: Sequence[RunRecord], level: float = 0.95) -> list[CurvePoint]:
    """Per-epoch means (and accuracy CI) over the seeds of one arm and budget.

    Runs under an energy budget may stop after different numbers of epochs; the curve is
    cut at the shortest, so every point averages the same seeds.
    """
    if not runs:
        return []
    n_ep = min(len(r.epochs) for r in runs)
    out = []
    for i in range(n_ep):
        es = [r.epochs[i] for r in runs]
        out.append(CurvePoint(
            epoch=es[0].epoch,
            wall_s=statistics.fmean(e.wall_s for e in es),
            energy_j=statistics.fmean(e.energy_j for e in es),
            acc=t_interval([e.acc for e in es], level),
            skip_ratio=statistics.fmean(e.skip_ratio for e in es)))
    return out


@dataclass(frozen=True)
class Point:
    cost: float
    acc: float
    label: str = ""
    acc_half: float = math.nan    # CI half-width of acc across seeds (carried, not compared)


def dominates(p: Point, q: Point) -> bool:
    return p.cost <= q.cost and p.acc >= q.acc and (p.cost < q.cost or p.acc > q.acc)


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """Non-dominated points, sorted by cost (then accuracy, then label, for a stable order).

    Sort by cost ascending and accuracy descending, then sweep: a point is on the front iff
    its accuracy beats every cheaper point's, or it ties exactly with the last front point.
    O(n log n).
    """
    pts = [p for p in points if not (math.isnan(p.cost) or math.isnan(p.acc))]
    pts.sort(key=lambda p: (p.cost, -p.acc, p.label))
    front: list[Point] = []
    best = -math.inf
    for p in pts:
        if p.acc > best:
            front.append(p)
            best = p.acc
        elif front and p.acc == front[-1].acc and p.cost == front[-1].cost:
            front.append(p)        # exact duplicate of a front point
    return front

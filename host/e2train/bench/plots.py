"""PNG plots: accuracy vs energy and accuracy vs wall-clock, one curve per arm, fronts marked."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on a bench machine
import matplotlib.pyplot as plt  # noqa: E402

from .metrics import seed_curve  # noqa: E402
from .records import KIND_FEWER, KIND_RANDOM, RunRecord  # noqa: E402
from .report import fronts_by_method, group_arms  # noqa: E402

_STYLE = {KIND_RANDOM: ":", KIND_FEWER: "--"}


def plot_accuracy(runs: Sequence[RunRecord], axis: str, path: str | Path, title: str = "") -> Path:
    """Seed-mean accuracy (with its CI band) against cumulative cost; Pareto points circled."""
    arms = group_arms(runs)
    sources = sorted({a.energy_source for a in arms}) or ["modelled"]
    xlabel = f"training energy, {'/'.join(sources)} (J)" if axis == "energy_j" else "training wall-clock (s)"
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    colours: dict[str, str] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for a in arms:
        # A control shares its method's colour, with its own line style.
        base = a.method if a.kind == "method" else a.control_of
        colour = colours.setdefault(base, cycle[len(colours) % len(cycle)])
        curve = seed_curve(a.runs)
        xs = [getattr(c, axis) for c in curve]
        ys = [100 * c.acc.mean for c in curve]
        ax.plot(xs, ys, _STYLE.get(a.kind, "-"), marker=".", color=colour,
                label=f"{a.name} {a.budget.label} (n={len(a.runs)})")
        # an interval is a statement about the mean; accuracy itself lives in [0, 100]
        lo = [max(0.0, 100 * c.acc.lo) for c in curve]
        hi = [min(100.0, 100 * c.acc.hi) for c in curve]
        if len(a.runs) > 1:
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, linewidth=0)
    for name, front in fronts_by_method(arms, axis).items():
        ax.scatter([p.cost for p in front], [100 * p.acc for p in front], s=40,
                   facecolors="none", edgecolors="k", linewidths=0.8, zorder=3)
    xs_all = [getattr(c, axis) for a in arms for c in seed_curve(a.runs) if getattr(c, axis) > 0]
    if xs_all and max(xs_all) / min(xs_all) > 20:
        ax.set_xscale("log")            # methods that save 10x would be squeezed against 0
        xlabel += ", log scale"
    ax.set_ylim(0, 100.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or f"accuracy vs {xlabel.split(',')[0].split(' (')[0]}"
                 + (" (energy modelled)" if axis == "energy_j" and sources == ["modelled"] else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.01, "circles: Pareto-front points per method; bands: 95% t-interval over seeds",
             fontsize=6, color="0.4")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

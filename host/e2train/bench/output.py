"""Write a bench directory: runs.csv, summary.md and the two plots, from run records."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .records import RunRecord, write_csv

PLOTS = {"energy_j": "acc_vs_energy.png", "wall_s": "acc_vs_time.png"}


def write_outputs(runs: Sequence[RunRecord], out_dir: str | Path, targets: Sequence[float],
                  level: float = 0.95, title: str = "e2train bench",
                  headline_target: float | None = None) -> dict[str, Path]:
    # Plots import matplotlib; kept inside so that reading records stays light.
    from .plots import plot_accuracy
    from .report import write_summary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"runs.csv": write_csv(runs, out / "runs.csv"),
             "summary.md": write_summary(runs, out / "summary.md", targets, level, title,
                                         headline_target=headline_target)}
    for axis, name in PLOTS.items():
        paths[name] = plot_accuracy(runs, axis, out / name)
    return paths

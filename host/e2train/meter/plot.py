"""Power over time with the phases shaded and the gaps hatched (matplotlib, Agg, imported here only).

Written as PNG and, beside it, SVG. The time axis is the recorder's (the meter's samples, stamped
on the host); a training run adds its board-time plot (e2train.app.run_report).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_power(t_s: np.ndarray, p_w: np.ndarray, summary: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted({ph["name"] for ph in summary["phases"]})
    for ph in summary["phases"]:
        c = colors[names.index(ph["name"]) % len(colors)]
        ax.axvspan(ph["t_start_s"], ph["t_end_s"], color=c, alpha=0.12, lw=0)
        label = ph["name"] + "".join(f" {k}={v}" for k, v in ph.get("info", {}).items())
        ax.text(ph["t_start_s"], 1.0, label, transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", rotation=90, color=c)
    for g in summary["gaps"]:
        ax.axvspan(g["t_start_s"], g["t_end_s"], facecolor="none", edgecolor="red", hatch="///", lw=0)
    ax.plot(t_s, p_w, lw=0.8, color="black")
    if summary.get("idle_power_w") is not None:
        ax.axhline(summary["idle_power_w"], ls="--", lw=0.8, color="gray", label="idle")
        ax.legend(loc="lower right", fontsize=8)
    total = summary["total_energy_j"]
    ax.set_title(f"{summary['protocol']} meter: {total:.2f} J {summary['energy_kind']}, "
                 f"{summary['gap_count']} gaps, {summary['bad_lines']} bad lines\n{summary['energy_note']}",
                 fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("power (W)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(Path(path).with_suffix(".svg"))      # vector copy beside it, for papers
    plt.close(fig)
    return Path(path)

"""`e2train bench --compare RUN RUN ...`: runs of either trainer side by side, per epoch.

Each RUN is a run record (docs/records.md) or a run directory holding one, read by the one
reader (``core.run_record.load``): a device run of ``e2train train`` beside a torch run of
``e2train torch-train --out``, or older files of either. The table has one row per epoch
number and, per run, its test accuracy and cumulative energy; every energy column names its
kind (modelled or measured) and platform, so figures priced on different platforms or by
different means are never read as one quantity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..core.run_record import TrainingRecord


def _energy_label(rec: TrainingRecord) -> str:
    e = rec.primary_energy
    return f"{e['kind']}, {e.get('platform') or 'no platform'}"


def _fmt(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def epoch_table(recs: Sequence[TrainingRecord]) -> str:
    """Markdown: epoch, then per run its test accuracy (%) and cumulative energy (J, labelled)."""
    head = ["epoch"]
    for r in recs:
        head += [f"{r.label} ({r.trainer}) test acc", f"{r.label} energy J ({_energy_label(r)})"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_epoch = [{e["epoch"]: e for e in r.epochs} for r in recs]
    for n in sorted(set().union(*by_epoch)):
        cells = [str(n)]
        for epochs in by_epoch:
            e = epochs.get(n) or {}
            cells += [_fmt(e.get("test_acc"), "{:.2%}"), _fmt(e.get("energy_j"), "{:.4g}")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def final_table(recs: Sequence[TrainingRecord]) -> str:
    """Markdown: one row per run with its final accuracy and every energy figure it holds."""
    rows = ["| run | trainer | source | epochs | final test acc | energy |", "|---|---|---|---|---|---|"]
    for r in recs:
        energy = "; ".join(
            f"{_fmt(e.get('total_j'), '{:.4g} J')} {e['kind']} ({e.get('source')}, {e.get('platform') or 'no platform'}"
            + (f"; {e['above_idle_j']:.4g} J above idle" if isinstance(e.get("above_idle_j"), (int, float)) else "")
            + ")" for e in r.energy)
        rows.append(f"| {r.label} | {r.trainer} | {r.source or '-'} ({r.source_format}) | "
                    f"{r.final.get('epochs_done')} | {_fmt(r.final.get('test_acc'), '{:.2%}')} | {energy} |")
    return "\n".join(rows)


def comparison(recs: Sequence[TrainingRecord]) -> str:
    platforms = {(r.primary_energy["kind"], r.primary_energy.get("platform")) for r in recs}
    note = ("" if len(platforms) == 1 else
            "\nThe runs' energies differ in kind or platform (see each column's label): compare them as what "
            "they are, not as one quantity.")
    return final_table(recs) + "\n\n" + epoch_table(recs) + "\n" + note


def plot(recs: Sequence[TrainingRecord], path: str | Path) -> Path:
    """Test accuracy against epoch and against cumulative energy (labelled), one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for r in recs:
        pts = [(e["epoch"], e.get("energy_j"), e.get("test_acc")) for e in r.epochs if e.get("test_acc") is not None]
        name = f"{r.label} ({r.trainer})"
        ax_a.plot([p[0] for p in pts], [100 * p[2] for p in pts], marker=".", label=name)
        en = [p for p in pts if p[1] is not None]
        if en:
            ax_e.plot([p[1] for p in en], [100 * p[2] for p in en], marker=".", label=f"{name}: {_energy_label(r)}")
    ax_a.set_xlabel("epoch (1 is the first)")
    ax_a.set_ylabel("test accuracy (%)")
    ax_e.set_xlabel("cumulative training energy (J; kind and platform in the legend)")
    ax_e.set_xscale("log")
    for ax in (ax_a, ax_e):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

"""A training run's report a researcher can paste: summary.md, and power on the board's time.

``write_run_report(report, out_dir)`` (called by ``e2train train`` after every run) writes
``summary.md`` (config, source commit, epochs, accuracy per epoch with its change, and every
energy figure labelled *measured* or *modelled*) and ``power_board.png`` + ``power_board.svg``.

Board time. The meter's samples are stamped on the host's clock. On a real board that clock runs
with the board's (the plot's axis is seconds since training started), and the phases (epochs)
are placed where the board's own event times put them (``Recorder.mark(t_board=...)``), not where
a slow link delivered them. On the simulated board
it does not: the kernels run as C simulation, far slower than the fabric, so the host's clock
measures this computer. There the axis is the board's *modelled* time: the host time of each
epoch's end is mapped to the trainer's modelled seconds at that epoch (piecewise linear between
epochs), and each meter interval's energy above idle is spread over its modelled duration, so
that the plotted power integrates to idle power x modelled time + the meter's energy above idle.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.energy import PART_LABELS, PARTS
from ..core.run_record import device_record, source_commit
from ..device import step_profile
from ..meter.recorder import integrate_energy


def _fmt(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def energy_rows(report: dict) -> list[tuple[str, str]]:
    """Every energy figure of a run, each labelled measured or modelled."""
    s = report["results"].get("summary", {})
    plat = s.get("energy_platform") or "?"
    rows = [(f"board energy, training (modelled: energy model over the work that ran, platform {plat})",
             _fmt(s.get("modelled_energy_j"), "{:.3f} J"))]
    parts = s.get("modelled_energy_parts_j") or {}
    note = {"static": f"; static power {s['energy_static_note']}" if s.get("energy_static_note") else ""}
    rows += [(f"of which {PART_LABELS[k]} (modelled, {plat}{note.get(k, '')})", _fmt(parts.get(k), "{:.3f} J"))
             for k in PARTS if parts]
    rows.append(("board time, training (modelled: performance model)", _fmt(s.get("modelled_time_s"), "{:.3f} s")))
    m = report.get("meter")
    if m:
        kind = m.get("energy_kind", "?")
        tag = f"{kind}: {m.get('energy_note')}"
        rows += [(f"meter energy, total ({tag})", _fmt(m.get("total_energy_j"), "{:.3f} J")),
                 (f"meter energy above idle ({kind})", _fmt(m.get("energy_above_idle_j"), "{:.3f} J")),
                 (f"meter idle power ({kind})", _fmt(m.get("idle_power_w"), "{:.3f} W")),
                 (f"meter energy interpolated across gaps ({kind}, not sampled)", _fmt(m.get("energy_in_gaps_j"), "{:.3f} J"))]
    return rows


def meter_caveat(report: dict) -> str | None:
    """What a real meter's figures beside a simulated board are: the meter's spec decides the
    label (measured), but on a simulated board it cannot have measured the run's board."""
    m = report.get("meter") or {}
    simulated = bool((report["results"].get("board") or {}).get("simulated"))
    if simulated and m.get("energy_kind") == "measured":
        return ("the board is simulated but the meter is not the simulated board's (its spec has no sim=1): "
                "its figures are measured, of whatever the meter is wired to, not of this run's board")
    return None


def run_summary_md(report: dict, commit: str | None = None) -> str:
    res = report["results"]
    s = res.get("summary", {})
    epochs = device_record(res).epochs        # the run record's epochs: numbered from 1, accuracy a fraction
    lines = [f"# Run {report.get('run_id')}", "",
             f"- state: {res.get('state', '?')}; board: {'simulated' if (res.get('board') or {}).get('simulated') else 'real'}",
             f"- e2train commit: `{commit or source_commit()}`",
             f"- epochs: {s.get('epochs')}; final test accuracy: {_fmt(s.get('test_acc'), '{:.2%}')}",
             f"- config: `{json.dumps(report.get('config'), sort_keys=True)}`", "",
             "| epoch | test accuracy | change | train loss | batches run / dropped |", "|---|---|---|---|---|"]
    prev = None
    for e in epochs:
        acc = e.get("test_acc")
        delta = "" if acc is None or prev is None else f"{(acc - prev) * 100:+.1f} points"
        lines.append(f"| {e['epoch']} | {_fmt(acc, '{:.2%}')} | {delta} | {_fmt(e.get('train_loss'), '{:.4f}')} "
                     f"| {_fmt(e.get('batches_run'), '{}')} / {_fmt(e.get('batches_skipped'), '{}')} |")
        prev = acc if acc is not None else prev
    lines += ["", "| energy figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in energy_rows(report)]
    m = report.get("meter")
    if m:
        lines += ["", f"Meter: `{m.get('meter')}` ({m.get('protocol')}), {m.get('samples')} samples, "
                      f"{m.get('gap_count')} gaps, {m.get('bad_lines')} bad records."]
        if caveat := meter_caveat(report):
            lines += ["", f"**Note:** {caveat}."]
    measured = step_profile.measured_table(res)
    if measured:
        lines += ["", "## Fabric time, modelled and measured", "", measured]
    return "\n".join(lines) + "\n"


def board_time_axis(report: dict, t_s: np.ndarray) -> tuple[np.ndarray, str]:
    """Meter sample times (s from the recorder's start) -> the board's time since training started."""
    m = report["meter"]
    phases = m.get("phases", [])
    train = next((p for p in phases if p["name"] == "train"), None)
    t0 = train["t_start_s"] if train else 0.0
    simulated = bool((report["results"].get("board") or {}).get("simulated"))
    if not simulated:
        return t_s - t0, "time on the board since training started (s; the meter's clock)"
    modelled = {h.get("epoch"): (h.get("modelled") or {}).get("seconds") for h in report["results"].get("history") or []}
    knots_h, knots_b = [t0], [0.0]
    for p in phases:
        if p["name"] == "epoch" and modelled.get(p.get("info", {}).get("epoch")) is not None:
            b = modelled[p["info"]["epoch"]]
            if p["t_start_s"] > knots_h[-1] and b > knots_b[-1]:
                knots_h.append(p["t_start_s"])
                knots_b.append(b)
    if len(knots_h) < 2:
        total = report["results"].get("summary", {}).get("modelled_time_s")
        end = next((p["t_start_s"] for p in phases if p["name"] in ("finished", "done")), None)
        if not total or end is None or end <= t0:
            return t_s - t0, "host time since training started (s; no modelled board time to map to)"
        knots_h.append(end)
        knots_b.append(total)
    return np.interp(t_s, knots_h, knots_b, left=np.nan, right=np.nan), "modelled board time since training started (s)"


def board_power(report: dict, t_s: np.ndarray, p_w: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(board-time edges, power on board time per interval, axis label); energy above idle kept."""
    b, label = board_time_axis(report, t_s)
    idle = report["meter"].get("idle_power_w") or 0.0
    ok = np.isfinite(b)
    t, p, b = t_s[ok], p_w[ok], b[ok]
    if t.size < 2:
        return b, np.array([]), label
    e_above = np.array([integrate_energy(t, p, t[i], t[i + 1]) for i in range(t.size - 1)]) - idle * np.diff(t)
    db = np.diff(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        pw = np.where(db > 0, idle + e_above / db, np.nan)
    return b, pw, label


def plot_board_power(report: dict, samples_csv: Path, out: Path) -> list[Path]:
    """power_board.png and .svg: power and cumulative energy above idle on the board's time."""
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(samples_csv, newline="") as f:
        rows = [(float(r["t_s"]), float(r["watts"])) for r in csv.DictReader(f) if r["watts"] not in ("", "nan")]
    if len(rows) < 2 or not report.get("meter"):
        return []
    t, p = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    b, pw, label = board_power(report, t, p)
    if pw.size == 0:
        return []
    m = report["meter"]
    idle = m.get("idle_power_w") or 0.0
    fig, (ax_p, ax_e) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax_p.stairs(pw, b, lw=0.8, color="black", baseline=None)
    ax_p.axhline(idle, ls="--", lw=0.8, color="gray", label="idle")
    ax_p.set_ylabel("power (W)")
    ax_p.legend(fontsize=8)
    ax_p.set_title(f"run {report.get('run_id')}: meter {m.get('energy_kind')} ({m.get('energy_note')})", fontsize=9)
    e = np.concatenate(([0.0], np.nancumsum((pw - idle) * np.diff(b))))
    ax_e.plot(b, e, lw=1.2)
    ax_e.set_ylabel("energy above idle (J)")
    ax_e.set_xlabel(label)
    fig.tight_layout()
    paths = [Path(out) / "power_board.png", Path(out) / "power_board.svg"]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def write_run_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """summary.md always; the board-time power plot when there is a meter and matplotlib."""
    out_dir = Path(out_dir)
    paths = {"summary_md": out_dir / "summary.md"}
    paths["summary_md"].write_text(run_summary_md(report))
    if report.get("meter") and (out_dir / "samples.csv").exists():
        try:
            for p in plot_board_power(report, out_dir / "samples.csv", out_dir):
                paths[p.suffix[1:] + "_board"] = p
        except ImportError:          # matplotlib is a host extra; the numbers do not need it
            pass
    return paths

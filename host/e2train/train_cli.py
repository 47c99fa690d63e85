"""`e2train flash` and `e2train train`: the host side of on-device training.

With no ``--board``, ``train`` starts the simulated board itself (``e2train board --pty
--sim`` in a child process) and talks to it over a pseudo-terminal, exactly as it talks to a
real board over ``/dev/ttyUSB1`` or ``socket://host:port``. A power meter (the simulated one
by default on the simulated board) is recorded alongside, with phases marked from the link's
events. The link may drop: the host reconnects and catches up; training goes on regardless.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from .device.link import LinkError
from .remote import BoardClient, SimulatedBoard

PRESETS_DOC = "baseline (8-bit, all batches, no gates, exact signs) or e2train (SMD + SLU + PSG)"


def add_flash_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", help="board link: /dev/ttyUSB1, socket://host:port (default: the simulated board)")
    p.add_argument("--bitstream", help="bitstream name on the board (default: the one its manifest names)")
    p.add_argument("--token", help="shared token for a TCP link off loopback")


def run_flash(args: argparse.Namespace) -> int:
    with _board(args) as (client, _meter):
        info = client.flash(args.bitstream)
        print(json.dumps(info, indent=2))
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_flash_arguments(p)
    p.add_argument("--preset", default="e2train", help=PRESETS_DOC)
    p.add_argument("--config", help="JSON file of trainer settings (overrides the preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (VALUE parsed as JSON when it parses)")
    p.add_argument("--dataset", default="digits", help="digits (scikit-learn) or cifar10/cifar100 (needs --data-dir)")
    p.add_argument("--data-dir", help="directory with the CIFAR python-format files")
    p.add_argument("--meter", default=None,
                   help="power meter spec (wattsup:/dev/ttyUSB0, wt310:..., sim:, none); default: the simulated "
                        "board's meter, or none on a real board")
    p.add_argument("--idle", type=float, default=2.0, help="seconds of idle power to record before training")
    p.add_argument("--out", default=None, help="report directory (default runs/<run id>)")
    p.add_argument("--run-id", default=None)
    p.add_argument("--resume", action="store_true", help="resume --run-id from its last checkpoint on the board")


def run_train(args: argparse.Namespace) -> int:
    try:
        config = build_config(args.preset, args.config, args.set)
    except ValueError as e:
        print(f"e2train train: {e}", file=sys.stderr)
        return 2
    with _board(args) as (client, sim_meter):
        meter_spec = args.meter or sim_meter
        result = train_session(client, config, dataset=args.dataset, data_dir=args.data_dir,
                               meter=None if meter_spec in (None, "none") else meter_spec,
                               idle_s=args.idle, out=args.out, run_id=args.run_id, resume=args.resume)
    print_summary(result)
    return 0 if result["results"].get("state", "finished") != "failed" else 1


# --- pieces used by `train` and by the demo --------------------------------------------

class _board:
    """Context manager: (client, simulated meter spec or None) for --board or a new simulated board."""

    def __init__(self, args):
        self.args = args
        self.sim = None
        self.client = None

    def __enter__(self):
        board = getattr(self.args, "board", None)
        try:
            if board:
                self.client = BoardClient(board, token=getattr(self.args, "token", None))
                return self.client, None
            print("e2train: no --board given: starting the simulated board", file=sys.stderr)
            self.sim = SimulatedBoard()
            self.client = BoardClient(self.sim.link)
            return self.client, self.sim.meter
        except Exception:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        if self.client is not None:
            if self.sim is not None:
                self.client.shutdown()
            self.client.close()
        if self.sim is not None:
            self.sim.stop()


def build_config(preset: str, config_file: str | None, overrides: list[str]) -> dict:
    from .device.board import preset_config
    cfg = preset_config(preset)
    if config_file:
        try:
            cfg.update(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read config {config_file}: {e}") from None
    for item in overrides:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            cfg[key] = json.loads(val)
        except json.JSONDecodeError:
            cfg[key] = val
    return cfg


def dataset_npz(name: str, data_dir: str | None) -> bytes:
    """The data set as npz bytes (no pickle), as the board agent expects it."""
    from .datasets import load
    xtr, ytr, xte, yte = load(name, data_dir)
    buf = io.BytesIO()
    np.savez(buf, x_train=np.asarray(xtr, np.float32), y_train=np.asarray(ytr, np.int64),
             x_test=np.asarray(xte, np.float32), y_test=np.asarray(yte, np.int64))
    return buf.getvalue()


def train_session(client: BoardClient, config: dict, *, dataset: str, data_dir: str | None = None,
                  meter: str | None = None, idle_s: float = 2.0, out: str | None = None,
                  run_id: str | None = None, resume: bool = False, label: str | None = None,
                  quiet: bool = False) -> dict:
    """Flash if needed, upload, train with live progress, fetch results; meter recorded alongside."""
    if not client.hello.get("flashed"):
        client.flash()
    client.upload_bytes(dataset, dataset_npz(dataset, data_dir))
    run_id = run_id or time.strftime(f"{label or 'run'}-%Y%m%d-%H%M%S")
    out_dir = Path(out or Path("runs") / run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = None
    if meter:
        from .meter.recorder import Recorder
        rec = Recorder(meter, idle_s=idle_s, out_dir=out_dir)
        rec.start()             # waits for the first sample, then records idle power
    try:
        if rec:
            rec.mark("train")
        run_id = client.train(config, dataset, run_id=run_id, resume=resume)
        state = _follow(client, run_id, rec, quiet=quiet, label=label or run_id)
        results = client.results(run_id)
        results["state"] = state
    finally:
        meter_summary = None
        if rec:
            rec.mark("done")
            rec.stop()
            meter_summary = rec.summary()
            rec.save(out_dir)
    report = {"run_id": run_id, "config": config, "results": results, "meter": meter_summary}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    from .run_report import write_run_report
    write_run_report(report, out_dir)        # summary.md; power on the board's time (PNG + SVG)
    report["out_dir"] = str(out_dir)
    return report


def _follow(client: BoardClient, run_id: str, rec, *, quiet: bool, label: str) -> str:
    """Print events until the run ends; reconnect if the link drops."""
    while True:
        try:
            for ev in client.events(timeout=0.5):
                if ev.get("run_id") not in (None, run_id):
                    continue
                name = ev["event"]
                if rec and name in ("epoch", "finished", "stopped"):
                    rec.mark(name, t_board=ev.get("t"), **{k: ev[k] for k in ("epoch",) if k in ev})
                if not quiet:
                    _print_event(label, ev)
                if name in ("finished", "stopped"):
                    return name
                if name == "error":
                    return "failed"
        except LinkError as e:
            print(f"\ne2train: link lost ({e}); reconnecting (training goes on on the board)", file=sys.stderr)
            if rec:
                rec.mark("link-lost")
            client.reconnect()
            print(f"e2train: reconnected; caught up to event {client.last_seq}", file=sys.stderr)


def _print_event(label: str, ev: dict) -> None:
    name = ev["event"]
    if name == "progress":
        done, total = ev.get("step", 0), ev.get("steps") or 0
        bar = ""
        if total:
            n = int(30 * done / total)
            bar = "[" + "#" * n + "." * (30 - n) + f"] {done}/{total}"
        print(f"\r{label}: epoch {ev.get('epoch', '?')} {bar}", end="", file=sys.stderr, flush=True)
    elif name == "epoch":
        parts = [f"epoch {ev.get('epoch')}"]
        for k, fmt in (("loss", "{:.4f}"), ("test_acc", "{:.2%}"), ("batches_skipped", "{}"),
                       ("exec_ratio", "{:.2f}"), ("predicted_frac", "{:.1%}"), ("modelled_energy_j", "{:.3g} J (modelled)")):
            if ev.get(k) is not None:
                parts.append(f"{k}=" + fmt.format(ev[k]))
        print(f"\r{label}: " + "  ".join(parts), file=sys.stderr, flush=True)
    elif name == "error":
        print(f"\n{label}: board error: {ev.get('error')}", file=sys.stderr)


def main_summary_lines(report: dict) -> list[str]:
    res = report["results"]
    lines = [f"run {report['run_id']} ({res.get('state', '?')})"]
    for k, v in res.get("summary", {}).items():
        lines.append(f"  {k:28s} {v}")
    m = report.get("meter")
    if m:
        lines.append(f"  meter: {m.get('energy_kind')} ({m.get('energy_note')})")
        for k in ("total_energy_j", "energy_above_idle_j", "avg_power_w", "duration_s", "samples", "gap_count",
                  "bad_lines", "disconnects"):
            if k in m:
                lines.append(f"  {'meter ' + k:28s} {m[k]}")
    lines.append(f"  report: {report.get('out_dir')}")
    return lines


def print_summary(report: dict) -> None:
    print("\n" + "\n".join(main_summary_lines(report)))

"""The run record: one versioned schema for a training run of either trainer, and its one reader.

Standard library only, so the board side can write and read it too (docs/records.md has the
schema field by field). A record is a JSON object::

    {"schema": "e2train.run-record", "schema_version": 1,
     "trainer": "device" | "torch", "run_id": ..., "config": {... as given ...},
     "environment": {"commit", "package_version", "contract_version", "platform"},
     "epochs": [{"epoch": 1, "train_loss", "train_acc", "test_acc", "wall_s", "energy_j",
                 "batches_run", "batches_skipped", ...}, ...],
     "final": {"test_acc", "best_test_acc", "epochs_done", "wall_s", "stopped"},
     "energy": [{"kind": "modelled" | "measured" | "none", "source", "platform", "total_j",
                 "parts_j", "note"}, ...],
     "extra": {... what only one trainer has ...}}

Units, the same for both trainers: accuracy a fraction in [0, 1] (percent only when printed),
epochs numbered from 1 ("epoch 1 is the first"), time in seconds, energy in joules with its
kind. ``energy[0]`` is the run's primary figure and the one the epochs' cumulative
``energy_j`` follows.

``load(path)`` reads a record of this schema and every older file this project wrote for a
run (the torch trainer's ``records.json`` with accuracy in percent, the distributed trainers'
``records.json``, the host's ``report.json`` of a board run, the board's stored results with
epochs numbered from 0), maps them to these fields, validates, and returns a
:class:`TrainingRecord`. Anything it cannot read ends in one :class:`RecordError` line that
names the file and the field.
"""
from __future__ import annotations

import json
import math
import platform as _platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fixedpoint import CONTRACT_VERSION

SCHEMA = "e2train.run-record"
SCHEMA_VERSION = 1
TRAINERS = ("device", "torch")
ENERGY_KINDS = ("modelled", "measured", "none")
RECORD_FILE = "records.json"           # the run record's name in a run directory

# Per-epoch fields both trainers fill (None where a trainer has no such figure); a trainer may
# add its own beside them. Units in the names' suffixes; accuracies are fractions.
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "test_acc", "wall_s", "energy_j",
                "batches_run", "batches_skipped")
ACC_FIELDS = ("train_acc", "test_acc", "val_acc", "swa_test_acc", "test_top5")

# The event stream both trainers emit (the device trainer over the link as JSON lines, the torch
# trainer to its ``on_event`` callback): event name -> the fields it always carries. An
# ``epoch`` event carries one epoch entry of the record (``EPOCH_FIELDS``, same units);
# ``finished`` carries the record's ``final``. ``progress`` numbers its epoch from 1 too.
EVENTS: dict[str, tuple[str, ...]] = {
    "started": ("total_epochs", "batches_per_epoch"),
    "progress": ("epoch", "batch", "loss"),
    "epoch": EPOCH_FIELDS,
    "checkpoint": ("path",),
    "warning": ("message",),
    "finished": ("final",),
    "stopped": (),
    "error": ("error",),
}


class RecordError(ValueError):
    """A run record that cannot be read: the message names the file and the field."""


@dataclass
class TrainingRecord:
    """One training run, as the schema has it (``to_dict`` gives the JSON form back)."""

    trainer: str
    config: dict
    environment: dict
    epochs: list[dict]
    final: dict
    energy: list[dict]
    run_id: str | None = None
    extra: dict = field(default_factory=dict)
    source: str = ""                    # the file it was read from ("" when built in memory)
    source_format: str = "current"      # current | torch-records-v0 | device-report-v0 | ...

    @property
    def primary_energy(self) -> dict:
        return self.energy[0]

    @property
    def label(self) -> str:
        """The run id, else the run directory's name (or the file's, if it has a name of its own)."""
        if self.run_id or not self.source:
            return self.run_id or self.trainer
        p = Path(self.source)
        return p.parent.name if p.name in (RECORD_FILE, "report.json") else p.stem

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "trainer": self.trainer,
                "run_id": self.run_id, "config": self.config, "environment": self.environment,
                "epochs": self.epochs, "final": self.final, "energy": self.energy, "extra": self.extra}


# -- environment --------------------------------------------------------------------------------
def source_commit() -> str:
    """The commit of the e2train checkout this runs from (with -dirty), or why it is unknown."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown (not a git checkout)"


def environment(platform: str | None = None, commit: str | None = None) -> dict:
    """Where a run was made: commit, package version, fixed-point contract, platform."""
    from importlib import metadata
    try:
        version = metadata.version("e2train")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return {"commit": commit or source_commit(), "package_version": version,
            "contract_version": CONTRACT_VERSION,
            "platform": platform or f"{_platform.system()} {_platform.machine()}, Python {_platform.python_version()}"}


UNKNOWN_ENVIRONMENT = {"commit": None, "package_version": None, "contract_version": None, "platform": None}


# -- building a record --------------------------------------------------------------------------
def energy_entry(kind: str, source: str, platform: str | None, total_j: float | None,
                 parts_j: dict | None = None, note: str = "", **more) -> dict:
    """One labelled energy figure of a run."""
    return {"kind": kind, "source": source, "platform": platform, "total_j": total_j, "parts_j": parts_j,
            "note": note, **more}


def _frac(v):
    """Percent -> fraction (None stays None)."""
    return None if v is None else v / 100.0


def torch_epoch(r: dict) -> dict:
    """One epoch entry from a torch epoch record (accuracies in percent there, fractions here)."""
    e = {k: r.get(k) for k in EPOCH_FIELDS}
    e.update({k: v for k, v in r.items() if k not in e})
    for k in ACC_FIELDS:
        if k in e:
            e[k] = _frac(e[k])
    return e


def torch_final(res: dict, epochs: list[dict]) -> dict:
    """The record's ``final`` from a torch result dict (percent there)."""
    accs = [e["test_acc"] for e in epochs if e.get("test_acc") is not None]
    best = _frac(res.get("best_test_acc"))
    return {"test_acc": _frac(res.get("final_test_acc")), "best_test_acc": max(accs) if best is None and accs else best,
            "epochs_done": len(epochs), "wall_s": res.get("wall_s"), "stopped": False}


def torch_record(res: dict, *, run_id: str | None = None, env: dict | None = None) -> TrainingRecord:
    """A torch run's record from the trainer's (or a distributed trainer's) result dict, whose
    accuracies are percent: the form ``RunResult.to_dict()`` and the old ``records.json`` have."""
    epochs = [torch_epoch(r) for r in res.get("records") or []]
    kind = str(res.get("energy_kind") or "none")
    kind = kind if kind in ENERGY_KINDS else "none"       # "none (wall clock only)": distributed runs
    energy = [energy_entry(kind, "energy model" if kind == "modelled" else "none", res.get("energy_platform"),
                           res.get("energy_j"), res.get("energy_parts_j"),
                           res.get("energy_label") or str(res.get("energy_kind") or ""))]
    extra = {k: v for k, v in res.items() if k not in (
        "config", "records", "final_test_acc", "best_test_acc", "wall_s", "energy_j", "energy_kind",
        "energy_label", "energy_platform", "energy_parts_j")}
    return TrainingRecord("torch", res.get("config") or {}, env or dict(UNKNOWN_ENVIRONMENT), epochs,
                          torch_final(res, epochs), energy, run_id=run_id, extra=extra)


def device_epoch(h: dict, shift: int = 0) -> dict:
    """One epoch entry from a device trainer's history entry (``shift`` 1 for results written
    before the schema, whose epochs count from 0)."""
    mo, sk = h.get("modelled") or {}, h.get("skips") or {}
    n = h.get("epoch")
    return {"epoch": n + shift if isinstance(n, int) else n,
            "train_loss": h.get("train_loss"), "train_acc": h.get("train_acc"), "test_acc": h.get("test_acc"),
            "wall_s": h.get("wall_s"), "energy_j": mo.get("energy_j"),
            "batches_run": h.get("batches_run"), "batches_skipped": h.get("batches_dropped"),
            "modelled_time_s": mo.get("seconds"), "test_loss": h.get("test_loss"),
            "block_exec_ratio": sk.get("block_exec_ratio"),
            "predicted_frac": (sk.get("predicted_fraction") or {}).get("overall")}


def device_final(results: dict) -> dict:
    """The record's ``final`` from a device trainer's results."""
    accs = [h["test_acc"] for h in results.get("history") or [] if h.get("test_acc") is not None]
    return {"test_acc": results.get("test_acc"), "best_test_acc": max(accs) if accs else None,
            "epochs_done": results.get("epochs_done", len(results.get("history") or [])),
            "wall_s": results.get("wall_s"), "stopped": bool(results.get("stopped"))}


def board_platform(results: dict) -> str | None:
    """The board a device run trained on, from its results ("sim, xc7z020 (simulated)")."""
    b = results.get("board") or {}
    return ", ".join(str(b[k]) for k in ("board", "part") if b.get(k)) or None


def device_record(results: dict, config: dict | None = None, *, meter: dict | None = None,
                  run_id: str | None = None, env: dict | None = None) -> TrainingRecord:
    """A device run's record from the trainer's results (``Trainer.result()``, the board's stored
    results) and, when the host recorded one, the meter's summary. Results written before the
    schema (no ``record_schema_version``) number their epochs from 0: shifted here."""
    shift = 0 if results.get("record_schema_version") else 1
    epochs = [device_epoch(h, shift) for h in results.get("history") or []]
    mo = results.get("modelled") or {}
    board = results.get("board") or {}
    energy = [energy_entry(mo.get("label", "modelled"), "energy model", mo.get("platform"), mo.get("energy_j"),
                           mo.get("parts_j"), mo.get("static_note") or "", modelled_time_s=mo.get("seconds"))]
    if meter:
        energy.append(energy_entry(meter.get("energy_kind", "measured"), "meter", board.get("board"),
                                   meter.get("total_energy_j"), None, meter.get("energy_note") or "",
                                   above_idle_j=meter.get("energy_above_idle_j"), samples=meter.get("samples"),
                                   gap_count=meter.get("gap_count")))
    extra = {k: results[k] for k in ("summary", "skips", "work", "eval_modelled", "sim_device", "board", "state",
                                     "total_epochs") if k in results}
    env = env or dict(UNKNOWN_ENVIRONMENT, platform=board_platform(results))
    config = config if config is not None else results.get("config") or {}       # the board keeps it as given
    return TrainingRecord("device", config, env, epochs, device_final(results),
                          energy, run_id=run_id or results.get("run_id"), extra=extra)


# -- reading ------------------------------------------------------------------------------------
def _bad(source: str, where: str, problem: str) -> RecordError:
    return RecordError(f"{source}: field {where}: {problem}")


def _num_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate(rec: TrainingRecord) -> TrainingRecord:
    """Check the fields and units the schema promises; RecordError names the file and field."""
    src = rec.source or "run record"
    if rec.trainer not in TRAINERS:
        raise _bad(src, "trainer", f"{rec.trainer!r} is not one of {TRAINERS}")
    if not isinstance(rec.config, dict):
        raise _bad(src, "config", "must be an object of settings")
    if not isinstance(rec.epochs, list):
        raise _bad(src, "epochs", "must be a list of per-epoch objects")
    last = 0
    for i, e in enumerate(rec.epochs):
        if not isinstance(e, dict):
            raise _bad(src, f"epochs[{i}]", "must be an object")
        n = e.get("epoch")
        if not isinstance(n, int) or isinstance(n, bool) or n <= last:
            raise _bad(src, f"epochs[{i}].epoch", f"{n!r} is not an epoch number above {last} (epochs count from 1)")
        last = n
        for k in EPOCH_FIELDS[1:]:
            if not _num_or_none(e.get(k)):
                raise _bad(src, f"epochs[{i}].{k}", f"{e.get(k)!r} is not a number or null")
        for k in ACC_FIELDS:
            v = e.get(k)
            if v is not None and isinstance(v, (int, float)) and not (0.0 <= v <= 1.0 or math.isnan(v)):
                raise _bad(src, f"epochs[{i}].{k}", f"{v!r} is not a fraction in [0, 1] (accuracy is stored as a "
                           "fraction; percent only when printed)")
    if not isinstance(rec.final, dict):
        raise _bad(src, "final", "must be an object")
    v = rec.final.get("test_acc")
    if not _num_or_none(v) or (v is not None and not (0.0 <= v <= 1.0 or math.isnan(v))):
        raise _bad(src, "final.test_acc", f"{v!r} is not a fraction in [0, 1] or null")
    if not isinstance(rec.energy, list) or not rec.energy:
        raise _bad(src, "energy", "must be a non-empty list of labelled energy figures")
    for i, en in enumerate(rec.energy):
        if not isinstance(en, dict) or en.get("kind") not in ENERGY_KINDS:
            got = en.get("kind") if isinstance(en, dict) else en
            raise _bad(src, f"energy[{i}].kind", f"{got!r} is not one of {ENERGY_KINDS}")
        if not _num_or_none(en.get("total_j")):
            raise _bad(src, f"energy[{i}].total_j", f"{en.get('total_j')!r} is not a number of joules or null")
    return rec


def from_dict(d: Any, source: str = "") -> TrainingRecord:
    """A record from a parsed JSON object of any format ``load`` knows; validated."""
    src = source or "run record"
    if not isinstance(d, dict):
        raise RecordError(f"{src}: holds a JSON {type(d).__name__}, not a run record object")
    if d.get("schema") == SCHEMA:
        rec, fmt = _current(d, src), "current"
    elif "schema" in d:
        raise _bad(src, "schema", f"{d['schema']!r} is not {SCHEMA!r}")
    elif isinstance(d.get("records"), list) and "final_test_acc" in d:
        rec, fmt = torch_record(d), ("distributed-records-v0" if "dist" in d else "torch-records-v0")
    elif isinstance(d.get("results"), dict) and "run_id" in d:
        rec = device_record(d["results"], d.get("config"), meter=d.get("meter"), run_id=d.get("run_id"))
        fmt = "device-report-v0"
    elif isinstance(d.get("history"), list) and "epochs_done" in d:
        rec, fmt = device_record(d), "device-results-v0"
    else:
        raise RecordError(f"{src}: not a run record (no field 'schema', and not an older torch records.json, "
                          "device report.json or board results file)")
    rec.source, rec.source_format = source, fmt
    return validate(rec)


def _current(d: dict, src: str) -> TrainingRecord:
    v = d.get("schema_version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(src, "schema_version", f"{v!r} is not a whole number")
    if v > SCHEMA_VERSION:
        raise _bad(src, "schema_version", f"{v} is newer than this e2train reads ({SCHEMA_VERSION}); upgrade e2train")
    for k in ("trainer", "config", "environment", "epochs", "final", "energy"):
        if k not in d:
            raise _bad(src, k, "missing")
    return TrainingRecord(d["trainer"], d["config"], d["environment"], d["epochs"], d["final"], d["energy"],
                          run_id=d.get("run_id"), extra=d.get("extra") or {})


def load(path: str | Path) -> TrainingRecord:
    """Read a run record: a file, or a run directory holding one (records.json, else report.json)."""
    p = Path(path)
    if p.is_dir():
        for name in (RECORD_FILE, "report.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise RecordError(f"{p}: no {RECORD_FILE} or report.json in this directory; name a run directory "
                              "written by `e2train train` or `e2train torch-train --out`")
    try:
        text = p.read_text()
    except OSError as e:
        raise RecordError(f"{p}: cannot read it ({e.strerror or e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{p}: not JSON (line {e.lineno}: {e.msg})") from None
    return from_dict(d, str(p))


def save(rec: TrainingRecord, path: str | Path) -> Path:
    """Write a record (validated first) as JSON; written whole, then renamed into place."""
    validate(rec)
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(rec.to_dict(), indent=1, default=str))
    tmp.replace(p)
    return p

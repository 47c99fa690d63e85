"""The data model of a benchmark run, and its one-row-per-epoch CSV form.

A *run* is one training of one method (or one control of a method) under one budget with
one seed. Each epoch leaves a checkpoint: cumulative wall-clock seconds, cumulative energy
(modelled or measured -- the record says which), test accuracy, and the skip ratio measured
so far. Everything the harness reports (time-to-accuracy, Pareto fronts, confidence
intervals) is computed from these records alone, so a runs.csv written by one session can be
re-analysed later without re-training.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# How a run relates to the method it is a control of.
KIND_METHOD = "method"
KIND_RANDOM = "random-control"          # random skipping at the method's measured ratio
KIND_FEWER = "fewer-iters-control"      # standard training, fewer iterations, same energy
RUN_KINDS = (KIND_METHOD, KIND_RANDOM, KIND_FEWER)

# "none": a distributed run (DDP or pipeline) has no energy model attached; its energy_j is NaN
ENERGY_SOURCES = ("modelled", "measured", "none")


@dataclass(frozen=True)
class Budget:
    """How long a run trains: a number of epochs, or an energy budget in joules."""

    kind: str      # "epochs" | "energy"
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("epochs", "energy"):
            raise ValueError(f"budget kind must be 'epochs' or 'energy', not {self.kind!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"budget must be a positive number, not {self.value!r}")
        if self.kind == "epochs" and float(self.value) != int(self.value):
            raise ValueError(f"an epoch budget must be a whole number, not {self.value!r}")

    @property
    def label(self) -> str:
        return f"{int(self.value)}ep" if self.kind == "epochs" else f"{self.value:g}J"

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """'10', '10ep' -> 10 epochs; '250J' -> 250 joules of modelled energy."""
        t = text.strip()
        try:
            if t.lower().endswith("ep"):
                return cls("epochs", float(t[:-2]))
            if t.upper().endswith("J"):
                return cls("energy", float(t[:-1]))
            return cls("epochs", float(t))
        except ValueError as e:
            raise ValueError(
                f"bad budget {text!r}: {e}. Write a whole number of epochs ('10' or '10ep') "
                f"or an energy budget in joules ('250J')") from None


@dataclass
class EpochRecord:
    epoch: int          # 1-based
    wall_s: float       # cumulative training wall-clock at the end of this epoch (eval excluded)
    energy_j: float     # cumulative training energy at the end of this epoch
    acc: float          # test accuracy in [0, 1]
    skip_ratio: float   # skipped / offered units, cumulative up to this epoch (the run's skip_unit)
    steps: int = 0      # cumulative optimizer steps that ran
    # every granularity the run skips at, {unit: cumulative ratio} (E2-Train skips at three)
    skips: dict[str, float] = field(default_factory=dict)
    # peak memory of the run so far, MiB (CUDA allocator peak, or sampled CPU RSS rise)
    peak_mem_mb: float = math.nan
    # test-set accuracy when ``acc`` is the validation split's (decisions read acc, the test
    # set only reports); NaN when acc is the test set's own
    test_acc: float = math.nan
    # the cumulative modelled energy in parts (core.energy.PARTS: compute, on_chip, dram,
    # static), J; empty when the run priced none (distributed runs, older files)
    energy_parts: dict[str, float] = field(default_factory=dict)


@dataclass
class RunRecord:
    method: str                 # registered method name (controls: the control's own name)
    seed: int
    budget: Budget
    kind: str = KIND_METHOD
    control_of: str = ""        # the method a control is paired with ("" for a method run)
    skip_unit: str = ""         # granularity of the skip ratio: "batches", "block-samples", ...
    energy_source: str = "modelled"
    target_skip_ratio: float = math.nan   # what a random control was asked to skip
    epochs: list[EpochRecord] = field(default_factory=list)
    # processes the run trained on, and how: "" (one process), "ddp" (data parallel), or the
    # pipeline schedule ("async", "gpipe", "1f1b"; nproc = stages)
    nproc: int = 1
    schedule: str = ""
    energy_platform: str = ""   # core.energy platform the energy is priced on ("" when unknown)

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {RUN_KINDS}, not {self.kind!r}")
        if self.energy_source not in ENERGY_SOURCES:
            raise ValueError(f"energy source must be one of {ENERGY_SOURCES}, not {self.energy_source!r}")
        if self.kind != KIND_METHOD and not self.control_of:
            raise ValueError(f"a {self.kind} run must name the method it controls (control_of)")

    # The label under which a run is grouped across seeds.
    @property
    def arm(self) -> str:
        return self.method if self.kind == KIND_METHOD else f"{self.method}[{self.control_of}]"

    @property
    def final(self) -> EpochRecord:
        if not self.epochs:
            raise ValueError(f"run {self.arm} seed {self.seed} has no epochs")
        return self.epochs[-1]

    @property
    def skip_ratio(self) -> float:
        return self.final.skip_ratio if self.epochs else math.nan


def format_skips(skips: dict[str, float]) -> str:
    """{'batches': 0.5, 'block-samples': 0.3} -> 'batches=0.500000;block-samples=0.300000'."""
    return ";".join(f"{u}={r:.6f}" for u, r in skips.items())


def format_parts(parts: dict[str, float]) -> str:
    """{'compute': 0.01, 'dram': 0.002} -> 'compute=0.01;dram=0.002' (significant digits:
    energies of tiny runs are millijoules); read back with ``parse_skips``."""
    return ";".join(f"{k}={v:.9g}" for k, v in parts.items())


def parse_skips(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (text or "").split(";")):
        unit, sep, val = part.partition("=")
        if not sep or not unit:
            raise ValueError(f"bad skip_ratios entry {part!r} (want unit=ratio)")
        out[unit] = float(val)
    return out


CSV_FIELDS = ["method", "kind", "control_of", "seed", "budget_kind", "budget", "skip_unit",
              "target_skip_ratio", "energy_source", "epoch", "steps", "wall_s", "energy_j",
              "acc", "skip_ratio", "skip_ratios", "peak_mem_mb", "test_acc", "nproc", "schedule",
              "energy_platform", "energy_parts"]
OPTIONAL_FIELDS = ("peak_mem_mb", "test_acc", "nproc", "schedule", "energy_platform", "energy_parts")   # absent from files written before they existed


def write_csv(runs: Iterable[RunRecord], path: str | Path) -> Path:
    """One row per run-epoch; the energy column's source is in its own column, never implied."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in runs:
            for e in r.epochs:
                w.writerow({
                    "method": r.method, "kind": r.kind, "control_of": r.control_of,
                    "seed": r.seed, "budget_kind": r.budget.kind, "budget": f"{r.budget.value:g}",
                    "skip_unit": r.skip_unit,
                    "target_skip_ratio": "" if math.isnan(r.target_skip_ratio) else f"{r.target_skip_ratio:.6f}",
                    "energy_source": r.energy_source, "epoch": e.epoch, "steps": e.steps,
                    # significant digits, not decimals: energies of tiny runs are millijoules
                    "wall_s": f"{e.wall_s:.9g}", "energy_j": f"{e.energy_j:.9g}",
                    "acc": f"{e.acc:.6f}", "skip_ratio": f"{e.skip_ratio:.6f}",
                    "skip_ratios": format_skips(e.skips),
                    "peak_mem_mb": "" if math.isnan(e.peak_mem_mb) else f"{e.peak_mem_mb:.3f}",
                    "test_acc": "" if math.isnan(e.test_acc) else f"{e.test_acc:.6f}",
                    "nproc": r.nproc, "schedule": r.schedule,
                    "energy_platform": r.energy_platform, "energy_parts": format_parts(e.energy_parts),
                })
    # Written whole, then renamed: an interrupted write never leaves a half file behind.
    tmp.replace(path)
    return path


def read_csv(path: str | Path) -> list[RunRecord]:
    """Inverse of :func:`write_csv`; a malformed file raises with the line that is wrong."""
    path = Path(path)
    runs: dict[tuple, RunRecord] = {}
    with path.open(newline="") as f:
        rd = csv.DictReader(f)
        missing = [c for c in CSV_FIELDS if c not in (rd.fieldnames or []) and c not in OPTIONAL_FIELDS]
        if missing:
            raise ValueError(f"{path}: not a runs.csv (missing columns {missing})")
        for lineno, row in enumerate(rd, start=2):
            try:
                key = (row["method"], row["kind"], row["control_of"], int(row["seed"]),
                       row["budget_kind"], float(row["budget"]))
                if key not in runs:
                    runs[key] = RunRecord(
                        method=row["method"], seed=int(row["seed"]),
                        budget=Budget(row["budget_kind"], float(row["budget"])),
                        kind=row["kind"], control_of=row["control_of"], skip_unit=row["skip_unit"],
                        energy_source=row["energy_source"],
                        target_skip_ratio=float(row["target_skip_ratio"]) if row["target_skip_ratio"] else math.nan,
                        nproc=int(row["nproc"]) if row.get("nproc") else 1, schedule=row.get("schedule") or "",
                        energy_platform=row.get("energy_platform") or "")
                runs[key].epochs.append(EpochRecord(
                    epoch=int(row["epoch"]), wall_s=float(row["wall_s"]), energy_j=float(row["energy_j"]),
                    acc=float(row["acc"]), skip_ratio=float(row["skip_ratio"]), steps=int(row["steps"]),
                    skips=parse_skips(row["skip_ratios"]),
                    peak_mem_mb=float(row["peak_mem_mb"]) if row.get("peak_mem_mb") else math.nan,
                    test_acc=float(row["test_acc"]) if row.get("test_acc") else math.nan,
                    energy_parts=parse_skips(row.get("energy_parts") or "")))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}:{lineno}: malformed row ({e})") from None
    return list(runs.values())

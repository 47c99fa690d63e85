"""Where the board agent meets the rest of the board side: the loaded kernels and the trainer.

``open_board`` loads a bitstream (or the simulated board) through ``KernelOverlay`` and picks
the conv backend; ``make_trainer`` builds a validated :class:`Trainer` with a checkpoint; the
presets name the two runs users compare. numpy + pynq only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .train_config import TrainConfig

# The simulated device of the current overlay, for the simulated meter's power function.
_ACTIVE: dict[str, Any] = {"device": None}


@dataclass
class Board:
    backend: Any
    info: dict
    overlay: Any = None


def _bitstream_dir(bitstream: str | None, simulated: bool) -> Path:
    from .overlay import default_bitstreams_dir
    root = default_bitstreams_dir()
    if bitstream is None:
        if simulated:
            return root / "sim"
        board = os.environ.get("BOARD")          # the PYNQ image sets BOARD=Pynq-Z2, ...
        if not board:
            raise ValueError("no bitstream named and $BOARD is unset: pass a bitstream directory "
                             f"(one of {sorted(p.name for p in root.iterdir() if p.is_dir())})")
        return root / board.lower().replace("_", "-")
    p = Path(bitstream)
    if p.is_absolute() or p.exists():
        return p
    if not all(part not in ("", ".", "..") for part in p.parts):
        raise ValueError(f"bad bitstream name {bitstream!r}")
    return root / p


def open_board(bitstream: str | None, *, simulated: bool, backend_name: str | None = None,
               arena_bytes: int | None = None) -> Board:
    """Load the kernels and return the backend the trainer will use.

    ``backend_name``: ``pynq`` (default: the PYNQ driver, over the simulated device when
    simulated), ``csim`` (C simulation called directly) or ``golden`` (numpy, slow).
    ``arena_bytes``: the PYNQ backend's cap on the CMA memory it keeps tensors in (None: its
    default, ``backend_pynq.ARENA_BYTES``).
    """
    from . import manifest as mf
    from .overlay import KernelOverlay
    path = _bitstream_dir(bitstream, simulated)
    if not path.is_dir():
        raise FileNotFoundError(f"no bitstream directory {path}")
    # Checked before anything is loaded: a hardware bitstream on the simulated board would
    # reach pynq.Overlay with no fabric behind it (and the reverse would fake a board).
    manifest, _ = mf.load(path)
    if (manifest["board"] == "sim") != simulated:
        raise mf.ManifestError(f"{path} is {'the simulated board' if manifest['board'] == 'sim' else 'a ' + manifest['board'] + ' bitstream'}, "
                               f"but this agent runs {'simulated (--sim)' if simulated else 'on hardware'}: flash "
                               f"{'bitstreams/sim' if simulated else 'the bitstream built for this board'}")
    ov = KernelOverlay(path)
    if ov.simulated:
        _ACTIVE["device"] = ov.device
    name = backend_name or "pynq"
    if name == "pynq":
        backend = ov.backend(**({} if arena_bytes is None else {"arena_bytes": arena_bytes}))
    elif name == "csim":
        from ..core import csim
        backend = csim
    elif name == "golden":
        from ..core import golden
        backend = golden
    else:
        raise ValueError(f"unknown backend {name!r} (pynq, csim, golden)")
    info = dict(ov.describe(), backend=name, bitstream_dir=str(path))
    return Board(backend, info, ov)


def sim_power_source(interval_s: float, idle_w: float | None = None) -> Callable[[float], float]:
    """Power (W) of the simulated board over the meter interval ending at wall-clock time t.

    Static/idle power from the energy model, plus the kernels' modelled dynamic energy laid on
    the wall-clock interval in which their C simulation ran (``SimDevice``). Like a real
    Watts Up?, each reading is the *average* over its interval, so kernel calls shorter than
    the interval are not missed between readings; integrated over a run, the energy above
    idle is the kernels' modelled dynamic energy. Before a bitstream is loaded the board
    draws its idle power.
    """
    if idle_w is None:
        from ..core.energy import EnergyModel
        idle_w = EnergyModel.zynq7020().idle_power_w()
    if not interval_s > 0:
        raise ValueError(f"meter interval must be > 0 s, got {interval_s!r}")

    def power(t: float) -> float:
        dev = _ACTIVE["device"]
        return dev.mean_power_w(t - interval_s, t) if dev is not None else idle_w

    return power


class TrainerRun:
    """Adapts the :class:`Trainer` to the agent: ``run()`` returns results with a summary."""

    def __init__(self, trainer, resume: bool = False):
        self.trainer = trainer
        self.resume = resume

    def stop(self) -> None:
        self.trainer.stop()

    def run(self) -> dict:
        dev = _ACTIVE["device"]
        before = dev.activity() if dev is not None else None
        res = self.trainer.run(resume=self.resume)
        res["summary"] = summarise(res)
        if dev is not None:
            # What the simulated device itself modelled for this run (training and evaluation
            # kernel calls): the energy a simulated meter sees above idle.
            after = dev.activity()
            res["sim_device"] = {
                "energy_kind": after["energy_kind"],
                "kernel_dynamic_j": after["modelled_dynamic_j"] - before["modelled_dynamic_j"],
                "kernel_seconds": after["modelled_seconds"] - before["modelled_seconds"],
            }
        return res


def summarise(res: dict) -> dict:
    """The numbers a user looks at first, each named for what it is (modelled where modelled)."""
    sk, mo = res.get("skips", {}), res.get("modelled", {})
    return {
        "test_acc": res.get("test_acc"),
        "epochs": res.get("epochs_done"),
        "batches_run": sk.get("batches_run"),
        "batches_skipped": sk.get("batches_dropped"),
        "block_skip_frac": None if sk.get("block_exec_ratio") is None else 1.0 - sk["block_exec_ratio"],
        # of the gated blocks alone (the ungated ones run for every sample of a batch that runs)
        "gated_exec_frac": sk.get("gated_exec_ratio"),
        "predicted_frac": _overall(sk.get("predicted_fraction")),
        "modelled_time_s": mo.get("seconds"),
        # fabric and ARM overlapped where the data allow (core.overlap); static is priced on it
        "modelled_critical_path_s": mo.get("critical_path_seconds"),
        "modelled_energy_j": mo.get("energy_j"),
        # beside it: the same with static power on the summed time (no overlap)
        "modelled_energy_on_sum_j": mo.get("energy_on_sum_j"),
        # the same total in its labelled parts (compute, on_chip, dram, static) on the named platform
        "modelled_energy_parts_j": mo.get("parts_j"),
        "energy_platform": mo.get("platform"),
        "energy_static_note": mo.get("static_note"),
        "wall_s": res.get("wall_s"),
        "stopped": res.get("stopped"),
    }


def _overall(v):
    return v.get("overall") if isinstance(v, dict) else v


CHECKPOINT_FILE = "checkpoint.npz"      # a run's checkpoint in its directory (checkpoints/<run id>/)


class RunIdError(ValueError):
    """A run id that does not fit the request: a fresh start of a run that has a checkpoint, or
    a resume of one that has none (the message says which flag to change)."""


def make_trainer(config: dict, data: tuple, backend, *, ckpt_dir: Path, resume: bool,
                 on_event: Callable[[dict], Any]) -> TrainerRun:
    from .trainer import Trainer
    cfg = TrainConfig.from_dict(config)          # ConfigError (a ValueError) names the bad key
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    from . import checkpoint
    ckpt = ckpt_dir / CHECKPOINT_FILE
    # A fresh start never resumes: any checkpoint of this run id (even only a .prev or an
    # unfinished save) refuses it, and --resume continues from the newest complete one.
    if not resume and checkpoint.exists(ckpt):
        raise RunIdError(f"run {ckpt_dir.name} already has a checkpoint: pass --resume to continue it, "
                         "or pick a new --run-id to start afresh")
    if resume and not checkpoint.exists(ckpt):
        raise RunIdError(f"nothing to resume: run {ckpt_dir.name} has no checkpoint; start it without --resume")
    trainer = Trainer(cfg, data, backend, on_event=on_event, checkpoint=ckpt)
    return TrainerRun(trainer, resume=resume)


def preset_config(name: str) -> dict:
    """The two runs users compare; they differ only in the three E²-Train switches."""
    from .trainer import BASELINE_SWITCHES, COMPARE_BASE
    # progress events every 5 executed steps draw the host's progress bar (they change nothing
    # in training; COMPARE_BASE has none, for the in-process comparison)
    if name == "e2train":
        return dict(COMPARE_BASE, progress_every=5)
    if name == "baseline":
        return dict(COMPARE_BASE, **BASELINE_SWITCHES, progress_every=5)
    raise ValueError(f"unknown preset {name!r}: baseline or e2train")

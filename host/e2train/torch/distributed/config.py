"""What a distributed run adds to a ``TrainConfig``: ``DistConfig`` (the ``pipeline`` /
``distributed`` section of a config file, or the ``--pipeline``/``--nproc`` flags).

* ``pipeline = S`` (>= 2): pipeline-parallel training, one stage per process;
  ``pipe_schedule``: ``async`` (paper 003: asynchronous 1F1B with weight stashing, PipeDream),
  ``gpipe`` or ``1f1b`` (torch.distributed.pipelining, synchronous, flush per mini-batch, the
  mini-batch split into ``microbatches``).
* ``pipeline = 0`` and ``nproc = N`` (>= 2): data parallel (DistributedDataParallel).
* ``split``: ``balanced`` (profiled per-layer times, slowest stage minimised), ``paper``
  (paper 003's Table 4 for modified_alexnet), or explicit bounds such as ``[0, 7, 16]``.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

PIPE_SCHEDULES = ("async", "gpipe", "1f1b")


class DistConfigError(ValueError):
    """A distributed configuration that cannot run; the message says what is allowed."""


@dataclass
class DistConfig:
    pipeline: int = 0                 # stages (0: no pipeline)
    nproc: int = 0                    # processes on this machine (0: pipeline stages, or 1)
    pipe_schedule: str = "async"      # async | gpipe | 1f1b
    stash: bool = True                # weight stashing (async)
    vertical_sync: bool = False       # async: every stage runs mini-batch k on stage 0's version
    microbatches: int = 4             # gpipe / 1f1b: micro-batches per mini-batch
    split: str | list = "balanced"    # balanced | paper | [0, b1, ..., n_layers]
    profile_repeats: int = 3          # timed repeats per layer for the balanced split
    timeout_s: float = 120.0          # every wait on a peer ends after this (a peer died)
    trace: bool = False               # record inputs, weights and gradients per mini-batch (tests)
    fail_at: list = field(default_factory=list)   # [rank, mini-batches done, "raise"|"exit"]: injected failure (tests)

    @classmethod
    def from_dict(cls, d: dict) -> "DistConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                near = difflib.get_close_matches(k, names, n=1)
                raise DistConfigError(f"unknown pipeline/distributed key {k!r}"
                                      + (f" (did you mean {near[0]!r}?)" if near else "")
                                      + f"; known: {', '.join(sorted(names))}")
        return cls(**d).validate()

    @property
    def world(self) -> int:
        return self.pipeline if self.pipeline else max(1, self.nproc)

    def validate(self) -> "DistConfig":
        def need(ok, msg):
            if not ok:
                raise DistConfigError(msg)
        need(isinstance(self.pipeline, int) and (self.pipeline == 0 or self.pipeline >= 1),
             f"pipeline must be a number of stages >= 1 (0: off), got {self.pipeline!r}")
        need(isinstance(self.nproc, int) and self.nproc >= 0, f"nproc must be >= 0, got {self.nproc!r}")
        need(not (self.pipeline and self.nproc and self.nproc != self.pipeline),
             f"with --pipeline {self.pipeline} each stage is one process: nproc must be {self.pipeline} or unset, "
             f"got {self.nproc} (pipeline and data parallel together are not supported)")
        need(self.pipe_schedule in PIPE_SCHEDULES,
             f"pipe_schedule must be one of {', '.join(PIPE_SCHEDULES)}, got {self.pipe_schedule!r}")
        need(self.microbatches >= 1, f"microbatches must be >= 1, got {self.microbatches}")
        need(not (self.vertical_sync and not self.stash), "vertical_sync needs stash = true")
        need(self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}")
        need(self.split in ("balanced", "paper") or (isinstance(self.split, list) and
                                                    all(isinstance(v, int) for v in self.split)),
             f"split must be balanced, paper or a list of layer bounds like [0, 7, 16], got {self.split!r}")
        if isinstance(self.split, list) and self.pipeline:
            need(len(self.split) == self.pipeline + 1,
                 f"split {self.split} has {len(self.split) - 1} stages, pipeline has {self.pipeline}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

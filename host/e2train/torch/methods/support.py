"""What the methods need from a training run besides the hooks: its data, and a way to
have the work meter tally the forward passes a method runs outside the training step
(DeadHorse's decision forward, Learn&Drop's cache fill), so that energy prices them too.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ..policy import StepContext
from ..work_meter import WorkMeter


def run_data(ctx: StepContext):
    """The run's ``e2train.torch.data.Data``: ``ctx.state["data"]`` if the trainer put it
    there, else loaded as the trainer loads it from the run's config (same data set, data
    directory and ``limit_train``), once per run. ``check_batch`` catches a run whose data
    differ from what its config names."""
    data = ctx.state.get("data")
    if data is None:
        cfg = ctx.state.get("config")
        if cfg is None:
            return None
        from .. import data as tdata
        data = ctx.state["data"] = tdata.load(cfg.dataset, cfg.data_dir, cfg.limit_train)
    return data


def check_batch(ctx: StepContext, data) -> None:
    """The batch must be the samples its indices name in ``data``."""
    if ctx.indices is None:
        raise ValueError("this method looks samples up by data-set index: the trainer must set ctx.indices")
    idx = ctx.indices.cpu()
    if int(idx.max()) >= data.y_train.shape[0] or not torch.equal(data.y_train[idx], ctx.y.cpu()):
        raise ValueError("the batch does not match the training data this method was given (labels differ "
                         "at its indices): pass the run's own training data (train_x= / n_samples=), or "
                         "put it in ctx.state['data']")


def train_inputs(ctx: StepContext, given: torch.Tensor | None = None) -> torch.Tensor:
    """The un-augmented training inputs, in data-set index order."""
    if given is not None:
        return given
    data = run_data(ctx)
    if data is None:
        raise ValueError("this method needs the training inputs: pass train_x= to the policy, or run it in "
                         "the trainer (which names its data in ctx.state)")
    return data.x_train


def data_sizes(ctx: StepContext, n_samples: int | None, n_classes: int | None) -> tuple[int, int]:
    """(training samples, classes) from the arguments or the run's data."""
    data = None if (n_samples and n_classes) else run_data(ctx)
    n = n_samples or (data.x_train.shape[0] if data is not None else None)
    k = n_classes or (data.num_classes if data is not None else None)
    if not n or not k:
        raise ValueError("this method keeps a per-sample history: pass n_samples= and n_classes= to the "
                         "policy, or run it in the trainer (which names its data in ctx.state)")
    return int(n), int(k)


def work_meter(ctx: StepContext) -> WorkMeter | None:
    """The run's work meter: ``ctx.state['work_meter']``, else the one whose hooks are on
    the model (the trainer installs one per run)."""
    m = ctx.state.get("work_meter")
    if m is not None:
        return m
    for mod in ctx.model.modules():
        for hook in mod._forward_hooks.values():
            owner = getattr(hook, "__self__", None)
            if isinstance(owner, WorkMeter):
                return owner
    return None


@contextmanager
def tallied_forward(ctx: StepContext) -> Iterator[None]:
    """Run forward-only passes (no autograd, any train/eval mode) that the work meter
    tallies as forward work: its hooks see every layer call, and with no parameter or input
    requiring a gradient they add forward MACs only. (BatchNorm is tallied at its training
    rate of 6 operations per element rather than the forward's 2: an over-count of well
    under 1% of a pass, against the method.)"""
    meter = work_meter(ctx)
    saved = [(p, p.requires_grad) for p in ctx.model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    if meter is not None:
        was_active, was_on = meter.active, meter.__dict__.get("_on")
        meter.active = True
        meter._on = lambda module: True       # whatever the module's mode and the grad mode
    try:
        with torch.no_grad():
            yield
    finally:
        for p, r in saved:
            p.requires_grad_(r)
        if meter is not None:
            meter.active = was_active
            if was_on is None:
                del meter._on
            else:
                meter._on = was_on

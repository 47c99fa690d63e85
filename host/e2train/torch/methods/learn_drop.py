"""Learn&Drop: progressive layer dropping, and freezing as its baseline.

Over an epoch each layer l accumulates, per parameter i, the sum of its gradients over the
steps j and the sum of their absolute values. Its score is

    P_l = 1 - sum_i |sum_j g_lij| / sum_i sum_j |g_lij|

near 0 when the gradients keep one direction (the layer is still learning), near 1 when
they cancel (it oscillates in place). The scores are standardised across the layers still
training, P'_l = (P_l - mean) / std, and n* is the first t (1-based) with P'_t > 0 and
P'_(t+1) < 0. The first n* layers are dropped when the median of their raw scores is at
least the median of the raw scores of the layers dropped before (always, the first time).

The rules follow paper 001 (section 3, "Fast-Training Algorithm" and Algorithm 1):

* **Warm-up** (Algorithm 1, e1; section 4: MNIST 5, CIFAR-10 10, Imagenette 25 epochs). No
  layer is scored or dropped before ``warmup_epochs`` epochs of full training; the first
  decision is taken at the end of the first epoch after the warm-up. Left unset it is the
  paper's e1 for the run's data set (5 for data sets the paper does not use, as MNIST).
* **Median rule** (section 3, step 2). M_c is the median of the candidates' *standardised*
  scores P', M_d the median of the P' of the layers dropped before, as they stood when
  they were dropped; the candidates drop when M_c >= M_d (always, the first time).
* **Granularity** (section 3, Fig. 3: "dropping takes place ... at any residual block. The
  saved feature maps come from the layers inside the residual block on the main track and
  on the skip connection"). With ``granularity="conv"`` (the default) every convolution
  is a unit, also inside a residual block: a cut there caches both the main-track feature
  map and the block's input that the shortcut still needs (the cache holds them packed in
  one row per sample). ``granularity="block"`` cuts at block boundaries only.
* **Scored layers** (Algorithm 1, lines 31-33: "for each conv. layer in head"). Only units
  holding a convolution are scored and standardised; the classifier is never dropped.
* **Cost** (section 4: the time includes storing the feature maps). The cache fill runs
  over the training set in the method's own time (reported in the epoch record as
  ``method_wall_s``, which the trainer adds to the training clock) and its forward is
  priced by the work meter; every write and every read of cached features is priced as
  off-chip (DRAM) traffic in the work tally.

Choices where the method leaves a detail open:

* If the standard deviation across layers is 0 (all scores equal), nothing is dropped.
* n* >= 1 suffices (the text: a sub-sequence "that includes at least one layer"; Algorithm 1
  line 37 writes n* > 1, which with 1-based t would forbid dropping a single layer).
* The dropped tail runs in eval mode (BN running statistics, frozen) both to fill the cache
  and when the whole model is evaluated, so cached and recomputed features agree.
* Data augmentation: the cache holds the tail's features of the *un-augmented* training
  inputs (augmented features would differ every epoch and could not be cached). From the
  drop on, the head trains without augmentation.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..policy import Policy, StepContext
from .support import check_batch, run_data, tallied_forward, train_inputs, work_meter


class LayerScoreAccumulator:
    """Sum of gradients and of absolute gradients per layer over one epoch."""

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self._sum: list[list[torch.Tensor] | None] = [None] * n_layers
        self._abs = [0.0] * n_layers
        self.steps = 0

    def add(self, layer_grads: Sequence[Sequence[torch.Tensor] | None]) -> None:
        """One step: for each layer, its parameters' gradients (None if it has none)."""
        if len(layer_grads) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {len(layer_grads)}")
        for l, grads in enumerate(layer_grads):
            if grads is None:
                continue
            grads = [g.detach().double() for g in grads]
            if self._sum[l] is None:
                self._sum[l] = [g.clone() for g in grads]
            else:
                for s, g in zip(self._sum[l], grads):
                    s += g
            self._abs[l] += float(sum(g.abs().sum() for g in grads))
        self.steps += 1

    def scores(self) -> list[float]:
        out = []
        for l in range(self.n_layers):
            if self._sum[l] is None or self._abs[l] == 0.0:
                out.append(float("nan"))
                continue
            net = float(sum(s.abs().sum() for s in self._sum[l]))
            out.append(1.0 - net / self._abs[l])
        return out

    def reset(self) -> None:
        self.__init__(self.n_layers)


def layer_score(step_grads: np.ndarray) -> float:
    """P for one layer from a (steps, params) array of its gradients (reference form)."""
    g = np.asarray(step_grads, dtype=np.float64)
    return float(1.0 - np.abs(g.sum(axis=0)).sum() / np.abs(g).sum())


def standardise(scores: Sequence[float]) -> list[float]:
    """(P - mean) / population std; all zeros when the std is 0."""
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0.0:
        return [0.0] * len(scores)
    return [(s - mean) / std for s in scores]


def n_star(std_scores: Sequence[float]) -> int:
    """The first t (1-based) with P'_t > 0 and P'_(t+1) < 0; 0 when there is none."""
    for t in range(len(std_scores) - 1):
        if std_scores[t] > 0 and std_scores[t + 1] < 0:
            return t + 1
    return 0


class DropDecider:
    """Applies n* and the median rule epoch after epoch; remembers what was dropped.

    The median rule compares standardised scores P' (paper 001, section 3, step 2): the
    candidates' P' now against the P' the dropped layers had when they were dropped."""

    def __init__(self) -> None:
        self.dropped_scores: list[float] = []      # P' of dropped layers, at their drop
        self.history: list[dict] = []

    def decide(self, head_scores: Sequence[float]) -> int:
        """How many leading layers of the current head to drop now (0 = none)."""
        if any(math.isnan(s) for s in head_scores):
            self.history.append({"scores": list(head_scores), "n_star": 0, "dropped": 0,
                                 "why": "a layer had no gradient this epoch"})
            return 0
        z = standardise(head_scores)
        n = n_star(z)
        rec = {"scores": list(head_scores), "std_scores": z, "n_star": n, "dropped": 0}
        if n == 0:
            rec["why"] = "no n*"
        else:
            med = statistics.median(z[:n])
            prev = statistics.median(self.dropped_scores) if self.dropped_scores else -math.inf
            rec["median"], rec["previous_median"] = med, prev
            if med >= prev:
                self.dropped_scores.extend(z[:n])
                rec["dropped"] = n
            else:
                rec["why"] = "median below that of the layers dropped before"
        self.history.append(rec)
        return rec["dropped"]


# paper 001, section 4: warm-up epochs e1 per data set
PAPER_WARMUP_EPOCHS = {"mnist": 5, "cifar10": 10, "cifar100": 10, "imagenette": 25}
DEFAULT_WARMUP_EPOCHS = 5


def pack(t) -> torch.Tensor:
    """A unit's output, one tensor or a tuple (main track, shortcut input), as one
    (batch, features) row per sample: the form the cache stores."""
    if isinstance(t, torch.Tensor):
        return t
    return torch.cat([p.reshape(p.shape[0], -1) for p in t], 1)


def shapes_of(t) -> tuple:
    return tuple(t.shape[1:]) if isinstance(t, torch.Tensor) else tuple(tuple(p.shape[1:]) for p in t)


def unpack(flat: torch.Tensor, shapes: tuple):
    """Inverse of ``pack`` for per-sample ``shapes`` (one shape, or a tuple of shapes)."""
    if not shapes or isinstance(shapes[0], int):
        return flat
    out, a = [], 0
    for sh in shapes:
        k = int(np.prod(sh))
        out.append(flat[:, a:a + k].reshape(flat.shape[0], *sh))
        a += k
    return tuple(out)


class CacheTooLarge(RuntimeError):
    pass


@dataclass
class FeatureCache:
    """The dropped tail's outputs for every training sample, in memory or on disk.

    ``max_bytes`` bounds the cache; building one that would exceed it raises
    ``CacheTooLarge`` before anything is computed, naming the size it would need.
    """

    max_bytes: int = 512 * 2**20
    where: str = "memory"              # "memory" | "disk"
    directory: str | None = None

    def __post_init__(self) -> None:
        if self.where not in ("memory", "disk"):
            raise ValueError(f"feature cache must be 'memory' or 'disk', not {self.where!r}")
        if self.max_bytes <= 0:
            raise ValueError(f"feature cache bound must be > 0 bytes, not {self.max_bytes}")
        self._data: torch.Tensor | None = None
        self._path: str | None = None
        self.fills = 0                 # passes that ran the tail to (re)fill the cache

    @property
    def ready(self) -> bool:
        return self._data is not None

    def fill(self, compute: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
             feature_shape: Sequence[int], batch_size: int = 256) -> None:
        """Run ``compute`` (the tail) once over ``inputs`` and keep what it returns."""
        n = len(inputs)
        shape = (n, *feature_shape)
        need = int(np.prod(shape)) * 4
        if need > self.max_bytes:
            raise CacheTooLarge(
                f"the Learn&Drop feature cache would need {need / 2**20:.1f} MiB for {n} samples of "
                f"shape {tuple(feature_shape)} but its bound is {self.max_bytes / 2**20:.1f} MiB: "
                f"raise cache_max_mb, put the cache on disk (cache='disk'), or use freezing instead")
        # The new cache is built beside the old one (whose data may be ``inputs``, when a
        # longer tail extends it) and replaces it only once complete.
        path = None
        if self.where == "memory":
            data = torch.empty(shape, dtype=torch.float32)
        else:
            fd, path = tempfile.mkstemp(prefix="e2train-ld-", suffix=".f32", dir=self.directory)
            os.close(fd)
            data = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="w+", shape=shape))
        try:
            with torch.no_grad():
                for a in range(0, n, batch_size):
                    out = compute(inputs[a:a + batch_size])
                    if tuple(out.shape[1:]) != tuple(feature_shape):
                        raise ValueError(f"tail produced shape {tuple(out.shape[1:])}, "
                                         f"expected {tuple(feature_shape)}")
                    data[a:a + len(out)] = out.float()
        except BaseException:
            if path is not None:
                os.unlink(path)
            raise
        self.close()
        self._data, self._path = data, path
        self.fills += 1

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        if self._data is None:
            raise RuntimeError("the feature cache is empty: fill it before reading")
        return self._data[indices]

    @property
    def data(self) -> torch.Tensor:
        if self._data is None:
            raise RuntimeError("the feature cache is empty: fill it before reading")
        return self._data

    def close(self) -> None:
        self._data = None
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
            self._path = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# --- as policies of the trainer ------------------------------------------------------------

@dataclass
class Unit:
    """A droppable unit: what it computes, and the modules that hold its parameters.
    ``scored``: the unit holds a convolution (paper 001 scores conv layers only)."""

    name: str
    fn: Callable
    modules: list[nn.Module]
    scored: bool = True

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters()]

    def train(self, on: bool) -> None:
        for m in self.modules:
            m.train(on)


GRANULARITIES = ("conv", "block")


def _has_conv(modules: Sequence[nn.Module]) -> bool:
    from ..psg import PSGConv2d
    return any(isinstance(s, (nn.Conv2d, PSGConv2d)) for m in modules for s in m.modules())


def _basic_block_units(name: str, b: nn.Module) -> list[Unit]:
    """A BasicBlock cut after its first convolution: the first unit passes the block's input
    on beside the main track, for the shortcut (paper 001, Fig. 3)."""
    def first(x):
        return F.relu(b.bn1(b.conv1(x))), x

    def second(t):
        h, x = t
        return F.relu(b.bn2(b.conv2(h)) + b.shortcut(x))
    return [Unit(f"{name}.conv1", first, [b.conv1, b.bn1]), Unit(f"{name}.conv2", second, [b.conv2, b.bn2])]


def _inverted_residual_units(name: str, b: nn.Module) -> list[Unit]:
    """A MobileNetV2 block cut after each convolution (with its BN and ReLU6); with an
    identity path the block's input travels beside the main track to the last unit."""
    groups: list[list[nn.Module]] = []
    for m in b.body:
        if _has_conv([m]) or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    seqs = [nn.Sequential(*g) for g in groups]
    units = []
    for k, (g, seq) in enumerate(zip(groups, seqs)):
        last = k == len(groups) - 1

        def fn(t, seq=seq, first=k == 0, last=last):
            h, x = (t, t) if first else t if b.use_res else (t, None)
            h = seq(h)
            if last:
                return h + x if b.use_res else h
            return (h, x) if b.use_res else h
        units.append(Unit(f"{name}.conv{k + 1}", fn, list(g)))
    return units


def _gated_net_units(model: nn.Module, granularity: str = "conv") -> list[Unit]:
    """ResNet-CIFAR and MobileNetV2-CIFAR (``e2train.torch.models``): stem, each block (or
    each convolution of each block), (MobileNetV2's last 1x1 conv,) classifier. Block masks
    and gates are not used: the units run every block on every sample."""
    from ..models import BasicBlock, InvertedResidual
    act = F.relu6 if hasattr(model, "conv_last") else F.relu
    units = [Unit("stem", lambda x: act(model.bn1(model.conv1(x))), [model.conv1, model.bn1])]
    for i, b in enumerate(model.blocks):
        if granularity == "conv" and isinstance(b, BasicBlock):
            units += _basic_block_units(f"blocks.{i}", b)
        elif granularity == "conv" and isinstance(b, InvertedResidual):
            units += _inverted_residual_units(f"blocks.{i}", b)
        else:
            units.append(Unit(f"blocks.{i}", b, [b]))
    if hasattr(model, "conv_last"):
        units.append(Unit("conv_last", lambda x: F.relu6(model.bn_last(model.conv_last(x))),
                          [model.conv_last, model.bn_last]))
    units.append(Unit("fc", lambda x: model.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), [model.fc],
                      scored=False))
    return units


def sequential_units(model: nn.Module, granularity: str = "conv") -> list[Unit]:
    """The model as units applied one after the other: ``model.sequential_units()`` if it
    has one (a list of ``(name, module)``), an ``nn.Sequential``'s children, or the
    ResNet / MobileNetV2 layout of ``e2train.torch.models`` (cut at every convolution, or
    at block boundaries with ``granularity="block"``). Units that hold a convolution are
    scored; a model with no convolution has all its units but the last scored."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"Learn&Drop granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    own = getattr(model, "sequential_units", None)
    if callable(own):
        out = [Unit(n, m, [m]) for n, m in own()]
    elif isinstance(model, nn.Sequential):
        out = [Unit(n, m, [m]) for n, m in model.named_children()]
    elif all(hasattr(model, a) for a in ("conv1", "bn1", "blocks", "fc")):
        if getattr(model, "gates", None) is not None:
            raise ValueError("Learn&Drop runs every block on every sample: use an ungated model")
        out = _gated_net_units(model, granularity)
    else:
        raise ValueError(f"Learn&Drop needs a model split into sequential units: give "
                         f"{type(model).__name__} a sequential_units() method returning [(name, module), ...] "
                         f"whose composition is its forward, or use an nn.Sequential")
    if len(out) < 2:
        raise ValueError("Learn&Drop needs at least two sequential units (a tail to drop and a head)")
    if callable(own) or isinstance(model, nn.Sequential):     # the ResNet layout says its own
        convs = [_has_conv(u.modules) for u in out]
        for u, c in zip(out, convs):
            u.scored = c if any(convs) else bool(u.parameters())
        if not any(convs):
            out[-1].scored = False
    return out


def check_units(model: nn.Module, units: Sequence[Unit], x: torch.Tensor) -> None:
    """The units, composed, must compute the model's own forward (checked in eval mode)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(x)
            y = x
            for u in units:
                y = u.fn(y)
    finally:
        model.train(was)
    if ref.shape != y.shape or not torch.allclose(ref, y, rtol=1e-4, atol=1e-5):
        raise ValueError(f"the sequential units of {type(model).__name__} do not compute its forward: "
                         f"give it a sequential_units() method that does")


class LearnDropPolicy(Policy):
    """Learn&Drop (``freeze=False``) or freezing (``freeze=True``) in the trainer.

    Both score the head's units each epoch and choose what to drop with ``DropDecider``.

    Learn&Drop then runs the new tail once over the un-augmented training inputs
    (``train_x``, or the run's data; over the previous cache when the tail grows) into the
    feature cache, and from the next step on the model's forward is replaced, for training steps
    only, by the head applied to the batch's cached features (looked up by ``ctx.indices``):
    the tail's modules are not called at all. The model's own forward is put back after the
    backward, so evaluation runs the whole model.

    Freezing keeps the tail in the forward (training mode, no gradients) and recomputes it,
    on augmented inputs, every step.

    ``schedule`` (a Learn&Drop run's ``drop_epochs``: [(epoch, tail length), ...]) replays
    another run's drops instead of deciding: freezing with the very layers and epochs that
    Learn&Drop chose isolates what the cache saves.
    """

    skip_unit = "layer-step"

    def __init__(self, freeze: bool = False, cache: str = "memory", cache_max_mb: float = 512.0,
                 cache_dir: str | None = None, cache_batch: int = 256, train_x: torch.Tensor | None = None,
                 schedule: Sequence[Sequence[int]] | None = None, warmup_epochs: int | None = None,
                 granularity: str = "conv"):
        if warmup_epochs is not None and warmup_epochs < 0:
            raise ValueError(f"Learn&Drop warmup_epochs must be >= 0, not {warmup_epochs}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"Learn&Drop granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"not {granularity!r}")
        self.warmup_epochs = warmup_epochs
        self.granularity = granularity
        self.freeze = freeze
        self.schedule = None if schedule is None else {int(e): int(n) for e, n in schedule}
        self.train_x = train_x
        self.name = "freeze" if freeze else "learn-drop"
        self.cache = None if freeze else FeatureCache(int(cache_max_mb * 2**20), cache, cache_dir)
        self.cache_batch = cache_batch
        self.decider = DropDecider()
        self.units: list[Unit] = []
        self.n_dropped = 0
        self.acc: LayerScoreAccumulator | None = None
        self._patched = False
        self.unit_steps = self.skipped_unit_steps = 0
        self.tail_passes = 0                          # cache fills (the tail ran over the data)
        self.fill_seconds = 0.0                       # wall clock of those fills
        self.drop_epochs: list[tuple[int, int]] = []  # (epoch after which, new tail length)
        self._cache_shapes: tuple = ()                # per-sample shapes packed in a cache row
        self._unbilled_s = 0.0                        # fill time not yet in an epoch record

    def warmup(self, ctx: StepContext) -> int:
        """e1: the option, else the paper's value for the run's data set."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        cfg = ctx.state.get("config")
        return PAPER_WARMUP_EPOCHS.get(getattr(cfg, "dataset", None), DEFAULT_WARMUP_EPOCHS)

    def on_train_start(self, ctx: StepContext) -> None:
        self.units = sequential_units(ctx.model, self.granularity)
        check_units(ctx.model, self.units, train_inputs(ctx, self.train_x)[:2].to(ctx.device))
        self.acc = LayerScoreAccumulator(len(self.units) - self.n_dropped)
        if self.n_dropped and not self.freeze and not self.cache.ready:
            self._fill_cache(ctx, 0, self.n_dropped)      # after a resume: the cache is not saved

    def _tail(self) -> list[Unit]:
        return self.units[: self.n_dropped]

    def _tail_param_names(self, model: nn.Module) -> set[str]:
        ids = {id(p) for u in self._tail() for p in u.parameters()}
        return {n for n, p in model.named_parameters() if id(p) in ids}

    def before_forward(self, ctx: StepContext) -> None:
        if not self.n_dropped:
            return
        for u in self._tail():
            for p in u.parameters():
                p.requires_grad_(False)
        if self.freeze:
            # the frozen tail stays in training mode (batch statistics in its BN layers): it
            # is an ordinary forward, and the work meter tallies it as one
            return
        if ctx.indices is None:
            raise ValueError("Learn&Drop reads cached features by data-set index: the trainer must set ctx.indices")
        if self.train_x is None:       # cached from the run's data: check the batch is that data
            check_batch(ctx, run_data(ctx))
        rows = self.cache.get(ctx.indices.cpu())
        meter = work_meter(ctx)
        if meter is not None:           # reading cached features is off-chip traffic
            meter.work.add_dram(rows.numel() * rows.element_size())
        feats = unpack(rows.to(ctx.x.device), self._cache_shapes)
        head = self.units[self.n_dropped:]

        def head_forward(x, *args, **kwargs):
            if x.shape[0] != rows.shape[0]:
                raise RuntimeError(f"batch of {x.shape[0]} samples but {rows.shape[0]} cached features")
            y = feats
            for u in head:
                y = u.fn(y)
            return y

        ctx.model.forward = head_forward          # instance attribute: shadows the class forward
        self._patched = True

    def _restore(self, model: nn.Module) -> None:
        if self._patched:
            del model.forward
            self._patched = False

    def after_backward(self, ctx: StepContext) -> None:
        self._restore(ctx.model)
        head = self.units[self.n_dropped:]
        self.acc.add([[p.grad for p in u.parameters() if p.grad is not None] or None for u in head])
        self.unit_steps += len(self.units)
        self.skipped_unit_steps += self.n_dropped

    def skip_params(self, ctx: StepContext) -> set[str] | None:
        return self._tail_param_names(ctx.model) if self.n_dropped else None

    def on_epoch_end(self, ctx: StepContext, record: dict) -> None:
        self._restore(ctx.model)
        for u in self._tail():
            for p in u.parameters():
                p.requires_grad_(True)
        try:
            self._review(ctx, record)
        finally:
            # the method's own time outside the steps (cache fills): the trainer adds it to
            # the training clock
            record["method_wall_s"] = record.get("method_wall_s", 0.0) + self._unbilled_s
            self._unbilled_s = 0.0
            record["ld_tail_units"] = self.n_dropped
            record["ld_fill_s"] = self.fill_seconds

    def _review(self, ctx: StepContext, record: dict) -> None:
        if ctx.epochs and ctx.epoch >= ctx.epochs - 1:
            return                     # no epoch left to profit from a drop (or to pay for a fill)
        head = self.units[self.n_dropped:]
        if ctx.epoch < self.warmup(ctx) and self.schedule is None:
            record["ld_warmup"] = True   # paper 001, Algorithm 1 line 11: e1 epochs of full training
            self.acc = LayerScoreAccumulator(len(head))
            return
        scores = self.acc.scores()
        record["ld_scores"] = [None if math.isnan(v) else round(v, 6) for v in scores]
        if self.schedule is not None:
            k = max(0, self.schedule.get(ctx.epoch, self.n_dropped) - self.n_dropped)
        else:
            scored = [i for i, u in enumerate(head) if u.scored]
            k = self.decider.decide([scores[i] for i in scored])
            record["ld_n_star"] = self.decider.history[-1]["n_star"]
            k = scored[k - 1] + 1 if k else 0      # through the k-th scored unit of the head
        record["ld_dropped_now"] = k
        if k:
            old = self.n_dropped
            self.n_dropped += k
            self.drop_epochs.append((ctx.epoch, self.n_dropped))
            if not self.freeze:
                self._fill_cache(ctx, old, self.n_dropped)
        self.acc = LayerScoreAccumulator(len(self.units) - self.n_dropped)

    def _fill_cache(self, ctx: StepContext, start: int, stop: int) -> None:
        part = self.units[start:stop]
        for u in part:
            u.train(False)
        in_shapes = self._cache_shapes if start else ()

        def run_part(x: torch.Tensor):
            y = unpack(x.to(ctx.device), in_shapes)
            for u in part:
                y = u.fn(y)
            return y

        src = train_inputs(ctx, self.train_x) if start == 0 else self.cache.data
        t0 = time.perf_counter()
        with tallied_forward(ctx):     # the tail pass is real work: the meter prices it
            probe = run_part(src[:1])
            out_shapes, shape = shapes_of(probe), pack(probe).shape[1:]
            self.cache.fill(lambda x: pack(run_part(x)).cpu(), src, shape, self.cache_batch)
        self._cache_shapes = out_shapes
        meter = work_meter(ctx)
        if meter is not None:          # the cache is written once, off-chip
            meter.work.add_dram(self.cache.data.numel() * self.cache.data.element_size())
        self.tail_passes += 1
        # the trainer times its steps only; the fill runs between epochs, so it is timed here
        dt = time.perf_counter() - t0
        self.fill_seconds += dt
        self._unbilled_s += dt

    def skip_ratios(self) -> dict[str, float]:
        return {self.skip_unit: self.skipped_unit_steps / self.unit_steps if self.unit_steps else 0.0}

    def state_dict(self) -> dict:
        return {"n_dropped": self.n_dropped, "dropped_scores": list(self.decider.dropped_scores),
                "history": list(self.decider.history), "unit_steps": self.unit_steps,
                "skipped_unit_steps": self.skipped_unit_steps, "drop_epochs": list(self.drop_epochs)}

    def load_state_dict(self, state: dict) -> None:
        if "n_dropped" in state:
            # the cache is not saved: on_train_start refills it from the restored tail
            self.n_dropped = state["n_dropped"]
            self.decider.dropped_scores = list(state["dropped_scores"])
            self.decider.history = list(state["history"])
            self.unit_steps, self.skipped_unit_steps = state["unit_steps"], state["skipped_unit_steps"]
            self.drop_epochs = [tuple(e) for e in state["drop_epochs"]]

"""The on-device trainer: E²-Train (SMD + SLU + PSG) on a ResNet-CIFAR, numpy on the ARM and
every convolution through a conv backend.

    from e2train.core import csim                      # or golden, or the PYNQ backend
    trainer = Trainer({"model": "resnet8", "width": 16, "epochs": 20}, (x_tr, y_tr, x_te, y_te),
                      backend=csim, on_event=print, checkpoint="run/ckpt.npz")
    result = trainer.run()

A backend is anything with ``conv_fwd`` (with ``stats=``), ``conv_bwd_data``,
``conv_bwd_weight_psg`` and the block operations ``bn_act``, ``bn_bwd_reduce``, ``bn_bwd_apply``
of ``e2train.core.golden``'s signatures; the trainer calls nothing else for a layer's tensors:
activations and gradients stay codes between layers, and the ARM does per-channel folds, the
FC head, the loss, the optimiser and the SLU gates (docs/device-training.md).

What runs is tallied in a ``core.work.Work``: each fabric call as the performance model prices
it, each ARM-side op by the cost model of ``nn_layers`` (``ArmTally.by_kind`` keeps it per kind). Time and energy derived
from it are *modelled* and labelled so; a meter measures the real thing around the board.

Events for ``on_event(dict)``, in the run record's vocabulary (``core.run_record.EVENTS``,
docs/records.md): ``started``, ``progress`` (every ``progress_every`` executed steps),
``epoch`` (one epoch entry of the record: epochs count from 1, accuracy a fraction; plus
skips and modelled energy so far), ``checkpoint``, ``warning``, ``finished`` (with the
record's ``final``). ``stop()`` (from another thread) ends the run cleanly before the next
batch.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core import call_price, energy, run_record
from ..core.fixedpoint import decay_to_fixed, lr_to_fixed
from ..core.overlap import Timeline
from ..core.pixels import Pixels
from ..core.shapes import ShapeError, check_wgrad_terms
from ..core.work import Work
from . import checkpoint as ckpt
from .nn_layers import ArmTally, SGDMomentum, op_count, softmax_cross_entropy
from .nn_qconv import quantize_input, quantize_input_ops
from .nn_resnet import ResNet
from .nn_tally import KernelTally
from .smd import STREAM_GATE, batch_images, batch_moves, epoch_plan, pad_fill
from .train_config import ConfigError, RenamedKeyWarning, TrainConfig

# the board this trainer models; every energy figure is priced on it (core.energy.price)
PLATFORM = "xc7z020"

ENERGY_LABEL = "modelled"   # this trainer never measures; a meter does

# what the trainer calls on a backend: the conv passes and the block operations
BACKEND_METHODS = call_price.KERNELS + call_price.BLOCK_OPS


def cosine(base: float, t: int, total: int) -> float:
    """Cosine schedule from ``base`` at t = 0 towards 0 at t = total."""
    return base * 0.5 * (1.0 + math.cos(math.pi * t / max(total, 1)))


def gated_exec_ratio(samples_run: int, samples_total: int, n_blocks: int, n_gated: int) -> float | None:
    """The executed share of the *gated* blocks' samples, from counts over every block (an
    ungated block runs every sample it is given): None when no block is gated."""
    if not n_gated or not samples_total:
        return None
    per_block = samples_total / n_blocks
    return (samples_run - (n_blocks - n_gated) * per_block) / (n_gated * per_block)


def _images(x):
    return x if isinstance(x, Pixels) else np.asarray(x)


def check_data(data) -> tuple[np.ndarray | Pixels, np.ndarray, np.ndarray | Pixels | None, np.ndarray | None]:
    """Validate (x_train, y_train[, x_test, y_test]); a clear message for each problem. Images
    are float (standardised) or ``core.pixels.Pixels`` (8-bit codes and their table), which
    the trainer keeps as they are and standardises a batch at a time."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
        raise ValueError("data must be (x_train, y_train) or (x_train, y_train, x_test, y_test)")
    x_tr, y_tr = _images(data[0]), np.asarray(data[1])
    x_te = _images(data[2]) if len(data) == 4 and data[2] is not None else None
    y_te = np.asarray(data[3]) if len(data) == 4 and data[3] is not None else None
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x is None:
            continue
        if len(x.shape) != 4:
            raise ValueError(f"x_{name} must be 4-D NCHW images, got shape {x.shape}")
        if isinstance(x, Pixels):
            pass                                   # codes are uint8 and the table finite (Pixels checks)
        elif x.dtype == np.uint8:
            raise ValueError(f"x_{name} holds 8-bit pixel codes without a pixel_table to standardise them: "
                             "give the table (e2train.core.pixels), or standardised float images")
        elif not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError(f"x_{name} must hold finite floats (standardised images)")
        if y is None or y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y_{name} must be 1-D with one label per image ({x.shape[0]}), "
                             f"got {None if y is None else y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise ValueError(f"y_{name} must hold non-negative integer class labels")
    if x_te is not None and x_te.shape[1:] != x_tr.shape[1:]:
        raise ValueError(f"test images {x_te.shape[1:]} differ from training images {x_tr.shape[1:]}")
    if x_tr.shape[0] < 1:
        raise ValueError("the training set is empty")
    if isinstance(x_tr, Pixels) != isinstance(x_te, Pixels) and x_te is not None:
        raise ValueError("x_train and x_test must both be pixel codes or both float images")
    f32 = lambda x: x if x is None or isinstance(x, Pixels) else x.astype(np.float32, copy=False)   # noqa: E731
    return f32(x_tr), y_tr.astype(np.int64), f32(x_te), None if y_te is None else y_te.astype(np.int64)


class Trainer:
    def __init__(self, config: TrainConfig | dict | None, data, backend, *,
                 on_event: Callable[[dict], Any] | None = None,
                 checkpoint: str | Path | None = None, n_classes: int | None = None):
        self.cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.cfg.validate()
        missing = [fn for fn in BACKEND_METHODS if not callable(getattr(backend, fn, None))]
        if missing:
            raise TypeError(f"backend {backend!r} lacks {', '.join(f + '()' for f in missing)}; the trainer needs "
                            f"{', '.join(BACKEND_METHODS)} (core.golden's signatures)")
        self.backend = backend
        self.x_train, self.y_train, self.x_test, self.y_test = check_data(data)
        seen = int(self.y_train.max()) + 1
        if self.y_test is not None and self.y_test.size:
            seen = max(seen, int(self.y_test.max()) + 1)
        self.n_classes = n_classes or seen
        if seen > self.n_classes:
            raise ValueError(f"labels go up to {seen - 1} but n_classes is {self.n_classes}")
        self.on_event = on_event
        self.checkpoint_path = Path(checkpoint) if checkpoint else None
        self._stop = threading.Event()

        cfg = self.cfg
        self.model = ResNet(cfg, tuple(self.x_train.shape[1:]), self.n_classes,
                            np.random.default_rng([cfg.seed, 0]))
        # the weight gradient's position bound (core.shapes.check_wgrad_terms): the stem, stride 1
        # at the image's size, sums the most; refused here, before a batch is drawn
        try:
            check_wgrad_terms(self.model.convs()[0].shape(cfg.batch_size, *self.x_train.shape[2:]))
        except ShapeError as e:
            raise ConfigError(f"batch_size {cfg.batch_size} at {self.x_train.shape[2]}x{self.x_train.shape[3]} "
                              f"images: {e}") from None
        self.opt = SGDMomentum(cfg.momentum, cfg.weight_decay)
        self.work = Work()                     # training work (kernels + ARM), what ran
        self.timeline = Timeline()             # fabric and ARM overlapped where the data allow
        self.arm = ArmTally(self.work, cfg.arm_ops_per_second, self.timeline)
        # a backend that measures its calls (PynqBackend: the driver's waits) gives each tallied
        # call its measured time beside the modelled one (the profile's fabric_wall_seconds)
        self._take_waits = getattr(backend, "take_waits", None)
        if self._take_waits is not None:
            self._take_waits()                 # calls made before this trainer (a self-test) are not its own
        self.ktally = KernelTally(self.work, self.timeline, side_work=self.arm, waits=self._take_waits)
        # a board's backend runs the ARM's side work while its driver polls a busy fabric; where
        # calls end at once (the simulated board) the model places it by the same rule
        set_idle = getattr(backend, "set_idle", None)
        if callable(set_idle) and set_idle(self.arm.idle):
            self.arm.side_work_by_driver = True
        self.eval_work = Work()                # evaluation is tallied apart from training
        self.n_batches = math.ceil(self.x_train.shape[0] / cfg.batch_size)
        self._pad_fill: np.ndarray | None = None      # augment_pad "min": each channel's lowest value
        self.total_epochs = cfg.total_epochs
        self.total_steps = self.total_epochs * self.n_batches
        # position: the next batch to consider
        self.epoch = 0
        self.batch = 0
        self.stats = {"batches_run": 0, "batches_dropped": 0, "block_samples_run": 0,
                      "block_samples_skipped": 0, "gate_penalty_ratio_sum": 0.0}
        self.epoch_acc = self._new_epoch_acc()
        self._warned_gates_open = False
        self.history: list[dict] = []
        self.wall_done = 0.0                   # training wall clock of the epochs done (s)
        self._wall0 = time.monotonic()
        self.platform = energy.platform(PLATFORM)
        self.energy_model = self.platform.model
        # The next batch of the epoch gathered and quantised by the ARM while the fabric runs
        # this step's calls (side work: ``_defer_next_input``); False computes it at its step.
        self.prefetch_input = True
        self._next_input: tuple | None = None  # (step, images, quantize_input's (codes, scale, running max))

    # -- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end cleanly before its next batch (safe from any thread)."""
        self._stop.set()

    def _emit(self, event: str, **kw) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, **kw})

    @staticmethod
    def _new_epoch_acc() -> dict:
        return {"loss_sum": 0.0, "correct": 0, "seen": 0, "run": 0, "dropped": 0, "blocks_run": 0, "blocks_total": 0}

    # -- accounting ----------------------------------------------------------------------
    def modelled(self, work: Work | None = None) -> dict:
        """Modelled seconds and energy of a Work tally (training by default), labelled."""
        w = self.work if work is None else work
        out = {"label": ENERGY_LABEL, "seconds": w.seconds, "critical_path_seconds": w.critical_seconds,
               "energy_j": None, "macs": w.total_macs, "platform": self.platform.name}
        if not self.ktally.modelled:
            out["unavailable"] = "performance model missing from e2train.core"
        else:
            priced = energy.price(w, self.platform)
            out["energy_j"] = priced["total_j"]                 # static power on the critical path
            out["energy_on_sum_j"] = priced["total_on_sum_j"]   # beside it: static on the summed time
            out["parts_j"] = priced["parts_j"]
            out["static_note"] = priced["static_note"]
        return out

    def skip_stats(self) -> dict:
        s = self.stats
        blocks = s["block_samples_run"] + s["block_samples_skipped"]
        scheduled = s["batches_run"] + s["batches_dropped"]
        return {
            "batches_run": s["batches_run"],
            "batches_dropped": s["batches_dropped"],
            "batch_drop_ratio": s["batches_dropped"] / scheduled if scheduled else 0.0,
            "block_exec_ratio": s["block_samples_run"] / blocks if blocks else 1.0,
            "gated_exec_ratio": gated_exec_ratio(s["block_samples_run"], blocks, *self._block_counts()),
            "block_samples_skipped": s["block_samples_skipped"],
            "predicted_fraction": self.ktally.predicted_fraction(),
            "kernel_calls": dict(self.ktally.calls),
            "kernel_macs": dict(self.ktally.macs),
            "arm_ops_by_kind": dict(sorted(self.arm.by_kind.items())),
        }

    # -- one step ------------------------------------------------------------------------
    def _lrs(self, t: int) -> tuple[float, float, float]:
        c = self.cfg
        return (cosine(c.lr, t, self.total_steps), cosine(c.conv_lr, t, self.total_steps),
                cosine(c.slu_lr, t, self.total_steps))

    def _input(self, idx: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """The batch's images gathered from the training set and shifted (ARM work, tallied)."""
        x, moved = batch_images(self.x_train, idx, shifts, self.cfg.augment_pad, self._pad_fill)
        for kind in self._input_kinds(moved):
            self.arm.ops(kind, x.size)
        return x

    def _input_kinds(self, moved: bool) -> list[str]:
        """The ARM passes over each element of a gathered batch (``_input``): the gather, the
        table lookup of images kept as 8-bit codes, the shifted store when an image moves."""
        return ["batch"] + ["standardise"] * isinstance(self.x_train, Pixels) + ["augment"] * moved

    def _defer_next_input(self, plan, b: int) -> None:
        """Queue, as ARM side work of the step about to run, the epoch's next batch that SMD keeps
        after batch b: gathered, shifted and quantised (``quantize_input``), the running max
        taken after this step's own batch updated it, which nothing else changes before the next
        step (evaluation comes after the epoch's last step and does not update it). The next step
        uses the result as it is; the numbers are the ones it would compute at its start, off the
        critical path. Nothing crosses an epoch or a checkpoint: a resumed run computes its
        first batch at its step. A batch the quantiser refuses (non-finite values) is left to its
        own step, which raises before it changes anything."""
        nxt = next((j for j in range(b + 1, plan.n_batches) if not plan.dropped[j]), None)
        if nxt is None:
            return
        idx, t = plan.batches[nxt], self.epoch * self.n_batches + nxt
        n_el = idx.size * int(np.prod(self.x_train.shape[1:]))
        ops = sum(op_count(kind, n_el) for kind in self._input_kinds(batch_moves(idx, plan.shifts)))
        ops += quantize_input_ops(n_el, idx.size, self.cfg.act_scale)

        def task():
            x = self._input(idx, plan.shifts)
            try:
                codes = quantize_input(x, self.model.in_max, True, self.cfg.act_scale, self.arm)
            except ValueError:
                return
            self._next_input = (t, x, codes)
        self.arm.defer(task, ops=ops)

    def train_step(self, x: np.ndarray, y: np.ndarray, t: int, xin: tuple | None = None) -> dict:
        """Forward, backward and update on one (augmented) batch at global step t (``xin``: its
        codes from ``_defer_next_input``, else quantised here)."""
        cfg, m = self.cfg, self.model
        lr, conv_lr, gate_lr = self._lrs(t)
        # The gates' draws come from a stream of (seed, step), like SMD's: a resumed run draws
        # what the uninterrupted one drew. Four words, the last non-zero, so it can never equal
        # the plan's three-word (seed, epoch, stream) streams.
        gate_rng = (np.random.default_rng([cfg.seed, STREAM_GATE, t, STREAM_GATE])
                    if cfg.slu_sampling else None)
        self._begin_step()
        logits, cache, st = m.forward(x, True, self.backend, self.ktally, self.arm, gate_rng, xin=xin)
        loss, g = softmax_cross_entropy(logits, y, self.arm)
        pen_grads, penalty, ratio = None, 0.0, st.exec_ratio
        if m.gates is not None and m.blocks:
            penalty, ratio, pen_grads = m.gates.penalty(cache["gates"], cfg.slu_alpha, cfg.slu_target, self.arm,
                                                        cost=cfg.slu_cost)
        lr_q = {c.name: lr_to_fixed(conv_lr, c.frac_bits) for c in m.convs()}
        wd_q = {c.name: decay_to_fixed(conv_lr, cfg.conv_weight_decay) for c in m.convs()}
        grads, _ = m.backward(g, cache, self.backend, self.ktally, self.arm, lr_q=lr_q, wd_q=wd_q,
                              beta_q=cfg.beta_q, gate_penalty_grads=pen_grads)
        params = m.float_params()
        for name in sorted(grads):
            self.opt.step(name, params[name], grads[name].astype(np.float32, copy=False),
                          gate_lr if name.startswith("gate.") else lr, self.arm)
        if self.arm.pending:                # the optimiser has read every gradient: none may be left
            raise RuntimeError(f"{self.arm.pending} deferred ARM tasks left at the end of step {t}")
        overlap = self.timeline.close_step()
        self.work.add_step(overlap, self.timeline.step_paths[-1], *self.timeline.last_timed)
        n = x.shape[0]
        run = sum(st.executed)
        self.stats["block_samples_run"] += run
        self.stats["block_samples_skipped"] += n * len(st.executed) - run
        return {"loss": loss, "penalty": penalty, "exec_ratio": ratio, "blocks_run": run,
                "blocks_total": n * len(st.executed),
                "correct": int((logits.argmax(axis=1) == y).sum()), "lr": lr, "conv_lr": conv_lr}

    def _begin_step(self) -> None:
        """Tell a backend that keeps the fabric's outputs in place (the PYNQ backend's step
        arena) that the last step's tensors are no longer read: nothing is kept across steps."""
        begin = getattr(self.backend, "begin_step", None)
        if begin is not None:
            begin()

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict:
        """Accuracy and loss on (x, y) (the test set by default); BN and scales frozen, gates
        hard as in training. Its work goes to ``eval_work``, not to the training tally."""
        if x is None:
            x, y = self.x_test, self.y_test
        if x is None:
            return {}
        kt, arm = (KernelTally(self.eval_work, waits=self._take_waits),     # evaluation's waits are its own
                   ArmTally(self.eval_work, self.cfg.arm_ops_per_second))
        correct, loss_sum, run, total = 0, 0.0, 0, 0
        bs = self.cfg.eval_batch_size
        for i in range(0, x.shape[0], bs):
            xb, yb = x[i:i + bs], y[i:i + bs]
            if isinstance(xb, Pixels):
                xb = xb.standardised()
                arm.ops("standardise", xb.size)
            self._begin_step()
            logits, _, st = self.model.forward(xb, False, self.backend, kt, arm)
            loss, _ = softmax_cross_entropy(logits, yb, arm)
            loss_sum += loss * xb.shape[0]
            correct += int((logits.argmax(axis=1) == yb).sum())
            run += sum(st.executed)
            total += xb.shape[0] * len(st.executed)
        n = x.shape[0]
        return {"accuracy": correct / n, "loss": loss_sum / n,
                "block_exec_ratio": run / total if total else 1.0,
                "gated_exec_ratio": gated_exec_ratio(run, total, *self._block_counts())}

    # Evaluation opening gated blocks that training seldom ran: those blocks have barely trained
    # weights and BN statistics, and the seeds where it happened lost 3 to 27 points
    # (docs/device-training.md, "Some seeds collapse"). Said once a run (once more after a resume).
    GATES_OPEN_MARGIN = 0.05

    def _warn_gates_open_at_evaluation(self, train: float | None, test: float | None) -> None:
        if train is None or test is None or self._warned_gates_open:
            return
        if test > max(2.0 * train, train + self.GATES_OPEN_MARGIN):
            self._warned_gates_open = True
            self._emit("warning", message=(
                f"epoch {self.epoch + 1}: the evaluation ran {test:.1%} of the gated blocks' samples, training "
                f"{train:.1%}: blocks trained on few samples run at evaluation, which can cost accuracy; check "
                "other seeds (e2train frontier) or a lower slu_target (docs/device-training.md, 'Some seeds "
                "collapse')"))

    def _block_counts(self) -> tuple[int, int]:
        """(residual blocks, gated blocks) of the model."""
        blocks = self.model.blocks
        return len(blocks), sum(b.gate is not None for b in blocks)

    # -- the loop ------------------------------------------------------------------------
    def run(self, resume: bool = True) -> dict:
        """Train to the end of the schedule (or until ``stop()``). Resumes from the checkpoint
        when one exists and ``resume`` is true. Returns the result summary."""
        cfg = self.cfg
        if resume and self.checkpoint_path is not None:
            self._resume()
        self._emit("started", config=cfg.to_dict(), n_train=int(self.x_train.shape[0]),
                   n_test=0 if self.x_test is None else int(self.x_test.shape[0]),
                   total_epochs=self.total_epochs, batches_per_epoch=self.n_batches,
                   resumed_at={"epoch": self.epoch, "batch": self.batch},
                   backend=getattr(self.backend, "__name__", type(self.backend).__name__))
        wall0 = self._wall0 = time.monotonic() - self.wall_done
        if cfg.augment_pad == "min" and cfg.shift:
            self._pad_fill = pad_fill(self.x_train)         # once a run: a min pass over the data set
            self.arm.ops("maxabs", self.x_train.size)
        stopped = False
        steps_since_ckpt = 0
        while self.epoch < self.total_epochs and not stopped:
            plan = epoch_plan(self.x_train.shape[0], cfg.batch_size, self.epoch, cfg.seed,
                              cfg.smd_p if cfg.smd else 0.0, cfg.shift)
            while self.batch < plan.n_batches:
                if self._stop.is_set():
                    stopped = True
                    break
                b = self.batch
                t = self.epoch * self.n_batches + b
                self.batch += 1
                if plan.dropped[b]:
                    # SMD: nothing of this batch is read, computed or updated
                    self.stats["batches_dropped"] += 1
                    self.epoch_acc["dropped"] += 1
                    continue
                idx = plan.batches[b]
                got, self._next_input = self._next_input, None
                if got is not None and got[0] == t:
                    x, xin = got[1], got[2]
                else:
                    x, xin = self._input(idx, plan.shifts), None
                if self.prefetch_input:
                    self._defer_next_input(plan, b)
                r = self.train_step(x, self.y_train[idx], t, xin=xin)
                self.stats["batches_run"] += 1
                ea = self.epoch_acc
                ea["loss_sum"] += r["loss"] * idx.size
                ea["correct"] += r["correct"]
                ea["seen"] += idx.size
                ea["run"] += 1
                ea["blocks_run"] += r["blocks_run"]
                ea["blocks_total"] += r["blocks_total"]
                if cfg.progress_every and self.stats["batches_run"] % cfg.progress_every == 0:
                    self._emit("progress", epoch=self.epoch + 1, batch=b, step=t, loss=r["loss"],
                               gate_penalty=r["penalty"], exec_ratio=r["exec_ratio"], lr=r["lr"],
                               conv_lr=r["conv_lr"], modelled=self.modelled())
                steps_since_ckpt += 1
                if (self.checkpoint_path is not None and cfg.checkpoint_every
                        and steps_since_ckpt >= cfg.checkpoint_every and self.batch < plan.n_batches):
                    self.save_checkpoint()
                    steps_since_ckpt = 0
            if stopped:
                break
            self._end_epoch()
            steps_since_ckpt = 0
        if self.checkpoint_path is not None:
            self.save_checkpoint()
        result = self.result(stopped=stopped, wall_s=time.monotonic() - wall0)
        self._emit("finished", final=run_record.device_final(result), **result)
        return result

    def _end_epoch(self) -> None:
        ea = self.epoch_acc
        self.wall_done = time.monotonic() - self._wall0
        # epochs count from 1 in history, events and records (docs/records.md)
        rec = {"epoch": self.epoch + 1, "wall_s": self.wall_done, "batches_run": ea["run"],
               "batches_dropped": ea["dropped"],
               "train_loss": ea["loss_sum"] / ea["seen"] if ea["seen"] else None,
               "train_acc": ea["correct"] / ea["seen"] if ea["seen"] else None}
        rec["gated_exec_ratio"] = gated_exec_ratio(ea["blocks_run"], ea["blocks_total"], *self._block_counts())
        ev = self.evaluate()
        if ev:
            rec.update(test_acc=ev["accuracy"], test_loss=ev["loss"], test_block_exec_ratio=ev["block_exec_ratio"],
                       test_gated_exec_ratio=ev["gated_exec_ratio"])
            self._warn_gates_open_at_evaluation(rec["gated_exec_ratio"], ev["gated_exec_ratio"])
        rec["skips"] = self.skip_stats()
        rec["modelled"] = self.modelled()
        self.history.append(rec)
        self.epoch += 1
        self.batch = 0
        self.epoch_acc = self._new_epoch_acc()
        self._emit("epoch", **{**rec, **run_record.device_epoch(rec)})
        if self.checkpoint_path is not None and self.epoch < self.total_epochs:
            self.save_checkpoint()

    def result(self, stopped: bool = False, wall_s: float | None = None) -> dict:
        last = self.history[-1] if self.history else {}
        m, sk = self.modelled(), self.skip_stats()
        summary = {"test_acc": last.get("test_acc"), "epochs_done": self.epoch,
                   "energy_j": m["energy_j"], "energy_label": ENERGY_LABEL, "modelled_seconds": m["seconds"],
                   "batch_drop_ratio": sk["batch_drop_ratio"], "block_exec_ratio": sk["block_exec_ratio"],
                   "gated_exec_ratio": sk["gated_exec_ratio"],
                   "predicted_fraction": sk["predicted_fraction"]["overall"]}
        return {"record_schema_version": run_record.SCHEMA_VERSION, "summary": summary, "stopped": stopped,
                "epochs_done": self.epoch, "total_epochs": self.total_epochs,
                "test_acc": last.get("test_acc"), "train_loss": last.get("train_loss"),
                "skips": self.skip_stats(), "modelled": self.modelled(),
                "work": self.work.to_dict(), "eval_modelled": self.modelled(self.eval_work),
                "history": self.history, "wall_s": wall_s, "profile": self.profile()}

    def profile(self) -> dict:
        """Where the training's modelled time went: each layer's fabric seconds by call kind
        ("block3.conv1/conv_bwd_data", "stem.bn/bn_act"; the calls' own time), and the ARM's
        operations by kind that ran under the calls (side work hidden by the fabric); the rest of
        ``arm_ops_by_kind`` ran between the calls or at the optimiser, on the critical path; and
        the blocks the SLU gates decide (``gated_blocks``). With a backend that measures its
        calls, each item's measured seconds too (``fabric_wall_seconds``; ``wall_source``
        "board", or "simulated" where the device ends each call at once and they are not board
        time)."""
        out = {"fabric_seconds": dict(sorted(self.ktally.fabric_s.items())),
               "arm_ops_under_calls": dict(sorted(self.arm.under_calls_by_kind.items())),
               "arm_ops_per_second": self.cfg.arm_ops_per_second,
               "gated_blocks": [f"block{b.index}" for b in self.model.blocks if b.gate is not None]}
        if self._take_waits is not None:
            out["fabric_wall_seconds"] = dict(sorted(self.ktally.fabric_wall_s.items()))
            out["wall_source"] = getattr(self.backend, "wall_source", "board")
            out["unmatched_waits"] = self.ktally.unmatched_waits
        return out

    # -- checkpoints ---------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = dict(self.model.state())
        for k, v in self.opt.velocity.items():
            arrays[f"velocity/{k}"] = v
        return arrays

    def save_checkpoint(self) -> Path:
        meta = {
            "config": self.cfg.to_dict(),
            "epoch": self.epoch, "batch": self.batch,
            # every random draw comes from default_rng([seed, epoch, stream]) (smd.py) and the
            # model init from default_rng([seed, 0]): (seed, epoch, batch) is the RNG state
            "rng": {"kind": "numpy.default_rng counter streams", "seed": self.cfg.seed,
                    "epoch": self.epoch, "batch": self.batch},
            "stats": self.stats, "epoch_acc": self.epoch_acc, "history": self.history,
            "record_schema_version": run_record.SCHEMA_VERSION, "wall_done": self.wall_done,
            "work": self.work.to_dict(), "eval_work": self.eval_work.to_dict(),
            "ktally": {"calls": dict(self.ktally.calls), "macs": dict(self.ktally.macs),
                       "sample_passes": dict(self.ktally.sample_passes),
                       "predicted": dict(self.ktally.predicted), "weights": dict(self.ktally.weights)},
            "arm_ops_by_kind": dict(self.arm.by_kind),
            "profile": {"fabric_s": dict(self.ktally.fabric_s), "under_calls": dict(self.arm.under_calls_by_kind),
                        "fabric_wall_s": dict(self.ktally.fabric_wall_s)},
        }
        p = ckpt.save(self.checkpoint_path, self._state_arrays(), meta)
        self._emit("checkpoint", path=str(p), epoch=self.epoch, batch=self.batch)
        return p

    def _resume(self) -> None:
        got = ckpt.load_latest(self.checkpoint_path, warn=lambda m: self._emit("warning", message=m))
        if got is None:
            return
        arrays, meta, path = got
        saved, now = _saved_config(meta.get("config", {})), self.cfg.to_dict()
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ConfigError(f"checkpoint {path} was written with a different config (keys {diff}); "
                              "resume with the same config, or start a fresh run with another checkpoint path")
        try:
            self.model.load_state({k: v for k, v in arrays.items() if not k.startswith("velocity/")})
        except ValueError as e:
            raise ckpt.CheckpointError(f"checkpoint {path}: {e}") from None
        self.opt.velocity = {k[len("velocity/"):]: v.copy() for k, v in arrays.items() if k.startswith("velocity/")}
        self.epoch, self.batch = int(meta["epoch"]), int(meta["batch"])
        self.stats = dict(meta["stats"])
        # counts added since a checkpoint was written resume from zero mid-epoch
        self.epoch_acc = {**self._new_epoch_acc(), **meta["epoch_acc"]}
        # history saved before the run record's schema numbers its epochs from 0
        shift = 0 if meta.get("record_schema_version") else 1
        self.history = [dict(h, epoch=h["epoch"] + shift) for h in meta["history"]]
        self.wall_done = float(meta.get("wall_done", 0.0))
        self.work.__dict__.update(Work.from_dict(meta["work"]).__dict__)
        self.eval_work.__dict__.update(Work.from_dict(meta["eval_work"]).__dict__)
        kt = meta["ktally"]
        for k in ("calls", "macs", "sample_passes", "predicted", "weights"):
            getattr(self.ktally, k).clear()
            getattr(self.ktally, k).update(kt[k])
        self.arm.by_kind.clear()
        self.arm.by_kind.update(meta["arm_ops_by_kind"])
        prof = meta.get("profile", {})            # absent from checkpoints written before it
        self.ktally.fabric_s.clear()
        self.ktally.fabric_s.update(prof.get("fabric_s", {}))
        self.arm.under_calls_by_kind.clear()
        self.arm.under_calls_by_kind.update(prof.get("under_calls", {}))
        self.ktally.fabric_wall_s.clear()
        self.ktally.fabric_wall_s.update(prof.get("fabric_wall_s", {}))


def _saved_config(d: dict) -> dict:
    """A checkpoint's config under today's key names (checkpoints written with the old names
    resume); as saved when it no longer validates, so that the comparison names what differs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RenamedKeyWarning)
            return TrainConfig.from_dict(d).to_dict()
    except ConfigError:
        return dict(d)


def train(config: TrainConfig | dict | None, data, backend, **kw) -> dict:
    """Build a :class:`Trainer` and run it (see its arguments)."""
    return Trainer(config, data, backend, **kw).run()


# -- command line: the baseline and E²-Train side by side ---------------------------------------
# The two runs of the comparison differ only in the switches; everything else is shared.
# ResNet-26 (width 8): a deeper net gates more of the step (10 of its 12 blocks; the stem, the two
# stride-2 blocks and the classifier run for every batch SMD keeps), as in the paper, whose
# saving is on ResNet-74. The SLU gates run on the ARM for every sample: slu_hidden 2 and target
# 0.05 with thresholded training gates. The depth and target were chosen on a held-out quarter
# of the training set (`e2train frontier --holdout 0.25`, five seeds; docs/device-training.md,
# "The demo: ResNet-26, chosen on held-out data"): ResNet-20 / 26 / 32 at targets 0.1, 0.15 and 0.2,
# then ResNet-26 at ten more settings; ResNet-26 at 0.05 was the one setting that kept every seed
# within 1.5 points there and reached 0.25 of the baseline's modelled energy.
# The config default stays sampled gates: the safe rule for short runs, where thresholded gates
# can switch a block off for good.
COMPARE_BASE = {"model": "resnet26", "width": 8, "epochs": 20, "conv_lr": 0.01, "slu_cell": "gru", "slu_hidden": 2,
                "slu_target": 0.05, "slu_sampling": False, "progress_every": 0}
BASELINE_SWITCHES = {"smd": False, "slu": False, "precision": "int8_int16grad"}


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _backend(name: str):
    if name == "golden":
        from ..core import golden
        return golden
    from ..core import csim
    if not csim.available():
        raise SystemExit("the C-simulation library is missing: run `make csim` (or pass --backend golden)")
    missing = [fn for fn in BACKEND_METHODS if not callable(getattr(csim, fn, None))]
    if missing:
        raise SystemExit(f"the C simulation lacks {', '.join(missing)}: update the tree and run `make csim` "
                         "(or pass --backend golden)")
    return csim


def compare(data, backend, base: dict | None = None, e2: dict | None = None, log=print) -> dict:
    """Train the 8-bit baseline and E²-Train from the same seed; return both results and ratios."""
    base_cfg = dict(COMPARE_BASE, **(base or {}))
    runs = {}
    for name, cfg in (("baseline", dict(base_cfg, **BASELINE_SWITCHES)), ("e2train", dict(base_cfg, **(e2 or {})))):
        t0, c0 = time.monotonic(), time.process_time()
        tr = Trainer(cfg, data, backend)
        res = tr.run()
        res["wall_s"], res["cpu_s"] = time.monotonic() - t0, time.process_time() - c0
        runs[name] = res
        log(f"{name:9s} test acc {100 * res['test_acc']:6.2f}%  modelled energy "
            f"{_fmt_j(res['modelled']['energy_j'])}  modelled time {res['modelled']['critical_path_seconds']:.1f} s "
            f"critical path ({res['modelled']['seconds']:.1f} s summed)  "
            f"(host wall {res['wall_s']:.0f} s, cpu {res['cpu_s']:.0f} s)")
    b, e = runs["baseline"], runs["e2train"]
    out = {"runs": runs, "energy_label": ENERGY_LABEL, "platform": PLATFORM,
           "acc_drop_points": 100 * (b["test_acc"] - e["test_acc"])}
    out.update(energy.compare_to_baselines(Work.from_dict(e["work"]), Work.from_dict(b["work"]), PLATFORM))
    out["time_ratio"] = e["modelled"]["critical_path_seconds"] / b["modelled"]["critical_path_seconds"]
    out["time_ratio_summed"] = e["modelled"]["seconds"] / b["modelled"]["seconds"]
    sk = e["skips"]
    r8 = out["ratio_to"][energy.BASELINE_8BIT]
    log(f"E2-Train vs baseline: accuracy {-out['acc_drop_points']:+.2f} points, modelled energy ratio "
        f"{r8['total']:.3f} to the {energy.BASELINE_8BIT} (compute {r8['compute']:.3f} + on-chip {r8['on_chip']:.3f} "
        f"+ DRAM {r8['dram']:.3f} + static {r8['static']:.3f}; static on the critical path, "
        f"{out['energy_ratio_on_sum']:.3f} on the summed time), {out['ratio_to'][energy.BASELINE_FP32]['total']:.3f} "
        f"to {energy.BASELINE_FP32}; modelled time ratio {out['time_ratio']:.3f} (critical paths); "
        f"batches dropped {sk['batch_drop_ratio']:.2f}, block executions {sk['block_exec_ratio']:.2f} "
        f"(gated blocks {_ratio(sk.get('gated_exec_ratio'))} in training, "
        f"{_ratio(e['history'][-1].get('test_gated_exec_ratio') if e['history'] else None)} at the last evaluation), "
        f"weights decided by the predictor {sk['predicted_fraction']['overall']:.2f}")
    return out


def _fmt_j(v) -> str:
    return "n/a" if v is None else f"{v:.1f} J (modelled)"


def main(argv=None) -> int:
    import argparse
    import json
    p = argparse.ArgumentParser(prog="python -m e2train.device.trainer",
                                description="Baseline (8-bit, all batches, no gates) vs E2-Train on the device trainer.")
    p.add_argument("--data", default="digits", help="data set name for e2train.data.datasets.load (default digits)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--backend", choices=("csim", "golden"), default="csim")
    p.add_argument("--config", default="{}", help="JSON overrides shared by both runs")
    p.add_argument("--e2", default="{}", help="JSON overrides for the E2-Train run only")
    p.add_argument("--json", default=None, help="write the full results here")
    p.add_argument("--profile", action="store_true",
                   help="also print where each run's modelled critical path went (fabric by block and call, ARM by kind)")
    a = p.parse_args(argv)
    from ..data import datasets                     # host side only: may import scikit-learn
    try:
        base, e2 = json.loads(a.config), json.loads(a.e2)
        TrainConfig.from_dict(dict(COMPARE_BASE, **base, **e2))
    except (json.JSONDecodeError, ConfigError) as err:
        raise SystemExit(f"bad config: {err}")
    data = datasets.load(a.data, a.data_dir, pixels=True)       # as `e2train train` uploads it
    out = compare(data, _backend(a.backend), base, e2)
    if a.profile:
        from .step_profile import table
        print("\n" + table(out["runs"]["baseline"], out["runs"]["e2train"]))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

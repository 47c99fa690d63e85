"""Paper 003's schedule: asynchronous 1F1B with weight stashing (PipeDream), one stage per rank.

Order (``pipedream_order``): stage s of S admits min(S - s, M) forwards, then alternates one
backward and one forward, then drains the backwards; the last stage runs F1 B1 F2 B2 ...
(PipeDream, Harlap et al. 2018, Fig. 4/8; paper 003, "Pipeline Design", Figure 1b). There is
no flush between mini-batches: each stage applies a mini-batch's gradient right after that
mini-batch's backward (``U`` in the op log), so a stage's next forward already runs on the
updated weights. The pipeline drains only at the end of an epoch (for evaluation).

Weight stashing (paper 003, "Weight Stashing"): the forward of mini-batch k runs on a stashed
copy of the weights (``WeightStash.push``) through ``torch.func.functional_call``; its
backward differentiates that same graph, so the gradient is the one of the weights the forward
used, and it is applied to the newest weights. Without stashing (``stash=False``, for
comparison and for the test that must fail without it) the backward is recomputed on the live
weights at backward time (dropout masks replayed), which is what an in-place update between a
forward and its backward amounts to.

SLU gates (a gated model's stages, ``stages.layers_of``): a stage's input and output may be a
tuple (activation, executed FLOPs ratio so far, gate state, gate cell weights); the whole tuple travels in the
forward message and its gradient in the backward one, and the stash and the no-stash replay
cover the gates' parameters like any other. The last stage adds the SLU cost
(``slu.SLU.penalty``) of the whole network's ratio to its loss.

Vertical sync (``vertical_sync=True``): stage 0 tags each mini-batch with its weight version
and every later stage runs it on its own weights of that version (kept in the stash's history).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .p2p import P2P, TAG_ACT, TAG_GRAD
from .stash import WeightStash


def _tensors(t) -> tuple:
    """A stage message as a tuple of tensors (one tensor, or a gated model's carry)."""
    return (t,) if isinstance(t, torch.Tensor) else tuple(t)


def _clone(t):
    return t.detach().clone() if isinstance(t, torch.Tensor) else tuple(x.detach().clone() for x in t)


def pipedream_order(n_stages: int, stage: int, n_mb: int) -> list[tuple[str, int]]:
    """[("F", k) | ("B", k), ...] for ``stage`` over mini-batches 0..n_mb-1."""
    warm = min(n_stages - stage, n_mb)
    ops = [("F", k) for k in range(warm)]
    f = warm
    for b in range(n_mb):
        ops.append(("B", b))
        if f < n_mb:
            ops.append(("F", f))
            f += 1
    return ops


def inject_failure(how: str, stage: int, mb: int) -> None:
    """Test hook (``DistConfig.fail_at``): raise, or die at once as a killed process would."""
    if how == "exit":
        import os
        os._exit(9)
    raise RuntimeError(f"injected failure on stage {stage} at mini-batch {mb} (fail_at)")


@dataclass
class StageTimes:
    fwd_s: float = 0.0
    bwd_s: float = 0.0          # backward and optimizer step
    n_fwd: int = 0
    n_bwd: int = 0

    def to_dict(self) -> dict:
        return {"fwd_ms": 1e3 * self.fwd_s / max(1, self.n_fwd), "bwd_ms": 1e3 * self.bwd_s / max(1, self.n_bwd)}


@dataclass
class TrainStats:
    loss: float = 0.0
    correct: int = 0
    samples: int = 0
    exec_w: float = 0.0          # SLU: executed FLOPs ratio times samples (last stage)
    ops: list = field(default_factory=list)       # (op, mb, weight version) in execution order


class AsyncStage:
    """One pipeline stage on this rank. ``step_of(mb)``: the mini-batch's global step (for the
    learning rate); ``set_lr(step)``: sets the optimizer's rates for that step."""

    def __init__(self, module: nn.Module, stage: int, n_stages: int, optimizer: torch.optim.Optimizer,
                 p2p: P2P, *, stash: bool = True, vertical_sync: bool = False, trace: bool = False,
                 set_lr=None, fail_at: tuple[int, str] | None = None, penalty=None):
        self.module, self.stage, self.n_stages = module, stage, n_stages
        self.first, self.last = stage == 0, stage == n_stages - 1
        self.opt, self.p2p = optimizer, p2p
        self.stash_on, self.vsync = stash, vertical_sync
        if vertical_sync and not stash:
            raise ValueError("vertical sync runs each mini-batch on a stashed version: it needs stash = true")
        self.store = WeightStash(module, keep_history=n_stages + 1 if vertical_sync else 0)
        self.pending: dict[int, tuple] = {}
        self.times = StageTimes()
        self.stats = TrainStats()
        self.trace: dict[int, dict] | None = {} if trace else None
        self.set_lr = set_lr or (lambda mb: None)
        self.fail_at = fail_at
        self.n_done = 0
        self.penalty = penalty       # SLU cost of the executed FLOPs ratio r (gated models)

    def _loss(self, out, y, reduction: str = "mean"):
        """Task loss of the last stage's output (logits, or (logits, r) after gated blocks),
        plus the SLU cost alpha * C(r) of the mini-batch; and the logits."""
        logits, r = (out, None) if isinstance(out, torch.Tensor) else out
        loss = F.cross_entropy(logits, y, reduction=reduction)
        if r is not None:
            if self.penalty is None:
                raise RuntimeError("a gated model's last stage needs the SLU penalty")
            loss = loss + self.penalty(r.reshape(()))
        return loss, logits, r

    # -- the two ops -----------------------------------------------------------------------
    def forward(self, mb: int, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        if self.fail_at is not None and self.n_done >= self.fail_at[0]:
            inject_failure(self.fail_at[1], self.stage, mb)
        if self.first:
            inp, tag = x, self.store.version
        else:
            inp, mb_in, tag = self.p2p.recv_all(self.stage - 1, TAG_ACT)
            if mb_in != mb:
                raise RuntimeError(f"stage {self.stage} expected mini-batch {mb}, got {mb_in}")
            for t in _tensors(inp):
                t.requires_grad_(True)
        t0 = time.perf_counter()
        version = tag if self.vsync else self.store.version
        rng = torch.get_rng_state()
        if self.trace is not None:
            self.trace[mb] = {"input": _clone(inp), "fwd_version": version,
                              "fwd_weights": self.store.snapshot(version), "rng": rng, "y": None if y is None else y.clone()}
        if self.stash_on:
            params = self.store.push(mb, version)
            out = functional_call(self.module, params, (inp,))
        else:
            with torch.no_grad():
                out = self.module(inp)
        if self.last:
            loss_s, logits, r = self._loss(out, y, reduction="none")
            self.stats.loss += float(loss_s.detach().sum())
            self.stats.correct += int((logits.detach().argmax(1) == y).sum())
            self.stats.samples += int(y.shape[0])
            if r is not None:
                self.stats.exec_w += float(r.detach()) * int(y.shape[0])
            out = loss_s.mean()
        self.pending[mb] = (inp, out, y, rng)
        self.times.fwd_s += time.perf_counter() - t0
        self.times.n_fwd += 1
        self.stats.ops.append(("F", mb, version))
        if not self.last:
            self.p2p.send_all(out, self.stage + 1, TAG_ACT, mb=mb, version=tag)

    def backward(self, mb: int) -> None:
        g = None
        if not self.last:
            g, mb_in, _ = self.p2p.recv_all(self.stage + 1, TAG_GRAD)
            if mb_in != mb:
                raise RuntimeError(f"stage {self.stage} expected the gradient of mini-batch {mb}, got {mb_in}")
        t0 = time.perf_counter()
        inp, out, y, rng = self.pending.pop(mb)
        if self.stash_on:
            version, params = self.store.pop(mb)
        else:
            # no stash: the graph is rebuilt on the weights as they are now (same dropout masks)
            version = self.store.version
            params = {n: p.detach().clone().requires_grad_(True) for n, p in self.store.live.items()}
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(rng)
                out = functional_call(self.module, params, (inp,))
                if self.last:
                    out = self._loss(out, y)[0]
        torch.autograd.backward(_tensors(out), None if g is None else _tensors(g))
        grad_in = None
        if not self.first:
            # a carried tensor no later op depends on gets a zero gradient, not none
            grads = tuple(torch.zeros_like(t) if t.grad is None else t.grad for t in _tensors(inp))
            grad_in = grads[0] if isinstance(inp, torch.Tensor) else grads
        for n, p in self.store.live.items():
            p.grad = params[n].grad
        self.set_lr(mb)
        self.opt.step()
        self.store.updated()
        if self.trace is not None:
            self.trace[mb].update(bwd_version=version, grad_out=None if g is None else _clone(g),
                                  applied={n: (None if p.grad is None else p.grad.clone())
                                           for n, p in self.store.live.items()})
        for p in self.store.live.values():
            p.grad = None
        self.times.bwd_s += time.perf_counter() - t0
        self.times.n_bwd += 1
        self.stats.ops.append(("B", mb, version))
        self.stats.ops.append(("U", mb, self.store.version))
        self.n_done += 1
        if grad_in is not None:
            self.p2p.send_all(grad_in, self.stage - 1, TAG_GRAD, mb=mb)

    # -- a whole epoch ---------------------------------------------------------------------
    def reset_epoch(self) -> None:
        self.stats = TrainStats()

    def times_dict(self) -> dict:
        return self.times.to_dict()

    def memory(self) -> dict:
        return self.store.report()

    def run(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Run ``batches`` (x for stage 0, y for the last stage; others ignore them)."""
        for op, k in pipedream_order(self.n_stages, self.stage, len(batches)):
            if op == "F":
                x, y = batches[k]
                self.forward(k, x if self.first else None, y if self.last else None)
            else:
                self.backward(k)
        self.p2p.wait()

"""The version store of weight stashing (PipeDream; paper 003, "Weight Stashing").

A stage updates its live weights after every mini-batch's backward, while up to S - s
mini-batches are still in flight on stage s. Each forward takes a snapshot of the weights it
runs with (``push``); that mini-batch's backward runs on the same snapshot (``pop``), and its
gradient is then applied to the newest weights. The snapshot tensors are detached copies, so
the live weights can be updated in place while the forward's autograd graph still refers to
the snapshot: the forward runs the stashed version through ``torch.func.functional_call``.

Vertical sync (PipeDream's option): every stage runs mini-batch k on the weight version that
stage 0 used for it. A stage keeps the versions it produced (``history``) until no mini-batch
that may still arrive can name them.

Memory: bytes held by stashed and historical versions, now and at peak, are counted (for PSG
layers also the int8 codes each in-flight forward holds).

PSG layers (``psg.PSGConv2d``) compute on int8 codes of integer master weights that live
outside the parameters; their forward keeps the codes it ran on for its own backward, and an
update replaces (never overwrites) them, so a PSG layer is stashed by its autograd graph; its
weight gradient (a sign) depends on activations and output gradients only. The stash copies
its float ``weight`` view like any parameter, so that the sign lands on that copy and is applied
to the live layer by the optimizer's sign step. Vertical sync does not cover PSG layers (their
forward always runs on the newest codes).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _nbytes(d: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in d.values())


class WeightStash:
    def __init__(self, module: nn.Module, keep_history: int = 0):
        self.module = module
        self.live = OrderedDict((n, p) for n, p in module.named_parameters())
        self.version = 0                        # updates applied to the live weights
        self.stash: dict[int, tuple[int, dict[str, torch.Tensor]]] = {}
        self.keep_history = keep_history        # > 0: vertical sync keeps this many past versions
        self.history: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        # PSG layers run on int8 codes derived from their integer masters, outside the
        # parameters; each forward's autograd graph holds the codes it ran on (psg._PSGConvFn),
        # so every in-flight version keeps one set alive: counted per stashed version
        self.codes_bytes = sum(m.w_codes.numel() * m.w_codes.element_size()
                               for m in module.modules() if hasattr(m, "w_codes"))
        self.peak_bytes = 0
        self.peak_versions = 0
        if keep_history:
            self._record_history()

    # -- versions ------------------------------------------------------------------------
    def snapshot(self, version: int | None = None) -> dict[str, torch.Tensor]:
        """Detached copies of the weights of ``version`` (default: the live ones)."""
        if version is None or version == self.version:
            src = self.live
        else:
            if version not in self.history:
                raise RuntimeError(f"weight version {version} is gone (have {list(self.history)}): "
                                   "vertical sync kept too few versions")
            src = self.history[version]
        return {n: t.detach().clone() for n, t in src.items()}

    def push(self, mb: int, version: int | None = None) -> dict[str, torch.Tensor]:
        """Stash the weights mini-batch ``mb``'s forward runs on; returns them (requiring grad)."""
        v = self.version if version is None else version
        params = self.snapshot(v)
        for t in params.values():
            t.requires_grad_(True)
        self.stash[mb] = (v, params)
        self._account()
        return params

    def pop(self, mb: int) -> tuple[int, dict[str, torch.Tensor]]:
        """(version, weights) that mini-batch ``mb``'s forward used; frees them."""
        return self.stash.pop(mb)

    def updated(self) -> None:
        """Call after each optimizer step on the live weights."""
        self.version += 1
        if self.keep_history:
            self._record_history()

    def _record_history(self) -> None:
        self.history[self.version] = {n: p.detach().clone() for n, p in self.live.items()}
        while len(self.history) > self.keep_history:
            self.history.popitem(last=False)
        self._account()

    # -- memory --------------------------------------------------------------------------
    @property
    def bytes_now(self) -> int:
        return (sum(_nbytes(p) + self.codes_bytes for _, p in self.stash.values())
                + sum(_nbytes(h) for h in self.history.values()))

    @property
    def live_bytes(self) -> int:
        return _nbytes(self.live)

    def _account(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.bytes_now)
        self.peak_versions = max(self.peak_versions, len(self.stash) + len(self.history))

    def report(self) -> dict:
        return {"live_weight_bytes": self.live_bytes, "stash_peak_bytes": self.peak_bytes,
                "stash_peak_versions": self.peak_versions,
                "stash_peak_ratio": self.peak_bytes / max(1, self.live_bytes)}

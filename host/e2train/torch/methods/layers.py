"""Layers as the skipping methods see them: named groups of parameters in forward order.

A model may say what its layers are with a ``skip_layers()`` method returning
``[(name, module), ...]`` in forward order. Otherwise each convolution or linear layer is one
layer, and a batch-norm that follows it (in registration order) joins it, so that a layer's
"weight gradient" covers its affine BN parameters too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@dataclass
class Layer:
    name: str
    modules: list[nn.Module]
    params: list[tuple[str, nn.Parameter]]   # (full name in the model, parameter)

    @property
    def param_names(self) -> set[str]:
        return {n for n, _ in self.params}

    def grads(self) -> list[torch.Tensor] | None:
        """Gradients of this layer's parameters, or None if none of them has one."""
        gs = [p.grad for _, p in self.params if p.grad is not None]
        return gs or None

    def flat_grad(self) -> torch.Tensor | None:
        gs = self.grads()
        return None if gs is None else torch.cat([g.reshape(-1) for g in gs])

    def set_trainable(self, on: bool) -> None:
        for _, p in self.params:
            p.requires_grad_(on)

    def n_params(self) -> int:
        return sum(p.numel() for _, p in self.params)


def model_layers(model: nn.Module) -> list[Layer]:
    names = {id(p): n for n, p in model.named_parameters()}
    custom = getattr(model, "skip_layers", None)
    if callable(custom):
        out = []
        for lname, mod in custom():
            ps = [(names[id(p)], p) for p in mod.parameters()]
            out.append(Layer(lname, [mod], ps))
        _check_cover(model, out)
        return out
    out: list[Layer] = []
    for mname, mod in model.named_modules():
        own = [(f"{mname}.{pn}" if mname else pn, p) for pn, p in mod.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(mod, _NORMS) and out and not isinstance(out[-1].modules[-1], _NORMS):
            out[-1].modules.append(mod)
            out[-1].params.extend(own)
        else:
            out.append(Layer(mname or "model", [mod], own))
    _check_cover(model, out)
    return out


def _check_cover(model: nn.Module, layers: Iterable[Layer]) -> None:
    seen = [n for l in layers for n in l.param_names]
    every = [n for n, _ in model.named_parameters()]
    if sorted(seen) != sorted(every):
        missing = sorted(set(every) - set(seen))
        raise ValueError(f"the model's skip_layers() must cover every parameter exactly once; "
                         f"missing {missing[:5]}, {len(seen)} listed vs {len(every)} parameters")

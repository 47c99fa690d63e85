"""The update rules: momentum SGD for float parameters, the sign step for conv weights.

E2-Train's recipe (DESIGN.md, calibration on digits): conv weights take a plain sign step
with a small learning rate (1e-3), BatchNorm and the classifier take SGD with momentum at an
ordinary one (0.1). One optimizer holds both as parameter groups (``rule`` = "sgd" or
"sign"), so a learning-rate scheduler and a checkpoint treat them as one.

* PSG layers (``PSGConv2d``): the device's rule on the int32 master weights,
  ``core.golden.sign_update`` (decoupled weight decay, saturation), via
  ``PSGConv2d.sign_step``; the weight's ``grad`` holds the sign from the PSG backward.
* float weights under "sign" (SignSGD): p <- p - lr * sign(g) - lr * wd * p.
* "sgd": torch's SGD with momentum and coupled weight decay (buf = m*buf + g + wd*p).
"""
from __future__ import annotations

import torch

from .psg import PSGConv2d

RULES = ("sgd", "sign")


class E2Optimizer(torch.optim.Optimizer):
    def __init__(self, groups: list[dict], momentum: float = 0.9, weight_decay: float = 5e-4,
                 psg_layers: dict[int, PSGConv2d] | None = None):
        for g in groups:
            if g.get("rule", "sgd") not in RULES:
                raise ValueError(f"unknown update rule {g.get('rule')!r}; choose one of {RULES}")
        super().__init__(groups, dict(lr=0.1, momentum=momentum, weight_decay=weight_decay, rule="sgd"))
        # id(weight) -> its PSG layer: the sign step acts on the layer's master weights
        self.psg_layers = psg_layers or {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["rule"] == "sign":
                    layer = self.psg_layers.get(id(p))
                    if layer is not None:
                        layer.sign_step(lr, wd)
                    else:
                        p.mul_(1.0 - lr * wd).add_(torch.sign(p.grad), alpha=-lr)
                    continue
                d = p.grad.add(p, alpha=wd) if wd else p.grad
                if mom:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(mom).add_(d)
                    d = buf
                p.add_(d, alpha=-lr)
        return None


def build_optimizer(model: torch.nn.Module, *, sign_convs: bool, lr: float, conv_lr: float,
                    momentum: float, weight_decay: float) -> E2Optimizer:
    """Conv weights in a "sign" group at ``conv_lr`` when ``sign_convs``; the rest SGD at ``lr``."""
    psg = {id(m.weight): m for m in model.modules() if isinstance(m, PSGConv2d)}
    conv_w = set(psg)
    if sign_convs:
        conv_w |= {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
                   and m.groups >= 1 and not _is_gate(model, m)}
    else:
        if psg:
            raise ValueError("PSG / fixed-point conv layers are updated by the sign step only: "
                             "use precision fp32 or int8_fp32grad for SGD on conv weights")
    sign_p = [p for p in model.parameters() if id(p) in conv_w]
    rest = [p for p in model.parameters() if id(p) not in conv_w]
    groups = [dict(params=rest, lr=lr, rule="sgd", name="sgd")]
    if sign_p:
        groups.append(dict(params=sign_p, lr=conv_lr, rule="sign", name="sign"))
    return E2Optimizer(groups, momentum=momentum, weight_decay=weight_decay, psg_layers=psg)


def _is_gate(model, m) -> bool:
    gates = getattr(model, "gates", None)
    return gates is not None and any(m is g for g in gates.modules())

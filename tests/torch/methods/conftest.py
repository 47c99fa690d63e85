"""Shared pieces of the methods' trainer tests: a small digits run and spies."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from e2train.torch import data as tdata
from e2train.torch.policy import Policy
from e2train.torch.trainer import TrainConfig

N_TRAIN = 128


@pytest.fixture(scope="session")
def digits():
    # 128 training and 90 test images: the tests count work and gradients, not accuracy
    d = tdata.load("digits", limit_train=N_TRAIN)
    return tdata.Data(d.name, d.x_train, d.y_train, d.x_test[:90], d.y_test[:90])


def quick_config(**kw) -> TrainConfig:
    base = dict(dataset="digits", model="resnet8", epochs=2, batch_size=64, threads=1,
                limit_train=N_TRAIN, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class Spy(Policy):
    """Placed after the policy under test: records, for every step, the batch that trained,
    which parameters got a gradient, and which layers ran their forward / backward."""

    name = "spy"

    def __init__(self):
        self.steps: list[dict] = []
        self._handles = []
        self._cur: dict | None = None
        # calls outside the steps: (layer, batch, grad mode, module in training mode)
        self.outside_calls: list[tuple[str, int, bool, bool]] = []

    def on_train_start(self, ctx):
        self.model = ctx.model
        for name, m in ctx.model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self._handles.append(m.register_forward_hook(self._fwd(name)))
                self._handles.append(m.register_full_backward_hook(self._bwd(name)))

    def _fwd(self, name):
        def hook(mod, inp, out):
            if self._cur is not None:
                self._cur["fwd"].append((name, inp[0].shape[0], torch.is_grad_enabled()))
            else:
                self.outside_calls.append((name, inp[0].shape[0], torch.is_grad_enabled(), mod.training))
        return hook

    def _bwd(self, name):
        def hook(mod, gin, gout):
            if self._cur is not None:
                self._cur["bwd"].append((name, gout[0].shape[0]))
        return hook

    def before_forward(self, ctx):
        self._cur = {"epoch": ctx.epoch, "n": ctx.x.shape[0], "fwd": [], "bwd": []}

    def after_backward(self, ctx):
        self._cur["grads"] = {n for n, p in ctx.model.named_parameters() if p.grad is not None}
        self.steps.append(self._cur)
        self._cur = None

    def on_epoch_end(self, ctx, record):
        for h in self._handles if ctx.epoch == ctx.epochs - 1 else ():
            h.remove()


def forward_macs_per_sample(model: nn.Module, x: torch.Tensor) -> int:
    """Forward MACs of one sample through every conv and linear layer, counted here
    independently of the work meter."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total[0] += out[0].numel() * (m.in_channels // m.groups) * k
        else:
            total[0] += out[0].numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in weighted_layers(model)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x[:1].to(next(model.parameters()).device))
    model.train(was)
    for h in hs:
        h.remove()
    return total[0]


@pytest.fixture
def quick():
    return quick_config


@pytest.fixture
def spy():
    return Spy()


@pytest.fixture
def fwd_macs():
    return forward_macs_per_sample

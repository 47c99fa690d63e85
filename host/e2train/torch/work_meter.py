"""Tallies the work a torch training step actually ran, into a ``core.work.Work``.

Forward hooks on every convolution, linear layer and LSTM or GRU cell see the tensors that really
went through them -- after batch dropping, sample masks and block gating -- so a skipped
sample, block or batch never enters the tally. For each layer call in training mode:

* forward MACs = output elements x (input channels / groups) x k x k, at the layer's
  forward operand widths (``pass_bits``; float32 for ordinary torch layers);
* backward-data MACs (same count) only when the layer's input requires a gradient (the
  first layer's input does not; a policy that freezes early layers stops the backward);
* backward-weight MACs only when the weight requires a gradient. PSG layers report theirs
  after their backward: the 4x10-bit predictor for every MAC, the exact product only for
  the weights the predictor did not decide (``PSGConv2d.pending_wgrad``).

Forward passes that do not train (a method's deciding forward, a cache fill) are tallied
inside ``with meter.forward_only():``: every layer call counts its forward MACs -- the same
count and widths as a training forward of the same samples -- whatever the module's
train/eval mode, and no backward.

Operand bytes are priced as on-chip buffer reads (``core.energy.conv_pass_work``).
BatchNorm is tallied as float32 element operations (the forward a subtract and a
multiply-add, the backward about twice that); ReLUs, pooling and residual adds are left out
(one comparison or add per element, well under 1% of a step).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..core import energy
from ..core.energy import FP32, PREDICTOR_BITS, EnergyModel, Platform, conv_pass_work
from ..core.work import Work
from . import psg_sync_free
from .psg import PSGConv2d

FP32_PASSES = ((FP32, FP32), (FP32, FP32), (FP32, FP32))
# the torch reference prices its work per op (no board, so no static power): the Horowitz 45 nm
# platform of core.energy, the same pricing the device trainer uses on its board
PLATFORM = "horowitz45"


def energy_platform(model: "EnergyModel | Platform | str | None" = None) -> Platform:
    """The platform a torch run is priced on: ``horowitz45`` unless the caller names another."""
    if model is None:
        return energy.platform(PLATFORM)
    if isinstance(model, EnergyModel):
        return Platform(model.name, model, None, f"{model.static_w:g} W" if model.static_w else "none",
                        "an energy model given by the caller")
    return energy.platform(model)
BN_OPS_PER_ELEMENT = (2, 4)        # forward, backward float32 element operations


class WorkMeter:
    """Installs hooks on a model; ``work`` accumulates while ``active`` is True."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.work = Work()
        self.active = False
        self._forward_only = False
        self.conv_calls = 0            # layer calls tallied (convs and linears)
        self.conv_samples = 0          # samples through them (sum over calls)
        self._handles = []
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, PSGConv2d)):
                self._handles.append(m.register_forward_hook(self._conv_hook))
            elif isinstance(m, nn.Linear):
                self._handles.append(m.register_forward_hook(self._linear_hook))
            elif isinstance(m, (nn.LSTMCell, nn.GRUCell)):
                self._handles.append(m.register_forward_hook(self._rnn_cell_hook))
            elif isinstance(m, nn.BatchNorm2d):
                self._handles.append(m.register_forward_hook(self._bn_hook))

    def priced(self, on: "Platform | str" = PLATFORM) -> dict:
        """The tally so far priced on a platform, in labelled parts (``core.energy.price``)."""
        return energy.price(self.work, on)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def forward_only(self) -> Iterator["WorkMeter"]:
        """Tally the forward passes run inside as forward work only, under ``no_grad``.

        For a forward that does not train (DeadHorse's deciding forward, Learn&Drop's cache
        fill): each layer call adds the forward MACs and operand bytes it would add in a
        training step, in train or eval mode alike; nothing is added for a backward, and
        BatchNorm counts its forward operations only. Nests; restores the meter's state.
        """
        saved = (self.active, self._forward_only)
        self.active, self._forward_only = True, True
        try:
            with torch.no_grad():
                yield self
        finally:
            self.active, self._forward_only = saved

    def _on(self, module) -> bool:
        if self._forward_only:
            return True
        return self.active and module.training and torch.is_grad_enabled()

    def _passes(self, module, n_macs: int, x: torch.Tensor, weight: torch.Tensor) -> None:
        fwd, bwd_d, bwd_w = getattr(module, "pass_bits", FP32_PASSES)
        conv_pass_work(n_macs, *fwd, work=self.work)
        if self._forward_only:
            return
        if x.requires_grad:
            conv_pass_work(n_macs, *bwd_d, work=self.work)
        if weight.requires_grad and not isinstance(module, PSGConv2d):
            conv_pass_work(n_macs, *bwd_w, work=self.work)

    def _conv_hook(self, module, inputs, output) -> None:
        if not self._on(module):
            return
        x = inputs[0]
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        n = output.numel() * (module.in_channels // module.groups) * k * k
        self.conv_calls += 1
        self.conv_samples += x.shape[0]
        self._passes(module, n, x, module.weight)

    def _linear_hook(self, module, inputs, output) -> None:
        if not self._on(module):
            return
        x = inputs[0]
        self.conv_calls += 1
        self.conv_samples += x.shape[0]
        self._passes(module, output.numel() * module.in_features, x, module.weight)

    def _rnn_cell_hook(self, module, inputs, output) -> None:
        if not self._on(module):
            return
        gates = 4 if isinstance(module, nn.LSTMCell) else 3          # LSTM: i, f, g, o; GRU: r, z, n
        n = inputs[0].shape[0] * gates * module.hidden_size * (module.input_size + module.hidden_size)
        for _ in range(1 if self._forward_only else 3):                         # forward, and the two backward products
            conv_pass_work(n, FP32, FP32, work=self.work)

    def _bn_hook(self, module, inputs, output) -> None:
        if self._on(module):
            ops = BN_OPS_PER_ELEMENT[0] if self._forward_only else sum(BN_OPS_PER_ELEMENT)
            self.work.add_ops(output.numel() * ops, FP32)

    def collect_backward(self) -> None:
        """After backward: the PSG layers' weight-gradient work (known only then)."""
        layers = [m for m in self.model.modules() if isinstance(m, PSGConv2d) and m.pending_wgrad]
        if self.active:
            psg_sync_free.read_step(layers)
        for m in layers:
            if self.active:
                for n_all, n_exact in m.pending_wgrad:
                    self.work.add_macs(n_all, *PREDICTOR_BITS)
                    self.work.add_macs(n_exact, *m.pass_bits[2])
                    # x and g are read once for both products
                    self.work.add_sram(n_all * (m.pass_bits[2][0] + m.pass_bits[2][1]) // 8)
            m.pending_wgrad.clear()


"""Bit-exactness of the exact PSG layer across devices: the same layer, the same batches and
the same update steps on two devices (the CPU and a GPU), compared bit for bit.

What is compared, step by step: the layer's output, the input gradient, the weight-update
signs and the predictor count ``n_predicted``; after the steps, the int32 master weights and
the scale maxima. Used by ``benchmarks/bench_torch.py --device cuda`` and by the CUDA tests.
"""
from __future__ import annotations

import torch

from .psg import PSGConv2d, set_sync_free

# (batch, in channels, height = width, out channels, kernel, stride, unsigned input, beta)
LAYER_CASES = [
    (4, 3, 8, 5, 3, 1, False, 0.05),
    (3, 6, 9, 4, 3, 2, True, 0.05),
    (5, 8, 6, 8, 1, 1, True, 0.2),
    (2, 4, 7, 6, 3, 1, True, 0.0),
    (8, 3, 32, 3, 3, 1, True, 0.05),      # weight-gradient sums beyond 2**24: sample groups
    (32, 128, 8, 128, 3, 1, True, 0.05),
    (16, 64, 16, 64, 3, 2, True, 0.05),
]


def run_layer(case, device, steps: int = 3, seed: int = 5, sync_free: bool | None = None):
    """The layer of ``case`` trained ``steps`` sign steps on ``device`` from the same start
    and batches whatever the device (drawn on the CPU). Returns (per step: output, input
    gradient, signs, n_predicted; then the master weights and the scale maxima), on the CPU.
    ``sync_free``: the layer's ``PSGConv2d.sync_free`` setting (``psg.set_sync_free``)."""
    n, ci, h, co, k, stride, unsigned, beta = case
    torch.manual_seed(seed)
    layer = PSGConv2d(ci, co, k, stride, beta=beta, x_unsigned=unsigned).train()
    set_sync_free(layer, sync_free)
    layer.to(device)
    per_step = []
    for s in range(steps):
        g = torch.Generator().manual_seed(1000 + s)
        x = torch.randn(n, ci, h, h, generator=g)
        x = (x.relu() if unsigned else x).to(device).requires_grad_(True)
        y = layer(x)
        gy = torch.randn(y.shape, generator=g).to(device) * 1e-3
        layer.weight.grad = None
        y.backward(gy)
        per_step.append((y.detach().cpu(), x.grad.cpu(), layer.weight.grad.cpu(), layer.n_predicted))
        layer.sign_step(lr=0.01, weight_decay=5e-4)
    state = [layer.w_master.cpu(), *(b.cpu() for b in (layer.x_max, layer.y_max, layer.gx_max))]
    return per_step, state


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b) or (a.isnan() & b.isnan()).all())


def differences(case, devices=("cpu", "cuda"), steps: int = 3, sync_free=(None, None)) -> list[str]:
    """What differs between the two runs for ``case`` (empty: bit-identical): on the two
    ``devices``, with the two ``sync_free`` settings."""
    (sa, wa), (sb, wb) = (run_layer(case, d, steps, sync_free=sf) for d, sf in zip(devices, sync_free))
    out = []
    for i, (a, b) in enumerate(zip(sa, sb)):
        for what, u, v in zip(("output", "input gradient", "signs"), a[:3], b[:3]):
            if not _same(u, v):
                out.append(f"step {i}: {what} ({int((u != v).sum())} of {u.numel()} differ)")
        if a[3] != b[3]:
            out.append(f"step {i}: n_predicted {a[3]} vs {b[3]}")
    for what, u, v in zip(("master weights", "x_max", "y_max", "gx_max"), wa, wb):
        if not _same(u, v):
            out.append(f"after {steps} steps: {what}")
    return out

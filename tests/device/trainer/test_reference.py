"""The device trainer against an independent float64 numpy computation of the same network.

The reference below shares no code with e2train.device: plain float64 convolutions (direct
sums over the kernel window), BN in training mode, option-A shortcuts, pooling, FC and
softmax cross-entropy. From the same weights and batches, the device's fixed-point forward
(int8 activations and weights through the kernels) must give nearly the same loss at each of
the first steps, and its gradients of the float parameters (quantised 16-bit backward through
the kernels) must point the same way as the reference's finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.device.nn_layers import ArmTally
from e2train.device.nn_tally import KernelTally
from e2train.device.trainer import Trainer


def conv64(x, w, stride):
    n, c, h, wd = x.shape
    co, ci, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    y = np.zeros((n, co, ho, wo))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
            y += np.tensordot(patch, w[:, :, i, j], axes=([1], [1])).transpose(0, 3, 1, 2)
    return y


def bn64(x, gamma, beta):
    m = x.mean(axis=(0, 2, 3), keepdims=True)
    v = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]


def ref_loss(model, x, y, fp=None):
    """float64 loss of the device model's current weights (fp: float-parameter overrides)."""
    P = {k: v.astype(np.float64) for k, v in model.float_params().items()}
    if fp:
        P.update(fp)
    a = np.maximum(bn64(conv64(x.astype(np.float64), model.stem.weights_float(), 1),
                        P["stem.bn.gamma"], P["stem.bn.beta"]), 0)
    for b in model.blocks:
        s = a[:, :, ::b.stride, ::b.stride]
        if b.c_out != b.c_in:
            lo, hi = (b.c_out - b.c_in) // 2, b.c_out - b.c_in - (b.c_out - b.c_in) // 2
            z = lambda c: np.zeros((s.shape[0], c) + s.shape[2:])   # noqa: E731
            s = np.concatenate([z(lo), s, z(hi)], axis=1)
        i = b.index
        r = np.maximum(bn64(conv64(a, b.conv1.weights_float(), b.stride),
                            P[f"block{i}.bn1.gamma"], P[f"block{i}.bn1.beta"]), 0)
        z = bn64(conv64(r, b.conv2.weights_float(), 1), P[f"block{i}.bn2.gamma"], P[f"block{i}.bn2.beta"])
        a = np.maximum(z + s, 0)
    logits = a.mean(axis=(2, 3)) @ P["fc.weight"].T + P["fc.bias"]
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.fixture(scope="module")
def setup(digits):
    cfg = dict(model="resnet8", width=8, epochs=1, smd=False, slu=False, precision="psg", augment_shift=0,
               progress_every=0, batch_size=48)
    return Trainer(cfg, digits, golden), digits


def test_loss_of_first_steps_matches_float64(setup):
    tr, (x_tr, y_tr, _, _) = setup
    losses = []
    for t in range(4):
        xb, yb = x_tr[t * 48:(t + 1) * 48], y_tr[t * 48:(t + 1) * 48]
        ref = ref_loss(tr.model, xb, yb)           # same weights, before the step
        r = tr.train_step(xb, yb, t)               # device forward (its loss) + update
        losses.append((r["loss"], ref))
    for dev, ref in losses:
        assert abs(dev - ref) < 0.03 * ref, losses
    # and the steps did change the weights (the comparison is not of a frozen network)
    assert losses[0][1] != losses[-1][1]


def test_float_param_gradients_match_finite_differences(setup):
    tr, (x_tr, y_tr, _, _) = setup
    m = tr.model
    xb, yb = x_tr[200:248], y_tr[200:248]
    kt, arm = KernelTally(), ArmTally()
    logits, cache, _ = m.forward(xb, True, golden, kt, arm)
    from e2train.device.nn_layers import softmax_cross_entropy
    _, g = softmax_cross_entropy(logits, yb, arm)
    zero = {c.name: 0 for c in m.convs()}          # lr 0: the kernels leave W unchanged
    w_before = [c.w_master.copy() for c in m.convs()]
    grads, _ = m.backward(g, cache, golden, kt, arm, lr_q=zero, wd_q=zero, beta_q=0)
    assert all((c.w_master == w).all() for c, w in zip(m.convs(), w_before))
    P = {k: v.astype(np.float64) for k, v in m.float_params().items()}
    # quantisation noise (uint8/int8 forward, int16 backward) grows with the distance from
    # the loss; a wrong term or sign would give a cosine far below these bounds. Each conv's
    # g_x sits under its exact worst-case bound (about 11 of int16's 15 bits used), so the
    # stem, six convs from the loss, gets the widest magnitude band
    bounds = {"fc.weight": (0.98, 0.9), "block2.bn2.gamma": (0.95, 0.8),
              "block1.bn1.gamma": (0.9, 0.7), "stem.bn.beta": (0.9, 0.6)}
    for name, (min_cos, min_ratio) in bounds.items():
        num = np.zeros_like(P[name])
        flat = num.reshape(-1)
        for j in range(min(flat.size, 16)):
            eps = 1e-4
            for sgn in (1, -1):
                q = P[name].copy().reshape(-1)
                q[j] += sgn * eps
                flat[j] += sgn * ref_loss(m, xb, yb, {name: q.reshape(P[name].shape)}) / (2 * eps)
        k = min(flat.size, 16)
        dev = grads[name].reshape(-1)[:k].astype(np.float64)
        ref = flat[:k]
        cos = dev @ ref / (np.linalg.norm(dev) * np.linalg.norm(ref))
        assert cos > min_cos, (name, cos)
        assert min_ratio < np.linalg.norm(dev) / np.linalg.norm(ref) < 1 / min_ratio, name

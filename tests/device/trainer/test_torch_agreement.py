"""The device trainer and the torch reference (e2train.torch) agree on the loss of the first
steps from the same weights, scale state and batches.

Before each step the device model's whole state (int32 master weights, scale maxima, BN
parameters and statistics, FC) is loaded into ``e2train.torch.models.ResNetCifar`` with the
PSG convolutions, which implement the same fixed-point contract for the convolutions; both then
run the training-mode forward on the same batch. The device runs BN, ReLU and the residual add
in the fabric's block operations (BN folded into per-channel integer coefficients, uint8 codes
between layers) where the torch model runs them in float: the losses agree within that
rounding, not to float32 precision.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from e2train.core import golden
from e2train.device.trainer import Trainer

torch = pytest.importorskip("torch")


def _load_into_torch(model, tm):
    convs = {"stem": tm.conv1}
    bns = {"stem.bn": tm.bn1}
    for b, tb in zip(model.blocks, tm.blocks):
        convs[f"block{b.index}.conv1"], convs[f"block{b.index}.conv2"] = tb.conv1, tb.conv2
        bns[f"block{b.index}.bn1"], bns[f"block{b.index}.bn2"] = tb.bn1, tb.bn2
    # a conv's input scale is its producer's: the network input's, or the BN output before it
    x_max = {"stem": model.in_max}
    prev = model.stem_bn
    for b in model.blocks:
        x_max[f"block{b.index}.conv1"], x_max[f"block{b.index}.conv2"] = prev.out_max, b.bn1.out_max
        prev = b.bn2
    for c in model.convs():
        t = convs[c.name]
        t.w_master.copy_(torch.from_numpy(c.w_master))
        t.frac_bits.fill_(c.frac_bits)
        for k, v in (("x_max", x_max[c.name]), ("y_max", c.y_max), ("gx_max", None)):
            getattr(t, k).fill_(math.nan if v is None else v)
        t._rederive()
    for name, bn in model.bns().items():
        t = bns[name]
        t.weight.data.copy_(torch.from_numpy(bn.gamma))
        t.bias.data.copy_(torch.from_numpy(bn.beta))
        t.running_mean.copy_(torch.from_numpy(bn.running_mean))
        t.running_var.copy_(torch.from_numpy(bn.running_var))
    tm.fc.weight.data.copy_(torch.from_numpy(model.fc.weight))
    tm.fc.bias.data.copy_(torch.from_numpy(model.fc.bias))


@pytest.mark.parametrize("act_scale", ["batch_max", "mean_sample_max"])
def test_first_steps_agree_with_the_torch_reference(digits, act_scale):
    from e2train.torch.models import ResNetCifar
    from e2train.torch.psg import set_act_scale
    x_tr, y_tr, _, _ = digits
    cfg = dict(model="resnet8", width=8, epochs=1, smd=False, slu=False, precision="psg", augment_shift=0,
               progress_every=0, batch_size=48, conv_lr=0.01, act_scale=act_scale)
    tr = Trainer(cfg, (x_tr, y_tr), golden)
    tm = ResNetCifar(8, 1, 10, precision="psg", beta=0.05, width=8).train()
    assert set_act_scale(tm, act_scale) == len(tr.model.convs())
    pairs = []
    for t in range(4):
        xb, yb = x_tr[t * 48:(t + 1) * 48], y_tr[t * 48:(t + 1) * 48]
        _load_into_torch(tr.model, tm)
        with torch.no_grad():
            ref = float(torch.nn.functional.cross_entropy(tm(torch.from_numpy(xb)), torch.from_numpy(yb)))
        dev = tr.train_step(xb, yb, t)["loss"]
        pairs.append((dev, ref))
    # same conv contract and weights; BN on integer coefficients and requantised codes between
    # layers on the device, float BN in torch
    print("device vs torch loss:", pairs)
    for dev, ref in pairs:
        assert abs(dev - ref) < 0.02 * ref, pairs
    assert pairs[0][0] != pairs[-1][0]               # the weights did move between steps
    # the policy is the one asked for: each layer's running max follows its statistic
    xb = x_tr[4 * 48:5 * 48]
    before = tr.model.in_max
    tr.train_step(xb, y_tr[4 * 48:5 * 48], 4)
    per_sample = np.abs(xb).reshape(48, -1).max(1)
    stat = per_sample.max() if act_scale == "batch_max" else math.fsum(per_sample.astype(np.float64)) / 48
    assert tr.model.in_max == pytest.approx(0.9 * before + 0.1 * stat, rel=1e-12)

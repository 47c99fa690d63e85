"""The trainer runs each block on the fabric's block operations: codes between layers, the ARM
left with per-channel folds, the head, the loss, the optimiser and the gates."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.core.block_ops import Shortcut, conv_fwd_stats
from e2train.core.fixedpoint import Dyadic, dequantize
from e2train.device.nn_block import BatchNorm, Codes
from e2train.device.nn_layers import OPS_PER_ELEMENT, ArmTally, softmax_cross_entropy
from e2train.device.nn_tally import KernelTally
from e2train.device.trainer import Trainer

TINY = dict(model="resnet8", width=4, batch_size=32, augment_shift=1, progress_every=0, conv_lr=0.01, smd=False)


def _forced_gates(gatenet, masks):
    """Gates that run the real cell but take their decisions from ``masks[block slot]``."""
    fwd = gatenet.forward

    def forward(i, e, tally, gate_rng=None):
        p, _ = fwd(i, e, tally, gate_rng)
        return p, masks[i].copy()
    return forward


def test_a_step_leaves_the_arm_only_per_channel_folds_head_loss_optimiser(small_digits):
    """The ARM's ops of a training step, by kind, are exactly: per channel the BN folds; the
    network input's and the loss gradient's quantisation; the FC head, loss and SGD; and per
    conv weight the int8 copy re-derived after the update with its backward gain's sums (per
    input channel once a task), the gain's max where an input gradient reads it; the forward
    gain only where a layer calibrates."""
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, slu=False), (x_tr, y_tr), golden)
    m = tr.model
    xb, yb = x_tr[:32], y_tr[:32]
    tr.train_step(xb, yb, 0)                       # the first step calibrates the scales
    before = dict(tr.arm.by_kind)
    tr.train_step(xb, yb, 1)
    got = {k: v - before.get(k, 0) for k, v in tr.arm.by_kind.items() if v - before.get(k, 0)}
    n, c_last = 32, m.fc.weight.shape[1]
    hw_last = 2 * 2                                # 8x8 digits after two stride-2 stages
    bn_ch = sum(bn.gamma.size for bn in m.bns().values())
    conv_co = sum(c.co for c in m.convs())
    n_params = sum(v.size for v in m.float_params().values())
    o = OPS_PER_ELEMENT
    want = {
        "maxabs": o["maxabs"] * (xb.size + n * c_last),       # network input, loss gradient
        "quantize": o["quantize"] * (xb.size + n * c_last),
        "pool": o["pool"] * n * c_last * (1 + hw_last),       # the loss gradient / (h*w), spread over the last output
        "pooled": o["pooled"] * n * c_last,                   # the classifier's input
        "bn_stats": o["bn_stats"] * bn_ch,
        "bn_fold_fwd": o["bn_fold_fwd"] * bn_ch,
        "bn_fold_bwd": o["bn_fold_bwd"] * bn_ch,
        "y_range": o["y_range"] * conv_co,
        "scale_stat": o["scale_stat"] * n * len(m.bns()),     # bn_act's per-sample maxima
        "fc": 2 * 3 * n * m.fc.weight.size,                   # forward + two backward products, 2 ops a MAC
        "fc_bias": o["fc_bias"] * 2 * n * m.fc.bias.size,      # added forward, summed backward
        "softmax_ce": o["softmax_ce"] * n * m.fc.weight.shape[0],
        "softmax_ce_sample": o["softmax_ce_sample"] * n,
        "sgd": o["sgd"] * n_params,
        "weight_codes": o["weight_codes"] * sum(c.w_master.size for c in m.convs()),
        # no weight_gain: the training forward's weight load formed the sums on the fabric
        "gain_max": sum(c.ci for c in m.convs() if c is not m.stem),   # their max, where an input gradient reads it
    }
    assert got == want
    # nothing of a block's per-element work: at most the input image's and head's elements
    per_element = got["maxabs"] + got["quantize"] + got["pool"]
    assert per_element < 8 * xb.size + 8 * n * c_last * hw_last     # maxabs 2 + quantize 5 an element


def test_gated_blocks_unlisted_samples_take_the_shortcut(small_digits, spy):
    """Within the op: the unlisted samples' output is the block input requantised (half a
    code), and no conv or block op saw them."""
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, slu=True), (x_tr, y_tr), spy)
    m = tr.model
    on = np.zeros(32, bool)
    on[::3] = True
    m.gates.forward = _forced_gates(m.gates, {i: on for i in range(len(m.blocks))})
    logits, cache, st = m.forward(x_tr[:32], True, spy, KernelTally(), ArmTally())
    checked = 0
    for blk, bc in cache["blocks"]:
        if blk.gate is None:
            continue
        x, idx, k2 = bc[0], bc[1], bc[5]
        assert set(idx.tolist()) == set(np.nonzero(on)[0].tolist())
        off = np.nonzero(~on)[0]
        sc = blk.shortcut.gather(x.q, blk.c_out, k2.o.shape[2:])[off] * x.scale.value
        err = np.abs(k2.o[off].astype(np.float64) * k2.s_o.value - np.minimum(sc, 255 * k2.s_o.value))
        assert err.max() <= 0.5 * k2.s_o.value + 1e-12
        checked += 1
    assert checked >= 1 and st.executed.count(int(on.sum())) == checked


def test_a_block_run_by_nobody_makes_no_call(small_digits, spy):
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, slu=True), (x_tr, y_tr), spy)
    m = tr.model
    gated = [b for b in m.blocks if b.gate is not None]
    assert gated and all(b.shortcut == Shortcut() for b in gated)
    masks = {b.gate: np.ones(32, bool) for b in gated}
    m.gates.forward = _forced_gates(m.gates, masks)
    m.forward(x_tr[:32], True, spy, KernelTally(), ArmTally())     # calibrates every scale
    spy.calls.clear()
    masks[gated[0].gate][:] = False
    _, cache, _ = m.forward(x_tr[:32], True, spy, KernelTally(), ArmTally())
    ran = len(m.blocks) - 1
    kinds = [c[0] for c in spy.calls]
    assert kinds.count("conv_fwd") == 1 + 2 * ran and kinds.count("bn_act") == 1 + 2 * ran
    assert cache["blocks"][gated[0].index][1] is None
    _, g = softmax_cross_entropy(np.zeros((32, 10), np.float32), y_tr[:32], ArmTally())
    spy.calls.clear()
    zero = {c.name: 0 for c in m.convs()}
    m.backward(g, cache, spy, KernelTally(), ArmTally(), lr_q=zero, wd_q=zero, beta_q=0)
    kinds = [c[0] for c in spy.calls]
    for k in ("bn_bwd_reduce", "bn_bwd_apply", "conv_bwd_weight_psg"):
        assert kinds.count(k) == 1 + 2 * ran, k


@pytest.mark.parametrize("residual", [False, True])
def test_fabric_bn_agrees_with_float_bn_within_a_code(residual):
    """One BN layer: bn_act's codes against float BN (+ shortcut) + ReLU on the same y."""
    rng = np.random.default_rng(4)
    n, c, h, w = 16, 6, 5, 5
    y = rng.integers(-100, 101, (n, c, h, w)).astype(np.int8)
    s_y = Dyadic.from_float(0.03)
    bn = BatchNorm(c, "batch_max")
    bn.gamma[:] = rng.uniform(0.5, 1.5, c)
    bn.beta[:] = rng.normal(0, 0.3, c)
    r = None
    if residual:
        rq = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8)
        r = Codes(rq, Dyadic.from_float(0.01), np.zeros((n, c), np.int64))
    sums = conv_fwd_stats(y)
    for step in range(3):                         # calibration, then the running scale
        out, cache = bn.forward(y, s_y, sums, None, True, golden, KernelTally(), ArmTally(), r=r)
    yr = dequantize(y, s_y).astype(np.float64)
    mean, var = yr.mean(axis=(0, 2, 3)), yr.var(axis=(0, 2, 3))
    ref = (yr - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + bn.EPS)
    ref = ref * bn.gamma[None, :, None, None] + bn.beta[None, :, None, None]
    if residual:
        ref = ref + r.q.astype(np.float64) * r.scale.value
    want = np.clip(np.maximum(ref, 0) / out.scale.value, 0, 255)
    assert np.abs(out.q.astype(np.float64) - want).max() <= 1.0
    assert np.array_equal(out.pooled, out.q.astype(np.int64).sum(axis=(2, 3)))
    np.testing.assert_allclose(cache.mean, mean, rtol=1e-12, atol=1e-15)


def test_a_backend_without_the_block_ops_is_refused(small_digits):
    class ConvOnly:
        conv_fwd = staticmethod(golden.conv_fwd)
        conv_bwd_data = staticmethod(golden.conv_bwd_data)
        conv_bwd_weight_psg = staticmethod(golden.conv_bwd_weight_psg)
    x_tr, y_tr, _, _ = small_digits
    with pytest.raises(TypeError, match=r"lacks bn_act\(\), bn_bwd_reduce\(\), bn_bwd_apply\(\)"):
        Trainer(dict(TINY, epochs=1), (x_tr, y_tr), ConvOnly())


def test_block_calls_are_priced_as_fabric_time(small_digits):
    from e2train.core.call_price import block_work
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, slu=False), (x_tr, y_tr), golden)
    kt = KernelTally()
    tr.model.forward(x_tr[:32], True, golden, kt, ArmTally())
    stem = block_work("bn_act", (32, 4, 8, 8), 32).seconds
    assert kt.calls["bn_act"] == 2 * (1 + 2 * len(tr.model.blocks))     # each calibrates once
    assert kt.work.seconds > 2 * stem > 0

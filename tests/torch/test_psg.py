"""The torch PSG convolution against the numpy golden models, bit for bit."""
import math
import os

import numpy as np
import pytest
import torch

from e2train.core import fixedpoint as fxp
from e2train.core import golden
from e2train.core.shapes import ConvShape
from e2train.torch import fused, psg
from e2train.torch.psg import PSGConv2d, psg_decide_t, quantize_t, requantize_t


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("acc_bits", [30, 40])     # float64 fused pass / int64 fallback
def test_quantize_and_requantize_match_core(seed, acc_bits):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(500) * 3
    x[:50] = np.round(x[:50] * 64) / 64                          # many exact halves: ties
    s = fxp.scale_for(float(np.abs(x).max()) * 0.8, fxp.INT16)   # some values saturate
    assert np.array_equal(quantize_t(torch.from_numpy(x), s, fxp.INT16).numpy(),
                          fxp.quantize(x, s, fxp.INT16).astype(np.float64))
    acc = rng.integers(-(1 << acc_bits), 1 << acc_bits, 300)
    m = fxp.Dyadic.from_float(rng.uniform(1.2, 1.8) * 2.0 ** (15 - acc_bits))   # 17-44% of codes saturate
    want = fxp.requantize(acc, m, fxp.INT16)
    assert np.array_equal(requantize_t(torch.from_numpy(acc).double(), m, fxp.INT16).numpy(),
                          want.astype(np.float64))
    # the same accumulator handed over as limbs acc = 64*hi + lo (the exact convolutions'
    # parts), dequantised in the same pass: codes * scale rounded once to float32
    from e2train.torch.psg import _requantize_parts
    hi = np.floor_divide(acc + 32, 64)
    lo = acc - 64 * hi
    parts = ((torch.from_numpy(hi).double(), 64), (torch.from_numpy(lo).float(), 1))
    out = torch.empty(acc.shape, dtype=torch.float32)
    scale = fxp.Dyadic.from_float(3e-5)
    top = _requantize_parts(parts, m, fxp.INT16, out, dequant=scale.value)
    assert top == int(np.abs(want.astype(np.int64)).max())
    assert 0 < np.mean(np.abs(want.astype(np.int64)) >= 2 ** 15 - 1) < 0.5
    assert np.array_equal(out.numpy(), fxp.dequantize(want, scale).astype(np.float32))


CASES = [  # (n, ci, h, co, k, stride, unsigned, beta)
    (4, 3, 8, 5, 3, 1, False, 0.05),
    (3, 6, 9, 4, 3, 2, True, 0.05),
    (5, 8, 6, 8, 1, 1, True, 0.2),
    (2, 4, 7, 6, 3, 1, True, 0.0),       # predictor off: every sign exact
    (8, 3, 32, 3, 3, 1, True, 0.05),     # weight-gradient sums far beyond 2**24: sample groups
]


@pytest.mark.parametrize("case", CASES)
def test_psg_layer_matches_golden(case):
    n, ci, h, co, k, stride, unsigned, beta = case
    torch.manual_seed(hash(case) % 1000)
    layer = PSGConv2d(ci, co, k, stride, beta=beta, x_unsigned=unsigned).train()
    x = torch.randn(n, ci, h, h, dtype=torch.float32)
    if unsigned:
        x = x.relu()
    x.requires_grad_(True)
    y = layer(x)
    gy = torch.randn_like(y)
    y.backward(gy)

    # --- forward, recomputed with the core functions --------------------------------
    fmt = fxp.UINT8 if unsigned else fxp.INT8
    s_x = fxp.scale_for(float(layer.x_max), fmt)        # first call: running max == batch max
    assert float(layer.x_max) == float(x.detach().abs().max())
    xq = fxp.quantize(x.detach().numpy(), s_x, fmt)
    wq, s_w = fxp.weight_codes(layer.w_master.numpy(), int(layer.frac_bits))
    acc_scale = s_x.value * s_w.value
    # the output scale the layer used (calibrated on this first call)
    yq_torch = y.detach().double().numpy()
    shape = ConvShape.of(xq, wq, stride, k // 2)
    acc = golden.conv_fwd_acc(xq, wq, shape)
    # the layer's y_max after the call is an EMA of the calibrated value; recompute the scale used
    peak = int(np.abs(xq.astype(np.int64)).max())
    bound = acc_scale * peak * float(np.abs(wq.astype(np.int64)).sum(axis=(1, 2, 3)).max())
    s_cal = fxp.scale_for(bound, fxp.INT8)
    ycal = fxp.requantize(acc, fxp.requant_multiplier(acc_scale, s_cal), fxp.INT8)
    s_y = fxp.scale_for(float(np.abs(ycal.astype(np.int64)).max()) * s_cal.value, fxp.INT8)
    y_gold = golden.conv_fwd(xq, wq, None, fxp.requant_multiplier(acc_scale, s_y), stride=stride, pad=k // 2)
    assert np.array_equal(yq_torch, (y_gold.astype(np.float64) * s_y.value).astype(np.float32).astype(np.float64))

    # --- weight-gradient sign: the golden PSG rule --------------------------------
    s_g = fxp.scale_for(float(gy.abs().max()), fxp.INT16)
    gq = fxp.quantize(gy.numpy(), s_g, fxp.INT16)
    g_msb, g_exact = golden.wgrad_terms(xq, gq, shape, np.arange(n))
    if h == 32:      # the case is meant to need more than one float32 sum: check it does
        assert int(np.abs(g_exact).max()) > 1 << 24
    beta_q = fxp.beta_to_fixed(beta) if beta else 0
    sign, predicted, _ = golden.psg_decide(g_msb, g_exact, beta_q)
    assert np.array_equal(layer.weight.grad.numpy().astype(np.int8), sign)
    assert layer.n_predicted == int(predicted.sum())
    assert layer.n_decided == sign.size
    if beta == 0:
        assert layer.n_predicted == 0

    # --- input gradient: the int16 contract (first call: exact worst-case bound) ----
    acc_g = s_g.value * s_w.value
    bound_g = acc_g * int(np.abs(gq.astype(np.int64)).max()) * float(np.abs(wq.astype(np.int64)).sum(axis=(0, 2, 3)).max())
    s_gx = fxp.scale_for(bound_g, fxp.INT16)
    gx_gold = golden.conv_bwd_data(gq, wq, fxp.requant_multiplier(acc_g, s_gx), in_hw=(h, h), stride=stride, pad=k // 2)
    assert np.array_equal(x.grad.double().numpy(), (gx_gold.astype(np.float64) * s_gx.value).astype(np.float32).astype(np.float64))


def test_sign_step_is_the_device_update_rule():
    torch.manual_seed(0)
    layer = PSGConv2d(4, 4, 3, beta=0.05)
    w0 = layer.w_master.numpy().copy()
    sign = torch.randint(-1, 2, layer.weight.shape).float()
    layer.weight.grad = sign.clone()
    layer.sign_step(lr=1e-3, weight_decay=5e-4)
    f = int(layer.frac_bits)
    expect = golden.sign_update(w0, sign.numpy().astype(np.int8), fxp.lr_to_fixed(1e-3, f), fxp.decay_to_fixed(1e-3, 5e-4))
    assert np.array_equal(layer.w_master.numpy(), expect)
    assert not np.array_equal(expect, w0)
    # the float view and the int8 copy follow the masters
    assert torch.equal(layer.weight, torch.from_numpy(np.ldexp(expect.astype(np.float64), -f).astype(np.float32)))   # rounded once
    codes, _ = fxp.weight_codes(expect, f)
    assert np.array_equal(layer.w_codes.numpy(), codes.astype(np.float64))


def test_state_dict_round_trip_restores_masters_and_scales():
    torch.manual_seed(1)
    a = PSGConv2d(3, 4, 3, beta=0.05, x_unsigned=False)
    a(torch.randn(2, 3, 6, 6)).sum().backward()
    b = PSGConv2d(3, 4, 3, beta=0.05, x_unsigned=False)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.w_master, b.w_master)
    assert torch.equal(a.w_codes, b.w_codes)
    assert math.isclose(float(a.x_max), float(b.x_max))


def test_unsupported_shapes_are_rejected():
    with pytest.raises(ValueError, match="kernel size"):
        PSGConv2d(3, 4, 5)
    with pytest.raises(ValueError, match="stride"):
        PSGConv2d(3, 4, 3, stride=3)


@pytest.mark.parametrize("limit", [float(1 << 24), float(1 << 16), 1.0])
@pytest.mark.parametrize("groups", [1, 4])
def test_exact_convolutions_on_every_path(monkeypatch, limit, groups):
    """float32 fast path, limb/chunk splits and the float64 fallback all give the golden sums."""
    monkeypatch.setattr(psg, "F32_EXACT", limit)
    rng = np.random.default_rng(int(limit) % 97 + groups)
    n, ci, co, h = 6, 8, 8, 6
    x = rng.integers(0, 256, (n, ci, h, h)).astype(np.uint8)
    w = rng.integers(-128, 128, (co, ci // groups, 3, 3)).astype(np.int8)
    g = rng.integers(-32768, 32768, (n, co, h, h)).astype(np.int16)
    xt, wt, gt = (torch.from_numpy(a.astype(np.float64)) for a in (x, w, g))
    acc = psg.exact_conv2d(xt, wt, 1, 1, groups)
    g_msb, g_exact = psg.exact_wgrad(xt, True, gt, tuple(w.shape), 1, 1, groups, with_msb=True)
    gx = psg.exact_conv2d_input(xt.shape, wt, gt, 1, 1, groups)
    # reference: float64 convolutions are exact for these sizes; and golden for groups == 1
    ref = torch.nn.functional.conv2d(xt, wt, None, 1, 1, 1, groups)
    assert torch.equal(acc, ref)
    assert torch.equal(gx, torch.nn.grad.conv2d_input(xt.shape, wt, gt, 1, 1, 1, groups))
    if groups == 1:
        shape = ConvShape.of(x, w, 1, 1)
        assert np.array_equal(acc.numpy().astype(np.int64), golden.conv_fwd_acc(x, w, shape))
        gm, ge = golden.wgrad_terms(x, g, shape, np.arange(n))
        assert np.array_equal(g_msb.numpy().astype(np.int64), gm)
        assert np.array_equal(g_exact.numpy().astype(np.int64), ge)


@pytest.mark.parametrize("unsigned,with_msb", [(True, True), (False, True), (True, False)])
def test_weight_gradient_sums_beyond_float32_are_exact(unsigned, with_msb):
    """Full-scale codes on a 32x32 image: every product's batch sum exceeds 2**24, so the
    float32 path must fold the batch into sample groups; the result is still golden."""
    rng = np.random.default_rng(7 + unsigned + 2 * with_msb)
    n, ci, co, h = 8, 2, 3, 32
    fmt = fxp.UINT8 if unsigned else fxp.INT8
    x = rng.integers(fmt.hi // 2, fmt.hi + 1, (n, ci, h, h)).astype(fmt.dtype)     # large, same sign
    g = rng.integers(16000, 32768, (n, co, h, h)).astype(np.int16)
    g[:, 1] *= -1                               # one channel negative
    g[0, 0, 0, 0] = 32767                       # the saturated top code: g_l = 63
    xt, gt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(g.astype(np.float32))
    g_msb, g_exact = psg.exact_wgrad(xt, unsigned, gt, (co, ci, 3, 3), 1, 1, 1, with_msb=with_msb)
    shape = ConvShape(n, ci, h, h, co, 3, 1, 1)
    gm, ge = golden.wgrad_terms(x, g, shape, np.arange(n))
    assert np.abs(ge).max() > 1 << 30 and np.abs(gm).max() > 1 << 24
    assert np.array_equal(g_exact.numpy().astype(np.int64), ge)
    if with_msb:
        assert np.array_equal(g_msb.numpy().astype(np.int64), gm)
    else:
        assert g_msb is None


def test_sample_groups_are_the_fewest_the_bound_allows():
    bsum = torch.full((8, 1, 2), 1000.0, dtype=torch.float64)
    peak = torch.tensor([1000.0], dtype=torch.float64)             # 1e6 per sample and channel
    assert psg._sample_groups(bsum, peak) == 1                      # 8e6 < 2**24
    bsum[3, 0, 1] = 10000.0                                         # batch 1.7e7 > 2**24
    assert psg._sample_groups(bsum, peak) == 2                      # {1,3,5,7}: 1.3e7
    bsum[3, 0, 1] = 20000.0                                         # 2e7: not even alone
    assert psg._sample_groups(bsum, peak) is None


def _psg_step(layer, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(4, layer.in_channels, 6, 6).relu().requires_grad_(True)
    y = layer(x)
    y.backward(torch.randn_like(y))
    return layer.weight.grad.clone()


def test_decision_hook_defaults_to_the_psg_rule_and_is_used():
    torch.manual_seed(3)
    a = PSGConv2d(4, 5, 3, beta=0.05)
    assert a.decide is psg_decide_t and PSGConv2d.decide is psg_decide_t
    b = PSGConv2d(4, 5, 3, beta=0.05)
    b.load_state_dict(a.state_dict())
    calls = []

    def flipped(g_msb, g_exact, beta_q):          # a rule no layer would pick by itself
        calls.append((g_msb.clone(), g_exact.clone(), beta_q))
        sign = -torch.sign(g_exact.round().to(torch.int64))
        return sign, torch.zeros(sign.shape, dtype=torch.bool), 0

    b.decide = flipped
    ga, gb = _psg_step(a), _psg_step(b)
    assert len(calls) == 1 and calls[0][2] == a.beta_q
    g_msb, g_exact, _ = calls[0]
    assert torch.equal(gb, -torch.sign(g_exact).float())            # b's sign came from the hook
    assert b.n_predicted == 0 and b.n_decided == gb.numel()
    # a kept the default rule: its sign is psg_decide_t's on the same sums
    sign, predicted, _ = psg_decide_t(g_msb, g_exact, a.beta_q)
    assert torch.equal(ga, sign.float()) and a.n_predicted == int(predicted.sum()) > 0
    # the per-layer hook did not leak into other layers
    assert PSGConv2d(4, 5, 3).decide is psg_decide_t


def test_random_predictor_control_uses_the_hook():
    from e2train.bench.psg_control import RandomPredictorChoice
    from e2train.torch.models import build_model

    class Ctx:
        model = build_model("resnet8", 1, 10, precision="psg")
    pol = RandomPredictorChoice(0.5, seed=1)
    pol.on_train_start(Ctx)
    layers = [m for m in Ctx.model.modules() if isinstance(m, PSGConv2d)]
    assert all(m.decide == pol._decide for m in layers)
    assert psg.psg_decide_t is psg_decide_t and PSGConv2d.decide is psg_decide_t   # nothing global changed
    x = torch.randn(8, 1, 8, 8)
    Ctx.model(x).sum().backward()
    frac = sum(m.n_predicted for m in layers) / sum(m.n_decided for m in layers)
    assert 0.4 < frac < 0.6                                         # the random choice, not the predictor's


# --- the fast float32 emulation (set_exact(model, False)) -------------------------------

def _sum_bounds(xq, wq, gq, stride, padding):
    """Largest sum of |operand products| that one element of each of the three sums sees
    (forward, input gradient, weight gradient), in float64: every partial sum of a float32
    convolution is at most that, in any order."""
    import torch.nn.functional as F
    x, w, g = xq.double().abs(), wq.double().abs(), gq.double().abs()
    fwd = F.conv2d(x, w, None, stride, padding)
    bwd = torch.nn.grad.conv2d_input(x.shape, w, g, stride, padding)
    wgt = torch.nn.grad.conv2d_weight(x, w.shape, g, stride, padding)
    return fwd, bwd, wgt


def _run_pair(case, steps):
    """An exact and a fast copy of one layer through ``steps`` training steps on the same
    data; returns per-step records of (output, grad input, sign, predicted mask) per mode."""
    import copy
    n, ci, h, co, k, stride, unsigned, beta, outlier = case
    torch.manual_seed(sum(case[:6]))
    exact = PSGConv2d(ci, co, k, stride, beta=beta, x_unsigned=unsigned).train()
    fast = copy.deepcopy(exact)
    assert psg.set_exact(fast, False) == 1 and not fast.exact and exact.exact
    records = {True: [], False: []}
    for layer in (exact, fast):
        layer.masks = []

        def recording_decide(g_msb, g_exact, beta_q, _masks=layer.masks):   # the default rule, mask kept
            sign, predicted, amax = psg_decide_t(g_msb, g_exact, beta_q)
            _masks.append(predicted.clone())
            return sign, predicted, amax
        layer.decide = recording_decide
    for _ in range(steps):
        x = torch.randn(n, ci, h, h)
        gy_scale = torch.ones(n, co, (h - 1) // stride + 1, (h - 1) // stride + 1)
        if outlier:      # one large value per tensor: the other codes are small, so sums stay small
            x[0, 0, 0, 0] = 60.0
            gy_scale[0, 0, 0, 0] = 500.0
        x = x.relu() if unsigned else x
        gy = torch.randn_like(gy_scale) * gy_scale
        for layer in (exact, fast):
            xi = x.clone().requires_grad_(True)
            y = layer(xi)
            y.backward(gy)
            records[layer.exact].append((y.detach(), xi.grad, layer.weight.grad.clone(), layer.masks[-1]))
            layer.sign_step(0.01, 5e-4)
            layer.weight.grad = None
    return exact, fast, records


@pytest.mark.parametrize("case", [
    (2, 3, 8, 4, 3, 1, True, 0.05, True),
    (3, 4, 9, 3, 3, 2, False, 0.2, True),
    (2, 5, 6, 4, 1, 1, True, 0.0, True),
])
def test_fast_mode_is_bit_exact_where_sums_stay_below_2_24(case, monkeypatch):
    seen = []
    orig = psg.PSGConv2d._sign_grad

    def checked(self, xq, gq, g_exact=None):
        if not self.exact:
            bounds = _sum_bounds(xq, self.w_codes, gq, self.stride, self.padding)
            seen.append(max(float(b.max()) for b in bounds))
        return orig(self, xq, gq, g_exact)
    monkeypatch.setattr(psg.PSGConv2d, "_sign_grad", checked)
    exact, fast, rec = _run_pair(case, steps=3)
    # the premise: every sum of the fast steps is provably exact in float32
    assert len(seen) == 3 and max(seen) < 2 ** 24, seen
    for (y, gx, sign, mask), (fy, fgx, fsign, fmask) in zip(rec[True], rec[False]):
        assert torch.equal(y, fy) and torch.equal(gx, fgx)
        assert torch.equal(sign, fsign) and torch.equal(mask, fmask)
    assert torch.equal(exact.w_master, fast.w_master)
    assert (exact.n_predicted, exact.n_decided) == (fast.n_predicted, fast.n_decided)
    if case[7] > 0:
        assert exact.n_predicted > 0


def test_fast_sums_are_within_float32_rounding_of_the_exact_ones():
    """Full-range codes, sums far beyond 2**24: each fast sum differs from the exact integer
    by at most the float32 bound (terms * 2**-24 * sum |products|), and some do differ."""
    g = torch.Generator().manual_seed(5)
    n, ci, co, h = 8, 8, 8, 16
    xq = torch.randint(0, 256, (n, ci, h, h), generator=g).float()
    wq = torch.randint(-127, 128, (co, ci, 3, 3), generator=g).float()
    gq = torch.randint(-32767, 32768, (n, co, h, h), generator=g).float()
    fwd_b, bwd_b, wgt_b = _sum_bounds(xq, wq, gq, 1, 1)
    u = 2.0 ** -24
    fwd = psg.fast_conv2d_parts(xq, wq, 1, 1, 1)[0][0].double()
    assert torch.all((fwd - psg.exact_conv2d(xq, wq, 1, 1, 1)).abs() <= ci * 9 * u * fwd_b)
    bwd = psg.fast_conv2d_input_parts(xq.shape, wq, gq, 1, 1, 1)[0][0].double()
    assert torch.all((bwd - psg.exact_conv2d_input(xq.shape, wq, gq, 1, 1, 1)).abs() <= co * 9 * u * bwd_b)
    fm, fg = psg.fast_wgrad(xq, True, gq, wq.shape, 1, 1, 1)
    em, eg = psg.exact_wgrad(xq, True, gq, wq.shape, 1, 1, 1)
    # the same two sums from the one backward call the layer makes when it needs both
    bwd2, fg2 = psg.fast_grads(xq, wq, gq, 1, 1, 1)
    assert torch.all((bwd2.double() - psg.exact_conv2d_input(xq.shape, wq, gq, 1, 1, 1)).abs() <= co * 9 * u * bwd_b)
    assert torch.all((fg2 - eg).abs() <= n * h * h * u * wgt_b) and torch.equal(fg2, fg2.round())
    assert torch.equal(psg.fast_msb_wgrad(xq, True, gq, wq.shape, 1, 1, 1), fm)
    assert float(wgt_b.max()) > 2 ** 24
    assert torch.all((fg - eg).abs() <= n * h * h * u * wgt_b)
    assert torch.equal(fm, fm.round()) and torch.equal(fg, fg.round())   # integers for the decision rule
    assert bool((fg != eg).any())                   # the bound above is not vacuous here
    xh = psg.split_x_t(xq, True).double().abs()
    gh = psg.split_g_t(gq).double().abs()
    assert torch.all((fm - em).abs() <= n * h * h * u * torch.nn.grad.conv2d_weight(xh, wq.shape, gh, 1, 1))


def test_fast_mode_sign_disagreement_is_rare_on_a_large_layer():
    """Sums far beyond 2**24 (full-range codes): the signs may differ, only at near-ties."""
    exact, fast, rec = _run_pair((16, 16, 16, 16, 3, 1, True, 0.05, False), steps=2)
    differ = sum(int((a[2] != b[2]).sum()) for a, b in zip(rec[True], rec[False]))
    total = sum(a[2].numel() for a in rec[True])
    assert differ <= 0.01 * total, (differ, total)
    y, fy = rec[True][0][0], rec[False][0][0]
    assert (y != fy).float().mean() <= 0.01       # first step: same state, outputs nearly all equal


def test_work_meter_counts_the_same_work_in_both_modes():
    """The emulation mode must not change modelled energy: same MACs, widths and bytes."""
    import copy
    from e2train.torch.models import ResNetCifar
    from e2train.torch.work_meter import WorkMeter
    torch.manual_seed(0)
    exact = ResNetCifar(8, 1, 10, precision="psg").train()
    fast = copy.deepcopy(exact)
    assert psg.set_exact(fast, False) > 0
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    works = []
    for model in (exact, fast):
        meter = WorkMeter(model)
        meter.active = True
        torch.nn.functional.cross_entropy(model(x), y).backward()
        meter.collect_backward()
        works.append(meter.work)
        meter.close()
    layers = [[m for m in model.modules() if isinstance(m, PSGConv2d)] for model in (exact, fast)]
    # the premise: the same decisions (the meter prices the exact products of undecided weights)
    assert [m.n_predicted for m in layers[0]] == [m.n_predicted for m in layers[1]]
    assert works[0].macs == works[1].macs and works[0] == works[1]
    assert works[0].total_macs > 0


def test_fused_c_passes_equal_their_torch_functions_bit_for_bit():
    """The C loops (``e2train.torch.fused``) against the torch functions they compile: shapes
    that change between calls, tie-heavy values, every limb layout the exact convolutions
    use and, for the quantiser, NaN and infinities."""
    if not fused.available():
        pytest.skip(f"the C passes did not build here: {fused._state['error']}")
    g = torch.Generator().manual_seed(0)
    for i, shape in enumerate([(3, 4, 5, 5), (64, 16, 8, 8), (7, 1, 9, 3), (1, 1, 1, 1)]):
        x = torch.randn(shape, generator=g) * 40
        x.view(-1)[::3] = torch.round(x.view(-1)[::3] * 2) / 2       # exact .5 quotients below
        x.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])[:x.numel()]
        for lo, hi in ((-32768.0, 32767.0), (-128.0, 127.0), (0.0, 255.0)):
            for m, s in ((1, 1), (12345, 15), (32767, 28), (1 << 24, 3), (3, 140)):   # float and double forms
                got, want = torch.empty_like(x), torch.empty_like(x)
                fused.quantize_(x, m, s, lo, hi, got)
                fused.quantize_torch(x, m, s, lo, hi, want)
                assert torch.equal(got.nan_to_num(nan=-1e9), want.nan_to_num(nan=-1e9))
        codes = torch.randint(-2 ** 15, 2 ** 15, shape, generator=g).float()
        n = shape[0]
        for slots, batch_major in ((("h",), True), (("h", "l"), True), (("h", "l", "x"), False),
                                   (("x", "x"), False), (("h", "h", "l"), False)):
            size = psg._split_shape(codes, slots, batch_major)
            for consts in ((8.0, 1 / 16, 16.0, -math.inf, 15.0), (8.0, 1 / 16, 16.0, -math.inf, 7.0),
                           (32.0, 1 / 64, 64.0, -512.0, 511.0)):
                got, want = torch.full(size, -1e9), torch.full(size, -1e9)
                fused.split_(codes, *consts, got, slots, batch_major)
                fused.split_torch(codes, *consts, want, slots, batch_major)
                assert torch.equal(got, want) and not (got == -1e9).any()
        # the limbs recombine to the codes, and g_h is the golden split
        both = psg.split_g_t(codes, ("h", "l"))
        assert torch.equal(both[:n] * 64 + both[n:], codes)
        assert np.array_equal(both[:n].numpy(), fxp.msb_split_g(codes.numpy().astype(np.int16))[0])
        acc = torch.randint(-2 ** 30, 2 ** 30, shape, generator=g).double()
        lo = torch.randint(-63, 64, shape, generator=g).float()
        big = torch.randint(-2 ** 24, 2 ** 24, shape, generator=g).float()
        for p0, p1, v in ((acc, None, 3.1e-4), (acc, lo, 3.1e-4), (lo, None, 3.1e-4),
                          (big, None, 2.0 ** -20 * 777)):    # the last: the float loop (dyadic scales)
            a = (p0, 2.0 ** -20 * 12345, p1, 2.0 ** -20, 0.5, -32768.0, 32767.0, v)
            got, want = torch.empty(shape), torch.empty(shape)
            assert fused.requantize_(*a, got) == fused.requantize_torch(*a, want)
            assert torch.equal(got, want)


@pytest.mark.parametrize("use_c", [True, False], ids=["c", "torch"])
def test_split_equals_core_on_every_code_including_ties(use_c):
    """split_x_t / split_g_t (C loop and torch function) against core.fixedpoint on every
    uint8, int8 and int16 code: the ties x = 16k + 8 and g = 64k + 32 go away from zero
    (contract v2; v1's round half up fails here on every negative tie)."""
    if use_c and not fused.available():
        pytest.skip(f"the C passes did not build here: {fused._state['error']}")
    prev = fused.set_enabled(use_c)
    try:
        g = np.arange(-32768, 32768).astype(np.int16)
        got = psg.split_g_t(torch.from_numpy(g.astype(np.float32)).view(-1, 64), ("h", "l"))
        gh, gl = fxp.msb_split_g(g)
        assert np.array_equal(got[:1024].reshape(-1).numpy(), gh) and np.array_equal(got[1024:].reshape(-1).numpy(), gl)
        for codes, unsigned in ((np.arange(256).astype(np.uint8), True), (np.arange(-128, 128).astype(np.int8), False)):
            got = psg.split_x_t(torch.from_numpy(codes.astype(np.float32)).view(-1, 16), unsigned, ("h", "l"))
            xh, xl = fxp.msb_split_x(codes)
            assert np.array_equal(got[:16].reshape(-1).numpy(), xh) and np.array_equal(got[16:].reshape(-1).numpy(), xl)
        assert float(psg.split_g_t(torch.tensor([[-32.0]]))) == -1.0
    finally:
        fused.set_enabled(prev)


def test_fused_passes_run_as_torch_where_the_c_loops_do_not_apply():
    """Other dtypes and non-contiguous operands take the torch functions (same results);
    with the C passes turned off everything does, and the layer still matches."""
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64) * 30
    s = fxp.scale_for(float(x.abs().max()), fxp.INT8)
    assert np.array_equal(quantize_t(x, s, fxp.INT8).numpy(), fxp.quantize(x.numpy(), s, fxp.INT8))
    xt = x.float().transpose(2, 3)                        # not contiguous
    assert np.array_equal(quantize_t(xt, s, fxp.INT8).numpy(), fxp.quantize(xt.double().numpy(), s, fxp.INT8))
    prev = fused.set_enabled(False)
    try:
        assert not fused.available()
        test_psg_layer_matches_golden(CASES[0])
    finally:
        fused.set_enabled(prev)


def test_fused_passes_fall_back_to_torch_when_the_build_fails(monkeypatch, tmp_path, capsys):
    """No C compiler: one warning, then the torch functions, same result; no second try."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("E2TRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fused, "_state", {"lib": None, "tried": False, "error": None, "enabled": True})
    x = torch.tensor([0.2, 0.5, 1.49, -3.0])
    out = torch.empty_like(x)
    fused.quantize_(x, 1, 0, -2.0, 2.0, out)
    assert out.tolist() == [0.0, 1.0, 1.0, -2.0]
    fused.quantize_(x, 1, 0, -2.0, 2.0, out)
    assert not fused.available() and fused._state["error"] is not None
    assert capsys.readouterr().err.count("fused C passes are not available") == 1


def test_fused_passes_build_into_a_fresh_cache(monkeypatch, tmp_path):
    """The C file builds with the system compiler into the cache named by E2TRAIN_CACHE."""
    if not fused.available():
        pytest.skip(f"the C passes did not build here: {fused._state['error']}")
    monkeypatch.setenv("E2TRAIN_CACHE", str(tmp_path))
    lib = fused._build()
    x, out = torch.tensor([0.5, -0.5, 9.0]), torch.empty(3)
    lib.e2_quantize(fused._p(x), fused._p(out), 3, 1, 0, -4.0, 4.0, 1)
    assert out.tolist() == [1.0, 0.0, 4.0]
    assert [p.suffix for p in tmp_path.iterdir()] == [".so"]


@pytest.mark.parametrize("scale", [1, 1 << 26, 1 << 33])      # float64 comparison; int64 beyond 2**37
@pytest.mark.parametrize("beta_q", [0, 1, 3277, 1 << 16])
def test_decide_rule_equals_golden_including_threshold_ties(scale, beta_q):
    rng = np.random.default_rng(scale % 97 + beta_q)
    g_msb = rng.integers(-1000, 1001, 500) * scale
    g_msb[:5] = [0, 1000 * scale, -1000 * scale, 50 * scale, -50 * scale]   # |G| = tau exactly at beta 0.05
    g_exact = rng.integers(-10 ** 6, 10 ** 6, 500) * scale
    g_exact[:3] = 0
    sign, predicted, amax = psg_decide_t(torch.from_numpy(g_msb).double(), torch.from_numpy(g_exact).double(), beta_q)
    want_sign, want_pred, want_amax = golden.psg_decide(g_msb, g_exact, beta_q)
    assert np.array_equal(sign.numpy().astype(np.int8), want_sign)
    assert np.array_equal(predicted.numpy(), want_pred) and amax == want_amax


@pytest.mark.parametrize("m, s", [(12345, 20), (32767, 10), (1, 0), (20001, 30)])
def test_quantiser_rounds_exact_and_near_half_quotients_like_core(m, s):
    """The quantiser's float form against core on quotients that are exact half-integers,
    one float step either side of them, and across the saturation edges."""
    div = math.ldexp(m, -s)
    k = np.arange(-200, 200)                                   # (2k+1)*m < 2**24: float32 numbers
    ties = ((2 * k + 1) * m).astype(np.float64) * math.ldexp(1.0, -s - 1)        # x/div = k + 1/2
    x = np.concatenate([ties, np.nextafter(ties.astype(np.float32), np.inf), np.nextafter(ties.astype(np.float32), -np.inf),
                        np.array([255.5, 256.5, -128.5, -129.5, 32767.5, -32768.5]) * div]).astype(np.float32)
    assert np.array_equal(x[:400].astype(np.float64), ties)
    sc = fxp.Dyadic(m, s)
    for fmt in (fxp.INT8, fxp.UINT8, fxp.INT16):
        assert np.array_equal(quantize_t(torch.from_numpy(x), sc, fmt).numpy(), fxp.quantize(x, sc, fmt).astype(np.float32))


def test_quantiser_float_form_on_random_quotients_next_to_half_integers():
    """Many scales and float32 inputs within a few float steps of (k + 1/2) * scale, k from
    -3 to 2 (where float rounding of r + 1/2 or r - floor(r) would go wrong), against core."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        m, s = int(rng.integers(1, 1 << 15)), int(rng.integers(0, 40))
        div = math.ldexp(m, -s)
        base = ((np.arange(-3, 3) + 0.5) * div).astype(np.float32)
        x = np.concatenate([base] + [np.nextafter(base, sgn * np.inf) for sgn in (1, -1)]
                           + [base * np.float32(1 + f) for f in rng.uniform(-1e-6, 1e-6, 20)]).astype(np.float32)
        x = np.concatenate([x, rng.uniform(-1, 1, 200).astype(np.float32) * np.float32(div)])
        sc = fxp.Dyadic(m, s)
        assert np.array_equal(quantize_t(torch.from_numpy(x), sc, fxp.INT16).numpy(),
                              fxp.quantize(x, sc, fxp.INT16).astype(np.float32)), (m, s)


def test_fused_passes_rebuild_a_damaged_cache_file(monkeypatch, tmp_path):
    """A truncated or foreign .so under the cached name is replaced, not loaded or trusted."""
    if not fused.available():
        pytest.skip(f"the C passes did not build here: {fused._state['error']}")
    monkeypatch.setenv("E2TRAIN_CACHE", str(tmp_path))
    so = fused._cache_path(os.environ.get("CC", "cc"))
    so.write_bytes(b"\x7fELF garbage")          # left by an earlier process (never one loaded here)
    lib = fused._build()
    x, out = torch.tensor([2.5, -7.0]), torch.empty(2)
    lib.e2_quantize(fused._p(x), fused._p(out), 2, 1, 0, -4.0, 4.0, 1)
    assert out.tolist() == [3.0, -4.0] and so.stat().st_size > 1000


def test_fused_passes_build_without_openmp_where_the_compiler_lacks_it(monkeypatch, tmp_path):
    """A C compiler that rejects -fopenmp (Apple clang) still gets the passes, single-threaded."""
    if not fused.available():
        pytest.skip(f"the C passes did not build here: {fused._state['error']}")
    real = os.environ.get("CC", "cc")
    wrapper = tmp_path / "cc-without-openmp"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("E2TRAIN_CACHE", str(tmp_path / "cache"))
    lib = fused._build()
    x, out = torch.tensor([2.5, -7.0, 0.49]), torch.empty(3)
    lib.e2_quantize(fused._p(x), fused._p(out), 3, 1, 0, -4.0, 4.0, 2)
    assert out.tolist() == [3.0, -4.0, 0.0]


@pytest.mark.parametrize("seed", range(4))
def test_requantiser_float_form_on_exact_half_quotients_like_core(seed):
    """One-part float accumulators with dyadic multipliers (the layer's case, which takes the
    float loop): accumulators whose product with the multiplier is exactly k + 1/2, their
    neighbours, and random ones, against core's integer requantisation and dequantisation."""
    rng = np.random.default_rng(seed)
    for _ in range(25):
        m, s = int(rng.integers(1, 1 << 15)) | 1, int(rng.integers(8, 23))       # odd m: invertible mod 2**s
        mult = fxp.Dyadic(m, s)
        inv = pow(m, -1, 1 << s)
        tie = (inv << (s - 1)) % (1 << s)              # tie * m = 2**(s-1) (mod 2**s): acc*M/2**S = k + 1/2
        span = min(300, 1 << (23 - s))
        ks = rng.integers(-span, span, 60)
        acc = np.concatenate([tie + ks * (1 << s), tie + ks * (1 << s) + 1, tie + ks * (1 << s) - 1,
                              rng.integers(-(1 << 24), 1 << 24, 200)])
        acc = acc[np.abs(acc) < 1 << 24]               # integers float32 holds exactly
        assert ((acc * m) % (1 << s) == 1 << (s - 1)).sum() >= 30       # the exact half-integers are there
        want = fxp.requantize(acc, mult, fxp.INT16)
        out = torch.empty(acc.size, dtype=torch.float32)
        scale = fxp.Dyadic(int(rng.integers(1, 1 << 15)), int(rng.integers(10, 40)))
        top = psg._requantize_parts(((torch.from_numpy(acc.astype(np.float32)), 1),), mult, fxp.INT16, out,
                                    dequant=scale.value, peak=float(1 << 24))
        assert np.array_equal(out.numpy(), fxp.dequantize(want, scale)), (m, s)
        assert top == int(np.abs(want.astype(np.int64)).max())

"""The folded fixed-point block against float BN in torch, end to end.

Forward: BatchNorm in training mode (``torch.nn.functional.batch_norm``, batch statistics),
the option-A residual and the ReLU in float64, against ``fold_bn_act`` + ``bn_act`` on the
codes: every output code within one of the float result's nearest code.
Backward: torch autograd of the same float graph against ``bn_bwd_reduce`` +
``fold_bn_bwd`` + ``bn_bwd_apply``: every g_y code within one of the float input gradient in
g_y's codes, and BN's dgamma/dbeta equal autograd's. With two gradient sources the combined
gradient's codes (within half a code of the exact sum) are what BN backward starts from.

The contract's ReLU backward masks by the output *code* (o > 0): a float pre-activation in
(0, half a code) rounds to code 0, so the float graph receives the upstream gradient with
that same mask applied (autograd's ReLU mask then agrees with it everywhere)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from e2train.core import block_ops as bo
from e2train.core.fixedpoint import INT16, UINT8, Dyadic, scale_for
from e2train.torch import block_ops_t as bt

EPS = 1e-5
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# (n, c, h, w), shortcut source channels and stride, offset; listed samples; two gradient sources
CASES = [
    ((8, 4, 6, 6), (4, 1, 0), None, False),
    ((6, 8, 4, 4), (4, 2, 2), None, False),
    ((16, 16, 3, 3), (16, 1, 0), None, True),
    ((10, 6, 5, 5), (3, 2, 0), [0, 2, 3, 7, 9], True),
]


def _codes(rng, shape, sd, lo, hi, dtype):
    return np.clip(np.rint(rng.normal(0, sd, shape)), lo, hi).astype(dtype)


@pytest.mark.parametrize("dev", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_folded_block_matches_float_bn(case, dev):
    (n, c, h, w), (c_r, stride, lo), samples, two = CASES[case]
    rng = np.random.default_rng(case)
    idx = np.arange(n) if samples is None else np.asarray(samples)
    s_y, s_r, s_g = Dyadic.from_float(0.031), Dyadic.from_float(0.017), Dyadic.from_float(2.3e-5)
    y = _codes(rng, (n, c, h, w), 40, -128, 127, np.int8)
    y += (rng.integers(-20, 20, c)[None, :, None, None]).astype(np.int8)       # per-channel offsets
    r = np.abs(_codes(rng, (n, c_r, h * stride, w * stride), 90, 0, 255, np.int16)).astype(np.uint8)
    sc = bo.Shortcut(stride, lo)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731

    # BN's batch statistics from the fabric's sums over the listed samples
    stats = bt.conv_fwd_stats(t(y), samples).cpu().numpy().astype(np.float64)
    m = len(idx) * h * w
    mean_c = stats[:, 0] / m
    var = s_y.value ** 2 * (stats[:, 1] / m - mean_c ** 2)
    mean, inv = s_y.value * mean_c, 1.0 / np.sqrt(var + EPS)
    k = gamma * inv
    c0 = beta - k * mean

    # the float graph: BN (training mode) on the listed samples, residual, ReLU
    y_real = t(y[idx].astype(np.float64) * s_y.value).requires_grad_(True)
    g_t, b_t = t(gamma).requires_grad_(True), t(beta).requires_grad_(True)
    res = bt.gather(sc, t(r), c, (h, w)).double() * s_r.value
    z = res.clone()
    z[t(idx)] = F.batch_norm(y_real, None, None, g_t, b_t, training=True, eps=EPS) + res[t(idx)]
    out_real = F.relu(z)
    s_out = scale_for(float(out_real.detach().max()), UINT8)

    fold = bo.fold_bn_act(k, c0, s_y, s_out, s_r)
    o, pooled, vmax = bt.bn_act(t(y), fold.a, fold.b, fold.shift, r=t(r), r_mult=fold.r_mult, shortcut=sc,
                                samples=samples)
    want = torch.clamp(torch.floor(out_real.detach() / s_out.value + 0.5), 0, 255)
    diff = (o.double() - want).abs()
    assert diff.max() <= 1, f"forward differs by {diff.max()} codes"
    assert (diff == 0).double().mean() > 0.99          # off by one only on near-ties
    assert torch.equal(pooled, o.to(torch.int64).sum(dim=(2, 3)))

    # backward: the block output's gradient (one source, or two summed at s_a + s_b)
    g_a = _codes(rng, (n, c, h, w), 9000, -32768, 32767, np.int16)
    mask = o > 0
    if two:
        s_b = Dyadic.from_float(1.1e-5)
        b_sc = bo.Shortcut(1, 1)                        # the next block's output: 3 more channels
        g_b = _codes(rng, (n, c + 3, h, w), 9000, -32768, 32767, np.int16)
        comb = bo.fold_combine(s_g, s_b)
        upstream = t(g_a).double() * s_g.value + bt.scatter(b_sc, t(g_b), (n, c, h, w)).double() * s_b.value
        g_m, red, _ = bt.bn_bwd_reduce(o, t(y), t(g_a), ma=comb.ma, g_b=t(g_b), mb=comb.mb, b_shortcut=b_sc,
                                       shift=comb.shift, samples=samples)
        s_gm = comb.scale
        # the combine rounds the two sources' sum to codes of s_a + s_b (half a code at most,
        # plus its multipliers' rounding); BN backward below starts from those codes, which are
        # what the fabric hands it (half a code of gc can be more than one code of g_y when
        # max|g_m| is below g_y's range)
        exact = upstream / s_gm.value
        assert float((g_m.double() - exact).abs()[mask].max()) <= 0.5 + 1e-3
        upstream = g_m.double() * s_gm.value
    else:
        upstream = t(g_a).double() * s_g.value
        g_m, red, _ = bt.bn_bwd_reduce(o, t(y), t(g_a), samples=samples)
        s_gm = s_g
    out_real.backward(upstream * mask)
    bw = bo.fold_bn_bwd(red.cpu().numpy(), m, gamma, mean, inv, s_gm, s_y)
    g_y = bt.bn_bwd_apply(g_m, t(y), bw.p, bw.q, bw.t, bw.shift, samples=samples)
    ref = torch.zeros((n, c, h, w), dtype=torch.float64, device=dev)
    ref[t(idx)] = y_real.grad / bw.scale.value
    gdiff = (g_y.double() - ref).abs()
    assert gdiff.max() <= 1, f"backward differs by {gdiff.max():.3f} codes"
    assert ref.abs().max() > 1000                       # g_y uses its range: the check is not vacuous
    assert float(ref.abs().max()) <= INT16.hi + 0.5      # g_y's scale from the exact bound: nothing saturates
    np.testing.assert_allclose(bw.dbeta, b_t.grad.cpu().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bw.dgamma, g_t.grad.cpu().numpy(), rtol=1e-9, atol=1e-12)

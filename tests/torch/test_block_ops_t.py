"""The block operations in torch (``e2train.torch.block_ops_t``) against the golden models
(``core.block_ops``), bit for bit: random shapes, sample lists (host lists, numpy, tensors,
empty), option-A shortcut geometries, one or two gradient sources, coefficients and shifts at
their limits; the same refusals. On the CPU always, and on CUDA where present."""
import numpy as np
import pytest
import torch

from e2train.core import block_ops as bo
from e2train.torch import block_ops_t as bt

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
M_TOP = bo.MULT_LIMIT - 1          # the largest multiplier the contract admits
C_TOP = bo.CONST_LIMIT - 1         # the largest constant


def _ints(rng, lo, hi, shape, dtype, edge=0.1):
    """Random codes with a share of each end of the range (saturation and limit cases)."""
    v = rng.integers(lo, hi + 1, shape)
    pick = rng.random(shape)
    v = np.where(pick < edge / 2, lo, np.where(pick > 1 - edge / 2, hi, v))
    return v.astype(dtype)


def _coef(rng, top, size, shift=None, span=1.0):
    """Per-channel coefficients. Mostly matched to the shift (real value up to ``span`` after the
    shift, so that the results land inside their code range and every rounding shows); else
    random magnitudes over many octaves; the limit itself sometimes."""
    if shift is not None and rng.random() < 0.7:
        mag = np.floor(rng.uniform(0, span, size) * 2.0 ** shift).astype(np.int64)
    else:
        mag = np.floor(2.0 ** rng.uniform(0, np.log2(top), size)).astype(np.int64)
    mag = np.where(rng.random(size) < 0.1, top, np.minimum(mag, top))
    return mag * rng.choice([-1, 1], size)


def _shift(rng):
    """Small shifts (where a unit of the sum moves the rounding) as often as large ones."""
    return int(rng.integers(0, 9) if rng.random() < 0.5 else rng.integers(0, bo.MAX_BLOCK_SHIFT + 1))


def _samples(rng, n, dev):
    """A sample list in one of the forms a caller may use (None: every sample)."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return None
    idx = rng.permutation(n)[: rng.integers(0, n + 1)]
    return {1: idx.tolist(), 2: idx, 3: torch.from_numpy(idx).to(dev), 4: []}[int(kind)]


def _geometry(rng, n, c, h, w):
    """A shortcut source and its option-A geometry for a block output (n, c, h, w)."""
    stride = int(rng.integers(1, 3))
    lo = int(rng.integers(0, c))
    c_r = int(rng.integers(1, c - lo + 1))
    h_r = (h - 1) * stride + 1 + int(rng.integers(0, stride + 1))
    w_r = (w - 1) * stride + 1 + int(rng.integers(0, stride + 1))
    return bo.Shortcut(stride, lo), (n, c_r, h_r, w_r)


def _same(golden, mine):
    assert isinstance(mine, torch.Tensor)
    got = mine.cpu().numpy()
    assert got.dtype == golden.dtype and got.shape == golden.shape
    assert np.array_equal(got, golden)


def _t(a, dev):
    return torch.from_numpy(np.ascontiguousarray(a)).to(dev)


def _shape(rng):
    return tuple(int(v) for v in (rng.integers(1, 6), rng.integers(1, 9), rng.integers(1, 8), rng.integers(1, 8)))


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("seed", range(40))
def test_bn_act_equals_golden(dev, seed):
    rng = np.random.default_rng(seed)
    n, c, h, w = _shape(rng)
    y = _ints(rng, -128, 127, (n, c, h, w), np.int8)
    shift = _shift(rng)
    a, b = _coef(rng, M_TOP, c, shift, 3.0), _coef(rng, C_TOP, c, shift, 200.0)
    r, r_mult, sc = None, 0, bo.IDENTITY
    if rng.random() < 0.7:
        sc, r_shape = _geometry(rng, n, c, h, w)
        r = _ints(rng, 0, 255, r_shape, np.uint8) if rng.random() < 0.7 else _ints(rng, -128, 127, r_shape, np.int8)
        r_mult = int(_coef(rng, M_TOP, 1, shift, 1.5)[0])
    samples = _samples(rng, n, dev)
    relu = bool(rng.random() < 0.8)
    # the coefficients as the folds give them (numpy), or as tensors on the device
    a_in, b_in = (a, b) if seed % 3 else (_t(a, dev), _t(b, dev))
    want = bo.bn_act(y, a, b, shift, r=r, r_mult=r_mult, shortcut=sc, relu=relu,
                     samples=samples.cpu().numpy() if isinstance(samples, torch.Tensor) else samples)
    got = bt.bn_act(_t(y, dev), a_in, b_in, shift, r=None if r is None else _t(r, dev), r_mult=r_mult,
                    shortcut=sc, samples=samples, relu=relu)
    for g, m in zip(want, got):
        _same(g, m)
        assert m.device.type == dev


def test_bn_act_saturates_and_rounds_half_up():
    """Hand-checked codes: ties go up (towards +inf), the ReLU clamps, unlisted samples take the
    shortcut alone."""
    y = torch.tensor([[[[1, -1, 3, 127]]], [[[5, 5, 5, 5]]]], dtype=torch.int8)
    r = torch.full((2, 1, 1, 4), 4, dtype=torch.uint8)
    out, pooled, vmax = bt.bn_act(y, [1], [0], 1, r=r, r_mult=1, samples=[0])
    # sample 0: (y + 4 + 1) >> 1 = 3, 2 (1.5: the tie goes up), 4, 66; sample 1 (unlisted):
    # (4 + 1) >> 1 = 2 whatever its y
    assert out.tolist() == [[[[3, 2, 4, 66]]], [[[2, 2, 2, 2]]]]
    assert pooled.tolist() == [[75], [8]] and vmax.tolist() == [66, 2]
    out, _, vmax = bt.bn_act(y, [600], [-3], 0, samples=None)
    assert out[0, 0, 0].tolist() == [255, 0, 255, 255] and vmax.tolist() == [127 * 600 - 3, 5 * 600 - 3]
    out, _, _ = bt.bn_act(torch.tensor([[[[-3, -1, 1, 3]]]], dtype=torch.int8), [1], [0], 1, relu=False)
    assert out.dtype == torch.int8 and out.flatten().tolist() == [-1, 0, 1, 2]   # -1.5 -> -1, -0.5 -> 0


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("seed", range(40))
def test_bn_bwd_reduce_equals_golden(dev, seed):
    rng = np.random.default_rng(1000 + seed)
    n, c, h, w = _shape(rng)
    o = _ints(rng, 0, 255, (n, c, h, w), np.uint8, edge=0.0)
    o[rng.random(o.shape) < 0.4] = 0                        # the ReLU's zeros: masked positions
    y = _ints(rng, -128, 127, (n, c, h, w), np.int8)
    g_a = _ints(rng, -32768, 32767, (n, c, h, w), np.int16)
    shift = _shift(rng) if seed % 4 else 0
    kw = dict(ma=int(_coef(rng, M_TOP, 1, shift, 1.2)[0]) if seed % 4 else 1, shift=shift)
    if rng.random() < 0.6:                                  # two sources: the next block's shortcut
        stride = int(rng.integers(1, 3))
        c_next = c + int(rng.integers(0, 2 * c + 1))
        lo = int(rng.integers(0, c_next - c + 1))
        h_next, w_next = -(-h // stride), -(-w // stride)
        g_b = _ints(rng, -32768, 32767, (n, c_next, h_next, w_next), np.int16)
        kw.update(mb=int(_coef(rng, M_TOP, 1, shift, 1.2)[0]), b_shortcut=bo.Shortcut(stride, lo))
    else:
        g_b = None
    r = None
    if rng.random() < 0.6:                                  # the gate's shortcut sum
        sc, r_shape = _geometry(rng, n, c, h, w)
        r = _ints(rng, 0, 255, r_shape, np.uint8)
        kw["r_shortcut"] = sc
    samples = _samples(rng, n, dev)
    want = bo.bn_bwd_reduce(o, y, g_a, g_b=g_b, r=r, **kw,
                            samples=samples.cpu().numpy() if isinstance(samples, torch.Tensor) else samples)
    got = bt.bn_bwd_reduce(_t(o, dev), _t(y, dev), _t(g_a, dev), g_b=None if g_b is None else _t(g_b, dev),
                           r=None if r is None else _t(r, dev), **kw, samples=samples)
    for g, m in zip(want, got):
        _same(g, m)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("seed", range(30))
def test_bn_bwd_apply_equals_golden(dev, seed):
    rng = np.random.default_rng(2000 + seed)
    n, c, h, w = _shape(rng)
    g_m = _ints(rng, -32768, 32767, (n, c, h, w), np.int16)
    y = _ints(rng, -128, 127, (n, c, h, w), np.int8)
    shift = _shift(rng)
    p, q, t = _coef(rng, M_TOP, c, shift, 1.0), _coef(rng, M_TOP, c, shift, 100.0), _coef(rng, C_TOP, c, shift, 3e4)
    samples = _samples(rng, n, dev)
    coefs = (p, q, t) if seed % 3 else tuple(_t(v, dev) for v in (p, q, t))
    want = bo.bn_bwd_apply(g_m, y, p, q, t, shift,
                           samples=samples.cpu().numpy() if isinstance(samples, torch.Tensor) else samples)
    _same(want, bt.bn_bwd_apply(_t(g_m, dev), _t(y, dev), *coefs, shift, samples=samples))


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("seed", range(10))
def test_conv_fwd_stats_equals_golden(dev, seed):
    rng = np.random.default_rng(3000 + seed)
    y = _ints(rng, -128, 127, _shape(rng), np.int8, edge=0.3)
    samples = _samples(rng, y.shape[0], dev)
    want = bo.conv_fwd_stats(y, samples.cpu().numpy() if isinstance(samples, torch.Tensor) else samples)
    _same(want, bt.conv_fwd_stats(_t(y, dev), samples))


@pytest.mark.parametrize("dev", DEVICES)
def test_shortcut_gather_and_scatter_are_adjoint(dev):
    """<gather(r), g> == <r, scatter(g)> exactly, and both equal the golden model's."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        n, c, h, w = _shape(rng)
        sc, r_shape = _geometry(rng, n, c, h, w)
        r = rng.integers(-50, 50, r_shape)
        g = rng.integers(-50, 50, (n, c, h, w))
        gr = bt.gather(sc, _t(r, dev), c, (h, w))
        sg = bt.scatter(sc, _t(g, dev), r_shape)
        _same(sc.gather(r, c, (h, w)), gr)
        _same(sc.scatter(g, r_shape), sg)
        assert int((gr * _t(g, dev)).sum()) == int((_t(r, dev) * sg).sum())


# -- refusals ---------------------------------------------------------------------------------
def _case(n=2, c=3, h=4, w=4):
    rng = np.random.default_rng(0)
    return dict(y=rng.integers(-128, 128, (n, c, h, w)).astype(np.int8),
                o=rng.integers(0, 256, (n, c, h, w)).astype(np.uint8),
                g=rng.integers(-999, 999, (n, c, h, w)).astype(np.int16),
                r=rng.integers(0, 256, (n, c, h, w)).astype(np.uint8))


def _bad_calls():
    d = _case()
    y, o, g, r = d["y"], d["o"], d["g"], d["r"]
    one = np.ones(3, np.int64)
    yield "y not int8", "bn_act", (y.astype(np.int16), one, one, 0), {}
    yield "y not NCHW", "bn_act", (y[0], one, one, 0), {}
    yield "a per channel", "bn_act", (y, np.ones(2, np.int64), one, 0), {}
    yield "shift > 40", "bn_act", (y, one, one, 41), {}
    yield "shift < 0", "bn_act", (y, one, one, -1), {}
    yield "a at 2^24", "bn_act", (y, one * bo.MULT_LIMIT, one, 0), {}
    yield "b at 2^44", "bn_act", (y, one, -one * bo.CONST_LIMIT, 0), {}
    yield "r_mult at 2^24", "bn_act", (y, one, one, 0), dict(r=r, r_mult=-bo.MULT_LIMIT)
    yield "sample out of range", "bn_act", (y, one, one, 0), dict(samples=[0, 2])
    yield "negative sample", "bn_act", (y, one, one, 0), dict(samples=[-1])
    yield "sample repeated", "bn_act", (y, one, one, 0), dict(samples=[1, 1])
    yield "shortcut too small", "bn_act", (y, one, one, 0), dict(r=r[:, :, :2], shortcut=bo.Shortcut(1, 0))
    yield "shortcut stride 2 uncovered", "bn_act", (y, one, one, 0), dict(r=r, shortcut=bo.Shortcut(2, 0))
    yield "shortcut channels over", "bn_act", (y, one, one, 0), dict(r=r, shortcut=bo.Shortcut(1, 1))
    yield "shortcut negative offset", "bn_act", (y, one, one, 0), dict(r=r[:, :2], shortcut=bo.Shortcut(1, -1))
    yield "shortcut samples", "bn_act", (y, one, one, 0), dict(r=np.concatenate([r, r, r]))
    yield "stride 0", "bn_act", (y, one, one, 0), dict(r=r, shortcut=bo.Shortcut(0, 0))
    yield "o not uint8", "bn_bwd_reduce", (o.astype(np.int8), y, g), {}
    yield "y shape", "bn_bwd_reduce", (o, y[:1], g), {}
    yield "g_a not int16", "bn_bwd_reduce", (o, y, g.astype(np.int32)), {}
    yield "ma at 2^24", "bn_bwd_reduce", (o, y, g), dict(ma=bo.MULT_LIMIT)
    yield "mb at 2^24", "bn_bwd_reduce", (o, y, g), dict(g_b=g, mb=bo.MULT_LIMIT)
    yield "reduce shift", "bn_bwd_reduce", (o, y, g), dict(shift=41)
    yield "g_b not int16", "bn_bwd_reduce", (o, y, g), dict(g_b=g.astype(np.int32), mb=1)
    yield "g_b geometry", "bn_bwd_reduce", (o, y, g), dict(g_b=np.concatenate([g, g[:, :, :1]], axis=2), mb=1)
    yield "g_b channels", "bn_bwd_reduce", (o, y, g), dict(g_b=g[:, :2], mb=1)
    yield "reduce samples", "bn_bwd_reduce", (o, y, g), dict(samples=[5])
    yield "gate shortcut", "bn_bwd_reduce", (o, y, g), dict(r=r[:, :, :3])
    yield "gate shortcut samples", "bn_bwd_reduce", (o, y, g), dict(r=np.concatenate([r, r, r]))
    yield "g_m not int16", "bn_bwd_apply", (g.astype(np.int32), y, one, one, one, 0), {}
    yield "apply y shape", "bn_bwd_apply", (g, y[:, :2], one, one, one, 0), {}
    yield "p per channel", "bn_bwd_apply", (g, y, one[:2], one, one, 0), {}
    yield "q at 2^24", "bn_bwd_apply", (g, y, one, one * bo.MULT_LIMIT, one, 0), {}
    yield "t at 2^44", "bn_bwd_apply", (g, y, one, one, one * bo.CONST_LIMIT, 0), {}
    yield "apply shift", "bn_bwd_apply", (g, y, one, one, one, 41), {}
    yield "apply samples", "bn_bwd_apply", (g, y, one, one, one, 0), dict(samples=[0, 0])
    yield "stats not NCHW", "conv_fwd_stats", (y[0],), {}
    yield "stats samples", "conv_fwd_stats", (y, [3]), {}


def _as_torch(v, dev, coef_tensors):
    if isinstance(v, np.ndarray) and (v.ndim == 4 or v.ndim == 3 or coef_tensors):
        return _t(v, dev)
    return v


BAD = list(_bad_calls())


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("coef_tensors", [False, True], ids=["host-coefs", "tensor-coefs"])
@pytest.mark.parametrize("name, op, args, kw", BAD, ids=[b[0] for b in BAD])
def test_refusals_match_golden(dev, coef_tensors, name, op, args, kw):
    """Every input the golden model refuses is refused here too, with a one-line ValueError
    (the golden model's own message where it writes one), and nothing is returned."""
    with pytest.raises(ValueError) as want:
        getattr(bo, op)(*args, **kw)
    targs = tuple(_as_torch(v, dev, coef_tensors) for v in args)
    tkw = {k: (torch.tensor(v, device=dev) if k == "samples" and coef_tensors else _as_torch(v, dev, False))
           for k, v in kw.items()}
    with pytest.raises(ValueError) as got:
        getattr(bt, op)(*targs, **tkw)
    msg = str(got.value)
    assert "\n" not in msg and msg
    if op in str(want.value) or "sample list" in str(want.value) or "shortcut" in str(want.value):
        assert msg == str(want.value)


def test_refusals_of_torch_operands():
    d = _case()
    y = torch.from_numpy(d["y"])
    with pytest.raises(ValueError, match="must be a torch tensor"):
        bt.bn_act(d["y"], [1, 1, 1], [0, 0, 0], 0)
    with pytest.raises(ValueError, match="stride -1 must be at least 1"):
        bt.bn_act(y, [1, 1, 1], [0, 0, 0], 0, r=torch.from_numpy(d["r"]), shortcut=bo.Shortcut(-1, 0))


@CUDA
def test_operands_on_two_devices_are_refused():
    d = _case()
    with pytest.raises(ValueError, match="r is on"):
        bt.bn_act(torch.from_numpy(d["y"]).cuda(), [1, 1, 1], [0, 0, 0], 0, r=torch.from_numpy(d["r"]))


@CUDA
def test_no_host_synchronisation_with_host_coefficients():
    """With the coefficients and the sample list as host data (the folds' numpy arrays), a call
    queues its work and returns without waiting for the GPU (torch's sync debug mode raises on
    any synchronising call)."""
    rng = np.random.default_rng(9)
    n, c, h, w = 8, 16, 8, 8
    y = torch.from_numpy(rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)).cuda()
    r = torch.from_numpy(rng.integers(0, 256, (n, c // 2, 2 * h, 2 * w)).astype(np.uint8)).cuda()
    g = torch.from_numpy(rng.integers(-999, 999, (n, c, h, w)).astype(np.int16)).cuda()
    a, b = rng.integers(-1000, 1000, c), rng.integers(-10 ** 6, 10 ** 6, c)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        o, pooled, vmax = bt.bn_act(y, a, b, 12, r=r, r_mult=300, shortcut=bo.Shortcut(2, 4), samples=[0, 3, 5])
        g_m, red, gate = bt.bn_bwd_reduce(o, y, g, g_b=g, mb=3, ma=2, shift=1, r=r, r_shortcut=bo.Shortcut(2, 4),
                                          samples=np.array([0, 3, 5]))
        g_y = bt.bn_bwd_apply(g_m, y, a, a, b, 9, samples=[0, 3, 5])
        stats = bt.conv_fwd_stats(y, [0, 3, 5])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = bo.bn_act(y.cpu().numpy(), a, b, 12, r=r.cpu().numpy(), r_mult=300, shortcut=bo.Shortcut(2, 4),
                     samples=[0, 3, 5])
    assert all(np.array_equal(x, t.cpu().numpy()) for x, t in zip(want, (o, pooled, vmax)))
    assert np.array_equal(bo.conv_fwd_stats(y.cpu().numpy(), [0, 3, 5]), stats.cpu().numpy())
    assert g_y.shape == y.shape and red.shape == (c, 3) and gate.shape == (n, 2)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4), (2, 0, 4, 4)])
def test_empty_tensors_equal_golden(shape):
    """No sample, no pixel, no channel: the same (empty or zero) results as the golden model."""
    n, c = shape[:2]
    y, o = np.zeros(shape, np.int8), np.zeros(shape, np.uint8)
    g = np.zeros(shape, np.int16)
    one = np.ones(c, np.int64)
    for want, got in zip(bo.bn_act(y, one, one, 3), bt.bn_act(_t(y, "cpu"), one, one, 3)):
        _same(want, got)
    for want, got in zip(bo.bn_bwd_reduce(o, y, g, g_b=g, mb=2, r=o),
                         bt.bn_bwd_reduce(_t(o, "cpu"), _t(y, "cpu"), _t(g, "cpu"), g_b=_t(g, "cpu"), mb=2,
                                          r=_t(o, "cpu"))):
        _same(want, got)
    _same(bo.bn_bwd_apply(g, y, one, one, one, 2), bt.bn_bwd_apply(_t(g, "cpu"), _t(y, "cpu"), one, one, one, 2))
    _same(bo.conv_fwd_stats(y), bt.conv_fwd_stats(_t(y, "cpu")))


def test_worked_example_of_the_contract_text():
    """docs/fixed-point.md section 9.8, through the folds and the torch operations."""
    from e2train.core.fixedpoint import Dyadic
    s_y, s_out, s_r = Dyadic.from_float(0.05), Dyadic.from_float(0.04), Dyadic.from_float(0.02)
    f = bo.fold_bn_act(np.array([1.25]), np.array([-0.3]), s_y, s_out, s_r)
    assert (int(f.a[0]), int(f.b[0]), f.r_mult, f.shift) == (6553350, -31456560, 2097152, 22)
    y = torch.tensor([[[[37, -12], [0, 100]]]], dtype=torch.int8)
    r = torch.tensor([[[[50, 0], [7, 255]]]], dtype=torch.uint8)
    o, pooled, vmax = bt.bn_act(y, f.a, f.b, f.shift, r=r, r_mult=f.r_mult)
    assert o.flatten().tolist() == [75, 0, 0, 255] and pooled.item() == 330 and vmax.item() == 276
    g_a = torch.tensor([[[[1200, -3000], [500, 32767]]]], dtype=torch.int16)
    g_m, red, gate = bt.bn_bwd_reduce(o, y, g_a, r=r)
    assert g_m.flatten().tolist() == [1200, 0, 0, 32767]
    assert red.tolist() == [[33967, 3321100, 32767]] and gate.tolist() == [[8445585, 8419085]]
    st = bt.conv_fwd_stats(y).numpy()[0]
    assert st.tolist() == [125, 11513]
    mean = s_y.value * st[0] / 4
    inv = 1 / np.sqrt(s_y.value ** 2 * (st[1] / 4 - (st[0] / 4) ** 2) + 1e-5)
    b = bo.fold_bn_bwd(red.numpy(), 4, np.array([0.9]), np.array([mean]), np.array([inv]),
                       Dyadic.from_float(1e-4), s_y)
    assert (int(b.p[0]), int(b.q[0]), int(b.t[0]), b.shift, tuple(b.scale)) == (15000, -4455749, 11868270, 15,
                                                                                  (24206, 28))
    g_y = bt.bn_bwd_apply(g_m, y, b.p, b.q, b.t, b.shift)
    assert g_y.flatten().tolist() == [-4120, 1994, 362, 1764]

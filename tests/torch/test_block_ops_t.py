"""The block operations in torch (``e2train.torch.block_ops_t``) against the golden models
(``core.block_ops``), bit for bit: random shapes, sample lists (host lists, numpy, tensors,
empty), option-A shortcut geometries, one or two gradient sources, coefficients and shifts at
their limits; and every refusal of the shared argument checks (core.kernel_args) with the
same exception and message. On the CPU always, and on CUDA where present."""
import numpy as np
import pytest
import torch

from e2train.core import block_ops as bo
from e2train.core import kernel_args as ka
from e2train.core.shapes import MAX_BATCH, MAX_DIM
from e2train.torch import block_ops_t as bt

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
M_TOP = ka.MULT_LIMIT - 1          # the largest multiplier the contract admits
C_TOP = ka.CONST_LIMIT - 1         # the largest constant


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
    return int(rng.integers(0, 9) if rng.random() < 0.5 else rng.integers(0, ka.MAX_BLOCK_SHIFT + 1))


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
        r = _ints(rng, 0, 255, r_shape, np.uint8)
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
# Each case breaks one argument of a valid call (n=2, c=3, 4x4; the shortcut sources cover it),
# and together they reach every refusal of kernel_args' block checks (check_bn_act,
# check_bn_bwd_reduce, check_bn_bwd_apply, check_fwd_stats; check_block_shape, check_block_coeffs,
# check_shortcut, the sources' dtype and sample count, check_samples), the new limits included.
DATA = {"y", "o", "g_a", "g_b", "r", "g_m"}              # torch tensors on the device under test
VALUES = {"a", "b", "p", "q", "t", "r_mult", "ma", "mb", "samples"}   # host data, or tensors


def _huge(shape, dtype):
    """A zero tensor of a shape too large to allocate cheaply: a broadcast view, no data."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _case():
    rng = np.random.default_rng(0)
    return dict(y=rng.integers(-128, 128, (2, 3, 4, 4)).astype(np.int8),
                o=rng.integers(0, 256, (2, 3, 4, 4)).astype(np.uint8),
                g=rng.integers(-999, 999, (2, 3, 4, 4)).astype(np.int16),
                r=rng.integers(0, 256, (2, 3, 4, 4)).astype(np.uint8),
                r2=rng.integers(0, 256, (2, 2, 8, 8)).astype(np.uint8),        # a stride-2 source
                gb=rng.integers(-999, 999, (2, 5, 2, 2)).astype(np.int16))     # the next block's g_b


def _bad_calls():
    d = _case()
    y, o, g, r, r2, gb = d["y"], d["o"], d["g"], d["r"], d["r2"], d["gb"]
    one = np.ones(3, np.int64)
    S1, S2 = bo.Shortcut(1, 0), bo.Shortcut(2, 1)

    def act(**kw):
        return "bn_act", {**dict(y=y, a=one, b=one, shift=4, r=r2, r_mult=3, shortcut=S2), **kw}

    def red(**kw):
        return "bn_bwd_reduce", {**dict(o=o, y=y, g_a=g, ma=2, g_b=gb, mb=3, b_shortcut=S2, shift=1, r=r,
                                        r_shortcut=S1), **kw}

    def app(**kw):
        return "bn_bwd_apply", {**dict(g_m=g, y=y, p=one, q=one, t=one, shift=4), **kw}

    def stats(**kw):
        return "conv_fwd_stats", {**dict(y=y), **kw}

    # bn_act: its operands
    yield "act y int16", act(y=y.astype(np.int16))
    yield "act y float", act(y=y.astype(np.float32))
    yield "act y not NCHW", act(y=y[0])
    yield "act a per channel", act(a=one[:2])
    yield "act b per channel", act(b=np.ones((2, 2), np.int64))
    # the block shape (check_block_shape): every dimension 1..1024 (n to MAX_BATCH), the sums' sizes
    yield "act no sample", act(y=y[:0], r=None)
    yield "act no channel", act(y=y[:, :0], r=None)
    yield "act no row", act(y=y[:, :, :0], r=None)
    yield "act batch over limit", act(y=_huge((MAX_BATCH + 1, 3, 4, 4), np.int8), r=None)
    yield "act width over 1024", act(y=_huge((2, 3, 1, MAX_DIM + 1), np.int8), r=None)
    yield "act channels over 1024", act(y=_huge((2, MAX_DIM + 1, 1, 1), np.int8), r=None)
    yield "act c*h*w over 2^22", act(y=_huge((1, 1024, 64, 65), np.int8), r=None)
    yield "act n*h*w over 2^24", act(y=_huge((4096, 1, 64, 65), np.int8), r=None)
    # coefficients (check_block_coeffs)
    yield "act shift 41", act(shift=41)
    yield "act shift negative", act(shift=-1)
    yield "act a at 2^24", act(a=one * ka.MULT_LIMIT)
    yield "act a at -2^24", act(a=-one * ka.MULT_LIMIT)
    yield "act b at 2^44", act(b=-one * ka.CONST_LIMIT)
    yield "act r_mult at 2^24", act(r_mult=-ka.MULT_LIMIT)
    yield "act r_mult at 2^24 without r", act(r=None, r_mult=ka.MULT_LIMIT)
    # sample lists (check_samples)
    yield "act sample out of range", act(samples=[0, 2])
    yield "act negative sample", act(samples=[-1])
    yield "act sample repeated", act(samples=[1, 1])
    yield "act samples 2-D", act(samples=[[0, 1]])
    yield "act samples float", act(samples=[0.0])
    yield "act bad shift on an empty list", act(shift=41, samples=[])
    # the shortcut source: uint8 NCHW with n samples (no broadcasting of one sample)
    yield "act r int8", act(r=r2.view(np.int8))
    yield "act r int16", act(r=r2.astype(np.int16))
    yield "act r 3-D", act(r=r2[0])
    yield "act r one sample", act(r=r2[:1])
    yield "act r three samples", act(r=np.concatenate([r2, r2[:1]]))
    # the shortcut geometry (check_shortcut): stride 1 or 2, dimensions 1..1024, coverage, channels
    yield "act stride 0", act(shortcut=bo.Shortcut(0, 0), r=r)
    yield "act stride -1", act(shortcut=bo.Shortcut(-1, 0), r=r)
    yield "act stride 3", act(shortcut=bo.Shortcut(3, 0), r=np.zeros((2, 3, 12, 12), np.uint8))
    yield "act r no channel", act(r=r2[:, :0])
    yield "act r wider than 1024", act(shortcut=S1, r=np.zeros((2, 3, 4, MAX_DIM + 1), np.uint8))
    yield "act r too small", act(shortcut=S1, r=r[:, :, :2])
    yield "act stride 2 uncovered", act(shortcut=bo.Shortcut(2, 0), r=r)
    yield "act r channels past c", act(shortcut=bo.Shortcut(2, 2))
    yield "act negative offset", act(shortcut=bo.Shortcut(2, -1))
    # bn_bwd_reduce
    yield "red o int8", red(o=y)
    yield "red o 3-D", red(o=o[0])
    yield "red y shape", red(y=y[:1])
    yield "red y uint8", red(y=o)
    yield "red g_a int32", red(g_a=g.astype(np.int32))
    yield "red g_a shape", red(g_a=g[:, :2])
    yield "red no row", red(o=o[:, :, :0], y=y[:, :, :0], g_a=g[:, :, :0], g_b=None, r=None)
    yield "red batch over limit", red(o=_huge((MAX_BATCH + 1, 3, 4, 4), np.uint8),
                                      y=_huge((MAX_BATCH + 1, 3, 4, 4), np.int8),
                                      g_a=_huge((MAX_BATCH + 1, 3, 4, 4), np.int16), g_b=None, r=None)
    yield "red ma at 2^24", red(ma=-ka.MULT_LIMIT)
    yield "red mb at 2^24", red(mb=ka.MULT_LIMIT)
    yield "red mb at 2^24 without g_b", red(g_b=None, mb=ka.MULT_LIMIT)
    yield "red shift 41", red(shift=41)
    yield "red shift 41 on an empty list", red(shift=41, samples=[])
    yield "red g_b int32", red(g_b=gb.astype(np.int32))
    yield "red g_b int8", red(g_b=gb.astype(np.int8))
    yield "red g_b 3-D", red(g_b=gb[0])
    yield "red g_b one sample", red(g_b=gb[:1])
    yield "red g_b rows past the source", red(g_b=np.zeros((2, 5, 3, 2), np.int16))
    yield "red g_b too few channels", red(g_b=gb[:, :3])
    yield "red b_shortcut stride 3", red(b_shortcut=bo.Shortcut(3, 1))
    yield "red b_shortcut stride 0", red(b_shortcut=bo.Shortcut(0, 1))
    yield "red r int16", red(r=r.astype(np.int16))
    yield "red r one sample", red(r=r[:1])
    yield "red r does not cover", red(r=r[:, :, :3])
    yield "red r channels past c", red(r_shortcut=bo.Shortcut(1, 1))
    yield "red r stride 3", red(r_shortcut=bo.Shortcut(3, 0))
    yield "red sample out of range", red(samples=[5])
    yield "red sample repeated", red(samples=[0, 1, 0])
    # bn_bwd_apply
    yield "app g_m int32", app(g_m=g.astype(np.int32))
    yield "app g_m 3-D", app(g_m=g[0], y=y[0])
    yield "app y shape", app(y=y[:, :2])
    yield "app y uint8", app(y=o)
    yield "app no channel", app(g_m=g[:, :0], y=y[:, :0], p=one[:0], q=one[:0], t=one[:0])
    yield "app height over 1024", app(g_m=_huge((1, 1, MAX_DIM + 1, 1), np.int16),
                                      y=_huge((1, 1, MAX_DIM + 1, 1), np.int8), p=one[:1], q=one[:1], t=one[:1])
    yield "app p per channel", app(p=one[:2])
    yield "app t per channel", app(t=np.ones(4, np.int64))
    yield "app p at -2^24", app(p=-one * ka.MULT_LIMIT)
    yield "app q at 2^24", app(q=one * ka.MULT_LIMIT)
    yield "app t at 2^44", app(t=one * ka.CONST_LIMIT)
    yield "app shift 41", app(shift=41)
    yield "app shift negative", app(shift=-1)
    yield "app sample repeated", app(samples=[0, 0])
    yield "app samples 2-D", app(samples=np.zeros((1, 1), np.int64))
    yield "app bad q on an empty list", app(q=one * ka.MULT_LIMIT, samples=[])
    # conv_fwd_stats (check_fwd_stats)
    yield "stats y not NCHW", stats(y=y[0])
    yield "stats sample out of range", stats(samples=[3])
    yield "stats samples float", stats(samples=[1.0])


BAD = list(_bad_calls())


def _t(a, dev):
    if not a.flags.writeable and 0 in a.strides:           # a _huge view: expand one zero on the device
        return torch.zeros((), dtype=torch.from_numpy(np.zeros(0, a.dtype)).dtype, device=dev).expand(a.shape)
    return torch.from_numpy(np.ascontiguousarray(a)).to(dev)


def _torch_kw(kw, dev, value_tensors):
    """The call's data as tensors on dev; the coefficients, multipliers and sample list as they
    are (host data) or as tensors on dev too."""
    out = {}
    for k, v in kw.items():
        if k in DATA and v is not None:
            v = _t(v, dev)
        elif k in VALUES and v is not None and value_tensors:
            v = torch.as_tensor(np.asarray(v)).to(dev)
        out[k] = v
    return out


def _host(v):
    return v.cpu().numpy() if isinstance(v, torch.Tensor) else v


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("value_tensors", [False, True], ids=["host-values", "tensor-values"])
@pytest.mark.parametrize("name, op, kw", [(n, op, kw) for n, (op, kw) in BAD], ids=[b[0] for b in BAD])
def test_refusals_match_golden(dev, value_tensors, name, op, kw):
    """Every input the golden model refuses is refused here too, with the same exception type
    and the same one-line message (both call kernel_args' checks), before anything is computed.
    The golden model reads the same values (a tensor's host copy) as the torch call."""
    tkw = _torch_kw(kw, dev, value_tensors)
    with pytest.raises(ValueError) as want:
        getattr(bo, op)(**{k: (kw[k] if k in DATA else _host(v)) for k, v in tkw.items()})
    with pytest.raises(ValueError) as got:
        getattr(bt, op)(**tkw)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)
    assert "\n" not in str(got.value) and str(got.value)


def _raise_lines(src_obj, start: str | None = None) -> set[int]:
    """Line numbers of the raise statements in a module or function (from ``start``'s def on)."""
    import ast
    import inspect
    lines, first = inspect.getsourcelines(src_obj)
    tree = ast.parse("".join(lines))
    from_line = 0
    if start is not None:
        from_line = next(n.lineno for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == start)
    off = max(first, 1) - 1
    return {n.lineno + off for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.lineno >= from_line}


def test_every_block_refusal_has_a_case():
    """The cases above run every raise statement of kernel_args' block checks (from
    check_block_coeffs on) and of check_samples in the golden model: a new refusal needs a case
    here before the torch operations are held to it."""
    import sys
    from e2train.core import shapes
    want = {(ka.__file__, ln) for ln in _raise_lines(ka, "check_block_coeffs")}
    want |= {(shapes.__file__, ln) for ln in _raise_lines(shapes.check_samples)}
    seen = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in (ka.__file__, shapes.__file__):
            return None

        def line(frame, event, arg):
            if event == "line":
                seen.add((frame.f_code.co_filename, frame.f_lineno))
            return line
        return line

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        for _, (op, kw) in BAD:
            with pytest.raises(ValueError):
                getattr(bo, op)(**kw)
    finally:
        sys.settrace(old)
    missing = tuple(sorted(ln for f, ln in want - seen if f == mod) for mod in (ka.__file__, shapes.__file__))
    assert len(want) >= 20 and missing == ([], []), f"raise lines no case reaches (kernel_args, shapes): {missing}"


def test_shortcut_helpers_refuse_as_golden():
    """gather and scatter call check_shortcut as Shortcut.gather and Shortcut.scatter do."""
    r = np.zeros((2, 3, 4, 4), np.uint8)
    g = np.zeros((2, 3, 4, 4), np.int64)
    for sc, call_np, call_t in (
            (bo.Shortcut(3, 0), lambda sc: sc.gather(r, 3, (2, 2)), lambda sc: bt.gather(sc, _t(r, "cpu"), 3, (2, 2))),
            (bo.Shortcut(2, 0), lambda sc: sc.gather(r, 3, (3, 3)), lambda sc: bt.gather(sc, _t(r, "cpu"), 3, (3, 3))),
            (bo.Shortcut(1, 1), lambda sc: sc.gather(r, 3, (4, 4)), lambda sc: bt.gather(sc, _t(r, "cpu"), 3, (4, 4))),
            (bo.Shortcut(1, 1), lambda sc: sc.scatter(g, (2, 3, 4, 4)),
             lambda sc: bt.scatter(sc, _t(g, "cpu"), (2, 3, 4, 4))),
            (bo.Shortcut(0, 0), lambda sc: sc.scatter(g, (2, 3, 4, 4)),
             lambda sc: bt.scatter(sc, _t(g, "cpu"), (2, 3, 4, 4)))):
        with pytest.raises(ValueError) as want:
            call_np(sc)
        with pytest.raises(ValueError) as got:
            call_t(sc)
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_refusals_of_torch_operands():
    """Beyond the shared checks: the data must be torch tensors, of a dtype numpy has (the
    checks read it through a numpy stand-in), on one device."""
    d = _case()
    y = torch.from_numpy(d["y"])
    with pytest.raises(ValueError, match="y must be a torch tensor, got ndarray"):
        bt.bn_act(d["y"], [1, 1, 1], [0, 0, 0], 0)
    with pytest.raises(ValueError, match="^y is a bfloat16 tensor, a dtype numpy lacks"):
        bt.bn_act(y.to(torch.bfloat16), [1, 1, 1], [0, 0, 0], 0)
    with pytest.raises(ValueError, match="^p is a bfloat16 tensor"):
        bt.bn_bwd_apply(torch.from_numpy(d["g"]), y, torch.ones(3, dtype=torch.bfloat16), [1, 1, 1], [0, 0, 0], 0)
    with pytest.raises(ValueError, match="g_b must be a torch tensor"):
        bt.bn_bwd_reduce(torch.from_numpy(d["o"]), y, torch.from_numpy(d["g"]), g_b=d["g"], mb=1)


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
def test_stats_of_empty_tensors_equal_golden(shape):
    """conv_fwd_stats takes a tensor with no sample, pixel or channel (the block operations
    refuse one: the cases above) and gives the golden model's empty or zero sums."""
    y = np.zeros(shape, np.int8)
    _same(bo.conv_fwd_stats(y), bt.conv_fwd_stats(_t(y, "cpu")))
    _same(bo.conv_fwd_stats(y, []), bt.conv_fwd_stats(_t(y, "cpu"), []))


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

"""The PSG layer's device-side pieces: the decision and the sign step as integer tensor
arithmetic (what runs on a GPU, with no value read back), checked bit for bit against
``core.golden`` on the CPU; counters kept on the device and read once; and, where CUDA is
present, the exact layer bit for bit on CPU and CUDA, counters included."""
import numpy as np
import pytest
import torch

from e2train.core import golden
from e2train.core.fixedpoint import BETA_FRAC_BITS
from e2train.core.golden import DECAY_FRAC_BITS, MASTER_LIMIT
from e2train.torch import device_check, psg
from e2train.torch.psg import PSGConv2d, psg_decide_int_t, sign_update_t
from e2train.torch.work_meter import WorkMeter

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _decide_cases():
    rng = np.random.default_rng(7)
    for scale in (1, 1 << 20, 1 << 33):                       # up to |G_msb| ~ 2**43
        for beta_q in (0, 1, 3277, 1 << 15, 1 << BETA_FRAC_BITS):
            g_msb = rng.integers(-1000, 1001, 400) * scale
            # |G| = tau exactly (beta 0.05 of 1000 is 50: 3277 * 1000 vs 50 << 16 differ, so
            # also place the exact tie of this beta_q: |G| * 2**16 = beta_q * amax)
            g_msb[:6] = [0, 1000 * scale, -1000 * scale, 50 * scale, -50 * scale, 0]
            g_exact = rng.integers(-10 ** 6, 10 ** 6, 400) * scale
            g_exact[:3] = 0
            yield g_msb, g_exact, beta_q
    tie_amax = 1 << BETA_FRAC_BITS
    for beta_q in (1, 3277, 1 << 16):
        g = np.array([tie_amax, beta_q, beta_q - 1, -beta_q, -(beta_q - 1), 0, 1, -1], dtype=np.int64)
        yield g, -g[::-1].copy(), beta_q                      # |G| << 16 == beta_q * amax exactly
    yield np.zeros(10, np.int64), np.arange(-5, 5), 3277       # every G_msb zero: tau = 0, none predicted
    yield np.zeros(0, np.int64), np.zeros(0, np.int64), 3277   # an empty layer


@pytest.mark.parametrize("i, case", list(enumerate(_decide_cases())))
def test_integer_decision_equals_golden(i, case):
    g_msb, g_exact, beta_q = case
    sign, predicted, amax = psg_decide_int_t(torch.from_numpy(g_msb).double(), torch.from_numpy(g_exact).double(),
                                             beta_q)
    want_sign, want_pred, want_amax = golden.psg_decide(g_msb, g_exact, beta_q)
    assert sign.dtype == torch.int8 and np.array_equal(sign.numpy(), want_sign)
    assert np.array_equal(predicted.numpy(), want_pred)
    assert int(amax) == want_amax
    # and the CPU path of the layer (float64 comparison, or the C loop) agrees with it
    s2, p2, a2 = psg.psg_decide_t(torch.from_numpy(g_msb).double(), torch.from_numpy(g_exact).double(), beta_q)
    assert np.array_equal(s2.numpy().astype(np.int8), want_sign) and np.array_equal(p2.numpy(), want_pred)


def test_integer_decision_counts_only_integers():
    """Sums that arrive a fraction off (a transform-based GPU convolution) decide, and count,
    as their integers do: the rounding happens before the threshold comparison."""
    rng = np.random.default_rng(3)
    g_msb = rng.integers(-5000, 5001, 2000)
    # tau = 3277 * 5000 / 2**16 = 250.015...: G = 250 is not predicted, but 250.4 would be
    g_msb[:2] = [5000, 250]
    g_exact = rng.integers(-10 ** 5, 10 ** 5, 2000)
    noise = rng.uniform(-0.45, 0.45, 2000)
    noise[:2] = [-0.3, 0.4]
    ref = psg_decide_int_t(torch.from_numpy(g_msb).double(), torch.from_numpy(g_exact).double(), 3277)
    got = psg_decide_int_t(torch.from_numpy(g_msb + noise), torch.from_numpy(g_exact - noise), 3277)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1]) and int(ref[2]) == int(got[2])
    assert int(got[1].sum()) == int(golden.psg_decide(g_msb, g_exact, 3277)[1].sum())


def test_integer_decision_rejects_a_bad_beta():
    with pytest.raises(ValueError, match="beta_q"):
        psg_decide_int_t(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), -1)


def _update_cases():
    rng = np.random.default_rng(11)
    w = rng.integers(-MASTER_LIMIT, MASTER_LIMIT + 1, 3000).astype(np.int32)
    w[:8] = [MASTER_LIMIT, -MASTER_LIMIT, 0, 1, -1, (1 << 30) - 2, -(1 << 30) + 2, 1 << 29]
    sign = rng.integers(-1, 2, 3000).astype(np.int8)
    sign[:8] = [-1, 1, 1, -1, 1, -1, 1, 0]            # pushes past the saturation bounds
    for lr_q, wd_q in [(0, 0), (1, 0), (12345, 0), (0, 1 << 29), (1 << 20, 12345), ((1 << 30) - 1, (1 << 30) - 1),
                       (7, 1 << 10)]:
        yield w, sign, lr_q, wd_q
    # decays that land exactly on a half: w * wd_q = (2k + 1) * 2**29, negative and positive
    k = np.arange(-50, 50, dtype=np.int64)
    yield (2 * k + 1).astype(np.int32), np.zeros(100, np.int8), 0, 1 << 29


@pytest.mark.parametrize("i, case", list(enumerate(_update_cases())))
def test_sign_update_on_tensors_equals_golden(i, case):
    w, sign, lr_q, wd_q = case
    got = sign_update_t(torch.from_numpy(w), torch.from_numpy(sign.astype(np.float32)), lr_q, wd_q)
    want = golden.sign_update(w, sign, lr_q, wd_q)
    assert got.dtype == torch.int32 and np.array_equal(got.numpy(), want)
    assert DECAY_FRAC_BITS == 30


def test_device_counts_are_read_once_per_step_and_equal_the_ints():
    """The work meter turns counts a GPU backward left as device tensors into the same work
    as the ints the CPU backward leaves (here: tensors on the CPU, the same code path)."""
    torch.manual_seed(0)
    layer = PSGConv2d(3, 4, 3).train()
    meter_int, meter_t = WorkMeter(layer), WorkMeter(layer)
    for meter, as_tensor in ((meter_int, False), (meter_t, True)):
        meter.active = True
        layer.pending_wgrad = [(100, torch.tensor(40) if as_tensor else 40), (100, torch.tensor(7) if as_tensor else 7)]
        meter.collect_backward()
        assert layer.pending_wgrad == []
    assert meter_int.work.to_dict() == meter_t.work.to_dict()
    meter_int.close()
    meter_t.close()


def test_n_predicted_reads_and_resets_the_device_count():
    layer = PSGConv2d(3, 4, 3)
    layer.n_predicted = 5
    layer._n_predicted_dev = torch.tensor(7)       # what a GPU backward leaves
    assert layer.n_predicted == 12 and layer._n_predicted_dev is None
    layer.reset_stats()
    assert layer.n_predicted == 0 and layer.n_decided == 0


# --- on a CUDA device ---------------------------------------------------------------------

@CUDA
@pytest.mark.parametrize("tf32", [True, False])
@pytest.mark.parametrize("case", device_check.LAYER_CASES)
def test_exact_layer_is_bit_identical_on_cpu_and_cuda(case, tf32):
    was = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        assert device_check.differences(case) == []
    finally:
        torch.backends.cudnn.allow_tf32 = was


def test_the_device_comparison_finds_a_difference():
    """The comparison is not vacuous: two CPU runs agree, and a second run that starts from
    other weights is reported."""
    case = device_check.LAYER_CASES[1]
    assert device_check.differences(case, ("cpu", "cpu"), steps=1) == []
    calls = []
    real = device_check.run_layer

    def skewed(case, device, steps=3, seed=5, sync_free=None):
        calls.append(device)
        return real(case, device, steps, seed=seed + (len(calls) == 2))
    device_check.run_layer = skewed
    try:
        diff = device_check.differences(case, ("cpu", "cpu"), steps=1)
    finally:
        device_check.run_layer = real
    assert any("output" in d for d in diff) and any("master weights" in d for d in diff)


@CUDA
def test_integer_rules_on_cuda_equal_golden():
    for g_msb, g_exact, beta_q in _decide_cases():
        s, p, a = psg_decide_int_t(torch.from_numpy(g_msb).double().cuda(), torch.from_numpy(g_exact).double().cuda(),
                                   beta_q)
        ws, wp, wa = golden.psg_decide(g_msb, g_exact, beta_q)
        assert np.array_equal(s.cpu().numpy(), ws) and np.array_equal(p.cpu().numpy(), wp) and int(a) == wa
    for w, sign, lr_q, wd_q in _update_cases():
        got = sign_update_t(torch.from_numpy(w).cuda(), torch.from_numpy(sign.astype(np.float32)).cuda(), lr_q, wd_q)
        assert np.array_equal(got.cpu().numpy(), golden.sign_update(w, sign, lr_q, wd_q))

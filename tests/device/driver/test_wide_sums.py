"""Sums past 2^31 stay exact, through the driver and the golden models alike.

On the board's 32-bit ARM numpy's default integer is int32 (`make board-test-armv7` runs these
there): a sum taken without an explicit int64 would wrap at 2^31, and the forward's BN sums, the
weight gradient's sign, the input gradient's saturation or BN backward's reductions would come out
wrong with no error. Constant
inputs make every exact value a product that the test writes down."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2train.core import block_ops, golden
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import ConvShape

SIM_MANIFEST = Path(__file__).resolve().parents[3] / "bitstreams" / "sim"


IMPLS = ["golden model", "driver on golden", "driver on csim"]


def _impl(name, module):
    """The golden model itself, or the PYNQ driver over the simulated board running the golden
    models or the C simulation (skipped where the C simulation is not built)."""
    if name == "golden model":
        return module
    from e2train.core import csim
    from e2train.device.overlay import KernelOverlay
    sim = name.split()[-1]
    if sim == "csim" and not csim.available():
        pytest.skip("C-simulation library not built (make csim)")
    return KernelOverlay(SIM_MANIFEST, sim_impl=sim).backend()


@pytest.fixture(params=IMPLS)
def ops(request):
    return _impl(request.param, golden)


@pytest.fixture(params=IMPLS)
def block(request):
    return _impl(request.param, block_ops)


def _wraps_to(v: int) -> int:
    """What v becomes in an int32."""
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def test_weight_gradient_sign_past_2_31(ops):
    n, c, h = 2, 3, 16                               # 1x1 conv: each weight sums n*h*h = 512 terms
    x = np.full((n, c, h, h), 255, np.uint8)
    g = np.full((n, 4, h, h), -32768, np.int16)
    exact = 255 * -32768 * n * h * h                 # -4,278,190,080: an int32 sum would wrap positive
    assert _wraps_to(exact) == 16_777_216
    wm = np.zeros((4, c, 1, 1), np.int32)
    _, g_exact = golden.wgrad_terms(x, g, ConvShape.of(x, wm, 1, 0), np.arange(n))
    assert (g_exact == exact).all()
    r = ops.conv_bwd_weight_psg(x, g, wm, beta_q=0, lr_q=7)   # exact signs only
    assert (r.sign == -1).all()
    assert (r.w_master == 7).all()                   # W -= lr * sign(dW)


def test_input_gradient_past_2_31(ops):
    co, ci, h = 64, 2, 5
    g = np.full((1, co, h, h), -32768, np.int16)
    w = np.full((co, ci, 3, 3), -128, np.int8)       # each product +2^22
    out = ops.conv_bwd_data(g, w, Dyadic(1, 20), in_hw=(h, h), pad=1)
    acc_centre = (1 << 22) * co * 9                  # 2,415,919,104 > 2^31 - 1 at an inner pixel
    assert _wraps_to(acc_centre) >> 20 == -1792
    assert out[0, :, 2, 2].tolist() == [acc_centre >> 20] * ci    # 2304, exact (no rounding left)
    corner = (1 << 22) * co * 4                      # a corner sees 2x2 taps: 2^30, below 2^31
    assert out[0, :, 0, 0].tolist() == [corner >> 20] * ci


def test_bn_backward_sums_past_2_31(block):
    n, c, h = 4, 2, 16                               # a channel sums n*h*h = 1024 terms
    o = np.full((n, c, h, h), 255, np.uint8)
    y = np.full((n, c, h, h), 127, np.int8)
    g = np.full((n, c, h, h), 32767, np.int16)
    g_m, red, gate = block.bn_bwd_reduce(o, y, g)
    assert red[:, 0].tolist() == [32767 * n * h * h] * c
    assert red[:, 1].tolist() == [32767 * 127 * n * h * h] * c      # 4,260,364,288
    assert red[:, 2].tolist() == [32767] * c
    assert gate[:, 0].tolist() == [32767 * 255 * c * h * h] * n     # 4,277,893,120 per sample
    assert _wraps_to(int(red[0, 1])) < 0 and _wraps_to(int(gate[0, 0])) < 0


def test_forward_bn_sums_past_2_31(ops):
    n, h = 9, 128                                    # a channel sums n*h*h = 147,456 squares
    x = np.full((n, 1, h, h), 255, np.uint8)
    w = np.full((1, 1, 1, 1), -128, np.int8)         # every output saturates at -128
    stats = np.zeros((1, 2), np.int64)
    y = ops.conv_fwd(x, w, None, Dyadic(1, 0), stats=stats)
    assert (y == -128).all()
    sq = 128 * 128 * n * h * h                       # 2,415,919,104
    assert _wraps_to(sq) < 0
    assert stats.tolist() == [[-128 * n * h * h, sq]]

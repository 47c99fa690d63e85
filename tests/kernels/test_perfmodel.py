"""The analytic performance model: monotone in work, skipped work costs nothing, tiles from
one source (the C++ header is generated from the model)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from e2train.core import perfmodel as pm
from e2train.core.shapes import ConvShape

REPO = Path(__file__).resolve().parents[2]
RESNET = [ConvShape(16, 16, 32, 32, 16, 3, 1, 1), ConvShape(16, 32, 16, 16, 32, 3, 1, 1),
          ConvShape(16, 64, 8, 8, 64, 3, 1, 1), ConvShape(16, 16, 32, 32, 32, 3, 2, 1),
          ConvShape(16, 16, 32, 32, 32, 1, 2, 0)]


def test_header_is_generated_from_the_model():
    text = (REPO / "hls/include/e2t_tiles.h").read_text()
    assert text == pm.header_text(), "regenerate: python -m e2train.core.perfmodel --header > hls/include/e2t_tiles.h"
    defined = dict(re.findall(r"#define (E2T_\w+) (\d+)", text))
    assert {k: int(v) for k, v in defined.items()} == pm.CONSTANTS


@pytest.mark.parametrize("kernel", pm.KERNELS)
def test_cycles_monotone_in_samples_and_channels(kernel):
    for sh in RESNET:
        c = [pm.kernel_cycles(kernel, sh, n) for n in range(0, sh.n + 1, 4)]
        assert all(a < b for a, b in zip(c, c[1:])), (sh, c)
        bigger = ConvShape(sh.n, sh.ci, sh.h, sh.w, sh.co * 2, sh.k, sh.stride, sh.pad)
        assert pm.kernel_cycles(kernel, bigger, sh.n) > pm.kernel_cycles(kernel, sh, sh.n)


@pytest.mark.parametrize("kernel", pm.KERNELS)
def test_no_active_sample_costs_no_macs(kernel):
    sh = RESNET[0]
    w0 = pm.kernel_work(kernel, sh, 0)
    assert w0.total_macs == 0
    w = pm.kernel_work(kernel, sh, 3)
    assert w.total_macs > 0 and w.seconds > w0.seconds > 0


def test_mac_widths_and_counts():
    sh = RESNET[1]
    assert pm.kernel_work("conv_fwd", sh, 5).macs == {(8, 8): sh.macs(5)}
    assert pm.kernel_work("conv_bwd_data", sh, 5).macs == {(8, 16): sh.macs(5)}
    off = pm.kernel_work("conv_bwd_weight_psg", sh, 5, predictor_on=False)
    assert off.macs[(8, 16)] == sh.macs(5)          # beta_q = 0: every weight exact
    assert off.macs[(4, 10)] == sh.macs(5)          # the engine's G_msb in the one pass it runs


def test_predicted_weights_reduce_wgrad_macs_and_time():
    sh = RESNET[0]
    nw = sh.co * sh.ci * 9
    works = [pm.kernel_work("conv_bwd_weight_psg", sh, 16, p) for p in (0, nw // 2, nw)]
    full = [w.macs.get((8, 16), 0) for w in works]
    assert full == [sh.macs(16), sh.macs(16) // 2, 0]
    assert works[2].seconds < works[0].seconds       # every tile skipped in the exact pass
    # The kernel's own count of skipped tiles replaces the estimate.
    tiles = (sh.co // pm.PSG_LANES) * sh.ci * 9
    fast = pm.kernel_cycles("conv_bwd_weight_psg", sh, 16, nw // 2, n_tiles_skipped=tiles // 2)
    slow = pm.kernel_cycles("conv_bwd_weight_psg", sh, 16, nw // 2, n_tiles_skipped=0)
    assert fast < slow


def test_model_agrees_with_the_kernel_counters(csim_lib):
    """The exact-pass MACs the model charges are those the C simulation reports issuing."""
    from e2train.core import csim
    sh = ConvShape(4, 8, 6, 6, 16, 3, 1, 1)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    g = rng.integers(-3000, 3000, sh.y_shape).astype(np.int16)
    wm = np.zeros(sh.w_shape, np.int32)
    r, st = csim.conv_bwd_weight_psg_stats(x, g, wm, pad=1, beta_q=3277, lr_q=1, samples=[0, 2, 3])
    work = pm.kernel_work("conv_bwd_weight_psg", sh, 3, r.n_predicted, n_tiles_skipped=st.tiles_skipped)
    assert work.macs[(8, 16)] == st.exact_terms
    assert work.macs[(4, 10)] == st.predict_terms + st.decide_beats * pm.PSG_LANES


def test_resources_fit_xc7z020():
    r = pm.resources()
    assert r["total"]["dsp"] <= pm.XC7Z020["dsp"] == 220
    assert r["total"]["bram36"] <= pm.XC7Z020["bram36"]
    assert r["kernels"]["conv_fwd"]["dsp"] >= pm.TILE_CO * pm.TILE_CI


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown kernel"):
        pm.kernel_cycles("conv_fwd2", RESNET[0], 1)
    with pytest.raises(ValueError, match="n_active must be in"):
        pm.kernel_cycles("conv_fwd", RESNET[0], 17)
    with pytest.raises(ValueError, match="n_predicted must be in"):
        pm.kernel_work("conv_bwd_weight_psg", RESNET[0], 1, 10**9)
    with pytest.raises(ValueError, match="predictor off"):
        pm.kernel_work("conv_bwd_weight_psg", RESNET[0], 1, 5, predictor_on=False)

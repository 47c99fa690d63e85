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
    assert pm.kernel_work("conv_fwd", sh, 5).macs == {"int8xint8": sh.macs(5)}
    assert pm.kernel_work("conv_bwd_data", sh, 5).macs == {"int8xint16": sh.macs(5)}
    off = pm.kernel_work("conv_bwd_weight_psg", sh, 5, predictor_on=False)
    assert off.macs["int8xint16"] == sh.macs(5)          # beta_q = 0: every weight exact
    assert off.macs["int4xint10"] == sh.macs(5)          # the engine's G_msb in the one pass it runs


def test_predicted_weights_reduce_wgrad_macs_and_time():
    sh = RESNET[0]
    nw = sh.co * sh.ci * 9
    works = [pm.kernel_work("conv_bwd_weight_psg", sh, 16, p) for p in (0, nw // 2, nw)]
    full = [w.macs.get("int8xint16", 0) for w in works]
    assert full == [sh.macs(16), sh.macs(16) // 2, 0]
    assert works[2].seconds < works[0].seconds       # every tile skipped in the exact pass
    # The kernel's own count of blocks it did not re-read replaces the estimate.
    blocks = len(pm._psg_blocks(sh))
    fast = pm.kernel_cycles("conv_bwd_weight_psg", sh, 16, nw // 2, n_tiles_skipped=blocks // 2)
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
    work = pm.kernel_work("conv_bwd_weight_psg", sh, 3, r.n_predicted)
    assert 0 < r.n_predicted < wm.size
    assert work.macs["int8xint16"] == st.exact_terms
    assert work.macs["int4xint10"] == st.predict_terms == wm.size * st.beats_per_tile


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


# --- the weight-gradient dataflow -------------------------------------------------------

DIGITS = [ConvShape(64, 8, 8, 8, 32, 3, 1, 1), ConvShape(64, 32, 4, 4, 32, 3, 1, 1)]


def _psg_run(sh: ConvShape, beta_q: int, seed: int = 0):
    """The kernel on heavy-tailed gradients (most small, a few large, as in training), and
    the model's keyword arguments from its own counters."""
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    g = np.clip(rng.standard_t(3, sh.y_shape) * 800, -32768, 32767).astype(np.int16)
    wm = np.zeros(sh.w_shape, np.int32)
    r, st = csim.conv_bwd_weight_psg_stats(x, g, wm, stride=sh.stride, pad=sh.pad, beta_q=beta_q, lr_q=1)
    return r, st, dict(predictor_on=beta_q != 0)


@pytest.mark.parametrize("sh", DIGITS + [ConvShape(16, 16, 32, 32, 16, 3, 1, 1)], ids=str)
def test_psg_with_predicted_weights_beats_exact_sign(csim_lib, sh):
    """beta > 0 with ~40-90% of the weights predicted: fewer modelled cycles and less modelled
    board energy (static power x time included) and MAC energy than beta_q = 0 on the same
    data, and within 3x of conv_fwd's cycles on the same layer."""
    from e2train.core.energy import EnergyModel
    board = EnergyModel.zynq7020()
    r0, _, kw0 = _psg_run(sh, 0)
    c0 = pm.kernel_cycles("conv_bwd_weight_psg", sh, sh.n, 0, **kw0)
    w0 = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, 0, **kw0)
    fwd = pm.kernel_cycles("conv_fwd", sh, sh.n)
    assert c0 <= 3 * fwd
    for beta_q in (3277, 8000):
        r, st, kw = _psg_run(sh, beta_q)
        assert 0.4 <= r.n_predicted / r.sign.size <= 0.95, r.n_predicted / r.sign.size
        c = pm.kernel_cycles("conv_bwd_weight_psg", sh, sh.n, r.n_predicted, **kw)
        w = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, r.n_predicted, **kw)
        assert c < 0.9 * c0, (beta_q, c, c0)
        assert w.seconds < w0.seconds
        assert board.energy_j(w) < board.energy_j(w0)
        assert board.breakdown(w)["mac"] < board.breakdown(w0)["mac"]
        assert w.macs["int8xint16"] == st.exact_terms < w0.macs["int8xint16"]
        assert c <= 3 * fwd


@pytest.mark.parametrize("sh", DIGITS[:1] + [ConvShape(3, 5, 9, 7, 11, 3, 2, 1), ConvShape(2, 40, 4, 4, 70, 3, 1, 1)],
                         ids=str)
def test_psg_kernel_streams_the_engine_map_calls(csim_lib, sh):
    """The weight-gradient kernel's engine calls are engine_map's: with beta_q = 0 its exact
    sweep streams every block over every position (engine_map.call_beats), no block twice;
    with beta_q > 0 the predictor sweep covers every weight once and the exact sweep only
    the undecided weights' cells, in calls of whole blocks."""
    from e2train.core import engine_map as em
    _, st, _ = _psg_run(sh, 0)
    calls = em.call_beats("wgrad", sh)
    assert st.decide_beats == sum(n * b for n, b in calls)
    assert st.exact_terms == sh.co * sh.ci * sh.k * sh.k * st.beats_per_tile and st.predict_terms == 0
    blocks = -(-sh.co // em.ROWS) * -(-(sh.ci * sh.k * sh.k) // em.COLS)
    assert st.tiles_skipped == blocks
    r, st, _ = _psg_run(sh, 8000)
    assert st.predict_terms == r.sign.size * st.beats_per_tile
    assert st.exact_terms == (r.sign.size - r.n_predicted) * st.beats_per_tile
    assert st.decide_beats == (blocks - st.tiles_skipped) * st.beats_per_tile


@pytest.mark.parametrize("sh", DIGITS + RESNET, ids=str)
def test_psg_cycles_monotone_in_the_work_left(sh):
    nw = sh.co * sh.ci * sh.k * sh.k
    blocks = len(pm._psg_blocks(sh))
    c = [pm.kernel_cycles("conv_bwd_weight_psg", sh, sh.n, p) for p in np.linspace(0, nw, 9).astype(int)]
    assert all(a >= b for a, b in zip(c, c[1:])), c
    # Fewer blocks re-read (the same exact rounds): fewer DRAM bytes, never more cycles.
    most = sum(-(-nb // pm.PSG_EXACT_LANES) for nb in (tco * tci * sh.k * sh.k for tco, tci in pm._psg_blocks(sh)))
    w = [pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, nw // 2, n_tiles_skipped=s, n_exact_rounds=most)
         for s in range(blocks)]
    assert all(a.dram_bytes > b.dram_bytes and a.seconds >= b.seconds for a, b in zip(w, w[1:]))
    c = [pm.kernel_cycles("conv_bwd_weight_psg", sh, sh.n, nw // 2, n_tiles_skipped=0, n_exact_rounds=r)
         for r in range(blocks, most + 1)]
    assert all(a <= b for a, b in zip(c, c[1:])) and c[0] < c[-1], c   # rounds may hide under loads


@pytest.mark.parametrize("sh", [DIGITS[0], RESNET[0]], ids=str)
def test_psg_skipped_blocks_cost_nothing_in_pass_b(sh):
    """A block not re-read costs no DRAM bytes and no rounds: one more re-read block adds
    exactly its staged x and g planes (and its state bytes) and its rounds' cycles."""
    nw = sh.co * sh.ci * 9
    blocks = len(pm._psg_blocks(sh))
    tco, tci = pm._psg_blocks(sh)[0]
    staged = sh.n * (tci * sh.h * sh.w + 2 * tco * sh.ho * sh.wo)     # pad 1, stride 1: every row
    rounds = blocks * 3
    for skipped in range(1, blocks):
        fewer = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, nw // 2, n_tiles_skipped=skipped, n_exact_rounds=rounds)
        more = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, nw // 2, n_tiles_skipped=skipped - 1, n_exact_rounds=rounds)
        assert more.dram_bytes - fewer.dram_bytes == staged + 3 * tco * tci * 9
        assert more.seconds >= fewer.seconds
    # Every weight decided by the predictor: no exact MAC, no block re-read, and less time
    # than with a block to re-read.
    none = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, nw, n_tiles_skipped=blocks, n_exact_rounds=0)
    one = pm.kernel_work("conv_bwd_weight_psg", sh, sh.n, nw - 1, n_tiles_skipped=blocks - 1, n_exact_rounds=1)
    assert none.macs.get("int8xint16", 0) == 0 and one.macs["int8xint16"] == sh.n * sh.ho * sh.wo
    assert one.dram_bytes - none.dram_bytes == staged + 3 * tco * tci * 9
    assert none.seconds < one.seconds
    # Undecided weights but every block skipped: a layer of several chunks cannot do that.
    if len(pm._psg_chunks(sh, sh.n)) > 1:
        with pytest.raises(ValueError, match="re-read"):
            pm.kernel_cycles("conv_bwd_weight_psg", sh, sh.n, nw // 2, n_tiles_skipped=blocks)


def test_psg_chunks_cover_every_beat_once():
    for sh in DIGITS + RESNET + [ConvShape(2, 3, 70, 66, 5, 3, 1, 1), ConvShape(2, 9, 700, 700, 10, 3, 2, 1)]:
        chunks = pm._psg_chunks(sh, sh.n)
        assert sum(c[0] for c in chunks) == sh.n * sh.ho * sh.wo
        assert all(c[1] <= pm.PSG_CHUNK and c[2] <= 2 * pm.PSG_CHUNK for c in chunks)


def test_psg_resources_fit_beside_the_conv_arrays():
    r = pm.resources()
    wg = r["kernels"]["conv_bwd_weight_psg"]
    assert wg["dsp"] == pm.PSG_EXACT_LANES + 4
    assert r["total"]["dsp"] <= pm.XC7Z020["dsp"] and r["total"]["bram36"] <= pm.XC7Z020["bram36"]
    assert r["fits"]["dsp"] and r["fits"]["bram36"]


def test_psg_lut_estimate_follows_the_rtl_report_and_says_whether_it_fits():
    """The LUT figure is the yosys report's per-lane cost, and the fit flag is computed, not set."""
    r = pm.resources()
    wg = r["kernels"]["conv_bwd_weight_psg"]
    # the two synthesised sizes of the retired lane array: 48 exact lanes; 48 exact + 48 predictor
    assert 48 * pm.LUT_PER_EXACT_LANE == pytest.approx(27267, rel=0.01)
    assert 48 * (pm.LUT_PER_EXACT_LANE + pm.LUT_PER_PREDICTOR_LANE) == pytest.approx(46629, rel=0.01)
    assert wg["lut"] == (pm.LUT_PER_EXACT_LANE * pm.PSG_EXACT_LANES
                         + pm.LUT_PER_PREDICTOR_LANE * (pm.PSG_PRED_LANES - pm.PSG_EXACT_LANES))
    assert r["fits"]["wgrad_lut"] == (wg["lut"] <= pm.XC7Z020["lut"])
    assert pm.PSG_PRED_LANES > pm.PSG_EXACT_LANES     # the LUT predictor array is the wider one

"""The forward's x buffer: the HLS source stages each block's x rows on chip and feeds the engine
only from there, and the model prices what it stages.

The C simulation counts what the stager reads from DDR and its loop trips, per call and in the
prologue (``core.csim.fwd_staging``); ``engine_map.fwd_staging`` is the model's account of the
same pass, from which ``perfmodel`` takes the forward's DDR bytes and cycles. They must agree to
the byte and the trip on every layout: 3x3 and 1x1, stride 1 and 2, rows wider and narrower than
a block, one-column images (three slots), sample lists, several output-channel tiles a block,
groups of tiles (the weight buffer) and channel steps (the x buffer). With the checks on
(``csim.staging_check``), the stager runs its trip loop (the code Vitis HLS builds), and every
position's read must find the code the stager wrote for its own segment and step in the bank
and entry the layout names (the argument in hls/include/e2t_passes.h); the C simulation's fast
copies must give the same beats. Either way the result is golden's, bit for bit.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from e2train.core import engine_map as em
from e2train.core import golden, perfmodel
from e2train.core.fixedpoint import Dyadic
from e2train.core.shapes import MAX_TAPS, ConvShape

REPO = Path(__file__).resolve().parents[2]

CASES = [
    (ConvShape(4, 16, 32, 32, 16, 3, 1, 1), [3, 0, 2]),   # rows of 32: two segments a block, two tiles
    (ConvShape(2, 16, 32, 32, 32, 3, 2, 1), None),        # stride 2: two phases, four tiles a block
    (ConvShape(3, 8, 8, 8, 8, 3, 1, 1), [1, 2]),          # rows of 8: five or six segments a block
    (ConvShape(40, 4, 1, 1, 8, 3, 1, 1), None),           # one column: 36 segments a block, three slots
    (ConvShape(2, 6, 5, 7, 9, 1, 2, 0), None),            # 1x1 stride 2: one phase read of two
    (ConvShape(2, 200, 8, 8, 8, 3, 1, 1), None),          # 200 channels: two channel steps (170 fit)
    (ConvShape(2, 3, 9, 9, 20, 3, 2, 1), [1]),            # the image's layer: three tiles, a ragged one
    (ConvShape(3, 64, 8, 8, 80, 3, 1, 1), None),          # 10 tiles of 576 taps: groups of 8 and 2 (weights)
    (ConvShape(2, 120, 3, 2, 8, 3, 2, 1), None),          # stride 2 on a two-column image
    (ConvShape(4, 5, 2, 1, 3, 3, 1, 1), [3, 1, 0, 2]),    # one column, stride 1, a shuffled list
    (ConvShape(3, 7, 4, 4, 5, 3, 1, 1), []),              # no sample: the weights' sums loop alone
]


def _run(sh: ConvShape, samples, seed: int, check: bool):
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, sh.x_shape).astype(np.uint8)
    w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
    b = rng.integers(-5000, 5000, sh.co).astype(np.int32)
    kw = dict(stride=sh.stride, pad=sh.pad, relu=bool(seed % 2), samples=samples)
    m = Dyadic.from_float(0.002)
    stats, w_sums = np.zeros((sh.co, 2), np.int64), np.full(sh.ci, -1, np.int64)
    csim.staging_check(check)
    try:
        got = csim.conv_fwd(x, w, b, m, stats=stats, w_sums=w_sums, **kw)
        counters = csim.fwd_staging()
    finally:
        csim.staging_check(False)
    want_stats, want_sums = np.zeros((sh.co, 2), np.int64), np.zeros(sh.ci, np.int64)
    want = golden.conv_fwd(x, w, b, m, stats=want_stats, w_sums=want_sums, **kw)
    assert np.array_equal(got, want) and np.array_equal(stats, want_stats)
    assert np.array_equal(w_sums, want_sums)        # the weight load's sums of |w| per input channel
    return counters


@pytest.mark.parametrize("i", range(len(CASES)))
def test_the_stagers_traffic_and_trips_are_the_models(csim_lib, i):
    sh, samples = CASES[i]
    n = len(samples) if samples is not None else sh.n
    m = em.fwd_staging(sh, n)
    for check in (True, False):                  # the trip loop and the C simulation's copies
        c = _run(sh, samples, i, check)
        assert c.bank_misses == 0
        assert (c.x_bytes, c.trips, c.prologue) == (m["x_bytes"], m["trips"], m["prologue"])
        assert (c.staging_calls, c.call_trips) == (m["staging_calls"], m["call_trips"])
        assert (c.w_trips, c.chan_cycles) == (em.weight_load_trips("fwd", sh, n),
                                              perfmodel.fwd_channel_cycles(sh, True) + perfmodel.fwd_w_sums_cycles(sh, n))
        assert c.out_trips == m["out_trips"]
    assert perfmodel.fwd_ddr(sh, n) == c.x_bytes + n * sh.co * sh.ho * sh.wo + sh.co * sh.ci * sh.k * sh.k
    # every input row inside the image is read at least once for every output row that reaches it
    assert c.x_bytes >= n * sh.ci * sh.h * sh.w * (sh.k == 3) // max(1, sh.h)


def test_the_cases_cover_the_layouts_they_name():
    """Each case above is the layout its comment names (a guard against a silent change of the plan)."""
    slots = [em.fwd_slots(sh) for sh, _ in CASES]
    assert slots == [2, 2, 2, 4, 1, 2, 2, 2, 2, 4, 2]
    assert [em.fwd_step_channels(sh) for sh, _ in CASES][5] == 170
    steps = [em.fwd_steps(sh, len(s) if s is not None else None) for sh, s in CASES]
    assert {st["calls"] for st in steps[0]} == {2} and {st["calls"] for st in steps[1]} == {4}
    assert {st["nch"] for st in steps[5]} == {170, 30}
    tiles = MAX_TAPS // (64 * 9)                                # 8 tiles' weights fit
    assert [st["calls"] for st in steps[7]][:1] == [tiles] and steps[7][-1]["calls"] == 10 - tiles
    assert max(len(st["segs"]) for st in steps[3]) == 36 and len(steps[0][0]["segs"]) == 2


def test_the_x_buffer_declared_is_the_one_the_model_prices():
    """The constants of hls/include/e2t_passes.h are engine_map's; the top declares the buffer
    as 38 byte banks of two halves (a RAMB18 of 2K x 9 each: 19 BRAM36, fpga/fit.py); the
    feeder is handed the buffer and no DDR pointer."""
    src = (REPO / "hls" / "include" / "e2t_passes.h").read_text()
    const = {k: v for k, v in re.findall(r"constexpr int (XF_\w+|STAGE_CODES) = ([^;]+);", src)}
    assert const == {"XF_BANKS": "NPOS + 2", "XF_WORDS": str(em.FWD_X_WORDS), "STAGE_CODES": str(em.FWD_STAGE_CODES)}
    assert em.FWD_X_BANKS == 2 * em.COLS + 2
    top = (REPO / "hls" / "src" / "e2t_engine.cpp").read_text()
    assert "uint8_t xf[2 * e2t::fwd::XF_WORDS][e2t::fwd::XF_BANKS]" in top
    assert "ARRAY_PARTITION variable=xf complete dim=2" in top
    assert perfmodel.fwd_bram36() == 19
    decl = re.search(r"void feed\(psg::stream<eng::Beat> &in, const Span &sp[^;]*;", src).group(0)
    assert "uint8_t *" not in decl and "int16_t *" not in decl


def test_the_channels_a_step_holds_fill_the_buffer():
    """A channel takes k * phases * slots entries of each bank's half; a step holds as many as fit,
    and the channel steps of a wide layer split its calls' beats (call_beats)."""
    for sh in (ConvShape(1, 512, 8, 8, 8, 3, 1, 1), ConvShape(1, 300, 8, 8, 8, 3, 2, 1),
               ConvShape(1, 1024, 4, 4, 4, 1, 2, 0), ConvShape(1, 400, 9, 1, 8, 3, 1, 1)):
        per = sh.k * em.fwd_phases(sh) * em.fwd_slots(sh)
        c = em.fwd_step_channels(sh)
        assert c * per <= em.FWD_X_WORDS < (c + 1) * per or c == sh.ci
        st = em.fwd_staging(sh)
        assert sum(n for n, _ in em.call_beats("fwd", sh)) == len(st["per_call"])
        assert sorted(b for n, b in em.call_beats("fwd", sh) for _ in range(n)) == sorted(st["per_call_beats"])


def test_the_forward_hides_its_staging_under_the_calls_and_its_output_stage_where_inputs_are_wide():
    """Each call lasts the longest of its beats, its stager's share of the next step and its output
    stage's trips (the (block, tile) before: 8 row reads and 36 positions a row, a position a
    cycle). On the ResNet-20 CIFAR layers the staging hides under the calls everywhere; the output
    stage hides where a call has at least 288 beats (32 input channels or more) and sets the pace
    of the 16-channel inputs (296 trips against 144 + 8 cycles) and of the image's layer."""
    over, out = {}, {}
    for name, sh in perfmodel.resnet20_cifar(64):
        st = em.fwd_staging(sh)
        flush = max(em.ROWS + em.HLS_CALL_OVERHEAD, st["flush_out"])
        calls = sum(max(b + em.HLS_CALL_OVERHEAD, o) for b, o in zip(st["per_call_beats"], st["per_call_out"]))
        assert perfmodel.fwd_sweep_cycles(sh, sh.n) == st["prologue"] + flush + sum(
            max(b + em.HLS_CALL_OVERHEAD, t, o) for b, t, o in zip(st["per_call_beats"], st["per_call"], st["per_call_out"]))
        over[name] = perfmodel.fwd_sweep_cycles(sh, sh.n) / (st["prologue"] + flush + calls)
        out[name] = calls / sum(b + em.HLS_CALL_OVERHEAD for b in st["per_call_beats"])
        assert max(st["per_call_out"]) == em.ROWS + em.ROWS * 2 * em.COLS
    assert all(v < 1.01 for v in over.values())
    assert all(out[k] > 1.9 for k, (_, sh) in zip(out, perfmodel.resnet20_cifar(64)) if sh.ci <= 16)
    assert all(out[k] == 1.0 for k, (_, sh) in zip(out, perfmodel.resnet20_cifar(64)) if sh.ci >= 32)


"""The input gradient's g buffer: the HLS source stages each phase block's g_y rows on chip and
feeds the engine only from there, and the model prices what it stages.

As the forward's x buffer (tests/kernels/test_fwd_staging.py): the C simulation's counters
(``core.csim.bwd_staging``) equal ``engine_map.bwd_staging`` to the byte and the trip on every
layout (3x3 and 1x1, stride 1 and 2 with their phases, one-column phases, rows wider and
narrower than a block, sample lists, several input-channel tiles a block, groups of tiles by the
weight buffer, output-channel steps by the g buffer); with the checks on the stager runs its
trip loop and every read finds the code its own segment and step wrote; the result is golden's.
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
    (ConvShape(2, 16, 32, 32, 32, 3, 2, 1), None),        # stride 2: four phases of 1, 2 and 4 taps
    (ConvShape(3, 8, 8, 8, 8, 3, 1, 1), [1, 2]),          # rows of 8: three segments a block
    (ConvShape(40, 4, 1, 1, 8, 3, 1, 1), None),           # one column: a segment a position, four slots
    (ConvShape(2, 6, 5, 7, 9, 1, 2, 0), None),            # 1x1 stride 2: three phases without taps (zeros)
    (ConvShape(2, 8, 8, 8, 200, 3, 1, 1), None),          # 200 output channels: two channel steps (85 fit)
    (ConvShape(2, 20, 9, 9, 3, 3, 2, 1), [1]),            # the image's layer: three tiles, a ragged one
    (ConvShape(3, 80, 8, 8, 64, 3, 1, 1), None),          # 10 tiles of 576 rows: groups of 8 and 2
    (ConvShape(2, 8, 3, 2, 120, 3, 2, 1), None),          # stride 2 on a two-column input
    (ConvShape(4, 3, 2, 1, 5, 3, 1, 1), [3, 1, 0, 2]),    # one column, a shuffled list
]


def _run(sh: ConvShape, samples, seed: int, check: bool):
    from e2train.core import csim
    rng = np.random.default_rng(seed)
    g = rng.integers(-4000, 4000, sh.y_shape).astype(np.int16)
    w = rng.integers(-128, 128, sh.w_shape).astype(np.int8)
    m = Dyadic.from_float(0.01)
    kw = dict(in_hw=(sh.h, sh.w), stride=sh.stride, pad=sh.pad, samples=samples)
    csim.staging_check(check)
    try:
        got = csim.conv_bwd_data(g, w, m, **kw)
        counters = csim.bwd_staging()
    finally:
        csim.staging_check(False)
    assert np.array_equal(got, golden.conv_bwd_data(g, w, m, **kw))
    return counters


@pytest.mark.parametrize("i", range(len(CASES)))
def test_the_stagers_traffic_and_trips_are_the_models(csim_lib, i):
    sh, samples = CASES[i]
    n = len(samples) if samples is not None else sh.n
    m = em.bwd_staging(sh, n)
    for check in (True, False):                  # the trip loop and the C simulation's copies
        c = _run(sh, samples, i, check)
        assert c.bank_misses == 0
        assert (c.x_bytes, c.trips, c.prologue) == (m["x_bytes"], m["trips"], m["prologue"])
        assert (c.staging_calls, c.call_trips) == (m["staging_calls"], m["call_trips"])
        assert (c.w_trips, c.chan_cycles) == (em.weight_load_trips("bwd_data", sh, n), 0)
        assert c.zero_trips == em.bwd_zero_trips(sh, n) and (c.zero_trips > 0) == (i == 4)   # case 4: 1x1 stride 2
        assert c.out_trips == m["out_trips"]
    assert perfmodel.bwd_ddr(sh, n) == c.x_bytes + 2 * n * sh.ci * sh.h * sh.w + sh.co * sh.ci * sh.k * sh.k


def test_the_cases_cover_the_layouts_they_name():
    """Each case above is the layout its comment names (a guard against a silent change of the plan)."""
    phases = [em.bwd_phases(sh) for sh, _ in CASES]
    assert sorted(f["taps"] for f in phases[1]) == [1, 2, 2, 4]
    assert [f["taps"] for f in phases[4]].count(0) == 3
    assert em.bwd_slots(phases[3][0]) == 4 and em.bwd_step_channels(CASES[5][0], phases[5][0]) == 85
    steps = [em.bwd_steps(sh, len(s) if s is not None else None) for sh, s in CASES]
    assert {st["calls"] for st in steps[0]} == {2} and {st["nco"] for st in steps[5]} == {85, 30}
    tiles = MAX_TAPS // (64 * 9)
    assert steps[7][0]["calls"] == tiles and steps[7][-1]["calls"] == 10 - tiles
    assert len(steps[2][0]["segs"]) == 3 and max(len(st["segs"]) for st in steps[3]) == em.COLS


def test_the_g_buffer_declared_is_the_one_the_model_prices():
    """The constants of hls/include/e2t_passes.h are engine_map's; the top declares 20 int16 banks of
    two halves (a RAMB18 of 1K x 18 each: 10 BRAM36, fpga/fit.py); the feeder takes no DDR pointer."""
    src = (REPO / "hls" / "include" / "e2t_passes.h").read_text()
    const = {k: v for k, v in re.findall(r"constexpr int (GB_\w+) = ([^;]+);", src)}
    assert const == {"GB_BANKS": "C + 2", "GB_WORDS": str(em.BWD_G_WORDS), "GB_STAGE": str(em.BWD_STAGE_CODES)}
    assert em.BWD_G_BANKS == em.COLS + 2
    top = (REPO / "hls" / "src" / "e2t_engine.cpp").read_text()
    assert "int16_t gb[2 * e2t::bwd::GB_WORDS][e2t::bwd::GB_BANKS]" in top
    assert "ARRAY_PARTITION variable=gb complete dim=2" in top
    assert perfmodel.bwd_bram36() == 10
    decl = re.search(r"void feed\(psg::stream<eng::Beat> &in, const Span &sp, const int16_t gb[^;]*;", src).group(0)
    assert "int16_t *" not in decl and "uint8_t *" not in decl


def test_call_beats_split_by_the_channel_steps():
    """The output-channel steps of a wide layer split its calls' beats (call_beats), phase by phase."""
    for sh in (ConvShape(1, 8, 8, 8, 512, 3, 1, 1), ConvShape(1, 8, 8, 8, 300, 3, 2, 1), ConvShape(2, 16, 6, 6, 40, 1, 2, 0)):
        st = em.bwd_staging(sh)
        assert sum(n for n, _ in em.call_beats("bwd_data", sh)) == len(st["per_call"])
        assert sorted(b for n, b in em.call_beats("bwd_data", sh) for _ in range(n)) == sorted(st["per_call_beats"])


def test_the_input_gradient_is_set_by_its_stager_where_a_phase_has_few_taps():
    """Each call lasts the longest of its beats, its stager's share of the next step and its output
    stage's trips (the (block, tile) before, a position a cycle). On the ResNet-20 CIFAR layers the
    staging hides under the calls of every stride-1 layer; the stride-2 layers' phases of one or
    two taps stage as many g rows as the others for fewer beats, so their stager sets the pace
    beyond their output stage."""
    over = {}
    for name, sh in perfmodel.resnet20_cifar(64):
        if name == "conv1":
            continue
        st = em.bwd_staging(sh)
        flush = max(em.ROWS + em.HLS_CALL_OVERHEAD, st["flush_out"])
        calls = sum(max(b + em.HLS_CALL_OVERHEAD, o) for b, o in zip(st["per_call_beats"], st["per_call_out"]))
        assert perfmodel.bwd_sweep_cycles(sh, sh.n) == st["prologue"] + flush + sum(
            max(b + em.HLS_CALL_OVERHEAD, t, o) for b, t, o in zip(st["per_call_beats"], st["per_call"], st["per_call_out"]))
        over[name] = (perfmodel.bwd_sweep_cycles(sh, sh.n) / (st["prologue"] + flush + calls), sh.stride)
    assert all(v < 1.01 for v, s in over.values() if s == 1)
    assert over["s2b0c1"][0] > 1.08 and over["s3b0c1"][0] > 1.03

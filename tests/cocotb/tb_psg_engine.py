"""cocotb tests of fpga/rtl/psg_engine.v against the golden model (run by test_psg_engine.py).

Environment (set by the pytest runner): PSG_LANES, PSG_MAX_BEATS_LOG2 (the build's
parameters), PSG_SIM (simulator name, for messages), PSG_SEED.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from psg_bus import Call, Engine, clock_and_reset, u
from psg_model import Expected, confident_mask, expected_tile

LANES = int(os.environ.get("PSG_LANES", "8"))
MAX_BEATS_LOG2 = int(os.environ.get("PSG_MAX_BEATS_LOG2", "24"))
SIM = os.environ.get("PSG_SIM", "?")
SEED = int(os.environ.get("PSG_SEED", "1"))


async def setup(dut, idle_prob=0.0, ready_prob=1.0, seed=SEED) -> Engine:
    rng = random.Random(seed)
    eng = Engine(dut, LANES, rng, idle_prob, ready_prob)
    await clock_and_reset(dut)
    cocotb.start_soon(eng.sink.run())
    return eng


def random_tile(rng: np.random.Generator, beats: int, x_unsigned: bool, g_scale: int = 32768):
    if x_unsigned:
        x = rng.integers(0, 256, (beats, LANES)).astype(np.uint8)
    else:
        x = rng.integers(-128, 128, (beats, LANES)).astype(np.int8)
    g = np.clip(rng.normal(0, g_scale / 3, (beats, LANES)), -32768, 32767).astype(np.int16)
    # A per-lane bias makes some lanes' sums large and others near zero, so that both the
    # predicted and the exact paths are exercised.
    g = np.clip(g.astype(np.int32) + rng.integers(-g_scale // 8, g_scale // 8, LANES), -32768, 32767).astype(np.int16)
    return x, g


def check(what: str, exp: Expected, got, *, exact_lanes=None) -> None:
    """Compare lane by lane; the message names simulator, tile, lane, expected and got."""
    problems = []
    for l in range(LANES):
        for name, e, g in (("G_msb", exp.g_msb[l], got.g_msb[l]), ("sign", exp.sign[l], got.sign[l]),
                           ("predicted", exp.pred[l], got.pred[l]),
                           ("incomplete", exp.incomplete[l], got.incomplete[l])):
            if int(e) != int(g):
                problems.append(f"lane {l} {name}: expected {int(e)}, got {int(g)}")
        if exact_lanes is not None and (exact_lanes >> l) & 1 and int(exp.g_exact[l]) != int(got.g_exact[l]):
            problems.append(f"lane {l} exact sum: expected {int(exp.g_exact[l])}, got {int(got.g_exact[l])}")
    if got.overflow:
        problems.append("overflow flag set on a tile within the length limit")
    assert not problems, f"[{SIM}] {what}: " + "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else "")


async def run_layer(eng: Engine, rng: np.random.Generator, tiles: int, x_unsigned: bool, beta_q: int,
                    max_beats: int, label: str) -> tuple[int, int]:
    """Predict pass then decide pass over a layer of random tiles; returns (lanes, predicted)."""
    data = [random_tile(rng, int(rng.integers(1, max_beats + 1)), x_unsigned) for _ in range(tiles)]
    gmsb = []
    for t, (x, g) in enumerate(data):
        got, _ = await eng.call(Call(decide=False, x_unsigned=x_unsigned), x, g)
        check(f"{label} tile {t} predict pass ({x.shape[0]} beats)", expected_tile(x, g, decide=False), got)
        gmsb.append(got.g_msb)
    gmax = int(max(np.abs(m).max() for m in gmsb))
    n_pred = 0
    for t, (x, g) in enumerate(data):
        corr_en = ((1 << LANES) - 1) & ~confident_mask(gmsb[t], beta_q, gmax)
        c = Call(decide=True, x_unsigned=x_unsigned, corr_en=corr_en, beta_q=beta_q, gmsb_absmax=gmax)
        got, _ = await eng.call(c, x, g)
        exp = expected_tile(x, g, decide=True, beta_q=beta_q, gmsb_absmax=gmax, corr_en=corr_en)
        check(f"{label} tile {t} decide pass (beta_q {beta_q}, max|G_msb| {gmax}, corr_en {corr_en:#x})",
              exp, got, exact_lanes=corr_en)
        assert not exp.incomplete.any()
        n_pred += int(got.pred.sum())
    return tiles * LANES, n_pred


@cocotb.test()
async def random_layers_vs_golden(dut):
    """Random layers (uint8 and int8 x), random idle cycles and back-pressure, both passes."""
    eng = await setup(dut, idle_prob=0.3, ready_prob=0.5)
    rng = np.random.default_rng(SEED)
    total = pred = 0
    for layer, (xu, beta_q) in enumerate([(True, 3277), (False, 3277), (True, 19661)]):
        n, p = await run_layer(eng, rng, tiles=4, x_unsigned=xu, beta_q=beta_q, max_beats=24,
                               label=f"layer {layer} ({'uint8' if xu else 'int8'} x)")
        total, pred = total + n, pred + p
    assert 0 < pred < total, f"[{SIM}] the random layers never exercised both paths ({pred}/{total} predicted)"
    assert not eng.sink.errors, f"[{SIM}] " + "; ".join(eng.sink.errors[:3])


@cocotb.test()
async def skipped_lanes_do_not_compute(dut):
    """Lanes with corr_en clear never clock their exact path; enabled lanes do so once per beat."""
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 1)
    x, g = random_tile(rng, 20, True)
    corr_en = 0b0101_0110 & ((1 << LANES) - 1) or 1
    active = [0] * LANES

    async def count():
        while True:
            await RisingEdge(dut.ap_clk)
            await ReadOnly()
            for l in range(LANES):
                # c1 and c2 are the exact path's clock enables (stages 2 and 3).
                active[l] += u(dut.lane[l].u_lane.c1)

    counter = cocotb.start_soon(count())
    gmax = (1 << 47) - 1     # nothing is confident: every lane needs its exact sum
    got, _ = await eng.call(Call(True, True, corr_en, 3277, gmax), x, g)
    counter.cancel()
    exp = expected_tile(x, g, decide=True, beta_q=3277, gmsb_absmax=gmax, corr_en=corr_en)
    check("partial corr_en tile", exp, got, exact_lanes=corr_en)
    for l in range(LANES):
        on = (corr_en >> l) & 1
        assert active[l] == (x.shape[0] if on else 0), \
            f"[{SIM}] lane {l} (corr_en {on}): exact path clocked {active[l]} times for {x.shape[0]} beats"
        if not on:
            assert got.g_exact[l] == 0, f"[{SIM}] lane {l}: exact accumulator moved ({got.g_exact[l]}) with corr_en clear"
            assert got.incomplete[l] and got.sign[l] == 0, f"[{SIM}] lane {l}: not flagged incomplete"
    # The predict pass runs no exact path at all.
    active[:] = [0] * LANES
    counter = cocotb.start_soon(count())
    await eng.call(Call(False, True, (1 << LANES) - 1), x, g)
    counter.cancel()
    assert sum(active) == 0, f"[{SIM}] predict pass clocked the exact path {sum(active)} times"


@cocotb.test()
async def extreme_values(dut):
    """x 0/255 and -128/127, g -32768/32767, codes at the rounding and saturation edges."""
    eng = await setup(dut, idle_prob=0.2, ready_prob=0.7)
    rng = np.random.default_rng(SEED + 2)
    edges_u = np.array([0, 255, 254, 248, 247, 7, 8, 9, 23, 24, 128, 127], np.int64)
    edges_s = np.array([-128, 127, -127, 126, -8, -9, 7, 8, 119, 120, -121, 0], np.int64)
    edges_g = np.array([-32768, 32767, 32736, 32735, -32736, -32737, -32, -33, 31, 32, 0, 1, -1, 95, 96], np.int64)
    for xu, edges_x in ((True, edges_u), (False, edges_s)):
        dt = np.uint8 if xu else np.int8
        tiles = []
        for corner in ((edges_x.max(), 32767), (edges_x.max(), -32768), (edges_x.min(), -32768), (edges_x.min(), 32767)):
            tiles.append((np.full((16, LANES), corner[0]).astype(dt), np.full((16, LANES), corner[1], np.int16)))
        for _ in range(3):
            tiles.append((rng.choice(edges_x, (12, LANES)).astype(dt), rng.choice(edges_g, (12, LANES)).astype(np.int16)))
        for t, (x, g) in enumerate(tiles):
            what = f"{'uint8' if xu else 'int8'} extreme tile {t}"
            got, _ = await eng.call(Call(False, xu), x, g)
            check(what + " predict", expected_tile(x, g, decide=False), got)
            all_on = (1 << LANES) - 1
            gmax = max(int(np.abs(got.g_msb).max()), 1)
            got, _ = await eng.call(Call(True, xu, all_on, 65536, gmax), x, g)
            check(what + " decide, beta 1", expected_tile(x, g, decide=True, beta_q=65536, gmsb_absmax=gmax,
                                                          corr_en=all_on), got, exact_lanes=all_on)


@cocotb.test()
async def threshold_edges(dut):
    """beta_q 0 (predictor off), tau above every |G_msb|, and the smallest beta."""
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 3)
    x, g = random_tile(rng, 18, True)
    all_on = (1 << LANES) - 1
    ref = expected_tile(x, g, decide=False)
    tile_max = int(np.abs(ref.g_msb).max())
    cases = [
        ("beta_q 0", 0, tile_max),
        ("tau above every |G_msb|", 65536, (1 << 47) - 1),
        ("tau just above the tile max", 65536, tile_max + 1),
        ("tau equal to the tile max", 65536, tile_max),
        ("smallest beta", 1, tile_max),
    ]
    for what, beta_q, gmax in cases:
        got, _ = await eng.call(Call(True, True, all_on, beta_q, gmax), x, g)
        exp = expected_tile(x, g, decide=True, beta_q=beta_q, gmsb_absmax=gmax, corr_en=all_on)
        check(what, exp, got, exact_lanes=all_on)
        if beta_q == 0 or gmax > tile_max:
            assert not got.pred.any(), f"[{SIM}] {what}: lanes predicted {np.flatnonzero(got.pred)}"
    # All G_msb zero (x codes below 8 round to x_h = 0): tau = 0, still nothing predicted.
    xz = rng.integers(0, 8, (10, LANES)).astype(np.uint8)
    got, _ = await eng.call(Call(True, True, all_on, 3277, 0), xz, g[:10])
    check("all-zero predictor", expected_tile(xz, g[:10], decide=True, beta_q=3277, gmsb_absmax=0,
                                              corr_en=all_on), got, exact_lanes=all_on)
    assert not got.pred.any()


@cocotb.test()
async def reset_in_the_middle_of_a_tile(dut):
    """ap_rst mid-tile abandons it: idle, no result beat; the next tile starts from zero."""
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 4)
    x, g = random_tile(rng, 30, False)
    dut.mode.value = 0
    dut.x_unsigned.value = 0
    dut.ap_start.value = 1
    sender = cocotb.start_soon(eng.src.send(x, g))
    for _ in range(12):
        await RisingEdge(dut.ap_clk)
    dut.ap_start.value = 0
    dut.ap_rst.value = 1
    await RisingEdge(dut.ap_clk)
    await RisingEdge(dut.ap_clk)
    dut.ap_rst.value = 0
    sender.cancel()
    dut.s_valid.value = 0
    for _ in range(30):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        assert u(dut.ap_idle) == 1, f"[{SIM}] engine not idle after reset"
        assert u(dut.m_valid) == 0 and u(dut.ap_done) == 0, f"[{SIM}] result or ap_done after reset"
    assert not eng.sink.results, f"[{SIM}] a result beat came out of an abandoned tile"
    x2, g2 = random_tile(rng, 9, True)
    got, _ = await eng.call(Call(False, True), x2, g2)
    check("tile after a reset", expected_tile(x2, g2, decide=False), got)


@cocotb.test()
async def full_throughput(dut):
    """No idle cycles, no back-pressure: one beat per clock, fixed latency (a cycle count)."""
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 5)
    beats = min(200, 1 << MAX_BEATS_LOG2)
    x, g = random_tile(rng, beats, True)
    got, cycles = await eng.call(Call(False, True), x, g)
    check("throughput tile", expected_tile(x, g, decide=False), got)
    # 1 start cycle + beats + 3 pipeline/decision + 1 output + 1 done
    latency = 6
    assert cycles <= beats + latency, f"[{SIM}] {beats} beats took {cycles} cycles (ideal {beats} + {latency})"
    dut._log.info("[%s] %d beats x %d lanes in %d cycles: %.3f pairs/lane/cycle", SIM, beats, LANES,
                  cycles, beats / cycles)


@cocotb.test()
async def control_protocol(dut):
    """ap_ctrl_chain: ap_done held until ap_continue; ap_ready only in the idle state."""
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 6)
    x, g = random_tile(rng, 5, True)
    bad_ready = []

    async def watch_ready():
        while True:
            await RisingEdge(dut.ap_clk)
            await ReadOnly()
            if u(dut.ap_ready) and not u(dut.ap_idle):
                bad_ready.append(1)

    watcher = cocotb.start_soon(watch_ready())
    dut.ap_continue.value = 0
    task = cocotb.start_soon(eng.call(Call(False, True), x, g))
    for waited in range(100):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        if u(dut.ap_done):
            break
    else:
        raise AssertionError(f"[{SIM}] no ap_done for a 5-beat tile within 100 cycles")
    for held in range(20):
        await RisingEdge(dut.ap_clk)
        await ReadOnly()
        assert u(dut.ap_done) == 1, f"[{SIM}] ap_done dropped after {held} cycles with ap_continue low"
        assert u(dut.ap_idle) == 0, f"[{SIM}] idle before ap_continue"
    await RisingEdge(dut.ap_clk)
    dut.ap_continue.value = 1
    got, _ = await task
    check("tile under ap_continue", expected_tile(x, g, decide=False), got)
    await RisingEdge(dut.ap_clk)
    await ReadOnly()
    assert u(dut.ap_idle) == 1, f"[{SIM}] not idle after ap_continue"
    watcher.cancel()
    assert not bad_ready, f"[{SIM}] ap_ready high outside the idle state ({len(bad_ready)} cycles)"


@cocotb.test()
async def overflow_limit(dut):
    """A tile of 2^MAX_BEATS_LOG2 beats is accepted; one beat more is flagged."""
    if MAX_BEATS_LOG2 > 10:
        dut._log.warning("[%s] MAX_BEATS_LOG2=%d: overflow test needs a short-limit build", SIM, MAX_BEATS_LOG2)
        assert False, f"[{SIM}] build with a small MAX_BEATS_LOG2 to test the length limit"
    eng = await setup(dut)
    rng = np.random.default_rng(SEED + 7)
    n = 1 << MAX_BEATS_LOG2
    x, g = random_tile(rng, n, True)
    got, _ = await eng.call(Call(False, True), x, g)
    check(f"tile of exactly {n} beats", expected_tile(x, g, decide=False), got)
    x, g = random_tile(rng, n + 1, True)
    got, _ = await eng.call(Call(False, True), x, g)
    assert got.overflow, f"[{SIM}] a tile of {n + 1} beats did not set m_overflow"

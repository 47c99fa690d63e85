"""The block unit's price (core.call_price.price_block) counts what its HLS loops do: the C
simulation counts its loop trips (hls/src/block_ops.cpp, E2tBlockTrips: the sample list's
check, the coefficient load, the streaming loop's beats and tails, the sums' write-out) and
``block_trips`` must give the same numbers, from which ``price_block`` takes its cycles."""
from __future__ import annotations

import math

import numpy as np
import pytest

from e2train.core import block_ops as bo
from e2train.core import call_price as cp
from e2train.core import csim, golden
from e2train.core import engine_map as em
from e2train.core import perfmodel as pm


def _run(op, rng, n, c, h, w, samples, residual, two):
    y = rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)
    r = rng.integers(0, 256, (n, c, 2 * h, 2 * w)).astype(np.uint8) if residual else None
    if op == "bn_act":
        csim.bn_act(y, np.ones(c), np.zeros(c), 2, r=r, r_mult=3, shortcut=bo.Shortcut(2, 0), samples=samples)
    elif op == "bn_bwd_reduce":
        o = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8)
        g = rng.integers(-99, 99, (n, c, h, w)).astype(np.int16)
        gb = rng.integers(-99, 99, (n, c, h, w)).astype(np.int16) if two else None
        csim.bn_bwd_reduce(o, y, g, g_b=gb, mb=1 if two else 0, r=r, r_shortcut=bo.Shortcut(2, 0), samples=samples)
    else:
        g = rng.integers(-99, 99, (n, c, h, w)).astype(np.int16)
        csim.bn_bwd_apply(g, y, np.ones(c), np.ones(c), np.zeros(c), 0, samples=samples)
    return csim.block_trips()


@pytest.mark.parametrize("seed", range(18))
def test_block_trips_are_the_c_simulation_s(csim_lib, seed):
    rng = np.random.default_rng(seed)
    op = cp.BLOCK_OPS[seed % 3]
    n, c, h, w = (int(v) for v in rng.integers(1, [6, 9, 12, 12]))
    samples = sorted(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False).tolist())
    residual, two = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    got = _run(op, rng, n, c, h, w, samples, residual and op != "bn_bwd_apply", two)
    want = cp.block_trips(op, (n, c, h, w), len(samples), residual=residual and op != "bn_bwd_apply")
    assert {k: getattr(got, k) for k in want} == want


@pytest.mark.parametrize("nchw", [(3, 1, 1, 3), (2, 2, 1, 4), (2, 1, 2, 2), (1, 1, 1, 9)])
def test_small_tensors_keep_reduce_s_read_modify_writes_apart(csim_lib, nchw):
    """bn_bwd_reduce on a sample of fewer than BLOCK_RMW_DISTANCE beats idles in extra tails (so a
    channel's sums are not read again before their write-back), and still equals golden."""
    rng = np.random.default_rng(1)
    n, c, h, w = nchw
    o = rng.integers(0, 256, nchw).astype(np.uint8)
    y = rng.integers(-128, 128, nchw).astype(np.int8)
    g = rng.integers(-999, 999, nchw).astype(np.int16)
    got = csim.bn_bwd_reduce(o, y, g, samples=[0])
    trips = csim.block_trips()
    want = cp.block_trips("bn_bwd_reduce", nchw, 1)
    assert {k: getattr(trips, k) for k in want} == want
    per_sample = c * h * -(-w // cp.BLOCK_LANES)
    assert trips.tails == n * max(1, cp.BLOCK_RMW_DISTANCE - per_sample)
    for a, b in zip(got, golden.bn_bwd_reduce(o, y, g, samples=[0])):
        assert np.array_equal(a, b)


def test_price_is_the_trips_or_the_ddr_bound():
    """Cycles = the call's start + max(loop trips, DDR bytes / DDR rate)."""
    for op, kw in (("bn_act", dict(residual=True)), ("bn_bwd_reduce", dict(two_sources=True, gate=True)),
                   ("bn_bwd_apply", {})):
        for nchw, listed in (((64, 16, 32, 32), 40), ((8, 64, 7, 7), 8), ((3, 5, 3, 3), 0)):
            res = kw.get("residual", False)
            trips = sum(cp.block_trips(op, nchw, listed, residual=res).values())
            work, cycles = cp.price_block(op, nchw, listed, **kw)
            ddr = work.dram_bytes - 4 * listed            # the sample list is read by the check's loop
            assert cycles == em.HLS_CALL_OVERHEAD + max(trips, math.ceil(ddr / pm.DDR_BYTES_PER_CYCLE))
    # bn_act on 32x32 planes: lane-bound; the setup, the list check, a and b, 4 elements a cycle, a tail
    # per sample
    _, cycles = cp.price_block("bn_act", (64, 16, 32, 32), 64)
    assert cycles == em.HLS_CALL_OVERHEAD + 11 * 13 + (64 + 64) + 2 * 16 + 64 * 16 * 256 + 64


def test_the_lanes_are_one_number():
    """The HLS unit's lanes (e2t_block.h) are the price's (call_price.BLOCK_LANES)."""
    import re
    from pathlib import Path
    header = (Path(__file__).resolve().parents[2] / "hls/include/e2t_block.h").read_text()
    assert int(re.search(r"#define E2T_BLOCK_LANES (\d+)", header).group(1)) == cp.BLOCK_LANES

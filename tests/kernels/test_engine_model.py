"""The training engine's performance model (perfmodel.engine_*, engine_map): the analytic call
counts are those of the calls engine_map builds (the calls the cocotb bench drives through the
RTL, where the cycles are compared with pass_cycles), the bounds only add time, and the
ResNet-20 step has the network's MACs."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import engine_map as em
from e2train.core import perfmodel as pm
from e2train.core.shapes import ConvShape

SHAPES = [ConvShape(2, 3, 5, 6, 5, 3, 1, 1), ConvShape(1, 4, 7, 7, 3, 3, 2, 1), ConvShape(2, 5, 4, 4, 4, 1, 1, 0),
          ConvShape(1, 9, 6, 6, 10, 3, 2, 0), ConvShape(3, 2, 5, 5, 2, 1, 2, 0)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("grid", [(2, 3), (em.ROWS, em.COLS)])
def test_counted_calls_are_the_built_calls(shape: ConvShape, grid) -> None:
    rows, cols = grid
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape.x_shape)
    w = rng.integers(-128, 128, shape.w_shape)
    g = rng.integers(-32768, 32768, shape.y_shape)
    geom = {"rows": rows, "cols": cols}
    built = {"fwd": em.fwd_calls(x, w, shape, **geom), "bwd_data": em.bwd_calls(g, w, shape, **geom),
             "wgrad": em.wgrad_calls(x, g, shape, **geom)}
    for p, calls in built.items():
        assert sum(c.beats + em.CALL_OVERHEAD for c in calls) == em.pass_cycles(p, shape, **geom), p
    for chunk in (em.WGRAD_CHUNK, 7):      # 7: several chunks per block on these small shapes
        exact = em.wgrad_calls(x, g, shape, psg=True, chunk=chunk, **geom)
        assert sum(c.beats + em.CALL_OVERHEAD for c in exact) == em.pass_cycles("wgrad", shape, chunk=chunk, **geom)
        host = em.bwd_calls(g, w, shape, **geom)
        extra = em.attach_predictor(host, x, g, shape, chunk=chunk, **geom)
        assert sum(c.beats + em.CALL_OVERHEAD for c in exact + extra) == \
            em.pass_cycles("wgrad", shape, psg=True, chunk=chunk, **geom)
        alone = em.attach_predictor([], x, g, shape, chunk=chunk, **geom)
        assert sum(c.beats + em.CALL_OVERHEAD for c in exact + alone) == \
            em.pass_cycles("wgrad", shape, psg=True, pred_host=False, chunk=chunk, **geom)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("chunk", [3, em.WGRAD_CHUNK])
def test_wgrad_sweeps_sum_to_the_gradient(shape: ConvShape, chunk: int) -> None:
    """What the shell adds up from the chunked calls is the layer's weight gradient, and the
    predictor's sweep (hosted by the input-gradient calls, then predictor-only calls) covers
    every weight over every position exactly once, giving the layer's G_msb. The engine is
    stood in for by its sums: each call's cells hold row x column summed over its beats."""
    rows, cols = 2, 3
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, shape.x_shape)
    w = rng.integers(-128, 128, shape.w_shape)
    g = rng.integers(-32768, 32768, shape.y_shape)
    win = em._window_cols(x, shape)
    gf = g.transpose(1, 0, 2, 3).reshape(shape.co, -1)

    def sx16(v):
        return ((v + 0x8000) % 0x10000) - 0x8000

    calls = em.wgrad_calls(x, g, shape, chunk=chunk, rows=rows, cols=cols)
    res = [{"p": sx16(c.rows).T @ c.cols, "lo": np.zeros((rows, cols), np.int64)} for c in calls]
    assert np.array_equal(em.wgrad_sum(calls, res, shape, "exact"), gf @ win.T)
    host = em.bwd_calls(g, w, shape, rows=rows, cols=cols)
    extra = em.attach_predictor(host, x, g, shape, chunk=chunk, rows=rows, cols=cols)
    pcalls = [c for c in host + extra if c.place.get("pred") is not None]
    pres = [{"lo": sx16(c.prows).T @ c.pcols, "p": None} for c in pcalls]
    assert np.array_equal(em.wgrad_sum(pcalls, pres, shape, "pred"), gf @ win.T)
    assert all(c.beats <= max(chunk, max(h.beats for h in host)) for c in pcalls)


def test_every_mac_of_the_layer_is_in_some_call() -> None:
    """Cell-beats carrying a real (unpadded) product cover the convolution's MACs: FWD counts
    two MACs per cell-beat."""
    shape = ConvShape(2, 3, 5, 6, 5, 3, 1, 1)
    x = np.ones(shape.x_shape, np.int64)
    w = np.ones(shape.w_shape, np.int64)
    calls = em.fwd_calls(x, w, shape)
    cells = sum(c.beats * int(c.cell_en.sum()) for c in calls)
    assert 2 * cells >= em.pass_macs("fwd", shape) > 2 * cells - 2 * 9 * shape.ci * shape.co


@pytest.mark.parametrize("p", ["fwd", "bwd_data", "wgrad"])
def test_bounds_only_add_time(p) -> None:
    for _, shape in pm.resnet20_cifar(64):
        r = pm.engine_pass(p, shape)
        assert r["cycles"] >= r["blackbox_cycles"] > r["engine_cycles"] > 0


@pytest.mark.parametrize("p", ["fwd", "bwd_data", "wgrad"])
def test_the_loops_outside_the_calls_are_priced(p, monkeypatch) -> None:
    """A pass's modelled cycles carry its loops outside the engine calls, one for one: the
    forward's and input gradient's weight loads (a byte a cycle, while the engine waits: the C
    simulation's count, test_fwd_staging.py and test_bwd_staging.py), the forward's bias loop (a
    channel a cycle) and the weight gradient's update (a weight a cycle; this layer is one weight
    group, so no loop reads its partial sums out and none clears them; test_wgrad_staging.py)."""
    shape = ConvShape(16, 32, 4, 4, 32, 3, 1, 1)
    with_loops = pm.engine_pass(p, shape, psg=False)
    monkeypatch.setattr(em, "weight_load_trips", lambda *a, **k: 0)
    monkeypatch.setattr(pm, "wgrad_loop_cycles", lambda *a, **k: 0)
    monkeypatch.setattr(pm, "fwd_channel_cycles", lambda *a, **k: 0)
    monkeypatch.setattr(pm, "_STAGING_CACHE", {})      # the passes' accounts carry the weight loads
    without = pm.engine_pass(p, shape, psg=False)["cycles"]
    nw = 32 * 32 * 9
    assert em.weight_groups(shape) == 1
    loops = {"fwd": 4 * 8 * 32 * 9 + 32, "bwd_data": 4 * 8 * 32 * 9, "wgrad": nw}[p]
    assert with_loops["cycles"] - without == with_loops["loop_cycles"] == loops
    assert em.weight_load_trips(p, shape, 0) == 0     # no sample, no call, no load


def test_resnet20_step() -> None:
    layers = pm.resnet20_cifar(1)
    assert len(layers) == 19
    fwd_macs = sum(s.macs(1) for _, s in layers)
    assert 40.5e6 < fwd_macs < 41.0e6     # ResNet-20: about 41 M multiply-adds per 32x32 image
    step = pm.engine_training_step(64)
    assert step["macs"] == sum(r["macs"] for r in step["layers"])
    assert len(step["layers"]) == 19 * 3 - 1          # no input gradient for the image
    peak = 2 * em.ROWS * em.COLS * pm.CLOCK_HZ / 1e9    # FWD: two MACs per DSP
    assert 0 < step["gmacs"] < peak


def test_wgrad_work_counts_only_what_runs() -> None:
    shape = ConvShape(4, 16, 8, 8, 16, 3, 1, 1)
    macs = em.pass_macs("wgrad", shape)
    exact = pm.engine_wgrad_work(shape, psg=False)
    assert exact.macs == {"int8xint16": macs}
    half = pm.engine_wgrad_work(shape, psg=True, predicted_frac=0.5)
    assert half.macs["int4xint10"] == macs and half.macs["int8xint16"] == macs // 2
    none = pm.engine_wgrad_work(shape, psg=True, predicted_frac=1.0)
    assert "int8xint16" not in none.macs
    assert half.dram_bytes > exact.dram_bytes      # the predictor's sweep reads x and g again
    assert half.dram_bytes - 9 * 16 * 16 * 9 == 2 * (exact.dram_bytes - 9 * 16 * 16 * 9)
    with pytest.raises(ValueError, match="predicted_frac"):
        pm.engine_wgrad_work(shape, psg=True, predicted_frac=1.5)


def test_weight_groups_split_the_sweep(monkeypatch) -> None:
    """A layer whose partial sums exceed WGRAD_PART_WEIGHTS runs in groups of whole row blocks:
    the calls are the same in number (every block over every position), the sums still the
    layer's gradient, x is read once per group (the model's DDR bytes)."""
    shape = ConvShape(2, 3, 4, 4, 6, 3, 1, 1)
    rows, cols = 2, 3
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, shape.x_shape)
    g = rng.integers(-32768, 32768, shape.y_shape)
    # ResNet-20's 64->64 layer: g once, x twice (two groups of 18,432 weights' partial sums)
    assert pm.wgrad_sweep_ddr(ConvShape(64, 64, 8, 8, 64, 3, 1, 1)) == 2 * 64 * 64 * 64 + 2 * 64 * 64 * 64
    one = em.wgrad_calls(x, g, shape, rows=rows, cols=cols, chunk=5)
    monkeypatch.setattr(em, "WGRAD_PART_WEIGHTS", 2 * rows * shape.ci * 9)      # two row blocks a group
    assert em.weight_groups(shape, rows) == 2
    two = em.wgrad_calls(x, g, shape, rows=rows, cols=cols, chunk=5)
    assert len(two) == len(one)
    assert [c.place["exact"]["co0"] for c in two] != [c.place["exact"]["co0"] for c in one]
    res = [{"p": (((c.rows + 0x8000) % 0x10000) - 0x8000).T @ c.cols} for c in two]
    want = g.transpose(1, 0, 2, 3).reshape(shape.co, -1) @ em._window_cols(x, shape).T
    assert np.array_equal(em.wgrad_sum(two, res, shape, "exact"), want)

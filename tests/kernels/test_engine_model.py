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
@pytest.mark.parametrize("grid", [(2, 3), (8, 21)])
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
    psg = em.wgrad_calls(x, g, shape, psg=True, **geom)
    assert len(psg) == len(built["wgrad"]) + 1
    assert sum(c.beats + em.CALL_OVERHEAD for c in psg) == em.pass_cycles("wgrad", shape, psg=True, **geom)


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
    assert half.dram_bytes > exact.dram_bytes      # the overlap streams two blocks' x per call
    with pytest.raises(ValueError, match="predicted_frac"):
        pm.engine_wgrad_work(shape, psg=True, predicted_frac=1.5)

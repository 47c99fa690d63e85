"""ARM side work (the gates' BPTT steps, the classifier's weight gradient): deferred to after the
next ARM work the fabric waits for, priced as Timeline side segments, flushed before the
optimiser, and the same gradients as computed at once."""
import numpy as np
import pytest

from e2train.core.overlap import Timeline
from e2train.device.nn_layers import ArmTally, Linear


def test_deferred_work_runs_after_the_next_critical_arm_work_as_a_side_segment():
    tl = Timeline()
    arm = ArmTally(ops_per_second=1.0, timeline=tl)
    order = []
    tl.add("fabric", 1.0)                          # 0-1
    arm.defer(lambda: (order.append("side"), arm.ops("sgd", 1)))    # 4 ops: 4 s, not yet run
    assert order == []
    arm.ops("maxabs", 1)                           # critical, 1 s: 1-2; then the side work 2-6
    assert order == ["side"]
    tl.add("fabric", 3.0)                          # reads the critical ARM work only: 2-5
    assert tl.open_s() == pytest.approx(6.0)       # the side work ends the step, the fabric ran under it
    arm.ops("maxabs", 1)                           # the next critical ARM work queues behind it: 6-7
    assert tl.open_s() == pytest.approx(7.0)


def test_flush_runs_what_is_left_and_the_classifier_gradient_is_the_direct_one():
    rng = np.random.default_rng(0)
    fc = Linear(6, 3, rng)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    gy = rng.standard_normal((5, 3)).astype(np.float32)
    arm = ArmTally(timeline=Timeline())
    gx, grads = fc.backward(gy, x, arm)
    assert grads == {}                             # side work, not run yet
    arm.flush()
    np.testing.assert_array_equal(grads["weight"], gy.T @ x)
    np.testing.assert_array_equal(grads["bias"], gy.sum(axis=0))
    np.testing.assert_array_equal(gx, gy @ fc.weight)
    # both halves tallied: 2 * n * size MACs in all
    assert arm.by_kind["fc"] == 2 * 2 * 5 * fc.weight.size


def test_the_gates_bptt_step_by_step_needs_every_gate_and_tallies_as_gate_work():
    from e2train.device.slu_gate import GateNet
    rng = np.random.default_rng(1)
    net = GateNet([4, 8], [1, 2], 4, rng)
    arm = ArmTally(timeline=Timeline())
    net.reset(3)
    for i, c in enumerate((4, 8)):
        net.forward(i, rng.standard_normal((3, c)).astype(np.float32), arm)
    whole = {k: v.copy() for k, v in GateNet.backward(_copy(net), [np.ones(3, np.float32)] * 2, arm).items()}
    net.backward_begin()
    net.backward_step(np.ones(3, np.float32), arm)
    with pytest.raises(RuntimeError, match="1 gate"):
        net.backward_end()
    net.backward_step(np.ones(3, np.float32), arm)
    steps = net.backward_end()
    for k in whole:
        np.testing.assert_array_equal(steps[k], whole[k])
    assert arm.by_kind["gate"] > 0


def _copy(net):
    import copy
    return copy.deepcopy(net)

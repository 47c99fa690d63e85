"""ARM side work (the gates' BPTT steps, the classifier's weight gradient): run only while the
fabric is busy, a task only once the task it names (after=) has run and only if its declared ops
fit in what is left of the call's modelled time (after a tallied call, from the Timeline; on a
board, from the driver's polling loop), earliest-deferred first, each to its end, priced as Timeline side segments, flushed before the optimiser,
and the same gradients as computed at once."""
import numpy as np
import pytest

from e2train.core.overlap import Timeline
from e2train.device.nn_layers import ArmTally, Linear, op_count
from e2train.device.nn_tally import KernelTally


def _tallies(ops_per_second=1.0):
    tl = Timeline()
    arm = ArmTally(ops_per_second=ops_per_second, timeline=tl)
    return tl, arm, KernelTally(timeline=tl, side_work=arm)


def test_deferred_work_waits_for_a_busy_fabric_then_runs_first_in_first_out():
    tl, arm, kt = _tallies()
    order = []
    arm.defer(lambda: (order.append("a"), arm.ops("augment", 4)), ops=4)    # 4 ops: 4 s
    arm.defer(lambda: (order.append("b"), arm.ops("augment", 1)), ops=1)  # 1 s
    arm.ops("augment", 1)                 # critical ARM work: 0-1; the side work does not run
    assert order == [] and arm.pending == 2
    tl.add("fabric", 6.0)                # a call 1-7 ...
    kt.side_work.run_while_fabric_busy(tl.free_s("fabric"))            # ... as KernelTally does
    assert order == ["a", "b"] and arm.pending == 0
    assert tl.free_s("arm") == 6 and tl.open_s() == 7                  # a 1-5, b 5-6: hidden


def _task(arm, order, name, seconds, after=None):
    """Defer a task that records its name and tallies ``seconds`` ops (1 op/s, 1 per augment
    element)."""
    def fn():
        order.append(name)
        arm.ops("augment", seconds)
    return arm.defer(fn, ops=seconds, after=after)


def test_a_task_that_does_not_fit_waits_and_an_independent_one_overtakes_it():
    tl, arm, _ = _tallies()
    order = []
    for name, sec in (("a", 4), ("b", 8), ("c", 1)):        # independent: none names another
        _task(arm, order, name, sec)
    tl.add("fabric", 5.0)                # 0-5: a 0-4 fits; b (4-12) does not; c (4-5) does and goes first
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a", "c"] and arm.pending == 1 and tl.free_s("arm") == 5
    tl.add("fabric", 9.0)                # 5-14: b 5-13
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a", "c", "b"] and arm.pending == 0 and tl.free_s("arm") == 13


def test_a_dependent_task_never_starts_before_its_predecessor_has_run():
    tl, arm, _ = _tallies()
    order = []
    _task(arm, order, "a", 4)
    b = _task(arm, order, "b", 8)
    _task(arm, order, "c", 1, after=b)   # c fits under the first call but waits for b
    tl.add("fabric", 5.0)                # 0-5: a 0-4; b does not fit, so neither does c start
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a"] and arm.pending == 2 and tl.free_s("arm") == 4
    tl.add("fabric", 1.0)                # 5-6: b still does not fit
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a"] and tl.free_s("arm") == 4
    tl.add("fabric", 9.0)                # 6-15: b 6-14, then c 14-15, ending with the call
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a", "b", "c"] and tl.free_s("arm") == 15 and tl.open_s() == 15


def test_a_task_whose_predecessor_ran_under_the_same_call_follows_it_there():
    tl, arm, _ = _tallies()
    order = []
    a = _task(arm, order, "a", 2)
    _task(arm, order, "b", 2, after=a)
    tl.add("fabric", 4.0)
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a", "b"] and tl.free_s("arm") == 4


def test_flush_runs_what_is_left_in_deferral_order_predecessors_first():
    tl, arm, _ = _tallies()
    order = []
    a = _task(arm, order, "a", 8)
    b = _task(arm, order, "b", 1, after=a)
    _task(arm, order, "c", 1)
    _task(arm, order, "d", 1, after=b)
    tl.add("fabric", 2.0)                # 0-2: only c fits with its predecessor run (it has none)
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["c"]
    arm.flush()
    assert order == ["c", "a", "b", "d"] and arm.pending == 0
    assert tl.free_s("arm") == 2 + 8 + 1 + 1          # after the last call, one after the other


def test_after_must_name_a_task_this_tally_deferred():
    arm = ArmTally()
    h = arm.defer(lambda: None, ops=0)
    for bad in (h + 1, -1, "0", 0.0):
        with pytest.raises(ValueError, match="after= names a task"):
            arm.defer(lambda: None, ops=0, after=bad)
    assert arm.defer(lambda: None, ops=0, after=h) == h + 1 and arm.pending == 2


def test_a_task_starts_no_earlier_than_the_call_it_runs_under():
    tl, arm, _ = _tallies()
    arm.defer(lambda: arm.ops("augment", 4), ops=4)               # 4 s
    tl.add("fabric", 3.0)                # 0-3
    tl.add("fabric", 4.0)                # 3-7: the task, from 3, fits (not from the ARM's free time 0)
    assert tl.side_start_s() == 3
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert arm.pending == 0 and tl.free_s("arm") == 7


def test_a_task_that_tallies_other_than_it_declared_is_a_cost_model_error():
    tl, arm, _ = _tallies()
    arm.defer(lambda: (arm.ops("augment", 4), arm.macs(1, "fc")), ops=4)          # tallies 4 + 2
    with pytest.raises(RuntimeError, match=r"deferred ARM task \(augment, fc\) tallied 6 ops but declared 4"):
        arm.flush()
    with pytest.raises(ValueError, match="int >= 0"):
        arm.defer(lambda: None, ops=-1)


def test_the_declared_counts_are_what_the_tasks_tally():
    """The classifier's weight gradient and a gate's backward step, deferred where the network
    defers them, declare exactly what they tally (else flush raises)."""
    from e2train.device.slu_gate import GateNet
    rng = np.random.default_rng(2)
    arm = ArmTally(timeline=Timeline())
    fc = Linear(6, 3, rng)
    fc.backward(rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32), arm)
    for cell in ("gru", "lstm"):
        net = GateNet([4, 8], [1, 2], 4, rng, cell=cell)
        net.reset(3)
        for i, c in enumerate((4, 8)):
            net.forward(i, rng.standard_normal((3, c)).astype(np.float32), arm)
        net.backward_begin()
        for i in (1, 0):
            step = arm.defer(lambda: net.backward_step(np.ones(3, np.float32), arm), ops=net.backward_step_ops(i))
            arm.defer(lambda i=i: net.backward_embed(i, arm), ops=net.backward_embed_ops(i), after=step)
        with pytest.raises(ValueError, match="gate 2 has no forward"):
            net.backward_step_ops(2)
        with pytest.raises(ValueError, match="gate 2 has no forward"):
            net.backward_embed_ops(2)
        before = arm.by_kind["gate"]
        arm.flush()
        assert arm.by_kind["gate"] > before and net.backward_end()


def test_a_call_tallied_by_the_kernel_tally_runs_the_side_work():
    from e2train.core.shapes import ConvShape
    tl, arm, kt = _tallies(ops_per_second=1e12)
    if not kt.modelled:
        pytest.skip("performance model missing")
    ran = []
    arm.defer(lambda: (ran.append(1), arm.ops("augment", 4)), ops=4)
    kt.kernel("conv_fwd", ConvShape(n=2, ci=3, h=4, w=4, co=5, k=3, stride=1, pad=1), 2)
    assert ran == [1] and arm.pending == 0 and tl.free_s("arm") < tl.free_s("fabric")


def test_tasks_run_by_the_driver_are_placed_under_the_call_they_ran_under():
    tl, arm, kt = _tallies()
    arm.side_work_by_driver = True
    order = []
    arm.defer(lambda: (order.append("a"), arm.ops("augment", 4)), ops=4)    # 4 s
    arm.defer(lambda: (order.append("b"), arm.ops("augment", 4)), ops=4)
    tl.add("fabric", 1.0)                # a call the driver saw end before any task: no task runs
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == [] and arm.pending == 2
    assert arm.idle(3.9) is False and order == []           # 4 s do not fit in the 3.9 s left
    assert arm.idle(4.0) is True and order == ["a"]         # the driver's poll loop ran one task
    assert tl.free_s("arm") == 0                           # not placed until its call is tallied
    tl.add("fabric", 2.0)                                  # 1-3
    arm.run_while_fabric_busy(tl.free_s("fabric"))
    assert order == ["a"] and tl.free_s("arm") == 5         # a 1-5 under it (the board overran), b left
    arm.flush()
    assert order == ["a", "b"] and tl.free_s("arm") == 9 and arm.idle(1e9) is False


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
    assert net.backward_step(np.ones(3, np.float32), arm) == 1
    with pytest.raises(RuntimeError, match="gate 0's backward step has not run"):
        net.backward_embed(0, arm)
    with pytest.raises(RuntimeError, match="1 gate"):
        net.backward_end()
    assert net.backward_step(np.ones(3, np.float32), arm) == 0
    net.backward_embed(0, arm)                      # the embedding tasks in any order after their steps
    with pytest.raises(RuntimeError, match="1 gate embedding gradient"):
        net.backward_end()
    net.backward_embed(1, arm)
    steps = net.backward_end()
    for k in whole:
        np.testing.assert_array_equal(steps[k], whole[k])
    assert arm.by_kind["gate"] > 0


class _Counted(np.ndarray):
    """An array that records the MACs of every matrix product it takes part in, from the
    operands' shapes (out size x inner dimension), and the elements of every other numpy pass
    (by ufunc: a sum over an axis counts its input's elements; an outer product is a product's
    MACs, counted where np.outer is wrapped); what derives from it is one too."""
    macs: list = []
    passes: dict = {}

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        args = [x.view(np.ndarray) if isinstance(x, _Counted) else x for x in inputs]
        given = kw.get("out")
        if given:
            kw["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Counted) else o for o in given)
        out = getattr(ufunc, method)(*args, **kw)
        if ufunc is np.matmul:
            _Counted.macs.append(int(np.size(out)) * np.shape(args[0])[-1])
        elif method != "outer":
            n = np.size(args[0]) if method == "reduce" else np.size(out)
            _Counted.passes[ufunc.__name__] = _Counted.passes.get(ufunc.__name__, 0) + int(n)
        if given:                   # in place (a += b): hand back the array itself, still counted
            return given[0] if len(given) == 1 else given
        return out.view(_Counted) if isinstance(out, np.ndarray) else out

    def __array_function__(self, func, types, args, kwargs):      # np.concatenate and the like
        out = super().__array_function__(func, types, args, kwargs)
        return out.view(_Counted) if type(out) is np.ndarray else out

    def astype(self, dtype, *args, **kw):         # a converted copy is a pass too (none when it is a view)
        base = self.view(np.ndarray)
        out = base.astype(dtype, *args, **kw)
        if out is not base:
            _Counted.passes["astype"] = _Counted.passes.get("astype", 0) + int(out.size)
        return out.view(_Counted)


class _Kinds:
    """Records what a step tallies: MACs and element-wise ops apart."""

    def __init__(self):
        self.n_macs, self.elem = 0, 0

    def macs(self, n, kind):
        self.n_macs += n

    def ops(self, kind, n):
        self.elem += op_count(kind, n)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gate_backward_step_tallies_the_macs_of_the_products_it_runs(cell, monkeypatch):
    """Every matrix product a backward step and an embedding task run (the gate gradient wrapped
    so that each product it reaches records its MACs from its operands' shapes, the head's outer
    product by wrapping np.outer) is what they tally: no more (the embedding's input gradient
    is never computed), no less; and the embedding's product is its own task's, not the step's."""
    from e2train.device.slu_gate import GateNet
    outer = np.outer

    def counted_outer(a, b, out=None):
        _Counted.macs.append(np.size(a) * np.size(b))
        return outer(a, b, out)

    monkeypatch.setattr(np, "outer", counted_outer)
    rng = np.random.default_rng(3)
    n, d, chans = 5, 4, (8, 6)                     # n, d and C apart: a swapped factor shows
    net = GateNet(list(chans), [1, 2], d, rng, cell=cell)
    arm = ArmTally(timeline=Timeline())
    net.reset(n)
    for i, c in enumerate(chans):
        net.forward(i, rng.standard_normal((n, c)).astype(np.float32), arm)
    net.backward_begin()
    for i in (1, 0):
        _Counted.macs = []
        step = _Kinds()
        assert net.backward_step(rng.standard_normal(n).astype(np.float32).view(_Counted), step) == i
        assert _Counted.macs and sum(_Counted.macs) == step.n_macs
        assert len(_Counted.macs) == 6              # head: two; cell: two weight grads, two input grads
        _Counted.macs = []
        emb = _Kinds()
        net.backward_embed(i, emb)
        assert _Counted.macs == [d * n * chans[i]] == [emb.n_macs]
        assert emb.elem == op_count("gate_ew", n * d + d * chans[i] + d)   # the bias sum; both accumulated
    net.backward_end()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gate_tallies_the_element_wise_passes_numpy_runs(cell):
    """The element-wise ARM ops a gate tallies (forward, each backward step, each embedding
    task) are the element-wise passes its numpy code runs, counted ufunc by ufunc on arrays that
    record them (_Counted): each sigmoid as its five passes, each tanh as one, the rest one op
    an element, the BPTT's first step (no recurrent gradient coming in) apart from the others.
    The backward step's count is also what is declared ahead for its deferred task."""
    from e2train.device.slu_gate import GateNet
    rng = np.random.default_rng(5)
    n, d, chans = 7, 3, (8, 5, 6)                  # n, d and C apart: a swapped factor shows
    net = GateNet(list(chans), [1, 2, 1], d, rng, cell=cell)
    net.params = {k: v.view(_Counted) for k, v in net.params.items()}
    arm = ArmTally(timeline=Timeline())
    net.reset(n)
    for i, c in enumerate(chans):
        _Counted.passes = {}
        fwd = _Kinds()
        net.forward(i, rng.standard_normal((n, c)).astype(np.float32), fwd)
        assert _Counted.passes["exp"] * 5 + _Counted.passes["tanh"] == (
            op_count("sigmoid", _Counted.passes["exp"]) + op_count("tanh", _Counted.passes["tanh"]))
        assert sum(_Counted.passes.values()) == fwd.elem, _Counted.passes
    net.backward_begin()
    for i in (2, 1, 0):
        declared = net.backward_step_ops(i)
        _Counted.passes = {}
        step = _Kinds()
        assert net.backward_step(rng.standard_normal(n).astype(np.float32).view(_Counted), step) == i
        assert sum(_Counted.passes.values()) == step.elem, (i, _Counted.passes)
        assert declared == step.elem + 2 * step.n_macs
        _Counted.passes = {}
        emb = _Kinds()
        net.backward_embed(i, emb)
        assert sum(_Counted.passes.values()) == emb.elem, (i, _Counted.passes)
    net.backward_end()


@pytest.mark.parametrize("n, k", [(7, 10), (5, 3)])
def test_the_loss_tallies_the_element_wise_passes_numpy_runs(n, k):
    """softmax-cross-entropy's tally is the passes its numpy code runs over the logits and the
    samples (counted ufunc by ufunc, as the gates' are); only its two scalar steps, the loss's
    sign and mean, are left out (one op each a batch)."""
    from e2train.device.nn_layers import softmax_cross_entropy
    rng = np.random.default_rng(1)
    _Counted.passes = {}
    kinds = _Kinds()
    softmax_cross_entropy(rng.standard_normal((n, k)).astype(np.float32).view(_Counted), rng.integers(0, k, n), kinds)
    assert sum(_Counted.passes.values()) == kinds.elem, _Counted.passes


@pytest.mark.parametrize("n, fan_in, fan_out", [(7, 5, 10), (64, 32, 10), (3, 4, 3)])
def test_the_classifier_tallies_the_products_and_passes_numpy_runs(n, fan_in, fan_out):
    """The classifier's forward and backward, its deferred weight-gradient tasks run, tally the
    MACs of the products numpy runs and the passes over the logits (the bias added, and summed
    over the samples), counted on arrays that record them."""
    from e2train.device.nn_layers import mac_ops
    rng = np.random.default_rng(n)
    fc = Linear(fan_in, fan_out, rng)
    fc.weight, fc.bias = fc.weight.view(_Counted), fc.bias.view(_Counted)
    x = rng.standard_normal((n, fan_in)).astype(np.float32).view(_Counted)
    arm = ArmTally(timeline=Timeline())
    _Counted.macs, _Counted.passes = [], {}
    fc.forward(x, arm)
    _, grads = fc.backward(rng.standard_normal((n, fan_out)).astype(np.float32).view(_Counted), x, arm)
    assert arm.by_kind["fc_bias"] == n * fan_out                 # the forward's; the sum is deferred
    arm.flush()                          # each task checks its tally against what it declared
    assert set(grads) == {"weight", "bias"}
    assert arm.by_kind["fc"] == mac_ops(sum(_Counted.macs)) == mac_ops(3 * n * fan_in * fan_out)
    assert arm.by_kind["fc_bias"] == sum(_Counted.passes.values()), _Counted.passes


@pytest.mark.parametrize("policy", ["batch_max", "mean_sample_max"])
def test_the_input_quantisation_tallies_the_passes_numpy_runs(policy):
    """The network input's scale and codes (maxabs, the running statistic, quantize) tally the
    passes numpy runs over the images, counted ufunc by ufunc (and every converted copy) on an
    array that records them; the codes are the contract's, as the general quantize gives them."""
    from e2train.core.fixedpoint import INT8, quantize
    from e2train.device.nn_qconv import quantize_input
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 3, 4, 6)) * 3).astype(np.float32)
    _Counted.passes = {}
    kinds = _Kinds()
    codes, s_x, x_max = quantize_input(x.view(_Counted), None, True, policy, kinds)
    mean = op_count("scale_stat", x.shape[0]) if policy == "mean_sample_max" else 0   # math.fsum: not a ufunc
    assert sum(_Counted.passes.values()) + mean == kinds.elem, _Counted.passes
    # widened inside the divide (numpy < 1.25 names it true_divide): no float64 copy first
    divides = _Counted.passes.get("divide", 0) + _Counted.passes.get("true_divide", 0)
    assert divides == x.size and "astype" not in _Counted.passes
    np.testing.assert_array_equal(np.asarray(codes), quantize(x, s_x, INT8))
    assert np.asarray(codes).dtype == np.int8 and np.abs(np.asarray(codes)).max() == 127
    with pytest.raises(ValueError, match="non-finite values"):
        quantize_input(np.where(x > 2, np.nan, x).astype(np.float32), None, False, policy, _Kinds())


def test_the_loss_gradients_codes_tally_the_passes_numpy_runs():
    """The average pool's backward (the divide, the scale's max, the int16 codes) tallies the
    passes numpy runs over the (sample, channel) gradient; the spread over h*w is one copy an
    output element (np.ascontiguousarray, not a ufunc), tallied as "pool"."""
    from e2train.core.fixedpoint import INT16, quantize, scale_for
    from e2train.device.nn_resnet import ResNet
    rng = np.random.default_rng(2)
    g_pool = rng.standard_normal((6, 5)).astype(np.float32)
    shape = (6, 5, 3, 2)
    _Counted.passes = {}
    kinds = _Kinds()
    g = ResNet._pool_grad(g_pool.view(_Counted), shape, kinds)
    assert sum(_Counted.passes.values()) + op_count("pool", int(np.prod(shape))) == kinds.elem, _Counted.passes
    gp = g_pool.astype(np.float64) / 6
    s = scale_for(float(np.abs(gp).max()), INT16)
    assert g.s_a == s and g.b is None
    np.testing.assert_array_equal(np.asarray(g.a), np.broadcast_to(quantize(gp, s, INT16)[:, :, None, None], shape))


def test_a_codes_maximum_tallies_the_passes_numpy_runs():
    from e2train.device.nn_qconv import maxabs_code
    codes = np.array([[3, -128], [127, 0]], dtype=np.int8)
    _Counted.passes = {}
    kinds = _Kinds()
    assert maxabs_code(codes.view(_Counted), kinds) == 128          # no abs() of int8 (|-128| wraps)
    assert sum(_Counted.passes.values()) == kinds.elem == op_count("maxabs", codes.size), _Counted.passes


def _plain(v):
    return v.view(np.ndarray) if isinstance(v, _Counted) else v


class _Uncounted:
    """The golden block operations on plain arrays (the fabric's work is not the ARM's), their
    reductions handed back as recording arrays (the ARM folds them)."""

    def bn_act(self, *a, **kw):
        from e2train.core import golden
        return golden.bn_act(*map(_plain, a), **{k: _plain(v) for k, v in kw.items()})

    def bn_bwd_reduce(self, *a, **kw):
        from e2train.core import golden
        g_m, red, gate = golden.bn_bwd_reduce(*map(_plain, a), **{k: _plain(v) for k, v in kw.items()})
        return g_m, red.view(_Counted), gate

    def bn_bwd_apply(self, *a, **kw):
        from e2train.core import golden
        return golden.bn_bwd_apply(*map(_plain, a), **{k: _plain(v) for k, v in kw.items()})


@pytest.mark.parametrize("train", [True, False])
def test_the_bn_folds_tally_the_passes_numpy_runs(train):
    """BN's per-channel work on the ARM between the block operations (its statistics from the
    conv's sums, the running statistics, the forward fold; the backward fold and the parameter
    gradients) tallies the passes numpy runs over its channel vectors, counted ufunc by ufunc
    and every converted copy; so do a conv output's range and the pooled means. The running
    output statistic over the samples (act_batch_max: Python floats, no ufunc) is left out."""
    from e2train.core.fixedpoint import Dyadic
    from e2train.device.nn_block import BatchNorm, Codes, Grad
    from e2train.device.nn_qconv import y_range_codes
    rng = np.random.default_rng(8)
    n, c, h, w = 4, 6, 3, 3
    bn = BatchNorm(c, "batch_max")
    for name in ("gamma", "beta", "running_mean", "running_var"):
        setattr(bn, name, (getattr(bn, name) + rng.uniform(0, 0.5, c).astype(np.float32)).view(_Counted))
    bn.out_max = 3.0                                    # past the calibration's extra fold
    y = rng.integers(-128, 128, (n, c, h, w)).astype(np.int8)
    sums = np.stack([y.sum(axis=(0, 2, 3), dtype=np.int64), (y.astype(np.int64) ** 2).sum(axis=(0, 2, 3))], 1)
    _Counted.passes = {}
    fwd = _Kinds()
    codes, cache = bn.forward(y, Dyadic(3, 9), sums.view(_Counted), None, train, _Uncounted(), KernelTally(), fwd)
    stat = op_count("scale_stat", n) if train else 0
    assert sum(_Counted.passes.values()) + stat == fwd.elem, _Counted.passes
    assert fwd.elem - stat == op_count("bn_stats" if train else "bn_stats_eval", c) + op_count("bn_fold_fwd", c)
    _Counted.passes = {}
    bwd = _Kinds()
    g = Grad(rng.integers(-3000, 3000, (n, c, h, w)).astype(np.int16), Dyadic(5, 20))
    bn.backward(cache, g, _Uncounted(), KernelTally(), bwd)
    assert sum(_Counted.passes.values()) == bwd.elem == op_count("bn_fold_bwd", c), _Counted.passes
    _Counted.passes = {}
    rng_k = _Kinds()
    y_range_codes(sums.view(_Counted), n * h * w, rng_k)
    assert sum(_Counted.passes.values()) == rng_k.elem == op_count("y_range", c), _Counted.passes
    _Counted.passes = {}
    pk = _Kinds()
    Codes(codes.q, codes.scale, np.asarray(codes.pooled).view(_Counted)).mean(pk)
    assert sum(_Counted.passes.values()) == pk.elem == op_count("pooled", n * c), _Counted.passes


@pytest.mark.parametrize("listed", [None, [4, 0, 2]])
def test_the_gate_gradient_from_the_sums_tallies_the_passes_numpy_runs(listed):
    """dL/dg from bn_bwd_reduce's gate sums (the straight-through estimator) tallies the passes
    its numpy code runs over the batch, and the store (a gather and a store with a sample list);
    the listed samples get s_g * (s_o * sum0 - s_x * sum1) in float32, the others keep 0."""
    from e2train.device.nn_resnet import gate_grad_from_sums
    rng = np.random.default_rng(6)
    n = 6
    sums = rng.integers(-10 ** 6, 10 ** 6, (n, 2)).astype(np.int64)
    idx = None if listed is None else np.array(listed)
    dg = np.zeros(n, np.float32)
    _Counted.passes = {}
    kinds = _Kinds()
    gate_grad_from_sums(dg.view(_Counted), sums.view(_Counted), idx, 3e-6, 0.02, 0.05, kinds)
    stores = n if idx is None else 2 * idx.size           # the store (and gather): no ufunc
    assert sum(_Counted.passes.values()) + stores == kinds.elem, _Counted.passes
    want = (3e-6 * (0.02 * sums[:, 0] - 0.05 * sums[:, 1])).astype(np.float32)
    sel = np.arange(n) if idx is None else idx
    np.testing.assert_array_equal(dg[sel], want[sel])
    assert not np.delete(dg, sel).any()


def test_the_gate_penalty_tallies_the_passes_numpy_runs():
    """The SLU penalty's gradient: each gate's mean over the samples (one pass) and its gradient
    filled (np.full, one pass, not a ufunc), per sample and gate."""
    from e2train.device.slu_gate import GateNet
    rng = np.random.default_rng(2)
    net = GateNet([4, 8, 8], [1, 2, 2], 2, rng)
    gates = [(rng.random(5) > 0.5).astype(np.float32).view(_Counted) for _ in range(3)]
    _Counted.passes = {}
    kinds = _Kinds()
    _, _, grads = net.penalty(gates, 0.1, 0.3, kinds)
    assert _Counted.passes.get("add") == 5 * 3                  # the means' sums (their scalar divides aside)
    assert _Counted.passes["add"] + sum(g.size for g in grads) == kinds.elem


def _copy(net):
    import copy
    return copy.deepcopy(net)


def test_nothing_is_left_pending_at_the_end_of_a_training_step(small_digits):
    from e2train.core import golden
    from e2train.device.trainer import Trainer
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2),
                 (x_tr, y_tr), golden)
    deferred = []
    defer = tr.arm.defer
    tr.arm.defer = lambda fn, ops, after=None: (deferred.append(fn), defer(fn, ops=ops, after=after))[1]
    tr.train_step(x_tr[:32], y_tr[:32], 0)
    assert len(deferred) > 1 and tr.arm.pending == 0 and tr.arm._held == []
    # a task deferred after the flush (here: by the optimiser) would leak into the next step
    step = tr.opt.step
    tr.opt.step = lambda *a, **k: (tr.arm.defer(lambda: None, ops=0), step(*a, **k))
    with pytest.raises(RuntimeError, match="left at the end of step 1"):
        tr.train_step(x_tr[:32], y_tr[:32], 1)


def test_each_gate_step_names_the_step_before_and_its_embedding_task_names_its_step(small_digits):
    """In a training step the chain of BPTT steps runs step to step: a block's embedding
    gradient waits for its step (it reads its du), and no step waits for an embedding task."""
    from e2train.core import golden
    from e2train.device.trainer import Trainer
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(model="resnet14", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2,
                      slu=True), (x_tr, y_tr), golden)     # resnet14: more than one gated block
    net = tr.model.gates
    kinds = {}                                   # handle -> (the deferred function, the handle it names)
    runs = []
    for name in ("backward_step", "backward_embed"):
        fn = getattr(net, name)
        setattr(net, name, lambda *a, fn=fn, name=name: (runs.append(name), fn(*a))[1])
    defer = tr.arm.defer

    def recording_defer(fn, ops, after=None):
        before = len(runs)
        handle = defer(fn, ops=ops, after=after)
        kinds[handle] = (fn, after)
        assert len(runs) == before                # deferring runs nothing
        return handle

    tr.arm.defer = recording_defer
    tr.train_step(x_tr[:32], y_tr[:32], 0)
    steps = [h for h, (fn, _) in kinds.items() if "backward_step" in fn.__code__.co_names]
    embeds = [h for h, (fn, _) in kinds.items() if "backward_embed" in fn.__code__.co_names]
    assert len(steps) == len(embeds) == len(tr.model.gates.costs) > 1
    assert [kinds[h][1] for h in steps] == [None] + steps[:-1]     # each step after the step before
    assert [kinds[h][1] for h in embeds] == steps                  # each embedding task after its step
    assert runs.count("backward_step") == runs.count("backward_embed") == len(steps)


def _digest(tr, res) -> dict:
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(tr.model.float_params().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    for c in tr.model.convs():
        h.update(c.name.encode())
        h.update(np.ascontiguousarray(c.w_master).tobytes())
    return {"test_acc": res["test_acc"], "weights": h.hexdigest(),
            "history": [(e.get("train_loss"), e.get("test_loss"), e.get("test_acc")) for e in res["history"]]}


@pytest.mark.parametrize("switches", ["e2train", "baseline"])
def test_side_work_changes_when_it_runs_not_what_it_computes(digits, switches):
    """Seed 0's comparison runs (two epochs): deferred side work (run while the fabric is busy)
    and the same work run at once where it is deferred give the same accuracy, loss history and
    final weights, bit for bit; only the modelled critical path may differ."""
    from e2train.core import csim, golden
    from e2train.device.trainer import BASELINE_SWITCHES, COMPARE_BASE, Trainer
    backend = csim if csim.available() else golden
    cfg = dict(COMPARE_BASE, seed=0, epochs=2, **(BASELINE_SWITCHES if switches == "baseline" else {}))
    out = []
    for eager in (False, True):
        tr = Trainer(cfg, digits, backend)
        if eager:
            tr.arm.defer = lambda fn, ops, after=None: fn()
        out.append((_digest(tr, tr.run()), tr.timeline))
    (deferred, tl_d), (eager, tl_e) = out
    assert deferred == eager
    assert tl_d.sum_s == pytest.approx(tl_e.sum_s, rel=1e-12)      # the same work, placed differently
    assert tl_d.critical_s < tl_e.critical_s                       # the side work is (partly) hidden


def test_on_the_simulated_board_the_driver_runs_the_side_work_while_it_polls(small_digits):
    """The trainer hands ArmTally.idle to a backend that takes one (the PYNQ backend; golden and
    csim are unchanged): the tasks run inside the driver's wait, their segments are placed under
    the call they ran in, and the results are those of the same steps on golden. (The hook is
    told every task fits: the calls of this tiny network last microseconds, less than the
    simulated board's polling; the fit rule on the driver is tested at register level.)"""
    from pathlib import Path

    from e2train.core import golden
    from e2train.device.overlay import KernelOverlay
    from e2train.device.trainer import Trainer
    ov = KernelOverlay(Path(__file__).resolve().parents[3] / "bitstreams" / "sim", sim_impl="golden")
    ov.device.set_busy_reads(2)
    x_tr, y_tr, _, _ = small_digits
    cfg = dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2)
    board, ref = Trainer(cfg, (x_tr, y_tr), ov.backend()), Trainer(cfg, (x_tr, y_tr), golden)
    assert board.arm.side_work_by_driver and not ref.arm.side_work_by_driver
    ran = []
    idle = board.arm.idle
    board.backend.set_idle(lambda remaining_s: idle(1e9) and not ran.append(1))
    for t in range(2):
        board.train_step(x_tr[32 * t:32 * t + 32], y_tr[32 * t:32 * t + 32], t)
        ref.train_step(x_tr[32 * t:32 * t + 32], y_tr[32 * t:32 * t + 32], t)
        assert board.arm.pending == 0 and board.arm._held == []
    assert ran                                               # the driver's loop ran side tasks
    for k, v in ref.model.float_params().items():
        np.testing.assert_array_equal(board.model.float_params()[k], v)
    assert board.timeline.sum_s == pytest.approx(ref.timeline.sum_s, rel=1e-12)


def test_the_classifier_gradient_goes_in_row_tasks_that_declare_what_they_tally():
    """Seed 0's head shape (64 samples, 32 features, 10 classes): tasks of two class rows, each
    declaring its own MACs (2 x 2 x 64 x 32 ops), together the unchunked gradient's; the first
    also the bias's sum over the samples."""
    from e2train.device.nn_layers import mac_ops
    rng = np.random.default_rng(3)
    n, f, c = 64, 32, 10
    fc = Linear(f, c, rng)
    x = rng.standard_normal((n, f)).astype(np.float32)
    gy = (rng.standard_normal((n, c)) / n).astype(np.float32)
    arm = ArmTally(timeline=Timeline())
    _, grads = fc.backward(gy, x, arm)
    declared = [t[2] for t in arm._pending]
    bias_sum = op_count("fc_bias", n * c)                       # with the first task
    assert declared == [mac_ops(2 * n * f) + bias_sum] + [mac_ops(2 * n * f)] * 4
    assert sum(declared) == mac_ops(n * f * c) + bias_sum
    assert [t[3] for t in arm._pending] == [None] * 5            # independent of each other
    fc_before = arm.by_kind["fc"]
    for k in range(5):                   # run them one by one, each tallies what it declared
        assert grads == {}               # filled once every row has run
        arm._run_one(0)                  # (a count that disagrees raises, see above)
        assert arm.by_kind["fc"] - fc_before == (k + 1) * mac_ops(2 * n * f)
    assert set(grads) == {"weight", "bias"}


def test_row_slices_cover_every_row_once_two_rows_at_least():
    from e2train.device.nn_layers import FC_GRAD_CHUNK_OPS, fc_grad_slices, mac_ops
    for n, f, c in [(64, 32, 10), (64, 8, 10), (29, 32, 10), (5, 6, 3), (64, 32, 1), (64, 32, 2), (1, 1, 100),
                    (64, 32, 11), (64, 512, 10)]:
        sl = fc_grad_slices(n, f, c)
        assert sl[0][0] == 0 and sl[-1][1] == c and all(a[1] == b[0] for a, b in zip(sl, sl[1:]))
        assert all(r1 - r0 >= min(2, c) for r0, r1 in sl)
        # at most the ops limit, but for the two-row floor and a one-row remainder joined
        rows = max(2, FC_GRAD_CHUNK_OPS // mac_ops(n * f))
        assert all(r1 - r0 <= rows + 1 for r0, r1 in sl) and sum(r1 - r0 > rows for r0, r1 in sl) <= 1
    assert fc_grad_slices(64, 32, 11) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 11)]
    assert fc_grad_slices(1, 1, 100) == [(0, 100)]            # 5000 rows of 2 ops fit in one task


@pytest.mark.parametrize("n,f,c", [(64, 32, 10), (29, 32, 10), (5, 6, 3), (64, 8, 10), (100, 17, 7),
                                   (64, 32, 11), (256, 64, 10), (7, 7, 17)])
def test_the_row_tasks_give_the_unchunked_gradient_to_float32_rounding(n, f, c):
    """Every row is computed once, by its own slice: equal to the whole product within the
    rounding of a float32 sum over the samples in another order (a bound that a wrong or
    missing row breaks). On this host's OpenBLAS slices of two rows or more give the whole
    product's bits, on the PYNQ image's numpy 1.21 they do not, so bits are not asserted. The
    bias goes whole with the first task, bit for bit."""
    rng = np.random.default_rng(n * 1000 + f)
    fc = Linear(f, c, rng)
    for _ in range(5):
        x = np.abs(rng.standard_normal((n, f))).astype(np.float32)
        gy = (rng.standard_normal((n, c)) / n).astype(np.float32)
        arm = ArmTally(timeline=Timeline())
        _, grads = fc.backward(gy, x, arm)
        arm.flush()
        whole = gy.T @ x
        # |sum in one order - sum in another| <= 2 * n * eps * sum |terms| (float32 summation)
        bound = 2 * n * np.finfo(np.float32).eps * (np.abs(gy).T.astype(np.float64) @ np.abs(x))
        assert grads["weight"].shape == whole.shape
        assert (np.abs(grads["weight"].astype(np.float64) - whole) <= bound).all()
        np.testing.assert_array_equal(grads["bias"], gy.sum(axis=0))
        assert grads["weight"].dtype == np.float32 and grads["bias"].dtype == np.float32


def test_a_row_task_fits_under_a_call_the_whole_gradient_would_not():
    rng = np.random.default_rng(4)
    n, f, c = 64, 32, 10
    tl = Timeline()
    arm = ArmTally(timeline=tl)          # the assumed 1.2e8 ops/s: two rows 8192 ops, 68 us
    kt = KernelTally(timeline=tl, side_work=arm)
    Linear(f, c, rng).backward((rng.standard_normal((n, c)) / n).astype(np.float32),
                               rng.standard_normal((n, f)).astype(np.float32), arm)
    kt._on_fabric(8.6e-5, "")             # the median call: one task fits (the whole, 341 us, would not)
    assert arm.pending == 4


def test_where_calls_end_at_once_the_model_places_the_side_work(small_digits):
    """The simulated board's calls are done at the first poll unless told otherwise: no board time
    passes in them, so the driver is not handed the side work (it would find no busy poll and
    leave everything to the optimiser) and the trainer's model places it by the same fit rule as
    on the C simulation: the same Timeline, segment for segment, as the csim backend's."""
    from pathlib import Path

    from e2train.core import golden
    from e2train.device.overlay import KernelOverlay
    from e2train.device.trainer import Trainer
    ov = KernelOverlay(Path(__file__).resolve().parents[3] / "bitstreams" / "sim", sim_impl="golden")
    assert ov.device.calls_end_at_once
    x_tr, y_tr, _, _ = small_digits
    # this tiny network's calls last microseconds: a fast ARM, so that some tasks fit under them
    cfg = dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2,
               arm_ops_per_second=1.2e10)
    board, ref = Trainer(cfg, (x_tr, y_tr), ov.backend()), Trainer(cfg, (x_tr, y_tr), golden)
    assert not board.arm.side_work_by_driver and board.backend._idle is None
    for t in range(2):
        board.train_step(x_tr[32 * t:32 * t + 32], y_tr[32 * t:32 * t + 32], t)
        ref.train_step(x_tr[32 * t:32 * t + 32], y_tr[32 * t:32 * t + 32], t)
    assert board.timeline.critical_s == pytest.approx(ref.timeline.critical_s, rel=1e-12)
    assert board.timeline.critical_s < board.timeline.sum_s        # some side work hid under calls
    ov.device.set_busy_reads(2)                                     # calls that take time: the driver's
    assert Trainer(cfg, (x_tr, y_tr), ov.backend()).arm.side_work_by_driver


@pytest.mark.parametrize("co, ci, k, chunk", [(16, 8, 3, None), (5, 3, 1, 40), (7, 4, 3, 1), (3, 2, 3, None)])
def test_the_int8_copy_rederived_as_side_work_is_the_whole_tensors(co, ci, k, chunk, monkeypatch):
    """After an update the int8 copy and its scale are re-derived as deferred tasks of whole
    output channels; whatever the split (a task a channel with a tiny budget), they are, bit for
    bit, what ``weight_codes`` gives on the whole tensor, nothing is in place before the last
    task has run, and each task tallies what it declared. With no training forward since (the
    weight load's sums), the gains come from the new codes on the ARM where they are read."""
    from e2train.core.fixedpoint import weight_codes
    from e2train.device import nn_qconv
    if chunk is not None:
        monkeypatch.setattr(nn_qconv, "REDERIVE_CHUNK_OPS", chunk)
    rng = np.random.default_rng(co * 100 + ci)
    conv = nn_qconv.QConv("c", ci, co, k, 1, rng)
    conv.w_master = rng.integers(-(1 << 20), 1 << 20, conv.w_master.shape).astype(np.int32)
    if co == 3:
        conv.w_master[:] = 0                       # no weight left: codes 0, scale 1
    old = conv.w_codes
    arm = ArmTally(timeline=Timeline())
    wmax = int(np.abs(conv.w_master.astype(np.int64)).max())
    conv._derive(wmax, None, arm)
    slices = nn_qconv.rederive_slices(co, ci * k * k)
    assert arm.pending == len(slices) and (chunk != 1 or len(slices) == co)
    assert conv.w_codes is old                     # nothing swapped before the tasks run
    arm.flush()
    want, scale = weight_codes(conv.w_master, conv.frac_bits)
    np.testing.assert_array_equal(conv.w_codes, want)
    assert conv.w_scale == scale
    a = np.abs(want.astype(np.int64))
    assert conv._backward_gain(arm) == float(a.sum(axis=(0, 2, 3)).max())
    assert conv._forward_gain(arm) == float(a.sum(axis=(1, 2, 3)).max())
    assert arm.by_kind["weight_codes"] == op_count("weight_codes", conv.w_master.size)
    assert arm.by_kind["weight_gain"] == op_count("weight_gain", 2 * conv.w_master.size)   # with the forward gain's
    assert arm.by_kind["gain_max"] == ci + co


@pytest.mark.parametrize("co, ci, k", [(16, 8, 3), (5, 3, 1)])
def test_the_int8_copy_tallies_the_passes_numpy_runs(co, ci, k):
    """The re-derivation's tally (the codes) is the element-wise passes its numpy code runs over
    the master weights and the codes, counted ufunc by ufunc (``_Counted`` masters, and a codes
    buffer of the backend's that counts too); so is the backward gain's where the ARM forms it
    (no training forward since: its sums of |w| and their max)."""
    from e2train.core.fixedpoint import weight_codes
    from e2train.device import nn_qconv

    class Pinning:
        def pinned(self, shape, dtype):
            return np.zeros(shape, dtype).view(_Counted)

    rng = np.random.default_rng(co + ci)
    conv = nn_qconv.QConv("c", ci, co, k, 1, rng)
    wm = rng.integers(-(1 << 20), 1 << 20, conv.w_master.shape).astype(np.int32)
    conv.w_master = wm.view(_Counted)
    arm = ArmTally(timeline=Timeline())
    _Counted.passes = {}
    conv._derive(int(np.abs(wm.astype(np.int64)).max()), Pinning(), arm)
    arm.flush()
    counted = dict(_Counted.passes)
    assert counted.get("multiply") == wm.size               # widened inside the multiply: no copy
    assert sum(counted.values()) == arm.by_kind["weight_codes"] and set(arm.by_kind) == {"weight_codes"}, counted
    np.testing.assert_array_equal(conv.w_codes, weight_codes(wm, conv.frac_bits)[0])
    _Counted.passes = {}
    conv._backward_gain(arm)
    assert sum(_Counted.passes.values()) == arm.by_kind["weight_gain"] + arm.by_kind["gain_max"], _Counted.passes


def test_the_training_forward_forms_the_backward_gain_on_the_fabric():
    """A training forward asks the backend for the weights' sums of |w| per input channel (the
    weight load's, conv_fwd's w_sums); the input gradient's gain is their max and the ARM sums
    nothing: no weight_gain op in the step; the same gain as the ARM's sums of the codes. The
    stem, which never takes an input gradient, does not ask; an update drops the sums (they
    belong to the old codes) until the next training forward."""
    from e2train.core import golden
    from e2train.core.fixedpoint import UINT8, Dyadic
    from e2train.core.kernel_args import w_abs_sums
    from e2train.device import nn_qconv
    rng = np.random.default_rng(11)
    conv = nn_qconv.QConv("c", 5, 6, 3, 1, rng)
    asked = []

    class Recording:
        def conv_fwd(self, *a, w_sums=None, **kw):
            asked.append(w_sums is not None)
            return golden.conv_fwd(*a, w_sums=w_sums, **kw)

        def __getattr__(self, name):
            return getattr(golden, name)

    be, arm = Recording(), ArmTally(timeline=Timeline())
    x = rng.integers(0, 256, (4, 5, 6, 6)).astype(np.uint8).view(UINT8.dtype)
    kt = KernelTally()
    conv.y_max = 100.0                          # past the calibration (whose forward gain the ARM sums, once)
    _, _, _, cache = conv.forward(x, Dyadic(1, 7), None, True, be, kt, arm)
    assert asked and asked[-1] and "weight_gain" not in arm.by_kind
    np.testing.assert_array_equal(conv._col_sums, w_abs_sums(conv.w_codes))
    gy = rng.integers(-300, 300, (4, 6, 6, 6)).astype(np.int16)
    conv.backward(gy, Dyadic(1, 12), cache, be, kt, arm, lr_q=1 << 10, wd_q=0, beta_q=0)
    arm.flush()
    assert "weight_gain" not in arm.by_kind and conv._col_sums is None      # the update dropped them
    conv.forward(x, Dyadic(1, 7), None, False, be, kt, arm)                   # evaluation: not asked
    assert asked[-1] is False
    stem = nn_qconv.QConv("stem", 1, 4, 3, 1, rng, x_unsigned=False, input_grad=False)
    stem.forward(rng.integers(-128, 128, (2, 1, 5, 5)).astype(np.int8), Dyadic(1, 7), None, True, be, kt, arm)
    assert asked[-1] is False



def test_an_int8_copy_whose_codes_could_leave_int8_runs_and_tallies_the_clip(monkeypatch):
    """Where max |W| cannot show every code inside int8 (a multiplier rounded up past 127/max),
    the copy clips: four passes, tallied as such (``weight_codes_sat``), clipped codes."""
    from e2train.core import fixedpoint as fp
    from e2train.device import nn_qconv

    class Pinning:
        def pinned(self, shape, dtype):
            return np.zeros(shape, dtype).view(_Counted)

    rng = np.random.default_rng(3)
    conv = nn_qconv.QConv("c", 4, 6, 3, 1, rng)
    wm = rng.integers(-(1 << 20), 1 << 20, conv.w_master.shape).astype(np.int32)
    wmax = int(np.abs(wm.astype(np.int64)).max())
    big = fp.Dyadic(130, 0)                      # 130 / 2^0 per unit: wmax maps far past 127
    monkeypatch.setattr(nn_qconv, "weight_code_scale", lambda w, f: (fp.ONE, fp.Dyadic(big.m, 20)))
    assert not fp.requantize_fits(wmax, fp.Dyadic(big.m, 20), fp.INT8)
    conv.w_master = wm.view(_Counted)
    arm = ArmTally(timeline=Timeline())
    _Counted.passes = {}
    conv._derive(wmax, Pinning(), arm)
    arm.flush()
    assert sum(_Counted.passes.values()) == arm.by_kind["weight_codes"] + arm.by_kind["weight_codes_sat"]
    assert arm.by_kind["weight_codes_sat"] == wm.size
    want = fp.INT8.saturate(fp.shift_round_up(wm.astype(np.int64) * big.m, 20))
    assert np.array_equal(np.asarray(conv.w_codes), want) and int(np.abs(want).max()) == 127

@pytest.mark.parametrize("smd", [False, True])
def test_the_next_batch_is_gathered_and_quantised_under_this_steps_calls(small_digits, smd):
    """The epoch's next kept batch is gathered, shifted and quantised as side work of the step
    before: the same codes, running max and results to the bit as at its own step, the same ARM
    ops, and a shorter critical path (its passes no longer sit between the optimiser and the
    next forward). SMD's dropped batches are never prepared."""
    from e2train.core import golden
    from e2train.device.trainer import Trainer
    x_tr, y_tr, _, _ = small_digits
    # width 8: calls long enough for the task to fit under one (at width 4 none is, and the task
    # runs at the optimiser, on the critical path as before)
    cfg = dict(model="resnet8", width=8, batch_size=32, progress_every=0, epochs=2, seed=1, slu_hidden=2,
               augment_shift=1, smd=smd, smd_p=0.5, smd_energy_ratio=None)
    runs = {}
    for prefetch in (False, True):
        tr = Trainer(cfg, (x_tr, y_tr), golden)
        tr.prefetch_input = prefetch
        used, side = [], {}
        step = tr.train_step
        tr.train_step = lambda x, y, t, xin=None, step=step, used=used: (used.append(xin is not None),
                                                                         step(x, y, t, xin=xin))[1]
        timed = tr.arm._timed

        def rec(n_ops, kind, arm=tr.arm, timed=timed, side=side):
            if arm._side and not arm._flushing:
                side[kind] = side.get(kind, 0) + n_ops
            return timed(n_ops, kind)
        tr.arm._timed = rec
        res = tr.run()
        runs[prefetch] = (tr, res, used, side)
    (off, r_off, u_off, s_off), (on, r_on, u_on, s_on) = runs[False], runs[True]
    assert not any(u_off) and "quantize" not in s_off
    # the prepared batches' passes ran under calls: all but each epoch's first batch's
    n_img = x_tr[0].size * 32
    per_px = op_count("quantize", 1) + op_count("maxabs", 1)
    assert s_on["quantize"] + s_on["maxabs"] == per_px * n_img * (len(u_on) - 2)
    # every step but each epoch's first ran on codes prepared the step before
    assert u_on.count(False) == 2 and len(u_on) == r_on["skips"]["batches_run"] > 2
    assert r_on["skips"]["batches_dropped"] == r_off["skips"]["batches_dropped"] == (
        r_on["skips"]["batches_dropped"] if smd else 0)
    for a, b in zip(off.model.convs(), on.model.convs()):
        assert np.array_equal(a.w_master, b.w_master)
    assert off.model.in_max == on.model.in_max
    assert [h["train_loss"] for h in r_off["history"]] == [h["train_loss"] for h in r_on["history"]]
    assert dict(off.arm.by_kind) == dict(on.arm.by_kind)
    assert r_on["modelled"]["seconds"] == pytest.approx(r_off["modelled"]["seconds"])
    # the path is shorter by exactly the moved passes' time: they all fitted under calls
    moved = sum(s_on[k] for k in ("batch", "augment", "quantize", "maxabs")) / off.arm.ops_per_second
    assert moved > 0
    assert r_off["modelled"]["critical_path_seconds"] - r_on["modelled"]["critical_path_seconds"] == pytest.approx(
        moved, rel=1e-9)


def test_a_batch_the_quantiser_refuses_is_left_to_its_own_step(small_digits):
    """Non-finite images in the next batch: the side task tallies what it declared and prepares
    nothing; the batch's own step refuses it in one line before it changes anything."""
    from e2train.core import golden
    from e2train.device.trainer import Trainer
    x_tr, y_tr, _, _ = small_digits
    x_bad = x_tr.copy()
    tr = Trainer(dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2,
                      smd=False, augment=False), (x_bad, y_tr), golden)
    from e2train.device.smd import epoch_plan
    plan = epoch_plan(x_bad.shape[0], 32, 0, 0, 0.0, 0)
    x_bad[plan.batches[1][3], 0, 2, 2] = np.nan       # the second batch
    seen = []
    step = tr.train_step

    def rec(x, y, t, xin=None):
        seen.append((t, xin is not None, [c.w_master.copy() for c in tr.model.convs()]))
        return step(x, y, t, xin=xin)
    tr.train_step = rec
    with pytest.raises(ValueError, match="non-finite values"):
        tr.run()
    assert [(t, pre) for t, pre, _ in seen] == [(0, False), (1, False)]
    # the refused step changed no weight
    for c, w in zip(tr.model.convs(), seen[1][2]):
        assert np.array_equal(c.w_master, w)

"""What still runs on the ARM in float32 numpy: the FC head, softmax cross-entropy, SGD with
momentum; and the cost model that tallies the ARM's work (these, BN's per-channel folds in
``nn_block``, the gates in ``slu_gate``, the network input's quantisation).

Every function adds what it computed to an :class:`ArmTally`, so that the ARM's share of a
training step is in the same ``Work`` tally as the fabric's and is priced by the same energy
model; the tally also keeps the operations per kind, so that a run can say where the ARM's
time goes.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.energy import ARM_OPS_PER_SECOND, FP32   # noqa: F401 (ARM_OPS_PER_SECOND re-exported); float widths are negative in a Work tally
from ..core.fixedpoint import QUANTIZE_PASSES
from ..core.work import Work

# -- ARM cost model -------------------------------------------------------------------------
# Operations per unit (a tensor element, a channel or a sample, as marked) of each ARM-side op,
# counted as float32 ops (``FP32`` = -32 bits in a Work tally, core.energy's convention); FC and
# gate matrix products as fp32 MACs. The per-channel folds work on vectors of 8-64 values, where
# numpy's per-call overhead, not the arithmetic, sets the real time: the flat rate below
# under-prices them by an unknown factor until ``calibrate-arm`` runs on a board. The time model is a flat
# throughput for numpy float32 on the Cortex-A9 (650-667 MHz, NEON): an assumption, about
# one operation every 4-6 cycles once numpy's per-call overhead is spread over the small
# tensors of a ResNet-CIFAR layer. It prices the static power of the time the ARM is busy.
# ``e2train calibrate-arm`` measures it on a board (device/arm_calibration.py); a trainer takes
# the measured figure through its config key ``arm_ops_per_second``; the assumed default,
# ``ARM_OPS_PER_SECOND``, lives in core.energy beside the ARM rates it is re-priced at.
OPS_PER_ELEMENT = {
    # per element of a tensor
    "quantize": QUANTIZE_PASSES,   # fixedpoint.quantize's passes: divide (widened), add, floor, saturating store
    "maxabs": 2,          # the max |x| a scale is chosen from: |.| and max, or a min and a max (network input, loss gradient, calibration)
    "pool": 1,            # the average pool's backward: / (h*w) per sample and channel, then spread over the last block's output
    "softmax_ce": 6,      # max, subtract, exp, sum, divide; the gradient's 1/N
    "sgd": 6,             # weight decay (multiply, add), momentum (scale, add), step (scale, subtract)
    "sigmoid": 5,         # clip, negate, exp, add, divide (slu_gate._sigmoid)
    "tanh": 1,
    "gate_ew": 1,         # the gate cell's element-wise arithmetic
    "scale_stat": 2,      # per sample: the statistic a running scale follows (act_batch_max: the value taken as a float, then its max or exact sum)
    "batch": 1,           # the batch's images gathered from the data set (smd.batch_images)
    "augment": 1,         # their shifted store, when any image moves (the gather's second pass)
    "standardise": 1,     # images kept as 8-bit codes: each gathered code looked up in its channel's table (core.pixels)
    "fc_bias": 1,         # the classifier's bias: added to the logits (forward), summed over the samples (backward)
    # per channel (BN's folds between the fabric's block operations, core.block_ops): the numpy
    # passes each runs over its channel vectors (tests/device/trainer/test_side_work.py counts them)
    "bn_stats": 22,       # training: mean, variance from the conv's sums (5), scaled and unbiased (3), the running statistics (8), 1/sqrt(var + eps) (3), k and c0 (3)
    "bn_stats_eval": 8,   # evaluation: the running statistics widened (2), 1/sqrt (3), k and c0 (3)
    "bn_fold_fwd": 15,    # bn_act's a, b (3), their maxima for the shift (4), rounded to integers (8)
    "bn_fold_bwd": 52,    # dgamma, dbeta, bn_bwd_apply's p, q, t, their bound and shift, rounded; the gradients to float32
    "y_range": 10,        # a conv output's range from its BN sums (nn_qconv.y_range_codes)
    # per (sample, channel) or per sample
    "softmax_ce_sample": 4,   # the label's probability floored, its log, the loss's sum, the gradient's -1
    "pooled": 2,          # bn_act's pooled sums -> mean activation (gate and classifier input)
    "gate_grad": 4,       # dL/dg from bn_bwd_reduce's two gate sums: two products, their difference, the scale
    "gate_grad_store": 1, # its store into dL/dg (with a sample list: the gather and the store, two)
    "gate_penalty": 2,    # per sample and gate: the gate's mean (the execution ratio) and its penalty gradient filled
    "gate_penalty_add": 1,  # the penalty gradient added to dL/dg
    # per weight, and per channel: the int8 copy re-derived after an update, and its gains (nn_qconv)
    "weight_codes": 3,    # requantize's passes: multiply (widened to int64 in the ufunc), add, shift into the int8 copy
    "weight_codes_sat": 1,  # ... and a clip, where a code could leave int8 (fixedpoint.requantize_fits: max |W| says)
    "weight_gain": 2,     # |w| (into int16) and its sums over the gain's channels
    "gain_max": 1,        # per channel: the gain's max over its channels, where it is read
}
# The kinds that only the SLU gates tally (slu_gate and the gate terms of nn_resnet): a run
# without gates has none, and the profile's floor (device.step_profile) takes them off the path.
GATE_KINDS = frozenset({"gate", "gate_ew", "sigmoid", "tanh", "gate_grad", "gate_grad_store", "gate_penalty",
                        "gate_penalty_add"})


def op_count(kind: str, n_elements: int) -> int:
    """The ARM operations ``n_elements`` units of ``kind`` cost (``OPS_PER_ELEMENT``)."""
    return int(n_elements) * OPS_PER_ELEMENT[kind]


def mac_ops(n_macs: int) -> int:
    """The ARM operations of ``n_macs`` fp32 multiply-accumulates (two each for the time model)."""
    return 2 * int(n_macs)


class OpCount:
    """What an ``ArmTally`` would count, counted only: the same ``ops``/``macs`` calls, no
    tally, no time. A deferred task's declared ops come from running its tallying against one."""

    def __init__(self) -> None:
        self.total = 0

    def ops(self, kind: str, n_elements: int) -> None:
        self.total += op_count(kind, n_elements)

    def macs(self, n: int, kind: str) -> None:
        self.total += mac_ops(n)


class ArmTally:
    """Adds ARM-side work (ops, MACs, modelled seconds) to a ``Work``.

    It also runs the ARM's *side work* (``defer``: results only the step's optimiser reads)
    under one rule, the same in the code and in ``core.overlap.Timeline``: a deferred task runs
    only while the fabric is busy, and starts only if it fits. A task waits only for the task
    it names in ``after`` (the handle ``defer`` returned for it: a gate's backward step names the
    step deferred before it, the BPTT's order), not for everything deferred before it. At each
    chance the ARM's one thread starts the earliest-deferred task whose predecessor has run and
    whose modelled time (the ops declared to ``defer`` over this tally's ARM rate) fits in what
    is left of the call's modelled time; a task that does not fit waits for a later call, and
    with it only the tasks that name it. A task that started runs to its end. What is left at
    the optimiser runs there (``flush``, in deferral order, so predecessors first), so nothing
    carries into the next step. A task must tally exactly the ops it declared (else a
    RuntimeError: the count where it was deferred disagrees with the cost model it tallies by).

    Who decides what is left of the call: on the simulated board (synchronous calls) the model:
    after each fabric call is tallied, ``run_while_fabric_busy`` starts tasks by that rule while
    one fits between the Timeline's side start (``Timeline.side_start_s``) and the call's modelled
    end. On a board the driver: ``idle(remaining_s)`` is its polling loop's hook
    (``EngineDriver.wait``), given the call's modelled duration less the wall time since its
    ap_start; the trainer hands it to a backend that takes one and sets ``side_work_by_driver``;
    the segments of the tasks it ran are added to the Timeline after the call they ran under
    once that is tallied.
    """

    def __init__(self, work: Work | None = None, ops_per_second: float = ARM_OPS_PER_SECOND, timeline=None):
        if not ops_per_second > 0:
            raise ValueError(f"ARM throughput must be > 0 ops/s, got {ops_per_second!r}")
        self.work = work if work is not None else Work()
        self.ops_per_second = float(ops_per_second)
        self.timeline = timeline                         # core.overlap.Timeline of the step, or None
        self.by_kind: Counter = Counter()                # kind -> operations (MACs count 2)
        # kind -> the operations of side tasks run while a call kept the fabric busy (the rest of
        # by_kind ran between the calls or at the optimiser: on the step's critical path)
        self.under_calls_by_kind: Counter = Counter()
        self.side_work_by_driver = False                 # a board's driver runs the tasks (``idle``)
        self._pending: list = []                         # deferred side work: (handle, fn, ops, after), in deferral order
        self._next_handle = 0
        self._held: list = []                            # ARM ops of tasks run under a call not yet tallied
        self._side = False                               # a side task is running
        self._side_ops = 0                               # ... and the ops it tallied so far
        self._side_kinds: set = set()
        self._under_call = False                         # ... inside the driver's wait (``idle``)
        self._flushing = False                           # ... at the optimiser, after the last call returned

    @property
    def pending(self) -> int:
        """Deferred tasks not run yet."""
        return len(self._pending)

    def _timed(self, n_ops: int, kind: str) -> None:
        if self._side:
            self._side_ops += n_ops
            self._side_kinds.add(kind)
            if not self._flushing:
                self.under_calls_by_kind[kind] += n_ops
        self.work.add_arm_time(n_ops, self.ops_per_second)
        if self.timeline is None:
            return
        if self._under_call:
            self._held.append(n_ops)                     # placed after the call it ran under
        else:
            side = self._side and not self._flushing
            self.timeline.add("arm", n_ops / self.ops_per_second, "side" if side else "", arm_ops=n_ops)

    def defer(self, fn, *, ops: int, after: int | None = None) -> int:
        """Queue ``fn()``: ARM work whose result nothing reads before the step's optimiser (a
        gate's backward step, a slice of the classifier's weight gradient), which tallies ``ops``
        ARM operations (``op_count``, ``mac_ops``, ``OpCount``). It runs while the fabric is busy
        with a later call it fits under, once the task ``after`` names (a handle this method
        returned; None: no predecessor) has run, or at the latest at ``flush``. Returns its
        handle."""
        if int(ops) != ops or ops < 0:
            raise ValueError(f"a deferred task's ops are an int >= 0, got {ops!r}")
        if after is not None and not (isinstance(after, int) and 0 <= after < self._next_handle):
            raise ValueError(f"after= names a task this tally deferred (the handle defer returned), got {after!r}")
        handle = self._next_handle
        self._next_handle += 1
        self._pending.append((handle, fn, int(ops), after))
        return handle

    def _next(self, fits) -> int | None:
        """The index of the earliest-deferred pending task whose predecessor has run and whose
        modelled seconds satisfy ``fits``; None if there is none."""
        waiting = {t[0] for t in self._pending}
        for j, (_, _, ops, after) in enumerate(self._pending):
            if (after is None or after not in waiting) and fits(ops / self.ops_per_second):
                return j
        return None

    def _run_one(self, j: int) -> None:
        _, fn, declared, _ = self._pending.pop(j)
        self._side, self._side_ops, self._side_kinds = True, 0, set()
        try:
            fn()
        finally:
            self._side = False
        if self._side_ops != declared:
            kinds = ", ".join(sorted(self._side_kinds)) or "no ARM work"
            raise RuntimeError(f"a deferred ARM task ({kinds}) tallied {self._side_ops} ops but declared {declared}: "
                               f"fix the count where it is deferred to match the cost model it tallies by")

    def _place_held(self) -> None:
        for n_ops in self._held:
            self.timeline.add("arm", n_ops / self.ops_per_second, "side", arm_ops=n_ops)
        self._held.clear()

    def run_while_fabric_busy(self, fabric_end_s: float) -> None:
        """A fabric call ending at ``fabric_end_s`` (the Timeline's clock) has just been tallied:
        start tasks by the rule (the class's) while one fits between the ARM's side start and that
        end. On a board the driver already ran what fitted: its tasks' segments are placed under
        this call, nothing more starts."""
        if self._side or self.timeline is None:
            return
        self._place_held()
        if self.side_work_by_driver:
            return
        while True:
            start = self.timeline.side_start_s()
            j = self._next(lambda s: start + s <= fabric_end_s)
            if j is None:
                return
            self._run_one(j)

    def idle(self, remaining_s: float) -> bool:
        """The driver's hook while a call runs, ``remaining_s`` the call's modelled time left:
        run one task by the rule (the class's); False if none ran (none pending, or none whose
        predecessor has run fits: they wait for a later call)."""
        j = None if self._side else self._next(lambda s: s <= remaining_s)
        if j is None:
            return False
        self._under_call = True
        try:
            self._run_one(j)
        finally:
            self._under_call = False
        return True

    def flush(self) -> None:
        """Run the deferred side work now, one task after the other in deferral order (a task's
        predecessor was deferred before it; the step's optimiser needs their results): no call
        runs any more, so its segments are the ARM's plain work, after
        the last call returned."""
        if self.timeline is not None:
            self._place_held()
        self._flushing = True
        try:
            while self._pending:
                self._run_one(self._next(lambda s: True))
        finally:
            self._flushing = False

    def ops(self, kind: str, n_elements: int) -> None:
        n = op_count(kind, n_elements)
        if n:
            self.work.add_ops(n, FP32)
            self.by_kind[kind] += n
            self._timed(n, kind)

    def macs(self, n: int, kind: str) -> None:
        """``n`` fp32 MACs of a matrix product (``kind``: what it belongs to, "fc" or "gate")."""
        n = int(n)
        if n:
            self.work.add_macs(n, FP32, FP32)
            self.by_kind[kind] += mac_ops(n)
            self._timed(mac_ops(n), kind)


# -- fully connected + loss -------------------------------------------------------------------
# The classifier's weight gradient, deferred as side work, goes in tasks of whole output rows
# (classes), at most this many ARM ops each but two rows at least, so that a task fits under
# more of the fabric calls it can hide under. Two rows at least: numpy computes a one-row
# product through gemv, which sums in another order than the whole product's gemm (OpenBLAS:
# other bits in about half the cases tried), while row slices of two or more rows gave the
# whole product's bits in every shape tried on an x86 host's OpenBLAS; the PYNQ image's
# numpy 1.21 sums slices in another order (float32 rounding apart). Either way the trainer
# computes this gradient by these slices, deferred or not, so its results do not depend on
# where the tasks run (tests/device/trainer/test_side_work.py). The figure: in seed 0's
# digits comparison run (resnet14, width 8, batch 64) the median fabric call lasts 8.6e-5 s
# (modelled), 10261 ops at the assumed 1.2e8 ops/s (90% last at least 4.5e-5 s, 5365 ops); a
# class row there is 2 x 64 x 32 = 4096 ops, so a task is two rows, 8192 ops (68 us: five tasks
# in place of one of 341 us), under the median call.
FC_GRAD_CHUNK_OPS = 10_000


def fc_grad_slices(n_samples: int, fan_in: int, fan_out: int) -> list[tuple[int, int]]:
    """The (first, end) output rows of each task of the classifier's deferred weight gradient:
    as many rows as ``FC_GRAD_CHUNK_OPS`` allows (``mac_ops`` of n_samples x fan_in MACs a row),
    two at least; a one-row remainder joins the task before it."""
    rows = max(2, FC_GRAD_CHUNK_OPS // max(1, mac_ops(n_samples * fan_in)))
    cuts = list(range(0, fan_out, rows)) + [fan_out]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] == 1:
        del cuts[-2]
    return list(zip(cuts[:-1], cuts[1:]))


class Linear:
    def __init__(self, fan_in: int, fan_out: int, rng: np.random.Generator):
        bound = 1.0 / np.sqrt(fan_in)          # torch's default init
        self.weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        self.bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)

    def params(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x: np.ndarray, tally: ArmTally) -> np.ndarray:
        tally.macs(x.shape[0] * self.weight.size, "fc")
        tally.ops("fc_bias", x.shape[0] * self.bias.size)
        return x @ self.weight.T + self.bias

    def backward(self, gy: np.ndarray, x: np.ndarray, tally: ArmTally):
        """(input gradient, parameter gradients). The input gradient is what the fabric's
        backward waits for; the weight gradient only the optimiser reads, so it is side work
        (``ArmTally.defer``), split by output rows (classes) into independent tasks
        (``fc_grad_slices``) so that each can fit under a shorter call; its dict is filled when
        every task has run (at the latest when the tally flushes). A task computes its rows'
        ``gy[:, rows].T @ x`` (two rows at least: on an x86 OpenBLAS the whole product's bits, on
        the PYNQ image's numpy within float32 rounding of it; see ``FC_GRAD_CHUNK_OPS``). The bias (``gy.sum(0)``, a reduction numpy orders otherwise on
        a column slice) goes whole with the first task, so it stays the unchunked sum."""
        n, fan_out = gy.shape
        tally.macs(n * self.weight.size, "fc")
        grads: dict[str, np.ndarray] = {}
        weight = np.empty((fan_out, x.shape[1]), np.float32)
        bias = np.empty(fan_out, np.float32)
        left = [0]

        def rows_grad(r0: int, r1: int, n_macs: int) -> None:
            tally.macs(n_macs, "fc")
            weight[r0:r1] = gy[:, r0:r1].T @ x
            if r0 == 0:
                tally.ops("fc_bias", gy.size)
                bias[:] = gy.sum(axis=0)
            left[0] -= 1
            if left[0] == 0:
                grads.update({"weight": weight, "bias": bias})
        for r0, r1 in fc_grad_slices(n, x.shape[1], fan_out):
            n_macs = n * (r1 - r0) * x.shape[1]
            left[0] += 1
            ops = mac_ops(n_macs) + (op_count("fc_bias", gy.size) if r0 == 0 else 0)
            tally.defer(lambda r0=r0, r1=r1, m=n_macs: rows_grad(r0, r1, m), ops=ops)
        return gy @ self.weight, grads


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, tally: ArmTally):
    """Mean cross-entropy and its gradient w.r.t. the logits (float32)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = float(-np.log(np.maximum(p[np.arange(n), labels], 1e-30)).mean())
    g = p.copy()
    g[np.arange(n), labels] -= 1.0
    tally.ops("softmax_ce", logits.size)
    tally.ops("softmax_ce_sample", n)
    return loss, (g / n).astype(np.float32, copy=False)


# -- optimiser -------------------------------------------------------------------------------
class SGDMomentum:
    """torch.optim.SGD semantics: g += wd*w; v = m*v + g; w -= lr*v (in place, float32)."""

    def __init__(self, momentum: float, weight_decay: float):
        self.momentum = np.float32(momentum)
        self.weight_decay = np.float32(weight_decay)
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, name: str, w: np.ndarray, g: np.ndarray, lr: float, tally: ArmTally,
             decay: bool = True) -> None:
        if decay and self.weight_decay:
            g = g + self.weight_decay * w
        v = self.velocity.get(name)
        if v is None:
            v = self.velocity[name] = g.astype(np.float32, copy=True)
        else:
            v *= self.momentum
            v += g
        w -= np.float32(lr) * v
        tally.ops("sgd", w.size)

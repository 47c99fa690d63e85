"""A training step's modelled time as its critical path, not the sum of its parts (numpy-free).

Three resources work at once on the board: the fabric (the training engine's passes), the DMA
(transfers the fabric does not already overlap inside a pass) and the ARM (BN, ReLU,
quantisation, shortcuts, the head, the optimiser). Each runs its own tasks in the order they
are issued (one queue per resource, no reordering); a task starts when its resource is free
and every task it depends on has finished. The step then lasts as long as its critical path,
and ``schedule`` reports that beside the plain sum so a report can show both.

The board's trainer is synchronous: the ARM's one thread issues a fabric call and waits for it
to return before it does the next piece of work. So, in the trainer's program (``Timeline``),
fabric and ARM alternate, and the only overlap is the ARM's *side work* (results only the
step's optimiser reads: the SLU gates' backward steps, the classifier's weight gradient), which
that thread runs while it waits for a call, when the task's modelled time fits in what is left
of the call (``nn_layers.ArmTally``). DMA is inside each call's own time (the performance model
overlaps it per call).

``chain_step_tasks`` builds the same program for a chain of convolution layers l = 0..L-1 as a
task graph (the bench's form):

* forward: conv l+1 on the fabric needs layer l's output after BN (batch statistics over the
  whole output), ReLU and quantisation on the ARM, so fabric and ARM alternate;
* DMA: a layer's weights (and whatever the fabric loads before it can start) do not depend on
  earlier layers, so a ``dma`` time, where given, loads double-buffered while the previous
  layer computes (an engine-side prefetch; the trainer's calls keep their transfers inside);
* backward: the input-gradient pass of layer l gives g_x(l), then the weight-gradient pass of
  layer l runs; the ARM computes the BN/ReLU backward of layer l-1 (g_y(l-1)) when that call
  returns, and the input-gradient pass of layer l-1 waits for it;
* the head (FC, loss, its backward) sits between the two passes on the ARM;
* side work: ARM work of layer l that nothing in the step waits for (the device trainer's int8
  weight copy, re-derived after the update), a ``side_arm`` time issued once the ARM has done
  layer l-1's BN/ReLU backward, so that it runs beside layer l-1's fabric passes (the trainer
  starts such work only under a call it fits in: where it does not fit here it delays the next
  ARM step, so this errs long); the first layer's comes after the step's last pass.

Everything here is modelled: the inputs are the performance model's and the ARM rate's times.
"""
from __future__ import annotations

from dataclasses import dataclass

RESOURCES = ("fabric", "dma", "arm")


@dataclass(frozen=True)
class Task:
    name: str
    resource: str            # one of RESOURCES
    seconds: float
    after: tuple = ()        # names of tasks that must finish before this one starts


def schedule(tasks: list[Task]) -> dict:
    """In-order list scheduling: {"critical_s", "sum_s", "busy_s" per resource, "start", "finish"}.

    A task may depend only on tasks listed before it (the order is the issue order)."""
    free = dict.fromkeys(RESOURCES, 0.0)
    busy = dict.fromkeys(RESOURCES, 0.0)
    start: dict = {}
    finish: dict = {}
    for t in tasks:
        if t.resource not in RESOURCES:
            raise ValueError(f"task {t.name!r}: unknown resource {t.resource!r}; expected one of {RESOURCES}")
        if not t.seconds >= 0:
            raise ValueError(f"task {t.name!r}: time must be >= 0 s, got {t.seconds!r}")
        if t.name in finish:
            raise ValueError(f"task {t.name!r} listed twice")
        missing = [d for d in t.after if d not in finish]
        if missing:
            raise ValueError(f"task {t.name!r} depends on {missing}, which are not listed before it")
        s = max([free[t.resource], *(finish[d] for d in t.after)])
        start[t.name], finish[t.name] = s, s + t.seconds
        free[t.resource] = finish[t.name]
        busy[t.resource] += t.seconds
    return {"critical_s": max(finish.values(), default=0.0), "sum_s": sum(busy.values()),
            "busy_s": busy, "start": start, "finish": finish}


LAYER_KEYS = ("dma", "fwd", "fwd_arm", "bwd_arm", "bwd_data", "wgrad", "side_arm")


def chain_step_tasks(layers: list[dict], head_arm_s: float = 0.0) -> list[Task]:
    """The tasks of one training step of a chain of conv layers, with the dependencies above.

    Each layer: {"name", "dma": weights and first tiles in (s), "fwd": forward pass (s),
    "fwd_arm": BN/ReLU/quantisation of its output (s), "bwd_arm": BN/ReLU backward that turns
    the next layer's g_x into its g_y (s), "bwd_data": input-gradient pass (s; 0 for the first
    layer, which has none), "wgrad": weight-gradient pass (s), "side_arm": ARM work after the
    weight gradient that nothing in the step waits for (s)}; missing keys are 0."""
    out: list[Task] = []
    names = [str(ly["name"]) for ly in layers]
    if len(set(names)) != len(names):
        raise ValueError("layer names must be unique")
    for ly in layers:
        bad = sorted(set(ly) - {"name", *LAYER_KEYS})
        if bad:
            raise ValueError(f"layer {ly['name']!r}: unknown keys {bad}; expected {LAYER_KEYS}")
    prev_arm = None
    for ly in layers:                                            # forward
        n = ly["name"]
        out.append(Task(f"{n}.dma", "dma", ly.get("dma", 0.0)))
        out.append(Task(f"{n}.fwd", "fabric", ly.get("fwd", 0.0), (f"{n}.dma",) + ((prev_arm,) if prev_arm else ())))
        out.append(Task(f"{n}.fwd_arm", "arm", ly.get("fwd_arm", 0.0), (f"{n}.fwd",)))
        prev_arm = f"{n}.fwd_arm"
    out.append(Task("head", "arm", head_arm_s, (prev_arm,) if prev_arm else ()))
    g_ready = "head"                       # what the next layer down waits for: its g_x
    side = None                            # the layer above's side work, issued after this ARM step
    for i in range(len(layers) - 1, -1, -1):                     # backward
        n = layers[i]["name"]
        out.append(Task(f"{n}.bwd_arm", "arm", layers[i].get("bwd_arm", 0.0), (g_ready,)))
        if side is not None:
            out.append(side)
        out.append(Task(f"{n}.bwd_data", "fabric", layers[i].get("bwd_data", 0.0), (f"{n}.bwd_arm",)))
        out.append(Task(f"{n}.wgrad", "fabric", layers[i].get("wgrad", 0.0), (f"{n}.bwd_arm",)))
        # the synchronous thread returns from the weight gradient before its next ARM work
        g_ready = f"{n}.wgrad"
        side = Task(f"{n}.side_arm", "arm", layers[i].get("side_arm", 0.0), (g_ready,))
    if side is not None:
        out.append(side)
    return out


def serial_seconds(layers: list[dict], head_arm_s: float = 0.0) -> float:
    """The sum of every part: what the step costs with no overlap at all."""
    return head_arm_s + sum(float(ly.get(k, 0.0)) for ly in layers for k in LAYER_KEYS)


def _join(a: tuple, b: tuple) -> tuple:
    """The later of two path sets: their union, less every path that is the longest at no ARM
    rate. A path (f, ops) lasts f + ops * u with u = 1 / rate > 0, a line in u; only the lines on
    the upper envelope over u > 0 can be the critical path, and adding the same segment to every
    path of a set, or joining it with another set, never brings a dropped line back."""
    best, dom = -1.0, []
    for f, ops in sorted(set(a) | set(b), key=lambda p: (-p[1], -p[0])):   # most ops first
        if f > best:                       # not dominated (as many ops, at least as much fabric)
            dom.append((f, ops))
            best = f
    hull: list = []
    for p in reversed(dom):                # ops ascending, fabric descending
        while len(hull) >= 2:
            (f0, a0), (f1, a1) = hull[-2], hull[-1]
            # the middle line is never above both neighbours once they cross no later than it
            if (f0 - p[0]) * (a1 - a0) <= (f0 - f1) * (p[1] - a0):
                hull.pop()
            else:
                break
        hull.append(p)
    return tuple(hull)


def path_seconds(paths, ops_per_second: float) -> float:
    """A path set's length at an ARM rate: the longest of its (fabric seconds, ARM ops) paths."""
    return max((f + ops / ops_per_second for f, ops in paths), default=0.0)


class Timeline:
    """The same rule applied on the fly to what a trainer issues, in order, within one step.

    Each kernel call and each ARM operation is added as it runs. The ARM's one thread issues
    every fabric call and waits for it to return (the driver is synchronous), so a segment that
    is not side work starts once both the fabric and the ARM are free: a fabric call after the
    ARM work before it, ARM work after the fabric call before it. The kinds "bwd_data" and
    "wgrad" only label passes; they change no time. ``close_step`` ends a step: the next starts
    when both resources are free.

    *Side* segments (kind "side": ARM work whose result only the step's optimiser reads, the SLU
    gates' backward step per block and the classifier's weight gradient) are what that thread
    runs while it waits for a call (``ArmTally.defer``): one starts when the ARM is free, no
    earlier than the start of the fabric call issued last (it read only what came before that
    call), and holds up nothing but the ARM. ``ArmTally`` starts one only if its modelled time
    fits in what is left of the call (``side_start_s``); one that overruns anyway (on a board,
    where wall time decides) delays the next call's issue, and the ARM work after it, by what it
    overran. The side segments left at the optimiser run there, one after the other.

    Beside the times it keeps every instant as a *path set*: the (fabric seconds, ARM ops) of
    each chain of segments that can end there, less the dominated ones. An ARM segment added
    with its ``arm_ops`` counts them, not its seconds, so a step's critical path can be
    recomputed at any ARM rate without re-running it (``path_seconds``): at the rate the
    segments were timed at it is the same critical path; at another rate, the same segments in
    the same places (which side segment ran under which call is decided once, at the recorded
    rate). ``step_paths`` keeps each closed step's set (a few pairs: the side work's chains),
    ``timed`` the fabric seconds and ARM ops of every closed step's segments."""

    def __init__(self) -> None:
        self.critical_s = 0.0          # closed steps' critical paths, summed
        self.sum_s = 0.0               # closed steps' segments, summed
        self.step_paths: list[tuple] = []
        self.timed = [0.0, 0]          # closed steps' fabric seconds (and ARM seconds without ops), ARM ops
        self._open()

    def _open(self) -> None:
        self._free = {"fabric": 0.0, "arm": 0.0}
        self._step_sum = 0.0
        zero = ((0.0, 0),)
        self._pfree = {"fabric": zero, "arm": zero}
        self._fabric_start, self._pfabric_start = 0.0, zero   # of the fabric call issued last
        self._step_timed = [0.0, 0]

    def add(self, resource: str, seconds: float, kind: str = "", arm_ops: int | None = None) -> None:
        """``kind``: "side" for an ARM segment whose output nothing in the step reads before the
        optimiser; anything else ("bwd_data", "wgrad": labels of those passes) otherwise.
        ``arm_ops``: the operations an ARM segment's ``seconds`` were timed from."""
        if resource not in self._free:
            raise ValueError(f"unknown resource {resource!r}; expected fabric or arm")
        if not seconds >= 0:
            raise ValueError(f"time must be >= 0 s, got {seconds!r}")
        if arm_ops is not None and (resource != "arm" or int(arm_ops) < 0):
            raise ValueError(f"arm_ops belongs to an ARM segment and is >= 0, got {arm_ops!r} on {resource}")
        if kind == "side" and resource != "arm":
            raise ValueError("a side segment is ARM work; the fabric has none")
        if kind == "side":                   # from the start of the call issued last, ARM only
            start = max(self._free["arm"], self._fabric_start)
            pstart = _join(self._pfree["arm"], self._pfabric_start)
        else:                                # the synchronous thread: once both are free
            start = max(self._free["fabric"], self._free["arm"])
            pstart = _join(self._pfree["fabric"], self._pfree["arm"])
            if resource == "fabric":
                self._fabric_start, self._pfabric_start = start, pstart
        end = start + seconds
        self._free[resource] = end
        df, da = (0.0, int(arm_ops)) if arm_ops is not None else (float(seconds), 0)
        self._pfree[resource] = tuple((f + df, a + da) for f, a in pstart)
        self._step_sum += seconds
        self._step_timed[0] += df
        self._step_timed[1] += da

    def free_s(self, resource: str) -> float:
        """When ``resource`` ("fabric" or "arm") finishes what the step in progress gave it."""
        return self._free[resource]

    def side_start_s(self) -> float:
        """When a side segment added now would start: the ARM free, the call issued last started."""
        return max(self._free["arm"], self._fabric_start)

    def open_s(self) -> float:
        """The critical path of the step in progress so far."""
        return max(self._free.values())

    def open_paths(self) -> tuple:
        """The path set of the step in progress so far."""
        return _join(self._pfree["fabric"], self._pfree["arm"])

    def close_step(self) -> float:
        """End the step; returns the time it overlapped (its sum minus its critical path)."""
        crit, total = self.open_s(), self._step_sum
        self.critical_s += crit
        self.sum_s += total
        self.step_paths.append(self.open_paths())
        self.last_timed = (self._step_timed[0], self._step_timed[1])
        self.timed[0] += self._step_timed[0]
        self.timed[1] += self._step_timed[1]
        self._open()
        return total - crit

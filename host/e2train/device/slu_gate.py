"""SLU gates: one small recurrent cell shared by all residual blocks decides, per sample,
whether each block runs (numpy float32 on the ARM; forward and backward written out).

Per block i: e_i = avgpool(x_i) (the block input, N x C_i, from the fabric's pooled sums), u_i = E_i e_i + b_i (a per-block
linear embedding into d dims), h_i = cell(u_i, h_{i-1}) (one recurrent cell shared by every
block, h_0 = 0: a GRU, or an LSTM as in SkipNet, config key ``slu_cell``; both with PyTorch's
gate layout, GRU r|z|n and LSTM i|f|g|o), p_i = sigmoid(v . h_i + c), gate g_i hard: in training drawn on with probability p_i
(SkipNet's sampling; ``slu_sampling``), in evaluation [p_i > 0.5]. The backward is the
straight-through estimator: dL/dp_i := dL/dg_i. The gate input is detached from the
backbone (the gate learns from its own loss terms, the backbone does not learn from the gate).

Loss terms that reach the gates:

* the task loss through the block: with y = g * relu(F(x) + s(x)) + (1 - g) * s(x),
  dL/dg = sum(dL/dy * (relu(F(x) + s(x)) - s(x))) per sample -- known for the samples whose
  block ran, zero for the others (their F(x) was never computed, which is the point);
* the FLOPs penalty on R, the executed fraction of the gated blocks' MACs in this batch
  (sum_i cost_i * mean_n g_in / sum_i cost_i): ``cost="target"``, alpha * (R - target)**2,
  pushes the execution ratio towards ``target`` from either side; ``cost="flops"``, alpha * R,
  is the paper's (E²-Train Eq. 1: "accumulating the computational cost (FLOPs) of the layers
  that are selected"), which only ever pushes towards fewer executions.
"""
from __future__ import annotations

import numpy as np

from ..core.train_keys import SLU_COSTS
from .nn_layers import ArmTally, OpCount


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32, copy=False)


CELLS = ("gru", "lstm")
# Stacked gate rows of each cell (the weights are (rows x d, d); a product's MACs follow from it).
_ROWS = {"gru": 3, "lstm": 4}
# The element-wise work of each cell, counted from the code below: one op per element of each
# numpy pass that is not a matrix product (a sum over samples counts its input elements), as
# OPS_PER_ELEMENT counts every ARM op; the sigmoids and tanhs are their own kinds (a sigmoid is
# five passes, `_sigmoid`). tests/device/trainer/test_side_work.py counts the passes numpy runs
# and holds the tallies to them.
#   forward, per sample and unit: sigmoids, tanhs, other passes:
#     GRU  r, z | n | embedding bias 1, the two stacked biases 6, the r/z/n sums 3, r * gh 1,
#          h' = (1 - z) * n + z * h 4: 15
#     LSTM i, f, o | g, tanh(c') | embedding bias 1, a's three sums per row 12, c' = f*c + i*g 3,
#          h' = o * tanh(c') 1: 17
#   forward, per sample: the head's sigmoid; its bias and the gate's draw or threshold 2
#   backward step, per sample and unit: GRU 24, LSTM 31 (the chain rule through the passes
#     above, and the stacked biases' sums over samples: 2 x rows); on the BPTT's first step
#     the recurrent gradients coming in are none, one pass fewer per state (GRU h; LSTM h, c)
#   backward step, per sample: dlogit = dg * p * (1 - p) and its sum 4
#   backward step, per step: the parameter gradients accumulated, 2 rows d^2 + 2 rows d + d + 1
_FWD = {"gru": (2, 1, 15), "lstm": (3, 2, 17)}
_BWD = {"gru": (24, 1), "lstm": (31, 2)}       # per sample and unit; fewer on the first step
_BWD_PER_SAMPLE = 4
_FWD_PER_SAMPLE = 2


class GateNet:
    def __init__(self, in_channels: list[int], costs: list[int], hidden: int, rng: np.random.Generator,
                 cell: str = "gru"):
        if cell not in CELLS:
            raise ValueError(f"SLU gate cell must be one of {', '.join(CELLS)}, not {cell!r}")
        d = hidden
        self.d = d
        self.cell = cell
        self.costs = np.asarray(costs, np.float64)
        self.params: dict[str, np.ndarray] = {}
        for i, c in enumerate(in_channels):
            b = 1.0 / np.sqrt(c)
            self.params[f"embed{i}.weight"] = rng.uniform(-b, b, (d, c)).astype(np.float32)
            self.params[f"embed{i}.bias"] = np.zeros(d, np.float32)
        b = 1.0 / np.sqrt(d)
        k = _ROWS[cell] * d
        self.params[f"{cell}.wx"] = rng.uniform(-b, b, (k, d)).astype(np.float32)
        self.params[f"{cell}.wh"] = rng.uniform(-b, b, (k, d)).astype(np.float32)
        self.params[f"{cell}.bx"] = np.zeros(k, np.float32)
        self.params[f"{cell}.bh"] = np.zeros(k, np.float32)
        self.params["head.weight"] = rng.uniform(-b, b, d).astype(np.float32)
        # start with the gates open (p ~ 0.88): every block trains at first, the penalty
        # then closes the ones the task loss does not defend
        self.params["head.bias"] = np.array([2.0], np.float32)
        self.reset()

    def reset(self, n: int = 0) -> None:
        """Start a new mini-batch: zero hidden (and LSTM cell) state, forget the caches."""
        self.h = np.zeros((n, self.d), np.float32)
        self.c = np.zeros((n, self.d), np.float32)
        self.caches: list[tuple] = []
        self._last: int | None = None           # the gate whose forward ran last: the BPTT's first step
        self._embed_pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # block -> (du, e) of a step that ran

    def forward(self, i: int, e: np.ndarray, tally: ArmTally,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gate of block i for the block input's average pool e (N, C): (probabilities, hard gates).
        The fabric's bn_act sums each sample's channels as it writes the block input, so the pool
        costs the ARM one scaling per (sample, channel), tallied where it is formed.

        With ``rng`` (training) each gate is drawn on with probability p; without, p > 0.5.
        Thresholding in training makes the gates all-or-nothing per block, because p hardly
        depends on the input early on: the penalty then switches a block off for every sample
        at once, and a block that runs for no sample gets no task gradient to come back."""
        P = self.params
        e = np.asarray(e, np.float32)
        u = e @ P[f"embed{i}.weight"].T + P[f"embed{i}.bias"]
        h = self.h
        step = _gru_forward if self.cell == "gru" else _lstm_forward
        h_new, state = step(P, u, h, self.c, self.d)
        logit = h_new @ P["head.weight"] + P["head.bias"][0]
        p = _sigmoid(logit)
        self.caches.append((i, e, u, h, state, h_new, p))
        self._last = i
        self.h = h_new
        if self.cell == "lstm":
            self.c = state[-1]
        n, d = e.shape[0], self.d
        sig, tanh, other = _FWD[self.cell]
        tally.macs(n * (u.shape[1] * e.shape[1] + 2 * _ROWS[self.cell] * d * d + d), "gate")
        tally.ops("sigmoid", n * (sig * d + 1))
        tally.ops("tanh", n * tanh * d)
        tally.ops("gate_ew", n * (other * d + _FWD_PER_SAMPLE))
        hard = rng.random(p.shape) < p if rng is not None else p > 0.5
        return p, hard

    def penalty(self, gates: list[np.ndarray], alpha: float, target: float, tally=None, cost: str = "target"):
        """The penalty (alpha * (R - target)**2, or alpha * R with ``cost="flops"``), R, and
        dPenalty/dg per block (one value per sample): each gate's mean and its gradient filled,
        two passes a sample and gate ("gate_penalty")."""
        if cost not in SLU_COSTS:
            raise ValueError(f"SLU cost must be one of {', '.join(SLU_COSTS)}, not {cost!r}")
        n = gates[0].shape[0]
        if tally is not None:
            tally.ops("gate_penalty", n * len(gates))
        tot = self.costs.sum()
        r = float(sum(c * g.mean() for c, g in zip(self.costs, gates)) / tot)
        if cost == "flops":
            coef, value = alpha / (n * tot), alpha * r
        else:
            coef, value = 2.0 * alpha * (r - target) / (n * tot), alpha * (r - target) ** 2
        return value, r, [np.full(n, coef * c, np.float32) for c in self.costs]

    def backward(self, dgates: list[np.ndarray], tally: ArmTally) -> dict[str, np.ndarray]:
        """BPTT through the shared cell. dgates[i]: dL/dg_i per sample (straight-through)."""
        self.backward_begin()
        for dg in reversed(dgates):
            self.backward_embed(self.backward_step(dg, tally), tally)
        return self.backward_end()

    # The same BPTT a step at a time, last gate first, so that each step can run as soon as its
    # block's gate gradient is known (the trainer runs it as ARM side work under the fabric's
    # backward passes: nothing in the step reads the gates' gradients before the optimiser).
    # A block's embedding gradient is a task of its own after its step: only the optimiser reads
    # it and no later step needs it, so the chain of steps does not wait for it.
    def backward_begin(self) -> None:
        self._grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._dh_next = self._dc_next = None
        self._embed_pending = {}

    def backward_step(self, dg: np.ndarray, tally: ArmTally) -> int:
        """One BPTT step: the last gate whose step has not run, with dL/dg per sample. Leaves that
        block's embedding gradient to ``backward_embed``; returns the gate's block index."""
        P, d, grads = self.params, self.d, self._grads
        step = _gru_backward if self.cell == "gru" else _lstm_backward
        i, e, u, h, state, h_new, p = self.caches.pop()
        first = self._dh_next is None
        dlogit = (dg * p * (1 - p)).astype(np.float32, copy=False)
        grads["head.weight"] += h_new.T @ dlogit
        grads["head.bias"] += dlogit.sum()
        dh = np.outer(dlogit, P["head.weight"])
        if self._dh_next is not None:
            dh = dh + self._dh_next
        dh_prev, self._dc_next, du = step(P, grads, u, h, state, dh, self._dc_next, d)
        self._embed_pending[i] = (du, e)
        self._dh_next = dh_prev
        self._tally_step(e.shape[0], first, tally)
        return i

    def backward_embed(self, i: int, tally: ArmTally) -> None:
        """Block i's embedding gradient from the du its backward step left (e, the pooled block
        input, is not differentiated: the gate input is detached from the backbone)."""
        if i not in self._embed_pending:
            raise RuntimeError(f"gate {i}'s backward step has not run: its embedding gradient needs its du")
        du, e = self._embed_pending.pop(i)
        grads = self._grads
        grads[f"embed{i}.weight"] += du.T @ e
        grads[f"embed{i}.bias"] += du.sum(axis=0)
        self._tally_embed(e.shape, tally)

    def backward_step_ops(self, i: int) -> int:
        """The ARM ops the backward step of gate ``i`` (whose forward ran this mini-batch) will
        tally: what ``ArmTally.defer`` is told when that step is deferred."""
        count = OpCount()
        self._tally_step(self._pooled(i).shape[0], i == self._last, count)
        return count.total

    def backward_embed_ops(self, i: int) -> int:
        """The ARM ops ``backward_embed(i)`` will tally: what ``ArmTally.defer`` is told."""
        count = OpCount()
        self._tally_embed(self._pooled(i).shape, count)
        return count.total

    def _pooled(self, i: int) -> np.ndarray:
        """Gate i's input e (N, C) of this mini-batch, whether its backward step ran or not."""
        for ci, e, *_ in self.caches:
            if ci == i:
                return e
        if i in self._embed_pending:
            return self._embed_pending[i][1]
        raise ValueError(f"gate {i} has no forward in this mini-batch to step back through")

    def _tally_step(self, n: int, first: bool, tally) -> None:
        """A backward step's ARM work, one place for the tally and the count declared in advance:
        the MACs of each matrix product the step runs (``_step_products``) and its element-wise
        work (``_BWD``; the BPTT's first step has no recurrent gradient to add; the embedding's
        bias sum is ``_tally_embed``'s)."""
        d, rows = self.d, _ROWS[self.cell]
        per_unit, states = _BWD[self.cell]
        tally.macs(sum(m for _, m in _step_products(self.cell, n, d)), "gate")
        tally.ops("gate_ew", n * ((per_unit - (states if first else 0)) * d + _BWD_PER_SAMPLE)
                  + 2 * rows * d * d + 2 * rows * d + d + 1)

    def _tally_embed(self, shape: tuple[int, int], tally) -> None:
        """The embedding gradient's ARM work: du.T @ e, (d x N) @ (N x C), the bias's sum (one add
        per sample and unit) and both accumulated into the gradients (d x C + d)."""
        n, c = shape
        tally.macs(self.d * n * c, "gate")
        tally.ops("gate_ew", n * self.d + self.d * c + self.d)

    def backward_end(self) -> dict[str, np.ndarray]:
        if self.caches:
            raise RuntimeError(f"{len(self.caches)} gate(s) still wait for their backward step")
        if self._embed_pending:
            raise RuntimeError(f"{len(self._embed_pending)} gate embedding gradient(s) still wait to be computed")
        grads, self._grads = self._grads, None
        return grads


def _step_products(cell: str, n: int, d: int) -> list[tuple[str, int]]:
    """The matrix products one backward step runs for n samples and d hidden units, each with
    its MACs, in the order the step runs them (k = rows x d stacked gate rows)."""
    k = _ROWS[cell] * d
    head = [("h_new.T @ dlogit", d * n), ("outer(dlogit, head.weight)", n * d)]
    if cell == "gru":
        return head + [("dgi.T @ u", k * n * d), ("dgh.T @ h", k * n * d),
                       ("dgh @ wh", n * k * d), ("dgi @ wx", n * k * d)]
    return head + [("da.T @ u", k * n * d), ("da.T @ h", k * n * d),
                   ("da @ wh", n * k * d), ("da @ wx", n * k * d)]


# -- the two cells: one step forward (h_new, what backward needs) and its backward ---------
def _gru_forward(P, u, h, c, d):
    gi = u @ P["gru.wx"].T + P["gru.bx"]
    gh = h @ P["gru.wh"].T + P["gru.bh"]
    r = _sigmoid(gi[:, :d] + gh[:, :d])
    z = _sigmoid(gi[:, d:2 * d] + gh[:, d:2 * d])
    nn = np.tanh(gi[:, 2 * d:] + r * gh[:, 2 * d:]).astype(np.float32, copy=False)
    h_new = (1 - z) * nn + z * h
    return h_new, (gh, r, z, nn)


def _gru_backward(P, grads, u, h, state, dh, dc_next, d):
    gh, r, z, nn = state
    dn = dh * (1 - z)
    dz = dh * (h - nn)
    dh_prev = dh * z
    dan = dn * (1 - nn * nn)
    dr = dan * gh[:, 2 * d:]
    dgi = np.concatenate([dr * r * (1 - r), dz * z * (1 - z), dan], axis=1)
    dgh = np.concatenate([dgi[:, :2 * d], dan * r], axis=1)
    grads["gru.wx"] += dgi.T @ u
    grads["gru.bx"] += dgi.sum(axis=0)
    grads["gru.wh"] += dgh.T @ h
    grads["gru.bh"] += dgh.sum(axis=0)
    dh_prev = dh_prev + dgh @ P["gru.wh"]
    return dh_prev, None, dgi @ P["gru.wx"]


def _lstm_forward(P, u, h, c, d):
    a = u @ P["lstm.wx"].T + P["lstm.bx"] + h @ P["lstm.wh"].T + P["lstm.bh"]
    ig = _sigmoid(a[:, :d])
    fg = _sigmoid(a[:, d:2 * d])
    gg = np.tanh(a[:, 2 * d:3 * d]).astype(np.float32, copy=False)
    og = _sigmoid(a[:, 3 * d:])
    c_new = fg * c + ig * gg
    tc = np.tanh(c_new).astype(np.float32, copy=False)
    h_new = og * tc
    return h_new, (c, ig, fg, gg, og, tc, c_new)


def _lstm_backward(P, grads, u, h, state, dh, dc_next, d):
    c, ig, fg, gg, og, tc, c_new = state
    dc = dh * og * (1 - tc * tc)
    if dc_next is not None:
        dc = dc + dc_next
    da = np.concatenate([dc * gg * ig * (1 - ig), dc * c * fg * (1 - fg), dc * ig * (1 - gg * gg),
                         dh * tc * og * (1 - og)], axis=1)
    grads["lstm.wx"] += da.T @ u
    grads["lstm.bx"] += da.sum(axis=0)
    grads["lstm.wh"] += da.T @ h
    grads["lstm.bh"] += da.sum(axis=0)
    return da @ P["lstm.wh"], dc * fg, da @ P["lstm.wx"]

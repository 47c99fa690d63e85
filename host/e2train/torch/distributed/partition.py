"""Where to cut: per-layer profiles, the balanced split, the paper's splits, the analytic step time.

* ``profile_layers``: forward and backward time of each layer on one mini-batch (each layer
  run on the detached output of the one before, so its backward stops at its own input),
  median over repeats: paper 003's Table 1 for any chain of layers.
* ``balance``: the contiguous split into S stages that minimises the slowest stage's
  forward + backward time (exact, dynamic programming over split points).
* ``PAPER_SPLITS``: paper 003's Table 4 (2 stages: layers 0-6 | 7-15; 4 stages:
  0-4 | 5-6 | 7 | 8-15), as bounds.
* ``analytic_step_time``: paper 003 section 4 "Expected Performance": with the 1F1B schedule
  each stage runs one forward and one backward in two consecutive time blocks; even stages run
  forwards while odd stages run backwards and then the other way round, so the step is
  max{S0_f, S1_b, S2_f, S3_b, ...} + max{S0_b, S1_f, S2_b, S3_f, ...} (no communication),
  and the ideal speedup is (sum of all forward and backward times) / step.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# paper 003, Table 4: stage s holds layers bounds[s] .. bounds[s+1]-1
PAPER_SPLITS = {"modified_alexnet": {1: [0, 16], 2: [0, 7, 16], 4: [0, 5, 7, 8, 16]}}


@dataclass
class LayerTime:
    name: str
    fwd_ms: float
    bwd_ms: float

    @property
    def total_ms(self) -> float:
        return self.fwd_ms + self.bwd_ms


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def profile_layers(layers: list[tuple[str, nn.Module]], x: torch.Tensor, y: torch.Tensor,
                   repeats: int = 5, warmup: int = 1) -> list[LayerTime]:
    """Median forward/backward ms of each layer on the batch (x, y), in training mode."""
    fwd = [[] for _ in layers]
    bwd = [[] for _ in layers]
    for m in (m for _, m in layers):
        m.train()
    for r in range(warmup + repeats):
        inputs, outputs = [], []
        h = x
        for i, (_, m) in enumerate(layers):
            h_in = h.detach().requires_grad_(i > 0)
            _sync(h_in)
            t0 = time.perf_counter()
            out = m(h_in)
            _sync(out)
            if r >= warmup:
                fwd[i].append(time.perf_counter() - t0)
            inputs.append(h_in)
            outputs.append(out)
            h = out
        g = None
        for i in range(len(layers) - 1, -1, -1):
            t0 = time.perf_counter()
            if i == len(layers) - 1:
                F.cross_entropy(outputs[i], y).backward()
            else:
                outputs[i].backward(g)
            _sync(outputs[i])
            if r >= warmup:
                bwd[i].append(time.perf_counter() - t0)
            g = inputs[i].grad
        for _, m in layers:
            m.zero_grad(set_to_none=True)
    return [LayerTime(n, 1e3 * statistics.median(f), 1e3 * statistics.median(b))
            for (n, _), f, b in zip(layers, fwd, bwd)]


def balance(costs: list[float], n_stages: int) -> list[int]:
    """Bounds of the contiguous split of ``costs`` into ``n_stages`` non-empty stages whose
    largest sum is smallest (ties: the earliest cuts)."""
    n = len(costs)
    if not 1 <= n_stages <= n:
        raise ValueError(f"cannot cut {n} layers into {n_stages} non-empty stages")
    pre = [0.0]
    for c in costs:
        pre.append(pre[-1] + c)
    inf = float("inf")
    # best[k][j]: the smallest max stage cost of layers 0..j-1 in k stages; cut[k][j]: last cut
    best = [[inf] * (n + 1) for _ in range(n_stages + 1)]
    cut = [[0] * (n + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for k in range(1, n_stages + 1):
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                v = max(best[k - 1][i], pre[j] - pre[i])
                if v < best[k][j] - 1e-12:
                    best[k][j], cut[k][j] = v, i
    bounds = [n]
    for k in range(n_stages, 0, -1):
        bounds.append(cut[k][bounds[-1]])
    return bounds[::-1]


def stage_times(profile: list[LayerTime], bounds: list[int]) -> list[tuple[float, float]]:
    """(forward ms, backward ms) of each stage, summed from the layer profile."""
    return [(sum(p.fwd_ms for p in profile[a:b]), sum(p.bwd_ms for p in profile[a:b]))
            for a, b in zip(bounds, bounds[1:])]


def analytic_step_time(stages: list[tuple[float, float]]) -> float:
    """Paper 003's 1F1B step time: max over {even f, odd b} + max over {even b, odd f}."""
    block_a = [f if s % 2 == 0 else b for s, (f, b) in enumerate(stages)]
    block_b = [b if s % 2 == 0 else f for s, (f, b) in enumerate(stages)]
    return max(block_a) + max(block_b)


def analytic_speedup(stages: list[tuple[float, float]]) -> float:
    """Sequential step (all forwards and backwards) over the pipelined step."""
    return sum(f + b for f, b in stages) / analytic_step_time(stages)


def format_profile(profile: list[LayerTime], bounds: list[int] | None = None) -> str:
    """The profile as a table, with the stage of each layer when a split is given."""
    stage_of = {}
    if bounds:
        for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
            for i in range(a, b):
                stage_of[i] = s
    lines = [f"{'layer':<20} {'fwd ms':>8} {'bwd ms':>8}" + ("  stage" if bounds else "")]
    for i, p in enumerate(profile):
        lines.append(f"{p.name:<20} {p.fwd_ms:8.3f} {p.bwd_ms:8.3f}" + (f"  {stage_of[i]:5d}" if bounds else ""))
    lines.append(f"{'total':<20} {sum(p.fwd_ms for p in profile):8.3f} {sum(p.bwd_ms for p in profile):8.3f}")
    if bounds:
        st = stage_times(profile, bounds)
        for s, ((f, b), a, z) in enumerate(zip(st, bounds, bounds[1:])):
            lines.append(f"stage {s}: layers {a}-{z - 1}  fwd {f:.3f} ms  bwd {b:.3f} ms")
        lines.append(f"analytic 1F1B step {analytic_step_time(st):.3f} ms, ideal speedup "
                     f"{analytic_speedup(st):.3f}x (paper 003 sec. 4, no communication)")
    return "\n".join(lines)

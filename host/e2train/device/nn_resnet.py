"""ResNet-CIFAR (depth 6n+2) for the device: convolutions in the kernels, the rest on the ARM.

stem: conv3x3(C_in -> w) + BN + ReLU, on the int8 network input (the first conv adapts to the
input's channels and size: 1x8x8 digits, 3x32x32 CIFAR); three stages of n basic blocks with
w, 2w, 4w channels (stride 2 at the start of stages 2 and 3); each block
conv3x3 + BN + ReLU + conv3x3 + BN, plus the option-A shortcut (subsample + zero channels: no
parameters, no kernel call), then ReLU; global average pooling; FC; softmax cross-entropy.

With SLU, block i runs only for the samples whose gate is on: those samples' rows -- and no
others -- go to the block's kernels (the ``samples`` argument), BN normalises over them, and
the other samples take the shortcut: y = s(x), which costs one copy on the ARM.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn_layers import (
    ArmTally,
    BatchNorm,
    Linear,
    avgpool,
    avgpool_backward,
    relu,
    relu_backward,
    shortcut,
    shortcut_backward,
)
from .nn_qconv import QConv
from .nn_tally import KernelTally
from .slu_gate import GateNet
from .train_config import TrainConfig


@dataclass
class Block:
    index: int
    c_in: int
    c_out: int
    stride: int
    conv1: QConv
    bn1: BatchNorm
    conv2: QConv
    bn2: BatchNorm
    gate: int | None = None       # slot of this block's gate (None: the block always runs)

    def cost_per_sample(self, h: int, w: int) -> int:
        """MACs of one sample's forward pass through this block (the SLU penalty's C)."""
        s1 = self.conv1.shape(1, h, w)
        s2 = self.conv2.shape(1, s1.ho, s1.wo)
        return s1.macs() + s2.macs()


@dataclass
class StepStats:
    """What one forward pass ran: per block, the samples that executed it."""
    n: int = 0
    executed: list[int] = field(default_factory=list)   # samples per block
    gated_executed: list[int] = field(default_factory=list)  # the same, gated blocks only
    exec_ratio: float = 1.0                               # executed fraction of gated MACs


class ResNet:
    def __init__(self, cfg: TrainConfig, in_shape: tuple[int, int, int], n_classes: int,
                 rng: np.random.Generator):
        c_in, h, w = in_shape
        width = cfg.width
        self.cfg = cfg
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.stem = QConv("stem", c_in, width, 3, 1, rng, x_unsigned=False, act_scale=cfg.act_scale)
        self.stem_bn = BatchNorm(width)
        self.blocks: list[Block] = []
        costs, chans = [], []
        c_prev, hh, ww = width, h, w
        for stage, c in enumerate((width, 2 * width, 4 * width)):
            for j in range(cfg.blocks_per_stage):
                stride = 2 if (stage > 0 and j == 0) else 1
                i = len(self.blocks)
                b = Block(i, c_prev, c, stride,
                          QConv(f"block{i}.conv1", c_prev, c, 3, stride, rng, act_scale=cfg.act_scale),
                          BatchNorm(c),
                          QConv(f"block{i}.conv2", c, c, 3, 1, rng, act_scale=cfg.act_scale),
                          BatchNorm(c))
                if cfg.slu and (stride == 1 or cfg.slu_downsample):
                    b.gate = len(costs)
                    costs.append(b.cost_per_sample(hh, ww))
                    chans.append(c_prev)
                if stride == 2:
                    hh, ww = (hh + 1) // 2, (ww + 1) // 2
                self.blocks.append(b)
                c_prev = c
        self.fc = Linear(c_prev, n_classes, rng)
        self.gates = GateNet(chans, costs, cfg.slu_hidden, rng, cfg.slu_cell) if costs else None

    # -- parameters and state ------------------------------------------------------------
    def convs(self) -> list[QConv]:
        out = [self.stem]
        for b in self.blocks:
            out += [b.conv1, b.conv2]
        return out

    def bns(self) -> dict[str, BatchNorm]:
        d = {"stem.bn": self.stem_bn}
        for b in self.blocks:
            d[f"block{b.index}.bn1"] = b.bn1
            d[f"block{b.index}.bn2"] = b.bn2
        return d

    def float_params(self) -> dict[str, np.ndarray]:
        """The float32 parameters trained by SGD (BN, FC, gates), by name."""
        p = {}
        for name, bn in self.bns().items():
            for k, v in bn.params().items():
                p[f"{name}.{k}"] = v
        for k, v in self.fc.params().items():
            p[f"fc.{k}"] = v
        if self.gates is not None:
            for k, v in self.gates.params.items():
                p[f"gate.{k}"] = v
        return p

    def state(self) -> dict[str, np.ndarray]:
        s = {f"param/{k}": v for k, v in self.float_params().items()}
        for name, bn in self.bns().items():
            for k, v in bn.buffers().items():
                s[f"buffer/{name}.{k}"] = v
        for conv in self.convs():
            for k, v in conv.state().items():
                s[f"conv/{conv.name}.{k}"] = np.asarray(v)
        return s

    def load_state(self, s: dict[str, np.ndarray]) -> None:
        want = self.state()
        missing = sorted(set(want) - set(s))
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} model entries, e.g. {missing[:3]}: "
                             "it was written for a different model config")
        for k, v in want.items():
            if k.startswith("conv/"):
                continue
            if s[k].shape != v.shape or s[k].dtype != v.dtype:
                raise ValueError(f"checkpoint entry {k} is {s[k].dtype}{s[k].shape}, "
                                 f"the model needs {v.dtype}{v.shape}: different model config")
            v[...] = s[k]
        for conv in self.convs():
            pre = f"conv/{conv.name}."
            conv.load_state({k[len(pre):]: s[k] for k in s if k.startswith(pre)})

    # -- forward / backward ----------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool, backend, ktally: KernelTally, arm: ArmTally,
                gate_rng: np.random.Generator | None = None):
        """Logits for the float32 batch x, and the cache for ``backward``. ``gate_rng``: draw
        the gates' decisions from it (training with sampled gates); else p > 0.5."""
        n = x.shape[0]
        stats = StepStats(n=n)
        y, c_stem = self.stem.forward(x, None, n, train, backend, ktally, arm)
        b, bn_stem = self.stem_bn.forward(y, train, arm)
        a = relu(b, arm)
        cache = {"stem": (c_stem, bn_stem, a), "blocks": [], "probs": [], "gates": []}
        if self.gates is not None:
            self.gates.reset(n)
        for blk in self.blocks:
            idx = None
            if blk.gate is not None:
                p, g = self.gates.forward(blk.gate, a, arm, gate_rng)
                cache["probs"].append(p)
                cache["gates"].append(g)
                idx = np.nonzero(g)[0].astype(np.int32)
                if idx.size == n:
                    idx = None          # every sample runs: the plain (unlisted) call
            s = shortcut(a, blk.c_out, blk.stride, arm)
            n_run = n if idx is None else idx.size
            stats.executed.append(n_run)
            if blk.gate is not None:
                stats.gated_executed.append(n_run)
            if n_run == 0:
                cache["blocks"].append((blk, idx, a.shape, None))
                a = s
                continue
            xa = a if idx is None else a[idx]
            y1, c1 = blk.conv1.forward(xa, idx, n, train, backend, ktally, arm)
            b1, k1 = blk.bn1.forward(y1, train, arm)
            r1 = relu(b1, arm)
            y2, c2 = blk.conv2.forward(r1, idx, n, train, backend, ktally, arm)
            b2, k2 = blk.bn2.forward(y2, train, arm)
            sa = s if idx is None else s[idx]
            o = relu(b2 + sa, arm)
            arm.ops("add", o.size)
            if idx is None:
                out = o
            else:
                out = s.copy()
                out[idx] = o
                arm.ops("add", o.size)
            cache["blocks"].append((blk, idx, a.shape, (c1, k1, r1, c2, k2, sa, o)))
            a = out
        pooled = avgpool(a, arm)
        logits = self.fc.forward(pooled, arm)
        cache["head"] = (a.shape, pooled)
        if self.gates is not None:
            costs = self.gates.costs
            stats.exec_ratio = float(sum(c * e / n for c, e in zip(costs, stats.gated_executed)) / costs.sum())
        return logits, cache, stats

    def backward(self, g_logits: np.ndarray, cache, backend, ktally: KernelTally, arm: ArmTally, *,
                 lr_q: dict[str, int], wd_q: dict[str, int], beta_q: int,
                 gate_penalty_grads: list[np.ndarray] | None = None):
        """Backpropagate; update the conv master weights in the kernels (PSG + sign step) as it
        goes. Returns (float-parameter gradients, predicted weight count)."""
        grads: dict[str, np.ndarray] = {}
        a_shape, pooled = cache["head"]
        g_pool, gfc = self.fc.backward(g_logits, pooled, arm)
        grads.update({f"fc.{k}": v for k, v in gfc.items()})
        g_a = avgpool_backward(g_pool, a_shape, arm)
        n = g_logits.shape[0]
        dgates = []
        n_pred = 0
        for blk, idx, in_shape, bc in reversed(cache["blocks"]):
            kw = dict(beta_q=beta_q)
            if bc is None:                          # nobody ran the block: shortcut only
                if blk.gate is not None:
                    dgates.append(np.zeros(n, np.float32))
                g_a = shortcut_backward(g_a, in_shape, blk.stride, arm)
                continue
            c1, k1, r1, c2, k2, sa, o = bc
            go = g_a if idx is None else g_a[idx]
            dg = np.zeros(n, np.float32)
            if blk.gate is not None:
                # straight-through: dL/dg = sum(dL/dy * (block output - shortcut)) per sample
                contrib = (go * (o - sa)).sum(axis=(1, 2, 3))
                arm.ops("add", 2 * o.size)
                if idx is None:
                    dg[:] = contrib
                else:
                    dg[idx] = contrib
                dgates.append(dg)
            gpre = relu_backward(go, o, arm)
            if idx is None:
                g_s = gpre
            else:
                g_s = g_a.copy()
                g_s[idx] = gpre
            g_b2, gbn2 = blk.bn2.backward(gpre, k2, arm)
            g_r1, np2 = blk.conv2.backward(g_b2, c2, backend, ktally, arm, lr_q=lr_q[blk.conv2.name],
                                           wd_q=wd_q[blk.conv2.name], **kw)
            g_b1 = relu_backward(g_r1, r1, arm)
            g_y1, gbn1 = blk.bn1.backward(g_b1, k1, arm)
            g_xa, np1 = blk.conv1.backward(g_y1, c1, backend, ktally, arm, lr_q=lr_q[blk.conv1.name],
                                           wd_q=wd_q[blk.conv1.name], **kw)
            n_pred += np1 + np2
            grads.update({f"block{blk.index}.bn2.{k}": v for k, v in gbn2.items()})
            grads.update({f"block{blk.index}.bn1.{k}": v for k, v in gbn1.items()})
            g_a = shortcut_backward(g_s, in_shape, blk.stride, arm)
            if idx is None:
                g_a = g_a + g_xa
            else:
                g_a[idx] += g_xa
            arm.ops("add", g_xa.size)
        c_stem, bn_stem, a0 = cache["stem"]
        g_b = relu_backward(g_a, a0, arm)
        g_y, gbn = self.stem_bn.backward(g_b, bn_stem, arm)
        grads.update({f"stem.bn.{k}": v for k, v in gbn.items()})
        _, np0 = self.stem.backward(g_y, c_stem, backend, ktally, arm, lr_q=lr_q["stem"], wd_q=wd_q["stem"],
                                    beta_q=beta_q, need_gx=False)
        n_pred += np0
        if self.gates is not None:
            dgates = dgates[::-1]
            if gate_penalty_grads is not None:
                dgates = [d + pg for d, pg in zip(dgates, gate_penalty_grads)]
            ggr = self.gates.backward(dgates, arm)
            grads.update({f"gate.{k}": v for k, v in ggr.items()})
        return grads, n_pred

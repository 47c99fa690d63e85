"""ResNet-CIFAR (depth 6n+2) for the device: convolutions and block operations on the fabric,
per-channel folds, the gates and the head on the ARM.

stem: conv3x3(C_in -> w) + BN + ReLU, on the int8 network input (the first conv adapts to the
input's channels and size: 1x8x8 digits, 3x32x32 CIFAR); three stages of n basic blocks with
w, 2w, 4w channels (stride 2 at the start of stages 2 and 3); each block
conv3x3 + BN + ReLU + conv3x3 + BN, plus the option-A shortcut (subsample + zero channels: no
parameters), then ReLU; global average pooling; FC; softmax cross-entropy.

Between layers the activations are uint8 codes with a dyadic scale and the gradients int16
codes (``nn_block``): BN, ReLU, the residual add, the shortcut and the requantisation run in
the fabric's block operations; the ARM quantises only the network input and the loss's
gradient, and pools nothing (bn_act's pooled sums feed the gates and the classifier).

With SLU, block i runs only for the samples whose gate is on: those samples -- and no others --
go to the block's convs and BN (the ``samples`` argument), BN normalises over them, and the
other samples take the shortcut inside conv2's bn_act (one tensor, one scale). A block that runs
for no sample makes no call: its output is its input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.block_ops import IDENTITY, Shortcut
from ..core.fixedpoint import INT16, quantize, scale_for
from .nn_block import BatchNorm, Codes, Grad
from .nn_layers import ArmTally, Linear
from .nn_qconv import QConv, quantize_input
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

    @property
    def shortcut(self) -> Shortcut:
        """Option A: subsample by the stride, the new channels zero, half before and half after
        the old ones (as He et al.'s CIFAR ResNets and the torch reference do)."""
        return Shortcut(self.stride, (self.c_out - self.c_in) // 2)

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


def gate_grad_from_sums(dg: np.ndarray, sums: np.ndarray, idx: np.ndarray | None, s_g: float, s_o: float,
                        s_x: float, arm: ArmTally) -> None:
    """Straight-through: dL/dg = sum(dL/do * (o - sc(x))) per sample, from bn_bwd_reduce's two
    gate sums (n, 2), into ``dg`` (float32) for the listed samples: four passes over the batch
    ("gate_grad"), then the store (with a list, the listed values gathered and stored:
    "gate_grad_store")."""
    arm.ops("gate_grad", sums.shape[0])
    contrib = s_g * (s_o * sums[:, 0] - s_x * sums[:, 1])
    if idx is None:
        arm.ops("gate_grad_store", dg.size)
        dg[:] = contrib                       # rounded to float32 in the store, as astype would
    else:
        arm.ops("gate_grad_store", 2 * idx.size)
        dg[idx] = contrib[idx]


class ResNet:
    def __init__(self, cfg: TrainConfig, in_shape: tuple[int, int, int], n_classes: int,
                 rng: np.random.Generator):
        c_in, h, w = in_shape
        width = cfg.width
        self.cfg = cfg
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.stem = QConv("stem", c_in, width, 3, 1, rng, x_unsigned=False, input_grad=False)
        self.stem_bn = BatchNorm(width, cfg.act_scale, "stem.bn")
        self.in_max: float | None = None          # running max of the network input
        self.blocks: list[Block] = []
        costs, chans = [], []
        c_prev, hh, ww = width, h, w
        for stage, c in enumerate((width, 2 * width, 4 * width)):
            for j in range(cfg.blocks_per_stage):
                stride = 2 if (stage > 0 and j == 0) else 1
                i = len(self.blocks)
                b = Block(i, c_prev, c, stride,
                          QConv(f"block{i}.conv1", c_prev, c, 3, stride, rng),
                          BatchNorm(c, cfg.act_scale, f"block{i}.bn1"),
                          QConv(f"block{i}.conv2", c, c, 3, 1, rng),
                          BatchNorm(c, cfg.act_scale, f"block{i}.bn2"))
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
            for k, v in bn.scale_state().items():
                s[f"scale/{name}.{k}"] = v
        s["scale/input.max"] = np.float64(np.nan if self.in_max is None else self.in_max)
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
            if k.startswith(("conv/", "scale/")):
                continue
            if s[k].shape != v.shape or s[k].dtype != v.dtype:
                raise ValueError(f"checkpoint entry {k} is {s[k].dtype}{s[k].shape}, "
                                 f"the model needs {v.dtype}{v.shape}: different model config")
            v[...] = s[k]
        for conv in self.convs():
            pre = f"conv/{conv.name}."
            conv.load_state({k[len(pre):]: s[k] for k in s if k.startswith(pre)})
        for name, bn in self.bns().items():
            pre = f"scale/{name}."
            bn.load_scale_state({k[len(pre):]: s[k] for k in s if k.startswith(pre)})
        self.in_max = None if np.isnan(s["scale/input.max"]) else float(s["scale/input.max"])

    # -- forward / backward ----------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool, backend, ktally: KernelTally, arm: ArmTally,
                gate_rng: np.random.Generator | None = None, xin: tuple | None = None):
        """Logits for the float32 batch x, and the cache for ``backward``. ``gate_rng``: draw
        the gates' decisions from it (training with sampled gates); else p > 0.5. ``xin``: x's
        ``quantize_input`` already made from this model's running max (the trainer's side work
        of the step before), used as it is."""
        n = x.shape[0]
        stats = StepStats(n=n)
        xq, s_x, in_max = xin if xin is not None else quantize_input(x, self.in_max, train, self.cfg.act_scale, arm)
        self.in_max = in_max
        y, s_y, sums, c_stem = self.stem.forward(xq, s_x, None, train, backend, ktally, arm)
        a, bn_stem = self.stem_bn.forward(y, s_y, sums, None, train, backend, ktally, arm)
        cache = {"stem": (c_stem, bn_stem), "blocks": [], "probs": [], "gates": []}
        if self.gates is not None:
            self.gates.reset(n)
        for blk in self.blocks:
            idx = None
            if blk.gate is not None:
                p, g = self.gates.forward(blk.gate, a.mean(arm), arm, gate_rng)
                cache["probs"].append(p)
                cache["gates"].append(g)
                idx = np.nonzero(g)[0].astype(np.int32)
                if idx.size == n:
                    idx = None          # every sample runs: the plain (unlisted) call
            n_run = n if idx is None else idx.size
            stats.executed.append(n_run)
            if blk.gate is not None:
                stats.gated_executed.append(n_run)
            if n_run == 0 and blk.shortcut == IDENTITY:
                cache["blocks"].append((blk, None))     # nobody runs it: its output is its input
                continue
            out, bc = self._block_forward(blk, a, idx, train, backend, ktally, arm)
            cache["blocks"].append((blk, bc))
            a = out
        pooled = a.mean(arm)
        logits = self.fc.forward(pooled, arm)
        cache["head"] = (a.q.shape, pooled)
        if self.gates is not None:
            costs = self.gates.costs
            stats.exec_ratio = float(sum(c * e / n for c, e in zip(costs, stats.gated_executed)) / costs.sum())
        return logits, cache, stats

    def _block_forward(self, blk: Block, x: Codes, idx, train, backend, kt, arm):
        """conv1 -> bn_act -> conv2 -> bn_act with the shortcut of x; (output, cache)."""
        n = x.q.shape[0]
        if idx is not None and idx.size == 0:
            # a geometry-changing block that runs for nobody: bn_act's shortcut alone
            h, w = (x.q.shape[2] + 1) // 2, (x.q.shape[3] + 1) // 2
            y = np.zeros((n, blk.c_out, h, w), np.int8)
            out, k2 = blk.bn2.forward(y, x.scale, np.zeros((blk.c_out, 2), np.int64), idx, train,
                                      backend, kt, arm, r=x, shortcut=blk.shortcut)
            return out, (x, idx, None, None, None, k2)
        y1, s1, sums1, c1 = blk.conv1.forward(x.q, x.scale, idx, train, backend, kt, arm)
        a1, k1 = blk.bn1.forward(y1, s1, sums1, idx, train, backend, kt, arm)
        y2, s2, sums2, c2 = blk.conv2.forward(a1.q, a1.scale, idx, train, backend, kt, arm)
        out, k2 = blk.bn2.forward(y2, s2, sums2, idx, train, backend, kt, arm, r=x, shortcut=blk.shortcut)
        return out, (x, idx, c1, k1, c2, k2)

    def backward(self, g_logits: np.ndarray, cache, backend, ktally: KernelTally, arm: ArmTally, *,
                 lr_q: dict[str, int], wd_q: dict[str, int], beta_q: int,
                 gate_penalty_grads: list[np.ndarray] | None = None):
        """Backpropagate; update the conv master weights in the kernels (PSG + sign step) as it
        goes. Returns (float-parameter gradients, predicted weight count)."""
        grads: dict[str, np.ndarray] = {}
        out_shape, pooled = cache["head"]
        g_pool, gfc = self.fc.backward(g_logits, pooled, arm)      # gfc: filled by side work
        g = self._pool_grad(g_pool, out_shape, arm)
        n = g_logits.shape[0]
        n_pred = 0
        # the gates' BPTT a step per gated block, last first, as side work after its gate
        # gradient is known (the penalty's gradient is known since the forward), each block's
        # embedding gradient a task after its step
        gated = [blk for blk, _ in cache["blocks"] if blk.gate is not None]
        pen = list(gate_penalty_grads) if gate_penalty_grads is not None else [None] * len(gated)
        if self.gates is not None:
            self.gates.backward_begin()
        kw = dict(backend=backend, kt=ktally, arm=arm, lr_q=lr_q, wd_q=wd_q, beta_q=beta_q)
        prev_step = None                 # the BPTT's step deferred last: the next one waits for it
        # a backend that keeps the fabric's outputs in place reuses a block's backward buffers
        # two executed blocks later (its outputs are read by the next block's backward only)
        next_block = getattr(backend, "backward_block", None) or (lambda: None)
        for blk, bc in reversed(cache["blocks"]):
            dg = np.zeros(n, np.float32)
            if bc is not None:
                next_block()
                g, gate_sums, np_ = self._block_backward(blk, bc, g, grads, **kw)
                n_pred += np_
                idx = bc[1]
                if gate_sums is not None:
                    s_g, sums = gate_sums
                    gate_grad_from_sums(dg, sums, idx, s_g.value, bc[5].s_o.value, bc[0].scale.value, arm)
            if blk.gate is not None:
                pg = pen.pop()
                if pg is not None:
                    arm.ops("gate_penalty_add", n)
                d = dg if pg is None else dg + pg
                prev_step = arm.defer(lambda d=d: self.gates.backward_step(d, arm),
                                      ops=self.gates.backward_step_ops(blk.gate), after=prev_step)
                # its embedding gradient needs its du, and nothing but the optimiser needs it:
                # a task after the step, which the next step does not wait for
                arm.defer(lambda i=blk.gate: self.gates.backward_embed(i, arm),
                          ops=self.gates.backward_embed_ops(blk.gate), after=prev_step)
        c_stem, bn_stem = cache["stem"]
        next_block()
        g_y, s_gy, _, _, gbn, _ = self.stem_bn.backward(bn_stem, g, backend, ktally, arm)
        grads.update({f"stem.bn.{k}": v for k, v in gbn.items()})
        _, _, np0 = self.stem.backward(g_y, s_gy, c_stem, backend, ktally, arm, lr_q=lr_q["stem"],
                                       wd_q=wd_q["stem"], beta_q=beta_q, need_gx=False)
        n_pred += np0
        arm.flush()                                  # the optimiser reads every gradient
        grads.update({f"fc.{k}": v for k, v in gfc.items()})
        if self.gates is not None:
            grads.update({f"gate.{k}": v for k, v in self.gates.backward_end().items()})
        return grads, n_pred

    @staticmethod
    def _pool_grad(g_pool: np.ndarray, shape: tuple, arm: ArmTally) -> Grad:
        """The average pool's backward: each output element gets its channel's gradient / (h*w),
        quantised to int16 on the ARM (one code per sample and channel, then spread)."""
        hw = shape[2] * shape[3]
        gp = np.divide(g_pool, hw, dtype=np.float64)             # widened inside the divide
        arm.ops("pool", gp.size)
        arm.ops("maxabs", gp.size)
        s = scale_for(float(np.abs(gp).max()) if gp.size else 0.0, INT16)   # refuses a non-finite max
        arm.ops("quantize", gp.size)
        q = quantize(gp, s, INT16, finite=True)
        arm.ops("pool", int(np.prod(shape)))
        return Grad(np.ascontiguousarray(np.broadcast_to(q[:, :, None, None], shape)), s)

    def _block_backward(self, blk: Block, bc, g: Grad, grads: dict, *, backend, kt, arm, lr_q, wd_q, beta_q):
        """bn2 -> conv2 -> bn1 -> conv1 backward; (the block input's gradient, (the gate sums'
        gradient scale, the gate sums) for a gated block that ran or None, predicted weights)."""
        x, idx, c1, k1, c2, k2 = bc
        gated = blk.gate is not None
        g_y2, s_gy2, g_m2, s_m2, gbn2, gate = blk.bn2.backward(k2, g, backend, kt, arm, r=x if gated else None,
                                                               shortcut=blk.shortcut)
        grads.update({f"block{blk.index}.bn2.{k}": v for k, v in gbn2.items()})
        through = Grad(None, None, g_m2, s_m2, blk.shortcut)     # what reaches x by the shortcut
        if g_y2 is None:                                         # nobody ran the block's convs
            return through, None, 0
        p = dict(backend=backend, tally=kt, arm=arm, beta_q=beta_q)
        g_a1, s_a1, np2 = blk.conv2.backward(g_y2, s_gy2, c2, lr_q=lr_q[blk.conv2.name],
                                             wd_q=wd_q[blk.conv2.name], **p)
        g_y1, s_gy1, _, _, gbn1, _ = blk.bn1.backward(k1, Grad(g_a1, s_a1), backend, kt, arm)
        grads.update({f"block{blk.index}.bn1.{k}": v for k, v in gbn1.items()})
        g_x, s_gx, np1 = blk.conv1.backward(g_y1, s_gy1, c1, lr_q=lr_q[blk.conv1.name],
                                            wd_q=wd_q[blk.conv1.name], **p)
        through.a, through.s_a = g_x, s_gx
        return through, ((s_m2, gate) if gated else None), np1 + np2

"""Point-to-point tensors between neighbouring stages, on torch.distributed send/recv.

Paper 003's two-step protocol ("Communication"): a fixed-size header first (the shape, so the
receiver can allocate; plus the mini-batch number and the weight version it ran on, which
vertical sync needs), then the tensor. Sends are ``isend``: the stage goes on computing while
the tensor leaves, and the pending sends are waited on at the end of the epoch (completed ones are
dropped as they finish). No send waits for an earlier one: with 1F1B a stage may be sending to
a neighbour that is itself blocked sending back, and gloo completes a send only when the peer
has posted its receive. Receives block (``recv``): a stage has nothing else to do until
its input or its gradient arrives, and that wait is timed as idle time.

A message may be a tuple of tensors (``send_all``/``recv_all``): a stage of a gated model
sends its activation with the SLU gates' recurrent state and the partial executed-FLOPs ratio,
and gets their gradients back; the first tensor's header carries the count in ``flags`` and
the others follow on the same channel, in order.

Channels are (peer, tag): TAG_ACT carries activations downstream, TAG_GRAD gradients upstream,
TAG_EVAL the forward-only evaluation.
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist

TAG_ACT, TAG_GRAD, TAG_EVAL = 1, 2, 3
HEADER = 10                # [ndim, d0..d5, mb, version, flags]
MAX_DIMS = 6


class P2P:
    def __init__(self, device: torch.device):
        self.device = device
        self.pending: list[list] = []            # in-flight sends: [works, header, data, tag]
        self.send_s = {TAG_ACT: 0.0, TAG_GRAD: 0.0, TAG_EVAL: 0.0}
        self.recv_wait_s = {TAG_ACT: 0.0, TAG_GRAD: 0.0, TAG_EVAL: 0.0}
        self.bytes_sent = 0

    def send(self, t: torch.Tensor, dst: int, tag: int, mb: int = 0, version: int = 0, flags: int = 0) -> None:
        if t.dim() > MAX_DIMS:
            raise ValueError(f"cannot send a {t.dim()}-d tensor (at most {MAX_DIMS})")
        t0 = time.perf_counter()
        self.pending = [it for it in self.pending if not all(w.is_completed() for w in it[0])]
        head = torch.zeros(HEADER, dtype=torch.int64)
        head[0] = t.dim()
        head[1: 1 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
        head[7], head[8], head[9] = mb, version, flags
        data = t.detach().contiguous()
        head = head.to(self.device)
        works = [dist.isend(head, dst, tag=tag), dist.isend(data, dst, tag=tag)]
        self.pending.append([works, head, data, tag])
        self.bytes_sent += data.numel() * data.element_size() + HEADER * 8
        self.send_s[tag] += time.perf_counter() - t0

    def wait(self) -> None:
        """Wait for every send in flight (end of an epoch or of an evaluation)."""
        items, self.pending = self.pending, []
        for item in items:
            t0 = time.perf_counter()
            for w in item[0]:
                w.wait()
            self.send_s[item[3]] += time.perf_counter() - t0

    def recv(self, src: int, tag: int, dtype=torch.float32) -> tuple[torch.Tensor, int, int, int]:
        """(tensor, mb, version, flags) of the next message from ``src`` on ``tag``."""
        t0 = time.perf_counter()
        head = torch.empty(HEADER, dtype=torch.int64, device=self.device)
        dist.recv(head, src, tag=tag)
        head = head.cpu()
        nd = int(head[0])
        shape = [int(v) for v in head[1: 1 + nd]]
        t = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(t, src, tag=tag)
        self.recv_wait_s[tag] += time.perf_counter() - t0
        return t, int(head[7]), int(head[8]), int(head[9])

    def send_all(self, t, dst: int, tag: int, mb: int = 0, version: int = 0) -> None:
        """Send a tensor or a tuple of tensors as one message."""
        if isinstance(t, torch.Tensor):
            return self.send(t, dst, tag, mb, version)
        for i, x in enumerate(t):
            self.send(x, dst, tag, mb, version, flags=len(t) if i == 0 else 0)

    def recv_all(self, src: int, tag: int) -> tuple:
        """(tensor or tuple of tensors, mb, version) of the next message sent by ``send_all``."""
        t, mb, version, n = self.recv(src, tag)
        if n == 0:
            return t, mb, version
        return (t,) + tuple(self.recv(src, tag)[0] for _ in range(n - 1)), mb, version

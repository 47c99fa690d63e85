"""Process groups: spawn N workers on this machine, or join the group torchrun made.

    result = launch.run(worker_fn, nproc=2, payload={...}, timeout_s=60)

``worker_fn(rank, world, payload) -> dict | None`` runs in every process after
``init_process_group``; rank 0's return value comes back as ``result``. Backend: gloo on CPU,
NCCL when the payload's device is CUDA.

* ``--nproc N`` on one machine: ``torch.multiprocessing.start_processes`` (start method
  "forkserver", see ``_preload``), rendezvous on 127.0.0.1 at a free port (``init_method=tcp://``).
* Under torchrun (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in the environment) the process
  is already one of the workers: ``run`` joins with ``env://`` and calls the worker in place.

Failure (one process dies or raises): torch's process context terminates the others as soon as
the first one fails, and the collective timeout (``timeout_s``) bounds every wait on a peer that
has gone; ``run`` raises ``DistributedError`` with one line naming the rank and its error.
"""
from __future__ import annotations

import datetime
import os
import socket
import signal
import tempfile
import time
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class DistributedError(RuntimeError):
    """A distributed run that failed; the message names the rank and the cause."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"


def local_device(device: str, local_rank: int) -> torch.device:
    """The device of this process: CUDA devices are shared out by local rank."""
    if backend_for(device) == "nccl":
        n = torch.cuda.device_count()
        if n == 0:
            raise DistributedError(f"device {device!r} asked for, but torch sees no CUDA device: use device = \"cpu\"")
        d = torch.device("cuda", local_rank % n)
        torch.cuda.set_device(d)
        return d
    return torch.device("cpu")


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _entry(rank: int, fn: Callable, world: int, port: int, payload: dict, timeout_s: float, out: str,
           fail_dir: str | None = None) -> None:
    torch.set_num_threads(int(payload.get("threads") or 1))
    dist.init_process_group(backend_for(payload.get("device", "cpu")), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        res = fn(rank, world, payload)
        if rank == 0 and res is not None:
            torch.save(res, out)        # plain containers and tensors (test traces)
    except BaseException as e:
        # one line on stderr, the traceback only on request: the parent reports the cause
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        msg = f"{e.__class__.__name__}: {first}" if first else e.__class__.__name__
        print(f"e2train: rank {rank} failed: {msg}", file=__import__("sys").stderr, flush=True)
        if fail_dir is not None:         # when and why, for the parent to name the first failure
            with open(os.path.join(fail_dir, f"fail-{rank}"), "w") as f:
                f.write(f"{time.monotonic()!r}\n{msg}")
        if os.environ.get("E2TRAIN_TRACEBACK"):
            traceback.print_exc()
        os._exit(3)      # no destructor of the process group may wait on a peer that has gone
    dist.destroy_process_group()


def _first_failure(ctx, fail_dir: str, rank: int, code: int) -> tuple[int, int]:
    """The rank whose failure came first, and its exit code. torch reports the first failed rank it
    happens to check, and when one rank dies its peers fail a moment later (a reset connection),
    so that can be a peer. A rank that ended by itself (not stopped by the parent's SIGTERM) with
    no record of an error it caught died abruptly, before the others could: it comes first; else
    the earliest recorded failure."""
    failed = {}
    for i, proc in enumerate(ctx.processes):
        c = proc.exitcode
        if c is None or c == 0 or c == -signal.SIGTERM:
            continue
        path = os.path.join(fail_dir, f"fail-{i}")
        try:
            with open(path) as f:
                failed[i] = (float(f.readline()), c)
        except (OSError, ValueError):
            failed[i] = (float("-inf"), c)        # died without a word: before any peer noticed
    if not failed:
        return rank, code
    first = min(failed, key=lambda i: (failed[i][0], i))
    return first, failed[first][1]


_PRELOADED = False


def _preload() -> None:
    """Workers fork from a server that imported torch, e2train and scikit-learn once (start
    method "forkserver"): a fresh interpreter per worker ("spawn") took about 7 s of imports
    per process on this 2-core machine; a plain fork of this process is unsafe (a forked child
    of a process that already ran OpenMP regions can hang in libgomp)."""
    global _PRELOADED
    if not _PRELOADED:
        import multiprocessing
        # torch._dynamo: torch.optim.Optimizer's constructor imports it (about 7 s here)
        multiprocessing.set_forkserver_preload(["torch", "torch.distributed", "torch._dynamo", "torch.func",
                                                "torch.distributed.pipelining", "e2train.torch.distributed.pipeline",
                                                "e2train.torch.distributed.ddp", "sklearn.datasets",
                                                "sklearn.model_selection"])
        _PRELOADED = True


def run(fn: Callable[[int, int, dict], Any], nproc: int, payload: dict, timeout_s: float = 120.0) -> Any:
    """Run ``fn`` in ``nproc`` processes (or in this torchrun worker); rank 0's result."""
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        torch.set_num_threads(int(payload.get("threads") or torch.get_num_threads()))
        dist.init_process_group(backend_for(payload.get("device", "cpu")), init_method="env://",
                                timeout=datetime.timedelta(seconds=timeout_s))
        try:
            return fn(rank, world, payload)
        finally:
            dist.destroy_process_group()
    if nproc < 1:
        raise DistributedError(f"nproc must be >= 1, got {nproc}")
    if backend_for(payload.get("device", "cpu")) == "nccl" and torch.cuda.device_count() < nproc:
        raise DistributedError(f"{nproc} processes need {nproc} CUDA devices (NCCL takes one per process), this machine "
                               f"has {torch.cuda.device_count()}: use device = \"cpu\" (gloo) or fewer processes")
    with tempfile.TemporaryDirectory(prefix="e2train-dist-") as tmp:
        out = os.path.join(tmp, "rank0.pt")
        _preload()
        ctx = mp.start_processes(_entry, args=(fn, nproc, free_port(), payload, timeout_s, out, tmp), nprocs=nproc,
                                 join=False, start_method="forkserver")
        try:
            # join() returns False while processes run; on the first failure it terminates the
            # others and raises
            while not ctx.join(timeout=1.0):
                pass
        except mp.ProcessExitedException as e:
            rank, code = _first_failure(ctx, tmp, e.error_index, e.exit_code)
            raise DistributedError(f"rank {rank} ended with exit code {code}"
                                   f"{' (see its one-line error above)' if code == 3 else ''}; "
                                   "the other ranks were stopped") from None
        except mp.ProcessRaisedException as e:
            raise DistributedError(f"rank {e.error_index} failed: {str(e).strip().splitlines()[-1]}") from None
        # written by our own rank 0 a moment ago: not an untrusted file
        return torch.load(out, weights_only=False) if os.path.exists(out) else None

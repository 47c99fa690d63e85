"""Measure the ARM's throughput for the trainer's time model, on the machine that trains.

The trainer prices its ARM-side work (BN, ReLU, quantisation, shortcut, pooling, FC, gates,
optimiser) in float operations counted by ``nn_layers``' per-element cost model, and turns
them into modelled seconds at ``arm_ops_per_second`` -- an assumed 1.2e8 unless measured.
That figure decides most of a step's modelled time, and so (through the board's static power)
most of its modelled energy. This module replaces the assumption with a measurement: it runs
real training steps of a config (its shapes, its gates, its batch size), times every kernel
call apart, and divides the operations the ARM tally counted by the wall time not spent in
kernel calls. Run it on the board (``e2train calibrate-arm --backend pynq``) and pass the
result to training as ``arm_ops_per_second``.

What it measures: numpy on this CPU, for this config, including numpy's per-call overhead --
which is what the trainer pays. Kernel calls, their driver overhead and cache maintenance are
excluded (the performance model prices the kernels). On anything but the board's ARM the
figure describes that machine, not the board, and is labelled so.

numpy only (board side).
"""
from __future__ import annotations

import functools
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core import call_price
from ..core.work import Work
from .nn_layers import ARM_OPS_PER_SECOND, ArmTally
from .train_config import TrainConfig

# the fabric's calls (conv passes and block operations): their time is not the ARM's
KERNELS = call_price.KERNELS + call_price.BLOCK_OPS


class TimedBackend:
    """Forwards the kernel calls to ``backend`` and adds up their wall time.

    It takes no side-work hook (``set_idle`` declines): on a board the driver would run the
    ARM's side work inside its waits, and that ARM time would be booked as kernel time."""

    def __init__(self, backend):
        self._backend = backend
        self.seconds = 0.0
        self.calls = 0
        inner = getattr(backend, "set_idle", None)
        if callable(inner):
            inner(None)

    def set_idle(self, idle) -> bool:
        return False

    def __getattr__(self, name: str):
        fn = getattr(self._backend, name)
        if name not in KERNELS:
            return fn

        @functools.wraps(fn)            # the kernel's signature shows through (what it can return)
        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        return timed


def arm_ops(work: Work) -> int:
    """Float operations in an ARM tally, as the time model counts them (a MAC is two)."""
    return int(work.ops.get("fp32", 0)) + 2 * int(work.macs.get("fp32xfp32", 0))


def is_board_cpu() -> bool:
    """True on a 32-bit ARM (the Zynq-7000's Cortex-A9 runs armv7l)."""
    return platform.machine().lower().startswith("armv7")


def calibrate(config: TrainConfig | dict | None, data, backend, *, steps: int = 10,
              warmup: int = 2, on_step=None) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps; return the measured ARM throughput and its inputs."""
    from .trainer import Trainer
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    timed = TimedBackend(backend)
    tr = Trainer(config, data, timed)
    cfg = tr.cfg
    n = tr.x_train.shape[0]
    bs = min(cfg.batch_size, n)
    arm_work = Work()
    tr.arm = ArmTally(arm_work)             # count the ARM ops of the measured steps only
    ops0, k0, w0 = 0, 0.0, time.perf_counter()
    no_shift = np.zeros((n, 2), np.int64)
    for t in range(warmup + steps):
        i0 = (t * bs) % max(1, n - bs + 1)
        if t == warmup:                      # first steps warm caches and allocators
            ops0, k0, w0 = arm_ops(arm_work), timed.seconds, time.perf_counter()
            wait0, (copy0, flush0) = getattr(backend, "wait_s", None), _copy_counts(backend)
        idx = np.arange(i0, i0 + bs)
        x, y = tr._input(idx, no_shift), tr.y_train[idx]      # gathered (and looked up) as training does
        tr.train_step(x, y, t)
        if on_step is not None:
            on_step(t + 1, warmup + steps)
    wall = time.perf_counter() - w0
    kernel = timed.seconds - k0
    ops = arm_ops(arm_work) - ops0
    arm_s = wall - kernel
    if arm_s <= 0 or ops <= 0:
        raise RuntimeError(f"nothing to measure: {ops} ARM ops in {arm_s:.6f} s outside the kernels")
    rate = ops / arm_s
    host = {}
    wait1 = getattr(backend, "wait_s", None)
    if wait0 is not None and wait1 is not None:
        # the PYNQ backend: the time of its calls beyond waiting for the fabric is the host's
        # work around them (copies into and out of CMA buffers, cache maintenance, register
        # writes, argument checks), which the time model does not price
        over = kernel - (wait1 - wait0)
        copy1, flush1 = _copy_counts(backend)
        host = {"fabric_wait_seconds": wait1 - wait0, "call_overhead_seconds": over,
                "call_overhead_per_step_s": over / steps,
                "copied_bytes_per_step": (copy1 - copy0) / steps,
                "flushed_bytes_per_step": (flush1 - flush0) / steps}
    return {
        "arm_ops_per_second": rate,
        "assumed_default": ARM_OPS_PER_SECOND,
        "ratio_to_assumed": rate / ARM_OPS_PER_SECOND,
        "arm_ops": ops,
        "arm_seconds": arm_s,
        "kernel_seconds": kernel,
        "kernel_calls": timed.calls,
        "steps": steps,
        "batch_size": bs,
        "machine": platform.machine(),
        "on_board_cpu": is_board_cpu(),
        "numpy": np.__version__,
        "label": "measured (wall clock on this CPU, kernel calls excluded)",
        "config": cfg.to_dict(),
        **host,
    }


def _copy_counts(backend) -> tuple[int, int]:
    """(bytes copied into and out of CMA buffers, bytes flushed) so far: the PYNQ backend's
    counts, 0 for a backend that copies nothing."""
    stats = getattr(backend, "copy_stats", None)
    if not callable(stats):
        return 0, 0
    st = stats()
    return st["copied_in"] + st["copied_out"], st["flushed"]


# -- CLI: e2train calibrate-arm ---------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--backend", choices=("pynq", "csim", "golden"), default="csim",
                   help="kernel backend: pynq on the board (loads --bitstream), csim or golden elsewhere")
    p.add_argument("--bitstream", default=None, help="bitstream directory for --backend pynq (default: $BOARD's)")
    p.add_argument("--data", default="auto",
                   help="data whose steps are timed: digits (needs scikit-learn: a host), synthetic (random "
                        "images of the digits' shapes: numpy only, for the board), an uploaded-format .npz "
                        "(x_train, y_train, x_test, y_test), or auto (default): digits where scikit-learn is "
                        "installed, else synthetic")
    p.add_argument("--config", default="{}", help="training config (JSON) whose steps are timed")
    p.add_argument("--steps", type=int, default=10, help="training steps timed")
    p.add_argument("--warmup", type=int, default=2, help="steps run first and not timed (caches, first allocations)")
    p.add_argument("--json", default=None, help="also write the result here")


def synthetic_digits(seed: int = 0):
    """Random standard-normal images and labels in the digits set's shapes and sizes (numpy only).

    The ARM's throughput depends on the tensor shapes, not on the pixel values, so these time the
    same work as the digits without scikit-learn, which a PYNQ image does not ship. (Gate
    decisions differ with the data; the ops they skip are not counted, so ops/s still holds.)
    """
    rng = np.random.default_rng(seed)
    from ..data.datasets import DIGITS_TEST
    n, n_test = 1797, DIGITS_TEST
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = (np.arange(n) % 10).astype(np.int64)
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def _has_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401  (a host; a PYNQ image does not ship it)
    except ImportError:
        return False
    return True


def _load_data(name: str):
    if name == "auto":
        name = "digits" if _has_sklearn() else "synthetic"
        if name == "synthetic":
            import sys
            print("note: scikit-learn is not installed (as on a PYNQ image): timing synthetic data of the "
                  "digits' shapes (--data synthetic); the throughput does not depend on pixel values",
                  file=sys.stderr)
    if name == "synthetic":
        return synthetic_digits()
    if name.endswith(".npz"):
        # the format `e2train train` uploads to the board, checked the same way
        from .agent import load_dataset_npz
        return load_dataset_npz(Path(name))
    from ..data import datasets                 # host side (scikit-learn for digits)
    return datasets.load(name, None, pixels=True)       # as `e2train train` uploads it


def run(args) -> int:
    import json
    import sys
    from .agent import CommandError
    from .train_config import ConfigError
    try:
        cfg = TrainConfig.from_dict(json.loads(args.config))
    except (json.JSONDecodeError, ConfigError) as err:
        print(f"bad --config: {err}", file=sys.stderr)
        return 2
    try:
        if args.backend == "pynq":
            from .board import open_board
            backend = open_board(args.bitstream, simulated=False).backend
        elif args.backend == "csim":
            from ..core import csim
            if not csim.available():
                raise ValueError("the C-simulation library is missing: run `make csim` (or use --backend golden)")
            backend = csim
        else:
            from ..core import golden as backend
        data = _load_data(args.data)
        res = calibrate(cfg, data, backend, steps=args.steps, warmup=args.warmup,
                        on_step=lambda i, k: print(f"\rstep {i}/{k}", end="", file=sys.stderr, flush=True))
    except (ValueError, CommandError, OSError) as err:
        print(f"e2train calibrate-arm: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(f"ARM-side throughput: {res['arm_ops_per_second']:.3g} ops/s measured on {res['machine']} "
          f"({res['ratio_to_assumed']:.2f}x the assumed {res['assumed_default']:.3g}); "
          f"{res['arm_ops']} ops in {res['arm_seconds']:.3f} s, kernels {res['kernel_seconds']:.3f} s excluded", flush=True)
    if not res["on_board_cpu"]:
        print(f"note: {res['machine']} is not the board's Cortex-A9; this figure describes this machine. "
              "Run it on the board before using it for board energy.", file=sys.stderr)
    if "call_overhead_per_step_s" in res:
        print(f"around the kernel calls, beyond waiting for the fabric: {1e3 * res['call_overhead_per_step_s']:.2f} ms "
              f"a step (copies into and out of CMA buffers, {res['copied_bytes_per_step'] / 1e3:.0f} KB a step; "
              f"cache maintenance, {res['flushed_bytes_per_step'] / 1e3:.0f} KB flushed a step and the outputs "
              f"invalidated; register writes), measured; the time model does not price it"
              + ("" if res["on_board_cpu"] else " (on a simulated board the kernels' C simulation runs inside "
                 "the call and is counted here too)"), flush=True)
    print(f"use it: --set arm_ops_per_second={res['arm_ops_per_second']:.4g}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0

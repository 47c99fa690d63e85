"""The random number generators of a run, saved and restored per device.

Torch keeps one global generator on the CPU and one per CUDA device; a run on a GPU draws
from the CUDA one wherever a tensor is sampled on the device (``torch.rand(...,
device=x.device)``, e.g. the gates' stochastic forward), so a checkpoint that held the CPU
state alone would resume such a run with other draws. The state is plain tensors (a
``weights_only`` checkpoint holds them) and comes back on the CPU, where the setters want it.
"""
from __future__ import annotations

import torch


def rng_state(device: torch.device | str) -> dict:
    """{"cpu": state, "cuda": [state per visible CUDA device]} (the CUDA list only when the
    run uses CUDA: asking initialises CUDA)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict, device: torch.device | str) -> None:
    """Restore what ``rng_state`` saved. The CUDA states go back only when this run uses
    CUDA, one per device that is still there (a run resumed on a machine with fewer GPUs
    restores those it has; a run resumed on the CPU has no use for them)."""
    if "cpu" in state:
        torch.set_rng_state(state["cpu"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.device(device).type == "cuda" and torch.cuda.is_available():
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)

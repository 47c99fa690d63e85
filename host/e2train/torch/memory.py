"""Peak memory of a training run, beside its time and energy (paper 000, guideline 5: GSkip's
"memory decrease" is one of its claimed savings).

* CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) over the run,
  reset at its start: the bytes of live tensors at the worst moment.
* CPU: torch keeps no statistics for its CPU allocator, ``tracemalloc`` does not see it, and
  the resident set of a process that ran other trainings before does not shrink, so an RSS
  figure would depend on what ran earlier in the process. The CPU figure is instead the peak,
  over the training steps, of the bytes autograd keeps for the backward (the tensors saved by
  the forward, each storage counted once), plus the parameters and their gradients: the
  memory a method changes by skipping gradients or layers. It is labelled as such.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

KIND_CUDA = "cuda allocator peak"
KIND_SAVED = "autograd saved tensors + parameters and gradients (cpu)"


class PeakMemory:
    """``pm = PeakMemory(device, model)``; wrap each training forward+backward in
    ``with pm.step(): ...``; read ``pm.peak_bytes`` and ``pm.kind``."""

    def __init__(self, device: torch.device, model: nn.Module):
        self.device = torch.device(device)
        self.model = model
        self.cuda = self.device.type == "cuda"
        self.kind = KIND_CUDA if self.cuda else KIND_SAVED
        self._peak = 0
        self._sum, self._steps = 0, 0     # for the mean over steps (paper 000's Fig. 2 is an average)
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def _param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() * (2 if p.requires_grad else 1) for p in self.model.parameters())

    @contextmanager
    def step(self) -> Iterator[None]:
        if self.cuda:
            yield
            self._sum += torch.cuda.memory_allocated(self.device)
            self._steps += 1
            return
        seen: set[tuple[int, int]] = set()
        saved = [0]

        def pack(t: torch.Tensor):
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                saved[0] += key[1]
            return t

        params = self._param_bytes()     # before the step: requires_grad as the method set it
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield
        self._peak = max(self._peak, saved[0] + params)
        self._sum += saved[0] + params
        self._steps += 1

    @property
    def mean_bytes(self) -> float:
        """Mean over the steps so far (CUDA: bytes allocated after each step's backward; CPU:
        the same quantity as the peak)."""
        return self._sum / self._steps if self._steps else 0.0

    @property
    def peak_bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        return self._peak

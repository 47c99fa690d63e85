"""Peak memory of a training run, beside its time and energy (paper 000, guideline 5: GSkip's
"memory decrease" is one of its claimed savings).

* CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) over the run,
  reset at its start: the bytes of live tensors at the worst moment.
* CPU: torch's CPU allocations are invisible to ``tracemalloc``, and the process's
  ``ru_maxrss`` never goes down between runs, so a thread samples the resident set size
  (``/proc/self/statm``) every ``interval`` seconds; the peak is reported as the rise over the
  RSS at the start of the run. Sampling can miss a peak shorter than the interval, so the
  figure is a lower bound, and it is labelled as sampled.
"""
from __future__ import annotations

import os
import threading
import weakref

import torch

KIND_CUDA = "cuda allocator peak"
KIND_RSS = "cpu rss rise (sampled)"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sample(ref, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        pm = ref()
        if pm is None:
            return
        pm._peak = max(pm._peak, _rss_bytes())
        del pm


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.peak_bytes`` and ``pm.kind``."""

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device = torch.device(device)
        self.interval = interval
        self.kind = KIND_CUDA if self.device.type == "cuda" else KIND_RSS
        self._start = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = self._peak = _rss_bytes()
            # the thread holds only a weak reference: if the run ends by an exception before
            # ``__exit__``, the sampler stops once the meter is collected
            self._thread = threading.Thread(target=_sample, args=(weakref.ref(self), self._stop, self.interval),
                                            daemon=True)
            self._thread.start()
        return self

    @property
    def peak_bytes(self) -> int:
        """Peak over the run so far: allocator peak (CUDA), or RSS rise over the start (CPU)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        self._peak = max(self._peak, _rss_bytes())
        return max(0, self._peak - self._start)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __del__(self) -> None:
        self._stop.set()

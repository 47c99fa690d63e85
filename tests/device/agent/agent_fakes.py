"""Stand-ins the agent tests share (tests/device/agent/conftest.py puts this folder on sys.path)."""
import io
import threading
import time

import numpy as np


class FakeTrainer:
    """Emits `epochs` epoch events, `delay` seconds apart, then returns results."""

    def __init__(self, config, on_event):
        if config.get("epochs", 1) < 1:
            raise ValueError("epochs must be >= 1")
        self.epochs = config.get("epochs", 3)
        self.delay = config.get("delay", 0.05)
        self.on_event = on_event
        self._stop = threading.Event()

    def run(self):
        self.on_event({"event": "started"})
        for e in range(self.epochs):
            if self._stop.wait(self.delay):
                return {"summary": {"epochs": e}, "stopped": True}
            self.on_event({"event": "epoch", "epoch": e, "test_acc": 0.5 + e / 100})
        return {"summary": {"epochs": self.epochs, "test_acc": 0.9}}

    def stop(self):
        self._stop.set()


def _drain(c, timeout, until=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for ev in c.events(timeout=0.2):
            yield ev
            if until and ev["event"] == until:
                return
    if until:
        raise AssertionError(f"no {until} event within {timeout} s")


def _dataset_bytes(n=8):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x_train=rng.normal(size=(n, 1, 8, 8)).astype(np.float32), y_train=np.arange(n) % 10,
             x_test=rng.normal(size=(4, 1, 8, 8)).astype(np.float32), y_test=np.arange(4))
    return buf.getvalue()

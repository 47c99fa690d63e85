"""The device the torch tests train on: ``E2TRAIN_TEST_DEVICE`` = cpu (default), cuda[:N] or
auto (CUDA where torch sees it, else the CPU).

Runs configured with ``device = "auto"`` (the trainer's default, which most tests leave as
is) resolve to this device, so the same tests check the CPU path in CI and the CUDA path on
a GPU machine (``E2TRAIN_TEST_DEVICE=cuda pytest tests/torch tests/bench``). On CUDA the
tests compare runs bit for bit (resume against an uninterrupted run), so cuDNN and torch are
put in their deterministic modes for the session.
"""
from __future__ import annotations

import os

import pytest

ENV = "E2TRAIN_TEST_DEVICE"
_TORCH_DIRS = ("torch", "bench")       # test folders whose tests train through e2train.torch


def _resolve() -> str:
    name = os.environ.get(ENV, "cpu").strip().lower() or "cpu"
    if name == "cpu":
        return name
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        raise pytest.UsageError(f"{ENV}={name!r}: use cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise pytest.UsageError(f"{ENV}={name} but torch sees no CUDA device: unset it or use {ENV}=cpu")
    return name


_DEVICE = "cpu"


def _deterministic_cuda() -> None:
    import torch
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def pytest_configure(config):
    global _DEVICE
    _DEVICE = _resolve()
    if _DEVICE != "cpu":
        _deterministic_cuda()


@pytest.fixture
def deterministic_cuda():
    """cuDNN and torch in their deterministic modes for one test (a test that compares two
    CUDA runs bit for bit while the session's device is the CPU)."""
    import torch
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    _deterministic_cuda()
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


@pytest.fixture(scope="session")
def test_device():
    """The torch device the tests run on (``E2TRAIN_TEST_DEVICE``)."""
    import torch
    return torch.device(_DEVICE)


@pytest.fixture(autouse=True)
def _auto_device_is_the_test_device(request, monkeypatch):
    """``device = "auto"`` in a run's config means the test device (cpu unless asked)."""
    parts = request.node.path.parts
    if not any(d in parts for d in _TORCH_DIRS):
        yield
        return
    from e2train.torch import trainer
    real = trainer._device
    monkeypatch.setattr(trainer, "_device", lambda name: real(_DEVICE if name == "auto" else name))
    yield

"""One training step on the simulated board takes the path docs/architecture.md describes
(steps 7-10): trainer → model → QConv → PynqBackend → KernelDriver registers → SimKernel →
SimDevice → the kernels' C simulation, and the backward kernels after the forward ones. The
calls are recorded with a profiler, so a renamed or bypassed hop fails here and the document
is corrected with it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SIM_MANIFEST = Path(__file__).resolve().parents[2] / "bitstreams" / "sim"

# in the order of first call within one train_step
DOCUMENTED_PATH = [
    "e2train.device.trainer.Trainer.train_step",
    "e2train.device.nn_resnet.ResNet.forward",
    "e2train.device.nn_qconv.QConv.forward",
    "e2train.device.nn_qconv.QConv._fwd_call",
    "e2train.device.backend_pynq.PynqBackend.conv_fwd",
    "e2train.core.kernel_args.check_conv_fwd",
    "e2train.device.driver.KernelDriver.execute",
    "e2train.device.driver.KernelDriver.write_args",
    "e2train.device.simdevice.SimKernel.on_write",
    "e2train.device.simdevice.SimKernel._start",
    "e2train.device.simdevice.SimDevice._run_kernel",
    "e2train.core.csim.conv_fwd",
    "e2train.device.simdevice.SimDevice._account",
    "e2train.device.driver.KernelDriver.wait",
    "e2train.device.slu_gate.GateNet.forward",
    "e2train.device.nn_resnet.ResNet.backward",
    "e2train.device.nn_qconv.QConv.backward",
    "e2train.device.backend_pynq.PynqBackend.conv_bwd_data",
    "e2train.core.csim.conv_bwd_data",
    "e2train.device.backend_pynq.PynqBackend.conv_bwd_weight_psg",
    "e2train.core.csim.conv_bwd_weight_psg_stats",
]


def _first_calls(fn) -> list[str]:
    seen: dict[str, None] = {}

    def prof(frame, event, arg):
        if event == "call":
            name = f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_qualname}"
            if name.startswith("e2train."):
                seen.setdefault(name)

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return list(seen)


def test_a_training_step_takes_the_documented_path(csim_lib):
    from e2train.device.board import preset_config
    from e2train.device.overlay import KernelOverlay
    from e2train.device.train_config import TrainConfig
    from e2train.device.trainer import Trainer

    backend = KernelOverlay(SIM_MANIFEST, sim_impl="csim").backend()
    cfg = TrainConfig.from_dict(preset_config("e2train"))      # SLU gates on: GateNet runs
    rng = np.random.default_rng(0)
    n = cfg.batch_size
    x = rng.random((n, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, n)
    trainer = Trainer(cfg, (x, y, None, None), backend)
    calls = _first_calls(lambda: trainer.train_step(x, y, 0))

    missing = [c for c in DOCUMENTED_PATH if c not in calls]
    assert not missing, f"not called in a training step: {missing}"
    order = [calls.index(c) for c in DOCUMENTED_PATH]
    assert order == sorted(order), [c for _, c in sorted(zip(order, DOCUMENTED_PATH))]
    assert backend.calls["conv_fwd"] > 0 and backend.calls["conv_bwd_weight_psg"] > 0

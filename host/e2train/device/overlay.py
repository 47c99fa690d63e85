"""Load the e2train fabric: a bitstream on a real board, or the simulated board, both
checked against their manifest before anything runs.

    ov = KernelOverlay("bitstreams/pynq-z2")     # real board: downloads the bitstream
    ov = KernelOverlay("bitstreams/sim")         # simulated board (no hardware)
    ov.engine                                    # the driver.EngineDriver of the one IP
    ov.engine.conv_fwd(x=..., ...)               # one pass (op 0)
    backend = ov.backend()                       # the conv backend over it
"""
from __future__ import annotations

import os
from pathlib import Path

from . import kernel_iface as ki
from . import manifest as mf
from .driver import DRIVERS, EngineDriver, KernelDriver

REPO_BITSTREAMS = Path(__file__).resolve().parents[3] / "bitstreams"


def default_bitstreams_dir() -> Path:
    """bitstreams/ of a source checkout, or $E2TRAIN_BITSTREAMS."""
    return Path(os.environ.get("E2TRAIN_BITSTREAMS", REPO_BITSTREAMS))


def ip_description(k: ki.KernelIface, device) -> dict:
    """The kernel's entry of ``ip_dict`` as ``pynq.Overlay`` would hand it to its driver,
    for a device without a .hwh (the simulated board, the RTL bench's AXI device)."""
    return {"phys_addr": k.base_addr, "addr_range": ki.ADDR_RANGE, "type": k.vlnv,
            "fullpath": k.instance, "registers": k.pynq_registers(), "device": device}


class KernelOverlay:
    """The IP of one bitstream (or of the simulated board), e2t_engine, with its driver bound
    (``engine``; ``kernels`` maps the IP's name to it)."""

    def __init__(self, path: str | os.PathLike | None = None, *, download: bool = True,
                 sim_impl: str = "auto"):
        path = Path(path) if path is not None else default_bitstreams_dir() / "sim"
        self.manifest, self.directory = mf.load(path)
        self.board = self.manifest["board"]
        self.simulated = self.board == "sim"
        if self.simulated:
            self._load_sim(sim_impl)
        else:
            self._load_board(download)
        self.engine: EngineDriver = self.kernels[ki.E2T_ENGINE.name]

    def _load_sim(self, impl: str) -> None:
        import pynq

        from .simdevice import SimDevice
        self.device = SimDevice(impl=impl)
        # pynq.allocate and MMIO default to the active device; the simulated board takes
        # that place, as a real board's device would
        pynq.Device.active_device = self.device
        self.pynq_overlay = None
        self.kernels: dict[str, KernelDriver] = {}
        for k in ki.KERNELS.values():
            self.kernels[k.name] = DRIVERS[k.name](ip_description(k, self.device))

    def _load_board(self, download: bool) -> None:
        import pynq
        board_env = os.environ.get("BOARD", "")      # the PYNQ image sets BOARD=Pynq-Z2 etc.
        if board_env and board_env.lower().replace("_", "-") != self.board:
            raise mf.ManifestError(f"this board says it is {board_env!r}, but the bitstream in "
                                   f"{self.directory} is for {self.board}: use bitstreams/{board_env.lower()}")
        bit = self.directory / self.manifest["bitstream"]["file"]
        self.pynq_overlay = pynq.Overlay(str(bit), download=download)
        mf.check_ip_dict(self.pynq_overlay.ip_dict, str(bit))
        self.device = self.pynq_overlay.device
        self.kernels = {}
        for name, d in self.pynq_overlay.ip_dict.items():
            try:
                k = ki.by_vlnv(str(d.get("type", "")))
            except KeyError:
                continue
            # pynq binds our driver by VLNV (driver.py's bindto); anything else gets ours
            drv = getattr(self.pynq_overlay, name, None) if "/" not in name else None
            if not isinstance(drv, KernelDriver):
                drv = DRIVERS[k.name](d)
            self.kernels[k.name] = drv

    def backend(self, timeout_s: float | None = None, **kw):
        """The PYNQ backend over this overlay (``kw``: ``PynqBackend``'s, e.g. ``arena_bytes``)."""
        from .backend_pynq import PynqBackend
        return PynqBackend(self, timeout_s=timeout_s, **kw)

    def reload(self) -> None:
        """Reprogram the fabric (the cure for a hung kernel)."""
        if self.simulated:
            self.device.reset_kernels()
        else:
            self.pynq_overlay.download()

    def describe(self) -> dict:
        return {"board": self.board, "simulated": self.simulated, "part": self.manifest.get("part"),
                "kernels": {n: ki.KERNELS[n].vlnv for n in self.kernels},
                "impl": getattr(self.device, "impl_name", "fabric"),
                "abi": self.manifest["abi"]}

"""The real-board path of KernelOverlay, up to the line where hardware is needed: pynq's
``Overlay`` is replaced by a stand-in that reports the ip_dict a matching .hwh gives, with
the simulated board behind the addresses. What a real PYNQ image does on
``pynq.Overlay(bit)`` (programming the fabric, parsing the real .hwh) is not exercised."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pynq
import pytest
from pynq.overlay import _ip_drivers

from e2train.core import golden
from e2train.core.fixedpoint import Dyadic
from e2train.device import driver, kernel_iface as ki, manifest as mf, overlay as ovmod
from e2train.device.simdevice import SimDevice

SIM = Path(__file__).resolve().parents[3] / "bitstreams" / "sim"


def test_drivers_are_registered_with_pynq_by_vlnv():
    for name, cls in driver.DRIVERS.items():
        assert _ip_drivers[ki.KERNELS[name].vlnv] is cls


class _FakeOverlay:
    """What ``pynq.Overlay`` offers after loading a bitstream whose .hwh matches."""

    loaded: list = []

    def __init__(self, bitfile, download=True):
        self.device = SimDevice(impl="golden")
        pynq.Device.active_device = self.device
        self.ip_dict = {k.instance: {"type": k.vlnv, "phys_addr": k.base_addr, "addr_range": ki.ADDR_RANGE,
                                     "registers": k.pynq_registers(), "fullpath": k.instance,
                                     "device": self.device} for k in ki.KERNELS.values()}
        self.ip_dict["ps7"] = {"type": "xilinx.com:ip:processing_system7:5.5"}
        _FakeOverlay.loaded.append((bitfile, download))

    def __getattr__(self, name):
        if name in self.__dict__.get("ip_dict", {}):
            return pynq.DefaultIP(self.ip_dict[name])      # a driver that is not ours
        raise AttributeError(name)

    def download(self):
        self.device.reset_kernels()


def _board_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pynq-z2"
    d.mkdir()
    (d / "e2train.bit").write_bytes(b"\x00\x09\x0f\xf0" * 100)
    (d / "e2train.hwh").write_text("<EDKSYSTEM/>")
    m = json.loads((SIM / mf.MANIFEST_NAME).read_text())
    m.update(board="pynq-z2", bitstream={"file": "e2train.bit", "sha256": mf.sha256_file(d / "e2train.bit")},
             hwh={"file": "e2train.hwh", "sha256": mf.sha256_file(d / "e2train.hwh")})
    (d / mf.MANIFEST_NAME).write_text(json.dumps(m))
    return d


def test_board_overlay_binds_our_drivers_and_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(pynq, "Overlay", _FakeOverlay)
    monkeypatch.setenv("BOARD", "Pynq-Z2")
    d = _board_dir(tmp_path)
    ov = ovmod.KernelOverlay(d)
    assert not ov.simulated and _FakeOverlay.loaded[-1] == (str(d / "e2train.bit"), True)
    assert {n: type(k) for n, k in ov.kernels.items()} == driver.DRIVERS
    x = np.arange(2 * 3 * 4 * 4, dtype=np.int64).reshape(2, 3, 4, 4).astype(np.int8)
    w = np.ones((2, 3, 3, 3), np.int8)
    assert np.array_equal(ov.backend().conv_fwd(x, w, None, Dyadic(3, 5), pad=1),
                          golden.conv_fwd(x, w, None, Dyadic(3, 5), pad=1))


def test_board_overlay_refuses_the_wrong_board_or_design(tmp_path, monkeypatch):
    monkeypatch.setattr(pynq, "Overlay", _FakeOverlay)
    d = _board_dir(tmp_path)
    monkeypatch.setenv("BOARD", "ZedBoard")
    n = len(_FakeOverlay.loaded)
    with pytest.raises(mf.ManifestError, match="says it is 'ZedBoard'.*for pynq-z2"):
        ovmod.KernelOverlay(d)
    assert len(_FakeOverlay.loaded) == n                  # refused before loading anything
    monkeypatch.delenv("BOARD")

    class _Other(_FakeOverlay):
        def __init__(self, bitfile, download=True):
            super().__init__(bitfile, download)
            self.ip_dict["e2t_engine_0"]["phys_addr"] = 0x4000_0000

    monkeypatch.setattr(pynq, "Overlay", _Other)
    with pytest.raises(mf.ManifestError, match="e2t_engine at 0x40000000, expected 0x43c00000"):
        ovmod.KernelOverlay(d)

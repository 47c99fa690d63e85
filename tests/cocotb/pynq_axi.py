"""A ``pynq.Device`` whose kernel registers and DDR are AXI bus models on the RTL (cocotb 2.x).

The PYNQ driver (``e2train.device.driver``) runs unmodified on top of it: ``pynq.MMIO`` and
``pynq.allocate`` are pynq's own. What sits behind them:

* **Registers over AXI4-Lite.** The device has pynq's ``REGISTER_RW`` capability (not
  ``MEMORY_MAPPED``), so ``MMIO`` sends every register access to ``read_registers`` /
  ``write_registers``; each becomes one transaction of cocotbext-axi's ``AxiLiteMaster`` on
  the top's ``s_axi_control`` port. The driver is synchronous (the pynq API), so it runs in
  a thread started with ``cocotb.task.bridge`` and each access is a coroutine run to completion
  with ``cocotb.task.resume`` while the simulation advances (cocotb 2.1, ``cocotb.task``, defined in ``cocotb/_bridge.py``:
  "Converts a coroutine function into a blocking function ... called from a blocking
  function converted by bridge").
* **DDR is cocotbext-axi's ``AxiRam``** on the top's ``m_axi_gmem`` port, over the whole
  32-bit address space, so a buffer's ``physical_address`` is its address on the bus.
* **Buffers and the ARM caches are the simulated board's** (``SimDevice``): its allocator
  and its non-coherent buffers, whose CPU view reaches DDR only through ``flush()`` and
  comes back only through ``invalidate()``; here those two copy between the CPU view and
  the AxiRam. A driver that forgot either would read stale data, as on a board.
"""
from __future__ import annotations

import logging

from cocotb.task import resume
import numpy as np
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

from e2train.device import kernel_iface as ki
from e2train.device.simdevice import SimDevice, SimulatedBusError

POOL_BYTES = 1 << 20      # buffer memory the tests allocate from (at simdevice.DDR_BASE)


def quiet(*models) -> None:
    """cocotbext-axi logs every transaction at INFO; keep its warnings only."""
    for m in models:
        for part in (getattr(m, "read_if", None), getattr(m, "write_if", None)):
            if part is not None:
                part.log.setLevel(logging.WARNING)


class AxiBoard(SimDevice):
    """The kernel ``iface`` at its base address, registers on ``s_axi_control``, DDR an
    AxiRam on ``m_axi_gmem`` (both clocked by ``ap_clk``, reset by ``ap_rst_n``)."""

    def __init__(self, dut, iface: ki.KernelIface, *, pool_bytes: int = POOL_BYTES):
        super().__init__(impl="golden", ddr_bytes=pool_bytes)
        self.name = f"e2train RTL ({iface.name}) over AXI bus models"
        self.capabilities = {"MEMORY_MAPPED": False, "REGISTER_RW": True, "CALLABLE": False}
        self.iface = iface
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_gmem"), dut.ap_clk, dut.ap_rst_n,
                          reset_active_level=False, size=1 << 32)
        self.ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk, dut.ap_rst_n,
                                  reset_active_level=False)
        quiet(self.ram, self.ctrl)
        self._span = 1 << len(dut.s_axi_control_awaddr)
        self._read = resume(self.ctrl.read)
        self._write = resume(self.ctrl.write)
        self.register_reads = self.register_writes = 0

    def _offset(self, address: int, length: int) -> int:
        off = address - self.iface.base_addr
        if not (0 <= off and off + length <= self._span):
            raise SimulatedBusError(f"{address:#x}+{length} is outside {self.iface.name}'s control "
                                    f"registers at {self.iface.base_addr:#x} (+{self._span:#x})")
        return off

    # --- pynq.Device, REGISTER_RW ------------------------------------------------------
    def read_registers(self, address: int, length: int) -> bytes:
        resp = self._read(self._offset(address, length), length)
        if resp.resp != AxiResp.OKAY:
            raise SimulatedBusError(f"AXI4-Lite read at {address:#x} answered {resp.resp!r}")
        self.register_reads += 1
        return bytes(resp.data)

    def write_registers(self, address: int, data: bytes) -> None:
        resp = self._write(self._offset(address, len(data)), bytes(data))
        if resp.resp != AxiResp.OKAY:
            raise SimulatedBusError(f"AXI4-Lite write at {address:#x} answered {resp.resp!r}")
        self.register_writes += 1

    def mmap(self, base_addr: int, length: int):
        raise SimulatedBusError("this board has no memory-mapped view: registers go over AXI4-Lite")

    # --- the ARM caches against the AxiRam ------------------------------------------------
    def flush(self, bo, offset, ptr, size):
        r = self._range(bo, offset, size)
        self.ram.write(bo + offset, self._cpu[r].tobytes())

    def invalidate(self, bo, offset, ptr, size):
        r = self._range(bo, offset, size)
        self._cpu[r] = np.frombuffer(bytes(self.ram.read(bo + offset, size)), np.uint8)


"""PYNQ driver of the fabric's one HLS IP, e2t_engine (numpy + pynq only).

One ``pynq.DefaultIP`` subclass, bound by VLNV, so that ``pynq.Overlay`` picks it for the IP
on a real board; the simulated board builds the same class from a description dict. Every
register offset comes from ``kernel_iface``. Each op is one method (the conv passes
``conv_fwd``, ``conv_bwd_data``, ``conv_bwd_weight_psg``; the block operations ``bn_act``,
``bn_bwd_reduce``, ``bn_bwd_apply``): each writes ``op`` and its pass's arguments
(``kernel_iface.PASSES``), and 0 in every argument its pass does not read.

A call: write every argument register, flush the inputs out of the ARM caches, set
ap_start, poll CTRL until the kernel reports done (or a timeout says it never will), and
invalidate the outputs so the ARM reads what the fabric wrote. Interrupts are left off:
a kernel call is milliseconds, and polling keeps the driver free of UIO set-up.

While it polls, the ARM's one thread has nothing else to do: a call may pass ``idle``, a
callable that runs one piece of the ARM's side work if it fits in the time it is given and
returns whether it ran one (``nn_layers.ArmTally.idle``), with ``modelled_s``, the call's
modelled duration. Between polls, while the IP is not done, the driver calls
``idle(modelled_s - wall time since ap_start)`` and polls again at once; when it returns False
the driver polls as without one. A piece runs to its end, so it may hold up the next call by
what it overruns the current one (the model is an estimate; the fit rule keeps that rare).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from pynq import DefaultIP

from . import kernel_iface as ki

DEFAULT_TIMEOUT_S = 10.0     # far above any kernel call the shape limits admit at 100 MHz
_SPIN_S = 1e-3               # poll flat out this long, then back off to short sleeps
_SLEEP_S = 2e-4


class KernelError(RuntimeError):
    """A kernel call that cannot be made or did not complete."""


class KernelTimeout(KernelError):
    """The kernel did not report done in time: the fabric is hung or the clock is off."""


class KernelDriver(DefaultIP):
    """Register-level driver of one e2train kernel. Subclasses set ``IFACE`` and ``bindto``."""

    IFACE: ki.KernelIface

    def __init__(self, description: dict):
        super().__init__(description)
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.calls = 0

    # --- registers ------------------------------------------------------------------
    def write_args(self, **values: Any) -> None:
        """Program every argument register. All arguments must be given (stale values
        from a previous call are never reused); a pointer is a pynq buffer or an int
        physical address (0 for an unused one)."""
        iface = self.IFACE
        names = [a.name for a in iface.args]
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra:
            raise KernelError(f"{iface.name}: missing arguments {missing}, unknown {extra}; "
                              f"it takes {names}")
        for a in iface.args:
            off = iface.offset(a.name)
            v = values[a.name]
            if a.kind == "ptr":
                addr = _address(v, f"{iface.name}.{a.name}")
                if ki.M_AXI_ADDR64:
                    self.mmio.write(off, addr & 0xFFFF_FFFF)
                    self.mmio.write(off + 4, addr >> 32)
                elif addr >> 32:
                    raise KernelError(f"{iface.name}.{a.name}: address {addr:#x} is beyond the "
                                      f"kernels' 32-bit m_axi address space")
                else:
                    self.mmio.write(off, addr)
            else:
                iv = int(v)
                if not -(1 << 31) <= iv < 1 << 31:
                    raise KernelError(f"{iface.name}.{a.name} = {iv} does not fit the kernel's int argument")
                self.mmio.write(off, iv & 0xFFFF_FFFF)

    def read_ctrl(self) -> int:
        """CTRL (note: reading it clears ap_done and ap_ready on Vitis HLS IPs)."""
        return int(self.mmio.read(ki.CTRL))

    def status(self) -> int:
        """The kernel's return value (ap_return): 0, or E2T_ERR_* bits."""
        v = int(self.mmio.read(ki.AP_RETURN))
        return v - (1 << 32) if v & 0x8000_0000 else v

    def start(self) -> None:
        ctrl = self.read_ctrl()
        if ctrl & ki.AP_START or not ctrl & ki.AP_IDLE:
            raise KernelError(f"{self.IFACE.name} is busy (CTRL = {ctrl:#x}); a previous call "
                              f"has not finished. If it is hung, reload the bitstream.")
        self.mmio.write(ki.CTRL, ki.AP_START)

    def wait(self, timeout_s: float | None = None, idle=None, modelled_s: float | None = None) -> float:
        """Poll until done; returns the seconds waited. Done means ap_done, or ap_idle with
        ap_start already taken: ap_done is clear-on-read, so a read by anyone else (a
        register_map print, a debugger) must not make the driver wait forever. ``idle`` and
        ``modelled_s`` (the call's modelled duration, which ``idle`` needs): see the module's
        docstring; the seconds waited include what it ran. Call it right after ``start``."""
        if idle is not None and modelled_s is None:
            raise KernelError(f"{self.IFACE.name}: a side-work hook (idle) needs the call's modelled duration "
                              f"(modelled_s) to tell what fits in it; pass both or neither")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()                  # ap_start was just written
        deadline = t0 + timeout
        spin_until = t0 + _SPIN_S
        while True:
            ctrl = self.read_ctrl()
            if ctrl & ki.AP_DONE or (ctrl & ki.AP_IDLE and not ctrl & ki.AP_START):
                return time.monotonic() - t0
            now = time.monotonic()
            if now >= deadline:
                raise KernelTimeout(
                    f"{self.IFACE.name} at {self.mmio.base_addr:#x} did not finish within "
                    f"{timeout:g} s (CTRL = {ctrl:#x}: ap_start={ctrl & 1}, ap_idle={(ctrl >> 2) & 1}). "
                    f"The fabric is probably hung: reload the bitstream (e2train flash) "
                    f"before calling a kernel again.")
            if idle is not None and idle(modelled_s - (now - t0)):
                continue                       # ran a piece of side work: poll again at once
            if now >= spin_until:
                time.sleep(_SLEEP_S)

    # --- one call -------------------------------------------------------------------
    def execute(self, timeout_s: float | None = None, idle=None, modelled_s: float | None = None,
                **args: Any) -> float:
        """Write the arguments, flush the input buffers, start, wait (running ``idle`` between
        polls, given what is left of ``modelled_s``), invalidate the output buffers, check the status word. Returns the seconds spent
        waiting."""
        self.write_args(**args)
        for a in self.IFACE.args:
            if a.kind == "ptr" and a.direction in ("in", "inout"):
                _sync(args[a.name], "flush")
        # An output may still have lines in the ARM cache from before the call; flushing it
        # too means no dirty line can be evicted on top of what the kernel writes.
        for a in self.IFACE.args:
            if a.kind == "ptr" and a.direction == "out":
                _sync(args[a.name], "flush")
        self.start()
        waited = self.wait(timeout_s, idle, modelled_s)
        for a in self.IFACE.args:
            if a.kind == "ptr" and a.direction in ("out", "inout"):
                _sync(args[a.name], "invalidate")
        self.calls += 1
        status = self.status()
        if status != ki.E2T_OK:
            raise KernelError(f"{self.IFACE.name} returned status {status:#x} "
                              f"({ki.describe_status(status)}); its outputs are not valid")
        return waited


def _address(v: Any, what: str) -> int:
    if isinstance(v, (int, np.integer)):
        addr = int(v)
    else:
        addr = getattr(v, "device_address", None)
        if addr is None:
            raise KernelError(f"{what}: needs a buffer from pynq.allocate (or a physical address), "
                              f"got {type(v).__name__}")
        addr = int(addr)
    if not 0 <= addr < 1 << 64:
        raise KernelError(f"{what}: address {addr:#x} out of range")
    return addr


def _sync(buf: Any, how: str) -> None:
    if hasattr(buf, how):           # int addresses (an unused pointer) have nothing to sync
        getattr(buf, how)()


class EngineDriver(KernelDriver):
    """The driver of e2t_engine: one call method per pass."""

    IFACE = ki.E2T_ENGINE
    bindto = [ki.E2T_ENGINE.vlnv]

    def __init__(self, description: dict):
        super().__init__(description)
        self.pass_calls = {name: 0 for name in ki.PASSES}

    def run_pass(self, name: str, timeout_s: float | None = None, idle=None, modelled_s: float | None = None,
                 **args: Any) -> float:
        """One call of pass ``name``: exactly its arguments (``kernel_iface.PASSES``), the
        others written 0, ``op`` its code; ``idle`` and ``modelled_s`` as for ``execute``. Returns the seconds
        spent waiting."""
        try:
            p = ki.PASSES[name]
        except KeyError:
            raise KernelError(f"e2t_engine has no pass {name!r}; it has {sorted(ki.PASSES)}") from None
        missing = [n for n in p.args if n not in args]
        extra = [n for n in args if n not in p.args]
        if missing or extra:
            raise KernelError(f"{name}: missing arguments {missing}, unknown {extra}; it takes {list(p.args)}")
        values = {a.name: 0 for a in self.IFACE.args}
        values.update(args, op=p.op)
        try:
            waited = self.execute(timeout_s=timeout_s, idle=idle, modelled_s=modelled_s, **values)
        except KernelError as e:
            raise type(e)(f"{name}: {e}") from None
        self.pass_calls[name] += 1
        return waited

    def conv_fwd(self, timeout_s: float | None = None, *, stats: Any = 0, b_flags: int = 0, **args: Any) -> float:
        """The forward pass. BN's batch sums and the weights' sums are off unless asked:
        ``b_flags`` with ``BF_BN_SUMS`` (int64[co][2] the output stage fills) and/or ``BF_W_SUMS``
        (int64[ci] the weight load fills, after the BN sums), and ``stats`` a buffer for them."""
        if bool(int(b_flags) & (ki.BF_BN_SUMS | ki.BF_W_SUMS)) != (not isinstance(stats, (int, np.integer)) or stats != 0):
            raise KernelError("conv_fwd: b_flags' BF_BN_SUMS or BF_W_SUMS bit and a stats buffer go together (the "
                              "kernel writes BN's sums and the weights' sums to stats): pass both or neither")
        return self.run_pass("conv_fwd", timeout_s, stats=stats, b_flags=b_flags, **args)

    def conv_bwd_data(self, timeout_s: float | None = None, **args: Any) -> float:
        return self.run_pass("conv_bwd_data", timeout_s, **args)

    def conv_bwd_weight_psg(self, timeout_s: float | None = None, **args: Any) -> float:
        return self.run_pass("conv_bwd_weight_psg", timeout_s, **args)

    # the block operations (docs/fixed-point.md section 9): the block tensor is (n, co, h, wd)
    def bn_act(self, timeout_s: float | None = None, **args: Any) -> float:
        return self.run_pass("bn_act", timeout_s, **args)

    def bn_bwd_reduce(self, timeout_s: float | None = None, **args: Any) -> float:
        return self.run_pass("bn_bwd_reduce", timeout_s, **args)

    def bn_bwd_apply(self, timeout_s: float | None = None, **args: Any) -> float:
        return self.run_pass("bn_bwd_apply", timeout_s, **args)


DRIVERS: dict[str, type[KernelDriver]] = {EngineDriver.IFACE.name: EngineDriver}

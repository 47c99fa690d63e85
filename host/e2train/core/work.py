"""A tally of work that actually ran: the one currency of every time and energy figure.

Whoever runs work (a kernel call, an ARM-side layer, a torch step) adds what it did to a
``Work``; the energy model (``e2train.core.energy``) prices it and the performance model
(``e2train.core.perfmodel``) times it. Nothing is added for work that was skipped, which
is how a saving shows up: it never enters the tally.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Work:
    # (bits_a, bits_b) -> multiply-accumulates at those operand widths
    macs: Counter = field(default_factory=Counter)
    # bits -> elementwise additions/comparisons (ReLU, BN, residual adds, updates)
    ops: Counter = field(default_factory=Counter)
    sram_bytes: int = 0          # on-chip buffer (BRAM) traffic
    dram_bytes: int = 0          # off-chip traffic (DDR over the HP ports)
    seconds: float = 0.0         # modelled busy time (prices the static power)
    # the ARM-side share of ``seconds`` and the operations it was timed from, kept apart so
    # that a recorded run can be re-priced at another ARM rate without re-training
    # (``core.energy.at_arm_rate``)
    arm_ops: int = 0
    arm_seconds: float = 0.0

    def add_macs(self, n: int, bits_a: int, bits_b: int) -> "Work":
        if n < 0:
            raise ValueError(f"negative MAC count {n}")
        if n:
            key = (min(bits_a, bits_b), max(bits_a, bits_b))
            self.macs[key] += int(n)
        return self

    def add_ops(self, n: int, bits: int) -> "Work":
        if n < 0:
            raise ValueError(f"negative op count {n}")
        if n:
            self.ops[int(bits)] += int(n)
        return self

    def add_sram(self, nbytes: int) -> "Work":
        self.sram_bytes += int(nbytes)
        return self

    def add_dram(self, nbytes: int) -> "Work":
        self.dram_bytes += int(nbytes)
        return self

    def add_time(self, seconds: float) -> "Work":
        if seconds < 0:
            raise ValueError(f"negative time {seconds}")
        self.seconds += float(seconds)
        return self

    def add_arm_time(self, n_ops: int, ops_per_second: float) -> "Work":
        """``n_ops`` operations on the ARM at ``ops_per_second``: their time, counted apart too."""
        if n_ops < 0:
            raise ValueError(f"negative ARM op count {n_ops}")
        seconds = n_ops / ops_per_second
        self.add_time(seconds)
        self.arm_ops += int(n_ops)
        self.arm_seconds += seconds
        return self

    def __iadd__(self, other: "Work") -> "Work":
        self.macs.update(other.macs)
        self.ops.update(other.ops)
        self.sram_bytes += other.sram_bytes
        self.dram_bytes += other.dram_bytes
        self.seconds += other.seconds
        self.arm_ops += other.arm_ops
        self.arm_seconds += other.arm_seconds
        return self

    def __add__(self, other: "Work") -> "Work":
        out = Work()
        out += self
        out += other
        return out

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    def to_dict(self) -> dict:
        """JSON-safe form (keys as 'AxB' strings)."""
        return {
            "macs": {f"{a}x{b}": n for (a, b), n in sorted(self.macs.items())},
            "ops": {str(b): n for b, n in sorted(self.ops.items())},
            "sram_bytes": self.sram_bytes,
            "dram_bytes": self.dram_bytes,
            "seconds": self.seconds,
            "arm_ops": self.arm_ops,
            "arm_seconds": self.arm_seconds,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Work":
        w = cls()
        for k, n in d.get("macs", {}).items():
            a, b = (int(v) for v in k.split("x"))
            w.add_macs(int(n), a, b)
        for k, n in d.get("ops", {}).items():
            w.add_ops(int(n), int(k))
        w.sram_bytes = int(d.get("sram_bytes", 0))
        w.dram_bytes = int(d.get("dram_bytes", 0))
        w.seconds = float(d.get("seconds", 0.0))
        # tallies recorded before the ARM share was kept apart have none (0: not re-priceable)
        w.arm_ops = int(d.get("arm_ops", 0))
        w.arm_seconds = float(d.get("arm_seconds", 0.0))
        return w

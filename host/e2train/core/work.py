"""A tally of work that actually ran: the one currency of every time and energy figure.

Whoever runs work (a kernel call, an ARM-side layer, a torch step) adds what it did to a
``Work``; the energy model (``e2train.core.energy``) prices it and the performance model
(``e2train.core.perfmodel``) times it. Nothing is added for work that was skipped, which
is how a saving shows up: it never enters the tally.

Tallies are keyed by the operands' number formats, by name (docs/work.md): a MAC of an
8-bit by a 16-bit integer is ``"int8xint16"``, one with a float32 operand ``"fp32xint8"``,
an elementwise op ``"int32"`` or ``"fp32"``. Producers pass widths in bits, a float width
as a negative number (``FP32 = -32``); ``mac_bits``/``op_bits`` give them back to the
energy and time models. Records written before the names (keys ``"8x16"``, ``"-32"``)
still load: ``from_dict`` reads both.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

FP16 = -16                   # a float width is negative where bits are passed (add_macs, add_ops)
FP32 = -32


def format_name(bits: int) -> str:
    """``8`` -> ``"int8"``, ``-32`` -> ``"fp32"``."""
    bits = int(bits)
    if bits == 0:
        raise ValueError("an operand width of 0 bits names no format")
    return f"fp{-bits}" if bits < 0 else f"int{bits}"


def format_bits(name: str) -> int:
    """``"int8"`` -> ``8``, ``"fp32"`` -> ``-32``; also the old numeric spelling (``"-32"``)."""
    if name.startswith("int"):
        return int(name[3:])
    if name.startswith("fp"):
        return -int(name[2:])
    return int(name)


def mac_key(bits_a: int, bits_b: int) -> str:
    """The tally key of an a x b MAC: the two formats, narrower (floats first) on the left."""
    return "x".join(format_name(b) for b in sorted((int(bits_a), int(bits_b))))


def mac_bits(key: str) -> tuple[int, int]:
    """``"int8xint16"`` -> ``(8, 16)``; also reads the old ``"8x16"``."""
    a, b = (format_bits(v) for v in key.split("x"))
    return a, b


def op_bits(key: str) -> int:
    return format_bits(key)


@dataclass
class Work:
    # mac_key(bits_a, bits_b), e.g. "int8xint16" -> multiply-accumulates of those formats
    macs: Counter = field(default_factory=Counter)
    # format_name(bits), e.g. "int32" -> elementwise additions/comparisons (ReLU, BN, adds, updates)
    ops: Counter = field(default_factory=Counter)
    sram_bytes: int = 0          # on-chip buffer (BRAM) traffic
    dram_bytes: int = 0          # off-chip traffic (DDR over the HP ports)
    seconds: float = 0.0         # modelled busy time (prices the static power)
    # the ARM-side share of ``seconds`` and the operations it was timed from, kept apart so
    # that a recorded run can be re-priced at another ARM rate without re-training
    # (``core.energy.at_arm_rate``)
    arm_ops: int = 0
    arm_seconds: float = 0.0
    # of ``seconds``, what the fabric and the ARM spend at the same time (core.overlap): the
    # critical path is seconds - overlap_seconds, and static power is priced on it
    overlap_seconds: float = 0.0
    # the timed steps' critical paths in a form any ARM rate can re-price (core.overlap path
    # sets: (fabric seconds, ARM ops) pairs), as [steps, path set] with identical sets merged,
    # and the fabric seconds and ARM ops those steps hold: what core.energy.at_arm_rate
    # recomputes the critical path from
    step_paths: list = field(default_factory=list)
    timed_fabric_s: float = 0.0
    timed_arm_ops: int = 0

    def add_macs(self, n: int, bits_a: int, bits_b: int) -> "Work":
        if n < 0:
            raise ValueError(f"negative MAC count {n}")
        if n:
            self.macs[mac_key(bits_a, bits_b)] += int(n)
        return self

    def add_ops(self, n: int, bits: int) -> "Work":
        if n < 0:
            raise ValueError(f"negative op count {n}")
        if n:
            self.ops[format_name(bits)] += int(n)
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

    def add_step(self, overlap_s: float, paths, fabric_s: float, arm_ops: int) -> "Work":
        """A closed step of ``core.overlap.Timeline``: what overlapped and its path set."""
        self.overlap_seconds += float(overlap_s)
        self._merge_paths([(1, paths)])
        self.timed_fabric_s += float(fabric_s)
        self.timed_arm_ops += int(arm_ops)
        return self

    def _merge_paths(self, entries) -> None:
        """Add (count, path set) entries to ``step_paths``, identical sets merged."""
        at = {_path_key(e[1]): e for e in self.step_paths}
        for count, paths in entries:
            key = _path_key(paths)
            if key in at:
                at[key][0] += int(count)
            else:
                at[key] = [int(count), [list(q) for q in key]]
                self.step_paths.append(at[key])

    @property
    def timed_steps(self) -> int:
        """Steps whose critical paths are kept."""
        return sum(c for c, _ in self.step_paths)

    def __iadd__(self, other: "Work") -> "Work":
        self.macs.update(other.macs)
        self.ops.update(other.ops)
        self.sram_bytes += other.sram_bytes
        self.dram_bytes += other.dram_bytes
        self.seconds += other.seconds
        self.arm_ops += other.arm_ops
        self.arm_seconds += other.arm_seconds
        self.overlap_seconds += other.overlap_seconds
        if other.step_paths:          # (a kernel call's or an ARM op's tally has none: nothing to merge)
            self.step_paths = [[c, p] for c, p in self.step_paths]    # counts change: not shared with another tally
            self._merge_paths(other.step_paths)
        self.timed_fabric_s += other.timed_fabric_s
        self.timed_arm_ops += other.timed_arm_ops
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
        """JSON-safe form (the tally keys as they are)."""
        return {
            "macs": dict(sorted(self.macs.items(), key=lambda kv: mac_bits(kv[0]))),
            "ops": dict(sorted(self.ops.items(), key=lambda kv: op_bits(kv[0]))),
            "sram_bytes": self.sram_bytes,
            "dram_bytes": self.dram_bytes,
            "seconds": self.seconds,
            "arm_ops": self.arm_ops,
            "arm_seconds": self.arm_seconds,
            "overlap_seconds": self.overlap_seconds,
            "step_paths": self.step_paths,
            "timed_fabric_s": self.timed_fabric_s,
            "timed_arm_ops": self.timed_arm_ops,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Work":
        w = cls()
        for k, n in d.get("macs", {}).items():
            w.add_macs(int(n), *mac_bits(k))          # names, or the old "8x16" / "-32x-32"
        for k, n in d.get("ops", {}).items():
            w.add_ops(int(n), op_bits(k))
        w.sram_bytes = int(d.get("sram_bytes", 0))
        w.dram_bytes = int(d.get("dram_bytes", 0))
        w.seconds = float(d.get("seconds", 0.0))
        # tallies recorded before the ARM share was kept apart have none (0: not re-priceable)
        w.arm_ops = int(d.get("arm_ops", 0))
        w.arm_seconds = float(d.get("arm_seconds", 0.0))
        w.overlap_seconds = float(d.get("overlap_seconds", 0.0))    # 0: recorded before it was modelled
        # none: recorded before the critical path was kept per step (not re-priceable)
        w._merge_paths(d.get("step_paths", []))
        w.timed_fabric_s = float(d.get("timed_fabric_s", 0.0))
        w.timed_arm_ops = int(d.get("timed_arm_ops", 0))
        return w

    @property
    def critical_seconds(self) -> float:
        """The modelled time with fabric and ARM overlapped where the data allow (core.overlap)."""
        return self.seconds - self.overlap_seconds


def _path_key(paths) -> tuple:
    """A path set as a hashable key: ((fabric seconds, ARM ops), ...)."""
    return tuple((float(f), int(a)) for f, a in paths)

"""The energy model: prices a ``Work`` tally (numpy and the core's own modules; no torch).

Whatever ran was added to a :class:`e2train.core.work.Work`; this module turns it into joules.
It is *modelled* energy, never measured: every caller that prints or saves a figure from here
labels it "modelled" (``ENERGY_KIND``).

Per-operation figures are Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V):

=====================  =========
operation              energy
=====================  =========
8-bit int add          0.03 pJ
16-bit int add         0.05 pJ
32-bit int add         0.1 pJ
16-bit float add       0.4 pJ
32-bit float add       0.9 pJ
8-bit int mult         0.2 pJ
32-bit int mult        3.1 pJ
16-bit float mult      1.1 pJ
32-bit float mult      3.7 pJ
8 KB SRAM, 64-bit read 10 pJ      -> 1.25 pJ per byte
DRAM, 64-bit access    1.3-2.6 nJ -> 162.5 pJ per byte (the low end)
=====================  =========

Widths in between (the rule, written once here):

* integer multiply: an array multiplier's energy grows with its partial-product count, so
  ``E(a, b) = 3.1 pJ * a*b / (32*32)`` (8x8 gives 0.19 pJ, Horowitz lists 0.2 pJ);
* integer add: linear in width through the three listed points (8/16/32 bits), extended
  linearly above 32 bits (a 48-bit accumulator add costs 0.15 pJ);
* a MAC = one multiply + one add at the accumulator width (32 bits for 8x8 products, 48
  for wider ones, as the kernels' accumulators; ``acc_bits``);
* floating point: widths are passed to a ``Work`` as negative numbers (``FP32`` = -32,
  ``FP16`` = -16), which it keys by name (``"fp32xint8"``, docs/work.md). A MAC with a
  float operand is a float multiply + float add of the widest float operand (an int8
  weight times an fp32 gradient runs on the fp32 unit).

Static power: ``zynq7020()`` adds the board's static draw times the modelled busy time: the
critical path (``Work.critical_seconds``: fabric and ARM overlapped where the data allow,
core.overlap), which is the summed time where nothing overlapped. ``price`` shows the static
energy on the summed time beside it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .overlap import path_seconds
from .perfmodel import fp32_extra_seconds
from .shapes import ConvShape
from .work import FP16, FP32, Work, mac_bits, mac_key, op_bits  # noqa: F401 (FP16/FP32 re-exported)

ENERGY_KIND = "modelled"     # every figure from this module is modelled, not measured

PJ = 1e-12


def is_float(bits: int) -> bool:
    return bits < 0


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation by bit width, per byte moved, and static power.

    All energies in picojoules; ``static_w`` in watts. Construct with ``horowitz45nm()``
    (compute and memory only) or ``zynq7020()`` (plus the board's static power).
    """

    name: str = "horowitz-45nm"
    int_mult_pj_32: float = 3.1                       # Horowitz 2014: 32-bit int mult
    int_add_pj: tuple = ((8, 0.03), (16, 0.05), (32, 0.1))   # Horowitz 2014: int add
    float_mult_pj: dict = field(default_factory=lambda: {16: 1.1, 32: 3.7})  # Horowitz 2014
    float_add_pj: dict = field(default_factory=lambda: {16: 0.4, 32: 0.9})   # Horowitz 2014
    sram_pj_per_byte: float = 10.0 / 8                # Horowitz 2014: 8 KB SRAM, 10 pJ / 64 bit
    dram_pj_per_byte: float = 1300.0 / 8              # Horowitz 2014: DRAM 1.3-2.6 nJ / 64 bit
    static_w: float = 0.0                             # board static power (W)

    # --- constructors ------------------------------------------------------------------
    @classmethod
    def horowitz45nm(cls) -> "EnergyModel":
        """Compute and memory only (no static power): the paper-style accounting."""
        return cls()

    @classmethod
    def zynq7020(cls, static_w: float = 2.0) -> "EnergyModel":
        """A Zynq-7020 board (PYNQ-Z1/Z2, ZedBoard): per-op figures plus static power.

        ``static_w`` = 2.0 W is an *assumption*: the order of the idle draw commonly reported
        for PYNQ-Z1/Z2 boards running the PYNQ image (about 1.8-2.5 W at the 5 V input,
        ARM cores idle, PL configured). It is not a datasheet figure; replace it with your
        meter's idle reading (the meter recorder measures idle power before every run).
        The per-op figures are 45 nm ASIC numbers, a lower bound for the 28 nm fabric's
        dynamic energy (LUT/DSP routing costs more), so modelled board energy errs low.
        """
        if not static_w >= 0:
            raise ValueError(f"static power must be >= 0 W, got {static_w!r}")
        return cls(name="zynq7020", static_w=float(static_w))

    # --- unit energies (pJ) ------------------------------------------------------------
    def int_add(self, bits: int) -> float:
        pts = self.int_add_pj
        if bits <= pts[0][0]:
            return pts[0][1] * bits / pts[0][0]
        for (b0, e0), (b1, e1) in zip(pts, pts[1:]):
            if bits <= b1:
                return e0 + (e1 - e0) * (bits - b0) / (b1 - b0)
        b_last, e_last = pts[-1]
        return e_last * bits / b_last

    def add_pj(self, bits: int) -> float:
        """One add/compare at ``bits`` (negative = float)."""
        if is_float(bits):
            return self._float(self.float_add_pj, -bits, "add")
        return self.int_add(bits)

    def mult_pj(self, a: int, b: int) -> float:
        if is_float(a) or is_float(b):
            return self._float(self.float_mult_pj, max(-a if a < 0 else 0, -b if b < 0 else 0), "mult")
        return self.int_mult_pj_32 * (a * b) / (32 * 32)

    @staticmethod
    def acc_bits(a: int, b: int) -> int:
        """Accumulator width of an a x b MAC: int32 for <= 16-bit products, else 48 bits."""
        return 32 if a + b <= 16 else 48

    def mac_pj(self, a: int, b: int) -> float:
        """One multiply-accumulate with operands of a and b bits."""
        if is_float(a) or is_float(b):
            fb = max(-a if a < 0 else 0, -b if b < 0 else 0)
            return self._float(self.float_mult_pj, fb, "mult") + self._float(self.float_add_pj, fb, "add")
        return self.mult_pj(a, b) + self.int_add(self.acc_bits(a, b))

    @staticmethod
    def _float(table: dict, bits: int, what: str) -> float:
        if bits not in table:
            raise ValueError(f"no energy figure for a {bits}-bit float {what}; known widths: {sorted(table)}")
        return table[bits]

    # --- pricing ------------------------------------------------------------------------
    def breakdown(self, work: Work, include_static: bool = True) -> dict[str, float]:
        """Joules by component: mac, ops, sram, dram, static, and their total."""
        mac = sum(n * self.mac_pj(*mac_bits(k)) for k, n in work.macs.items()) * PJ
        ops = sum(n * self.add_pj(op_bits(k)) for k, n in work.ops.items()) * PJ
        sram = work.sram_bytes * self.sram_pj_per_byte * PJ
        dram = work.dram_bytes * self.dram_pj_per_byte * PJ
        static = self.static_w * work.critical_seconds if include_static else 0.0
        out = {"mac": mac, "ops": ops, "sram": sram, "dram": dram, "static": static}
        out["total"] = sum(out.values())
        return out

    def energy_j(self, work: Work, include_static: bool = True) -> float:
        """Modelled energy of the work, in joules."""
        return self.breakdown(work, include_static)["total"]

    def dynamic_j(self, work: Work) -> float:
        return self.energy_j(work, include_static=False)

    def power_w(self, work: Work, seconds: float | None = None) -> float:
        """Average power while doing ``work`` over ``seconds`` (default: its modelled time).

        What a simulated meter reads: static power plus the dynamic energy spread over the
        interval. Zero-length intervals are an error, not an infinite power.
        """
        t = work.seconds if seconds is None else float(seconds)
        if not t > 0:
            raise ValueError(f"power needs a positive interval, got {t!r} s")
        return self.static_w + self.dynamic_j(work) / t

    def idle_power_w(self) -> float:
        return self.static_w


# --- tallies of one training step of a conv layer ------------------------------------

# scheme -> ((fwd a, b), (bwd-data a, b), (bwd-weight a, b)); operand widths per pass.
# bwd-weight of "psg*" is the predictor pass plus the exact pass for non-predicted weights.
SCHEMES: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "fp32": ((FP32, FP32), (FP32, FP32), (FP32, FP32)),          # 32-bit float SGD
    "int8_fp32grad": ((8, 8), (FP32, 8), (8, FP32)),             # 8-bit fwd, 32-bit float gradients
    "int8_int16grad": ((8, 8), (16, 8), (8, 16)),                # the fixed-point contract, no PSG
    "psg": ((8, 8), (16, 8), (8, 16)),                           # the contract with PSG (int16 g_x)
    "psg_fp32_gx": ((8, 8), (FP32, 8), (8, 16)),                 # PSG on the weight gradient only
}
PREDICTOR_BITS = (4, 10)      # x_h x g_h (core.fixedpoint: 4-bit x_h, 10-bit g_h)


def _bytes(bits: int) -> int:
    return abs(bits) // 8


def conv_pass_work(n_macs: int, a: int, b: int, work: Work | None = None) -> Work:
    """``n_macs`` MACs at widths (a, b), each reading both operands from the on-chip buffer."""
    w = work if work is not None else Work()
    w.add_macs(n_macs, a, b)
    w.add_sram(n_macs * (_bytes(a) + _bytes(b)))
    return w


def conv_step_work(shape: ConvShape, scheme: str, predicted_frac: float = 0.0,
                   n_active: int | None = None) -> Work:
    """The work of one training step (fwd, bwd-data, bwd-weight) of one conv layer.

    Each pass has ``shape.macs(n_active)`` MACs (only the samples that ran). Under the
    ``psg`` schemes every weight-gradient MAC runs the 4x10-bit predictor product, and the
    exact 8x16-bit product runs only for the ``1 - predicted_frac`` of weights the
    predictor did not decide; x and g are read once for both.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if not 0.0 <= predicted_frac <= 1.0:
        raise ValueError(f"predicted_frac must be in [0, 1], got {predicted_frac!r}")
    if predicted_frac and not scheme.startswith("psg"):
        raise ValueError(f"predicted_frac applies to the psg schemes only, not {scheme!r}")
    n = shape.macs(n_active)
    fwd, bwd_d, bwd_w = SCHEMES[scheme]
    w = Work()
    conv_pass_work(n, *fwd, work=w)
    conv_pass_work(n, *bwd_d, work=w)
    if scheme.startswith("psg"):
        w.add_macs(n, *PREDICTOR_BITS)
        w.add_macs(round(n * (1.0 - predicted_frac)), *bwd_w)
        w.add_sram(n * (_bytes(bwd_w[0]) + _bytes(bwd_w[1])))
    else:
        conv_pass_work(n, *bwd_w, work=w)
    return w


def step_energy_ratio(scheme: str, baseline: str = "fp32", predicted_frac: float = 0.0,
                      model: EnergyModel | None = None,
                      shape: ConvShape | None = None) -> float:
    """Modelled energy of one conv training step under ``scheme`` relative to ``baseline``.

    Per-MAC pricing makes the ratio independent of the layer shape (a ResNet-CIFAR 3x3 layer
    by default).
    """
    m = model or EnergyModel.horowitz45nm()
    s = shape or ConvShape(64, 16, 32, 32, 16, 3, 1, 1)
    num = m.energy_j(conv_step_work(s, scheme, predicted_frac), include_static=False)
    den = m.energy_j(conv_step_work(s, baseline), include_static=False)
    return num / den


# --- named platforms: one pricing of a tally into labelled parts ------------------------------
# Both trainers price what ran through ``price(work, platform)``, so the same work on the same
# platform is the same joules, part for part, whichever trainer ran it.

PARTS = ("compute", "on_chip", "dram", "static")
PART_LABELS = {"compute": "compute (MACs and element ops by bit width)", "on_chip": "on-chip memory (BRAM/SRAM)",
               "dram": "DRAM traffic", "static": "static power x modelled critical path"}


@dataclass(frozen=True)
class Platform:
    """An energy model with a name a report can print, and what its static figure rests on."""

    name: str
    model: EnergyModel
    clock_hz: float | None       # the fabric clock the performance model times at (None: no clock)
    static_note: str             # where the static power comes from ("none" when there is none)
    description: str


def _platforms() -> dict[str, Platform]:
    board = EnergyModel.zynq7020()
    return {
        "xc7z020": Platform(
            "xc7z020", board, 100e6,
            f"{board.static_w:.1f} W assumed (PYNQ-Z1/Z2 idle draw order; replace with a meter's idle reading)",
            "Zynq-7020 board, fabric at 100 MHz: Horowitz 45 nm per-op figures + static power x modelled critical path"),
        "horowitz45": Platform(
            "horowitz45", EnergyModel.horowitz45nm(), None, "none",
            "Horowitz ISSCC 2014 45 nm per-op figures, no static power (the per-op view)"),
    }


PLATFORMS = _platforms()


def platform(p: "str | Platform") -> Platform:
    """A platform by name (``xc7z020``, ``horowitz45``), or the given one."""
    if isinstance(p, Platform):
        return p
    if p not in PLATFORMS:
        raise ValueError(f"unknown energy platform {p!r}; choose one of {', '.join(PLATFORMS)}")
    return PLATFORMS[p]


def price(work: Work, on: "str | Platform" = "xc7z020") -> dict:
    """The modelled energy of ``work`` on a platform, in labelled parts that add up to the total.

    ``{"kind": "modelled", "platform", "static_note", "parts_j": {compute, on_chip, dram,
    static}, "total_j", "static_on_sum_j", "total_on_sum_j"}``. ``total_j`` is the same number
    as ``EnergyModel.energy_j``: static power on the critical path. ``*_on_sum_j`` price it on
    the summed time instead (no overlap), shown beside.
    """
    p = platform(on)
    b = p.model.breakdown(work)
    parts = {"compute": b["mac"] + b["ops"], "on_chip": b["sram"], "dram": b["dram"], "static": b["static"]}
    total = sum(parts[k] for k in PARTS)
    on_sum = p.model.static_w * work.seconds
    return {"kind": ENERGY_KIND, "platform": p.name, "static_note": p.static_note,
            "parts_j": parts, "total_j": total, "static_on_sum_j": on_sum,
            "total_on_sum_j": total - parts["static"] + on_sum}


# --- named baselines ----------------------------------------------------------------------
BASELINE_8BIT = "8-bit fabric baseline"
BASELINE_FP32 = "32-bit SGD"
BASELINES = {
    BASELINE_8BIT: "the same model and schedule on the fabric's 8-bit contract, every batch, every block, "
                   "exact weight gradients (no SMD, SLU or PSG): a run of its own",
    BASELINE_FP32: "the paper's baseline (E2-Train, NeurIPS 2019, Sec. 4): the 8-bit baseline's MACs and element "
                   "ops in 32-bit float (no predictor), operands read on chip as fp32, memory traffic scaled to fp32 "
                   "operands, the fabric's MACs timed on fp32 cells of the same DSP48E1 budget at peak rate "
                   "(perfmodel.fp32_extra_seconds)",
}
# The paper's measured ratio for 8-bit training with 32-bit gradients ([16]) against 32-bit SGD
# (E2-Train, NeurIPS 2019, Table 2: 38.62% energy saved, ZedBoard xc7z020): the figure the model's
# form of the same scheme (``as_8bit_fp32_grad``) is set beside, as a check of the fp32 pricing.
PAPER_8BIT_FP32GRAD_TO_SGD = 1.0 - 0.3862


def _on_fp32_units(work: Work, widths: dict, drop: tuple = ()) -> Work:
    """``work`` with the MACs of each key in ``widths`` re-keyed to those (float) widths, the
    MACs of ``drop`` removed, on-chip and DRAM bytes scaled by the operand bytes per MAC after
    over before, and the fabric's re-keyed MACs timed on fp32 cells (``perfmodel``): the
    extra time is added to the summed time and to the critical path (the overlap is kept)."""
    out = Work()
    before = after = 0
    moved = {}
    for k, n in work.macs.items():
        if k in drop:
            continue
        a, b = mac_bits(k)
        before += n * (_bytes(a) + _bytes(b))
        if k in widths:
            a, b = widths[k]
            moved[k] = n
        after += n * (_bytes(a) + _bytes(b))
        out.add_macs(n, a, b)
    scale = after / before if before else 1.0
    out.ops = work.ops.copy()
    out.sram_bytes = round(work.sram_bytes * scale)
    out.dram_bytes = round(work.dram_bytes * scale)
    out.seconds = work.seconds + fp32_extra_seconds(moved)
    out.arm_ops, out.arm_seconds = work.arm_ops, work.arm_seconds
    out.overlap_seconds, out.step_paths = work.overlap_seconds, work.step_paths
    out.timed_fabric_s, out.timed_arm_ops = work.timed_fabric_s, work.timed_arm_ops
    return out


def as_32bit_sgd(work: Work) -> Work:
    """The 32-bit SGD form of a tally: what the same training would cost with every number in fp32.

    Every MAC becomes an fp32 x fp32 MAC at the same count, except the PSG predictor's (32-bit
    SGD has none), and every element op an fp32 op. On-chip and DRAM bytes scale by fp32
    operand bytes (8 per MAC) over the tally's operand bytes per MAC (an 8x8 / 16x8 / 8x16 mix
    of passes: about 3x). The fabric's MACs take the time of fp32 cells on the same DSP48E1
    budget (perfmodel.fp32_extra_seconds: 2 DSP48E1 per fp32 cell, no packing) on top of the
    tally's time; the ARM's time is kept. That is the fastest such an engine could be (its
    adders' LUTs, its 4x operand traffic and its clock are not counted), so the baseline is
    priced low and a ratio to it errs high. A tally already in fp32 is priced unchanged.
    """
    pred = mac_key(*PREDICTOR_BITS)
    f32 = {k: (FP32, FP32) for k in work.macs if k != pred}
    out = _on_fp32_units(work, f32, drop=(pred,))
    out.ops = Counter()
    out.add_ops(sum(work.ops.values()), FP32)
    return out


def as_8bit_fp32_grad(work: Work) -> Work:
    """The form of an 8-bit-baseline tally that the paper's 8-bit baseline ([16]: 8-bit weights
    and activations, 32-bit float gradients) would give: the backward passes' 8x16 MACs become
    8-bit x fp32 MACs on fp32 cells, the forward stays packed int8, element ops unchanged.
    Priced beside ``as_32bit_sgd`` of the same tally it gives the model's counterpart of the
    paper's measured ratio (``PAPER_8BIT_FP32GRAD_TO_SGD``)."""
    pred = mac_key(*PREDICTOR_BITS)
    return _on_fp32_units(work, {mac_key(8, 16): (8, FP32)}, drop=(pred,))


def ratio_parts(run: dict, baseline: dict) -> dict:
    """Each part of a priced run over the baseline's *total* (so the parts add up to the ratio)."""
    if run["platform"] != baseline["platform"]:
        raise ValueError(f"a ratio needs both on one platform, got {run['platform']} and {baseline['platform']}")
    t = baseline["total_j"]
    if not t > 0:
        raise ValueError("the baseline's modelled energy is zero: nothing to compare against")
    return {"total": run["total_j"] / t, **{k: run["parts_j"][k] / t for k in PARTS}}


# --- the ARM rate: re-pricing a recorded run -----------------------------------------------
# The ARM's assumed float32 throughput (ops/s) in the time model; device/nn_layers.py says how
# it is counted, `e2train calibrate-arm` measures it on a board, and the trainer config key
# ``arm_ops_per_second`` takes the measured figure.
ARM_OPS_PER_SECOND = 1.2e8
ARM_RATES = (0.5e8, 1e8, ARM_OPS_PER_SECOND, 2e8, 4e8)      # ops/s; the assumed default among them


def at_arm_rate(work: Work, ops_per_second: float) -> Work:
    """The tally as if its ARM-side ops had run at ``ops_per_second``: only their time changes.

    The summed time is the fabric's plus ``arm_ops / ops_per_second``; the critical path is
    recomputed from the recorded per-step path sets (``Work.step_paths``, core.overlap): each
    step's longest chain of fabric seconds and ARM ops at the new rate, plus whatever was not
    timed in a step, serially. At the recorded rate it gives the recorded figures. A tally
    without a recorded ARM share, or with an overlap but no path sets (older records), cannot
    be re-priced and says so.
    """
    if not ops_per_second > 0:
        raise ValueError(f"ARM rate must be > 0 ops/s, got {ops_per_second!r}")
    if work.arm_ops <= 0:
        raise ValueError("this tally has no recorded ARM ops (recorded before they were kept apart): "
                         "re-run to record them")
    if work.overlap_seconds and not work.step_paths:
        raise ValueError("this tally has an overlap but no per-step critical paths (recorded before they "
                         "were kept): re-run to re-price it at another ARM rate")
    out = Work() + work
    fabric_s = max(work.seconds - work.arm_seconds, 0.0)
    arm_s = work.arm_ops / ops_per_second
    out.seconds = fabric_s + arm_s
    out.arm_seconds = arm_s
    if work.step_paths:
        untimed = (fabric_s - work.timed_fabric_s) + (work.arm_ops - work.timed_arm_ops) / ops_per_second
        critical = sum(c * path_seconds(p, ops_per_second) for c, p in work.step_paths) + untimed
        out.overlap_seconds = out.seconds - critical
    return out


def arm_rate_table(run: Work, baseline: Work, rates=ARM_RATES, on: "str | Platform" = "xc7z020") -> list[dict]:
    """For each ARM rate: both runs re-priced (critical paths recomputed), their ratio, the ratio
    to 32-bit SGD, and beside them the ratio with static power on the summed time.

    ``run`` and ``baseline`` are the recorded training tallies of E2-Train and the 8-bit
    fabric baseline; the 32-bit SGD figure is ``as_32bit_sgd(baseline)`` at the same rate.
    """
    rows = []
    for r in rates:
        er, br = at_arm_rate(run, r), at_arm_rate(baseline, r)
        e, b = price(er, on), price(br, on)
        f = price(as_32bit_sgd(br), on)
        rows.append({"arm_ops_per_second": float(r), "run_j": e["total_j"], "baseline_j": b["total_j"],
                     "sgd32_j": f["total_j"], "arm_share_of_baseline_time": br.arm_seconds / max(br.seconds, 1e-300),
                     "run_critical_s": er.critical_seconds, "run_sum_s": er.seconds,
                     "baseline_critical_s": br.critical_seconds, "baseline_sum_s": br.seconds,
                     "ratio_to_8bit": e["total_j"] / b["total_j"], "ratio_to_32bit_sgd": e["total_j"] / f["total_j"],
                     "ratio_to_8bit_on_sum": e["total_on_sum_j"] / b["total_on_sum_j"],
                     "static_share_of_run": e["parts_j"]["static"] / e["total_j"]})
    return rows


def arm_rate_table_md(rows: list[dict], assumed: float = 1.2e8) -> str:
    """The table as markdown; every figure modelled."""
    out = ["| ARM rate (ops/s) | E2-Train (J, modelled) | 8-bit fabric baseline (J, modelled) | ratio to 8-bit "
           "fabric baseline | ratio to 32-bit SGD | same, static on the summed time | critical path / sum, "
           "baseline | ARM share of baseline time (summed) | static share of E2-Train |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tag = " (assumed)" if r["arm_ops_per_second"] == assumed else ""
        out.append(f"| {r['arm_ops_per_second']:.2g}{tag} | {r['run_j']:.2f} | {r['baseline_j']:.2f} | "
                   f"{r['ratio_to_8bit']:.3f} | {r['ratio_to_32bit_sgd']:.3f} | {r['ratio_to_8bit_on_sum']:.3f} | "
                   f"{r['baseline_critical_s'] / max(r['baseline_sum_s'], 1e-300):.2f} | "
                   f"{r['arm_share_of_baseline_time']:.0%} | {r['static_share_of_run']:.0%} |")
    return "\n".join(out)


def parts_text(priced: dict) -> str:
    """One line naming every part: 'compute 0.12 J + on-chip ... = total J (modelled, xc7z020)'."""
    p = priced["parts_j"]
    return (f"compute {p['compute']:.3g} J + on-chip {p['on_chip']:.3g} J + DRAM {p['dram']:.3g} J + "
            f"static {p['static']:.3g} J = {priced['total_j']:.3g} J ({priced['kind']}, platform {priced['platform']})")


def ratio_text(ratio: dict, baseline: str) -> str:
    """One line of ``ratio_parts``: 'total 0.34 = compute 0.01 + on-chip ... to <baseline> (modelled)'."""
    return (f"{ratio['total']:.3f} = compute {ratio['compute']:.3f} + on-chip {ratio['on_chip']:.3f} + "
            f"DRAM {ratio['dram']:.3f} + static {ratio['static']:.3f} of the {baseline}'s total ({ENERGY_KIND})")


def compare_to_baselines(run: Work, baseline: Work, on: "str | Platform" = "xc7z020") -> dict:
    """A run's modelled energy against both named baselines, part by part, and across ARM rates.

    ``run`` is E2-Train's recorded training tally, ``baseline`` the 8-bit fabric baseline's;
    32-bit SGD is ``as_32bit_sgd(baseline)``. The ARM-rate table re-prices the recorded tallies
    (no training); it is left out when a tally has no recorded ARM share.
    """
    e, b = price(run, on), price(baseline, on)
    f = price(as_32bit_sgd(baseline), on)
    out = {"platform": e["platform"], "priced": {"e2train": e, BASELINE_8BIT: b, BASELINE_FP32: f},
           "ratio_to": {BASELINE_8BIT: ratio_parts(e, b), BASELINE_FP32: ratio_parts(e, f)}}
    out["energy_ratio"] = out["ratio_to"][BASELINE_8BIT]["total"]
    # the check of the fp32 pricing against the paper's measurement on the same chip
    g16 = price(as_8bit_fp32_grad(baseline), on)["total_j"]
    out["paper_check"] = {"model_8bit_fp32grad_to_sgd": g16 / f["total_j"],
                          "paper_8bit_fp32grad_to_sgd": PAPER_8BIT_FP32GRAD_TO_SGD,
                          "model_8bit_baseline_to_sgd": b["total_j"] / f["total_j"],
                          # E2-Train against the paper's own 8-bit baseline's form ([16])
                          "e2train_to_8bit_fp32grad": e["total_j"] / g16}
    # beside it: static power on the summed time (no overlap), as priced before the critical path
    out["energy_ratio_on_sum"] = e["total_on_sum_j"] / b["total_on_sum_j"]
    if run.arm_ops and baseline.arm_ops:
        try:
            out["arm_rate_table"] = arm_rate_table(run, baseline, on=on)
        except ValueError as e:          # an older record: no per-step critical paths
            out["arm_rate_table_missing"] = str(e)
    return out

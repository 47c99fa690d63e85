"""The fabric's hardware interface, written once (numpy + stdlib only).

The fabric is one HLS IP, ``e2t_engine`` (hls/src/e2t_engine.cpp): one training engine that
the three passes share in time, its ``op`` argument picking the pass (``PASSES``: 0 forward,
1 input gradient, 2 PSG weight gradient). The PYNQ driver programs these registers, the
simulated board decodes them, the manifest records them and the overlay checks a built
bitstream's .hwh against them, all from the definitions below, so the four cannot drift.
The argument list is that of the HLS top function in hls/include/e2t_kernels.h, in the same
order: Vitis HLS assigns the s_axilite offsets in argument order (a test compares the two).
A pass reads its own arguments (``Pass.args``, the names of its C entry point) and ignores
the rest, which the driver writes as 0.

Register layout (what Vitis HLS generates for the default ``control`` s_axilite bundle; see
the ``x<kernel>_hw.h`` that ``export_design`` writes, e.g. the Vitis HLS 2023.1 header
CTSRD-CHERI/cheri-hls examples/spmv_ellpack/bare_metal_cpu_hls_fg/xhls_top_hw.h, and for
the return value SpringbokBE/zypy ip/ufunc_reduce_all_i4/.../xufunc_reduce_all_i4_hw.h):

* 0x00 CTRL: bit 0 ap_start (R/W, clear on handshake), bit 1 ap_done (R, clear on read),
  bit 2 ap_idle (R), bit 3 ap_ready (R, clear on read), bit 7 auto_restart (R/W),
  bit 9 interrupt (R)
* 0x04 GIER (bit 0 global interrupt enable), 0x08 IP_IER (bit 0 ap_done, bit 1 ap_ready),
  0x0C IP_ISR (same bits, toggle on write)
* 0x10 ap_return: the kernel's int status word (E2T_OK = 0 or E2T_ERR_* bits), one data
  word and one reserved word
* from 0x18, each argument in order: a 32-bit scalar is one data word and one reserved
  word, 8 bytes. An ``m_axi`` pointer (its offset register) is the same, one 32-bit word
  and a reserved one, because hls/scripts/kernel.tcl sets ``config_interface
  -m_axi_addr64=false`` (the Zynq-7000 address space is 32-bit); with 64-bit addresses
  it would be two data words (low, high) and a reserved word, 12 bytes (``M_AXI_ADDR64``
  switches the whole layout; a test keeps it equal to the HLS script's setting).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np

# b_flags bits, defined once beside the block operations' argument checks
from ..core.kernel_args import BF_BN_SUMS, BF_RELU, BF_RESIDUAL, BF_TWO_SOURCES, BF_W_SUMS  # noqa: F401

VENDOR = "e2train.org"
LIBRARY = "hls"
# The HLS IP version (export_design -version in hls/scripts/kernel.tcl); bump with any ABI
# change. 2.0: one IP with an op argument (1.0 was three IPs, one per pass). 2.2: the weight
# gradient's G_msb scratch is int32 (2.1: int64). 2.3: conv_fwd's b_flags bit 4 writes the
# weights' sums of |w| per input channel after the BN sums (a 2.2 bitstream ignores the bit and
# would leave the input gradient's gain unwritten). A manifest written for another version is
# refused when loaded (manifest._check_kernels), with the fix.
VERSION = "2.3"
M_AXI_ADDR64 = False      # config_interface -m_axi_addr64 in hls/scripts/kernel.tcl

# CTRL register bits
AP_START = 1 << 0
AP_DONE = 1 << 1
AP_IDLE = 1 << 2
AP_READY = 1 << 3
AUTO_RESTART = 1 << 7
INTERRUPT = 1 << 9

CTRL, GIER, IP_IER, IP_ISR = 0x00, 0x04, 0x08, 0x0C
AP_RETURN = 0x10
FIRST_ARG = 0x18

# Status bits in ap_return (hls/include/e2t_fixed.h)
E2T_OK = 0
STATUS_BITS = {1: "shape, scalar or op outside what the kernel accepts",
               2: "sample list invalid (an index outside [0, n), a repeated index, or more entries than n)",
               4: "requantisation overflow (|acc| * M reached 2**62; outputs saturated)"}


def describe_status(status: int) -> str:
    bits = [msg for bit, msg in STATUS_BITS.items() if status & bit]
    unknown = status & ~sum(STATUS_BITS)
    if unknown:
        bits.append(f"unknown bits {unknown:#x}")
    return "; ".join(bits) or "ok"

# Where the IP sits on M_AXI_GP0 (fpga/vivado/bd.tcl assigns the same address) and the size
# of its address window.
BASE_ADDRS = {"e2t_engine": 0x43C0_0000}
ADDR_RANGE = 0x1_0000

# The top's m_axi bundles (hls/src/e2t_engine.cpp) and the HP port each one gets in the
# block design: one bundle per HP port, the four the Zynq-7000 has.
M_AXI_BUNDLES = {"gx": "S_AXI_HP0", "gg": "S_AXI_HP1", "gw": "S_AXI_HP2", "gy": "S_AXI_HP3"}

# The PSG kernel's stats buffer: int64[E2T_STAT_LEN] (hls/include/e2t_kernels.h)
PSG_STATS_LEN = 8
STAT_N_PREDICTED, STAT_GMSB_ABSMAX, STAT_W_ABSMAX, STAT_EXACT_TERMS, STAT_TILES_SKIPPED = range(5)


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str             # "ptr" (m_axi offset, 64-bit) or "i32" (int scalar)
    doc: str
    direction: str = "in"  # for pointers: "in", "out" or "inout" (what the kernel does to DDR)

    @property
    def nbytes(self) -> int:
        return 12 if self.kind == "ptr" and M_AXI_ADDR64 else 8


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    arg: str | None       # the argument it belongs to (None for the control block)
    part: str             # "ctrl", "data", "lo", "hi", "reserved"


@dataclass(frozen=True)
class KernelIface:
    name: str                 # the HLS top function
    args: tuple[Arg, ...]
    doc: str

    @property
    def vlnv(self) -> str:
        return f"{VENDOR}:{LIBRARY}:{self.name}:{VERSION}"

    @property
    def instance(self) -> str:
        """The IP's instance name in the block design (fpga/vivado/bd.tcl)."""
        return f"{self.name}_0"

    @property
    def base_addr(self) -> int:
        return BASE_ADDRS[self.name]

    @cached_property
    def _offsets(self) -> dict[str, int]:
        out, off = {}, FIRST_ARG
        for a in self.args:
            out[a.name] = off
            off += a.nbytes
        return out

    def offset(self, arg: str) -> int:
        """Offset of ``arg``'s first data word."""
        try:
            return self._offsets[arg]
        except KeyError:
            raise KeyError(f"{self.name} has no argument {arg!r}; it has {[a.name for a in self.args]}") from None

    @cached_property
    def _by_name(self) -> dict[str, Arg]:
        return {a.name: a for a in self.args}

    def arg(self, name: str) -> Arg:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no argument {name!r}") from None

    @property
    def map_size(self) -> int:
        return FIRST_ARG + sum(a.nbytes for a in self.args)

    @property
    def addr_width(self) -> int:
        """C_S_AXI_CONTROL_ADDR_WIDTH: HLS rounds the map up to a power of two."""
        return max(4, (self.map_size - 1).bit_length())

    def registers(self) -> Iterator[Register]:
        yield Register("CTRL", CTRL, None, "ctrl")
        yield Register("GIER", GIER, None, "ctrl")
        yield Register("IP_IER", IP_IER, None, "ctrl")
        yield Register("IP_ISR", IP_ISR, None, "ctrl")
        yield Register("ap_return", AP_RETURN, None, "return")
        yield Register("ap_return_reserved", AP_RETURN + 4, None, "reserved")
        off = FIRST_ARG
        for a in self.args:
            if a.kind == "ptr" and M_AXI_ADDR64:
                yield Register(f"{a.name}_1", off, a.name, "lo")
                yield Register(f"{a.name}_2", off + 4, a.name, "hi")
                yield Register(f"{a.name}_reserved", off + 8, a.name, "reserved")
            else:
                yield Register(a.name, off, a.name, "data")
                yield Register(f"{a.name}_reserved", off + 4, a.name, "reserved")
            off += a.nbytes

    def pynq_registers(self) -> dict:
        """The register map in the form of pynq's ``ip_dict[...]["registers"]`` (as parsed
        from a .hwh), so that ``DefaultIP.register_map`` works on the simulated board too."""
        out: dict = {
            "CTRL": {"address_offset": CTRL, "size": 32, "access": "read-write",
                     "description": "Control signals", "fields": _ctrl_fields()},
            "GIER": {"address_offset": GIER, "size": 32, "access": "read-write",
                     "description": "Global Interrupt Enable Register",
                     "fields": {"Enable": _field(0, 1, "read-write", "global interrupt enable")}},
            "IP_IER": {"address_offset": IP_IER, "size": 32, "access": "read-write",
                       "description": "IP Interrupt Enable Register",
                       "fields": {"CHAN0_INT_EN": _field(0, 1, "read-write", "ap_done"),
                                  "CHAN1_INT_EN": _field(1, 1, "read-write", "ap_ready")}},
            "IP_ISR": {"address_offset": IP_ISR, "size": 32, "access": "read-write",
                       "description": "IP Interrupt Status Register",
                       "fields": {"CHAN0_INT_ST": _field(0, 1, "read-write", "ap_done"),
                                  "CHAN1_INT_ST": _field(1, 1, "read-write", "ap_ready")}},
            "ap_return": {"address_offset": AP_RETURN, "size": 32, "access": "read-only",
                          "description": "Data signal of ap_return (status word)",
                          "fields": {"ap_return": _field(0, 32, "read-only", "status word")}},
        }
        for r in self.registers():
            if r.part in ("ctrl", "reserved", "return"):
                continue
            a = self.arg(r.arg)
            desc = f"{a.doc}" + ("" if r.part == "data" else f" ({'low' if r.part == 'lo' else 'high'} word)")
            out[r.name] = {"address_offset": r.offset, "size": 32, "access": "write-only",
                           "description": desc,
                           "fields": {r.name: _field(0, 32, "write-only", desc)}}
        return out

    def to_manifest(self) -> dict:
        return {
            "name": self.name,
            "vlnv": self.vlnv,
            "version": VERSION,
            "instance": self.instance,
            "base_addr": self.base_addr,
            "addr_range": ADDR_RANGE,
            "args": [{"name": a.name, "kind": a.kind, "direction": a.direction,
                      "offset": self.offset(a.name), "doc": a.doc} for a in self.args],
            "registers": {r.name: r.offset for r in self.registers() if r.part != "reserved"},
        }


def _field(bit: int, width: int, access: str, desc: str) -> dict:
    return {"bit_offset": bit, "bit_width": width, "access": access, "description": desc}


def _ctrl_fields() -> dict:
    return {
        "AP_START": _field(0, 1, "read-write", "ap_start (clear on handshake)"),
        "AP_DONE": _field(1, 1, "read-only", "ap_done (clear on read)"),
        "AP_IDLE": _field(2, 1, "read-only", "ap_idle"),
        "AP_READY": _field(3, 1, "read-only", "ap_ready (clear on read)"),
        "RESERVED_1": _field(4, 3, "read-only", "reserved"),
        "AUTO_RESTART": _field(7, 1, "read-write", "auto_restart"),
        "RESERVED_2": _field(8, 1, "read-only", "reserved"),
        "INTERRUPT": _field(9, 1, "read-only", "interrupt"),
        "RESERVED_3": _field(10, 22, "read-only", "reserved"),
    }


_SAMPLE_AND_SHAPE_ARGS = (
    Arg("samples", "ptr", "sample list, int32 indices into the batch, no repeats (SLU)"),
    Arg("n_samples", "i32", "entries in the sample list"),
    Arg("n", "i32", "batch size N (samples in the buffers)"),
    Arg("ci", "i32", "input channels"),
    Arg("h", "i32", "input height"),
    Arg("wd", "i32", "input width"),
    Arg("co", "i32", "output channels"),
    Arg("k", "i32", "kernel size (1 or 3)"),
    Arg("stride", "i32", "stride (1 or 2)"),
    Arg("pad", "i32", "zero padding (0..k/2)"),
)

# The argument list in the order of e2t_engine in hls/include/e2t_kernels.h.
E2T_ENGINE = KernelIface(
    "e2t_engine",
    (
        Arg("op", "i32", "the pass: 0 conv_fwd, 1 conv_bwd_data, 2 conv_bwd_weight_psg, 3 bn_act, "
            "4 bn_bwd_reduce, 5 bn_bwd_apply"),
        Arg("x", "ptr", "input activations, NCHW, int8 or uint8 (conv_fwd, conv_bwd_weight_psg)"),
        Arg("w", "ptr", "weights, OIHW, int8 (conv_fwd, conv_bwd_data)"),
        Arg("bias", "ptr", "bias, int32 per output channel, accumulator units (conv_fwd)"),
        Arg("y", "ptr", "output, NCHW, int8 (uint8 with ReLU) (conv_fwd)", "out"),
        Arg("g_y", "ptr", "output gradient, NCHW, int16 (conv_bwd_data, conv_bwd_weight_psg)"),
        Arg("g_x", "ptr", "input gradient, NCHW, int16 (conv_bwd_data)", "out"),
        Arg("w_master", "ptr", "master weights, OIHW, int32, updated in place (conv_bwd_weight_psg)", "inout"),
        Arg("sign", "ptr", "update direction per weight, int8 in {-1, 0, 1} (conv_bwd_weight_psg)", "out"),
        Arg("predicted", "ptr", "per weight, uint8: 1 where the MSB predictor decided (conv_bwd_weight_psg)",
            "out"),
        Arg("gmsb", "ptr", "scratch: G_msb per weight, int32 (conv_bwd_weight_psg)", "out"),
        Arg("stats", "ptr", f"int64[{PSG_STATS_LEN}]: n_predicted, max |G_msb|, ... (conv_bwd_weight_psg)", "out"),
        *_SAMPLE_AND_SHAPE_ARGS,
        Arg("x_unsigned", "i32", "1: x holds uint8 codes (the output of a ReLU), 0: int8"),
        Arg("has_bias", "i32", "1: add bias, 0: the bias pointer is not read (conv_fwd)"),
        Arg("relu", "i32", "1: fused ReLU, uint8 output (conv_fwd)"),
        Arg("mult_m", "i32", "requantisation multiplier M (conv_fwd, conv_bwd_data)"),
        Arg("mult_s", "i32", "requantisation shift S (conv_fwd, conv_bwd_data)"),
        Arg("beta_q", "i32", "PSG threshold beta in Q0.16, 0 = predictor off (conv_bwd_weight_psg)"),
        Arg("lr_q", "i32", "sign step in master LSBs (conv_bwd_weight_psg)"),
        Arg("wd_q", "i32", "decoupled weight decay lr*wd in Q2.30 (conv_bwd_weight_psg)"),
        # 2.1: the block operations (docs/fixed-point.md section 9). Their tensor is (n, co, h, wd).
        Arg("b_y", "ptr", "conv output codes y, NCHW int8 (bn_act, bn_bwd_reduce, bn_bwd_apply)"),
        Arg("b_o", "ptr", "block output codes o, NCHW uint8: written by bn_act, read by bn_bwd_reduce (ReLU mask)",
            "inout"),
        Arg("b_r", "ptr", "shortcut source codes, NCHW uint8 (bn_act residual, bn_bwd_reduce gate sums)"),
        Arg("b_ga", "ptr", "gradient of the block output, NCHW int16 (bn_bwd_reduce)"),
        Arg("b_gb", "ptr", "second gradient source at the next shortcut's geometry, int16 (bn_bwd_reduce)"),
        Arg("b_gm", "ptr", "masked gradient g_m, NCHW int16: written by bn_bwd_reduce, read by bn_bwd_apply",
            "inout"),
        Arg("b_gy", "ptr", "BN backward's output g_y, NCHW int16 (bn_bwd_apply)", "out"),
        Arg("b_coef", "ptr", "per-channel int64 coefficients: a[co], b[co] (bn_act); p[co], q[co], t[co] "
            "(bn_bwd_apply)"),
        Arg("b_sums", "ptr", "int64 outputs: pooled[n][co], vmax[n] (bn_act); red[co][3], gate[n][2] "
            "(bn_bwd_reduce)", "out"),
        Arg("b_flags", "i32", "bit 0 conv_fwd writes BN sums (stats = int64[co][2]); bit 1 ReLU (bn_act); "
            "bit 2 shortcut source b_r read (bn_act residual, bn_bwd_reduce gate sums); bit 3 b_gb read; "
            "bit 4 conv_fwd writes the weights' sums of |w| per input channel (int64[ci], after the BN sums)"),
        Arg("b_shift", "i32", "the block operation's rounding shift (0..40)"),
        Arg("b_m1", "i32", "multiplier of b_r (bn_act) or b_ga (bn_bwd_reduce), |m| < 2^24"),
        Arg("b_m2", "i32", "multiplier of b_gb (bn_bwd_reduce), |m| < 2^24"),
        Arg("r_c", "i32", "shortcut source channels"),
        Arg("r_h", "i32", "shortcut source height"),
        Arg("r_w", "i32", "shortcut source width"),
        Arg("r_stride", "i32", "shortcut stride (o at (y, x) reads the source at (y*stride, x*stride))"),
        Arg("r_lo", "i32", "shortcut channel offset (o channel c reads source channel c - r_lo)"),
        Arg("gb_c", "i32", "b_gb channels"),
        Arg("gb_h", "i32", "b_gb height"),
        Arg("gb_w", "i32", "b_gb width"),
        Arg("gb_stride", "i32", "b_gb's shortcut stride"),
        Arg("gb_lo", "i32", "b_gb's shortcut channel offset"),
    ),
    "the training engine shared by the three passes in time; op picks the pass",
)

KERNELS: dict[str, KernelIface] = {E2T_ENGINE.name: E2T_ENGINE}
"""The fabric's IPs by HLS top name: one."""


@dataclass(frozen=True)
class Pass:
    """One pass of e2t_engine: its op code and the arguments it reads (the order of its C
    entry point in hls/include/e2t_kernels.h; every other argument is written 0)."""

    name: str
    op: int
    args: tuple[str, ...]
    doc: str

    def __post_init__(self):
        unknown = [a for a in self.args if a not in {x.name for x in E2T_ENGINE.args}]
        if unknown or "op" in self.args:
            raise ValueError(f"pass {self.name}: arguments {unknown} are not e2t_engine's")


_SHAPE = tuple(a.name for a in _SAMPLE_AND_SHAPE_ARGS)
PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("conv_fwd", 0, ("x", "w", "bias", "y", "stats", *_SHAPE, "x_unsigned", "has_bias", "relu", "mult_m",
                         "mult_s", "b_flags"),
         "int8 x int8 -> int32 -> +bias -> requantise -> int8/uint8, optional fused ReLU; BN sums of y"),
    Pass("conv_bwd_data", 1, ("g_y", "w", "g_x", *_SHAPE, "mult_m", "mult_s"),
         "int16 g_y x int8 w -> 48-bit accumulator -> requantise -> int16 g_x"),
    Pass("conv_bwd_weight_psg", 2, ("x", "g_y", "w_master", "sign", "predicted", "gmsb", "stats", *_SHAPE,
                                    "x_unsigned", "beta_q", "lr_q", "wd_q"),
         "PSG weight gradient (MSB predictor + exact fallback) fused with the sign update"),
    Pass("bn_act", 3, ("b_y", "b_o", "b_r", "b_coef", "b_sums", "samples", "n_samples", "n", "h", "wd", "co",
                       "b_flags", "b_shift", "b_m1", "r_c", "r_h", "r_w", "r_stride", "r_lo"),
         "BN (per-channel affine) + shortcut add + ReLU + requantise -> uint8, with pooled sums and maxima"),
    Pass("bn_bwd_reduce", 4, ("b_y", "b_o", "b_r", "b_ga", "b_gb", "b_gm", "b_sums", "samples", "n_samples", "n",
                              "h", "wd", "co", "b_flags", "b_shift", "b_m1", "b_m2", "r_c", "r_h", "r_w",
                              "r_stride", "r_lo", "gb_c", "gb_h", "gb_w", "gb_stride", "gb_lo"),
         "gradient sources summed, ReLU-masked -> int16 g_m, with BN backward's and the gate's sums"),
    Pass("bn_bwd_apply", 5, ("b_y", "b_gm", "b_gy", "b_coef", "samples", "n_samples", "n", "h", "wd", "co",
                             "b_shift"),
         "BN backward: per-channel affine map of g_m and y -> int16 g_y"),
)}
PASS_BY_OP: dict[int, Pass] = {p.op: p for p in PASSES.values()}


def by_vlnv(vlnv: str) -> KernelIface:
    for k in KERNELS.values():
        if k.vlnv == vlnv:
            return k
    raise KeyError(f"no e2train IP has VLNV {vlnv!r}; known: {[k.vlnv for k in KERNELS.values()]}")


def abi_digest() -> str:
    """sha256 over every IP's VLNV and register layout and the passes' op codes and
    arguments: one string that changes with any change to the interface (recorded in each
    manifest, compared when loading)."""
    doc = [(k.vlnv, [(r.name, r.offset) for r in k.registers()]) for k in KERNELS.values()]
    doc.append([(p.name, p.op, list(p.args)) for p in PASSES.values()])
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# Element types of the pointer arguments whose type does not depend on a flag.
PTR_DTYPES = {
    "w": np.int8, "bias": np.int32, "samples": np.int32, "g_y": np.int16, "g_x": np.int16,
    "w_master": np.int32, "sign": np.int8, "predicted": np.uint8, "gmsb": np.int32, "stats": np.int64,
    "b_y": np.int8, "b_o": np.uint8, "b_r": np.uint8, "b_ga": np.int16, "b_gb": np.int16, "b_gm": np.int16,
    "b_gy": np.int16, "b_coef": np.int64, "b_sums": np.int64,
}


def tcl_text() -> str:
    """The IP's instance name, VLNV and base address, and the HP port of each of its m_axi
    bundles, as Tcl for the block design (fpga/vivado/bd.tcl sources what ``make bitstream``
    writes from this)."""
    lines = ["# Generated from host/e2train/device/kernel_iface.py by `make bitstream`; do not edit.",
             f"set e2t_addr_range {ADDR_RANGE:#x}", "set e2t_kernels {}"]
    for k in KERNELS.values():
        lines.append(f"lappend e2t_kernels [list {k.name} {k.instance} {k.vlnv} {k.base_addr:#010x}]")
    lines.append("set e2t_hp_ports [dict create " + " ".join(f"m_axi_{b} {p}" for b, p in M_AXI_BUNDLES.items())
                 + "]")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--tcl"]:
        print(tcl_text(), end="")
    else:
        print("usage: python -m e2train.device.kernel_iface --tcl", file=sys.stderr)
        sys.exit(2)

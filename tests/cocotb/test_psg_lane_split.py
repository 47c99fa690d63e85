"""Runs tb_psg_lane.py (one lane's MSB split at every tie, fpga/rtl/psg_lane.v) on Icarus and
Verilator."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
PARAMS = {"HAS_EXACT": 1}


@pytest.mark.parametrize("sim", SIMS)
def test_lane_split_at_ties(sim: str, tmp_path: Path) -> None:
    try:
        bdir = build(sim, "psg_lane", PARAMS, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    problems = run_test(sim, "psg_lane", PARAMS, bdir, "tb_psg_lane", "split_ties_vs_contract", tmp_path,
                        {"PSG_SIM": sim})
    assert not problems, f"{sim}, psg_lane: " + "\n".join(problems)

"""Runs the cocotb benches on Icarus and Verilator (cocotb_tools.runner):
tb_psg_engine.py (the engine) and tb_psg_engine_hls.py (its HLS blackbox ports).

One build per simulator and top (build/cocotb/<sim>-<top>), shared by pytest-xdist workers
through a file lock; one simulator run per cocotb test, so each shows on its own line.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
# A short length limit (2^8 beats) keeps the overflow test short.
PARAMS = {"LANES": 8, "MAX_BEATS_LOG2": 8}
# top -> (cocotb module, its tests)
BENCHES = {
    "psg_engine": ("tb_psg_engine",
                   ("random_layers_vs_golden", "skipped_lanes_do_not_compute", "extreme_values", "threshold_edges",
                    "reset_in_the_middle_of_a_tile", "full_throughput", "control_protocol", "overflow_limit")),
    "psg_engine_hls": ("tb_psg_engine_hls", ("blackbox_ports_vs_golden",)),
}
CASES = [(top, test) for top, (_, tests) in BENCHES.items() for test in tests]


@pytest.mark.parametrize(("top", "test"), CASES, ids=[f"{t}.{c}" for t, c in CASES])
@pytest.mark.parametrize("sim", SIMS)
def test_rtl(sim: str, top: str, test: str, tmp_path: Path) -> None:
    try:
        bdir = build(sim, top, PARAMS, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    env = {"PSG_LANES": str(PARAMS["LANES"]), "PSG_MAX_BEATS_LOG2": str(PARAMS["MAX_BEATS_LOG2"]),
           "PSG_SIM": sim, "PSG_SEED": "7"}
    problems = run_test(sim, top, PARAMS, bdir, BENCHES[top][0], test, tmp_path, env)
    assert not problems, f"{sim}, {top}: " + "\n".join(problems)

"""Runs the lane array's cocotb benches on Icarus and Verilator (cocotb_tools.runner):
tb_psg_lanes.py (the kernel's lane array) and tb_psg_lanes_hls.py (its blackbox ports).

One build per simulator and top (build/cocotb/<sim>-<top>), shared by pytest-xdist workers
through a file lock; one simulator run per cocotb test, so each shows on its own line.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
# The lane array at a small size: 8 lanes of which 4 exact, a 12-slot x and 4-slot g window
# (the kernel's is 192/48/72/8; the lint test covers that size).
ARRAY = {"LANES": 8, "EXACT_LANES": 4, "XSLOTS": 12, "GSLOTS": 4}
# top -> (parameters, cocotb module, its tests)
BENCHES = {
    "psg_lanes": (ARRAY, "tb_psg_lanes", ("rounds_vs_golden", "reset_mid_round", "throughput_and_protocol")),
    "psg_lanes_hls": (ARRAY, "tb_psg_lanes_hls", ("blackbox_ports_vs_golden",)),
}
CASES = [(top, test) for top, (_, _, tests) in BENCHES.items() for test in tests]


def bench_env(params: dict) -> dict:
    """The build's parameters as the benches read them (PSG_<NAME>)."""
    return {f"PSG_{k}": str(v) for k, v in params.items()}


@pytest.mark.parametrize(("top", "test"), CASES, ids=[f"{t}.{c}" for t, c in CASES])
@pytest.mark.parametrize("sim", SIMS)
def test_rtl(sim: str, top: str, test: str, tmp_path: Path) -> None:
    params, module, _ = BENCHES[top]
    try:
        bdir = build(sim, top, params, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    env = {**bench_env(params), "PSG_SIM": sim, "PSG_SEED": "7"}
    problems = run_test(sim, top, params, bdir, module, test, tmp_path, env)
    assert not problems, f"{sim}, {top}: " + "\n".join(problems)

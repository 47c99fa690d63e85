"""Runs the training engine's cocotb bench (tb_train_engine.py) on Icarus and Verilator at a
reduced size (ROWS x COLS = 2 x 3: every mode, flag and edge of the grid, small enough to build
in seconds); the lint test covers the full 8 x 24."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
PARAMS = {"ROWS": 2, "COLS": 3}
TESTS = ("random_calls_vs_model", "split_rounding_edges", "reset_mid_call", "conv_passes_vs_numpy_and_perfmodel")
# the HLS blackbox ports (train_engine_hls.v) and their cycles
HLS_TESTS = ("blackbox_ports_vs_model", "full_rate_cycles")


def _run(sim: str, top: str, test: str, tmp_path: Path) -> None:
    """Build ``top`` on ``sim`` and run cocotb test ``test`` of tb_<top>; fail with its problems."""
    try:
        bdir = build(sim, top, PARAMS, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    env = {"ENG_ROWS": str(PARAMS["ROWS"]), "ENG_COLS": str(PARAMS["COLS"]), "ENG_SEED": "7"}
    problems = run_test(sim, top, PARAMS, bdir, f"tb_{top}", test, tmp_path, env)
    assert not problems, f"{sim}, {top}: " + "\n".join(problems)


@pytest.mark.parametrize("test", HLS_TESTS)
@pytest.mark.parametrize("sim", SIMS)
def test_train_engine_hls(sim: str, test: str, tmp_path: Path) -> None:
    _run(sim, "train_engine_hls", test, tmp_path)


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("sim", SIMS)
def test_train_engine(sim: str, test: str, tmp_path: Path) -> None:
    _run(sim, "train_engine", test, tmp_path)

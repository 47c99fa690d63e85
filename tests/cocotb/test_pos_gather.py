"""Runs the forward's and input gradient's read-side bench (tb_pos_gather.py) on Icarus and
Verilator, at both passes' parameters (fpga/fit.py synthesises the same two)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"
PASSES = {"fwd": {"NPOS": 36, "W": 8, "ABITS": 11}, "bwd": {"NPOS": 18, "W": 16, "ABITS": 10}}


@pytest.mark.parametrize("which", sorted(PASSES))
@pytest.mark.parametrize("sim", SIMS)
def test_pos_gather(sim: str, which: str, tmp_path: Path) -> None:
    params = PASSES[which]
    try:
        bdir = build(sim, "pos_gather", params, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    problems = run_test(sim, "pos_gather", params, bdir, "tb_pos_gather", "random_beats_vs_model", tmp_path,
                        {"ENG_SEED": "11", **{k: str(v) for k, v in params.items()}})
    assert not problems, f"{sim}, {which}: " + "\n".join(problems)


def test_parameters_are_the_layouts():
    """The bench's parameters are the buffers' (engine_map): positions a beat, code width, and
    the entry bits of two halves."""
    from e2train.core import engine_map as em
    assert PASSES["fwd"] == {"NPOS": 2 * em.COLS, "W": 8, "ABITS": (2 * em.FWD_X_WORDS - 1).bit_length()}
    assert PASSES["bwd"] == {"NPOS": em.COLS, "W": 16, "ABITS": (2 * em.BWD_G_WORDS - 1).bit_length()}

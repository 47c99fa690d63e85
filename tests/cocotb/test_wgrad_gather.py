"""Runs the weight gradient's x gather bench (tb_wgrad_gather.py) on Icarus and Verilator."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtl_sims import ROOT, SIMS, SimulatorMissing, build, run_test

BUILD = ROOT / "build" / "cocotb"


@pytest.mark.parametrize("sim", SIMS)
def test_wgrad_gather(sim: str, tmp_path: Path) -> None:
    try:
        bdir = build(sim, "wgrad_gather", {}, BUILD)
    except SimulatorMissing as e:
        pytest.fail(str(e))
    problems = run_test(sim, "wgrad_gather", {}, bdir, "tb_wgrad_gather", "random_cycles_vs_model", tmp_path,
                        {"ENG_SEED": "7"})
    assert not problems, f"{sim}: " + "\n".join(problems)

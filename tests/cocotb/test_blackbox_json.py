"""The Vitis HLS blackbox descriptions (hls/blackbox/*.json) agree with what they describe:
the C function's declaration (hls/include/*.h), its C model file, the RTL files and
the top module's ports, and the kernel script adds the one the kernel calls. Vitis HLS
would only find a mismatch at synthesis, which cannot run here."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLACKBOX = ROOT / "hls" / "blackbox"
DESCRIPTIONS = sorted(BLACKBOX.glob("*.json"))
PROTOCOL = {"module_clock", "module_reset", "ap_ctrl_chain_protocol_idle", "ap_ctrl_chain_protocol_start",
            "ap_ctrl_chain_protocol_ready", "ap_ctrl_chain_protocol_done", "ap_ctrl_chain_protocol_continue"}


def c_params(function: str) -> list[str]:
    src = "\n".join(p.read_text() for p in sorted((ROOT / "hls" / "include").glob("*.h")))
    m = re.search(r"\bvoid " + function + r"\((.*?)\);", src, re.S)
    assert m, f"{function} is not declared in any hls/include/*.h"
    return [re.findall(r"\w+", p)[-1] for p in m.group(1).split(",")]


def rtl_ports(files: list[Path], module: str) -> set[str]:
    for f in files:
        m = re.search(r"\bmodule\s+" + module + r"\b(.*?)\);", f.read_text(), re.S)
        if m:
            return set(re.findall(r"\b(?:input|output)\s+(?:wire|reg)?\s*(?:signed\s*)?(?:\[[^\]]*\]\s*)?(\w+)",
                                  m.group(1)))
    raise AssertionError(f"module {module} is in none of {[str(f) for f in files]}")


def test_there_are_descriptions() -> None:
    assert {p.name for p in DESCRIPTIONS} == {"train_engine.json"}


@pytest.mark.parametrize("path", DESCRIPTIONS, ids=[p.name for p in DESCRIPTIONS])
def test_description_matches_c_and_rtl(path: Path) -> None:
    d = json.loads(path.read_text())
    fn = d["c_function_name"]
    assert d["rtl_top_module_name"] == fn, f"{path.name}: the RTL top and the C function share a name"
    for c in d["c_files"]:
        src = BLACKBOX / c["c_file"]
        assert src.is_file(), f"{path.name}: C model {src} missing"
        assert re.search(r"\bvoid " + fn + r"\(", src.read_text()), f"{path.name}: {src.name} does not define {fn}"
    files = [(BLACKBOX / f).resolve() for f in d["rtl_files"]]
    for f in files:
        assert f.is_file(), f"{path.name}: RTL file {f} missing"
    ports = rtl_ports(files, d["rtl_top_module_name"])
    assert [p["c_name"] for p in d["c_parameters"]] == c_params(fn), \
        f"{path.name}: c_parameters are not the arguments of {fn}, in order"
    named = [v for p in d["c_parameters"] for v in p["rtl_ports"].values()]
    assert set(d["rtl_common_signal"]) == PROTOCOL, f"{path.name}: ap_ctrl_chain signals"
    named += list(d["rtl_common_signal"].values())
    missing = [n for n in named if n not in ports]
    assert not missing, f"{path.name}: ports {missing} are not ports of module {d['rtl_top_module_name']}"
    unmapped = ports - set(named)
    assert not unmapped, f"{path.name}: RTL ports {sorted(unmapped)} are not in the description"
    assert int(d["rtl_resource_usage"]["DSP"]) >= 0 and d["rtl_performance"]["II"] == "0"


@pytest.mark.parametrize("kernel", ["conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg"])
def test_kernels_call_the_engine_and_the_script_adds_it(kernel: str) -> None:
    """Every pass's MACs go through the engine's blackbox: it calls the top's one engine call
    (e2t_engine_call, which calls train_engine_hls) and has no MAC loop of its own (no product
    of two operands outside the output stage), and the HLS script adds the blackbox
    description."""
    tcl = (ROOT / "hls" / "scripts" / "kernel.tcl").read_text()
    src = (ROOT / "hls" / "src" / f"{kernel}.cpp").read_text()
    top = (ROOT / "hls" / "src" / "e2t_engine.cpp").read_text()
    assert "add_files -blackbox hls/blackbox/train_engine.json" in tcl
    assert re.search(r"\be2t_engine_call\(", src), f"{kernel} does not call the engine"
    assert re.search(r"\btrain_engine_hls\(", top[top.index("void e2t_engine_call("):]), "the top does not call the engine"
    assert not re.search(r"\+=\s*\(int(32|64)_t\)\s*\w+(\[[^]]*\])*\s*\*", src), f"{kernel} has a MAC loop of its own"

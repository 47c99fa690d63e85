"""Static checks of what Vitis HLS will be given: every top-level port has its interface
pragma, the scripts target xc7z020 at 10 ns, and `make hls-synth` fails clearly without
the tool."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KERNELS = ("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg")


def _params(src: str, name: str) -> list[tuple[str, bool]]:
    """(name, is_pointer) of the parameters of ``int name(...)`` (definition or declaration)."""
    m = re.search(r"\bint " + name + r"\((.*?)\)\s*[{;]", src, re.S)
    assert m, f"top function {name} not found"
    out = []
    for p in m.group(1).split(","):
        p = p.strip()
        out.append((re.findall(r"\w+", p)[-1], "*" in p))
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_port_has_an_interface_pragma(kernel):
    src = (REPO / "hls/src" / f"{kernel}.cpp").read_text()
    header = (REPO / "hls/include/e2t_kernels.h").read_text()
    params = _params(src, kernel)
    assert params == _params(header, kernel)          # the definition matches the declaration
    for name, is_ptr in params:
        mode = "m_axi" if is_ptr else "s_axilite"
        assert re.search(rf"#pragma HLS INTERFACE {mode} port={name}\b", src), f"{kernel}: {name} needs {mode}"
    assert "#pragma HLS INTERFACE s_axilite port=return" in src
    assert "#pragma HLS PIPELINE" in src
    assert "float" not in src and "double" not in src      # integer arithmetic only


def test_kernels_parse_as_synthesis_sees_them():
    """With __SYNTHESIS__ defined (Vitis HLS's front end) the kernels compile without the
    engine's C model (train_engine.h keeps it out: the RTL blackbox takes its place) and
    their big buffers are plain statics."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: this test compiles hls/src (apt-get install g++)")
    r = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-D__SYNTHESIS__", "-Wall", "-Wextra", "-Werror",
                        "-Wno-unknown-pragmas", "-Ihls/include", *(f"hls/src/{k}.cpp" for k in KERNELS)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = (REPO / "hls/include/train_engine.h").read_text()
    guarded = model[model.index("#ifndef __SYNTHESIS__\n// The C model"):model.index("#endif  // __SYNTHESIS__")]
    assert "inline void call(" in guarded and "thread_local" not in model.replace(guarded, "")


def test_scripts_target_xc7z020_at_100mhz():
    tcl = (REPO / "hls/scripts/kernel.tcl").read_text()
    assert "set_part xc7z020clg484-1" in tcl
    assert "create_clock -period 10" in tcl
    assert "export_design -format ip_catalog" in tcl


@pytest.mark.skipif(shutil.which("vitis_hls") is not None, reason="vitis_hls is installed here")
def test_hls_synth_without_vitis_says_what_is_missing():
    env = dict(os.environ, PATH="/usr/bin:/bin")
    r = subprocess.run(["hls/scripts/run_hls.sh", "all"], cwd=REPO, capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "vitis_hls" in r.stderr and "settings64.sh" in r.stderr

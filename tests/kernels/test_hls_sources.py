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
TOP = "e2t_engine"
PASS_FILES = ("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg", "block_ops")
SOURCES = (TOP, *PASS_FILES)


def _params(src: str, name: str) -> list[tuple[str, bool]]:
    """(name, is_pointer) of the parameters of ``int name(...)`` (definition or declaration)."""
    m = re.search(r"\bint " + name + r"\((.*?)\)\s*[{;]", src, re.S)
    assert m, f"top function {name} not found"
    out = []
    for p in m.group(1).split(","):
        p = p.strip()
        out.append((re.findall(r"\w+", p)[-1], "*" in p))
    return out


def _src(name: str) -> str:
    return (REPO / "hls/src" / f"{name}.cpp").read_text()


def test_every_port_of_the_top_has_an_interface_pragma():
    src = _src(TOP)
    header = (REPO / "hls/include/e2t_kernels.h").read_text()
    params = _params(src, TOP)
    assert params == _params(header, TOP)          # the definition matches the declaration
    for name, is_ptr in params:
        mode = "m_axi" if is_ptr else "s_axilite"
        assert re.search(rf"#pragma HLS INTERFACE {mode} port={name}\b", src), f"{TOP}: {name} needs {mode}"
    assert "#pragma HLS INTERFACE s_axilite port=return" in src
    # one s_axilite bundle: the default (control), none named
    assert not re.search(r"INTERFACE s_axilite .*bundle=", src)
    for f in SOURCES:
        text = _src(f)
        assert "float" not in text and "double" not in text      # integer arithmetic only
    for f in PASS_FILES:
        assert "#pragma HLS PIPELINE" in _src(f)
        assert "#pragma HLS INTERFACE" not in _src(f), f"{f}: interfaces belong to the top"


def test_the_engine_is_called_at_one_place_and_shared_by_every_pass():
    """One engine in the IP: train_engine_hls has one call site in the design (inside
    e2t_engine_call); every pass function, and the weight-gradient sweep it calls, is
    inlined into the top, whose ALLOCATION pragmas limit the engine call and the engine to
    one instance."""
    code = {f: re.sub(r"//[^\n]*", "", _src(f)) for f in SOURCES}
    calls = [(f, m.start()) for f, t in code.items() for m in re.finditer(r"\btrain_engine_hls\(", t)]
    assert len(calls) == 1 and calls[0][0] == TOP, calls
    call_fn = code[TOP][code[TOP].index("void e2t_engine_call("):]
    assert call_fn.index("train_engine_hls(") < call_fn.index("\n}\n")
    assert "#pragma HLS DATAFLOW" in call_fn[:call_fn.index("\n}\n")]
    top = code[TOP][code[TOP].index('extern "C" int e2t_engine('):]
    assert "#pragma HLS ALLOCATION function instances=e2t_engine_call limit=1" in top
    assert "#pragma HLS ALLOCATION function instances=train_engine_hls limit=1" in top
    # every function that calls e2t_engine_call is inlined (so every call site is the top's)
    for f in PASS_FILES:
        t = code[f]
        for m in re.finditer(r"\be2t_engine_call\(", t):
            fn = re.findall(r"\n(?:int|void) (\w+)\([^;{]*\)\s*\{", t[:m.start()])[-1]
            body = t[t.index(f" {fn}("):]
            body = body[body.index("{"):]
            assert body.lstrip("{ \n").startswith("#pragma HLS INLINE"), f"{f}: {fn} calls the engine, not inlined"
    wgrad = code["conv_bwd_weight_psg"]
    sweeps = [m.start() for m in re.finditer(r"\brun_sweep\(", wgrad)]
    assert len(sweeps) == 2       # its definition and one call (one sweep whatever beta_q), inlined
    # the forward and input-gradient weight tiles are one buffer, and the engine's streams one
    # set, the top's: every site of the shared call binds the same buffer and FIFOs
    assert "int8_t wt[" in code[TOP] and not any("int8_t wt[E2T" in code[f] for f in PASS_FILES)
    for t in ("Head", "Beat", "Row"):
        decl = re.compile(rf"psg::stream<eng::{t}> \w+;")
        assert len(decl.findall(code[TOP])) == 1 and not any(decl.search(code[f]) for f in PASS_FILES), t
    # and the same pointers (x, g_y, samples, wt): the top's ports, never a null stand-in
    for f in PASS_FILES:
        for m in re.finditer(r"\be2t_engine_call\(([^;]*)\);", code[f]):
            args = [a.strip() for a in m.group(1).split(",")]
            assert args[6:10] == ["x", "g_y", "samples", "wt"], (f, args)


def test_kernels_parse_as_synthesis_sees_them():
    """With __SYNTHESIS__ defined (Vitis HLS's front end) the top and its passes compile
    without the engine's C model (train_engine.h keeps it out: the RTL blackbox takes its
    place) and their big buffers are plain statics."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: this test compiles hls/src (apt-get install g++)")
    r = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-D__SYNTHESIS__", "-Wall", "-Wextra", "-Werror",
                        "-Wno-unknown-pragmas", "-Ihls/include", *(f"hls/src/{k}.cpp" for k in SOURCES)],
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
    assert re.search(r"^set_top e2t_engine$", tcl, re.M)
    assert sorted(re.findall(r"add_files hls/src/\$f.cpp", tcl)) and \
        re.search(r"foreach f \{(.*?)\}", tcl).group(1).split() == list(SOURCES)


@pytest.mark.skipif(shutil.which("vitis_hls") is not None, reason="vitis_hls is installed here")
def test_hls_synth_without_vitis_says_what_is_missing():
    env = dict(os.environ, PATH="/usr/bin:/bin")
    r = subprocess.run(["hls/scripts/run_hls.sh", "all"], cwd=REPO, capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "vitis_hls" in r.stderr and "settings64.sh" in r.stderr


def test_the_weight_gradients_partial_sums_are_one_bram_word_a_weight_as_fit_counts_them():
    """fpga/fit.py counts the weight gradient's on-chip partial sums at one 72-bit word a weight
    (36 BRAM36 for 18,432 weights). The source must say so to Vitis: both sums in one struct
    under AGGREGATE, 41 + 31 bits wide, bound to BRAM; two int64 arrays would take 72 BRAM36."""
    hdr = (REPO / "hls/include/e2t_passes.h").read_text()
    assert re.search(r"typedef ap_int<41> part_exact_t;", hdr) and re.search(r"typedef ap_int<31> part_msb_t;", hdr)
    top = _src("e2t_engine")        # the top declares them: the output stage beside the calls adds into them
    assert "#pragma HLS AGGREGATE variable=part\n" in top
    assert "#pragma HLS BIND_STORAGE variable=part type=ram_2p impl=bram" in top
    assert re.search(r"E2T_KERNEL_STATIC e2t::wgrad::Part part\[e2t::wgrad::PART\];", top)
    assert not re.search(r"int64_t part_[em]\b", hdr + _src("conv_bwd_weight_psg"))
    shape_h = (REPO / "hls/include/e2t_shape.h").read_text()
    from e2train.core.shapes import MAX_WGRAD_CALL_TERMS
    assert f"#define E2T_MAX_WGRAD_CALL_TERMS (1 << {MAX_WGRAD_CALL_TERMS.bit_length() - 1})" in shape_h


def test_the_output_stage_is_one_process_beside_the_calls():
    """The engine's rows are read in one place: the output stage, a process of e2t_engine_call's
    DATAFLOW region (so it runs beside the next call, as perfmodel prices it), taking a column a
    cycle through one select (fpga/fit.py counts one). No pass reads the rows after a call returns."""
    top = _src("e2t_engine")
    call = top[top.index("void e2t_engine_call("):]
    call = call[:call.index("\n}\n")]
    assert "#pragma HLS DATAFLOW" in call and "e2t::output_stage(out, os," in call
    assert call.index("train_engine_hls(") < call.index("e2t::output_stage(")
    stage = top[top.index("void output_stage("):]
    stage = stage[:stage.index("\n}\n")]
    assert stage.count("out.read()") == 1 and stage.count("column_of(row, c)") == 1
    assert top.count("out.read()") == 1
    for name in ("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg"):
        assert "out.read()" not in _src(name), name

"""The training engine's grid has one size: engine_map.ROWS x COLS (what the performance model
prices and the trainer's calls are laid out for) is the default of the C model
(hls/include/train_engine.h, which the C simulation and Vitis HLS compile), of the RTL
(train_engine.v and its blackbox top train_engine_hls.v), the blackbox description's DSP48E1
count and `make fit`'s default grid. A grid changed in one of them alone would have the
simulated board price one engine and the fabric build another."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from e2train.core import engine_map as em
from e2train.core import perfmodel as pm

ROOT = Path(__file__).resolve().parents[2]


def _one(pattern: str, path: Path) -> int:
    found = re.findall(pattern, path.read_text(), re.M)
    assert len(found) == 1, f"{path.relative_to(ROOT)}: {len(found)} matches of {pattern!r}"
    return int(found[0])


def test_c_model_default_grid() -> None:
    h = ROOT / "hls" / "include" / "train_engine.h"
    assert (_one(r"^#define ENG_ROWS (\d+)$", h), _one(r"^#define ENG_COLS (\d+)$", h)) == (em.ROWS, em.COLS)


@pytest.mark.parametrize("module", ["train_engine.v", "train_engine_hls.v"])
def test_rtl_default_grid(module: str) -> None:
    v = ROOT / "fpga" / "rtl" / module
    rows = _one(r"^\s*parameter integer ROWS = (\d+),?$", v)
    cols = _one(r"^\s*parameter integer COLS = (\d+),?$", v)
    assert (rows, cols) == (em.ROWS, em.COLS)


def test_blackbox_description_dsp() -> None:
    d = json.loads((ROOT / "hls" / "blackbox" / "train_engine.json").read_text())
    assert int(d["rtl_resource_usage"]["DSP"]) == em.ROWS * em.COLS == pm.engine_dsp() - 2 * pm.ENGINE_REQUANT


def test_fit_default_grid(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("fit", ROOT / "fpga" / "fit.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    seen = {}

    def budget(rows, cols, out, synth_full, lanes):     # the defaults reach the budget, nothing synthesised
        seen.update(rows=rows, cols=cols)
        raise SystemExit(0)

    fit.budget = budget
    with pytest.raises(SystemExit):
        fit.main(["--out", str(tmp_path)])
    assert seen == {"rows": em.ROWS, "cols": em.COLS}


def test_accumulator_widths_are_one_set() -> None:
    """acc_lo's and acc_hi's widths and the read-out's P bits: the RTL's (train_engine.v's defaults,
    the ones its blackbox top instantiates), the C model's (train_engine.h) and the cocotb
    reference's (tests/cocotb/engine_model.py) are the same numbers, and the bounds they rest on
    hold: 2^17 weight-gradient positions (MAX_WGRAD_CALL_TERMS) and 2^15 forward taps."""
    from e2train.core import shapes
    eng = ROOT / "fpga" / "rtl" / "train_engine.v"
    top = ROOT / "fpga" / "rtl" / "train_engine_hls.v"
    h = ROOT / "hls" / "include" / "train_engine.h"
    rtl = {"lo": _one(r"^\s*parameter integer LO_W = (\d+),", eng), "hi": _one(r"^\s*parameter integer HI_W = (\d+)\s", eng),
           "p_out": _one(r"P_OUT_W = (\d+);", top)}
    assert _one(r"localparam integer LO_W = (\d+),", top) == rtl["lo"]
    assert _one(r"HI_W = (\d+), P_OUT_W", top) == rtl["hi"]
    c = {"lo": _one(r"kLoBits = (\d+)", h), "hi": _one(r"kHiBits = (\d+);", h), "p_out": _one(r"kPOutBits = (\d+);", h)}
    m = ROOT / "tests" / "cocotb" / "engine_model.py"
    ref = {"lo": _one(r"^P_W, LO_W, HI_W = 48, (\d+), \d+$", m), "hi": _one(r"^P_W, LO_W, HI_W = 48, \d+, (\d+)$", m),
           "p_out": _one(r"^P_OUT_W = (\d+)", m)}
    assert rtl == c == ref
    # the sums they hold: signed, so below 2^(bits-1)
    assert shapes.MAX_WGRAD_CALL_TERMS * 15 * 512 < 1 << (rtl["lo"] - 1)           # G_msb
    assert shapes.MAX_FWD_TERMS * 128 * 255 < 1 << (min(rtl["lo"], rtl["hi"]) - 1)  # a forward field
    assert shapes.MAX_WGRAD_CALL_TERMS * 255 * 32768 < 1 << (rtl["p_out"] - 1)      # a weight gradient's P
    assert shapes.MAX_TAPS * 128 * 32768 < 1 << (rtl["p_out"] - 1)                  # an input gradient's P

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

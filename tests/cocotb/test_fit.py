"""`make fit`'s budget (fpga/fit.py) on a reduced grid: the engine synthesised by yosys (cached
under build/fit by the RTL's hash), the shell and PS rows, the limits and the exit status. The
full grid is `make fit` (minutes of yosys the first time)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "fit"


def load_fit():
    spec = importlib.util.spec_from_file_location("fit", ROOT / "fpga" / "fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reduced_grid_fits_and_counts_every_part(capsys) -> None:
    fit = load_fit()
    assert fit.main(["--rows", "2", "--cols", "3", "--out", str(OUT)]) == 0
    text = capsys.readouterr().out
    for part in ("train_engine_hls 2x3 (RTL: engine + read-out), one instance", "m_axi adapters", "requantisers",
                 "AXI interconnect, 4 HP paths", "GP0", "sample-list check", "**total**"):
        assert part in text, f"{part!r} missing from the budget table"
    # one IP, one engine: the engine and each shell item counted once
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert sum(r.startswith("train_engine_hls") for r in rows) == 1
    assert len(rows) == len(set(rows))
    engine = fit.synth(2, 3, OUT)
    assert engine["DSP"] == 6, f"one DSP48E1 per cell expected, yosys mapped {engine['DSP']}"
    assert engine["LUT"] > 0 and engine["FF"] > 0


def test_over_budget_exits_non_zero_naming_the_resource(capsys, monkeypatch) -> None:
    fit = load_fit()
    shell = fit.shell_rows
    monkeypatch.setattr(fit, "shell_rows", lambda r, c: shell(r, c) + [
        ("a part too large", {"LUT": 50000, "FF": 0, "DSP": 0, "BRAM36": 130}, "test")])
    assert fit.main(["--rows", "2", "--cols", "3", "--out", str(OUT)]) == 1
    err = capsys.readouterr().err
    assert "does not fit the xc7z020" in err and "LUT" in err and "BRAM36" in err and "DSP" not in err


def test_limits_are_the_contract() -> None:
    fit = load_fit()
    assert fit.LIMITS == {"LUT": 0.80, "DSP": 0.90, "BRAM36": 0.90}
    assert fit.DEVICE == {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}


@pytest.mark.parametrize("bad", [["--rows", "0"], ["--cols", "65"]])
def test_bad_grid_is_refused(bad) -> None:
    with pytest.raises(SystemExit) as e:
        load_fit().main(bad)
    assert e.value.code == 2


def test_block_unit_rows_follow_its_lanes() -> None:
    """The block unit's rows: 2 DSP48E1 per lane for the affine map, 3 per lane for the sums'
    products, the per-channel BRAM and the sample bits; the s_axilite row counts every argument of
    kernel_iface (IP 2.2: 53). Its default lanes are the priced ones."""
    fit = load_fit()
    from e2train.core import call_price
    from e2train.device import kernel_iface
    assert fit.call_price.BLOCK_LANES == call_price.BLOCK_LANES
    for lanes in (1, 4):
        rows = fit.block_rows(lanes)
        assert sum(v["DSP"] for _, v, _ in rows) == 5 * lanes
        assert sum(v["BRAM36"] for _, v, _ in rows) == 5.5
    assert sum(v["LUT"] for _, v, _ in fit.block_rows(1)) < sum(v["LUT"] for _, v, _ in fit.block_rows(4))
    axil = next(v for name, v, _ in fit.shell_rows(fit.engine_map.ROWS, fit.engine_map.COLS) if name.startswith("s_axilite"))
    n = len(kernel_iface.E2T_ENGINE.args)
    assert n == 53 and axil["FF"] == 900 + 32 * (n - 30) and axil["LUT"] == round(400 * n / 30)

"""End to end: host session -> link over a pty -> board agent -> PYNQ driver over the
simulated device -> C-simulated kernels; the simulated meter on a second pty, recorded."""
import json

import pytest

from e2train.link.client import BoardClient, SimulatedBoard
from e2train.app.train_cli import build_config, main_summary_lines, train_session


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = build_config("e2train", None, ["epochs=1", "depth=8", "width=4"])
    with SimulatedBoard(data_dir=tmp / "board", meter_interval=0.05) as sim:
        with BoardClient(sim.link) as client:
            rep = train_session(client, cfg, dataset="digits", meter=sim.meter, idle_s=0.75,
                                out=str(tmp / "run"), run_id="e2e", quiet=True)
            client.shutdown()
    rep["tmp"] = tmp
    return rep


def test_run_finishes_with_a_summary(report):
    res = report["results"]
    assert res["state"] == "finished"
    s = res["summary"]
    # One epoch of a width-4 net: this checks the pipeline, so only "it learned something"
    # (chance is 0.10); accuracy targets are tested in tests/device/trainer and by the demo.
    assert s["epochs"] == 1 and s["test_acc"] > 0.15
    assert s["batches_run"] + s["batches_skipped"] == 23       # 1437 / 64, SMD on
    assert 0 < s["batches_skipped"] < 23
    assert 0 < s["predicted_frac"] <= 1
    assert s["modelled_energy_j"] > 0 and s["modelled_time_s"] > 0
    assert res["board"]["simulated"] is True and res["board"]["backend"] == "pynq"


def test_meter_energy_above_idle_is_the_kernels_modelled_energy(report):
    m = report["meter"]
    assert m["energy_kind"] == "modelled"                    # simulated meter: never called measured
    # The expectation comes from the run, never from this machine's speed: the simulated meter
    # keeps its own clock (records that fall due while a thread is held up go out late, with their
    # own time), so every interval of the run has its sample and none is lost.
    expected = m["duration_s"] / m["expected_interval_s"]
    assert m["gap_count"] == 0 and m["bad_lines"] == 0
    assert m["samples"] >= max(2, int(0.8 * expected) - 2)
    assert m["idle_power_w"] == pytest.approx(2.0, rel=0.01)
    dyn = report["results"]["sim_device"]["kernel_dynamic_j"]
    assert dyn > 0
    # the meter integrates readings at 0.1 mA resolution over a window that starts after the
    # idle measurement: agreement within 10% (plus a few mJ of quantisation)
    assert m["energy_above_idle_j"] == pytest.approx(dyn, rel=0.10, abs=0.01)


def test_report_files_written(report):
    out = report["tmp"] / "run"
    rep = json.loads((out / "report.json").read_text())
    assert rep["run_id"] == "e2e" and rep["results"]["summary"]["epochs"] == 1
    # the board kept the fabric's tensors in place: it copied a fraction of what it passed in place
    cma = rep["results"]["cma_copies"]
    assert cma["in_place"] > 4 * (cma["copied_in"] + cma["copied_out"]) > 0
    assert (out / "samples.csv").stat().st_size > 100
    assert any(p.suffix == ".png" and p.stat().st_size > 1000 for p in out.iterdir())
    assert main_summary_lines(report)[0].startswith("run e2e")
    # the run record beside it (docs/records.md): the board's numbers, with epochs from 1 and
    # the meter's energy labelled as the meter labelled it
    from e2train.core import run_record
    rec = run_record.load(out)
    assert rec.trainer == "device" and rec.run_id == "e2e" and rec.source_format == "current"
    assert [e["epoch"] for e in rec.epochs] == [1]
    assert rec.final["test_acc"] == rep["results"]["test_acc"]
    assert rec.energy[0]["total_j"] == rep["results"]["summary"]["modelled_energy_j"]
    assert rec.energy[1]["source"] == "meter" and rec.energy[1]["kind"] == rep["meter"]["energy_kind"]


def test_summary_md_and_power_on_board_time(report):
    import numpy as np

    from e2train.app.run_report import board_power, board_time_axis
    out = report["tmp"] / "run"
    md = (out / "summary.md").read_text()
    assert "e2train commit: `" in md and '"depth": 8' in md and "epochs: 1" in md
    # every energy figure says what it is
    energy_lines = [ln for ln in md.splitlines() if ln.startswith("|") and (" J |" in ln or " W |" in ln)]
    assert energy_lines and all("modelled" in ln or "measured" in ln for ln in energy_lines)
    for name in ("power_board.png", "power_board.svg", "power.png", "power.svg"):
        assert (out / name).stat().st_size > 1000, name
    # On the simulated board the axis is modelled board time: the epoch's end maps to the
    # trainer's modelled seconds, and the plotted power integrates to idle x board time + the
    # meter's energy above idle over the same samples.
    m = report["meter"]
    ep = next(p for p in m["phases"] if p["name"] == "epoch")
    b, label = board_time_axis(report, np.array([ep["t_start_s"]]))
    assert "modelled" in label
    assert b[0] == pytest.approx(report["results"]["history"][0]["modelled"]["seconds"])
    rows = [ln.split(",") for ln in (out / "samples.csv").read_text().splitlines()[1:]]
    t, p = np.array([float(r[0]) for r in rows]), np.array([float(r[2]) for r in rows])
    edges, pw, _ = board_power(report, t, p)
    from e2train.meter.recorder import integrate_energy
    tt = t[np.isfinite(board_time_axis(report, t)[0])]
    assert tt.size >= 2 and np.all(np.isfinite(pw))
    above = integrate_energy(t, p, tt[0], tt[-1]) - m["idle_power_w"] * (tt[-1] - tt[0])
    assert np.nansum(pw * np.diff(edges)) == pytest.approx(m["idle_power_w"] * (edges[-1] - edges[0]) + above,
                                                           rel=1e-6, abs=1e-9)


def test_a_real_meter_beside_the_simulated_board_is_flagged(report):
    """Its figures stay 'measured' (the meter's spec decides that), but the summary and the
    printed lines say they cannot be of the run's board; the simulated meter gets no such note."""
    from e2train.app.run_report import meter_caveat, run_summary_md
    assert report["results"]["board"]["simulated"] and meter_caveat(report) is None
    assert "**Note:**" not in run_summary_md(report, commit="x")
    real = dict(report, meter=dict(report["meter"], energy_kind="measured"))
    note = meter_caveat(real)
    assert note and "not of this run's board" in note
    assert f"**Note:** {note}." in run_summary_md(real, commit="x")
    assert f"  meter caveat: {note}" in main_summary_lines(real)
    on_a_board = dict(real, results=dict(real["results"], board=dict(real["results"]["board"], simulated=False)))
    assert meter_caveat(on_a_board) is None

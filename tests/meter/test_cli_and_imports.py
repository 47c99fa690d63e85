"""`e2train measure` end to end on the simulated meter, and the import rules of the package."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2train.app.cli import main


def test_measure_a_command_on_the_simulated_meter(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["measure", "--meter", "sim:csv?interval=0.02&power=4", "--idle", "0.3", "--out", str(out),
               "--", sys.executable, "-c", "import time; time.sleep(0.5)"])
    text = capsys.readouterr().out
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["energy_kind"] == "modelled" and "simulated meter" in text and "modelled" in text
    assert s["idle_power_w"] == pytest.approx(4.0)
    assert s["total_energy_j"] == pytest.approx(4.0 * s["duration_s"], rel=0.01)
    assert abs(s["energy_above_idle_j"]) < 0.01
    assert [p["name"] for p in s["phases"]] == ["idle", "run", "command", "done"]
    assert s["duration_s"] >= 0.5
    assert (out / "power.png").stat().st_size > 1000
    assert (out / "samples.csv").read_text().count("\n") == s["samples_total"] + 1
    for word in ("total", "above idle", "average power", "duration", "samples", "gaps"):
        assert word in text


def test_measure_passes_the_exit_code_and_reports_bad_meters(tmp_path, capsys):
    rc = main(["measure", "--meter", "sim:?interval=0.02", "--out", str(tmp_path / "a"), "--no-plot",
               "--", sys.executable, "-c", "raise SystemExit(7)"])
    assert rc == 7
    rc = main(["measure", "--meter", "wattsup:/nonexistent/tty", "--out", str(tmp_path / "b"), "--", "true"])
    assert rc == 3 and "cannot open" in capsys.readouterr().err
    assert main(["measure", "--meter", "sim:"]) == 2


def test_board_free_imports_need_neither_torch_nor_matplotlib():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['matplotlib'] = None\n"
            "import e2train.meter, e2train.meter.recorder, e2train.meter.emulate, e2train.meter.cli\n"
            "from e2train.meter.recorder import Recorder\n"
            "from e2train.meter.emulate import start_emulator\n"
            "import tempfile\n"
            "with start_emulator('csv', lambda t: 1.0, interval_s=0.01) as em:\n"
            "    with Recorder(em.spec) as r: pass\n"
            "    paths = r.save(tempfile.mkdtemp())\n"
            "assert 'plot' not in paths\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib') and sys.modules[m] is not None]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

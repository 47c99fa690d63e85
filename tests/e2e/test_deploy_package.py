"""`e2train flash --package`: the board side of this e2train, as a wheel, through the link;
the agent checks it, installs it, restarts into it; the host reconnects to the new agent."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from e2train.link import board_package as bp

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_is_the_board_side_only_and_reproducible(tmp_path):
    name, blob = bp.build_board_wheel()
    assert bp.WHEEL_RE.match(name)
    assert bp.build_board_wheel()[1] == blob                      # same sources, same bytes
    (tmp_path / name).write_bytes(blob)
    files = bp.check_wheel(tmp_path / name)
    assert "e2train/device/agent.py" in files and "e2train/core/golden.py" in files
    assert not [n for n in files if n.startswith(("e2train/torch/", "e2train/bench/"))]
    # tampering is found
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(tmp_path / name) as zin, zipfile.ZipFile(bad, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            zout.writestr(n, data + b"# changed\n" if n == "e2train/link/protocol.py" else data)
    with pytest.raises(bp.PackageError, match="does not match its RECORD"):
        bp.check_wheel(bad)
    (tmp_path / "torn.whl").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(bp.PackageError, match="not a readable wheel"):
        bp.check_wheel(tmp_path / "torn.whl")


def test_flash_package_installs_and_restarts_the_agent_into_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    target = tmp_path / "site"
    # the agent under test gets a package target (never pip into this machine's Python)
    agent = subprocess.Popen([sys.executable, "-m", "e2train", "board", "--tcp", "127.0.0.1:0", "--sim",
                              "--meter", "none", "--data-dir", str(tmp_path / "board"),
                              "--package-target", str(target)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        link = json.loads(agent.stdout.readline())["link"]
        r = subprocess.run([sys.executable, "-m", "e2train", "flash", "--board", link, "--package",
                            "--bitstream-dir", str(ROOT / "bitstreams" / "sim")],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        current = json.loads((target / "current.json").read_text())
        installed = target / current["dir"]
        assert (installed / "e2train" / "device" / "agent.py").read_bytes() == \
            (ROOT / "host" / "e2train" / "device" / "agent.py").read_bytes()
        # the restarted agent runs the installed code, and was flashed after the restart
        assert f"runs from {installed / 'e2train'}" in r.stderr
        assert json.loads(r.stdout)["board"] == "sim"
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(10)

"""`e2train board ... --service`: a systemd unit that brings the agent up at boot and again after
the kernel kills it, so the host's resume after an agent restart has an agent to resume on."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2train.device import agent as agent_mod

ROOT = Path(__file__).resolve().parents[3]
VENV_PY = "/usr/local/share/pynq-venv/bin/python3"          # the PYNQ v3 image's Python


def _exec_start(unit: str) -> list[str]:
    """ExecStart as systemd splits it (its "$$" is "$")."""
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):].replace("$$", "$"))


def test_the_unit_runs_this_agent_with_its_flags_its_data_and_no_token():
    unit = agent_mod.service_unit(["--tcp", "0.0.0.0:9000", "--token", "s3cret", "--service"], VENV_PY,
                                  Path("/root/.e2train/board"))
    assert "s3cret" not in unit and "--service" not in _exec_start(unit)[2]
    argv = _exec_start(unit)
    assert argv[:2] == ["/bin/bash", "-c"] and len(argv) == 3
    assert argv[2].endswith(f"exec {VENV_PY} -m e2train board --tcp 0.0.0.0:9000 --data-dir /root/.e2train/board")
    assert "Restart=on-failure" in unit and f"EnvironmentFile=-{agent_mod.SERVICE_ENV}" in unit
    assert "WantedBy=multi-user.target" in unit
    # --token=VALUE goes too; a data dir given stays as given
    unit = agent_mod.service_unit(["--port", "/dev/ttyPS0", "--token=s3cret", "--data-dir", "/srv/e2t"], VENV_PY,
                                  Path("/root/.e2train/board"))
    assert "s3cret" not in unit and _exec_start(unit)[2].endswith("--port /dev/ttyPS0 --data-dir /srv/e2t")


def test_an_argument_the_unit_cannot_carry_is_refused_in_one_line():
    with pytest.raises(ValueError, match="cannot put"):
        agent_mod.service_unit(["--data-dir", "/home/me/my runs"], VENV_PY, Path("/x"))


def test_the_command_systemd_runs_sources_the_image_environment_and_starts_the_agent(tmp_path):
    """Run the unit's command as systemd would, with a stand-in Python that reports what it got."""
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\necho "args: $*"\n')
    fake.chmod(0o755)
    unit = agent_mod.service_unit(["--tcp", "0.0.0.0:9000"], str(fake), tmp_path / "data")
    out = subprocess.run(_exec_start(unit), capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"args: -m e2train board --tcp 0.0.0.0:9000 --data-dir {tmp_path / 'data'}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not on this machine")
def test_systemd_accepts_the_unit(tmp_path):
    f = tmp_path / f"{agent_mod.SERVICE_NAME}.service"
    f.write_text(agent_mod.service_unit(["--tcp", "0.0.0.0:9000"], sys.executable, tmp_path))
    r = subprocess.run(["systemd-analyze", "verify", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_command_prints_the_unit_and_how_to_install_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host"), E2TRAIN_TOKEN="from-env")
    r = subprocess.run([sys.executable, "-m", "e2train", "board", "--tcp", "0.0.0.0:9000", "--data-dir",
                        str(tmp_path), "--service"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# {agent_mod.SERVICE_NAME}") and "from-env" not in r.stdout
    assert f"--data-dir {tmp_path}" in r.stdout
    err = r.stderr.strip()
    assert "\n" not in err and "systemctl enable --now e2train-board" in err and agent_mod.SERVICE_ENV in err
    assert not any(tmp_path.iterdir())                                   # nothing was started

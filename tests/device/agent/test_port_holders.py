"""The PS UART on a PYNQ image is a login console: an agent served on it beside the getty would
lose bytes of the link to it. The agent names any other holder of its port, and refuses a getty
with the command that frees the port."""
import os
import pty
import shutil
import subprocess

import pytest

from e2train.device import agent as agent_mod


@pytest.fixture
def pty_port():
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield path
    os.close(master)


def _hold(port: str, name: str, tmp_path):
    """A process called ``name`` with ``port`` open (as a getty has its console)."""
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep"), exe)
    with open(port, "rb+", buffering=0) as f:
        return subprocess.Popen([str(exe), "30"], stdin=f)


def test_a_getty_on_the_port_is_refused_with_the_command_that_frees_it(pty_port, tmp_path, capsys):
    proc = _hold(pty_port, "agetty", tmp_path)
    try:
        assert (proc.pid, "agetty") in agent_mod.port_holders(pty_port)
        rc = agent_mod.main(["--port", pty_port])
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    name = os.path.basename(pty_port)
    assert f"is the login console of agetty (pid {proc.pid})" in err
    assert f"sudo systemctl stop serial-getty@{name}.service" in err


def test_another_holder_is_named_and_a_free_port_passes(pty_port, tmp_path, capsys):
    assert agent_mod.check_port_free(pty_port) is None and capsys.readouterr().err == ""
    proc = _hold(pty_port, "minicom", tmp_path)
    try:
        assert agent_mod.check_port_free(pty_port) is None
    finally:
        proc.kill()
        proc.wait()
    assert f"also open in minicom (pid {proc.pid})" in capsys.readouterr().err

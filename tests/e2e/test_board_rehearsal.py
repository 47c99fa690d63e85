"""The board path as a user walks it, on the simulated board: over a serial line throttled to
115200 baud by the test harness (tests/e2e/conftest.py) and over TCP on loopback.

`e2train flash` (sending the bitstream directory through the link), `train` (uploading the
digits set), Ctrl-C (SIGINT to the host process), `attach` (catching up on what it missed),
`stop`, `fetch`, each a real `e2train` process; then a kill of the agent mid-run and a
restart, with the host resuming and the final weights identical to an uninterrupted run.
Nothing waits on this machine's speed: each step waits for what the previous one printed.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2train.device import checkpoint as ckpt
from e2train.link.client import SimulatedBoard

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "depth=8", "--set", "width=4", "--set", "progress_every=4", "--preset", "e2train"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    lib = ROOT / "build" / "csim" / "libe2t_kernels.so"
    if "E2TRAIN_CSIM_LIB" not in env and lib.exists():
        env["E2TRAIN_CSIM_LIB"] = str(lib)
    return env


def e2train(*args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "e2train", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), **kw)


# `e2train` as started from a terminal, where Ctrl-C raises KeyboardInterrupt. A process started in
# the background by a non-interactive shell (as `make test &` does) inherits SIGINT *ignored*, and
# Python then leaves it ignored: the Ctrl-C tests would wait forever on every descendant.
E2TRAIN_AT_A_TERMINAL = [sys.executable, "-c", "import runpy, signal; signal.signal(signal.SIGINT, "
                         "signal.default_int_handler); runpy.run_module('e2train', run_name='__main__', alter_sys=True)"]


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    """Read the process's stderr until a line holds ``needle``; returns what was read."""
    seen = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stderr], [], [], 0.5)
        if r:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen += line
            if needle in line:
                return seen
    raise AssertionError(f"no {needle!r} within {timeout} s; stderr so far:\n{seen}")


@pytest.fixture(params=["uart115200", "tcp"])
def board(request, tmp_path, throttled_line):
    """(link URL for the host, the simulated board, the line or None)."""
    env_lib = _env().get("E2TRAIN_CSIM_LIB")
    if env_lib:
        os.environ.setdefault("E2TRAIN_CSIM_LIB", env_lib)
    tcp = "127.0.0.1:0" if request.param == "tcp" else None
    sim = SimulatedBoard(data_dir=tmp_path / "board", meter="none", tcp=tcp)
    line = None
    url = sim.link
    if request.param == "uart115200":
        line = throttled_line(sim.link, 115200)
        url = line.path
    yield url, sim, line
    sim.stop()


def test_flash_train_ctrl_c_attach_stop_fetch(board, tmp_path):
    url, sim, line = board
    r = e2train("flash", "--board", url, "--bitstream-dir", str(ROOT / "bitstreams" / "sim"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["board"] == "sim"
    assert (Path(sim.data_dir) / "bitstreams" / "sim" / "manifest.json").exists()   # it came through the link

    host = subprocess.Popen([*E2TRAIN_AT_A_TERMINAL, "train", "--board", url, "--run-id", "r1",
                             "--set", "epochs=500", *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        seen = _wait_for(host, "epoch 1/", 180)          # the upload went through, training runs
        host.send_signal(signal.SIGINT)
        _, err = host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
    assert host.returncode == 130, seen + err
    last = err.strip().splitlines()[-1]
    assert "goes on on the board" in last and "e2train attach" in last and "Traceback" not in err

    st = e2train("status", "--board", url, "--run-id", "r1")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["run_state"] == "training"

    att = subprocess.Popen([*E2TRAIN_AT_A_TERMINAL, "attach", "--board", url, "--run-id", "r1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        caught = _wait_for(att, "epoch 2/", 120)
        att.send_signal(signal.SIGINT)
        att.communicate(timeout=60)
    finally:
        if att.poll() is None:
            att.kill()
    assert "r1: training" in caught and "epoch 1/" in caught    # caught up from the run's start

    stop = e2train("stop", "--board", url)
    assert stop.returncode == 0 and "r1 stopped" in stop.stdout, stop.stdout + stop.stderr
    out = tmp_path / "fetched"
    f = e2train("fetch", "--board", url, "--run-id", "r1", "--out", str(out))
    assert f.returncode == 0, f.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["results"]["stopped"] is True and rep["results"]["state"] == "stopped"
    assert 2 <= rep["results"]["summary"]["epochs"] < 500
    from e2train.core import run_record          # the run record beside it, the config as the host gave it
    rec = run_record.load(out)
    assert rec.config["epochs"] == 500 and rec.final["stopped"] is True and rec.run_id == "r1"
    assert [e["epoch"] for e in rec.epochs] == list(range(1, rep["results"]["summary"]["epochs"] + 1))
    if line is not None:
        assert line.bytes_per_second() <= 2 * 11520 * 1.05        # both directions, each at most 115200 baud


CFG = ["--run-id", "k1", "--set", "epochs=4", "--set", "checkpoint_every=5", "--quiet", *TINY]


def _final_weights(data_dir: Path) -> dict:
    arrays, _meta = ckpt.load(data_dir / "checkpoints" / "k1" / "checkpoint.npz")
    return arrays


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of the run, trained without interruption."""
    os.environ.setdefault("E2TRAIN_CSIM_LIB", _env().get("E2TRAIN_CSIM_LIB", ""))
    d = tmp_path_factory.mktemp("uninterrupted")
    with SimulatedBoard(data_dir=d, meter="none", tcp="127.0.0.1:0") as sim:
        r = e2train("train", "--board", sim.link, *CFG)
        assert r.returncode == 0, r.stderr
    return _final_weights(d)


@pytest.mark.parametrize("transport", ["tcp", "uart115200"])
def test_agent_killed_mid_run_and_restarted_resumes_to_identical_weights(tmp_path, uninterrupted, transport,
                                                                         throttled_line):
    """The host (`e2train train`) keeps going across an agent restart and resumes the run.
    TCP: the connection drops and comes back on the same port. UART: the line never drops
    (a USB UART stays open while the board reboots): the host notices the new agent by a
    status query after a silence. There the newest checkpoint is also lost with the power
    (only .prev and maybe an unfinished save remain), and the fallback is reported."""
    data = tmp_path / "b"
    tcp = "127.0.0.1:0" if transport == "tcp" else None
    sim = SimulatedBoard(data_dir=data, meter="none", tcp=tcp)
    line = throttled_line(sim.link, 115200) if transport != "tcp" else None
    url = line.path if line else sim.link
    host = subprocess.Popen([sys.executable, "-m", "e2train", "train", "--board", url, *CFG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    sim2 = None
    try:
        ck = data / "checkpoints" / "k1" / "checkpoint.npz"
        wait_for = ck if line is None else ckpt.prev_path(ck)
        end = time.monotonic() + 120
        while not wait_for.exists() and time.monotonic() < end and host.poll() is None:
            time.sleep(0.05)
        assert wait_for.exists(), "no checkpoint was written"
        sim.proc.kill()                                         # the board loses power
        sim.proc.wait()
        if line is None:
            sim2 = SimulatedBoard(data_dir=data, meter="none", tcp=sim.link[len("socket://"):])
        else:
            ck.unlink(missing_ok=True)                          # the newest checkpoint did not survive
            sim2 = SimulatedBoard(data_dir=data, meter="none")
            line.retarget(sim2.link)
        out, err = host.communicate(timeout=180)
    finally:
        if host.poll() is None:
            host.kill()
        if sim2 is not None:
            sim2.stop()
    assert host.returncode == 0, err
    assert "agent restarted" in err and "resuming run k1" in err and "Traceback" not in err
    if line is not None:
        assert "board warning: using" in err                   # the fallback reached the host
    got = _final_weights(data)
    assert sorted(got) == sorted(uninterrupted)
    # bit for bit (a layer's unused statistic is NaN in both, which == would call different)
    diff = [k for k in uninterrupted if uninterrupted[k].dtype != got[k].dtype or uninterrupted[k].shape != got[k].shape
            or uninterrupted[k].tobytes() != got[k].tobytes()]
    assert not diff, f"arrays differ after resume: {diff}"


def test_an_agent_killed_at_the_same_place_every_time_is_not_resumed_for_ever(tmp_path):
    """The board agent dies three times before the run's first checkpoint (as the kernel's
    out-of-memory killer would take it at the same step each time): the host resumes it twice,
    then ends with one line naming where the run stuck and what to change, exit 1."""
    os.environ.setdefault("E2TRAIN_CSIM_LIB", _env().get("E2TRAIN_CSIM_LIB", ""))
    data = tmp_path / "b"
    sims = [SimulatedBoard(data_dir=data, meter="none", tcp="127.0.0.1:0")]
    port = sims[0].link[len("socket://"):]
    # long epochs (batch 8) and no checkpoint before an epoch's end: each life dies at the start
    host = subprocess.Popen([sys.executable, "-m", "e2train", "train", "--board", sims[0].link, "--run-id", "s1",
                             "--set", "epochs=50", "--set", "batch_size=8", "--set", "checkpoint_every=0", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    seen = ""
    try:
        for life in range(3):
            seen += _wait_for(host, "s1: training ", 120)
            sims[-1].proc.kill()                                # the kernel kills the agent
            sims[-1].proc.wait()
            sims.append(SimulatedBoard(data_dir=data, meter="none", tcp=port))
        out, err = host.communicate(timeout=120)
    finally:
        if host.poll() is None:
            host.kill()
        sims[-1].stop()
    err = seen + err
    assert host.returncode == 1, err
    # nothing was saved: each restart starts the run again rather than asking for a resume
    assert err.count("starting run s1 again from the start") == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("e2train train: run s1 started 3 times from its start"), last
    assert "smaller batch_size" in last and "`e2train train --run-id s1` tries it again" in last
    assert not (data / "results" / "s1.json").exists()


def test_sigterm_stops_the_run_at_a_checkpoint_before_the_agent_exits(tmp_path):
    """`systemctl stop` or a reboot sends the agent SIGTERM: the run ends as `e2train stop` ends it,
    its checkpoint saved and its results stored (stopped), so `--resume` takes it up, and the agent
    exits cleanly rather than being cut off mid-step."""
    from e2train.link.client import BoardClient
    os.environ.setdefault("E2TRAIN_CSIM_LIB", _env().get("E2TRAIN_CSIM_LIB", ""))
    data = tmp_path / "b"
    sim = SimulatedBoard(data_dir=data, meter="none", tcp="127.0.0.1:0")
    try:
        with BoardClient(sim.link) as c:
            c.flash()
            from e2train.app.train_cli import dataset_npz
            c.upload_bytes("digits", dataset_npz("digits", None))
            c.train({"model": "resnet8", "width": 4, "epochs": 50, "progress_every": 2, "checkpoint_every": 0},
                    "digits", run_id="t1")
            end = time.monotonic() + 60
            while time.monotonic() < end and not any(e["event"] == "progress" for e in c.events(timeout=0.5)):
                pass
        sim.proc.send_signal(signal.SIGTERM)
        assert sim.proc.wait(60) == 0
    finally:
        if sim.proc.poll() is None:
            sim.proc.kill()
    res = json.loads((data / "results" / "t1.json").read_text())
    assert res["stopped"] is True and res["summary"]["epochs"] < 50
    assert ckpt.exists(data / "checkpoints" / "t1" / "checkpoint.npz")

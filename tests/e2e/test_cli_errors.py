"""Every failure of `train`, `flash`, `board`, `status`, `attach`, `fetch` ends in one line
naming the cause and the fix, with the exit code of its kind (e2train.app.exit_codes), and
no traceback. Host-side checks run before any port is opened; board-side refusals come
from a simulated board agent on loopback TCP."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from e2train.app import exit_codes as ec
from e2train.link.client import BoardClient, SimulatedBoard

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-tests"


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               E2TRAIN_TOKEN=TOKEN)
    lib = ROOT / "build" / "csim" / "libe2t_kernels.so"
    if "E2TRAIN_CSIM_LIB" not in env and lib.exists():
        env["E2TRAIN_CSIM_LIB"] = str(lib)
    return env


def e2train(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "e2train", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=ROOT)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "list.json").write_text("[1, 2]")
    (d / "empty").mkdir()
    sim = json.loads((ROOT / "bitstreams" / "sim" / "manifest.json").read_text())
    (d / "corrupt").mkdir()
    (d / "corrupt" / "manifest.json").write_text('{"format": ')
    (d / "otherabi").mkdir()
    (d / "otherabi" / "manifest.json").write_text(json.dumps(dict(sim, abi="0" * 64)))
    import hashlib
    (d / "pynq-z2").mkdir()
    bit, hwh = b"\x00" * 64, b"<hwh/>"
    (d / "pynq-z2" / "e2train.bit").write_bytes(bit)
    (d / "pynq-z2" / "e2train.hwh").write_bytes(hwh)
    (d / "pynq-z2" / "manifest.json").write_text(json.dumps(dict(
        sim, board="pynq-z2", bitstream={"file": "e2train.bit", "sha256": hashlib.sha256(bit).hexdigest()},
        hwh={"file": "e2train.hwh", "sha256": hashlib.sha256(hwh).hexdigest()})))
    return d


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    os.environ.setdefault("E2TRAIN_CSIM_LIB", _env().get("E2TRAIN_CSIM_LIB", ""))
    old = os.environ.get("E2TRAIN_TOKEN")
    os.environ["E2TRAIN_TOKEN"] = TOKEN                   # the agent reads its token from here
    try:
        with SimulatedBoard(data_dir=tmp_path_factory.mktemp("agent"), meter="none", tcp="127.0.0.1:0") as sim:
            yield sim
    finally:
        if old is None:
            os.environ.pop("E2TRAIN_TOKEN", None)
        else:
            os.environ["E2TRAIN_TOKEN"] = old


HOST_SIDE = [
    ("unknown --set key", ["train", "--set", "foo=1"], ec.EXIT_USAGE, "unknown config key"),
    ("bad --set value", ["train", "--set", "depth=abc"], ec.EXIT_USAGE, "'depth' = 'abc': must be an integer"),
    ("NaN learning rate", ["train", "--set", "lr=NaN"], ec.EXIT_USAGE, "'lr' = nan: must be finite"),
    ("--set without =", ["train", "--set", "epochs"], ec.EXIT_USAGE, "--set wants KEY=VALUE"),
    ("--config holding a list", ["train", "--config", "{d}/list.json"], ec.EXIT_USAGE, "holds a JSON list"),
    ("--config missing", ["train", "--config", "{d}/nope.json"], ec.EXIT_NOT_FOUND, "cannot read --config"),
    ("missing serial port", ["train", "--board", "/dev/ttyE2TRAINnone"], ec.EXIT_LINK, "cannot open the board link"),
    ("refused connection", ["train", "--board", "socket://127.0.0.1:{closed}"], ec.EXIT_LINK, "Connection refused"),
    ("missing data set", ["train", "--dataset", "cifar10", "--data-dir", "{d}/empty"], ec.EXIT_NOT_FOUND,
     "data set cifar10"),
    ("unknown data set", ["train", "--dataset", "mnist3d"], ec.EXIT_NOT_FOUND, "unknown data set"),
    ("missing bitstream directory", ["flash", "--bitstream-dir", "{d}/empty"], ec.EXIT_NOT_FOUND, "no manifest.json"),
    ("missing meter port", ["train", "--meter", "wattsup:/dev/ttyE2TRAINmeter"], ec.EXIT_METER,
     "power meter: /dev/ttyE2TRAINmeter does not exist"),
    ("--resume without --run-id", ["train", "--resume"], ec.EXIT_USAGE, "--resume needs --run-id"),
    ("board on a missing serial port", ["board", "--port", "/dev/ttyE2TRAINnone", "--sim", "--meter", "none"],
     ec.EXIT_LINK, "serial port: could not open port /dev/ttyE2TRAINnone"),
    ("board off loopback without token", ["board", "--tcp", "0.0.0.0:0", "--token", ""], ec.EXIT_USAGE,
     "without --token"),
    ("corrupt manifest", ["flash", "--bitstream-dir", "{d}/corrupt"], ec.EXIT_BITSTREAM, "not valid JSON"),
    ("manifest of another kernel interface", ["flash", "--bitstream-dir", "{d}/otherabi"], ec.EXIT_BITSTREAM,
     "different kernel interface"),
]

BOARD_SIDE = [
    ("bitstream not on the board", ["flash", "--bitstream", "nope"], ec.EXIT_NOT_FOUND, "bitstream not found"),
    ("pynq-z2 bitstream on the simulated board", ["flash", "--bitstream-dir", "{d}/pynq-z2"], ec.EXIT_BITSTREAM,
     "is a pynq-z2 bitstream, but this agent runs simulated"),
    ("attach to an unknown run", ["attach", "--run-id", "nosuch"], ec.EXIT_NOT_FOUND, "knows no run nosuch"),
    ("fetch an unknown run", ["fetch", "--run-id", "nosuch"], ec.EXIT_NOT_FOUND, "no results for nosuch"),
]


def _check_one_line(r, code, needle):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("e2train "), r.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case,args,code,needle", HOST_SIDE, ids=[c[0] for c in HOST_SIDE])
def test_host_side_failures_are_one_line_before_any_port_opens(files, case, args, code, needle):
    args = [a.format(d=files, closed=_closed_port()) for a in args]
    if args[0] == "train" and "--board" not in args:
        args += ["--board", "/dev/ttyE2TRAINnever-opened"]   # a config error must come before the port
    _check_one_line(e2train(*args), code, needle)


@pytest.mark.parametrize("case,args,code,needle", BOARD_SIDE, ids=[c[0] for c in BOARD_SIDE])
def test_board_refusals_are_one_line(agent, files, case, args, code, needle):
    args = [a.format(d=files) for a in args] + ["--board", agent.link]
    _check_one_line(e2train(*args), code, needle)


def test_busy_board_is_one_line(agent, files):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x_train=rng.normal(size=(64, 1, 8, 8)).astype(np.float32), y_train=np.arange(64) % 10,
             x_test=rng.normal(size=(16, 1, 8, 8)).astype(np.float32), y_test=np.arange(16) % 10)
    with BoardClient(agent.link, token=TOKEN) as c:
        c.flash()
        c.upload_bytes("tiny", buf.getvalue())
        run = c.train({"epochs": 10000, "depth": 8, "width": 4, "batch_size": 16}, "tiny", run_id="long")
    try:
        r = e2train("train", "--board", agent.link, "--set", "epochs=1", "--quiet")
        _check_one_line(r, ec.EXIT_BUSY, "run long is in progress")
        assert "e2train stop" in r.stderr
        # the busy run shows in status; its results are not there yet
        st = e2train("status", "--board", agent.link, "--run-id", run)
        assert st.returncode == 0 and json.loads(st.stdout)["run_state"] == "training"
        f = e2train("fetch", "--board", agent.link, "--run-id", run)
        _check_one_line(f, ec.EXIT_BUSY, "run long is still training")
        assert "e2train attach" in f.stderr and "e2train stop" in f.stderr
    finally:
        assert e2train("stop", "--board", agent.link).returncode == 0
    # stopped, it kept its checkpoint: a fresh start under its id is told to resume instead
    again = e2train("train", "--board", agent.link, "--run-id", run, "--set", "epochs=1", "--quiet")
    _check_one_line(again, ec.EXIT_USAGE, "run long already has a checkpoint: pass --resume")
    assert "fix the setting named" not in again.stderr


def test_wrong_token_is_one_line(tmp_path):
    # an agent of its own: the wrong token makes its peer (127.0.0.1) wait before the next try
    old = os.environ.get("E2TRAIN_TOKEN")
    os.environ["E2TRAIN_TOKEN"] = TOKEN
    try:
        with SimulatedBoard(data_dir=tmp_path, meter="none", tcp="127.0.0.1:0") as sim:
            r = e2train("status", "--board", sim.link, "--token", "wrong")
    finally:
        if old is None:
            os.environ.pop("E2TRAIN_TOKEN", None)
        else:
            os.environ["E2TRAIN_TOKEN"] = old
    _check_one_line(r, ec.EXIT_AUTH, "wrong or missing token")


def test_debug_shows_the_traceback():
    r = e2train("train", "--set", "lr=NaN", "--debug")
    assert r.returncode == ec.EXIT_USAGE and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("e2train train: config 'lr'")


def test_board_port_in_use_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as s:
        r = e2train("board", "--tcp", f"127.0.0.1:{s.getsockname()[1]}", "--sim", "--meter", "none")
    _check_one_line(r, ec.EXIT_IO, "in use")


def test_a_corrupt_or_foreign_bitstream_on_the_board_is_refused_with_its_code(agent, files):
    """The board's own check (a file damaged on its disk, or sent by another tool): refused
    with code bad-bitstream, not an internal error."""
    from e2train.link.client import BoardError
    with BoardClient(agent.link, token=TOKEN) as c:
        for d in ("corrupt", "otherabi"):
            c.upload_bytes("manifest.json", (files / d / "manifest.json").read_bytes(), kind="bitstream", bitstream=d)
            with pytest.raises(BoardError) as e:
                c.flash(d)
            assert e.value.code == "bad-bitstream", e.value


def test_a_host_command_without_its_package_names_the_extra(tmp_path):
    """`torch-train` where torch is not installed (a board, a board-only install): one line
    naming the package and the extra that installs it, exit 2, not an internal error."""
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"epochs": 1}))
    blocked = ("import runpy, sys; sys.modules['torch'] = None; "
               "sys.argv = ['e2train'] + sys.argv[1:]; runpy.run_module('e2train', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", blocked, "torch-train", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)
    _check_one_line(r, ec.EXIT_USAGE, "needs torch, which is not installed here")
    assert "pip install 'e2train[host]'" in r.stderr and "run this command on the host" in r.stderr


def test_every_optional_package_is_in_the_extra_it_names():
    """The fix the message gives must work: each package is listed in that extra of pyproject.toml."""
    import tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, (pip_name, extra) in ec.OPTIONAL_PACKAGES.items():
        listed = [d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in extras[extra]]
        assert pip_name.lower() in listed, (module, pip_name, extra, listed)
    msg, code = ec.describe(ModuleNotFoundError("No module named 'sklearn'", name="sklearn.datasets"))
    assert code == ec.EXIT_USAGE and "scikit-learn" in msg
    msg, code = ec.describe(ModuleNotFoundError("No module named 'nosuchthing'", name="nosuchthing"))
    assert code == ec.EXIT_INTERNAL            # an import of our own that fails is a bug, said so


@pytest.mark.parametrize("args, needle", [
    (["--tcp", "127.0.0.1:0", "--meter", "wattsup"], "for the simulated meter"),
    (["--pty", "--meter", "none"], "for the board link (--pty)"),
])
def test_no_pseudo_terminals_is_one_line_naming_them(tmp_path, capsys, monkeypatch, args, needle):
    """A bare chroot or a minimal container has no devpts: openpty fails with ENOENT, which must
    not read as a missing file."""
    from e2train.app.cli import main

    def no_pty():
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(os, "openpty", no_pty)
    code = main(["board", "--sim", "--data-dir", str(tmp_path / "bd"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ec.EXIT_IO, err
    assert len(err) == 1 and err[0].startswith("e2train board: cannot create a pseudo-terminal " + needle), err
    assert "mount one" in err[0] and "no such file" not in err[0]

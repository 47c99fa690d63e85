"""A board whose SD card fills: an upload that cannot fit is refused before its first byte, a
chunk that the disk refuses half way is taken back so the upload resumes whole, and a run whose
checkpoint cannot be written stops with one line that says what to free and how to resume."""
import base64
import builtins
import errno
import hashlib
import shutil

import pytest

from e2train.device import agent as agent_mod
from e2train.link.client import BoardClient, BoardError

from agent_fakes import _dataset_bytes, _drain


def test_an_upload_the_disk_cannot_hold_is_refused_before_its_first_byte(served, monkeypatch):
    agent, path = served
    blob = _dataset_bytes()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=len(blob) + agent_mod.DISK_MARGIN_BYTES - 1))
    with BoardClient(path) as c:
        with pytest.raises(BoardError) as e:
            c.upload_bytes("d", blob)
    assert e.value.code == "no-space" and "\n" not in str(e.value)
    assert "MB are free" in str(e.value) and "--data-dir" in str(e.value)
    assert not any((agent.data_dir / "datasets").iterdir())          # nothing started, nothing left


def test_a_chunk_the_full_disk_refuses_is_taken_back_and_the_upload_resumes_whole(served, monkeypatch):
    agent, path = served
    blob = _dataset_bytes(64)
    digest = hashlib.sha256(blob).hexdigest()
    half = len(blob) // 2
    full = {"on": False}
    real_open = builtins.open

    class HalfWriter:
        """The disk fills in the middle of the write: half the bytes land, then ENOSPC."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):                     # truncate and the rest: the file's own
            return getattr(self.f, name)

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def opener(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return HalfWriter(f) if full["on"] and mode == "ab" and str(file).endswith(".part") else f

    monkeypatch.setattr(agent_mod, "open", opener, raising=False)
    enc = base64.b64encode
    with BoardClient(path) as c:
        assert c.request("upload", name="d", total=len(blob), sha256=digest, offset=0,
                         data=enc(blob[:half]).decode())["received"] == half
        full["on"] = True
        with pytest.raises(BoardError) as e:
            c.request("upload", name="d", total=len(blob), sha256=digest, offset=half, data=enc(blob[half:]).decode())
        assert e.value.code == "no-space" and "is full" in str(e.value)
        assert (agent.data_dir / "datasets" / ".d.npz.part").stat().st_size == half     # the half chunk went
        full["on"] = False                                                               # space freed
        assert c.request("upload_status", name="d", total=len(blob), sha256=digest)["received"] == half
        rep = c.request("upload", name="d", total=len(blob), sha256=digest, offset=half, data=enc(blob[half:]).decode())
    assert rep["stored"] == "d.npz" and (agent.data_dir / "datasets" / "d.npz").read_bytes() == blob


class DiskFullTrainer:
    """A run whose first checkpoint the full disk refuses."""

    def __init__(self, config, on_event):
        self.on_event = on_event

    def run(self):
        self.on_event({"event": "started"})
        raise OSError(errno.ENOSPC, "No space left on device", "checkpoint.npz")

    def stop(self):
        pass


def test_a_run_whose_checkpoint_the_disk_refuses_says_what_to_free_and_how_to_resume(served, tmp_path, monkeypatch):
    agent, path = served
    monkeypatch.setattr(agent_mod, "make_trainer", lambda config, data, backend, **k: DiskFullTrainer(config, k["on_event"]))
    f = tmp_path / "d.npz"
    f.write_bytes(_dataset_bytes())
    with BoardClient(path) as c:
        c.flash()
        c.upload_file("d", f)
        c.train({}, "d", run_id="full")
        err = next(e for e in _drain(c, 10.0, until="error") if e["event"] == "error")
    assert err["run_id"] == "full" and "\n" not in err["error"]
    assert "could not write to its disk" in err["error"] and "is full" in err["error"]
    assert "`e2train train --run-id full --resume`" in err["error"]
    assert agent.cmd_status("full")["state"] == "failed"


def test_an_upload_goes_on_where_it_ended_after_the_agent_restarts(tmp_path, fake_board):
    """The board loses power half way through a long upload: the new agent finds the bytes and
    what the upload announced, and the host's upload_status resumes there, not at 0."""
    blob = _dataset_bytes(64)
    digest = hashlib.sha256(blob).hexdigest()
    half = len(blob) // 2
    enc = lambda b: base64.b64encode(b).decode()                       # noqa: E731
    first = agent_mod.Agent(tmp_path / "board", simulated=True)
    assert first.cmd_upload("d", len(blob), digest, 0, enc(blob[:half]))["received"] == half
    again = agent_mod.Agent(tmp_path / "board", simulated=True)          # restarted: nothing in memory
    assert again.cmd_upload_status("d", len(blob), "0" * 64) == {"received": 0}     # another file: from 0
    assert again.cmd_upload_status("d", len(blob), digest) == {"received": half}
    assert again.cmd_upload("d", len(blob), digest, half, enc(blob[half:]))["stored"] == "d.npz"
    assert (tmp_path / "board" / "datasets" / "d.npz").read_bytes() == blob
    left = sorted(p.name for p in (tmp_path / "board" / "datasets").iterdir())
    assert left == [".d.npz.sha256", "d.npz"]                            # no part, no note of it


def test_the_host_ends_a_failed_run_with_the_board_error_in_one_line(served, tmp_path, monkeypatch):
    """`e2train train` on a run that fails: exit 1 with the board's error, not a refusal to fetch
    results that a failed run never wrote; and `fetch` of it says it failed."""
    from e2train.app import train_cli
    from e2train.app.exit_codes import EXIT_RUN_FAILED, CliError
    agent, path = served
    monkeypatch.setattr(agent_mod, "make_trainer", lambda config, data, backend, **k: DiskFullTrainer(config, k["on_event"]))
    with BoardClient(path) as c:
        with pytest.raises(CliError) as e:
            train_cli.train_session(c, {}, dataset="d", dataset_bytes=_dataset_bytes(), run_id="full",
                                    out=str(tmp_path / "report"), quiet=True)
        assert e.value.code == EXIT_RUN_FAILED and "\n" not in str(e.value)
        assert str(e.value).startswith("run full failed on the board: run full stopped: the board could not write")
        with pytest.raises(BoardError, match="no results for full: it failed"):
            c.results("full")
    # `attach` to it afterwards says the same (the error comes from the board's event log)
    args = train_cli.argparse.Namespace(board=path, baud=115200, token=None, reconnect=5.0, run_id="full",
                                        quiet=True, out=str(tmp_path / "attached"))
    with pytest.raises(CliError) as e:
        train_cli.run_attach(args)
    assert e.value.code == EXIT_RUN_FAILED and "run full failed on the board: run full stopped" in str(e.value)

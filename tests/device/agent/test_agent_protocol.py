"""The board agent's link protocol over a real pseudo-terminal, with a stand-in trainer.

The stand-in replaces only `open_board`/`make_trainer`; everything else (pty, framing,
dispatch, uploads, events, catch-up, results on disk) is the code that runs on a board.
"""
import base64
import hashlib
import json
import os
import threading
import time

import numpy as np
import pytest

from e2train.device import agent as agent_mod
from e2train.link import protocol as link
from e2train.link.client import BoardClient, BoardError

from agent_fakes import FakeTrainer, _dataset_bytes, _drain


def _raw(path):
    """A raw pyserial connection to send arbitrary bytes."""
    import serial
    return serial.serial_for_url(path, timeout=2)


def _read_msgs(port, n, timeout=5.0):
    reader, out, end = link.LineReader(), [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        data = port.read(port.in_waiting or 1)
        for line in reader.feed(data):
            out.append(json.loads(line))
    return out


def test_hello_reports_protocol_and_state(served):
    agent, path = served
    with BoardClient(path) as c:
        assert c.hello["protocol"] == link.PROTOCOL_VERSION
        assert c.hello["state"] == "idle"
        assert c.hello["flashed"] is None


def test_garbage_truncated_and_unknown_messages_get_errors_and_agent_keeps_serving(served):
    agent, path = served
    with _raw(path) as p:
        p.write(b"\x00\xffgarbage\n")                                         # not JSON, no id
        p.write(b'{"v":1,"type":"cmd","id":3,"cmd":"hel\n')                    # truncated line
        p.write(b'{"v":99,"type":"cmd","id":4,"cmd":"hello"}\n')               # unknown version
        p.write(b'{"v":1,"type":"cmd","id":5,"cmd":"format_disk"}\n')          # unknown command
        p.write(b'{"v":1,"type":"cmd","id":6,"cmd":"upload","name":"x"}\n')    # missing arguments
        p.write(b'[1,2,3]\n')                                                   # not an object
        p.write(b'{"v":1,"type":"cmd","id":7,"cmd":"hello"}\n')                # still serving
        msgs = _read_msgs(p, 7)
    errors = [m for m in msgs if m["type"] == "event" and m["event"] == "error"]
    replies = {m["id"]: m for m in msgs if m["type"] == "reply"}
    assert len(errors) == 3 and {e["code"] for e in errors} == {"bad-json", "bad-message"}
    assert replies[4]["ok"] is False and replies[4]["code"] == "bad-version"
    assert replies[5]["code"] == "unknown-command" and "format_disk" in replies[5]["error"]
    assert replies[6]["code"] == "bad-args"
    assert replies[7]["ok"] is True and replies[7]["protocol"] == 1


def test_overlong_line_is_dropped_with_an_error(served):
    agent, path = served
    with _raw(path) as p:
        p.write(b"x" * (link.MAX_LINE + 10) + b"\n")
        p.write(b'{"v":1,"type":"cmd","id":1,"cmd":"status"}\n')
        msgs = _read_msgs(p, 2, timeout=10)
    assert msgs[0]["event"] == "error" and msgs[0]["code"] == "too-long"
    assert msgs[1]["ok"] is True


def test_upload_checks_checksum_size_and_name(served):
    agent, path = served
    blob = _dataset_bytes()
    good = hashlib.sha256(blob).hexdigest()
    b64 = base64.b64encode(blob).decode()
    with BoardClient(path) as c:
        with pytest.raises(BoardError, match="checksum mismatch"):
            c.request("upload", name="d", total=len(blob), sha256="0" * 64, offset=0, data=b64)
        with pytest.raises(BoardError, match="bad data set name"):
            c.request("upload", name="../../etc/passwd", total=len(blob), sha256=good, offset=0, data=b64)
        with pytest.raises(BoardError, match="outside"):
            c.request("upload", name="d", total=agent_mod.MAX_UPLOAD + 1, sha256=good, offset=0, data=b64)
        with pytest.raises(BoardError, match="not valid base64"):
            c.request("upload", name="d", total=len(blob), sha256=good, offset=0, data="@@@")
        with pytest.raises(BoardError, match="expected offset"):
            c.request("upload", name="d", total=len(blob), sha256=good, offset=0, data=b64[:8])
            c.request("upload", name="d", total=len(blob), sha256=good, offset=100, data=b64[:8])
        rep = c.request("upload", name="d", total=len(blob), sha256=good, offset=0, data=b64)
        assert rep["stored"] == "d.npz"
    stored = sorted(p.name for p in (agent.data_dir / "datasets").iterdir())
    # nothing written outside, no partial left; beside the file the note of its sha256
    assert stored == [".d.npz.sha256", "d.npz"]


def test_upload_of_a_non_dataset_is_refused(served):
    agent, path = served
    blob = b"not an npz at all"
    with BoardClient(path) as c:
        with pytest.raises(BoardError, match="not a readable npz"):
            c.request("upload", name="junk", total=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                      offset=0, data=base64.b64encode(blob).decode())


def test_train_requires_flash_and_dataset_and_valid_config(served, tmp_path):
    agent, path = served
    f = tmp_path / "d.npz"
    f.write_bytes(_dataset_bytes())
    with BoardClient(path) as c:
        with pytest.raises(BoardError, match="send flash first"):
            c.train({"epochs": 2}, "d")
        c.flash()
        with pytest.raises(BoardError, match="not uploaded"):
            c.train({"epochs": 2}, "d")
        c.upload_file("d", f)
        with pytest.raises(BoardError, match="bad training config"):
            c.train({"epochs": 0}, "d")
        assert c.request("status")["state"] == "idle"


def test_link_drop_does_not_stop_training_and_host_catches_up(served, tmp_path):
    agent, path = served
    f = tmp_path / "d.npz"
    f.write_bytes(_dataset_bytes())
    c = BoardClient(path)
    c.flash()
    c.upload_file("d", f)
    run_id = c.train({"epochs": 12, "delay": 0.1}, "d", run_id="r1")
    first = next(ev for ev in _drain(c, 30.0) if ev["event"] == "epoch")
    c.close()                                   # the cable is pulled
    time.sleep(0.6)                             # epochs happen while nobody listens
    c.reconnect()
    seen = [first] + list(_drain(c, 60.0, until="finished"))
    epochs = [e["epoch"] for e in seen if e["event"] == "epoch"]
    trace = [(e["seq"], e["event"], e.get("epoch")) for e in seen]
    assert epochs == list(range(12)), f"events seen (seq, event, epoch): {trace}"   # none lost, in order
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))
    res = c.results(run_id)
    assert res["summary"]["test_acc"] == 0.9 and res["run_id"] == "r1"
    # results are kept on the board until fetched with delete
    assert c.results(run_id, delete=True)["run_id"] == "r1"
    with pytest.raises(BoardError, match="no results"):
        c.results(run_id)
    c.close()


def test_stop_ends_a_run_early(served, tmp_path):
    agent, path = served
    f = tmp_path / "d.npz"
    f.write_bytes(_dataset_bytes())
    with BoardClient(path) as c:
        c.flash()
        c.upload_file("d", f)
        c.train({"epochs": 1000, "delay": 0.05}, "d", run_id="long")
        with pytest.raises(BoardError, match="in progress"):
            c.train({"epochs": 2}, "d")
        time.sleep(0.2)
        assert c.request("stop")["state"] == "stopping"
        evs = list(_drain(c, 60.0, until="finished"))
        assert evs[-1]["event"] == "finished"
        assert c.request("status")["state"] == "stopped"
        assert c.results("long")["stopped"] is True


# Generous bounds: each drain returns at its event, so only a busy machine (a fresh clone
# installing beside the tests) ever waits long.
def test_token_required_over_tcp(tmp_path, fake_board, serve_agent):
    agent = agent_mod.Agent(tmp_path / "b", token="s3cret")
    url = serve_agent(agent, agent_mod.serve_tcp, "127.0.0.1", 0)
    with pytest.raises(BoardError, match="wrong or missing token"):
        BoardClient(url)
    agent.auth_failures.clear()                 # the back-off after a wrong token: tests/device/agent/test_agent_security.py
    with BoardClient(url, token="s3cret") as c:
        assert c.request("status")["state"] == "idle"
    with _raw(url) as p:                 # a connection that skips hello
        p.write(b'{"v":1,"type":"cmd","id":1,"cmd":"flash"}\n')
        rep = _read_msgs(p, 1)[0]
    assert rep["code"] == "unauthorised"


def test_refuses_to_listen_off_loopback_without_token(capsys):
    rc = agent_mod.main(["--tcp", "0.0.0.0:0"])
    assert rc == 2
    assert "without --token" in capsys.readouterr().err


def test_a_connection_closed_under_a_write_is_a_dropped_link_not_a_board_error(tmp_path):
    """The board's trainer writes its events from its own thread while the serving thread may
    close the connection (the host leaves, or reconnects and displaces it). A write or read on a
    stream whose socket was closed under it is a closed link (LinkError, which the agent's event
    path absorbs: the host catches up later), not a ValueError that ends the training run."""
    import socket
    a, b = socket.socketpair()
    stream = link.SocketStream(a)
    a.close()                                   # closed by another thread: fileno() is -1
    with pytest.raises(link.LinkError, match="link closed"):
        stream.write(b"x" * 10)
    with pytest.raises(link.LinkError, match="link closed"):
        stream.read(0.01)
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    agent.sink = lambda ev: stream.write(link.encode(ev))
    agent.emit("epoch", run_id="r1", epoch=2)   # must not raise: the run goes on
    assert agent.events[-1]["event"] == "epoch"
    b.close()


def test_a_data_set_the_board_cannot_hold_is_refused_before_it_is_loaded(served, tmp_path, monkeypatch):
    """Its size comes from the arrays' headers (nothing decompressed): images as float32, labels
    as int64, plus the stored arrays where they are of another type. Past 75% of the memory the
    kernel reports available, the upload is refused (the part removed) and so is a run of a data
    set already stored, in one line that says what to do."""
    agent, path = served
    blob = _dataset_bytes()
    f = tmp_path / "d.npz"
    f.write_bytes(blob)
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    kept = {k: np.dtype(np.float32 if k.startswith("x_") else np.int64) for k in arrays}
    need = sum(a.size * kept[k].itemsize + (0 if a.dtype == kept[k] else a.nbytes) for k, a in arrays.items())
    assert agent_mod.dataset_memory_bytes(f) == need
    u8 = tmp_path / "u8.npz"
    np.savez_compressed(u8, **dict(arrays, x_train=np.zeros(arrays["x_train"].shape, np.uint8)))
    assert agent_mod.dataset_memory_bytes(u8) == need + arrays["x_train"].size     # no table: a float32 copy
    assert agent_mod.load_dataset_npz(f, mem_available=None)[0].shape == arrays["x_train"].shape

    with pytest.raises(agent_mod.CommandError, match=r"needs 0 MiB in memory, more than 75% of the 0 MiB") as e:
        agent_mod.load_dataset_npz(f, mem_available=need)
    assert e.value.code == "dataset-too-large" and "simulated board on the host" in str(e.value)
    agent_mod.load_dataset_npz(f, mem_available=2 * need)                 # 50%: kept

    monkeypatch.setattr(agent_mod, "mem_available_bytes", lambda: need)
    with BoardClient(path) as c:
        with pytest.raises(BoardError, match="this board has available"):
            c.request("upload", name="big", total=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                      offset=0, data=base64.b64encode(blob).decode())
    assert not any(p.name.startswith("big") for p in (agent.data_dir / "datasets").iterdir())


def _pixel_arrays(n=8, channels=3):
    rng = np.random.default_rng(1)
    table = np.sort(rng.normal(size=(channels, 256)), axis=1).astype(np.float32)
    # int64 labels, as the trainer keeps them (a 32-bit ARM's default int would add a stored copy)
    return {"x_train": rng.integers(0, 256, (n, channels, 8, 8), dtype=np.uint8),
            "y_train": np.arange(n, dtype=np.int64) % 10,
            "x_test": rng.integers(0, 256, (4, channels, 8, 8), dtype=np.uint8), "y_test": np.arange(4, dtype=np.int64),
            "pixel_table": table}


def test_a_data_set_of_pixel_codes_is_held_a_byte_a_pixel(tmp_path):
    """8-bit codes with their pixel_table (what `e2train train` uploads for CIFAR, MNIST, digits)
    are sized and kept as codes: a quarter of the float32 images' memory, so a set four times
    larger fits. What the loader returns is the Pixels the trainer standardises per batch."""
    from e2train.core.pixels import Pixels
    arrays = _pixel_arrays()
    f = tmp_path / "px.npz"
    np.savez_compressed(f, **arrays)
    labels = 8 * (arrays["y_train"].size + arrays["y_test"].size)
    need = arrays["x_train"].size + arrays["x_test"].size + arrays["pixel_table"].nbytes + labels
    assert agent_mod.dataset_memory_bytes(f) == need
    as_floats = 4 * (arrays["x_train"].size + arrays["x_test"].size) + labels
    agent_mod.load_dataset_npz(f, mem_available=int(need / 0.75) + 1)        # fits in what floats would not
    assert as_floats > 0.75 * (need / 0.75 + 1)
    xtr, ytr, xte, yte = agent_mod.load_dataset_npz(f, mem_available=None)
    assert isinstance(xtr, Pixels) and isinstance(xte, Pixels)
    assert np.array_equal(xtr.codes, arrays["x_train"]) and np.array_equal(xte.table, arrays["pixel_table"])
    assert np.array_equal(ytr, arrays["y_train"]) and np.array_equal(yte, arrays["y_test"])


@pytest.mark.parametrize("change, match", [
    ({"pixel_table": np.zeros((2, 256), np.float32)}, r"pixel_table must be 3 x 256"),
    ({"pixel_table": np.full((3, 256), np.nan, np.float32)}, r"pixel_table must hold finite floats"),
    ({"pixel_table": -np.arange(3 * 256, dtype=np.float32).reshape(3, 256)}, r"must not decrease"),
    ({"x_train": np.zeros((8, 3, 8, 8), np.float32)}, r"pixel codes must be uint8 NCHW"),
    ({"pixel_table": None}, r"8-bit images without a pixel_table .* upload it with `e2train train`"),
])
def test_a_bad_pixel_data_set_is_refused_in_one_line(tmp_path, change, match):
    arrays = {k: v for k, v in dict(_pixel_arrays(), **change).items() if v is not None}
    f = tmp_path / "bad.npz"
    np.savez_compressed(f, **arrays)
    with pytest.raises(agent_mod.CommandError, match=match) as e:
        agent_mod.load_dataset_npz(f, mem_available=None)
    assert e.value.code == "bad-dataset" and "\n" not in str(e.value)


def test_memory_running_low_during_a_run_is_warned_once(served, tmp_path, monkeypatch):
    """Below LOW_MEMORY_BYTES available during a run the host hears one warning naming what to
    change; above it, none."""
    agent, path = served
    f = tmp_path / "d.npz"
    f.write_bytes(_dataset_bytes())
    avail = {"bytes": 200 << 20}
    monkeypatch.setattr(agent_mod, "mem_available_bytes", lambda: avail["bytes"])
    with BoardClient(path) as c:
        c.flash()
        c.upload_file("d", f)
        c.train({"epochs": 3, "delay": 0.02}, "d", run_id="roomy")
        seen = list(_drain(c, 30.0, until="finished"))
        assert not [e for e in seen if e["event"] == "warning"]
        avail["bytes"] = 20 << 20
        c.train({"epochs": 3, "delay": 0.02}, "d", run_id="tight")
        seen = list(_drain(c, 30.0, until="finished"))
    warned = [e for e in seen if e["event"] == "warning"]
    assert len(warned) == 1 and warned[0]["run_id"] == "tight"
    assert "20 MiB of memory available during run tight (below 32 MiB)" in warned[0]["message"]
    assert "smaller batch_size" in warned[0]["message"]
    assert warned[0]["mem_available"] == 20 << 20          # the figure the host names if the agent dies


def test_a_run_without_results_is_interrupted_only_when_it_saved_a_checkpoint(tmp_path):
    """After a restart, `status --run-id` tells a run that can be resumed (a checkpoint, its .prev
    or a finished save's temporary file) from one that stopped before its first save, which the
    host starts again instead."""
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    d = tmp_path / "board" / "checkpoints" / "r1"
    assert agent.cmd_status("r1")["run_state"] == "unknown"
    d.mkdir(parents=True)
    (d / "run.json").write_text("{}")                   # written when the run started
    assert agent.cmd_status("r1")["run_state"] == "unsaved"
    (d / "checkpoint.npz.prev").write_bytes(b"kept from the save before")
    assert agent.cmd_status("r1")["run_state"] == "interrupted"
    (tmp_path / "board" / "results" / "r1.json").write_text('{"stopped": false}')
    assert agent.cmd_status("r1")["run_state"] == "finished"

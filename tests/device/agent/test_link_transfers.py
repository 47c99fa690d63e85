"""Transfers sized for real lines: chunk and slice sizes from the baud rate, long replies in
parts, uploads checked per chunk (CRC32) and resumed after a drop, events without seq."""
import base64
import time
import hashlib
import zlib

import pytest

from e2train.device import agent as agent_mod
from e2train.link import protocol as link
from e2train.link.client import BoardClient, BoardError


@pytest.mark.parametrize("baud", [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600])
def test_chunks_and_write_slices_fit_their_timeouts_at_every_baud(baud):
    # an upload chunk's whole line (base64 + the JSON around it) within the chunk time
    raw = link.upload_chunk_bytes(baud)
    line = len(link.encode(link.command(1 << 30, "upload", name="n" * 64, total=1 << 28, sha256="0" * 64,
                                        offset=1 << 28, data=base64.b64encode(b"\0" * raw).decode(),
                                        crc32=0xFFFFFFFF, kind="bitstream", bitstream="b" * 64)))
    seconds = link.transfer_seconds(line, baud)
    assert seconds <= link.CHUNK_SECONDS * 1.1, (baud, line, seconds)
    assert seconds < link.WRITE_TIMEOUT * 2                      # far from the reply timeout too
    # each write call within half its timeout
    assert link.transfer_seconds(link.write_slice_bytes(baud), baud) <= link.WRITE_TIMEOUT / 2
    # the case: the 262 KB line that failed after 2 s at 115200 goes in slices
    n_slices = -(-262_000 // link.write_slice_bytes(115200))
    assert n_slices > 1
    assert link.upload_chunk_bytes(None) == link.UPLOAD_CHUNK_MAX    # TCP: big chunks


def test_a_long_reply_goes_in_parts_and_is_joined():
    msg = link.reply(7, True, events=[{"seq": i, "text": "x" * 50} for i in range(200)])
    lines = link.encode_reply(msg, part_chars=1000)
    assert len(lines) > 10 and all(len(ln) < 1200 for ln in lines)
    asm = link.PartAssembler()
    got = [asm.feed(link.decode(ln.rstrip(b"\n"))) for ln in lines]
    assert got[:-1] == [None] * (len(lines) - 1) and got[-1] == msg
    # a lost part is an error naming it, not a wrong reply
    asm = link.PartAssembler()
    asm.feed(link.decode(lines[0].rstrip(b"\n")))
    with pytest.raises(link.ProtocolError, match="out of order"):
        asm.feed(link.decode(lines[2].rstrip(b"\n")))


@pytest.fixture
def served(tmp_path, fake_board, serve_agent):
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    return agent, serve_agent(agent, agent_mod.serve_pty)


def test_long_replies_reach_the_host_whole(served, monkeypatch):
    agent, path = served
    real = link.encode_reply
    parts = []

    def small_parts(msg, part_chars=300):
        lines = real(msg, part_chars)
        parts.append(len(lines))
        return lines
    monkeypatch.setattr(link, "encode_reply", small_parts)
    for i in range(120):
        agent.emit("progress", step=i, note="y" * 40)
    with BoardClient(path) as c:
        c.pending_events.clear()
        c.last_seq = 0
        assert c.catch_up(0) == 120
        assert [ev["step"] for ev in c.events(timeout=0)] == list(range(120))
    assert max(parts) > 20                               # the events reply did go in parts


def _blob(n=50_000):
    return bytes(range(256)) * (n // 256)


def test_upload_resumes_from_the_boards_offset_after_a_drop(served):
    agent, path = served
    blob = _blob()
    sent = []
    with BoardClient(path, baud=115200) as c:            # a pty path: sized as a 115200 line
        real = c.request

        def request(cmd, timeout=None, **args):
            if cmd == "upload":
                sent.append(args["offset"])
                if len(sent) == 2:                       # the cable is pulled mid-upload
                    c.stream.close()
                    raise link.LinkError("link closed")
            return real(cmd, timeout, **args)
        c.request = request
        c.upload_bytes("e2train.bit", blob, kind="bitstream", bitstream="b1")
    step = link.upload_chunk_bytes(115200)
    assert sent[:3] == [0, step, step]                   # the dropped chunk again, not from 0
    assert (agent.data_dir / "bitstreams" / "b1" / "e2train.bit").read_bytes() == blob


def test_a_chunk_damaged_on_the_line_is_sent_again(served):
    agent, path = served
    blob = _blob()
    codes = []
    with BoardClient(path) as c:
        real = c.request

        def request(cmd, timeout=None, **args):
            if cmd == "upload" and args["offset"] > 0 and not codes:
                bad = bytearray(base64.b64decode(args["data"]))
                bad[10] ^= 0x40                          # one bit flipped in transit
                try:
                    return real(cmd, timeout, **dict(args, data=base64.b64encode(bytes(bad)).decode()))
                except BoardError as e:
                    codes.append(e.code)
                    raise
            return real(cmd, timeout, **args)
        c.request = request
        c.upload_bytes("e2train.bit", blob, kind="bitstream", bitstream="b2")
    assert codes == ["bad-crc"]
    assert hashlib.sha256((agent.data_dir / "bitstreams" / "b2" / "e2train.bit").read_bytes()).hexdigest() == \
        hashlib.sha256(blob).hexdigest()


def test_upload_status_and_crc_are_checked_by_the_board(served):
    agent, path = served
    blob = b"abcdef" * 100
    digest = hashlib.sha256(blob).hexdigest()
    with BoardClient(path) as c:
        assert c.request("upload_status", name="d", total=len(blob), sha256=digest)["received"] == 0
        c.request("upload", name="d", total=len(blob), sha256=digest, offset=0,
                  data=base64.b64encode(blob[:100]).decode(), crc32=zlib.crc32(blob[:100]))
        assert c.request("upload_status", name="d", total=len(blob), sha256=digest)["received"] == 100
        assert c.request("upload_status", name="d", total=len(blob), sha256="1" * 64)["received"] == 0
        with pytest.raises(BoardError, match="CRC32") as e:
            c.request("upload", name="d", total=len(blob), sha256=digest, offset=100,
                      data=base64.b64encode(blob[100:200]).decode(), crc32=zlib.crc32(blob[100:200]) ^ 1)
        assert e.value.code == "bad-crc"
        assert c.request("upload_status", name="d", total=len(blob), sha256=digest)["received"] == 100
        with pytest.raises(BoardError, match="bad bitstream file"):
            c.request("upload", name="../../x", total=3, sha256=digest, offset=0, data="YWJj",
                      kind="bitstream", bitstream="b")


def test_events_without_seq_do_not_crash_the_host(served):
    agent, path = served
    with BoardClient(path) as c:
        # events as another tool or an older agent might send them: no seq, a seq that is not a number
        c._take_event({"v": 1, "type": "event", "event": "warning", "message": "no seq here"})
        c._take_event({"v": 1, "type": "event", "seq": "7", "event": "progress"})
        agent.emit("epoch", epoch=0)
        got = []
        for _ in range(50):                    # up to 10 s on a busy machine; ends at the event
            got += list(c.events(timeout=0.2))
            if any(ev.get("event") == "epoch" for ev in got):
                break
    assert [ev["event"] for ev in got][:2] == ["warning", "progress"]
    assert any(ev.get("event") == "epoch" for ev in got)


def test_the_host_notices_a_restarted_agent(served):
    agent, path = served
    with BoardClient(path) as c:
        for i in range(5):
            agent.emit("progress", step=i)
        deadline = time.monotonic() + 10      # however busy this machine is: wait for the events
        while c.last_seq < 5 and time.monotonic() < deadline:
            list(c.events(timeout=0.2))
        assert c.last_seq >= 5 and not c.agent_restarted
        # the agent restarts (a new process: new session, seqs from 1) while the link stays up
        agent.session, agent.seq, agent.events = "new-session", 0, []
        c.check_session()
        assert c.agent_restarted and c.last_seq == 0 and c.session == "new-session"
        agent.emit("started", run_id="r")
        evs = []
        for _ in range(50):                    # up to 10 s on a busy machine; ends at the event
            evs += list(c.events(timeout=0.2))
            if evs:
                break
        assert [ev["seq"] for ev in evs] == [1]          # the new agent's events are not ignored


def _npz(seed: int) -> bytes:
    import io

    import numpy as np
    rng, buf = np.random.default_rng(seed), io.BytesIO()
    np.savez_compressed(buf, x_train=rng.normal(size=(6, 1, 8, 8)).astype(np.float32), y_train=np.arange(6),
                        x_test=rng.normal(size=(2, 1, 8, 8)).astype(np.float32), y_test=np.arange(2))
    return buf.getvalue()


def test_a_file_the_board_already_keeps_is_not_sent_again(served, monkeypatch):
    """Same name, size and sha256 as a kept file: upload_status says it is all there and the
    host sends no chunk (a CIFAR-10 upload is not repeated for every run). The sha256 comes from
    a note taken when the file was kept; a file changed since (its mtime moved) is hashed again,
    and a file whose bytes differ is sent whole."""
    import os
    agent, path = served
    blob = _npz(0)
    kept = agent.data_dir / "datasets" / "d.npz"
    note = kept.with_name(".d.npz.sha256")
    with BoardClient(path) as c:
        offsets = []
        real = c.request

        def counting(cmd, **kw):
            if cmd == "upload":
                offsets.append(kw["offset"])
            return real(cmd, **kw)
        monkeypatch.setattr(c, "request", counting)
        assert c.upload_bytes("d", blob) is True and offsets == [0] and note.is_file()
        offsets.clear()
        assert c.upload_bytes("d", blob) is False and offsets == []
        note.unlink()                                     # no note: hashed again, the same answer, noted
        assert c.upload_bytes("d", blob) is False and offsets == [] and note.is_file()
        data = bytearray(kept.read_bytes())
        data[-1] ^= 1                                     # the kept file changed on the board, same size
        kept.write_bytes(bytes(data))
        st = kept.stat()
        os.utime(kept, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert c.upload_bytes("d", blob) is True and offsets == [0]
        assert kept.read_bytes() == blob
        offsets.clear()
        other = _npz(1)                                   # other content under the same name
        assert c.upload_bytes("d", other) is True and offsets == [0] and kept.read_bytes() == other

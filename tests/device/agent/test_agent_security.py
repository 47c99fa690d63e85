"""The TCP agent's defences, on loopback: the owner cannot be displaced by a connection that
has no token, wrong tokens back off exponentially per peer, uploads are bounded."""
import base64
import hashlib
import time
import zlib

import pytest

from e2train.device import agent as agent_mod
from e2train.link import protocol as link
from e2train.link.client import BoardClient, BoardError


@pytest.fixture
def tcp_agent(tmp_path, fake_board, serve_agent):
    agent = agent_mod.Agent(tmp_path / "b", token="s3cret")
    return agent, serve_agent(agent, agent_mod.serve_tcp, "127.0.0.1", 0)


def _raw(url):
    import serial
    return serial.serial_for_url(url, timeout=2)


def _read_msgs(port, n, timeout=5.0):
    import json
    reader, out, end = link.LineReader(), [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        for line in reader.feed(port.read(port.in_waiting or 1)):
            out.append(json.loads(line))
    return out


def test_a_connection_without_token_cannot_displace_the_owner(tcp_agent):
    agent, url = tcp_agent
    with BoardClient(url, token="s3cret") as owner:
        owner.flash()
        strangers = [_raw(url) for _ in range(3)]
        for i, p in enumerate(strangers):
            p.write(b'{"v":1,"type":"cmd","id":1,"cmd":"hello"}\n')      # no token
            p.write(b'{"v":1,"type":"cmd","id":2,"cmd":"stop"}\n')
            reps = {m["id"]: m for m in _read_msgs(p, 2) if m["type"] == "reply"}
            assert reps[1]["code"] in ("unauthorised", "rate-limited") and reps[2]["code"] == "unauthorised"
        # the owner is still connected, still gets its replies and its events
        assert owner.request("status")["state"] == "idle"
        assert agent.owner is not None and agent.owner.authenticated and agent.owner.peer == "127.0.0.1"
        owner.request("upload_status", name="d", total=1, sha256="0" * 64)
        for p in strangers:
            p.close()
    # the owner reconnecting (with the token) does take over from its old connection
    with BoardClient(url, token="s3cret") as again:
        assert again.request("status")["state"] == "idle"


def test_wrong_tokens_back_off_exponentially_and_compare_in_constant_time(tcp_agent, monkeypatch):
    agent, url = tcp_agent
    now = [1000.0]
    agent.clock = lambda: now[0]
    compared = []
    real = agent_mod.hmac.compare_digest
    monkeypatch.setattr(agent_mod.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    refused = {"unauthorised": 0, "rate-limited": 0}
    with _raw(url) as p:
        for i in range(50):                                    # 50 guesses as fast as possible
            p.write(link.encode(link.command(i + 1, "hello", token=f"guess{i}")))
            rep = _read_msgs(p, 1)[0]
            refused[rep["code"]] += 1
    # one guess was compared; every other was refused before any comparison
    assert refused == {"unauthorised": 1, "rate-limited": 49}
    assert len(compared) == 1 and compared[0] == (b"guess0", b"s3cret")
    waits = []
    for k in range(1, 6):                                      # each wrong guess doubles the wait
        fails, allowed = agent.auth_failures["127.0.0.1"]
        waits.append(allowed - now[0])
        now[0] = allowed
        with pytest.raises(BoardError, match="wrong or missing token"):
            BoardClient(url, token="nope")
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0]
    # even the right token waits out the back-off, then it is accepted and the count resets
    with pytest.raises(BoardError, match="too many wrong tokens"):
        BoardClient(url, token="s3cret")
    now[0] = agent.auth_failures["127.0.0.1"][1]
    with BoardClient(url, token="s3cret") as c:
        assert c.request("status")["state"] == "idle"
    assert "127.0.0.1" not in agent.auth_failures
    with pytest.raises(BoardError, match="wrong or missing token"):
        BoardClient(url, token="s3cret\u00e9")                # non-ASCII: refused, not an internal error


def test_uploads_are_bounded_in_number_and_total_size(tcp_agent, monkeypatch):
    agent, url = tcp_agent
    monkeypatch.setattr(agent_mod, "MAX_UPLOAD_PENDING", 10_000)
    piece = b"x" * 100
    args = dict(sha256=hashlib.sha256(b"whatever").hexdigest(), offset=0,
                data=base64.b64encode(piece).decode(), crc32=zlib.crc32(piece))
    with BoardClient(url, token="s3cret") as c:
        for i in range(agent_mod.MAX_UPLOADS_IN_PROGRESS):
            c.request("upload", name=f"part{i}", total=1000, **args)
        with pytest.raises(BoardError, match="uploads already in progress") as e:
            c.request("upload", name="one-more", total=1000, **args)
        assert e.value.code == "too-many-uploads"
        c.request("upload", name="part0", total=1000, **args)            # restarting one is fine
        with pytest.raises(BoardError, match="would exceed"):
            c.request("upload", name="part1", total=9_000, **args)        # 3 x 1000 + 9000 > 10000
        with pytest.raises(BoardError, match="CRC32"):
            c.request("upload", name="part2", total=1000, **dict(args, crc32=1))
    assert len(agent._uploads) == agent_mod.MAX_UPLOADS_IN_PROGRESS      # the refused restart kept part1 as it was


def test_a_stranger_is_disconnected_after_the_hello_deadline(tcp_agent, monkeypatch):
    agent, url = tcp_agent
    monkeypatch.setattr(agent_mod, "HELLO_DEADLINE_S", 0.3)
    import serial
    with _raw(url) as p:
        time.sleep(0.8)
        try:
            p.write(b'{"v":1,"type":"cmd","id":1,"cmd":"hello","token":"s3cret"}\n')
            got = _read_msgs(p, 1, timeout=1.0)
        except serial.SerialException:      # the agent closed the connection
            got = []
        assert got == []

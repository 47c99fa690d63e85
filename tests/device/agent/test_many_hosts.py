"""Several host processes at one board, as a user in two terminals makes them.

Over TCP `e2train status` or `stop` from a second terminal must not take the run's events from
the `train` that follows it (that host would be dropped, reconnect, and drop the second in
turn); two hosts that follow (`train` and `attach`) both get every event; a host that
reconnects replaces only its own old connection. On a serial port two host processes cannot
share the line: the second is refused in one line instead of garbling both."""
import socket
import time

import pytest

from e2train.device import agent as agent_mod
from e2train.link.client import BoardClient
from e2train.link.protocol import LinkError

from agent_fakes import FakeTrainer, _drain


@pytest.fixture
def tcp_served(tmp_path, monkeypatch, fake_board, serve_agent):
    monkeypatch.setattr(agent_mod, "make_trainer",
                        lambda config, data, backend, *, ckpt_dir, resume, on_event: FakeTrainer(config, on_event))
    monkeypatch.setattr(agent_mod, "load_dataset_npz", lambda path, mem_available=-1: None)
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    (tmp_path / "board" / "datasets" / "d.npz").write_bytes(b"stand-in")
    return agent, serve_agent(agent, agent_mod.serve_tcp, "127.0.0.1", 0)


def _sock(client: BoardClient) -> socket.socket:
    return client.stream.port._socket


def test_a_one_off_command_leaves_the_following_host_its_link_and_events(tcp_served):
    agent, url = tcp_served
    with BoardClient(url) as train:
        train.flash()
        run_id = train.train({"epochs": 400, "delay": 0.01}, "d", run_id="r1")
        first = list(_drain(train, 5.0, until="epoch"))
        sock = _sock(train)
        for _ in range(3):                               # `e2train status` and `stop` from another terminal
            with BoardClient(url, follow=False) as query:
                assert query.status()["state"] == "training"
        with BoardClient(url, follow=False) as query:
            assert query.stop()["state"] == "stopping"
        seen = list(_drain(train, 10.0, until="finished"))   # a stopped run ends so too
        assert _sock(train) is sock and not train.agent_restarted     # never dropped, never reconnected
        assert agent.owner is not None and agent.owner.host_id == train.client_name.split()[2]
    seqs = [e["seq"] for e in first + seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))          # every event, in order, none lost
    assert run_id == "r1"


def test_two_following_hosts_both_get_every_event(tcp_served):
    agent, url = tcp_served
    with BoardClient(url) as train, BoardClient(url) as attach:
        train.flash()
        train.train({"epochs": 5, "delay": 0.02}, "d", run_id="r2")
        got = {name: [e["seq"] for e in _drain(c, 10.0, until="finished")]
               for name, c in (("train", train), ("attach", attach))}
        assert got["train"] == got["attach"] and len(got["train"]) >= 7      # started, 5 epochs, finished
        assert len(agent.followers) == 2


def test_a_host_that_reconnects_replaces_only_its_own_old_connection(tcp_served):
    agent, url = tcp_served
    with BoardClient(url) as a, BoardClient(url) as b:
        old = agent.followers[0]
        assert {c.host_id for c in agent.followers} == {a.client_name.split()[2], b.client_name.split()[2]}
        a.reconnect()                                    # the same host id, a new connection
        deadline = time.monotonic() + 5
        while not old.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert old.closed and len(agent.followers) == 2
        assert b.status()["state"] == "idle"           # the other host kept its link


def test_an_older_host_without_an_id_still_takes_the_board_over(tcp_served):
    """A host of an earlier version says plain ``e2train-host``: it follows alone, as before."""
    agent, url = tcp_served
    with BoardClient(url) as new:
        old_host = BoardClient.__new__(BoardClient)
        old_host.__dict__.update(BoardClient(url, follow=False).__dict__)
        old_host.request("hello", client="e2train-host")
        assert len(agent.followers) == 1 and agent.followers[0].host_id is None
        with pytest.raises(LinkError):                 # the newer host's connection was closed
            for _ in range(20):
                new.request("status", timeout=0.5)
                time.sleep(0.05)
        old_host.close()


def test_host_client_reads_the_hello():
    assert agent_mod.host_client("e2train-host follow 1a2b") == (True, "1a2b")
    assert agent_mod.host_client("e2train-host query 1a2b") == (False, "1a2b")
    assert agent_mod.host_client("e2train-host") == (True, None)
    assert agent_mod.host_client(None) == (True, None)
    assert agent_mod.host_client("e2train-host lurk 1a2b") == (True, None)


def test_a_second_host_on_a_serial_port_is_refused_in_one_line(tmp_path, fake_board, serve_agent):
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    path = serve_agent(agent, agent_mod.serve_pty)
    with BoardClient(path) as first:
        with pytest.raises(LinkError) as e:
            BoardClient(path, follow=False)
        msg = str(e.value)
        assert "in use by another program" in msg and "Ctrl-C" in msg and "\n" not in msg
        assert first.status()["state"] == "idle"       # the first host's line is untouched
    with BoardClient(path, follow=False) as later:      # once it is closed, the port is free
        assert later.status()["state"] == "idle"


def test_a_follower_whose_write_fails_is_closed_over_tcp_and_kept_on_a_serial_line(tmp_path):
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    got, closed = [], []

    def broken(ev):
        raise LinkError("write timed out")

    tcp_dead = agent_mod.Conn(peer="10.0.0.2", close=lambda: closed.append("tcp"))
    tcp_dead.send = broken
    tcp_live = agent_mod.Conn(peer="10.0.0.3", close=lambda: closed.append("live"))
    tcp_live.send = got.append
    serial = agent_mod.Conn()                            # a serial line: nothing to close it with
    serial.send = broken
    for c, host in ((tcp_dead, "a"), (tcp_live, "b"), (serial, "c")):
        agent.claim(c, host)
    agent.emit("epoch", run_id="r1", epoch=1)
    agent.emit("epoch", run_id="r1", epoch=2)
    assert [e["epoch"] for e in got] == [1, 2]           # the live host got both
    assert closed == ["tcp"] and tcp_dead.closed         # the dead one was closed once, at its first failure
    assert agent.followers == [tcp_live, serial]         # the serial line stays for the next event

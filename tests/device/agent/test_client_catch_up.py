"""The host client's catch-up after a link drop, against a scripted board: live events that
arrive while hello or the events request is in flight must not hide the ones missed before."""
from __future__ import annotations

from collections import deque

from e2train.link import protocol as link
from e2train.link.client import BoardClient


class ScriptedBoard:
    """A link stream that answers hello and events requests; hello's answer is preceded by a
    live event (the board kept training while the cable was out)."""

    def __init__(self, kept: list[dict], live_during_hello: list[dict]):
        self.kept = kept                      # every event the board still holds
        self.live = live_during_hello
        self.out = bytearray()
        self.events_since: list[int] = []

    def write(self, data: bytes) -> None:
        msg = link.decode(data.rstrip(b"\n"))
        if msg["cmd"] == "hello":
            for ev in self.live:
                self.out += link.encode(ev)
            self.out += link.encode(link.reply(msg["id"], agent="scripted"))
        elif msg["cmd"] == "events":
            since = msg["since"]
            self.events_since.append(since)
            # another live event overtakes the reply as well
            self.out += link.encode(link.event(10, "epoch", epoch=8))
            self.out += link.encode(link.reply(msg["id"], events=[e for e in self.kept if e["seq"] > since]))

    def read(self, timeout: float) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def close(self) -> None:
        pass


def _client(board: ScriptedBoard, last_seq: int) -> BoardClient:
    c = BoardClient.__new__(BoardClient)
    c.url, c.baud, c.token, c.timeout = "scripted", 115200, None, 2.0
    c.stream, c.reader, c.next_id = None, link.LineReader(), 1
    c.pending_events, c.last_seq, c.hello, c.gap_since = deque(), last_seq, {}, None
    c.parts, c.session, c.agent_restarted, c.reconnect_s, c.line_baud = link.PartAssembler(), None, False, 1.0, None
    c.current_run = None

    def open_() -> None:
        c.stream = board
        c.reader = link.LineReader()
        c.hello = c.request("hello", token=None, client="test")
    c.open = open_
    return c


def test_reconnect_fetches_what_was_missed_before_the_live_events():
    kept = [link.event(s, "epoch", epoch=s - 2) for s in range(1, 11)]
    board = ScriptedBoard(kept, live_during_hello=[kept[8]])          # seq 9 arrives first
    c = _client(board, last_seq=6)                                    # seen up to seq 6
    c.reconnect(attempts=1, delay=0)
    assert board.events_since == [6]                                  # asked from before the drop
    seqs = [ev["seq"] for ev in c.events(timeout=0)]
    assert board.events_since == [6]                                  # the jump to 9 needed no second request
    assert seqs == [7, 8, 9, 10]                                      # none lost, in order, no repeats
    assert c.last_seq == 10


def test_catch_up_counts_only_the_missed_events():
    kept = [link.event(s, "epoch", epoch=s) for s in range(1, 11)]
    board = ScriptedBoard(kept, live_during_hello=[])
    c = _client(board, last_seq=7)
    c.stream = board
    assert c.catch_up() == 2                                          # 8 and 9; 10 came live
    assert [ev["seq"] for ev in c.events(timeout=0)] == [8, 9, 10]


class GappyBoard(ScriptedBoard):
    """Live events skip seq 10 (emitted while the agent had no link serving); the log has it."""

    def __init__(self, kept):
        super().__init__(kept, live_during_hello=[])
        self.out += link.encode(kept[10]) + link.encode(kept[11])       # seqs 11, 12 live

    def write(self, data: bytes) -> None:
        msg = link.decode(data.rstrip(b"\n"))
        assert msg["cmd"] == "events"
        self.events_since.append(msg["since"])
        self.out += link.encode(link.reply(msg["id"], events=[e for e in self.kept if e["seq"] > msg["since"]]))


def test_a_gap_in_the_live_stream_is_filled_from_the_log_before_newer_events():
    kept = [link.event(s, "epoch", epoch=s) for s in range(1, 13)]
    board = GappyBoard(kept)
    c = _client(board, last_seq=9)
    c.stream = board
    assert [ev["seq"] for ev in c.events(timeout=0)] == [10, 11, 12]
    assert board.events_since == [9] and c.gap_since is None and c.last_seq == 12
    # no gap, no request
    board.out += link.encode(link.event(13, "epoch", epoch=13))
    assert [ev["seq"] for ev in c.events(timeout=0)] == [13] and board.events_since == [9]


def test_a_gap_survives_a_drop_during_its_catch_up():
    from e2train.link.protocol import LinkError
    kept = [link.event(s, "epoch", epoch=s) for s in range(1, 13)]

    class DropsOnRequest(GappyBoard):
        def write(self, data: bytes) -> None:
            raise LinkError("cable pulled")
    dropping = DropsOnRequest(kept)
    c = _client(dropping, last_seq=9)
    c.stream = dropping
    try:
        list(c.events(timeout=0))
        raise AssertionError("the drop was not reported")
    except LinkError:
        pass
    assert c.gap_since == 9                                           # not forgotten
    board = ScriptedBoard(kept, live_during_hello=[])
    c.open = lambda: (setattr(c, "stream", board), setattr(c, "reader", link.LineReader()),
                      c.request("hello", token=None, client="test"))
    c.reconnect(attempts=1, delay=0)
    assert board.events_since == [9]                                  # asked from the gap
    assert [ev["seq"] for ev in c.events(timeout=0)] == [10, 11, 12]


class ReplyThenEvent(ScriptedBoard):
    """The board's reply to status and its next event (the run's last) reach the host in one read."""

    def write(self, data: bytes) -> None:
        msg = link.decode(data.rstrip(b"\n"))
        if msg["cmd"] == "status":
            self.out += link.encode(link.reply(msg["id"], state="idle"))
            self.out += link.encode(link.event(5, "finished", run_id="r1"))
        else:
            super().write(data)


def test_an_event_that_shares_a_read_with_a_reply_is_kept():
    """Lost, nothing after it would reveal the gap: a host following the run would wait for ever."""
    c = _client(ReplyThenEvent([], []), last_seq=4)
    c.open()
    assert c.request("status")["state"] == "idle"
    assert [e["event"] for e in c.events(timeout=0)] == ["finished"]

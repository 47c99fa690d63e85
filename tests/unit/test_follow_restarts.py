"""The host resumes a run across agent restarts, but not for ever at the same place.

A board agent that the kernel kills at the same step every time (out of memory, most often)
comes back, is resumed from the same checkpoint, and dies again; `follow` gives up after
``STUCK_STARTS`` starts from one checkpoint, with a one-line cause and fix."""
import io

import pytest

from e2train.app import train_cli
from e2train.app.exit_codes import EXIT_RUN_FAILED, CliError
from e2train.app.train_cli import STUCK_STARTS, EventPrinter, follow


class FakeClient:
    """A link whose agent lives a scripted life of events each time it (re)starts: a life that
    does not end the run ends in a restart."""

    def __init__(self, lives):
        self.lives = list(lives)
        self.pending = list(self.lives.pop(0))
        self.agent_restarted = False

    def events(self, timeout=0.5):
        while self.pending:
            yield self.pending.pop(0)
        self.agent_restarted = True             # the life ran out: the agent was killed and came back

    def check_session(self, timeout=5.0):
        pass

    def restart_into_next_life(self):
        self.pending = list(self.lives.pop(0))


def _life(epoch, batch, *extra):
    return [{"event": "started", "run_id": "r1", "total_epochs": 4, "batches_per_epoch": 10,
             "resumed_at": {"epoch": epoch, "batch": batch}},
            {"event": "progress", "run_id": "r1", "epoch": epoch + 1, "batch": batch + 1, "loss": 2.0}, *extra]


def _follow(client):
    resumed = []

    def on_restart():
        resumed.append(1)
        client.restart_into_next_life()

    try:
        return follow(client, "r1", None, lambda ev: None, on_restart=on_restart), resumed
    except CliError as e:
        return e, resumed


def test_a_run_killed_at_the_same_place_is_resumed_twice_then_given_up():
    lives = [_life(2, 0) for _ in range(STUCK_STARTS)] + [_life(2, 0)]
    got, resumed = _follow(FakeClient(lives))
    assert isinstance(got, CliError) and got.code == EXIT_RUN_FAILED
    assert len(resumed) == STUCK_STARTS - 1
    msg = str(got)
    assert "\n" not in msg
    assert f"run r1 started {STUCK_STARTS} times from epoch 3, batch 0" in msg
    assert "out-of-memory killer" in msg and "smaller batch_size" in msg and "--run-id r1 --resume" in msg


def test_a_run_that_dies_before_its_first_checkpoint_says_so():
    got, _ = _follow(FakeClient([_life(0, 0) for _ in range(STUCK_STARTS)]))
    assert isinstance(got, CliError) and f"started {STUCK_STARTS} times from its start" in str(got)
    assert "--resume" not in str(got)                   # nothing saved: nothing to resume


def test_the_board_low_memory_warning_is_named_as_the_cause():
    warn = {"event": "warning", "run_id": "r1", "message": "low memory", "mem_available": 20 << 20}
    got, _ = _follow(FakeClient([_life(1, 5, warn) for _ in range(STUCK_STARTS)]))
    assert isinstance(got, CliError)
    assert "from epoch 2, batch 5" in str(got) and "warned it had 20 MiB of memory left" in str(got)


def test_a_run_that_gets_further_between_restarts_is_resumed_every_time():
    done = {"event": "finished", "run_id": "r1"}
    # two restarts at one checkpoint, then a new checkpoint, two more there, then it finishes
    lives = [_life(0, 0), _life(1, 0), _life(1, 0), _life(2, 0), _life(2, 0, done)]
    got, resumed = _follow(FakeClient(lives))
    assert got == "finished" and len(resumed) == 4


def test_stuck_run_alone():
    train_cli.stuck_run("r1", [(0, 0), (1, 0), (1, 0)], None)       # not all at one place: resumes
    train_cli.stuck_run("r1", [(1, 0)] * (STUCK_STARTS - 1), None)    # not yet
    with pytest.raises(CliError):
        train_cli.stuck_run("r1", [(0, 0)] + [(1, 0)] * STUCK_STARTS, None)


def test_the_printer_numbers_the_resumed_epoch_from_one():
    out = io.StringIO()
    EventPrinter("r1", out=out)({"event": "started", "total_epochs": 4, "batches_per_epoch": 10,
                                 "resumed_at": {"epoch": 2, "batch": 0}})
    assert "training 4 epochs of 10 batches, resumed in epoch 3 at batch 0" in out.getvalue()


def test_attach_says_resume_or_start_again_by_what_the_board_saved():
    saved = train_cli._restarted("/dev/ttyUSB1", "r1", "interrupted")
    unsaved = train_cli._restarted("/dev/ttyUSB1", "r1", "unsaved")
    assert "--run-id r1 --resume" in str(saved)
    assert "nothing to resume" in str(unsaved) and "--resume" not in str(unsaved)
    assert "e2train train --board /dev/ttyUSB1 --run-id r1`" in str(unsaved)


class SilentEndClient:
    """A board whose run ended while its last event went missing: status says so, nothing else."""

    def __init__(self, state, late_event=None):
        self.agent_restarted = False
        self.pending_events = []
        self.state, self.late_event = state, late_event
        self.statuses = self.catch_ups = 0

    def events(self, timeout=0.5):
        while self.pending_events:
            yield self.pending_events.pop(0)

    def check_session(self, timeout=5.0):
        self.statuses += 1
        return {"state": self.state, "run": {"run_id": "r1"}, "session": "s"}

    def catch_up(self, since=None):
        self.catch_ups += 1
        if self.late_event:                             # the board's log still had it
            self.pending_events.append(self.late_event)
            self.late_event = None


def test_a_run_whose_last_event_never_came_ends_by_its_status():
    c = SilentEndClient("stopped")
    assert follow(c, "r1", None, lambda ev: None, heartbeat_s=0.01) == "stopped"
    assert c.statuses == 2 and c.catch_ups == 2        # two silences, each followed by a catch-up


def test_the_board_log_gives_the_last_event_when_it_has_it():
    seen = []
    c = SilentEndClient("finished", late_event={"event": "finished", "run_id": "r1", "seq": 9})
    assert follow(c, "r1", None, seen.append, heartbeat_s=0.01) == "finished"
    assert [e["event"] for e in seen] == ["finished"] and c.statuses == 1


def test_run_ended_reads_only_this_run():
    assert train_cli.run_ended({"state": "finished", "run": {"run_id": "r1"}}, "r1") == "finished"
    assert train_cli.run_ended({"state": "training", "run": {"run_id": "r1"}}, "r1") is None
    assert train_cli.run_ended({"state": "finished", "run": {"run_id": "r0"}}, "r1") is None
    assert train_cli.run_ended(None, "r1") is None

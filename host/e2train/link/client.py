"""Host side of the link: talk to a board agent over a serial port, TCP or a pty.

``BoardClient(url)`` opens the link with pyserial's ``serial_for_url`` (``/dev/ttyUSB1``,
``socket://board:7070``, or the pty path of the simulated board) and sends commands; events
that arrive meanwhile are queued. When the link drops, :meth:`reconnect` reopens it and
:meth:`catch_up` fetches the events missed (the agent keeps them), so nothing is lost. If
the agent itself was restarted meanwhile (a new ``session`` in its hello), its event
numbers start again: the client notices, starts counting afresh and sets
``agent_restarted`` so the caller can resume the run from its checkpoint.

On a UART (any URL that is not ``socket://``) uploads go in chunks sized from ``baud``
(``link.upload_chunk_bytes``), each with its CRC32, acknowledged, and resumed from the
board's offset after a drop.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

from . import protocol as link
from .protocol import LinkError, ProtocolError

NETWORK_SCHEMES = ("socket://", "rfc2217://", "loop://")
HELLO_RETRY_S = 3.0         # hello is repeated after this much silence (until the client's timeout)
CHUNK_RETRIES = 5           # resends of one upload chunk (CRC failures, drops) before giving up


class BoardError(RuntimeError):
    """The board answered a command with an error."""

    def __init__(self, cmd: str, error: str, code: str):
        super().__init__(f"board refused {cmd}: {error} [{code}]")
        self.cmd = cmd
        self.error = error
        self.code = code


def link_baud(url: str, baud: int | None) -> int | None:
    """The baud rate that limits ``url``: None for TCP (and pyserial's loop://)."""
    return None if url.startswith(NETWORK_SCHEMES) else baud


class BoardClient:
    def __init__(self, url: str, *, baud: int = 115200, token: str | None = None, timeout: float = 30.0,
                 reconnect_s: float = 60.0, follow: bool = True):
        self.url = url
        # Over TCP the agent sends its events to the hosts that follow it (train, attach); a
        # one-off command (follow=False: status, stop, fetch) leaves them theirs.
        self.client_name = link.host_client_name(follow, secrets.token_hex(4))
        self.baud = baud
        self.line_baud = link_baud(url, baud)
        self.token = token
        self.timeout = timeout
        self.reconnect_s = reconnect_s
        self.stream = None
        self.reader = link.LineReader()
        self.parts = link.PartAssembler()
        self.next_id = 1
        self.pending_events: deque[dict] = deque()
        self.last_seq = 0
        self.gap_since: int | None = None      # a live event skipped seqs after this one
        self.hello: dict = {}
        self.session: str | None = None
        self.agent_restarted = False           # set when a reconnect found a new agent session
        self.current_run: str | None = None    # the run this client started
        self.open()

    # -- connection ----------------------------------------------------------------------
    def open(self) -> None:
        import serial
        try:
            # exclusive: a second host on the same serial port would split the agent's bytes
            # between the two and garble both (a lock, on POSIX ports; ignored by socket://)
            port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.2, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            if "exclusively lock" in str(e):
                raise LinkError(f"the board link {self.url} is in use by another program (an `e2train train` or "
                                "`attach` following a run, or a terminal such as screen or minicom): end it first "
                                "(Ctrl-C on `e2train train` leaves the run going on the board)") from None
            raise LinkError(f"cannot open the board link {self.url}: {_short(e)}; check --board "
                            "(a serial port such as /dev/ttyUSB1, or socket://HOST:PORT) and that the agent runs") from None
        self.stream = link.SerialStream(port, self.line_baud)
        self.reader = link.LineReader()
        self.parts = link.PartAssembler()
        self.hello = self._say_hello()
        session = self.hello.get("session")
        if self.session is not None and session != self.session:
            # A new agent: its events start again at 1 and know nothing of the old ones.
            self.agent_restarted = True
            self.last_seq, self.gap_since = 0, None
        self.session = session

    def _say_hello(self) -> dict:
        """hello, said again every few seconds until ``timeout``: a serial port drops what
        arrives before the agent opens it, and hello is safe to repeat."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return self.request("hello", timeout=max(0.5, min(HELLO_RETRY_S, left)), token=self.token,
                                    client=self.client_name)
            except LinkError:
                if "no reply" not in str(sys.exc_info()[1]) or time.monotonic() >= deadline:
                    raise

    def check_session(self, timeout: float = 5.0) -> dict:
        """Ask the board how it is; a new agent session (it restarted without the link
        dropping, as a rebooted board behind a USB UART does) sets ``agent_restarted``."""
        rep = self.request("status", timeout=timeout)
        if rep.get("session") is not None and rep.get("session") != self.session:
            self.agent_restarted = True
            self.last_seq, self.gap_since = 0, None
            self.pending_events.clear()
            self.session = rep["session"]
        return rep

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def reconnect(self, attempts: int | None = None, delay: float = 0.5) -> None:
        """Reopen the link (after a drop) and fetch the events missed meanwhile; tries for
        ``reconnect_s`` seconds (or ``attempts`` times)."""
        # What was seen before the drop: live events can arrive while hello and the events
        # request are in flight, and must not hide the ones missed before them.
        since = self._caught_up_to()
        self.close()
        last: Exception | None = None
        deadline = time.monotonic() + self.reconnect_s
        tried = 0
        while True:
            tried += 1
            try:
                self.open()
                self.catch_up(0 if self.agent_restarted and self.last_seq == 0 else since)
                return
            except LinkError as e:
                last = e
                self.close()
            if (attempts is not None and tried >= attempts) or (attempts is None and time.monotonic() > deadline):
                break
            time.sleep(delay)
        raise LinkError(f"the board link {self.url} stayed down ({last}); the run goes on on the board: "
                        "`e2train attach` follows it once the link is back")

    def __enter__(self) -> "BoardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- messages ------------------------------------------------------------------------
    def _read_messages(self, timeout: float) -> list[dict]:
        if self.stream is None:
            raise LinkError("link is closed")
        data = self.stream.read(timeout)
        out = []
        for line in self.reader.feed(data) if data else ():
            if isinstance(line, ProtocolError):
                continue
            try:
                msg = self.parts.feed(link.decode(line))
            except ProtocolError as e:
                print(f"e2train: ignoring a bad line from the board: {e}", file=sys.stderr)
                continue
            if msg is not None:
                out.append(msg)
        self._got_data = bool(data)
        return out

    def _take_event(self, ev: dict) -> None:
        seq = ev.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            self.pending_events.append(ev)      # not numbered: cannot be caught up, just shown
            return
        if seq > self.last_seq:
            # Seqs are consecutive on the board: a jump means events it emitted while no link
            # was serving (e.g. the agent re-arming its port after a hang-up) never came live.
            # They are in the board's log; ``events`` fetches them before yielding anything newer.
            if self.last_seq and seq > self.last_seq + 1 and self.gap_since is None:
                self.gap_since = self.last_seq
            self.last_seq = seq
            self.pending_events.append(ev)

    def request(self, cmd: str, timeout: float | None = None, **args) -> dict:
        """Send a command and wait for its reply. ``timeout`` is the silence allowed: a long
        reply trickling in at 115200 baud keeps the wait alive for as long as bytes arrive."""
        if self.stream is None:
            raise LinkError("link is closed")
        msg_id = self.next_id
        self.next_id += 1
        self.stream.write(link.encode(link.command(msg_id, cmd, **args)))
        quiet = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + quiet
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"no reply to {cmd} within {quiet:.0f} s from {self.url}: is the board agent running?")
            reply = None
            # every message of the read is taken, the events after the reply too: an event that
            # shares a read with a reply (the run's last, say) would otherwise be lost for good
            for msg in self._read_messages(min(left, 0.5)):
                if msg["type"] == "event":
                    self._take_event(msg)
                elif msg["type"] == "reply" and msg.get("id") == msg_id:
                    reply = msg
            if reply is not None:
                if not reply.get("ok"):
                    raise BoardError(cmd, reply.get("error", "?"), reply.get("code", "error"))
                return reply
            if self._got_data:
                deadline = time.monotonic() + quiet

    def catch_up(self, since: int | None = None) -> int:
        """Fetch the events after ``since`` (default: the last one seen with none missing
        before it) that have not arrived live meanwhile; queue them in order. Returns how many
        were missed. The board answers in pages; this asks until it has them all."""
        since = self._caught_up_to() if since is None else since
        got: list[dict] = []
        cursor = since
        while True:
            rep = self.request("events", since=cursor)
            page = [ev for ev in rep["events"] if isinstance(ev.get("seq"), int)]
            got += page
            if not page or page[-1]["seq"] >= rep.get("last_seq", 0):
                break
            cursor = page[-1]["seq"]
        if self.gap_since is not None and since <= self.gap_since:
            self.gap_since = None                # this reply covers the gap the live stream left
        # Live events that came in while the request was in flight are already queued (and
        # moved last_seq past the missed ones): merge by seq instead of comparing to last_seq.
        queued = {ev.get("seq") for ev in self.pending_events}
        missed = [ev for ev in got if ev["seq"] > since and ev["seq"] not in queued]
        if missed:
            numbered = [ev for ev in self.pending_events if isinstance(ev.get("seq"), int)]
            unnumbered = [ev for ev in self.pending_events if not isinstance(ev.get("seq"), int)]
            self.pending_events = deque(sorted([*numbered, *missed], key=lambda e: e["seq"]) + unnumbered)
            self.last_seq = max(self.last_seq, max(ev["seq"] for ev in missed))
        return len(missed)

    def events(self, timeout: float = 0.5) -> Iterator[dict]:
        """Yield queued events, then whatever arrives within ``timeout``, in seq order, with
        any gap in the live stream filled from the board's log first."""
        self._fill_gap()
        while self.pending_events:
            yield self.pending_events.popleft()
        for msg in self._read_messages(timeout):
            if msg["type"] == "event":
                self._take_event(msg)
        self._fill_gap()
        while self.pending_events:
            yield self.pending_events.popleft()

    def _caught_up_to(self) -> int:
        """The seq up to which every event has been received."""
        return self.last_seq if self.gap_since is None else self.gap_since

    def _fill_gap(self) -> None:
        if self.gap_since is not None:
            self.catch_up()                      # from the gap; clears it once the reply is in

    # -- high-level commands --------------------------------------------------------------
    def flash(self, bitstream: str | None = None) -> dict:
        return self.request("flash", bitstream=bitstream, timeout=120)["info"]

    def upload_file(self, name: str, path: Path, progress=None, **dest) -> None:
        self.upload_bytes(name, Path(path).read_bytes(), progress, **dest)

    def upload_bytes(self, name: str, blob: bytes, progress: Callable[[int, int], None] | None = None,
                     **dest) -> bool:
        """Upload in acknowledged chunks, each checked by CRC32 on arrival, the whole by sha256.
        Returns False when nothing was sent: the board already kept this file (same size and
        sha256).

        Chunks are sized from the link's baud rate; a chunk damaged on the line is sent again;
        after a drop the link is reopened and the upload goes on from the offset the board
        holds. ``dest``: ``kind="bitstream", bitstream=DIR`` for a bitstream file.
        """
        digest = hashlib.sha256(blob).hexdigest()
        total = len(blob)
        step = link.upload_chunk_bytes(self.line_baud)
        status = self.request("upload_status", name=name, total=total, sha256=digest, **dest)
        if status.get("kept") and status["received"] == total:
            return False
        off = status["received"]
        failures = 0
        while True:
            if progress:
                progress(off, total)
            if off >= total and off > 0:
                return True
            chunk = blob[off: off + step]
            try:
                rep = self.request("upload", name=name, total=total, sha256=digest, offset=off,
                                   data=base64.b64encode(chunk).decode(), crc32=zlib.crc32(chunk), **dest)
                off = rep["received"]
                failures = 0
                if off >= total:
                    if progress:
                        progress(total, total)
                    return True
                continue
            except BoardError as e:
                if e.code not in ("bad-crc", "bad-offset"):
                    raise
                err: Exception = e
            except LinkError as e:
                err = e
                self.reconnect()
            failures += 1
            if failures > CHUNK_RETRIES:
                raise LinkError(f"upload of {name} failed {failures} times at offset {off} ({err}); "
                                "check the link (a lower --baud is more robust) and run the command again")
            off = self.request("upload_status", name=name, total=total, sha256=digest, **dest)["received"]

    def train(self, config: dict, dataset: str, run_id: str | None = None, resume: bool = False) -> str:
        self.current_run = self.request("train", config=config, dataset=dataset, run_id=run_id,
                                        resume=resume)["run_id"]
        return self.current_run

    def status(self, run_id: str | None = None) -> dict:
        return self.request("status", **({"run_id": run_id} if run_id else {}))

    def stop(self) -> dict:
        return self.request("stop")

    def shutdown(self) -> None:
        """Ask the agent to exit (the simulated board); its link goes away right after."""
        try:
            self.request("shutdown", timeout=5)
        except LinkError:
            pass

    def results(self, run_id: str, delete: bool = False) -> dict:
        return self.request("results", run_id=run_id, delete=delete)["results"]


def _short(e: Exception) -> str:
    """An OS error without its errno prefix: 'No such file or directory: /dev/ttyUSB9'."""
    text = str(e)
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text


class SimulatedBoard:
    """Start ``e2train board --pty --sim`` as a child process; gives its link and meter ports."""

    def __init__(self, data_dir: Path | None = None, meter: str = "csv", meter_interval: float = 0.25,
                 backend: str | None = None, startup_timeout: float = 60.0, tcp: str | None = None):
        where = ["--tcp", tcp] if tcp else ["--pty"]
        cmd = [sys.executable, "-m", "e2train", "board", *where, "--sim", "--meter", meter,
               "--meter-interval", str(meter_interval)]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        if backend:
            cmd += ["--backend", backend]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
        line = _readline_with_timeout(self.proc, startup_timeout)
        try:
            info = json.loads(line)
        except (json.JSONDecodeError, TypeError):
            self.stop()
            raise RuntimeError(f"the simulated board did not start (said {line!r})") from None
        self.link: str = info["link"]
        self.meter: str | None = info.get("meter")
        self.data_dir = info.get("data_dir")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "SimulatedBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str | None:
    import select
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    if not r:
        return None
    return proc.stdout.readline()

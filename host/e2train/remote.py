"""Host side of the link: talk to a board agent over a serial port, TCP or a pty.

``BoardClient(url)`` opens the link with pyserial's ``serial_for_url`` (``/dev/ttyUSB1``,
``socket://board:7070``, or the pty path of the simulated board) and sends commands; events
that arrive meanwhile are queued. When the link drops, :meth:`reconnect` reopens it and
:meth:`catch_up` fetches the events missed (the agent keeps them), so nothing is lost.
"""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator

from .device import link
from .device.link import LinkError, ProtocolError

UPLOAD_CHUNK = 192 * 1024


class BoardError(RuntimeError):
    """The board answered a command with an error."""

    def __init__(self, cmd: str, error: str, code: str):
        super().__init__(f"board refused {cmd}: {error} [{code}]")
        self.code = code


class BoardClient:
    def __init__(self, url: str, *, baud: int = 115200, token: str | None = None, timeout: float = 30.0):
        self.url = url
        self.baud = baud
        self.token = token
        self.timeout = timeout
        self.stream = None
        self.reader = link.LineReader()
        self.next_id = 1
        self.pending_events: deque[dict] = deque()
        self.last_seq = 0
        self.gap_since: int | None = None      # a live event skipped seqs after this one
        self.hello: dict = {}
        self.open()

    # -- connection ----------------------------------------------------------------------
    def open(self) -> None:
        import serial
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open the board link {self.url}: {e}") from None
        self.stream = link.SerialStream(port)
        self.reader = link.LineReader()
        self.hello = self.request("hello", token=self.token, client="e2train-host")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def reconnect(self, attempts: int = 20, delay: float = 0.5) -> None:
        """Reopen the link (after a drop) and fetch the events missed meanwhile."""
        # What was seen before the drop: live events can arrive while hello and the events
        # request are in flight, and must not hide the ones missed before them.
        since = self._caught_up_to()
        self.close()
        last: Exception | None = None
        for _ in range(attempts):
            try:
                self.open()
                self.catch_up(since)
                return
            except LinkError as e:
                last = e
                time.sleep(delay)
        raise LinkError(f"could not reconnect to {self.url}: {last}")

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
                out.append(link.decode(line))
            except ProtocolError as e:
                print(f"e2train: ignoring a bad line from the board: {e}", file=sys.stderr)
        return out

    def _take_event(self, ev: dict) -> None:
        if ev["seq"] > self.last_seq:
            # Seqs are consecutive on the board: a jump means events it emitted while no link
            # was serving (e.g. the agent re-arming its port after a hang-up) never came live.
            # They are in the board's log; ``events`` fetches them before yielding anything newer.
            if self.last_seq and ev["seq"] > self.last_seq + 1 and self.gap_since is None:
                self.gap_since = self.last_seq
            self.last_seq = ev["seq"]
            self.pending_events.append(ev)

    def request(self, cmd: str, timeout: float | None = None, **args) -> dict:
        msg_id = self.next_id
        self.next_id += 1
        self.stream.write(link.encode(link.command(msg_id, cmd, **args)))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(f"no reply to {cmd} within {self.timeout if timeout is None else timeout:.0f} s "
                                f"from {self.url}: is the board agent running?")
            for msg in self._read_messages(min(left, 0.5)):
                if msg["type"] == "event":
                    self._take_event(msg)
                elif msg["type"] == "reply" and msg.get("id") == msg_id:
                    if not msg.get("ok"):
                        raise BoardError(cmd, msg.get("error", "?"), msg.get("code", "error"))
                    return msg

    def catch_up(self, since: int | None = None) -> int:
        """Fetch the events after ``since`` (default: the last one seen with none missing
        before it) that have not arrived live meanwhile; queue them in order. Returns how many
        were missed."""
        since = self._caught_up_to() if since is None else since
        rep = self.request("events", since=since, limit=100000)
        if self.gap_since is not None and since <= self.gap_since:
            self.gap_since = None                # this reply covers the gap the live stream left
        # Live events that came in while the request was in flight are already queued (and
        # moved last_seq past the missed ones): merge by seq instead of comparing to last_seq.
        queued = {ev["seq"] for ev in self.pending_events if ev["seq"] > since}
        missed = [ev for ev in rep["events"] if ev["seq"] > since and ev["seq"] not in queued]
        if missed:
            self.pending_events = deque(sorted([*self.pending_events, *missed], key=lambda e: e["seq"]))
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

    def upload_file(self, name: str, path: Path, progress=None) -> None:
        self.upload_bytes(name, Path(path).read_bytes(), progress)

    def upload_bytes(self, name: str, blob: bytes, progress=None) -> None:
        """Upload in checksummed chunks; the board keeps the file only if the sha256 matches."""
        digest = hashlib.sha256(blob).hexdigest()
        for off in range(0, len(blob), UPLOAD_CHUNK):
            chunk = blob[off: off + UPLOAD_CHUNK]
            self.request("upload", name=name, total=len(blob), sha256=digest, offset=off,
                         data=base64.b64encode(chunk).decode())
            if progress:
                progress(min(off + UPLOAD_CHUNK, len(blob)), len(blob))

    def train(self, config: dict, dataset: str, run_id: str | None = None, resume: bool = False) -> str:
        return self.request("train", config=config, dataset=dataset, run_id=run_id, resume=resume)["run_id"]

    def shutdown(self) -> None:
        """Ask the agent to exit (the simulated board); its link goes away right after."""
        try:
            self.request("shutdown", timeout=5)
        except LinkError:
            pass

    def results(self, run_id: str, delete: bool = False) -> dict:
        return self.request("results", run_id=run_id, delete=delete)["results"]


class SimulatedBoard:
    """Start ``e2train board --pty --sim`` as a child process; gives its link and meter ports."""

    def __init__(self, data_dir: Path | None = None, meter: str = "csv", meter_interval: float = 0.25,
                 backend: str | None = None, startup_timeout: float = 60.0):
        cmd = [sys.executable, "-m", "e2train.cli", "board", "--pty", "--sim", "--meter", meter,
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

"""The host <-> board link: versioned JSON lines over any byte stream (stdlib only).

One message per line, UTF-8 JSON objects, never more than ``MAX_LINE`` bytes:

* command (host -> board): ``{"v": 1, "type": "cmd", "id": 7, "cmd": "status", ...args}``
* reply   (board -> host): ``{"v": 1, "type": "reply", "id": 7, "ok": true, ...}`` or
  ``{"v": 1, "type": "reply", "id": 7, "ok": false, "error": "...", "code": "bad-args"}``
* event   (board -> host): ``{"v": 1, "type": "event", "seq": 42, "event": "epoch", ...}``

Events carry a sequence number that grows for the life of the agent; the agent keeps them,
so a host that lost the link asks ``events`` with ``since`` = the last seq it saw and
catches up. A line that is not JSON, not an object, of another protocol version or an
unknown command gets an error reply (or an ``error`` event when it has no usable id) and
the agent keeps serving.

Real links are slow: a UART at 115200 baud moves 11,520 bytes/s (8N1 framing, 10 bits on the
wire per byte), 960 bytes/s at 9600. So nothing here waits for a whole message at once:

* every write goes out in slices sized from the baud rate to finish well within the write
  timeout, and the timeout counts from the last progress (a peer that stops reading is still
  detected within one timeout);
* a reply longer than ``REPLY_PART`` characters is sent as numbered parts
  (``{"type": "reply", "id": 7, "part": 0, "parts": 3, "chunk": "..."}``) that
  :class:`PartAssembler` joins, so no reply is too long to send;
* uploads go in chunks sized from the baud rate, each acknowledged and checked by CRC32
  (``upload_chunk_bytes``), and resume from the board's offset after a drop.
"""
from __future__ import annotations

import json
import math
import os
import select
import socket
import time
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20          # 1 MiB: an upload chunk is 256 KiB of data, base64-encoded

REPLY_PART = 32 * 1024      # characters of reply JSON per part line (a long reply is split)
WRITE_TIMEOUT = 2.0         # seconds without progress before a write gives up
UPLOAD_CHUNK_MAX = 192 * 1024   # raw bytes per upload chunk on a fast link (TCP, pty)
CHUNK_SECONDS = 2.0         # a chunk's line should take about this long at the link's baud rate

COMMANDS = ("hello", "flash", "upload", "upload_status", "install", "restart", "train", "status", "stop", "events",
            "results", "shutdown")
EVENTS = ("started", "progress", "epoch", "finished", "error", "stopped", "flashed", "uploaded", "installed",
          "warning", "checkpoint")


# A host's hello names itself in ``client``: "e2train-host follow ID" for a host that follows a run
# (train, attach: it gets the events), "e2train-host query ID" for a one-off command (status, stop,
# fetch, flash: it takes no events from a following host). ID tells one host process's
# reconnection from another host. An older host says plain "e2train-host".
HOST_CLIENT = "e2train-host"


def host_client_name(follow: bool, host_id: str) -> str:
    return f"{HOST_CLIENT} {'follow' if follow else 'query'} {host_id}"


def parse_host_client(client) -> tuple[bool, str | None]:
    """(follows the events, host id) from a hello's ``client``; anything but the two forms above,
    an older host's plain name included, follows with no id."""
    words = client.split() if isinstance(client, str) else []
    if len(words) == 3 and words[0] == HOST_CLIENT and words[1] in ("follow", "query"):
        return words[1] == "follow", words[2]
    return True, None


def bytes_per_second(baud: int) -> float:
    """Payload bytes per second of a UART at ``baud``: 8N1 puts 10 bits on the wire per byte."""
    return baud / 10.0


def write_slice_bytes(baud: int | None, timeout: float = WRITE_TIMEOUT) -> int:
    """Bytes per write call so that each call takes at most half of ``timeout`` at ``baud``."""
    if not baud:
        return 1 << 16
    return max(16, int(bytes_per_second(baud) * timeout / 2))


def upload_chunk_bytes(baud: int | None) -> int:
    """Raw bytes per upload chunk: its base64 line takes about ``CHUNK_SECONDS`` at ``baud``
    (None: a link without a baud rate, TCP or a pty), so a drop costs at most one chunk."""
    if not baud:
        return UPLOAD_CHUNK_MAX
    line = bytes_per_second(baud) * CHUNK_SECONDS - 200          # room for the JSON around it
    return int(min(UPLOAD_CHUNK_MAX, max(256, line * 3 // 4)))


def transfer_seconds(nbytes: int, baud: int | None) -> float:
    """How long ``nbytes`` take on the wire (0 without a baud rate)."""
    return 0.0 if not baud else nbytes / bytes_per_second(baud)


def upload_seconds(nbytes: int, baud: int | None) -> float:
    """About how long an upload of ``nbytes`` takes on the wire: its chunks as base64 with the
    JSON around each (0 without a baud rate)."""
    if not baud or nbytes <= 0:
        return 0.0
    chunk = upload_chunk_bytes(baud)
    n_chunks = -(-nbytes // chunk)
    return transfer_seconds(4 * -(-nbytes // 3) + 200 * n_chunks, baud)


class LinkError(RuntimeError):
    """The link is down, timed out, or carried something that is not the protocol."""


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol (with a code for the reply)."""

    def __init__(self, message: str, code: str = "bad-message", msg_id: Any = None):
        super().__init__(message)
        self.code = code
        self.msg_id = msg_id


def encode(msg: dict) -> bytes:
    line = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
    if len(line) >= MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds the {MAX_LINE}-byte line limit", "too-long")
    return line + b"\n"


def encode_reply(msg: dict, part_chars: int = REPLY_PART) -> list[bytes]:
    """A reply as one line, or as numbered part lines when its JSON is longer than ``part_chars``."""
    text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    if len(text) <= part_chars:
        return [text.encode() + b"\n"]
    n = math.ceil(len(text) / part_chars)
    return [encode({"v": PROTOCOL_VERSION, "type": "reply", "id": msg.get("id"), "part": i, "parts": n,
                    "chunk": text[i * part_chars:(i + 1) * part_chars]}) for i in range(n)]


class PartAssembler:
    """Joins the parts of a long reply (see :func:`encode_reply`); passes other messages through."""

    def __init__(self) -> None:
        self._parts: dict[Any, list[str]] = {}

    def feed(self, msg: dict) -> dict | None:
        if msg.get("type") != "reply" or "parts" not in msg:
            return msg
        got = self._parts.setdefault(msg.get("id"), [])
        if msg.get("part") != len(got) or not isinstance(msg.get("chunk"), str):
            self._parts.pop(msg.get("id"), None)
            raise ProtocolError(f"reply {msg.get('id')}: part {msg.get('part')} out of order (expected {len(got)})",
                                "bad-part", msg.get("id"))
        got.append(msg["chunk"])
        if len(got) < msg.get("parts", 0):
            return None
        del self._parts[msg.get("id")]
        return decode("".join(got).encode())


def decode(line: bytes) -> dict:
    """Parse and validate one line; raises ProtocolError naming what is wrong."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes exceeds the {MAX_LINE}-byte limit", "too-long")
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"not a JSON line: {e}", "bad-json") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object", "bad-message")
    msg_id = msg.get("id")
    if msg.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {msg.get('v')!r} not supported (this side speaks {PROTOCOL_VERSION})",
                            "bad-version", msg_id)
    if msg.get("type") not in ("cmd", "reply", "event"):
        raise ProtocolError(f"unknown message type {msg.get('type')!r}", "bad-message", msg_id)
    return msg


def command(msg_id: int, cmd: str, **args) -> dict:
    return {"v": PROTOCOL_VERSION, "type": "cmd", "id": msg_id, "cmd": cmd, **args}


def reply(msg_id: Any, ok: bool = True, **fields) -> dict:
    return {"v": PROTOCOL_VERSION, "type": "reply", "id": msg_id, "ok": ok, **fields}


def error_reply(msg_id: Any, error: str, code: str = "error") -> dict:
    return reply(msg_id, False, error=error, code=code)


def event(seq: int, name: str, /, **fields) -> dict:
    return {"v": PROTOCOL_VERSION, "type": "event", "seq": seq, "event": name, **fields}


class LineReader:
    """Splits a byte stream into lines; an over-long line is reported, then skipped."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | ProtocolError]:
        out: list[bytes | ProtocolError] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._skipping:
                        out.append(ProtocolError(f"line longer than {MAX_LINE} bytes dropped", "too-long"))
                    self._skipping = True
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if line.strip():
                out.append(line)


# --- transports: a minimal "read some bytes with a timeout / write all" interface -------

def _wait(read: list, write: list, timeout: float):
    """select() on a stream's descriptor; one closed under it (another thread closed the
    connection: the host left, or reconnected) is a closed link, not a crash of the caller: the
    board's trainer writes its events from its own thread."""
    try:
        return select.select(read, write, [], timeout)
    except (ValueError, OSError) as e:        # fileno() -1 (a closed socket), EBADF
        raise LinkError(f"link closed ({e})") from None


def _write_all(waitable, send, data: bytes, timeout: float) -> None:
    """Write everything through ``send`` (which returns the bytes it took) or raise: a peer that
    reads nothing for ``timeout`` seconds must not block us forever; a slow one (a throttled
    line) only makes this take longer, since the deadline restarts at every byte taken."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LinkError(f"link write timed out (nobody read for {timeout:.0f} s)")
        _, w, _ = _wait([], [waitable], left)
        if not w:
            continue
        try:
            n = send(view)
        except BlockingIOError:
            continue
        except OSError as e:
            raise LinkError(f"link write failed: {e}") from None
        view = view[n:]
        deadline = time.monotonic() + timeout


class FdStream:
    """A file descriptor (a pty master, a pipe) as a link stream."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)

    def read(self, timeout: float) -> bytes:
        r, _, _ = _wait([self.fd], [], timeout)
        if not r:
            return b""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as e:            # EIO: the other side of the pty is closed
            raise LinkError(f"link read failed: {e}") from None
        if not data:
            raise LinkError("link closed")
        return data

    def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:
        _write_all(self.fd, lambda view: os.write(self.fd, view), data, timeout)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class SocketStream:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.setblocking(False)

    def read(self, timeout: float) -> bytes:
        r, _, _ = _wait([self.sock], [], timeout)
        if not r:
            return b""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return b""
        except OSError as e:
            raise LinkError(f"link read failed: {e}") from None
        if not data:
            raise LinkError("link closed by peer")
        return data

    def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:
        _write_all(self.sock, self.sock.send, data, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SerialStream:
    """A pyserial port (real UART, pty path, socket://, loop://) as a link stream.

    ``baud``: the line's rate when it is a UART (None for TCP): writes then go in slices that
    each take at most half the write timeout, so a 262 KB line at 115200 baud (23 s) is sent
    as ~200 slices of 11 KB instead of failing after 2 s.
    """

    def __init__(self, port, baud: int | None = None):
        self.port = port
        self.baud = baud

    def read(self, timeout: float) -> bytes:
        try:
            self.port.timeout = timeout
            first = self.port.read(1)
            if not first:
                return b""
            return first + self.port.read(self.port.in_waiting or 0)
        except Exception as e:          # serial.SerialException, OSError on unplug
            raise LinkError(f"link read failed: {e}") from None

    def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:
        step = write_slice_bytes(self.baud, timeout)
        try:
            self.port.write_timeout = timeout
            for off in range(0, len(data), step):
                self.port.write(data[off: off + step])
            self.port.flush()
        except Exception as e:
            raise LinkError(f"link write failed: {e}") from None

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

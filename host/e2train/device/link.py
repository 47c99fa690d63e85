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
"""
from __future__ import annotations

import json
import os
import select
import socket
import time
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20          # 1 MiB: an upload chunk is 256 KiB of data, base64-encoded

COMMANDS = ("hello", "flash", "upload", "train", "status", "stop", "events", "results", "shutdown")
EVENTS = ("started", "progress", "epoch", "finished", "error", "stopped", "flashed", "uploaded")


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

class FdStream:
    """A file descriptor (a pty master, a pipe) as a link stream."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)

    def read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], timeout)
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

    def write(self, data: bytes, timeout: float = 2.0) -> None:
        """Write everything or raise: a peer that does not read must not block us forever."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError("link write timed out (nobody is reading)")
            _, w, _ = select.select([], [self.fd], [], left)
            if not w:
                continue
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError as e:
                raise LinkError(f"link write failed: {e}") from None
            view = view[n:]

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
        r, _, _ = select.select([self.sock], [], [], timeout)
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

    def write(self, data: bytes, timeout: float = 2.0) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError("link write timed out (nobody is reading)")
            _, w, _ = select.select([], [self.sock], [], left)
            if not w:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError as e:
                raise LinkError(f"link write failed: {e}") from None
            view = view[n:]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SerialStream:
    """A pyserial port (real UART, pty path, socket://, loop://) as a link stream."""

    def __init__(self, port):
        self.port = port

    def read(self, timeout: float) -> bytes:
        try:
            self.port.timeout = timeout
            first = self.port.read(1)
            if not first:
                return b""
            return first + self.port.read(self.port.in_waiting or 0)
        except Exception as e:          # serial.SerialException, OSError on unplug
            raise LinkError(f"link read failed: {e}") from None

    def write(self, data: bytes, timeout: float = 2.0) -> None:
        try:
            self.port.write_timeout = timeout
            self.port.write(data)
            self.port.flush()
        except Exception as e:
            raise LinkError(f"link write failed: {e}") from None

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

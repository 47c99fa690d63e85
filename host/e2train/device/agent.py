"""The board agent: serves the link (serial, TCP or a pseudo-terminal) and runs training.

Runs on the board (numpy + pynq only) or on a laptop as the simulated board (``--sim``).
It keeps serving whatever arrives: a malformed or unknown message gets an error reply, a
dropped link does not stop training, events are kept so that a host that reconnects can
catch up, and results are kept (in memory and on disk) until the host fetches them.

    e2train board --pty --sim              # the simulated board on a new pty (prints its path)
    e2train board --port /dev/ttyPS0       # on a board, over its UART
    e2train board --tcp 127.0.0.1:7070     # over TCP (loopback unless told otherwise)
"""
from __future__ import annotations

import argparse
import base64
import binascii
import errno
import hashlib
import hmac
import inspect
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import stat
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..core.pixels import Pixels
from ..core.run_record import device_final
from ..link import protocol as link
from ..link.protocol import LinkError, ProtocolError
from .manifest import sha256_file       # a MiB at a time: a CIFAR-sized upload is never held whole in memory

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_UPLOAD = 256 << 20          # bytes; a data set bigger than this is refused up front
MAX_UPLOADS_IN_PROGRESS = 4     # partial uploads kept at once (a new one beyond is refused)
MAX_UPLOAD_PENDING = 512 << 20  # bytes announced by all partial uploads together
EVENT_LOG = 20000               # events kept for catch-up
EVENTS_PER_REPLY = 500          # events per `events` reply (the host pages through the rest)
DATASET_KEYS = ("x_train", "y_train", "x_test", "y_test")
PIXEL_TABLE = "pixel_table"     # present: the images are 8-bit codes standardised through it (core.pixels)
# What this agent reads beyond protocol 1, said in hello, so that a newer host sends an older agent
# what it can read: "pixel_codes", data sets as 8-bit codes and their table.
FEATURES = ("pixel_codes",)
BITSTREAM_FILES = ("e2train.bit", "e2train.hwh", "manifest.json")
# TCP: a wrong token from a peer doubles the wait before that peer's next attempt
AUTH_BACKOFF_S, AUTH_BACKOFF_MAX_S = 0.5, 60.0
HELLO_DEADLINE_S = 10.0         # an unauthenticated TCP connection must say hello within this
MAX_UNAUTHENTICATED = 4         # unauthenticated TCP connections served at once


class CommandError(Exception):
    """A command that cannot be carried out; becomes an error reply with this code."""

    def __init__(self, message: str, code: str = "error"):
        super().__init__(message)
        self.code = code


# A data set may take at most this share of the memory the kernel reports available: the
# trainer's model, its numpy temporaries and the CMA buffers need the rest (a rule of thumb).
DATASET_MEMORY_SHARE = 0.75
# During a run, less than this available says the kernel's out-of-memory killer is near (one
# ResNet-20 step at batch 64 on CIFAR shapes peaks at 46 MiB of numpy heap): warned once a run.
LOW_MEMORY_BYTES = 32 << 20


# An upload must leave this much of the board's disk free: checkpoints and results are written
# beside it during the run (a ResNet-20 checkpoint is about 1 MB; the margin holds many).
DISK_MARGIN_BYTES = 64 << 20
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)     # writes the board's disk refused


def check_disk_space(where: Path, need: int, what: str) -> None:
    """Refuse ``what`` up front when the disk under ``where`` lacks ``need`` bytes plus the margin."""
    import shutil
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if free < need + DISK_MARGIN_BYTES:
        raise CommandError(
            f"{what} needs {need / 1e6:,.0f} MB on the board's disk and {DISK_MARGIN_BYTES >> 20} MiB to spare for "
            f"checkpoints, and {free / 1e6:,.0f} MB are free under {where}: free space on the board (old data sets, "
            "checkpoints and results under the agent's --data-dir; `e2train fetch --delete` removes a run's results)",
            "no-space")


def disk_error(e: OSError, where: Path) -> str:
    """One line for a failed write on the board: a full disk says what to remove."""
    if e.errno == errno.ENOSPC:
        return (f"the disk under {where} is full; free space on the board (old data sets, checkpoints and results "
                "under the agent's --data-dir)")
    return f"{e.strerror or e} ({where})"


def mem_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux, as on the PYNQ image); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def dataset_memory_bytes(path) -> int:
    """What the trainer will hold of an npz data set, read from the arrays' headers alone (nothing
    is decompressed): images of 8-bit codes with their ``pixel_table`` as they are (one byte a
    pixel, ``core.pixels``), other images as float32, labels as int64, plus the loaded arrays
    themselves where they are stored in another type."""
    import zipfile
    headers = {}
    with zipfile.ZipFile(path) as zf:           # a path, or the bytes of one as a file (the host's check)
        for name in zf.namelist():
            key = name[:-4] if name.endswith(".npy") else name
            if key not in DATASET_KEYS + (PIXEL_TABLE,):
                continue
            with zf.open(name) as f:
                major, _ = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            headers[key] = (int(np.prod(shape, dtype=np.int64)), np.dtype(dtype))
    need = 0
    for key, (n, dtype) in headers.items():
        if key.startswith("x_"):
            kept = np.dtype(np.uint8 if PIXEL_TABLE in headers and dtype == np.uint8 else np.float32)
        else:
            kept = np.dtype(np.float32 if key == PIXEL_TABLE else np.int64)
        need += n * kept.itemsize + (0 if dtype == kept else n * dtype.itemsize)
    return need


def dataset_too_large(name: str, need: int, mem_available: int | None) -> str | None:
    """Why a data set that needs ``need`` bytes in memory cannot train on a board with
    ``mem_available`` (None: unknown, nothing said); the board's refusal and the host's, before
    it sends a byte, say the same."""
    if mem_available is None or need <= DATASET_MEMORY_SHARE * mem_available:
        return None
    return (f"data set {name} needs {need / 2**20:.0f} MiB in memory, more than {DATASET_MEMORY_SHARE:.0%} of the "
            f"{mem_available / 2**20:.0f} MiB this board has available; train a smaller data set here (or one of "
            "8-bit pixels, which `e2train train` uploads at a byte a pixel), or this one on the simulated board on "
            "the host")


def load_dataset_npz(path: Path, mem_available: int | None = -1) -> tuple:
    """Load and check an uploaded data set (npz without pickle): (x_train, y_train, x_test,
    y_test), the images as ``core.pixels.Pixels`` where the file holds 8-bit codes and their
    ``pixel_table`` (what `e2train train` uploads for a set of pixels), else as stored. A data set
    that this machine's memory cannot hold (``mem_available``: bytes, default /proc/meminfo's;
    None: unknown, not checked) is refused before it is loaded: on a 512 MB board an
    out-of-memory kill would take the agent, and the run with it, down."""
    if mem_available == -1:
        mem_available = mem_available_bytes()
    try:
        need = dataset_memory_bytes(path)
    except Exception as e:
        raise CommandError(f"data set {path.name} is not a readable npz file: {e}", "bad-dataset") from None
    too_large = dataset_too_large(path.name, need, mem_available)
    if too_large:
        raise CommandError(too_large, "dataset-too-large")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:
        raise CommandError(f"data set {path.name} is not a readable npz file: {e}", "bad-dataset") from None
    missing = [k for k in DATASET_KEYS if k not in data]
    if missing:
        raise CommandError(f"data set {path.name} lacks arrays {missing}", "bad-dataset")
    xtr, ytr, xte, yte = (data[k] for k in DATASET_KEYS)
    if xtr.ndim != 4 or xte.ndim != 4 or xtr.shape[1:] != xte.shape[1:]:
        raise CommandError(f"data set images must be NCHW with equal C,H,W: {xtr.shape}, {xte.shape}", "bad-dataset")
    if ytr.shape != (xtr.shape[0],) or yte.shape != (xte.shape[0],):
        raise CommandError("labels must be 1-D, one per image", "bad-dataset")
    if PIXEL_TABLE in data:
        try:
            xtr, xte = Pixels(xtr, data[PIXEL_TABLE]), Pixels(xte, data[PIXEL_TABLE])
        except ValueError as e:
            raise CommandError(f"data set {path.name}: {e}", "bad-dataset") from None
    elif xtr.dtype == np.uint8:
        raise CommandError(f"data set {path.name} holds 8-bit images without a {PIXEL_TABLE} to standardise "
                           "them: upload it with `e2train train`, or store standardised float32 images",
                           "bad-dataset")
    return xtr, ytr, xte, yte


def _digest_note(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def remember_sha256(path: Path, digest: str) -> None:
    """Note a kept upload's sha256 beside it, with the size and mtime it was taken at."""
    st = path.stat()
    _atomic_write_json(_digest_note(path), {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def stored_sha256(path: Path, size: int) -> str | None:
    """The sha256 of the kept file ``path`` if it has ``size`` bytes (None otherwise): from its
    note when the file is the one the note was taken of, else hashed now and noted."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return None
    try:
        note = json.loads(_digest_note(path).read_text())
        if note["size"] == st.st_size and note["mtime_ns"] == st.st_mtime_ns:
            return str(note["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    try:
        remember_sha256(path, digest)
    except OSError:
        pass
    return digest


class Conn:
    """One connection to the agent. Authenticated connections that follow the board (the
    followers) get its events; an unauthenticated one can say hello and nothing else, so it can
    neither read the run nor push a follower off."""

    def __init__(self, peer: str = "local", authenticated: bool = True, close: Callable[[], None] | None = None):
        self.peer = peer
        self.authenticated = authenticated
        self.send: Callable[[dict], None] | None = None
        self.close = close
        self.closed = False
        self.opened = time.monotonic()
        self.host_id: str | None = None         # the host process behind it (its hello's client), if it says


# (follows the events, host id) from a hello's ``client`` (link.protocol's two forms)
host_client = link.parse_host_client


class Agent:
    """Protocol state and command handlers; transports call :meth:`handle_line`."""

    def __init__(self, data_dir: Path, *, simulated: bool = False, meter_port: str | None = None,
                 backend_name: str | None = None, token: str | None = None,
                 package_target: str | os.PathLike | None = None, can_restart: bool = False,
                 arena_bytes: int | None = None):
        self.data_dir = Path(data_dir)
        self._memory_warned: str | None = None      # the run already told that memory runs low
        (self.data_dir / "datasets").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "results").mkdir(parents=True, exist_ok=True)
        self.simulated = simulated
        self.meter_port = meter_port
        self.backend_name = backend_name
        self.arena_bytes = arena_bytes          # the PYNQ backend's cap on tensors kept in CMA (None: its default)
        self.token = token
        self.session = secrets.token_hex(8)     # a restarted agent is a new session: seqs restart
        self.package_target = Path(package_target) if package_target else None
        self.can_restart = can_restart          # TCP and serial: the same address after a restart
        self.restart_requested = False
        self.followers: list[Conn] = []          # the connections the events go to, newest last
        self.auth_failures: dict[str, tuple[int, float]] = {}    # peer -> (failures, next allowed time)
        self.clock = time.monotonic
        self.board = None                       # set by flash: an object with .backend, .info
        self.events: list[dict] = []
        self.seq = 0
        self.lock = threading.RLock()
        self.sink: Callable[[dict], None] | None = self._to_followers   # pushes an event to the hosts
        self.run: dict[str, Any] | None = None            # the current or last run
        self.trainer = None
        self.thread: threading.Thread | None = None
        self.shutdown = threading.Event()
        self._uploads: dict[str, dict] = {}

    # -- events --------------------------------------------------------------------------
    def emit(self, name: str, /, **fields) -> None:
        with self.lock:
            self.seq += 1
            ev = link.event(self.seq, name, t=time.time(), **fields)
            self.events.append(ev)
            del self.events[:-EVENT_LOG]
            sink = self.sink
        if sink is not None:
            try:
                sink(ev)
            except LinkError:
                pass            # the host is gone; it catches up with `events` later

    # -- connections ---------------------------------------------------------------------
    @property
    def owner(self) -> Conn | None:
        """The newest follower (None: no host follows the board)."""
        with self.lock:
            return self.followers[-1] if self.followers else None

    def claim(self, conn: Conn, host_id: str | None = None) -> None:
        """``conn`` (authenticated) follows the board: events go to it. The connections it
        replaces are closed: the same host's older ones (it reconnected, leaving the old one
        half-open), or, for a host that gives no id (``host_client``), every other one."""
        conn.host_id = host_id
        with self.lock:
            gone = [c for c in self.followers if c is not conn and (host_id is None or c.host_id in (None, host_id))]
            self.followers = [c for c in self.followers if c is not conn and c not in gone] + [conn]
        for old in gone:
            old.closed = True
            if old.close is not None:
                old.close()

    def release(self, conn: Conn) -> None:
        with self.lock:
            self.followers = [c for c in self.followers if c is not conn]

    def _to_followers(self, ev: dict) -> None:
        """Send an event to every follower. A TCP connection whose write fails is closed: a host
        gone without a word then costs one write timeout, and a live one sees the drop,
        reconnects and catches up with `events`. A serial line (no close) stays as it is: its
        host catches up when the next event shows the gap."""
        with self.lock:
            followers = list(self.followers)
        for c in followers:
            try:
                c.send(ev)
            except LinkError:
                if c.close is not None:
                    self.release(c)
                    c.closed = True
                    c.close()

    # -- dispatch ------------------------------------------------------------------------
    def handle_line(self, line: bytes | ProtocolError, conn: Conn | None = None) -> dict | None:
        msg_id = None
        if conn is None:
            conn = Conn(authenticated=self.token is None)
        try:
            if isinstance(line, ProtocolError):
                raise line
            msg = link.decode(line)
            if msg["type"] != "cmd":
                raise ProtocolError(f"the board accepts commands only, got a {msg['type']}", "bad-message", msg.get("id"))
            msg_id = msg.get("id")
            if not isinstance(msg_id, int):
                raise ProtocolError("a command needs an integer id", "bad-message")
            cmd = msg.get("cmd")
            if cmd not in link.COMMANDS:
                raise ProtocolError(f"unknown command {cmd!r}; known: {', '.join(link.COMMANDS)}", "unknown-command", msg_id)
            if not conn.authenticated and cmd != "hello":
                raise ProtocolError("send hello with the token first", "unauthorised", msg_id)
            args = {k: v for k, v in msg.items() if k not in ("v", "type", "id", "cmd")}
            handler = getattr(self, f"cmd_{cmd}")
            try:
                inspect.signature(handler).bind(**args)
            except TypeError as e:
                raise CommandError(f"bad arguments for {cmd}: {e}", "bad-args") from None
            if cmd == "hello":
                self._authenticate(conn, args.get("token"), args.get("client"))
            return link.reply(msg_id, True, **(handler(**args) or {}))
        except ProtocolError as e:
            if e.msg_id is None:
                if conn.authenticated:      # a stranger's garbage does not reach the owner's events
                    self.emit("error", error=str(e), code=e.code)
                return None
            return link.error_reply(e.msg_id, str(e), e.code)
        except CommandError as e:
            return link.error_reply(msg_id, str(e), e.code)
        except Exception as e:      # a bug must not take the agent down
            traceback.print_exc(file=sys.stderr)
            return link.error_reply(msg_id, f"internal error: {type(e).__name__}: {e}", "internal")

    # -- commands ------------------------------------------------------------------------
    def _authenticate(self, conn: Conn, token, client=None) -> None:
        """Check a hello's token: constant-time compare, exponential back-off per peer. An
        authenticated connection whose hello says it follows (``host_client``) gets the events."""
        follows, host_id = host_client(client)
        if conn.authenticated:
            if conn.send is not None and follows:
                self.claim(conn, host_id)
            return
        now = self.clock()
        fails, allowed = self.auth_failures.get(conn.peer, (0, 0.0))
        if now < allowed:
            raise CommandError(f"too many wrong tokens from {conn.peer}: wait {allowed - now:.1f} s", "rate-limited")
        given = token.encode() if isinstance(token, str) else b""
        if token is None or not hmac.compare_digest(given, self.token.encode()):
            fails += 1
            if len(self.auth_failures) > 1024:      # many peers: forget those whose wait is long over
                self.auth_failures = {k: v for k, v in self.auth_failures.items() if v[1] > now - AUTH_BACKOFF_MAX_S}
            self.auth_failures[conn.peer] = (fails, now + min(AUTH_BACKOFF_MAX_S, AUTH_BACKOFF_S * 2 ** (min(fails, 30) - 1)))
            raise CommandError("wrong or missing token (start the host with --token or E2TRAIN_TOKEN)", "unauthorised")
        self.auth_failures.pop(conn.peer, None)
        conn.authenticated = True
        if conn.send is not None and follows:
            self.claim(conn, host_id)

    def cmd_hello(self, token: str | None = None, client: str | None = None) -> dict:
        return {
            "protocol": link.PROTOCOL_VERSION, "agent": __version__, "simulated": self.simulated,
            "flashed": None if self.board is None else self.board.info,
            "meter": self.meter_port, "last_seq": self.seq, "session": self.session,
            "code": str(Path(__file__).resolve().parents[1]),
            "state": self._state(), "features": list(FEATURES), **self._room(),
        }

    def _room(self) -> dict:
        """What the board has left: memory the kernel reports available, and free disk under the
        data directory (bytes; None where unknown). The host checks a data set against them
        before it sends a byte."""
        import shutil
        try:
            disk = shutil.disk_usage(self.data_dir).free
        except OSError:
            disk = None
        return {"mem_available": mem_available_bytes(), "disk_free": disk}

    def cmd_flash(self, bitstream: str | None = None) -> dict:
        if self._state() == "training":
            raise CommandError(f"run {self.run['run_id']} is in progress; stop it before flashing", "busy")
        uploaded = self.data_dir / "bitstreams" / bitstream if isinstance(bitstream, str) and NAME_RE.match(bitstream) else None
        where = str(uploaded) if uploaded is not None and uploaded.is_dir() else bitstream
        self.board = open_board(where, simulated=self.simulated, backend_name=self.backend_name,
                                arena_bytes=self.arena_bytes)
        self.emit("flashed", info=self.board.info)
        return {"info": self.board.info}

    def _upload_target(self, kind: str, name: str, bitstream: str | None) -> Path:
        """Where an upload lands: ``datasets/<name>.npz`` or ``bitstreams/<dir>/<file>``."""
        if kind == "dataset":
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise CommandError(f"bad data set name {name!r} (letters, digits, _ . -, at most 64)", "bad-args")
            return self.data_dir / "datasets" / f"{name}.npz"
        if kind == "bitstream":
            if name not in BITSTREAM_FILES:
                raise CommandError(f"bad bitstream file {name!r}: one of {', '.join(BITSTREAM_FILES)}", "bad-args")
            if not isinstance(bitstream, str) or not NAME_RE.match(bitstream):
                raise CommandError(f"bad bitstream directory name {bitstream!r}", "bad-args")
            return self.data_dir / "bitstreams" / bitstream / name
        if kind == "package":
            from ..link.board_package import WHEEL_RE
            if not isinstance(name, str) or not WHEEL_RE.match(name):
                raise CommandError(f"bad package name {name!r}: e2train-VERSION-py3-none-any.whl", "bad-args")
            return self.data_dir / "packages" / name
        raise CommandError(f"unknown upload kind {kind!r}: dataset, bitstream or package", "bad-args")

    def cmd_upload_status(self, name: str, total: int, sha256: str, kind: str = "dataset",
                          bitstream: str | None = None) -> dict:
        """How much of this upload (same target, size and sha256) the board holds: resume there.
        A file the board already keeps with that size and sha256 counts as received whole (the
        host sends nothing: CIFAR-10 need not cross the link again for every run)."""
        target = self._upload_target(kind, name, bitstream)
        state = self._uploads.get(str(target)) or self._adopt_upload(target, total, sha256)
        if state is None or state["total"] != total or state["sha256"] != sha256:
            if state is None and isinstance(total, int) and stored_sha256(target, total) == sha256:
                return {"received": total, "kept": True}
            return {"received": 0}
        return {"received": state["size"]}

    @staticmethod
    def _part_paths(final: Path) -> tuple[Path, Path]:
        """An upload in progress: its bytes so far, and what it announced (size, sha256)."""
        part = final.with_name(f".{final.name}.part")
        return part, part.with_name(part.name + ".json")

    def _adopt_upload(self, final: Path, total, sha256) -> dict | None:
        """An upload an earlier agent had under way (it restarted: the board lost power, say),
        taken up where its bytes end when the host announces the same size and sha256; the
        whole file's sha256 is checked at the end as always."""
        part, meta = self._part_paths(final)
        try:
            said = json.loads(meta.read_text())
            size = part.stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(said, dict) or said.get("total") != total or said.get("sha256") != sha256 or size > total:
            return None
        state = {"total": total, "sha256": sha256, "size": size}
        self._uploads[str(final)] = state
        return state

    def cmd_upload(self, name: str, total: int, sha256: str, offset: int, data: str, crc32: int | None = None,
                   kind: str = "dataset", bitstream: str | None = None) -> dict:
        final = self._upload_target(kind, name, bitstream)
        if not isinstance(total, int) or not 0 < total <= MAX_UPLOAD:
            raise CommandError(f"upload size {total!r} outside 1..{MAX_UPLOAD} bytes", "too-large")
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise CommandError("sha256 must be 64 lowercase hex digits", "bad-args")
        if not isinstance(offset, int) or offset < 0:
            raise CommandError(f"bad upload offset {offset!r}", "bad-args")
        try:
            chunk = base64.b64decode(data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise CommandError("upload data is not valid base64", "bad-args") from None
        if crc32 is not None and zlib.crc32(chunk) != crc32:
            raise CommandError(f"chunk at offset {offset} fails its CRC32 (damaged on the line); send it again",
                               "bad-crc")
        key = str(final)
        part, meta = self._part_paths(final)
        state = self._uploads.get(key) or (self._adopt_upload(final, total, sha256) if offset else None)
        if offset == 0:
            others = {k: v for k, v in self._uploads.items() if k != key}
            if len(others) >= MAX_UPLOADS_IN_PROGRESS:
                raise CommandError(f"{len(others)} uploads already in progress (at most {MAX_UPLOADS_IN_PROGRESS}); "
                                   "finish them first", "too-many-uploads")
            if sum(v["total"] for v in others.values()) + total > MAX_UPLOAD_PENDING:
                raise CommandError(f"uploads in progress would exceed {MAX_UPLOAD_PENDING} bytes together; "
                                   "finish them first", "too-large")
            part.parent.mkdir(parents=True, exist_ok=True)
            check_disk_space(part.parent, total, f"the upload of {name}")
            state = {"total": total, "sha256": sha256, "size": 0}
            self._uploads[key] = state
            part.write_bytes(b"")
            _atomic_write_json(meta, {"total": total, "sha256": sha256})      # for an agent that restarts
        if state is None or state["total"] != total or state["sha256"] != sha256:
            raise CommandError(f"no upload of {name} in progress at offset {offset}; start at offset 0", "bad-offset")
        if offset != state["size"]:
            raise CommandError(f"expected offset {state['size']}, got {offset}", "bad-offset")
        if state["size"] + len(chunk) > total:
            raise CommandError("upload exceeds its announced size", "too-large")
        try:
            with open(part, "ab") as f:
                f.write(chunk)
        except OSError as e:
            with open(part, "ab") as f:         # what part of the chunk got written goes: a resend appends
                f.truncate(state["size"])
            raise CommandError(f"the board could not store the upload of {name}: {disk_error(e, part.parent)}",
                               "no-space" if e.errno == errno.ENOSPC else "io-error") from None
        state["size"] += len(chunk)
        if state["size"] < total:
            return {"received": state["size"]}
        del self._uploads[key]
        meta.unlink(missing_ok=True)
        digest = sha256_file(part)
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise CommandError(f"checksum mismatch for {name}: got {digest[:12]}…, expected {sha256[:12]}…", "bad-checksum")
        if kind == "dataset":
            try:
                load_dataset_npz(part)      # refuse a file that is not a data set before keeping it
            except CommandError:
                part.unlink(missing_ok=True)
                raise
        os.replace(part, final)
        remember_sha256(final, digest)
        self.emit("uploaded", name=name, kind=kind, bytes=total)
        return {"received": total, "stored": final.name}

    def cmd_install(self, name: str) -> dict:
        """Install an uploaded board wheel (checked against its RECORD first): unpacked into
        ``--package-target`` when the agent has one, else ``pip install`` into its own Python."""
        import subprocess
        from ..link.board_package import PackageError, check_wheel
        if self._state() == "training":
            raise CommandError(f"run {self.run['run_id']} is in progress; stop it before installing", "busy")
        path = self._upload_target("package", name, None)
        if not path.exists():
            raise CommandError(f"package {name} not uploaded", "no-package")
        try:
            files = check_wheel(path)
        except PackageError as e:
            raise CommandError(str(e), "bad-package") from None
        digest = sha256_file(path)
        if self.package_target is not None:
            dest = self.package_target / digest[:16]
            for arc, data in files.items():
                out = dest / arc
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            _atomic_write_json(self.package_target / "current.json", {"dir": dest.name, "wheel": name, "sha256": digest})
            where = str(dest)
        else:
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
                                str(path)], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["?"])[-1]
                raise CommandError(f"pip install of {name} failed: {last}", "install-failed")
            where = sys.executable
        self.emit("installed", name=name, sha256=digest, where=where)
        return {"installed": name, "sha256": digest, "where": where}

    def cmd_restart(self) -> dict:
        """Exit and start again (the same command line) once this reply is sent: the code
        just installed runs. The host finds a new session at the same address."""
        if self._state() == "training":
            raise CommandError(f"run {self.run['run_id']} is in progress; stop it before restarting", "busy")
        if not self.can_restart:
            raise CommandError("this agent cannot restart in place (a pty moves on restart): restart it by hand",
                               "unsupported")
        self.restart_requested = True
        self.shutdown.set()
        return {"restarting": True}

    def cmd_train(self, config: dict, dataset: str, run_id: str | None = None, resume: bool = False) -> dict:
        if self._state() == "training":
            raise CommandError(f"run {self.run['run_id']} is in progress; stop it first", "busy")
        if self.board is None:
            raise CommandError("no bitstream loaded: send flash first", "not-flashed")
        if not isinstance(dataset, str) or not NAME_RE.match(dataset):
            raise CommandError(f"bad data set name {dataset!r}", "bad-args")
        path = self.data_dir / "datasets" / f"{dataset}.npz"
        if not path.exists():
            raise CommandError(f"data set {dataset!r} not uploaded", "no-dataset")
        data = load_dataset_npz(path)
        run_id = run_id or time.strftime("run-%Y%m%d-%H%M%S")
        if not isinstance(run_id, str) or not NAME_RE.match(run_id):
            raise CommandError(f"bad run id {run_id!r}", "bad-args")
        ckpt_dir = self.data_dir / "checkpoints" / run_id
        # Builds and validates everything before the run starts: a bad config is an error reply.
        trainer = make_trainer(config, data, self.board.backend, ckpt_dir=ckpt_dir, resume=bool(resume),
                               on_event=lambda ev: self._trainer_event(run_id, ev))
        self.trainer = trainer
        self.run = {"run_id": run_id, "state": "training", "dataset": dataset, "config": config,
                    "started": time.time(), "results": None, "resumed": bool(resume)}
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(ckpt_dir / "run.json", {"run_id": run_id, "dataset": dataset, "config": config})
        self.thread = threading.Thread(target=self._train, args=(run_id, trainer), daemon=True, name="train")
        self.thread.start()
        return {"run_id": run_id}

    def cmd_status(self, run_id: str | None = None) -> dict:
        run = dict(self.run or {})
        run.pop("results", None)
        run.pop("config", None)
        out = {"state": self._state(), "run": run or None, "last_seq": self.seq, "session": self.session,
               **self._room()}
        if run_id is not None:
            out["run_state"] = self._run_state(run_id)
        return out

    def _run_state(self, run_id) -> str:
        """A run's state, also across agent restarts: from memory, else from what is on disk."""
        if not isinstance(run_id, str) or not NAME_RE.match(run_id):
            raise CommandError(f"bad run id {run_id!r}", "bad-args")
        if self.run is not None and self.run["run_id"] == run_id:
            return self.run["state"]
        res = self.data_dir / "results" / f"{run_id}.json"
        if res.exists():
            try:
                return "stopped" if json.loads(res.read_text()).get("stopped") else "finished"
            except (OSError, json.JSONDecodeError):
                return "finished"
        ckpt_dir = self.data_dir / "checkpoints" / run_id
        if ckpt_dir.is_dir():           # it started but has no results: resume it, if it saved anything
            from . import checkpoint
            from .board import CHECKPOINT_FILE
            return "interrupted" if checkpoint.exists(ckpt_dir / CHECKPOINT_FILE) else "unsaved"
        return "unknown"

    def cmd_stop(self) -> dict:
        if self._state() != "training":
            return {"state": self._state()}
        self.trainer.stop()
        return {"state": "stopping", "run_id": self.run["run_id"]}

    def cmd_events(self, since: int = 0, limit: int = EVENTS_PER_REPLY) -> dict:
        if not isinstance(since, int) or not isinstance(limit, int):
            raise CommandError("events wants integer since and limit", "bad-args")
        limit = max(1, min(limit, EVENTS_PER_REPLY))
        with self.lock:
            evs = [e for e in self.events if e["seq"] > since][:limit]
            first = self.events[0]["seq"] if self.events else self.seq + 1
        return {"events": evs, "last_seq": self.seq, "lost": max(0, first - since - 1), "session": self.session}

    def cmd_results(self, run_id: str, delete: bool = False) -> dict:
        if not isinstance(run_id, str) or not NAME_RE.match(run_id):
            raise CommandError(f"bad run id {run_id!r}", "bad-args")
        path = self.data_dir / "results" / f"{run_id}.json"
        if not path.exists():
            state = self._run_state(run_id)
            why = {"failed": "it failed (its error event says why)", "training": "it is still training"}
            raise CommandError(f"no results for {run_id}: {why.get(state, state)}", "no-results")
        res = json.loads(path.read_text())
        if delete:
            path.unlink()
        return {"results": res}

    def cmd_shutdown(self) -> dict:
        if self._state() == "training":
            self.trainer.stop()
        self.shutdown.set()
        return {}

    # -- training thread -----------------------------------------------------------------
    def _state(self) -> str:
        if self.run is None:
            return "idle"
        return self.run["state"]

    def _trainer_event(self, run_id: str, ev: dict) -> None:
        ev = dict(ev)
        name = ev.pop("event", "progress")
        if name == "finished":
            return      # the agent says finished itself, once the results are stored
        self.emit(name, run_id=run_id, **ev)
        if name in ("progress", "epoch") and self._memory_warned != run_id:
            avail = mem_available_bytes()
            if avail is not None and avail < LOW_MEMORY_BYTES:
                self._memory_warned = run_id
                self.emit("warning", run_id=run_id, mem_available=avail, message=(
                    f"the board has {avail / 2**20:.0f} MiB of memory available during run {run_id} (below "
                    f"{LOW_MEMORY_BYTES >> 20} MiB): the kernel may kill the agent (restarted, it resumes the run "
                    "from its last checkpoint); a smaller batch_size, eval_batch_size or data set keeps it running"))

    def _train(self, run_id: str, trainer) -> None:
        try:
            stats = getattr(self.board.backend, "copy_stats", None)
            copies0 = stats() if callable(stats) else None
            results = trainer.run()
            # the config as the host gave it: `fetch` writes it into the run record
            results = dict(results, run_id=run_id, board=self.board.info, config=(self.run or {}).get("config"))
            if copies0 is not None:
                # what the ARM copied into and out of CMA buffers during this run (counted; not in
                # the time model: docs/board.md, "Tensors stay in place")
                now = stats()
                results["cma_copies"] = {k: now[k] - copies0[k] for k in ("copied_in", "copied_out", "in_place",
                                                                         "flushed")}
            _atomic_write_json(self.data_dir / "results" / f"{run_id}.json", results)
            self.run["results"] = results
            self.run["state"] = "stopped" if results.get("stopped") else "finished"
            self.emit("finished", run_id=run_id, summary=results.get("summary", {}),
                      final=device_final(results))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self.run["state"] = "failed"
            if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
                # a checkpoint or the results could not be written: the last good checkpoint stays
                error = (f"run {run_id} stopped: the board could not write to its disk: {disk_error(e, self.data_dir)}; "
                         f"then resume it with `e2train train --run-id {run_id} --resume`")
            else:
                error = f"{type(e).__name__}: {e}"
            self.emit("error", run_id=run_id, error=error)


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- the two places the agent meets the rest of the board side -------------------------

def open_board(bitstream: str | None, *, simulated: bool, backend_name: str | None = None,
               arena_bytes: int | None = None):
    """Load the bitstream (or the simulated board) and return an object with .backend and .info."""
    from .board import open_board as _open
    from .manifest import ManifestError
    try:
        return _open(bitstream, simulated=simulated, backend_name=backend_name, arena_bytes=arena_bytes)
    except FileNotFoundError as e:
        raise CommandError(f"bitstream not found: {e}; upload it with `e2train flash --bitstream-dir DIR`",
                           "no-bitstream") from None
    except (ManifestError, ValueError) as e:
        raise CommandError(f"bitstream refused: {e}", "bad-bitstream") from None


def make_trainer(config: dict, data: tuple, backend, *, ckpt_dir: Path, resume: bool, on_event):
    """An object with .run() -> results dict and .stop(); validates the config first."""
    from .board import RunIdError, make_trainer as _make
    try:
        return _make(config, data, backend, ckpt_dir=ckpt_dir, resume=resume, on_event=on_event)
    except RunIdError as e:
        raise CommandError(str(e), "bad-resume") from None
    except (ValueError, TypeError, KeyError) as e:
        raise CommandError(f"bad training config: {e}", "bad-config") from None


# --- transports --------------------------------------------------------------------------

def serve_stream(agent: Agent, stream, *, poll: float = 0.2, conn: Conn | None = None,
                 follow_on_connect: bool = True) -> None:
    """Serve one stream until it closes, its connection is displaced, or the agent shuts down.
    ``follow_on_connect``: the stream gets the events from the start (a serial line, which has
    one host), else from its hello (TCP, where one-off commands connect beside a following host)."""
    reader = link.LineReader()
    wlock = threading.Lock()
    if conn is None:
        conn = Conn(authenticated=agent.token is None)

    def send(msg: dict) -> None:
        # a long reply goes as numbered parts; each part is written in baud-sized slices
        lines = link.encode_reply(msg) if msg.get("type") == "reply" else [link.encode(msg)]
        with wlock:
            for data in lines:
                stream.write(data)

    conn.send = send
    if conn.authenticated and follow_on_connect:
        agent.claim(conn)
    try:
        while not agent.shutdown.is_set() and not conn.closed:
            if not conn.authenticated and time.monotonic() - conn.opened > HELLO_DEADLINE_S:
                break               # a connection that does not authenticate is not kept open
            data = stream.read(poll)
            for line in reader.feed(data) if data else ():
                rep = agent.handle_line(line, conn)
                if rep is not None:
                    try:
                        send(rep)
                    except LinkError:
                        pass
                    except ProtocolError as e:     # not JSON-encodable (a bug): say so, do not die
                        send(link.error_reply(rep.get("id"), f"reply could not be encoded: {e}", "internal"))
    finally:
        agent.release(conn)


def serve_pty(agent: Agent, announce: Callable[[str], None]) -> None:
    """Create a pty, announce its slave path, serve its master until shutdown.

    The agent keeps the slave open itself, so a host that closes and reopens the port
    (a dropped link) finds the agent still there and nothing lost.
    """
    from ..meter.raw_pty import open_raw_pty      # the simulated board's path: see docs/architecture.md
    master, slave = open_raw_pty("the board link (--pty)", "serve --tcp HOST:PORT instead")
    path = os.ttyname(slave)
    announce(path)
    stream = link.FdStream(master)
    try:
        while not agent.shutdown.is_set():
            try:
                serve_stream(agent, stream)
            except LinkError:
                time.sleep(0.1)
        time.sleep(0.5)     # closing a pty discards what the host has not read yet: the last reply
    finally:
        stream.close()
        os.close(slave)


def port_holders(dev: str, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, name) of the other processes that hold ``dev`` open, from /proc/<pid>/fd (every
    process's, as root; only the agent's own user's otherwise). A login console (getty) on the
    PS UART takes bytes of the link and echoes the rest."""
    real = os.path.realpath(dev)
    out = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.path.realpath(fd) == real for fd in (entry / "fd").iterdir()):
                out.append((int(entry.name), (entry / "comm").read_text().strip()))
        except OSError:
            continue
    return out


def check_port_free(dev: str) -> str | None:
    """Why the agent must not serve ``dev``: a getty holds it (refused: the link would lose bytes
    to the login console). Other holders are only warned of (stderr)."""
    holders = port_holders(dev)
    getty = [f"{name} (pid {pid})" for pid, name in holders if "getty" in name]
    if getty:
        unit = f"serial-getty@{Path(dev).name}.service"
        return (f"{dev} is the login console of {', '.join(getty)}, which would take bytes of the link: stop it with "
                f"`sudo systemctl stop {unit}` (`sudo systemctl mask {unit}` for good) and start the agent again")
    if holders:
        print(f"e2train board: warning: {dev} is also open in {', '.join(f'{n} (pid {p})' for p, n in holders)}; "
              "anything it reads is lost to the link", file=sys.stderr)
    return None


def serve_serial(agent: Agent, port: str, baud: int) -> None:
    """Serve a serial port. A port that cannot be opened at start is an error (a wrong name);
    once it has been served, a lost port is reopened until it comes back (a replugged cable)."""
    import serial  # pyserial is on the PYNQ image
    s = serial.serial_for_url(port, baudrate=baud, timeout=0.2)
    while not agent.shutdown.is_set():
        try:
            with s:
                serve_stream(agent, link.SerialStream(s, baud))
        except (LinkError, OSError, serial.SerialException) as e:
            print(f"e2train board: link on {port} lost ({e}); retrying", file=sys.stderr)
        while not agent.shutdown.is_set():
            time.sleep(1.0)
            try:
                s = serial.serial_for_url(port, baudrate=baud, timeout=0.2)
                break
            except (OSError, serial.SerialException):
                continue


def serve_tcp(agent: Agent, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Each connection is served in its own thread. Without a token every connection is
    trusted; with one a connection is nobody until its hello carries the token, so a stranger
    cannot push a host off. A trusted hello that follows (``host_client``) gets the events,
    beside the other hosts that follow, and replaces its own host's older connection (the host
    reconnecting); a one-off command (status, stop, fetch) takes nothing from them. At most
    ``MAX_UNAUTHENTICATED`` strangers are served at once, each for at most ``HELLO_DEADLINE_S``
    seconds."""
    srv = socket.create_server((host, port))
    srv.settimeout(0.5)
    announce(f"socket://{host}:{srv.getsockname()[1]}")
    conns: list[Conn] = []
    try:
        while not agent.shutdown.is_set():
            try:
                sock, addr = srv.accept()
            except socket.timeout:
                continue
            conns[:] = [c for c in conns if not c.closed]
            strangers = sum(1 for c in conns if not c.authenticated)
            if agent.token is not None and strangers >= MAX_UNAUTHENTICATED:
                sock.close()
                continue
            stream = link.SocketStream(sock)
            conn = Conn(peer=str(addr[0]), authenticated=agent.token is None, close=stream.close)
            conns.append(conn)
            threading.Thread(target=_serve_quietly, args=(agent, stream, conn), daemon=True).start()
    finally:
        srv.close()


def _serve_quietly(agent: Agent, stream, conn: Conn) -> None:
    try:
        serve_stream(agent, stream, conn=conn, follow_on_connect=False)
    except LinkError:
        pass
    finally:
        conn.closed = True
        stream.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- CLI ---------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", help="serial port to serve (on a board: /dev/ttyPS0)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve TCP (loopback unless HOST says otherwise; port 0 picks one)")
    where.add_argument("--pty", action="store_true", help="create a pseudo-terminal and serve it (the simulated board)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate of the serial port (--port, --pty)")
    p.add_argument("--sim", action="store_true", help="be the simulated board (C-simulated kernels, modelled time and power)")
    p.add_argument("--backend", choices=["pynq", "csim", "golden"], default=None,
                   help="conv backend (default: pynq, over the simulated device with --sim)")
    p.add_argument("--data-dir", default=None, help="where uploads, checkpoints and results live")
    p.add_argument("--cma-arena-mb", type=float, default=None, metavar="MB",
                   help="CMA memory the PYNQ backend may keep tensors in between calls (default 64; PYNQ images "
                        "reserve 128 MiB of CMA in all; docs/board.md, 'Tensors stay in place')")
    p.add_argument("--token", default=os.environ.get("E2TRAIN_TOKEN"), help="shared token (required to bind TCP off loopback)")
    # The simulated meter defaults to the INA226 CSV protocol (0.1 mA): the kernels' modelled
    # dynamic power is milliwatts on top of ~2 W static, below a Watts Up?'s 0.1 W resolution.
    p.add_argument("--meter", default="csv",
                   help="with --sim: protocol of the simulated meter (csv, wattsup, wt310, scpi, um25c; 'none': no meter)")
    p.add_argument("--meter-interval", type=float, default=0.25, help="with --sim: seconds between meter samples")
    p.add_argument("--package-target", default=None, metavar="DIR",
                   help="install packages sent by `e2train flash --package` here (default: pip, into this Python)")
    p.add_argument("--service", action="store_true",
                   help="print a systemd unit that runs this agent (these flags, this Python) at boot and again "
                        "after a crash or an out-of-memory kill, and how to install it; start nothing")


SERVICE_NAME = "e2train-board"
SERVICE_ENV = "/etc/e2train/board.env"          # E2TRAIN_TOKEN=..., readable by root alone
_SAFE_ARG = re.compile(r"[A-Za-z0-9_./:=@%+,-]+")


def service_unit(argv: list[str], python: str, data_dir: Path) -> str:
    """A systemd unit that runs ``python -m e2train board ARGV --data-dir DATA_DIR``. The PYNQ
    image's environment (``BOARD``, ``XILINX_XRT``, its Python venv) comes from /etc/environment
    and /etc/profile.d, sourced as the image's own start scripts do (systemd does not); the token
    from ``SERVICE_ENV``, never from the unit, which anyone may read. Restarted on failure: an
    agent the kernel kills for memory comes back, and the host resumes its run."""
    argv = [a for a in argv if a != "--service"]
    token_at = [i for i, a in enumerate(argv) if a == "--token" or a.startswith("--token=")]
    for i in reversed(token_at):
        del argv[i: i + (1 if "=" in argv[i] else 2)]
    if "--data-dir" not in argv and not any(a.startswith("--data-dir=") for a in argv):
        argv += ["--data-dir", str(data_dir)]
    words = [python, "-m", "e2train", "board", *argv]
    bad = [w for w in words if not _SAFE_ARG.fullmatch(w)]
    if bad:
        raise ValueError(f"cannot put {bad[0]!r} in a unit's command line as it is: use a path and arguments of "
                         "letters, digits and _ . / : = @ % + , - only")
    # "$$" is systemd's "$"; nothing is quoted inside the unit's one double-quoted argument
    env = ("set -a; . /etc/environment; set +a; for f in /etc/profile.d/*.sh; do . $$f; done; "
           f"exec {' '.join(words)}")
    return "\n".join([
        f"# {SERVICE_NAME}: the e2train board agent, at boot and again after a failure "
        "(written by `e2train board ... --service`)",
        "[Unit]",
        "Description=e2train board agent (on-device training link)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"EnvironmentFile=-{SERVICE_ENV}",
        f'ExecStart=/bin/bash -c "{env}"',
        "Restart=on-failure",
        "RestartSec=3",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _data_dir(args: argparse.Namespace) -> Path:
    """Where uploads, checkpoints and results live: --data-dir, else under the user's home."""
    return Path(args.data_dir or (Path.home() / ".e2train" / ("sim-board" if args.sim else "board")))


def _board_argv() -> list[str]:
    """This agent's own flags, as its command line gave them (after `e2train board`)."""
    return sys.argv[sys.argv.index("board") + 1:] if "board" in sys.argv else sys.argv[1:]


def print_service(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        unit = service_unit(argv, sys.executable, _data_dir(args).resolve())
    except ValueError as e:
        print(f"e2train board: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(unit)
    path = f"/etc/systemd/system/{SERVICE_NAME}.service"
    off_loopback = args.tcp and not _is_loopback(args.tcp.rpartition(":")[0].strip("[]") or "127.0.0.1")
    print(f"e2train board: to install it: `sudo -E e2train board {' '.join(a for a in argv if a != '--service')} "
          f"--service | sudo tee {path}`, then `sudo systemctl daemon-reload && sudo systemctl enable --now "
          f"{SERVICE_NAME}` (its log: `journalctl -u {SERVICE_NAME}`)" +
          (f"; the token goes in {SERVICE_ENV} as E2TRAIN_TOKEN=... (sudo mkdir -p /etc/e2train; "
           f"sudo chmod 600 {SERVICE_ENV}), never in the unit" if off_loopback or args.token else ""),
          file=sys.stderr)
    return 0


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    if args.service:
        return print_service(args, _board_argv() if argv is None else list(argv))
    if args.tcp:
        host, _, port_s = args.tcp.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port_s.isdigit():
            print(f"e2train board: --tcp wants HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return 2
        if not _is_loopback(host) and not args.token:
            print("e2train board: refusing to listen off loopback without --token (or E2TRAIN_TOKEN)", file=sys.stderr)
            return 2
    elif not args.pty and not args.port:
        print("e2train board: say where to serve: --port DEV, --tcp HOST:PORT or --pty", file=sys.stderr)
        return 2
    elif args.port and (busy := check_port_free(args.port)):
        print(f"e2train board: {busy}", file=sys.stderr)
        return 2
    if args.cma_arena_mb is not None and not 0 <= args.cma_arena_mb <= 4096:
        print(f"e2train board: --cma-arena-mb {args.cma_arena_mb:g}: give 0 (copy every tensor) up to the board's "
              f"CMA size in MB (PYNQ images reserve 128)", file=sys.stderr)
        return 2
    data_dir = _data_dir(args)
    meter = None
    sim_power = None
    if args.sim and args.meter != "none":
        from .board import sim_power_source
        from ..meter.emulate import start_emulator
        sim_power = sim_power_source(args.meter_interval)
        meter = start_emulator(args.meter, power_w=sim_power, interval_s=args.meter_interval)
    agent = Agent(data_dir, simulated=args.sim, backend_name=args.backend, token=args.token,
                  meter_port=meter.spec if meter else None, package_target=args.package_target,
                  can_restart=not args.pty,
                  arena_bytes=None if args.cma_arena_mb is None else int(args.cma_arena_mb * (1 << 20)))

    def announce(where: str) -> None:
        agent.address = where
        print(json.dumps({"link": where, "meter": agent.meter_port, "data_dir": str(data_dir)}), flush=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt     # `systemctl stop`, a reboot: the run stops at a checkpoint, as on Ctrl-C

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)
    try:
        if args.pty:
            serve_pty(agent, announce)
        elif args.tcp:
            serve_tcp(agent, host, int(port_s), announce)
        else:
            announce(args.port)
            serve_serial(agent, args.port, args.baud)
    except KeyboardInterrupt:
        pass
    finally:
        if agent.trainer is not None and agent._state() == "training":
            agent.trainer.stop()
            if agent.thread is not None:
                agent.thread.join(timeout=30)
        if meter is not None:
            meter.stop()
    if agent.restart_requested:
        time.sleep(0.5)         # the restart reply is on its way to the host
        _restart(args, getattr(agent, "address", None))
    return 0


def _restart(args: argparse.Namespace, address: str | None) -> None:
    """Replace this process with a new agent on the same command line (and the same TCP
    port, if it was picked with port 0), importing the package installed into
    ``--package-target`` if there is one."""
    argv = _board_argv()
    if args.tcp and address and address.startswith("socket://"):
        argv = [address[len("socket://"):] if a == args.tcp else a for a in argv]
    env = dict(os.environ)
    if args.package_target:
        cur = Path(args.package_target) / "current.json"
        if cur.exists():
            code = str(Path(args.package_target) / json.loads(cur.read_text())["dir"])
            env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "e2train", "board", *argv], env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="e2train-board", description=__doc__.splitlines()[0])
    add_arguments(p)
    argv = sys.argv[1:] if argv is None else argv
    return run(p.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())

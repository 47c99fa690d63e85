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
import hashlib
import hmac
import inspect
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from . import link
from .link import LinkError, ProtocolError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_UPLOAD = 256 << 20          # bytes; a data set bigger than this is refused up front
EVENT_LOG = 20000               # events kept for catch-up
DATASET_KEYS = ("x_train", "y_train", "x_test", "y_test")


class CommandError(Exception):
    """A command that cannot be carried out; becomes an error reply with this code."""

    def __init__(self, message: str, code: str = "error"):
        super().__init__(message)
        self.code = code


def load_dataset_npz(path: Path) -> dict[str, np.ndarray]:
    """Load and check an uploaded data set (npz without pickle)."""
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
    return data


class Agent:
    """Protocol state and command handlers; transports call :meth:`handle_line`."""

    def __init__(self, data_dir: Path, *, simulated: bool = False, meter_port: str | None = None,
                 backend_name: str | None = None, token: str | None = None):
        self.data_dir = Path(data_dir)
        (self.data_dir / "datasets").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "results").mkdir(parents=True, exist_ok=True)
        self.simulated = simulated
        self.meter_port = meter_port
        self.backend_name = backend_name
        self.token = token
        self.authenticated = token is None
        self.board = None                       # set by flash: an object with .backend, .info
        self.events: list[dict] = []
        self.seq = 0
        self.lock = threading.RLock()
        self.sink: Callable[[dict], None] | None = None   # pushes a message to the connected host
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

    # -- dispatch ------------------------------------------------------------------------
    def handle_line(self, line: bytes | ProtocolError) -> dict | None:
        msg_id = None
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
            if not self.authenticated and cmd != "hello":
                raise ProtocolError("send hello with the token first", "unauthorised", msg_id)
            args = {k: v for k, v in msg.items() if k not in ("v", "type", "id", "cmd")}
            handler = getattr(self, f"cmd_{cmd}")
            try:
                inspect.signature(handler).bind(**args)
            except TypeError as e:
                raise CommandError(f"bad arguments for {cmd}: {e}", "bad-args") from None
            return link.reply(msg_id, True, **(handler(**args) or {}))
        except ProtocolError as e:
            if e.msg_id is None:
                self.emit("error", error=str(e), code=e.code)
                return None
            return link.error_reply(e.msg_id, str(e), e.code)
        except CommandError as e:
            return link.error_reply(msg_id, str(e), e.code)
        except Exception as e:      # a bug must not take the agent down
            traceback.print_exc(file=sys.stderr)
            return link.error_reply(msg_id, f"internal error: {type(e).__name__}: {e}", "internal")

    # -- commands ------------------------------------------------------------------------
    def cmd_hello(self, token: str | None = None, client: str | None = None) -> dict:
        if self.token is not None:
            if token is None or not hmac.compare_digest(str(token), self.token):
                raise CommandError("wrong or missing token", "unauthorised")
            self.authenticated = True
        return {
            "protocol": link.PROTOCOL_VERSION, "agent": __version__, "simulated": self.simulated,
            "flashed": None if self.board is None else self.board.info,
            "meter": self.meter_port, "last_seq": self.seq,
            "state": self._state(),
        }

    def cmd_flash(self, bitstream: str | None = None) -> dict:
        if self._state() == "training":
            raise CommandError("a run is in progress; stop it before flashing", "busy")
        self.board = open_board(bitstream, simulated=self.simulated, backend_name=self.backend_name)
        self.emit("flashed", info=self.board.info)
        return {"info": self.board.info}

    def cmd_upload(self, name: str, total: int, sha256: str, offset: int, data: str) -> dict:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise CommandError(f"bad data set name {name!r} (letters, digits, _ . -, at most 64)", "bad-args")
        if not isinstance(total, int) or not 0 < total <= MAX_UPLOAD:
            raise CommandError(f"upload size {total!r} outside 1..{MAX_UPLOAD} bytes", "too-large")
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise CommandError("sha256 must be 64 lowercase hex digits", "bad-args")
        try:
            chunk = base64.b64decode(data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise CommandError("upload data is not valid base64", "bad-args") from None
        part = self.data_dir / "datasets" / f".{name}.part"
        state = self._uploads.get(name)
        if offset == 0:
            state = {"total": total, "sha256": sha256, "size": 0}
            self._uploads[name] = state
            part.write_bytes(b"")
        if state is None or state["total"] != total or state["sha256"] != sha256:
            raise CommandError(f"no upload of {name} in progress at offset {offset}; start at offset 0", "bad-offset")
        if offset != state["size"]:
            raise CommandError(f"expected offset {state['size']}, got {offset}", "bad-offset")
        if state["size"] + len(chunk) > total:
            raise CommandError("upload exceeds its announced size", "too-large")
        with open(part, "ab") as f:
            f.write(chunk)
        state["size"] += len(chunk)
        if state["size"] < total:
            return {"received": state["size"]}
        del self._uploads[name]
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        if digest != sha256:
            part.unlink(missing_ok=True)
            raise CommandError(f"checksum mismatch for {name}: got {digest[:12]}…, expected {sha256[:12]}…", "bad-checksum")
        final = self.data_dir / "datasets" / f"{name}.npz"
        load_dataset_npz(part)          # refuse a file that is not a data set before keeping it
        os.replace(part, final)
        self.emit("uploaded", name=name, bytes=total)
        return {"received": total, "stored": final.name}

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
        if not NAME_RE.match(run_id):
            raise CommandError(f"bad run id {run_id!r}", "bad-args")
        ckpt_dir = self.data_dir / "checkpoints" / run_id
        # Builds and validates everything before the run starts: a bad config is an error reply.
        trainer = make_trainer(config, data, self.board.backend, ckpt_dir=ckpt_dir, resume=resume,
                               on_event=lambda ev: self._trainer_event(run_id, ev))
        self.trainer = trainer
        self.run = {"run_id": run_id, "state": "training", "dataset": dataset, "config": config,
                    "started": time.time(), "results": None}
        self.thread = threading.Thread(target=self._train, args=(run_id, trainer), daemon=True, name="train")
        self.thread.start()
        return {"run_id": run_id}

    def cmd_status(self) -> dict:
        run = dict(self.run or {})
        run.pop("results", None)
        run.pop("config", None)
        return {"state": self._state(), "run": run or None, "last_seq": self.seq}

    def cmd_stop(self) -> dict:
        if self._state() != "training":
            return {"state": self._state()}
        self.trainer.stop()
        return {"state": "stopping"}

    def cmd_events(self, since: int = 0, limit: int = 1000) -> dict:
        with self.lock:
            evs = [e for e in self.events if e["seq"] > int(since)][: int(limit)]
            first = self.events[0]["seq"] if self.events else self.seq + 1
        return {"events": evs, "last_seq": self.seq, "lost": max(0, first - int(since) - 1)}

    def cmd_results(self, run_id: str, delete: bool = False) -> dict:
        if not isinstance(run_id, str) or not NAME_RE.match(run_id):
            raise CommandError(f"bad run id {run_id!r}", "bad-args")
        path = self.data_dir / "results" / f"{run_id}.json"
        if not path.exists():
            state = "training" if self.run and self.run["run_id"] == run_id else "unknown"
            raise CommandError(f"no results for {run_id} ({state})", "no-results")
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

    def _train(self, run_id: str, trainer) -> None:
        try:
            results = trainer.run()
            results = dict(results, run_id=run_id, board=self.board.info)
            _atomic_write_json(self.data_dir / "results" / f"{run_id}.json", results)
            self.run["results"] = results
            self.run["state"] = "stopped" if results.get("stopped") else "finished"
            self.emit("finished", run_id=run_id, summary=results.get("summary", {}))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self.run["state"] = "failed"
            self.emit("error", run_id=run_id, error=f"{type(e).__name__}: {e}")


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- the two places the agent meets the rest of the board side -------------------------

def open_board(bitstream: str | None, *, simulated: bool, backend_name: str | None = None):
    """Load the bitstream (or the simulated board) and return an object with .backend and .info."""
    from .board import open_board as _open
    return _open(bitstream, simulated=simulated, backend_name=backend_name)


def make_trainer(config: dict, data: dict, backend, *, ckpt_dir: Path, resume: bool, on_event):
    """An object with .run() -> results dict and .stop(); validates the config first."""
    from .board import make_trainer as _make
    try:
        return _make(config, data, backend, ckpt_dir=ckpt_dir, resume=resume, on_event=on_event)
    except (ValueError, TypeError, KeyError) as e:
        raise CommandError(f"bad training config: {e}", "bad-config") from None


# --- transports --------------------------------------------------------------------------

def serve_stream(agent: Agent, stream, *, poll: float = 0.2) -> None:
    """Serve one stream until it closes or the agent shuts down."""
    reader = link.LineReader()
    wlock = threading.Lock()

    def send(msg: dict) -> None:
        data = link.encode(msg)
        with wlock:
            stream.write(data)

    agent.sink = send
    try:
        while not agent.shutdown.is_set():
            data = stream.read(poll)
            for line in reader.feed(data) if data else ():
                rep = agent.handle_line(line)
                if rep is not None:
                    try:
                        send(rep)
                    except LinkError:
                        pass
    finally:
        agent.sink = None


def serve_pty(agent: Agent, announce: Callable[[str], None]) -> None:
    """Create a pty, announce its slave path, serve its master until shutdown.

    The agent keeps the slave open itself, so a host that closes and reopens the port
    (a dropped link) finds the agent still there and nothing lost.
    """
    import tty
    master, slave = os.openpty()
    tty.setraw(slave)
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


def serve_serial(agent: Agent, port: str, baud: int) -> None:
    import serial  # pyserial is on the PYNQ image
    while not agent.shutdown.is_set():
        try:
            with serial.serial_for_url(port, baudrate=baud, timeout=0.2) as s:
                serve_stream(agent, link.SerialStream(s))
        except (LinkError, OSError, serial.SerialException) as e:
            print(f"e2train board: link on {port} lost ({e}); retrying", file=sys.stderr)
            time.sleep(1.0)


def serve_tcp(agent: Agent, host: str, port: int, announce: Callable[[str], None]) -> None:
    """One connection at a time; a new one replaces the old (the host reconnecting)."""
    srv = socket.create_server((host, port))
    srv.settimeout(0.5)
    announce(f"socket://{host}:{srv.getsockname()[1]}")
    current: list[link.SocketStream] = []
    try:
        while not agent.shutdown.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            for old in current:
                old.close()
            current[:] = [link.SocketStream(conn)]
            if agent.token is not None:
                agent.authenticated = False     # every connection proves itself
            threading.Thread(target=_serve_quietly, args=(agent, current[0]), daemon=True).start()
    finally:
        srv.close()


def _serve_quietly(agent: Agent, stream) -> None:
    try:
        serve_stream(agent, stream)
    except LinkError:
        pass


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
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--sim", action="store_true", help="be the simulated board (C-simulated kernels, modelled time and power)")
    p.add_argument("--backend", choices=["pynq", "csim", "golden"], default=None,
                   help="conv backend (default: pynq, over the simulated device with --sim)")
    p.add_argument("--data-dir", default=None, help="where uploads, checkpoints and results live")
    p.add_argument("--token", default=os.environ.get("E2TRAIN_TOKEN"), help="shared token (required to bind TCP off loopback)")
    # The simulated meter defaults to the INA226 CSV protocol (0.1 mA): the kernels' modelled
    # dynamic power is milliwatts on top of ~2 W static, below a Watts Up?'s 0.1 W resolution.
    p.add_argument("--meter", default="csv",
                   help="with --sim: protocol of the simulated meter (csv, wattsup, wt310, scpi, um25c; 'none': no meter)")
    p.add_argument("--meter-interval", type=float, default=0.25, help="with --sim: seconds between meter samples")


def run(args: argparse.Namespace) -> int:
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
    data_dir = Path(args.data_dir or (Path.home() / ".e2train" / ("sim-board" if args.sim else "board")))
    meter = None
    sim_power = None
    if args.sim and args.meter != "none":
        from .board import sim_power_source
        from ..meter.emulate import start_emulator
        sim_power = sim_power_source(args.meter_interval)
        meter = start_emulator(args.meter, power_w=sim_power, interval_s=args.meter_interval)
    agent = Agent(data_dir, simulated=args.sim, backend_name=args.backend, token=args.token,
                  meter_port=meter.spec if meter else None)

    def announce(where: str) -> None:
        print(json.dumps({"link": where, "meter": agent.meter_port, "data_dir": str(data_dir)}), flush=True)

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
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="e2train-board", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

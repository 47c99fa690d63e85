"""`e2train flash | train | status | attach | stop | fetch`: the host side of on-device training.

With no ``--board``, ``train`` starts the simulated board itself (``e2train board --pty
--sim`` in a child process) and talks to it over a pseudo-terminal, exactly as it talks to a
real board over ``/dev/ttyUSB1`` or ``socket://host:port``. A power meter (the simulated one
by default on the simulated board) is recorded alongside, with phases marked from the link's
events. The link may drop: the host reconnects and catches up; training goes on regardless.
A run outlives the terminal: after Ctrl-C, ``status``, ``attach``, ``stop`` and ``fetch``
find it by its run id. If the board agent restarts mid-run, ``train`` resumes the run from
its last checkpoint (``attach`` says how).

Everything the host can check is checked before a port is opened: the training config
(with the validator the board uses, ``TrainConfig``), the data set, the bitstream directory.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..link.protocol import LinkError
from .exit_codes import EXIT_BOARD, EXIT_BUSY, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_RUN_FAILED, EXIT_USAGE, CliError
from ..link.client import BoardClient, BoardError, SimulatedBoard

PRESETS_DOC = "baseline (8-bit, all batches, no gates, exact signs) or e2train (SMD + SLU + PSG)"
REPORT_DIR_HELP = "report directory (default runs/<run id>)"
HEARTBEAT_S = 5.0           # silence on the link after which the host asks the board how it is
# A run that starts this many times from the same checkpoint, the agent restarting each time
# before the next one, is not resumed again: an agent killed at the same place every time (the
# kernel's out-of-memory killer, most often) would otherwise be resumed for ever.
STUCK_STARTS = 3


def add_link_arguments(p: argparse.ArgumentParser, *, board_required: bool = False) -> None:
    p.add_argument("--board", required=board_required,
                   help="board link: /dev/ttyUSB1, socket://host:port" +
                        ("" if board_required else " (default: start the simulated board)"))
    p.add_argument("--baud", type=int, default=115200, help="baud rate of a serial link (default 115200)")
    p.add_argument("--token", default=os.environ.get("E2TRAIN_TOKEN"),
                   help="shared token of a TCP agent (default: $E2TRAIN_TOKEN)")
    p.add_argument("--reconnect", type=float, default=60.0, metavar="S",
                   help="seconds to keep trying to reopen a dropped link")


def _add_bitstream_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p)
    p.add_argument("--bitstream", help="bitstream directory name on the board (default: the one its manifest names)")
    p.add_argument("--bitstream-dir", metavar="DIR",
                   help="send this local bitstream directory (e2train.bit, e2train.hwh, manifest.json) through "
                        "the link, then load it")


def add_flash_arguments(p: argparse.ArgumentParser) -> None:
    _add_bitstream_arguments(p)
    p.add_argument("--package", action="store_true",
                   help="first send the board side of this e2train as a wheel, have the agent install it and "
                        "restart into it")


def run_flash(args: argparse.Namespace) -> int:
    files = bitstream_files(args.bitstream_dir) if args.bitstream_dir else None
    with _board(args) as (client, _meter):
        if getattr(args, "package", False):
            install_package(client, quiet=False)
        name = deploy(client, files, quiet=False) if files else args.bitstream
        info = client.flash(name)
        print(json.dumps(info, indent=2))
    return 0


def bitstream_files(directory: str) -> tuple[str, dict[str, bytes]]:
    """The files of a local bitstream directory to send (checked here, before any port opens)."""
    from ..device.agent import BITSTREAM_FILES, NAME_RE
    d = Path(directory)
    if not (d / "manifest.json").is_file():
        raise CliError(f"--bitstream-dir {d}: no manifest.json there; name a directory written by "
                       "`make bitstream` (bitstreams/<board>/)", EXIT_NOT_FOUND)
    if not NAME_RE.match(d.resolve().name):
        raise CliError(f"--bitstream-dir {d}: the directory name must be letters, digits, _ . - "
                       "(it names the bitstream on the board)", EXIT_USAGE)
    from ..device import manifest as mf
    mf.load(d)          # ManifestError (corrupt, other kernel interface, files not matching): before sending
    return d.resolve().name, {f: (d / f).read_bytes() for f in BITSTREAM_FILES if (d / f).is_file()}


def deploy(client: BoardClient, bitstream: tuple[str, dict[str, bytes]], *, quiet: bool = False) -> str:
    """Send a bitstream directory's files through the link (checked chunks); returns its name
    there (what ``flash`` loads)."""
    name, files = bitstream
    for fname, blob in files.items():
        client.upload_bytes(fname, blob, upload_progress(f"{name}/{fname}", quiet, client.line_baud), kind="bitstream",
                            bitstream=name)
    return name


def install_package(client: BoardClient, *, quiet: bool = False) -> dict:
    """Send the board-side wheel in checked chunks, install it on the board, restart the
    agent into it and reconnect; returns the install reply."""
    from ..link.board_package import build_board_wheel
    name, blob = build_board_wheel()
    client.upload_bytes(name, blob, upload_progress(name, quiet, client.line_baud), kind="package")
    rep = client.request("install", name=name, timeout=600)
    client.request("restart")
    client.close()
    time.sleep(1.0)                              # the agent re-executes; its port comes back
    client.reconnect()
    client.agent_restarted = False
    print(f"e2train: installed {name} ({rep['sha256'][:12]}) at {rep['where']}; the agent restarted and runs "
          f"from {client.hello.get('code')}", file=sys.stderr)
    return rep


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    _add_bitstream_arguments(p)
    p.add_argument("--preset", default="e2train", choices=("baseline", "e2train"), help=PRESETS_DOC)
    p.add_argument("--config", help="JSON or TOML file of trainer settings (overrides the preset; keys: docs/config.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (VALUE parsed as JSON when it parses); keys: docs/config.md")
    p.add_argument("--dataset", default="digits", metavar="NAME",
                   help="digits (scikit-learn), cifar10, cifar100 or sat6 (these read --data-dir), "
                        "sat6synthetic")
    p.add_argument("--data-dir", help="directory of the data set's files (CIFAR python format, SAT-6 CSV)")
    p.add_argument("--meter", default=None,
                   help="power meter spec (wattsup:/dev/ttyUSB0, wt310:..., sim:, none); default: the simulated "
                        "board's meter, or none on a real board")
    p.add_argument("--idle", type=float, default=2.0, help="seconds of idle power to record before training")
    p.add_argument("--out", default=None, help=REPORT_DIR_HELP)
    p.add_argument("--run-id", default=None,
                   help="name of the run on the board (default: made from the time)")
    p.add_argument("--resume", action="store_true",
                   help="resume --run-id from its last checkpoint on the board (a run id that has a "
                        "checkpoint is refused without it)")
    p.add_argument("--quiet", action="store_true", help="no live progress")


def run_train(args: argparse.Namespace) -> int:
    # Everything checkable is checked before the board is touched.
    config = build_config(args.preset, args.config, args.set)
    validate_config(config)
    if args.resume and not args.run_id:
        raise CliError("--resume needs --run-id (the run to resume; `e2train status` lists the board's run)")
    files = bitstream_files(args.bitstream_dir) if args.bitstream_dir else None
    blob = load_dataset_bytes(args.dataset, args.data_dir)
    check_meter_port(args.meter)
    run_id = args.run_id or time.strftime("run-%Y%m%d-%H%M%S")
    with _board(args, follow=True) as (client, sim_meter):
        meter_spec = args.meter or sim_meter
        bitstream = deploy(client, files, quiet=args.quiet) if files else args.bitstream
        try:
            result = train_session(client, config, dataset=args.dataset, dataset_bytes=blob,
                                   meter=None if meter_spec in (None, "none") else meter_spec,
                                   idle_s=args.idle, out=args.out, run_id=run_id, resume=args.resume,
                                   bitstream=bitstream, quiet=args.quiet)
        except KeyboardInterrupt:
            if client.current_run is None:
                raise CliError("interrupted before the run started; nothing runs on the board", EXIT_INTERRUPTED) from None
            if args.board:
                raise CliError(f"interrupted; run {run_id} goes on on the board: follow it with `e2train attach "
                               f"--board {args.board} --run-id {run_id}`, end it with `e2train stop --board "
                               f"{args.board}`", EXIT_INTERRUPTED) from None
            raise CliError("interrupted; the simulated board and its run end with this command", EXIT_INTERRUPTED) from None
    print_summary(result)
    return 0 if result["results"].get("state", "finished") != "failed" else 1


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p, board_required=True)
    p.add_argument("--run-id", default=None, help="also say what became of this run")


def run_status(args: argparse.Namespace) -> int:
    with _board(args) as (client, _):
        rep = client.status(args.run_id)
    rep = {k: v for k, v in rep.items() if k not in ("v", "type", "id", "ok")}
    print(json.dumps(rep, indent=2, default=str))
    return 0


def _add_run_report_arguments(p: argparse.ArgumentParser, *, run_id_help: str, run_id_required: bool = False) -> None:
    """The board, the run and where its report goes: for the commands that end by fetching a run's report."""
    add_link_arguments(p, board_required=True)
    p.add_argument("--run-id", default=None, required=run_id_required, help=run_id_help)
    p.add_argument("--out", default=None, help=REPORT_DIR_HELP)


def add_attach_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_report_arguments(p, run_id_help="the run to follow (default: the board's current run)")
    p.add_argument("--quiet", action="store_true", help="no live progress")


def _restarted(board: str, run_id: str, run_state: str) -> CliError:
    """What to do about a run whose agent restarted: resume it, or, with nothing saved, start it again."""
    if run_state == "unsaved":
        return CliError(f"run {run_id} stopped before its first checkpoint (the board agent restarted): there is "
                        f"nothing to resume; start it again with `e2train train --board {board} --run-id {run_id}`",
                        EXIT_NOT_FOUND)
    return CliError(f"run {run_id} was interrupted (the board agent restarted); resume it with `e2train train "
                    f"--board {board} --run-id {run_id} --resume`", EXIT_NOT_FOUND)


def _failed(run_id: str, printer: "EventPrinter") -> CliError:
    """A run that failed on the board wrote no results: its error event says why, in one line."""
    return CliError(f"run {run_id} failed on the board: {printer.last_error or 'see `e2train status`'}",
                    EXIT_RUN_FAILED)


def run_attach(args: argparse.Namespace) -> int:
    with _board(args, follow=True) as (client, _):
        st = client.status(args.run_id)
        run_id = args.run_id or (st.get("run") or {}).get("run_id")
        if not run_id:
            raise CliError("the board has no run to attach to; start one with `e2train train`", EXIT_NOT_FOUND)
        state = st.get("run_state", st["state"]) if args.run_id else st["state"]
        if state == "unknown":
            raise CliError(f"the board knows no run {run_id}; `e2train status --board {args.board}` shows its run",
                           EXIT_NOT_FOUND)
        if state in ("interrupted", "unsaved"):
            raise _restarted(args.board, run_id, state)
        printer = EventPrinter(run_id, quiet=args.quiet)
        client.catch_up(0)                          # everything the board kept: the run so far
        try:
            if state == "training":
                state = follow(client, run_id, None, printer)
            else:
                for ev in client.events(timeout=0):
                    if ev.get("run_id") in (None, run_id):
                        printer(ev)
        finally:
            printer.close()
        if state == "interrupted":
            raise _restarted(args.board, run_id, client.status(run_id).get("run_state", "interrupted"))
        if state == "failed":
            raise _failed(run_id, printer)
        report = fetch_report(client, run_id, args.out, state)
    print_summary(report)
    return 0


def add_stop_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p, board_required=True)
    p.add_argument("--wait", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the run to end and store its results (0: do not wait)")


def run_stop(args: argparse.Namespace) -> int:
    with _board(args) as (client, _):
        rep = client.stop()
        if rep["state"] != "stopping":
            print(f"no run in progress (board state: {rep['state']})")
            return 0
        run_id = rep.get("run_id")
        end = time.monotonic() + args.wait
        while time.monotonic() < end:
            st = client.status()
            if st["state"] != "training":
                print(f"run {run_id} {st['state']}; its results: `e2train fetch --board {args.board} --run-id {run_id}`")
                return 0
            time.sleep(0.5)
        print(f"run {run_id} is stopping (at the end of its current step)")
    return 0


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_report_arguments(p, run_id_help="the run whose results to fetch (see `e2train status`)",
                              run_id_required=True)
    p.add_argument("--delete", action="store_true", help="delete the results on the board once fetched")


def run_fetch(args: argparse.Namespace) -> int:
    with _board(args) as (client, _):
        try:
            report = fetch_report(client, args.run_id, args.out, None, delete=args.delete)
        except BoardError as e:     # no results: a run still training gets the commands that end it
            if e.code != "no-results" or client.status(args.run_id).get("run_state") != "training":
                raise
            raise CliError(f"run {args.run_id} is still training, so it has no results yet: follow it to its end with "
                           f"`e2train attach --board {args.board} --run-id {args.run_id}` (which fetches them), or "
                           f"end it with `e2train stop --board {args.board}` and fetch then", EXIT_BUSY) from None
    print_summary(report)
    return 0


def report_dir(out: str | None, run_id: str) -> Path:
    """Where a run's report is written (--out, else runs/<run id>), created if missing."""
    out_dir = Path(out or Path("runs") / run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def fetch_report(client: BoardClient, run_id: str, out: str | None, state: str | None, *, delete: bool = False,
                 config: dict | None = None, meter: dict | None = None) -> dict:
    results = client.results(run_id, delete=delete)
    results["state"] = state or ("stopped" if results.get("stopped") else "finished")
    out_dir = report_dir(out, run_id)
    report = {"run_id": run_id, "config": config, "results": results, "meter": meter}
    write_reports(report, out_dir)
    report["out_dir"] = str(out_dir)
    return report


def write_reports(report: dict, out_dir: Path) -> None:
    """report.json (what the board and the meter returned, as they returned it) and the run
    record (records.json, docs/records.md) that every reader of runs loads."""
    from ..core import run_record as rr
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    results = report["results"]
    env = rr.environment(platform=rr.board_platform(results))
    rec = rr.device_record(results, report.get("config"), meter=report.get("meter"), run_id=report["run_id"], env=env)
    rr.save(rec, out_dir / rr.RECORD_FILE)


# --- pieces used by `train` and by the demo --------------------------------------------

class _board:
    """Context manager: (client, simulated meter spec or None) for --board or a new simulated board."""

    def __init__(self, args, follow: bool = False):
        self.args = args
        self.follow = follow            # the command follows a run's events (train, attach)
        self.sim = None
        self.client = None

    def __enter__(self):
        board = getattr(self.args, "board", None)
        try:
            if board:
                self.client = BoardClient(board, baud=getattr(self.args, "baud", 115200),
                                          token=getattr(self.args, "token", None),
                                          reconnect_s=getattr(self.args, "reconnect", 60.0), follow=self.follow)
                return self.client, None
            print("e2train: no --board given: starting the simulated board", file=sys.stderr)
            self.sim = SimulatedBoard()
            self.client = BoardClient(self.sim.link)
            return self.client, self.sim.meter
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        if self.client is not None:
            if self.sim is not None:
                self.client.shutdown()
            self.client.close()
        if self.sim is not None:
            self.sim.stop()


def validate_config(config: dict) -> None:
    """The board's own validator, run on the host before any port is opened."""
    from ..device.train_config import TrainConfig
    TrainConfig.from_dict(config)       # ConfigError (a ValueError): exit code 2, one line


def check_meter_port(spec: str | None) -> None:
    """A meter on a device node that does not exist is named before the board is touched
    (the meter itself is opened after the upload, so that its idle window is idle)."""
    from .exit_codes import EXIT_METER
    where = (spec or "").partition(":")[2]
    if where.startswith("/dev/") and not os.path.exists(where):
        raise CliError(f"power meter: {where} does not exist; check the device name (ls /dev/ttyUSB* /dev/ttyACM*) "
                       "or pass --meter none", EXIT_METER)


def load_dataset_bytes(name: str, data_dir: str | None) -> bytes:
    from ..data.datasets import DatasetError
    try:
        return dataset_npz(name, data_dir)
    except (DatasetError, FileNotFoundError) as e:
        raise CliError(f"data set {name}: {e}", EXIT_NOT_FOUND) from None


def build_config(preset: str, config_file: str | None, overrides: list[str]) -> dict:
    from ..device.board import preset_config
    cfg = preset_config(preset)
    if config_file:
        from ..core.train_keys import parse_config_text
        try:
            text = Path(config_file).read_text()
        except OSError as e:
            raise CliError(f"cannot read --config {config_file}: {e.strerror or e}", EXIT_NOT_FOUND) from None
        cfg.update(parse_config_text(text, f"--config {config_file}"))       # JSON, or TOML for .toml
    for item in overrides:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            cfg[key] = json.loads(val)
        except json.JSONDecodeError:
            cfg[key] = val
    return cfg


def dataset_npz(name: str, data_dir: str | None) -> bytes:
    """The data set as compressed npz bytes (no pickle), as the board agent expects it: a set of
    8-bit pixels as its codes and their ``pixel_table`` (``core.pixels``; the board standardises
    each batch through it, the same numbers as the host's float32 images), so the board holds a
    byte a pixel (CIFAR-10: 184 MB, not 737 MB, on a 512 MB PYNQ-Z2); other sets as float32.
    Compressed: digits is 49 KB (66 KB as float32 images, 475 KB raw), about 6 s at 115200 baud
    with base64's third more."""
    from ..core.pixels import Pixels
    from ..data.datasets import load
    xtr, ytr, xte, yte = load(name, data_dir, pixels=True)
    arrays = {"y_train": np.asarray(ytr, np.int64), "y_test": np.asarray(yte, np.int64)}
    if isinstance(xtr, Pixels):
        arrays.update(x_train=xtr.codes, x_test=xte.codes, pixel_table=xtr.table)
    else:
        arrays.update(x_train=np.asarray(xtr, np.float32), x_test=np.asarray(xte, np.float32))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


SLOW_UPLOAD_S = 600        # an upload longer than this on a serial line is announced, with the faster way


def slow_upload_note(label: str, nbytes: int, baud: int | None) -> str | None:
    """One line for an upload that will take longer than SLOW_UPLOAD_S on a serial line: how
    long, and that TCP is faster; None otherwise."""
    from ..link.protocol import upload_seconds
    s = upload_seconds(nbytes, baud)
    if s <= SLOW_UPLOAD_S:
        return None
    took = f"{s / 3600:.1f} hours" if s >= 3600 else f"{s / 60:.0f} minutes"
    return (f"upload {label}: {nbytes / 1e6:.1f} MB at {baud} baud takes about {took}; the board's Ethernet "
            f"(e2train board --tcp, then --board socket://HOST:PORT) takes seconds to minutes")


def dataset_for_agent(blob: bytes, hello: dict) -> tuple[bytes, str | None]:
    """The data set as the board's agent reads it, and a line to say when it had to change: an
    agent that does not say "pixel_codes" in its hello predates 8-bit uploads and would refuse
    them, so it gets the standardised float32 images (the same numbers, four times the memory)."""
    if "pixel_codes" in (hello.get("features") or ()):
        return blob, None
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    table = arrays.pop("pixel_table", None)
    if table is None:
        return blob, None
    from ..core.pixels import standardise
    for k in ("x_train", "x_test"):
        arrays[k] = standardise(arrays[k], table)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue(), ("the board's agent predates 8-bit data sets: sending float32 images, which take four "
                            "times the board's memory; update it with `e2train flash --package`")


def upload_progress(label: str, quiet: bool, baud: int | None = None):
    """A progress bar (tqdm, on stderr) for an upload, and before its first byte a line when the
    serial line makes it long (``slow_upload_note``; said even when quiet). None when there is
    nothing to show."""
    told: list = []

    def tell(done: int, total: int) -> None:
        if not told:
            told.append(True)
            note = slow_upload_note(label, total - done, baud)
            if note:
                print(note, file=sys.stderr)
    if quiet:
        return tell if baud else None
    try:
        from tqdm import tqdm
    except ImportError:
        return tell if baud else None
    bar: list = []

    def update(done: int, total: int) -> None:
        tell(done, total)
        if not bar:
            # disable=None: drawn on a terminal only, so logs and pipes get no bar lines
            bar.append(tqdm(total=total, unit="B", unit_scale=True, desc=f"upload {label}", file=sys.stderr,
                            leave=True, disable=None))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()
    return update


def check_board_room(dataset: str, blob: bytes, hello: dict) -> None:
    """Refuse, before a byte is sent, a data set the board's memory cannot hold (the board's own
    rule, ``agent.dataset_too_large``, on the memory its hello reports): on a serial line the
    board would otherwise say so only when hours of upload are over. An agent that reports no
    memory figure checks it itself, when the upload completes."""
    from ..device.agent import dataset_memory_bytes, dataset_too_large
    why = dataset_too_large(dataset, dataset_memory_bytes(io.BytesIO(blob)), hello.get("mem_available"))
    if why:
        raise CliError(why + "; nothing was sent", EXIT_BOARD)


def train_session(client: BoardClient, config: dict, *, dataset: str, data_dir: str | None = None,
                  dataset_bytes: bytes | None = None, meter: str | None = None, idle_s: float = 2.0,
                  out: str | None = None, run_id: str | None = None, resume: bool = False,
                  label: str | None = None, quiet: bool = False, bitstream: str | None = None) -> dict:
    """Flash if needed, upload, train with live progress, fetch results; meter recorded alongside.
    If the board agent restarts mid-run, the run is resumed from its last checkpoint."""
    if not client.hello.get("flashed") or bitstream:
        client.flash(bitstream)
    blob = dataset_npz(dataset, data_dir) if dataset_bytes is None else dataset_bytes
    blob, note = dataset_for_agent(blob, client.hello)
    if note:
        print(f"e2train: {note}", file=sys.stderr)
    check_board_room(dataset, blob, client.hello)
    if not client.upload_bytes(dataset, blob, upload_progress(dataset, quiet, client.line_baud)) and not quiet:
        print(f"data set {dataset}: the board already holds it ({len(blob) / 1e3:,.0f} KB, same sha256); "
              "not sent again", file=sys.stderr)
    if client.agent_restarted:                  # during the upload: the new agent has no bitstream loaded
        client.agent_restarted = False
        client.flash(bitstream)
    run_id = run_id or time.strftime(f"{label or 'run'}-%Y%m%d-%H%M%S")
    out_dir = report_dir(out, run_id)
    rec = None
    if meter:
        from ..meter.recorder import Recorder
        rec = Recorder(meter, idle_s=idle_s, out_dir=out_dir)
        rec.start()             # waits for the first sample, then records idle power
    printer = EventPrinter(label or run_id, quiet=quiet)

    def resume_after_restart() -> None:
        saved = client.status(run_id).get("run_state") != "unsaved"
        print(f"\ne2train: the board agent restarted (new session); " +
              (f"resuming run {run_id} from its last checkpoint" if saved else
               f"starting run {run_id} again from the start (it stopped before its first checkpoint)"),
              file=sys.stderr)
        client.flash(bitstream)
        client.train(config, dataset, run_id=run_id, resume=saved)

    try:
        if rec:
            rec.mark("train")
        run_id = client.train(config, dataset, run_id=run_id, resume=resume)
        state = follow(client, run_id, rec, printer, on_restart=resume_after_restart)
        if state == "failed":
            raise _failed(run_id, printer)
        results = client.results(run_id)
        results["state"] = state
    finally:
        printer.close()
        meter_summary = None
        if rec:
            rec.mark("done")
            rec.stop()
            meter_summary = rec.summary()
            rec.save(out_dir)
    report = {"run_id": run_id, "config": config, "results": results, "meter": meter_summary}
    write_reports(report, out_dir)
    from .run_report import write_run_report
    write_run_report(report, out_dir)        # summary.md; power on the board's time (PNG + SVG)
    report["out_dir"] = str(out_dir)
    return report


def follow(client: BoardClient, run_id: str, rec, printer, *, on_restart=None,
           heartbeat_s: float = HEARTBEAT_S) -> str:
    """Print events until the run ends; reconnect if the link drops. Returns finished,
    stopped, failed, or interrupted (the agent restarted and ``on_restart`` is None).

    A board that reboots need not close a serial link: after ``heartbeat_s`` of silence the
    host asks for the status, which shows a new agent session (or times out: a drop). A run
    that starts ``STUCK_STARTS`` times from the same checkpoint and is cut short by a restart
    each time is not resumed again (``stuck_run``)."""
    last_heard = time.monotonic()
    quiet_end = None                    # the run's end as status told it, with no event to say so
    starts: list[tuple] = []            # where each start of the run began (its resumed_at)
    low_memory = None                   # MiB available when the board last warned of low memory
    while True:
        try:
            if client.agent_restarted:
                client.agent_restarted = False
                if rec:
                    rec.mark("agent-restarted")
                if on_restart is None:
                    return "interrupted"
                stuck_run(run_id, starts, low_memory)
                on_restart()
                last_heard = time.monotonic()
            got = False
            for ev in client.events(timeout=0.5):
                got = True
                if ev.get("run_id") not in (None, run_id):
                    continue
                name = ev.get("event")
                if name == "started":
                    at = ev.get("resumed_at") or {}
                    starts.append((at.get("epoch", 0), at.get("batch", 0)))
                elif name == "warning" and isinstance(ev.get("mem_available"), (int, float)):
                    low_memory = ev["mem_available"] / 2**20
                if rec and name in ("epoch", "finished", "stopped"):
                    rec.mark(name, t_board=ev.get("t"), **{k: ev[k] for k in ("epoch",) if k in ev})
                printer(ev)
                if name in ("finished", "stopped"):
                    return name
                if name == "error" and ev.get("run_id") == run_id:
                    return "failed"
            if got:
                last_heard = time.monotonic()
            elif time.monotonic() - last_heard > heartbeat_s:
                st = client.check_session(timeout=heartbeat_s)
                last_heard = time.monotonic()
                ended = run_ended(st, run_id) if not client.agent_restarted else None
                if ended:
                    # the run ended but its last event never came: fetch what the board kept;
                    # if two silences running bring nothing, end with the state status gives
                    client.catch_up()
                    if not client.pending_events:
                        if quiet_end == ended:
                            return ended
                        quiet_end = ended
        except LinkError as e:
            print(f"\ne2train: link lost ({e}); reconnecting (training goes on on the board)", file=sys.stderr)
            if rec:
                rec.mark("link-lost")
            client.reconnect()
            print(f"e2train: reconnected; caught up to event {client.last_seq}", file=sys.stderr)
            last_heard = time.monotonic()


def run_ended(status: dict | None, run_id: str) -> str | None:
    """finished, stopped or failed when the board's ``status`` says that run ``run_id`` is over."""
    if not isinstance(status, dict) or (status.get("run") or {}).get("run_id") != run_id:
        return None
    state = status.get("state")
    return state if state in ("finished", "stopped", "failed") else None


def stuck_run(run_id: str, starts: list[tuple], low_memory: float | None) -> None:
    """Refuse to resume a run whose last ``STUCK_STARTS`` starts all began at the same checkpoint
    (``starts``: the (epoch, batch) of each, in order) and each ended in an agent restart."""
    last = starts[-STUCK_STARTS:]
    if len(last) < STUCK_STARTS or len(set(last)) != 1:
        return
    epoch, batch = last[0]
    where = f"epoch {epoch + 1}, batch {batch}" if epoch or batch else "its start"
    cause = (f"the board warned it had {low_memory:.0f} MiB of memory left, so the kernel's out-of-memory killer "
             "is the likely cause" if low_memory is not None else
             "the kernel's out-of-memory killer is the most common cause (`dmesg` on the board says)")
    again = (f"its checkpoint stays on the board: `e2train train --run-id {run_id} --resume` tries it again as it is"
             if epoch or batch else f"`e2train train --run-id {run_id}` tries it again as it is")
    raise CliError(f"run {run_id} started {STUCK_STARTS} times from {where} and the board agent restarted each time "
                   f"before the next checkpoint; {cause}: start it again with a smaller batch_size or "
                   f"eval_batch_size, or a smaller data set ({again})", EXIT_RUN_FAILED)


class EventPrinter:
    """Live progress from the trainer's events (``core.run_record.EVENTS``): ``started``
    (total_epochs, batches_per_epoch), ``progress`` (epoch, batch, loss), ``epoch`` (train_loss,
    train_acc, test_acc, batches_run/skipped, energy_j), ``warning`` (message), ``error``.
    Epochs count from 1 in the events; accuracy is a fraction there, printed in percent."""

    def __init__(self, label: str, *, quiet: bool = False, out=None):
        self.label = label
        self.quiet = quiet
        self.out = out or sys.stderr
        self.total_epochs: int | None = None
        self.batches: int | None = None
        self.bar = None                      # the epoch's tqdm bar while it is open
        self.bar_epoch = None
        self.last_error: str | None = None   # the board's last error event (a failed run's cause)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()                 # leaves the bar's last state on its own line
            self.bar = None

    def close(self) -> None:
        """End the open bar now (before an interrupt's message), not at interpreter exit."""
        self._close_bar()

    def _line(self, text: str) -> None:
        self._close_bar()
        print(f"{self.label}: {text}", file=self.out, flush=True)

    def __call__(self, ev: dict) -> None:
        name = ev.get("event")
        if name == "started":
            self.total_epochs = ev.get("total_epochs")
            self.batches = ev.get("batches_per_epoch")
            if not self.quiet:
                at = ev.get("resumed_at") or {}
                # resumed_at counts epochs done; the events number the epoch under way from 1
                resumed = (f", resumed in epoch {at.get('epoch', 0) + 1} at batch {at.get('batch', 0)}"
                           if at.get("epoch") or at.get("batch") else "")
                self._line(f"training {self.total_epochs} epochs of {self.batches} batches{resumed}")
        elif name == "warning":                 # checkpoint fallbacks: shown even when quiet
            self._line(f"board warning: {ev.get('message')}")
        elif name == "error":
            self.last_error = str(ev.get("error"))
            self._line(f"board error: {ev.get('error')}")
        elif self.quiet:
            return
        elif name == "progress":
            self._bar(ev)
        elif name == "epoch":
            self._epoch(ev)
        elif name in ("finished", "stopped"):
            self._line(name)

    def _bar(self, ev: dict) -> None:
        from tqdm import tqdm
        done = (ev.get("batch") or 0) + 1
        epoch = ev.get("epoch")
        if self.bar is None or epoch != self.bar_epoch:
            self._close_bar()
            head = f"epoch {epoch if isinstance(epoch, int) else '?'}/{self.total_epochs or '?'}"
            # drawn on any stream (a log shows it too, as the events it reports); '#' on '.'
            fmt = "{desc} [{bar:30}] {n_fmt}/{total_fmt}{postfix}" if self.batches else "{desc} {n_fmt}{postfix}"
            self.bar = tqdm(total=self.batches or None, desc=f"{self.label}: {head}", file=self.out,
                            bar_format=fmt, ascii=".#", leave=True, disable=False, mininterval=0)
            self.bar_epoch = epoch
        self.bar.update(min(done, self.bar.total or done) - self.bar.n)
        if isinstance(ev.get("loss"), (int, float)):
            self.bar.set_postfix_str(f"loss {ev['loss']:.4f}", refresh=False)
        self.bar.refresh()

    def _epoch(self, ev: dict) -> None:
        epoch = ev.get("epoch")
        parts = [f"epoch {epoch if isinstance(epoch, int) else '?'}/{self.total_epochs or '?'}"]
        for key, fmt in (("train_loss", "train loss {:.4f}"), ("train_acc", "train acc {:.2%}"),
                         ("test_acc", "test acc {:.2%}")):
            if isinstance(ev.get(key), (int, float)):
                parts.append(fmt.format(ev[key]))
        if ev.get("batches_run") is not None:
            parts.append(f"batches {ev['batches_run']} run, {ev.get('batches_skipped', 0)} skipped")
        energy = ev.get("energy_j")
        if isinstance(energy, (int, float)):
            parts.append(f"energy {energy:.3g} J (modelled)")
        self._line("  ".join(parts))


def main_summary_lines(report: dict) -> list[str]:
    res = report["results"]
    lines = [f"run {report['run_id']} ({res.get('state', '?')})"]
    for k, v in res.get("summary", {}).items():
        lines.append(f"  {k:28s} {v}")
    m = report.get("meter")
    if m:
        lines.append(f"  meter: {m.get('energy_kind')} ({m.get('energy_note')})")
        from .run_report import meter_caveat
        if caveat := meter_caveat(report):
            lines.append(f"  meter caveat: {caveat}")
        for k in ("total_energy_j", "energy_above_idle_j", "avg_power_w", "duration_s", "samples", "gap_count",
                  "bad_lines", "disconnects"):
            if k in m:
                lines.append(f"  {'meter ' + k:28s} {m[k]}")
    lines.append(f"  report: {report.get('out_dir')}")
    return lines


def print_summary(report: dict) -> None:
    print("\n" + "\n".join(main_summary_lines(report)))

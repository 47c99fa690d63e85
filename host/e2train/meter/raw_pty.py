"""A pseudo-terminal in raw mode: the simulated board's link (`e2train board --pty`) and its
simulated meter each serve one, as a serial line. Stdlib only (the meter package imports nothing
of e2train but itself; the agent imports this lazily, on the simulated board's path)."""
from __future__ import annotations

import os


class PtyError(OSError):
    """No pseudo-terminal could be made: an OSError that is not about a path (exit code: local I/O)."""


def open_raw_pty(purpose: str, otherwise: str) -> tuple[int, int]:
    """(master, slave) of a new pseudo-terminal in raw mode: no echo, no CR/LF translation, so
    that it carries bytes as a serial line does. Without a devpts (a bare chroot, a minimal
    container) openpty fails with ENOENT, which would read as a missing file: say what it is."""
    import tty
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise PtyError(f"cannot create a pseudo-terminal for {purpose}: {e.strerror or e} (no devpts at "
                       f"/dev/pts? a bare chroot or a minimal container has none); mount one, or {otherwise}") from e
    tty.setraw(slave)
    return master, slave

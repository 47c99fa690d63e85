"""Fixtures of the end-to-end tests. `throttled_line`: a serial line at a given baud rate: a pty the host opens, relayed to the board
agent's pty at most ``baud / 10`` bytes per second in each direction (8N1: 10 bits per byte
on the wire). The relay reads only what the line may carry, so a writer that sends faster
fills the kernel's pty buffer and blocks, as behind a real UART.

``retarget(path)`` moves the board end to another pty (the agent restarted), while the host
end stays open, as a USB-serial adapter stays open while the board reboots.
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty


class ThrottledLine:
    def __init__(self, board_path: str, baud: int = 115200):
        self.rate = baud / 10.0
        self.burst = max(64, int(self.rate * 0.02))           # at most 20 ms of line at once
        self.host_master, self._host_slave = os.openpty()
        tty.setraw(self._host_slave)
        self.path = os.ttyname(self._host_slave)
        self.board_fd: int | None = None
        self.lock = threading.Lock()
        self.carried = {"to_board": 0, "to_host": 0}
        self.started = time.monotonic()
        self.retarget(board_path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="throttled-line")
        self._thread.start()

    def retarget(self, board_path: str) -> None:
        fd = os.open(board_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        with self.lock:
            old, self.board_fd = self.board_fd, fd
        if old is not None:
            os.close(old)

    def _run(self) -> None:
        allowance = {"to_board": 0.0, "to_host": 0.0}
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            for k in allowance:
                allowance[k] = min(self.burst, allowance[k] + (now - last) * self.rate)
            last = now
            with self.lock:
                board = self.board_fd
            fds = [self.host_master] + ([board] if board is not None else [])
            r, _, _ = select.select(fds, [], [], 0.005)
            if board is not None and board in r and allowance["to_host"] >= 1:
                data = self._read(board, int(allowance["to_host"]))
                if data is None:                                # the agent is gone
                    with self.lock:
                        if self.board_fd == board:
                            os.close(board)
                            self.board_fd = None
                elif data:
                    allowance["to_host"] -= len(data)
                    self._write(self.host_master, data)
                    self.carried["to_host"] += len(data)
            if self.host_master in r and allowance["to_board"] >= 1:
                data = self._read(self.host_master, int(allowance["to_board"]))
                if data and board is not None:                  # no board: bytes fall off the line
                    allowance["to_board"] -= len(data)
                    self._write(board, data)
                    self.carried["to_board"] += len(data)
            time.sleep(0.002)

    @staticmethod
    def _read(fd: int, n: int) -> bytes | None:
        try:
            data = os.read(fd, n)
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data if data else None

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        end = time.monotonic() + 5
        while view and time.monotonic() < end:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [], 0.05)
            except OSError:
                return

    def bytes_per_second(self) -> float:
        return sum(self.carried.values()) / max(1e-9, time.monotonic() - self.started)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.host_master, self._host_slave, self.board_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


import pytest  # noqa: E402


@pytest.fixture
def throttled_line():
    """Factory: ``throttled_line(board_path, baud)`` -> a started :class:`ThrottledLine`."""
    lines: list[ThrottledLine] = []

    def make(board_path: str, baud: int = 115200) -> ThrottledLine:
        lines.append(ThrottledLine(board_path, baud))
        return lines[-1]
    yield make
    for line in lines:
        line.close()

"""The agent on a serial port (`e2train board --port DEV`), the path a board's UART takes:
two pseudo-terminals joined back to back stand in for the cable."""
import os
import select
import threading
import tty

import pytest

from e2train.device import agent as agent_mod
from e2train.link.client import BoardClient


def _cable():
    """Two pty pairs whose masters are joined: (board end path, host end path, stop)."""
    (m1, s1), (m2, s2) = os.openpty(), os.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            r, _, _ = select.select([m1, m2], [], [], 0.05)
            for src, dst in ((m1, m2), (m2, m1)):
                if src in r:
                    try:
                        os.write(dst, os.read(src, 4096))
                    except OSError:
                        pass
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return os.ttyname(s1), os.ttyname(s2), (stop, t, (m1, s1, m2, s2))


def test_agent_serves_a_serial_port_and_refuses_a_missing_one(tmp_path, fake_board):
    import serial
    agent = agent_mod.Agent(tmp_path / "b")
    with pytest.raises(serial.SerialException, match="could not open port"):
        agent_mod.serve_serial(agent, "/dev/ttyE2TRAINnone", 115200)
    board_end, host_end, (stop, t, fds) = _cable()
    th = threading.Thread(target=agent_mod.serve_serial, args=(agent, board_end, 115200), daemon=True)
    th.start()
    try:
        with BoardClient(host_end, baud=115200) as c:
            assert c.hello["state"] == "idle"
            c.flash()
            c.upload_bytes("e2train.bit", b"\x5a" * 40_000, kind="bitstream", bitstream="s")   # 3 chunks
            assert c.status()["state"] == "idle"
        assert (tmp_path / "b" / "bitstreams" / "s" / "e2train.bit").read_bytes() == b"\x5a" * 40_000
    finally:
        agent.shutdown.set()
        th.join(5)
        stop.set()
        t.join(2)
        for fd in fds:
            os.close(fd)

"""The link at the slowest baud rate it supports (9600, throttled by the test harness): an
upload in CRC-checked chunks each of which fits its timeout, and the replies after it."""
import time

from e2train.link import protocol as link
from e2train.link.client import BoardClient, SimulatedBoard


def test_upload_and_replies_at_9600_baud(tmp_path, throttled_line):
    blob = bytes(range(256)) * 16                                   # 4 KiB: 3 chunks at 9600 baud
    with SimulatedBoard(data_dir=tmp_path / "board", meter="none") as sim:
        line = throttled_line(sim.link, 9600)
        with BoardClient(line.path, baud=9600) as c:
            t0 = time.monotonic()
            seen = []
            c.upload_bytes("e2train.bit", blob, lambda done, total: seen.append(done), kind="bitstream",
                           bitstream="slow")
            took = time.monotonic() - t0
            st = c.status()
        assert (tmp_path / "board" / "bitstreams" / "slow" / "e2train.bit").read_bytes() == blob
    step = link.upload_chunk_bytes(9600)
    assert step < len(blob) and seen[0] == 0 and step in seen and seen[-1] == len(blob)
    assert took >= len(blob) * 4 / 3 / 960                          # the line really was 9600 baud
    assert st["state"] == "idle"

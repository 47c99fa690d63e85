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
    # the host's estimate (base64 and each chunk's JSON) is what the wire took, less the replies
    assert len(blob) * 4 / 3 / 960 < link.upload_seconds(len(blob), 9600) <= took
    assert st["state"] == "idle"


def test_an_upload_that_a_serial_line_makes_long_is_announced_once_even_when_quiet(capsys):
    """CIFAR-10's codes (about 150 MB) at 115200 baud: hours, said before the first byte with the
    faster way; digits (49 KB), or anything over TCP (no baud rate), says nothing."""
    from e2train.app.train_cli import slow_upload_note, upload_progress
    assert link.upload_seconds(150_000_000, 115200) > 4 * 3600
    note = slow_upload_note("cifar10", 150_000_000, 115200)
    assert note.startswith("upload cifar10: 150.0 MB at 115200 baud takes about 4.9 hours")
    assert "--board socket://HOST:PORT" in note
    assert slow_upload_note("digits", 49_000, 115200) is None and slow_upload_note("c", 150_000_000, None) is None
    tell = upload_progress("cifar10", quiet=True, baud=115200)
    tell(0, 150_000_000)
    tell(20_000, 150_000_000)
    assert capsys.readouterr().err.count("takes about") == 1
    assert upload_progress("cifar10", quiet=True, baud=None) is None

"""The host checks a data set against the memory the board reports before it sends a byte: on a
serial line the board's own check would come only when hours of upload are over."""
import io

import numpy as np
import pytest

from e2train.app import train_cli
from e2train.app.exit_codes import EXIT_BOARD, CliError
from e2train.device import agent as agent_mod


def _blob(n: int) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=np.zeros((n, 3, 32, 32), np.float32), y_train=np.zeros(n, np.int64),
                        x_test=np.zeros((8, 3, 32, 32), np.float32), y_test=np.zeros(8, np.int64))
    return buf.getvalue()


class NoUploadClient:
    """A link that fails the test if anything is sent."""

    def __init__(self, hello):
        self.hello = hello
        self.line_baud = None

    def flash(self, *a, **k):
        pass

    def upload_bytes(self, *a, **k):
        raise AssertionError("the data set was sent")

    def train(self, *a, **k):
        raise AssertionError("a run was started")


def test_a_data_set_the_board_cannot_hold_is_refused_before_it_is_sent(tmp_path):
    blob = _blob(2000)                                  # 2000 x 12 KiB of float32: 23.5 MiB in memory
    need = agent_mod.dataset_memory_bytes(io.BytesIO(blob))
    hello = {"flashed": {"board": "sim"}, "mem_available": int(need / agent_mod.DATASET_MEMORY_SHARE) - 1}
    with pytest.raises(CliError) as e:
        train_cli.train_session(NoUploadClient(hello), {}, dataset="big", dataset_bytes=blob, out=str(tmp_path))
    msg = str(e.value)
    assert e.value.code == EXIT_BOARD and "\n" not in msg
    assert msg.startswith("data set big needs 24 MiB in memory") and msg.endswith("nothing was sent")
    # the board's own refusal says the same
    assert agent_mod.dataset_too_large("big", need, hello["mem_available"]) in msg


def test_room_enough_or_no_figure_passes():
    blob = _blob(100)
    need = agent_mod.dataset_memory_bytes(io.BytesIO(blob))
    train_cli.check_board_room("d", blob, {"mem_available": int(need / agent_mod.DATASET_MEMORY_SHARE) + 1})
    train_cli.check_board_room("d", blob, {})           # an older agent: it checks on its side


def test_the_board_reports_its_memory_and_disk(tmp_path):
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    for reply in (agent.cmd_hello(), agent.cmd_status()):
        assert reply["disk_free"] > 0
        assert isinstance(reply["mem_available"], int) and reply["mem_available"] > 0     # /proc/meminfo

"""Fixtures shared by the agent tests: a stand-in for the flashed board, and the agent served
on a thread (pty or TCP) and shut down when the test ends."""
import os
import sys
import threading

import pytest

# --import-mode=importlib leaves this folder off sys.path: the tests import agent_fakes from it
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from e2train.device import agent as agent_mod


class FakeBoard:
    """What `open_board` returns without a bitstream: the agent reads only .backend and .info."""
    backend = None
    info = {"board": "fake", "kernels": ["conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg"]}


@pytest.fixture
def fake_board(monkeypatch):
    """`flash` loads the stand-in board instead of a bitstream."""
    monkeypatch.setattr(agent_mod, "open_board", lambda *a, **k: FakeBoard())
    return FakeBoard


@pytest.fixture
def serve_agent():
    """start(agent, serve, *args): run `serve(agent, *args, announce)` on a thread and return the
    address it announces (a pty path or a tcp:// URL). Every agent started is stopped at teardown."""
    running = []

    def start(agent, serve, *args):
        where, ready = {}, threading.Event()

        def announce(address):
            where["address"] = address
            ready.set()

        t = threading.Thread(target=serve, args=(agent, *args, announce), daemon=True)
        t.start()
        running.append((agent, t))
        assert ready.wait(5), f"{serve.__name__} did not announce an address within 5 s"
        return where["address"]

    yield start
    for agent, t in running:
        agent.shutdown.set()
        t.join(5)


@pytest.fixture
def served(tmp_path, monkeypatch, fake_board, serve_agent):
    from agent_fakes import FakeTrainer

    def make(config, data, backend, *, ckpt_dir, resume, on_event):
        try:
            return FakeTrainer(config, on_event)
        except ValueError as e:
            raise agent_mod.CommandError(f"bad training config: {e}", "bad-config")

    monkeypatch.setattr(agent_mod, "make_trainer", make)
    agent = agent_mod.Agent(tmp_path / "board", simulated=True)
    return agent, serve_agent(agent, agent_mod.serve_pty)

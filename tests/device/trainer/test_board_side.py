"""Board-side import hygiene and the pieces of the trainer that run alone on the ARM."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from e2train.device.nn_layers import ArmTally
from e2train.device.slu_gate import GateNet


def test_trainer_imports_with_torch_blocked():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import e2train.device.trainer, e2train.device.checkpoint, e2train.device.smd, e2train.device.arm_calibration\n"
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib', 'scipy') if sys.modules.get(m) is not None]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gate_backward_matches_finite_differences(cell):
    """BPTT through the shared GRU or LSTM cell: dL/dparams for L = sum_i sum_n c_in * p_in."""
    rng = np.random.default_rng(0)
    chans = [3, 5, 4]
    net = GateNet(chans, [1, 2, 3], hidden=4, rng=rng, cell=cell)
    for v in net.params.values():
        v += rng.normal(0, 0.3, v.shape).astype(np.float32)
    xs = [rng.normal(0, 1, (6, c, 2, 2)).astype(np.float32) for c in chans]
    coef = [rng.normal(0, 1, 6).astype(np.float32) for _ in chans]

    def loss():
        net.reset(6)
        ps = [net.forward(i, x.mean(axis=(2, 3)), ArmTally())[0] for i, x in enumerate(xs)]
        return float(sum((c.astype(np.float64) * p).sum() for c, p in zip(coef, ps)))

    loss()
    grads = net.backward(coef, ArmTally())
    for name in (f"{cell}.wx", f"{cell}.wh", f"{cell}.bx", f"{cell}.bh", "embed0.weight", "embed2.bias",
                 "head.weight", "head.bias"):
        p = net.params[name]
        num = np.zeros(p.size)
        for j in range(p.size):
            old = p.flat[j]
            p.flat[j] = old + 1e-2
            up = loss()
            p.flat[j] = old - 1e-2
            down = loss()
            p.flat[j] = old
            num[j] = (up - down) / 2e-2
        ana = grads[name].reshape(-1).astype(np.float64)
        assert np.allclose(ana, num, rtol=2e-2, atol=2e-3), (name, ana[:4], num[:4])


def test_lstm_gate_is_pytorchs_lstm_cell():
    """The numpy LSTM step against the LSTM equations written out in float64 (i|f|g|o rows),
    the state carried from block to block, and the same parameters draw the same gates."""
    rng = np.random.default_rng(1)
    net = GateNet([3, 3], [1, 1], hidden=5, rng=rng, cell="lstm")
    xs = [rng.normal(0, 1, (7, 3, 2, 2)).astype(np.float32) for _ in range(2)]
    net.reset(7)
    ps = [net.forward(i, x.mean(axis=(2, 3)), ArmTally())[0] for i, x in enumerate(xs)]
    P = {k: v.astype(np.float64) for k, v in net.params.items()}
    sig = lambda a: 1 / (1 + np.exp(-a))           # noqa: E731
    h = c = np.zeros((7, 5))
    for i, x in enumerate(xs):
        u = x.astype(np.float64).mean(axis=(2, 3)) @ P[f"embed{i}.weight"].T + P[f"embed{i}.bias"]
        a = u @ P["lstm.wx"].T + P["lstm.bx"] + h @ P["lstm.wh"].T + P["lstm.bh"]
        ig, fg, gg, og = sig(a[:, :5]), sig(a[:, 5:10]), np.tanh(a[:, 10:15]), sig(a[:, 15:])
        c = fg * c + ig * gg
        h = og * np.tanh(c)
        assert np.allclose(ps[i], sig(h @ P["head.weight"] + P["head.bias"][0]), atol=1e-5)
    assert "gru.wx" not in net.params and net.params["lstm.wx"].shape == (20, 5)
    with pytest.raises(ValueError, match="gru, lstm"):
        GateNet([3], [1], hidden=2, rng=rng, cell="rnn")


def test_penalty_pushes_towards_the_target():
    net = GateNet([4, 4], [1, 3], hidden=2, rng=np.random.default_rng(0))
    on = [np.ones(8, bool), np.ones(8, bool)]
    pen, r, grads = net.penalty(on, alpha=1.0, target=0.5)
    assert r == 1.0 and pen == 0.25
    assert all((g > 0).all() for g in grads)           # above target: gradient closes gates
    assert grads[1][0] == 3 * grads[0][0]              # in proportion to the block's cost
    off = [np.zeros(8, bool), np.zeros(8, bool)]
    _, r, grads = net.penalty(off, alpha=1.0, target=0.5)
    assert r == 0.0 and all((g < 0).all() for g in grads)


def test_the_papers_flops_penalty_always_closes_gates_in_proportion_to_cost():
    """slu_cost = "flops": alpha * R (E²-Train Eq. 1), whose gradient d(alpha R)/dg_in =
    alpha cost_i / (n sum cost) closes gates whatever R is: below any target it does not
    open them, as the target penalty does."""
    net = GateNet([4, 4], [1, 3], hidden=2, rng=np.random.default_rng(0))
    for g0, g1, r_want in ((np.ones(8, bool), np.ones(8, bool), 1.0),
                           (np.zeros(8, bool), np.zeros(8, bool), 0.0),
                           (np.arange(8) < 2, np.zeros(8, bool), 0.0625)):
        pen, r, grads = net.penalty([g0, g1], alpha=0.4, target=0.5, cost="flops")
        assert r == pytest.approx(r_want) and pen == pytest.approx(0.4 * r_want)
        assert grads[0] == pytest.approx(np.full(8, 0.4 * 1 / (8 * 4)))
        assert grads[1] == pytest.approx(np.full(8, 0.4 * 3 / (8 * 4)))
    with pytest.raises(ValueError, match="SLU cost must be one of flops, target"):
        net.penalty([g0, g1], alpha=0.4, target=0.5, cost="l2")


def test_training_gates_are_drawn_with_probability_p_and_evaluation_thresholds():
    """Sampled gates (SkipNet): on with probability p in training; p > 0.5 without a generator."""
    net = GateNet([4], [1], hidden=3, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(0, 1, (4000, 4, 2, 2)).astype(np.float32)
    net.reset(x.shape[0])
    p, hard = net.forward(0, x.mean(axis=(2, 3)), ArmTally(), np.random.default_rng(2))
    # p ~ 0.88 at initialisation (head bias 2): the draws follow it, not the threshold
    assert 0.8 < p.mean() < 0.95
    assert abs(hard.mean() - p.mean()) < 0.03
    assert 0 < hard.sum() < x.shape[0]
    net.reset(x.shape[0])
    p2, hard2 = net.forward(0, x.mean(axis=(2, 3)), ArmTally())
    assert np.array_equal(p2, p) and np.array_equal(hard2, p2 > 0.5)
    # the same generator state draws the same gates (resume depends on it)
    net.reset(x.shape[0])
    _, hard3 = net.forward(0, x.mean(axis=(2, 3)), ArmTally(), np.random.default_rng(2))
    assert np.array_equal(hard3, hard)


def test_calibrate_arm_runs_without_scikit_learn_and_never_suggests_torch(tmp_path):
    # A PYNQ image has numpy and pynq, not scikit-learn or torch: calibrate-arm times synthetic
    # data of the digits' shapes there, and the digits loader's hint names no torch extra.
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['sklearn'] = None\n"
        "from e2train.app.cli import main\n"
        "rc = main(['calibrate-arm', '--backend', 'golden', '--steps', '1', '--warmup', '0', '--config',\n"
        "           '{\"depth\": 8, \"width\": 4, \"batch_size\": 16, \"epochs\": 1, \"progress_every\": 0}'])\n"
        "assert rc == 0, rc\n"
        "from e2train.data import datasets\n"
        "try:\n"
        "    datasets.load_digits()\n"
        "except datasets.DatasetError as e:\n"
        "    print('HINT', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "synthetic" in out.stderr and "ARM-side throughput" in out.stdout
    hint = out.stdout.split("HINT", 1)[1]
    assert "scikit-learn" in hint and "torch" not in hint and "[host]" not in hint

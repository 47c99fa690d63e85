"""Skipping really skips: SMD batches and gated-off samples never reach the kernels."""
from __future__ import annotations

import numpy as np

from e2train.device import nn_qconv
from e2train.device.smd import batch_images, epoch_plan
from e2train.device.trainer import Trainer

TINY = dict(model="resnet8", width=4, batch_size=32, augment_shift=1, progress_every=0, conv_lr=0.01,
            slu_downsample=True)


def test_smd_drops_exactly_the_sampled_batches_and_calls_nothing_for_them(small_digits, spy):
    x_tr, y_tr, _, _ = small_digits
    cfg = dict(TINY, epochs=2, smd=True, smd_p=0.5, smd_energy_ratio=0.5, slu=False, seed=3)
    tr = Trainer(cfg, (x_tr, y_tr), spy)          # no test set: no evaluation calls either
    steps, calls_in_steps = [], []
    inner = tr.train_step

    def recording_step(x, y, t, **kw):
        before = len(spy.calls)
        out = inner(x, y, t, **kw)
        steps.append(t)
        calls_in_steps.append(len(spy.calls) - before)
        return out

    tr.train_step = recording_step
    res = tr.run()
    expected = []
    for e in range(2):
        plan = epoch_plan(x_tr.shape[0], 32, e, 3, 0.5, 1)
        expected += [e * plan.n_batches + b for b in range(plan.n_batches) if not plan.dropped[b]]
    dropped = 2 * tr.n_batches - len(expected)
    assert 0 < dropped < 2 * tr.n_batches          # the seed drops some, keeps some
    assert steps == expected
    # every backend call happened inside an executed step; none for a dropped batch
    assert sum(calls_in_steps) == len(spy.calls)
    assert min(calls_in_steps) > 0
    assert res["skips"]["batches_dropped"] == dropped
    assert res["skips"]["batches_run"] == len(expected)
    # the kernel tally counts exactly the executed batches' MACs: 7 convs x 32 samples each step
    convs = tr.model.convs()
    per_step = sum(c.shape(32, *((8, 8) if c.name in ("stem", "block0.conv1", "block0.conv2")
                                  else (8, 8) if c.name == "block1.conv1"
                                  else (4, 4) if c.name in ("block1.conv2", "block2.conv1")
                                  else (2, 2))).macs() for c in convs)
    assert res["skips"]["kernel_macs"]["conv_bwd_weight_psg"] == per_step * len(expected)


def test_smd_plan_is_seeded_and_near_p():
    a = epoch_plan(1000, 10, 4, 7, 0.5, 1)
    b = epoch_plan(1000, 10, 4, 7, 0.5, 1)
    assert (a.dropped == b.dropped).all() and all((x == y).all() for x, y in zip(a.batches, b.batches))
    assert 35 <= a.dropped.sum() <= 65
    assert not epoch_plan(1000, 10, 4, 7, 0.0, 1).dropped.any()
    # dropping does not change the shuffle: runs with and without SMD see the same batches
    c = epoch_plan(1000, 10, 4, 7, 0.0, 1)
    assert all((x == y).all() for x, y in zip(a.batches, c.batches))


def _track_layers(model, spy):
    """Make the spy know which conv layer is calling."""
    for conv in model.convs():
        for meth in ("forward", "backward"):
            orig = getattr(conv, meth)

            def wrapped(*a, _orig=orig, _name=conv.name, **k):
                spy.layer = _name
                try:
                    return _orig(*a, **k)
                finally:
                    spy.layer = None
            setattr(conv, meth, wrapped)


def _random_gates(gatenet, rng, record, spy):
    """Gates that run the real cell but decide at random (a mix of on, off, all and none)."""
    fwd = gatenet.forward

    def forward(i, e, tally, gate_rng=None):
        p, _ = fwd(i, e, tally, gate_rng)
        kind = rng.integers(0, 4)
        g = (rng.random(e.shape[0]) < 0.5) if kind < 2 else np.full(e.shape[0], kind == 2)
        record[(spy.step, i)] = g.copy()
        return p, g
    return forward


def test_gated_off_samples_never_reach_a_blocks_kernels(small_digits, spy):
    x_tr, y_tr, _, _ = small_digits
    cfg = dict(TINY, epochs=1, smd=False, slu=True, slu_target=0.4)
    tr = Trainer(cfg, (x_tr[:96], y_tr[:96]), spy)
    gates: dict[tuple[int, int], np.ndarray] = {}
    rec_gate = _random_gates(tr.model.gates, np.random.default_rng(5), gates, spy)
    step = tr.train_step

    def rec_step(x, y, t, **kw):
        spy.step = t
        try:
            return step(x, y, t, **kw)
        finally:
            spy.step = None

    tr.model.gates.forward = rec_gate
    tr.train_step = rec_step
    _track_layers(tr.model, spy)
    tr.run()
    n_blocks = len(tr.model.blocks)
    assert len(gates) == 3 * n_blocks                  # 3 steps of 32 samples
    checked = mixed = 0
    for (t, i), g in gates.items():
        on = set(np.nonzero(g)[0].tolist())
        mixed += 0 < len(on) < g.size
        calls = [c for c in spy.calls if c[4] == t and c[3] in (f"block{i}.conv1", f"block{i}.conv2")]
        if not on:
            assert calls == []                         # nobody ran the block: no kernel call
        else:
            assert {c[0] for c in calls} == {"conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg"}
        for kernel, n, samples, layer, _ in calls:
            got = set(range(n)) if samples is None else set(samples.tolist())
            assert got == on, (t, i, kernel)
            checked += 1
    assert mixed > 0 and checked > 0                   # the check covered partial gating
    assert tr.skip_stats()["block_samples_skipped"] > 0


def test_rows_outside_the_sample_list_are_never_used(small_digits, spy_factory):
    """Poisoning every row a kernel was told to skip leaves training bit-identical."""
    x_tr, y_tr, _, _ = small_digits
    cfg = dict(TINY, epochs=1, smd=False, slu=True)
    finals = []
    for poison in (False, True):
        spy = spy_factory(poison=poison, seed=1)
        tr = Trainer(cfg, (x_tr[:96], y_tr[:96]), spy)
        tr.model.gates.forward = _random_gates(tr.model.gates, np.random.default_rng(5), {}, spy)
        tr.run()
        assert any(c[2] is not None for c in spy.calls)
        finals.append(tr.model.state())
    for k in finals[0]:
        assert np.array_equal(finals[0][k], finals[1][k], equal_nan=True), k


def test_scale_policy_updates(small_digits, spy):
    """y's running max follows its BN sums; the block outputs' (the next convs' inputs) running
    max follows bn_act's per-sample maxima; the network input's its own."""
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, smd=False, slu=False), (x_tr[:64], y_tr[:64]), spy)
    c, bn = tr.model.blocks[0].conv2, tr.model.blocks[0].bn1
    assert c.y_max is None and bn.out_max is None and tr.model.in_max is None
    tr.run()
    assert c.y_max > 0 and bn.out_max > 0 and tr.model.in_max > 0
    assert nn_qconv.RUNNING_MOMENTUM == 0.9


def test_a_batch_is_its_images_each_moved_by_its_shift_with_zeros_shifted_in():
    """batch_images against the definition, image by image: out[r, c] = x[r - dy, c - dx] where
    that lies in the image, else 0; shifts past the image's size leave zeros; without a shift
    the batch is the plain gather, and says that nothing moved."""
    rng = np.random.default_rng(7)
    data = rng.standard_normal((9, 2, 5, 4)).astype(np.float32)
    idx = np.array([4, 0, 7, 7, 2])
    shifts = rng.integers(-2, 3, size=(9, 2))
    shifts[2], shifts[7] = (6, -1), (1, -5)              # past the image: nothing kept
    out, moved = batch_images(data, idx, shifts)
    assert moved and out.dtype == data.dtype and out.shape == (5, 2, 5, 4)
    for k, i in enumerate(idx):
        dy, dx = shifts[i]
        want = np.zeros((2, 5, 4), np.float32)
        for r in range(5):
            for c in range(4):
                if 0 <= r - dy < 5 and 0 <= c - dx < 4:
                    want[:, r, c] = data[i, :, r - dy, c - dx]
        np.testing.assert_array_equal(out[k], want)
    plain, moved = batch_images(data, idx, np.zeros((9, 2), np.int64))
    assert not moved and np.array_equal(plain, data[idx])

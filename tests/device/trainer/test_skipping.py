"""Skipping really skips: SMD batches and gated-off samples never reach the kernels."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.device import nn_qconv
from e2train.device.smd import batch_images, epoch_plan, pad_fill
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


@pytest.mark.parametrize("pad", ["mean", "edge", "min"])
def test_a_batch_is_its_images_each_moved_by_its_shift_with_the_border_padded(pad):
    """batch_images against the definition, image by image: out[r, c] = x[r - dy, c - dx] where
    that lies in the image; elsewhere 0, the standardised mean ("mean"), the nearest edge pixel
    ("edge") or the channel's lowest value in the data set ("min"); shifts past the image's size
    keep nothing of it but the edge. Without a shift the batch is the plain gather, and says
    that nothing moved."""
    rng = np.random.default_rng(7)
    data = rng.standard_normal((9, 2, 5, 4)).astype(np.float32)
    idx = np.array([4, 0, 7, 7, 2])
    shifts = rng.integers(-2, 3, size=(9, 2))
    shifts[2], shifts[7] = (6, -1), (1, -5)              # past the image
    fill = pad_fill(data) if pad == "min" else None
    out, moved = batch_images(data, idx, shifts, pad, fill)
    assert moved and out.dtype == data.dtype and out.shape == (5, 2, 5, 4)
    for k, i in enumerate(idx):
        dy, dx = shifts[i]
        want = np.zeros((2, 5, 4), np.float32)
        for r in range(5):
            for c in range(4):
                if 0 <= r - dy < 5 and 0 <= c - dx < 4:
                    want[:, r, c] = data[i, :, r - dy, c - dx]
                elif pad == "edge":
                    want[:, r, c] = data[i, :, min(max(r - dy, 0), 4), min(max(c - dx, 0), 3)]
                elif pad == "min":
                    want[:, r, c] = [data[:, ch].min() for ch in range(2)]
        np.testing.assert_array_equal(out[k], want)
    plain, moved = batch_images(data, idx, np.zeros((9, 2), np.int64), pad, fill)
    assert not moved and np.array_equal(plain, data[idx])


def test_edge_padding_keeps_a_shifted_digits_pixel_statistics(digits):
    """What "edge" is for: the row or column it repeats is like the one the shift pushed out, so
    the shifted images keep the mean and spread of the unshifted ones evaluation sees, which
    BN's running statistics follow. A constant border moves them (measured at +-1 px: the
    mean's zero +0.064 and 0.93x the spread, black -0.065)."""
    x = digits[0]
    shifts = np.random.default_rng(5).integers(-1, 2, size=(x.shape[0], 2))
    idx = np.arange(x.shape[0])
    edge, _ = batch_images(x, idx, shifts, "edge")
    assert abs(edge.mean() - x.mean()) < 0.01 and abs(edge.std() / x.std() - 1) < 0.01
    grey, _ = batch_images(x, idx, shifts, "mean")
    black, _ = batch_images(x, idx, shifts, "min", pad_fill(x))
    assert grey.mean() - x.mean() > 0.05 and grey.std() / x.std() < 0.95
    assert black.mean() - x.mean() < -0.05


def test_an_unknown_augment_pad_or_a_missing_fill_is_refused_in_one_line():
    x, idx, shifts = np.zeros((2, 3, 3, 3), np.float32), np.arange(2), np.ones((2, 2), np.int64)
    with pytest.raises(ValueError, match="augment_pad must be one of mean, edge, min"):
        batch_images(x, idx, shifts, "zero")
    with pytest.raises(ValueError, match=r"augment_pad 'min' needs one fill value per channel \(3\)"):
        batch_images(x, idx, shifts, "min", np.zeros(2, np.float32))
    plain, moved = batch_images(x, idx, np.zeros((2, 2), np.int64), "min")    # nothing moves: no fill needed
    assert not moved and np.array_equal(plain, x)


def test_min_padding_without_augmentation_trains(small_digits):
    """augment off: no shift, no fill pass, nothing refused."""
    from e2train.core import golden
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(dict(TINY, epochs=1, smd=False, slu=False, augment=False, augment_pad="min"), (x_tr, y_tr), golden)
    tr.run()
    assert tr._pad_fill is None and tr.stats["batches_run"] > 0


@pytest.mark.parametrize("pad", ["mean", "edge", "min"])
def test_the_trainer_shifts_its_batches_with_the_configured_padding(small_digits, monkeypatch, pad):
    """Every batch the trainer trains on is batch_images of its indices and shifts with the
    config's augment_pad; "min" takes its fill from one pass over the training set at the start,
    tallied once as ARM work (a maxabs pass over the training set more than the same run with "mean")."""
    from e2train.core import golden
    from e2train.device import trainer as trainer_mod
    from e2train.device.nn_layers import op_count
    x_tr, y_tr, _, _ = small_digits
    seen = []

    def spy_batch(data, idx, shifts, p="mean", fill=None):
        out = batch_images(data, idx, shifts, p, fill)
        seen.append((p, None if fill is None else fill.copy()))
        return out

    monkeypatch.setattr(trainer_mod, "batch_images", spy_batch)
    cfg = dict(TINY, epochs=1, smd=False, slu=False, seed=1)
    runs = {}
    for p in dict.fromkeys(["mean", pad]):
        seen.clear()
        tr = Trainer(dict(cfg, augment_pad=p), (x_tr, y_tr), golden)
        tr.run()
        assert seen and all(q == p for q, _ in seen)
        runs[p] = tr.arm.by_kind["maxabs"]
        if p == "min":
            assert all(np.array_equal(f, x_tr.min(axis=(0, 2, 3))) for _, f in seen)
        else:
            assert all(f is None for _, f in seen)
    assert runs[pad] - runs["mean"] == (op_count("maxabs", x_tr.size) if pad == "min" else 0)

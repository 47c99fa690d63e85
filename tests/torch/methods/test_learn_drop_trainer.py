"""Learn&Drop and freezing in the trainer: the dropped tail runs once per cached pass, never
in a training step; cached features give the head the same outputs as recomputing them."""
import pytest
import torch

from e2train.torch.methods import make
from e2train.torch.methods.learn_drop import CacheTooLarge, DropDecider, LearnDropPolicy, pack, unpack
from e2train.torch.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")

TAIL1 = {"conv1", "blocks.0.conv1", "blocks.0.conv2"}          # stem + first block
TAIL2 = TAIL1 | {"blocks.1.conv1", "blocks.1.conv2"}


class PlannedDrops(DropDecider):
    """Scores and n* as usual (recorded), but drops what the plan says: the mechanism under
    test is the dropping, the decision is tested on its own."""

    def __init__(self, plan):
        super().__init__()
        self.plan = list(plan)

    def decide(self, head_scores):
        super().decide(head_scores)
        return self.plan.pop(0) if self.plan else 0


def run(digits, quick, spy, freeze=False, plan=(2, 0, 1), epochs=4, **kw):
    kw.setdefault("granularity", "block")
    kw.setdefault("warmup_epochs", 0)
    pol = make("freeze" if freeze else "learn-drop", train_x=digits.x_train, cache_batch=50, **kw)
    pol.decider = PlannedDrops(plan)
    res = train(quick(epochs=epochs), [pol, spy], data=digits)
    return pol, res


def test_tail_runs_once_per_cached_pass_and_never_in_a_step(digits, quick, spy):
    pol, res = run(digits, quick, spy)
    assert [r["ld_tail_units"] for r in res.records] == [2, 2, 3, 3]
    for s in spy.steps:
        tail = TAIL1 if s["epoch"] in (1, 2) else TAIL2 if s["epoch"] == 3 else set()
        ran = {n for n, _, _ in s["fwd"]}
        assert not (ran & tail) and {n for n, _ in s["bwd"]}.isdisjoint(tail)
        assert ran and all(grad for _, _, grad in s["fwd"])
        tail_params = {n for n in s["grads"] if n.split(".weight")[0].split(".bias")[0] in tail}
        assert not tail_params
    fills = [(n, b) for n, b, grad, training in spy.outside_calls if b != len(digits.x_test)]
    # first fill: the stem and block 0 over 128 samples in batches of 50 (after a 1-sample
    # shape probe); second fill: block 1 alone, over the cache
    expect = [(n, b) for b in (1, 50, 50, 28) for n in ("conv1", "blocks.0.conv1", "blocks.0.conv2")]
    expect += [(n, b) for b in (1, 50, 50, 28) for n in ("blocks.1.conv1", "blocks.1.conv2")]
    assert fills == expect
    assert pol.tail_passes == 2 and pol.cache.fills == 2


def test_cached_features_give_the_head_the_same_outputs(digits, quick, spy):
    pol, res = run(digits, quick, spy)
    model = res.model.eval()
    x = digits.x_train.to(_device(pol))
    with torch.no_grad():
        y = x
        for u in pol.units[: pol.n_dropped]:
            y = u.fn(y)
        assert torch.allclose(pol.cache.data, y.cpu(), atol=1e-5)        # the cache is host memory
        h = pol.cache.data.to(x.device)
        for u in pol.units[pol.n_dropped:]:
            h = u.fn(h)
        assert torch.allclose(h, model(x), atol=1e-5)


def tail_forward_macs_per_sample(model, pol, x):
    """Forward MACs of one sample through the first two units, counted here with hooks."""
    counted = [0]

    def hook(m, i, o):
        k = m.kernel_size[0] * m.kernel_size[1]
        counted[0] += o[0].numel() * (m.in_channels // m.groups) * k

    hs = [m.register_forward_hook(hook) for n, m in model.named_modules() if n in TAIL1]
    model.eval()
    with torch.no_grad():
        pol.units[1].fn(pol.units[0].fn(x[:1].to(_device(pol))))
    for h in hs:
        h.remove()
    return counted[0]


def test_fill_is_priced_in_the_work_tally(digits, quick, spy, fwd_macs):
    pol, res = run(digits, quick, spy, plan=(2,), epochs=2)
    per_sample = tail_forward_macs_per_sample(res.model, pol, digits.x_train)
    assert 0 < per_sample < fwd_macs(res.model, digits.x_train)
    # the fill ran between epochs: in the run's total, in no epoch's training steps;
    # 128 samples and the 1-sample shape probe
    assert res.work.total_macs - sum(r["macs"] for r in res.records) == per_sample * (128 + 1)


def test_freezing_runs_the_tail_forward_without_backward(digits, quick, spy):
    pol, res = run(digits, quick, spy, freeze=True, plan=(2,), epochs=2)
    assert pol.cache is None
    for s in spy.steps:
        ran = {n for n, _, _ in s["fwd"]}
        assert TAIL1 <= ran
        if s["epoch"] == 1:
            assert {n for n, _ in s["bwd"]}.isdisjoint(TAIL1)
            assert not [n for n in s["grads"] if n.startswith(("conv1", "bn1", "blocks.0."))]
    # no pass outside the steps but evaluation
    assert all(b == len(digits.x_test) for _, b, _, _ in spy.outside_calls)
    assert all(p.requires_grad for p in res.model.parameters())


def test_disk_cache_in_a_run(digits, quick, spy, tmp_path):
    pol, res = run(digits, quick, spy, plan=(2,), epochs=2, cache="disk", cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1
    pol.cache.close()
    assert list(tmp_path.iterdir()) == []


def test_cache_bound_stops_the_run_with_a_clear_error(digits, quick, spy):
    with pytest.raises(CacheTooLarge, match="cache_max_mb"):
        run(digits, quick, spy, plan=(2,), epochs=2, cache_max_mb=0.01)


def test_finds_the_runs_inputs_checks_them_and_needs_sequential_units(digits, quick):
    pol = LearnDropPolicy(warmup_epochs=0)   # by name alone: inputs from the run's config
    pol.decider = PlannedDrops([2])
    res = train(quick(epochs=2), [pol], data=digits)
    assert res.records[-1]["ld_tail_units"] == 2 and torch.equal(
        pol.cache.data, _tail(pol, digits.x_train))
    other = digits.__class__(digits.name, digits.x_train.flip(0), digits.y_train.flip(0),
                             digits.x_test, digits.y_test)
    # the trainer hands the policy the run's own data, even when the config names another:
    # the cache is built from the inputs that trained
    pol = LearnDropPolicy(warmup_epochs=0)
    pol.decider = PlannedDrops([2])
    train(quick(epochs=2), [pol], data=other)
    assert torch.equal(pol.cache.data, _tail(pol, other.x_train))
    assert not torch.equal(pol.cache.data, _tail(pol, digits.x_train))
    with pytest.raises(ValueError, match="ungated"):
        train(quick(epochs=1, slu=True), [LearnDropPolicy(train_x=digits.x_train)], data=digits)


def _tail(pol, x):
    x = x.to(_device(pol))
    with torch.no_grad():
        for u in pol.units[: pol.n_dropped]:
            x = u.fn(x)
    return pack(x).cpu()


def _device(pol):
    """Where the trained model's units run (the test device)."""
    return next(p for u in pol.units for p in u.parameters()).device


def test_warmup_epochs_train_everything_before_the_first_decision(digits, quick, spy):
    """Paper 001, Algorithm 1 line 11 and section 4: the model trains e1 warm-up epochs in
    full before any layer is scored or dropped. The old policy decided after epoch 1."""
    pol, res = run(digits, quick, spy, plan=(2,), epochs=4, warmup_epochs=2)
    assert [r["ld_tail_units"] for r in res.records] == [0, 0, 2, 2]
    assert [bool(r.get("ld_warmup")) for r in res.records] == [True, True, False, False]
    assert len(pol.decider.history) == 1        # the first decision ends epoch 3


def test_default_warmup_is_the_papers_e1_for_the_data_set():
    """Paper 001, section 4: e1 = 5 on MNIST, 10 on CIFAR-10, 25 on Imagenette."""
    from types import SimpleNamespace
    from e2train.torch.policy import StepContext
    pol = LearnDropPolicy()
    for name, e1 in [("mnist", 5), ("cifar10", 10), ("imagenette", 25), ("digits", 5)]:
        ctx = StepContext(model=torch.nn.Linear(1, 1), state={"config": SimpleNamespace(dataset=name)})
        assert pol.warmup(ctx) == e1
    assert LearnDropPolicy(warmup_epochs=3).warmup(ctx) == 3


def test_cut_inside_a_residual_block_caches_main_track_and_shortcut(digits, quick, spy):
    """Paper 001, section 3 and Fig. 3: ResNets drop at any layer of a residual block; the
    cache holds the main track's feature map and the skip connection's. The old units cut
    at block boundaries only, so the stem and blocks.0.conv1 could not drop without conv2."""
    pol, res = run(digits, quick, spy, plan=(2,), epochs=2, granularity="conv")
    names = [u.name for u in pol.units]
    assert names[:3] == ["stem", "blocks.0.conv1", "blocks.0.conv2"] and names[-1] == "fc"
    assert not pol.units[-1].scored and all(u.scored for u in pol.units[:-1])
    assert pol.n_dropped == 2
    main, skip = pol._cache_shapes               # (main track after conv1, block input)
    assert main == skip == (16, 8, 8)
    for s in spy.steps:
        if s["epoch"] == 1:                      # conv2 of block 0 trains on cached features
            ran = {n for n, _, _ in s["fwd"]}
            assert "blocks.0.conv2" in ran and not ran & {"conv1", "blocks.0.conv1"}
    model = res.model.eval()
    with torch.no_grad():
        h = tuple(t.to(_device(pol)) for t in unpack(pol.cache.data, pol._cache_shapes))
        for u in pol.units[pol.n_dropped:]:
            h = u.fn(h)
        assert torch.allclose(h, model(digits.x_train.to(_device(pol))), atol=1e-5)


def test_fill_time_is_training_time_and_cache_traffic_is_priced(digits, quick, spy):
    """Paper 001, section 4: the method's time includes storing the feature maps; reading
    them back is its data loading. The fill's clock was kept apart from the run's before."""
    pol, res = run(digits, quick, spy, plan=(2,), epochs=3)
    r0 = res.records[0]
    assert r0["method_wall_s"] > 0 and r0["epoch_wall_s"] >= r0["method_wall_s"]
    assert res.wall_s == pytest.approx(sum(r["epoch_wall_s"] for r in res.records))
    row = pol.cache.data[0].numel() * 4
    trained_on_cache = sum(r["samples_run"] for r in res.records[1:])
    assert res.work.dram_bytes == row * (len(digits.x_train) + trained_on_cache)


def test_freezing_replays_a_learn_drop_schedule(digits, quick, spy):
    ld, _ = run(digits, quick, spy, plan=(0, 2), epochs=3)
    assert ld.drop_epochs == [(1, 2)]
    fr = make("freeze", train_x=digits.x_train, schedule=ld.drop_epochs)
    res = train(quick(epochs=3), [fr], data=digits)
    assert [r["ld_tail_units"] for r in res.records] == [0, 2, 2] and fr.drop_epochs == [(1, 2)]

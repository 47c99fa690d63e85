"""Learn&Drop and freezing in the trainer: the dropped tail runs once per cached pass, never
in a training step; cached features give the head the same outputs as recomputing them."""
import pytest
import torch

from e2train.torch.methods import make
from e2train.torch.methods.learn_drop import CacheTooLarge, DropDecider, LearnDropPolicy
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
    pol = LearnDropPolicy()                  # by name alone: inputs from the run's config
    pol.decider = PlannedDrops([2])
    res = train(quick(epochs=2), [pol], data=digits)
    assert res.records[-1]["ld_tail_units"] == 2 and torch.equal(
        pol.cache.data, _tail(pol, digits.x_train))
    other = digits.__class__(digits.name, digits.x_train.flip(0), digits.y_train.flip(0),
                             digits.x_test, digits.y_test)
    # the trainer hands the policy the run's own data, even when the config names another:
    # the cache is built from the inputs that trained
    pol = LearnDropPolicy()
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
    return x.cpu()


def _device(pol):
    """Where the trained model's units run (the test device)."""
    return next(p for u in pol.units for p in u.parameters()).device


def test_freezing_replays_a_learn_drop_schedule(digits, quick, spy):
    ld, _ = run(digits, quick, spy, plan=(0, 2), epochs=3)
    assert ld.drop_epochs == [(1, 2)]
    fr = make("freeze", train_x=digits.x_train, schedule=ld.drop_epochs)
    res = train(quick(epochs=3), [fr], data=digits)
    assert [r["ld_tail_units"] for r in res.records] == [0, 2, 2] and fr.drop_epochs == [(1, 2)]

"""GSkip in the trainer: skipped layers get no gradient and the backward stops above them."""
import pytest

from e2train.torch.methods import REGISTRY, make
from e2train.torch.methods.gskip import GSkipPolicy, RandomPrefixSkip
from e2train.torch.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")


def run_gskip(digits, quick, spy, **cfg):
    # one fixed batch per epoch, no augmentation and a tiny learning rate: consecutive
    # gradients point the same way (cosine near 1) and the loss stands still
    policy = GSkipPolicy(warmup_steps=2, loss_threshold=1.0, recheck_every=4, **cfg)
    res = train(quick(epochs=12, max_batches=1, augment=False, lr=1e-4, schedule="constant"),
                [policy, spy], data=digits)
    return policy, res


def test_backward_stops_where_gskip_says(digits, quick, spy):
    policy, res = run_gskip(digits, quick, spy)
    layers = policy.layers
    conv_names = {l.name for l in layers}
    depths = policy.depth_per_step
    assert len(depths) == len(spy.steps) == 12
    assert max(depths) == len(layers) - 1          # all but the classifier skipped at some point
    assert 0 in depths[2:]                         # ...and re-checks reactivated them
    for d, step in zip(depths, spy.steps):
        skipped = set().union(*(l.param_names for l in layers[:d]))
        trained = set().union(*(l.param_names for l in layers[d:]))
        assert step["grads"] == trained and not (skipped & step["grads"])
        # backward hooks fire only for layers after the skipped prefix
        ran_bwd = {n for n, _ in step["bwd"]}
        assert ran_bwd == {l.name for l in layers[d:] if l.name in conv_names}
    assert policy.skip_ratios()["layer-step"] == sum(depths) / (len(layers) * len(depths))


def test_skipped_steps_cost_less_in_the_work_tally(digits, quick, spy):
    policy, res = run_gskip(digits, quick, spy)
    macs = [r["macs"] for r in res.records]
    depths = policy.depth_per_step
    full = [m for m, d in zip(macs, depths) if d == 0]
    deep = [m for m, d in zip(macs, depths) if d == len(policy.layers) - 1]
    assert full and deep and len(set(full)) == 1
    assert max(deep) < 0.5 * full[0]               # forward + the classifier's backward only


def test_model_is_left_trainable_and_state_round_trips(digits, quick, spy):
    policy, res = run_gskip(digits, quick, spy)
    assert all(p.requires_grad for p in res.model.parameters())
    again = GSkipPolicy()
    again.load_state_dict(policy.state_dict())
    assert again.ctl.depth == policy.ctl.depth and again.ctl.asc == policy.ctl.asc


def test_random_prefix_control_hits_the_ratio(digits, quick, spy):
    ctl = RandomPrefixSkip(0.5, seed=3)
    train(quick(epochs=2), [ctl, spy], data=digits)
    n = len(ctl.layers)
    for d, step in zip(ctl.depth_per_step, spy.steps):
        assert d in (n // 2, n // 2 + 1) or d == round(0.5 * n)
        assert not (set().union(*(l.param_names for l in ctl.layers[:d])) & step["grads"])
    assert abs(ctl.skip_ratios()["layer-step"] - 0.5) < 0.15


def test_registry_builds_gskip_and_its_control():
    spec = REGISTRY["gskip"]
    assert spec.skip_unit == "layer-step"
    assert isinstance(make("gskip", warmup_steps=5), GSkipPolicy)
    assert isinstance(spec.random_control(0.3, 1), RandomPrefixSkip)

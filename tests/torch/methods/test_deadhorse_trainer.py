"""DeadHorse in the trainer: reactive policies backward the kept samples only (and pay for
their decision forward); predictive ones do not forward the skipped samples at all."""
import pytest
import torch

from e2train.torch.methods import REGISTRY, make
from e2train.torch.methods.deadhorse import DeadHorsePolicy, RandomSamplePolicy
from e2train.torch import data as tdata
from e2train.torch.models import build_model
from e2train.torch.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")


def one_batch(quick, **kw):
    return quick(epochs=1, max_batches=1, augment=False, **kw)


def median_confidence(digits):
    """The median confidence on the first batch of the net the trainer starts from, so that
    a threshold there keeps about half of that batch."""
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10)
    x, _, _ = next(tdata.train_batches(digits, 64, 0, 0, augmentation=False))
    with torch.no_grad():
        conf = torch.softmax(model(x), 1).max(1).values
    return float(conf.median())


def test_reactive_backward_runs_on_kept_samples_only(digits, quick, spy):
    # DDH at the starting net's median confidence: some samples are that confident, some not
    pol = DeadHorsePolicy("ddh", threshold=median_confidence(digits))
    train(quick(epochs=2), [pol, spy], data=digits)
    partial = 0
    for step in spy.steps:
        # the trained batch is what the policy kept; every backward saw only those samples
        assert all(b == step["n"] for _, b in step["bwd"])
        assert all(b == step["n"] and grad for _, b, grad in step["fwd"])
        partial += 0 < step["n"] < 64
    assert partial >= 1
    # the decision forwards ran outside the step, without autograd, on whole batches
    dec = [b for name, b, grad, training in spy.outside_calls if name == "conv1" and training]
    assert not [c for c in spy.outside_calls if c[2]]
    assert dec == [64] * 4 and pol.tally.decision_forwards == pol.tally.samples == 4 * 64
    kept = sum(s["n"] for s in spy.steps)
    assert kept == pol.tally.samples - pol.tally.bwd_skipped


def test_decision_forward_is_priced_and_skipped_backward_is_not(digits, quick, fwd_macs):
    """macs = F*n (decision) + (F+B)*k (kept): checked against standard training's (F+B)*n."""
    base = train(one_batch(quick), data=digits).records[0]["macs"]
    none = DeadHorsePolicy("ddh", threshold=1.0)        # nothing is that confident
    m_none = train(one_batch(quick), [none], data=digits).records[0]["macs"]
    assert none.tally.bwd_skipped == 0
    f_n = m_none - base
    model = train(one_batch(quick), data=digits).model
    assert f_n == fwd_macs(model, digits.x_train) * 64           # the decision forward, exactly
    some = DeadHorsePolicy("ddh", threshold=median_confidence(digits))
    m_some = train(one_batch(quick), [some], data=digits).records[0]["macs"]
    k = some.tally.samples - some.tally.bwd_skipped
    assert 0 < k < 64
    assert m_some == f_n + base * k // 64


def test_decision_forward_leaves_bn_statistics_alone(digits, quick):
    torch.manual_seed(0)
    a = train(one_batch(quick, lr=1e-9), [DeadHorsePolicy("ddh", threshold=1.0)], data=digits).model
    b = train(one_batch(quick, lr=1e-9), data=digits).model
    assert torch.equal(a.bn1.running_mean, b.bn1.running_mean)
    assert torch.equal(a.bn1.running_var, b.bn1.running_var)


@pytest.mark.parametrize("policy, threshold", [("hsdh", 0.3), ("cdh", 0.2)])
def test_predictive_policies_skip_forward_and_backward(digits, quick, spy, policy, threshold):
    # thresholds low enough that a 4-epoch run on 128 samples has confident samples/classes
    pol = make(policy, seed=1, threshold=threshold, n_samples=len(digits.x_train), n_classes=10)
    res = train(quick(epochs=4, lr=0.2), [pol, spy], data=digits)
    assert pol.tally.fwd_skipped == pol.tally.bwd_skipped > 0
    # nothing runs outside the steps (no decision forward) apart from evaluation in eval mode
    assert not [c for c in spy.outside_calls if c[2] or c[3]]
    trained = sum(s["n"] for s in spy.steps)
    assert trained == pol.tally.samples - pol.tally.fwd_skipped
    for step in spy.steps:
        assert all(b == step["n"] for _, b, _ in step["fwd"])
    assert res.records[0]["deadhorse_skip_ratio"] == 0.0          # first pass: no history
    assert [r["samples_run"] for r in res.records] == [
        N - int(round(r["deadhorse_skip_ratio"] * N)) for r, N in zip(res.records, [128] * 4)]


def test_predictive_policy_finds_the_runs_data_and_checks_it(digits, quick):
    # by name alone, as the harness builds it: the sizes come from the run's config
    pol = make("hsdh", threshold=0.12)
    train(quick(epochs=2, max_batches=1), [pol], data=digits)
    assert pol.predictive.history.seen.shape == (128,)
    # the trainer hands the policy the run's own data, even when it is not what the config
    # names: the policy's per-sample history follows the data that trained
    other = tdata.Data(digits.name, digits.x_train.flip(0), digits.y_train.flip(0),
                       digits.x_test, digits.y_test)
    pol2 = make("hsdh")
    train(quick(epochs=1, max_batches=1), [pol2], data=other)
    assert pol2.predictive.history.seen.shape == (128,)
    # outside the trainer, training inputs that are not the batch's are caught, not mixed up
    from e2train.torch.methods.support import check_batch
    from e2train.torch.policy import StepContext
    ctx = StepContext(model=None, indices=torch.arange(8), y=other.y_train[:8])
    check_batch(ctx, other)                                  # the right data passes
    assert not torch.equal(digits.y_train[:8], other.y_train[:8])
    with pytest.raises(ValueError, match="does not match the training data"):
        check_batch(ctx, digits)


def test_random_controls(digits, quick, spy):
    uni = REGISTRY["dh"].random_control(0.5, 0)
    train(quick(epochs=2), [uni, spy], data=digits)
    assert sum(s["n"] for s in spy.steps) == uni.tally.samples - uni.tally.fwd_skipped
    assert abs(uni.skip_ratios()["sample"] - 0.5) < 0.1
    non = RandomSamplePolicy([0.0, 0.9], seed=0)
    res = train(quick(epochs=2), [non], data=digits)
    assert res.records[0]["samples_run"] == 128
    assert res.records[1]["samples_run"] < 40

"""WUS in the trainer: a bias-only epoch computes no weight gradient and updates no weight."""
import pytest
import torch

from e2train.torch.methods import REGISTRY, make
from e2train.torch.methods.wus import BIAS, FULL, RandomBiasEpochs, bias_layers
from e2train.torch.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")


def eager_wus(**kw):
    # settles as soon as two accuracies exist (any std is under 100 points): bias-only from epoch 3
    return make("wus", std_threshold=100.0, window=2, settle_epochs=1, **kw)


def run(digits, quick, spy, pol, epochs=3):
    snaps = {}

    def snapshot(rec):
        snaps[rec["epoch"]] = {n: p.detach().clone() for n, p in spy.model.named_parameters()}

    res = train(quick(epochs=epochs), [pol, spy], data=digits, callback=snapshot)
    return res, snaps


def test_bias_only_epoch_computes_no_weight_gradient(digits, quick, spy, fwd_macs):
    pol = eager_wus()
    res, snaps = run(digits, quick, spy, pol)
    assert [r["wus_phase"] for r in res.records] == [FULL, FULL, BIAS]
    for s in spy.steps:
        if s["epoch"] < 2:
            assert "conv1.weight" in s["grads"] and len(s["bwd"]) == 8
        else:
            assert s["grads"] == {"fc.bias"}     # 1L: only the last layer's bias
            # the backward ends at the classifier (for its bias): no convolution runs one
            assert [n for n, _ in s["bwd"]] == ["fc"]
    # the bias-only epoch is forward work only, exactly
    assert res.records[2]["macs"] == fwd_macs(res.model, digits.x_train) * 128
    # and no weight moved
    changed = {n for n in snaps[3] if not torch.equal(snaps[2][n], snaps[3][n])}
    assert changed == {"fc.bias"}
    assert pol.skip_ratios()["weight-step"] == pytest.approx(1 / 3)
    assert all(p.requires_grad for p in res.model.parameters())


def test_n_last_bias_layers_train(digits, quick, spy):
    pol = eager_wus(n_bias_layers=3)
    res, snaps = run(digits, quick, spy, pol)
    names = [b for _, b in bias_layers(res.model)][-3:]
    assert names == ["blocks.2.bn1.bias", "blocks.2.bn2.bias", "fc.bias"]
    last = [s for s in spy.steps if s["epoch"] == 2]
    assert all(s["grads"] == set(names) for s in last)
    # the backward now reaches block 2's convolutions (to carry the gradient to bn1's bias),
    # as input gradients only: their weights get none
    assert all({n for n, _ in s["bwd"]} == {"fc", "blocks.2.conv2"} for s in last)


def test_wus_lr_full_epoch_on_learning_rate_change(digits, quick, spy):
    # cosine schedule over 5 epochs, rate at epoch ends 0.098, 0.079, 0.050, 0.021, 0.002:
    # bias-only from epoch 3 at 0.079; at the end of epoch 4 the rate has fallen by 74% (>= 50%)
    # -> epoch 5 trains in full
    pol = make("wus-lr", std_threshold=100.0, window=2, settle_epochs=1, lr_change_rel=0.5)
    res, _ = run(digits, quick, spy, pol, epochs=5)
    lrs = [r["lr"] for r in res.records]
    assert [r["wus_phase"] for r in res.records] == [FULL, FULL, BIAS, BIAS, FULL], lrs


def test_random_bias_epochs_control(digits, quick, spy):
    ctl = REGISTRY["wus"].random_control(0.5, 7)
    assert isinstance(ctl, RandomBiasEpochs)
    res, _ = run(digits, quick, spy, ctl, epochs=4)
    phases = [r["wus_phase"] for r in res.records]
    assert phases[0] == FULL and phases.count(BIAS) == 2
    for s in spy.steps:
        if phases[s["epoch"]] == BIAS:
            assert s["grads"] == {"fc.bias"}


def test_missing_accuracy_is_a_clear_error():
    pol = make("wus")
    with pytest.raises(KeyError, match="validation accuracy"):
        pol._acc_percent({"train_loss": 1.0})


def test_eq1_reduction_in_updated_parameters(digits, quick, spy):
    """Paper 002, section 4.4, Eq. 1: N = E_wus * b + E_normal * (b + w); the record carries
    1 - N / (E * (b + w)), with b in the bias-only term the biases that still train (1L: the
    classifier's)."""
    pol = eager_wus()
    res, _ = run(digits, quick, spy, pol)
    model = res.model
    layers = bias_layers(model)
    params = dict(model.named_parameters())
    b = sum(params[p].numel() for _, p in layers)
    w = sum(p.numel() for n, p in params.items()) - b
    kept = params["fc.bias"].numel()
    n = 2 * (b + w) + kept                 # epochs: full, full, bias-only
    assert res.records[-1]["wus_eq1_reduction"] == pytest.approx(1 - n / (3 * (b + w)))
    assert res.records[0]["wus_eq1_reduction"] == 0.0


def test_n_bias_layers_sweep_and_its_bound(digits, quick, spy):
    """Paper 002, section 3.3: 1L ... nL keep the biases of the last 1 ... n layers; asking
    for more layers than the model has is a one-line error naming the range."""
    pol = eager_wus(n_bias_layers=2)
    res, _ = run(digits, quick, spy, pol)
    last_two = {p for _, p in bias_layers(res.model)[-2:]}
    assert pol.trainable == last_two and len(last_two) == 2
    with pytest.raises(ValueError, match="choose 1\\.\\."):
        train(quick(epochs=1), [eager_wus(n_bias_layers=999)], data=digits)

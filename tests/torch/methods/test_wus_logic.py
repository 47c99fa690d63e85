"""WUS / WUS+LR phase switches on hand-made accuracy sequences."""
import pytest

from e2train.torch.methods.wus import BIAS, FULL, WUSConfig, WUSController


def feed(c, accs, lrs=None):
    lrs = lrs or [None] * len(accs)
    return [c.end_epoch(a, lr) for a, lr in zip(accs, lrs)]


def settle(c):
    # std(last 3): 8.2, 4.7, 0.26 (< 0.71, 1st), 0.08 (2nd) -> bias-only from epoch 6
    return feed(c, [50.0, 60.0, 70.0, 70.5, 70.6, 70.7])


def test_switches_to_bias_after_two_settled_epochs():
    c = WUSController()
    assert settle(c) == [FULL] * 5 + [BIAS]


def test_patience_forces_one_full_epoch_then_back_to_bias():
    c = WUSController()
    settle(c)
    # no new best (70.7 is not > 70.7): the 7th epoch without improvement forces a full epoch
    got = feed(c, [70.6, 70.7, 70.6, 70.7, 70.6, 70.7, 70.6])
    assert got == [BIAS] * 6 + [FULL]
    assert feed(c, [70.65]) == [BIAS]        # still settled after the full epoch
    assert c.phases[-2:] == [BIAS, FULL]     # what each epoch actually ran in


def test_improvement_delays_the_forced_epoch():
    c = WUSController()
    settle(c)
    got = feed(c, [70.6, 70.6, 70.6, 70.8, 70.6, 70.6, 70.6, 70.6, 70.6, 70.6, 70.6])
    assert got == [BIAS] * 10 + [FULL]       # counter restarted at the new best (70.8)


def test_patience_counter_runs_on_when_bias_only_starts():
    """Paper 002, Algorithm 1 (WeightUpdateSkipping): the counter of epochs without a new
    best resets only on a new best or when it fires. The old controller also reset it when
    bias-only training began, delaying the forced full epoch."""
    c = WUSController()
    # best 72.0 at epoch 3; settled at epochs 5 and 6 -> bias-only from epoch 7, with three
    # epochs (4, 5, 6) already without a new best
    assert feed(c, [50.0, 60.0, 72.0, 70.5, 70.6, 70.7]) == [FULL] * 5 + [BIAS]
    assert feed(c, [70.6] * 4) == [BIAS] * 3 + [FULL]       # 7th epoch since the best


def test_accuracy_jump_stays_bias_only_by_default():
    """Paper 002, section 3.2: bias-only ends through the forced full epoch (patience or LR
    change) only; the std exit is not in the paper. The old controller left bias-only as soon
    as the std rose."""
    c = WUSController()
    settle(c)
    assert feed(c, [75.0, 75.1, 75.2]) == [BIAS] * 3


def test_accuracy_jump_leaves_bias_phase_with_std_exit():
    c = WUSController(WUSConfig(std_exit=True))
    settle(c)
    assert feed(c, [75.0]) == [FULL]
    # [70.7, 75, 75.1] unsettled; [75, 75.1, 75.2] settled once; [75.1, 75.2, 75.1] twice
    assert feed(c, [75.1, 75.2, 75.1]) == [FULL, FULL, BIAS]


def test_wus_lr_triggers_on_learning_rate_change_only():
    c = WUSController(WUSConfig(trigger="lr"))
    feed(c, [50.0, 60.0, 70.0, 70.5, 70.6], [0.1] * 5)
    assert c.end_epoch(70.7, 0.1) == BIAS
    # 20 epochs without improvement would trigger WUS, not WUS+LR
    assert feed(c, [70.6] * 20, [0.1] * 20) == [BIAS] * 20
    assert feed(c, [70.6, 70.6], [0.01, 0.01]) == [FULL, BIAS]


def test_bad_input():
    with pytest.raises(ValueError, match="percentage"):
        WUSController().end_epoch(0.95 * 1000)
    with pytest.raises(ValueError, match="WUS\\+LR"):
        WUSConfig(trigger="loss")
    with pytest.raises(ValueError):
        WUSConfig(n_bias_layers=0)

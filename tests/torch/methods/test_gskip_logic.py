"""GSkip's decision logic against hand-computed sequences (no trainer involved)."""
import math

import pytest
import torch

from e2train.torch.methods.gskip import GSkipConfig, GSkipController, cosine

SAME = torch.tensor([1.0, 2.0])
FLIP = [torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])]


def ctl(n=3, **kw):
    kw.setdefault("warmup_steps", 0)
    return GSkipController(n, GSkipConfig(**kw))


def test_threshold_is_sigmoid_of_counter_and_saturates():
    c = ctl()
    assert c.threshold == 0.5
    c.asc = 5
    assert c.threshold == pytest.approx(1 / (1 + math.exp(-1.0)))    # 0.7311
    c.asc = c._saturate(99)
    assert c.asc == 10 and c.threshold == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert c._saturate(-99) == -10


def test_cosine():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == 0.0
    assert cosine(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])) == pytest.approx(1.0)
    assert cosine(torch.zeros(2), torch.ones(2)) == 0.0


def test_ema_span_four_and_stagnation_window():
    c = ctl()
    for loss in [1.0, 0.5]:
        c.observe(loss, [None, None, None])
    # alpha = 2 / (4 + 1) = 0.4: 0.4 * 0.5 + 0.6 * 1.0 = 0.8
    assert c.ema[-1] == pytest.approx(0.8)
    c2 = ctl()
    for _ in range(4):
        c2.observe(1.0, [None] * 3)
    assert not c2.stagnating()          # needs 5 EMA values (4 steps of change)
    c2.observe(1.0, [None] * 3)
    assert c2.stagnating()


def test_similar_layers_and_all_before_them_skip_when_loss_stagnates():
    c = ctl(n=4)
    # layer 0 flips sign each step (cos -1), layers 1, 2 keep direction, layer 3 is last
    depths = []
    for t in range(5):
        depths.append(c.observe(1.0, [FLIP[t % 2], SAME, SAME, SAME]))
    # steps 1-4: not stagnating yet (fewer than 5 EMA values); step 5: stagnating,
    # cos(layer 1) = cos(layer 2) = 1 >= 0.5 -> prefix through layer 2 (the last never skips)
    assert depths == [0, 0, 0, 0, 3]


def test_falling_loss_does_not_skip():
    c = ctl(n=2)
    depths = [c.observe(2.0 - 0.1 * t, [SAME, SAME]) for t in range(10)]
    assert depths == [0] * 10


def test_dissimilar_gradients_do_not_skip():
    c = ctl(n=3)
    depths = [c.observe(1.0, [FLIP[t % 2], FLIP[t % 2], SAME]) for t in range(8)]
    assert depths == [0] * 8


def test_warmup_trains_everything():
    c = ctl(n=2, warmup_steps=7)
    depths = [c.observe(1.0, [SAME, SAME]) for _ in range(7)]
    assert depths == [0] * 6 + [1]      # observed step 7 ends the warm-up


def test_skip_history_tightens_after_loss_rise_and_loosens_otherwise():
    c = ctl(n=2)
    for _ in range(5):
        c.observe(1.0, [SAME, SAME])
    assert c.depth == 1 and c.asc == 0
    c.observe(2.0, [None, SAME])        # skipped step, EMA rose -> tighter
    assert c.asc == 1
    c.observe(0.5, [None, SAME])        # EMA fell -> looser
    assert c.asc == 0


def test_gradient_for_a_skipped_layer_is_an_error():
    c = ctl(n=2)
    for _ in range(5):
        c.observe(1.0, [SAME, SAME])
    with pytest.raises(ValueError, match="was to skip"):
        c.observe(1.0, [SAME, SAME])


def test_recheck_reactivates_every_layer_then_skips_again():
    c = ctl(n=2, recheck_every=3)
    depths = [c.observe(1.0, [SAME if c.depth == 0 else None, SAME]) for _ in range(9)]
    # skipping from step 5; step 6 is a multiple of 3 -> recheck (all train at step 7),
    # the fresh gradient still matches -> skip again; step 9 -> recheck
    assert depths == [0, 0, 0, 0, 1, 0, 1, 1, 0]
    assert c.rechecks == 2


def test_epoch_review_relaxes_threshold_and_resets_counter():
    c = ctl(n=2)
    for t in range(6):
        c.observe(1.0 + 0.01 * t, [FLIP[t % 2], SAME])
    assert c.skipped_layer_steps == 0
    c.asc = 4
    c.end_epoch()
    assert c.loss_threshold == pytest.approx(1e-4) and c.asc == 0


def test_epoch_review_tightens_when_skipping_a_lot_and_loss_rose():
    c = ctl(n=2, low_skip=0.0, high_skip=0.1)
    for _ in range(5):
        c.observe(1.0, [SAME, SAME])
    c.end_epoch()                       # epoch 1, mean loss 1.0, 0% skipped: unchanged
    assert c.loss_threshold == pytest.approx(5e-5)
    for _ in range(5):
        c.observe(1.2, [None, SAME])    # all skipped (50% of layer-steps), loss rose
    c.end_epoch()
    assert c.loss_threshold == pytest.approx(2.5e-5)


def test_skip_ratio_counts_layer_steps():
    c = ctl(n=2)
    for _ in range(5):
        c.observe(1.0, [SAME, SAME])
    for _ in range(5):
        c.observe(1.0, [None, SAME])
    assert c.skip_ratio == pytest.approx(5 / 20)


def test_bad_input():
    with pytest.raises(ValueError):
        GSkipConfig(loss_threshold=0)
    c = ctl(n=2)
    with pytest.raises(ValueError, match="expected 2"):
        c.observe(1.0, [SAME])
    with pytest.raises(ValueError, match="non-finite"):
        c.observe(float("nan"), [SAME, SAME])

"""DeadHorse's confidence policies and random controls against hand-computed cases."""
import math

import pytest
import torch

from e2train.torch.methods.deadhorse import (NonUniformRandom, PredictivePolicy, SampleHistory,
                                             UniformRandom, confidence, reactive_skip)


def logits_for(probs):
    """Logits whose softmax is exactly ``probs`` (rows sum to 1)."""
    return torch.log(torch.tensor(probs, dtype=torch.float64))


# sample: conf (pred)      label  correct
# 0: 0.95 (0)              0      yes  confident
# 1: 0.95 (0)              1      no   confident
# 2: 0.60 (1)              1      yes  not confident
# 3: 0.30/0.30/0.40 -> 0.40 (2)  2  yes  not confident
PROBS = [[0.95, 0.03, 0.02], [0.95, 0.03, 0.02], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]]
LABELS = torch.tensor([0, 1, 1, 2])


def test_confidence_is_max_softmax():
    conf, pred, _ = confidence(logits_for(PROBS))
    assert torch.allclose(conf, torch.tensor([0.95, 0.95, 0.6, 0.4]))
    assert pred.tolist() == [0, 0, 1, 2]


def test_dh_skips_correct_and_confident_only():
    assert reactive_skip("dh", logits_for(PROBS), LABELS, 0.9).tolist() == [True, False, False, False]


def test_ddh_skips_confident_even_if_wrong():
    assert reactive_skip("ddh", logits_for(PROBS), LABELS, 0.9).tolist() == [True, True, False, False]
    # a lower threshold takes in sample 2 (0.6) but not sample 3 (0.4)
    assert reactive_skip("ddh", logits_for(PROBS), LABELS, 0.5).tolist() == [True, True, True, False]


def test_sddh_skips_confident_samples_with_probability_conf():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(4, generator=torch.Generator().manual_seed(0))
    got = reactive_skip("sddh", logits_for(PROBS), LABELS, 0.5, generator=g)
    expect = [c >= 0.5 and float(ui) < c for c, ui in zip([0.95, 0.95, 0.6, 0.4], u)]
    assert got.tolist() == expect
    # over many draws, a 0.95-confident sample is skipped 95% of the time, a 0.4 one never
    g = torch.Generator().manual_seed(1)
    many = reactive_skip("sddh", logits_for(PROBS).repeat(4000, 1), LABELS.repeat(4000), 0.5, g)
    rate = many.view(4000, 4).float().mean(0)
    assert abs(rate[0] - 0.95) < 0.02 and abs(rate[2] - 0.6) < 0.03 and rate[3] == 0


def test_unknown_policy_and_bad_threshold():
    with pytest.raises(ValueError, match="unknown reactive"):
        reactive_skip("dx", logits_for(PROBS), LABELS, 0.9)
    with pytest.raises(ValueError, match="threshold"):
        reactive_skip("dh", logits_for(PROBS), LABELS, 1.5)


def history_with(probs, labels, idx):
    h = SampleHistory(n_samples=6, n_classes=3)
    h.record(torch.tensor(idx), logits_for(probs), labels)
    return h


def test_hsdh_uses_previous_pass_and_never_skips_unseen_samples():
    h = history_with(PROBS, LABELS, [0, 1, 2, 3])
    always = PredictivePolicy("hsdh", h, threshold=0.9, generator=torch.Generator().manual_seed(2))
    # sample 0 (correct, 0.95) is the only candidate; unseen samples 4, 5 are never skipped
    counts = torch.zeros(6)
    for _ in range(2000):
        counts += always.skip(torch.arange(6), torch.tensor([0, 1, 1, 2, 0, 0])).float()
    assert counts[1:].tolist() == [0.0] * 5
    assert abs(counts[0] / 2000 - 0.95) < 0.02


def test_hsddh_also_skips_confident_mistakes():
    h = history_with(PROBS, LABELS, [0, 1, 2, 3])
    p = PredictivePolicy("hsddh", h, threshold=0.9, generator=torch.Generator().manual_seed(3))
    counts = sum(p.skip(torch.arange(4), LABELS).float() for _ in range(2000))
    assert counts[0] > 1800 and counts[1] > 1800 and counts[2] == 0 and counts[3] == 0


def test_cdh_skips_whole_confident_classes_for_one_pass_then_rechecks():
    # class 0: true-class probs 0.95, 0.97 -> mean 0.96 >= 0.9; class 1: 0.6 -> trained
    probs = [[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.2, 0.6, 0.2]]
    labels = torch.tensor([0, 0, 1])
    h = SampleHistory(3, 3)
    h.record(torch.arange(3), logits_for(probs), labels)
    p = PredictivePolicy("cdh", h, threshold=0.9)
    p.start_pass()
    assert p.skipped_classes == {0}
    assert p.skip(torch.arange(3), labels).tolist() == [True, True, False]
    p.start_pass()                       # skipped one pass already: class 0 trains again
    assert p.skipped_classes == set()
    p.start_pass()                       # history still says confident -> skip again
    assert p.skipped_classes == {0}


def test_cdh_counts_wrong_confident_predictions_against_the_class():
    # class 1's only sample is confidently predicted as class 0: true-class prob 0.03
    h = history_with(PROBS[:2], LABELS[:2], [0, 1])
    p = PredictivePolicy("cdh", h, threshold=0.9)
    p.start_pass()
    assert p.skipped_classes == {0}


def test_uniform_random_control_rate():
    r = UniformRandom(0.3, torch.Generator().manual_seed(0))
    assert abs(float(r.skip(20000).float().mean()) - 0.3) < 0.01
    with pytest.raises(ValueError):
        UniformRandom(1.0)


def test_nonuniform_random_control_follows_segments():
    r = NonUniformRandom([0.0, 0.5, 0.9], torch.Generator().manual_seed(0))
    assert float(r.skip(5000, segment=0).float().mean()) == 0.0
    assert abs(float(r.skip(5000, segment=1).float().mean()) - 0.5) < 0.03
    assert abs(float(r.skip(5000, segment=7).float().mean()) - 0.9) < 0.02   # last rate reused
    with pytest.raises(ValueError):
        NonUniformRandom([])
    assert math.isclose(r.rate_at(2), 0.9)

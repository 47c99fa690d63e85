"""Learn&Drop's layer scores, n*, the median rule and the feature cache, by hand."""
import math

import numpy as np
import pytest
import torch

from e2train.torch.methods.learn_drop import (CacheTooLarge, DropDecider, FeatureCache,
                                              LayerScoreAccumulator, layer_score, n_star, standardise)


def test_layer_score_by_hand():
    # two steps, two parameters: sums [2, 0] -> |.| total 2; total |g| = 4 -> P = 1 - 2/4
    assert layer_score(np.array([[1.0, 1.0], [1.0, -1.0]])) == pytest.approx(0.5)
    # a gradient that keeps its direction has P = 0; one that cancels exactly has P = 1
    assert layer_score(np.array([[1.0, -2.0], [3.0, -1.0]])) == pytest.approx(0.0)
    assert layer_score(np.array([[1.0, -2.0], [-1.0, 2.0]])) == pytest.approx(1.0)


def test_accumulator_matches_reference_over_layers_with_several_tensors():
    rng = np.random.default_rng(0)
    steps = [[[torch.tensor(rng.normal(size=(3, 2))), torch.tensor(rng.normal(size=2))],
              [torch.tensor(rng.normal(size=4))]] for _ in range(5)]
    acc = LayerScoreAccumulator(2)
    for s in steps:
        acc.add(s)
    ref0 = layer_score(np.stack([np.concatenate([t.numpy().ravel() for t in s[0]]) for s in steps]))
    ref1 = layer_score(np.stack([s[1][0].numpy() for s in steps]))
    assert acc.scores() == pytest.approx([ref0, ref1])
    acc.reset()
    assert acc.steps == 0 and all(math.isnan(v) for v in acc.scores())


def test_standardise_and_n_star():
    assert standardise([1.0, 2.0, 3.0]) == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert standardise([2.0, 2.0]) == [0.0, 0.0]
    assert n_star([0.5, 1.0, -0.2, -1.3]) == 2
    assert n_star([-1.0, 1.0, 0.5]) == 0
    assert n_star([1.0, 0.0, -1.0]) == 0        # strict signs: 0 is neither
    assert n_star([1.2, -0.1, 0.4, -1.5]) == 1   # the *first* sign change


def test_median_rule_compares_standardised_scores():
    """Paper 001, section 3, step 2: M_c is the median of the candidates' standardised
    scores P', M_d that of the P' the dropped layers had when dropped; drop if M_c >= M_d.
    The old rule compared raw scores P and decides both epochs 2 and 3 the other way."""
    d = DropDecider()
    # epoch 1: P' = (1.15, 0.82, -0.82, -1.15) -> n* = 2; nothing dropped before -> drop 2
    assert d.decide([0.9, 0.8, 0.3, 0.2]) == 2
    assert d.dropped_scores == pytest.approx(standardise([0.9, 0.8, 0.3, 0.2])[:2])
    # epoch 2: P' = (1.40, -0.51, -0.89) -> n* = 1; 1.40 >= median(1.15, 0.82) = 0.99 -> drop
    # (raw: 0.7 < median(0.9, 0.8) = 0.85 would have refused)
    assert d.decide([0.7, 0.2, 0.1]) == 1
    # epoch 3: P' = (1.06, 0.94, ...) -> n* = 2; median 0.995 < median(1.15, 0.82, 1.40) = 1.15
    # -> refuse (raw: 0.875 >= 0.8 would have dropped)
    assert d.decide([0.9, 0.85, 0.1, 0.0]) == 0
    assert d.history[-1]["why"].startswith("median below")
    assert d.decide([0.5, 0.5, 0.5]) == 0        # all equal: no n*
    assert d.decide([float("nan"), 0.2]) == 0


def test_feature_cache_memory_and_disk_agree(tmp_path):
    x = torch.randn(10, 3)
    tail = lambda t: t * 2 + 1
    mem = FeatureCache(where="memory")
    mem.fill(tail, x, (3,), batch_size=4)
    disk = FeatureCache(where="disk", directory=str(tmp_path))
    disk.fill(tail, x, (3,), batch_size=4)
    assert torch.equal(mem.get(torch.tensor([1, 7])), tail(x[[1, 7]]))
    assert torch.equal(mem.data, disk.data)
    assert len(list(tmp_path.iterdir())) == 1
    # extending the tail reads the old cache while writing the new one
    disk.fill(lambda t: t - 1, disk.data, (3,))
    assert torch.allclose(disk.data, x * 2, atol=1e-6) and disk.fills == 2
    assert len(list(tmp_path.iterdir())) == 1
    disk.close()
    assert list(tmp_path.iterdir()) == []


def test_feature_cache_bound_is_checked_before_any_work():
    calls = []
    c = FeatureCache(max_bytes=100)
    with pytest.raises(CacheTooLarge, match="would need .* MiB.*raise cache_max_mb"):
        c.fill(lambda t: calls.append(1) or t, torch.zeros(10, 3), (3,))   # 120 bytes
    assert calls == [] and not c.ready
    with pytest.raises(RuntimeError, match="empty"):
        c.get(torch.tensor([0]))
    with pytest.raises(ValueError):
        FeatureCache(where="cloud")


def test_feature_cache_rejects_wrong_shape_and_keeps_old_data(tmp_path):
    c = FeatureCache(where="disk", directory=str(tmp_path))
    c.fill(lambda t: t, torch.ones(4, 2), (2,))
    with pytest.raises(ValueError, match="tail produced shape"):
        c.fill(lambda t: t[:, :1], torch.ones(4, 2), (2,))
    assert torch.equal(c.data, torch.ones(4, 2))
    assert len(list(tmp_path.iterdir())) == 1

"""The device trainer reports its modelled step time as the critical path beside the sum."""
from __future__ import annotations

import pytest

from e2train.core.work import Work
from e2train.device.trainer import Trainer

TINY = dict(depth=8, width=4, batch_size=32, augment_shift=1, progress_every=0, conv_lr=0.01, epochs=1,
            smd=False, slu=False, seed=0)


def test_critical_path_is_the_sum_less_the_weight_gradients_under_arm_work(small_digits):
    from e2train.core import golden
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(TINY, (x_tr, y_tr), golden)
    res = tr.run()
    w, m = tr.work, res["modelled"]
    assert m["seconds"] == pytest.approx(w.seconds) and m["critical_path_seconds"] == pytest.approx(w.critical_seconds)
    # every training segment went through the step timeline, so its sum is the tally's time
    assert tr.timeline.sum_s == pytest.approx(w.seconds, rel=1e-9)
    assert tr.timeline.critical_s == pytest.approx(w.critical_seconds, rel=1e-9)
    # overlap only where a weight gradient ran beside ARM work: positive, less than the fabric's time
    assert 0 < w.overlap_seconds < w.seconds - w.arm_seconds
    back = Work.from_dict(w.to_dict())
    assert back.critical_seconds == pytest.approx(w.critical_seconds)


def test_repricing_at_another_arm_rate_is_the_run_at_that_rate(small_digits):
    """The tally keeps each step's critical path as (fabric seconds, ARM ops) paths, so
    ``at_arm_rate`` recomputes the critical path: at the recorded rate it gives the recorded
    time and energy, and at another rate what a run at that rate records (the ARM rate changes
    no result, only time)."""
    from e2train.core import energy, golden
    x_tr, y_tr, _, _ = small_digits
    runs = {}
    for rate in (1.2e8, 4e8):
        tr = Trainer(dict(TINY, arm_ops_per_second=rate), (x_tr, y_tr), golden)
        tr.run()
        runs[rate] = Work.from_dict(tr.work.to_dict())        # through the record, as a report re-prices it
    w = runs[1.2e8]
    assert w.timed_steps == tr.stats["batches_run"] and w.overlap_seconds > 0
    same = energy.at_arm_rate(w, 1.2e8)
    assert same.critical_seconds == pytest.approx(w.critical_seconds, rel=1e-12)
    assert same.seconds == pytest.approx(w.seconds, rel=1e-12)
    assert energy.price(same)["total_j"] == pytest.approx(energy.price(w)["total_j"], rel=1e-12)
    fast, ran = energy.at_arm_rate(w, 4e8), runs[4e8]
    assert fast.critical_seconds == pytest.approx(ran.critical_seconds, rel=1e-9)
    assert fast.seconds == pytest.approx(ran.seconds, rel=1e-9)
    assert energy.price(fast)["total_j"] == pytest.approx(energy.price(ran)["total_j"], rel=1e-9)
    # a faster ARM hides a smaller share of the weight gradients: the overlap changes with the rate
    assert fast.overlap_seconds != pytest.approx(w.overlap_seconds, rel=1e-3)


def test_static_power_is_priced_on_the_critical_path_with_the_sum_beside(small_digits):
    from e2train.core import energy, golden
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(TINY, (x_tr, y_tr), golden)
    res = tr.run()
    p = energy.price(tr.work)
    static_w = energy.platform("xc7z020").model.static_w
    assert p["parts_j"]["static"] == pytest.approx(static_w * tr.work.critical_seconds)
    assert p["static_on_sum_j"] == pytest.approx(static_w * tr.work.seconds)
    assert p["static_on_sum_j"] > p["parts_j"]["static"]
    assert res["modelled"]["energy_j"] == p["total_j"] < res["modelled"]["energy_on_sum_j"] == p["total_on_sum_j"]

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

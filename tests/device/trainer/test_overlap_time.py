"""The device trainer reports its modelled step time as the critical path beside the sum."""
from __future__ import annotations

import pytest

from e2train.core.work import Work
from e2train.device.trainer import Trainer

# an ARM ten times the assumed rate, so that the classifier's weight gradient (side work) fits
# under some of this tiny network's calls of a few microseconds
FAST_ARM = 1.2e9
TINY = dict(depth=8, width=4, batch_size=32, augment_shift=1, progress_every=0, conv_lr=0.01, epochs=1,
            smd=False, slu=False, seed=0, arm_ops_per_second=FAST_ARM)


def test_critical_path_is_the_sum_less_the_side_work_under_fabric_calls(small_digits):
    from e2train.core import golden
    x_tr, y_tr, _, _ = small_digits
    tr = Trainer(TINY, (x_tr, y_tr), golden)
    res = tr.run()
    w, m = tr.work, res["modelled"]
    assert m["seconds"] == pytest.approx(w.seconds) and m["critical_path_seconds"] == pytest.approx(w.critical_seconds)
    # every training segment went through the step timeline, so its sum is the tally's time
    assert tr.timeline.sum_s == pytest.approx(w.seconds, rel=1e-9)
    assert tr.timeline.critical_s == pytest.approx(w.critical_seconds, rel=1e-9)
    # overlap only where side work (here the classifier's weight gradient) ran under a fabric
    # call: positive, at most the ARM's time
    assert 0 < w.overlap_seconds <= w.arm_seconds
    back = Work.from_dict(w.to_dict())
    assert back.critical_seconds == pytest.approx(w.critical_seconds)


def _placing_side_work(monkeypatch, placed: list, replay: bool) -> None:
    """Record which side tasks (their handles, in the order they ran: deferral order, since a
    task passed over under a call stays passed over under it) each tallied call ran (``replay``
    False), or run exactly those under each call again (True): the placement of a run, kept at
    another ARM rate."""
    from e2train.device.nn_layers import ArmTally
    decide = ArmTally.run_while_fabric_busy

    def run_while_fabric_busy(self, fabric_end_s):
        if self._side or self.timeline is None:
            return
        if not replay:
            before = [t[0] for t in self._pending]
            decide(self, fabric_end_s)
            after = {t[0] for t in self._pending}
            placed.append([h for h in before if h not in after])
            return
        self._place_held()
        for h in placed.pop(0):
            self._run_one([t[0] for t in self._pending].index(h))
    monkeypatch.setattr(ArmTally, "run_while_fabric_busy", run_while_fabric_busy)


def test_repricing_at_another_arm_rate_is_the_run_at_that_rate(small_digits, monkeypatch):
    """The tally keeps each step's critical path as (fabric seconds, ARM ops) paths, so
    ``at_arm_rate`` recomputes the critical path: at the recorded rate it gives the recorded
    time and energy, and at another rate what a run at that rate records when it places the
    side work under the same calls (the ARM rate changes no result, only time). The fit rule
    decides the placement at the run's own rate, so the faster run replays the recorded one's."""
    from e2train.core import energy, golden
    x_tr, y_tr, _, _ = small_digits
    runs, placed = {}, []
    for rate in (FAST_ARM, 4 * FAST_ARM):
        _placing_side_work(monkeypatch, placed, replay=rate != FAST_ARM)
        tr = Trainer(dict(TINY, arm_ops_per_second=rate), (x_tr, y_tr), golden)
        tr.run()
        runs[rate] = Work.from_dict(tr.work.to_dict())        # through the record, as a report re-prices it
    assert placed == []                                       # every recorded decision replayed
    w = runs[FAST_ARM]
    assert w.timed_steps == tr.stats["batches_run"] and w.overlap_seconds > 0
    same = energy.at_arm_rate(w, FAST_ARM)
    assert same.critical_seconds == pytest.approx(w.critical_seconds, rel=1e-12)
    assert same.seconds == pytest.approx(w.seconds, rel=1e-12)
    assert energy.price(same)["total_j"] == pytest.approx(energy.price(w)["total_j"], rel=1e-12)
    fast, ran = energy.at_arm_rate(w, 4 * FAST_ARM), runs[4 * FAST_ARM]
    assert fast.critical_seconds == pytest.approx(ran.critical_seconds, rel=1e-9)
    assert fast.seconds == pytest.approx(ran.seconds, rel=1e-9)
    assert energy.price(fast)["total_j"] == pytest.approx(energy.price(ran)["total_j"], rel=1e-9)
    # a faster ARM hides its side work differently: the overlap changes with the rate
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

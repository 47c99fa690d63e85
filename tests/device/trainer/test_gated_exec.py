"""The gated blocks' executed share, apart from the ungated blocks that run every sample: what
a reader needs to tell SLU that still runs some blocks from SLU that has switched them off."""
from __future__ import annotations

import pytest

from e2train.core import golden
from e2train.device import nn_resnet
from e2train.device.trainer import Trainer, gated_exec_ratio


def test_the_ratio_takes_the_ungated_blocks_out_of_the_counts():
    # 4 blocks, 2 of them gated, 10 samples each: 20 ungated runs, and 5 of the 20 gated ones
    assert gated_exec_ratio(25, 40, 4, 2) == pytest.approx(0.25)
    assert gated_exec_ratio(20, 40, 4, 2) == 0.0 and gated_exec_ratio(40, 40, 4, 2) == 1.0
    assert gated_exec_ratio(40, 40, 4, 0) is None          # no gate: nothing to report
    assert gated_exec_ratio(0, 0, 4, 2) is None            # nothing ran yet


@pytest.mark.parametrize("slu", [True, False])
def test_a_run_reports_what_its_gated_blocks_executed(small_digits, monkeypatch, slu):
    """Counted apart from the trainer: every training forward's gated samples over the gated
    blocks' samples, and the last evaluation's the same way."""
    seen = {True: [0, 0], False: [0, 0]}
    forward = nn_resnet.ResNet.forward

    def spy(self, x, train, *a, **k):
        logits, cache, st = forward(self, x, train, *a, **k)
        seen[train][0] += sum(st.gated_executed)
        seen[train][1] += x.shape[0] * len(st.gated_executed)
        return logits, cache, st
    monkeypatch.setattr(nn_resnet.ResNet, "forward", spy)
    evaluate = Trainer.evaluate

    def fresh_evaluation(self, *a, **k):          # the evaluation counts are the last one's
        seen[False][:] = [0, 0]
        return evaluate(self, *a, **k)
    monkeypatch.setattr(Trainer, "evaluate", fresh_evaluation)
    x_tr, y_tr, x_te, y_te = small_digits
    tr = Trainer(dict(model="resnet14", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2,
                      slu=slu, slu_target=0.05, slu_sampling=False), (x_tr, y_tr, x_te, y_te), golden)
    res = tr.run()
    got, last = res["skips"]["gated_exec_ratio"], res["history"][-1]["test_gated_exec_ratio"]
    if not slu:
        assert got is None and last is None and seen[True][1] == 0
        return
    assert seen[True][1] > 0 and got == pytest.approx(seen[True][0] / seen[True][1], abs=1e-12)
    assert last == pytest.approx(seen[False][0] / seen[False][1], abs=1e-12)
    # the ungated blocks pull the all-block ratio up: it is never below the gated one
    assert res["skips"]["block_exec_ratio"] >= got
    assert res["summary"]["gated_exec_ratio"] == got


def test_each_epoch_records_its_own_training_share(small_digits, monkeypatch):
    """rec["gated_exec_ratio"]: this epoch's training forwards alone (the skips' figure is the
    run's so far)."""
    per_epoch, now = [], [0, 0]
    forward = nn_resnet.ResNet.forward

    def spy(self, x, train, *a, **k):
        out = forward(self, x, train, *a, **k)
        if train:
            now[0] += sum(out[2].gated_executed)
            now[1] += x.shape[0] * len(out[2].gated_executed)
        return out
    end_epoch = Trainer._end_epoch

    def closing(self):
        per_epoch.append(now[0] / now[1])
        now[:] = [0, 0]
        return end_epoch(self)
    monkeypatch.setattr(nn_resnet.ResNet, "forward", spy)
    monkeypatch.setattr(Trainer, "_end_epoch", closing)
    x_tr, y_tr, x_te, y_te = small_digits
    res = Trainer(dict(model="resnet14", width=4, batch_size=32, progress_every=0, epochs=2, seed=1, slu_hidden=2,
                       slu_target=0.05, slu_sampling=False), (x_tr, y_tr, x_te, y_te), golden).run()
    assert len(per_epoch) == len(res["history"]) >= 2
    assert [h["gated_exec_ratio"] for h in res["history"]] == pytest.approx(per_epoch, abs=1e-12)


@pytest.mark.parametrize("opened, warns", [(0.9, True), (None, False)])
def test_evaluation_opening_blocks_training_seldom_ran_is_said_once(small_digits, monkeypatch, opened, warns):
    """The failure mode behind the collapsed seeds: a warning event names both shares and what
    to do, once a run however many epochs show it."""
    evaluate = Trainer.evaluate

    def evaluation(self, *a, **k):
        ev = evaluate(self, *a, **k)
        if opened is not None:
            ev["gated_exec_ratio"] = opened
        return ev
    monkeypatch.setattr(Trainer, "evaluate", evaluation)
    events = []
    x_tr, y_tr, x_te, y_te = small_digits
    res = Trainer(dict(model="resnet14", width=4, batch_size=32, progress_every=0, epochs=4, seed=0, slu_hidden=2,
                       slu_target=0.05, slu_sampling=False), (x_tr, y_tr, x_te, y_te), golden,
                  on_event=events.append).run()
    said = [e["message"] for e in events if e.get("event") == "warning"]
    if not warns:
        # the real evaluation of this short run: no warning unless it opened blocks training seldom ran
        trained = [(h["gated_exec_ratio"], h["test_gated_exec_ratio"]) for h in res["history"]]
        assert bool(said) == any(te > max(2 * tr, tr + 0.05) for tr, te in trained)
        return
    # the first epoch whose training ran few enough of them (the gates start open) is the one named
    hits = [h for h in res["history"] if 0.9 > max(2 * h["gated_exec_ratio"], h["gated_exec_ratio"] + 0.05)]
    assert len(hits) >= 2 and len(said) == 1
    assert said[0].startswith(f"epoch {hits[0]['epoch']}: the evaluation ran 90.0% of the gated blocks' "
                              f"samples, training {hits[0]['gated_exec_ratio']:.1%}")
    assert "slu_target" in said[0] and "Some seeds collapse" in said[0]

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

"""Progress events for the board agent, a clean stop, and labelled accounting."""
from __future__ import annotations

import json

from e2train.core import golden
from e2train.core.energy import EnergyModel
from e2train.device.trainer import Trainer

CFG = dict(model="resnet8", width=4, batch_size=32, epochs=2, smd=False, slu=True, progress_every=2,
           conv_lr=0.01)


def test_events_and_accounting(small_digits):
    events = []
    tr = Trainer(CFG, small_digits, golden, on_event=events.append)
    res = tr.run()
    json.dumps(events)                                  # the agent sends them as JSON lines
    json.dumps(res)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("epoch") == 2 and kinds.count("progress") == 2 * 6 // 2
    ep = [e for e in events if e["event"] == "epoch"]
    for e in ep:
        assert 0 <= e["test_acc"] <= 1 and e["train_loss"] > 0
        assert e["modelled"]["label"] == "modelled"
        assert e["skips"]["batches_run"] > 0
    # the modelled energy grows epoch by epoch and equals the energy model over the tally
    assert 0 < ep[0]["modelled"]["energy_j"] < ep[1]["modelled"]["energy_j"]
    assert res["modelled"]["energy_j"] == EnergyModel.zynq7020().energy_j(tr.work)
    # kernels and the ARM both appear in the tally: int MACs and float32 ops
    assert "int8xint8" in tr.work.macs and "fp32xfp32" in tr.work.macs and "fp32" in tr.work.ops
    # evaluation work is kept apart from training work
    assert res["eval_modelled"]["energy_j"] > 0
    assert 0 <= res["skips"]["predicted_fraction"]["overall"] <= 1


def test_stop_ends_cleanly_before_the_next_batch(small_digits, tmp_path):
    events = []
    tr = Trainer(CFG, small_digits, golden, checkpoint=tmp_path / "c.npz")

    def on_event(e):
        events.append(e)
        if e["event"] == "progress":
            tr.stop()

    tr.on_event = on_event
    res = tr.run()
    assert res["stopped"] and res["epochs_done"] == 0
    assert res["skips"]["batches_run"] == 2            # the batch after the stop never ran
    assert events[-1]["event"] == "finished"
    assert any(e["event"] == "checkpoint" for e in events)
    resumed = Trainer(CFG, small_digits, golden, checkpoint=tmp_path / "c.npz").run()
    assert not resumed["stopped"] and resumed["skips"]["batches_run"] == 12

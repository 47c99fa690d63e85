"""The host's live progress, fed the events a real trainer run emits (not hand-made ones):
the keys it prints are the keys the trainer sends."""
import io
import json

from e2train.core import golden
from e2train.device.trainer import Trainer
from e2train.app.train_cli import EventPrinter


def test_the_printer_shows_what_the_trainer_sends(small_digits):
    events = []
    cfg = dict(depth=8, width=4, batch_size=32, epochs=2, smd=True, slu=True, progress_every=2, conv_lr=0.01)
    Trainer(cfg, small_digits, golden, on_event=events.append).run()
    out = io.StringIO()
    p = EventPrinter("run", out=out)
    for ev in json.loads(json.dumps(events)):           # as they cross the link
        p(ev)
    text = out.getvalue()
    epochs = [ev for ev in events if ev["event"] == "epoch"]
    lines = [ln for ln in text.splitlines() if "train loss" in ln]
    assert len(lines) == len(epochs) >= 2
    for ev, line in zip(epochs, lines):
        assert f"train loss {ev['train_loss']:.4f}" in line
        assert f"train acc {ev['train_acc']:.2%}" in line and f"test acc {ev['test_acc']:.2%}" in line
        assert f"energy {ev['modelled']['energy_j']:.3g} J (modelled)" in line
        assert f"batches {ev['batches_run']} run, {ev['batches_dropped']} skipped" in line
    started = events[0]
    assert f"{started['total_epochs']} epochs of {started['batches_per_epoch']} batches" in text
    assert f"/{started['batches_per_epoch']}, loss " in text and "[#" in text     # the bar drew (tqdm)

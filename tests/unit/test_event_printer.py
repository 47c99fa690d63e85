"""The host's live progress shows what the trainer's events really carry."""
import io

from e2train.app.train_cli import EventPrinter
from e2train.core.run_record import device_epoch


def _events():
    yield {"event": "started", "seq": 1, "total_epochs": 3, "batches_per_epoch": 23, "resumed_at": {"epoch": 0, "batch": 0}}
    yield {"event": "progress", "seq": 2, "epoch": 1, "batch": 9, "step": 9, "loss": 2.1234}
    # the device trainer's epoch event: its history entry plus the record's epoch entry (epochs from 1)
    hist = {"epoch": 1, "batches_run": 12, "batches_dropped": 11, "train_loss": 1.5, "train_acc": 0.4,
            "test_acc": 0.55, "modelled": {"energy_j": 0.0123, "seconds": 1.0}}
    yield {"event": "epoch", "seq": 3, **hist, **device_epoch(hist)}
    yield {"event": "warning", "seq": 4, "message": "using the previous good checkpoint x.prev"}
    yield {"event": "finished", "seq": 5}


def test_progress_bar_epoch_line_and_warnings():
    out = io.StringIO()
    p = EventPrinter("r1", out=out)
    for ev in _events():
        p(ev)
    text = out.getvalue()
    assert "r1: training 3 epochs of 23 batches" in text
    assert "epoch 1/3 [" + "#" * 13 + "." * 17 + "] 10/23, loss 2.1234" in text     # the bar draws (tqdm)
    line = next(ln for ln in text.splitlines() if "train loss" in ln)
    for want in ("epoch 1/3", "train loss 1.5000", "train acc 40.00%", "test acc 55.00%",
                 "batches 12 run, 11 skipped", "energy 0.0123 J (modelled)"):
        assert want in line, (want, line)
    assert "board warning: using the previous good checkpoint" in text


def test_quiet_still_shows_warnings_and_errors_and_odd_events_do_not_crash():
    out = io.StringIO()
    p = EventPrinter("r1", quiet=True, out=out)
    for ev in _events():
        p(ev)
    p({"event": "error", "error": "KernelTimeout: conv_fwd"})
    p({"no": "event name"})
    p({"event": "epoch", "epoch": "?"})
    assert out.getvalue().splitlines() == ["r1: board warning: using the previous good checkpoint x.prev",
                                           "r1: board error: KernelTimeout: conv_fwd"]

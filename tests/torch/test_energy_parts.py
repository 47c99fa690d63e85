"""The two trainers price the same work the same way: a device-trainer step's tally and a torch
step's tally, each priced through both trainers' reporting paths, give the same parts."""
import pytest
import torch

from e2train.core import energy, golden
from e2train.device.trainer import Trainer
from e2train.torch.trainer import TrainConfig, train
from e2train.torch.work_meter import WorkMeter


@pytest.fixture(scope="module")
def device_step(digits):
    """One executed training step of the device trainer (golden kernels), and the trainer."""
    d = tuple(t.numpy() for t in (digits.x_train[:32], digits.y_train[:32], digits.x_test[:16], digits.y_test[:16]))
    tr = Trainer({"model": "resnet8", "width": 8, "epochs": 1, "batch_size": 16, "smd": False}, d, golden)
    tr.train_step(d[0][:16], d[1][:16], 0)
    return tr


def torch_priced(work, on):
    meter = WorkMeter(torch.nn.Sequential())
    meter.work = work
    return meter.priced(on)


def device_priced(tr, work, on):
    tr.platform = energy.platform(on)
    try:
        m = tr.modelled(work)
    finally:
        tr.platform = energy.platform("xc7z020")
    return {"parts_j": m["parts_j"], "total_j": m["energy_j"], "platform": m["platform"]}


def test_same_tally_same_parts_on_both_trainers(device_step, tiny):
    res = train(TrainConfig(epochs=1, batch_size=16, max_batches=1, progress=False, precision="psg"), data=tiny)
    dev_work = device_step.work
    assert dev_work.total_macs > 0 and dev_work.arm_ops > 0 and res.work.total_macs > 0
    for work in (dev_work, res.work):
        for on in energy.PLATFORMS:
            t, d = torch_priced(work, on), device_priced(device_step, work, on)
            assert t["parts_j"] == d["parts_j"] and t["total_j"] == d["total_j"] and t["platform"] == d["platform"]
    # what each trainer records is that pricing of its own tally, on its own platform
    rec = res.records[-1]
    assert rec["energy_platform"] == "horowitz45" and res.energy_platform == "horowitz45"
    assert rec["energy_parts_j"] == energy.price(res.work, "horowitz45")["parts_j"] == res.energy_parts_j
    assert res.energy_j == energy.price(res.work, "horowitz45")["total_j"]
    m = device_step.modelled()
    assert m["platform"] == "xc7z020" and m["parts_j"] == energy.price(dev_work, "xc7z020")["parts_j"]
    assert m["parts_j"]["static"] > 0 and res.energy_parts_j["static"] == 0.0


def test_torch_cli_and_records_show_the_parts(tmp_path, capsys):
    import json

    from e2train.app.cli import main
    rc = main(["torch-train", "--epochs", "1", "--limit-train", "64", "--batch-size", "32", "--max-batches", "1",
               "--no-progress", "--precision", "psg", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("training energy in parts:"))
    assert all(w in line for w in ("compute", "on-chip", "DRAM", "static", "modelled", "platform horowitz45"))
    from e2train.core.run_record import load
    rec = load(tmp_path / "records.json")
    en = rec.primary_energy
    assert en["platform"] == "horowitz45" and set(en["parts_j"]) == set(energy.PARTS)
    assert sum(en["parts_j"].values()) == pytest.approx(en["total_j"], rel=1e-12)
    assert set(rec.epochs[-1]["energy_parts_j"]) == set(energy.PARTS)

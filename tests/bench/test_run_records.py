"""One run record for both trainers (docs/records.md): a device run and a torch run load in the
one reader with the same units and sit side by side; older files load, mapped; a malformed
record ends in one line naming the file and the field."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from e2train.core import golden, run_record
from e2train.core.run_record import EPOCH_FIELDS, EVENTS, RecordError, load

OLD = Path(__file__).parent / "old_records"
DEVICE_CFG = dict(model="resnet8", width=4, batch_size=32, epochs=2, smd=True, smd_energy_ratio=0.5, slu=True, conv_lr=0.01,
                  progress_every=2)


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    """A device trainer run (golden kernels, 192 digits) written by the host's report writer,
    with the board's run id and board info as the agent adds them; and its events."""
    from e2train.data import datasets
    from e2train.device.trainer import Trainer
    from e2train.app.train_cli import write_reports
    x_tr, y_tr, x_te, y_te = datasets.load("digits")
    events: list[dict] = []
    res = Trainer(DEVICE_CFG, (x_tr[:192], y_tr[:192], x_te[:96], y_te[:96]), golden, on_event=events.append).run()
    res = json.loads(json.dumps(dict(res, run_id="dev", board={"board": "sim", "part": "xc7z020 (simulated)"},
                                     state="finished")))          # as it crosses the link
    out = tmp_path_factory.mktemp("device-run")
    write_reports({"run_id": "dev", "config": DEVICE_CFG, "results": res, "meter": None}, out)
    return out, res, events


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """A tiny torch-train run (--out): its records.json, and its events."""
    from e2train.torch import data
    from e2train.torch.trainer import TrainConfig, train
    d = data.load("digits")
    tiny = data.Data("digits", d.x_train[:128], d.y_train[:128], d.x_test[:64], d.y_test[:64])
    out = tmp_path_factory.mktemp("torch-run")
    events: list[dict] = []
    res = train(TrainConfig(epochs=2, batch_size=32, max_batches=2, progress=False, out_dir=str(out)), data=tiny,
                on_event=events.append)
    return out, res, events


def test_device_record_loads_with_the_schemas_units(device_run):
    out, res, _ = device_run
    rec = load(out)
    assert rec.trainer == "device" and rec.source_format == "current" and rec.run_id == "dev"
    assert rec.config == DEVICE_CFG                                  # as given
    assert [e["epoch"] for e in rec.epochs] == [1, 2]                # epoch 1 is the first
    assert [e["test_acc"] for e in rec.epochs] == [h["test_acc"] for h in res["history"]]
    assert rec.final["test_acc"] == res["test_acc"] and 0 <= rec.final["test_acc"] <= 1
    en = rec.primary_energy
    assert en["kind"] == "modelled" and en["platform"] == "xc7z020"
    assert en["total_j"] == res["modelled"]["energy_j"] and en["parts_j"] == res["modelled"]["parts_j"]
    assert rec.epochs[-1]["energy_j"] == en["total_j"]
    assert rec.environment["contract_version"] == 2 and rec.environment["platform"] == "sim, xc7z020 (simulated)"
    assert rec.epochs[0]["wall_s"] > 0 and rec.epochs[1]["wall_s"] >= rec.epochs[0]["wall_s"]


def test_torch_record_loads_with_the_same_units(torch_run):
    out, res, _ = torch_run
    rec = load(out / "records.json")
    assert rec.trainer == "torch" and rec.source_format == "current"
    assert [e["epoch"] for e in rec.epochs] == [1, 2]
    # the trainer keeps percent in memory; the record holds fractions
    assert [e["test_acc"] for e in rec.epochs] == [r["test_acc"] / 100.0 for r in res.records]
    assert rec.final["test_acc"] == res.final_test_acc / 100.0
    assert rec.primary_energy["kind"] == "modelled" and rec.primary_energy["platform"] == res.energy_platform
    assert rec.primary_energy["total_j"] == res.energy_j
    assert rec.environment["package_version"] and "torch" in rec.environment["platform"]


def test_both_trainers_emit_the_same_event_vocabulary(device_run, torch_run):
    for events in (device_run[2], torch_run[2]):
        kinds = [e["event"] for e in events]
        assert kinds[0] == "started" and kinds[-1] == "finished" and set(kinds) <= set(EVENTS)
        for ev in events:
            assert set(EVENTS[ev["event"]]) <= set(ev), ev["event"]
        epochs = [e for e in events if e["event"] == "epoch"]
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert all(0 <= e["test_acc"] <= 1 for e in epochs)
    # an epoch event is the record's epoch entry
    out, _, events = torch_run
    rec = load(out)
    ev = [e for e in events if e["event"] == "epoch"]
    assert [{k: e[k] for k in EPOCH_FIELDS} for e in ev] == [{k: e[k] for k in EPOCH_FIELDS} for e in rec.epochs]
    assert events[-1]["final"] == rec.final


def test_a_device_run_and_a_torch_run_side_by_side(device_run, torch_run, tmp_path, capsys):
    from e2train.app.cli import main
    rc = main(["bench", "--compare", str(device_run[0]), str(torch_run[0]), "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 |") or ln.startswith("| 2 |")]
    assert len(rows) == 2                                     # one row per epoch, both runs in it
    dev, tor = load(device_run[0]), load(torch_run[0])
    for ln, n in zip(rows, (1, 2)):
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[1] == f"{dev.epochs[n - 1]['test_acc']:.2%}" and cells[3] == f"{tor.epochs[n - 1]['test_acc']:.2%}"
    header = next(ln for ln in text.splitlines() if ln.startswith("| epoch"))
    assert "energy J (modelled, xc7z020)" in header and "energy J (modelled, horowitz45)" in header
    assert "differ in kind or platform" in text
    assert (tmp_path / "compare.md").read_text().strip() == text.split("\nwrote ")[0].strip()
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_older_torch_records_load_mapped_to_fractions():
    raw = json.loads((OLD / "torch_records_v0.json").read_text())
    rec = load(OLD / "torch_records_v0.json")
    assert rec.source_format == "torch-records-v0" and rec.trainer == "torch"
    assert [e["test_acc"] for e in rec.epochs] == [r["test_acc"] / 100.0 for r in raw["records"]]
    assert [e["epoch"] for e in rec.epochs] == [r["epoch"] for r in raw["records"]] == [1, 2]
    assert rec.primary_energy == {"kind": "modelled", "source": "energy model", "platform": "horowitz45",
                                  "total_j": raw["energy_j"], "parts_j": raw["energy_parts_j"],
                                  "note": raw["energy_label"]}
    ddp = load(OLD / "ddp_records_v0.json")
    assert ddp.source_format == "distributed-records-v0" and ddp.primary_energy["kind"] == "none"
    assert ddp.primary_energy["total_j"] is None and ddp.extra["world"] == 2


def test_older_device_files_load_with_epochs_from_one():
    raw = json.loads((OLD / "device_report_v0.json").read_text())
    assert [h["epoch"] for h in raw["results"]["history"]] == [0, 1]        # written from 0 then
    rec = load(OLD / "device_report_v0.json")
    assert rec.source_format == "device-report-v0" and rec.run_id == "demo-baseline"
    assert [e["epoch"] for e in rec.epochs] == [1, 2]
    assert [e["test_acc"] for e in rec.epochs] == [h["test_acc"] for h in raw["results"]["history"]]
    assert rec.config == raw["config"]
    model, meter = rec.energy
    assert model["kind"] == "modelled" and model["platform"] == "xc7z020"
    assert model["total_j"] == raw["results"]["summary"]["modelled_energy_j"]
    assert meter["source"] == "meter" and meter["kind"] == raw["meter"]["energy_kind"]
    assert meter["above_idle_j"] == raw["meter"]["energy_above_idle_j"]
    res = load(OLD / "device_results_v0.json")
    assert res.source_format == "device-results-v0" and [e["epoch"] for e in res.epochs] == [1, 2]
    assert res.final == rec.final


def test_old_device_checkpoint_history_resumes_numbered_from_one(tmp_path):
    """A checkpoint saved before the schema (history from 0) resumes with epochs from 1."""
    from e2train.data import datasets
    from e2train.device import checkpoint as ckpt
    from e2train.device.trainer import Trainer
    x_tr, y_tr, x_te, y_te = datasets.load("digits")
    data = (x_tr[:64], y_tr[:64], x_te[:32], y_te[:32])
    cfg = dict(DEVICE_CFG, epochs=2, batch_size=32)
    path = tmp_path / "ckpt.npz"
    first = Trainer(dict(cfg), data, golden, checkpoint=path)

    class Stop(Exception):
        pass

    def stop_after_epoch_1(ev):
        if ev["event"] == "checkpoint" and (ev["epoch"], ev["batch"]) == (1, 0):     # saved at the epoch's end
            raise Stop
    first.on_event = stop_after_epoch_1
    with pytest.raises(Stop):
        first.run()
    arrays, meta = ckpt.load(path)
    meta.pop("record_schema_version")                       # as an older e2train wrote it
    meta["history"] = [dict(h, epoch=h["epoch"] - 1) for h in meta["history"]]
    ckpt.save(path, arrays, meta)
    res = Trainer(dict(cfg), data, golden, checkpoint=path).run()
    assert [h["epoch"] for h in res["history"]] == [1, 2]


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["epochs"][1].update(test_acc=97.5), "epochs[1].test_acc"),         # percent, not a fraction
    (lambda d: d["epochs"][0].update(epoch=0), "epochs[0].epoch"),                  # counted from 0
    (lambda d: d["energy"][0].update(kind="estimated"), "energy[0].kind"),
    (lambda d: d.pop("environment"), "environment"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d.update(trainer="gpu"), "trainer"),
])
def test_a_malformed_record_names_the_file_and_the_field(torch_run, tmp_path, capsys, mutate, field):
    d = json.loads((torch_run[0] / "records.json").read_text())
    mutate(d)
    bad = tmp_path / "records.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(RecordError) as e:
        load(bad)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: field {field}:")
    from e2train.app.cli import main
    assert main(["bench", "--compare", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"e2train bench: {msg}" and "Traceback" not in err


@pytest.mark.parametrize("text, want", [
    ("{not json", "not JSON (line 1"),
    ("[1, 2]", "holds a JSON list, not a run record object"),
    ('{"hello": 1}', "not a run record"),
])
def test_files_that_are_no_record_at_all(tmp_path, text, want):
    p = tmp_path / "x.json"
    p.write_text(text)
    with pytest.raises(RecordError, match=f"^{p}: {want}".replace("(", r"\(")):
        load(p)
    with pytest.raises(RecordError, match="no records.json or report.json"):
        load(tmp_path)


def test_records_round_trip_and_save_refuses_a_bad_one(tmp_path):
    rec = load(OLD / "device_report_v0.json")
    p = run_record.save(rec, tmp_path / "records.json")
    again = load(p)
    assert again.to_dict() == json.loads(json.dumps(rec.to_dict(), default=str))
    rec.epochs[0]["test_acc"] = math.inf
    with pytest.raises(RecordError, match="epochs\\[0\\].test_acc"):
        run_record.save(rec, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()

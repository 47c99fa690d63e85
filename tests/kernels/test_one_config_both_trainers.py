"""One config file, written in the keys both trainers implement, trains on the device trainer
(C simulation of the kernels) and on the torch trainer; each trainer refuses the other's keys
naming them, and both give the same message for the same bad value (core.train_keys); the two
runs' records load in the one reader (core.run_record) and compare side by side."""
from __future__ import annotations

import json
import warnings

import pytest

from e2train.core import run_record as rr
from e2train.core import train_keys as tk

# E²-Train on a ResNet-8, in keys both trainers implement (docs/config.md: "both")
SHARED = {"model": "resnet8", "epochs": 1, "batch_size": 32, "seed": 3, "augment": True, "lr": 0.1, "conv_lr": 0.002,
          "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "precision": "psg", "beta": 0.05,
          "act_scale": "batch_max", "smd": True, "smd_p": 0.5, "smd_energy_ratio": 0.67, "slu": True,
          "slu_alpha": 2.0, "slu_target": 0.7, "slu_cost": "target", "slu_cell": "gru"}
TOML = "\n".join(f"{k} = {json.dumps(v)}" for k, v in SHARED.items()) + "\n"


def test_the_shared_config_uses_only_keys_both_trainers_implement():
    assert all(tk.BY_NAME[k].trainers == tk.TRAINERS for k in SHARED)


@pytest.mark.parametrize("suffix, cell", [(".toml", "lstm"), (".json", "gru")])
def test_one_config_file_trains_on_the_device_and_in_torch(tmp_path, csim_lib, suffix, cell, capsys):
    from e2train.data import datasets
    from e2train.app.cli import main
    from e2train.core import csim
    from e2train.device.trainer import Trainer
    from e2train.app.train_cli import build_config

    shared = dict(SHARED, slu_cell=cell)
    path = tmp_path / f"run{suffix}"
    path.write_text(TOML.replace('"gru"', f'"{cell}"') if suffix == ".toml" else json.dumps(shared))
    # device: the file as `e2train train --config FILE` reads it, on its own (no preset keys)
    loaded = build_config("e2train", str(path), [])
    dev_cfg = {k: loaded[k] for k in SHARED}
    assert dev_cfg == shared
    x, y, xt, yt = datasets.load("digits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the new names load without a note
        tr = Trainer(dev_cfg, (x[:96], y[:96], xt[:64], yt[:64]), csim)
        res = tr.run()
    assert res["epochs_done"] == res["total_epochs"] == 1 and not res["stopped"]
    assert res["skips"]["batches_run"] >= 1 and 0 <= res["test_acc"] <= 1
    assert tr.model.gates.cell == cell and f"{cell}.wx" in tr.model.gates.params
    # torch: the same file through `e2train torch-train --config FILE`, tiny
    rc = main(["torch-train", "--config", str(path), "--limit-train", "96", "--max-batches", "2",
               "--threads", "1", "--no-progress", "--json", "--out", str(tmp_path / "torch")])
    out = capsys.readouterr().out
    assert rc == 0, out
    result = json.loads(out)
    assert {k: result["config"][k] for k in SHARED} == shared
    assert len(result["epochs"]) == 1
    # both runs' records load in the one reader, in the same units, side by side
    (tmp_path / "device").mkdir()
    rr.save(rr.device_record(res, dev_cfg), tmp_path / "device" / "records.json")
    dev, tor = rr.load(tmp_path / "device"), rr.load(tmp_path / "torch")
    assert (dev.trainer, tor.trainer) == ("device", "torch")
    for rec in (dev, tor):
        assert {k: rec.config[k] for k in SHARED} == shared
        assert [e["epoch"] for e in rec.epochs] == [1]                    # epochs count from 1 in both
        assert 0 <= rec.final["test_acc"] <= 1                           # accuracy a fraction in both
    assert dev.final["test_acc"] == res["test_acc"]
    assert main(["bench", "--compare", str(tmp_path / "device"), str(tmp_path / "torch")]) == 0
    table = capsys.readouterr().out
    assert "device" in table and "torch" in table


@pytest.mark.parametrize("command, key, value, other", [
    ("train", "swa", True, "the torch trainer (e2train torch-train)"),
    ("train", "stochastic_depth", 0.5, "the torch trainer (e2train torch-train)"),
    ("torch-train", "width", 8, "the device trainer (e2train train)"),
    ("torch-train", "slu_sampling", False, "the device trainer (e2train train)"),
])
def test_each_trainer_refuses_the_others_keys_naming_them(tmp_path, capsys, command, key, value, other):
    from e2train.app.cli import main
    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(SHARED, **{key: value})))
    assert main([command, "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"config key '{key}' is implemented by {other} only" in err[0], err


@pytest.mark.parametrize("key, value", [
    ("beta", 2.0), ("beta", 0.0), ("smd_p", 1.0), ("epochs", 0), ("epochs", "ten"), ("slu_target", 0.0),
    ("momentum", 1.0), ("lr", -1.0), ("conv_lr", float("nan")), ("act_scale", "max"), ("model", "resnet9"),
    ("slu_cell", "rnn"), ("precision", "fp16"), ("smd", "yes"), ("batch_size", 0), ("slu_alpha", -1.0),
    ("smd_energy_ratio", 1.5), ("weight_decay", 1.0), ("seed", 1.5), ("slu_cost", "l2"),
])
def test_both_trainers_give_the_same_message_for_the_same_bad_value(key, value):
    from e2train.device.train_config import TrainConfig as DeviceConfig
    from e2train.torch.trainer import TrainConfig as TorchConfig
    msgs = []
    for cls in (DeviceConfig, TorchConfig):
        with pytest.raises(tk.ConfigError) as e:
            cls.from_dict({key: value})
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and msgs[0].startswith(f"config '{key}' = {value!r}: "), msgs


def test_torch_fields_and_defaults_are_the_vocabulary():
    import dataclasses
    from e2train.torch.trainer import TrainConfig
    assert TrainConfig().to_dict() == tk.defaults(tk.TORCH)
    assert sorted(f.name for f in dataclasses.fields(TrainConfig)) == sorted(k.name for k in tk.keys_for(tk.TORCH))

"""Trainer: resume equals an uninterrupted run, configs are checked, the CLI runs."""
import json

import pytest
import torch

from e2train.cli import main
from e2train.torch.trainer import ConfigError, TrainConfig, load_checkpoint, train

RUN = dict(batch_size=16, progress=False, max_batches=4, precision="psg", smd=True, smd_p=0.3,
           slu=True, seed=2)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    full = train(TrainConfig(epochs=3, out_dir=str(tmp_path / "a"), **RUN), data=tiny)
    # the same run, stopped after epoch 1 and resumed: interrupt by raising from the callback
    class Stop(Exception):
        pass

    def stop_in_second(rec):
        if rec["epoch"] == 2:          # before epoch 2's checkpoint is written
            raise Stop
    with pytest.raises(Stop):
        train(TrainConfig(epochs=3, out_dir=str(tmp_path / "b"), **RUN), data=tiny, callback=stop_in_second)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = train(TrainConfig(epochs=3, out_dir=str(tmp_path / "b"), resume=True, **RUN), data=tiny)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, equal_nan=True, msg=k)
    assert [r["test_acc"] for r in full.records] == [r["test_acc"] for r in resumed.records]
    assert full.work.to_dict()["macs"] == resumed.work.to_dict()["macs"]


def test_resume_refuses_a_different_config_and_corrupt_files(tiny, tmp_path):
    train(TrainConfig(epochs=1, out_dir=str(tmp_path), **RUN), data=tiny)
    other = dict(RUN, precision="fp32", smd=False, slu=False)
    with pytest.raises(ConfigError, match="precision"):
        train(TrainConfig(epochs=1, out_dir=str(tmp_path), resume=True, **other), data=tiny)
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(ConfigError, match="unreadable"):
        train(TrainConfig(epochs=1, out_dir=str(tmp_path), resume=True, **RUN), data=tiny)


def test_checkpoints_hold_no_pickled_code(tiny, tmp_path):
    train(TrainConfig(epochs=1, out_dir=str(tmp_path), **RUN), data=tiny)
    st = torch.load(tmp_path / "checkpoint.pt", weights_only=True)     # raises on arbitrary objects
    assert {"model", "optimizer", "policy", "epoch", "records"} <= set(st)
    recs = json.loads((tmp_path / "records.json").read_text())
    assert recs["energy_kind"] == "modelled" and "modelled" in recs["energy_label"]


@pytest.mark.parametrize("d, msg", [
    ({"epoch": 3}, "did you mean 'epochs'"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"epochs": "ten"}, "epochs must be an integer"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"smd": "yes"}, "smd must be true or false"),
    ({"beta": 2.0}, "beta must be in"),
    ({"slu": True, "stochastic_depth": 0.5}, "use one"),
    ({"swa": True, "precision": "psg"}, "swa"),
    ({"resume": True}, "needs out_dir"),
    ({"smd_energy_ratio": 0.67}, "needs smd = true"),
    ({"dataset": "mnist"}, "dataset must be"),
    ([1, 2], "must be a table"),
])
def test_bad_configs_are_rejected_with_clear_messages(d, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig.from_dict(d)


def test_config_files(tmp_path):
    t = tmp_path / "run.toml"
    t.write_text('model = "resnet14"\nprecision = "psg"\nsmd = true\nsmd_energy_ratio = 0.67\nepochs = 30\n')
    cfg = TrainConfig.from_file(t)
    assert cfg.model == "resnet14" and cfg.run_epochs == 40
    j = tmp_path / "run.json"
    j.write_text('{"epochs": 5,}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_file(j)
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.toml")


def test_cli_runs_and_rejects_bad_flags(tmp_path, capsys):
    rc = main(["torch-train", "--epochs", "1", "--limit-train", "64", "--batch-size", "32",
               "--no-progress", "--precision", "psg", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "(modelled)" in out and "final test accuracy" in out
    assert (tmp_path / "records.json").exists()
    assert main(["torch-train", "--precision", "fp8"]) == 2
    assert "precision must be one of" in capsys.readouterr().err


def test_models_build_for_every_depth_and_mobilenet():
    from e2train.torch.models import build_model
    for d in (8, 14, 20, 38, 74, 110):
        m = build_model(f"resnet{d}", 3, 10)
        assert len(m.blocks) == (d - 2) // 2
    with pytest.raises(ValueError, match="6n\\+2"):
        build_model("resnet10", 3, 10)
    m = build_model("mobilenetv2_0.25", 1, 10, precision="psg", gated=True).train()
    out = m(torch.randn(4, 1, 8, 8))
    out.sum().backward()
    assert out.shape == (4, 10)

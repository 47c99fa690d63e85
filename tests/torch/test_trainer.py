"""Trainer: resume equals an uninterrupted run, configs are checked, the CLI runs."""
import json

import pytest
import torch

from e2train.app.cli import main
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


def test_resume_refuses_a_checkpoint_of_another_fixed_point_contract(tiny, tmp_path):
    train(TrainConfig(epochs=1, out_dir=str(tmp_path), **RUN), data=tiny)
    ck = tmp_path / "checkpoint.pt"
    st = torch.load(ck, weights_only=True)
    assert st["contract_version"] == 2
    del st["contract_version"]                      # what a v1 checkpoint looks like
    torch.save(st, ck)
    with pytest.raises(ConfigError, match="trained under fixed-point contract v1, this e2train implements v2"):
        train(TrainConfig(epochs=2, out_dir=str(tmp_path), resume=True, **RUN), data=tiny)


def test_checkpoints_hold_no_pickled_code(tiny, tmp_path):
    train(TrainConfig(epochs=1, out_dir=str(tmp_path), **RUN), data=tiny)
    st = torch.load(tmp_path / "checkpoint.pt", weights_only=True)     # raises on arbitrary objects
    assert {"model", "optimizer", "policy", "epoch", "records"} <= set(st)
    from e2train.core.run_record import load
    en = load(tmp_path / "records.json").primary_energy
    assert en["kind"] == "modelled" and "modelled" in en["note"]


@pytest.mark.parametrize("d, msg", [
    ({"epoch": 3}, "did you mean 'epochs'"),
    ({"precision": "fp16"}, "'precision' = 'fp16': must be one of"),
    ({"epochs": "ten"}, "'epochs' = 'ten': must be an integer"),
    ({"epochs": 0}, "'epochs' = 0: must be >= 1"),
    ({"lr": -1.0}, "'lr' = -1.0: must be a learning rate in \\(0, 10\\)"),
    ({"smd": "yes"}, "'smd' = 'yes': must be true or false"),
    ({"beta": 2.0}, "'beta' = 2.0: must be in"),
    ({"act_scale": "max"}, "'act_scale' = 'max': must be one of batch_max, mean_sample_max"),
    ({"slu": True, "stochastic_depth": 0.5}, "use one"),
    ({"schedule": "step"}, "needs lr_steps"),
    ({"schedule": "step", "lr_steps": "60,30"}, "increasing"),
    ({"schedule": "cyclic"}, "needs lr_cycle"),
    ({"lr_step_unit": "batch"}, "'lr_step_unit' = 'batch': must be one of"),
    ({"slu_cost": "l2"}, "'slu_cost' = 'l2': must be one of"),
    ({"slu_cell": "rnn"}, "'slu_cell' = 'rnn': must be one of"),
    ({"val_split": 1.0}, "'val_split' = 1.0: must be in"),
    ({"iterations": 0}, "'iterations' = 0: must be >= 1"),
    ({"resume": True}, "needs out_dir"),
    ({"smd_energy_ratio": 0.67}, "needs smd = true"),
    ({"dataset": "svhn"}, "'dataset' = 'svhn': must be one of"),
    ({"model": "resnet9"}, "unknown model 'resnet9'"),       # not 6n+2: refused before anything is built
    ({"model": "vgg13"}, "unknown model"),
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
    assert "'precision' = 'fp8': must be one of" in capsys.readouterr().err


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


class _GlobalRngBlockDrop:
    """Drops (sample, block) executions from torch's *global* RNG, as sampled SLU gates do:
    a resumed run matches an uninterrupted one only if the checkpoint restores that RNG."""

    def __new__(cls):
        from e2train.torch.policy import Policy

        class P(Policy):
            name = "global-rng-block-drop"

            def block_masks(self, ctx):
                # the global RNG of the batch's device (on a GPU: CUDA's own generator)
                return [torch.rand(ctx.x.shape[0], device=ctx.x.device) < 0.5 for _ in ctx.model.blocks]
        return P()


@pytest.mark.parametrize("device", ["auto", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_resume_restores_torch_global_rng(tiny, tmp_path, device, request):
    if device == "cuda":
        request.getfixturevalue("deterministic_cuda")
    run = dict(RUN, slu=False, smd=False, precision="fp32", device=device)
    full = train(TrainConfig(epochs=2, out_dir=str(tmp_path / "a"), **run), [_GlobalRngBlockDrop()], data=tiny)

    class Stop(Exception):
        pass

    def stop(rec):
        if rec["epoch"] == 2:
            raise Stop
    with pytest.raises(Stop):
        train(TrainConfig(epochs=2, out_dir=str(tmp_path / "b"), **run), [_GlobalRngBlockDrop()], data=tiny,
              callback=stop)
    torch.rand(1000)                      # whatever ran in between must not matter
    if torch.cuda.is_available():
        torch.rand(1000, device="cuda")
    resumed = train(TrainConfig(epochs=2, out_dir=str(tmp_path / "b"), resume=True, **run),
                    [_GlobalRngBlockDrop()], data=tiny)
    assert full.work.to_dict() == resumed.work.to_dict()    # the same blocks ran
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)


def test_on_epoch_end_runs_after_evaluation_and_its_keys_are_kept(tiny, tmp_path):
    from e2train.torch.policy import Policy
    seen = {}

    class Probe(Policy):
        def on_train_start(self, ctx):
            seen["state"] = set(ctx.state)

        def on_epoch_end(self, ctx, record):
            seen.setdefault("acc_at_end", []).append(record["test_acc"])
            record["probe"] = record["epoch"] * 10
    got = []
    res = train(TrainConfig(epochs=2, out_dir=str(tmp_path), **dict(RUN, slu=False)), [Probe()], data=tiny,
                callback=lambda r: got.append(dict(r)))
    assert {"config", "work_meter"} <= seen["state"]
    assert seen["acc_at_end"] == [r["test_acc"] for r in res.records]       # evaluated before the hook
    assert [r["probe"] for r in got] == [10, 20] == [r["probe"] for r in res.records]
    ck = json.loads(load_checkpoint(tmp_path / "checkpoint.pt")["records"])
    assert [r["probe"] for r in ck] == [10, 20]


@pytest.mark.parametrize("precision", ["fp32", "psg"])
def test_work_meter_forward_only_counts_the_forward_of_a_training_step(tiny, precision):
    from e2train.core.energy import conv_pass_work
    from e2train.core.work import Work
    from e2train.torch.models import build_model
    from e2train.torch.work_meter import FP32_PASSES, WorkMeter
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10, precision=precision)
    meter = WorkMeter(model)
    x = tiny.x_train[:16]
    # a training step's forward on the same samples, with the backward stopped everywhere:
    # what the meter counts then is exactly the forward MACs (BN also counts its backward)
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    meter.active = True
    model(x)
    meter.active = False
    train_fwd = meter.work
    meter.work = Work()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()                                   # any mode: a deciding forward may run in eval
    with meter.forward_only() as m:
        assert m is meter and not torch.is_grad_enabled()
        model(x)
    assert meter.active is False and torch.is_grad_enabled()
    assert meter.work.macs == train_fwd.macs and meter.work.total_macs > 0
    assert meter.work.sram_bytes == train_fwd.sram_bytes
    bn = sum(train_fwd.ops.values())
    assert sum(meter.work.ops.values()) * 3 == bn        # BN: 2 forward ops of the 2 + 4
    # and outside the context an eval forward counts nothing, as before
    before = meter.work.to_dict()
    with torch.no_grad():
        model(x)
    assert meter.work.to_dict() == before
    # the expected count, from first principles, for the first conv alone
    first = Work()
    conv_pass_work(16 * 16 * 8 * 8 * 1 * 9, *getattr(model.conv1, "pass_bits", FP32_PASSES)[0], work=first)
    assert first.total_macs and all(meter.work.macs[k] >= n for k, n in first.macs.items())
    meter.close()


def test_psg_exact_false_switches_every_psg_layer_to_the_fast_emulation(tiny, tmp_path, capsys):
    from e2train.torch.models import build_model
    from e2train.torch.psg import PSGConv2d
    model = build_model("resnet8", tiny.in_channels, tiny.num_classes, precision="psg", gated=True)
    train(TrainConfig(epochs=1, psg_exact=False, **RUN), model=model, data=tiny)
    layers = [m for m in model.modules() if isinstance(m, PSGConv2d)]
    assert layers and all(not m.exact for m in layers)
    # the default stays the bit-exact emulation
    model2 = build_model("resnet8", tiny.in_channels, tiny.num_classes, precision="psg", gated=True)
    train(TrainConfig(epochs=1, **RUN), model=model2, data=tiny)
    assert all(m.exact for m in model2.modules() if isinstance(m, PSGConv2d))


def test_checkpoint_keeps_the_rng_state_per_device_and_reads_the_older_form(tiny, tmp_path):
    run = dict(RUN, slu=False, smd=False, precision="fp32", device="cpu")
    full = train(TrainConfig(epochs=2, **run), [_GlobalRngBlockDrop()], data=tiny)

    class Stop(Exception):
        pass

    def stop(rec):
        if rec["epoch"] == 2:          # after epoch 1's checkpoint
            raise Stop
    with pytest.raises(Stop):
        train(TrainConfig(epochs=2, out_dir=str(tmp_path), **run), [_GlobalRngBlockDrop()], data=tiny, callback=stop)
    ckpt = tmp_path / "checkpoint.pt"
    st = load_checkpoint(ckpt)
    assert set(st["torch_rng"]) == {"cpu"}          # a CPU run keeps no CUDA state
    st["torch_rng"] = st["torch_rng"]["cpu"]        # the form written before per-device state
    torch.save(st, ckpt)
    torch.rand(1000)
    resumed = train(TrainConfig(epochs=2, out_dir=str(tmp_path), resume=True, **run), [_GlobalRngBlockDrop()],
                    data=tiny)
    assert full.work.to_dict() == resumed.work.to_dict()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rng_state_round_trips_on_cuda():
    from e2train.torch.rng import rng_state, set_rng_state
    st = rng_state("cuda")
    assert len(st["cuda"]) == torch.cuda.device_count()
    a, b = torch.rand(5), torch.rand(5, device="cuda")
    set_rng_state(st, "cuda")
    assert torch.equal(a, torch.rand(5)) and torch.equal(b, torch.rand(5, device="cuda"))

"""Bad configs and bad data are rejected with a clear message before anything runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from e2train.device.train_config import ConfigError, TrainConfig
from e2train.device.trainer import Trainer

BAD = [
    ({"psg_beta": 0.0}, "psg_beta", "(0, 1]"),
    ({"psg_beta": 1.5}, "psg_beta", "(0, 1]"),
    ({"act_scale": "running_max"}, "act_scale", "batch_max, mean_sample_max"),
    ({"act_bits": 4}, "act_bits", "support"),
    ({"grad_bits": 32}, "grad_bits", "support"),
    ({"depth": 10}, "depth", "6n+2"),
    ({"depth": 116}, "depth", "6n+2"),
    ({"depth": 2}, "depth", "6n+2"),
    ({"width": 0}, "width", ">= 1"),
    ({"gate_target": 0.0}, "gate_target", "(0, 1]"),
    ({"gate_target": 1.2}, "gate_target", "(0, 1]"),
    ({"smd_p": 1.0}, "smd_p", "[0, 1)"),
    ({"smd_p": -0.1}, "smd_p", "[0, 1)"),
    ({"epochs": 0}, "epochs", ">= 1"),
    ({"batch_size": 0}, "batch_size", ">= 1"),
    ({"batch_size": 4097}, "batch_size", "<= 4096"),
    ({"lr": -0.1}, "lr", "learning rate"),
    ({"conv_lr": float("nan")}, "conv_lr", "finite"),
    ({"momentum": 1.0}, "momentum", "[0, 1)"),
    ({"smd": "yes"}, "smd", "true or false"),
    ({"depth": "8"}, "depth", "integer"),
    ({"depth": 8.5}, "depth", "integer"),
    ({"epochs": True}, "epochs", "integer"),
    ({"dept": 8}, "unknown config key", "known keys"),
]


@pytest.mark.parametrize("patch,key,hint", BAD)
def test_bad_values_are_rejected_with_the_key_and_the_rule(patch, key, hint):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict(patch)
    msg = str(e.value)
    assert key in msg and hint in msg, msg


def test_bad_config_fails_before_any_kernel_call(small_digits, spy):
    with pytest.raises(ConfigError):
        Trainer({"psg_beta": 2.0}, small_digits, spy)
    assert spy.calls == []


def test_good_config_round_trips_through_json():
    cfg = TrainConfig.from_json(json.dumps({"depth": 14, "width": 8, "psg": False, "smd_p": 0.25,
                                            "epochs": 3, "conv_lr": 1}))
    assert cfg.depth == 14 and cfg.beta_q == 0 and cfg.conv_lr == 1.0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({"psg_beta": 0.05}).beta_q == round(0.05 * 2 ** 16)
    # SMD trains the multiplied schedule; no SMD trains the plain one
    assert TrainConfig.from_dict({"epochs": 30}).total_epochs == 40
    assert TrainConfig.from_dict({"epochs": 30, "smd": False}).total_epochs == 30
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{depth: 8")
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.from_dict([1, 2])


def test_bad_data_and_backend_are_rejected(small_digits, spy):
    x, y, xt, yt = small_digits
    with pytest.raises(ValueError, match="4-D"):
        Trainer({}, (x[:, 0], y), spy)
    with pytest.raises(ValueError, match="one label per image"):
        Trainer({}, (x, y[:-1]), spy)
    with pytest.raises(ValueError, match="finite"):
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        Trainer({}, (bad, y), spy)
    with pytest.raises(ValueError, match="differ"):
        Trainer({}, (x, y, xt[:, :, :4], yt), spy)
    with pytest.raises(TypeError, match="conv_bwd_weight_psg"):
        Trainer({}, (x, y), object())
    assert spy.calls == []


def test_a_batch_past_the_weight_gradients_position_bound_is_refused_before_anything_runs(spy):
    """The weight gradient sums at most 2^17 positions a call (its partial sums' BRAM word,
    core.shapes.check_wgrad_terms): at 32x32 images batch 128 trains, 129 is refused up front,
    naming batch_size and the largest batch that fits."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 32, 32)).astype(np.float32)
    y = np.arange(4) % 2
    Trainer({"model": "resnet8", "width": 4, "batch_size": 128}, (x, y), spy)
    with pytest.raises(ConfigError, match=r"batch_size 129 at 32x32 images: .*at most 128 at 32x32"):
        Trainer({"model": "resnet8", "width": 4, "batch_size": 129}, (x, y), spy)
    assert spy.calls == []

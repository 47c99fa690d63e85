"""A grid's trainer settings (a preset's ``train_config``) reach every arm alike: the method,
its random control and its fewer-iterations control; bad keys fail before training."""
from __future__ import annotations

from argparse import Namespace

import pytest

from e2train.bench.cli import build_spec
from e2train.bench.grid import GridError
from e2train.bench.records import Budget
from e2train.bench.runner import Job
from e2train.bench.torch_backend import TorchBackend


def _ns(preset):
    return Namespace(preset=preset, methods=None, budgets=None, seeds=None, targets=None, dataset=None,
                     model=None, baseline=None, no_random_controls=False, no_fewer_iters=False, ci_level=0.95)


def test_e2train_preset_sets_the_same_conv_lr_for_every_arm():
    spec = build_spec(_ns("e2train"))
    assert spec.train_config == {"conv_lr": 0.002, "psg_exact": False}
    be = TorchBackend(base_config=spec.train_config, limit_train=64)
    b = Budget("epochs", 1)
    method = be._plan(Job("e2train", 0, b, "digits", "resnet8", options=(("slu_alpha", 2.0),)))
    control = be._plan(Job("random-skip", 0, b, "digits", "resnet8", kind="random-control", control_of="e2train",
                           skip_ratios=(("batches", 0.5), ("block-samples", 0.4), ("weight-signs", 0.6))))
    fewer, _ = be._fewer_plan(Job("fewer-iters", 0, b, "digits", "resnet8", kind="fewer-iters-control",
                                  control_of="e2train", energy_cap_j=1e-3,
                                  options=(("baseline", "fp32"), ("method_epochs", 1))))
    assert method.cfg.conv_lr == control.cfg.conv_lr == fewer.cfg.conv_lr == 0.002
    assert method.cfg.psg_exact is control.cfg.psg_exact is False
    assert method.cfg.precision == control.cfg.precision == "psg"
    assert method.cfg.slu and not control.cfg.slu        # the control skips blocks at random instead


def test_a_bad_train_config_key_is_named():
    be = TorchBackend(base_config={"conv_rate": 0.002})
    with pytest.raises(GridError, match="unknown config key 'conv_rate'.*did you mean 'conv_lr'"):
        be._plan(Job("psg", 0, Budget("epochs", 1), "digits", "resnet8"))

"""Data parallel (DistributedDataParallel, gloo on 127.0.0.1): the same run as one process."""
import time

import pytest

from e2train.torch.distributed.config import DistConfig
from e2train.torch.distributed.ddp import train_ddp
from e2train.torch.distributed.launch import DistributedError
from e2train.torch.trainer import ConfigError, TrainConfig, train


def _cfg(**kw):
    base = dict(dataset="digits", model="resnet8", epochs=1, batch_size=64, max_batches=10, threads=1,
                progress=False, lr=0.05, device="cpu")     # gloo on 127.0.0.1, also where CUDA is present
    base.update(kw)
    return TrainConfig(**base)


def test_one_process_ddp_is_the_trainer():
    cfg = _cfg(smd=True)
    one = train_ddp(cfg, DistConfig(nproc=1, timeout_s=60))
    ref = train(cfg)
    r, q = one["records"][0], ref.records[0]
    assert (r["batches_run"], r["batches_skipped"]) == (q["batches_run"], q["batches_skipped"])
    assert r["train_loss"] == pytest.approx(q["train_loss"], rel=1e-5)
    assert r["test_acc"] == pytest.approx(q["test_acc"])


def test_two_processes_follow_the_one_process_loss_curve():
    cfg = _cfg()
    one = train_ddp(cfg, DistConfig(nproc=1, timeout_s=60))["step_losses"]
    two = train_ddp(cfg, DistConfig(nproc=2, timeout_s=60))["step_losses"]
    assert len(one) == len(two) == 10
    # the same global batches, the same gradient of the global mean; BatchNorm statistics per
    # half-batch are the only difference
    diffs = [abs(a - b) for a, b in zip(one, two)]
    assert max(diffs) < 0.08, diffs
    assert diffs[0] < 0.02                         # the same start: only BatchNorm differs
    assert sum(two[-3:]) < sum(two[:3])            # and it trains


def test_ddp_refusals_and_a_dead_rank():
    with pytest.raises(ConfigError, match="psg"):
        train_ddp(_cfg(precision="psg"), DistConfig(nproc=2))
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match="rank 1"):
        train_ddp(_cfg(), DistConfig(nproc=2, timeout_s=20, fail_at=[1, 2, "exit"]))
    assert time.monotonic() - t0 < 20

"""The papers' own controls in the torch backend (paper 000 for GSkip and DeadHorse, E2-Train
section 4.3 for SLU), each run on a small slice of digits."""
from __future__ import annotations

import pytest

from e2train.bench.records import Budget
from e2train.bench.runner import Job, random_control_job
from e2train.bench.torch_backend import TorchBackend

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")

LIMIT, BATCH = 256, 32


@pytest.fixture(scope="module")
def backend():
    return TorchBackend(threads=1, verbose=False, limit_train=LIMIT, base_config={"batch_size": BATCH})


def job(method, epochs=2, **options):
    return Job(method, 0, Budget("epochs", epochs), "digits", "resnet8", options=tuple(sorted(options.items())))


def test_gskip_control_omits_batches_at_its_workload_ratio(backend):
    """Paper 000, Table 2 and "Random Skipping": mini-batches omitted at random, the rate
    set to mirror GSkip's proportion of skipped *workload*. The old control skipped a random
    layer prefix at GSkip's layer-step ratio, a different (and larger) workload."""
    j = job("gskip", warmup_steps=2, loss_threshold=1.0, recheck_every=4, asc_init=-10)
    res = backend.run(j, lambda s: None)
    assert res.skip_ratios["layer-step"] > 0
    full = 2 * backend.epoch_energy_j(j, "fp32")
    w = 1.0 - res.record.final.energy_j / full
    assert res.control_ratios == {"batches": pytest.approx(w)}
    assert 0 < w < res.skip_ratios["layer-step"]          # a skipped layer-step saves only its backward
    cj = random_control_job(j, res)
    assert cj.skip_unit == "batches" and cj.skip_ratio == pytest.approx(w)
    ctl = backend.run(cj, lambda s: None)
    assert ctl.record.skip_unit == "batches"
    assert "batches" in ctl.record.final.skips


def test_slu_control_is_stochastic_depth_at_the_matched_ratio(backend):
    """E2-Train, section 4.3: "we adjust the hyper-parameter p_L, so that the SD dropping
    ratio is always the same as SLU"."""
    from e2train.torch.slu import MatchedStochasticDepth
    cj = Job("random-skip", 0, Budget("epochs", 1), "digits", "resnet8", kind="random-control",
             control_of="slu", skip_ratio=0.3, skip_unit="block-samples", skip_ratios=(("block-samples", 0.3),))
    plan = backend._random_plan(cj)
    sd = [p for p in plan.policies if isinstance(p, MatchedStochasticDepth)]
    assert len(sd) == 1 and sd[0].drop_ratio == 0.3
    from e2train.torch.models import build_model
    from e2train.torch.policy import StepContext
    sd[0].on_train_start(StepContext(model=build_model("resnet8", 1, 10)))
    # three equal blocks: ratio = (1 - p_L)(L + 1) / 2L -> p_L = 1 - 0.3 * 6 / 4 = 0.55
    assert sd[0].p_last == pytest.approx(0.55)
    res = backend.run(cj, lambda s: None)
    realised = res.record.final.skips["block-samples"]
    assert abs(realised - 0.3) < 0.15             # whole blocks per batch: few draws in one epoch


def test_deadhorse_control_is_segment_wise_and_priced_like_a_reactive_method(backend):
    """Paper 000, DeadHorse's controls: random skipping at the method's rate in each segment
    (epoch), and for a reactive policy the same decision forward the method pays."""
    j = job("dh", threshold=0.2)
    res = backend.run(j, lambda s: None)
    opts = res.control_options
    assert opts["decision_forward"] is True and len(opts["epoch_rates"]) == 2
    cj = random_control_job(j, res)
    plan = backend._random_plan(cj)
    pol = plan.policies[0]
    assert pol.decision_forward and pol.name == "random-nonuniform"
    from e2train.torch.methods.deadhorse import RandomSamplePolicy
    from e2train.torch.trainer import train
    data = backend._data_for(plan.cfg)
    priced = train(plan.cfg, plan.policies, data=data)
    assert pol.tally.decision_forwards == pol.tally.samples == 2 * LIMIT
    # the same draws without the decision forward cost less by exactly that forward work
    bare = train(plan.cfg, [RandomSamplePolicy(list(opts["epoch_rates"]), cj.seed + 1000)], data=data)
    assert priced.work.total_macs > bare.work.total_macs


def test_signsgd_is_an_arm(backend):
    assert "signsgd" in backend.methods()


def test_batch_omission_hits_its_ratio_exactly():
    """The workload control omits round(ratio * N) of the run's N batches, so its realised
    ratio is the target within half a batch (the acceptance asks for 5%)."""
    from e2train.torch.policy import RandomBatchOmission
    from e2train.torch.trainer import TrainConfig, train
    pol = RandomBatchOmission(0.066, seed=3)
    res = train(TrainConfig(epochs=3, batch_size=32, limit_train=320, progress=False), [pol], data=None)
    run = sum(r["batches_run"] for r in res.records)
    skipped = sum(r["batches_skipped"] for r in res.records)
    assert run + skipped == 30 and skipped == round(0.066 * 30) == 2

"""Skipping really skips: dropped batches, gated blocks, masked samples, frozen parameters."""
import torch

from e2train.torch.models import ResNetCifar, build_model
from e2train.torch.policy import Policy, RandomBatchSkip
from e2train.torch.trainer import TrainConfig, train
from e2train.torch.work_meter import WorkMeter

QUICK = dict(epochs=2, batch_size=16, progress=False, lr=0.05)


class Spy(Policy):
    """Records which global steps ran a forward and how many optimizer steps happened."""

    name = "spy"

    def __init__(self):
        self.forward_steps, self.after_step_calls = [], 0

    def before_forward(self, ctx):
        self.forward_steps.append(ctx.step)

    def after_step(self, ctx):
        self.after_step_calls += 1


def test_smd_drops_exactly_the_sampled_batches_and_never_steps_on_them(tiny, monkeypatch):
    cfg = TrainConfig(smd=True, smd_p=0.5, seed=3, **QUICK)
    spy = Spy()
    steps = {"n": 0}
    from e2train.torch import optim
    orig = optim.E2Optimizer.step

    def counting(self, *a, **k):
        steps["n"] += 1
        return orig(self, *a, **k)
    monkeypatch.setattr(optim.E2Optimizer, "step", counting)
    res = train(cfg, [spy], data=tiny)
    nb = 128 // 16
    gen = torch.Generator().manual_seed(cfg.seed + 1)          # the SMD sampler's seed
    dropped = {s for s in range(2 * nb) if torch.rand((), generator=gen).item() < 0.5}
    assert 0 < len(dropped) < 2 * nb
    assert set(spy.forward_steps) == set(range(2 * nb)) - dropped
    assert steps["n"] == spy.after_step_calls == 2 * nb - len(dropped)
    assert sum(r["batches_skipped"] for r in res.records) == len(dropped)
    assert sum(r["batches_run"] for r in res.records) == 2 * nb - len(dropped)


def _count_block_samples(model):
    seen = []
    for i, b in enumerate(model.blocks):
        b.conv1.register_forward_hook(lambda m, inp, out, i=i: seen.append((i, inp[0].shape[0])))
    return seen


def test_masked_blocks_compute_only_the_active_samples():
    torch.manual_seed(0)
    model = ResNetCifar(14, 1, 10).train()
    seen = _count_block_samples(model)
    x = torch.randn(16, 1, 8, 8)
    masks = [torch.arange(16) < k for k in (16, 0, 5, 8, 1, 12)]
    y = model(x, block_masks=masks)
    assert [n for _, n in seen] == [16, 5, 8, 1, 12]            # block 1 never ran
    assert [i for i, _ in seen] == [0, 2, 3, 4, 5]
    y.sum().backward()
    # the meter sees the same: forward MACs scale with the samples that ran
    meter = WorkMeter(model)
    meter.active = True
    model(x, block_masks=[torch.zeros(16, dtype=torch.bool)] * 6)
    calls_off = meter.conv_calls
    model(x)
    assert calls_off == 2 and meter.conv_calls == 2 + 2 + 12   # stem + fc, then all 12 block convs too


def test_a_skipped_sample_takes_the_identity_path():
    torch.manual_seed(0)
    model = ResNetCifar(8, 1, 10).eval()
    block = model.blocks[0]
    x = torch.rand(6, 16, 8, 8)
    mask = torch.tensor([True, False, True, False, False, True])
    out = block(x, mask)
    assert torch.equal(out[~mask], x[~mask])                    # relu(identity) of a ReLU output
    full = block(x)
    assert torch.allclose(out[mask], full[mask], atol=1e-6)


def test_slu_gates_decide_and_gated_off_blocks_do_not_run():
    torch.manual_seed(0)
    model = build_model("resnet14", 1, 10, gated=True).train()
    seen = _count_block_samples(model)
    x = torch.randn(8, 1, 8, 8)
    torch.nn.init.constant_(model.gates.proj.bias, -20.0)       # every gate off
    model(x)
    assert seen == []
    assert model.exec_ratio((8, 8)) == 0.0
    torch.nn.init.constant_(model.gates.proj.bias, 20.0)        # every gate on
    model(x).sum().backward()
    assert [n for _, n in seen] == [8] * 6
    assert model.exec_ratio((8, 8)) == 1.0
    assert model.gates.proj.weight.grad is not None             # the task loss reaches the gates


def test_slu_training_reports_an_execution_ratio_below_one(tiny):
    res = train(TrainConfig(slu=True, slu_alpha=5.0, slu_target=0.3, epochs=3, batch_size=16,
                            progress=False), data=tiny)
    assert res.records[-1]["exec_ratio"] < 0.9


class HalfSamples(Policy):
    def sample_mask(self, ctx):
        return torch.arange(ctx.x.shape[0]) % 2 == 0


class FreezeStem(Policy):
    """Stops the backward at the first block: stem parameters get no gradient, no update."""

    def before_forward(self, ctx):
        for p in list(ctx.model.conv1.parameters()) + list(ctx.model.bn1.parameters()):
            p.requires_grad_(False)

    def skip_params(self, ctx):
        return {"fc.weight", "fc.bias"}


def test_sample_masks_and_parameter_skips_reduce_the_work(tiny):
    cfg = TrainConfig(epochs=1, batch_size=16, progress=False)
    base = train(cfg, data=tiny)
    half = train(cfg, [HalfSamples()], data=tiny)
    assert half.records[0]["samples_run"] == base.records[0]["samples_run"] // 2
    assert half.work.total_macs < 0.55 * base.work.total_macs
    torch.manual_seed(cfg.seed)
    model = build_model("resnet8", 1, 10)
    fc0, stem0 = model.fc.weight.detach().clone(), model.conv1.weight.detach().clone()
    blk0 = model.blocks[0].conv1.weight.detach().clone()
    frozen = train(cfg, [FreezeStem()], model=model, data=tiny)
    # (train moved the model to the run's device; the copies stayed on the CPU)
    assert torch.equal(model.fc.weight.cpu(), fc0) and torch.equal(model.conv1.weight.cpu(), stem0)
    assert not torch.equal(model.blocks[0].conv1.weight.cpu(), blk0)      # the rest still trains
    assert frozen.work.total_macs < base.work.total_macs           # no stem weight gradient ran


def test_psg_run_reports_the_predicted_fraction_and_less_energy(tiny):
    cfg = dict(epochs=1, batch_size=32, progress=False)
    fp = train(TrainConfig(**cfg), data=tiny)
    psg = train(TrainConfig(precision="psg", **cfg), data=tiny)
    pf = psg.records[0]["predicted_frac"]
    assert 0.0 < pf < 1.0
    assert fp.records[0]["predicted_frac"] is None
    assert psg.energy_j < 0.5 * fp.energy_j
    assert psg.records[0]["energy_kind"] == "modelled"


def test_random_batch_skip_is_reproducible():
    a, b = RandomBatchSkip(0.3, seed=5), RandomBatchSkip(0.3, seed=5)

    class Ctx:
        step = 0
    da = [a.skip_batch(Ctx) for _ in range(50)]
    assert da == [b.skip_batch(Ctx) for _ in range(50)] and any(da) and not all(da)


def test_stochastic_depth_drops_whole_blocks_and_scales_at_test(tiny):
    res = train(TrainConfig(stochastic_depth=0.5, epochs=1, batch_size=16, progress=False), data=tiny)
    r = res.records[0]["exec_ratio"]
    assert 0.3 < r < 1.0                           # survival 0.83 / 0.67 / 0.5 over 3 blocks
    assert res.model.eval_scales == [1 - (i + 1) / 3 * 0.5 for i in range(3)]


def test_swa_and_signsgd_comparison_points_run(tiny):
    res = train(TrainConfig(swa=True, swa_start=0.5, epochs=2, batch_size=32, progress=False), data=tiny)
    assert "swa_test_acc" in res.records[-1]
    res = train(TrainConfig(precision="signsgd", epochs=1, batch_size=32, progress=False), data=tiny)
    assert res.records[0]["batches_run"] == 4
    res = train(TrainConfig(precision="int8_fp32grad", epochs=1, batch_size=32, progress=False), data=tiny)
    assert res.energy_j > 0


def test_work_meter_counts_the_macs_of_a_training_step():
    torch.manual_seed(0)
    n = 4
    model = ResNetCifar(8, 1, 10).train()
    meter = WorkMeter(model)
    meter.active = True
    torch.nn.functional.cross_entropy(model(torch.randn(n, 1, 8, 8)), torch.zeros(n, dtype=torch.long)).backward()
    stem = n * 64 * 16 * 1 * 9
    blocks = n * 9 * (2 * 64 * 16 * 16 + 16 * 32 * 16 + 16 * 32 * 32 + 4 * 64 * 32 + 4 * 64 * 64)
    fc = n * 64 * 10
    # forward and weight gradient everywhere; no input gradient for the stem (its input needs none)
    assert meter.work.macs["fp32xfp32"] == 3 * (stem + blocks + fc) - stem
    with torch.no_grad():
        before = meter.work.total_macs
        model(torch.randn(n, 1, 8, 8))                 # evaluation-style forward: not training work
    assert meter.work.total_macs == before


def test_masked_downsampling_block_matches_the_full_block_and_its_gradients():
    """Option-A shortcut (stride 2, more channels): skipped samples get exactly the shortcut,
    active ones exactly what the ungated block gives them, in value and in gradient."""
    torch.manual_seed(0)
    model = ResNetCifar(8, 1, 10).eval()                 # eval: BN statistics do not depend on the batch
    block = model.blocks[1]
    assert block.stride == 2 and block.pad_c > 0
    x = torch.rand(6, 16, 8, 8, requires_grad=True)
    mask = torch.tensor([False, True, True, False, True, False])
    out = block(x, mask)
    assert torch.equal(out[~mask], block.shortcut(x)[~mask])
    x_full = x.detach().clone().requires_grad_(True)
    full = block(x_full)
    assert torch.allclose(out[mask], full[mask], atol=1e-6)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (full[mask] * w[mask]).sum().backward()
    sc_only = x.detach().clone().requires_grad_(True)
    (block.shortcut(sc_only)[~mask] * w[~mask]).sum().backward()
    assert torch.allclose(x.grad, x_full.grad + sc_only.grad, atol=1e-5)


def test_work_meter_prices_the_psg_kernels_not_the_emulation():
    """The emulation splits its sums into limbs and sample groups; the tally must not see
    that: forward at 8x8 bits, input gradient at 16x8, weight gradient 4x10 for every MAC
    and 8x16 only for the weights the predictor did not decide -- the formula of the
    fp32 test above with the kernels' widths."""
    from e2train.core.energy import PREDICTOR_BITS
    from e2train.core.work import mac_key
    from e2train.torch.psg import PSGConv2d
    torch.manual_seed(0)
    n = 4
    model = ResNetCifar(8, 1, 10, precision="psg").train()
    meter = WorkMeter(model)
    meter.active = True
    layers = [m for m in model.modules() if isinstance(m, PSGConv2d)]
    positions = {}                                           # output positions per layer
    for m in layers:
        m.register_forward_hook(lambda mod, i, out: positions.__setitem__(mod, out.shape[2] * out.shape[3]))
    torch.nn.functional.cross_entropy(model(torch.randn(n, 1, 8, 8)), torch.arange(n)).backward()
    meter.collect_backward()
    stem = n * 64 * 16 * 1 * 9
    blocks = n * 9 * (2 * 64 * 16 * 16 + 16 * 32 * 16 + 16 * 32 * 32 + 4 * 64 * 32 + 4 * 64 * 64)
    exact = sum(n * positions[m] * (m.n_decided - m.n_predicted) for m in layers)
    assert 0 < exact < stem + blocks                         # the predictor decided some
    macs = meter.work.macs
    assert macs["int8xint8"] == stem + blocks
    assert macs[mac_key(*PREDICTOR_BITS)] == macs["int4xint10"] == stem + blocks
    # 8x16 bits: the input gradient (not the stem's: its input needs none) and the exact
    # weight-gradient product (the narrower format is named first)
    assert macs["int8xint16"] == blocks + exact
    assert macs["fp32xfp32"] == 3 * n * 64 * 10             # the classifier: fwd, bwd-data, bwd-weight

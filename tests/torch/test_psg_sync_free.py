"""The sync-free PSG passes (``psg_sync_free``, what a GPU runs) give the host passes' bits,
and read nothing back to the host inside the layer once its scales are set.

Both run here on the CPU (``psg.set_sync_free``): the same tensors, only the way the scales,
maxima, path choices and weight codes are computed differs, so any difference is a bug of
the port, found without a GPU."""
import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from e2train.core import fixedpoint as fxp
from e2train.torch import device_check, dyadic_t, psg_sync_free
from e2train.torch import data as tdata
from e2train.torch.models import build_model
from e2train.torch.psg import PSGConv2d, set_sync_free
from e2train.torch.trainer import TrainConfig, train


def _dyadic_inputs():
    rng = np.random.default_rng(0)
    vals = list(np.exp(rng.uniform(-60, 40, 400)))
    # carries, the 2**15 boundary, the shift limit, values the host refuses
    vals += [1.0, 0.5, 2.0 ** 15, 2.0 ** 15 - 0.5, (2 ** 15 - 0.5) * 2.0 ** -20, 32767.5 * 2.0 ** -40,
             2.0 ** -62, 2.0 ** -63, 3 * 2.0 ** -64, 1e-30, 2.0 ** 31, 2.0 ** 30 * 1.9999, 1.99999999 * 2 ** 16,
             0.0, -1.0, math.inf, math.nan]
    return vals


def test_device_dyadic_equals_the_host_one_or_flags_what_the_host_refuses():
    for v in _dyadic_inputs():
        d, bad = dyadic_t.from_float(torch.tensor(v, dtype=torch.float64))
        try:
            want = fxp.Dyadic.from_float(v)
        except ValueError:
            assert bool(bad), v
            continue
        assert not bool(bad) and (int(d.m), int(d.s)) == (want.m, want.s), v
        assert float(d.value) == want.value


@pytest.mark.parametrize("fmt", [fxp.UINT8, fxp.INT8, fxp.INT16])
def test_device_scale_for_equals_the_host_one(fmt):
    for v in [0.0, 1e-3, 0.7, 3.0, 255.0, 1e6] + _dyadic_inputs()[:50]:
        d, bad = dyadic_t.scale_for(torch.tensor(v, dtype=torch.float64), fmt)
        try:
            want = fxp.scale_for(v, fmt)
        except ValueError:
            assert bool(bad), v
            continue
        assert not bool(bad) and (int(d.m), int(d.s)) == (want.m, want.s), v
    assert bool(dyadic_t.scale_for(torch.tensor(math.nan, dtype=torch.float64), fmt)[1])


def test_powers_of_two_are_built_exactly():
    e = torch.arange(-1022, 1024)
    assert torch.equal(dyadic_t.pow2(e), torch.tensor([math.ldexp(1.0, int(k)) for k in e], dtype=torch.float64))


# 32 output channels: the data-free bound 127*32*9 sends the input gradient to three limbs
@pytest.mark.parametrize("case", device_check.LAYER_CASES[:5] + [(4, 32, 8, 32, 3, 1, True, 0.05)])
def test_sync_free_layer_gives_the_host_layers_bits(case):
    assert device_check.differences(case, ("cpu", "cpu"), steps=3, sync_free=(False, True)) == []


@pytest.mark.parametrize("exact", [True, False])
def test_sync_free_training_run_ends_in_the_same_state(exact):
    d = tdata.load("digits", limit_train=128)
    d = tdata.Data(d.name, d.x_train, d.y_train, d.x_test[:32], d.y_test[:32])
    runs = []
    for sf in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet8", 1, 10, precision="psg", beta=0.05)
        set_sync_free(model, sf)
        cfg = TrainConfig(dataset="digits", model="resnet8", precision="psg", epochs=2, batch_size=64, threads=1,
                          progress=False, seed=0, device="cpu", psg_exact=exact)
        r = train(cfg, model=model, data=d)
        layers = [m for m in r.model.modules() if isinstance(m, PSGConv2d)]
        runs.append((r.model.state_dict(), [m.n_predicted for m in layers], r.work.to_dict(), r.records))
    (sa, pa, wa, ra), (sb, pb, wb, rb) = runs
    assert pa == pb and wa == wb
    for k, v in sa.items():
        assert torch.equal(v, sb[k]) or (v.isnan().all() and sb[k].isnan().all()), k
    assert [r["test_acc"] for r in ra] == [r["test_acc"] for r in rb]


# reads back, and copies from the host (torch.tensor / as_tensor wait for their copy to a GPU)
SYNCS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu", "tensor", "as_tensor"}


class _SyncSpy(TorchFunctionMode):
    """Records every tensor method that would read a value back from a GPU."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("exact", [True, False])
def test_sync_free_passes_read_nothing_back_once_the_scales_are_set(monkeypatch, exact):
    """Each pass runs under a mode that sees every tensor method (the autograd engine runs
    the backward outside a mode entered around ``backward()``, so the passes are wrapped)."""
    seen: list[str] = []
    for name in ("forward", "backward", "rederive"):
        real = getattr(psg_sync_free, name)

        def spied(*a, _real=real, **k):
            with _SyncSpy(seen):
                return _real(*a, **k)
        monkeypatch.setattr(psg_sync_free, name, spied)
    torch.manual_seed(0)
    layer = PSGConv2d(16, 16, 3, exact=exact).train()
    set_sync_free(layer, True)
    per_step = []
    for _ in range(4):
        seen.clear()
        x = torch.randn(8, 16, 8, 8).relu().requires_grad_(True)
        y = layer(x)
        y.backward(torch.randn_like(y) * 1e-3)
        layer.sign_step(0.01, 5e-4)
        per_step.append(list(seen))
    assert per_step[0], "the check sees the first step's calibration reads"
    assert per_step[2:] == [[], []], per_step
    seen.clear()
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(8, 16, 8, 8).relu())
    assert seen == []                 # evaluation after training reads nothing back either


def test_the_host_passes_do_read_back(monkeypatch):
    """The same check on the host passes finds their reads (it is not blind)."""
    seen: list[str] = []
    layer = PSGConv2d(16, 16, 3).train()
    set_sync_free(layer, False)
    x = torch.randn(8, 16, 8, 8).relu()
    with _SyncSpy(seen):
        layer(x)
    assert "__float__" in seen


def test_a_non_finite_input_raises_the_one_line_error_when_the_step_is_read():
    from e2train.torch.work_meter import WorkMeter
    layer = PSGConv2d(3, 4, 3).train()
    set_sync_free(layer, True)
    meter = WorkMeter(layer)
    meter.active = True
    x = torch.randn(2, 3, 6, 6).relu()
    x[0, 0, 0, 0] = math.inf
    y = layer(x.requires_grad_(True))
    y.sum().backward()
    with pytest.raises(ValueError, match="not finite"):
        meter.collect_backward()
    meter.close()


@pytest.mark.parametrize("groups", [1, 4])
def test_three_limb_input_gradient_is_exact(monkeypatch, groups):
    """The three-limb path (g = 1024*a + 32*b + c) gives the float64 convolution's sums,
    extreme codes included; a lowered float32 limit sends an 8-channel layer there."""
    from e2train.torch import psg
    monkeypatch.setattr(psg, "F32_EXACT", float(1 << 20))
    rng = np.random.default_rng(groups)
    n, ci, co, h = 5, 8, 8, 6
    w = torch.from_numpy(rng.integers(-128, 128, (co, ci // groups, 3, 3)).astype(np.float32))
    g = torch.from_numpy(rng.integers(-32768, 32768, (n, co, h, h)).astype(np.float32))
    g.view(-1)[:6] = torch.tensor([-32768.0, 32767.0, 512.0, -512.0, 16.0, -16.0])
    wsum = float(w.abs().sum(dim=(0, 2, 3)).max())
    assert 512 * wsum >= psg.F32_EXACT > 32 * wsum           # the three-limb branch, not two or float64
    parts = psg.conv2d_input_parts((n, ci, h, h), w, g, 1, 1, groups, wsum)
    assert len(parts) == 2 and parts[0][0].dtype == torch.float64
    ref = torch.nn.grad.conv2d_input((n, ci, h, h), w.double(), g.double(), 1, 1, 1, groups)
    assert torch.equal(psg._combine(parts), ref)

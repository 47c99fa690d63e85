"""PSG sign quality on layer cases captured from real training: contract v1 against v2.

Layer cases: the torch reference (``e2train.torch``, precision "psg") trains ResNet-8 and
ResNet-20 on digits; early, in the middle and late in training one mini-batch is captured at
every convolution: the float input x and output gradient g_y (what the layer quantises), the
running activation max the layer used, and the x and g codes with their scales. The capture
is cached under build/bench_psg/ (keyed by its settings), so only the first run trains.

For each case and each MSB split rule the PSG rule (``core.golden.psg_decide``) runs on the
exact integer sums G_msb = sum x_h*g_h and G = sum x*g of those codes, and its signs are
compared with the sign of the exact fp64 weight gradient of the *float* x and g_y:

* agreement: the share of weights whose PSG sign equals sign(dW_fp64);
* |dW|-weighted agreement: the same, each weight weighted by |dW_fp64|;
* decided: the share of weights the predictor decides (the rest take the exact G's sign);
* the predictor's wrong signs (share of the weights it decides), and how many of those are
  +1 where the fp64 gradient is negative or zero: the direction of a biased split.

Rules: v1 (round half up, ties to +inf), v2 (round half away from zero, the contract) and
half to even (the other symmetric candidate), at beta 0.05 and 0.12. "exact" is beta = 0:
every sign from G, the ceiling that quantisation alone leaves. With --scale-policies the
v2 rule is also run on x codes scaled by the batch's mean per-sample max (saturating above
it) instead of the layer's running batch max, on the same captured floats, and the same seeds
are also trained and captured under act_scale = mean_sample_max (v1 and v2 on those cases,
with each layer's own running mean per-sample max).

Goal (issue 12): mean agreement >= 0.993 with >= 65% decided by the predictor. Every run also
prints the contract's operating curve (v2, x by the batch max) over CURVE_BETAS, and the goal
at its operating point: the largest beta of the curve that still decides >= 65%.

Other layers: ``--data cifar10 --data-dir DIR`` captures from training on a data set the user
has (CIFAR's python-format files; nothing here downloads it), and ``--cases DIR`` measures
layer cases captured elsewhere instead of capturing: one ``.npz`` a layer in the format of
``save_case`` below (``--save-cases DIR`` writes this run's cases in it, so the format is one
and round-trips). That is how ResNet-CIFAR layers, whose weights sum 16x more terms than
digits' and where the split's bias shows (docs/fixed-point.md section 8), are measured with the
same rule and scores.

``--train-policies SEEDS`` instead trains the torch reference (ResNet-8, digits, precision
"psg", bit-exact emulation) under each activation scale policy for SEEDS seeds and prints the
final test accuracy and the share of signs the predictor decided: the measurement behind the
default of ``act_scale`` (docs/fixed-point.md).
Usage: python benchmarks/bench_psg.py [--epochs 10] [--seeds 0,1,2] [--recapture] [--scale-policies]
       python benchmarks/bench_psg.py [--data cifar10 --data-dir DIR] [--save-cases DIR]
       python benchmarks/bench_psg.py --cases DIR [--scale-policies]
       python benchmarks/bench_psg.py --train-policies 3 [--train-epochs 20] [--model resnet8]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from e2train.core import fixedpoint as fxp
from e2train.core.golden import psg_decide

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench_psg"
MODELS = ("resnet8", "resnet20")
BETAS = (0.05, 0.12)
# The operating curve of the contract (v2, batch max): the share decided falls and the
# agreement rises as beta grows, so the goal below is a point on this curve, not one beta.
CURVE_BETAS = (0.01, 0.02, 0.03, 0.035, 0.04, 0.045, 0.05, 0.06, 0.08, 0.10, 0.12)
RULES = {"v1 half up": "half_up", "v2 half away": "half_away", "half even": "half_even"}
GOAL_AGREE, GOAL_DECIDED = 0.993, 0.65


# --- capture -------------------------------------------------------------------------------

def capture_points(epochs: int) -> dict[int, str]:
    """Epoch -> label of the captured batch (its first): early, middle, late."""
    return {1: "early", epochs // 2: "middle", epochs - 1: "late"}


def capture(model_name: str, epochs: int, seed: int, act_scale: str = "batch_max",
            data: str = "digits", data_dir: str | None = None) -> list[dict]:
    """Train with the torch reference and capture every PSG convolution's operands on the
    first batch of each capture epoch (the cases of ``capture_points``)."""
    from e2train.torch.policy import Policy
    from e2train.torch.psg import PSGConv2d
    from e2train.torch.trainer import TrainConfig, train

    points = capture_points(epochs)
    cases: list[dict] = []

    class Capture(Policy):
        def __init__(self):
            self.hooks = []

        def before_forward(self, ctx):
            if ctx.batch_in_epoch != 0 or ctx.epoch not in points:
                return
            for name, m in ctx.model.named_modules():
                if isinstance(m, PSGConv2d) and m.beta_q:
                    self.hooks.append(m.register_forward_hook(self._hook(name, ctx.epoch)))

        def _hook(self, name, epoch):
            def fwd(m, inputs, out):
                case = dict(model=model_name, layer=name, point=points[epoch], epoch=epoch,
                            x=inputs[0].detach().float().cpu().numpy(), x_max=float(m.x_max),
                            x_unsigned=bool(m.x_unsigned), stride=m.stride, padding=m.padding,
                            groups=m.groups, w_shape=tuple(m.w_master.shape))
                cases.append(case)
                out.register_hook(lambda g: case.__setitem__("g", g.detach().float().cpu().numpy()))
            return fwd

        def after_backward(self, ctx):
            for h in self.hooks:
                h.remove()
            self.hooks = []

    cfg = TrainConfig(dataset=data, data_dir=data_dir, model=model_name, precision="psg", epochs=epochs,
                      seed=seed, psg_exact=False, progress=False, act_scale=act_scale)
    res = train(cfg, [Capture()])
    for c in cases:
        c["test_acc_end"] = res.records[-1]["test_acc"]
    return [c for c in cases if "g" in c]


def load_cases(epochs: int, seed: int, recapture: bool, act_scale: str = "batch_max",
               data: str = "digits", data_dir: str | None = None) -> list[dict]:
    """The cases of one training seed (trained under ``act_scale``): from the cache, else
    captured (and cached)."""
    ident = [MODELS, epochs, seed, fxp.CONTRACT_VERSION, 1] + ([act_scale] if act_scale != "batch_max" else [])
    ident += [data, str(Path(data_dir).resolve()) if data_dir else None] if data != "digits" else []
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:12]
    path = CACHE / f"cases-{key}.npz"
    if path.exists() and not recapture:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            return [dict(m, x=z[f"x{i}"], g=z[f"g{i}"]) for i, m in enumerate(meta)]
    cases = []
    for name in MODELS:
        t0 = time.perf_counter()
        got = capture(name, epochs, seed, act_scale, data, data_dir)
        for c in got:
            c["seed"] = seed
        print(f"captured {len(got)} layer cases of {name}, seed {seed}, act_scale {act_scale} ({epochs} epochs of training, "
              f"{time.perf_counter() - t0:.0f} s, final test accuracy {got[-1]['test_acc_end']:.2f}%)")
        cases += got
    CACHE.mkdir(parents=True, exist_ok=True)
    meta = [{k: v for k, v in c.items() if k not in ("x", "g")} for c in cases]
    arrays = {f"x{i}": c["x"] for i, c in enumerate(cases)} | {f"g{i}": c["g"] for i, c in enumerate(cases)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    tmp.replace(path)
    return cases


# --- layer cases as files -------------------------------------------------------------------

CASE_ARRAYS = ("x", "g", "w_shape", "stride", "padding")      # required in a case file
CASE_TEXT = ("model", "layer", "point")                        # optional labels


class CaseError(ValueError):
    """A case file that cannot be measured: the message names the file, the cause and the fix."""


def save_case(path: Path, case: dict) -> None:
    """One layer case as an .npz: x (N, C, H, W) float, the layer's input before quantisation;
    g (N, Co, Ho, Wo) float, its output gradient; w_shape (Co, C/groups, kh, kw); stride and
    padding (2 ints each); optional groups (default 1), x_max (the running activation max the
    layer scaled x by; default the batch's max |x|), x_unsigned (default: x has no negative
    value), and the text labels model, layer, point."""
    arrays = {"x": np.asarray(case["x"], np.float32), "g": np.asarray(case["g"], np.float32),
              "w_shape": np.asarray(case["w_shape"], np.int64), "stride": np.asarray(case["stride"], np.int64),
              "padding": np.asarray(case["padding"], np.int64), "groups": np.asarray(case.get("groups", 1)),
              "x_max": np.asarray(case["x_max"], np.float64), "x_unsigned": np.asarray(bool(case["x_unsigned"]))}
    arrays |= {k: np.asarray(str(case[k])) for k in CASE_TEXT if k in case}
    np.savez(path, **arrays)


def read_case(path: Path) -> dict:
    """A case file (``save_case``'s format), checked: a missing array or shapes that do not
    make a convolution raise CaseError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            got = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CaseError(f"{path}: not a readable .npz ({e}); write cases with save_case's format") from None
    missing = [k for k in CASE_ARRAYS if k not in got]
    if missing:
        raise CaseError(f"{path}: no {', '.join(missing)}; a case holds {', '.join(CASE_ARRAYS)} "
                        "(benchmarks/bench_psg.py, save_case)")
    x, g = got["x"].astype(np.float32), got["g"].astype(np.float32)
    w_shape = tuple(int(v) for v in np.ravel(got["w_shape"]))
    stride, padding = (tuple(int(v) for v in np.broadcast_to(np.ravel(got[k]), (2,))) for k in ("stride", "padding"))
    groups = int(got.get("groups", 1))
    if x.ndim != 4 or g.ndim != 4 or len(w_shape) != 4 or x.shape[0] != g.shape[0]:
        raise CaseError(f"{path}: x {x.shape}, g {g.shape} and w_shape {w_shape} must be 4-D, x and g with "
                        "the same batch")
    (kh, kw), (sh, sw), (ph, pw) = w_shape[2:], stride, padding
    out_hw = ((x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1)
    if w_shape[0] != g.shape[1] or w_shape[1] * groups != x.shape[1] or g.shape[2:] != out_hw:
        raise CaseError(f"{path}: x {x.shape} through weights {w_shape} (stride {stride}, padding {padding}, "
                        f"groups {groups}) gives outputs {(g.shape[0], w_shape[0], *out_hw)}, not g's {g.shape}")
    if not (np.isfinite(x).all() and np.isfinite(g).all()):
        raise CaseError(f"{path}: x or g holds a NaN or an infinity")
    return dict(x=x, g=g, w_shape=w_shape, stride=stride, padding=padding, groups=groups,
                x_max=float(got["x_max"]) if "x_max" in got else float(np.abs(x).max()),
                x_unsigned=bool(got["x_unsigned"]) if "x_unsigned" in got else bool((x >= 0).all()),
                model=str(got.get("model", "")), layer=str(got.get("layer", path.stem)),
                point=str(got.get("point", "")), seed=None)


def read_cases(folder: Path) -> list[dict]:
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise CaseError(f"{folder}: no .npz case files (one a layer, benchmarks/bench_psg.py save_case's format)")
    return [read_case(f) for f in files]


# --- codes and sums ------------------------------------------------------------------------

def x_codes(case: dict, policy: str = "batch_max") -> np.ndarray:
    """The layer's activation codes: full range of its running batch max (what it used), or
    of the batch's mean per-sample max (saturating above it)."""
    x = case["x"]
    fmt = fxp.UINT8 if case["x_unsigned"] else fxp.INT8
    if policy == "batch_max":
        top = case["x_max"]
    else:
        top = float(np.abs(x).reshape(x.shape[0], -1).max(1).mean())
    return fxp.quantize(x, fxp.scale_for(top, fmt), fmt)


def g_codes(case: dict) -> np.ndarray:
    g = case["g"]
    return fxp.quantize(g, fxp.scale_for(float(np.abs(g).max()), fxp.INT16), fxp.INT16)


def wgrad(case: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum a*b over the batch and positions feeding each weight, float64 (exact for the
    integer operands here: every sum stays far below 2**53)."""
    return torch.nn.grad.conv2d_weight(torch.from_numpy(np.asarray(a, np.float64)), case["w_shape"],
                                       torch.from_numpy(np.asarray(b, np.float64)), case["stride"],
                                       case["padding"], 1, case["groups"]).numpy()


def sums(case: dict, xq: np.ndarray, gq: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(G_msb, G) as int64: the predictor's sum under ``rule`` and the exact sum x*g."""
    xh, _ = fxp.msb_split_x(xq, rule)
    gh, _ = fxp.msb_split_g(gq, rule)
    g_msb = np.rint(wgrad(case, xh, gh)).astype(np.int64)
    g_exact = np.rint(wgrad(case, xq.astype(np.int64), gq.astype(np.int64))).astype(np.int64)
    return g_msb, g_exact


def scores(sign: np.ndarray, predicted: np.ndarray, ref: np.ndarray) -> tuple:
    """(agreement, |dW|-weighted agreement, share decided, predicted weights, wrong predicted
    signs, wrong predicted signs that are +1) against the fp64 gradient ``ref``."""
    agree = sign == np.sign(ref)
    w = np.abs(ref)
    wrong = predicted & ~agree
    return (float(agree.mean()), float((w * agree).sum() / w.sum()) if w.sum() else 1.0, float(predicted.mean()),
            int(predicted.sum()), int(wrong.sum()), int((wrong & (sign > 0)).sum()))


def evaluate(cases: list[dict], configs: dict[str, tuple[str, str]], betas=BETAS) -> dict:
    """config name -> beta -> per-case scores (agree, weighted, decided, ...); config = (rule,
    x policy); beta 0 (exact signs) always."""
    out: dict = {name: {b: [] for b in (0.0, *betas)} for name in configs}
    for case in cases:
        ref = wgrad(case, case["x"], case["g"])                      # the exact fp64 weight gradient
        gq = g_codes(case)
        for name, (rule, policy) in configs.items():
            xq = x_codes(case, policy)
            g_msb, g_exact = sums(case, xq, gq, rule)
            for beta in (0.0, *betas):
                sign, pred, _ = psg_decide(g_msb, g_exact, fxp.beta_to_fixed(beta) if beta else 0)
                out[name][beta].append(scores(sign, pred, ref))
    return out


# --- report --------------------------------------------------------------------------------

def table(cases: list[dict], res: dict, group=None) -> list[str]:
    idx = [i for i, c in enumerate(cases) if group is None or group(c)]
    lines = ["| configuration | beta | agreement mean | min | \\|dW\\|-weighted | decided by predictor "
             "| predictor's wrong signs (pooled) | of which +1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, by_beta in res.items():
        for beta, rows in by_beta.items():
            a = np.array([rows[i] for i in idx])
            label = "exact signs (beta 0)" if beta == 0 else f"{beta:.2f}"
            wrong = (f"{a[:, 4].sum() / a[:, 3].sum():.2%} | {a[:, 5].sum() / a[:, 4].sum():.0%}"
                     if a[:, 4].sum() else "0 | -")
            lines.append(f"| {name} | {label} | {a[:, 0].mean():.5f} | {a[:, 0].min():.4f} | "
                         f"{a[:, 1].mean():.4f} | {a[:, 2].mean():.1%} | {wrong} |")
    return lines


def operating_point(by_beta: dict) -> tuple[float, float, float] | None:
    """The goal's point on a curve (beta -> per-case scores): the largest beta whose mean share
    decided is >= GOAL_DECIDED (a larger beta leaves more weights to the exact sum, which
    is where the agreement comes from), as (beta, mean agreement, mean decided); None where no
    beta of the curve decides enough."""
    best = None
    for beta, rows in sorted(by_beta.items()):
        a = np.array(rows)
        if beta > 0 and a[:, 2].mean() >= GOAL_DECIDED:
            best = (beta, float(a[:, 0].mean()), float(a[:, 2].mean()))
    return best


def curve_table(by_beta: dict) -> list[str]:
    lines = ["| beta | agreement mean | \\|dW\\|-weighted | decided by predictor | goal |",
             "|---:|---:|---:|---:|---|"]
    for beta, rows in sorted(by_beta.items()):
        if beta == 0:
            continue
        a = np.array(rows)
        ok = a[:, 0].mean() >= GOAL_AGREE and a[:, 2].mean() >= GOAL_DECIDED
        lines.append(f"| {beta:.3f} | {a[:, 0].mean():.5f} | {a[:, 1].mean():.4f} | {a[:, 2].mean():.1%} | "
                     f"{'met' if ok else '-'} |")
    return lines


def train_policies(seeds: int, epochs: int, model: str) -> None:
    """Final test accuracy and predictor share of short PSG runs under each scale policy."""
    from e2train.torch.trainer import TrainConfig, train

    print(f"torch reference, {model} on digits, precision psg (bit-exact), {epochs} epochs, seeds 0..{seeds - 1}\n")
    print("| act_scale | seed | final test accuracy | best | decided by predictor (mean over epochs) |")
    print("|---|---:|---:|---:|---:|")
    summary = {}
    for policy in fxp.ACT_SCALE_POLICIES:
        for seed in range(seeds):
            cfg = TrainConfig(dataset="digits", model=model, precision="psg", epochs=epochs, seed=seed,
                              act_scale=policy, progress=False)
            recs = train(cfg).records
            acc, best = recs[-1]["test_acc"], max(r["test_acc"] for r in recs)
            pred = float(np.mean([r["predicted_frac"] for r in recs]))
            summary.setdefault(policy, []).append((acc, pred))
            print(f"| {policy} | {seed} | {acc:.2f}% | {best:.2f}% | {pred:.1%} |", flush=True)
    print()
    for policy, rows in summary.items():
        a = np.array(rows)
        print(f"{policy}: accuracy {a[:, 0].mean():.2f}% +- {a[:, 0].std():.2f} (min {a[:, 0].min():.2f}), "
              f"decided by predictor {a[:, 1].mean():.1%}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="training epochs of each captured run (>= 3)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds whose captures are pooled (comma-separated)")
    p.add_argument("--recapture", action="store_true", help="train and capture again even if cached")
    p.add_argument("--scale-policies", action="store_true",
                   help="also run v2 on x scaled by the mean per-sample max of each captured batch")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (more than the idle cores slows every step down badly)")
    p.add_argument("--train-policies", type=int, metavar="SEEDS",
                   help="train under each activation scale policy for SEEDS seeds instead")
    p.add_argument("--train-epochs", type=int, default=20)
    p.add_argument("--model", default="resnet8")
    p.add_argument("--data", default="digits", help="data set the captures train on (cifar10/100: the user's files)")
    p.add_argument("--data-dir", default=None, help="where --data's files lie")
    p.add_argument("--cases", metavar="DIR", help="measure the layer cases in DIR (.npz, save_case's format) instead")
    p.add_argument("--save-cases", metavar="DIR", help="also write this run's layer cases to DIR in that format")
    a = p.parse_args(argv)
    if a.train_policies:
        torch.set_num_threads(a.threads)
        train_policies(a.train_policies, a.train_epochs, a.model)
        return 0
    if a.epochs < 3:
        print("error: --epochs must be >= 3 (early, middle and late captures)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    try:
        seeds = sorted({int(v) for v in a.seeds.split(",") if v.strip()})
    except ValueError:
        print(f"error: --seeds must be comma-separated integers, got {a.seeds!r}", file=sys.stderr)
        return 2
    if not seeds:
        print("error: --seeds names no seed", file=sys.stderr)
        return 2
    try:
        if a.cases:
            cases = read_cases(Path(a.cases))
        else:
            cases = [c for seed in seeds for c in load_cases(a.epochs, seed, a.recapture, data=a.data,
                                                                data_dir=a.data_dir)]
    except (ValueError, OSError) as e:     # a bad case file (CaseError); a data set that is not there
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.save_cases:
        out = Path(a.save_cases)
        out.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(cases):
            save_case(out / f"case{i:04d}.npz", c)
        print(f"wrote {len(cases)} layer cases to {out}/")
    configs = {name: (rule, "batch_max") for name, rule in RULES.items()}
    if a.scale_policies:
        configs["v2, x by mean sample max"] = ("half_away", "mean_sample_max")
    res = evaluate(cases, configs)
    if a.scale_policies and not a.cases:
        # the same seeds trained under act_scale = mean_sample_max: each layer's own running max
        msm_cases = [c for seed in seeds for c in load_cases(a.epochs, seed, a.recapture, "mean_sample_max")]
        res_msm = evaluate(msm_cases, {f"{name}, trained with mean_sample_max": (rule, "batch_max")
                                       for name, rule in RULES.items() if rule != "half_even"})
    models = sorted({c["model"] for c in cases if c["model"]})
    n_models = {m: sum(c["model"] == m for c in cases) for m in models}
    if a.cases:
        origin = f"read from {a.cases}"
    else:
        origin = (f"captured from training on {a.data} (epochs {sorted({c['epoch'] for c in cases})} of {a.epochs}, "
                  f"seeds {','.join(map(str, seeds))})")
    print(f"\nPSG signs vs the exact fp64 weight gradient: {len(cases)} layer cases {origin}; "
          f"{', '.join(f'{m} {n}' for m, n in n_models.items()) or 'unlabelled'}; means over cases\n")
    print("\n".join(table(cases, res)))
    for m in models if len(models) > 1 else ():
        print(f"\n{m} only:")
        print("\n".join(table(cases, res, lambda c, m=m: c["model"] == m)))
    for point in ("early", "middle", "late"):
        if any(c["point"] == point for c in cases):
            print(f"\n{point} captures only:")
            print("\n".join(table(cases, res, lambda c, pt=point: c["point"] == pt)))
    if a.scale_policies and not a.cases:
        print(f"\nthe same seeds trained with act_scale = mean_sample_max ({len(msm_cases)} layer cases, x codes from "
              f"each layer's running mean per-sample max):\n")
        print("\n".join(table(msm_cases, res_msm)))
        res = {**res, **res_msm}
    # the contract's operating curve on the same cases (v2, x by the batch max)
    curve = evaluate(cases, {"v2": (RULES["v2 half away"], "batch_max")}, CURVE_BETAS)["v2"]
    print(f"\noperating curve of the contract (v2 half away, x by the batch max), {len(cases)} cases:\n")
    print("\n".join(curve_table(curve)))
    print("\ngoal: mean agreement >= %.3f with >= %.0f%% decided by the predictor:" % (GOAL_AGREE, 100 * GOAL_DECIDED))
    op = operating_point(curve)
    if op is None:
        print(f"  on the curve: no beta of {CURVE_BETAS[0]}..{CURVE_BETAS[-1]} decides "
              f"{GOAL_DECIDED:.0%}")
    else:
        met = op[1] >= GOAL_AGREE
        print(f"  on the curve: at beta {op[0]:.3f}, the largest that decides >= {GOAL_DECIDED:.0%}, "
              f"{op[1]:.5f} at {op[2]:.1%} decided: {'met' if met else 'not met'}")
    for name, by_beta in res.items():
        for beta in BETAS:
            a_ = np.array(by_beta[beta])
            ok = a_[:, 0].mean() >= GOAL_AGREE and a_[:, 2].mean() >= GOAL_DECIDED
            print(f"  {name}, beta {beta:.2f}: {a_[:, 0].mean():.5f} at {a_[:, 2].mean():.1%} decided: "
                  f"{'met' if ok else 'not met'}")
    print(f"\n({time.perf_counter() - t0:.0f} s" + ("" if a.cases else f"; capture cached in {CACHE.relative_to(ROOT)}")
          + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())

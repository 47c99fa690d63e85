"""`e2train torch-train`: the PyTorch reference trainer from a config file and/or flags.

    e2train torch-train --config run.toml
    e2train torch-train --model resnet8 --precision psg --smd --slu --epochs 40 --out runs/e2
    e2train torch-train --preset e2train --out runs/e2      # SMD + SLU + PSG, DESIGN.md recipe

Flags override the file's keys, which override the preset, which overrides the defaults
(``TrainConfig``).
Prints one line per epoch and a summary; writes records.json and checkpoint.pt to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

PRESETS = {
    # fp32 baseline of the digits calibration (DESIGN.md)
    "fp32": dict(precision="fp32"),
    # E2-Train: SMD (p = 0.5, epochs x1.33 -> energy ratio 0.67), SLU gates (70% executed), PSG.
    # conv_lr 2e-3: with SMD the conv weights get a third fewer sign steps; at 1e-3 ResNet-8
    # stayed 2 points below fp32 on digits, at 2e-3 within 1.5 (docs/torch.md).
    # SLU here uses the device trainer's penalty, alpha (r - target)**2 at alpha 2 (the recipe
    # was calibrated with it); the paper's FLOPs cost is the trainer's default (slu_cost).
    "e2train": dict(precision="psg", smd=True, smd_energy_ratio=0.67, slu=True, slu_target=0.7,
                    slu_cost="target", slu_alpha=2.0, slu_cell="lstm", conv_lr=2e-3),
    "psg": dict(precision="psg"),
    # PSG as E2-Train trains it (paper 004, section 4.1): sign updates at an initial learning
    # rate of 0.03 for the whole model, with SWA. The paper's setting, not tuned for digits.
    "psg-paper": dict(precision="psg", lr=0.03, conv_lr=0.03, swa=True),
    "smd": dict(smd=True, smd_energy_ratio=0.67),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .trainer import TrainConfig
    p.add_argument("--config", help="JSON or TOML file with TrainConfig keys")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (flags still override it)")
    p.add_argument("--out", dest="out_dir", help="directory for checkpoint.pt and records.json")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    from ..core.train_keys import BY_NAME, TORCH
    for f in dataclasses.fields(TrainConfig):
        if f.name == "out_dir":
            continue
        flag = "--" + f.name.replace("_", "-")
        key = BY_NAME[f.name]                   # the shared vocabulary: type, allowed values, meaning
        allowed = key.allowed_text(TORCH)
        default = key.default_for(TORCH)
        help_ = f"{key.help} ({allowed + '; ' if allowed else ''}default {'unset' if default is None else default})"
        if key.kind is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=help_.replace("%", "%%"))
        else:
            p.add_argument(flag, dest=f.name, type=key.kind, default=None, metavar=key.kind.__name__.upper(),
                           help=help_.replace("%", "%%"))
    from .distributed.cli import add_arguments as add_distributed
    add_distributed(p)          # --pipeline / --nproc: e2train.torch.distributed


def run(args: argparse.Namespace) -> int:
    from .trainer import ConfigError, TrainConfig, train
    from ..data.datasets import DatasetError
    from .distributed import cli as dist_cli
    try:
        d: dict = {}
        if args.preset:
            d.update(PRESETS[args.preset])
        section: dict = {}
        if args.config:
            file_d = TrainConfig.read_file(args.config)
            section = dist_cli.pop_section(file_d)
            d.update(file_d)
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        d.update({k: v for k, v in vars(args).items() if k in names and v is not None})
        cfg = TrainConfig.from_dict(d)
        dcfg = dist_cli.dist_config(args, section)
    except (ConfigError, dist_cli.DistConfigError) as e:
        print(f"e2train torch-train: {e}", file=sys.stderr)
        return 2
    if dcfg is not None:
        try:
            return dist_cli.run(cfg, dcfg, args.json)
        except (ConfigError, DatasetError) as e:
            print(f"e2train torch-train: {e}", file=sys.stderr)
            return 2

    def show(rec: dict) -> None:
        pf = rec.get("predicted_frac")
        print(f"epoch {rec['epoch']:3d}  test {rec['test_acc']:6.2f}%  loss {rec['train_loss']:.4f}  "
              f"batches {rec['batches_run']}/{rec['batches_run'] + rec['batches_skipped']}  "
              f"exec {rec['exec_ratio']:.2f}  " + (f"predicted {pf:.1%}  " if pf is not None else "") +
              f"energy {rec['energy_j']:.4g} J (modelled)  wall {rec['wall_s']:.1f} s", flush=True)

    try:
        res = train(cfg, callback=None if args.json else show)
    except (ConfigError, DatasetError) as e:
        print(f"e2train torch-train: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res.record.to_dict(), indent=1, default=str))     # the run record (docs/records.md)
    else:
        from .trainer import ENERGY_LABEL
        print(f"final test accuracy {res.final_test_acc:.2f}% (best {res.best_test_acc:.2f}%); "
              f"training energy {res.energy_j:.4g} J, {ENERGY_LABEL}; training wall clock {res.wall_s:.1f} s")
        if res.energy_parts_j:
            from ..core.energy import ENERGY_KIND, parts_text
            print("training energy in parts: " + parts_text({"parts_j": res.energy_parts_j, "total_j": res.energy_j,
                                                              "kind": ENERGY_KIND, "platform": res.energy_platform}))
        if cfg.precision == "psg" and not cfg.psg_exact:
            print("PSG emulated with float32 sums (--no-psg-exact): not bit-exact to the contract at near-ties")
    return 0

"""`e2train ...`: one entry point; each subcommand lives in the module that implements it.

Subcommand modules are imported only when named, so that `e2train measure` or the board
agent never import torch. Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.

A command that fails ends in one line naming the cause and the fix, with an exit code from
:mod:`e2train.exit_codes`; ``--debug`` (anywhere on the command line) adds the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("e2train.demo", "baseline vs E2-Train on the simulated board, measured through the simulated meter"),
    "flash": ("e2train.train_cli", "load a bitstream onto the board (or the simulated board)"),
    "train": ("e2train.train_cli", "train on the board (the simulated board when none is named)"),
    "status": ("e2train.train_cli", "the board's state, or one run's (--run-id)"),
    "attach": ("e2train.train_cli", "follow a run on the board (catching up on what was missed) until it ends"),
    "stop": ("e2train.train_cli", "stop the run on the board (it keeps its checkpoint and results)"),
    "fetch": ("e2train.train_cli", "fetch a run's results from the board into a report directory"),
    "board": ("e2train.device.agent", "serve the board link (runs on the board, or as the simulated board)"),
    "calibrate-arm": ("e2train.device.arm_calibration", "measure the ARM's throughput for the trainer's time model (run it on the board)"),
    "measure": ("e2train.meter.cli", "measure the energy of any command with a power meter"),
    "bench": ("e2train.bench.cli", "evaluation harness: methods, random controls, time-to-accuracy, Pareto"),
    "torch-train": ("e2train.torch.cli", "train with the PyTorch reference (CPU or CUDA)"),
    "reproduce": ("e2train.reproduce", "run a published table's protocol; print the paper's numbers beside the run's"),
    "kernels": ("e2train.kernel_demo", "run the three kernels' C simulation on a real mini-batch"),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2train", description="On-device energy-efficient CNN training for Zynq-7000.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            mod = importlib.import_module(module)
            add = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None) or mod.add_arguments
            add(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    from .exit_codes import EXIT_USAGE, describe
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        _parser().parse_args(argv or ["--help"])
        return EXIT_USAGE
    try:
        args = _parser(command).parse_args(argv)
        mod = importlib.import_module(COMMANDS[command][0])
        runner = getattr(mod, f"run_{command.replace('-', '_')}", None) or mod.run
        return int(runner(args) or 0)
    except SystemExit:
        raise
    except BaseException as e:          # KeyboardInterrupt included: one line, its own code
        if debug:
            import traceback
            traceback.print_exc()
        msg, code = describe(e)
        print(f"e2train {command}: {msg}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

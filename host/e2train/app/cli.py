"""`e2train ...`: one entry point; each subcommand lives in the module that implements it.

Subcommand modules are imported only when named, so that `e2train measure` or the board
agent never import torch. Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.

A command that fails ends in one line naming the cause and the fix, with an exit code from
:mod:`e2train.app.exit_codes`; ``--debug`` (anywhere on the command line) adds the traceback.
``--version`` (anywhere) prints the package and fixed-point contract versions; a bare
``e2train`` prints the usage and exits 2 (a usage error, as any unknown command).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("e2train.app.demo", "baseline vs E2-Train on the simulated board, measured through the simulated meter"),
    "flash": ("e2train.app.train_cli", "load a bitstream onto the board (or the simulated board)"),
    "train": ("e2train.app.train_cli", "train on the board (the simulated board when none is named)"),
    "status": ("e2train.app.train_cli", "the board's state, or one run's (--run-id)"),
    "attach": ("e2train.app.train_cli", "follow a run on the board (catching up on what was missed) until it ends"),
    "stop": ("e2train.app.train_cli", "stop the run on the board (it keeps its checkpoint and results)"),
    "fetch": ("e2train.app.train_cli", "fetch a run's results from the board into a report directory"),
    "board": ("e2train.device.agent", "serve the board link (runs on the board, or as the simulated board)"),
    "calibrate-arm": ("e2train.device.arm_calibration", "measure the ARM's throughput for the trainer's time model (run it on the board)"),
    "measure": ("e2train.meter.cli", "measure the energy of any command with a power meter"),
    "frontier": ("e2train.app.frontier", "E2-Train's modelled energy against its accuracy over settings and seeds (simulated board)"),
    "bench": ("e2train.bench.cli", "evaluation harness: methods, random controls, time-to-accuracy, Pareto"),
    "torch-train": ("e2train.torch.cli", "train with the PyTorch reference (CPU or CUDA)"),
    "reproduce": ("e2train.app.reproduce", "run a published table's protocol; print the paper's numbers beside the run's"),
    "kernels": ("e2train.app.kernel_demo", "run the three kernels' C simulation on a real mini-batch"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Each flag's help ends with its default, unless the text already says it (or there is
    none to say: no default, a switch that is off). Choices show in the metavar."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (not action.option_strings or "default" in text or d is None or d is False or d == []
                or d is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def version() -> str:
    from .. import __version__
    from ..core.fixedpoint import CONTRACT_VERSION
    return f"e2train {__version__} (fixed-point contract v{CONTRACT_VERSION})"


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2train", description="On-device energy-efficient CNN training for Zynq-7000.",
                                epilog="`e2train COMMAND --help` lists a command's flags. Anywhere on the line, "
                                       "--debug adds the traceback to an error and --version prints the versions.")
    p.add_argument("--version", action="version", version=version(),
                   help="print the package and fixed-point contract versions and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, formatter_class=HelpFormatter)
        if name == command:
            mod = importlib.import_module(module)
            add = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None) or mod.add_arguments
            add(sp)
    return p


def _config_notes_on_one_line(command: str) -> None:
    """An old config key name (``core.train_keys.RenamedKeyWarning``) is a one-line note."""
    import warnings
    from ..core.train_keys import RenamedKeyWarning
    show = warnings.showwarning

    def one_line(message, category, *args, **kw):
        if issubclass(category, RenamedKeyWarning):
            print(f"e2train {command}: note: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kw)
    warnings.showwarning = one_line


def main(argv: list[str] | None = None) -> int:
    from .exit_codes import EXIT_USAGE, describe
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if "--version" in argv[: argv.index("--")] if "--" in argv else "--version" in argv:
        print(version())               # any command's --version, torch-train's included
        return 0
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        p = _parser()
        if not argv:
            p.print_usage(sys.stderr)
            print("e2train: name a COMMAND; `e2train --help` lists them", file=sys.stderr)
            return EXIT_USAGE
        p.parse_args(argv)             # --help exits 0; an unknown command exits 2 with usage
        return EXIT_USAGE
    _config_notes_on_one_line(command)
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

"""The top-level CLI's help: every flag of the board-facing subcommands says what it does and
shows its default and choices; --version; a bare `e2train` is a usage error."""
from __future__ import annotations

import argparse

import pytest

from e2train import __version__
from e2train.app import cli
from e2train.core.fixedpoint import CONTRACT_VERSION

# torch-train's and bench's flags live in the torch trainer's and the harness's own modules.
COMMANDS = ["board", "train", "flash", "measure", "status", "attach", "stop", "fetch", "demo", "kernels",
            "calibrate-arm", "frontier"]


def _sub(command: str) -> argparse.ArgumentParser:
    p = cli._parser(command)
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_help(command):
    sp = _sub(command)
    missing = [a.option_strings or a.dest for a in sp._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing, f"e2train {command}: flags without help text: {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_defaults_and_choices(command):
    sp = _sub(command)
    text = " ".join(sp.format_help().split())
    for a in sp._actions:
        if not a.option_strings or isinstance(a, argparse._HelpAction):
            continue
        if a.choices:
            assert "{" + ",".join(map(str, a.choices)) + "}" in text, (command, a.option_strings)
        if a.default not in (None, False, [], argparse.SUPPRESS):
            shown = " ".join(sp._get_formatter()._expand_help(a).split())
            assert "default" in shown, (command, a.option_strings, shown)


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"e2train {__version__} (fixed-point contract v{CONTRACT_VERSION})"
    assert cli.main(["torch-train", "--version"]) == 0          # passes through any command
    assert capsys.readouterr().out.strip() == out


def test_bare_e2train_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: e2train") and "COMMAND" in err


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err

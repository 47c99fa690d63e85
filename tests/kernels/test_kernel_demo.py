"""`e2train kernels` on a real digits mini-batch, and the board-side import rule."""
from __future__ import annotations

import subprocess
import sys

from e2train.app import cli


def test_kernels_command_is_bit_exact(csim_lib, capsys):
    rc = cli.main(["kernels", "--batch", "6", "--channels", "8", "--upsample", "1", "--active", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact: yes" in out and " NO " not in out
    assert "weights decided by the MSB predictor" in out
    assert "modelled on xc7z020" in out and "cycles" in out


def test_kernels_command_rejects_bad_beta(csim_lib, capsys):
    assert cli.main(["kernels", "--beta", "0"]) == 2
    assert "beta must be in (0, 1]" in capsys.readouterr().err


def test_board_side_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['matplotlib'] = None; "
            "sys.modules['sklearn'] = None; import e2train.core.csim, e2train.core.perfmodel; "
            "assert not any(m.split('.')[0] in ('torch', 'matplotlib', 'sklearn') and sys.modules[m] is not None "
            "for m in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

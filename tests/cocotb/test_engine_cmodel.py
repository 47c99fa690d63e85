"""The training engine's C model (hls/include/train_engine.h through train_engine_hls(), the
function C simulation runs for the RTL blackbox) against engine_model.py, via g++, at the
cocotb grid (2 x 3) and at the full one (engine_map's, 8 x 18): random calls of every mode, the
flush, the emit/shadow pipelining, extreme codes. The RTL blackbox runs the same calls in
tb_train_engine_hls.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from e2train.core import engine_map as em
from engine_model import BlackboxModel, random_hls_call, wrap

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module", params=[(2, 3), (em.ROWS, em.COLS)], ids=["2x3", f"{em.ROWS}x{em.COLS}"])
def driver(request, tmp_path_factory):
    rows, cols = request.param
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: the C model test compiles hls/include/train_engine.h (apt-get install g++)")
    exe = tmp_path_factory.mktemp("engine") / f"engine_{rows}x{cols}"
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-DENG_ROWS={rows}",
                    f"-DENG_COLS={cols}", f"-I{ROOT / 'hls' / 'include'}", "-o", str(exe),
                    str(HERE / "cmodel_engine_driver.cpp"), str(ROOT / "hls" / "blackbox" / "train_engine_hls.cpp")],
                   check=True)
    return exe, rows, cols


def signed(v: np.ndarray, bits: int) -> list[int]:
    return [int(t) for t in wrap(v, bits)]


@pytest.mark.parametrize("max_beats", [9, 300], ids=["short", "long"])
def test_cmodel_matches_model(driver, max_beats) -> None:
    """Random calls; long ones (up to 300 beats, odd and even) cross the C model's int32
    flushes (every 128 beats in BWD and WGRAD) and its pairing of beats."""
    exe, rows, cols = driver
    rng = np.random.default_rng(11 + max_beats)
    model = BlackboxModel(rows, cols)
    lines, want = [], []
    for i in range((60 if rows * cols < 20 else 12) if max_beats < 100 else 8):
        a, r, c, pr, pc, emit = random_hls_call(rng, rows, cols, first=i == 0, max_beats=max_beats)
        lines.append(f"C {a.mode} {int(a.x_unsigned)} {int(a.exact_en)} {int(a.pred_en)} {int(a.clr_dsp)} "
                     f"{int(a.clr_fab)} {a.pred_rows} {a.pred_cols} {int(emit)} {r.shape[0]}")
        lines.append("H " + " ".join(str(int(v)) for v in a.cell_en.reshape(-1)))
        for t in range(r.shape[0]):
            lines.append("B " + " ".join(str(v) for v in [*signed(r[t], 16), *signed(c[t], 16),
                                                           *signed(pr[t], 16), *(int(v) for v in pc[t])]))
        out = model.hls_call(a, r, c, pr, pc, emit)
        if out is not None:
            for row in range(rows):
                want.append([*out["p"][row], *out["lo"][row], *out["hi"][row]])
    res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True)
    assert res.returncode == 0, f"driver exit {res.returncode}: {res.stderr}"
    got = [[int(v) for v in line.split()[1:]] for line in res.stdout.splitlines()]
    assert len(got) == len(want), f"{len(got)} rows emitted, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == [int(v) for v in w], f"row {i}: C model {g} != model {list(w)}"

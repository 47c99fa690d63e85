"""The training engine's C model (hls/include/train_engine.h through train_engine_hls(), the
function C simulation runs for the RTL blackbox) against engine_model.py, via g++, at the
cocotb grid (2 x 3) and at the full one (8 x 21): random calls of every mode, the flush, the
emit/shadow pipelining, extreme codes. The RTL blackbox runs the same calls in
tb_train_engine_hls.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine_model import BlackboxModel, bwd_data_acc, random_hls_call, wrap

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module", params=[(2, 3), (8, 21)], ids=["2x3", "8x21"])
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


def test_cmodel_matches_model(driver) -> None:
    exe, rows, cols = driver
    rng = np.random.default_rng(11)
    model = BlackboxModel(rows, cols)
    lines, want = [], []
    for i in range(60 if rows * cols < 20 else 12):
        a, r, c, pr, pc, emit = random_hls_call(rng, rows, cols, first=i == 0)
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


# ---- a whole forward convolution through the C model (hls/include/engine_conv.h) --------
CONV_SHAPES = [(2, 3, 5, 6, 5, 3, 1, 1), (1, 4, 7, 7, 3, 3, 2, 1), (2, 5, 4, 4, 4, 1, 1, 0), (1, 9, 6, 6, 10, 3, 2, 0),
               (1, 16, 8, 8, 17, 3, 1, 1)]


@pytest.fixture(scope="module")
def conv_driver(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: the test compiles hls/include/engine_conv.h (apt-get install g++)")
    exe = tmp_path_factory.mktemp("engine") / "engine_conv"
    subprocess.run([cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'hls' / 'include'}",
                    "-o", str(exe), str(HERE / "engine_conv_driver.cpp"),
                    str(ROOT / "hls" / "blackbox" / "train_engine_hls.cpp")], check=True)
    return exe


@pytest.mark.parametrize("dims", CONV_SHAPES, ids=lambda d: "x".join(map(str, d)))
@pytest.mark.parametrize("x_unsigned", [True, False], ids=["uint8", "int8"])
def test_conv_passes_through_the_engine(conv_driver, dims, x_unsigned) -> None:
    """The three passes through the C model: forward accumulators = golden.conv_fwd_acc, input
    gradient = numpy's transposed convolution, G = golden.wgrad_terms' exact sum, G_msb = the v2
    predictor sum in numpy (the weight gradient in chunked sweeps, the partial sums added)."""
    from e2train.core import golden
    from e2train.core.shapes import ConvShape
    from engine_model import split_g_h, split_x_h

    n, ci, h, w, co, k, stride, pad = dims
    shape = ConvShape(n, ci, h, w, co, k, stride, pad)
    rng = np.random.default_rng(sum(dims))
    lo, hi, dt = (0, 256, np.uint8) if x_unsigned else (-128, 128, np.int8)
    x = rng.integers(lo, hi, shape.x_shape).astype(dt)
    x.flat[::7] = hi - 1                        # extremes: the packing's limits
    wt = rng.integers(-128, 128, shape.w_shape).astype(np.int8)
    wt.flat[::5] = -128
    g = rng.integers(-32768, 32768, shape.y_shape).astype(np.int16)
    g.flat[::11] = -32768
    # weight-gradient chunks of 5 positions: every shape's blocks span several calls
    text = " ".join(map(str, [*dims, int(x_unsigned), 5])) + "\n" + " ".join(str(int(v) & 0xFF) for v in x.reshape(-1)) \
        + "\n" + " ".join(str(int(v)) for v in wt.reshape(-1)) + "\n" + " ".join(str(int(v)) for v in g.reshape(-1)) + "\n"
    res = subprocess.run([str(conv_driver)], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    vals = np.array([int(v) for v in res.stdout.split()], np.int64)
    sizes = [int(np.prod(shape.y_shape)), int(np.prod(shape.x_shape)), wt.size, wt.size]
    fwd, bwd, gm, ge = np.split(vals, np.cumsum(sizes)[:-1])
    win = np.lib.stride_tricks.sliding_window_view(np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad))),
                                                   (k, k), axis=(2, 3))[:, :, ::stride, ::stride][:, :, : shape.ho, : shape.wo]
    want = {"fwd": golden.conv_fwd_acc(x, wt, shape), "bwd": bwd_data_acc(g, wt, shape),
            "G": golden.wgrad_terms(x, g, shape, np.arange(n))[1],
            "G_msb": np.einsum("nchwij,nohw->ocij", split_x_h(win, x_unsigned), split_g_h(g.astype(np.int64)))}
    for name, got in (("fwd", fwd), ("bwd", bwd), ("G", ge), ("G_msb", gm)):
        got = got.reshape(want[name].shape)
        bad = np.argwhere(got != want[name])
        assert bad.size == 0, (f"{name}: {len(bad)} values differ, first at {tuple(bad[0])}: "
                               f"{got[tuple(bad[0])]} != {want[name][tuple(bad[0])]}")

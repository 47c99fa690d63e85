"""The engine's C model (hls/include/psg_engine.h) against the golden model, via g++.

The C model is what the HLS kernel calls in C simulation and what Vitis HLS swaps for the RTL,
so it must agree with e2train.core bit for bit, like the RTL (tests in test_psg_engine.py).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from psg_model import confident_mask, expected_tile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module", params=[8, 3])
def driver(request, tmp_path_factory) -> tuple[Path, int]:
    lanes = request.param
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: the C model test compiles hls/include/psg_engine.h (apt-get install g++)")
    exe = tmp_path_factory.mktemp("cmodel") / f"cmodel_L{lanes}"
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-DPSG_LANES={lanes}",
                    f"-I{ROOT / 'hls' / 'include'}", "-o", str(exe), str(HERE / "cmodel_driver.cpp"),
                    str(ROOT / "hls" / "blackbox" / "psg_engine_hls.cpp")], check=True)
    return exe, lanes


def run(driver, tiles):
    """tiles: list of (x, g, decide, x_unsigned, corr_en, beta_q, gmax) -> parsed R and S lines."""
    exe, lanes = driver
    lines = []
    for x, g, decide, xu, corr_en, beta_q, gmax in tiles:
        lines.append(f"T {x.shape[0]} {int(decide)} {int(xu)} {corr_en} {beta_q} {gmax}")
        for b in range(x.shape[0]):
            lines.append(" ".join(f"{int(x[b, l])} {int(g[b, l])}" for l in range(lanes)))
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    rows = out.stdout.splitlines()
    assert len(rows) == 2 * len(tiles), out.stderr
    parsed = []
    for r, s in zip(rows[::2], rows[1::2]):
        head, gm, ge, sg = r[2:].split("|")
        ovf, pm, inc, macs = map(int, head.split())
        shead, sgm, ssg, sempty = s[2:].split("|")
        parsed.append(dict(overflow=ovf, pred=pm, incomplete=inc, corr_macs=macs,
                           g_msb=np.array(gm.split(), np.int64), g_exact=np.array(ge.split(), np.int64),
                           sign=np.array(sg.split(), np.int64),
                           stream=(tuple(map(int, shead.split())), np.array(sgm.split(), np.int64),
                                   np.array(ssg.split(), np.int64), tuple(map(int, sempty.split())))))
    return parsed


def rand_tile(rng, beats, lanes, xu):
    x = (rng.integers(0, 256, (beats, lanes)).astype(np.uint8) if xu
         else rng.integers(-128, 128, (beats, lanes)).astype(np.int8))
    g = (rng.normal(0, 9000, (beats, lanes)) + rng.integers(-3000, 3000, lanes)).clip(-32768, 32767).astype(np.int16)
    return x, g


def mask(bits) -> int:
    return sum(1 << l for l, b in enumerate(bits) if b)


def test_cmodel_matches_golden(driver):
    _, lanes = driver
    rng = np.random.default_rng(11)
    all_on = (1 << lanes) - 1
    tiles, expects = [], []
    edge_x = {True: [0, 255, 247, 248, 7, 8], False: [-128, 127, -9, -8, 119, 120]}
    edge_g = [-32768, 32767, 32735, 32736, -32737, -32736, -33, -32, 31, 32, 0]
    for i in range(40):
        xu = bool(i % 2)
        if i % 5 == 4:
            x = rng.choice(edge_x[xu], (9, lanes)).astype(np.uint8 if xu else np.int8)
            g = rng.choice(edge_g, (9, lanes)).astype(np.int16)
        else:
            x, g = rand_tile(rng, int(rng.integers(1, 60)), lanes, xu)
        pre = expected_tile(x, g, decide=False)
        tmax = int(np.abs(pre.g_msb).max())
        beta_q = [0, 1, 3277, 65536][i % 4]
        gmax = [tmax, tmax + int(rng.integers(0, 5000)), (1 << 47) - 1][i % 3]
        confident = confident_mask(pre.g_msb, beta_q, gmax)
        corr_en = [all_on & ~confident, all_on, 0][i % 3]
        tiles.append((x, g, True, xu, corr_en, beta_q, gmax))
        expects.append(expected_tile(x, g, decide=True, beta_q=beta_q, gmsb_absmax=gmax, corr_en=corr_en))
        tiles.append((x, g, False, xu, all_on, beta_q, gmax))
        expects.append(pre)
    for k, (tile, exp, got) in enumerate(zip(tiles, expects, run(driver, tiles))):
        x, _, decide, xu, corr_en, beta_q, gmax = tile
        what = f"L={lanes} tile {k} ({'decide' if decide else 'predict'}, {'uint8' if xu else 'int8'}, " \
               f"beta_q {beta_q}, gmax {gmax}, corr_en {corr_en:#x})"
        assert not got["overflow"], what
        np.testing.assert_array_equal(got["g_msb"], exp.g_msb, err_msg=what + ": G_msb")
        np.testing.assert_array_equal(got["sign"], exp.sign, err_msg=what + ": sign")
        assert got["pred"] == mask(exp.pred), what + f": predicted {got['pred']:#x} != {mask(exp.pred):#x}"
        assert got["incomplete"] == mask(exp.incomplete), what + ": incomplete"
        on = corr_en if decide else 0
        for l in range(lanes):
            if (on >> l) & 1:
                assert got["g_exact"][l] == exp.g_exact[l], what + f": lane {l} exact sum"
        # Skipped lanes really skip: correction MACs = beats x enabled lanes.
        assert got["corr_macs"] == x.shape[0] * bin(on).count("1"), what + ": correction MAC count"
        (s_ovf, s_pm, s_inc), s_gm, s_sg, (in_empty, out_empty) = got["stream"]
        assert (s_ovf, s_pm, s_inc) == (got["overflow"], got["pred"], got["incomplete"]), what + ": stream form"
        np.testing.assert_array_equal(s_gm, got["g_msb"], err_msg=what + ": stream form G_msb")
        np.testing.assert_array_equal(s_sg, got["sign"], err_msg=what + ": stream form sign")
        assert in_empty and out_empty, what + ": stream form left beats behind"

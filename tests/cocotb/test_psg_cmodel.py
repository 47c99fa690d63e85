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


# ---- the lane array's C model (psg::lanes_round / psg_lanes_hls), at a small size --------
ARRAY = {"PSG_ARRAY_LANES": 8, "PSG_ARRAY_EXACT": 4, "PSG_WINDOW_X": 12, "PSG_WINDOW_G": 4}


@pytest.fixture(scope="module")
def lanes_driver(tmp_path_factory) -> Path:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: the C model test compiles hls/include/psg_engine.h (apt-get install g++)")
    exe = tmp_path_factory.mktemp("cmodel") / "cmodel_lanes"
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", *(f"-D{k}={v}" for k, v in ARRAY.items()),
                    f"-I{ROOT / 'hls' / 'include'}", "-o", str(exe), str(HERE / "cmodel_lanes_driver.cpp"),
                    str(ROOT / "hls" / "blackbox" / "psg_lanes_hls.cpp")], check=True)
    return exe


def run_lanes(exe: Path, rounds: list) -> list[dict]:
    lines = []
    for r in rounds:
        lines.append(f"R {int(r.x_unsigned)} {r.n_active} {int(r.msb_en)} {int(r.exact_en)} {r.x.shape[0]}")
        lines.append(" ".join(str(int(v)) for v in [*r.xsel, *r.gsel, *r.init_msb, *r.init_exact]))
        lines += [" ".join(str(int(v)) for v in [*r.x[b], *r.g[b]]) for b in range(r.x.shape[0])]
    out = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    rows = out.stdout.splitlines()
    assert len(rows) == len(rounds), out.stderr
    parsed = []
    for row in rows:
        msb, exact, work, flags = row[2:].split("|")
        parsed.append(dict(msb=np.array(msb.split(), np.int64), exact=np.array(exact.split(), np.int64),
                           work=tuple(map(int, work.split())), flags=tuple(map(int, flags.split()))))
    return parsed


def test_lanes_cmodel_matches_golden(lanes_driver):
    """Random rounds (every enable, gated lanes, extremes, out-of-range selects), one pair of
    rounds accumulating onto each other; work counts prove that gated lanes do not compute."""
    from psg_model import Round, expected, random_round

    lanes, exact_lanes, xs, gs = (ARRAY[k] for k in ARRAY)
    rng = np.random.default_rng(5)
    rounds = [random_round(rng, lanes, exact_lanes, xs, gs, beats=int(rng.integers(1, 30)), extreme=i % 5 == 4)
              for i in range(30)]
    # Out-of-range selects read 0 (as the RTL's mux does).
    bad = random_round(rng, lanes, exact_lanes, xs, gs, beats=6, n_active=lanes, msb_en=True, exact_en=True)
    bad.xsel = bad.xsel.copy()
    bad.xsel[1], bad.gsel[2] = xs + 3, 255
    rounds.append(bad)
    got = run_lanes(lanes_driver, rounds)
    for k, (r, g) in enumerate(zip(rounds, got)):
        what = (f"C model round {k} ({r.x.shape[0]} beats, n_active {r.n_active}, msb_en {r.msb_en}, "
                f"exact_en {r.exact_en})")
        if r is not bad:   # checked below: two of its lanes select outside the window
            exp_msb, exp_exact = expected(r)
            np.testing.assert_array_equal(g["msb"], exp_msb, err_msg=what + ": G_msb")
            np.testing.assert_array_equal(g["exact"], exp_exact, err_msg=what + ": G")
        beats = r.x.shape[0]
        n_on = min(r.n_active, lanes)
        assert g["work"] == (beats, beats * n_on * r.msb_en, beats * min(n_on, exact_lanes) * r.exact_en), \
            what + f": work counts {g['work']}"
        assert g["flags"] == (1, 1, 1), what + ": streams not drained, or the blackbox function and the model differ"
    # The out-of-range round: lane 1 (x slot out of range) and lane 2 (g slot) sum nothing.
    g = got[-1]
    r = rounds[-1]
    assert g["msb"][1] == r.init_msb[1] and g["exact"][1] == r.init_exact[1], "out-of-range x select must read 0"
    assert g["msb"][2] == r.init_msb[2] and g["exact"][2] == r.init_exact[2], "out-of-range g select must read 0"
    in_range = Round(**{**r.__dict__, "xsel": np.where(r.xsel < xs, r.xsel, 0), "gsel": np.where(r.gsel < gs, r.gsel, 0)})
    exp_msb, exp_exact = expected(in_range)
    ok = [l for l in range(lanes) if l not in (1, 2)]
    np.testing.assert_array_equal(g["msb"][ok], exp_msb[ok], err_msg="out-of-range round, the other lanes: G_msb")
    np.testing.assert_array_equal(g["exact"][ok[:exact_lanes - 2]], exp_exact[ok[:exact_lanes - 2]],
                                  err_msg="out-of-range round, the other lanes: G")
    # Accumulate onto: the second round starts from the first one's output.
    first = random_round(rng, lanes, exact_lanes, xs, gs, beats=13, n_active=lanes, msb_en=True, exact_en=True)
    (g1,) = run_lanes(lanes_driver, [first])
    second = random_round(rng, lanes, exact_lanes, xs, gs, beats=7, n_active=lanes, msb_en=True, exact_en=True,
                          x_unsigned=first.x_unsigned, xsel=first.xsel, gsel=first.gsel,
                          init_msb=g1["msb"], init_exact=g1["exact"])
    (g2,) = run_lanes(lanes_driver, [second])
    chained = Round(**{**second.__dict__, "init_msb": first.init_msb, "init_exact": first.init_exact})
    exp_msb, exp_exact = expected(chained, history=[first])
    np.testing.assert_array_equal(g2["msb"], exp_msb, err_msg="two rounds accumulating: G_msb")
    np.testing.assert_array_equal(g2["exact"], exp_exact, err_msg="two rounds accumulating: G")

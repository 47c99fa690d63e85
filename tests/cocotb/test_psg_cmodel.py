"""The lane array's C model (hls/include/psg_lanes.h) against the golden model, via g++.

The C model is what the HLS kernel calls in C simulation and what Vitis HLS swaps for the RTL,
so it must agree with e2train.core bit for bit, like the RTL (tests in test_psg_lanes.py).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# ---- the lane array's C model (psg::lanes_round / psg_lanes_hls), at a small size --------
ARRAY = {"PSG_ARRAY_LANES": 8, "PSG_ARRAY_EXACT": 4, "PSG_WINDOW_X": 12, "PSG_WINDOW_G": 4}


@pytest.fixture(scope="module")
def lanes_driver(tmp_path_factory) -> Path:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: the C model test compiles hls/include/psg_lanes.h (apt-get install g++)")
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

"""The C++ MSB split (psg::split_x / psg::split_g in hls/include/msb_split.h, which the kernel
and the RTL's C model call) against the contract's (core.fixedpoint), on every code: every tie
x = 16k + 8 and g = 64k + 32 among them, each of which v1's round half up gets wrong for
negative codes. Also the contract version the C++ headers carry."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from e2train.core import fixedpoint as fxp

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = r"""
#include <cstdio>
#include "msb_split.h"
int main() {
    for (int x = 0; x < 256; ++x) { psg::Split s = psg::split_x(x, true); std::printf("%d %d\n", s.h, s.l); }
    for (int x = -128; x < 128; ++x) { psg::Split s = psg::split_x(x, false); std::printf("%d %d\n", s.h, s.l); }
    for (int g = -32768; g < 32768; ++g) { psg::Split s = psg::split_g(g); std::printf("%d %d\n", s.h, s.l); }
    return 0;
}
"""


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> np.ndarray:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is missing: this test compiles hls/include/msb_split.h (apt-get install g++)")
    d = tmp_path_factory.mktemp("split")
    (d / "split.cpp").write_text(PROGRAM)
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'hls' / 'include'}",
                    "-o", str(d / "split"), str(d / "split.cpp")], check=True)
    out = subprocess.run([str(d / "split")], capture_output=True, text=True, check=True).stdout
    return np.array(out.split(), np.int64).reshape(-1, 2)


def test_cpp_split_equals_contract_on_every_code(splits):
    u = np.arange(256).astype(np.uint8)
    s = np.arange(-128, 128).astype(np.int8)
    g = np.arange(-32768, 32768).astype(np.int16)
    for name, got, want in (("uint8 x", splits[:256], fxp.msb_split_x(u)),
                            ("int8 x", splits[256:512], fxp.msb_split_x(s)),
                            ("int16 g", splits[512:], fxp.msb_split_g(g))):
        for col, limb in ((0, "high"), (1, "low")):
            bad = np.flatnonzero(got[:, col] != want[col])
            assert not bad.size, f"{name}: {limb} limb differs from the contract at {bad[:5]} (first of {bad.size})"
    assert splits[512 + 32768 - 32, 0] == -1          # g = -32 is a tie: away from zero (v1: 0)


def test_cpp_headers_carry_the_contract_version():
    text = (ROOT / "hls" / "include" / "e2t_fixed.h").read_text()
    m = re.search(r"#define\s+E2T_CONTRACT_VERSION\s+(\d+)", text)
    assert m and int(m.group(1)) == fxp.CONTRACT_VERSION

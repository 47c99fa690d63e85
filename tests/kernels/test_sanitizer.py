"""The kernels under ASan+UBSan: a standalone driver (build/csim/e2t_san_driver) runs them on
cases written by hls/csim/cases.py, in heap buffers of exactly the tensors' sizes, and
compares with the golden model's results. Any sanitizer report aborts the driver and fails
the test."""
from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("e2t_hls_cases", REPO / "hls/csim/cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def test_kernels_clean_under_asan_ubsan(san_driver, tmp_path):
    dirs = cases.write_cases(tmp_path)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([str(san_driver), *map(str, dirs)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, f"sanitizer driver failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    assert r.stdout.count(": ok") == len(dirs), r.stdout
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr


def test_driver_reports_a_mismatch(san_driver, tmp_path):
    """The comparison can fail: a wrong expected result makes the driver exit non-zero."""
    d = cases.write_cases(tmp_path)[0]
    want = np.frombuffer((d / "y_expect.bin").read_bytes(), np.int8).copy()
    want[0] ^= 1
    (d / "y_expect.bin").write_bytes(want.tobytes())
    r = subprocess.run([str(san_driver), str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "MISMATCH in y" in r.stdout

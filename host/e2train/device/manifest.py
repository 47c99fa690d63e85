"""Bitstream manifests: what a bitstream in bitstreams/<board>/ contains, written from
``kernel_iface`` and checked before anything runs (numpy-free: stdlib, plus pynq's .hwh
parser when a .hwh is given).

A manifest (``manifest.json``) records the board and part, each kernel's name, VLNV,
version, base address and register map, a digest of the whole kernel interface, the
fixed-point contract version the kernels implement (``core.fixedpoint.CONTRACT_VERSION``), the
sha256 of the .bit and .hwh, and how they were built. ``bitstreams/sim/manifest.json``
is the simulated board's (board "sim", no files).

    python -m e2train.device.manifest --board pynq-z2 --bit build/fpga/pynq-z2/e2train.bit \
        --hwh build/fpga/pynq-z2/e2train.hwh --out bitstreams/pynq-z2
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..core.fixedpoint import CONTRACT_VERSION
from . import kernel_iface as ki

FORMAT = "e2train-bitstream-manifest"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# board -> (FPGA part, Vivado board part); fpga/vivado/boards.tcl holds the same table.
BOARDS = {
    "zedboard": ("xc7z020clg484-1", "avnet.com:zedboard:part0:1.4"),
    "pynq-z1": ("xc7z020clg400-1", "www.digilentinc.com:pynq-z1:part0:1.0"),
    "pynq-z2": ("xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:1.0"),
    "sim": ("xc7z020 (simulated)", None),
}
CLOCK_HZ = 100_000_000          # FCLK_CLK0 of the block design (fpga/vivado/bd.tcl)


class ManifestError(ValueError):
    """A bitstream or manifest that is missing, corrupt, or not for this e2train."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(board: str, bit: Path | None = None, hwh: Path | None = None, build_info: dict | None = None) -> dict:
    """The manifest of a bitstream for ``board`` (files named relative to the manifest)."""
    if board not in BOARDS:
        raise ManifestError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    part, board_part = BOARDS[board]
    if board == "sim":
        if bit or hwh:
            raise ManifestError("the simulated board has no bitstream; do not pass --bit/--hwh with --board sim")
        files = {"bitstream": None, "hwh": None}
    else:
        if not bit or not hwh:
            raise ManifestError(f"a {board} manifest needs both the .bit and the .hwh")
        for p in (bit, hwh):
            if not Path(p).is_file():
                raise ManifestError(f"{p} does not exist")
        check_hwh(Path(hwh))
        files = {"bitstream": {"file": Path(bit).name, "sha256": sha256_file(Path(bit))},
                 "hwh": {"file": Path(hwh).name, "sha256": sha256_file(Path(hwh))}}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "board": board,
        "part": part,
        "board_part": board_part,
        **files,
        "clock_hz": CLOCK_HZ,
        "abi": ki.abi_digest(),
        "contract_version": CONTRACT_VERSION,
        "kernels": [k.to_manifest() for k in ki.KERNELS.values()],
        "passes": {p.name: {"op": p.op, "args": list(p.args)} for p in ki.PASSES.values()},
        "build": build_info or {},
    }


def check_hwh(hwh: Path) -> None:
    """Check a .hwh (Vivado's hardware handoff) against ``kernel_iface``: the IP is there
    with our VLNV, at our base address, with our register offsets."""
    try:
        from pynq.pl_server.hwh_parser import _HWHZynq
        ip_dict = _HWHZynq(hwh_name=str(hwh)).ip_dict
    except Exception as e:              # an XML or structure error: one clear message
        raise ManifestError(f"cannot parse {hwh} as a Zynq-7000 hardware handoff: {e}") from e
    check_ip_dict(ip_dict, str(hwh))


def check_ip_dict(ip_dict: dict, where: str) -> None:
    """``ip_dict`` as pynq builds it from a .hwh (what ``Overlay.ip_dict`` holds)."""
    by_type: dict[str, list[str]] = {}
    for name, d in ip_dict.items():
        by_type.setdefault(str(d.get("type", "")), []).append(name)
    problems = []
    for k in ki.KERNELS.values():
        names = by_type.get(k.vlnv, [])
        if not names:
            same = [t for t in by_type if t.split(":")[2:3] == [k.name]]
            hint = f" (found {same}: a different vendor/library/version)" if same else ""
            problems.append(f"no IP with VLNV {k.vlnv}{hint}")
            continue
        d = ip_dict[names[0]]
        if d.get("phys_addr") != k.base_addr:
            problems.append(f"{k.name} at {d.get('phys_addr', 0):#x}, expected {k.base_addr:#x}")
        regs = d.get("registers") or {}
        offsets = {v["address_offset"] for v in regs.values()}
        # the arguments' registers (what the driver writes); whether a .hwh lists CTRL and
        # ap_return among them is the tool's business
        want = {r.offset for r in k.registers() if r.part in ("data", "lo", "hi")}
        if regs and want - offsets:
            problems.append(f"{k.name}: no registers at offsets {sorted(hex(o) for o in want - offsets)} "
                            f"(the HLS top function's arguments differ from kernel_iface)")
    if problems:
        raise ManifestError(f"{where} does not hold the e2train kernels this software drives: "
                            + "; ".join(problems) + ". Rebuild the bitstream (make bitstream) "
                            "or use the e2train version it was built for.")


def load(path: str | os.PathLike) -> tuple[dict, Path]:
    """Read and validate a manifest (a file, or a directory holding manifest.json).
    Returns (manifest, directory). Checks the files it names, if any, by sha256."""
    p = Path(path)
    mpath = p / MANIFEST_NAME if p.is_dir() else p
    if not mpath.is_file():
        raise ManifestError(f"no bitstream manifest at {mpath}: build one with "
                            f"`make bitstream BOARD=<board>`, or use bitstreams/sim for the simulated board")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{mpath} is not valid JSON ({e}); it is corrupt: restore it from the "
                            f"repository or regenerate it with `python -m e2train.device.manifest`") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError(f"{mpath} is not an e2train bitstream manifest (format {FORMAT!r} expected)")
    if m.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{mpath} has manifest format version {m.get('format_version')!r}; this "
                            f"e2train reads version {FORMAT_VERSION}: regenerate it")
    for key in ("board", "kernels", "abi"):
        if key not in m:
            raise ManifestError(f"{mpath} lacks the field {key!r}; regenerate it")
    if m["board"] not in BOARDS:
        raise ManifestError(f"{mpath}: unknown board {m['board']!r} (known: {', '.join(BOARDS)})")
    check_contract(m.get("contract_version", 1), f"{mpath}: the bitstream",
                   "rebuild it with this e2train (make bitstream), or use the e2train it was built with")
    _check_kernels(m, mpath)
    d = mpath.parent
    if m["board"] != "sim":
        for key, what in (("bitstream", ".bit"), ("hwh", ".hwh")):
            entry = m.get(key)
            if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
                raise ManifestError(f"{mpath}: the {what} entry is missing or malformed; regenerate it")
            f = d / entry["file"]
            if not f.is_file():
                raise ManifestError(f"{mpath} names {f}, which does not exist: copy the {what} next to "
                                    f"the manifest (see docs/board.md)")
            digest = sha256_file(f)
            if digest != entry["sha256"]:
                raise ManifestError(f"{f} does not match its manifest (sha256 {digest[:12]}..., manifest "
                                    f"says {str(entry['sha256'])[:12]}...): the file is corrupt or from "
                                    f"another build. Copy the matching files again.")
    return m, d


def check_contract(version, what: str, fix: str) -> None:
    """Refuse anything made under another fixed-point contract (a manifest or checkpoint
    without the field predates versions: v1). Its MSB split rounds ties differently, so its
    predictor signs, and the weights trained with them, are not this contract's."""
    if version != CONTRACT_VERSION:
        raise ManifestError(f"{what} follows fixed-point contract v{version}, this e2train implements "
                            f"v{CONTRACT_VERSION} (docs/fixed-point.md): {fix}")


def _check_kernels(m: dict, mpath: Path) -> None:
    listed = sorted(str(k.get("vlnv")) for k in m["kernels"] if isinstance(k, dict))
    wanted = sorted(k.vlnv for k in ki.KERNELS.values())
    if listed != wanted:
        # e.g. a bitstream of interface 1.0: three IPs, one per pass
        raise ManifestError(f"{mpath} holds the IPs {', '.join(listed) or 'none'}; this e2train drives "
                            f"{', '.join(wanted)} (kernel interface {ki.VERSION}, one IP whose op picks the "
                            f"pass): rebuild the bitstream (make bitstream), or use the e2train it was built with")
    if m["abi"] != ki.abi_digest():
        raise ManifestError(f"{mpath} was written for a different kernel interface (abi "
                            f"{str(m['abi'])[:12]}..., this e2train has {ki.abi_digest()[:12]}...): "
                            f"rebuild the bitstream with this version, or use the e2train it was built with")
    got = {k.get("name"): k for k in m["kernels"] if isinstance(k, dict)}
    for k in ki.KERNELS.values():
        e = got.get(k.name)
        if e is None:
            raise ManifestError(f"{mpath} lists no {k.name} kernel")
        if e.get("vlnv") != k.vlnv or e.get("version") != ki.VERSION:
            raise ManifestError(f"{mpath}: {k.name} is {e.get('vlnv')} version {e.get('version')}, "
                                f"this e2train drives {k.vlnv}: rebuild the bitstream or change e2train")
        if e.get("registers") != {r.name: r.offset for r in k.registers() if r.part != "reserved"}:
            raise ManifestError(f"{mpath}: the register map of {k.name} differs from this e2train's")
        if e.get("base_addr") != k.base_addr:
            raise ManifestError(f"{mpath}: {k.name} at {e.get('base_addr')}, expected {k.base_addr:#x}")


def write(m: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)         # never leave a half-written manifest behind
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2train.device.manifest",
                                description="Write the manifest of an e2train bitstream.")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--bit", type=Path, help="the .bit (not for --board sim)")
    p.add_argument("--hwh", type=Path, help="the .hwh Vivado wrote with it")
    p.add_argument("--out", type=Path, required=True, help="directory to write manifest.json into")
    p.add_argument("--copy", action="store_true", help="copy the .bit and .hwh into --out as well")
    p.add_argument("--tool", default="", help="tool versions that built it (recorded as given)")
    a = p.parse_args(argv)
    info = {"tool": a.tool} if a.tool else {}
    if a.board != "sim":
        info["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        m = build(a.board, a.bit, a.hwh, info)
        if a.copy:
            a.out.mkdir(parents=True, exist_ok=True)
            for f in (a.bit, a.hwh):
                if f.resolve() != (a.out / f.name).resolve():
                    shutil.copyfile(f, a.out / f.name)
        path = write(m, a.out)
        if a.board != "sim":
            load(path)             # what the board will check, checked here first
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

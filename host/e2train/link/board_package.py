"""The board side of e2train as a wheel, built on the host to be sent through the link.

The board needs numpy, pyserial and pynq only, and never imports torch: the wheel holds the
package without its host-only parts (``torch``, ``bench``), pure Python, tagged
``py3-none-any``. It is built here from the package being run (stdlib ``zipfile``, fixed
timestamps, so the same sources give the same bytes and the same sha256), not by a build
backend, so that ``e2train flash --package`` works from any install.

:func:`check_wheel` (stdlib only, used by the agent) verifies a wheel before it is installed:
a readable zip, every file listed in its ``RECORD`` with a matching sha256 and size, the agent
present.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import zipfile
from pathlib import Path

HOST_ONLY = ("torch", "bench")          # subpackages the board never imports
WHEEL_RE = re.compile(r"^e2train-[0-9A-Za-z.+]+-py3-none-any\.whl$")
REQUIRED = ("e2train/__init__.py", "e2train/__main__.py", "e2train/app/cli.py", "e2train/device/agent.py",
            "e2train/link/protocol.py")
_EPOCH = (2020, 1, 1, 0, 0, 0)          # zip timestamps: reproducible bytes


class PackageError(ValueError):
    """A wheel that is not a whole, untampered board package of e2train."""


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def board_files(root: Path | None = None) -> dict[str, bytes]:
    """``arcname -> bytes`` of the board-side package (sources and package data)."""
    if root is None:
        import e2train
        root = Path(e2train.__file__).resolve().parent
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or "__pycache__" in rel.parts or p.suffix in (".pyc", ".so", ".o"):
            continue
        if rel.parts[0] in HOST_ONLY:
            continue
        out[f"e2train/{rel.as_posix()}"] = p.read_bytes()
    return out


def build_board_wheel(root: Path | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of the board-side wheel."""
    from .. import __version__
    files = board_files(root)
    dist = f"e2train-{__version__}.dist-info"
    files[f"{dist}/METADATA"] = (
        "Metadata-Version: 2.1\nName: e2train\n"
        f"Version: {__version__}\nSummary: e2train, board side (numpy + pynq; no torch)\n"
        "Requires-Python: >=3.8\nRequires-Dist: numpy>=1.21\nRequires-Dist: pyserial>=3.4\n").encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: e2train.link.board_package\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = (b"[console_scripts]\ne2train = e2train.app.cli:main\n"
                                         b"e2train-board = e2train.device.agent:main\n")
    record = io.StringIO()
    w = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        w.writerow([name, _record_hash(data), len(data)])
    w.writerow([f"{dist}/RECORD", "", ""])
    files[f"{dist}/RECORD"] = record.getvalue().encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return f"e2train-{__version__}-py3-none-any.whl", buf.getvalue()


def check_wheel(path: Path) -> dict[str, bytes]:
    """The files of a verified board wheel; PackageError naming what is wrong otherwise."""
    try:
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise PackageError(f"{path.name} is not a readable wheel ({e})") from None
    records = [n for n in files if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise PackageError(f"{path.name} has no RECORD: not a wheel built by `e2train flash --package`")
    listed = {}
    for row in csv.reader(io.StringIO(files[records[0]].decode())):
        if row and row[0] != records[0]:
            listed[row[0]] = row[1]
    for name, data in files.items():
        if name == records[0]:
            continue
        if name not in listed:
            raise PackageError(f"{path.name}: {name} is not in the wheel's RECORD")
        if listed[name] != _record_hash(data):
            raise PackageError(f"{path.name}: {name} does not match its RECORD hash (damaged or altered)")
    for name in REQUIRED:
        if name not in files:
            raise PackageError(f"{path.name} lacks {name}: not an e2train board package")
    bad = [n for n in files if n.startswith("/") or ".." in Path(n).parts]
    if bad:
        raise PackageError(f"{path.name} names files outside the package: {bad[:3]}")
    return files

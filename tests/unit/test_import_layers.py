"""The import rules of docs/architecture.md, checked on the source with ``ast``.

test_board_side_imports.py imports the board side with the host packages blocked, which
catches imports that run at import time. This reads every ``import`` statement, including
those inside functions that only run on some paths (an ``import torch`` in a rarely used
board-side function would pass that test and still break on the PYNQ image).

A "part" is the first name under ``e2train``: a package (``core``, ``device``, ``link``,
``data``, ``meter``, ``torch``, ``bench``, ``app``); the package's own ``__init__`` and
``__main__`` are the part ``e2train``. An import is *lazy* when it sits inside a function:
it runs only when that function is called.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import e2train

PACKAGE_DIR = Path(e2train.__file__).parent
STDLIB = set(sys.stdlib_module_names)


@dataclass(frozen=True)
class Import:
    module: str       # the importing module, e.g. e2train.device.agent
    target: str       # what it imports, absolute, e.g. e2train.core.golden or numpy.linalg
    lazy: bool        # inside a function
    line: int


def part(name: str) -> str:
    """e2train.core.golden -> core; e2train.app.cli -> app; e2train -> e2train."""
    bits = name.split(".")
    return bits[1] if len(bits) > 1 and bits[1] != "__main__" else bits[0]


def top(name: str) -> str:
    return name.split(".")[0]


def module_names(package_dir: Path) -> dict[str, Path]:
    root = package_dir.name
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        bits = [root, *f.relative_to(package_dir).with_suffix("").parts]
        if bits[-1] == "__init__":
            bits.pop()
        out[".".join(bits)] = f
    return out


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool, known: set[str]) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    # `from .. import datasets` imports the module e2train.data.datasets, not the package e2train
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def scan(package_dir: Path) -> list[Import]:
    mods = module_names(package_dir)
    known = set(mods)
    found: list[Import] = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"

        def visit(node: ast.AST, lazy: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import):
                    found.extend(Import(name, a.name, lazy, child.lineno) for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    found.extend(Import(name, t, lazy, child.lineno)
                                 for t in _resolve(child, name, is_pkg, known))
                visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(ast.parse(path.read_text(), str(path)), False)
    return found


# --- the rules (docs/architecture.md, "What each part may import") ---------------------------

BOARD_SIDE = {"core", "device", "link", "data"}
NEVER_ON_BOARD = {"torch", "torchvision", "matplotlib", "scipy", "safetensors", "cocotb", "tqdm"}
# e2train parts each part may import at module level (besides itself), and lazily
INTERNAL = {
    "core": (set(), set()),
    "link": ({"e2train"}, set()),
    "data": ({"core"}, set()),
    "device": ({"core", "link", "e2train"}, {"meter", "data"}),
    "meter": (set(), set()),
    "torch": ({"core", "device", "data"}, set()),
}
# third-party packages each part may import at module level, and lazily
THIRD_PARTY = {
    "core": ({"numpy"}, {"tomllib"}),   # tomllib: stdlib from Python 3.11 (the PYNQ image has 3.10:
                                       # core.train_keys imports it only to read a TOML config)
    "link": (set(), {"serial"}),
    "data": ({"numpy"}, {"sklearn", "PIL"}),
    "device": ({"numpy", "pynq", "serial"}, {"sklearn"}),
    "meter": ({"numpy", "serial"}, {"matplotlib"}),
}
TORCH_USERS = {"torch", "bench", "app"}   # the parts that may import the torch library
APP = "app"                               # the commands: they import the packages, never the reverse


def violations(imports: list[Import], root: str = "e2train") -> list[str]:
    bad = []
    for imp in imports:
        src = part(imp.module)
        where = f"{imp.module}:{imp.line} imports {imp.target}" + (" (in a function)" if imp.lazy else "")
        if top(imp.target) == root:
            dst = part(imp.target)
            if dst == src:
                continue
            if src in INTERNAL:
                eager, lazy_ok = INTERNAL[src]
                if dst not in eager and not (imp.lazy and dst in lazy_ok):
                    bad.append(f"{where}: {src} may not import e2train.{dst}")
            if dst == "bench" and src not in ("bench", APP):
                bad.append(f"{where}: only the CLI reaches the harness")
            if dst == APP and src not in (APP, "e2train"):
                bad.append(f"{where}: the packages do not import the app")
            continue
        pkg = top(imp.target)
        if pkg in STDLIB or pkg == "__future__":
            continue
        if src in BOARD_SIDE and pkg in NEVER_ON_BOARD:
            bad.append(f"{where}: the board side never imports {pkg}")
        if pkg == "torch" and src not in TORCH_USERS:
            bad.append(f"{where}: only {', '.join(sorted(TORCH_USERS))} import torch")
        if src in THIRD_PARTY:
            eager, lazy_ok = THIRD_PARTY[src]
            if pkg not in eager and not (imp.lazy and pkg in lazy_ok):
                bad.append(f"{where}: {src} may not import {pkg}" + ("" if imp.lazy else " at module level"))
    return bad


def test_the_package_keeps_its_import_rules():
    imports = scan(PACKAGE_DIR)
    # the scan sees what it must: a lazy host-only import on the board side, and torch's users
    assert any(i.module == "e2train.device.trainer" and i.target == "e2train.data.datasets" and i.lazy
               for i in imports)
    assert any(i.module.startswith("e2train.torch.") and top(i.target) == "torch" for i in imports)
    bad = violations(imports)
    assert not bad, "import rules broken (docs/architecture.md):\n" + "\n".join(bad)


def test_a_violation_is_reported(tmp_path):
    """The rules can fail: a small package with one of each kind of violation."""
    pkg = tmp_path / "e2train"
    for sub in ("core", "device", "meter", "torch"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "app").mkdir()
    (pkg / "app" / "__init__.py").write_text("")
    (pkg / "app" / "cli.py").write_text("")
    (pkg / "core" / "bad.py").write_text("import numpy\nfrom ..device import agent\n")
    (pkg / "device" / "agent.py").write_text(
        "from ..core import bad\n"                      # allowed
        "def f():\n    import torch\n    from ..app import cli\n    import sklearn\n"
        "import sklearn\n")
    (pkg / "meter" / "m.py").write_text("import matplotlib\ndef g():\n    import matplotlib.pyplot\n")
    (pkg / "torch" / "t.py").write_text("import torch\nfrom ..meter import m\n")
    bad = violations(scan(pkg))
    expected = [
        "e2train.core.bad:2 imports e2train.device.agent: core may not import e2train.device",
        "e2train.device.agent:3 imports torch (in a function): the board side never imports torch",
        "e2train.device.agent:3 imports torch (in a function): only app, bench, torch import torch",
        "e2train.device.agent:3 imports torch (in a function): device may not import torch",
        "e2train.device.agent:4 imports e2train.app.cli (in a function): device may not import e2train.app",
        "e2train.device.agent:4 imports e2train.app.cli (in a function): the packages do not import the app",
        "e2train.device.agent:6 imports sklearn: device may not import sklearn at module level",
        "e2train.meter.m:1 imports matplotlib: meter may not import matplotlib at module level",
        "e2train.torch.t:2 imports e2train.meter.m: torch may not import e2train.meter",
    ]
    assert sorted(bad) == sorted(expected)

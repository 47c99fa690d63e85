"""The board side (e2train.core, e2train.device) imports with torch and other host-only packages unavailable.

The PYNQ image (ARMv7) has numpy and pynq, not torch: a stray import anywhere in these
packages would break on-device training, so every module is imported in a subprocess where
the host-only packages raise ImportError.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ["torch", "torchvision", "matplotlib", "sklearn", "scipy", "safetensors", "cocotb"]


def test_every_board_side_module_imports_without_host_packages():
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None          # makes `import name` raise ImportError
        import e2train.core, e2train.device
        mods = []
        for pkg in (e2train.core, e2train.device):
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                importlib.import_module(info.name)
                mods.append(info.name)
        leaked = [m for m in {BLOCKED!r} if sys.modules.get(m) is not None]
        assert not leaked, leaked
        print(len(mods), "modules:", " ".join(sorted(mods)))
    """)
    # the child imports the e2train this test imported (a checkout run with PYTHONPATH, or
    # copied to another machine, may not be the one installed in the environment)
    import e2train
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(e2train.__file__).parents[1]),
                                                                   os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "e2train.core.golden" in r.stdout and "e2train.device.agent" in r.stdout

"""tests/cocotb: the bench's helper modules (engine_model, psg_bus) sit beside the tests.

pytest runs with --import-mode=importlib, which does not put this directory on sys.path;
the test modules and the cocotb bench (whose simulator inherits sys.path as PYTHONPATH)
import the helpers by name, so add it here once.
"""
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

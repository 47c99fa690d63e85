"""Power-meter drivers on pyserial, their emulators, and the energy recorder.

Imports numpy and pyserial only: never torch or matplotlib (the plot is drawn lazily).
"""
from .base import BadRecord, BaudRateError, Meter, MeterError, NoData, Sample
from .connect import close_meter, open_meter, parse_spec

__all__ = ["Sample", "Meter", "MeterError", "BaudRateError", "BadRecord", "NoData",
           "open_meter", "close_meter", "parse_spec"]

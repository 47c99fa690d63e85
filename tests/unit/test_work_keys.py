"""Work tallies are keyed by format names a reader can read (docs/work.md), and records
written with the old numeric keys ("8x16", "-32x-32", "-32") still load to the same tally."""
from __future__ import annotations

import json

import pytest

from e2train.core.energy import EnergyModel
from e2train.core.work import FP32, Work, format_bits, format_name, mac_bits, mac_key


def _tally() -> Work:
    return (Work().add_macs(100, 8, 8).add_macs(7, 16, 8).add_macs(5, 4, 10).add_macs(3, FP32, 8)
            .add_macs(2, FP32, FP32).add_ops(11, 32).add_ops(13, 48).add_ops(17, FP32)
            .add_sram(1000).add_dram(10).add_time(0.5))


def test_keys_are_format_names():
    w = _tally()
    assert dict(w.macs) == {"int8xint8": 100, "int8xint16": 7, "int4xint10": 5, "fp32xint8": 3,
                            "fp32xfp32": 2}
    assert dict(w.ops) == {"int32": 11, "int48": 13, "fp32": 17}


@pytest.mark.parametrize("bits,name", [(8, "int8"), (16, "int16"), (4, "int4"), (-32, "fp32"), (-16, "fp16")])
def test_format_names_round_trip(bits, name):
    assert format_name(bits) == name and format_bits(name) == bits


def test_mac_key_is_symmetric_and_reads_back():
    assert mac_key(16, 8) == mac_key(8, 16) == "int8xint16"
    assert mac_bits("fp32xint8") == (FP32, 8) and mac_bits(mac_key(8, FP32)) == (FP32, 8)
    with pytest.raises(ValueError, match="0 bits"):
        format_name(0)


def test_old_numeric_keys_still_load():
    """A record written before the names (Work.to_dict of the numeric scheme)."""
    old = {"macs": {"-32x-32": 2, "-32x8": 3, "4x10": 5, "8x8": 100, "8x16": 7},
           "ops": {"-32": 17, "32": 11, "48": 13},
           "sram_bytes": 1000, "dram_bytes": 10, "seconds": 0.5}
    loaded = Work.from_dict(json.loads(json.dumps(old)))
    new = _tally()
    assert loaded.to_dict() == new.to_dict()
    m = EnergyModel.zynq7020()
    assert m.breakdown(loaded) == m.breakdown(new)


def test_to_dict_round_trips_with_names():
    w = _tally()
    d = json.loads(json.dumps(w.to_dict()))
    assert list(d["macs"]) == ["fp32xfp32", "fp32xint8", "int4xint10", "int8xint8", "int8xint16"]
    assert Work.from_dict(d).to_dict() == w.to_dict()

"""Manifests and overlays: a missing, corrupt or mismatched bitstream or manifest is a
clear error before anything runs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from e2train.device import kernel_iface as ki
from e2train.device import manifest as mf
from e2train.device.overlay import KernelOverlay

REPO = Path(__file__).resolve().parents[3]
SIM = REPO / "bitstreams" / "sim"


def _write(d: Path, m) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / mf.MANIFEST_NAME).write_text(m if isinstance(m, str) else json.dumps(m))
    return d


def test_committed_sim_manifest_is_current(tmp_path):
    assert mf.main(["--board", "sim", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / mf.MANIFEST_NAME).read_text()) == json.loads((SIM / mf.MANIFEST_NAME).read_text())
    ov = KernelOverlay(SIM, sim_impl="golden")
    assert ov.simulated and set(ov.kernels) == set(ki.KERNELS) == {"e2t_engine"}
    assert ov.describe()["kernels"] == {"e2t_engine": "e2train.org:hls:e2t_engine:2.3"}
    assert ov.engine is ov.kernels["e2t_engine"]


def test_a_manifest_of_interface_1_is_refused(tmp_path):
    """A bitstream built before the passes shared one engine (interface 1.0: three IPs) is
    refused with what to do, before anything is loaded (the manifest of that version, as
    `python -m e2train.device.manifest --board sim` wrote it)."""
    old = json.loads((Path(__file__).parent / "manifest_iface1.json").read_text())
    assert [k["vlnv"] for k in old["kernels"]] == [f"e2train.org:hls:{n}:1.0"
                                                   for n in ("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg")]
    with pytest.raises(mf.ManifestError, match=r"holds the IPs e2train.org:hls:conv_bwd_data:1.0, .*; this e2train "
                                               r"drives e2train.org:hls:e2t_engine:2.3 \(kernel interface 2.3, one IP "
                                               r"whose op picks the pass\): rebuild the bitstream \(make bitstream\)"):
        KernelOverlay(_write(tmp_path / "old", old))


def test_a_manifest_of_interface_2_0_is_refused(tmp_path):
    """A bitstream of interface 2.0 (the three conv passes, no block operations: ops 3..5 and
    their registers do not exist in it) is refused in one line with the fix (the manifest of
    that version, as `python -m e2train.device.manifest --board sim` wrote it)."""
    old = json.loads((Path(__file__).parent / "manifest_iface2_0.json").read_text())
    assert [k["vlnv"] for k in old["kernels"]] == ["e2train.org:hls:e2t_engine:2.0"]
    assert "b_flags" not in old["kernels"][0]["registers"]
    with pytest.raises(mf.ManifestError) as e:
        KernelOverlay(_write(tmp_path / "old", old))
    assert "\n" not in str(e.value)
    assert str(e.value).endswith(
        "holds the IPs e2train.org:hls:e2t_engine:2.0; this e2train drives e2train.org:hls:e2t_engine:2.3 "
        "(kernel interface 2.3, one IP whose op picks the pass): rebuild the bitstream (make bitstream), "
        "or use the e2train it was built with")


def test_a_manifest_of_interface_2_2_is_refused(tmp_path):
    """A bitstream of interface 2.2 ignores conv_fwd's b_flags bit 4 (the weights' sums of |w|,
    the input gradient's gain): driving it would leave the gain unwritten, so it is refused in one
    line with the fix (the sim manifest as 2.2 wrote it)."""
    old = json.loads((Path(__file__).parent / "manifest_iface2_2.json").read_text())
    assert [k["vlnv"] for k in old["kernels"]] == ["e2train.org:hls:e2t_engine:2.2"]
    with pytest.raises(mf.ManifestError) as e:
        KernelOverlay(_write(tmp_path / "old", old))
    assert "\n" not in str(e.value)
    assert "holds the IPs e2train.org:hls:e2t_engine:2.2; this e2train drives e2train.org:hls:e2t_engine:2.3" in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda m: "{\"format\": \"e2train-bitstream-manif", "not valid JSON"),
    (lambda m: "\xff\xfe garbage", "not valid JSON"),
    (lambda m: [1, 2], "not an e2train bitstream manifest"),
    (lambda m: {**m, "format_version": 7}, "format version 7"),
    (lambda m: {k: v for k, v in m.items() if k != "kernels"}, "lacks the field 'kernels'"),
    (lambda m: {**m, "board": "zybo"}, "unknown board 'zybo'"),
    (lambda m: {**m, "abi": "0" * 64}, "different kernel interface"),
    # a bitstream of fixed-point contract v1 (the manifest field did not exist then) or v1 named
    (lambda m: {k: v for k, v in m.items() if k != "contract_version"}, "follows fixed-point contract v1, this e2train implements v2"),
    (lambda m: {**m, "contract_version": 1}, r"contract v1, .* rebuild it with this e2train \(make bitstream\)"),
])
def test_bad_manifests_are_clear_errors(tmp_path, edit, message):
    m = json.loads((SIM / mf.MANIFEST_NAME).read_text())
    d = _write(tmp_path / "b", edit(m))
    with pytest.raises(mf.ManifestError, match=message):
        KernelOverlay(d)


def test_wrong_kernel_version_or_vlnv(tmp_path):
    m = json.loads((SIM / mf.MANIFEST_NAME).read_text())
    m2 = copy.deepcopy(m)
    m2["kernels"][0]["version"] = "0.9"
    with pytest.raises(mf.ManifestError, match="e2t_engine is .* version 0.9.*drives e2train.org:hls:e2t_engine:2.3"):
        KernelOverlay(_write(tmp_path / "v", m2))
    m3 = copy.deepcopy(m)
    m3["kernels"][0]["vlnv"] = "xilinx.com:hls:e2t_engine:2.0"
    with pytest.raises(mf.ManifestError, match="holds the IPs xilinx.com:hls:e2t_engine:2.0; this e2train drives"):
        KernelOverlay(_write(tmp_path / "n", m3))
    m4 = copy.deepcopy(m)
    m4["kernels"] = []
    with pytest.raises(mf.ManifestError, match="holds the IPs none; this e2train drives e2train.org:hls:e2t_engine"):
        KernelOverlay(_write(tmp_path / "m", m4))


def test_missing_manifest(tmp_path):
    with pytest.raises(mf.ManifestError, match="no bitstream manifest at .*make bitstream"):
        KernelOverlay(tmp_path / "nowhere")


def _board_dir(tmp_path: Path) -> Path:
    """A pynq-z2 manifest over stand-in files (bytes, not a bitstream: only the checksum
    path is exercised; loading it on a board is not)."""
    d = tmp_path / "pynq-z2"
    d.mkdir()
    (d / "e2train.bit").write_bytes(bytes(range(256)) * 64)
    (d / "e2train.hwh").write_text("<EDKSYSTEM/>")
    m = json.loads((SIM / mf.MANIFEST_NAME).read_text())
    m.update(board="pynq-z2", part=mf.BOARDS["pynq-z2"][0],
             bitstream={"file": "e2train.bit", "sha256": mf.sha256_file(d / "e2train.bit")},
             hwh={"file": "e2train.hwh", "sha256": mf.sha256_file(d / "e2train.hwh")})
    return _write(d, m)


def test_bitstream_checksum_and_presence(tmp_path):
    d = _board_dir(tmp_path)
    m, where = mf.load(d)
    assert m["board"] == "pynq-z2" and where == d
    bit = d / "e2train.bit"
    original = bit.read_bytes()
    data = bytearray(original)
    data[100] ^= 1
    bit.write_bytes(bytes(data))
    with pytest.raises(mf.ManifestError, match="e2train.bit does not match its manifest .*corrupt"):
        KernelOverlay(d)                   # refused before pynq is asked to load anything
    bit.unlink()
    with pytest.raises(mf.ManifestError, match="e2train.bit, which does not exist"):
        mf.load(d)
    bit.write_bytes(original)
    m = json.loads((d / mf.MANIFEST_NAME).read_text())
    m["hwh"] = None
    _write(d, m)
    with pytest.raises(mf.ManifestError, match="the .hwh entry is missing"):
        mf.load(d)


def _ip_dict() -> dict:
    """An ip_dict as pynq's .hwh parser builds it, for a design that is what kernel_iface says."""
    return {k.instance: {"type": k.vlnv, "phys_addr": k.base_addr, "addr_range": ki.ADDR_RANGE,
                         "registers": k.pynq_registers()} for k in ki.KERNELS.values()}


def test_hwh_ip_dict_checks():
    mf.check_ip_dict(_ip_dict(), "good.hwh")
    d = _ip_dict()
    d["e2t_engine_0"]["phys_addr"] = 0x43C3_0000
    with pytest.raises(mf.ManifestError, match=r"e2t_engine at 0x43c30000, expected 0x43c00000"):
        mf.check_ip_dict(d, "x.hwh")
    d = _ip_dict()
    del d["e2t_engine_0"]["registers"]["mult_s"]
    with pytest.raises(mf.ManifestError, match="e2t_engine: no registers at offsets .*arguments differ"):
        mf.check_ip_dict(d, "x.hwh")
    d = _ip_dict()
    d["e2t_engine_0"]["type"] = "e2train.org:hls:e2t_engine:1.0"
    with pytest.raises(mf.ManifestError, match="no IP with VLNV .*e2t_engine:2.3 .*different vendor/library/version"):
        mf.check_ip_dict(d, "x.hwh")
    # a design of interface 1.0 (three IPs, one per pass) is not ours
    old = {f"{n}_0": {"type": f"e2train.org:hls:{n}:1.0", "phys_addr": 0x43C0_0000 + 0x1_0000 * i}
           for i, n in enumerate(("conv_fwd", "conv_bwd_data", "conv_bwd_weight_psg"))}
    with pytest.raises(mf.ManifestError, match="no IP with VLNV e2train.org:hls:e2t_engine:2.3"):
        mf.check_ip_dict(old, "old.hwh")


def test_manifest_tool_rejects_a_hwh_without_our_kernels(tmp_path, capsys):
    # a real Vivado .hwh (a PYNQ-Z2 resizer design) shipped as pynqmetadata's test data
    pynqmetadata = pytest.importorskip("pynqmetadata")
    resizer = Path(pynqmetadata.__file__).parent / "tests" / "hwhs" / "resizer.hwh"
    if not resizer.is_file():
        pytest.skip("no Vivado .hwh available to parse (pynqmetadata's test data)")
    bit = tmp_path / "e2train.bit"
    bit.write_bytes(b"\0" * 64)
    rc = mf.main(["--board", "pynq-z2", "--bit", str(bit), "--hwh", str(resizer), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no IP with VLNV e2train.org:hls:e2t_engine:2.3" in err
    assert not (tmp_path / "o" / mf.MANIFEST_NAME).exists()
    bad = tmp_path / "bad.hwh"
    bad.write_text("<EDKSYSTEM><MODULES>")
    assert mf.main(["--board", "pynq-z2", "--bit", str(bit), "--hwh", str(bad), "--out", str(tmp_path)]) == 2
    assert "cannot parse" in capsys.readouterr().err

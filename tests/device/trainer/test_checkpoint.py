"""Checkpoints: atomic, verified, and a resumed run equals the uninterrupted one bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from e2train.core import golden
from e2train.device import checkpoint as ckpt
from e2train.device.trainer import Trainer
from e2train.device.train_config import ConfigError

CFG = dict(model="resnet8", width=4, batch_size=32, epochs=2, smd=True, smd_energy_ratio=0.5,
           slu=True, progress_every=1, checkpoint_every=2, conv_lr=0.01)
NO_SMD = dict({k: v for k, v in CFG.items() if k != "smd_energy_ratio"}, smd=False)   # the ratio needs SMD on


class PowerCut(Exception):
    pass


def _final_state(tr):
    s = dict(tr.model.state())
    s.update({f"v/{k}": v for k, v in tr.opt.velocity.items()})
    return s


def test_resume_after_a_crash_gives_the_same_weights(small_digits, tmp_path):
    data = small_digits
    ref = Trainer(CFG, data, golden)
    ref_res = ref.run()
    path = tmp_path / "run" / "ckpt.npz"
    saves = []

    def crash_after_third_checkpoint(ev):
        if ev["event"] == "checkpoint":
            saves.append((ev["epoch"], ev["batch"]))
        if ev["event"] == "progress" and len(saves) >= 3:
            raise PowerCut()                       # dies between checkpoints, mid-epoch

    with pytest.raises(PowerCut):
        Trainer(CFG, data, golden, on_event=crash_after_third_checkpoint, checkpoint=path).run()
    assert path.exists() and ckpt.prev_path(path).exists()
    events = []
    resumed = Trainer(CFG, data, golden, checkpoint=path, on_event=events.append)
    res = resumed.run()
    start = next(e for e in events if e["event"] == "started")
    assert start["resumed_at"] == {"epoch": saves[-1][0], "batch": saves[-1][1]}
    assert start["resumed_at"] != {"epoch": 0, "batch": 0}
    a, b = _final_state(ref), _final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert res["test_acc"] == ref_res["test_acc"]
    assert res["skips"] == ref_res["skips"]
    assert res["work"] == ref_res["work"]
    # a finished run resumes to "nothing left to do" and leaves the weights alone
    again = Trainer(CFG, data, golden, checkpoint=path).run()
    assert again["epochs_done"] == ref_res["epochs_done"]


def _small_ckpt(path, value=1.0):
    return ckpt.save(path, {"w": np.full((4, 3), value, np.float32), "i": np.arange(5, dtype=np.int32)},
                     {"epoch": int(value)})


def test_truncated_or_altered_checkpoint_is_rejected_and_previous_kept(tmp_path):
    path = tmp_path / "c.npz"
    _small_ckpt(path, 1.0)
    _small_ckpt(path, 2.0)                         # 1.0 becomes .prev
    arrays, meta = ckpt.load(path)
    assert meta["epoch"] == 2 and arrays["w"][0, 0] == 2.0
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])         # power cut while copying, say
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        ckpt.load(path)
    warnings = []
    arrays, meta, used = ckpt.load_latest(path, warn=warnings.append)
    assert used == ckpt.prev_path(path) and meta["epoch"] == 1
    assert any("corrupt" in w for w in warnings)
    # saving again sets the corrupt file aside and keeps the good previous one
    _small_ckpt(path, 3.0)
    assert ckpt.load(ckpt.prev_path(path))[1]["epoch"] == 1
    assert path.with_name("c.npz.corrupt").exists()


def test_checksum_catches_altered_arrays(tmp_path):
    path = tmp_path / "c.npz"
    arrays = {"w": np.arange(6, dtype=np.float32)}
    ckpt.save(path, arrays, {})
    got, meta = ckpt.load(path)
    # rewrite the same zip with one array changed but the old metadata
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    entries["w"] = entries["w"] + 1
    np.savez(path, **entries)
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.load(path)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(path)


def _rewrite_meta(path, edit):
    """The same arrays with the metadata edited (checksum still valid)."""
    import json
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    meta = edit(json.loads(entries.pop(ckpt.META_KEY).tobytes().decode()))
    with open(path, "wb") as f:                 # a file object: savez would add .npz to a name
        np.savez(f, **entries, **{ckpt.META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})


@pytest.mark.parametrize("edit", [lambda m: {k: v for k, v in m.items() if k != "contract_version"},
                                  lambda m: {**m, "contract_version": 1}], ids=["no field", "v1"])
def test_checkpoint_of_another_contract_is_refused(small_digits, tmp_path, edit):
    path = tmp_path / "ckpt.npz"
    cfg = dict(NO_SMD, epochs=1, checkpoint_every=1)
    Trainer(cfg, small_digits, golden, checkpoint=path).run()
    assert ckpt.load(path)[1]["contract_version"] == 2
    for p in (path, ckpt.prev_path(path)):
        _rewrite_meta(p, edit)
    with pytest.raises(ckpt.CheckpointError, match=r"trained under fixed-point contract v1, this e2train implements v2"):
        Trainer(cfg, small_digits, golden, checkpoint=path)._resume()


def test_checkpoint_of_format_1_is_refused_in_one_line(small_digits, tmp_path, capsys):
    """Format 1 held each conv's input max and no block-output maxima (BN ran on the ARM): its
    scale state does not fit the block flow, so it is refused, not half loaded."""
    path = tmp_path / "ckpt.npz"
    cfg = dict(NO_SMD, epochs=1, checkpoint_every=1)
    Trainer(cfg, small_digits, golden, checkpoint=path).run()
    assert ckpt.load(path)[1]["version"] == ckpt.VERSION == 2
    assert any(k.startswith("scale/") and k.endswith(".out_max") for k in ckpt.load(path)[0])
    for p in (path, ckpt.prev_path(path)):
        _rewrite_meta(p, lambda m: {**m, "version": 1})
    with pytest.raises(ckpt.CheckpointError) as e:
        Trainer(cfg, small_digits, golden, checkpoint=path)._resume()
    msg = str(e.value)
    assert "\n" not in msg and "format version 1; this trainer reads version 2: start a fresh run" in msg


def test_trainer_resume_falls_back_to_previous_and_refuses_other_config(small_digits, tmp_path):
    path = tmp_path / "ckpt.npz"
    cfg = dict(NO_SMD, epochs=1, checkpoint_every=1)
    Trainer(cfg, small_digits, golden, checkpoint=path).run()
    raw = path.read_bytes()
    path.write_bytes(raw[:100])
    events = []
    tr = Trainer(cfg, small_digits, golden, checkpoint=path, on_event=events.append)
    tr._resume()
    assert any(e["event"] == "warning" and "corrupt" in e["message"] for e in events)
    assert (tr.epoch, tr.batch) != (0, 0)          # resumed from .prev
    with pytest.raises(ConfigError, match="different config"):
        Trainer(dict(cfg, width=8), small_digits, golden, checkpoint=ckpt.prev_path(path))._resume()


def test_no_pickle_in_checkpoints(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        ckpt.save(tmp_path / "x.npz", {"o": np.array([object()], dtype=object)}, {})


# What TrainConfig.to_dict() wrote into checkpoints before the shared vocabulary (core.train_keys)
OLD_NAMES = {"model": "depth", "beta": "psg_beta", "slu_target": "gate_target", "slu_alpha": "gate_alpha",
             "slu_hidden": "gate_hidden", "slu_lr": "gate_lr", "slu_sampling": "gate_sampling",
             "slu_downsample": "gate_downsample"}


def _as_the_old_trainer_wrote_it(cfg: dict) -> dict:
    old = {OLD_NAMES.get(k, k): v for k, v in cfg.items()
           if k not in ("augment", "schedule", "slu_cost", "slu_cell", "precision", "smd_energy_ratio")}
    old.update(depth=int(cfg["model"][len("resnet"):]), psg=cfg["precision"] == "psg", act_bits=8, grad_bits=16,
               smd_epoch_multiplier=cfg["smd_energy_ratio"] / (1 - cfg["smd_p"]))
    return old


def test_a_checkpoint_written_with_the_old_key_names_resumes(small_digits, tmp_path):
    path = tmp_path / "ckpt.npz"
    cfg = dict(model="resnet8", width=4, batch_size=32, epochs=1, smd=False, slu=True, slu_hidden=4,
               checkpoint_every=1, conv_lr=0.01)
    Trainer(cfg, small_digits, golden, checkpoint=path).run()
    _rewrite_meta(path, lambda m: {**m, "config": _as_the_old_trainer_wrote_it(m["config"])})
    assert "gate_hidden" in ckpt.load(path)[1]["config"]
    tr = Trainer(cfg, small_digits, golden, checkpoint=path)
    tr._resume()
    assert (tr.epoch, tr.batch) != (0, 0)
    with pytest.raises(ConfigError, match=r"different config \(keys \['slu_hidden'\]\)"):
        Trainer(dict(cfg, slu_hidden=5), small_digits, golden, checkpoint=path)._resume()

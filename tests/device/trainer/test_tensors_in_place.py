"""Training on the simulated board keeps the fabric's tensors where the fabric wrote them: the
trainer begins each step (and each evaluation batch) on the PYNQ backend's step arena, the run
is the same bit for bit as with every tensor copied, and the ARM copies a fraction of what it
did."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIM = Path(__file__).resolve().parents[3] / "bitstreams" / "sim"


def _run(small_digits, arena_bytes):
    from e2train.device.backend_pynq import PynqBackend
    from e2train.device.overlay import KernelOverlay
    from e2train.device.trainer import Trainer
    ov = KernelOverlay(SIM, sim_impl="golden")
    be = PynqBackend(ov, arena_bytes=arena_bytes)
    cfg = dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2)
    tr = Trainer(cfg, small_digits, be)
    res = tr.run(resume=False)
    return tr, res, be.copy_stats(), len(ov.device._allocs)


def test_in_place_tensors_change_nothing_but_the_copies(small_digits):
    tr, res, st, _ = _run(small_digits, 64 << 20)
    ref, ref_res, ref_st, _ = _run(small_digits, 0)
    assert res["test_acc"] == ref_res["test_acc"] and res["modelled"] == ref_res["modelled"]
    for k, v in ref.model.float_params().items():
        np.testing.assert_array_equal(tr.model.float_params()[k], v)
    for c, rc in zip(tr.model.convs(), ref.model.convs()):
        np.testing.assert_array_equal(c.w_master, rc.w_master)
    assert ref_st["in_place"] == 0 and st["in_place"] > 0
    copied, ref_copied = st["copied_in"] + st["copied_out"], ref_st["copied_in"] + ref_st["copied_out"]
    # what is left: the ARM's own inputs (images, loss gradients, weights, master weights) and
    # the small outputs (sums, signs); every activation stays on the fabric's side
    assert copied < ref_copied / 4, (st, ref_st)


def test_a_step_after_the_first_allocates_nothing(small_digits):
    from e2train.device.backend_pynq import PynqBackend
    from e2train.device.overlay import KernelOverlay
    from e2train.device.trainer import Trainer
    x_tr, y_tr, _, _ = small_digits
    ov = KernelOverlay(SIM, sim_impl="golden")
    cfg = dict(model="resnet8", width=4, batch_size=32, progress_every=0, epochs=1, seed=0, slu_hidden=2)
    tr = Trainer(cfg, (x_tr, y_tr), PynqBackend(ov))
    tr.train_step(x_tr[:32], y_tr[:32], 0)
    tr.train_step(x_tr[32:64], y_tr[32:64], 1)          # the layers' scales are set: no calibration calls
    live, arena = len(ov.device._allocs), tr.backend.copy_stats()["arena_buffers"]
    for t in range(2, 5):
        tr.train_step(x_tr[32 * t:32 * t + 32], y_tr[32 * t:32 * t + 32], t)
    assert len(ov.device._allocs) == live and tr.backend.copy_stats()["arena_buffers"] == arena

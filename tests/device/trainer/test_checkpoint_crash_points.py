"""A power cut at every point of a checkpoint save: the save runs in a forked child that
dies with os._exit (no cleanup, as a power cut) just before its k-th write, fsync or
rename; then the parent checks what a resume finds: the newest complete checkpoint."""
import io
import os

import numpy as np
import pytest

from e2train.device import board
from e2train.device import checkpoint as ckpt

# save's steps, in order: write the temporary file, fsync it, move the current checkpoint to
# .prev, rename the temporary file into place, fsync the directory
STEPS = ("write", "fsync-file", "rename-to-prev", "rename-into-place", "fsync-dir", "done")


def _arrays(v):
    return {"w": np.full((4, 3), v, np.float32), "step": np.int64(v)}


def _save_cut_at(path, arrays, meta, step: str, *, truncate: bool = False) -> None:
    """Run ckpt.save in a child that dies right before ``step`` (``truncate``: mid-write)."""
    pid = os.fork()
    if pid == 0:                                   # the child: dies at the chosen point
        try:
            calls = {"fsync": 0}
            real_fsync, real_replace, real_savez = os.fsync, os.replace, np.savez

            def fsync(fd):
                calls["fsync"] += 1
                if ("fsync-file" if calls["fsync"] == 1 else "fsync-dir") == step:
                    os._exit(0)
                real_fsync(fd)

            def replace(a, b):
                if ("rename-into-place" if ".tmp-" in str(a) else "rename-to-prev") == step:
                    os._exit(0)
                real_replace(a, b)

            def savez(f, **kw):
                if step == "write":
                    if truncate:
                        buf = io.BytesIO()
                        real_savez(buf, **kw)
                        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                        f.flush()
                    os._exit(0)
                real_savez(f, **kw)

            os.fsync, os.replace, np.savez = fsync, replace, savez
            ckpt.save(path, arrays, meta)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("first_save", [False, True])
def test_resume_finds_the_newest_complete_checkpoint_after_a_cut_at_every_step(tmp_path, step, first_save):
    path = tmp_path / "checkpoint.npz"
    if not first_save:
        ckpt.save(path, _arrays(1), {"epoch": 1})
        ckpt.save(path, _arrays(2), {"epoch": 2})      # a .prev exists too (epoch 1)
    _save_cut_at(path, _arrays(3), {"epoch": 3}, step)
    warnings = []
    got = ckpt.load_latest(path, warn=warnings.append)
    # The new checkpoint is complete once its data is written (in the test the page cache
    # survives; on a board an unsynced file that lost data fails its checksum: see below).
    newest = None if step == "write" else 3
    if newest is None and first_save:
        assert got is None and not ckpt.exists(path)         # nothing complete: a fresh start is allowed
        return
    want = newest or 2
    arrays, meta, where = got
    assert meta["epoch"] == want and int(arrays["step"]) == want
    assert ckpt.exists(path)
    if where != path:
        assert any("using" in w for w in warnings), warnings
    # the next save after recovery is newer than anything on disk, and cleans up
    ckpt.save(path, _arrays(4), {"epoch": 4})
    arrays, meta, where = ckpt.load_latest(path)
    assert meta["epoch"] == 4 and where == path
    assert not list(tmp_path.glob(".checkpoint.npz.tmp-*"))


def test_a_save_cut_mid_write_falls_back_and_says_so(tmp_path):
    path = tmp_path / "checkpoint.npz"
    ckpt.save(path, _arrays(1), {"epoch": 1})
    _save_cut_at(path, _arrays(2), {"epoch": 2}, "write", truncate=True)
    assert list(tmp_path.glob(".checkpoint.npz.tmp-*"))          # the torn file is there
    warnings = []
    arrays, meta, where = ckpt.load_latest(path, warn=warnings.append)
    assert meta["epoch"] == 1 and where == path
    assert any("unfinished save" in w for w in warnings), warnings


def test_only_prev_left_resume_uses_it_and_a_fresh_start_refuses(tmp_path):
    """The crash window of the issue: only .prev survives. --resume recovers it; a fresh
    start with the same run id refuses instead of resuming silently."""
    d = tmp_path / "run1"
    path = d / "checkpoint.npz"
    ckpt.save(path, _arrays(1), {"epoch": 1})
    ckpt.save(path, _arrays(2), {"epoch": 2})
    path.unlink()                                                 # the cut between the renames, old layout
    assert ckpt.exists(path)
    with pytest.raises(ValueError, match="already has a checkpoint: pass --resume"):
        board.make_trainer({}, None, None, ckpt_dir=d, resume=False, on_event=None)
    warnings = []
    arrays, meta, where = ckpt.load_latest(path, warn=warnings.append)
    assert meta["epoch"] == 1 and where == ckpt.prev_path(path)
    assert warnings and "previous good checkpoint" in warnings[0]
    with pytest.raises(ValueError, match="nothing to resume"):
        board.make_trainer({}, None, None, ckpt_dir=tmp_path / "other", resume=True, on_event=None)

"""Checkpoints that survive a power cut: atomic, checksummed, pickle-free.

A checkpoint is one ``.npz`` (``np.savez``, read back with ``allow_pickle=False``) holding the
arrays plus one entry ``__meta__``: UTF-8 JSON with the format version, the fixed-point contract
version (``core.fixedpoint.CONTRACT_VERSION``; another is refused), the metadata the caller
gives (config, epoch/step, RNG description, statistics) and a SHA-256 over every array's
name, dtype, shape and bytes.

Writing: the new file goes to a temporary name in the same directory, is flushed and fsynced,
the current checkpoint (if any, and if it verifies) becomes ``<name>.prev`` (one that does not
verify is set aside as ``<name>.corrupt`` and the good ``.prev`` is kept), the new one is renamed into place with
``os.replace`` and the directory is fsynced. A power cut at any point leaves either the new
checkpoint or the previous good one on disk. Reading: a truncated zip, a checksum mismatch or
a missing field raises :class:`CheckpointError` naming the file and the problem;
:func:`load_latest` then falls back and says so.

Every save numbers its checkpoint (``generation``, one more than the newest on disk), and
:func:`load_latest` takes the newest checkpoint that verifies among ``<name>``, a temporary
file left by a save cut short after its data was written (complete and checksummed, but not
yet renamed: a power cut between the two renames), and ``<name>.prev``. :func:`exists` says
whether any of them is there, so that a fresh run never picks up an old one unnoticed.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..core.fixedpoint import CONTRACT_VERSION

FORMAT = "e2train-device-checkpoint"
# 2: BN on the fabric's block operations (the block outputs' running maxima in the state, the
# convs' input maxima gone); a version-1 checkpoint holds another scale state and is refused
VERSION = 2
META_KEY = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted (corrupt, truncated, wrong format)."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def prev_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".prev")


def _tmp_paths(path: Path) -> list[Path]:
    """Temporary files of saves of ``path`` that did not finish (any process)."""
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def exists(path: str | os.PathLike) -> bool:
    """Whether anything a resume could use is on disk: the checkpoint, its ``.prev``, or a
    save's temporary file."""
    path = Path(path)
    return path.exists() or prev_path(path).exists() or any(_generation(p) >= 0 for p in _tmp_paths(path))


def _generation(path: Path) -> int:
    try:
        return int(load(path)[1].get("generation", 0))
    except CheckpointError:
        return -1


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY} is reserved")
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"checkpoint array {k} has dtype object (would need pickle)")
    generation = 1 + max([0] + [_generation(p) for p in (path, prev_path(path), *_tmp_paths(path)) if p.exists()])
    full = {"format": FORMAT, "version": VERSION, "contract_version": CONTRACT_VERSION,
            "sha256": _digest(arrays), **meta, "generation": generation}
    meta_bytes = np.frombuffer(json.dumps(full, sort_keys=True).encode(), dtype=np.uint8)
    d = path.parent
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **{META_KEY: meta_bytes})
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            # only a checkpoint that verifies may replace the previous good one
            try:
                load(path)
                os.replace(path, prev_path(path))
            except CheckpointError:
                os.replace(path, path.with_name(path.name + ".corrupt"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(d)
    for stale in _tmp_paths(path):      # left by an earlier save that was cut short
        stale.unlink(missing_ok=True)
    return path


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:          # some platforms cannot open directories; nothing more to do
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a checkpoint, verified; CheckpointError if it cannot be trusted."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                              "it cannot be used") from None
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no metadata: not an e2train device checkpoint")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has unreadable metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an e2train device checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')}; "
                              f"this trainer reads version {VERSION}: start a fresh run, or resume with the "
                              "e2train that wrote it")
    if meta.get("sha256") != _digest(arrays):
        raise CheckpointError(f"checkpoint {path} fails its checksum: the arrays were altered or damaged")
    # weights trained under another fixed-point contract (no field: v1, before versions were
    # recorded) followed other predictor signs: resuming would mix two rules in one run
    if meta.get("contract_version", 1) != CONTRACT_VERSION:
        raise CheckpointError(f"checkpoint {path} was trained under fixed-point contract "
                              f"v{meta.get('contract_version', 1)}, this e2train implements v{CONTRACT_VERSION} "
                              "(docs/fixed-point.md): start a fresh run, or resume with the e2train that wrote it")
    return arrays, meta


def load_latest(path: str | os.PathLike, warn=None) -> tuple[dict[str, np.ndarray], dict, Path] | None:
    """The newest checkpoint that verifies (highest ``generation``) among ``path``, the
    temporary files of saves cut short, and ``path.prev``; None if none exists.

    Each one that does not verify, and the use of any but ``path``, is reported through
    ``warn(message)`` (files are left on disk for inspection); if none verifies, the error
    of the first is raised.
    """
    path = Path(path)
    candidates = [p for p in (path, *_tmp_paths(path), prev_path(path)) if p.exists()]
    if not candidates:
        return None
    first_err = None
    best = None
    for p in candidates:
        try:
            arrays, meta = load(p)
        except CheckpointError as e:
            first_err = first_err or e
            if warn is not None and p != path and p.name.startswith("."):
                warn(f"ignoring an unfinished save {p.name}: {e}")
            elif warn is not None:
                warn(str(e))
            continue
        if best is None or int(meta.get("generation", 0)) > int(best[1].get("generation", 0)):
            best = (arrays, meta, p)
    if best is None:
        if all(p.name.startswith(".") for p in candidates):
            return None         # only torn files of a first save: there is no checkpoint yet
        raise first_err
    if best[2] != path and warn is not None:
        what = "the previous good checkpoint" if best[2] == prev_path(path) else \
            "a complete checkpoint whose save was cut short before its rename"
        warn(f"using {what} {best[2]} (generation {best[1].get('generation', 0)})")
    return best

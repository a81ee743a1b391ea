"""Atomic commits for directory stores on a local filesystem.

Two mechanisms, chosen by the kind of write:

* **write aside, then swap** (new stores and overwrites): everything is written to a
  sibling ``<store>.stengine-tmp-<id>``; the old store is renamed aside, the new one
  renamed into place, the old one deleted. A failure while writing leaves the old
  store untouched. A crash between the two renames leaves the old store at
  ``<store>.stengine-old-<id>``; :func:`recover` puts it back.
* **journal, then roll back** (appends and in-place updates): before a write, the
  files it may overwrite (every ``zarr.json`` and any partially filled boundary chunk)
  are copied to ``<store>.stengine-txn``; the journal is deleted when the write
  completes. If the write fails, or the process dies, the journal is replayed by
  :func:`recover` (called before every open and write), restoring the old bytes and
  deleting chunks written beyond the old shape.

Recovery never touches a live writer's files: writers hold the store's write lock
(:func:`stengine.io._lock.write_lock`) for the whole write, and :func:`recover` works
only while holding that lock (re-entrant for the writer itself; a reader tries it
without waiting and leaves everything alone when a writer is alive). A dead writer's
flock is released by the kernel, so its leftovers – a journal, a half-swapped store,
``<store>.stengine-tmp-*`` folders – are cleaned by the next open or write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..errors import StoreLockedError
from . import _lock

TMP, OLD, TXN = ".stengine-tmp-", ".stengine-old-", ".stengine-txn"


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(path.name + tag)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def write_aside(path: Path):
    """Yield a temporary sibling path to write; on success swap it into ``path``."""
    path = Path(path)
    recover(path)
    token = uuid.uuid4().hex[:10]
    tmp = _sibling(path, TMP + token)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    old = _sibling(path, OLD + token)
    if path.exists():
        os.rename(path, old)
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


@contextlib.contextmanager
def journal(path: Path, files: Iterable[str], beyond: dict[str, tuple[int, int, int]]):
    """Back up ``files`` (relative to ``path``) before an in-place write; roll back on failure.

    ``beyond`` maps an array's relative path to ``(axis, old_len, chunk_len)``: chunk
    files along ``axis`` at indices past the old length are deleted on rollback.
    """
    path = Path(path)
    recover(path)
    txn = _sibling(path, TXN)
    staging = _sibling(path, TXN + "-staging")
    shutil.rmtree(staging, ignore_errors=True)
    saved = []
    for rel in files:
        src = path / rel
        if src.is_file():
            dst = staging / "files" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            saved.append(rel)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "manifest.json").write_text(json.dumps({"files": saved, "beyond": beyond}))
    os.rename(staging, txn)  # the journal is valid from here on
    _fsync_dir(path.parent)
    try:
        yield
    except BaseException:
        rollback(path)
        raise
    shutil.rmtree(txn)


def rollback(path: Path) -> None:
    """Undo an unfinished in-place write recorded in ``<path>.stengine-txn``."""
    txn = _sibling(Path(path), TXN)
    manifest = json.loads((txn / "manifest.json").read_text())
    for rel, (axis, old_len, chunk_len) in manifest["beyond"].items():
        _delete_chunks_beyond(Path(path) / rel, axis, old_len, chunk_len)
    for rel in manifest["files"]:
        dst = Path(path) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(txn / "files" / rel, dst)
    for part in Path(path).rglob("*.partial"):  # a chunk write killed halfway (zarr)
        part.unlink(missing_ok=True)
    shutil.rmtree(txn)


def _delete_chunks_beyond(array_dir: Path, axis: int, old_len: int, chunk_len: int) -> None:
    first_new = -(-old_len // chunk_len)
    root = array_dir / "c"
    if not root.is_dir():
        return
    # default chunk-key encoding: c/<i0>/<i1>/...; the axis-th level holds chunk indices
    level = [root]
    for _ in range(axis):
        level = [p for d in level for p in d.iterdir() if p.is_dir()]
    for d in level:
        for p in d.iterdir():
            if p.name.isdigit() and int(p.name) >= first_new:
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def pending(path: Path) -> bool:
    """True if an interrupted (or running) write left anything next to ``path``.

    One ``stat`` and one listing of the parent directory.
    """
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return False
    prefixes = (path.name + TXN, path.name + OLD, path.name + TMP)
    return any(n.startswith(prefixes) for n in names)


def recover(path: Path, *, wait: float | None = 0) -> bool:
    """Finish or undo an interrupted commit at ``path``; return True if anything was done.

    Works only under the store's write lock: re-entrant when this thread holds it,
    else taken for the call (``wait`` seconds; 0 = only if free, None = the default
    lock timeout). If a live writer holds it, nothing is touched and False returned.
    """
    path = Path(path)
    if not pending(path):
        return False
    if _lock.holds_write_lock(path):
        return _recover_locked(path)
    try:
        with _lock.write_lock(path, timeout=wait):
            return _recover_locked(path)
    except StoreLockedError:
        if wait is None or wait > 0:
            raise
        return False  # a live writer: these are its files


def _recover_locked(path: Path) -> bool:
    done = False
    if _sibling(path, TXN).exists():
        warnings.warn(f"{path}: an earlier write was interrupted; rolling it back "
                      "(the store is as it was before that write)", stacklevel=4)
        rollback(path)
        done = True
    shutil.rmtree(_sibling(path, TXN + "-staging"), ignore_errors=True)
    olds = sorted(path.parent.glob(path.name + OLD + "*")) if path.parent.exists() else []
    for old in olds:
        if not path.exists():
            warnings.warn(f"{path}: a swap was interrupted; restoring the previous store",
                          stacklevel=4)
            os.rename(old, path)
            done = True
        else:
            shutil.rmtree(old, ignore_errors=True)
    # a killed write aside: nobody else can be writing it while we hold the lock
    for tmp in path.parent.glob(path.name + TMP + "*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        done = True
    return done

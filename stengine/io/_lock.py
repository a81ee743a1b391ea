"""Advisory store locks for local filesystems: one writer, or many readers, at a time.

A store ``<path>`` is guarded by the sibling file ``<path>.stengine-lock`` (a sibling,
because writes swap the store directory itself). Locks are ``flock(2)`` locks on that
file: the kernel drops them when the holding process dies, so a crashed writer never
leaves a stale lock behind, and "is a writer alive?" is answered by trying the lock.

* :func:`write_lock` – exclusive: taken by every write (overwrite, append, point-store
  append) for the whole write, and by recovery before it rolls a journal back.
* :func:`read_lock` – shared: taken while a reader opens a store (reads its metadata),
  so an open waits for a live writer's commit instead of seeing half of it, and never
  rolls back a journal that a live writer holds.

A second writer waits up to ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT`, or
env ``STENGINE_LOCK_TIMEOUT`` read at each call), then gets a
:class:`~stengine.errors.StoreLockedError` naming the store and the holder's pid.

The lock file exists only while someone holds or waits for the lock: the last holder
deletes it. That is safe because a lock counts only if, once taken, the file at
``lock_path(path)`` is still the inode that was locked (else it is taken again on the
new file), and only a holder of the exclusive lock deletes the file.

Locks are re-entrant within one thread (a writer holding the write lock may open the
store or call recovery); other threads of the same process open the file again, and
flock locks are per open file description, so they exclude each other like processes.
A reader in a directory it cannot write (a read-only copy of a store) reads without a
lock: nobody can write there either. On network filesystems flock may be local to one
client (NFS before v4 or without lock support): docs/reliability.md says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import StoreLockedError

__all__ = ["write_lock", "read_lock", "writer_alive", "holds_write_lock", "lock_path",
           "DEFAULT_TIMEOUT"]

LOCK = ".stengine-lock"
DEFAULT_TIMEOUT = 600.0  # seconds; env STENGINE_LOCK_TIMEOUT overrides it
_POLL_MIN, _POLL_MAX = 0.001, 0.05
_local = threading.local()


def lock_path(path) -> Path:
    """The lock file guarding the store at ``path``."""
    path = Path(path)
    return path.with_name(path.name + LOCK)


def _key(path) -> str:
    lp = lock_path(path)
    return os.path.join(os.path.realpath(lp.parent), lp.name)


def _held() -> dict:
    h = getattr(_local, "held", None)
    if h is None or _local.pid != os.getpid():  # a forked child holds nothing
        h = _local.held = {}
        _local.pid = os.getpid()
    return h


def _default_timeout() -> float:
    env = os.environ.get("STENGINE_LOCK_TIMEOUT")
    if env is None:
        return DEFAULT_TIMEOUT
    try:
        return float(env)
    except ValueError:
        raise ValueError(f"STENGINE_LOCK_TIMEOUT must be a number of seconds; got {env!r}") \
            from None


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if info:
            return f" (held by pid {info.get('pid')} on {info.get('host')})"
    return ""


def _same_file(fd: int, lp: str) -> bool:
    try:
        st = os.stat(lp)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def _open(lp: str, exclusive: bool) -> int | None:
    """An fd on the lock file (created if needed); None when a reader cannot create it."""
    try:
        return os.open(lp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        if exclusive:
            raise
        return None  # the directory is missing: the reader finds no store and says so
    except OSError as e:
        if exclusive or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:  # read-only directory: an existing lock file can still be locked shared
        return os.open(lp, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _acquire(path, kind: int, timeout: float) -> int | None:
    lp = _key(path)
    exclusive = kind == fcntl.LOCK_EX
    if exclusive:
        os.makedirs(os.path.dirname(lp), exist_ok=True)
    end = time.monotonic() + timeout
    poll = _POLL_MIN
    while True:
        fd = _open(lp, exclusive)
        if fd is None:
            return None
        try:
            while True:
                try:
                    fcntl.flock(fd, kind | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= end:
                        what = "write" if exclusive else "read"
                        raise StoreLockedError(
                            f"{Path(path)}: another process is writing this store"
                            f"{_holder(fd)}; waited {timeout:g} s for its {what} lock. Retry "
                            "when it is done, or pass a longer lock_timeout= (or set "
                            "STENGINE_LOCK_TIMEOUT, seconds).") from None
                    time.sleep(poll)
                    poll = min(poll * 2, _POLL_MAX)
            if _same_file(fd, lp):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the last holder deleted the file we locked: lock the new one
    if exclusive:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
    return fd


def _release(fd: int, lp: str, exclusive: bool) -> None:
    try:
        if not exclusive:
            # the last reader deletes the file too: it tries to become the only holder
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return
            if not _same_file(fd, lp):
                return
        with contextlib.suppress(OSError):
            os.unlink(lp)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _lock(path, kind: int, timeout: float | None):
    key = _key(path)
    held = _held()
    mine = held.get(key)
    if mine is not None:  # re-entrant within this thread
        if kind == fcntl.LOCK_EX and mine[0] != fcntl.LOCK_EX:
            raise RuntimeError(f"{path}: cannot take the write lock while holding the read "
                               "lock in the same thread")
        mine[1] += 1
        try:
            yield
        finally:
            mine[1] -= 1
        return
    fd = _acquire(path, kind, _default_timeout() if timeout is None else float(timeout))
    if fd is None:  # a reader in a directory nobody can write
        yield
        return
    held[key] = [kind, 1]
    try:
        yield
    finally:
        del held[key]
        _release(fd, key, kind == fcntl.LOCK_EX)


def write_lock(path, *, timeout: float | None = None):
    """Hold the store's exclusive (writer) lock for the ``with`` block.

    Parameters
    ----------
    path : str | pathlib.Path
        The store (its lock file is the sibling ``<path>.stengine-lock``).
    timeout : float, optional
        Seconds to wait for another writer or reader; default ``STENGINE_LOCK_TIMEOUT``
        or :data:`DEFAULT_TIMEOUT`.

    Raises
    ------
    StoreLockedError
        Still held by another process (or thread) after ``timeout`` seconds.
    """
    return _lock(path, fcntl.LOCK_EX, timeout)


def read_lock(path, *, timeout: float | None = None):
    """Hold the store's shared (reader) lock for the ``with`` block (waits for a writer)."""
    return _lock(path, fcntl.LOCK_SH, timeout)


def holds_write_lock(path) -> bool:
    """True if this thread holds the store's write lock."""
    mine = _held().get(_key(path))
    return mine is not None and mine[0] == fcntl.LOCK_EX


def writer_alive(path) -> bool:
    """True if some process (or another thread) holds the store's write lock right now."""
    lp = _key(path)
    try:
        fd = os.open(lp, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return True
            raise
        return False
    finally:
        os.close(fd)

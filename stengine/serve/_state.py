"""The service's state: SQLite (WAL) for sources and jobs, Fernet for source secrets."""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..io.sources import SourceSpec

RESTART_REASON = "service restarted while the job was running"
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (name TEXT PRIMARY KEY, redacted TEXT NOT NULL,
    sealed BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{}',
    log TEXT NOT NULL DEFAULT '', created REAL NOT NULL, started REAL, ended REAL,
    error TEXT, result TEXT);
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, created REAL NOT NULL,
    last_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS model_versions (name TEXT NOT NULL, version INTEGER NOT NULL,
    record TEXT NOT NULL, path TEXT NOT NULL, origin TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_aliases (name TEXT NOT NULL, alias TEXT NOT NULL,
    version INTEGER NOT NULL, PRIMARY KEY (name, alias));
"""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def read_token(state_dir: Path) -> str | None:
    """The token from ``$STENGINE_TOKEN`` or ``<state>/token``; None if neither exists."""
    env = os.environ.get("STENGINE_TOKEN", "").strip()
    if env:
        return env
    p = Path(state_dir) / "token"
    return p.read_text().strip() if p.exists() else None


def ensure_token(state_dir: Path) -> tuple[str, bool]:
    """``(token, created)``: the existing token, or a new one written to a 0600 file."""
    tok = read_token(state_dir)
    if tok:
        return tok, False
    tok = secrets.token_urlsafe(32)
    write_private(Path(state_dir) / "token", tok.encode())
    return tok, True


class _Sealer:
    """Fernet with a 0600 key file; ``None`` cipher when cryptography is missing."""

    def __init__(self, state_dir: Path):
        try:
            from cryptography.fernet import Fernet
        except ImportError:  # pragma: no cover - cryptography is a dependency here
            self.fernet = None
            return
        kp = Path(state_dir) / "secret.key"
        if not kp.exists():
            write_private(kp, Fernet.generate_key())
        self.fernet = Fernet(kp.read_bytes())

    def seal(self, data: bytes) -> bytes:
        return self.fernet.encrypt(data) if self.fernet else data

    def open(self, data: bytes) -> bytes:
        return self.fernet.decrypt(data) if self.fernet else data


class State:
    """Sources and jobs in ``<state>/state.db``; thread-safe (one connection, a lock)."""

    def __init__(self, state_dir):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "jobs").mkdir(exist_ok=True)
        self.sealer = _Sealer(self.dir)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.dir / "state.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def _tx(self, sql, args=()):
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(sql, args)
                self.db.execute("COMMIT")
                return cur.rowcount
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _all(self, sql, args=()):
        with self.lock:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def close(self):
        with self.lock:
            self.db.close()

    # sources
    @property
    def can_seal(self) -> bool:
        return self.sealer.fernet is not None

    def add_source(self, name: str, spec: SourceSpec) -> None:
        sealed = self.sealer.seal(json.dumps(spec.to_dict()).encode())
        self._tx("INSERT INTO sources VALUES (?, ?, ?, ?)",
                 (name, json.dumps(spec.redacted()), sealed, time.time()))

    def sources(self) -> list[dict]:
        return [{"name": r["name"], "created": r["created"], **json.loads(r["redacted"])}
                for r in self._all("SELECT name, redacted, created FROM sources ORDER BY name")]

    def source(self, name: str) -> dict | None:
        rows = self._all("SELECT name, redacted, created FROM sources WHERE name=?", (name,))
        return ({"name": rows[0]["name"], "created": rows[0]["created"],
                 **json.loads(rows[0]["redacted"])} if rows else None)

    def source_spec(self, name: str) -> SourceSpec | None:
        rows = self._all("SELECT sealed FROM sources WHERE name=?", (name,))
        if not rows:
            return None
        return SourceSpec.from_dict(json.loads(self.sealer.open(rows[0]["sealed"])))

    def delete_source(self, name: str) -> bool:
        return self._tx("DELETE FROM sources WHERE name=?", (name,)) > 0

    # jobs
    def add_job(self, kind: str, spec: dict) -> str:
        jid = uuid.uuid4().hex[:12]
        self._tx("INSERT INTO jobs (id, kind, spec, status, created) VALUES (?, ?, ?, ?, ?)",
                 (jid, kind, json.dumps(spec), "pending", time.time()))
        return jid

    def update_job(self, jid: str, **fields) -> None:
        for k in ("metrics", "result"):
            if k in fields and not isinstance(fields[k], str | None):
                fields[k] = json.dumps(fields[k])
        cols = ", ".join(f"{k}=?" for k in fields)
        self._tx(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), jid))

    def log_job(self, jid: str, line: str) -> None:
        self._tx("UPDATE jobs SET log = log || ? WHERE id=?",
                 (f"{time.strftime('%H:%M:%S')} {line}\n", jid))

    @staticmethod
    def _job(r: dict, log: bool = False) -> dict:
        r = dict(r)
        r["spec"] = json.loads(r["spec"])
        r["metrics"] = json.loads(r["metrics"])
        r["result"] = json.loads(r["result"]) if r["result"] else None
        r["progress"] = round(100 * r["progress"], 1)
        if not log:
            r.pop("log", None)
        return r

    def jobs(self) -> list[dict]:
        return [self._job(r) for r in self._all("SELECT * FROM jobs ORDER BY created DESC")]

    def job(self, jid: str, log: bool = False) -> dict | None:
        rows = self._all("SELECT * FROM jobs WHERE id=?", (jid,))
        return self._job(rows[0], log) if rows else None

    def fail_orphans(self) -> int:
        """Mark jobs a killed service left pending/running as failed; how many."""
        return self._tx("UPDATE jobs SET status='failed', error=?, ended=? "
                        "WHERE status IN ('pending', 'running')", (RESTART_REASON, time.time()))

"""A point store: observation records sorted by an HTM-ST key in 1-D Zarr arrays.

Layout (a Zarr v3 group)::

    <store>/zarr.json          root attrs["stengine_points"]: key scheme, chunk size,
                               columns and the list of runs (the manifest)
    <store>/runs/r000001/      one sorted *run*: 1-D arrays key (uint64), lon, lat
                               (float64, degrees), time (int64 ns since 1970 UTC) and the
                               variables, all chunked alike; chunk_first / chunk_last
                               (uint64) hold each chunk's first and last key
    <store>.stengine-lock      the store's lock file (a sibling: see below)

Appends keep the data sorted: each append sorts its batch by key and merges it with the
newest runs when they are not much larger (size-tiered, so a store holds O(log n)
runs; :meth:`PointStore.compact` merges all into one). A query turns (region, time)
into key ranges, reads only the chunks whose [first, last] keys meet a range (in
parallel with dask), and filters the records exactly.

Concurrency model (local filesystems)
-------------------------------------
* **Runs are immutable.** A run is written under a staging name
  (``runs/r000007.stengine-tmp-<id>``), flushed to disk (fsync) and renamed into place;
  it is never changed afterwards, and a run name is never reused within a store.
* **The manifest is the commit.** ``zarr.json`` is replaced in one atomic rename, after
  the run it names is durable. A manifest therefore never lists a missing run, and a
  batch is visible (exactly once) from the moment its manifest is in place; before that,
  it is not visible at all.
* **One writer at a time.** :meth:`~PointStore.append`, :meth:`~PointStore.compact`
  and :meth:`~PointStore.create` hold the store's exclusive lock
  (:func:`stengine.io._lock.write_lock`, an ``flock`` on ``<store>.stengine-lock`` that
  the kernel drops when the process dies) for the whole read-manifest, write-run,
  commit-manifest sequence, and read the manifest afresh under it, so concurrent
  appenders are serialised and none is lost. A second writer waits up to
  ``lock_timeout`` seconds (default ``STENGINE_LOCK_TIMEOUT``, 600 s), then gets
  :class:`~stengine.errors.StoreLockedError`.
* **Readers never write and never wait for a writer.** ``len``, ``runs``, ``read`` and
  ``query`` re-read the committed manifest (an atomic file, so always whole) and read
  the runs it lists. Runs a concurrent append merged away are renamed out of place
  before they are deleted; a query that finds one gone starts again on the new manifest,
  this time holding the shared lock (:func:`~stengine.io._lock.read_lock`), which keeps
  writers out until it is done. A query thus sees one committed state: whole batches
  only. A manifest that lists a run that is missing even so raises
  :class:`~stengine.errors.StoreCorruptError` naming the store and the run.
* **Crashes.** A writer killed at any point leaves the last committed state visible.
  Its leftovers (staging runs, a staged manifest, runs it wrote but never committed,
  runs it had merged away but not yet deleted) are ignored by readers and removed by the
  next writer, under the lock (with a :class:`UserWarning` when they belonged to an
  uncommitted append). An exception in a writer removes its own leftovers before it
  propagates.
* **Input is checked before anything is written**: every column's type, dtype (safe or
  value-preserving casts only), lon/lat (finite; lat in [-90, 90]) and time (no NaT,
  within the store's task interval ``[t0, t1)``, any ``datetime64`` unit taken exactly);
  errors name the column.

``flock`` locks need a local filesystem (or one whose locks are coherent across
clients); on object stores there is no lock: use one writer process.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import re
import shutil
import time as _time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StoreCorruptError, StoreError, StoreNotFoundError
from ..index import ranges
from ..index._regions import as_region
from ..index.htmst import KINDS, KeyScheme
from ..index.timecode import parse_interval
from . import _lock
from ._atomic import OLD, TMP, TXN
from ._points_check import _BASE, _check_timeout, _prepare, _records_frame, _variable_dtypes
from ._points_runs import (
    _empty_frame,
    _merge_sorted,
    _read_span,
    _RunReader,
    _RunVanished,
    _spans,
    _write_run,
)

__all__ = ["PointStore", "QueryResult"]

_FORMAT = "stengine.points/1"
_ATTR = "stengine_points"
_DEFAULT_MAX_RANGES = 4096
_MERGE_FACTOR = 2  # merge a run into the new one when it is at most this many times larger
_MAX_RUNS = 12
_STAGE = ".stengine-tmp-"   # a run or manifest being written
_TRASH = ".stengine-old-"   # a run being deleted
_RUN_NAME = re.compile(r"r(\d{6,})")


@dataclass
class QueryResult:
    """The records a query returned, and what it cost.

    Attributes
    ----------
    df : pandas.DataFrame
        lon, lat (degrees), time (``datetime64[ns]``, UTC) and the requested variables,
        in key order.
    records_read : int
        Records in the chunks that were read.
    chunks_read, chunks_total : int
        Chunks read, and chunks in the store.
    records_in_ranges : int
        Records whose key lies in the cover's key ranges: what a range scan (the
        paper's HBase scans) would read.
    records_returned : int
        Records that passed the exact filter (``len(df)``).
    n_ranges : int
        Key ranges in the cover.
    seconds : float
        Wall time of the query.
    """

    df: pd.DataFrame
    records_read: int
    chunks_read: int
    chunks_total: int
    records_in_ranges: int
    records_returned: int
    n_ranges: int
    seconds: float

    def __repr__(self):
        return (f"QueryResult(records_returned={self.records_returned}, records_read="
                f"{self.records_read}, chunks_read={self.chunks_read}/{self.chunks_total}, "
                f"records_in_ranges={self.records_in_ranges}, n_ranges={self.n_ranges}, "
                f"seconds={self.seconds:.3f})")


# files and directories --------------------------------------------------------------
def _token() -> str:
    return uuid.uuid4().hex[:10]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem syncs directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk."""
    for d, _, files in os.walk(root, topdown=False):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(d))


def _replace(src: Path, dst: Path) -> None:
    """Atomically put ``src`` in place of ``dst``: the commit point of a write."""
    os.replace(src, dst)


def _rmtree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _retire(p: Path) -> None:
    """Delete a run: first rename it out of place, so readers find it whole or not at all."""
    trash = p.with_name(p.name + _TRASH + _token())
    try:
        os.rename(p, trash)
    except FileNotFoundError:
        return
    _rmtree(trash)


def _parse_meta(raw: bytes, where: Path) -> dict:
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise StoreCorruptError(f"PointStore: the manifest {str(where)!r} is not valid JSON "
                                f"({e}); restore it from a backup") from None
    if not isinstance(meta, dict):
        raise StoreCorruptError(f"PointStore: the manifest {str(where)!r} is not a JSON object")
    return meta


def _read_meta(path: Path) -> dict:
    """The committed root ``zarr.json`` of the store at ``path`` (lock-free)."""
    txn = path.with_name(path.name + TXN)
    if txn.is_dir():
        # a journal left by an interrupted write of an older version: until it is
        # rolled back (by the next writer), its saved copy is the committed manifest
        saved = txn / "files" / "zarr.json"
        with contextlib.suppress(FileNotFoundError):
            return _parse_meta(saved.read_bytes(), saved)
    meta = path / "zarr.json"
    return _parse_meta(meta.read_bytes(), meta)  # FileNotFoundError: handled by callers


def _manifest_of(meta: dict, path: Path) -> dict:
    man = (meta.get("attributes") or {}).get(_ATTR)
    if not isinstance(man, dict) or man.get("format") != _FORMAT:
        raise StoreError(f"PointStore: {str(path)!r} is a Zarr store but not a point "
                         f"store (no {_ATTR!r} attribute of format {_FORMAT})")
    return man


def _siblings(path: Path, tag: str) -> list[Path]:
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(glob.escape(path.name) + tag + "*"))


def _recover_swap(path: Path) -> None:
    """Under the write lock: finish or undo an interrupted create/overwrite of ``path``."""
    for old in _siblings(path, OLD):
        if not path.exists():  # died between the two renames: put the old store back
            os.rename(old, path)
        else:
            _rmtree(old)
    for tmp in _siblings(path, TMP):  # a create that died before its swap
        _rmtree(tmp)


def _rollback_journal(path: Path) -> bool:
    """Under the write lock: undo a journal left by an older version's interrupted append."""
    txn = path.with_name(path.name + TXN)
    _rmtree(path.with_name(path.name + TXN + "-staging"))
    if not txn.is_dir():
        return False
    saved = txn / "files" / "zarr.json"
    if saved.is_file():
        tmp = path / ("zarr.json" + _STAGE + _token())
        shutil.copyfile(saved, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _replace(tmp, path / "zarr.json")
        _fsync_dir(path)
    _rmtree(txn)
    return True


# the store --------------------------------------------------------------------------
class PointStore:
    """Records (lon, lat, time, variables) sorted by an HTM-ST key in a Zarr store.

    Open an existing store with ``PointStore(path)``; make a new one with
    :meth:`PointStore.create`. Safe to use from several processes at once: appends are
    serialised by a lock and every read sees one committed state (see the module
    docstring for the concurrency model).

    Parameters
    ----------
    path : str | pathlib.Path
        Directory of the store (local filesystem).
    lock_timeout : float, optional
        Seconds a write waits for another process's write to finish before raising
        :class:`~stengine.errors.StoreLockedError` (default: env
        ``STENGINE_LOCK_TIMEOUT``, else 600).

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from stengine.index import Cap
    >>> d = tempfile.mkdtemp()
    >>> st = PointStore.create(d + "/p", key="htmst", level=8, t0="2013-01-01",
    ...                        t1="2013-03-01", chunk_size=2)
    >>> st.append(pd.DataFrame({"lon": [10.0, 10.5, 170.0], "lat": [20.0, 20.2, -5.0],
    ...     "time": pd.to_datetime(["2013-01-05", "2013-01-06", "2013-02-01"]),
    ...     "flux": [1.0, 2.0, 3.0]}))
    >>> r = st.query(region=Cap(10.0, 20.0, 1.0), time=("2013-01-01", "2013-01-31"))
    >>> sorted(r.df.flux), r.records_returned, r.chunks_read, r.chunks_total
    ([1.0, 2.0], 2, 1, 2)
    """

    def __init__(self, path, *, lock_timeout: float | None = None):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"PointStore: path must be a str or os.PathLike; got "
                            f"{type(path).__name__}")
        self.path = Path(path)
        self.lock_timeout = _check_timeout(lock_timeout, "PointStore")
        self._manifest: dict | None = None
        self._index_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._readers: dict[str, _RunReader] = {}
        self._load()

    # the manifest ---------------------------------------------------------
    def _read_manifest(self) -> dict:
        try:
            return _manifest_of(_read_meta(self.path), self.path)
        except FileNotFoundError:
            pass
        # no zarr.json: an overwrite is between its renames, or was killed there
        if _siblings(self.path, OLD):
            with _lock.write_lock(self.path, timeout=self.lock_timeout):
                _recover_swap(self.path)
        elif _siblings(self.path, TMP):
            with _lock.read_lock(self.path, timeout=self.lock_timeout):
                pass  # a create is under way: wait for it
        try:
            return _manifest_of(_read_meta(self.path), self.path)
        except FileNotFoundError:
            raise StoreNotFoundError(f"PointStore: no point store at {str(self.path)!r}; "
                                     "create one with PointStore.create(path, ...)") from None

    def _load(self) -> dict:
        """Re-read the committed manifest; drop caches it made stale."""
        man = self._read_manifest()
        old = self._manifest
        if old is None or man.get("store_id") != old.get("store_id"):
            # a new store (or one re-created by another process): new scheme, and run
            # names start again
            self.scheme = KeyScheme.from_dict(man["scheme"])
            self._index_cache.clear()
            self._readers.clear()
        else:
            live = {r["name"] for r in man["runs"]}
            for cache in (self._index_cache, self._readers):
                for k in [k for k in cache if k not in live]:
                    del cache[k]
        self._manifest = man
        return man

    # creation -------------------------------------------------------------
    @classmethod
    def create(cls, path, *, key: str = "htmst", level: int = 10, t0, t1, fanout: int = 2,
               chunk_size: int = 65536, variables: dict | None = None,
               overwrite: bool = False, lock_timeout: float | None = None) -> PointStore:
        """Create an empty point store.

        Parameters
        ----------
        path : str | pathlib.Path
            Directory of the store (local).
        key : {"htmst", "time", "space"}
            Sort key: the coupled HTM-ST code, or time-first / space-first codes (see
            :class:`~stengine.index.htmst.KeyScheme`).
        level : int
            Level of the trixels and time cells of the key.
        t0, t1 : datetime-like
            Task interval; every record's time must lie in ``[t0, t1)``.
        fanout : int
            Time cell fan-out (a power of two).
        chunk_size : int
            Records per chunk.
        variables : dict, optional
            ``{name: dtype}`` of the variables (numeric or bool dtypes); by default
            taken from the first append.
        overwrite : bool
            Replace an existing store (atomically, under the store's write lock).
        lock_timeout : float, optional
            Seconds to wait for another process's write (see :class:`PointStore`).

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is False.
        IndexRangeError
            Invalid level, fan-out or task interval (or keys that would not fit 64 bits).
        TypeError, ValueError
            Invalid ``chunk_size`` or ``variables``.
        """
        where = "PointStore.create"
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"{where}: path must be a str or os.PathLike; got "
                            f"{type(path).__name__}")
        if not isinstance(key, str) or key not in KINDS:
            raise ValueError(f"{where}: key must be one of {KINDS}; got {key!r}")
        scheme = KeyScheme(key, level, t0, t1, fanout)
        if isinstance(chunk_size, bool) or not (isinstance(chunk_size, int | np.integer)
                                                and chunk_size >= 1):
            raise ValueError(f"{where}: chunk_size must be a positive int (records per "
                             f"chunk); got {chunk_size!r}")
        if not isinstance(overwrite, bool):
            raise TypeError(f"{where}: overwrite must be True or False; got {overwrite!r}")
        timeout = _check_timeout(lock_timeout, where)
        cols = None
        if variables is not None:
            cols = {**_BASE, **_variable_dtypes(variables, where)}
        path = Path(path)
        man = {"format": _FORMAT, "store_id": uuid.uuid4().hex, "scheme": scheme.to_dict(),
               "chunk_size": int(chunk_size), "columns": cols, "runs": [], "next_run": 1}
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {_ATTR: man}}
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock.write_lock(path, timeout=timeout):
            _recover_swap(path)
            if path.exists() and not overwrite:
                raise FileExistsError(f"{where}: {str(path)!r} exists; pass overwrite=True "
                                      "to replace it")
            token = _token()
            tmp = path.with_name(path.name + TMP + token)
            try:
                tmp.mkdir()
                (tmp / "runs").mkdir()
                (tmp / "zarr.json").write_text(json.dumps(meta, indent=2))
                _fsync_tree(tmp)
                old = path.with_name(path.name + OLD + token)
                if path.exists():
                    os.rename(path, old)
                os.rename(tmp, path)
                _fsync_dir(path.parent)
            except BaseException:
                _rmtree(tmp)
                raise
            _rmtree(old)
        return cls(path, lock_timeout=lock_timeout)

    # properties -----------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        """Records per chunk."""
        return int(self._manifest["chunk_size"])

    @property
    def variables(self) -> list[str]:
        """Names of the variables (columns besides lon, lat, time), as committed now."""
        cols = self._load()["columns"] or {}
        return [c for c in cols if c not in _BASE]

    @property
    def runs(self) -> list[dict]:
        """The sorted runs now committed: ``[{"name", "records", "chunks"}, ...]``."""
        return [dict(r) for r in self._load()["runs"]]

    def __len__(self) -> int:
        """Records now committed."""
        return sum(r["records"] for r in self._load()["runs"])

    @property
    def n_chunks(self) -> int:
        """Chunks in the runs now committed."""
        return sum(r["chunks"] for r in self._load()["runs"])

    def __repr__(self):
        s = self.scheme
        man = self._manifest
        return (f"PointStore({str(self.path)!r}, key={s.kind!r}, level={s.level}, "
                f"fanout={s.fanout}, records={sum(r['records'] for r in man['runs'])}, "
                f"runs={len(man['runs'])}, chunks={sum(r['chunks'] for r in man['runs'])})")

    # writing --------------------------------------------------------------
    def append(self, records) -> None:
        """Add records, keeping the store sorted by key; atomic, safe with other writers.

        The records are checked first, and nothing is written unless all of them pass.
        The write holds the store's lock; once it returns, the records are committed:
        every later read, in any process, sees each of them exactly once.

        Parameters
        ----------
        records : pandas.DataFrame | dask.dataframe.DataFrame | dict
            Columns ``lon``, ``lat`` (degrees), ``time`` (datetime-like, UTC;
            ``datetime64`` of any unit) and the store's variables (all of them, no
            others; the first append of a store created without ``variables`` defines
            them). Values are cast to the store's dtypes only when no value changes
            (ints that fit, floats that do not overflow). A dask DataFrame is computed
            into memory and written as one batch.

        Raises
        ------
        IndexRangeError
            NaN or out-of-range lon/lat, NaT, or a time outside the task interval.
        AppendMismatchError
            Missing, unexpected or duplicate columns; values of a column that cannot be
            stored in its dtype (strings in a float column, 1e40 into float32, ...).
        StoreLockedError
            Another process kept the write lock longer than ``lock_timeout``.
        StoreCorruptError
            The store's manifest lists a run that is missing (nothing is written).
        """
        where = "PointStore.append"
        df = _records_frame(records, where)
        man = self._load()
        # check before waiting for the lock; again under it if another writer committed
        # the first batch (the columns) or re-created the store meanwhile
        prep = _prepare(df, man["columns"], self.scheme, where)
        if prep is None:
            return
        with self._writing(where) as fresh:
            if (fresh["columns"] != man["columns"]
                    or fresh.get("store_id") != man.get("store_id")):
                prep = _prepare(df, fresh["columns"], self.scheme, where)
                if prep is None:
                    return
            cols, batch = prep
            self._commit_merge(fresh, batch, cols if fresh["columns"] is None else None)

    def compact(self) -> None:
        """Merge all runs into one (atomic); queries then read one sorted sequence.

        Like :meth:`append`, it holds the write lock, and removes the leftovers of
        interrupted writes.

        Raises
        ------
        StoreLockedError
            Another process kept the write lock longer than ``lock_timeout``.
        StoreCorruptError
            The store's manifest lists a run that is missing (nothing is written).
        """
        with self._writing("PointStore.compact") as man:
            if len(man["runs"]) > 1:
                self._commit_merge(man, None, None, merge_all=True)

    @contextlib.contextmanager
    def _writing(self, where: str):
        """Hold the write lock; clean up after dead writers; yield the committed manifest."""
        with _lock.write_lock(self.path, timeout=self.lock_timeout):
            _recover_swap(self.path)
            if _rollback_journal(self.path):
                warnings.warn(f"{where}: {self.path}: an earlier write was interrupted; rolled "
                              "it back (the store is as it was before that write)",
                              UserWarning, stacklevel=4)
            man = self._load()
            root = self.path / "runs"
            missing = [r["name"] for r in man["runs"]
                       if not (root / r["name"] / "zarr.json").is_file()]
            if missing:
                raise _corrupt(self.path, missing, where)
            self._clean_orphans(man, where)
            yield man

    def _clean_orphans(self, man: dict, where: str) -> None:
        """Under the write lock: remove what no committed manifest lists."""
        live = {r["name"] for r in man["runs"]}
        root = self.path / "runs"
        lost = []
        for p in sorted(root.iterdir()) if root.is_dir() else []:
            if p.name in live:
                continue
            m = _RUN_NAME.fullmatch(p.name)
            if _STAGE in p.name:
                lost.append(p.name)
                _rmtree(p)
            elif _TRASH in p.name:
                _rmtree(p)
            elif m:  # a run never committed (lost), or merged away (committed) but kept
                if int(m.group(1)) >= man["next_run"]:
                    lost.append(p.name)
                _retire(p)
        for p in self.path.glob("zarr.json" + _STAGE + "*"):
            lost.append(p.name)
            _rmtree(p)
        if lost:
            warnings.warn(f"{where}: {self.path}: removed the leftovers of an interrupted "
                          f"write that was never committed ({', '.join(lost)}); the store "
                          "holds what was committed before it", UserWarning, stacklevel=5)

    def _commit_merge(self, man, batch, new_cols, merge_all=False):
        man = json.loads(json.dumps(man))
        runs = man["runs"]
        size = 0 if batch is None else len(batch["key"])
        j = len(runs)
        if merge_all:
            j = 0
        else:
            while j > 0 and runs[j - 1]["records"] <= _MERGE_FACTOR * size:
                size += runs[j - 1]["records"]
                j -= 1
            if j + 1 > _MAX_RUNS:
                j = 0
        if new_cols is not None:
            man["columns"] = new_cols
        cols = man["columns"]
        parts = [self._read_run(r["name"], cols) for r in runs[j:]]
        if batch is not None:
            parts.append(batch)
        merged = _merge_sorted(parts)
        name = f"r{man['next_run']:06d}"
        man["next_run"] += 1
        root = self.path / "runs"
        root.mkdir(exist_ok=True)
        run_path = root / name
        stage = root / (name + _STAGE + _token())
        committed = False
        try:
            nchunks = _write_run(stage, merged, cols, self.chunk_size)
            _fsync_tree(stage)
            os.rename(stage, run_path)  # durable, in place, not yet visible
            _fsync_dir(root)
            old = [r["name"] for r in runs[j:]]
            man["runs"] = runs[:j] + [{"name": name, "records": int(len(merged["key"])),
                                       "chunks": nchunks}]
            self._write_manifest(man)  # the commit point
            committed = True
        finally:
            if not committed:
                _rmtree(stage)
                _rmtree(run_path)
        self._manifest = man
        for o in old:  # committed: a failure here must not fail the append (the next
            self._index_cache.pop(o, None)  # write removes what is left)
            self._readers.pop(o, None)
            with contextlib.suppress(OSError):
                _retire(root / o)

    def _write_manifest(self, man: dict) -> None:
        """Commit ``man``: write the new ``zarr.json`` aside, flush it, rename it in place."""
        meta_path = self.path / "zarr.json"
        meta = _parse_meta(meta_path.read_bytes(), meta_path)
        meta.setdefault("attributes", {})[_ATTR] = man
        tmp = self.path / ("zarr.json" + _STAGE + _token())
        try:
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            _replace(tmp, meta_path)
        except BaseException:
            _rmtree(tmp)
            raise
        _fsync_dir(self.path)

    def _read_run(self, name: str, cols: dict | None = None) -> dict:
        """All columns of a run (under the write lock)."""
        cols = self._manifest["columns"] if cols is None else cols
        try:
            reader = _RunReader(self.path, name, ["key", *cols])
            n = reader.n
            return {c: reader.read(c, 0, n) for c in ["key", *cols]}
        except _RunVanished:
            raise _corrupt(self.path, [name], "PointStore.append") from None

    # reading --------------------------------------------------------------
    def _reader(self, name, cols) -> _RunReader:
        if name not in self._readers:
            self._readers[name] = _RunReader(self.path, name, ["key", *cols])
        return self._readers[name]

    def _chunk_index(self, name):
        if name not in self._index_cache:
            import zarr

            p = self.path / "runs" / name
            try:
                g = zarr.open_group(p, mode="r")
                idx = (g["chunk_first"][:], g["chunk_last"][:])
            except Exception as e:
                if not (p / "zarr.json").is_file():
                    raise _RunVanished(name) from None
                raise StoreCorruptError(f"PointStore: {self.path}: cannot read the chunk "
                                        f"index of run {name!r}: {e}") from e
            self._index_cache[name] = idx
        return self._index_cache[name]

    def read(self, variables=None) -> pd.DataFrame:
        """All records (in key order per run), without a filter."""
        return self.query(variables=variables).df

    def query(self, region=None, time=None, variables=None, *,
              max_ranges: int | None = _DEFAULT_MAX_RANGES, span: int = 4) -> QueryResult:
        """Records in ``region`` during ``time``: key ranges, overlapping chunks, exact filter.

        Reads the store as committed when the query starts: every batch whole, or not
        at all, however many processes append meanwhile.

        Parameters
        ----------
        region : Cap | Box | Polygon | tuple | shapely.Polygon | None
            Where (None: everywhere); boundaries included.
        time : (start, stop) | slice | str | None
            Half-open ``[start, stop)`` (datetime-likes; either may be None), a period
            string such as ``"2013-02"``, or None for all times.
        variables : list of str, optional
            Variables to return (default all; ``[]`` for none).
        max_ranges : int, optional
            Cap on the cover's key ranges (see :meth:`KeyScheme.cover`); finer covers
            cost more to build but may skip more chunks.
        span : int
            At most this many consecutive chunks per read task.

        Returns
        -------
        QueryResult
            ``.df`` and the counts ``records_read``, ``chunks_read``, ``records_returned``
            (also in ``.df.attrs``).

        Raises
        ------
        StoreCorruptError
            The manifest lists a run that is missing (named in the message).
        """
        t_start = _time.perf_counter()
        where = "PointStore.query"
        reg = as_region(region, where=f"{where}: region")
        iv = parse_interval(time, where=where)
        if variables is not None and (isinstance(variables, str | bytes)
                                      or not hasattr(variables, "__iter__")):
            raise TypeError(f"{where}: variables must be a list of variable names (or None for "
                            f"all); got {variables!r}. Pass [{variables!r}] for one.")
        if max_ranges is not None and (isinstance(max_ranges, bool) or not isinstance(
                max_ranges, int | np.integer) or max_ranges < 1):
            raise ValueError(f"{where}: max_ranges must be a positive int or None; got "
                             f"{max_ranges!r}")
        if isinstance(span, bool) or not isinstance(span, int | np.integer) or span < 1:
            raise ValueError(f"{where}: span must be a positive int (chunks per read task); "
                             f"got {span!r}")
        args = (reg, iv, variables, max_ranges, int(span), t_start)
        try:
            return self._query(self._load(), *args)
        except _RunVanished:
            pass  # a concurrent append merged runs away: again, keeping writers out
        with _lock.read_lock(self.path, timeout=self.lock_timeout):
            man = self._load()
            try:
                return self._query(man, *args)
            except _RunVanished as e:
                raise _corrupt(self.path, [str(e)], where) from None

    def _query(self, man, reg, iv, variables, max_ranges, span, t_start) -> QueryResult:
        import dask

        where = "PointStore.query"
        cols = man["columns"] or {}
        have = [c for c in cols if c not in _BASE]
        vars_ = have if variables is None else list(variables)
        unknown = [v for v in vars_ if v not in have]
        if unknown:
            raise StoreError(f"{where}: unknown variables {unknown}; the store has {have}")
        cover = self.scheme.cover_ns(reg, iv, max_ranges=max_ranges)
        tasks = []
        chunks_read = 0
        used = []
        for run in man["runs"]:
            first, last = self._chunk_index(run["name"])
            hit = np.flatnonzero(ranges.overlapping(cover, first, last))
            chunks_read += hit.size
            if hit.size:
                reader = self._reader(run["name"], cols)
                used.append(run["name"])
            for a, b in _spans(hit, span):
                # a bound partial: dask would otherwise walk the zarr arrays' fields
                task = functools.partial(_read_span, reader, a * self.chunk_size,
                                         min(b * self.chunk_size, run["records"]), cover, reg,
                                         iv, vars_)
                tasks.append(dask.delayed(task, pure=False, traverse=False)())
        parts = dask.compute(*tasks) if tasks else []
        # every read happened while its run was in place and the store was this one:
        # runs are renamed out of place before they are deleted, and never renamed back
        for name in used:
            if not (self.path / "runs" / name / "zarr.json").is_file():
                raise _RunVanished(name)
        if used and self._read_manifest().get("store_id") != man.get("store_id"):
            raise _RunVanished(used[0])
        if parts:  # one concatenation per column: much cheaper than concatenating frames
            df = pd.DataFrame({c: np.concatenate([p[0][c] for p in parts]) for c in parts[0][0]})
        else:
            df = _empty_frame(vars_, cols)
        res = QueryResult(
            df=df, records_read=int(sum(p[1] for p in parts)), chunks_read=chunks_read,
            chunks_total=sum(r["chunks"] for r in man["runs"]),
            records_in_ranges=int(sum(p[2] for p in parts)),
            records_returned=len(df), n_ranges=len(cover),
            seconds=_time.perf_counter() - t_start)
        df.attrs.update(records_read=res.records_read, chunks_read=res.chunks_read,
                        records_returned=res.records_returned,
                        records_in_ranges=res.records_in_ranges)
        return res


def _corrupt(path, names, where) -> StoreCorruptError:
    return StoreCorruptError(
        f"{where}: the point store {str(path)!r} lists run(s) {names} in its manifest, but "
        f"they are missing from {str(Path(path) / 'runs')!r} (deleted or lost outside "
        "stengine). Nothing was changed. Restore them from a backup; the other runs are "
        "intact.")

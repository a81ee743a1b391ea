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

from ..errors import (AppendMismatchError, IndexRangeError, StoreCorruptError, StoreError,
                      StoreNotFoundError)
from ..index import ranges
from ..index._regions import as_region
from ..index.htmst import KINDS, KeyScheme
from ..index.timecode import parse_interval, to_ns
from . import _lock
from ._atomic import OLD, TMP, TXN

__all__ = ["PointStore", "QueryResult"]

_FORMAT = "stengine.points/1"
_ATTR = "stengine_points"
_RUN_ATTR = "stengine_run"
_BASE = {"lon": "float64", "lat": "float64", "time": "int64"}
_DEFAULT_MAX_RANGES = 4096
_MERGE_FACTOR = 2  # merge a run into the new one when it is at most this many times larger
_MAX_RUNS = 12
_STAGE = ".stengine-tmp-"   # a run or manifest being written
_TRASH = ".stengine-old-"   # a run being deleted
_RUN_NAME = re.compile(r"r(\d{6,})")
_RESERVED = ("key", "chunk_first", "chunk_last", "zarr.json")
_LON_RANGE = (-360.0, 360.0)


def _compressor():
    from zarr.codecs import BloscCodec

    # zstd inside blosc with byte shuffle: ~1.3x smaller and ~2x faster to read than plain
    # zstd on float records
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


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


class _RunVanished(Exception):
    """A run listed by the manifest a reader holds is gone (merged away meanwhile)."""


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


def _check_timeout(t, where):
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, int | float | np.integer | np.floating) or not (
            t >= 0):
        raise ValueError(f"{where}: lock_timeout must be seconds >= 0 (or None for the "
                         f"default); got {t!r}")
    return float(t)


# checking input -----------------------------------------------------------------------
def _records_frame(records, where: str) -> pd.DataFrame:
    if hasattr(records, "dask") and hasattr(records, "compute"):
        records = records.compute()
    if isinstance(records, dict):
        try:
            records = pd.DataFrame(records)
        except (ValueError, TypeError) as e:
            raise AppendMismatchError(f"{where}: records (a dict of columns) must hold "
                                      f"equal-length 1-D columns: {e}") from None
    if not isinstance(records, pd.DataFrame):
        raise TypeError(f"{where}: records must be a pandas or dask DataFrame (or a dict of "
                        f"columns); got {type(records).__name__}")
    return records


def _check_names(cols, where, what="column", exc=AppendMismatchError):
    bad = [c for c in cols if not isinstance(c, str) or c in _RESERVED or not c
           or "/" in c or "\\" in c or c.startswith(".")]
    if bad:
        raise exc(
            f"{where}: {what} names {bad} are reserved or invalid (names must be non-empty "
            f"strings without '/' or a leading '.', and not one of {list(_RESERVED)}); "
            "rename them")


def _variable_dtypes(variables, where) -> dict:
    """``{name: dtype name}`` of ``create(variables=...)``."""
    if not isinstance(variables, dict):
        raise TypeError(f"{where}: variables must be a dict {{name: dtype}}; got "
                        f"{type(variables).__name__}")
    base = [k for k in variables if k in _BASE]
    if base:
        raise ValueError(f"{where}: variables must not name {base}: lon, lat (float64 "
                         "degrees) and time (ns) are always stored")
    _check_names(list(variables), where, "variable", ValueError)
    out = {}
    for k, v in variables.items():
        try:
            dt = np.dtype(v)
        except TypeError:
            raise TypeError(f"{where}: variables[{k!r}]: {v!r} is not a dtype; use e.g. "
                            "'float32', 'int16' or 'bool'") from None
        if dt.kind not in "biuf":
            raise TypeError(f"{where}: variables[{k!r}] must be a numeric or bool dtype; got "
                            f"{dt}. Store datetimes as int64 ns and strings as category codes")
        out[k] = dt.name
    return out


def _values(s: pd.Series, name: str, where: str, kinds: str = "biuf") -> np.ndarray:
    """The numpy values of column ``name``, refusing non-numeric ones."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind == "O":
        kind = pd.api.types.infer_dtype(s, skipna=False)
        if kind in ("integer", "floating", "mixed-integer-float", "boolean"):
            arr = np.asarray(s.tolist())
        else:
            raise _not_numeric(name, where, f"{kind} values (object dtype)")
    elif isinstance(dt, np.dtype):
        arr = s.to_numpy()
    else:  # a pandas extension dtype: nullable ints, floats, bools; strings; categories
        npdt = getattr(dt, "numpy_dtype", None)
        if npdt is None or np.dtype(npdt).kind not in "biuf":
            what = "strings" if pd.api.types.is_string_dtype(dt) else f"values of dtype {dt}"
            raise _not_numeric(name, where, what)
        na = np.asarray(s.isna())
        if na.any():
            if np.dtype(npdt).kind != "f":
                raise AppendMismatchError(
                    f"{where}: column {name!r} has a missing value (pd.NA) at position "
                    f"{int(np.argmax(na))}, which {dt} values cannot be stored without; fill "
                    "or drop those records, or make the column float (NaN)")
            arr = s.to_numpy(dtype=npdt, na_value=np.nan)
        else:
            arr = s.to_numpy(dtype=npdt)
    if arr.dtype.kind not in kinds:
        what = {"U": "strings", "S": "bytes", "M": "datetimes", "m": "timedeltas",
                "c": "complex numbers", "b": "booleans"}.get(arr.dtype.kind,
                                                            f"values of dtype {arr.dtype}")
        raise _not_numeric(name, where, what, kinds)
    return arr


def _not_numeric(name, where, what, kinds="biuf") -> AppendMismatchError:
    want = "real numbers (int or float)" if kinds == "iuf" else "numbers or booleans"
    return AppendMismatchError(f"{where}: column {name!r} must hold {want}; got {what}. "
                               "Convert it (e.g. pandas.to_numeric) or drop it")


def _cast(arr: np.ndarray, name: str, dst: np.dtype, where: str) -> np.ndarray:
    """``arr`` as ``dst`` when the cast changes no value, else AppendMismatchError."""
    src = arr.dtype
    if src == dst:
        return arr
    if np.can_cast(src, dst, "safe"):
        return arr.astype(dst)
    bad = None
    with np.errstate(all="ignore"):
        if dst.kind in "iu" and src.kind in "iuf":
            info = np.iinfo(dst)
            ok = (arr >= info.min) & (arr <= info.max)
            if src.kind == "f":
                ok &= np.isfinite(arr) & (arr == np.round(arr))
            if not ok.all():
                bad = int(np.argmin(ok))
                why = (f"whole numbers in [{info.min}, {info.max}]")
        elif dst.kind == "f" and src.kind == "f":
            out = arr.astype(dst)
            over = np.isinf(out) & np.isfinite(arr)
            if over.any():
                bad = int(np.argmax(over))
                why = f"values within the {dst} range (|x| <= {np.finfo(dst).max:.4g})"
            else:
                return out
        elif dst.kind == "f" and src.kind in "iu":
            out = arr.astype(dst)
            ok = out.astype(np.float64) == arr.astype(np.float64)
            if not ok.all():
                bad = int(np.argmin(ok))
                why = f"integers that {dst} holds exactly"
            else:
                return out
        else:
            raise AppendMismatchError(
                f"{where}: column {name!r} is {dst} in the store; got {src} values, which "
                f"cannot be cast to {dst} safely. Convert the column to {dst} first")
    if bad is not None:
        raise AppendMismatchError(
            f"{where}: column {name!r} is {dst} in the store, so it needs {why}; got "
            f"{arr[bad]!r} ({src}) at position {bad}. Fix those values, or create the store "
            "with a wider dtype for this variable")
    return arr.astype(dst)


def _coordinate(s: pd.Series, name: str, where: str) -> np.ndarray:
    arr = _cast(_values(s, name, where, kinds="iuf"), name, np.dtype("float64"), where)
    lo, hi = _LON_RANGE if name == "lon" else (-90.0, 90.0)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(f"{where}: {name} must be finite degrees; got {arr[i]} at "
                              f"position {i}. Drop or fix those records")
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(f"{where}: {name} must be in [{lo:g}, {hi:g}] degrees; got "
                              f"{arr[i]} at position {i}")
    return arr


def _times(s: pd.Series, scheme: KeyScheme, where: str) -> np.ndarray:
    """int64 ns of the time column, all in the task interval (any datetime64 unit, exact)."""
    t0, t1 = scheme.t0, scheme.t1
    ns = to_ns(s, where=where, name="time", within=(t0, t1))
    bad = (ns < t0) | (ns >= t1)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(
            f"{where}: time must lie in the store's task interval [{np.datetime64(t0, 'ns')}, "
            f"{np.datetime64(t1, 'ns')}) (its time grid); got {np.datetime64(int(ns[i]), 'ns')} "
            f"at position {i}. Drop those records, or create the store with a task interval "
            "that holds them")
    return ns


def _prepare(df: pd.DataFrame, cols: dict | None, scheme: KeyScheme, where: str):
    """Check a batch against the store; ``(columns, sorted batch)``, or None if empty."""
    names = list(df.columns)
    notstr = [c for c in names if not isinstance(c, str)]
    if notstr:
        raise AppendMismatchError(f"{where}: column names must be strings; got {notstr!r}. "
                                  "Rename them (df.columns = df.columns.astype(str))")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise AppendMismatchError(f"{where}: records have duplicate columns {dup}; keep one "
                                  "of each")
    missing = [c for c in ("lon", "lat", "time") if c not in names]
    if missing:
        raise AppendMismatchError(f"{where}: records need columns lon, lat, time; missing "
                                  f"{missing} (got {names})")
    if cols is None:  # the first batch defines the variables
        extra = [c for c in names if c not in _BASE]
        _check_names(extra, where)
        cols = {**_BASE, **{c: _values(df[c], c, where).dtype.name for c in extra}}
    extra = sorted(set(names) - set(cols))
    missing = [c for c in cols if c not in names]
    if extra or missing:
        raise AppendMismatchError(f"{where}: records must have exactly the store's columns "
                                  f"{list(cols)}; missing {missing}, unexpected {extra}")
    if len(df) == 0:
        return None
    data = {c: _coordinate(df[c], c, where) for c in ("lon", "lat")}
    data["time"] = _times(df["time"], scheme, where)
    for c, dt in cols.items():
        if c not in _BASE:
            data[c] = _cast(_values(df[c], c, where), c, np.dtype(dt), where)
    key = scheme.encode_ns(data["lon"], data["lat"], data["time"])
    order = np.argsort(key, kind="stable")
    return cols, {"key": key[order], **{c: v[order] for c, v in data.items()}}


# runs -------------------------------------------------------------------------------
def _merge_sorted(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    key = np.concatenate([p["key"] for p in parts])
    # stable: equal keys keep the order of their appends
    order = np.argsort(key, kind="stable")
    return {c: np.concatenate([p[c] for p in parts])[order] for c in parts[0]}


def _write_run(path: Path, data: dict, cols: dict, chunk_size: int) -> int:
    import zarr

    # every chunk file is written (even one equal to the fill value), so a missing one is
    # an error, never silently the fill value
    g = zarr.open_group(path, mode="w-", zarr_format=3,
                        attributes={_RUN_ATTR: {"all_chunks": True}})
    n = len(data["key"])
    comp = [_compressor()]
    cfg = {"write_empty_chunks": True}
    for c in ["key", *cols]:
        v = np.ascontiguousarray(data[c])
        a = g.create_array(c, shape=(n,), dtype=v.dtype, chunks=(chunk_size,), compressors=comp,
                           dimension_names=["record"], config=cfg,
                           attributes={"units": "ns since 1970-01-01 UTC"} if c == "time" else {})
        a[:] = v
    key = data["key"]
    first = key[::chunk_size]
    last = np.append(key[chunk_size - 1::chunk_size], key[-1])[: len(first)]
    for name, v in (("chunk_first", first), ("chunk_last", last)):
        a = g.create_array(name, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),),
                           config=cfg)
        a[:] = v
    return len(first)


def _spans(hit: np.ndarray, span: int):
    """Group sorted chunk indices into runs of consecutive ones, at most ``span`` long."""
    if hit.size == 0:
        return
    brk = np.flatnonzero(np.diff(hit) != 1) + 1
    for grp in np.split(hit, brk):
        for i in range(0, grp.size, span):
            sub = grp[i:i + span]
            yield int(sub[0]), int(sub[-1]) + 1


def _empty_frame(vars_, cols):
    df = pd.DataFrame({"lon": np.empty(0), "lat": np.empty(0),
                       "time": np.empty(0, "datetime64[ns]")})
    for v in vars_:
        df[v] = np.empty(0, cols.get(v, "float64"))
    return df


class _RunReader:
    """Reads record slices of one run's columns.

    Chunk files are read and decoded directly when an array has the layout this module
    writes (default chunk keys, little-endian bytes then blosc; checked from its
    metadata): zarr's per-call overhead (~1 ms) would otherwise dominate reads of a few
    small chunks. Any other layout is read through zarr.

    A missing chunk file is an error naming the chunk (runs written by this version
    hold every chunk); if the whole run is gone, :class:`_RunVanished` tells the query
    to start again on the current manifest.
    """

    def __init__(self, store: Path, name: str, columns: list[str]):
        import zarr

        self.store, self.name = Path(store), name
        self.path = self.store / "runs" / name
        try:
            g = zarr.open_group(self.path, mode="r")
            self.arrays = {c: g[c] for c in columns}
            attrs = dict(g.attrs)
        except Exception as e:
            self._gone()
            raise StoreCorruptError(f"PointStore: {self.store}: run {name!r} is unreadable "
                                    f"({type(e).__name__}: {e})") from e
        self.complete = bool((attrs.get(_RUN_ATTR) or {}).get("all_chunks"))
        self.n = int(self.arrays["key"].shape[0])
        self.chunk = int(self.arrays["key"].chunks[0])
        self.direct = {c: _direct_layout(a) for c, a in self.arrays.items()}

    def _gone(self):
        if not (self.path / "zarr.json").is_file():
            raise _RunVanished(self.name)

    def _bad_chunk(self, col, i, why) -> StoreCorruptError:
        return StoreCorruptError(f"PointStore: {self.store}: chunk {col}/c/{i} of run "
                                 f"{self.name!r} is {why}; restore the store from a backup")

    def read(self, col: str, a: int, b: int) -> np.ndarray:
        layout = self.direct[col]
        if b <= a:
            return self.arrays[col][a:b]
        if layout is None:
            try:
                return self.arrays[col][a:b]
            except Exception as e:
                self._gone()
                raise StoreCorruptError(f"PointStore: {self.store}: cannot read records "
                                        f"[{a}, {b}) of {col!r} in run {self.name!r}: {e}") from e
        from numcodecs import blosc

        dtype, fill = layout
        c0, c1 = a // self.chunk, (b - 1) // self.chunk + 1
        parts = []
        for i in range(c0, c1):
            try:
                buf = (self.path / col / "c" / str(i)).read_bytes()
            except FileNotFoundError:
                self._gone()
                if self.complete:
                    raise self._bad_chunk(col, i, "missing") from None
                # runs of older versions: zarr skipped chunks equal to the fill value
                parts.append(np.full(self.chunk, fill, dtype))
                continue
            try:
                raw = blosc.decompress(buf)
            except Exception:
                raise self._bad_chunk(col, i, "corrupt (it does not decompress)") from None
            if len(raw) != self.chunk * dtype.itemsize:
                raise self._bad_chunk(col, i, f"corrupt ({len(raw)} bytes; expected "
                                              f"{self.chunk * dtype.itemsize})")
            parts.append(np.frombuffer(raw, dtype=dtype))
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        off = c0 * self.chunk
        return out[a - off:b - off]


def _direct_layout(arr):
    """(dtype, fill value) if ``arr`` chunks can be decoded directly, else None."""
    from zarr.codecs import BloscCodec, BytesCodec

    m = arr.metadata
    codecs = getattr(m, "codecs", ())
    enc = getattr(m, "chunk_key_encoding", None)
    if (getattr(m, "zarr_format", None) != 3 or len(codecs) != 2 or arr.shards is not None
            or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec)
            or getattr(enc, "name", None) != "default" or getattr(enc, "separator", None) != "/"
            or str(getattr(codecs[0].endian, "value", codecs[0].endian)) != "little"
            or arr.dtype.kind not in "iuf"):
        return None
    return arr.dtype.newbyteorder("<"), m.fill_value


def _read_span(reader, a, b, cover, reg, iv, vars_):
    """Read records ``[a, b)`` of a run and filter them: (columns, n_read, n_in_ranges).

    Variables are read only for chunks where some record passes."""
    key = reader.read("key", a, b)
    in_ranges = ranges.contains(cover, key)
    n_in = int(in_ranges.sum())
    sel = np.flatnonzero(in_ranges)
    if sel.size:
        lon = reader.read("lon", a, b)[sel]
        lat = reader.read("lat", a, b)[sel]
        t = reader.read("time", a, b)[sel]
    else:
        lon = lat = np.empty(0)
        t = np.empty(0, np.int64)
    ok = np.ones(sel.size, bool)
    if reg is not None:
        ok &= reg.contains(lon, lat)
    if iv is not None:
        if iv[0] is not None:
            ok &= t >= iv[0]
        if iv[1] is not None:
            ok &= t < iv[1]
    rows = sel[ok]
    out = {"lon": lon[ok], "lat": lat[ok], "time": t[ok].view("datetime64[ns]")}
    for v in vars_:
        out[v] = reader.read(v, a, b)[rows] if rows.size else np.empty(
            0, reader.arrays[v].dtype)
    return out, b - a, n_in

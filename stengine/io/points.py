"""A point store: observation records sorted by an HTM-ST key in 1-D Zarr arrays.

Layout (a Zarr v3 group)::

    <store>/zarr.json          root attrs["stengine_points"]: key scheme, chunk size,
                               columns and the list of runs (the manifest)
    <store>/runs/r000001/      one sorted *run*: 1-D arrays key (uint64), lon, lat
                               (float64, degrees), time (int64 ns since 1970 UTC) and the
                               variables, all chunked alike; chunk_first / chunk_last
                               (uint64) hold each chunk's first and last key

Appends keep the data sorted: each append sorts its batch by key and merges it with the
newest runs when they are not much larger (size-tiered, so a store holds O(log n)
runs; :meth:`PointStore.compact` merges all into one). A query turns (region, time)
into key ranges, reads only the chunks whose [first, last] keys meet a range (in
parallel with dask), and filters the records exactly.

Commits are atomic (:mod:`stengine.io._atomic`): a run is written aside and moved into
place, then the manifest is updated under a journal. A failed append leaves the store
as it was; leftovers of a crash are rolled back on the next open and removed by the
next write. One writer at a time.
"""

from __future__ import annotations

import functools
import json
import shutil
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StoreError, StoreNotFoundError
from ..index import ranges
from ..index._regions import as_region
from ..index.htmst import KeyScheme
from ..index.timecode import parse_interval, to_ns
from . import _atomic

__all__ = ["PointStore", "QueryResult"]

_FORMAT = "stengine.points/1"
_ATTR = "stengine_points"
_BASE = {"lon": "float64", "lat": "float64", "time": "int64"}
_DEFAULT_MAX_RANGES = 4096
_MERGE_FACTOR = 2  # merge a run into the new one when it is at most this many times larger
_MAX_RUNS = 12


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


def _records_frame(records, where: str) -> pd.DataFrame:
    if hasattr(records, "dask") and hasattr(records, "compute"):
        records = records.compute()
    if isinstance(records, dict):
        records = pd.DataFrame(records)
    if not isinstance(records, pd.DataFrame):
        raise TypeError(f"{where}: records must be a pandas or dask DataFrame (or a dict of "
                        f"columns); got {type(records).__name__}")
    missing = [c for c in ("lon", "lat", "time") if c not in records.columns]
    if missing:
        raise StoreError(f"{where}: records need columns lon, lat, time; missing {missing} (got "
                         f"{list(records.columns)})")
    return records


class PointStore:
    """Records (lon, lat, time, variables) sorted by an HTM-ST key in a Zarr store.

    Open an existing store with ``PointStore(path)``; make a new one with
    :meth:`PointStore.create`.

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

    def __init__(self, path):
        self.path = Path(path)
        _atomic.recover(self.path)
        meta = self.path / "zarr.json"
        if not meta.exists():
            raise StoreNotFoundError(f"PointStore: no point store at {str(self.path)!r}; create "
                                     "one with PointStore.create(path, ...)")
        attrs = json.loads(meta.read_text()).get("attributes", {})
        man = attrs.get(_ATTR)
        if not man or man.get("format") != _FORMAT:
            raise StoreError(f"PointStore: {str(self.path)!r} is a Zarr store but not a point "
                             f"store (no {_ATTR!r} attribute of format {_FORMAT})")
        self._manifest = man
        self.scheme = KeyScheme.from_dict(man["scheme"])
        self._index_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._readers: dict[str, _RunReader] = {}

    # creation -------------------------------------------------------------
    @classmethod
    def create(cls, path, *, key: str = "htmst", level: int = 10, t0, t1, fanout: int = 2,
               chunk_size: int = 65536, variables: dict | None = None,
               overwrite: bool = False) -> PointStore:
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
            ``{name: dtype}`` of the variables; by default taken from the first append.
        overwrite : bool
            Replace an existing store (atomically).
        """
        scheme = KeyScheme(key, level, t0, t1, fanout)
        if not (isinstance(chunk_size, int | np.integer) and chunk_size >= 1):
            raise ValueError(f"PointStore.create: chunk_size must be a positive int; got "
                             f"{chunk_size!r}")
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"PointStore.create: {str(path)!r} exists; pass overwrite=True "
                                  "to replace it")
        cols = None
        if variables is not None:
            cols = {**_BASE, **{str(k): np.dtype(v).name for k, v in variables.items()}}
            _check_names(list(cols), "PointStore.create")
        man = {"format": _FORMAT, "scheme": scheme.to_dict(), "chunk_size": int(chunk_size),
               "columns": cols, "runs": [], "next_run": 1}
        path.parent.mkdir(parents=True, exist_ok=True)
        import zarr

        with _atomic.write_aside(path) as tmp:
            zarr.open_group(tmp, mode="w-", zarr_format=3, attributes={_ATTR: man})
        return cls(path)

    # properties -----------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return int(self._manifest["chunk_size"])

    @property
    def variables(self) -> list[str]:
        cols = self._manifest["columns"] or {}
        return [c for c in cols if c not in _BASE]

    @property
    def runs(self) -> list[dict]:
        """The sorted runs: ``[{"name", "records", "chunks"}, ...]``, oldest first."""
        return [dict(r) for r in self._manifest["runs"]]

    def __len__(self) -> int:
        return sum(r["records"] for r in self._manifest["runs"])

    @property
    def n_chunks(self) -> int:
        return sum(r["chunks"] for r in self._manifest["runs"])

    def __repr__(self):
        s = self.scheme
        return (f"PointStore({str(self.path)!r}, key={s.kind!r}, level={s.level}, "
                f"fanout={s.fanout}, records={len(self)}, runs={len(self.runs)}, "
                f"chunks={self.n_chunks})")

    # writing --------------------------------------------------------------
    def append(self, records) -> None:
        """Add records, keeping the store sorted by key; atomic.

        Parameters
        ----------
        records : pandas.DataFrame | dask.dataframe.DataFrame | dict
            Columns ``lon``, ``lat`` (degrees), ``time`` (datetime-like, UTC) and the
            store's variables (all of them, no others; the first append of a store
            created without ``variables`` defines them). A dask DataFrame is computed
            into memory and written as one batch.

        Raises
        ------
        IndexRangeError
            Invalid lon/lat, or a time outside the task interval.
        StoreError
            Missing or unexpected columns.
        """
        where = "PointStore.append"
        df = _records_frame(records, where)
        if len(df) == 0:
            return
        cols = self._manifest["columns"]
        new_cols = cols is None
        if new_cols:
            cols = {**_BASE, **{str(c): np.dtype(df[c].dtype).name for c in df.columns
                                if c not in _BASE}}
            _check_names(list(cols), where)
        extra = sorted(set(map(str, df.columns)) - set(cols))
        missing = [c for c in cols if c not in df.columns]
        if extra or missing:
            raise StoreError(f"{where}: records must have exactly the store's columns "
                             f"{list(cols)}; missing {missing}, unexpected {extra}")
        data = {c: np.asarray(df[c], dtype=cols[c]) for c in cols if c != "time"}
        data["time"] = to_ns(df["time"], where=where)
        # validates lon/lat/time before anything is written
        key = self.scheme.encode_ns(data["lon"], data["lat"], data["time"])
        order = np.argsort(key, kind="stable")
        batch = {"key": key[order], **{c: v[order] for c, v in data.items()}}
        self._commit_merge(batch, cols if new_cols else None)

    def compact(self) -> None:
        """Merge all runs into one (atomic); queries then read one sorted sequence."""
        if len(self._manifest["runs"]) > 1:
            self._commit_merge(None, None, merge_all=True)

    def _clean_orphans(self):
        live = {r["name"] for r in self._manifest["runs"]}
        root = self.path / "runs"
        if root.is_dir():
            for p in root.iterdir():
                if p.name not in live:
                    shutil.rmtree(p, ignore_errors=True)

    def _commit_merge(self, batch, new_cols, merge_all=False):
        self._clean_orphans()
        man = json.loads(json.dumps(self._manifest))
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
        parts = [self._read_run(r["name"]) for r in runs[j:]]
        if batch is not None:
            parts.append(batch)
        merged = _merge_sorted(parts)
        name = f"r{man['next_run']:06d}"
        man["next_run"] += 1
        if new_cols is not None:
            man["columns"] = new_cols
        cols = man["columns"]
        (self.path / "runs").mkdir(exist_ok=True)
        run_path = self.path / "runs" / name
        with _atomic.write_aside(run_path) as tmp:
            nchunks = _write_run(tmp, merged, cols, self.chunk_size)
        old = [r["name"] for r in runs[j:]]
        man["runs"] = runs[:j] + [{"name": name, "records": int(len(merged["key"])),
                                   "chunks": nchunks}]
        try:
            with _atomic.journal(self.path, ["zarr.json"], {}):
                self._write_manifest(man)
        except BaseException:
            shutil.rmtree(run_path, ignore_errors=True)
            raise
        self._manifest = man
        for o in old:
            shutil.rmtree(self.path / "runs" / o, ignore_errors=True)
            self._index_cache.pop(o, None)
            self._readers.pop(o, None)

    def _write_manifest(self, man: dict) -> None:
        import zarr

        g = zarr.open_group(self.path, mode="r+", zarr_format=3)
        g.attrs[_ATTR] = man

    def _read_run(self, name: str) -> dict:
        import zarr

        g = zarr.open_group(self.path / "runs" / name, mode="r")
        cols = ["key", *self._manifest["columns"]]
        return {c: g[c][:] for c in cols}

    # reading --------------------------------------------------------------
    def _reader(self, name) -> _RunReader:
        if name not in self._readers:
            self._readers[name] = _RunReader(self.path / "runs" / name,
                                             ["key", *self._manifest["columns"]])
        return self._readers[name]

    def _chunk_index(self, name):
        if name not in self._index_cache:
            import zarr

            g = zarr.open_group(self.path / "runs" / name, mode="r")
            self._index_cache[name] = (g["chunk_first"][:], g["chunk_last"][:])
        return self._index_cache[name]

    def read(self, variables=None) -> pd.DataFrame:
        """All records (in key order per run), without a filter."""
        return self.query(variables=variables).df

    def query(self, region=None, time=None, variables=None, *,
              max_ranges: int | None = _DEFAULT_MAX_RANGES, span: int = 4) -> QueryResult:
        """Records in ``region`` during ``time``: key ranges, overlapping chunks, exact filter.

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
        """
        import dask

        t_start = _time.perf_counter()
        where = "PointStore.query"
        reg = as_region(region, where=f"{where}: region")
        iv = parse_interval(time, where=where)
        vars_ = self.variables if variables is None else list(variables)
        unknown = [v for v in vars_ if v not in self.variables]
        if unknown:
            raise StoreError(f"{where}: unknown variables {unknown}; the store has "
                             f"{self.variables}")
        cover = self.scheme.cover_ns(reg, iv, max_ranges=max_ranges)
        tasks = []
        chunks_read = 0
        for run in self._manifest["runs"]:
            first, last = self._chunk_index(run["name"])
            hit = np.flatnonzero(ranges.overlapping(cover, first, last))
            chunks_read += hit.size
            for a, b in _spans(hit, span):
                # a bound partial: dask would otherwise walk the zarr arrays' fields
                task = functools.partial(_read_span, self._reader(run["name"]),
                                         a * self.chunk_size,
                                         min(b * self.chunk_size, run["records"]), cover, reg,
                                         iv, vars_)
                tasks.append(dask.delayed(task, pure=False, traverse=False)())
        parts = dask.compute(*tasks) if tasks else []
        if parts:  # one concatenation per column: much cheaper than concatenating frames
            df = pd.DataFrame({c: np.concatenate([p[0][c] for p in parts]) for c in parts[0][0]})
        else:
            df = _empty_frame(vars_, self._manifest["columns"] or {})
        res = QueryResult(
            df=df, records_read=int(sum(p[1] for p in parts)), chunks_read=chunks_read,
            chunks_total=self.n_chunks, records_in_ranges=int(sum(p[2] for p in parts)),
            records_returned=len(df), n_ranges=len(cover),
            seconds=_time.perf_counter() - t_start)
        df.attrs.update(records_read=res.records_read, chunks_read=res.chunks_read,
                        records_returned=res.records_returned,
                        records_in_ranges=res.records_in_ranges)
        return res


def _check_names(cols, where):
    bad = [c for c in cols if c in ("key", "chunk_first", "chunk_last") or "/" in c or not c]
    if bad:
        raise StoreError(f"{where}: column names {bad} are reserved or invalid")


def _merge_sorted(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    key = np.concatenate([p["key"] for p in parts])
    # stable: equal keys keep the order of their appends
    order = np.argsort(key, kind="stable")
    return {c: np.concatenate([p[c] for p in parts])[order] for c in parts[0]}


def _write_run(path: Path, data: dict, cols: dict, chunk_size: int) -> int:
    import zarr

    g = zarr.open_group(path, mode="w-", zarr_format=3)
    n = len(data["key"])
    comp = [_compressor()]
    for c in ["key", *cols]:
        v = np.ascontiguousarray(data[c])
        a = g.create_array(c, shape=(n,), dtype=v.dtype, chunks=(chunk_size,), compressors=comp,
                           dimension_names=["record"],
                           attributes={"units": "ns since 1970-01-01 UTC"} if c == "time" else {})
        a[:] = v
    key = data["key"]
    first = key[::chunk_size]
    last = np.append(key[chunk_size - 1::chunk_size], key[-1])[: len(first)]
    for name, v in (("chunk_first", first), ("chunk_last", last)):
        a = g.create_array(name, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),))
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
    """

    def __init__(self, path: Path, columns: list[str]):
        import zarr

        g = zarr.open_group(path, mode="r")
        self.path = path
        self.arrays = {c: g[c] for c in columns}
        self.chunk = int(self.arrays["key"].chunks[0])
        self.direct = {c: _direct_layout(a) for c, a in self.arrays.items()}

    def read(self, col: str, a: int, b: int) -> np.ndarray:
        layout = self.direct[col]
        if layout is None or b <= a:
            return self.arrays[col][a:b]
        from numcodecs import blosc

        dtype, fill = layout
        c0, c1 = a // self.chunk, (b - 1) // self.chunk + 1
        parts = []
        for i in range(c0, c1):
            try:
                buf = (self.path / col / "c" / str(i)).read_bytes()
            except FileNotFoundError:  # zarr does not write chunks that equal the fill value
                parts.append(np.full(self.chunk, fill, dtype))
                continue
            parts.append(np.frombuffer(blosc.decompress(buf), dtype=dtype))
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

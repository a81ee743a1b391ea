"""Similarity search over cell embeddings: exact NumPy, or PostgreSQL + pgvector (HNSW).

A :class:`VectorIndex` holds one embedding per H3 cell (one resolution) and answers
"which cells look most like this one?", optionally only within a region. The cell ids,
centres and coarse parent ids stay in memory in both backends (8 bytes a column a cell),
so queries by cell or location and region filters are planned locally; the vectors live
in NumPy (``backend="exact"``, the reference) or in PostgreSQL (``backend="pgvector"``,
embedded by default in a data folder, or any server by ``dsn=``).

Distances: ``cosine`` = 1 − cos(a, b) ∈ [0, 2] (pgvector's ``<=>``), ``l2`` = Euclidean.

Examples
--------
>>> import numpy as np
>>> from stengine.index import h3 as sth3
>>> from stengine.learn.vectors import VectorIndex
>>> cells = sth3.all_cells(1)                       # 842 cells
>>> lon, lat = sth3.cell_to_lonlat(cells)
>>> vec = np.c_[np.cos(np.radians(lat)), np.sin(np.radians(lat)), 0.1 * np.cos(np.radians(lon))]
>>> ix = VectorIndex.build(cells, vec)
>>> res = ix.similar((2.35, 48.85), k=3)
>>> list(res.columns), len(res), bool(res.distance.is_monotonic_increasing)
(['cell', 'distance', 'lon', 'lat'], 3, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import IndexRangeError, VectorIndexError
from ..index import h3 as sth3
from . import _vectors_exact as _ex

__all__ = ["VectorIndex"]

BACKENDS = ("exact", "pgvector")
METRICS = ("cosine", "l2")


def _check_choice(value, choices, name):
    if value not in choices:
        raise VectorIndexError(f"{name} must be one of {choices}; got {value!r}")
    return value


class VectorIndex:
    """k-nearest cells by embedding; build with :meth:`build`, :meth:`from_parquet`, :meth:`open`.

    Attributes: ``cells`` (uint64, sorted), ``lon``/``lat`` (float64 degrees, centres),
    ``parents`` ({level: uint64 parent ids}), ``resolution``, ``dim``, ``metric``,
    ``backend``, ``model_hash``, ``build_seconds`` (pgvector: copy/hnsw/total).
    """

    def __init__(self, *, cells, lon, lat, parents, resolution, dim, metric, backend,
                 vectors=None, conn=None, name=None, model_hash=None, ef_search=120,
                 exact_max=50000):
        self.cells, self.lon, self.lat = cells, lon, lat
        self.parents = dict(parents)
        self.resolution, self.dim, self.metric, self.backend = resolution, dim, metric, backend
        self.model_hash = model_hash
        self.ef_search, self.exact_max = int(ef_search), int(exact_max)
        self.name = name
        self.build_seconds: dict = {}
        self._x, self._conn = vectors, conn
        self._pca = None

    def __len__(self) -> int:
        return int(self.cells.size)

    def __repr__(self) -> str:
        return (f"VectorIndex({len(self)} cells, h3 res {self.resolution}, D={self.dim}, "
                f"{self.metric}, backend={self.backend!r})")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def build(cls, cells, vectors, *, lon=None, lat=None, parents: Mapping | None = None,
              backend: str = "exact", metric: str = "cosine", dsn: str | None = None,
              data_dir: str | os.PathLike | None = None, name: str = "vectorgeo",
              model_hash: str | None = None, m: int = 16, ef_construction: int = 64,
              ef_search: int = 120, exact_max: int = 50000, if_exists: str = "replace"):
        """Index ``vectors`` (``(n, D)``, float) of H3 ``cells`` (n uint64, one resolution).

        ``lon``/``lat`` default to the cell centres; ``parents`` ({level: ids}) default to
        levels 0..res−1 computed from the cells (they speed region filters). pgvector:
        ``dsn`` of a server with the extension, else the embedded server in ``data_dir``
        (default ``<stengine cache>/pgdata``); ``name`` is the table; HNSW ``m`` and
        ``ef_construction``; queries use ``ef_search``; ``if_exists`` "replace" | "fail".
        """
        _check_choice(backend, BACKENDS, "backend")
        _check_choice(metric, METRICS, "metric")
        c = np.asarray(cells)
        if c.ndim != 1 or c.dtype.kind not in "ui":
            raise VectorIndexError(f"cells must be a 1-D array of integer H3 ids; got shape "
                                   f"{c.shape}, dtype {c.dtype}")
        c = c.astype(np.uint64)
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != c.size or x.shape[1] < 1:
            raise VectorIndexError(f"vectors must be (n, D) with n = len(cells) = {c.size}; got "
                                   f"shape {x.shape}")
        if c.size == 0:
            raise VectorIndexError("cells: an index needs at least one cell; got none")
        if not np.isfinite(x).all():
            raise VectorIndexError("vectors must be finite; got NaN or inf")
        ok = sth3.is_valid(c)
        if not ok.all():
            raise VectorIndexError(f"cells must be valid H3 ids; got {int(c[~ok][0]):#x}")
        lv = sth3.cell_level(c)
        if (lv != lv[0]).any():
            raise VectorIndexError(f"cells must share one H3 resolution; got resolutions "
                                   f"{sorted(set(lv.tolist()))}")
        res = int(lv[0])
        o = np.argsort(c, kind="stable")
        c, x = c[o], x[o]
        if (np.diff(c) == 0).any():
            raise VectorIndexError(f"cells must be unique; {int(c[:-1][np.diff(c) == 0][0]):#x} "
                                   "appears twice")
        if lon is None or lat is None:
            lo, la = sth3.cell_to_lonlat(c)
        else:
            lo, la = np.asarray(lon, np.float64)[o], np.asarray(lat, np.float64)[o]
        if parents is None:
            par = {r: sth3.cell_to_parent(c, r) for r in range(max(0, res - 3), res)}
        else:
            par = {}
            for r, p in parents.items():
                r = int(r)
                if not 0 <= r < res:
                    raise VectorIndexError(f"parents: level {r} must be coarser than the cells' "
                                           f"resolution {res}")
                par[r] = np.asarray(p).astype(np.uint64)[o]
        kw = dict(cells=c, lon=lo, lat=la, parents=par, resolution=res, dim=x.shape[1],
                  metric=metric, backend=backend, model_hash=model_hash, ef_search=ef_search,
                  exact_max=exact_max)
        if backend == "exact":
            return cls(vectors=_ex.prepare(x, metric), **kw)
        from . import _vectors_pg as _pg

        conn = _pg.connect(_dsn(dsn, data_dir))
        ix = cls(conn=conn, name=_pg.check_name(name), **kw)
        ix.build_seconds = _pg.create(conn, name, cells=c, lon=lo, lat=la, parents=par,
                                      vectors=x, metric=metric, resolution=res,
                                      model_hash=model_hash, m=m,
                                      ef_construction=ef_construction, if_exists=if_exists)
        return ix

    @classmethod
    def from_parquet(cls, path, *, backend: str = "exact", dsn: str | None = None, **kw):
        """Load embeddings written as (Geo)Parquet: a file or a partitioned folder.

        Columns: ``cell`` (uint64 H3), ``lon``, ``lat``, ``embedding`` (fixed-size list of
        float32), optional ``parent_r{k}`` and ``model_hash``. Other ``kw`` go to :meth:`build`.
        """
        import pyarrow.dataset as pds

        p = Path(path)
        if not p.exists():
            raise VectorIndexError(f"path: no Parquet file or folder at {p}")
        ds = pds.dataset(str(p), format="parquet", partitioning="hive")
        names = ds.schema.names
        missing = {"cell", "embedding"} - set(names)
        if missing:
            raise VectorIndexError(f"path: {p} lacks columns {sorted(missing)}; has {names}")
        pcols = [n for n in names if n.startswith("parent_r") and n[8:].isdigit()]
        cols = ["cell", "embedding", *(c for c in ("lon", "lat", "model_hash") if c in names),
                *pcols]
        t = ds.to_table(columns=cols)
        emb = t.column("embedding").combine_chunks()
        d = emb.type.list_size if hasattr(emb.type, "list_size") else None
        flat = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        if d is None:
            d = flat.size // max(len(t), 1)
        vec = flat.reshape(len(t), d)
        cells = t.column("cell").to_numpy().astype(np.int64).view(np.uint64)
        parents = {int(n[8:]): t.column(n).to_numpy().astype(np.int64).view(np.uint64)
                   for n in pcols}
        mh = None
        if "model_hash" in names and len(t):
            mh = str(t.column("model_hash")[0].as_py())
        lon = t.column("lon").to_numpy() if "lon" in names else None
        lat = t.column("lat").to_numpy() if "lat" in names else None
        kw.setdefault("model_hash", mh)
        return cls.build(cells, vec, lon=lon, lat=lat, parents=parents or None, backend=backend,
                         dsn=dsn, **kw)

    @classmethod
    def open(cls, name: str = "vectorgeo", *, dsn: str | None = None,
             data_dir: str | os.PathLike | None = None, ef_search: int = 120,
             exact_max: int = 50000):
        """Open an index built earlier with ``backend="pgvector"`` (it persists)."""
        from . import _vectors_pg as _pg

        conn = _pg.connect(_dsn(dsn, data_dir))
        dim, res, metric, _, mh, cells, lon, lat, par = _pg.load_meta(conn, name)
        return cls(cells=cells, lon=lon, lat=lat, parents=par, resolution=res, dim=dim,
                   metric=metric, backend="pgvector", conn=conn, name=name, model_hash=mh,
                   ef_search=ef_search, exact_max=exact_max)

    def close(self) -> None:
        """Close the database connection (pgvector); the index stays in the database."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- queries -------------------------------------------------------------------------
    def _row(self, cell: int, what: str) -> int:
        i = int(np.searchsorted(self.cells, np.uint64(cell)))
        if i >= self.cells.size or self.cells[i] != np.uint64(cell):
            raise VectorIndexError(f"query: {what} is not in the index ({len(self)} cells at "
                                   f"resolution {self.resolution}; e.g. an ocean cell)")
        return i

    def _parse_query(self, query):
        """(vector, self row or -1)."""
        if isinstance(query, bool):
            raise VectorIndexError(f"query must be a cell id, a (lon, lat) tuple or a vector; "
                                   f"got {query!r}")
        if isinstance(query, int | np.integer):
            c = int(query)
            if c < 0 or c >= 2**64 or not sth3.is_valid(np.array([c], np.uint64))[0]:
                raise VectorIndexError(f"query: {c} is not a valid H3 cell id")
            lv = int(sth3.cell_level(np.array([c], np.uint64))[0])
            if lv != self.resolution:
                raise VectorIndexError(f"query: cell {c:#x} has resolution {lv}; this index holds "
                                       f"resolution {self.resolution} (use cell_to_parent or "
                                       "cell_to_children)")
            i = self._row(c, f"cell {c:#x}")
            return self.vector(i), i
        if isinstance(query, tuple) and len(query) == 2:
            lon, lat = (float(v) for v in query)
            if not (math.isfinite(lon) and -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise IndexRangeError(f"query: (lon, lat) must be degrees in [-180, 180] × "
                                      f"[-90, 90]; got ({lon}, {lat})")
            c = int(sth3.lonlat_to_cell(lon, lat, self.resolution))
            i = self._row(c, f"the cell {c:#x} at ({lon}, {lat})")
            return self.vector(i), i
        v = np.asarray(query, dtype=np.float64)
        if v.ndim != 1 or v.size != self.dim:
            raise VectorIndexError(f"query: a vector must have length D = {self.dim}; got shape "
                                   f"{v.shape} (a location is a (lon, lat) tuple)")
        if not np.isfinite(v).all():
            raise VectorIndexError("query: the vector must be finite; got NaN or inf")
        return v.astype(np.float32), -1

    def vector(self, row: int) -> np.ndarray:
        """The stored embedding of row ``row`` (cosine: unit-normalised in the exact backend)."""
        if self._x is not None:
            return self._x[row]
        from . import _vectors_pg as _pg

        return _pg.get_vector(self._require_conn(), self.name, int(self.cells[row]))

    def _require_conn(self):
        if self._conn is None:
            raise VectorIndexError("the index is closed; reopen it with VectorIndex.open")
        return self._conn

    def similar(self, query, k: int = 10, within=None, exclude_self: bool = True):
        """The ``k`` cells nearest to ``query``: DataFrame ``cell, distance, lon, lat``.

        Parameters
        ----------
        query : int | tuple[float, float] | array-like
            A cell id of the index's resolution, a ``(lon, lat)`` tuple in degrees (its
            cell at that resolution), or a vector of length ``dim``.
        k : int
            How many cells (fewer when the region holds fewer).
        within : shapely geometry | tuple | set | array, optional
            A polygon, a bbox tuple ``(minx, miny, maxx, maxy)`` in degrees, or cells (any
            resolution ≤ the index's: their descendants). Region filters keep a cell
            when its centre is in (or on) the geometry.
        exclude_self : bool
            Leave the query's own cell out (cell and location queries).

        Raises
        ------
        VectorIndexError
            Unknown cell, wrong resolution or dimension, empty region, bad ``k``.
        IndexRangeError
            ``(lon, lat)`` outside the globe.
        """
        import pandas as pd

        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise VectorIndexError(f"k must be a positive integer; got {k!r}")
        q, me = self._parse_query(query)
        flt = None if within is None else self._within(within)
        rows = None if flt is None else flt.rows
        skip = me if exclude_self and me >= 0 else -1
        if self.backend == "exact":
            idx, d = _ex.topk(self._x, q, int(k), self.metric, rows=rows,
                              skip=None if skip < 0 else np.array([skip]))
            idx, d = idx[0], d[0].astype(np.float64)
        else:
            from . import _vectors_pg as _pg

            extra = 1 if skip >= 0 else 0
            cells, d = _pg.search(self._require_conn(), self.name, q, int(k) + extra,
                                  self.metric, ef_search=self.ef_search, n_total=len(self),
                                  flt=flt, cells=self.cells, exact_max=self.exact_max)
            if skip >= 0:
                keep = cells != self.cells[skip]
                cells, d = cells[keep], d[keep]
            cells, d = cells[:k], d[:k]
            idx = np.searchsorted(self.cells, cells)
            o = np.lexsort((idx, d))  # same tie rule as the exact backend
            idx, d = idx[o], d[o]
        return pd.DataFrame({"cell": self.cells[idx], "distance": d, "lon": self.lon[idx],
                             "lat": self.lat[idx]})

    # -- region filters ------------------------------------------------------------------
    def _within(self, within):
        """The rows of ``within`` (a :class:`~stengine.learn._vectors_region.Filter`)."""
        import shapely

        from . import _vectors_region as _rg

        # the last few regions are kept: a viewer or a batch asks the same region again
        key = (tuple(map(float, within)) if isinstance(within, tuple) and len(within) == 4
               else shapely.to_wkb(within) if isinstance(within, shapely.Geometry) else None)
        cache = self.__dict__.setdefault("_filters", {})
        if key is not None and key in cache:
            return cache[key]
        flt = _rg.rows_within(self, within)
        if key is not None:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = flt
        return flt

    # -- for maps ------------------------------------------------------------------------
    def vectors(self) -> np.ndarray:
        """All embeddings ``(n, D)`` float32 in cell order (pgvector: read once, cached)."""
        if self._x is not None:
            return self._x
        if getattr(self, "_fetched", None) is None:
            from . import _vectors_pg as _pg

            rows = self._require_conn().execute(
                f"SELECT cell, embedding FROM {self.name}").fetchall()
            c = np.array([r[0] for r in rows], np.int64).view(np.uint64)
            v = np.stack([_pg.as_array(r[1]) for r in rows])
            self._fetched = v[np.argsort(c, kind="stable")]
        return self._fetched

    def pca(self, n: int = 1) -> np.ndarray:
        """First ``n`` principal components per cell ``(cells, n)`` (NumPy SVD, centred).

        The sign of each component is fixed so its largest loading is positive.
        """
        if self._pca is None or self._pca.shape[1] < n:
            x = self.vectors().astype(np.float64)
            x = x - x.mean(axis=0)
            sample = x if len(x) <= 200_000 else x[:: max(1, len(x) // 200_000)]
            _, _, vt = np.linalg.svd(sample, full_matrices=False)
            vt = vt[:n]
            vt = vt * np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]
            self._pca = x @ vt.T
        return self._pca[:, :n]


def _dsn(dsn, data_dir):
    if dsn is not None:
        return dsn
    from .._pgserver import embedded_dsn

    return embedded_dsn(data_dir)

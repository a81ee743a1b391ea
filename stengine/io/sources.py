"""Data sources: one spec (plain JSON data) and one ``open_source`` for files, URLs and SQL.

A source is a :class:`SourceSpec` ``(kind, location, options)``. ``open_source`` returns

* a cube (``xarray.DataArray`` / ``Dataset``) for ``geotiff``, ``zarr``, ``netcdf``;
* a ``dask.dataframe.DataFrame`` for ``csv`` and ``sql``;
* a ``geopandas.GeoDataFrame`` for ``geoparquet`` (bbox filter pushed down to row groups);
* a :class:`~stengine.io.points.PointStore` for ``sql-points`` (observation tables);
* for ``hdfs``, what the file's format gives (through pyarrow's HadoopFileSystem).

Files and URLs go through fsspec (``file://``, ``http(s)://``, ``s3://``, ``memory://``,
``hdfs://``); SQL through SQLAlchemy. Secrets (passwords, storage credentials) are taken
from the spec or the environment (``password_env``) and never shown: ``repr``,
:meth:`SourceSpec.redacted`, log records and error messages mask them as ``"***"``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError, StEngineError
from ._sources_secrets import redact_text, redact_value, secret_values

__all__ = ["SOURCE_KINDS", "SourceSpec", "open_source", "check_source", "preview_source",
           "quicklook_png", "infer_kind"]

log = logging.getLogger("stengine.io.sources")

SOURCE_KINDS: tuple[str, ...] = ("geotiff", "zarr", "netcdf", "geoparquet", "csv", "sql",
                                 "sql-points", "hdfs")
RASTER_KINDS = ("geotiff", "zarr", "netcdf")
FILE_KINDS = ("geotiff", "zarr", "netcdf", "geoparquet", "csv")

_COMMON = {"storage_options", "endpoint_url", "anon", "password", "password_env"}
_SQL = {"table", "query", "schema", "columns", "connect_timeout", "password", "password_env"}
OPTIONS: dict[str, set[str]] = {
    "geotiff": _COMMON | {"chunks", "masked", "bands", "name"},
    "zarr": _COMMON | {"chunks", "variable"},
    "netcdf": _COMMON | {"chunks", "variable", "engine"},
    "geoparquet": _COMMON | {"bbox", "columns"},
    "csv": _COMMON | {"blocksize", "columns", "dtype", "sep", "parse_dates"},
    "sql": _SQL | {"index_col", "npartitions", "fetch"},
    "sql-points": _SQL | {"lon", "lat", "time", "values", "store", "key", "level", "fanout",
                          "t0", "t1", "chunk_size", "overwrite", "batch_size"},
}
OPTIONS["hdfs"] = {"format", "host", "port", "user", "kerb_ticket"} | set().union(
    *(OPTIONS[k] for k in FILE_KINDS))

_EXT = [(".tif", "geotiff"), (".tiff", "geotiff"), (".cog", "geotiff"), (".zarr", "zarr"),
        (".nc", "netcdf"), (".nc4", "netcdf"), (".netcdf", "netcdf"), (".cdf", "netcdf"),
        (".geoparquet", "geoparquet"), (".parquet", "geoparquet"), (".pq", "geoparquet"),
        (".csv", "csv"), (".csv.gz", "csv"), (".csv.bz2", "csv"), (".tsv", "csv")]
_SQL_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "oracle", "mssql",
                "duckdb")


def infer_kind(location: str) -> str:
    """The kind of a URI or path: ``hdfs://`` → hdfs, SQLAlchemy URLs → sql, else the extension.

    >>> infer_kind("s3://bucket/dem.tif"), infer_kind("sqlite:///a.db")
    ('geotiff', 'sql')
    """
    loc = str(location)
    scheme = loc.split("://", 1)[0].lower() if "://" in loc else ""
    if scheme == "hdfs":
        return "hdfs"
    if scheme.split("+", 1)[0] in _SQL_SCHEMES:
        return "sql"
    path = loc.split("?", 1)[0].rstrip("/").lower()
    for ext, kind in sorted(_EXT, key=lambda e: -len(e[0])):
        if path.endswith(ext):
            return kind
    raise SourceError(f"cannot infer the source kind of {redact_text(loc)!r} from its "
                      f"extension; pass kind= (one of {SOURCE_KINDS})", field="kind")


def _jsonable(options, where="options"):
    try:
        return json.loads(json.dumps(options, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise SourceError(f"SourceSpec: {where} must be JSON data (str, number, bool, None, "
                          f"lists, dicts with str keys); {e}", field=where) from None


@dataclass(frozen=True)
class SourceSpec:
    """A data source as plain data: ``kind``, ``location`` and ``options``.

    Parameters
    ----------
    kind : str
        One of :data:`SOURCE_KINDS`.
    location : str
        Path, URL, SQLAlchemy URL (better without the password) or ``hdfs://`` URL.
    options : dict
        JSON data, checked against the kind (see docs/sources.md); tuples become lists,
        so a spec equals its JSON round trip.

    Examples
    --------
    >>> s = SourceSpec("sql", "postgresql://me:pw@db/x", {"table": "obs"})
    >>> s.redacted()["location"]
    'postgresql://me:***@db/x'
    >>> SourceSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    True
    """

    kind: str
    location: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in SOURCE_KINDS:
            raise SourceError(f"SourceSpec: kind must be one of {SOURCE_KINDS}; got "
                              f"{self.kind!r}", field="kind")
        if isinstance(self.location, os.PathLike):
            object.__setattr__(self, "location", os.fspath(self.location))
        if not isinstance(self.location, str) or not self.location.strip():
            raise SourceError("SourceSpec: location must be a non-empty str (path, URL or "
                              f"SQLAlchemy URL); got {type(self.location).__name__} "
                              f"{redact_text(str(self.location))!r}", field="location")
        if not isinstance(self.options, dict):
            raise SourceError("SourceSpec: options must be a dict; got "
                              f"{type(self.options).__name__}", field="options")
        opts = _jsonable(self.options)
        bad = sorted(set(opts) - OPTIONS[self.kind])
        if bad:
            raise SourceError(f"SourceSpec: unknown option {bad[0]!r} for kind {self.kind!r}; "
                              f"expected some of {sorted(OPTIONS[self.kind])}", field=bad[0])
        object.__setattr__(self, "options", opts)

    def __hash__(self):
        return hash((self.kind, self.location, json.dumps(self.options, sort_keys=True)))

    def to_dict(self) -> dict:
        """``{"kind", "location", "options"}``, JSON-safe, secrets included."""
        return {"kind": self.kind, "location": self.location,
                "options": json.loads(json.dumps(self.options))}

    @classmethod
    def from_dict(cls, d) -> SourceSpec:
        """The spec of a ``to_dict()`` result; :class:`SourceError` naming the bad field."""
        if not isinstance(d, dict):
            raise SourceError(f"SourceSpec.from_dict: expected a dict; got {type(d).__name__}",
                              field="spec")
        extra = sorted(set(d) - {"kind", "location", "options"})
        if extra:
            raise SourceError(f"SourceSpec.from_dict: unknown field {extra[0]!r}; expected "
                              "kind, location, options", field=extra[0])
        for f in ("kind", "location"):
            if f not in d:
                raise SourceError(f"SourceSpec.from_dict: {f} is missing", field=f)
        opts = d.get("options")
        return cls(d["kind"], d["location"], {} if opts is None else opts)

    def redacted(self) -> dict:
        """:meth:`to_dict` with every secret (passwords, URL passwords, keys) as ``"***"``."""
        return {"kind": self.kind, "location": redact_text(self.location),
                "options": {k: redact_value(k, v) for k, v in self.options.items()}}

    def secrets(self) -> list[str]:
        """The secret strings this spec carries or names (for scrubbing messages)."""
        return secret_values(self.options, self.location)

    def __repr__(self):
        r = self.redacted()
        return f"SourceSpec(kind={r['kind']!r}, location={r['location']!r}, " \
               f"options={r['options']!r})"

    __str__ = __repr__


def as_spec(spec_or_uri, **options) -> SourceSpec:
    """A :class:`SourceSpec` from a spec, a dict, or a path/URI (kind inferred), plus options."""
    if isinstance(spec_or_uri, SourceSpec):
        if not options:
            return spec_or_uri
        kind = options.pop("kind", spec_or_uri.kind)
        return SourceSpec(kind, spec_or_uri.location, {**spec_or_uri.options, **options})
    if isinstance(spec_or_uri, dict):
        s = SourceSpec.from_dict(spec_or_uri)
        return as_spec(s, **options) if options else s
    if isinstance(spec_or_uri, str | Path):
        loc = os.fspath(spec_or_uri)
        if not loc.strip():
            raise SourceError("open_source: location must be a non-empty path or URL",
                              field="location")
        kind = options.pop("kind", None) or infer_kind(loc)
        return SourceSpec(kind, loc, options)
    raise SourceError("open_source: expected a SourceSpec, a dict, a path or a URL; got "
                      f"{type(spec_or_uri).__name__}", field="spec")


def scrubbed(spec: SourceSpec, exc: BaseException) -> str:
    """``str(exc)`` with the spec's secrets masked."""
    return redact_text(str(exc), spec.secrets())


def _guard(spec: SourceSpec, fn, *a, **kw):
    """Run ``fn``; re-raise foreign errors with secrets masked (our own are already clean)."""
    try:
        return fn(*a, **kw)
    except StEngineError:
        raise
    except Exception as e:
        msg = scrubbed(spec, e)
        if msg == str(e):
            raise
        raise type(e)(msg) if _plain_ctor(e) else SourceError(msg, field="location") from None


def _plain_ctor(e) -> bool:
    try:
        type(e)("x")
        return True
    except Exception:
        return False


def _module(kind):
    if kind in ("sql", "sql-points"):
        from . import _sources_sql as m
    else:
        from . import _sources_files as m
    return m


def open_source(spec_or_uri, **options):
    """Open a source: a cube, a dask/Geo DataFrame or a PointStore, by kind.

    Parameters
    ----------
    spec_or_uri : SourceSpec | dict | str | pathlib.Path
        A spec, its ``to_dict()``, or a path/URL whose kind is inferred from the scheme
        or extension (``kind=`` overrides).
    **options
        Options of the kind (see docs/sources.md), merged over the spec's.

    Raises
    ------
    SourceError
        Unknown kind or option, bad option value (``field`` names it).
    SourceConnectionError
        Unreachable host, refused credentials, missing bucket.
    StoreNotFoundError
        A missing file.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> pd.DataFrame({"x": [1, 2, 3]}).to_csv(p, index=False)
    >>> int(open_source(p)["x"].sum().compute())
    6
    """
    spec = as_spec(spec_or_uri, **options)
    log.debug("open_source %s", spec)
    return _guard(spec, _module(spec.kind).open_spec, spec)


def check_source(spec) -> dict:
    """Check that a source is reachable without reading it: ``{"ok", "kind", "detail"}``.

    Raises :class:`~stengine.errors.SourceConnectionError` (field named) for an
    unreachable host, wrong credentials or a missing bucket, and
    :class:`~stengine.errors.StoreNotFoundError` for a missing file.
    """
    spec = as_spec(spec)
    detail = _guard(spec, _module(spec.kind).check_spec, spec)
    return {"ok": True, "kind": spec.kind, "detail": redact_text(detail, spec.secrets())}


def preview_source(spec, n: int = 5) -> dict:
    """A JSON-safe preview: kind, type (table/raster/points), schema, first ``n`` rows.

    Rasters add ``shape``, ``dims``, ``crs`` (WKT or EPSG string, or None) and ``bounds``
    ``[left, bottom, right, top]`` in CRS units.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SourceError(f"preview_source: n must be an int >= 0; got {n!r}", field="n")
    spec = as_spec(spec)
    from ._sources_preview import preview
    return _guard(spec, preview, spec, n)


def quicklook_png(spec, *, width: int = 512) -> bytes:
    """PNG bytes of a raster source's first slice, at most ``width`` pixels wide."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 16:
        raise SourceError(f"quicklook_png: width must be an int >= 16 (pixels); got "
                          f"{width!r}", field="width")
    spec = as_spec(spec)
    if spec.kind not in RASTER_KINDS and not (
            spec.kind == "hdfs" and spec.options.get("format") in RASTER_KINDS):
        raise SourceError(f"quicklook_png needs a raster source ({RASTER_KINDS}); got kind "
                          f"{spec.kind!r}", field="kind")
    from ._sources_preview import quicklook
    return _guard(spec, quicklook, spec, width)


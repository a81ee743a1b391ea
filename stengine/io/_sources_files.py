"""File and URL sources through fsspec: GeoTIFF/COG, Zarr, NetCDF, GeoParquet, CSV, HDFS."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import SourceConnectionError, SourceError, StoreNotFoundError
from ._sources_secrets import redact_text

_READ_KW = {"geotiff": ("chunks", "masked", "bands", "name"), "zarr": ("chunks", "variable"),
            "netcdf": ("chunks", "variable", "engine")}
HDFS_NEEDS = ("libhdfs (libhdfs.so, from a Hadoop install or ARROW_LIBHDFS_DIR), JAVA_HOME "
              "(a JDK), HADOOP_HOME, and CLASSPATH set to `$HADOOP_HOME/bin/hadoop classpath "
              "--glob`")


def protocol(location: str) -> str:
    """The fsspec protocol of a location (``"file"`` for plain paths)."""
    if "://" not in location:
        return "file"
    p = location.split("://", 1)[0].lower()
    return {"https": "http", "s3a": "s3"}.get(p, p)


def _local_path(location: str) -> str:
    return location[7:] if location.startswith("file://") else location


def storage_options(spec) -> dict:
    """fsspec storage options of a spec: ``storage_options`` plus ``endpoint_url``/``anon``."""
    if not isinstance(spec.options.get("storage_options") or {}, dict):
        raise SourceError("storage_options must be a dict of fsspec options",
                          field="storage_options")
    so = dict(spec.options.get("storage_options") or {})
    proto = protocol(spec.location)
    if proto == "s3":
        if "endpoint_url" in spec.options:
            so.setdefault("endpoint_url", spec.options["endpoint_url"])
        if "anon" in spec.options:
            so.setdefault("anon", bool(spec.options["anon"]))
        # fail fast on a dead endpoint instead of botocore's minutes of retries
        cfg = dict(so.get("config_kwargs") or {})
        cfg.setdefault("connect_timeout", 5)
        cfg.setdefault("retries", {"max_attempts": 1})
        so["config_kwargs"] = cfg
    elif "endpoint_url" in spec.options:
        raise SourceError(f"endpoint_url is for s3:// locations; got a {proto}:// location",
                          field="endpoint_url")
    if proto == "hdfs":
        for k in ("host", "port", "user", "kerb_ticket"):
            if k in spec.options:
                so.setdefault(k, spec.options[k])
    return so


def filesystem(spec):
    """``(fs, path)`` of a spec's location."""
    import fsspec
    proto = protocol(spec.location)
    if proto == "file":
        storage_options(spec)  # checks the options even where none apply
        return fsspec.filesystem("file"), str(Path(_local_path(spec.location)).resolve())
    if proto == "hdfs":
        hdfs_client()
    fs, path = fsspec.core.url_to_fs(spec.location, **storage_options(spec))
    return fs, path


def parse_hdfs(url: str) -> dict:
    """``{"host", "port", "path"}`` of an ``hdfs://host[:port]/path`` URL (port default 8020).

    >>> parse_hdfs("hdfs://nn.example:9000/data/obs.parquet")
    {'host': 'nn.example', 'port': 9000, 'path': '/data/obs.parquet'}
    """
    u = urllib.parse.urlsplit(url)
    if u.scheme.lower() != "hdfs":
        raise SourceError(f"an hdfs location must start with hdfs://; got "
                          f"{redact_text(url)!r}", field="location")
    if not u.path or u.path == "/":
        raise SourceError(f"an hdfs location needs a file path after the host; got "
                          f"{redact_text(url)!r}", field="location")
    try:
        port = u.port or 8020
    except ValueError:
        raise SourceError(f"the port of {redact_text(url)!r} is not a number",
                          field="location") from None
    return {"host": u.hostname or "default", "port": port, "path": u.path}


def hdfs_client() -> None:
    """Raise a SourceError saying what is missing unless a Hadoop client is usable."""
    missing = [v for v in ("JAVA_HOME", "HADOOP_HOME", "CLASSPATH") if not os.environ.get(v)]
    libdir = os.environ.get("ARROW_LIBHDFS_DIR") or (
        os.path.join(os.environ["HADOOP_HOME"], "lib", "native")
        if os.environ.get("HADOOP_HOME") else "")
    if not (libdir and os.path.exists(os.path.join(libdir, "libhdfs.so"))):
        missing.insert(0, "libhdfs.so")
    if missing:
        raise SourceError(f"hdfs:// sources need a Hadoop client; missing: {', '.join(missing)}."
                          f" It needs {HDFS_NEEDS}.", field="kind")


def hdfs_inner(spec):
    """The spec of the file inside an hdfs:// location (its format from ``format=`` or the
    extension)."""
    from .sources import SourceSpec, infer_kind
    parse_hdfs(spec.location)
    opts = dict(spec.options)
    fmt = opts.pop("format", None) or infer_kind(spec.location.split("://", 1)[1])
    if fmt not in ("geotiff", "zarr", "netcdf", "geoparquet", "csv"):
        raise SourceError(f"format must be one of geotiff, zarr, netcdf, geoparquet, csv for "
                          f"hdfs; got {fmt!r}", field="format")
    so = dict(opts.pop("storage_options", None) or {})
    for k in ("host", "port", "user", "kerb_ticket"):
        if k in opts:
            so[k] = opts.pop(k)
    hdfs_client()
    return SourceSpec(fmt, spec.location, {**opts, "storage_options": so})


# checking -------------------------------------------------------------------
def _http_check(spec) -> str:
    req = urllib.request.Request(spec.location, method="HEAD")
    timeout = float((spec.options.get("storage_options") or {}).get("timeout", 10))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (http only)
            size = r.headers.get("Content-Length")
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise SourceConnectionError(f"{redact_text(spec.location)!r} refused the request "
                                        f"(HTTP {e.code}); check the credentials",
                                        field="storage_options") from None
        if e.code == 404:
            raise StoreNotFoundError(f"no file at {redact_text(spec.location)!r} (HTTP 404)")\
                from None
        raise SourceConnectionError(f"{redact_text(spec.location)!r} answered HTTP {e.code}",
                                    field="location") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceConnectionError(f"cannot reach {redact_text(spec.location)!r}: {reason}",
                                    field="location") from None
    return f"{redact_text(spec.location)}: reachable" + (f", {size} bytes" if size else "")


def _s3_check(spec, fs, path) -> None:
    bucket = path.split("/", 1)[0]
    endpoint = storage_options(spec).get("endpoint_url")
    if endpoint:
        # s3fs answers "no such bucket" for a dead endpoint too: probe the port first
        u = urllib.parse.urlsplit(endpoint)
        port = u.port or (443 if u.scheme == "https" else 80)
        try:
            socket.create_connection((u.hostname, port), timeout=5).close()
        except OSError as e:
            raise SourceConnectionError(f"cannot reach the s3 endpoint {endpoint!r}: {e}",
                                        field="endpoint_url") from None
    try:
        ok = fs.exists(bucket)
    except PermissionError as e:
        raise SourceConnectionError(f"s3 refused the credentials for bucket {bucket!r}: {e}",
                                    field="storage_options") from None
    except Exception as e:  # botocore's EndpointConnectionError and friends
        raise SourceConnectionError(f"cannot reach the s3 endpoint "
                                    f"{endpoint or 'of AWS'}: {type(e).__name__}: {e}",
                                    field="endpoint_url" if endpoint else "location") from None
    if not ok:
        raise SourceConnectionError(f"s3 bucket {bucket!r} does not exist (or is not visible "
                                    "with these credentials)", field="location")


def check_exists(spec) -> tuple[object, str]:
    """``(fs, path)`` after checking the file exists; the errors of :func:`check_source`."""
    proto = protocol(spec.location)
    fs, path = filesystem(spec)
    if proto == "s3":
        _s3_check(spec, fs, path)
    try:
        ok = fs.exists(path)
    except Exception as e:
        raise SourceConnectionError(f"cannot reach {redact_text(spec.location)!r}: "
                                    f"{type(e).__name__}: {e}", field="location") from None
    if not ok:
        raise StoreNotFoundError(f"{spec.kind} source: no file or store at "
                                 f"{redact_text(spec.location)!r}")
    return fs, path


def check_spec(spec) -> str:
    if spec.kind == "hdfs":
        spec = hdfs_inner(spec)
    if protocol(spec.location) == "http":
        return _http_check(spec)
    fs, path = check_exists(spec)
    info = fs.info(path)
    kind = "directory" if info.get("type") == "directory" else f"{info.get('size')} bytes"
    return f"{spec.kind} at {redact_text(spec.location)}: {kind}"


# opening --------------------------------------------------------------------
def _cached_local(spec) -> str:
    """A local path for ``spec``: the file itself, or a local copy of a remote one (GDAL and
    xarray's scipy engine need a real file; fsspec's simplecache fetches it once)."""
    import fsspec
    proto = protocol(spec.location)
    if proto == "file":
        return str(Path(_local_path(spec.location)))
    so = storage_options(spec)
    url = spec.location.replace("s3a://", "s3://", 1)
    try:
        return fsspec.open_local(f"simplecache::{url}", **{proto: so})
    except FileNotFoundError:
        raise StoreNotFoundError(f"{spec.kind} source: no file at "
                                 f"{redact_text(spec.location)!r}") from None


def _kw(spec):
    return {k: spec.options[k] for k in _READ_KW.get(spec.kind, ()) if k in spec.options}


def _pick(ds, variable, where):
    if variable is None:
        return ds
    if variable not in ds.data_vars:
        raise SourceError(f"{where}: variable {variable!r} is not in the source; it has "
                          f"{sorted(ds.data_vars)}", field="variable")
    return ds[variable]


def open_spec(spec):
    if spec.kind == "hdfs":
        return open_spec(hdfs_inner(spec))
    proto = protocol(spec.location)
    if proto not in ("http",):
        check_exists(spec)
    return _OPEN[spec.kind](spec, proto)


def _open_geotiff(spec, proto):
    from .raster import read_raster
    return read_raster(_cached_local(spec), **_kw(spec))


def _open_zarr(spec, proto):
    import xarray as xr
    kw = _kw(spec)
    if proto == "file":
        from .zarr import open_cube, open_dataset
        path = _local_path(spec.location)
        if "variable" in kw:
            return open_cube(path, **kw)
        ds = open_dataset(path, chunks=kw.get("chunks", "auto"))
        return ds[next(iter(ds.data_vars))] if len(ds.data_vars) == 1 else ds
    ds = xr.open_zarr(spec.location, storage_options=storage_options(spec),
                      chunks=kw.get("chunks", "auto"))
    return _pick(ds, kw.get("variable"), "zarr source")


def _open_netcdf(spec, proto):
    import xarray as xr
    kw = _kw(spec)
    ds = xr.open_dataset(_cached_local(spec), chunks=kw.get("chunks", {}),
                         engine=kw.get("engine"))
    return _pick(ds, kw.get("variable"), "netcdf source")


def parse_bbox(bbox):
    """``(minx, miny, maxx, maxy)`` floats, checked."""
    if bbox is None:
        return None
    try:
        b = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        b = ()
    if len(b) != 4 or not (b[0] <= b[2] and b[1] <= b[3]):
        raise SourceError(f"bbox must be [minx, miny, maxx, maxy] with min <= max; got {bbox!r}",
                          field="bbox")
    return b


def row_groups_for_bbox(pf, bbox) -> tuple[list[int], int]:
    """Row groups of a GeoParquet file whose bbox-covering statistics meet ``bbox``.

    ``pf`` is a ``pyarrow.parquet.ParquetFile``; returns ``(kept, total)``. Files without
    a ``bbox`` covering column (GeoParquet 1.1) keep every row group.
    """
    import json
    md = pf.metadata
    total = md.num_row_groups
    geo = json.loads((md.metadata or {}).get(b"geo", b"{}") or b"{}")
    col = geo.get("primary_column", "geometry")
    cover = (geo.get("columns", {}).get(col, {}).get("covering") or {}).get("bbox")
    if bbox is None or not cover:
        return list(range(total)), total
    names = {k: ".".join(v) for k, v in cover.items()}  # xmin -> "bbox.xmin"
    paths = [md.schema.column(i).path for i in range(md.num_columns)]
    idx = {k: paths.index(n) for k, n in names.items() if n in paths}
    kept = []
    for g in range(total):
        rg = md.row_group(g)
        st = {k: rg.column(i).statistics for k, i in idx.items()}
        if any(s is None or not s.has_min_max for s in st.values()) or len(st) < 4:
            kept.append(g)
            continue
        if (st["xmin"].min <= bbox[2] and st["xmax"].max >= bbox[0]
                and st["ymin"].min <= bbox[3] and st["ymax"].max >= bbox[1]):
            kept.append(g)
    return kept, total


def _open_geoparquet(spec, proto):
    import geopandas as gpd
    import pyarrow.parquet as pq
    bbox = parse_bbox(spec.options.get("bbox"))
    columns = spec.options.get("columns")
    fs, path = filesystem(spec)
    with fs.open(path, "rb") as f:
        kept, total = row_groups_for_bbox(pq.ParquetFile(f), bbox)
    try:
        gdf = gpd.read_parquet(path, columns=columns, bbox=bbox, filesystem=fs)
        pushed = bbox is not None
    except ValueError as e:
        if bbox is None or "bbox" not in str(e):
            raise SourceError(f"geoparquet source: {e}", field="columns") from None
        # no bbox covering column: read all and filter (the docs say to write one)
        gdf = gpd.read_parquet(path, columns=columns, filesystem=fs)
        gdf = gdf.cx[bbox[0]:bbox[2], bbox[1]:bbox[3]]
        pushed = False
    gdf.attrs.update(row_groups_read=len(kept) if pushed else total, row_groups_total=total)
    return gdf


def _open_csv(spec, proto):
    import dask.dataframe as dd
    o = spec.options
    kw = {k: o[k] for k in ("blocksize", "dtype", "sep", "parse_dates") if k in o}
    if "columns" in o:
        kw["usecols"] = o["columns"]
    so = storage_options(spec)
    loc = _local_path(spec.location) if proto == "file" else spec.location
    try:
        return dd.read_csv(loc, storage_options=so or None, **kw)
    except FileNotFoundError:
        raise StoreNotFoundError(f"csv source: no file at {redact_text(spec.location)!r}") \
            from None


_OPEN = {"geotiff": _open_geotiff, "zarr": _open_zarr, "netcdf": _open_netcdf,
         "geoparquet": _open_geoparquet, "csv": _open_csv}

"""JSON-safe previews and quicklook PNGs of sources."""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile

import numpy as np
import pandas as pd

RASTER = ("geotiff", "zarr", "netcdf")


def _json(v):
    """A JSON value for one cell (NaN/NaT -> None, timestamps -> ISO 8601, bytes -> hex)."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, pd.Timestamp | _dt.datetime | _dt.date):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, bool | int | str):
        return v
    if hasattr(v, "wkt"):
        return v.wkt
    return str(v)


def _table(df: pd.DataFrame, kind: str, type_: str) -> dict:
    df = df.reset_index() if df.index.name is not None else df
    schema = {str(c): str(t) for c, t in df.dtypes.items()}
    rows = [{str(c): _json(v) for c, v in zip(df.columns, r, strict=True)}
            for r in df.itertuples(index=False, name=None)]
    return {"kind": kind, "type": type_, "schema": schema, "rows": rows}


def _raster(obj, kind: str, n: int) -> dict:
    import xarray as xr
    da = obj[next(iter(obj.data_vars))] if isinstance(obj, xr.Dataset) else obj
    names = list(obj.data_vars) if isinstance(obj, xr.Dataset) else [da.name or "value"]
    schema = ({str(k): str(v.dtype) for k, v in obj.data_vars.items()}
              if isinstance(obj, xr.Dataset) else {str(names[0]): str(da.dtype)})
    flat = da.isel({d: 0 for d in da.dims[:-1]}) if da.ndim > 1 else da
    vals = np.asarray(flat[: n].values)
    last = da.dims[-1] if da.dims else None
    rows = [{str(last): _json(flat[last].values[i]) if last in flat.coords else i,
             str(names[0]): _json(v)} for i, v in enumerate(vals)]
    out = {"kind": kind, "type": "raster", "schema": schema, "rows": rows,
           "shape": [int(s) for s in da.shape], "dims": [str(d) for d in da.dims],
           "crs": None, "bounds": None}
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da.coords["spatial_ref"].attrs.get("crs_wkt")
    out["crs"] = None if crs is None else str(crs)
    ys = next((d for d in ("y", "lat", "latitude") if d in da.coords), None)
    xs = next((d for d in ("x", "lon", "longitude") if d in da.coords), None)
    if ys and xs and da[xs].size and da[ys].size:
        x, y = np.asarray(da[xs].values, float), np.asarray(da[ys].values, float)
        hx = abs(x[1] - x[0]) / 2 if x.size > 1 else 0.0
        hy = abs(y[1] - y[0]) / 2 if y.size > 1 else 0.0
        out["bounds"] = [float(x.min() - hx), float(y.min() - hy), float(x.max() + hx),
                         float(y.max() + hy)]
    return out


def preview(spec, n: int) -> dict:
    from . import _sources_files as files
    if spec.kind == "hdfs":
        spec = files.hdfs_inner(spec)
    if spec.kind in ("sql", "sql-points"):
        from ._sources_sql import head
        df = head(spec, n)
        return _table(df, spec.kind, "points" if spec.kind == "sql-points" else "table")
    obj = files.open_spec(spec)
    if spec.kind in RASTER:
        return _raster(obj, spec.kind, n)
    if spec.kind == "geoparquet":
        out = _table(pd.DataFrame(obj.head(n)), spec.kind, "table")
        out["schema"] = {str(c): str(t) for c, t in obj.dtypes.items()}
        return out
    return _table(obj.head(n, npartitions=-1), spec.kind, "table")


def quicklook(spec, width: int) -> bytes:
    import xarray as xr

    from ..viz import quicklook as ql
    from ._sources_files import hdfs_inner, open_spec
    if spec.kind == "hdfs":
        spec = hdfs_inner(spec)
    obj = open_spec(spec)
    da = obj[next(iter(obj.data_vars))] if isinstance(obj, xr.Dataset) else obj
    dims = tuple(da.dims[-2:])
    fd, path = tempfile.mkstemp(suffix=".png")
    os.close(fd)
    try:
        ql(da, path, max_size=width, dims=dims, colorbar=False)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)

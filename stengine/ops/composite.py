"""Composites over time: ``composite`` (median, mean, min, max, first, last) and
``quality_mosaic`` (per pixel, every band from the time step of highest quality).

Missing values are skipped: NaN, and ``attrs["nodata"]`` on integer rasters. A pixel with
no valid value is NaN (float) or nodata (int). The time dim is gathered into one chunk
(a composite needs every step of a pixel); the other dims keep their chunks.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._backends import is_dask
from ..cube import check_dtype, check_raster
from ..errors import DimensionError
from ._kernel import Kernel
from ._lift import empty_like_block, meta_like
from ._numba import composite as _cpu

__all__ = ["composite", "quality_mosaic"]

_GPU = "stengine.ops._cuda.composite:"
composite_k = Kernel("composite", cpu=_cpu.composite, gpu=_GPU + "composite")
quality_mosaic_k = Kernel("quality_mosaic", cpu=_cpu.quality_mosaic, gpu=_GPU + "quality_mosaic")


def _missing(da):
    """(nodata, has_nodata, fill) for kernels; float rasters use NaN only."""
    nd = da.attrs.get("nodata")
    if da.dtype.kind == "f" or nd is None or (isinstance(nd, float) and np.isnan(nd)):
        return 0, False, np.nan
    return nd, True, nd


def _out_dtype(dtype, how):
    dtype = np.dtype(dtype)
    if how in ("mean", "median") and dtype.kind != "f":
        return np.dtype("f8")
    return dtype


def _contig(a):
    """C-contiguous, keeping the block type (GPU kernels need one memory region)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def _composite_block(x, *, how, nodata, has_nodata, fill, out_dtype):
    t = x.shape[0]
    flat = _contig(x).reshape(t, -1)
    out = empty_like_block(x, (flat.shape[1],), out_dtype)
    composite_k(flat, _cpu.HOW[how], nodata, has_nodata, fill, out)
    return out.reshape(x.shape[1:])


def composite(cube, how: str = "median", *, dim: str = "time", dims=None):
    """Reduce ``cube`` over ``dim`` per pixel, skipping NaN / nodata.

    Parameters
    ----------
    cube : xarray.DataArray
        Any dims including ``dim`` (e.g. ``(time, band, y, x)``); numpy, dask or CuPy.
    how : {"median", "mean", "min", "max", "first", "last"}
        ``first`` / ``last``: the earliest / latest valid value along ``dim`` (in the
        cube's order). Median of an even count is the mean of the two middle values.
    dim : str
        The dim reduced (default ``time``); it is dropped from the result.

    Returns
    -------
    xarray.DataArray
        ``cube`` without ``dim``. Integer input keeps its dtype for min/max/first/last
        (no valid value → nodata) and gives float64 for mean/median (→ NaN).

    Examples
    --------
    >>> import numpy as np, stengine
    >>> t = stengine.cube.make_raster(np.array([[[1.0, np.nan]], [[3.0, np.nan]],
    ...     [[8.0, np.nan]]]), dims=("time", "y", "x"))
    >>> t.st.composite("median").values
    array([[ 3., nan]])
    >>> composite(t, "mean").values
    array([[ 4., nan]])

    See Also
    --------
    quality_mosaic
    """
    if how not in _cpu.HOW:
        raise ValueError(f"composite: how must be one of {sorted(_cpu.HOW)}; got {how!r}")
    check_raster(cube, dims, op="composite", name="cube")
    check_dtype(cube, "iuf", op="composite", name="cube")
    if dim not in cube.dims:
        raise DimensionError(f"composite reduces over dim {dim!r}; got dims {cube.dims}. "
                             "Pass dim= or rename.")
    nodata, has_nodata, fill = _missing(cube)
    dtype = _out_dtype(cube.dtype, how)
    if fill is np.nan and dtype.kind != "f":
        fill = 0  # integer input without nodata: every value is valid, fill never used
    if dtype.kind == "f":
        fill = np.nan
    rest = [d for d in cube.dims if d != dim]
    x = cube.transpose(dim, *rest)
    kw = dict(how=how, nodata=nodata, has_nodata=has_nodata, fill=fill, out_dtype=dtype)
    data = x.data
    if is_dask(data):
        data = data.rechunk({0: -1})
        out = data.map_blocks(_composite_block, drop_axis=0, dtype=dtype,
                              meta=meta_like(data, dtype, data.ndim - 1), **kw)
    else:
        out = _composite_block(data, **kw)
    res = xr.DataArray(out, dims=rest, coords={k: v for k, v in x.coords.items()
                                                if dim not in v.dims},
                       attrs=dict(cube.attrs), name=cube.name)
    if dtype.kind == "f":
        res.attrs.pop("nodata", None)
    if "grid_mapping" in cube.encoding:
        res.encoding["grid_mapping"] = cube.encoding["grid_mapping"]
    return res.transpose(*[d for d in cube.dims if d != dim])


def _mosaic_block(x, q, *, nodata, has_nodata, fill, nq):
    t = x.shape[0]
    pix = x.shape[x.ndim - nq:]
    xs = _contig(x).reshape(t, -1, int(np.prod(pix)))
    qs = _contig(q).reshape(t, -1)
    out = empty_like_block(x, xs.shape[1:], x.dtype)
    quality_mosaic_k(xs, qs, nodata, has_nodata, fill, out)
    return out.reshape(x.shape[1:])


def quality_mosaic(cube, by, *, dim: str = "time", band_dim: str = "band", dims=None):
    """Per pixel, every value of ``cube`` from the ``dim`` step where quality is highest.

    GEE's ``qualityMosaic`` / JEODPP's max-NDVI composite. NaN quality is skipped; ties
    go to the first step; a pixel whose quality is NaN at every step gets NaN (float) or
    nodata (int) in every band.

    Parameters
    ----------
    cube : xarray.DataArray
        e.g. ``(time, band, y, x)``.
    by : str | xarray.DataArray
        A label along ``band_dim`` of ``cube``, or a quality array whose dims are
        ``dim`` plus a subset of the cube's other dims (e.g. ``(time, y, x)`` NDVI).

    Returns
    -------
    xarray.DataArray
        ``cube`` without ``dim``, same dtype.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> v = np.array([[[[1.0]], [[0.2]]], [[[2.0]], [[0.9]]]])  # (time, band, y, x)
    >>> c = stengine.cube.make_raster(v, dims=("time", "band", "y", "x"),
    ...                               coords={"band": ["red", "ndvi"]})
    >>> c.st.quality_mosaic("ndvi").values.ravel()
    array([2. , 0.9])
    """
    check_raster(cube, dims, op="quality_mosaic", name="cube")
    check_dtype(cube, "iuf", op="quality_mosaic", name="cube")
    if dim not in cube.dims:
        raise DimensionError(f"quality_mosaic needs dim {dim!r}; got dims {cube.dims}")
    if isinstance(by, str):
        if band_dim not in cube.dims or by not in cube[band_dim].values:
            have = list(cube[band_dim].values) if band_dim in cube.coords else []
            raise DimensionError(f"quality_mosaic: by={by!r} is not a label of dim "
                                 f"{band_dim!r} (labels: {have}); pass a band name or a "
                                 "quality DataArray")
        q = cube.sel({band_dim: by}, drop=True)
    elif isinstance(by, xr.DataArray):
        q = by
        if dim not in q.dims or not set(q.dims) <= set(cube.dims):
            raise DimensionError(f"quality_mosaic: by must have dim {dim!r} and only dims of "
                                 f"the cube {cube.dims}; got {q.dims}")
        for d in q.dims:
            if q.sizes[d] != cube.sizes[d]:
                raise DimensionError(f"quality_mosaic: by has {q.sizes[d]} along {d!r}, the "
                                     f"cube {cube.sizes[d]}")
    else:
        raise TypeError(f"quality_mosaic: by must be a band name or a DataArray; got "
                        f"{type(by).__name__}")
    check_dtype(q, "iuf", op="quality_mosaic", name="by")
    qrest = [d for d in q.dims if d != dim]
    extra = [d for d in cube.dims if d != dim and d not in qrest]
    x = cube.transpose(dim, *extra, *qrest)
    q = q.transpose(dim, *qrest)
    nodata, has_nodata, fill = _missing(cube)
    if cube.dtype.kind == "f":
        fill = np.nan
    elif not has_nodata:
        fill = 0
    kw = dict(nodata=nodata, has_nodata=has_nodata, fill=fill, nq=len(qrest))
    xd, qd = x.data, q.data
    if is_dask(xd) or is_dask(qd):
        import dask.array as dsa

        if not is_dask(xd):
            xd = dsa.from_array(xd, chunks=-1, asarray=False)
        xd = xd.rechunk({0: -1})
        e = len(extra)
        # quality chunks follow the data's chunks along the shared dims
        qd = (qd if is_dask(qd) else dsa.from_array(qd, chunks=-1, asarray=False)).rechunk(
            ((qd.shape[0],), *xd.chunks[1 + e:]))
        xi = tuple(range(xd.ndim))
        qi = (0, *xi[1 + e:])
        out = dsa.blockwise(_mosaic_block, xi[1:], xd, xi, qd, qi, dtype=cube.dtype,
                            concatenate=True, meta=meta_like(xd, cube.dtype, xd.ndim - 1),
                            **kw)
    else:
        out = _mosaic_block(xd, qd, **kw)
    res = xr.DataArray(out, dims=x.dims[1:], coords={k: v for k, v in x.coords.items()
                                                      if dim not in v.dims},
                       attrs=dict(cube.attrs), name=cube.name)
    if "grid_mapping" in cube.encoding:
        res.encoding["grid_mapping"] = cube.encoding["grid_mapping"]
    return res.transpose(*[d for d in cube.dims if d != dim])

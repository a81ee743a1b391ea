"""Put rasters on one grid: ``reproject_match`` / ``align`` (rasterio warp, chunk by chunk)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._backends import is_dask
from .cube import check_raster, set_grid
from .cube.validate import raster_grid
from .grid import Grid

__all__ = ["reproject_match", "align"]

_RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode", "min", "max", "med", "sum")


def _warp(src, src_grid: Grid, dst_grid: Grid, resampling: str, src_nodata, dst_nodata, dtype,
          scale):
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    lead = src.shape[:-2]
    src3 = np.asarray(src).reshape(-1, *src.shape[-2:])
    out = np.full((src3.shape[0], *dst_grid.shape), dst_nodata, dtype=dtype)
    if src3.size:
        reproject(src3, out, src_transform=src_grid.transform, src_crs=src_grid.crs,
                  dst_transform=dst_grid.transform, dst_crs=dst_grid.crs,
                  src_nodata=src_nodata, dst_nodata=dst_nodata,
                  resampling=getattr(Resampling, resampling), tolerance=0.0,
                  XSCALE=scale[0], YSCALE=scale[1])
    return out.reshape(*lead, *dst_grid.shape)


def _src_window(src_grid: Grid, dst_grid: Grid, pad: int = 2):
    """Rows/cols of the source needed for ``dst_grid`` (padded), or None if disjoint."""
    from rasterio.warp import transform_bounds

    b = dst_grid.bounds
    if src_grid.crs is not None and dst_grid.crs is not None and src_grid.crs != dst_grid.crs:
        b = transform_bounds(dst_grid.crs, src_grid.crs, *b, densify_pts=21)
    inv = ~src_grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])), strict=True)
    r0 = max(0, int(np.floor(min(rows))) - pad)
    r1 = min(src_grid.shape[0], int(np.ceil(max(rows))) + pad)
    c0 = max(0, int(np.floor(min(cols))) - pad)
    c1 = min(src_grid.shape[1], int(np.ceil(max(cols))) + pad)
    if r1 <= r0 or c1 <= c0:
        return None
    return slice(r0, r1), slice(c0, c1)


def reproject_match(da, like, *, resampling: str = "nearest", nodata=None):
    """Reproject/resample ``da`` onto the grid of ``like`` (a raster or a :class:`Grid`).

    Works chunk by chunk for dask input: each output chunk reads only the source window
    it needs. Output chunks follow ``like``'s chunks (or ``da``'s chunk size). Pixels
    with no source become ``nodata`` (default: ``da``'s nodata, NaN for floats, 0 for
    integers, recorded in ``attrs["nodata"]``).

    Parameters
    ----------
    da : xarray.DataArray
        ``(..., y, x)`` raster with a CRS.
    like : xarray.DataArray | Grid
        The target grid.
    resampling : str
        One of ``nearest`` (default; right for classes), ``bilinear``, ``cubic``,
        ``average``, ``mode``, ``min``, ``max``, ``med``, ``sum``.
    """
    import dask
    import dask.array as dsa

    check_raster(da, op="reproject_match")
    if resampling not in _RESAMPLING:
        raise ValueError(f"reproject_match: resampling must be one of {_RESAMPLING}; "
                         f"got {resampling!r}")
    if not isinstance(like, (Grid, xr.DataArray, xr.Dataset)):
        raise TypeError("reproject_match: like must be a raster (DataArray/Dataset) or a Grid; "
                        f"got {type(like).__name__}")
    src_grid = raster_grid(da)
    dst_grid = like if isinstance(like, Grid) else raster_grid(like)
    if src_grid.crs is None or dst_grid.crs is None:
        raise ValueError("reproject_match: both rasters need a CRS (spatial_ref); "
                         f"da has {src_grid.crs}, like has {dst_grid.crs}")
    if src_grid == dst_grid:
        return da
    if da.dims[-2:] != ("y", "x"):
        da = da.transpose(..., "y", "x")
    src_nd = da.attrs.get("nodata", np.nan if da.dtype.kind == "f" else None)
    dst_nd = nodata if nodata is not None else (src_nd if src_nd is not None else (
        np.nan if da.dtype.kind == "f" else 0))
    dtype = da.dtype
    lead_shape = da.shape[:-2]
    # GDAL widens resampling kernels by the dst/src scale it computes per warp call; fix it
    # from the whole grids so every chunk resamples exactly as one big warp would
    full = _src_window(src_grid, dst_grid, pad=0)
    scale = (1.0, 1.0) if full is None else (
        min(1.0, dst_grid.shape[1] / (full[1].stop - full[1].start)),
        min(1.0, dst_grid.shape[0] / (full[0].stop - full[0].start)))
    if not is_dask(da.data):
        data = _warp(da.data, src_grid, dst_grid, resampling, src_nd, dst_nd, dtype, scale)
    else:
        if isinstance(like, xr.DataArray) and is_dask(like.data):
            ych, xch = like.data.chunks[-2:]
        else:
            cy, cx = (max(c) for c in da.data.chunks[-2:])
            ych = dsa.core.normalize_chunks(cy, (dst_grid.shape[0],))[0]
            xch = dsa.core.normalize_chunks(cx, (dst_grid.shape[1],))[0]
        src = da.data.rechunk({i: -1 for i in range(da.ndim - 2)})
        rows = []
        r0 = 0
        for h in ych:
            row = []
            c0 = 0
            for w in xch:
                sub = dst_grid.window(slice(r0, r0 + h), slice(c0, c0 + w))
                win = _src_window(src_grid, sub)
                shape = (*lead_shape, h, w)
                if win is None:
                    block = dsa.full(shape, dst_nd, dtype=dtype, chunks=shape)
                else:
                    part = src[(..., *win)]
                    blk = dask.delayed(_warp, pure=True)(
                        part, src_grid.window(*win), sub, resampling, src_nd, dst_nd, dtype,
                        scale)
                    block = dsa.from_delayed(blk, shape, dtype=dtype,
                                             meta=np.empty((0,) * len(shape), dtype))
                row.append(block)
                c0 += w
            rows.append(row)
            r0 += h
        data = dsa.block(rows)
    out = xr.DataArray(data, dims=da.dims, coords={k: v for k, v in da.coords.items()
                                                  if "y" not in v.dims and "x" not in v.dims
                                                  and k != "spatial_ref"},
                       attrs=dict(da.attrs), name=da.name)
    if dtype.kind in "iu":
        out.attrs["nodata"] = dst_nd
    return set_grid(out, dst_grid)


def align(*rasters, like=None, resampling: str = "nearest"):
    """Reproject every raster onto one grid (``like``, default the first raster's).

    Returns a tuple of DataArrays; rasters already on the grid are returned as they are.
    """
    if not rasters:
        return ()
    target = like if like is not None else rasters[0]
    return tuple(reproject_match(r, target, resampling=resampling) for r in rasters)

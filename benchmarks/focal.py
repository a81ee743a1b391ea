"""Focal ops of the raster benchmark: focal mean 3×3 and 15×15, focal max 3×3, slope.

Every case ends in a sum of its output, computed chunk by chunk (``.sum()`` in float64 /
uint64, ``nansum`` for slope's NaN edges), so no full output raster is ever
materialised by the lazy cases and memory stays bounded by the chunks in flight.
stengine, dask+scipy and xarray-spatial read the same zstd Zarr store with dask's
threaded scheduler on all cores; the in-memory peers (scipy.ndimage, xarray-spatial on
numpy) get the raster already loaded (no read timed) and run single-threaded.

Boundaries: stengine and scipy use ``reflect`` (mirror including the edge cell), so
their sums agree; xarray-spatial's ``focal.mean`` uses NaN edges and its own 3×3 kernel.
The 15×15 xarray-spatial case is ``focal.focal_stats(..., ["mean"])`` (its windowed
statistics API; ``focal.mean`` is 3×3 only). Slope: stengine's Horn slope, the same
Horn kernels through ``scipy.ndimage.correlate``, and ``xrspatial.slope`` (dask).
"""

from __future__ import annotations

import numpy as np

from ._runner import Case, benchmark
from .data import SIZES, class_raster_zarr, dem_zarr

TILES = [1024, 2048, 4096]
ALL = ["tiny", "glc", "meris", "nlcd"]
IN_MEMORY = ("tiny", "glc", "meris")  # NLCD float outputs of in-memory peers need > 20 GB


def _npix(size):
    return SIZES[size][0] * SIZES[size][1]


def _once(size):
    """Slow peers at NLCD size: one untimed-warmup-free run (each takes a minute or more)."""
    return {"warmup": False, "repeat": 1} if size == "nlcd" else {}


def _tasks(x):
    return lambda: {"tasks": len(dict(x.__dask_graph__()))}


def _ndimage():
    try:
        import scipy.ndimage as ndi
    except ImportError as e:
        raise ImportError("scipy not installed") from e
    return ndi


def _xrspatial():
    try:
        import xrspatial
        import xrspatial.focal  # noqa: F401
    except ImportError as e:
        raise ImportError("xarray-spatial not installed") from e
    return xrspatial


def _uniform(b, k, ndi):
    return ndi.uniform_filter(b, k, output=np.float32, mode="reflect")


def _maximum(b, k, ndi):
    return ndi.maximum_filter(b, k, mode="reflect")


@benchmark("focal", "focal_mean", sizes=ALL, params={"window": ["3x3", "15x15"], "tile": TILES})
def focal_mean(size, window, tile):
    import dask.array as dsa

    import stengine
    from stengine.ops.focal import focal_mean as st_mean

    k = int(window.split("x")[0])
    n = _npix(size)
    da = stengine.open_cube(class_raster_zarr(size, tile))
    expr = st_mean(da, window, boundary="reflect").data.sum(dtype="f8")
    yield Case("stengine", lambda: float(expr.compute()), items=n,
               note="Zarr (zstd) uint8 → float32, running sums, halo tasks; sum of output",
               info=_tasks(expr))
    ndi = _ndimage()
    x = da.data
    ds = x.map_overlap(_uniform, depth=k // 2, boundary="reflect", dtype=np.float32, k=k,
                       ndi=ndi, meta=np.empty((0, 0), np.float32)).sum(dtype="f8")
    yield Case("dask+scipy", lambda: float(ds.compute()), items=n,
               note="Zarr, map_overlap(uniform_filter), reflect; sum", info=_tasks(ds),
               **_once(size))
    xrs = _xrspatial()
    if k == 3:
        xm = xrs.focal.mean(da).data.sum(dtype="f8")
        yield Case("xarray-spatial (dask)", lambda: float(xm.compute()), items=n,
                   note="Zarr, xrspatial.focal.mean (dask map_overlap); sum", info=_tasks(xm),
                   **_once(size))
    elif size in ("tiny", "glc"):  # ~20 s/G px per window cell: too slow beyond GLC
        kern = np.ones((k, k))
        xs = xrs.focal.focal_stats(da.astype("f4"), kern, stats_funcs=["mean"]).data.sum(
            dtype="f8")
        yield Case("xarray-spatial (dask)", lambda: float(xs.compute()), items=n,
                   note="Zarr, xrspatial.focal.focal_stats(mean, 15x15 kernel); sum",
                   info=_tasks(xs), warmup=False, repeat=1)
    if tile == 2048 and size in (*IN_MEMORY, "nlcd"):
        mem = np.asarray(x.compute())
        yield Case("scipy (in memory)", lambda: float(_uniform(mem, k, ndi).sum(dtype="f8")),
                   items=n, note="uniform_filter on a loaded array, 1 thread; sum",
                   repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")
        if k == 3 and size in IN_MEMORY:
            mda = da.copy(data=mem)
            yield Case("xarray-spatial (numpy)",
                       lambda: float(xrs.focal.mean(mda).data.sum(dtype="f8")), items=n,
                       note="xrspatial.focal.mean on a loaded array; sum",
                       repeat=1 if size == "meris" else None)
        del mem
    del dsa


@benchmark("focal", "focal_max", sizes=ALL, params={"window": ["3x3"], "tile": TILES})
def focal_max(size, window, tile):
    import stengine
    from stengine.ops.focal import focal_max as st_max

    k = int(window.split("x")[0])
    n = _npix(size)
    da = stengine.open_cube(class_raster_zarr(size, tile))
    expr = st_max(da, window, boundary="reflect").data.sum(dtype="u8")
    yield Case("stengine", lambda: int(expr.compute()), items=n,
               note="Zarr uint8, separable max, halo tasks; sum of output", info=_tasks(expr))
    ndi = _ndimage()
    x = da.data
    ds = x.map_overlap(_maximum, depth=k // 2, boundary="reflect", dtype=x.dtype, k=k,
                       ndi=ndi, meta=np.empty((0, 0), x.dtype)).sum(dtype="u8")
    yield Case("dask+scipy", lambda: int(ds.compute()), items=n,
               note="Zarr, map_overlap(maximum_filter), reflect; sum", info=_tasks(ds),
               **_once(size))
    if tile == 2048:
        mem = np.asarray(x.compute())
        yield Case("scipy (in memory)", lambda: int(_maximum(mem, k, ndi).sum(dtype="u8")),
                   items=n, note="maximum_filter on a loaded array, 1 thread; sum",
                   repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")
        del mem


_HORN_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)  # east minus west
_HORN_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)  # north minus south


def _scipy_slope(z, res, ndi):
    gx = ndi.correlate(z, _HORN_X / (8 * res), mode="reflect")
    gy = ndi.correlate(z, _HORN_Y / (8 * res), mode="reflect")
    return np.degrees(np.arctan(np.hypot(gx, gy)))


@benchmark("focal", "slope", sizes=ALL, params={"tile": TILES})
def slope(size, tile):
    import dask.array as dsa

    import stengine
    from stengine.ops.terrain import slope as st_slope

    n = _npix(size)
    dem = stengine.open_cube(dem_zarr(size, tile))
    expr = dsa.nansum(st_slope(dem).data, dtype="f8")
    yield Case("stengine", lambda: float(expr.compute()), items=n,
               note="Zarr float32 DEM, Horn slope (degrees), halo tasks; nansum",
               info=_tasks(expr))
    xrs = _xrspatial()
    xs = dsa.nansum(xrs.slope(dem).data, dtype="f8")
    yield Case("xarray-spatial (dask)", lambda: float(xs.compute()), items=n,
               note="Zarr, xrspatial.slope (dask map_overlap); nansum", info=_tasks(xs),
               **_once(size))
    ndi = _ndimage()
    if tile == 2048 and size in IN_MEMORY:
        mem = np.asarray(dem.data.compute())
        res = stengine.cube.get_grid(dem).res[0]
        yield Case("scipy (in memory)",
                   lambda: float(np.nansum(_scipy_slope(mem, res, ndi), dtype="f8")), items=n,
                   note="two correlate() (Horn kernels) + arctan on a loaded array; nansum",
                   repeat=1 if size == "meris" else None)
        del mem

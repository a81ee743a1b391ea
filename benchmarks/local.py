"""Local ops of the raster benchmark: pixel count, reclassify, raster add.

Every case ends in a pixel count, as in the paper, so a full output raster is never
materialised. stengine and plain dask read the same zstd Zarr store with dask's
threaded scheduler on all cores; NumPy reads the tiled GeoTIFF with rasterio (its best
format) and is timed with and without the read.
"""

from __future__ import annotations

import numpy as np

from ._runner import Case, benchmark
from .data import NLCD_CLASSES, SIZES, class_raster_tif, class_raster_zarr

# NLCD-like classes → 8 general classes (water, developed, barren, forest, shrub,
# grass, crops, wetland)
RECLASS = {11: 1, 12: 1, 21: 2, 22: 2, 23: 2, 24: 2, 31: 3, 41: 4, 42: 4, 43: 4, 52: 5,
           71: 6, 81: 7, 82: 7, 90: 8, 95: 8}
VALUE = 41  # the class whose pixels are counted


def _lut():
    lut = np.arange(256, dtype="u1")
    for k, v in RECLASS.items():
        lut[k] = v
    return lut


def _npix(size):
    return SIZES[size][0] * SIZES[size][1]


def _read_tif(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)




def _tasks(x):
    return lambda: {"tasks": len(dict(x.__dask_graph__()))}


TILES = [512, 1024, 2048, 4096]


@benchmark("local", "pixel_count", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def pixel_count(size, tile):
    import dask.array as dsa

    import stengine
    from stengine import ops

    store = class_raster_zarr(size, tile)
    n = _npix(size)
    da = stengine.open_cube(store)
    expr = ops.local_count(da, VALUE).data
    yield Case("stengine", lambda: int(expr.compute()), items=n,
               note="Zarr (zstd), numba count per chunk + tree sum", info=_tasks(expr))
    z = dsa.from_zarr(str(store), component="landcover")
    plain = (z == VALUE).sum()
    yield Case("dask.array", lambda: int(plain.compute()), items=n, note="Zarr, (x == v).sum()",
               info=_tasks(plain))
    if size in ("tiny", "glc", "meris") or tile == 2048:
        tif = class_raster_tif(size)
        yield Case("numpy+read", lambda: int((_read_tif(tif) == VALUE).sum()), items=n,
                   note="tiled GeoTIFF read whole (rasterio), then (x == v).sum()",
                   repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")
        mem = _read_tif(tif)
        yield Case("numpy (in memory)", lambda: int((mem == VALUE).sum()), items=n,
                   note="array already in memory; no read")
        del mem


@benchmark("local", "reclassify", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def reclassify(size, tile):
    import dask.array as dsa

    import stengine
    from stengine import ops

    store = class_raster_zarr(size, tile)
    n = _npix(size)
    da = stengine.open_cube(store)
    expr = ops.local_count(ops.local_reclassify(da, RECLASS), 4).data
    yield Case("stengine", lambda: int(expr.compute()), items=n,
               note="Zarr; LUT kernel, then count of class 4", info=_tasks(expr))
    lut = _lut()
    z = dsa.from_zarr(str(store), component="landcover")
    plain = (z.map_blocks(lambda b: lut[b], dtype="u1") == 4).sum()
    yield Case("dask.array", lambda: int(plain.compute()), items=n,
               note="Zarr, lut[x] per block, then count", info=_tasks(plain))
    try:
        from xrspatial.classify import reclassify as xrs_reclassify
    except ImportError as e:
        raise ImportError("xarray-spatial not installed") from e
    keys = sorted(RECLASS)
    xrs = (xrs_reclassify(da, bins=keys, new_values=[RECLASS[k] for k in keys]) == 4).sum()
    yield Case("xarray-spatial", lambda: int(xrs.compute()), items=n,
               note="Zarr, xrspatial.classify.reclassify (dask), then count")
    if size in ("tiny", "glc", "meris") or tile == 2048:
        tif = class_raster_tif(size)
        yield Case("numpy+read", lambda: int((lut[_read_tif(tif)] == 4).sum()), items=n,
                   note="tiled GeoTIFF read whole, lut[x], count",
                   repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")


@benchmark("local", "raster_add", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def raster_add(size, tile):
    import dask.array as dsa

    import stengine
    from stengine import ops

    a_store, b_store = class_raster_zarr(size, tile, seed=0), class_raster_zarr(size, tile, seed=1)
    n = _npix(size)
    a, b = stengine.open_cube(a_store), stengine.open_cube(b_store)
    target = int(NLCD_CLASSES[7]) + int(NLCD_CLASSES[8])  # 41 + 42
    expr = ops.local_count(ops.local_add(a, b), target).data
    yield Case("stengine", lambda: int(expr.compute()), items=n,
               note="2 Zarr stores; add (uint16, grid-checked), count", info=_tasks(expr))
    za = dsa.from_zarr(str(a_store), component="landcover")
    zb = dsa.from_zarr(str(b_store), component="landcover")
    plain = ((za.astype("u2") + zb) == target).sum()
    yield Case("dask.array", lambda: int(plain.compute()), items=n,
               note="2 Zarr stores; x.astype(u2) + y, count", info=_tasks(plain))
    xa = (a.astype("u2") + b == target).sum()
    yield Case("xarray (dask)", lambda: int(xa.compute()), items=n,
               note="2 Zarr stores; DataArray add (aligns coords), count")
    if size in ("tiny", "glc", "meris") or tile == 2048:
        ta, tb = class_raster_tif(size, seed=0), class_raster_tif(size, seed=1)
        yield Case("numpy+read", lambda: int(((_read_tif(ta).astype("u2") + _read_tif(tb))
                                              == target).sum()), items=n,
                   note="2 tiled GeoTIFFs read whole, add, count",
                   repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")

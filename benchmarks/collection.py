"""Image-collection benchmarks: ``Collection.load`` graph size and build time, composites.

``load_graph``: 100 items (4 dates × 5×5 overlapping tiles of 64² px, 2 bands, int16
GeoTIFFs written by rasterio, UTM 33N, :func:`stengine._collection_synth.write_scenes`)
loaded with 32-pixel chunks over a bbox from a corner tile (``small``) to all tiles
(``large``). Timed: building the lazy cube (no pixel read); reported with it: the tasks
in the graph, the chunks touched and the mean items listed per task — the graph grows
with the chunks, not the items. ``compute`` adds the read of the cube (dask threads).

``composite``: median and max-NDVI quality mosaic of a ``(time=12, band=4, y, x)``
float32 cube with 20 % NaN (numpy; dask with 256² chunks) against xarray's
``median("time")`` (NumPy ``nanmedian``) and NumPy ``nanargmax`` + ``take_along_axis``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._runner import Case, benchmark
from .data import cache

AREAS = {"small": 0.05, "medium": 0.4, "large": 1.0}
CUBES = {"tiny": (12, 4, 256, 256), "bench": (12, 4, 1024, 1024)}


def _collection():
    from stengine._collection_synth import write_scenes
    from stengine.collection import Collection

    d = cache() / "collection_100"
    if not (d / "done").exists():
        write_scenes(d, dates=4, tiles=(5, 5), size=64, overlap=8, seed=1)
        (d / "done").write_text("ok")
    col = Collection.from_files(sorted(d.glob("*.tif")), datetime=r"^(\d{4}-\d\d-\d\d)",
                                band=lambda p: Path(p).stem.split("_")[2],
                                item_id=lambda p: "_".join(Path(p).stem.split("_")[:2]))
    assert len(col) == 100, len(col)
    return col


def _bbox(col, frac):
    from shapely import union_all

    w, s, e, n = union_all([it.geometry for it in col]).bounds
    return (w, s, w + (e - w) * frac, s + (n - s) * frac)


@benchmark("collection", "load_graph", sizes=["tiny"],
           params={"area": list(AREAS)})
def load_graph(size, area):
    col = _collection()
    bbox = _bbox(col, AREAS[area])

    def build():
        return col.load(["red", "nir"], bbox=bbox, chunks=32)

    def info():
        cube = build()
        tasks = dict(cube.data.__dask_graph__())
        listed = [len(v[1]) for v in tasks.values()]
        return {"tasks": len(tasks), "chunks": len(tasks) // cube.sizes["time"],
                "items_per_task": round(float(np.mean(listed)), 2), "items": len(col),
                "shape": "x".join(str(v) for v in cube.shape)}

    yield Case("stengine", build, items=len(col), info=info,
               note="build the lazy cube: grid, STRtree, per-chunk item lists")
    if area != "large":
        cube = build()
        yield Case("stengine-compute", lambda: cube.compute(), items=cube.size,
                   note="read + warp + mosaic, dask threads", repeat=1)


def _cube(size):
    import xarray as xr

    rng = np.random.default_rng(0)
    shape = CUBES[size]
    v = rng.random(shape, dtype=np.float32)
    v[rng.random(shape) < 0.2] = np.nan
    return xr.DataArray(v, dims=("time", "band", "y", "x"),
                        coords={"band": ["red", "green", "nir", "ndvi"]})


@benchmark("collection", "composite", sizes=["tiny", "bench"],
           params={"op": ["median", "quality_mosaic"]})
def composite_cases(size, op):
    import warnings

    from stengine import ops

    da = _cube(size)
    lazy = da.chunk({"time": -1, "band": 1 if op == "median" else -1, "y": 256, "x": 256})
    px = int(np.prod(da.shape))
    if op == "median":
        yield Case("stengine", lambda: ops.composite(da, "median").values, items=px,
                   note="numba, numpy arrays")
        yield Case("stengine-dask", lambda: ops.composite(lazy, "median").compute(),
                   items=px, note="numba per chunk, dask threads")

        def xr_median():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return da.median("time").values

        yield Case("xarray", xr_median, items=px, note="DataArray.median (np.nanmedian)")
    else:
        yield Case("stengine", lambda: ops.quality_mosaic(da, "ndvi").values, items=px,
                   note="numba, numpy arrays")
        yield Case("stengine-dask", lambda: ops.quality_mosaic(lazy, "ndvi").compute(),
                   items=px, note="numba per chunk, dask threads")
        v = da.values

        def numpy_peer():
            q = v[:, 3]
            i = np.where(np.isnan(q), -np.inf, q).argmax(0)
            out = np.take_along_axis(v, i[None, None], 0)[0]
            out[:, np.isnan(q).all(0)] = np.nan
            return out

        yield Case("numpy", numpy_peer, items=px, note="argmax + take_along_axis")

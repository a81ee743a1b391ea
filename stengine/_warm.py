"""Compile (or load from numba's on-disk cache) the kernels the demo and typical use need.

Every numba kernel is ``cache=True``: the first process that compiles a signature writes
it beside the source (``__pycache__/*.nbi`` / ``*.nbc``), later processes load it. On a
fresh clone that cache is empty, and the client and each cluster worker would compile
the same kernels again, one after the other, inside the first figures they time.
:func:`warm` runs small *recipes* (the demo's code paths on tiny inputs of the same
dtypes, eager and through dask, so the same signatures are compiled) in ``processes``
spawned processes, each a share of the recipes, so each signature compiles once, in
parallel. :func:`load` then runs every recipe in the calling process (a client, or a
worker via ``client.run``): with a warm cache that only loads machine code.

``python -m stengine._warm`` (or ``stengine warm``) warms the cache and prints what it did.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

__all__ = ["RECIPES", "warm", "warm_cluster", "load", "kernel_stats", "describe"]

_RES = 1 / 120  # 30″, the Köppen-Geiger and land-mask grid


def _geo(data, west, north, *, res=_RES, name="v", nodata=None):
    """A lon/lat raster (EPSG:4326) with its upper-left corner at (west, north)."""
    from affine import Affine

    from .cube import make_raster
    from .grid import Grid

    grid = Grid("EPSG:4326", Affine(res, 0, west, 0, -res, north), data.shape[-2:])
    return make_raster(data, grid, name=name, nodata=nodata)


def _classes(ny=96, nx=128, west=10.0, north=50.0):
    """A uint8 class raster like Köppen-Geiger's (1-5, nodata 0 in the corner)."""
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(ny, nx)).astype("u1")
    v[:8, :8] = 0
    return _geo(v, west, north, name="koppen_geiger", nodata=0)


def _local():
    from . import ops
    from .compute import compute

    for kg in (_classes(), _classes().chunk(48)):  # eager and dask blocks
        hist = ops.local_histogram(kg, classes=[1, 2, 3, 4, 5])
        groups = ops.local_reclassify(kg, {1: 1, 2: 2, 3: 2, 4: 3, 5: 3})
        nir = (kg.astype("f4") + 1) / 10
        red = (nir * 0.5).rename("red")
        ndvi = ops.normalized_difference(nir, red)
        ncls = ops.local_reclassify(ndvi, [(-1.0, 0.2, 0), (0.2, 0.5, 10), (0.5, 1.01, 20)],
                                    default=0, dtype="u1")
        combo = ops.local_add(kg, ncls)
        compute(hist, ops.local_histogram(groups, classes=[1, 2, 3]),
                ops.local_histogram(combo, classes=list(range(1, 26))),
                ops.local_count(ncls, 10),
                ops.local_count(groups, 2),  # dask: counted over the preimage (count_mask)
                progress=False)


def _focal():
    from .compute import compute
    from .ops.focal import focal_majority
    from .ops.terrain import aspect, hillshade, slope

    for kg in (_classes(), _classes().chunk(48)):
        compute(focal_majority(kg, 3), progress=False)
    rng = np.random.default_rng(1)
    dem = _geo((rng.random((80, 72)) * 3000).astype("u2"), -105.8, 40.5, res=1 / 3600,
               name="elevation")
    for d in (dem, dem.chunk(32)):
        compute(slope(d).mean(), aspect(d).max(), hillshade(d).mean(), progress=False)


def _zonal():
    import geopandas as gpd
    from shapely.geometry import box

    from .ops.zonal import zonal_crosstab

    zones = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[
        box(10.1, 49.6, 10.5, 49.9), box(10.4, 49.3, 11.0, 49.8)], crs="EPSG:4326")
    zones = zones.set_index("name")
    for kg in (_classes(), _classes().chunk(48)):
        zonal_crosstab(kg, zones)


def _cells():
    from .cube.cells import chunk_by_parent
    from .ops.cells import cell_focal, cell_stencil, cells_to_raster, to_cells

    ny, nx = 240, 480  # 2° × 4° of 30″ pixels at 46-48° N
    land = _geo(np.ones((ny, nx), bool), 6.0, 48.0, name="land")
    land.values[:20, :40] = False
    kg = _classes(ny, nx, 6.0, 48.0)
    for level in (3, 4, 5):  # the demo's (5) and vectorgeo's (3, 4) resolutions
        stencil = cell_stencil(land, "h3", level=level)
    frac = to_cells(kg.chunk(120), "h3", level=5, stat="fractions", classes=[1, 2, 3, 4, 5],
                    cells=stencil, chunk_level=1)
    v = np.asarray(frac.values)
    dom = frac.isel({"class": 0}, drop=True).copy(
        data=np.where(np.isfinite(v).all(axis=1), np.argmax(np.nan_to_num(v, nan=-1), axis=1)
                      + 1.0, np.nan))
    np.asarray(cell_focal(chunk_by_parent(dom, 1), 1, stat="majority").values)
    np.asarray(cells_to_raster(dom, kg).values)  # the PNG map's painting


def _htmst():
    from ._demo.htmst import _SAA, satellite_tracks
    from .index import Cap
    from .io.points import PointStore

    df = satellite_tracks("2013-02-01", "2013-02-01T00:20", n_vars=4)
    with tempfile.TemporaryDirectory(prefix="stengine-warm-") as tmp:
        for key in ("htmst", "time", "space"):
            st = PointStore.create(Path(tmp) / key, key=key, level=8, t0="2013-02-01",
                                   t1="2013-02-02", chunk_size=1024, overwrite=True)
            st.append(df)
            st.query(Cap(_SAA[0], _SAA[1], 45.0), ("2013-02-01T00:05", "2013-02-01T00:15"))


def _collection():
    from . import ops
    from ._collection_synth import write_scenes
    from .compute import compute

    with tempfile.TemporaryDirectory(prefix="stengine-warm-") as tmp:
        col = write_scenes(Path(tmp) / "scenes", dates=2, tiles=(1, 2), size=32, overlap=8,
                           seed=7)
        cube = col.load(["red", "nir"], chunks=32)
        red, nir = cube.sel(band="red", drop=True), cube.sel(band="nir", drop=True)
        ndvi = ops.normalized_difference(nir, red)
        compute(ops.quality_mosaic(cube, ndvi), ops.composite(cube, "median"),
                ops.composite(ndvi, "max"), progress=False)


RECIPES = {"zonal": _zonal, "htmst": _htmst, "cells": _cells, "focal": _focal,
           "local": _local, "collection": _collection}
# compile CPU seconds of each recipe on an empty cache (one process, 2-core machine,
# 2026-12): only their ratios matter, to balance the shares
COST = {"zonal": 15.6, "htmst": 13.8, "cells": 13.0, "focal": 5.7, "local": 2.6,
        "collection": 1.1}


def _split(names, n):
    """Share the recipes out to ``n`` processes, each next-costliest to the least loaded."""
    shares = [[] for _ in range(n)]
    load = [0.0] * n
    for name in sorted(names, key=lambda k: -COST.get(k, 1.0)):
        i = load.index(min(load))
        shares[i].append(name)
        load[i] += COST.get(name, 1.0)
    return [s for s in shares if s]


def kernel_stats() -> tuple[int, int]:
    """(compiled, loaded) signature counts of stengine's numba kernels in this process."""
    from numba.core.registry import CPUDispatcher

    compiled = loaded = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("stengine") or mod is None:
            continue
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and getattr(obj, "__module__", "") == name:
                compiled += sum(obj.stats.cache_misses.values())
                loaded += sum(obj.stats.cache_hits.values())
    return compiled, loaded


def load(names=None) -> dict:
    """Run the recipes ``names`` (default all) here; return seconds and kernel counts."""
    import warnings

    t0 = time.perf_counter()
    steps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names or RECIPES:
            t = time.perf_counter()
            RECIPES[name]()
            steps[name] = time.perf_counter() - t
    compiled, loaded = kernel_stats()
    return {"seconds": time.perf_counter() - t0, "compiled": compiled, "loaded": loaded,
            "recipes": steps, "pid": os.getpid()}


def warm(processes: int | None = None, names=None) -> dict:
    """Compile (or load) the recipes' kernels in ``processes`` spawned processes.

    ``processes`` defaults to the cores available (at most one per recipe). Returns
    ``{"seconds", "compiled", "loaded", "processes"}``, counts summed over the processes:
    ``compiled`` is 0 when the on-disk cache was already warm.
    """
    names = list(names or RECIPES)
    n = processes or len(os.sched_getaffinity(0))
    shares = _split(names, max(1, min(n, len(names))))
    t0 = time.perf_counter()
    if len(shares) == 1:
        res = [load(shares[0])]
    else:
        with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as ex:
            res = list(ex.map(load, shares))
    return {"seconds": time.perf_counter() - t0, "processes": len(shares),
            "compiled": sum(r["compiled"] for r in res),
            "loaded": sum(r["loaded"] for r in res),
            "recipes": {k: v for r in res for k, v in r["recipes"].items()}}


def start_background(names=("zonal",)):
    """Start compiling the recipes ``names`` in one spawned process; return its future.

    For a phase that leaves a core idle (the demo's single-threaded data ingest): the
    kernels land in the on-disk cache, so :func:`warm_cluster` after it only loads them.
    Its result is :func:`load`'s dict; pass it to :func:`warm_cluster` as ``ahead``.
    """
    ex = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
    fut = ex.submit(load, list(names))
    ex.shutdown(wait=False)
    return fut


def warm_cluster(client, names=None, *, ahead=None) -> dict:
    """Compile the recipes once across this process and the cluster's workers, then load
    every recipe in each of them (cache hits only), before any task needs a kernel.

    The client and each worker take a share and compile it in parallel (numba holds the
    GIL while compiling, so a share per process, not per thread); then each loads the
    others' shares from the cache. Returns :func:`warm`'s keys plus ``load_seconds``.
    ``ahead`` (a :func:`start_background` future) is waited for first; its recipes are
    only loaded here and its compiles are counted in, with ``ahead_seconds``.
    """
    names = list(names or RECIPES)
    pre = None
    if ahead is not None:
        t = time.perf_counter()
        pre = ahead.result()
        pre["waited"] = time.perf_counter() - t
    workers = list(client.scheduler_info().get("workers", {}))
    shares = _split([n for n in names if pre is None or n not in pre["recipes"]],
                    len(workers) + 1)
    t0 = time.perf_counter()
    futs = [client.submit(load, share, workers=[w], allow_other_workers=False, pure=False)
            for w, share in zip(workers, shares[1:], strict=False)]
    res = [load(shares[0])] + client.gather(futs)
    t1 = time.perf_counter()
    futs = [client.submit(load, names, workers=[w], allow_other_workers=False, pure=False)
            for w in workers]
    again = [load(names)] + client.gather(futs)
    # what a process compiled in the second pass the first left out: two processes that
    # compiled one signature at once (the client's dask recipes run on the workers), or
    # workers that do not share this cache (a remote cluster)
    # (counts are per process and cumulative: in-process workers share the client's)
    first, second = {}, {}
    for seen, rs in ((first, res), (second, again)):
        for r in rs:
            seen[r["pid"]] = max(seen.get(r["pid"], 0), r["compiled"])
    missed = sum(max(0, n - first.get(pid, 0)) for pid, n in second.items())
    out = {"seconds": t1 - t0, "load_seconds": time.perf_counter() - t1, "missed": missed,
           "processes": len(shares), "compiled": sum(r["compiled"] for r in res),
           "loaded": sum(r["loaded"] for r in res),
           "recipes": {k: v for r in res for k, v in r["recipes"].items()}}
    if pre is not None:
        out["compiled"] += pre["compiled"]
        out["loaded"] += pre["loaded"]
        out["recipes"].update(pre["recipes"])
        out["ahead"] = (sorted(pre["recipes"]), pre["seconds"], pre["waited"])
    return out


def describe(r: dict) -> str:
    """One summary line for :func:`warm`'s result."""
    what = (f"{r['compiled']} kernel signatures compiled (first run only)" if r["compiled"]
            else f"{r['loaded']} kernel signatures loaded from cache")
    out = f"{what}, {r['processes']} processes, {r['seconds']:.1f} s"
    if "load_seconds" in r:
        out += f" (+ {r['load_seconds']:.1f} s loading into every process"
        out += (f"; {r['missed']} more compiled while loading: raced for, or a cache "
                "not shared)") if r["missed"] else ")"
    if r.get("ahead"):
        names, secs, waited = r["ahead"]
        out += (f"; {', '.join(names)} compiled beside the data ingest ({secs:.1f} s, "
                f"{waited:.1f} s waited for after it)")
    return out


def main(argv=None) -> int:
    r = warm()
    print(f"numba cache: {describe(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

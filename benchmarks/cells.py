"""Cell benchmarks: pixel → H3 cell assignment, and Köppen-Geiger → H3 class fractions.

``assign`` times the assignment of every pixel centre of a 30″ lon/lat grid to its H3
cell: stengine's grid path (one thread, and row bands on every core), its per-point path,
the ``h3`` package called in a Python loop and through ``np.vectorize`` (both on a
subsample, ``items`` set accordingly), and h3ronpy's vectorized ``coordinates_to_cells``
(Rust) when installed. ``koppen`` runs ``to_cells(stat="fractions")`` on the real global
Köppen-Geiger raster (933 M px) at H3 resolutions 5 and 6.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._runner import Case, benchmark

# pixel-centre grids at 30″: (rows, cols, north edge, west edge)
GRIDS = {
    "tiny": (120, 240, 50.0, 0.0),
    "kg-tile": (2700, 2700, 67.5, 0.0),          # one Zarr tile of the KG store (Europe)
    "kg-band": (2700, 43200, 67.5, -180.0),      # a full-width band: 117 M px
}
SUBSAMPLE = 200_000  # points for the slow per-point peers


def _grid(size):
    rows, cols, north, west = GRIDS[size]
    lon = west + (np.arange(cols) + 0.5) / 120
    lat = north - (np.arange(rows) + 0.5) / 120
    return lon, lat


def _bands(lon, lat, level, workers):
    from stengine.index.h3 import grid_to_cells

    edges = np.linspace(0, lat.size, workers * 4 + 1).astype(int)
    with ThreadPoolExecutor(workers) as ex:  # the numba loop releases the GIL
        parts = list(ex.map(lambda ab: grid_to_cells(lon, lat[ab[0]:ab[1]], level),
                            zip(edges[:-1], edges[1:], strict=True)))
    return np.concatenate(parts)


@benchmark("cells", "assign", sizes=list(GRIDS), params={"level": [6, 9]})
def assign(size, level):
    from stengine.index.h3 import grid_to_cells, lonlat_to_cell

    lon, lat = _grid(size)
    npix = lon.size * lat.size
    cores = len(os.sched_getaffinity(0))
    yield Case("stengine", lambda: _bands(lon, lat, level, cores), items=npix,
               note=f"grid_to_cells, {cores} threads (row bands)")
    yield Case("stengine-1thread", lambda: grid_to_cells(lon, lat, level), items=npix,
               note="grid_to_cells, one thread")
    rng = np.random.default_rng(0)
    n = min(SUBSAMPLE, npix)
    plon = rng.choice(lon, n)
    plat = rng.choice(lat, n)
    yield Case("stengine-points", lambda: lonlat_to_cell(plon, plat, level), items=n,
               note="lonlat_to_cell per point (trig per point), one thread")
    from h3.api import basic_int as h3i

    def loop():
        f = h3i.latlng_to_cell
        return [f(a, b, level) for a, b in zip(plat.tolist(), plon.tolist(), strict=True)]

    yield Case("h3-loop", loop, items=n, note=f"h3 {_version('h3')} in a Python loop "
               f"({n:,}-point subsample)")
    vec = np.vectorize(h3i.latlng_to_cell, otypes=[np.uint64])
    yield Case("h3-vectorize", lambda: vec(plat, plon, level), items=n,
               note="np.vectorize(h3.latlng_to_cell), subsample")
    from h3ronpy.vector import coordinates_to_cells

    m = min(npix, 2_000_000)
    hlon, hlat = rng.choice(lon, m), rng.choice(lat, m)
    yield Case("h3ronpy", lambda: coordinates_to_cells(hlat, hlon, level), items=m,
               note=f"h3ronpy {_version('h3ronpy')} coordinates_to_cells (Rust, one call, "
               f"{m:,} pixel centres)")


def _version(pkg):
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "?"


@benchmark("cells", "koppen", sizes=["tiny", "kg"], params={"level": [5, 6]})
def koppen(size, level):
    import dask

    from stengine.ops.cells import to_cells

    if size == "tiny":
        from stengine.cube import make_raster
        from stengine.grid import Grid

        g = Grid.from_bbox((0.0, 40.0, 5.0, 45.0), 1 / 120, crs=4326)
        rng = np.random.default_rng(0)
        da = make_raster(rng.integers(0, 6, g.shape).astype("uint8"), g, nodata=0).chunk(300)
        note = "synthetic 600×600 classes"
    else:
        from stengine.datasets import koppen_geiger

        da = koppen_geiger(progress=False)
        note = f"real KG 43200×21600 uint8, Zarr {da.chunks[0][0]}² tiles"
    cores = len(os.sched_getaffinity(0))

    def run():
        with dask.config.set(scheduler="threads", num_workers=cores):
            return to_cells(da, "h3", level=level, stat="fractions", classes=[1, 2, 3, 4, 5])

    out = {}

    def info():
        c = out.get("cube")
        return {"cells": c.sizes["cells"]} if c is not None else {}

    def timed():
        out["cube"] = run()

    yield Case("stengine", timed, items=da.size, repeat=1 if size == "kg" else None,
               note=f"{note}; to_cells fractions (nodata 0 excluded), dask threads ×{cores}",
               info=info)

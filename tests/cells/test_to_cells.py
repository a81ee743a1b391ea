"""to_cells against a brute-force reference (h3 per pixel, dict aggregation)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from stengine.cube import make_raster
from stengine.errors import ChunkError, DimensionError, IndexRangeError
from stengine.grid import Grid
from stengine.ops.cells import to_cells

from .reference import aggregate, h3_cells, pixel_centres

CHUNKS = [None, (1, 1), (3, 5), ((4, 1, 7), (2, 9, 3, 6)), -1]


def _raster(dtype="f8", T=None, seed=0, nodata=None):
    rng = np.random.default_rng(seed)
    g = Grid.from_bbox((9.0, 44.0, 14.0, 47.0), 0.25, crs=4326)  # 12 × 20 pixels
    shape = g.shape if T is None else (T, *g.shape)
    if dtype == "f8":
        v = rng.normal(size=shape)
        v[rng.random(shape) < 0.1] = np.nan
    else:
        v = rng.integers(0, 5, size=shape).astype(dtype)
    dims = ("y", "x") if T is None else ("time", "y", "x")
    da = make_raster(v, g, dims=dims, name="v", nodata=nodata)
    if T is not None:
        da = da.assign_coords(time=np.arange(T))
    return da


def _chunk(da, chunks):
    if chunks is None:
        return da
    if chunks == -1:
        return da.chunk()
    lead = {d: 1 for d in da.dims[:-2]}
    return da.chunk({**lead, "y": chunks[0], "x": chunks[1]})


def _check(cube, ref, stat, classes=None):
    ids = cube.cell_ids.values.tolist()
    assert sorted(ref) == ids
    vals = np.moveaxis(cube.values, cube.get_axis_num("cells"), 0)
    for c, row in zip(ids, vals, strict=True):
        want = ref[c]
        got = np.asarray(row).reshape(len(want), -1) if stat == "fractions" else \
            np.asarray(row).reshape(-1)
        for w, g in zip(want, got, strict=True):
            if w is None:
                assert np.all(np.isnan(g)) if np.asarray(g).dtype.kind == "f" else True
            else:
                assert np.allclose(g, w), (c, w, g)


# pixel-sized (1, 1) chunks make slow graphs: one level and three stats cover them
FLOAT_CASES = [(stat, chunks, level) for stat in ("mean", "sum", "min", "max", "count")
               for chunks in CHUNKS for level in (3, 5)
               if not (chunks == (1, 1) and (level == 5 or stat in ("sum", "max")))]


@pytest.mark.parametrize(("stat", "chunks", "level"), FLOAT_CASES)
def test_float_stats_match_reference(stat, chunks, level):
    da = _raster(T=2)
    X, Y = pixel_centres(Grid.from_bbox((9.0, 44.0, 14.0, 47.0), 0.25))
    ref = aggregate(da.values, h3_cells(X, Y, level), stat)
    cube = to_cells(_chunk(da, chunks), "h3", level=level, stat=stat)
    assert cube.dims == ("time", "cells") and cube.attrs["level"] == level
    _check(cube, ref, stat)


@pytest.mark.parametrize("chunks", [None, (5, 3), ((4, 1, 7), (2, 9, 3, 6))])
@pytest.mark.parametrize("stat", ["fractions", "mode", "count", "mean"])
def test_class_stats_with_nodata(stat, chunks):
    da = _raster("uint8", nodata=0)
    X, Y = pixel_centres(Grid.from_bbox((9.0, 44.0, 14.0, 47.0), 0.25))
    classes = [1, 2, 3, 4]
    ref = aggregate(da.values[None], h3_cells(X, Y, 4), stat, nodata=0, classes=classes)
    cube = to_cells(_chunk(da, chunks), "h3", level=4, stat=stat, classes=classes)
    if stat == "fractions":
        assert cube.dims == ("cells", "class") and cube["class"].values.tolist() == classes
        assert np.allclose(cube.sum("class"), 1.0)
    if stat == "mode":
        assert cube.dtype == np.uint8 and cube.attrs["nodata"] == 0
    _check(cube, ref, stat, classes)


def test_time_chunks_and_cells_stencil():
    da = _raster(T=3, seed=3)
    X, Y = pixel_centres(Grid.from_bbox((9.0, 44.0, 14.0, 47.0), 0.25))
    ids = h3_cells(X, Y, 4)
    ref = aggregate(da.values, ids, "mean")
    full = to_cells(da.chunk({"time": 2, "y": 5, "x": 7}), "h3", level=4)
    _check(full, ref, "mean")
    assert full.chunks is not None and full.attrs["chunk_level"] == 0
    stencil = np.unique(ids)[::2]
    extra = np.array([0x841e001ffffffff], np.uint64)  # a cell far away: no pixels
    sub = to_cells(da, "h3", level=4, cells=np.r_[stencil, extra])
    assert sub.cell_ids.values.tolist() == sorted(np.r_[stencil, extra].tolist())
    assert np.isnan(sub.sel(cells=sub.cell_ids.values.tolist().index(extra[0]))).all()
    for c in stencil.tolist():
        i = sub.cell_ids.values.tolist().index(c)
        assert np.allclose(sub.isel(cells=i), full.isel(
            cells=full.cell_ids.values.tolist().index(c)), equal_nan=True)


def test_projected_raster_with_crs():
    from pyproj import Transformer

    g = Grid.from_bbox((1.0e6, 5.6e6, 1.3e6, 5.8e6), 10000.0, crs=3857)
    rng = np.random.default_rng(4)
    da = make_raster(rng.normal(size=g.shape), g)
    X, Y = np.meshgrid(g.xs(), g.ys())
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(X, Y)
    ref = aggregate(da.values[None], h3_cells(lon, lat, 5), "mean")
    _check(to_cells(da.chunk({"x": 7, "y": 6}), "h3", level=5), ref, "mean")


def test_lonlat_without_crs_accepted_and_projected_without_crs_rejected():
    da = _raster()
    bare = xr.DataArray(da.values, dims=("y", "x"), coords={"y": da.y, "x": da.x})
    assert to_cells(bare, "h3", level=3, stat="count").sum() == np.isfinite(da.values).sum()
    proj = bare.assign_coords(x=bare.x * 1e5, y=bare.y * 1e5)
    with pytest.raises(IndexRangeError, match="lon/lat grid was expected"):
        to_cells(proj, "h3", level=3)


def test_bad_input():
    da = _raster()
    with pytest.raises(ValueError, match="grid must be one of"):
        to_cells(da, "s2", level=3)
    with pytest.raises(IndexRangeError, match="0..15"):
        to_cells(da, "h3", level=16)
    with pytest.raises(ValueError, match="stat must be"):
        to_cells(da, "h3", level=3, stat="median")
    with pytest.raises(ChunkError, match="classes="):
        to_cells(da.chunk(), "h3", level=3, stat="fractions")
    with pytest.raises(DimensionError, match="spatial dims"):
        to_cells(da.rename(x="lon"), "h3", level=3)
    with pytest.raises(TypeError, match="DataArray"):
        to_cells(da.values, "h3", level=3)


def test_many_cells_per_chunk_grow_the_table():
    # level 9 cells (~0.1 km²) are much smaller than these pixels: every pixel is a cell
    g = Grid.from_bbox((0.0, 0.0, 2.0, 2.0), 0.02, crs=4326)
    da = make_raster(np.arange(g.shape[0] * g.shape[1], dtype="f8").reshape(g.shape), g)
    cube = to_cells(da, "h3", level=9, stat="sum")
    assert cube.sizes["cells"] == da.size and float(cube.sum()) == float(da.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunkings(seed):
    rng = np.random.default_rng(seed)

    def split(n):
        k = int(rng.integers(0, min(4, n - 1) + 1))
        cuts = np.sort(rng.choice(np.arange(1, n), size=k, replace=False))
        return tuple(np.diff(np.r_[0, cuts, n]).tolist())

    da = _raster("uint8", T=2, seed=seed, nodata=0)
    chunks = {"time": split(2) if seed else (2,), "y": split(12), "x": split(20)}
    X, Y = pixel_centres(Grid.from_bbox((9.0, 44.0, 14.0, 47.0), 0.25))
    ref = aggregate(da.values, h3_cells(X, Y, 4), "fractions", nodata=0, classes=[1, 2, 3, 4])
    _check(to_cells(da.chunk(chunks), "h3", level=4, stat="fractions", classes=[1, 2, 3, 4]),
           ref, "fractions")

import threading

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest

from stengine import Grid
from stengine.cube import make_raster
from stengine.cube.catalog import chunk_catalog, select
from stengine.errors import DimensionError, IndexRangeError
from stengine.index import Box, Cap, Polygon
from stengine.index import ranges as R

SHAPE = (10, 45, 90)  # daily, 4-degree pixels
CHUNKS = (3, 10, 20)
TIMES = pd.date_range("2013-01-01", periods=SHAPE[0], freq="D")
QUERIES = [
    (Cap(-45, -30, 45), ("2013-01-02", "2013-01-05")),
    (Box(-7.5, -90, 7.5, 90), ("2013-01-01", "2013-01-09")),
    (Cap(0, 90, 60), None),
    (Box(150, -20, -160, 20), ("2013-01-07T12:00", "2013-01-10")),
    (Polygon([10, 60, 40], [-10, 0, 40]), "2013-01-04"),
    (None, ("2013-01-03", "2013-01-04")),
]


class Recorder:
    """A dask-backed cube whose blocks record that they were computed."""

    def __init__(self):
        self.read = set()
        self.lock = threading.Lock()
        self.values = np.random.default_rng(0).normal(size=SHAPE)

    def block(self, block_id=None, block_info=None):
        with self.lock:
            self.read.add(block_id)
        sl = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
        return self.values[sl]

    def cube(self):
        chunks = tuple(_split(n, c) for n, c in zip(SHAPE, CHUNKS, strict=True))
        arr = dsa.map_blocks(self.block, chunks=chunks, dtype=float, meta=np.empty((0, 0, 0)))
        grid = Grid.from_bbox((-180, -90, 180, 90), 4.0, crs=4326)
        return make_raster(arr, grid, dims=("time", "y", "x"), coords={"time": TIMES})


def _split(n, c):
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def reference(values, lon, lat, reg, iv):
    """Every pixel: the value where the centre is in the region and the time in range."""
    tm = np.ones(SHAPE[0], bool)
    if iv is not None:
        a, b = (pd.Timestamp(v) for v in iv) if isinstance(iv, tuple) else (
            pd.Period(iv).start_time, (pd.Period(iv) + 1).start_time)
        tm = (TIMES >= a) & (TIMES < b)
    sm = np.ones(SHAPE[1:], bool) if reg is None else reg.contains(lon[None, :], lat[:, None])
    return np.where(tm[:, None, None] & sm[None], values, np.nan), tm, sm


@pytest.mark.parametrize("q", range(len(QUERIES)))
def test_select_matches_brute_force_and_reads_only_needed(q):
    reg, iv = QUERIES[q]
    rec = Recorder()
    cube = rec.cube()
    cat = chunk_catalog(cube, level=6)
    out = select(cube, reg, iv, catalog=cat)
    assert not rec.read  # lazy: building the selection reads nothing
    got = out.values
    lon, lat = cube.x.values, cube.y.values
    want, tm, sm = reference(rec.values, lon, lat, reg, iv)
    it = np.flatnonzero(np.isin(cube.time.values, out.time.values))
    iy = np.flatnonzero(np.isin(lat, out.y.values))
    ix = np.flatnonzero(np.isin(lon, out.x.values))
    np.testing.assert_array_equal(got, want[np.ix_(it, iy, ix)])
    # nothing of the query lies outside the window
    assert np.isnan(np.delete(want, it, axis=0)).all()
    assert np.isnan(np.delete(want, iy, axis=1)).all() and np.isnan(np.delete(want, ix, 2)).all()
    # chunks read: every chunk holding a queried pixel, and only chunks the catalog needs
    truly = {(i // CHUNKS[0], j // CHUNKS[1], k // CHUNKS[2])
             for i, j, k in zip(*np.nonzero(tm[:, None, None] & sm[None]), strict=True)}
    need = {tuple(int(v) for v in c) for c in zip(*np.nonzero(cat.needed(reg, iv)), strict=True)}
    assert truly <= rec.read <= need
    assert out.attrs["chunks_read"] == len(rec.read)
    assert out.attrs["chunks_skipped"] == cat.n_chunks - out.attrs["chunks_read"]
    if reg is not None and iv is not None:
        assert out.attrs["chunks_skipped"] > cat.n_chunks / 2


def test_needed_equals_key_range_intersection():
    cube = Recorder().cube()
    cat = chunk_catalog(cube, level=5)
    for reg, iv in QUERIES:
        need = cat.needed(reg, iv)
        q = cat.scheme.cover(reg, iv)
        for i, j, k in np.ndindex(*cat.shape):
            meets = len(R.intersection(cat.key_ranges(i, j, k), q)) > 0
            assert meets == need[i, j, k], (reg, iv, (i, j, k))


def test_numpy_cube_and_chunks_argument():
    grid = Grid.from_bbox((-180, -90, 180, 90), 4.0, crs=4326)
    values = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    cube = make_raster(values, grid, dims=("time", "y", "x"), coords={"time": TIMES})
    cat = chunk_catalog(cube, level=6, chunks=CHUNKS)
    assert cat.shape == (4, 5, 5)
    reg, iv = QUERIES[0]
    out = select(cube, reg, iv, catalog=cat)
    want, _, _ = reference(values, cube.x.values, cube.y.values, reg, iv)
    assert np.nansum(out.values) == np.nansum(want)
    assert out.attrs["chunks_read"] < cat.n_chunks


def test_bad_cubes():
    grid = Grid.from_bbox((0, 0, 1000, 1000), 100.0, crs=3857)
    cube = make_raster(np.zeros((2, 10, 10)), grid, dims=("time", "y", "x"),
                       coords={"time": TIMES[:2]})
    with pytest.raises(IndexRangeError, match="lon/lat degrees \\(EPSG:4326\\); got CRS EPSG:3857"):
        chunk_catalog(cube)
    with pytest.raises(DimensionError, match="needs a \\(time, y, x\\) cube"):
        chunk_catalog(cube.isel(time=0))


def test_catalog_times_of_any_unit_and_out_of_range():
    values = np.zeros(SHAPE)
    grid = Grid.from_bbox((-180, -90, 180, 90), 4.0, crs=4326)

    def cube(times):
        return make_raster(values, grid, dims=("time", "y", "x"), coords={"time": times})

    a = chunk_catalog(cube(TIMES.as_unit("ns").values), level=4, chunks=CHUNKS)
    b = chunk_catalog(cube(TIMES.as_unit("s").values), level=4, chunks=CHUNKS)
    assert a.chunks == b.chunks
    reg = Cap(0, 0, 30)
    assert np.array_equal(a._needed(reg, None), b._needed(reg, None))
    # year 1500 in datetime64[s]: numpy's astype to ns wraps it silently to 2084
    old = np.arange(np.datetime64("1500-01-01", "s"), np.datetime64("1500-01-11", "s"),
                    np.timedelta64(1, "D"))
    with pytest.raises(IndexRangeError, match="time"):
        chunk_catalog(cube(old), level=4, chunks=CHUNKS)

"""Fixtures for the learn tests: small real Zarr cubes (written with stengine.to_zarr and
opened lazily) and a small H3 cell cube over a lon/lat raster.

Session-scoped stores under one temporary folder, so each is written once. Raster
fixtures return ``(lazy_cube, numpy_array)`` pairs: patches are compared with plain NumPy
slices of the array that was written.

``learn_cluster`` is one 2-worker LocalCluster (processes) for the whole session: its
workers import torch once (10-30 s in fresh processes), not once per module. Modules
connect their own ``Client`` to it (the module-scoped ``client``), so a default client never
outlives the module that asked for one.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import stengine
from stengine.cube.conventions import make_raster
from stengine.grid import Grid

UTM = "EPSG:32633"


def _grid(h, w, crs=UTM, res=30.0, origin=(500000.0, 4000000.0)):
    return Grid(crs, (res, 0, origin[0], 0, -res, origin[1]), (h, w))


@pytest.fixture(scope="session")
def learn_cluster():
    """2 worker processes, 1 thread each, on 127.0.0.1, no dashboard (session-wide)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as lc:
        yield lc


@pytest.fixture(scope="module")
def client(learn_cluster):
    """A Client of the shared cluster, the default one for its module only. Waits for
    both workers first: a test that killed one leaves the nanny restarting it."""
    from distributed import Client

    with Client(learn_cluster) as c:
        c.wait_for_workers(2, timeout=120)
        yield c
        c.wait_for_workers(2, timeout=120)  # hand the next module two live workers


@pytest.fixture(scope="session")
def learn_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("learn")


@pytest.fixture(scope="session")
def band_cube(learn_dir):
    """(band=4, y=96, x=80) float32 with NaNs, chunks (2, 32, 32): 2 band blocks."""
    rng = np.random.default_rng(1)
    a = rng.random((4, 96, 80)).astype("f4") * 100
    a[:, :10, :12] = np.nan  # a corner of missing data
    a[rng.random(a.shape) < 0.02] = np.nan
    da = make_raster(a, _grid(96, 80), dims=("band", "y", "x"), name="refl",
                     coords={"band": ["B1", "B2", "B3", "B4"]})
    path = learn_dir / "band.zarr"
    stengine.to_zarr(da, path, chunks={"band": 2, "y": 32, "x": 32})
    return stengine.open_cube(path), a


@pytest.fixture(scope="session")
def time_cube(learn_dir):
    """(time=5, y=64, x=72) float32 daily from 2020-01-01, chunks (1, 24, 24)."""
    rng = np.random.default_rng(2)
    a = rng.random((5, 64, 72)).astype("f4")
    t = np.datetime64("2020-01-01", "ns") + np.arange(5) * np.timedelta64(1, "D")
    da = make_raster(a, _grid(64, 72), dims=("time", "y", "x"), name="lt", coords={"time": t})
    path = learn_dir / "time.zarr"
    stengine.to_zarr(da, path, chunks={"time": 1, "y": 24, "x": 24})
    return stengine.open_cube(path), a


@pytest.fixture(scope="session")
def dataset_cube(learn_dir):
    """Dataset: ``alt`` (y, x) int16 with nodata -1, ``lt`` (time=3, y, x) float32, and a
    ``cls`` (y, x) uint8 label raster with nodata 0; (64, 64), chunks 32."""
    rng = np.random.default_rng(3)
    alt = rng.integers(0, 3000, (64, 64)).astype("i2")
    alt[5, 5:9] = -1
    lt = rng.random((3, 64, 64)).astype("f4")
    cls = rng.integers(1, 6, (64, 64)).astype("u1")
    cls[40:44, 40:44] = 0
    g = _grid(64, 64)
    t = np.datetime64("2021-01-15", "ns") + np.arange(3) * np.timedelta64(31, "D")
    ds = xr.Dataset({"alt": make_raster(alt, g, name="alt", nodata=-1),
                     "lt": make_raster(lt, g, dims=("time", "y", "x"), name="lt",
                                       coords={"time": t})})
    path = learn_dir / "ds.zarr"
    stengine.to_zarr(ds, path, chunks={"time": 1, "y": 32, "x": 32})
    lab = make_raster(cls, g, name="cls", nodata=0)
    lpath = learn_dir / "cls.zarr"
    stengine.to_zarr(lab, lpath, chunks={"y": 32, "x": 32})
    return stengine.open_cube(path), stengine.open_cube(lpath), {"alt": alt, "lt": lt,
                                                                 "cls": cls}


@pytest.fixture(scope="session")
def lonlat_raster(learn_dir):
    """(band=2, y=160, x=200) float32 on a 0.05° lon/lat grid over lon 0..10, lat 42..50,
    chunks 64; values = lon and lat of the pixel centre (so a patch says where it is)."""
    g = Grid.from_bbox((0.0, 42.0, 10.0, 50.0), 0.05, crs="EPSG:4326")
    lon, lat = np.meshgrid(g.xs(), g.ys())
    a = np.stack([lon, lat]).astype("f4")
    da = make_raster(a, g, dims=("band", "y", "x"), name="pos", coords={"band": ["lon", "lat"]})
    path = learn_dir / "lonlat.zarr"
    stengine.to_zarr(da, path, chunks={"band": 2, "y": 64, "x": 64})
    return stengine.open_cube(path), a


@pytest.fixture(scope="session")
def h3_cells():
    """A cell cube of H3 level-4 cells inside lon 1..9, lat 43..49, valued by class
    (``id % 5``, int64) — a labels= source for CellSampler."""
    from stengine.cube.cells import make_cell_cube
    from stengine.index import h3 as sth3

    ids = sth3.cells_in_bbox((1.0, 43.0, 9.0, 49.0), 4)
    lon, lat = sth3.cell_to_lonlat(ids)
    ids = ids[(lon > 1) & (lon < 9) & (lat > 43) & (lat < 49)]
    vals = (ids % np.uint64(5)).astype(np.int64)
    return make_cell_cube(vals, ids, grid="h3", level=4, name="klass")

"""Bad and edge input for every public op in ``stengine.ops.__all__``, table-driven.

Good edges — zero-size rasters (a 0-length ``y``, ``x`` or ``time``), one-pixel and
NaN-only rasters — must give the NumPy reference's result on numpy and dask (chunks of
1). The semantics, the same for every family: elementwise, focal and terrain ops give
the empty same-shape raster; counts give 0; zonal tables give their zones with count 0
(NaN elsewhere); cell ops give cubes without cells. Bad input — wrong dtypes, wrong
dims, not a DataArray, mismatched grids, invalid geometries, misbehaving UDFs, hostile
band_math expressions — must raise the documented error naming the argument.
"""

from __future__ import annotations

import re
import time
import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr

from stengine import ops
from stengine.cube import make_raster
from stengine.errors import DimensionError, GridMismatchError, IndexRangeError, UDFError
from stengine.grid import Grid
from stengine.ops.window import Window
from stengine.testing import (
    assert_backends_match,
    backend_skip_reason,
    to_backend,
    to_numpy,
)
from tests import reference as ref
from tests import reference_focal as rf
from tests import reference_zonal as rz

CPU = ["numpy", "dask"]


def _sim(b):
    reason = backend_skip_reason(b)
    return pytest.param(b, marks=pytest.mark.skip(reason=reason)) if reason else b


# the simulated GPU backends run the GPU kernels' source (NUMBA_ENABLE_CUDASIM=1)
BACKENDS = [*CPU, _sim("cudasim"), _sim("dask-cudasim")]
TINY = (1, 1)  # dask chunks of one pixel along y and x (time chunks are 1 too)
RES = 30.0
LAPLACE = np.array([[0.5, 1, 0.5], [1, -6, 1], [0.5, 1, 0.5]])

EMPTY = [(0, 5), (5, 0), (0, 0), (0, 4, 5), (2, 0, 3)]
EDGES = [*(("zero-size", s) for s in EMPTY), ("one-pixel", (1, 1)), ("one-pixel", (2, 1, 1)),
         ("nan-only", (3, 4)), ("nan-only", (2, 3, 4))]


def _grid(shape, crs="EPSG:32633"):
    return Grid(crs, (RES, 0, 500000.0, 0, -RES, 4000000.0), shape[-2:])


def raster(shape, dtype="f4", *, kind="values", seed=0, crs="EPSG:32633"):
    """A raster of ``shape`` on a 30 m UTM grid: ``values`` (random, a few NaN/nodata),
    ``nan`` (every pixel missing: NaN, or nodata 255 for integers)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    nodata = None
    if dtype.kind == "f":
        data = (rng.random(shape) * 10).astype(dtype)
        if kind == "nan":
            data[...] = np.nan
    else:
        data = rng.integers(0, 3, size=shape).astype(dtype)
        nodata = 255
        if kind == "nan":
            data[...] = nodata
    dims = ("y", "x") if len(shape) == 2 else ("time", "y", "x")
    coords = {}
    if "time" in dims:
        coords["time"] = np.datetime64("2020-01-01", "ns") + np.arange(shape[0]) * \
            np.timedelta64(1, "D")
    return make_raster(data, _grid(shape, crs), dims=dims, coords=coords, name="v",
                       nodata=nodata)


def edge_raster(edge, shape, dtype="f4"):
    return raster(shape, dtype, kind="nan" if edge == "nan-only" else "values")


def zones_for(da):
    """An int32 (y, x) zone raster on ``da``'s grid: zone = column parity."""
    h, w = da.sizes["y"], da.sizes["x"]
    z = (np.arange(w)[None, :] % 2 + np.zeros((h, 1), int)).astype("i4")
    return make_raster(z, _grid((h, w)), name="zones")


# --------------------------------------------------------------------------- the table
def _focal(stat, window=3):
    fp = LAPLACE if stat == "apply" else Window.parse(window).weights

    def call(x):
        return getattr(ops, f"focal_{stat}")(x, LAPLACE if stat == "apply" else window)

    def reference(x):
        return rf.focal(x, stat, fp)

    return call, reference


def _terrain(name):
    def reference(x):
        return getattr(rf, name)(x, RES, RES)

    return lambda x: getattr(ops, name)(x), reference


def _binary(name):
    def reference(x):
        out = getattr(ops, f"local_{name}")(raster((1, 1)), raster((1, 1))).dtype
        return ref.binary(x, x, name, out)

    return lambda x: getattr(ops, f"local_{name}")(x, x), reference


# name -> (input dtype, call(da), numpy reference(x), result kind)
# result kinds: "same" (same-shape raster), "reduce" (counts over y, x), "zonal" (table)
RASTER_OPS = {
    "local_reclassify": ("f4", lambda x: ops.local_reclassify(x, {1.0: 10.0}, default=0.0),
                         lambda x: ref.reclassify(x, {1.0: 10.0}, default=0.0,
                                                  dtype="f4"), "same"),
    "local_count": ("f4", lambda x: ops.local_count(x, np.nan),
                    lambda x: ref.count(x, np.nan), "reduce"),
    "local_histogram": ("u1", lambda x: ops.local_histogram(x, classes=[0, 1, 2]),
                        lambda x: ref.histogram(x, [0, 1, 2], nodata=255), "reduce"),
    **{f"local_{n}": ("f4", *_binary(n), "same")
       for n in ("add", "subtract", "multiply", "divide")},
    "normalized_difference": ("f4", lambda x: ops.normalized_difference(x, x * 0 + 1),
                              lambda x: ref.normalized_difference(x, np.ones_like(x)),
                              "same"),
    "band_math": ("f4", lambda x: ops.band_math("sqrt(a) * 2 + 1", a=x),
                  lambda x: (np.sqrt(x.astype("f4")) * 2 + 1).astype("f4"), "same"),
    "local_apply": ("f4", lambda x: ops.local_apply(lambda a: a * 2, x),
                    lambda x: x * 2, "same"),
    **{f"focal_{s}": ("f4", *_focal(s), "same")
       for s in ("mean", "sum", "count", "min", "max", "var", "std", "median", "majority",
                 "apply")},
    **{n: ("f4", *_terrain(n), "same") for n in ("slope", "aspect", "hillshade")},
}
ZONAL_OPS = ("zonal_stats", "zonal_crosstab")
CELL_OPS = ("to_cells", "coarsen_cells", "cell_stencil", "cells_to_raster", "cell_focal")
OTHER = ("check_udf",)  # returns a dtype, not data: tested on its own below
# (time, ...) cube ops: bad input (how, dims, by) in tests/collection/test_composite.py
TIME_OPS = ("composite", "quality_mosaic")


def test_every_public_op_is_in_the_table():
    covered = set(RASTER_OPS) | set(ZONAL_OPS) | set(CELL_OPS) | set(OTHER) | set(TIME_OPS)
    missing = sorted(set(ops.__all__) - covered)
    assert not missing, f"add {missing} to tests/bad_input/test_ops.py"
    assert set(DTYPE_TABLE) | set(OTHER) | set(TIME_OPS) >= set(ops.__all__) - {"cell_stencil"}


# --------------------------------------------------------------------------- good edges
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("edge", "shape"), EDGES)
@pytest.mark.parametrize("name", sorted(RASTER_OPS))
def test_raster_op_edges_match_numpy(name, edge, shape, backend):
    dtype, call, reference, kind = RASTER_OPS[name]
    da = edge_raster(edge, shape, dtype)
    if da.size == 0:  # the references reshape/pad, which 0-length axes do not allow:
        numpy_ref = reference  # what they give for the smallest non-empty input, emptied

        def reference(x):
            one = numpy_ref(np.ones((1, 1), x.dtype))
            if kind == "same":
                return np.empty(x.shape, one.dtype)
            return np.zeros((*x.shape[:-2], *one.shape), one.dtype)  # counts of nothing

    max_computes = 1 if name == "local_apply" else 0  # the UDF's sample check
    assert_backends_match(call, reference, da, backend=backend, chunks=TINY,
                          same_shape=kind == "same", max_computes=max_computes,
                          exact=kind == "reduce", rtol=1e-5)


STATS = ["count", "sum", "mean", "min", "max", "std"]


def _polygon_all(da):
    g = _grid(da.shape)
    return gpd.GeoDataFrame({"name": ["all"]}, geometry=[shapely.box(*g.bounds)]
                            if g.shape[0] and g.shape[1] else [shapely.box(500000, 3999970,
                                                                           500030, 4000000)],
                            crs="EPSG:32633")


def _zonal_ref(values, weights):
    """reference_zonal.stats, and for a raster without pixels what it means: count 0,
    NaN elsewhere (the reference's reshape cannot take 0-length axes)."""
    if values.size:
        return rz.stats(values, weights, STATS)
    shape = (weights.shape[0], *values.shape[:-2])
    return {s: np.zeros(shape) if s == "count" else np.full(shape, np.nan) for s in STATS}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("edge", "shape"), EDGES)
@pytest.mark.parametrize("zone_kind", ["raster", "polygons"])
def test_zonal_stats_edges_match_numpy(edge, shape, backend, zone_kind):
    da = edge_raster(edge, shape)
    x = to_backend(da, backend, TINY)
    if zone_kind == "raster":
        zones = zones_for(da)
        out = ops.zonal_stats(x, to_backend(zones, backend, TINY), zone_ids=[0, 1],
                              stats=STATS)
        weights = rz.zone_weights(zones.values, [0, 1])
    else:
        zones = _polygon_all(da)
        out = ops.zonal_stats(x, zones, stats=STATS)
        weights = rz.polygon_weights(list(zones.geometry), _grid(shape).transform,
                                     shape[-2:])
    want = _zonal_ref(da.values, weights)
    for s in STATS:
        np.testing.assert_allclose(np.asarray(out[s].to_numpy(), float), want[s], rtol=1e-5,
                                   equal_nan=True, err_msg=s)
    assert (np.asarray(out["count"]) == 0).all() or edge == "one-pixel"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("edge", "shape"), EDGES)
def test_zonal_crosstab_edges_match_numpy(edge, shape, backend):
    da = edge_raster(edge, shape, "u1")
    zones = zones_for(da)
    out = ops.zonal_crosstab(to_backend(da, backend, TINY), to_backend(zones, backend, TINY),
                             zone_ids=[0, 1], classes=[0, 1, 2])
    weights = rz.zone_weights(zones.values, [0, 1])
    want = np.zeros((2, *da.shape[:-2], 3)) if da.size == 0 else \
        rz.crosstab(da.values, weights, [0, 1, 2], nodata=255)
    np.testing.assert_array_equal(np.asarray(out), want)


# cells: a lon/lat raster (pixel centres go to H3 cells)
def _lonlat(shape, kind="values"):
    g = Grid(4326, (0.01, 0, 10.0, 0, -0.01, 45.0), shape[-2:])
    data = np.random.default_rng(1).random(shape).astype("f4")
    if kind == "nan":
        data[...] = np.nan
    dims = ("y", "x") if len(shape) == 2 else ("time", "y", "x")
    return make_raster(data, g, dims=dims)


def _cells_reference(da, level):
    from tests.cells import reference as rc

    if da.size == 0:
        return {}  # no pixel, no cell
    g = Grid(4326, (0.01, 0, 10.0, 0, -0.01, 45.0), da.shape[-2:])
    lon, lat = rc.pixel_centres(g)
    ids = rc.h3_cells(lon, lat, level)
    vals = da.values.reshape(-1, *da.shape[-2:])
    return rc.aggregate(vals, ids, "mean")


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize(("edge", "shape"), EDGES)
def test_to_cells_edges_match_numpy(edge, shape, backend):
    da = _lonlat(shape, "nan" if edge == "nan-only" else "values")
    cube = ops.to_cells(to_backend(da, backend, TINY), level=5, chunk_level=None)
    want = _cells_reference(da, 5)
    got = to_numpy(cube.transpose(..., "cells").data).reshape(
        int(np.prod(da.shape[:-2])), cube.sizes["cells"])
    assert sorted(want) == cube.cell_ids.values.astype(np.uint64).tolist()
    for j, c in enumerate(cube.cell_ids.values.astype(np.uint64).tolist()):
        np.testing.assert_allclose(got[:, j], [np.nan if v is None else v for v in want[c]],
                                   rtol=1e-6, equal_nan=True)
    if edge != "one-pixel":
        assert cube.sizes["cells"] == 0


def _cube(n, kind="values", level=7):
    """A cell cube of the first ``n`` cells of a small lon/lat raster (values or NaN)."""
    cube = ops.to_cells(_lonlat((4, 4)), level=level).isel(cells=slice(0, n))
    if kind == "nan":
        cube = cube.copy(data=np.full(cube.shape, np.nan))
    return cube


CELL_EDGES = [("zero-size", 0, "values"), ("one-cell", 1, "values"), ("nan-only", 2, "nan")]


@pytest.mark.parametrize(("edge", "n", "kind"), CELL_EDGES)
def test_cell_ops_edges(edge, n, kind):
    from h3.api import basic_int as h3i

    cube = _cube(n, kind)
    vals = cube.values
    ids = cube.cell_ids.values.astype(np.uint64)
    # coarsen: the mean of each parent's (non-NaN) children
    coarse = ops.coarsen_cells(cube, 6)
    parents = sorted({h3i.cell_to_parent(int(c), 6) for c in ids})
    assert coarse.cell_ids.values.astype(np.uint64).tolist() == parents
    for p, v in zip(parents, coarse.values, strict=True):
        kids = [x for c, x in zip(ids, vals, strict=True) if h3i.cell_to_parent(int(c), 6) == p]
        want = np.nan if np.isnan(kids).all() else np.nanmean(kids)
        np.testing.assert_allclose(v, want, equal_nan=True)
    # focal: with no other cell in reach, a cell's ring mean is its own value
    focal = ops.cell_focal(cube, 1)
    assert focal.shape == cube.shape and focal.dtype == np.float64
    if n <= 1:
        np.testing.assert_array_equal(focal.values, vals)
    if kind == "nan":
        assert np.isnan(focal.values).all()
    # to a raster: pixels of the cube's cells get the value, the others NaN
    like = _lonlat((4, 4))
    back = ops.cells_to_raster(cube, like)
    from tests.cells import reference as rc

    lon, lat = rc.pixel_centres(Grid(4326, (0.01, 0, 10.0, 0, -0.01, 45.0), (4, 4)))
    pix = rc.h3_cells(lon, lat, 7)
    lut = dict(zip(ids.tolist(), vals.tolist(), strict=True))
    want = np.array([[lut.get(int(c), np.nan) for c in row] for row in pix])
    np.testing.assert_array_equal(back.values, want)
    empty_like = _lonlat((0, 4))
    assert ops.cells_to_raster(cube, empty_like).shape == (0, 4)


@pytest.mark.parametrize(("edge", "shape"), [("zero-size", (0, 4)), ("zero-size", (3, 0)),
                                              ("all-false", (3, 4)), ("one-pixel", (1, 1))])
def test_cell_stencil_edges(edge, shape):
    mask = _lonlat(shape).copy(data=np.full(shape, edge == "one-pixel"))
    st = ops.cell_stencil(mask, "h3", level=7)
    assert st.dims == ("cells",) and st.dtype == bool
    if edge == "one-pixel":  # every cell listed has its centre in the pixel
        from h3.api import basic_int as h3i

        for c in st.cell_ids.values.astype(np.uint64).tolist():
            lat, lon = h3i.cell_to_latlng(c)
            assert 10.0 <= lon <= 10.01 and 44.99 <= lat <= 45.0
    else:
        assert st.sizes["cells"] == 0


def test_check_udf_on_a_zero_size_raster():
    assert ops.check_udf(lambda a: a * 2, raster((0, 5))) == np.float32
    with pytest.raises(UDFError, match="<lambda> raised ValueError"):
        ops.check_udf(lambda a: a.max() + a, raster((0, 5)))


# --------------------------------------------------------------------------- wrong dtypes
def _dtyped(kind, shape=(3, 4)):
    base = raster(shape)
    data = {"complex": np.ones(shape, "c8"), "bool": np.ones(shape, bool),
            "datetime": np.full(shape, np.datetime64("2020-01-01", "ns")),
            "object": np.full(shape, 1.0, dtype=object), "string": np.full(shape, "a"),
            "float": np.ones(shape, "f4"), "int": np.ones(shape, "i4")}[kind]
    return base.copy(data=data)


# name -> (call(bad), argument name in the message, accepted kinds)
DTYPE_TABLE = {
    "local_reclassify": (lambda d: ops.local_reclassify(d, {1: 2}), "da", "bool int float"),
    "local_count": (lambda d: ops.local_count(d, 1), "da", "bool int float"),
    "local_histogram": (lambda d: ops.local_histogram(d, classes=[1]), "da", "bool int"),
    **{f"local_{n}": (lambda d, n=n: getattr(ops, f"local_{n}")(raster((3, 4)), d), "b",
                      "bool int float") for n in ("add", "subtract", "multiply", "divide")},
    "normalized_difference": (lambda d: ops.normalized_difference(d, raster((3, 4))), "a",
                              "int float"),
    "band_math": (lambda d: ops.band_math("a + 1", a=d), "a", "bool int float"),
    "local_apply": (lambda d: ops.local_apply(lambda a: a.real.astype("f4"), d, dtype="f4"),
                    "rasters[0]", "bool int float complex object datetime"),
    **{f"focal_{s}": (lambda d, s=s: getattr(ops, f"focal_{s}")(d, 3), "da", "bool int float")
       for s in ("mean", "sum", "count", "min", "max", "var", "std", "median", "majority",
                 "apply")},
    **{n: (lambda d, n=n: getattr(ops, n)(d), "da", "int float")
       for n in ("slope", "aspect", "hillshade")},
    "zonal_stats": (lambda d: ops.zonal_stats(d, zones_for(d)), "values", "bool int float"),
    "zonal_crosstab": (lambda d: ops.zonal_crosstab(d, zones_for(d)), "values", "bool int"),
    "to_cells": (lambda d: ops.to_cells(make_raster(d.values[:2, :2], Grid(
        4326, (0.01, 0, 10, 0, -0.01, 45), (2, 2))), level=3), "da", "bool int float"),
    "coarsen_cells": (lambda d: ops.coarsen_cells(_cube(2).copy(
        data=d.values.reshape(-1)[:2]), 6), "cube", "bool int float"),
    "cell_focal": (lambda d: ops.cell_focal(_cube(2).copy(data=d.values.reshape(-1)[:2]), 1),
                   "cube", "bool int float"),
    "cells_to_raster": (lambda d: ops.cells_to_raster(_cube(2).copy(
        data=d.values.reshape(-1)[:2]), _lonlat((2, 2))), "cube", "bool int float"),
}
KINDS = ["complex", "bool", "datetime", "object", "string"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(DTYPE_TABLE))
def test_wrong_dtype_names_the_argument(name, kind):
    call, arg, accepted = DTYPE_TABLE[name]
    if kind in accepted.split():
        call(_dtyped(kind))  # accepted: must run
        return
    err = UDFError if name == "local_apply" else TypeError
    with pytest.raises(err) as info:
        call(_dtyped(kind))
    msg = str(info.value)
    assert name in msg and (arg in msg or name == "local_apply"), msg


def test_zone_raster_and_zone_ids_dtypes():
    v = raster((3, 4))
    with pytest.raises(TypeError, match=r"zonal_stats: zones must have a integer \(zone id\)"):
        ops.zonal_stats(v, zones_for(v).astype("f4"))
    with pytest.raises(TypeError, match="zone_ids must be integers"):
        ops.zonal_stats(v, zones_for(v), zone_ids=[0.5])
    with pytest.raises(TypeError, match="local_count: value must be a real number"):
        ops.local_count(v, 1j)


# --------------------------------------------------------------------------- wrong dims
WRONG_DIMS = {
    "local_reclassify": (lambda d: ops.local_reclassify(d, {1: 2}), "da"),
    "local_count": (lambda d: ops.local_count(d, 1), "da"),
    "local_histogram": (lambda d: ops.local_histogram(d.astype("u1")), "da"),
    "local_add": (lambda d: ops.local_add(raster((3, 4)), d), "b"),
    "normalized_difference": (lambda d: ops.normalized_difference(d, d), "a"),
    "band_math": (lambda d: ops.band_math("a", a=d), "a"),
    "local_apply": (lambda d: ops.local_apply(lambda a: a, d), "rasters[0]"),
    "focal_mean": (lambda d: ops.focal_mean(d, 3), "da"),
    "focal_majority": (lambda d: ops.focal_majority(d, 3), "da"),
    "slope": (lambda d: ops.slope(d), "da"),
    "zonal_stats": (lambda d: ops.zonal_stats(d, _polygon_all(raster((3, 4)))), "values"),
    "zonal_stats zones": (lambda d: ops.zonal_stats(raster((3, 4)), d.astype("i4")), "zones"),
    "zonal_crosstab": (lambda d: ops.zonal_crosstab(d.astype("u1"), zones_for(raster((3, 4)))),
                       "values"),
    "to_cells": (lambda d: ops.to_cells(d, level=3), "da"),
    "cells_to_raster": (lambda d: ops.cells_to_raster(_cube(1), d), "like"),
    "cell_stencil": (lambda d: ops.cell_stencil(d > 0, level=3), "mask"),
}


@pytest.mark.parametrize("how", ["renamed", "1-D", "ndarray"])
@pytest.mark.parametrize("name", sorted(WRONG_DIMS))
def test_wrong_dims_name_the_argument(name, how):
    call, arg = WRONG_DIMS[name]
    d = raster((3, 4))
    bad = {"renamed": d.rename(y="lat", x="lon"), "1-D": d.isel(y=0),
           "ndarray": d.values}[how]
    err = TypeError if how == "ndarray" else DimensionError
    if how == "ndarray" and name == "cell_stencil":
        pytest.skip("cell_stencil takes arrays of polygons too; an ndarray is a polygon list")
    with pytest.raises(err) as info:
        call(bad)
    msg = str(info.value)
    assert arg in msg, msg
    if err is DimensionError:
        assert "dims" in msg


def test_zones_must_be_two_dimensional():
    v = raster((2, 3, 4))
    with pytest.raises(DimensionError, match=r"zones must be a 2-D \(y, x\) raster"):
        ops.zonal_stats(v, raster((2, 3, 4), "i4"))


def test_cell_cubes_must_be_cell_cubes():
    for call in (lambda c: ops.coarsen_cells(c, 1), lambda c: ops.cell_focal(c, 1),
                 lambda c: ops.cells_to_raster(c, _lonlat((2, 2)))):
        with pytest.raises(DimensionError, match="cube must have a 'cells' dim"):
            call(raster((3, 4)))
        with pytest.raises(TypeError, match="cube must be an xarray.DataArray"):
            call(np.zeros(3))


# --------------------------------------------------------------------------- grids
def _other_grids():
    base = raster((3, 4))
    yield "crs", base.pipe(lambda d: make_raster(d.values, _grid((3, 4), "EPSG:32634"))), "CRS"
    yield "shift", make_raster(base.values, Grid("EPSG:32633", (RES, 0, 500030.0, 0, -RES,
                                                                4000000.0), (3, 4))), \
        "transform"
    yield "res", make_raster(base.values, Grid("EPSG:32633", (10.0, 0, 500000.0, 0, -10.0,
                                                              4000000.0), (3, 4))), "transform"
    yield "shape", raster((3, 5)), "shape"


TWO_OPERANDS = {
    "local_add": (lambda a, b: ops.local_add(a, b), ("a", "b")),
    "local_divide": (lambda a, b: ops.local_divide(a, b), ("a", "b")),
    "normalized_difference": (lambda a, b: ops.normalized_difference(a, b), ("a", "b")),
    "band_math": (lambda a, b: ops.band_math("nir - red", nir=a, red=b), ("nir", "red")),
    "local_apply": (lambda a, b: ops.local_apply(lambda p, q: p + q, a, b),
                    ("rasters[0]", "rasters[1]")),
    "zonal_stats": (lambda a, b: ops.zonal_stats(a, b.astype("i4")), ("values", "zones")),
    "zonal_crosstab": (lambda a, b: ops.zonal_crosstab(a.astype("u1"), b.astype("i4")),
                       ("values", "zones")),
}


@pytest.mark.parametrize(("what", "other", "word"), list(_other_grids()),
                         ids=[w for w, _, _ in _other_grids()])
@pytest.mark.parametrize("name", sorted(TWO_OPERANDS))
def test_mismatched_grids_name_both_arguments(name, what, other, word):
    call, (a, b) = TWO_OPERANDS[name]
    with pytest.raises(GridMismatchError) as info:
        call(raster((3, 4)), other)
    msg = str(info.value)
    assert f"{b} is not on the grid of {a}" in msg and word in msg, msg


@pytest.mark.parametrize("name", ["local_add", "normalized_difference", "band_math",
                                  "local_apply"])
def test_mismatched_time_labels_are_refused(name):
    """Same number of steps, other dates: pairing them by position would be wrong."""
    call, (a, b) = TWO_OPERANDS[name]
    x = raster((2, 3, 4))
    y = x.assign_coords(time=x.time + np.timedelta64(365, "D"))
    with pytest.raises(GridMismatchError,
                       match=re.escape(f"{b} and {a} have different 'time' labels")):
        call(x, y)
    call(x, x.copy())  # same labels: fine


def test_one_pixel_rasters_keep_their_grid():
    """A (1, 1) raster's pixel size comes from spatial_ref, not a unit guess, so a
    30 m one-pixel raster matches its 30 m neighbour and polygons land right."""
    one = raster((1, 1))  # a 30 m pixel centred at (500015, 3999985)
    finer = make_raster(one.values, Grid("EPSG:32633", (10.0, 0, 500010.0, 0, -10.0,
                                                       3999990.0), (1, 1)))  # same centre
    with pytest.raises(GridMismatchError, match="transform"):
        ops.local_add(one, finer)
    ops.local_add(one, one.copy())
    # a polygon over the eastern quarter of the 30 m pixel covers a quarter of it
    quarter = gpd.GeoDataFrame(geometry=[shapely.box(500022.5, 3999970, 500030, 4000000)],
                               crs="EPSG:32633")
    out = ops.zonal_stats(one, quarter, stats=["count"], weights="coverage")
    np.testing.assert_allclose(out["count"], [0.25])


# --------------------------------------------------------------------------- geometries
FAR = shapely.box(14.99, 36.09, 15.0, 36.1)  # lon/lat near the raster, not on it
with warnings.catch_warnings():  # shapely warns while building a NaN ring: that is the point
    warnings.simplefilter("ignore", RuntimeWarning)
    NAN_POLY = shapely.Polygon([(15.0, 36.1), (15.01, 36.1), (np.nan, 36.11)])
BAD_GEOMETRIES = [
    ("nan vertex", NAN_POLY, ValueError, "NaN or infinite vertex coordinates"),
    ("inf vertex", shapely.Polygon([(15.0, 36.1), (np.inf, 36.1), (15.0, 36.2)]), ValueError,
     "NaN or infinite vertex coordinates"),
    ("empty", shapely.Polygon(), ValueError, "empty geometries"),
    ("missing", None, ValueError, r"missing \(None\) geometries"),
    ("point", shapely.Point(15.0, 36.1), TypeError, r"Polygon or MultiPolygon.*\['Point'\]"),
    ("line", shapely.LineString([(15, 36), (15.1, 36.1)]), TypeError, "LineString"),
    ("collection", shapely.GeometryCollection([shapely.box(15, 36, 15.1, 36.1)]), TypeError,
     "GeometryCollection"),
    ("outside area", shapely.box(140, -30, 141, -29), IndexRangeError,
     "wholly outside the area of use"),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("op", ZONAL_OPS)
@pytest.mark.parametrize(("what", "geom", "err", "msg"), BAD_GEOMETRIES,
                         ids=[b[0] for b in BAD_GEOMETRIES])
def test_invalid_geometries_name_zones_and_the_row(op, what, geom, err, msg):
    v = raster((3, 4), "u1")
    zones = gpd.GeoDataFrame({"n": [1, 2]}, geometry=[FAR, geom], index=["a", "b"],
                             crs="EPSG:4326")
    with pytest.raises(err, match=rf"{op}: zones .*{msg}|{op}: zones has .*{msg}") as info:
        getattr(ops, op)(v, zones)
    assert "row 1 (index 'b')" in str(info.value)


def test_polygons_off_the_raster_count_zero():
    v = raster((3, 4))
    zones = gpd.GeoDataFrame(geometry=[FAR], crs="EPSG:4326")
    assert ops.zonal_stats(v, zones, stats=["count"])["count"].tolist() == [0]


def test_nonfinite_after_reprojection_is_refused():
    """A polygon reaching the far side of an orthographic view has no coordinates
    there (infinite): refused, named, even though that CRS records no area of use."""
    crs = "+proj=ortho +lat_0=0 +lon_0=0"
    v = make_raster(np.ones((4, 4), "f4"), Grid.from_bbox((0, 0, 4e5, 4e5), 1e5, crs=crs))
    zones = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1), shapely.box(80, 0, 100, 1)],
                             crs="EPSG:4326")
    with pytest.raises(IndexRangeError, match=r"NaN/infinite coordinates, at row 1 "
                                              r"\(index 1\)"):
        ops.zonal_stats(v, zones)
    assert ops.zonal_stats(v, zones.iloc[:1], stats=["count"])["count"].tolist() == [1]


# --------------------------------------------------------------------------- UDFs
def _dask(shape=(6, 6), chunks=(4, 4)):
    return to_backend(raster(shape), "dask", chunks)


def test_udf_shape_differing_on_a_real_chunk_is_named():
    def crop_big(a):  # fine on the 16x16 sample, wrong on chunks wider than 16
        return a[..., :16] if a.shape[-1] > 16 else a

    da = to_backend(raster((4, 40)), "dask", (4, (16, 24)))  # the second chunk is wider
    out = ops.local_apply(crop_big, da)
    with pytest.raises(UDFError, match=r"crop_big returned shape \(4, 16\) on the chunk at "
                                       r"y 0:4, x 16:40; expected \(4, 24\)"):
        out.compute()


def test_udf_dtype_differing_on_a_real_chunk_is_named():
    def promote(a):  # float32 on the all-small sample, float64 where values are big
        return a.astype("f8") if np.nanmax(a) > 50 else a

    data = raster((4, 8)).copy(data=np.where(np.arange(8) < 4, 1.0, 100.0)[None, :]
                               .repeat(4, 0).astype("f4"))
    out = ops.local_apply(promote, to_backend(data, "dask", (4, 4)), check=False, dtype="f4")
    with pytest.raises(UDFError, match=r"promote returned dtype float64 on the chunk at "
                                       r"y 0:4, x 4:8, but the output dtype is float32"):
        out.compute()
    with pytest.raises(UDFError, match="dtype=float64 was declared"):
        ops.local_apply(lambda a: a.astype("f4"), data, dtype="f8")


def test_udf_failing_on_a_real_chunk_is_named():
    def fussy(a):
        if a.shape[-1] > 16:
            raise RuntimeError("too wide")
        return a

    with pytest.raises(UDFError, match=r"fussy raised RuntimeError: too wide on the chunk at "
                                       r"y 0:2, x 16:40"):
        ops.local_apply(fussy, to_backend(raster((2, 40)), "dask", (2, (16, 24)))).compute()
    with pytest.raises(UDFError, match="returned int, not an array"):
        ops.local_apply(lambda a: 1, raster((2, 2)), check=False, dtype="f4").compute()


def test_udf_chunk_check_with_broadcasting_and_unaligned_chunks():
    """(time, y, x) with (y, x), chunked differently: the per-chunk check still knows
    where each chunk lies, and the values are right."""
    a, b = raster((3, 4, 5)), raster((4, 5), seed=3)
    out = ops.local_apply(lambda p, q: p + q, to_backend(a, "dask", (2, 2)),
                          to_backend(b, "dask", (3, 3)))
    np.testing.assert_allclose(out.values, a.values + b.values)

    def odd(p, q):
        return (p + q).astype("f8") if p.shape[0] == 1 and p.shape[1] == 1 else p + q

    bad = ops.local_apply(odd, to_backend(a, "dask", ((3, 1), 5)), b, check=False,
                          dtype="f4")
    with pytest.raises(UDFError, match=r"on the chunk at time \d:\d, y 3:4, x 0:5"):
        bad.compute()


def test_udf_numpy_path_checks_too():
    with pytest.raises(UDFError, match=r"on the chunk at y 0:3, x 0:4"):
        ops.local_apply(lambda a: a.astype("f8"), raster((3, 4)), check=False, dtype="f4")


# --------------------------------------------------------------------------- band_math
HOSTILE = ["a + 10**10**7", "a * 9**9**9**9", "a + 2**100000", "a + 1/0", "a + (0*1e308)/0",
           "a << 10**7", "a + 1" + "0" * 400, "a" + "+a" * 200, "-" * 3000 + "a",
           "(" * 250 + "a" + ")" * 250, "a + " + " + ".join(["1"] * 2000),
           "0 < a < 1", "a.real", "a if a else a", "not a", "a + 'x'", "a + 1j",
           "clip(a, lo=0)", "sqrt", "__import__('os')", "[a][0]", "lambda: 1"]


@pytest.mark.parametrize("expr", HOSTILE, ids=[e[:24] for e in HOSTILE])
def test_band_math_refuses_hostile_expressions_fast(expr):
    a = raster((3, 4))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"band_math: .*expr|band_math: only \["):
        ops.band_math(expr, a=a)
    assert time.perf_counter() - t0 < 0.25, "refusing must take milliseconds"


@pytest.mark.parametrize(("expr", "want"), [
    ("a ** 2 + 2 ** 3", lambda a: a ** 2 + 8), ("a % 3 + a // 2", lambda a: a % 3 + a // 2),
    ("where(~isnan(a) & (a > 5), a, -a)", lambda a: np.where(~np.isnan(a) & (a > 5), a, -a)),
    ("a * 1e300 * 1e10", lambda a: a * np.float32(np.inf)),  # overflow of data: a value
    ("2 ** -2 * a", lambda a: 0.25 * a), ("-(-a)", lambda a: a),
    ("a" + " + a" * 60, lambda a: a * 61)])
def test_band_math_keeps_normal_expressions(expr, want):
    a = raster((3, 4))
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(ops.band_math(expr, a=a).values,
                                   want(a.values.astype("f4")).astype("f4"), rtol=1e-5)


# --------------------------------------------------------------------------- accessor
@pytest.mark.parametrize("shape", [(0, 5), (1, 1)])
def test_accessor_spot_checks(shape):
    da = raster(shape)
    xr.testing.assert_identical(da.st.focal_mean(3), ops.focal_mean(da, 3))
    xr.testing.assert_identical(da.st.local_count(np.nan), ops.local_count(da, np.nan))
    xr.testing.assert_identical(da.st.slope(), ops.slope(da))
    with pytest.raises(TypeError, match="focal_mean: da must have"):
        da.astype("c8").st.focal_mean(3)
    with pytest.raises(GridMismatchError, match="b is not on the grid of a"):
        da.st.local_add(raster((2, 2)))


# --------------------------------------------------------------------------- point tables
def test_cell_means_edges_and_dtypes():
    """ops.interpolate (point tables, no .st methods): empty and NaN-only tables give
    all-NaN cubes; non-numeric columns are refused naming the column (complex values
    were silently cast to their real part)."""
    import pandas as pd

    from stengine.ops import interpolate as interp

    t = np.array(["2020-01-01"], "M8[ns]")
    one = pd.DataFrame({"lon": [10.0], "lat": [20.0], "time": t, "flux": [np.nan]})
    for records in (one.iloc[:0], one):
        cube = interp.cell_means(records, "flux", level=1)
        assert cube.sizes["cells"] == 32 and np.isnan(cube.values).all()
        assert (cube["count"].values == 0).all()
    for bad in ([1 + 2j], ["x"]):
        with pytest.raises(TypeError, match="records column 'flux' must be numeric"):
            interp.cell_means(one.assign(flux=bad), "flux", level=1)


# --------------------------------------------------------------------------- other arguments
@pytest.mark.parametrize(("call", "err", "msg"), [
    (lambda d: ops.local_histogram(d.astype("u1"), classes=[1.5]), ValueError,
     r"local_histogram: classes must be integers"),  # was cast to 1 silently
    (lambda d: ops.local_histogram(d.astype("u1"), classes=[300]), ValueError,
     r"classes must fit da's dtype uint8"),  # was wrapped to 44 silently
    (lambda d: ops.local_reclassify(d, {np.nan: 1.0}), ValueError,
     "mapping has NaN keys"),  # matched nothing, silently
    (lambda d: ops.focal_mean(d.astype("u1").assign_attrs(nodata=300), 3), ValueError,
     r"focal_mean: da.attrs\['nodata'\]=300 does not fit"),
    (lambda d: ops.zonal_stats(d, zones_for(d), stats=[]), ValueError,
     "zonal_stats: stats is empty"),
    (lambda d: ops.focal_mean(d, 0), ValueError, "window: size along y must be >= 1"),
    (lambda d: ops.focal_mean(d, None), TypeError, "window must be"),
    (lambda d: ops.focal_apply(d, np.full((3, 3), np.nan)), ValueError, "window weights"),
    (lambda d: ops.slope(d, z_factor=np.nan), ValueError, "slope: z_factor"),
    (lambda d: ops.to_cells(d, level=99), IndexRangeError, "to_cells: level"),
    (lambda d: ops.cell_focal(_cube(2), -1), ValueError, "cell_focal: k"),
    (lambda d: ops.focal_mean(d, 3, dims=("y",)), DimensionError, "dims must be two"),
], ids=["hist-float-class", "hist-class-range", "reclass-nan", "nodata-fit", "no-stats",
        "window-0", "window-none", "window-nan", "z-factor", "level", "k", "dims"])
def test_other_arguments_are_named(call, err, msg):
    with pytest.raises(err, match=msg):
        call(raster((3, 4)))

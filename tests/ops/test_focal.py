import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.cube import make_raster
from stengine.errors import DimensionError
from stengine.grid import Grid
from stengine.ops import focal as F
from stengine.ops.window import Window
from stengine.testing import (
    assert_backends_match,
    backend_skip_reason,
    chunkings,
    make_cube,
    to_backend,
)
from tests import reference_focal as ref
from tests.conftest import CHUNKS

SHAPE = (7, 9)
OPS = ["mean", "sum", "count", "min", "max", "var", "std", "median", "majority", "apply"]
EXACT = {"count", "min", "max", "median", "majority"}  # bit for bit; sums to rounding
LAPLACE = np.array([[0.5, 1, 0.5], [1, -6, 1], [0.5, 1, 0.5]])


def _sim(b):
    reason = backend_skip_reason(b)
    return pytest.param(b, marks=pytest.mark.skip(reason=reason)) if reason else b


CPU = ["numpy", "dask"]
SIM = [_sim("cudasim"), _sim("dask-cudasim")]


def raster(dtype="f4", shape=SHAPE, nodata=None, classes=None, seed=0):
    """make_cube's raster with extra missing cells at the corners of the test chunkings."""
    da = make_cube(shape, dtype, classes=classes, nodata=nodata, seed=seed)
    bad = np.nan if np.dtype(dtype).kind == "f" else nodata
    if bad is not None:
        v = da.values.copy()
        # chunk corners of (2, 3) and ((1, 4, 2), (3, 1, 3, 2)) chunkings
        for r, c in [(1, 2), (2, 3), (3, 6), (4, 5), (0, 3), (5, 7)]:
            v[..., r, c] = bad
        da = da.copy(data=v)
    return da


def op_fn(op):
    return getattr(F, f"focal_{op}")


def check(op, da, window, *, backend, chunks, fp=None, nodata=None, boundary="nan",
          skipna=True, exact=None, rtol=2e-6, **kw):
    """Run focal ``op`` on ``backend`` against the reference with footprint ``fp``."""
    if fp is None:
        fp = np.asarray(window, float) if isinstance(window, np.ndarray) else \
            Window.parse(window).weights
    call = dict(boundary=boundary)
    rkw = dict(boundary=boundary, nodata=nodata)
    if op != "count":
        call["skipna"] = skipna
        rkw["skipna"] = skipna
    if exact is None:
        exact = op in EXACT or (op == "sum" and da.dtype.kind in "iu")
    rules = boundary
    if isinstance(boundary, dict):
        wdims = (("time",) if np.ndim(fp) == 3 and np.shape(fp)[0] > 1 else ()) + ("y", "x")
        rules = [boundary.get(d, "nan") for d in wdims]
        rkw["boundary"] = rules
    return assert_backends_match(
        lambda x: op_fn(op)(x, window, **call, **kw),
        lambda x: ref.focal(x, op, fp, **rkw, **kw),
        da, backend=backend, chunks=chunks, exact=exact, rtol=rtol, atol=1e-5 * (rtol > 1e-8))


# --------------------------------------------------------------------------- every backend
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunks", CHUNKS)
def test_every_op_every_backend(backend, chunks, op):
    window = LAPLACE if op == "apply" else "3x3"
    check(op, raster(), window, backend=backend, chunks=chunks)


@pytest.mark.parametrize("window", ["5x3", (5, 9), "7x7", Window.circle(2),
                                    Window.annulus(1, 2), LAPLACE])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("backend", CPU)
def test_windows(backend, chunks, op, window):
    """Rectangles (direct and van Herk paths), circles, rings, weights; windows wider
    than the chunks (chunks of 1 cell with 7x7 windows) and as wide as the raster."""
    check(op, raster(), window, backend=backend, chunks=chunks)


@pytest.mark.parametrize("window", [Window.circle(1), "3x5", np.ones((1, 3), bool)])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", SIM)
def test_windows_simulated_gpu(backend, op, window):
    check(op, raster(), window, backend=backend, chunks=((1, 4, 2), (3, 1, 3, 2)))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype, nodata", [("u1", 0), ("i2", None), ("i4", -1)])
def test_integer_rasters(backend, dtype, nodata, op):
    """Integer classes with and without attrs['nodata']; exact for ints where promised."""
    da = raster(dtype, nodata=nodata, classes=9)
    out = check(op, da, LAPLACE if op == "apply" else "3x3", backend=backend, chunks=(2, 3),
                nodata=nodata)
    if op in ("min", "max", "majority"):
        assert out.dtype == da.dtype and out.attrs.get("nodata") == nodata
    else:
        assert "nodata" not in out.attrs


@pytest.mark.parametrize("op", ["mean", "count", "max", "min", "median", "majority", "apply"])
@pytest.mark.parametrize("boundary", ["nearest", "reflect", "wrap", {"x": "wrap", "y": "nearest"},
                                      {"y": "reflect"}])
def test_boundaries(backend, boundary, op):
    window = np.ones((3, 5)) if op == "apply" else "3x5"
    check(op, raster(), window, backend=backend, chunks=((1, 4, 2), (3, 1, 3, 2)),
          boundary=boundary)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("boundary", ["nan", "reflect"])
def test_skipna_false(backend, boundary, op):
    if op == "count":
        pytest.skip("count has no skipna")
    window = LAPLACE if op == "apply" else Window.circle(1)
    check(op, raster(), window, backend=backend, chunks=(2, 3), boundary=boundary, skipna=False)


@pytest.mark.parametrize("op", ["mean", "count", "max", "median", "majority", "var", "apply"])
@pytest.mark.parametrize("window", [(3, 3, 3), Window.circle(1, time=3)])
def test_space_time_windows(backend, window, op):
    da = raster(shape=(4, *SHAPE))
    if op == "apply":
        window = np.arange(27.0).reshape(3, 3, 3) - 13
    check(op, da, window, backend=backend, chunks={"time": (1, 3), "y": (2, 5), "x": 3})


@pytest.mark.parametrize("backend", CPU)
def test_space_time_window_boundary_per_dim(backend):
    da = raster(shape=(4, *SHAPE))
    check("mean", da, (3, 1, 3), backend=backend, chunks={"time": 1, "y": 3, "x": (4, 5)},
          boundary={"time": "nearest", "x": "wrap"})


def test_spatial_window_runs_per_time_step():
    da = raster(shape=(3, *SHAPE))
    out = F.focal_mean(da, 3)
    for t in range(3):
        np.testing.assert_array_equal(out[t].values, F.focal_mean(da[t], 3).values)


# --------------------------------------------------------------------------- chunk invariance
@settings(max_examples=40, deadline=None)
@given(chunks=chunkings(SHAPE), op=st.sampled_from(OPS),
       window=st.sampled_from(["3x3", "5x5", (3, 9), "7x7", Window.circle(1.5),
                               Window.annulus(1, 2)]),
       boundary=st.sampled_from(["nan", "nearest", "reflect", "wrap"]),
       skipna=st.booleans())
def test_random_chunkings_equal_one_chunk(chunks, op, window, boundary, skipna):
    da = raster()
    if op == "apply":  # distinct weights on the same footprint
        fp = Window.parse(window).weights[0]
        window = fp * np.arange(1.0, fp.size + 1).reshape(fp.shape)
    kw = {} if op == "count" else {"skipna": skipna}
    one = op_fn(op)(da, window, boundary=boundary, **kw)
    lazy = op_fn(op)(to_backend(da, "dask", chunks), window, boundary=boundary, **kw)
    assert lazy.chunks == to_backend(da, "dask", chunks).chunks
    if op in EXACT:
        np.testing.assert_array_equal(lazy.values, one.values)
    else:
        np.testing.assert_allclose(lazy.values, one.values, rtol=2e-6, atol=1e-5,
                                   equal_nan=True)


@settings(max_examples=15, deadline=None)
@given(chunks=chunkings(SHAPE), op=st.sampled_from(["min", "max", "count", "majority",
                                                     "median", "sum", "mean"]))
def test_random_chunkings_integer_exact(chunks, op):
    da = raster("u1", nodata=0, classes=5)
    one = op_fn(op)(da, "3x5")
    lazy = op_fn(op)(to_backend(da, "dask", chunks), "3x5")
    np.testing.assert_array_equal(lazy.values, one.values)


# --------------------------------------------------------------------------- larger rasters
@pytest.mark.parametrize("op", ["mean", "sum", "var", "std", "min", "max", "count"])
@pytest.mark.parametrize("window", ["3x3", "9x13", Window.circle(4)])
@pytest.mark.parametrize("chunks", [-1, (64, 50)])
def test_larger_raster(op, window, chunks):
    """Past the running sums' restart interval (64 rows) and van Herk's block length."""
    da = raster("f8", shape=(150, 170), seed=3)
    da = da + 1000.0  # an offset that would expose variance cancellation
    check(op, da, window, backend="dask", chunks=chunks, rtol=1e-9)


@pytest.mark.parametrize("op", ["mean", "var", "min", "max", "sum"])
@pytest.mark.parametrize("dtype", ["u1", "i4"])
def test_larger_integer_raster(op, dtype):
    da = raster(dtype, shape=(130, 150), nodata=3, classes=200, seed=4)
    check(op, da, "11x9", backend="dask", chunks=(70, 40), nodata=3)


def test_matches_scipy_ndimage():
    ndi = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(120, 200))
    da = to_backend(make_raster(a), "dask", (50, 64))
    np.testing.assert_allclose(F.focal_mean(da, "5x7", boundary="reflect").values,
                               ndi.uniform_filter(a, (5, 7), mode="reflect"), rtol=1e-9,
                               atol=1e-12)
    for fn, peer in ((F.focal_max, ndi.maximum_filter), (F.focal_min, ndi.minimum_filter)):
        for mode, boundary in (("nearest", "nearest"), ("wrap", "wrap"), ("reflect", "reflect")):
            np.testing.assert_array_equal(fn(da, "9x5", boundary=boundary).values,
                                          peer(a, (9, 5), mode=mode))
    np.testing.assert_allclose(F.focal_apply(da, LAPLACE, boundary="reflect").values,
                               ndi.correlate(a, LAPLACE, mode="reflect"), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(F.focal_median(da, 3, boundary="nearest").values,
                                  ndi.median_filter(a, 3, mode="nearest"))


# --------------------------------------------------------------------------- semantics
def test_dtypes_and_attrs():
    f4, f8 = raster("f4"), raster("f8")
    u1 = raster("u1", nodata=0, classes=5)
    i4 = raster("i4", classes=5)
    for op, da, want in [("mean", u1, "f4"), ("mean", f4, "f4"), ("mean", f8, "f8"),
                         ("mean", i4, "f8"), ("sum", u1, "f8"), ("sum", f4, "f4"),
                         ("count", f8, "i4"), ("var", u1, "f4"), ("std", i4, "f8"),
                         ("median", u1, "f4"), ("majority", u1, "u1"), ("max", i4, "i4"),
                         ("apply", u1, "f4")]:
        out = op_fn(op)(da, 3)
        assert out.dtype == np.dtype(want), (op, da.dtype, out.dtype)
        assert out.dims == da.dims and out.name == da.name
        assert out.attrs["units"] == "1"
    assert F.focal_max(u1, 3).attrs["nodata"] == 0
    assert "nodata" not in F.focal_mean(u1, 3).attrs
    b = make_raster(np.eye(5, dtype=bool))
    assert F.focal_sum(b, 3).values[2, 2] == 3.0 and F.focal_max(b, 3).dtype == np.uint8


def test_dim_order_float16_and_byte_order():
    """Spatial dims anywhere; float16 and big-endian rasters run as float32/native."""
    da = raster(shape=(2, *SHAPE))
    want = F.focal_mean(da, "3x5").values
    moved = da.transpose("y", "time", "x")
    out = F.focal_mean(to_backend(moved, "dask", {"y": 3, "time": 1, "x": 4}), "3x5")
    assert out.dims == ("y", "time", "x")
    np.testing.assert_array_equal(out.transpose("time", "y", "x").values, want)
    half = F.focal_max(da.astype("f2"), 3)
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half.values, F.focal_max(da.astype("f2").astype("f4"), 3))
    big = da.copy(data=da.values.astype(">f4"))
    np.testing.assert_array_equal(F.focal_mean(big, "3x5").values, want)


def test_float_nodata_attribute_is_missing():
    a = np.arange(25, dtype="f4").reshape(5, 5)
    a[2, 2] = -9999
    da = make_raster(a, nodata=-9999)
    assert F.focal_max(da, 3).values[1, 1] == 11  # 12 is nodata: ignored, not a value
    assert F.focal_min(da, 3).values[2, 2] == 6
    assert F.focal_count(da, 3).values[2, 2] == 8


def test_all_missing_window_gives_nan_and_nodata():
    a = np.ones((5, 5), "f4")
    a[:3, :3] = np.nan
    out = F.focal_mean(make_raster(a), 3)
    assert np.isnan(out.values[1, 1]) and out.values[2, 2] == 1.0
    c = np.full((5, 5), 4, "u1")
    c[:3, :3] = 255
    m = F.focal_majority(make_raster(c, nodata=255), 3)
    assert m.values[1, 1] == 255 and m.values[2, 2] == 4


def test_majority_ties_go_to_smallest():
    a = np.array([[3, 3, 1], [1, 2, 2], [5, 5, 9]], "u1")
    assert F.focal_majority(make_raster(a), 3).values[1, 1] == 1


def test_wrap_across_antimeridian():
    """A global lon/lat grid: the window at 179.5°E sees -179.5°, not the raster edge."""
    g = Grid("EPSG:4326", (1, 0, -180, 0, -1, 3), (3, 360))
    a = np.zeros((3, 360), "f4")
    a[:, 0] = 360  # the column just east of the antimeridian
    da = to_backend(make_raster(a, g), "dask", (3, 100))
    out = F.focal_mean(da, "1x3", boundary={"x": "wrap"})
    assert out.values[1, -1] == 120 and out.values[1, 0] == 120 and out.values[1, 1] == 120
    assert F.focal_mean(da, "1x3").values[1, -1] == 0  # "nan" edge: no wrap


def test_halo_graph_one_task_per_chunk():
    """One task per output chunk, reading only the chunks its halo touches."""
    da = to_backend(raster(shape=(40, 60)), "dask", (10, 20))
    out = F.focal_mean(da, "5x5")
    layer = out.data.dask.layers[out.data.name]
    assert len(layer) == 4 * 3
    deps = [len(t.dependencies) for t in dict(layer).values()]
    assert max(deps) == 9 and min(deps) == 4  # interior: 3x3 chunks; corners: 2x2
    wide = F.focal_mean(to_backend(raster(shape=(40, 60)), "dask", (2, 3)), "7x7")
    assert max(len(t.dependencies) for t in dict(
        wide.data.dask.layers[wide.data.name]).values()) == 5 * 3  # halo 3: 5 rows x 3 cols


def test_chunks_smaller_than_halo_need_no_rechunk():
    da = to_backend(raster(shape=(20, 20)), "dask", (1, 1))
    out = F.focal_max(da, "9x9")  # any stengine warning would fail (filterwarnings=error)
    assert out.chunks == da.chunks
    np.testing.assert_array_equal(out.values, F.focal_max(raster(shape=(20, 20)), "9x9").values)


def test_accessor_form():
    from stengine import ops

    if not hasattr(ops, "focal_mean"):
        pytest.skip("stengine.ops does not export the focal ops yet")
    da = raster()
    xr.testing.assert_identical(da.st.focal_mean(3), F.focal_mean(da, 3))
    xr.testing.assert_identical(da.st.focal_apply(LAPLACE, boundary="reflect"),
                                F.focal_apply(da, LAPLACE, boundary="reflect"))


# --------------------------------------------------------------------------- wide windows
@pytest.mark.parametrize("boundary", ["nan", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("backend", CPU)
def test_window_wider_than_raster_repeats_the_boundary_rule(backend, boundary):
    """Halos wider than the raster (or than twice it) follow numpy.pad's rules: defined
    for every rule, on any chunking (chunks of 1 and 2 along the padded axes)."""
    da = make_cube((2, 3), "f4", nan_fraction=0.2)
    for op, window in (("mean", (3, 11)), ("max", Window.circle(4)), ("median", (7, 3))):
        for chunks in ((1, 1), (2, 2)):
            check(op, da, window, backend=backend, chunks=chunks, boundary=boundary,
                  fp=Window.parse(window).weights)


# --------------------------------------------------------------------------- errors
def test_errors_name_argument_and_fix():
    da = raster()
    with pytest.raises(ValueError, match="even.*'4x4'"):
        F.focal_mean(da, "4x4")
    with pytest.raises(DimensionError, match=r"needs spatial dims \('y', 'x'\)"):
        F.focal_mean(da.rename(y="lat", x="lon"), 3)
    F.focal_mean(da.rename(y="lat", x="lon"), 3, dims=("lat", "lon"))  # fine with dims=
    with pytest.raises(ValueError, match="boundary for 'y' must be one of"):
        F.focal_mean(da, 3, boundary="constant")
    with pytest.raises(ValueError, match="does not span"):
        F.focal_mean(da, 3, boundary={"time": "wrap"})
    with pytest.raises(TypeError, match="boundary must be"):
        F.focal_mean(da, 3, boundary=0)
    with pytest.raises(DimensionError, match="spans 3 steps along time.*no 'time' dim"):
        F.focal_mean(da, (3, 3, 3))
    with pytest.raises(TypeError, match="must have a bool or signed int"):
        F.focal_mean(da.astype("c8"), 3)
    with pytest.raises(TypeError, match="xarray.DataArray"):
        F.focal_mean(da.values, 3)


def test_integer_skipna_false_without_nodata_is_an_error():
    da = raster("i2", classes=5)
    with pytest.raises(ValueError, match="no attrs\\['nodata'\\]"):
        F.focal_max(da, 3, skipna=False)
    F.focal_max(da, 3, skipna=False, boundary="nearest")  # no missing cells: fine
    F.focal_mean(da, 3, skipna=False)  # float output: NaN


def test_metre_window_on_geographic_grid_is_an_error():
    g = Grid("EPSG:4326", (0.01, 0, 10, 0, -0.01, 50), SHAPE)
    da = make_raster(np.ones(SHAPE, "f4"), g)
    with pytest.raises(ValueError, match="mix metres and degrees"):
        F.focal_mean(da, Window.circle(1000, units="m"))
    utm = make_cube(SHAPE, "f4")  # 30 m cells
    np.testing.assert_array_equal(F.focal_max(utm, Window.circle(45, units="m")).values,
                                  F.focal_max(utm, Window.circle(1.5)).values)

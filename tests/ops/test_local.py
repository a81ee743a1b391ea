import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import stengine
from stengine import ops
from stengine.errors import ChunkError, DimensionError, GridMismatchError, UDFError
from stengine.testing import assert_backends_match, chunkings, make_cube, to_backend
from tests import reference as ref
from tests.conftest import CHUNKS

SHAPE = (7, 9)


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("mapping", [{1: 10, 3: 30, 4: 200}, [(0, 2, 7), (2, 4, 8)]])
@pytest.mark.parametrize("default", [None, 0])
def test_reclassify_uint8(backend, chunks, mapping, default):
    da = make_cube(SHAPE, "u1", classes=6, nodata=5)
    assert_backends_match(
        lambda x: ops.local_reclassify(x, mapping, default=default),
        lambda x: ref.reclassify(x, mapping, default=default, nodata=5, in_nodata=5,
                                 dtype="u1"),
        da, backend=backend, chunks=chunks, exact=True)


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("mapping", [{1.5: 10.0, 30.0: 3.0},
                                     [(0, 20, 1), (20, 50, 2), (60, 99, 3)]])
def test_reclassify_float_with_nan(backend, chunks, mapping):
    da = make_cube(SHAPE, "f4")
    da = da.where(da.y != da.y[3], 30.0).astype("f4")  # exact hits for the dict mapping
    assert_backends_match(
        lambda x: ops.local_reclassify(x, mapping, default=-1),
        lambda x: ref.reclassify(x, mapping, default=-1, dtype="f4"),
        da, backend=backend, chunks=chunks, exact=True)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_reclassify_int32_search_path(backend, chunks):
    da = make_cube(SHAPE, "i4", classes=1000, nodata=-9)
    mapping = [(0, 100, 1), (100, 500, 2), (900, 2000, 3)]
    assert_backends_match(
        lambda x: ops.local_reclassify(x, mapping),
        lambda x: ref.reclassify(x, mapping, nodata=-9, in_nodata=-9, dtype="i4"),
        da, backend=backend, chunks=chunks, exact=True)


def test_reclassify_dtype_and_attrs():
    da = make_cube(SHAPE, "u1", classes=4, nodata=0)
    out = ops.local_reclassify(da, {1: 1000})
    assert out.dtype == np.uint16 and out.attrs["nodata"] == 0 and out.attrs["units"] == "1"
    out = ops.local_reclassify(da, {1: 1.5}, default=0.0)
    assert out.dtype.kind == "f"
    with pytest.raises(ValueError, match="overlap"):
        ops.local_reclassify(da, [(0, 5, 1), (3, 8, 2)])
    with pytest.raises(TypeError, match="mapping must be"):
        ops.local_reclassify(da, [1, 2, 3])


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("value", [2, 5])
def test_count_uint8(backend, chunks, value):
    da = make_cube(SHAPE, "u1", classes=6, nodata=5)
    assert_backends_match(lambda x: ops.local_count(x, value), lambda x: ref.count(x, value),
                          da, backend=backend, chunks=chunks, exact=True, same_shape=False)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_count_nan_and_time(backend, chunks):
    da = make_cube((3, *SHAPE), "f4")
    out = assert_backends_match(lambda x: ops.local_count(x, np.nan),
                                lambda x: ref.count(x, np.nan), da, backend=backend,
                                chunks=chunks, exact=True, same_shape=False)
    assert out.dims == ("time",) and out.dtype == np.int64


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "u8"])
def test_histogram(backend, chunks, dtype):
    da = make_cube((2, *SHAPE), dtype, classes=7, nodata=3)
    classes = [0, 1, 2, 4, 5, 6, 9]
    out = assert_backends_match(
        lambda x: ops.local_histogram(x, classes=classes),
        lambda x: ref.histogram(x, classes=[c for c in classes if c != 3], nodata=3),
        da, backend=backend, chunks=chunks, exact=True, same_shape=False)
    assert out.dims == ("time", "class") and out.dtype == np.int64
    assert out["class"].values.tolist() == [0, 1, 2, 4, 5, 6, 9]


def test_histogram_full_range_and_errors():
    da = make_cube(SHAPE, "u1", classes=3)
    h = ops.local_histogram(da)
    assert h.sizes["class"] == 256 and int(h.sum()) == da.size
    with pytest.raises(TypeError, match="integer"):
        ops.local_histogram(make_cube(SHAPE, "f4"))
    big = to_backend(make_cube(SHAPE, "i4", classes=3), "dask", (3, 3))
    with pytest.raises(ChunkError, match="classes="):
        ops.local_histogram(big)


def _signed_cube(shape, dtype, nodata):
    """Classes -3..3 (negative values exercise the unsigned view of the kernels)."""
    da = make_cube(shape, "i2", classes=7, nodata=6)
    data = da.values - 3
    return da.copy(data=data.astype(dtype)).assign_attrs(nodata=nodata)


# count and histogram of an unmodified dask reclassify run on its source (no reclassified
# chunk is made); the answers must equal the reference on every backend and chunking
FUSE_CASES = [  # (dtype, mapping, default): nodata 5 (uint) / 3 (signed) -> out nodata
    ("u1", {1: 10, 3: 30, 4: 200}, None),
    ("u1", [(0, 2, 7), (2, 4, 8)], 0),
    ("u2", {1: 4, 2: 4, 4: 70000}, None),  # -> uint32 values, searched histogram classes
    ("i1", {-3: 4, 0: 4, 1: -2}, None),
    ("i2", [(-3, 0, 1), (0, 2, 4)], -1),
    ("b", {True: 4}, 0),
]


def _fuse_input(dtype):
    if dtype in ("i1", "i2"):
        return _signed_cube((2, *SHAPE), dtype, nodata=3), 3
    if dtype == "b":
        return make_cube((2, *SHAPE), "u1", classes=2).astype(bool), None
    return make_cube((2, *SHAPE), dtype, classes=6, nodata=5), 5


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize(("dtype", "mapping", "default"), FUSE_CASES)
@pytest.mark.parametrize("value", [4, 3, 0, 7])
def test_count_of_reclassify(backend, chunks, dtype, mapping, default, value):
    da, nd = _fuse_input(dtype)
    out_dtype = ops.local_reclassify(da, mapping, default=default).dtype
    assert_backends_match(
        lambda x: ops.local_count(ops.local_reclassify(x, mapping, default=default), value),
        lambda x: ref.count(ref.reclassify(x, mapping, default=default, nodata=nd,
                                           in_nodata=nd, dtype=out_dtype), value),
        da, backend=backend, chunks=chunks, exact=True, same_shape=False)


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize(("dtype", "mapping", "default"), FUSE_CASES)
def test_histogram_of_reclassify(backend, chunks, dtype, mapping, default):
    da, nd = _fuse_input(dtype)
    r = ops.local_reclassify(da, mapping, default=default)
    classes = [-2, -1, 0, 1, 3, 4, 7, 8, 10, 30, 200, 70000]
    info = np.iinfo(r.dtype) if r.dtype.kind != "b" else None
    classes = [c for c in classes if info is None and c in (0, 1) or
               info is not None and info.min <= c <= info.max]
    out_nd = r.attrs.get("nodata")
    counted = [c for c in classes if c != out_nd]
    out = assert_backends_match(
        lambda x: ops.local_histogram(ops.local_reclassify(x, mapping, default=default),
                                      classes=classes),
        lambda x: ref.histogram(ref.reclassify(x, mapping, default=default, nodata=nd,
                                               in_nodata=nd, dtype=r.dtype), counted),
        da, backend=backend, chunks=chunks, exact=True, same_shape=False)
    assert out.dims == ("time", "class")
    assert out["class"].values.tolist() == counted


def test_counts_of_reclassify_read_the_source():
    """The fused path is taken for the unmodified result only: its graph has no
    reclassify layer; a modified result (arithmetic, isel, new attrs' nodata) is counted
    as it is."""
    da = to_backend(make_cube(SHAPE, "u1", classes=6, nodata=5), "dask", (3, 4))
    r = ops.local_reclassify(da, {1: 4, 2: 4, 3: 9})
    for res in (ops.local_count(r, 4), ops.local_histogram(r, classes=[4, 9])):
        assert r.data.name not in res.data.dask.layers
        assert da.data.name in res.data.dask.layers
    assert int(ops.local_count(r, 4)) == int(np.isin(da.values, [1, 2, 4]).sum())
    r2 = r + np.uint8(0)  # a new array: general path, same answer
    assert r.data.name in ops.local_count(r2, 4).data.dask.layers
    assert int(ops.local_count(r2, 4)) == int(ops.local_count(r, 4))
    sub = r.isel(x=slice(2, None))
    assert int(ops.local_count(sub, 4)) == int((sub.values == 4).sum())
    r3 = r.assign_attrs(nodata=9)  # same data, new nodata: the histogram skips class 9
    h = ops.local_histogram(r3, classes=[4, 9])
    assert h["class"].values.tolist() == [4] and int(h[0]) == int(ops.local_count(r, 4))


@settings(max_examples=15, deadline=None)
@given(chunks=chunkings(SHAPE), value=st.integers(0, 6))
def test_count_random_chunkings(chunks, value):
    da = make_cube(SHAPE, "u1", classes=7)
    assert_backends_match(lambda x: ops.local_count(x, value), lambda x: ref.count(x, value),
                          da, backend="dask", chunks=chunks, exact=True, same_shape=False)


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide"])
def test_binary_uint8_nodata(backend, chunks, op):
    a = make_cube(SHAPE, "u1", classes=250, nodata=0, seed=1)
    b = make_cube(SHAPE, "u1", classes=250, nodata=0, seed=2)
    fn = getattr(ops, f"local_{op}")
    expect_dtype = {"add": "u2", "subtract": "i2", "multiply": "u2", "divide": "f4"}[op]
    out = assert_backends_match(
        lambda x, y: fn(x, y),
        lambda x, y: ref.binary(x, y, op, expect_dtype, 0, 0, 0 if op != "divide" else None),
        a, b, backend=backend, chunks=chunks, exact=True)
    assert out.dtype == np.dtype(expect_dtype)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_binary_float_scalar_and_broadcast(backend, chunks):
    cube = make_cube((3, *SHAPE), "f4", seed=3)
    b2d = make_cube(SHAPE, "f4", seed=4)
    assert_backends_match(lambda x: ops.local_add(x, 2.5),
                          lambda x: ref.binary(x, np.float32(2.5), "add", "f4"),
                          cube, backend=backend, chunks=chunks, exact=True)
    assert_backends_match(lambda x, y: ops.local_divide(x, y),
                          lambda x, y: ref.binary(x, y, "divide", "f4"),
                          cube, b2d, backend=backend, chunks=chunks, exact=True)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_normalized_difference(backend, chunks):
    nir = make_cube(SHAPE, "u2", classes=5000, nodata=0, seed=5)
    red = make_cube(SHAPE, "u2", classes=5000, nodata=0, seed=6)
    out = assert_backends_match(
        lambda a, b: ops.normalized_difference(a, b),
        lambda a, b: ref.normalized_difference(a, b, 0, 0),
        nir, red, backend=backend, chunks=chunks, exact=True)
    assert out.dtype == np.float32 and "nodata" not in out.attrs


def test_grid_checks_name_the_difference():
    a = make_cube(SHAPE, "f4")
    shifted = make_cube(SHAPE, "f4", origin=(500030.0, 4000000.0))
    other_crs = make_cube(SHAPE, "f4", crs="EPSG:4326", res=0.1, origin=(10, 50))
    smaller = make_cube((7, 8), "f4")
    with pytest.raises(GridMismatchError, match=r"transform .*reproject_match"):
        ops.local_add(a, shifted)
    with pytest.raises(GridMismatchError, match=r"CRS EPSG:4326 \(b\) vs EPSG:32633 \(a\)"):
        ops.local_add(a, other_crs)
    with pytest.raises(GridMismatchError, match=r"shape \(7, 8\) \(b\) vs \(7, 9\) \(a\)"):
        ops.normalized_difference(a, smaller)
    with pytest.raises(DimensionError, match=r"needs spatial dims \('y', 'x'\)"):
        ops.local_count(a.rename(y="lat", x="lon"), 1)
    assert int(ops.local_count(a.rename(y="lat", x="lon"), 1, dims=("lat", "lon"))) == 0


def test_wrong_dtype_errors():
    a = make_cube(SHAPE, "f4")
    with pytest.raises(TypeError, match="numeric"):
        ops.local_add(a, a.astype("M8[ns]"))
    with pytest.raises(TypeError, match="DataArray"):
        ops.local_add(np.zeros(SHAPE), a)


def stubble_burning(b2, b4, b8, b12, *, thr):
    """JEODPP-style rule over 4 bands: burn scar where NBR < thr and NDVI < 0.3."""
    nbr = (b8 - b12) / (b8 + b12)
    ndvi = (b8 - b4) / (b8 + b4)
    return ((nbr < thr) & (ndvi < 0.3) & (b2 > 0)).astype("u1")


@pytest.mark.parametrize("chunks", CHUNKS)
def test_local_apply_four_bands(backend, chunks):
    bands = [make_cube(SHAPE, "f4", seed=s, nan_fraction=0) + 1 for s in range(4)]
    out = assert_backends_match(
        lambda *b: ops.local_apply(stubble_burning, *b, thr=0.1),
        lambda *b: stubble_burning(*b, thr=0.1),
        *bands, backend=backend, chunks=chunks, exact=True, max_computes=1)
    assert out.dtype == np.uint8


def test_check_udf_errors():
    a = make_cube(SHAPE, "f4")
    with pytest.raises(UDFError, match=r"raised ZeroDivisionError"):
        ops.check_udf(lambda x: 1 / 0, a)
    with pytest.raises(UDFError, match=r"returned shape \(7,\)"):
        ops.check_udf(lambda x: x[:, 0], a)
    with pytest.raises(UDFError, match="returned list"):
        ops.check_udf(lambda x: [1], a)
    with pytest.raises(UDFError, match="dtype <U1"):
        ops.check_udf(lambda x: np.full(x.shape, "a"), a)
    with pytest.raises(UDFError, match="returned shape"):
        ops.local_apply(lambda x: x.sum(axis=0), a)
    # the sample check reads only a small corner of a dask raster
    big = to_backend(make_cube((300, 300), "f4"), "dask", (100, 100))
    assert ops.check_udf(lambda x: x + 1, big) == np.float32


@pytest.mark.parametrize("chunks", CHUNKS)
def test_band_math(backend, chunks):
    nir = make_cube(SHAPE, "u2", classes=500, nodata=0, seed=7)
    red = make_cube(SHAPE, "u2", classes=500, nodata=0, seed=8)

    def reference(n, r):
        nf, rf = n.astype("f4"), r.astype("f4")
        nf[n == 0] = np.nan
        rf[r == 0] = np.nan
        with np.errstate(all="ignore"):
            return (nf - rf) / (nf + rf) * 2 + np.sqrt(nf)

    assert_backends_match(
        lambda n, r: ops.band_math("(nir - red) / (nir + red) * 2 + sqrt(nir)", nir=n, red=r),
        reference, nir, red, backend=backend, chunks=chunks, rtol=1e-6)


def test_band_math_rejects_code():
    a = make_cube(SHAPE, "f4")
    for bad, msg in [("__import__('os')", "only"), ("a.real", "Attribute"),
                     ("b + 1", "unknown name 'b'"), ("a +", "cannot parse")]:
        with pytest.raises(ValueError, match=msg):
            ops.band_math(bad, a=a)


def test_accessor_matches_free_functions():
    da = make_cube(SHAPE, "u1", classes=5)
    xr.testing.assert_identical(da.st.local_reclassify({1: 2}), ops.local_reclassify(da, {1: 2}))
    xr.testing.assert_identical(da.st.local_histogram(), ops.local_histogram(da))
    ds = xr.Dataset({"nir": make_cube(SHAPE, "u2", classes=9, seed=1),
                     "red": make_cube(SHAPE, "u2", classes=9, seed=2)})
    xr.testing.assert_identical(ds.st.normalized_difference("nir", "red"),
                                ops.normalized_difference(ds.nir, ds.red))
    counts = ds.st.local_count(3)
    assert set(counts.data_vars) == {"nir", "red"}
    assert not hasattr(stengine.accessor, "__missing__")

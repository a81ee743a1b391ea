"""composite / quality_mosaic on every backend and chunking against NumPy references."""

import warnings

import numpy as np
import pytest
import xarray as xr

from stengine import ops
from stengine.cube import make_raster
from stengine.errors import DimensionError
from stengine.testing import assert_backends_match, make_cube, to_backend
from tests.conftest import CHUNKS

T, SHAPE = 5, (7, 9)


def _nan_ref(how):
    def ref(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            if how in ("first", "last"):
                v = ~np.isnan(x)
                idx = v.argmax(0) if how == "first" else T - 1 - v[::-1].argmax(0)
                out = np.take_along_axis(x, idx[None], 0)[0]
                return np.where(v.any(0), out, np.nan)
            return {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin,
                    "max": np.nanmax}[how](x, axis=0)
    return ref


def _cube():
    c = make_cube((T, *SHAPE), "f4", nan_fraction=0.3, seed=3)
    c[:, 3, 4] = np.nan  # a pixel NaN at every step
    return c


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("how", ["median", "mean", "min", "max", "first", "last"])
def test_composite(backend, chunks, how):
    out = assert_backends_match(lambda x: ops.composite(x, how), _nan_ref(how), _cube(),
                                backend=backend, chunks=chunks, same_shape=False)
    assert out.dims == ("y", "x") and "time" not in out.coords
    assert np.isnan(float(out[3, 4]))


@pytest.mark.parametrize("how", ["min", "max", "first", "median"])
def test_composite_int_nodata(backend, how):
    c = make_cube((T, *SHAPE), "i2", classes=50, nodata=-1, nan_fraction=0.3)
    c[:, 0, 0] = -1

    def ref(x):
        f = np.where(x == -1, np.nan, x.astype("f8"))
        r = _nan_ref(how)(f)
        return r if how == "median" else np.where(np.isnan(r), -1, r).astype("i2")

    out = assert_backends_match(lambda x: ops.composite(x, how), ref, c, backend=backend,
                                chunks=(2, 3), same_shape=False)
    assert out.dtype == ("f8" if how == "median" else "i2")


def _bands_cube(seed=0):
    rng = np.random.default_rng(seed)
    v = rng.random((T, 3, *SHAPE)).astype("f4")
    v[rng.random(v.shape) < 0.2] = np.nan
    v[:, 2, 1, 1] = np.nan            # quality NaN at every step
    v[1, 2, 2, 2] = v[3, 2, 2, 2] = 2.0  # a tie: the first step (1) wins
    base = make_cube(SHAPE)
    return make_raster(v, None, dims=("time", "band", "y", "x"),
                       coords={"band": ["red", "nir", "ndvi"],
                               "time": np.arange(T).astype("datetime64[D]")}).assign_coords(
        x=base.x, y=base.y)


def _mosaic_ref(x, qband=2):
    q = x[:, qband]
    filled = np.where(np.isnan(q), -np.inf, q)
    idx = filled.argmax(0)  # first max: ties go to the first step
    out = np.take_along_axis(x, idx[None, None], 0)[0]
    return np.where(np.isnan(q).all(0)[None], np.nan, out)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_quality_mosaic_band(backend, chunks):
    c = _bands_cube()
    out = assert_backends_match(lambda x: ops.quality_mosaic(x, "ndvi"), _mosaic_ref, c,
                                backend=backend, chunks=chunks, same_shape=False, exact=True)
    assert out.dims == ("band", "y", "x")
    assert float(out.sel(band="ndvi")[2, 2]) == 2.0


def test_quality_mosaic_separate_quality(backend):
    c = _bands_cube(1)
    q = c.sel(band="nir", drop=True) - c.sel(band="red", drop=True)
    qb = to_backend(q, backend, (3, 2)) if backend.startswith("dask") else to_backend(q, backend)

    def ref(x):
        s = np.concatenate([x, (x[:, 1] - x[:, 0])[:, None]], axis=1)
        return _mosaic_ref(s, 3)[:3]

    assert_backends_match(lambda x: ops.quality_mosaic(x, qb), ref, c, backend=backend,
                          chunks=(2, 3), same_shape=False, exact=True)


def test_accessor_and_lazy():
    c = to_backend(_cube(), "dask", (2, 3))
    a = c.st.composite("max")
    assert hasattr(a.data, "dask") and a.chunks == ((2, 2, 2, 1), (3, 3, 3))
    np.testing.assert_array_equal(a.values, ops.composite(_cube(), "max").values)


def test_errors():
    c = _cube()
    with pytest.raises(ValueError, match="how must be one of"):
        ops.composite(c, "mode")
    with pytest.raises(DimensionError, match="'band'"):
        ops.composite(c, dim="band")
    with pytest.raises(DimensionError, match="not a label"):
        ops.quality_mosaic(_bands_cube(), "swir")
    with pytest.raises(DimensionError, match="must have dim"):
        ops.quality_mosaic(_bands_cube(), xr.DataArray(np.zeros(SHAPE), dims=("y", "x")))


def test_bad_dtype_and_type():
    c = _cube()
    with pytest.raises(TypeError, match="cube"):
        ops.composite(c.astype("c8"))
    with pytest.raises(TypeError, match="cube"):
        ops.composite(c.values)
    with pytest.raises(TypeError, match="by"):
        ops.quality_mosaic(_bands_cube(), _bands_cube().isel(band=0, drop=True).astype(bool))

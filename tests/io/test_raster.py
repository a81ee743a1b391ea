import numpy as np
import pytest
import rasterio
import xarray as xr

import stengine
from stengine.errors import StoreNotFoundError
from stengine.testing import make_cube, to_backend


def _tif(path, data, nodata=None, crs="EPSG:32633", blocks=16):
    count = 1 if data.ndim == 2 else data.shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=count, dtype=data.dtype, crs=crs, nodata=nodata, tiled=True,
                       blockxsize=blocks, blockysize=blocks,
                       transform=rasterio.transform.from_origin(500000, 4000000, 30, 30)) as d:
        d.write(data if data.ndim == 3 else data[None])
    return path


def test_read_lazy_windows_and_grid(tmp_path):
    data = np.arange(3 * 40 * 50, dtype="u2").reshape(3, 40, 50)
    p = _tif(tmp_path / "a.tif", data)
    da = stengine.read_raster(p, chunks=(16, 32))
    assert da.dims == ("band", "y", "x") and da.chunks == ((1, 1, 1), (16, 16, 8), (32, 18))
    assert da.band.values.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(da.values, data)
    g = da.st.grid
    assert g.crs.to_epsg() == 32633 and g.transform.c == 500000 and g.res == (30.0, 30.0)
    assert float(da.y[0]) == 4000000 - 15  # pixel centres, north to south
    # one task per chunk, each reading its own window: no task reads the whole file
    graph = dict(da.data.__dask_graph__())
    assert len(graph) == 3 * 3 * 2


def test_read_nodata_keep_or_mask(tmp_path):
    data = np.array([[0, 1, 2], [3, 0, 5]], "u1")
    p = _tif(tmp_path / "n.tif", data, nodata=0)
    kept = stengine.read_raster(p)
    assert kept.dims == ("y", "x") and kept.dtype == np.uint8 and kept.attrs["nodata"] == 0
    masked = stengine.read_raster(p, masked=True)
    assert masked.dtype == np.float32 and "nodata" not in masked.attrs
    np.testing.assert_array_equal(np.isnan(masked.values), data == 0)


def test_read_errors(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no such file"):
        stengine.read_raster(tmp_path / "nope.tif")
    p = _tif(tmp_path / "a.tif", np.zeros((4, 4), "u1"))
    with pytest.raises(ValueError, match="bands"):
        stengine.read_raster(p, bands=[2])


@pytest.mark.parametrize("driver", ["GTiff", "COG"])
def test_write_round_trip(tmp_path, driver):
    da = make_cube((2, 70, 90), "f4", dims=("band", "y", "x"))
    lazy = to_backend(da, "dask", (33, 40))
    p = stengine.write_raster(lazy, tmp_path / "o.tif", driver=driver, blocksize=32)
    back = stengine.read_raster(p)
    np.testing.assert_array_equal(back.values, da.values)
    assert back.st.grid == da.st.grid
    with rasterio.open(p) as src:
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        if driver == "COG":
            assert src.overviews(1)
    assert [q.name for q in tmp_path.iterdir()] == ["o.tif"]


def test_write_failure_leaves_nothing(tmp_path):
    da = to_backend(make_cube((64, 64), "f4"), "dask", (32, 32))

    def boom(b):
        raise RuntimeError("boom")

    bad = da.copy(data=da.data.map_blocks(boom, dtype=da.dtype))
    (tmp_path / "o.tif").write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        stengine.write_raster(bad, tmp_path / "o.tif")
    assert (tmp_path / "o.tif").read_bytes() == b"previous"
    assert [q.name for q in tmp_path.iterdir()] == ["o.tif"]


def test_rioxarray_style_metadata():
    da = make_cube((4, 5), "f4")
    ref = da.spatial_ref.attrs
    assert ref["GeoTransform"].split()[0] == "500000.0" and "crs_wkt" in ref
    assert ref.get("grid_mapping_name") == "transverse_mercator"


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_reproject_match_chunked_equals_eager(resampling):
    src = make_cube((40, 50), "f4", crs="EPSG:32633", res=100.0, nan_fraction=0)
    like = make_cube((30, 35), "f4", crs="EPSG:4326", res=0.001, origin=(14.99, 36.14))
    eager = stengine.reproject_match(src, like, resampling=resampling)
    lazy = stengine.reproject_match(to_backend(src, "dask", (7, 9)),
                                    to_backend(like, "dask", (8, 10)), resampling=resampling)
    assert lazy.chunks == ((8, 8, 8, 6), (10, 10, 10, 5))
    if resampling == "nearest":  # bit-identical for any chunking
        np.testing.assert_array_equal(lazy.values, eager.values)
    else:  # GDAL's transformer rounding differs per window: sub-pixel, not structural
        np.testing.assert_allclose(lazy.values, eager.values, atol=0.2, equal_nan=True)
    assert np.isnan(lazy.values).sum() == np.isnan(eager.values).sum()
    assert lazy.st.grid == like.st.grid
    assert np.isfinite(eager.values).mean() > 0.3
    out = stengine.ops.local_add(lazy, like)  # now on one grid
    assert out.shape == like.shape
    a, b = stengine.align(like, src)
    assert a is like and b.st.grid == like.st.grid


def test_reproject_identity_and_errors():
    da = make_cube((5, 6), "f4")
    assert stengine.reproject_match(da, da) is not None
    xr.testing.assert_identical(stengine.reproject_match(da, da), da)
    no_crs = stengine.cube.make_raster(np.zeros((5, 6)))
    with pytest.raises(ValueError, match="need a CRS"):
        stengine.reproject_match(no_crs, da)
    with pytest.raises(ValueError, match="resampling"):
        stengine.reproject_match(da, da, resampling="magic")

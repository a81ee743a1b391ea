"""Bad input to the GeoTIFF reader/writer and reproject_match: a typed error that names
the argument (or the file and window), never a raw GDAL/NumPy error or a silent write."""

import numpy as np
import pytest
import xarray as xr

import stengine
from stengine.errors import StoreCorruptError, StoreError, StoreNotFoundError
from stengine.testing import make_cube


@pytest.fixture(scope="module")
def tif(tmp_path_factory):
    d = tmp_path_factory.mktemp("rio")
    da = make_cube((20, 30), "f4")
    path = stengine.write_raster(da, d / "a.tif")
    raw = open(path, "rb").read()
    (d / "garbage.tif").write_bytes(b"not a tiff" * 10)
    (d / "trunc.tif").write_bytes(raw[: len(raw) // 2])
    return d, da, path


READ = [
    ("missing file", dict(path="nope.tif"), StoreNotFoundError, "no such file"),
    ("not a raster", dict(path="garbage.tif"), StoreCorruptError, "garbage.tif"),
    ("chunks 0", dict(chunks=0), ValueError, "chunks"),
    ("chunks negative", dict(chunks=-5), ValueError, "chunks"),
    ("chunks float", dict(chunks=2.5), ValueError, "chunks"),
    ("chunks string", dict(chunks="x"), ValueError, "chunks"),
    ("chunks dict key", dict(chunks={"rows": 4}), ValueError, "chunks"),
    ("chunks dict 0", dict(chunks={"y": 0}), ValueError, r"chunks\['y'\]"),
    ("chunks triple", dict(chunks=(1, 2, 3)), ValueError, "chunks"),
    ("band 0", dict(bands=0), ValueError, "bands"),
    ("bands empty", dict(bands=[]), ValueError, "bands"),
    ("band float", dict(bands=1.5), TypeError, "bands"),
]


@pytest.mark.parametrize("case", READ, ids=[c[0] for c in READ])
def test_read_raster_bad_input(tif, case):
    d, _, path = tif
    _, kw, exc, msg = case
    kw = dict(kw)
    p = d / kw.pop("path") if "path" in kw else path
    with pytest.raises(exc, match=msg):
        stengine.read_raster(p, **kw)


def test_damaged_file_names_file_and_window(tif):
    d, _, _ = tif
    da = stengine.read_raster(d / "trunc.tif", chunks=16)
    with pytest.raises(StoreCorruptError, match=r"trunc\.tif.*rows \d+:\d+, columns \d+:\d+"):
        da.compute()


def _no_grid():
    return xr.DataArray(np.zeros((3, 3), "f4"), dims=("y", "x"))


WRITE = [
    ("not a DataArray", lambda da: np.zeros((3, 3)), {}, TypeError, "da must be a DataArray"),
    ("wrong dims", lambda da: da.rename(y="lat"), {}, ValueError, "dims"),
    ("zero size", lambda da: da[:0], {}, ValueError, "zero size"),
    ("strings", lambda da: xr.full_like(da, 1).astype("U1"), {}, TypeError, "numbers"),
    ("driver", lambda da: da, {"driver": "PNG"}, ValueError, "driver"),
    ("blocksize 7", lambda da: da, {"blocksize": 7}, ValueError, "blocksize"),
    ("blocksize 0", lambda da: da, {"blocksize": 0}, ValueError, "blocksize"),
    ("compress", lambda da: da, {"compress": "zzz"}, ValueError, "compress"),
    ("nodata out of range", lambda da: da.fillna(0).astype("u1"), {"nodata": 300},
     ValueError, "nodata=300"),
    ("nodata NaN for ints", lambda da: da.fillna(0).astype("i2"), {"nodata": np.nan},
     ValueError, "nodata=nan"),
    ("nodata fraction for ints", lambda da: da.fillna(0).astype("i2"), {"nodata": 0.5},
     ValueError, "nodata=0.5"),
]


@pytest.mark.parametrize("case", WRITE, ids=[c[0] for c in WRITE])
def test_write_raster_bad_input(tif, tmp_path, case):
    _, da, _ = tif
    _, make, kw, exc, msg = case
    with pytest.raises(exc, match=msg):
        stengine.write_raster(make(da), tmp_path / "out.tif", **kw)
    assert not list(tmp_path.iterdir()), "a refused write left files behind"


def test_write_raster_unwritable_folder(tif):
    _, da, _ = tif
    with pytest.raises(StoreError, match="cannot create the folder"):
        stengine.write_raster(da, "/proc/stengine-no-such/x.tif")


def test_write_raster_good_edges_round_trip(tif, tmp_path):
    """One pixel, booleans and an in-range nodata write and read back exactly."""
    _, da, _ = tif
    one = da[:1, :1]
    back = stengine.read_raster(stengine.write_raster(one, tmp_path / "one.tif")).values
    np.testing.assert_array_equal(back, one.values)
    b = (da > 50).fillna(False)
    back = stengine.read_raster(stengine.write_raster(b, tmp_path / "b.tif")).values
    np.testing.assert_array_equal(back, b.values.astype("u1"))
    i = da.fillna(0).astype("u1")
    out = stengine.read_raster(stengine.write_raster(i, tmp_path / "i.tif", nodata=255))
    assert out.attrs["nodata"] == 255


def test_reproject_match_bad_input(tif):
    _, da, _ = tif
    with pytest.raises(TypeError, match="like must be a raster"):
        stengine.reproject_match(da, "EPSG:4326")
    with pytest.raises(ValueError, match="resampling"):
        stengine.reproject_match(da, da, resampling="foo")
    with pytest.raises(ValueError, match="CRS"):
        stengine.reproject_match(_no_grid(), da)

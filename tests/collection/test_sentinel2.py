"""Load the real Sentinel-2 L2A subset (xarray-spatial 0.5.3 wheel) as a 3-date collection."""

import io
import zipfile

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from stengine import Collection, ops
from stengine.cube import get_grid
from stengine.datasets import fetch_wheel


@pytest.fixture(scope="module")
def s2(tmp_path_factory):
    try:
        whl = fetch_wheel("xarray-spatial", "0.5.3")
    except RuntimeError as e:
        pytest.skip(f"Sentinel-2 subset unavailable: {e}")
    z = zipfile.ZipFile(whl)
    bands = {}
    for b in ("red", "nir"):
        raw = z.read(f"xrspatial/datasets/sentinel-2/{b}_band.nc")
        da = xr.open_dataset(io.BytesIO(raw), engine="scipy")["__xarray_dataarray_variable__"]
        bands[b] = da
    x, y = bands["red"].x.values, bands["red"].y.values
    tr = Affine(10.0, 0, x[0] - 5, 0, -10.0, y[0] + 5)
    d = tmp_path_factory.mktemp("s2")
    rng = np.random.default_rng(0)
    paths, truth = [], {}
    for k, day in enumerate(["2023-01-05", "2023-01-10", "2023-01-15"]):
        cloud = rng.random(bands["red"].shape) < 0.3 * (k + 1) / 3  # synthetic clouds
        for b, da in bands.items():
            v = da.values.astype("f4")
            v[cloud] = np.nan
            truth[(day, b)] = v
            p = d / f"{day}_{b}.tif"
            with rasterio.open(p, "w", driver="GTiff", width=v.shape[1], height=v.shape[0],
                               count=1, dtype="float32", crs="EPSG:32719", transform=tr,
                               nodata=np.nan) as dst:
                dst.write(v, 1)
            paths.append(p)
    col = Collection.from_files(sorted(paths), datetime=r"^(\d{4}-\d\d-\d\d)",
                                band=lambda p: p.split("_")[-1][:-4],
                                item_id=lambda p: p.rsplit("/", 1)[-1][:10])
    return col, truth, tr


def test_sentinel2_load_and_max_ndvi(s2):
    col, truth, tr = s2
    assert len(col) == 3 and col.bands == ["nir", "red"]
    cube = col.load(["red", "nir"], crs="EPSG:32719", resolution=10, chunks=(64, 96))
    assert cube.sizes["time"] == 3
    red = cube.sel(band="red", drop=True)
    nir = cube.sel(band="nir", drop=True)
    # the files' pixels land on the cube's grid one to one (same CRS, aligned 10 m pixels)
    g = get_grid(cube).transform
    r0, c0 = round((g.f - tr.f) / 10), round((tr.c - g.c) / 10)
    exp = np.stack([truth[(d, "red")] for d in ("2023-01-05", "2023-01-10", "2023-01-15")])
    v = red.values
    np.testing.assert_array_equal(v[:, r0:r0 + 200, c0:c0 + 300], exp)
    assert np.isnan(np.delete(v, np.s_[r0:r0 + 200], axis=1)).all()
    ndvi = ops.normalized_difference(nir, red)
    best = ops.quality_mosaic(cube, ndvi).compute()
    assert np.isfinite(best.values).mean() > 0.5

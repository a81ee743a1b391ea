"""File and URL sources (local, memory://, http://, s3:// on moto) against direct readers."""

from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import xarray as xr

from stengine.errors import SourceConnectionError, SourceError, StoreNotFoundError
from stengine.io import sources
from stengine.io.sources import SourceSpec, check_source, open_source, preview_source

from .conftest import DEM, free_port


def _eq(a, b):
    # dask and pandas pick different string dtypes (NA vs NaN missing values)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def _dem():
    with rasterio.open(DEM) as r:
        return r.read(1), r.bounds, r.crs


@pytest.fixture(scope="module")
def files(tmp_path_factory, countries):
    """The real DEM as GeoTIFF, Zarr, NetCDF; real countries as GeoParquet and CSV."""
    d = tmp_path_factory.mktemp("files")
    z, _, _ = _dem()
    shutil.copy(DEM, d / "dem.tif")
    da = open_source(DEM).load()
    ds = xr.Dataset({"elev": da.drop_vars("spatial_ref", errors="ignore")
                     .astype("float32")})
    ds.to_zarr(d / "dem.zarr", mode="w")
    ds.to_netcdf(d / "dem.nc", engine="scipy")
    countries.to_parquet(d / "countries.parquet", write_covering_bbox=True,
                         row_group_size=10, schema_version="1.1.0")
    countries.drop(columns="geometry").to_csv(d / "countries.csv", index=False)
    return d


def test_geotiff_local_matches_rasterio(files):
    z, bounds, crs = _dem()
    da = open_source(files / "dem.tif")
    np.testing.assert_array_equal(da.values, z)
    p = preview_source(str(files / "dem.tif"), n=4)
    assert p["type"] == "raster" and p["shape"] == list(z.shape) and len(p["rows"]) == 4
    np.testing.assert_allclose(p["bounds"], list(bounds), atol=1e-9)
    assert p["crs"] and ("4326" in p["crs"] or "WGS 84" in p["crs"])


def test_zarr_and_netcdf_local(files):
    z, _, _ = _dem()
    ref = xr.open_dataset(files / "dem.nc", engine="scipy")["elev"].values
    for loc in (files / "dem.zarr", files / "dem.nc"):
        obj = open_source(loc)
        da = obj["elev"] if isinstance(obj, xr.Dataset) else obj
        np.testing.assert_array_equal(da.values, ref)
        np.testing.assert_array_equal(da.values, z.astype("float32"))
    da = open_source(files / "dem.nc", variable="elev")
    assert isinstance(da, xr.DataArray)
    with pytest.raises(SourceError) as e:
        open_source(files / "dem.nc", variable="nope")
    assert e.value.field == "variable"


def test_memory_protocol(files):
    import fsspec
    fs = fsspec.filesystem("memory")
    fs.put(str(files / "dem.tif"), "/src/dem.tif")
    fs.put(str(files / "countries.csv"), "/src/countries.csv")
    fs.put(str(files / "dem.zarr"), "/src/dem.zarr", recursive=True)
    z, _, _ = _dem()
    np.testing.assert_array_equal(open_source("memory://src/dem.tif").values, z)
    df = open_source("memory://src/countries.csv").compute()
    _eq(df.reset_index(drop=True),
                                  pd.read_csv(files / "countries.csv"))
    da = open_source("memory://src/dem.zarr", variable="elev")
    np.testing.assert_array_equal(da.values, z.astype("float32"))


def test_http(files, http_root):
    root, base = http_root
    for name in ("dem.tif", "dem.nc", "countries.csv"):
        shutil.copy(files / name, root / name)
    z, _, _ = _dem()
    np.testing.assert_array_equal(open_source(f"{base}/dem.tif").values, z)
    np.testing.assert_array_equal(open_source(f"{base}/dem.nc")["elev"].values,
                                  z.astype("float32"))
    df = open_source(f"{base}/countries.csv", blocksize=None).compute()
    _eq(df.reset_index(drop=True),
                                  pd.read_csv(files / "countries.csv"))
    assert check_source(f"{base}/dem.tif")["ok"]
    with pytest.raises(StoreNotFoundError):
        check_source(f"{base}/missing.tif")
    t = time.perf_counter()
    with pytest.raises(SourceConnectionError) as e:
        check_source(f"http://127.0.0.1:{free_port()}/dem.tif")
    assert e.value.field == "location" and time.perf_counter() - t < 10


def test_s3_on_moto(files, moto_s3, s3fs_):
    s3fs_.put(str(files / "dem.tif"), "srcbucket/dem.tif")
    s3fs_.put(str(files / "countries.csv"), "srcbucket/countries.csv")
    s3fs_.put(str(files / "countries.parquet"), "srcbucket/countries.parquet")
    s3fs_.put(str(files / "dem.zarr"), "srcbucket/dem.zarr", recursive=True)
    opts = {"endpoint_url": moto_s3,
            "storage_options": {"key": "testing", "secret": "testing"}}
    z, _, _ = _dem()
    np.testing.assert_array_equal(open_source("s3://srcbucket/dem.tif", **opts).values, z)
    np.testing.assert_array_equal(
        open_source("s3://srcbucket/dem.zarr", variable="elev", **opts).values,
        z.astype("float32"))
    df = open_source("s3://srcbucket/countries.csv", **opts).compute()
    _eq(df.reset_index(drop=True),
                                  pd.read_csv(files / "countries.csv"))
    g = open_source("s3://srcbucket/countries.parquet", bbox=[-20, 30, 40, 70], **opts)
    assert len(g) > 0 and g.attrs["row_groups_read"] < g.attrs["row_groups_total"]
    spec = SourceSpec("csv", "s3://srcbucket/countries.csv", opts)
    assert check_source(spec)["ok"]
    assert "testing" not in repr(spec)
    with pytest.raises(SourceConnectionError) as e:
        check_source(SourceSpec("csv", "s3://no-such-bucket/a.csv", opts))
    assert e.value.field == "location" and "no-such-bucket" in str(e.value)
    with pytest.raises(StoreNotFoundError):
        open_source("s3://srcbucket/missing.csv", **opts)
    dead = {**opts, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    t = time.perf_counter()
    with pytest.raises(SourceConnectionError) as e:
        check_source(SourceSpec("csv", "s3://srcbucket/countries.csv", dead))
    assert e.value.field == "endpoint_url" and time.perf_counter() - t < 20


def test_geoparquet_bbox_pushdown(files, countries):
    path = files / "countries.parquet"
    bbox = [-20.0, 30.0, 40.0, 70.0]  # Europe and North Africa
    g = open_source(path, bbox=bbox)
    b = countries.bounds  # geopandas' bbox filter keeps rows whose bbox meets it
    ref = countries[(b.minx <= bbox[2]) & (b.maxx >= bbox[0]) & (b.miny <= bbox[3])
                    & (b.maxy >= bbox[1])]
    assert sorted(g["iso_a3"]) == sorted(ref["iso_a3"])
    pf = pq.ParquetFile(path)
    total = pf.metadata.num_row_groups
    assert g.attrs["row_groups_total"] == total > 4
    # an independent count: row groups whose bbox column statistics meet the bbox
    names = [pf.metadata.schema.column(i).path for i in range(pf.metadata.num_columns)]
    ix = {k: names.index(f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")}
    meet = 0
    for r in range(total):
        rg = pf.metadata.row_group(r)
        s = {k: rg.column(i).statistics for k, i in ix.items()}
        meet += (s["xmin"].min <= bbox[2] and s["xmax"].max >= bbox[0]
                 and s["ymin"].min <= bbox[3] and s["ymax"].max >= bbox[1])
    assert g.attrs["row_groups_read"] == meet < total
    whole = open_source(path)
    assert len(whole) == len(countries) and whole.attrs["row_groups_read"] == total
    p = preview_source(SourceSpec("geoparquet", str(path), {"bbox": bbox}), n=2)
    assert p["type"] == "table" and len(p["rows"]) == 2
    assert p["rows"][0]["geometry"].startswith(("POLYGON", "MULTIPOLYGON"))
    with pytest.raises(SourceError) as e:
        open_source(path, bbox=[1, 2, 3])
    assert e.value.field == "bbox"


def test_csv_local_and_preview(files):
    ref = pd.read_csv(files / "countries.csv")
    ddf = open_source(f"file://{files / 'countries.csv'}", blocksize=4000)
    assert ddf.npartitions > 1
    _eq(ddf.compute().reset_index(drop=True), ref)
    p = preview_source(files / "countries.csv", n=3)
    assert [r["name"] for r in p["rows"]] == ref["name"][:3].tolist()
    assert set(p["schema"]) == set(ref.columns)
    with pytest.raises(SourceError) as e:
        sources.quicklook_png(files / "countries.csv")
    assert e.value.field == "kind"


def test_quicklook_png(files):
    from PIL import Image
    png = sources.quicklook_png(str(files / "dem.tif"), width=64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size[0] <= 640
    assert sources.quicklook_png(str(files / "dem.zarr"))[:4] == b"\x89PNG"


def test_missing_files_and_bad_options(files):
    for loc in (files / "nope.tif", files / "nope.zarr", files / "nope.csv",
                "memory://nope/x.parquet"):
        with pytest.raises(StoreNotFoundError):
            open_source(loc)
        with pytest.raises(StoreNotFoundError):
            check_source(loc)
    assert check_source(files / "dem.tif")["ok"]
    with pytest.raises(SourceError) as e:
        open_source(files / "dem.tif", bbox=[0, 0, 1, 1])
    assert e.value.field == "bbox"
    with pytest.raises(SourceError) as e:
        open_source(files / "dem.tif", endpoint_url="http://x")
    assert e.value.field == "endpoint_url"
    with pytest.raises(SourceError) as e:
        open_source(files / "dem.tif", kind="raster")
    assert e.value.field == "kind"

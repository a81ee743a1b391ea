import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

import stengine
from stengine.cube import make_raster
from stengine.grid import Grid
from stengine.ops.terrain import aspect, geographic_spacing, hillshade, slope
from stengine.testing import assert_backends_match, chunkings, to_backend, to_numpy
from tests import reference_focal as ref
from tests.conftest import CHUNKS

DATA = Path(__file__).resolve().parent.parent / "data"
SHAPE = (7, 9)
GDALDEM = shutil.which("gdaldem")


def dem(shape=SHAPE, dtype="f4", res=(30.0, 30.0), crs="EPSG:32633", seed=0, nan=True,
        nodata=None):
    """A rough random DEM (metres) with a few missing cells."""
    rng = np.random.default_rng(seed)
    z = (rng.random(shape) * 40 + np.arange(shape[-1]) * 3).astype(dtype)
    if nan:
        bad = np.nan if np.dtype(dtype).kind == "f" else nodata
        z[..., 3, 4] = bad
        z[..., 0, 0] = bad
    g = Grid(crs, (res[0], 0, 500000, 0, -res[1], 4000000), shape[-2:])
    return make_raster(z, g, name="elevation", attrs={"units": "m"}, nodata=nodata)


def _angle_close(got, want, tol):
    """Aspects equal up to ``tol`` degrees, modulo 360, NaN equal NaN, flats equal."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), "NaN cells differ"
    ok = ~np.isnan(want)
    d = np.abs(got[ok] - want[ok]) % 360
    assert np.all(np.minimum(d, 360 - d) <= tol), f"max aspect difference {d.max()}"


# --------------------------------------------------------------------------- vs reference
@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("what", ["slope", "percent", "aspect", "hillshade"])
def test_terrain_every_backend(backend, chunks, what):
    da = dem()
    op = {"slope": lambda x: slope(x), "percent": lambda x: slope(x, units="percent"),
          "aspect": lambda x: aspect(x), "hillshade": lambda x: hillshade(x)}[what]
    want = {"slope": lambda z: ref.slope(z, 30, 30), "percent": lambda z: ref.slope(
        z, 30, 30, percent=True), "aspect": lambda z: ref.aspect(z, 30, 30),
        "hillshade": lambda z: ref.hillshade(z, 30, 30)}[what]
    out = assert_backends_match(op, lambda z: want(z).astype("f4"), da, backend=backend,
                                chunks=chunks, rtol=1e-5, atol=1e-4)
    assert out.dtype == np.float32 and out.attrs["long_name"] in ("slope", "hillshade") or \
        out.attrs["long_name"].startswith("aspect")


@pytest.mark.parametrize("boundary", ["nearest", "reflect", "wrap", {"x": "wrap"}])
@pytest.mark.parametrize("what", ["slope", "aspect"])
def test_terrain_boundaries(backend, boundary, what):
    da = dem(res=(30, 10))  # non-square cells
    rules = [boundary.get(d, "nan") for d in ("y", "x")] if isinstance(boundary, dict) \
        else boundary
    fn, rf = (slope, ref.slope) if what == "slope" else (aspect, ref.aspect)
    assert_backends_match(lambda x: fn(x, boundary=boundary),
                          lambda z: rf(z, 30, 10, boundary=rules).astype("f4"), da,
                          backend=backend, chunks=((1, 4, 2), (3, 1, 3, 2)), rtol=1e-5,
                          atol=1e-4)


@pytest.mark.parametrize("azimuth, altitude", [(315, 45), (90, 10), (200, 80)])
def test_hillshade_sun_and_z_factor(azimuth, altitude):
    da = dem(dtype="f8", nan=False)
    got = hillshade(da, azimuth=azimuth, altitude=altitude, z_factor=2.5)
    np.testing.assert_allclose(got.values, ref.hillshade(da.values, 30, 30, azimuth, altitude,
                                                         z_factor=2.5), rtol=1e-12,
                               equal_nan=True)
    assert got.dtype == np.float64


def test_integer_dem_with_nodata(backend):
    da = dem(dtype="u2", nodata=65535)
    assert_backends_match(lambda x: slope(x), lambda z: ref.slope(z, 30, 30, nodata=65535)
                          .astype("f4"), da, backend=backend, chunks=(2, 3), rtol=1e-5,
                          atol=1e-4)


def test_leading_dims_and_coords():
    da = xr.concat([dem(), dem(seed=1)], dim="band")
    out = slope(da.chunk({"band": 1, "y": 3, "x": 4}))
    assert out.dims == ("band", "y", "x") and out.chunks == da.chunk(
        {"band": 1, "y": 3, "x": 4}).chunks
    for b in range(2):
        np.testing.assert_array_equal(out[b].values, slope(da[b]).values)
    assert out.attrs["units"] == "degrees" and "spatial_ref" in out.coords


@settings(max_examples=25, deadline=None)
@given(chunks=chunkings(SHAPE), what=st.sampled_from(["slope", "aspect", "hillshade"]),
       boundary=st.sampled_from(["nan", "nearest", "wrap"]))
def test_random_chunkings_bit_for_bit(chunks, what, boundary):
    fn = {"slope": slope, "aspect": aspect, "hillshade": hillshade}[what]
    one = fn(dem(), boundary=boundary).values
    np.testing.assert_array_equal(fn(to_backend(dem(), "dask", chunks), boundary=boundary)
                                  .values, one)


# --------------------------------------------------------------------------- cell sizes
def test_geographic_grid_uses_ellipsoidal_spacing_per_row():
    """lon/lat DEM: per-row dx, dy in metres (checked with pyproj's WGS84 geodesics)."""
    g = Grid("EPSG:4326", (0.01, 0, 10.0, 0, -0.01, 61.0), (40, 30))
    z = dem((40, 30), "f8", nan=False).values * 20
    da = to_backend(make_raster(z, g), "dask", (13, 11))
    geod = Geod(ellps="WGS84")
    lat = g.ys()
    dx = np.array([geod.inv(10.0, la, 10.01, la)[2] for la in lat])
    dy = np.array([geod.inv(10.0, la - 0.005, 10.0, la + 0.005)[2] for la in lat])
    np.testing.assert_allclose(geographic_spacing(g)[0], dx, rtol=1e-7)
    np.testing.assert_allclose(geographic_spacing(g)[1], dy, rtol=1e-7)
    np.testing.assert_allclose(slope(da).values, ref.slope(z, dx, dy), rtol=1e-6,
                               equal_nan=True)
    # a degree-sized cell treated as metres would give ~90° everywhere
    assert np.nanmax(slope(da).values) < 80


def test_no_crs_needs_cell_size():
    da = make_raster(dem().values)  # no CRS
    with pytest.raises(ValueError, match="no CRS.*cell_size"):
        slope(da)
    np.testing.assert_allclose(slope(da, cell_size=(30, 10)).values,
                               ref.slope(da.values, 30, 10), rtol=1e-5, atol=1e-4,
                               equal_nan=True)
    np.testing.assert_array_equal(slope(da, cell_size=30).values, slope(dem()).values)
    with pytest.raises(ValueError, match="positive"):
        slope(da, cell_size=(0, 1))


def test_feet_crs_is_converted_to_metres():
    z = dem(nan=False).values
    ft = make_raster(z, Grid("EPSG:2263", (10, 0, 900000, 0, -10, 200000), SHAPE))
    m = make_raster(z, Grid("EPSG:32618", (3.0480061, 0, 500000, 0, -3.0480061, 0), SHAPE))
    np.testing.assert_allclose(slope(ft).values, slope(m).values, rtol=1e-6)


def test_south_up_and_east_to_west_rasters():
    """Rows running south→north (positive y step): same terrain, same answers."""
    z = dem(nan=False).values
    north_up = make_raster(z, Grid("EPSG:32633", (30, 0, 0, 0, -30, 210), SHAPE))
    south_up = make_raster(z[::-1].copy(), Grid("EPSG:32633", (30, 0, 0, 0, 30, 0), SHAPE))
    for fn in (slope, aspect, hillshade):
        np.testing.assert_allclose(fn(south_up).values[::-1], fn(north_up).values, rtol=1e-6,
                                   atol=1e-5, equal_nan=True)
    west = make_raster(z[:, ::-1].copy(), Grid("EPSG:32633", (-30, 0, 270, 0, -30, 210), SHAPE))
    np.testing.assert_allclose(aspect(west).values[:, ::-1], aspect(north_up).values,
                               rtol=1e-6, atol=1e-5, equal_nan=True)


def test_rotated_grid_is_an_error():
    da = xr.DataArray(np.zeros(SHAPE, "f4"), dims=("y", "x"), coords={"spatial_ref": xr.Variable(
        (), 0, {"crs_wkt": stengine.grid.parse_crs(32633).to_wkt(),
                "GeoTransform": "0 30 5 0 5 -30"})})
    with pytest.raises(ValueError, match="rotated"):
        slope(da)


def test_aspect_conventions():
    g = Grid("EPSG:32633", (1, 0, 0, 0, -1, 5), (5, 5))
    rise_south = np.repeat(np.arange(5.0)[:, None], 5, axis=1)
    for z, want in [(rise_south, 0.0), (rise_south.T, 270.0), (-rise_south, 180.0),
                    (-rise_south.T, 90.0), (rise_south + rise_south.T, 315.0)]:
        assert float(aspect(make_raster(z, g)).values[2, 2]) == want
    flat = make_raster(np.ones((5, 5)), g)
    assert float(aspect(flat).values[2, 2]) == -1.0
    assert np.isnan(aspect(flat, flat=np.nan).values[2, 2])


def test_errors():
    da = dem()
    with pytest.raises(ValueError, match="units must be"):
        slope(da, units="radians")
    with pytest.raises(ValueError, match="altitude"):
        hillshade(da, altitude=95)
    with pytest.raises(ValueError, match="z_factor"):
        slope(da, z_factor=0)
    with pytest.raises(TypeError, match="numeric"):
        slope(da.astype(bool))
    with pytest.raises(stengine.errors.DimensionError):
        slope(da.rename(x="lon"))


# --------------------------------------------------------------------------- vs gdaldem
def _golden(name):
    return to_numpy(stengine.read_raster(DATA / name)).astype(np.float64)


def _interior(a):
    return a[1:-1, 1:-1]


def test_projected_dem_matches_gdaldem_goldens():
    dem_utm = stengine.read_raster(DATA / "rmnp_utm_dem.tif")
    s = _interior(slope(dem_utm).values)
    np.testing.assert_allclose(s, _interior(_golden("rmnp_utm_slope.tif")), atol=1e-3)
    assert np.isnan(slope(dem_utm).values[0]).all()  # edges: gdaldem writes nodata
    a = _interior(aspect(dem_utm).values)
    g = _interior(_golden("rmnp_utm_aspect.tif"))
    assert np.array_equal(a == -1, g == -9999)  # flat cells agree
    _angle_close(a[g != -9999], g[g != -9999], 5e-3)  # gdaldem rounds to float32
    h = _interior(hillshade(dem_utm).values)
    gh = _interior(_golden("rmnp_utm_hillshade.tif"))
    assert np.abs(np.round(1 + 254 * h) - gh).max() <= 1


def test_geographic_dem_matches_gdaldem_with_local_metres():
    dem_geo = stengine.read_raster(DATA / "rmnp_geo_dem.tif")  # uint16, nodata 65535
    rows = slice(20, 29)  # centre row 24 ± 4: spacing within 0.015 % of the golden's
    s = slope(dem_geo).values[rows, 1:-1]
    np.testing.assert_allclose(s, _golden("rmnp_geo_slope_centre.tif")[rows, 1:-1], atol=0.01)
    h = hillshade(dem_geo).values[rows, 1:-1]
    gh = _golden("rmnp_geo_hillshade_centre.tif")[rows, 1:-1]
    assert np.abs(np.round(1 + 254 * h) - gh).max() <= 1
    with pytest.raises(AssertionError):  # the degree/metre mix-up gdaldem makes without -s
        np.testing.assert_allclose(slope(dem_geo, cell_size=(0.00275, 0.00211)).values[
            rows, 1:-1], _golden("rmnp_geo_slope_centre.tif")[rows, 1:-1], atol=1)


@pytest.mark.skipif(GDALDEM is None, reason="gdaldem (Debian gdal-bin) is not installed")
@pytest.mark.parametrize("res", [(25.0, 25.0), (30.0, 20.0)])
def test_live_gdaldem(tmp_path, res):
    """Run gdaldem itself on a rough synthetic DEM (and re-run the goldens' commands)."""
    da = dem((40, 50), "f4", res=res, nan=False, seed=7)
    src = tmp_path / "dem.tif"
    stengine.write_raster(da, src)
    outs = {}
    for mode in ("slope", "aspect", "hillshade"):
        subprocess.run([GDALDEM, mode, "-q", str(src), str(tmp_path / f"{mode}.tif")],
                       check=True)
        outs[mode] = to_numpy(stengine.read_raster(tmp_path / f"{mode}.tif")).astype("f8")
    np.testing.assert_allclose(_interior(slope(da).values), _interior(outs["slope"]),
                               atol=1e-3)
    if res[0] == res[1]:  # gdaldem's aspect ignores the cell size (square cells assumed)
        g = _interior(outs["aspect"])
        _angle_close(_interior(aspect(da).values)[g != -9999], g[g != -9999], 5e-3)
    h = _interior(hillshade(da).values)
    assert np.abs(np.round(1 + 254 * h) - _interior(outs["hillshade"])).max() <= 1
    subprocess.run([GDALDEM, "slope", "-q", str(DATA / "rmnp_utm_dem.tif"),
                    str(tmp_path / "g.tif")], check=True)
    np.testing.assert_array_equal(to_numpy(stengine.read_raster(tmp_path / "g.tif")),
                                  to_numpy(stengine.read_raster(DATA / "rmnp_utm_slope.tif")))


def test_graph_keys_depend_on_every_parameter():
    """Two terrain results of one input in one compute must not share dask keys."""
    import dask

    da = to_backend(dem(nan=False), "dask", (4, 5))
    a, b = slope(da, cell_size=10), slope(da, cell_size=20)
    assert a.data.name != b.data.name and a.data.name == slope(da, cell_size=10).data.name
    x, y = dask.compute(a.data, b.data)
    assert np.nanmax(x) > np.nanmax(y)
    h1, h2 = hillshade(da, azimuth=0), hillshade(da, azimuth=90)
    assert h1.data.name != h2.data.name

"""zonal_stats / zonal_crosstab against the slow references, on every backend."""

import dask
import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from hypothesis import given, settings

from stengine import ops
from stengine.cube import get_grid, make_raster
from stengine.errors import ChunkError, DimensionError, GridMismatchError
from stengine.ops.zonal import zonal_crosstab, zonal_stats
from stengine.testing import chunkings, count_computes, make_cube, to_backend
from tests import reference_zonal as ref
from tests.conftest import CHUNKS

SHAPE = (7, 9)
MOMENTS = ["count", "sum", "mean", "min", "max", "std", "var"]
HIST = ["median", "majority", "minority", "unique"]
ORIGIN = (500000.0, 4000000.0)  # make_cube's grid: 30 m pixels, UTM 33N
RES = 30.0


def _world(coords):
    """Pixel (col, row) coordinates → make_cube's map coordinates."""
    c = np.asarray(coords, float)
    return np.c_[ORIGIN[0] + RES * c[:, 0], ORIGIN[1] - RES * c[:, 1]]


def _poly(shell, *holes):
    return shapely.Polygon(_world(shell), [_world(h) for h in holes])


def polygons():
    """Polygons in general position covering the awkward cases (pixel units)."""
    geoms = [
        _poly([(0.3, 0.2), (8.63, 1.13), (4.2, 6.7)]),  # big triangle, crosses chunks
        _poly([(2.1, 1.3), (7.7, 1.4), (7.6, 6.6), (2.2, 6.4)],  # overlaps the first,
              [(3.6, 2.7), (5.9, 2.6), (5.3, 4.8)]),  # with a hole
        shapely.MultiPolygon([_poly([(0.1, 4.2), (1.9, 4.1), (1.2, 6.8)]),
                              _poly([(6.4, 5.3), (8.9, 5.1), (8.8, 6.9)])]),
        _poly([(4.61, 3.63), (4.93, 3.71), (4.72, 3.88)]),  # inside one pixel, no centre
        _poly([(5.4, 0.4), (5.7, 0.45), (5.6, 0.7)]),  # small, holds centre (5.5, 0.5)
        _poly([(20.3, 1.2), (25.1, 2.3), (22.2, 5.9)]),  # wholly outside
        _poly([(-3.2, 5.3), (2.4, 5.6), (-1.1, 9.7)]),  # partly outside
    ]
    return gpd.GeoDataFrame({"name": list("abcdefg"), "pop": np.arange(7) * 10},
                            geometry=geoms, crs="EPSG:32633",
                            index=pd.Index([10, 11, 12, 13, 14, 15, 16], name="fid"))


RULES = {"centre": {}, "all_touched": {"all_touched": True}, "coverage": {"weights": "coverage"}}


def _weights(gdf, da, rule):
    g = get_grid(da)
    return ref.polygon_weights(list(gdf.to_crs(g.crs).geometry), g.transform, g.shape, rule)


def _assert_table(got, expected, stats):
    """Integer results exactly; floats to 1e-9 (coverage areas: pixel coordinates of
    4e6 m map coordinates carry ~1e-11 px of rounding)."""
    for s in stats:
        g = np.asarray(got[s], dtype=float)
        e = np.asarray(expected[s], dtype=float).reshape(g.shape)
        if np.asarray(got[s]).dtype.kind in "iu":
            np.testing.assert_array_equal(g, e, err_msg=s)
        else:
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=s)


def _eager_only_once(backend, chunks):
    if "dask" not in backend and chunks != CHUNKS[0]:
        pytest.skip("eager backends ignore chunks")


# --------------------------------------------------------------------------- zone rasters
def zone_raster(seed=3):
    """Zone ids 101..104 (not from 0), 0 = no zone; zone 104 sits only on nodata pixels."""
    rng = np.random.default_rng(seed)
    z = rng.choice([0, 101, 102, 103], size=SHAPE).astype("i4")
    z[0, :2] = 104
    return make_raster(z, get_grid(make_cube(SHAPE)), nodata=0)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_zone_raster_float(backend, chunks):
    _eager_only_once(backend, chunks)
    v = make_cube(SHAPE, "f4")  # NaN at the corners, so at zone 104's pixel (0, 0)
    v[0, 1] = np.nan  # and its other pixel: a zone with no valid pixel
    z = zone_raster()
    ids = [101, 102, 103, 104]
    out = zonal_stats(to_backend(v, backend, chunks), to_backend(z, backend, chunks),
                      stats=MOMENTS, zone_ids=ids if "dask" in backend else None)
    assert isinstance(out, pd.DataFrame) and out.index.name == "zone"
    assert out.index.tolist() == ids and list(out.columns) == MOMENTS
    assert out["count"].dtype == np.int64
    expected = ref.stats(v.values, ref.zone_weights(z.values, ids), MOMENTS)
    _assert_table(out, expected, MOMENTS)
    assert out.loc[104, "count"] == 0 and np.isnan(out.loc[104, "mean"])  # nodata-only zone


@pytest.mark.parametrize("chunks", CHUNKS)
def test_zone_raster_classes_and_time(backend, chunks):
    _eager_only_once(backend, chunks)
    v = make_cube((3, *SHAPE), "u1", classes=5, nodata=4)
    z = zone_raster()
    ids = [103, 101, 102, 104]  # result follows zone_ids' order
    stats = ["count", "sum", "mean", "min", "max", *HIST]
    out = zonal_stats(to_backend(v, backend, chunks), to_backend(z, backend, chunks),
                      stats=stats, zone_ids=ids)
    assert isinstance(out, xr.Dataset) and out["count"].dims == ("zone", "time")
    assert out["zone"].values.tolist() == ids
    np.testing.assert_array_equal(out["time"].values, v["time"].values)
    expected = ref.stats(v.values, ref.zone_weights(z.values, ids), stats, nodata=4)
    _assert_table(out, expected, stats)
    ct = zonal_crosstab(to_backend(v, backend, chunks), to_backend(z, backend, chunks),
                        zone_ids=ids)
    assert ct.dims == ("zone", "time", "class") and ct["class"].values.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(ct.values, ref.crosstab(v.values, ref.zone_weights(
        z.values, ids), [0, 1, 2, 3]))


def test_zone_raster_crosstab_table():
    v = make_cube(SHAPE, "u1", classes=6, nodata=0)
    v[0, 1] = 0  # zone 104 (pixels (0, 0) and (0, 1)) sees only nodata
    z = zone_raster()
    ct = zonal_crosstab(v, z, classes=[5, 1, 2, 9])
    assert ct.columns.name == "class" and ct.columns.tolist() == [5, 1, 2, 9]
    ids = [101, 102, 103, 104]
    w = ref.zone_weights(z.values, ids)
    np.testing.assert_array_equal(ct.to_numpy(), ref.crosstab(v.values, w, [5, 1, 2, 9]))
    frac = zonal_crosstab(v, z, normalize=True)
    full = ref.crosstab(v.values, w, [1, 2, 3, 4, 5])
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(frac.to_numpy(), full / full.sum(1, keepdims=True),
                                   equal_nan=True)
    assert np.isnan(frac.loc[104]).all()  # only nodata there


@settings(max_examples=15, deadline=None)
@given(chunks=chunkings(SHAPE))
def test_zone_raster_random_chunkings(chunks):
    v = make_cube(SHAPE, "i2", classes=50, nodata=-1)
    z = zone_raster(seed=5)
    ids = [101, 102, 103, 104]
    stats = ["count", "sum", "std", "min", "median", "majority"]
    out = zonal_stats(to_backend(v, "dask", chunks), to_backend(z, "dask", (3, 4)),
                      stats=stats, zone_ids=ids)
    _assert_table(out, ref.stats(v.values, ref.zone_weights(z.values, ids), stats, nodata=-1),
                  stats)


# --------------------------------------------------------------------------- polygons
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("chunks", CHUNKS)
def test_polygons_float(backend, chunks, rule):
    _eager_only_once(backend, chunks)
    v = make_cube(SHAPE, "f8", seed=7)
    gdf = polygons()
    out = zonal_stats(to_backend(v, backend, chunks), gdf, stats=MOMENTS, **RULES[rule])
    assert isinstance(out, gpd.GeoDataFrame) and out.index.equals(gdf.index)
    assert out["name"].tolist() == list("abcdefg") and out.crs == gdf.crs
    assert out["count"].dtype == (np.float64 if rule == "coverage" else np.int64)
    w = _weights(gdf, v, rule)
    _assert_table(out, ref.stats(v.values, w, MOMENTS), MOMENTS)
    counts = out["count"].to_numpy()
    assert counts[5] == 0 and np.isnan(out["mean"].iloc[5])  # outside the raster
    assert (counts[3] == 0) == (rule == "centre")  # smaller than a pixel, no centre
    assert counts[4] > 0


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("chunks", CHUNKS)
def test_polygons_classes_time(backend, chunks, rule):
    _eager_only_once(backend, chunks)
    v = make_cube((2, *SHAPE), "u1", classes=4, nodata=3, seed=8)
    gdf = polygons().to_crs("EPSG:4326")  # any CRS: reprojected to the raster's
    stats = ["count", "mean", "max", "majority", "minority", "unique"]
    if rule != "coverage":
        stats.append("median")
    out = zonal_stats(to_backend(v, backend, chunks), gdf, stats=stats, **RULES[rule])
    assert isinstance(out, xr.Dataset) and out["mean"].dims == ("zone", "time")
    assert out["name"].dims == ("zone",) and out["zone"].values.tolist() == gdf.index.tolist()
    # reference on the reprojected geometry, as the op sees it
    w = _weights(gdf, v, rule)
    _assert_table(out, ref.stats(v.values, w, stats, nodata=3), stats)
    ct = zonal_crosstab(to_backend(v, backend, chunks), gdf, **RULES[rule])
    np.testing.assert_allclose(ct.values, ref.crosstab(v.values, w, [0, 1, 2]), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(chunks=chunkings(SHAPE))
def test_polygons_random_chunkings(chunks):
    v = make_cube(SHAPE, "f4", seed=9)
    gdf = polygons()
    for rule, kw in RULES.items():
        out = zonal_stats(to_backend(v, "dask", chunks), gdf, stats=MOMENTS, **kw)
        _assert_table(out, ref.stats(v.values, _weights(gdf, v, rule), MOMENTS), MOMENTS)


def test_overlapping_polygons_count_their_own_pixels():
    v = make_cube(SHAPE, "f4", nan_fraction=0)  # NaN only at the four corners
    a = _poly([(0.2, 0.3), (6.7, 0.1), (6.6, 5.8), (0.1, 5.9)])  # centres of cols 0-6, rows 0-5
    b = _poly([(3.2, 2.3), (8.7, 2.1), (8.6, 6.8)])
    gdf = gpd.GeoDataFrame(geometry=[a, a, b], crs="EPSG:32633")
    out = zonal_stats(v, gdf, stats=["count", "sum"])
    assert out["count"].tolist()[:2] == [41, 41]  # 7 × 6 pixels less the NaN corner, twice
    assert out["sum"].iloc[0] == out["sum"].iloc[1]
    wa, wb = _weights(gdf.iloc[[0, 2]], v, "centre")
    shared = int(((wa > 0) & (wb > 0)).sum())
    valid = ~np.isnan(v.values)
    assert shared > 0 and out["count"].iloc[2] == (wb * valid).sum()  # b counts them too


def test_path_input_and_geoseries(tmp_path):
    v = make_cube(SHAPE, "f4", seed=4)
    gdf = polygons()
    path = tmp_path / "zones.gpkg"
    gdf.to_file(path)
    by_path = zonal_stats(v, path, stats=["count", "mean"])
    by_gdf = zonal_stats(v, gdf.reset_index(drop=True), stats=["count", "mean"])
    np.testing.assert_array_equal(by_path["count"], by_gdf["count"])
    np.testing.assert_allclose(by_path["mean"], by_gdf["mean"], equal_nan=True)
    by_series = zonal_stats(v, gdf.geometry, stats=["count"])
    assert by_series["count"].tolist() == by_gdf["count"].tolist()


def test_one_pass_and_only_needed_chunks_are_read():
    """One dask compute; chunks that no polygon reaches are never read."""
    read = []

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        read.append((r0, c0))
        return np.ones((r1 - r0, c1 - c0), "f4")

    data = dsa.map_blocks(block, chunks=((4, 3), (3, 3, 3)), dtype="f4",
                          meta=np.empty((0, 0), "f4"))
    v = make_raster(data, get_grid(make_cube(SHAPE)))
    gdf = gpd.GeoDataFrame(geometry=[_poly([(0.2, 0.3), (2.6, 0.4), (1.5, 2.7)])],
                           crs="EPSG:32633")
    with count_computes(1) as sched:
        out = zonal_stats(v, gdf, stats=["count"])
    assert sched.count == 1 and out["count"].iloc[0] > 0
    assert read == [(0, 0)]


def test_no_valid_pixel_zone_and_empty_geometry():
    v = make_cube(SHAPE, "f4", nan_fraction=0)
    v[:, :3] = np.nan
    far = shapely.box(600000, 4100000, 600100, 4100100)  # off the raster: legitimately 0
    gdf = gpd.GeoDataFrame(geometry=[_poly([(0.2, 0.3), (2.6, 0.4), (1.5, 6.7)]), far],
                           crs="EPSG:32633")
    out = zonal_stats(v, gdf, stats=["count", "sum", "max"])
    assert out["count"].tolist() == [0, 0]
    assert out[["sum", "max"]].isna().all().all()
    # empty and missing geometries cover nothing by mistake, not by design: refused
    for bad, what in ((shapely.Polygon(), "empty"), (None, "missing")):
        zones = gpd.GeoDataFrame(geometry=[far, bad], index=["a", "b"], crs="EPSG:32633")
        with pytest.raises(ValueError, match=rf"zones has {what}.*row 1 \(index 'b'\)"):
            zonal_stats(v, zones)


def test_accessor():
    if "zonal_stats" not in ops.__all__:
        pytest.skip("stengine.ops does not export the zonal ops yet (ops/__init__.py)")
    v = make_cube(SHAPE, "f4")
    z = zone_raster()
    pd.testing.assert_frame_equal(v.st.zonal_stats(z, stats=["mean"]),
                                  zonal_stats(v, z, stats=["mean"]))
    pd.testing.assert_frame_equal(make_cube(SHAPE, "u1", classes=3).st.zonal_crosstab(z),
                                  zonal_crosstab(make_cube(SHAPE, "u1", classes=3), z))


# --------------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    v = make_cube(SHAPE, "f4")
    gdf = polygons()
    with pytest.raises(ValueError, match="zones has no CRS"):
        zonal_stats(v, gdf.set_crs(None, allow_override=True))
    with pytest.raises(ValueError, match="empty GeoDataFrame"):
        zonal_stats(v, gdf.iloc[:0])
    with pytest.raises(TypeError, match=r"zones must have a integer \(zone id\) dtype"):
        zonal_stats(v, zone_raster().astype("f4"))
    with pytest.raises(GridMismatchError, match="zones is not on the grid of values"):
        zonal_stats(v, make_raster(np.ones((7, 9), "i4"), get_grid(make_cube(
            SHAPE, origin=(500030.0, 4000000.0)))))
    with pytest.raises(ChunkError, match="zone_ids="):
        zonal_stats(v, to_backend(zone_raster(), "dask", (3, 3)))
    with pytest.raises(ValueError, match="unknown statistics"):
        zonal_stats(v, gdf, stats=["mean", "mode"])
    with pytest.raises(TypeError, match=r"\['median'\] need integer values"):
        zonal_stats(v, gdf, stats=["median"])
    with pytest.raises(ValueError, match="median is not available with weights='coverage'"):
        zonal_stats(make_cube(SHAPE, "u1", classes=3), gdf, stats=["median"],
                    weights="coverage")
    with pytest.raises(ValueError, match="apply to polygon zones"):
        zonal_stats(v, zone_raster(), weights="coverage")
    with pytest.raises(ValueError, match="either all_touched=True or weights='coverage'"):
        zonal_stats(v, gdf, all_touched=True, weights="coverage")
    with pytest.raises(ValueError, match="weights must be None or 'coverage'"):
        zonal_stats(v, gdf, weights="area")
    with pytest.raises(TypeError, match=r"Polygon or MultiPolygon geometries; got \['Point'\]"):
        zonal_stats(v, gpd.GeoDataFrame(geometry=[shapely.Point(500000, 4000000)],
                                        crs="EPSG:32633"))
    with pytest.raises(TypeError, match="zones must be an integer zone raster"):
        zonal_stats(v, np.zeros(SHAPE, "i4"))
    with pytest.raises(DimensionError, match=r"zones must be a 2-D \(y, x\) raster"):
        zonal_stats(v, make_cube((2, *SHAPE), "i4", classes=3))
    with pytest.raises(ValueError, match="values has no CRS"):
        zonal_stats(make_raster(np.ones(SHAPE, "f4")), gdf)
    with pytest.raises(ValueError, match="could not read zones from"):
        zonal_stats(v, "/nonexistent/zones.gpkg")
    with pytest.raises(ValueError, match="zones already has columns"):
        zonal_stats(v, gdf.assign(mean=1.0), stats=["mean"])
    with pytest.raises(TypeError, match="integer class raster"):
        zonal_crosstab(v, gdf)
    with pytest.raises(ValueError, match="zone_ids= is for zone rasters"):
        zonal_stats(v, gdf, zone_ids=[1])


def test_histogram_budget_error():
    from stengine.ops import _zonal_partials as P

    v = make_cube(SHAPE, "i4", nan_fraction=0)
    v[0, 0] = 2**30  # a value range no dense histogram should span
    with pytest.raises(ValueError, match="reclassify the values to fewer classes"):
        zonal_stats(v, polygons(), stats=["majority"])
    assert P.HIST_BUDGET >= 2**20


def test_dask_scheduler_results_equal_eager():
    v = make_cube((2, *SHAPE), "f4", seed=11)
    gdf = polygons()
    eager = zonal_stats(v, gdf, stats=MOMENTS)
    with dask.config.set(scheduler="threads"):
        lazy = zonal_stats(to_backend(v, "dask", {"time": 1, "y": 2, "x": 4}), gdf,
                           stats=MOMENTS)
    for s in MOMENTS:
        np.testing.assert_allclose(lazy[s].values, eager[s].values, rtol=1e-12,
                                   equal_nan=True)


def test_mixed_eager_dask_and_named_dims():
    v = make_cube((2, *SHAPE), "f4", seed=12)
    z = zone_raster()
    ids = [101, 102, 103, 104]
    want = ref.stats(v.values, ref.zone_weights(z.values, ids), ["count", "mean"])
    for vv, zz in ((v, to_backend(z, "dask", (3, 4))), (to_backend(v, "dask", (4, 5)), z)):
        out = zonal_stats(vv, zz, stats=["count", "mean"], zone_ids=ids)
        _assert_table(out, want, ["count", "mean"])
    renamed = v.rename(y="lat", x="lon").transpose("lat", "time", "lon")
    out = zonal_stats(renamed, z.rename(y="lat", x="lon"), stats=["count", "mean"],
                      dims=("lat", "lon"))
    _assert_table(out, want, ["count", "mean"])
    poly = zonal_stats(renamed, polygons(), stats=["count"], dims=("lat", "lon"))
    _assert_table(poly, ref.stats(v.values, _weights(polygons(), v, "centre"), ["count"]),
                  ["count"])

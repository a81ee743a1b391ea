import numpy as np
import pandas as pd
import pytest

from stengine.errors import DimensionError
from stengine.index import htm
from stengine.ops import interpolate as I

R_KM = 6371.0088


def haversine_km(lon1, lat1, lon2, lat2):
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    h = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * R_KM * np.arcsin(np.sqrt(h))


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(7)
    n = 40_000
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    t = pd.Timestamp("2013-02-01") + pd.to_timedelta(rng.uniform(0, 3 * 86400, n), unit="s")
    v = rng.lognormal(3, 1, n)
    v[::97] = np.nan
    return pd.DataFrame({"lon": lon, "lat": lat, "time": t, "flux": v})


def test_local_time(records):
    t = records.time
    hours = t.dt.hour + t.dt.minute / 60 + (t.dt.second + t.dt.microsecond / 1e6) / 3600
    want = np.mod(hours + records.lon / 15, 24)
    got = I.local_solar_time(records.lon.to_numpy(), records.time.to_numpy())
    np.testing.assert_allclose(got, want, atol=1e-9)
    b = I.local_time_bin(records.lon.to_numpy(), records.time.to_numpy())
    np.testing.assert_array_equal(b, np.floor(want / 3).astype(int).clip(0, 7))
    assert set(np.unique(b)) == set(range(8))


@pytest.mark.parametrize("lt_bin", [None, 0, 5])
def test_cell_means_against_groupby(records, lt_bin):
    level = 3
    got = I.cell_means(records, "flux", level=level, lt_bin=lt_bin)
    df = records.dropna(subset=["flux"])
    if lt_bin is not None:
        hours = (df.time - df.time.dt.normalize()).dt.total_seconds() / 3600
        lt = np.mod(hours + df.lon / 15, 24)
        df = df[np.floor(lt / 3) == lt_bin]
    ids = htm.lonlat_to_id(df.lon.to_numpy(), df.lat.to_numpy(), level)
    g = df.groupby(ids).flux.agg(["mean", "count"])
    assert got.sizes["cells"] == 8 * 4 ** level and got.attrs["grid_name"] == "htm"
    s = got.to_series()
    s.index = got.cell_ids.values
    np.testing.assert_allclose(s.loc[g.index.values].to_numpy(), g["mean"].to_numpy(), rtol=1e-12)
    assert np.isnan(s.drop(g.index.values)).all()
    assert int(got["count"].sum()) == len(df)


def test_cell_means_dask_equals_pandas(records):
    dd = pytest.importorskip("dask.dataframe")
    a = I.cell_means(records, "flux", level=4, lt_bin=2)
    b = I.cell_means(dd.from_pandas(records, npartitions=5), "flux", level=4, lt_bin=2)
    assert hasattr(b.data, "dask")
    np.testing.assert_allclose(b.values, a.values, rtol=1e-12, equal_nan=True)


def brute_idw(ids, vals, power, radius):
    lon, lat = htm.centre(ids)
    out = vals.copy()
    have = np.isfinite(vals)
    for i in np.flatnonzero(~have):
        d = haversine_km(lon[i], lat[i], lon[have], lat[have])
        near = d <= radius
        if near.any():
            w = d[near] ** -power
            out[i] = (w * vals[have][near]).sum() / w.sum()
    return out


@pytest.mark.parametrize("level, radius, frac", [(4, 500.0, 0.3), (5, 500.0, 0.05),
                                                 (3, 2000.0, 0.2)])
def test_idw_against_brute_force(level, radius, frac):
    rng = np.random.default_rng(level)
    n = 8 * 4 ** level
    vals = np.where(rng.uniform(size=n) < frac, rng.normal(10, 3, n), np.nan)
    from stengine.cube.cells import make_cell_cube

    ids = np.arange(8 << (2 * level), 16 << (2 * level), dtype=np.uint64)
    cube = make_cell_cube(vals, ids, grid="htm", level=level)
    got = I.idw_fill(cube, power=3, radius_km=radius, block=300)
    assert hasattr(got.data, "dask")
    want = brute_idw(ids, vals, 3, radius)
    np.testing.assert_allclose(got.values, want, rtol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(got.filled.values, np.isnan(vals))
    # some cells were filled, and (at 500 km with sparse data) some stay empty
    assert np.isfinite(got.values[np.isnan(vals)]).any()
    if level == 5:
        assert np.isnan(got.values).any()


def test_local_time_map(records):
    m = I.local_time_map(records, "flux", level=3, lt_bin=0).compute()
    means = I.cell_means(records, "flux", level=3, lt_bin=0)
    observed = np.isfinite(means.values)
    np.testing.assert_array_equal(m.values[observed], means.values[observed])
    assert np.isfinite(m.values).sum() >= observed.sum()


def test_bad_input(records):
    with pytest.raises(DimensionError, match="missing \\['nope'\\]"):
        I.cell_means(records, "nope", level=3)
    with pytest.raises(DimensionError, match="1-D HTM cell cube"):
        from stengine.cube.cells import make_cell_cube

        I.idw_fill(make_cell_cube(np.zeros((2, 8)), np.arange(8, 16), grid="htm", level=0))
    with pytest.raises(ValueError, match="nbins"):
        I.local_time_bin([0.0], np.array(["2013-01-01"], "datetime64[ns]"), nbins=0)

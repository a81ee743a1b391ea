"""Property-based tests (hypothesis) of the index round trips over their whole valid domain.

HTM (lon/lat -> id -> trixel, centre, name), H3 (the numba port against the h3 package),
time cells (any time form -> cell -> interval) and HTM-ST keys (encode -> decode, covers
contain the keys of the points inside), and that each refuses everything outside its
domain: latitudes beyond +-90, NaN, times outside the task interval or the int64-ns range.

Profiles: ``ci`` (default, ~100 examples a test) and ``dev`` (1000); choose with
``STENGINE_HYPOTHESIS_PROFILE=dev``.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
from h3.api import basic_int as h3i
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stengine.errors import IndexRangeError
from stengine.index import Box, Cap, Polygon, htm, htmst
from stengine.index import h3 as sth3
from stengine.index import ranges as R
from stengine.index.htmst import KeyScheme
from stengine.index.timecode import NS_MAX, NS_MIN, TimeGrid, to_ns

from . import reference as ref

for _name, _n in (("ci", 100), ("dev", 1000)):
    try:
        settings.get_profile(_name)
    except Exception:  # not registered yet (hypothesis raises InvalidArgument)
        settings.register_profile(_name, max_examples=_n, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings(settings.get_profile(os.environ.get("STENGINE_HYPOTHESIS_PROFILE", "ci")),
                   deadline=None)

# ---------------------------------------------------------------- strategies
lats = st.floats(-90.0, 90.0, allow_nan=False)
lons = st.one_of(st.floats(-180.0, 180.0), st.floats(-1e6, 1e6),
                 st.sampled_from([0.0, 90.0, 180.0, -180.0, 270.0, 360.0, -0.0, 1e300]))
bad_lats = st.one_of(st.floats(90.0, 1e300, exclude_min=True),
                     st.floats(-1e300, -90.0, exclude_max=True),
                     st.sampled_from([np.nan, np.inf, -np.inf, 90.0000001, -90.0000001]))
bad_lons = st.sampled_from([np.nan, np.inf, -np.inf])
UNITS = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}


@st.composite
def points(draw, n_max=8):
    n = draw(st.integers(1, n_max))
    return (np.array(draw(st.lists(lons, min_size=n, max_size=n))),
            np.array(draw(st.lists(lats, min_size=n, max_size=n))))


@st.composite
def htm_ids(draw, max_level=htm.MAX_LEVEL):
    level = draw(st.integers(0, max_level))
    face = draw(st.integers(8, 15))
    digits = draw(st.integers(0, 4 ** level - 1))
    return (face << (2 * level)) | digits, level


@st.composite
def grids(draw):
    """A TimeGrid anywhere in the ns range (any length up to the 2**62 ns limit)."""
    fanout = draw(st.sampled_from([2, 4, 8, 16]))
    dur = draw(st.one_of(st.integers(1, 10 ** 6), st.integers(1, (1 << 62) - 1)))
    t0 = draw(st.integers(NS_MIN, NS_MAX - dur))
    return TimeGrid(np.datetime64(t0, "ns"), np.datetime64(t0 + dur, "ns"), fanout)


def whole(ns: int, unit: str) -> int:
    """``ns`` rounded down to a whole number of ``unit`` (up, where down leaves the range)."""
    v = ns // UNITS[unit]
    return v + 1 if v * UNITS[unit] < NS_MIN else v


def time_forms(ns: int, unit: str):
    """The same instant (``whole(ns, unit)`` units) in every form to_ns reads."""
    v = whole(ns, unit)
    d64 = np.datetime64(v, unit)
    forms = [np.array([d64]), d64, pd.DatetimeIndex(np.array([d64])), pd.Series([d64]),
             str(d64), [str(d64) + "Z"], [pd.Timestamp(d64)],
             pd.DatetimeIndex(np.array([d64])).tz_localize("UTC").tz_convert("Asia/Kathmandu")]
    if unit in ("s", "ms", "us"):
        py = pd.Timestamp(d64).to_pydatetime()
        forms += [py, [py.replace(tzinfo=dt.UTC)],
                  py.replace(tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(
                      hours=-5, minutes=-30)))]
    return forms


# ---------------------------------------------------------------- HTM
@PROFILE
@given(p=points(), level=st.integers(0, htm.MAX_LEVEL))
def test_htm_point_lies_in_its_trixel(p, level):
    lon, lat = p
    ids = htm.lonlat_to_id(lon, lat, level)
    assert (htm.id_level(ids) == level).all()
    xyz = ref.unit(np.fmod(lon, 360.0), lat)  # fmod is exact: wrap in degrees, as HTM does
    for i, hid in enumerate(ids.tolist()):
        # inside up to the rounding of the point itself (~1e-16 rad; 1e-13 is ~1 um)
        assert ref.margin(ref.vertices(hid), xyz[i]) > -1e-13, (lon[i], lat[i], hid)
    if level:  # the parent of a point's trixel is the trixel of the level above
        np.testing.assert_array_equal(htm.parent(ids), htm.lonlat_to_id(lon, lat, level - 1))


@PROFILE
@given(h=htm_ids())
def test_htm_centre_name_roundtrip(h):
    hid, level = h
    name = htm.id_to_name(hid)
    assert len(name) == level + 2 and htm.name_to_id(name) == hid
    lon, lat = htm.centre(hid)
    assert int(htm.lonlat_to_id(lon, lat, level)) == hid
    kids = htm.children(hid) if level < htm.MAX_LEVEL else None
    if kids is not None:
        assert (htm.parent(kids) == hid).all()
        a, b = htm.descendants([hid], level + 1)[0]
        assert kids.tolist() == list(range(int(a), int(b)))


@PROFILE
@given(lon=lons, lat=bad_lats, level=st.integers(0, htm.MAX_LEVEL))
def test_htm_refuses_bad_lat(lon, lat, level):
    with pytest.raises(IndexRangeError, match=r"lat must be in \[-90, 90\]"):
        htm.lonlat_to_id([0.0, lon], [0.0, lat], level)


@PROFILE
@given(lon=bad_lons, lat=lats)
def test_htm_refuses_bad_lon(lon, lat):
    with pytest.raises(IndexRangeError, match="lon must be finite"):
        htm.lonlat_to_id([lon], [lat], 5)


@pytest.mark.parametrize("level", [-1, 30, 2.0, True, "3"])
def test_htm_refuses_bad_level(level):
    with pytest.raises(IndexRangeError, match=r"level must be an integer HTM level in 0\.\.29"):
        htm.lonlat_to_id([0.0], [0.0], level)


# ---------------------------------------------------------------- H3
@PROFILE
@given(p=points(), level=st.integers(0, sth3.MAX_LEVEL))
def test_h3_equals_h3_package_and_centre_roundtrip(p, level):
    lon, lat = p
    cells = sth3.lonlat_to_cell(lon, lat, level)
    want = [h3i.latlng_to_cell(b, a, level) for a, b in zip(lon, lat, strict=True)]
    assert cells.tolist() == want
    assert sth3.is_valid(cells).all() and (sth3.cell_level(cells) == level).all()
    clon, clat = sth3.cell_to_lonlat(cells)
    ll = [h3i.cell_to_latlng(c) for c in want]
    assert clat.tolist() == [a for a, _ in ll] and clon.tolist() == [b for _, b in ll]
    np.testing.assert_array_equal(sth3.lonlat_to_cell(clon, clat, level), cells)
    up = level // 2
    assert sth3.cell_to_parent(cells, up).tolist() == [h3i.cell_to_parent(c, up) for c in want]


@PROFILE
@given(p=points(n_max=3), level=st.integers(0, sth3.MAX_LEVEL),
       flips=st.lists(st.integers(0, 63), max_size=3), raw=st.integers(0, 2 ** 64 - 1))
def test_h3_is_valid_equals_h3_package(p, level, flips, raw):
    cells = sth3.lonlat_to_cell(*p, level)
    for b in flips:  # cells with a bit flipped: mode, resolution, base cell or a digit
        cells = np.r_[cells, cells[:1] ^ np.uint64(1 << b)]
    cells = np.r_[cells, np.uint64(raw), np.array(h3i.get_pentagons(level)[:2], np.uint64)]
    want = [h3i.is_valid_cell(int(c)) for c in cells]
    assert sth3.is_valid(cells).tolist() == want
    if not all(want):
        with pytest.raises(IndexRangeError, match="cells must be valid H3 cell ids"):
            sth3.cell_to_parent(cells, 0)


@PROFILE
@given(lon=lons, lat=bad_lats, level=st.integers(0, sth3.MAX_LEVEL))
def test_h3_refuses_bad_lat(lon, lat, level):
    with pytest.raises(IndexRangeError, match=r"lat must be in \[-90, 90\]"):
        sth3.lonlat_to_cell([0.0, lon], [0.0, lat], level)


@PROFILE
@given(lon=bad_lons, lat=lats)
def test_h3_refuses_bad_lon(lon, lat):
    with pytest.raises(IndexRangeError, match="lon must be finite"):
        sth3.lonlat_to_cell([lon], [lat], 5)
    with pytest.raises(IndexRangeError, match="lon must be finite"):
        sth3.grid_to_cells(np.array([0.0, lon]), np.array([lat]), 5)


# ---------------------------------------------------------------- time
@PROFILE
@given(ns=st.integers(NS_MIN, NS_MAX), unit=st.sampled_from(list(UNITS)))
def test_to_ns_is_exact_for_every_unit_and_form(ns, unit):
    want = whole(ns, unit) * UNITS[unit]
    for form in time_forms(ns, unit):
        got = to_ns(form)
        assert np.ravel(got).tolist() == [want], (type(form), form)


@PROFILE
@given(year=st.one_of(st.integers(1, 1676), st.integers(2263, 9999)),
       unit=st.sampled_from(["D", "s", "ms", "us"]))
def test_to_ns_refuses_times_outside_the_ns_range(year, unit):
    t = np.datetime64(f"{year:04d}-06-15", unit)
    forms = [np.array([np.datetime64("2013-01-01", unit), t]), t, f"{year:04d}-06-15",
             pd.DatetimeIndex(np.array([t]))]
    if unit != "D":
        forms.append(dt.datetime(year, 6, 15))
    for form in forms:
        with pytest.raises(IndexRangeError, match=r"mytime must be within the datetime64\[ns\] "
                                                  r"range \[1677-09-21.*2262-04-11"):
            to_ns(form, where="f", name="mytime")


@PROFILE
@given(g=grids(), level=st.integers(0, 15), fracs=st.lists(st.floats(0, 1, exclude_max=True),
                                                          min_size=1, max_size=6),
       unit=st.sampled_from(list(UNITS)))
def test_time_cells_contain_their_times(g, level, fracs, unit):
    assume(g.bits * (level + 1) <= 63)
    f = UNITS[unit]
    # times in [t0, t1) that are whole numbers of `unit`
    lo, hi = -(-g.t0 // f), (g.t1 - 1) // f
    assume(lo <= hi)
    vals = [lo + min(hi - lo, int(x * (hi - lo + 1))) for x in fracs]
    times = np.array(vals, dtype=np.int64).astype(f"datetime64[{unit}]")
    ns = np.array(vals, dtype=object) * f
    cells = g.encode(times, level)
    assert cells.tolist() == [(t - g.t0) * g.n_cells(level) // g.duration for t in ns]
    start, stop = g.bounds_ns(cells, level)
    assert all(a <= t < b for a, t, b in zip(start.tolist(), ns, stop.tolist(), strict=True))
    if level:  # parent = the cell one level up, and the children partition the parent
        up = g.encode(times, level - 1)
        np.testing.assert_array_equal(cells >> np.uint64(g.bits), up)
        pa, pz = g.bounds_ns(up, level - 1)
        kids = (up[:1] << np.uint64(g.bits)) + np.arange(g.fanout, dtype=np.uint64)
        ka, kz = g.bounds_ns(kids, level)
        assert ka[0] == pa[0] and kz[-1] == pz[0] and (ka[1:] == kz[:-1]).all()


@PROFILE
@given(g=grids(), before=st.booleans(), off=st.integers(0, 2 ** 62))
def test_time_cells_refuse_times_outside_the_grid(g, before, off):
    t = g.t0 - 1 - off if before else g.t1 + off
    assume(NS_MIN <= t <= NS_MAX)
    with pytest.raises(IndexRangeError, match=r"time must lie in the task interval \["):
        g.encode(np.array([g.t0, t], "datetime64[ns]"), 0)


@PROFILE
@given(year=st.one_of(st.integers(1000, 1676), st.integers(2263, 3000)))
def test_time_cells_refuse_times_outside_the_ns_range(year):
    g = TimeGrid("2013-01-01", "2014-01-01", fanout=4)
    with pytest.raises(IndexRangeError, match=r"time must be in the task interval "
                                              r"\[2013-01-01.*2014-01-01.*datetime64\[ns\] range"):
        g.encode(np.array([f"{year}-03-01"], "datetime64[s]"), 2)
    with pytest.raises(IndexRangeError, match="t0 must be within the datetime64"):
        TimeGrid(np.datetime64(f"{year}-03-01", "s"), "2014-01-01")
    with pytest.raises(IndexRangeError, match="stop must be within the datetime64"):
        g.cover("2013-01-01", np.datetime64(f"{year}-03-01", "s"), 1)
    s = KeyScheme("htmst", 3, g.start, g.stop, 4)
    with pytest.raises(IndexRangeError, match=r"time\[1\] \(stop\) must be within.*pass None"):
        s.cover(None, ("2013-02-01", f"{year}-03-01"))
    with pytest.raises(IndexRangeError, match=f"time '{year}-03' \\(its start\\) must be within"):
        s.cover(None, f"{year}-03")


def test_time_refuses_nat_naming_the_argument():
    g = TimeGrid("2013-01-01", "2014-01-01")
    for nat in (np.array(["2013-02-01", "NaT"], "datetime64[s]"), [None], pd.NaT, "NaT",
                pd.DatetimeIndex(["2013-02-01", None]).as_unit("us")):
        with pytest.raises(IndexRangeError, match="time contains NaT"):
            g.encode(nat, 1)
    with pytest.raises(IndexRangeError, match="t1 contains NaT"):
        TimeGrid("2013-01-01", np.datetime64("NaT"))


# ---------------------------------------------------------------- HTM-ST keys
@st.composite
def schemes(draw, max_level=19):
    kind = draw(st.sampled_from(htmst.KINDS))
    fanout = draw(st.sampled_from([2, 4, 8]))
    b = fanout.bit_length() - 1
    level = draw(st.integers(0, min(max_level, (59 - b) // (b + 2))))
    g = draw(grids())
    return KeyScheme(kind, level, g.start, g.stop, fanout)


@st.composite
def records(draw, scheme, n_max=6):
    lon, lat = draw(points(n_max))
    fr = draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=lon.size, max_size=lon.size))
    dur = scheme.t1 - scheme.t0
    ns = np.array([scheme.t0 + min(dur - 1, int(f * dur)) for f in fr], dtype=np.int64)
    return lon, lat, ns


@PROFILE
@given(data=st.data())
def test_htmst_encode_decode_roundtrip(data):
    s = data.draw(schemes())
    lon, lat, ns = data.draw(records(s))
    keys = s.encode(lon, lat, ns.astype("datetime64[ns]"))
    assert (keys >> np.uint64(s.bits - 1) == 1).all()
    h, k = s.decode(keys)
    np.testing.assert_array_equal(h, htm.lonlat_to_id(lon, lat, s.level))
    np.testing.assert_array_equal(k, s.time.encode_ns(ns, s.level))
    np.testing.assert_array_equal(s.encode_ids(h, k), keys)
    if s.kind == "htmst":  # every coarser coupled cell's key range holds the key
        for lv in range(s.level + 1):
            r = s.cell_range(keys, lv)
            assert ((r[:, 0] <= keys) & (keys < r[:, 1])).all()


@st.composite
def regions(draw, lon0, lat0):
    """A Cap, Box (possibly across the antimeridian) or triangle holding ``(lon0, lat0)``."""
    kind = draw(st.sampled_from(["cap", "box", "polygon"]))
    if kind == "cap":
        return Cap(lon0, lat0, draw(st.floats(0.01, 60.0)))
    if kind == "box":
        w, e = draw(st.floats(0.0, 40.0)), draw(st.floats(0.01, 40.0))
        s_, n_ = draw(st.floats(0.0, 30.0)), draw(st.floats(0.0, 30.0))
        lo = (lon0 - w + 180.0) % 360.0 - 180.0  # may give lon_max < lon_min: crossing 180
        hi = (lon0 + e + 180.0) % 360.0 - 180.0
        return Box(lo, max(-90.0, lat0 - s_), hi, min(90.0, lat0 + n_))
    off = draw(st.lists(st.tuples(st.floats(-20.0, 20.0), st.floats(-20.0, 20.0)), min_size=3,
                        max_size=3))
    try:  # a triangle around (lon0, lat0) in a local tangent frame
        c = ref.unit(lon0, lat0).astype(float)
        e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0.0, 0.0], c)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(c, e1)
        ang = [0.0, 2.1, 4.2]
        pts = [c + np.tan(np.radians(10.0 + abs(dx))) * (np.cos(t + np.radians(dy)) * e1 +
                                                         np.sin(t + np.radians(dy)) * e2)
               for (dx, dy), t in zip(off, ang, strict=True)]
        pts = np.array([p_ / np.linalg.norm(p_) for p_ in pts])
        lo, la = ref.to_lonlat(pts)
        return Polygon(lo, la)
    except IndexRangeError:
        assume(False)


@PROFILE
@given(data=st.data())
def test_htm_covers_contain_the_ids_of_points_inside(data):
    lon, lat = data.draw(points(n_max=16))
    reg = data.draw(regions(float(np.fmod(lon[0], 360.0)), float(lat[0])))
    level = data.draw(st.integers(0, 14))
    max_ranges = data.draw(st.sampled_from([None, 4, 32])) if level <= 7 else \
        data.draw(st.sampled_from([4, 32]))
    ids = htm.lonlat_to_id(lon, lat, level)
    inside = reg.contains(lon, lat)
    env = htm.cover(reg, level, max_ranges=max_ranges)
    assert R.contains(env, ids[inside]).all()
    inner = htm.cover(reg, level, interior=True, max_ranges=max_ranges)
    assert not R.contains(inner, ids[~inside]).any()
    assert R.size(R.difference(inner, env)) == 0  # interior within the envelope


@PROFILE
@given(data=st.data())
def test_htmst_covers_contain_the_keys_of_points_inside(data):
    s = data.draw(schemes(max_level=10))
    lon, lat, ns = data.draw(records(s, n_max=12))
    lon[0] = np.fmod(lon[0], 360.0)
    c = data.draw(regions(float(lon[0]), float(lat[0])))
    dur = s.t1 - s.t0
    a = s.t0 + data.draw(st.integers(0, dur - 1))
    b = a + data.draw(st.integers(1, dur))
    iv = (np.datetime64(a, "ns"), np.datetime64(min(b, s.t1), "ns"))
    ns[0] = a  # the cap's centre at the interval's start is inside
    max_ranges = data.draw(st.sampled_from([None, 8, 64])) if s.level <= 6 else \
        data.draw(st.sampled_from([8, 64]))
    keys = s.encode_ns(lon, lat, ns)
    inside = c.contains(lon, lat) & (ns >= a) & (ns < b)
    env = s.cover(c, iv, max_ranges=max_ranges)
    assert R.contains(env, keys[inside]).all()
    if max_ranges:
        assert len(env) <= max_ranges
    inner = s.cover(c, iv, interior=True, max_ranges=max_ranges)
    assert not R.contains(inner, keys[~inside]).any()  # interiors hold only inside points


@PROFILE
@given(data=st.data())
def test_htmst_refuses_outside_the_domain(data):
    s = data.draw(schemes(max_level=8))
    lon, lat, ns = data.draw(records(s, n_max=3))
    t = ns.astype("datetime64[ns]")
    with pytest.raises(IndexRangeError, match=r"lat must be in \[-90, 90\]"):
        s.encode(lon, np.r_[lat[:-1], data.draw(bad_lats)], t)
    with pytest.raises(IndexRangeError, match="lon must be finite"):
        s.encode(np.r_[lon[:-1], data.draw(bad_lons)], lat, t)
    off = data.draw(st.integers(0, 2 ** 62))
    out = s.t1 + off if data.draw(st.booleans()) else s.t0 - 1 - off
    if NS_MIN <= out <= NS_MAX:
        with pytest.raises(IndexRangeError, match=r"time must lie in the task interval"):
            s.encode(lon, lat, np.r_[ns[:-1], out].astype("datetime64[ns]"))
    year = data.draw(st.one_of(st.integers(1000, 1676), st.integers(2263, 3000)))
    with pytest.raises(IndexRangeError, match=r"time must be in the task interval .*"
                                              r"datetime64\[ns\] range"):
        s.encode(lon, lat, np.r_[t[:-1].astype("datetime64[s]"),
                                 np.datetime64(f"{year}-01-01", "s")])
    with pytest.raises(IndexRangeError, match="time contains NaT"):
        s.encode(lon, lat, np.r_[t[:-1], np.datetime64("NaT")])
    bad = np.uint64(1) << np.uint64(s.bits)  # a key one bit too long
    with pytest.raises(IndexRangeError, match="keys at level"):
        s.decode([bad])

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.errors import IndexRangeError
from stengine.index import Box, Cap, Polygon, htm
from stengine.index import ranges as R

from . import reference as ref


# --------------------------------------------------------------------------- ids
def test_worked_example():
    # DESIGN.md: lon 10, lat 20 is 15 (N3) at level 0, 62, 251, then 1005 = N3231
    got = [int(htm.lonlat_to_id(10.0, 20.0, lv)) for lv in range(4)]
    assert got == [15, 62, 251, 1005]
    assert htm.id_to_name(1005) == "N3231"
    assert htm.name_to_id("N3231") == 1005


def test_faces_by_quadrant_and_tie_rule():
    lon = np.array([45.0, 135.0, -135.0, -45.0, 45.0, 135.0, -135.0, -45.0])
    lat = np.array([10.0] * 4 + [-10.0] * 4)
    names = [htm.id_to_name(i) for i in htm.lonlat_to_id(lon, lat, 0)]
    assert names == ["N3", "N2", "N1", "N0", "S0", "S1", "S2", "S3"]
    # the equator belongs to the north; a meridian 0/90/180/270 to the face east of it
    on_edges = htm.lonlat_to_id([0.0, 90.0, 180.0, 270.0, -90.0, 0.0], [0.0, 5, 5, 5, 5, -5], 0)
    assert [htm.id_to_name(i) for i in on_edges] == ["N3", "N2", "N1", "N0", "N0", "S0"]
    # poles, and longitudes that wrap
    assert htm.id_to_name(htm.lonlat_to_id(0.0, 90.0, 0)) == "N3"
    assert htm.id_to_name(htm.lonlat_to_id(0.0, -90.0, 0)) == "S0"
    np.testing.assert_array_equal(htm.lonlat_to_id([10.0, 370.0, -350.0], [20.0] * 3, 12),
                                  htm.lonlat_to_id([10.0] * 3, [20.0] * 3, 12))
    big = 1e17 + 10.0  # a float that is 40 (mod 360) exactly
    assert int(htm.lonlat_to_id(big, 20.0, 12)) == int(htm.lonlat_to_id(np.fmod(big, 360.0),
                                                                        20.0, 12))


def test_corner_child_wins_exact_ties():
    from stengine.index import _geom

    # In face N3 (+y, +z, +x) the unnormalised midpoints are w0 = (1,0,1), w1 = (1,1,0),
    # w2 = (0,1,1). The inner edge w2-w1 (children 0 | 3) is the plane -x + y - z = 0 and
    # w0-w2 (children 1 | 3) is -x - y + z = 0: these points lie exactly on them, so the
    # orientation tests are exactly 0 and the corner child wins.
    x = np.array([1.0, 1.0, 2.0])
    y = np.array([2.0, 1.0, 1.0])
    z = np.array([1.0, 2.0, 1.0])
    out = np.empty(3, np.uint64)
    _geom.xyz_to_id(x, y, z, 1, out)
    assert out.tolist() == [15 * 4 + 0, 15 * 4 + 1, 15 * 4 + 2]


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_lookup_matches_brute_force_all_trixels(level, rng):
    lon, lat = ref.random_lonlat(300, rng)
    got = htm.lonlat_to_id(lon, lat, level)
    for i, p in enumerate(ref.unit(lon, lat)):
        want, m = ref.brute_lookup(p, level)
        if m > 1e-12:  # unambiguous
            assert int(got[i]) == want, (lon[i], lat[i])


@pytest.mark.parametrize("level", [5, 12, 20, 29])
def test_lookup_matches_reference_descent(level, rng):
    lon, lat = ref.random_lonlat(100, rng)
    got = htm.lonlat_to_id(lon, lat, level)
    assert htm.id_level(got).tolist() == [level] * 100
    for i, p in enumerate(ref.unit(lon, lat)):
        want, worst = ref.descend(p, level)
        # the returned trixel contains the point (up to rounding of the point itself)
        assert ref.margin(ref.vertices(got[i]), p) > -1e-15
        if worst > 1e-13:
            assert int(got[i]) == want


@pytest.mark.parametrize("level", [12, 20, 26])
def test_points_just_inside_an_edge_land_inside(level, rng):
    # robust orientation: points 1e-12 rad inside a short edge at deep levels
    lon, lat = ref.random_lonlat(40, rng)
    for hid in htm.lonlat_to_id(lon, lat, level):
        tri = ref.vertices(hid)
        centre = ref.mid(ref.mid(tri[0], tri[1]), tri[2])
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            m = ref.mid(a, b)
            n = np.cross(a, b)
            n /= np.linalg.norm(n)
            p = m + 1e-12 * n * np.sign(np.dot(n, centre))
            p /= np.linalg.norm(p)
            plon, plat = ref.to_lonlat(p)
            assert int(htm.lonlat_to_id(plon, plat, level)[0]) == int(hid)


def test_parent_children_descendants_roundtrip(rng):
    lon, lat = ref.random_lonlat(200, rng)
    ids = htm.lonlat_to_id(lon, lat, 15)
    for up in (0, 1, 7, 15):
        anc = htm.parent(ids, 15 - up)
        assert (htm.id_level(anc) == 15 - up).all()
        np.testing.assert_array_equal(anc, htm.lonlat_to_id(lon, lat, 15 - up))
        d = htm.descendants(anc, 15)
        assert ((d[:, 0] <= ids) & (ids < d[:, 1])).all()
        assert ((d[:, 1] - d[:, 0]) == 4 ** up).all()
    np.testing.assert_array_equal(htm.parent(htm.children(ids)), np.repeat(ids[:, None], 4, 1))
    names = htm.id_to_name(ids)
    np.testing.assert_array_equal(htm.name_to_id(names), ids)
    assert all(len(n) == 17 for n in names)


def test_vertices_centre_area_against_reference(rng):
    lon, lat = ref.random_lonlat(50, rng)
    ids = htm.lonlat_to_id(lon, lat, 8)
    v = htm.vertices(ids, xyz=True)
    for hid, got in zip(ids, v, strict=True):
        np.testing.assert_allclose(got, np.stack(ref.vertices(hid)), atol=1e-15)
    # centres are inside their own trixel
    clon, clat = htm.centre(ids)
    np.testing.assert_array_equal(htm.lonlat_to_id(clon, clat, 8), ids)
    # all trixels of a level tile the sphere
    all_ids = np.arange(8 * 4 ** 3, 16 * 4 ** 3, dtype=np.uint64)
    assert htm.area(all_ids).sum() == pytest.approx(4 * np.pi, rel=1e-12)
    ll = htm.vertices(15)
    np.testing.assert_allclose(ll, [[90, 0], [0, 90], [0, 0]], atol=1e-12)


@pytest.mark.parametrize("bad, msg", [
    ((0.0, 91.0, 5), "lat must be in \\[-90, 90\\]"),
    ((np.nan, 0.0, 5), "lon must be finite"),
    ((0.0, 0.0, 30), "level must be an integer HTM level in 0..29"),
    ((0.0, 0.0, -1), "level"),
    ((0.0, 0.0, 2.0), "level"),
])
def test_lookup_bad_input(bad, msg):
    with pytest.raises(IndexRangeError, match=msg):
        htm.lonlat_to_id(*bad)


def test_bad_ids_and_names():
    with pytest.raises(IndexRangeError, match="not an HTM id"):
        htm.id_level([7])
    with pytest.raises(IndexRangeError, match="not an HTM id"):
        htm.id_level([16])  # 5 bits: not 2L + 4
    with pytest.raises(IndexRangeError, match="not an HTM name"):
        htm.name_to_id("X12")
    with pytest.raises(IndexRangeError, match="coarser"):
        htm.descendants([1005], 2)


def test_dask_input():
    da = pytest.importorskip("dask.array")
    lon = da.from_array(np.linspace(-180, 180, 101), chunks=20)
    lat = da.from_array(np.linspace(-90, 90, 101), chunks=20)
    got = htm.lonlat_to_id(lon, lat, 10)
    assert hasattr(got, "dask")
    np.testing.assert_array_equal(got.compute(), htm.lonlat_to_id(lon.compute(), lat.compute(), 10))


# --------------------------------------------------------------------------- peers
@pytest.mark.parametrize("level", [0, 3, 8, 12, 20])
def test_agrees_with_esutil(level, rng):
    esutil_htm = pytest.importorskip("esutil.htm")
    lon, lat = ref.random_lonlat(2000, rng)
    ours = htm.lonlat_to_id(lon, lat, level)
    theirs = esutil_htm.HTM(level).lookup_id(lon, lat).astype(np.uint64)
    # esutil differs only for points within ~1e-15 of an edge; there ours is the exact choice
    for i in np.flatnonzero(ours != theirs):
        p = ref.unit(lon[i], lat[i])
        assert abs(ref.margin(ref.vertices(theirs[i]), p)) < 1e-14
        assert ref.margin(ref.vertices(ours[i]), p) > -1e-15
    assert (ours == theirs).mean() > 0.99


@pytest.mark.parametrize("level", [0, 5, 12, 20])
def test_agrees_with_sphgeom(level, rng):
    sphgeom = pytest.importorskip("lsst.sphgeom")
    lon, lat = ref.random_lonlat(500, rng)
    pix = sphgeom.HtmPixelization(level)
    theirs = np.array([pix.index(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(a, b)))
                       for a, b in zip(lon, lat, strict=True)], dtype=np.uint64)
    np.testing.assert_array_equal(htm.lonlat_to_id(lon, lat, level), theirs)


@pytest.mark.parametrize("seed", range(6))
def test_cap_covers_equal_sphgeom(seed):
    sphgeom = pytest.importorskip("lsst.sphgeom")
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 180), rng.uniform(-90, 90)
    r, level = rng.uniform(0.05, 120), int(rng.integers(0, 11))
    c = sphgeom.Circle(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(lon, lat)),
                       sphgeom.Angle.fromDegrees(r))
    pix = sphgeom.HtmPixelization(level)
    for interior, theirs in ((False, pix.envelope(c)), (True, pix.interior(c))):
        want = np.array(theirs.ranges(), dtype=np.uint64).reshape(-1, 2)
        got = htm.cover_cap(lon, lat, r, level, interior=interior)
        np.testing.assert_array_equal(got, R.normalize(want))


# --------------------------------------------------------------------------- covers
def _regions(rng):
    yield Cap(rng.uniform(-180, 180), rng.uniform(-90, 90), rng.uniform(0.5, 100))
    lo = rng.uniform(-180, 180)
    la = np.sort(rng.uniform(-90, 90, 2))
    yield Box(lo, la[0], lo + rng.uniform(1, 300), la[1])
    yield Box(170.0, -20.0, -170.0, 10.0)  # across the antimeridian
    yield Box(-180, 60, 180, 90)  # a polar band
    c_lon, c_lat = rng.uniform(-180, 180), rng.uniform(-60, 60)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
    rad = rng.uniform(3, 15, 7)  # a star-shaped (often concave) heptagon
    yield Polygon(c_lon + rad * np.cos(ang) / np.cos(np.radians(c_lat)),
                  c_lat + rad * np.sin(ang))
    yield Polygon([0, 90, 180, 270], [80, 75, 80, 75])  # around the north pole


def _sample_inside(reg, rng, n=4000):
    lon, lat = ref.random_lonlat(200_000, rng)
    keep = reg.contains(lon, lat)
    if hasattr(reg, "radius"):  # plus points right on the cap's rim
        ang = rng.uniform(0, 2 * np.pi, 200)
        c = ref.unit(reg.lon, reg.lat)
        e1 = np.cross([0, 0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0, 0], c)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(c, e1)
        r = np.radians(reg.radius) * (1 - 1e-12)
        rim = np.cos(r) * c + np.sin(r) * (np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2)
        rlon, rlat = ref.to_lonlat(rim)
        return np.concatenate([lon[keep][:n], rlon]), np.concatenate([lat[keep][:n], rlat])
    return lon[keep][:n], lat[keep][:n]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", [2, 6, 10])
def test_envelope_contains_every_inside_point(seed, level):
    rng = np.random.default_rng(seed)
    for reg in _regions(rng):
        env = htm.cover(reg, level)
        lon, lat = _sample_inside(reg, rng)
        assert R.contains(env, htm.lonlat_to_id(lon, lat, level)).all(), reg
        # and the envelope is not the whole sphere for small regions
        assert R.size(env) <= 8 * 4 ** level


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", [3, 7, 9])
def test_interior_trixels_are_inside(seed, level):
    rng = np.random.default_rng(100 + seed)
    for reg in _regions(rng):
        inner = htm.cover(reg, level, interior=True)
        env = htm.cover(reg, level)
        assert R.size(R.difference(inner, env)) == 0
        ids = ref.ids_in_ranges(inner)
        for hid in rng.permutation(ids)[:60]:
            tri = ref.vertices(hid)
            pts = np.concatenate([np.stack(tri), ref.random_in_trixel(tri, 30, rng)])
            plon, plat = ref.to_lonlat(pts)
            assert reg.contains(plon, plat).all(), (reg, hid)


def test_polygon_equal_to_a_trixel():
    # a polygon through one level-3 trixel's vertices: at level 6 its envelope holds all 64
    # descendants, its interior only descendants (those on the edges are too close to call)
    hid = 1005
    lon, lat = htm.vertices(hid).T
    poly = Polygon(lon, lat)
    desc = htm.descendants([hid], 6)
    env = htm.cover(poly, 6)
    inner = htm.cover(poly, 6, interior=True)
    assert R.size(R.difference(desc, env)) == 0
    assert R.size(R.difference(inner, desc)) == 0
    centre = int(desc[0, 0]) + 0b111111  # child 3 of child 3 of child 3
    assert R.contains(inner, [centre]).all()


@pytest.mark.parametrize("interior", [False, True])
def test_max_ranges_coarsens(interior):
    reg = Cap(-45, -30, 45)
    exact = htm.cover(reg, 10, interior=interior)
    capped = htm.cover(reg, 10, interior=interior, max_ranges=50)
    assert len(exact) > 50 >= len(capped)
    if interior:
        assert R.size(R.difference(capped, exact)) == 0
    else:
        assert R.size(R.difference(exact, capped)) == 0


def test_cap_cover_is_fast_enough():
    import time

    htm.cover_cap(10.0, 20.0, 1.0, 12)
    t = time.perf_counter()
    for _ in range(5):
        htm.cover_cap(10.0, 20.0, 1.0, 12)
    assert (time.perf_counter() - t) / 5 < 0.05  # the benchmark target is 5 ms


def test_region_bad_input():
    with pytest.raises(IndexRangeError, match="radius must be in"):
        Cap(0, 0, 0)
    with pytest.raises(IndexRangeError, match="lat must be a latitude"):
        Cap(0, 100, 1)
    with pytest.raises(IndexRangeError, match="lat_min must be <= lat_max"):
        Box(0, 10, 1, 5)
    with pytest.raises(IndexRangeError, match="at most 80 is supported"):
        Polygon([0, 100, 200], [0, 0, 5])
    with pytest.raises(IndexRangeError, match="at least 3"):
        Polygon([0, 1], [0, 1])
    with pytest.raises(TypeError, match="region must be"):
        htm.cover("north", 3)


@settings(max_examples=40, deadline=None)
@given(lon=st.floats(-720, 720), lat=st.floats(-90, 90), level=st.integers(0, 29))
def test_lookup_property_parent_consistent(lon, lat, level):
    ids = htm.lonlat_to_id([lon], [lat], level)
    if level:
        assert htm.parent(ids)[0] == htm.lonlat_to_id([lon], [lat], level - 1)[0]


def test_sincos_in_degrees(rng):
    from stengine.index import _geom

    x = np.concatenate([rng.uniform(-720, 720, 5000), np.arange(-720, 721, 45.0),
                        [1e-300, -1e-12, 89.999999999999, 90.0 + 1e-13]])
    got = np.array([_geom.sincos_deg(v) for v in x])
    rad = np.deg2rad(np.mod(x, 360.0).astype(np.longdouble))  # reduce in degrees, exactly
    np.testing.assert_allclose(got[:, 0], np.sin(rad).astype(float), rtol=0, atol=5e-16)
    np.testing.assert_allclose(got[:, 1], np.cos(rad).astype(float), rtol=0, atol=5e-16)
    quarter = np.arange(-720, 721, 90.0)
    exact = np.array([_geom.sincos_deg(v) for v in quarter])
    assert set(np.unique(exact).tolist()) <= {-1.0, 0.0, 1.0}  # exact at multiples of 90

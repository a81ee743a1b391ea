import itertools

import numpy as np
import pytest

from stengine.errors import IndexRangeError
from stengine.index import Box, Cap, Polygon, htm, htmst
from stengine.index import ranges as R
from stengine.index.htmst import KeyScheme

from . import reference as ref

T0, T1 = "2013-01-01", "2013-03-01"


def ref_coupled(h, k, level, b):
    """Coupled key by string concatenation of binary digits (marker, then t_i h_i per level)."""
    hb = format(int(h), "b")[1:]  # drop the HTM marker bit: 3 face bits + 2 per level
    kb = format(int(k), f"0{b * (level + 1)}b")
    digits = "1" + kb[:b] + hb[:3]
    for i in range(1, level + 1):
        digits += kb[b * i:b * (i + 1)] + hb[3 + 2 * (i - 1):3 + 2 * i]
    return int(digits, 2)


@pytest.mark.parametrize("kind", htmst.KINDS)
@pytest.mark.parametrize("level, fanout", [(0, 2), (3, 4), (10, 2), (14, 4), (19, 2), (6, 16)])
def test_encode_decode_roundtrip(kind, level, fanout, rng):
    s = KeyScheme(kind, level, T0, T1, fanout)
    h = rng.integers(8 << (2 * level), 16 << (2 * level), 500, dtype=np.uint64)
    k = rng.integers(0, s.time.n_cells(level), 500, dtype=np.uint64)
    keys = s.encode_ids(h, k)
    assert (keys >> np.uint64(s.bits - 1) == 1).all()  # the marker bit, and nothing above
    h2, k2 = s.decode(keys)
    np.testing.assert_array_equal(h2, h)
    np.testing.assert_array_equal(k2, k)
    b = s.b
    if kind == "htmst":
        assert keys[:20].tolist() == [ref_coupled(x, y, level, b) for x, y in zip(h[:20], k[:20],
                                                                                     strict=True)]
    elif kind == "time":
        assert keys[:20].tolist() == [int("1" + format(int(y), f"0{b * (level + 1)}b")
                                          + format(int(x), "b")[1:], 2)
                                      for x, y in zip(h[:20], k[:20], strict=True)]
    else:
        tfmt = f"0{b * (level + 1)}b"
        assert keys[:20].tolist() == [int(format(int(x), "b") + format(int(y), tfmt), 2)
                                      for x, y in zip(h[:20], k[:20], strict=True)]


def test_coupled_cells_are_one_key_range_exhaustive():
    # every (trixel, time cell) at level 2 with fanout 2: 512 trixels x 8 cells
    level, b = 2, 1
    s = KeyScheme("htmst", level, T0, T1, 2)
    hs = np.arange(8 << 4, 16 << 4, dtype=np.uint64)
    ks = np.arange(8, dtype=np.uint64)
    H, K = (a.ravel() for a in np.meshgrid(hs, ks))
    keys = s.encode_ids(H, K)
    assert len(np.unique(keys)) == keys.size
    for up in (0, 1, 2):  # coupled cells of levels 2, 1, 0
        cell = (H >> np.uint64(2 * up), K >> np.uint64(b * up))
        for (hc, kc) in set(zip(*(c.tolist() for c in cell), strict=True)):
            members = keys[(cell[0] == hc) & (cell[1] == kc)]
            lo, hi = int(members.min()), int(members.max()) + 1
            assert hi - lo == members.size == (4 * 2) ** up  # contiguous, nothing else inside
            r = s.cell_range(members[0], level - up)
            assert r.tolist() == [lo, hi]


@pytest.mark.parametrize("kind", ["time", "space"])
def test_uncoupled_keys_keep_one_dimension_contiguous(kind):
    s = KeyScheme(kind, 4, T0, T1, 2)
    h = np.full(32, 8 << 8, dtype=np.uint64) + np.arange(32, dtype=np.uint64)
    k = np.full(32, 5, dtype=np.uint64)
    keys = np.sort(s.encode_ids(h, k))
    contiguous = bool((np.diff(keys) == 1).all())
    assert contiguous == (kind == "time")  # a time cell's trixels are consecutive keys


def test_key_does_not_fit_names_what_would():
    with pytest.raises(IndexRangeError, match="level 20 with fanout 2 needs 65 bits.*deepest "
                                              "level is 19"):
        KeyScheme("htmst", 20, T0, T1, 2)
    with pytest.raises(IndexRangeError, match="at level 14 use fanout 2 or 4"):
        KeyScheme("time", 14, T0, T1, 8)
    assert KeyScheme("space", 19, T0, T1, 2).bits == 62  # 4 + 1 + 19 * 3


def test_encode_rejects_bad_records():
    s = KeyScheme("htmst", 8, T0, T1)
    with pytest.raises(IndexRangeError, match="task interval .*2013-03-01.*got 2013-03-02"):
        s.encode([0.0], [0.0], ["2013-03-02"])
    with pytest.raises(IndexRangeError, match="lat must be in"):
        s.encode([0.0], [95.0], ["2013-01-02"])
    with pytest.raises(IndexRangeError, match="kind must be one of"):
        KeyScheme("hilbert", 8, T0, T1)
    with pytest.raises(IndexRangeError, match="keys outside"):
        s.decode([5])


def _records(n, rng):
    lon, lat = ref.random_lonlat(n, rng)
    t0, t1 = np.datetime64(T0, "ns"), np.datetime64(T1, "ns")
    t = t0 + (rng.uniform(0, 1, n) * (t1 - t0).astype(np.int64)).astype("timedelta64[ns]")
    return lon, lat, t


_QUERIES = [
    (Cap(0.0, 90.0, 60.0), ("2013-02-01", "2013-03-01")),
    (Box(-7.5, -90, 7.5, 90), ("2013-01-01", "2013-01-09")),
    (Cap(-45.0, -30.0, 45.0), ("2013-02-01", "2013-02-09")),
    (Polygon([0, 40, 40, 20, 0], [0, 0, 30, 10, 30]), ("2012-12-01", "2013-01-20")),
    (None, ("2013-01-05", "2013-01-06")),
    (Box(100, -10, 120, 10), None),
]


@pytest.mark.parametrize("kind", htmst.KINDS)
@pytest.mark.parametrize("level", [3, 7])
@pytest.mark.parametrize("max_ranges", [None, 64])
def test_cover_complete_and_interior_inside(kind, level, max_ranges, rng):
    lon, lat, t = _records(60_000, rng)
    s = KeyScheme(kind, level, T0, T1, 4 if level == 3 else 2)
    keys = s.encode(lon, lat, t)
    for reg, iv in _QUERIES:
        inside = np.ones(lon.size, bool) if reg is None else reg.contains(lon, lat)
        if iv is not None:
            inside &= (t >= np.datetime64(iv[0])) & (t < np.datetime64(iv[1]))
        env = s.cover(reg, iv, max_ranges=max_ranges)
        assert R.contains(env, keys)[inside].all()
        if max_ranges:
            assert len(env) <= max_ranges
        inner = s.cover(reg, iv, interior=True, max_ranges=max_ranges)
        assert not (R.contains(inner, keys) & ~inside).any()
        if max_ranges is None and kind == "htmst":
            # the coupled cover is the product of the HTM and time covers, key for key
            h, k = s.decode(keys)
            hc = htm.cover(reg, level) if reg is not None else htm.cover(None, level)
            tc = s.time.cover(*(iv or (None, None)), level)
            want = R.contains(hc, h) & R.contains(tc, k)
            np.testing.assert_array_equal(R.contains(env, keys), want)


def test_coupled_cover_scans_less_for_the_same_budget(rng):
    # the point of the coupled key: for the same number of ranges, a (region x time)
    # query's ranges hold fewer records than with time-first or space-first keys
    lon, lat, t = _records(200_000, rng)
    reg, iv = Cap(-45.0, -30.0, 45.0), ("2013-02-01", "2013-02-09")
    scanned = {}
    for kind in htmst.KINDS:
        s = KeyScheme(kind, 8, T0, T1)
        r = s.cover(reg, iv, max_ranges=256)
        scanned[kind] = int(R.contains(r, s.encode(lon, lat, t)).sum())
    assert scanned["htmst"] < scanned["time"] < scanned["space"]


def test_module_functions():
    k = htmst.encode([10.0], [20.0], ["2013-01-20"], level=3, t0=T0, t1=T1)
    h, c = htmst.decode(k, level=3, t0=T0, t1=T1)
    assert (int(h[0]), int(c[0])) == (1005, 5)
    r = htmst.cover(Cap(10.0, 20.0, 1.0), ("2013-01-19", "2013-01-21"), level=3, t0=T0, t1=T1)
    assert R.contains(r, k).all()
    assert htmst.cover(None, ("2014-01-01", "2014-02-01"), level=3, t0=T0, t1=T1).shape == (0, 2)
    s = KeyScheme("htmst", 3, T0, T1)
    assert KeyScheme.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("level, fanout", list(itertools.product([1, 4], [2, 8])))
def test_coupled_cover_matches_product_exhaustively(level, fanout):
    # small levels: compare the coupled cover with the set of all (trixel, cell) pairs
    s = KeyScheme("htmst", level, T0, T1, fanout)
    reg, iv = Cap(30.0, 40.0, 25.0), ("2013-01-20", "2013-02-03")
    hc = ref.ids_in_ranges(htm.cover(reg, level))
    tc = s.time.cover(*iv, level)
    ks = np.arange(int(tc[0, 0]), int(tc[0, 1]), dtype=np.uint64)
    H, K = (a.ravel() for a in np.meshgrid(np.array(hc, dtype=np.uint64), ks))
    want = R.from_ids(s.encode_ids(H, K))
    np.testing.assert_array_equal(s.cover(reg, iv), want)

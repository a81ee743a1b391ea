import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.errors import IndexRangeError
from stengine.index import timecode
from stengine.index.htmst import KeyScheme
from stengine.index.timecode import TimeGrid


def ref_cell(t, t0, t1, n):
    """floor((t - t0) * n / (t1 - t0)) with Python integers."""
    return (t - t0) * n // (t1 - t0)


def ref_start(k, t0, t1, n):
    return t0 + -(-k * (t1 - t0) // n)  # ceil


@settings(max_examples=60, deadline=None)
@given(t0=st.integers(0, 2 ** 60), dur=st.integers(1, 2 ** 61), b=st.integers(1, 4),
       level=st.integers(0, 14), frac=st.lists(st.floats(0, 1, exclude_max=True), min_size=1,
                                               max_size=20))
def test_encode_decode_exact(t0, dur, b, level, frac):
    g = TimeGrid(np.datetime64(t0, "ns"), np.datetime64(t0 + dur, "ns"), 2 ** b)
    s = b * (level + 1)
    if s > 63:
        with pytest.raises(IndexRangeError, match="needs .* bits"):
            g.n_cells(level)
        return
    n = 1 << s
    ts = [t0 + min(dur - 1, int(f * dur)) for f in frac] + [t0, t0 + dur - 1]
    got = g.encode_ns(np.array(ts, dtype=np.int64), level)
    assert got.tolist() == [ref_cell(t, t0, t0 + dur, n) for t in ts]
    start, stop = g.bounds_ns(got, level)
    for k, a, z in zip(got.tolist(), start.tolist(), stop.tolist(), strict=True):
        assert a == ref_start(k, t0, t0 + dur, n)
        assert z == ref_start(k + 1, t0, t0 + dur, n)
    assert ((start <= np.array(ts)) & (np.array(ts) < stop)).all()
    if level:  # cells nest: the parent of a cell is the cell one level up
        up = g.encode_ns(np.array(ts, dtype=np.int64), level - 1)
        np.testing.assert_array_equal(got >> np.uint64(b), up)


def test_cell_bounds_roundtrip_small():
    g = TimeGrid("2013-01-01", "2013-01-01T00:00:00.000000007", fanout=2)  # 7 ns, 8 cells at L2
    cells = g.encode_ns(g.t0 + np.arange(7), 2)
    assert cells.tolist() == [0, 1, 2, 3, 4, 5, 6]  # floor(x * 8 / 7)
    start, stop = g.bounds_ns(np.arange(8, dtype=np.uint64), 2)
    assert (stop - start).tolist() == [1, 1, 1, 1, 1, 1, 1, 0]  # cell 7 is empty
    assert g.encode_ns(start[:7], 2).tolist() == list(range(7))


def test_cover_against_brute_force():
    g = TimeGrid("2013-01-01", "2013-03-01", fanout=4)
    step = np.int64(3600 * 10 ** 9)
    all_t = g.t0 + np.arange(0, g.duration // step) * step
    cells = g.encode_ns(all_t, 2)
    for a, b in [("2013-01-10", "2013-01-11"), ("2012-12-01", "2013-01-02"),
                 ("2013-02-28T23:00", "2013-05-01"), ("2013-01-01", "2013-03-01")]:
        r = g.cover(a, b, 2)
        lo, hi = np.datetime64(a, "ns").astype(np.int64), np.datetime64(b, "ns").astype(np.int64)
        inside = cells[(all_t >= lo) & (all_t < hi)]
        assert set(inside.tolist()) <= set(range(int(r[0, 0]), int(r[0, 1])))
        # the end cells really meet the interval
        s, e = g.bounds_ns(r[0] - np.array([0, 1], dtype=np.uint64), 2)
        assert e[0] > lo and s[1] < hi
    assert g.cover("2014-01-01", "2014-02-01", 2).shape == (0, 2)


def test_time_forms_and_timezones():
    g = TimeGrid("2013-01-01", "2013-01-03")
    want = g.encode(np.array(["2013-01-02T06:00"], "datetime64[ns]"), 3)
    for t in (["2013-01-02T06:00"], [pd.Timestamp("2013-01-02 06:00")],
              pd.Series(pd.to_datetime(["2013-01-02 08:00"]).tz_localize("Etc/GMT-2")),
              [dt.datetime(2013, 1, 2, 6)]):
        assert g.encode(t, 3).tolist() == want.tolist()
    s, e = g.decode(want, 3)
    assert s.dtype == np.dtype("datetime64[ns]") and s[0] <= np.datetime64("2013-01-02T06:00")
    assert timecode.encode(["2013-01-02T06:00"], 3, t0="2013-01-01", t1="2013-01-03").tolist() \
        == want.tolist()


def test_parse_interval():
    from stengine.index.timecode import parse_interval

    a, b = parse_interval("2013-02", where="x")
    assert np.datetime64(a, "ns") == np.datetime64("2013-02-01") and np.datetime64(
        b, "ns") == np.datetime64("2013-03-01")
    assert parse_interval(slice("2013-01-01", None), where="x")[1] is None
    with pytest.raises(IndexRangeError, match="stop >= start"):
        parse_interval(("2013-02-01", "2013-01-01"), where="x")


@pytest.mark.parametrize("args, exc, msg", [
    (("2013-01-02", "2013-01-01"), IndexRangeError, "t1 must be after t0"),
    (("2013-01-01", "2013-01-02", 3), IndexRangeError, "power of two"),
    (("2013-01-01", "2200-01-01"), IndexRangeError, "shorter than 2\\*\\*62"),
    ((0, 10), TypeError, "must be a datetime"),
])
def test_bad_grids(args, exc, msg):
    with pytest.raises(exc, match=msg):
        TimeGrid(*args)


def test_bad_times():
    g = TimeGrid("2013-01-01", "2013-01-03")
    with pytest.raises(IndexRangeError, match="task interval .*2013-01-05"):
        g.encode(["2013-01-05"], 2)
    with pytest.raises(IndexRangeError, match="NaT"):
        g.encode(np.array(["NaT"], "datetime64[ns]"), 2)
    with pytest.raises(TypeError, match="must be datetimes"):
        g.encode([1.5], 2)
    with pytest.raises(IndexRangeError, match="deepest level"):
        g.encode(["2013-01-02"], 63)


# ---------------------------------------------------------------- units and range ends
NS_PER = {"W": 7 * 86400 * 10 ** 9, "D": 86400 * 10 ** 9, "h": 3600 * 10 ** 9,
          "m": 60 * 10 ** 9, "s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}


@pytest.mark.parametrize("unit", list(NS_PER))
def test_to_ns_range_ends_in_every_unit(unit):
    """The first and last instant of each unit inside the ns range convert exactly (numpy's
    own astype misconverts near the lower end), and one unit beyond is refused, not wrapped."""
    f = NS_PER[unit]
    lo, hi = -(-timecode.NS_MIN // f), timecode.NS_MAX // f
    got = timecode.to_ns(np.array([lo, 0, 1, hi], dtype=np.int64).astype(f"datetime64[{unit}]"))
    assert got.tolist() == [lo * f, 0, f, hi * f]
    for v in (lo - 1, hi + 1):
        if unit == "ns":
            continue  # every int64 but NaT is a valid ns instant
        t = np.array([0, v], dtype=np.int64).astype(f"datetime64[{unit}]")
        with pytest.raises(IndexRangeError, match=r"time must be within the datetime64\[ns\] "
                                                  r"range .*\(at index 1\)"):
            timecode.to_ns(t)


@pytest.mark.parametrize("unit, value, ns", [
    ("Y", "2013", 1356998400 * 10 ** 9), ("M", "2013-02", 1359676800 * 10 ** 9),
    ("D", "1677-09-22", -9223286400 * 10 ** 9), ("ps", "1970-01-01T00:00:00.000000000001", 0),
])
def test_to_ns_calendar_and_sub_ns_units(unit, value, ns):
    assert timecode.to_ns(np.array([value], f"datetime64[{unit}]")).tolist() == [ns]


def test_to_ns_sub_ns_is_floored():
    t = np.array([-1, 1999], dtype=np.int64).astype("datetime64[ps]")
    assert timecode.to_ns(t).tolist() == [-1, 1]


def test_pandas3_default_unit_is_read_exactly():
    """pandas 3 makes datetime64[us] by default (date_range, to_datetime of strings)."""
    idx = pd.date_range("2013-01-01", periods=3, freq="37min")
    want = [1356998400 * 10 ** 9 + i * 37 * 60 * 10 ** 9 for i in range(3)]
    for form in (idx, idx.as_unit("s"), idx.as_unit("ms"), idx.as_unit("us"), pd.Series(idx),
                 idx.tz_localize("UTC").tz_convert("America/St_Johns"), idx.to_pydatetime(),
                 np.asarray(idx.astype(str)), list(idx)):
        assert timecode.to_ns(form).tolist() == want, type(form)
    g = TimeGrid("2013-01-01", "2013-01-02", fanout=2)
    assert g.encode(idx.as_unit("s"), 4).tolist() == g.encode_ns(np.array(want), 4).tolist()


def test_encode_ns_reads_datetime64_exactly():
    g = TimeGrid("2013-01-01", "2013-01-02", fanout=2)
    t = np.array(["2013-01-01T13:00"], "datetime64[s]")
    assert g.encode_ns(t, 3).tolist() == g.encode(["2013-01-01T13:00"], 3).tolist() == [8]


@pytest.mark.parametrize("t, match", [
    (np.array(["1500-01-01"], "datetime64[s]"), "task interval .*datetime64\\[ns\\] range"),
    (np.array(["3000-01-01"], "datetime64[us]"), "task interval .*datetime64\\[ns\\] range"),
    ("2999-12-31", "task interval .*datetime64\\[ns\\] range"),
    (pd.Timestamp("1600-01-01").to_pydatetime(), "task interval .*datetime64\\[ns\\] range"),
])
def test_times_outside_the_ns_range_are_refused_not_wrapped(t, match):
    g = TimeGrid("2013-01-01", "2014-01-01")
    with pytest.raises(IndexRangeError, match=match):
        g.encode(t, 3)
    s = KeyScheme("htmst", 4, "2013-01-01", "2014-01-01")
    with pytest.raises(IndexRangeError, match=match):
        s.encode([0.0], [0.0], t)


def test_grid_bounds_must_be_single_times():
    with pytest.raises(TypeError, match="t0 must be a single datetime"):
        TimeGrid(["2013-01-01", "2013-02-01"], "2014-01-01")


def test_to_ns_empty():
    for empty in ([], np.array([], "datetime64[s]"), pd.DatetimeIndex([]),
                  pd.Series([], dtype=object)):
        out = timecode.to_ns(empty)
        assert out.dtype == np.int64 and out.size == 0
    assert TimeGrid("2013-01-01", "2013-01-02").encode([], 3).shape == (0,)

"""Bad input to every public function of :mod:`stengine.index`: each case names the function,
the call, the exception type and a pattern the message must contain naming the argument
(and, for out-of-range values, the valid range). A meta-test checks that every public
function and class of the index package has at least one case.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

import stengine.index as I
from stengine.errors import IndexRangeError
from stengine.index import h3 as H3
from stengine.index import htm, htmst, ranges, timecode
from stengine.index.htmst import KeyScheme
from stengine.index.timecode import TimeGrid

T0, T1 = "2013-01-01", "2014-01-01"
NS = r"datetime64\[ns\] range \[1677-09-21T00:12:43.145224193, 2262-04-11T23:47:16.854775807\]"
TASK = r"task interval \[2013-01-01T00:00:00.000000000, 2014-01-01T00:00:00.000000000\)"
LAT = r"lat must be in \[-90, 90\] degrees"
LON = r"lon must be finite"
IRE = IndexRangeError


def _g():
    return TimeGrid(T0, T1, fanout=4)


def _s(kind="htmst"):
    return KeyScheme(kind, 5, T0, T1, 2)


def _y(year, unit="s"):
    return np.array([f"{year}-06-01"], f"datetime64[{unit}]")


U8 = np.array([1, 2], np.uint64)
GOOD = np.array([[1, 5]], np.uint64)
CELL = int(H3.lonlat_to_cell(10.0, 50.0, 5))

# (function, label, call, exception, message pattern)
CASES = [
    # ---- time: to_ns, the one conversion of every time argument
    ("to_ns", "year 1500 in s", lambda: timecode.to_ns(_y(1500), where="f", name="t"), IRE,
     "f: t must be within the " + NS + r"; got 1500-06-01T00:00:00 \(at index 0\)"),
    ("to_ns", "year 3000 in us", lambda: timecode.to_ns(_y(3000, "us")), IRE,
     "time must be.*" + NS),
    ("to_ns", "year 2300 in D", lambda: timecode.to_ns(_y(2300, "D")), IRE, NS),
    ("to_ns", "year 1000 in Y", lambda: timecode.to_ns(np.array(["1000"], "datetime64[Y]")),
     IRE, NS),
    ("to_ns", "month 2263-01 in M", lambda: timecode.to_ns(np.datetime64("2263-01", "M")), IRE,
     NS),
    ("to_ns", "ISO string 1500", lambda: timecode.to_ns("1500-01-01", name="when"), IRE,
     "when must be within the " + NS),
    ("to_ns", "pandas s index 3000",
     lambda: timecode.to_ns(pd.DatetimeIndex(_y(3000))), IRE, NS),
    ("to_ns", "tz-aware pandas 3000",
     lambda: timecode.to_ns(pd.Series(pd.DatetimeIndex(_y(3000)).tz_localize("UTC"))), IRE, NS),
    ("to_ns", "python datetime 3000",
     lambda: timecode.to_ns(pd.Timestamp("3000-01-01").to_pydatetime()), IRE, NS),
    ("to_ns", "NaT", lambda: timecode.to_ns(np.array(["2013", "NaT"], "datetime64[s]"),
                                            name="t"), IRE, r"t contains NaT .*at index 1"),
    ("to_ns", "None", lambda: timecode.to_ns([None], name="t"), IRE, "t contains NaT"),
    ("to_ns", "NaT and year 3000",
     lambda: timecode.to_ns(np.array(["NaT", "3000"], "datetime64[s]"), name="t"), IRE,
     r"t must be within the .*got 3000-01-01T00:00:00 \(at index 1\)"),
    ("to_ns", "NaT in D", lambda: timecode.to_ns(np.array(["2013", "NaT"], "datetime64[D]"),
                                                 name="t"), IRE, r"t contains NaT .*at index 1"),
    ("to_ns", "garbage string", lambda: timecode.to_ns(["yesterday-ish"], name="t"), IRE,
     "cannot read t as datetimes"),
    ("to_ns", "numbers", lambda: timecode.to_ns([1.5], name="t"), TypeError,
     "t must be datetimes.*numbers"),
    ("to_ns", "timedeltas", lambda: timecode.to_ns(np.array([1], "timedelta64[s]"), name="t"),
     TypeError, "t must be datetimes.*timedeltas"),
    # ---- TimeGrid and the module functions
    ("TimeGrid", "t0 year 1500", lambda: TimeGrid(_y(1500)[0], T1), IRE,
     "t0 must be within.*" + NS),
    ("TimeGrid", "t1 year 3000", lambda: TimeGrid(T0, "3000-01-01"), IRE,
     "t1 must be within.*" + NS),
    ("TimeGrid", "t1 NaT", lambda: TimeGrid(T0, np.datetime64("NaT")), IRE, "t1 contains NaT"),
    ("TimeGrid", "t1 before t0", lambda: TimeGrid(T1, T0), IRE, "t1 must be after t0"),
    ("TimeGrid", "fanout 3", lambda: TimeGrid(T0, T1, 3), IRE, "fanout must be a power of two"),
    ("TimeGrid", "t0 a number", lambda: TimeGrid(0, 10), TypeError, "t0 must be a datetime"),
    ("TimeGrid", "too long", lambda: TimeGrid("1800-01-01", "2200-01-01"), IRE,
     r"task interval must be shorter than 2\*\*62 ns"),
    ("TimeGrid.encode", "outside the grid", lambda: _g().encode(["2015-01-01"], 2), IRE,
     "time must lie in the " + TASK + r"; got 2015-01-01"),
    ("TimeGrid.encode", "year 1500", lambda: _g().encode(_y(1500), 2), IRE,
     "time must be in the " + TASK + ".*" + NS),
    ("TimeGrid.encode", "level -1", lambda: _g().encode([T0], -1), IRE, "time level must be"),
    ("TimeGrid.encode", "level too deep", lambda: _g().encode([T0], 40), IRE,
     "deepest level with this fanout is 30"),
    ("TimeGrid.encode_ns", "floats", lambda: _g().encode_ns([1.5], 2), TypeError,
     "time must be int64 nanoseconds"),
    ("TimeGrid.decode", "cell too large", lambda: _g().decode([16], 1), IRE,
     r"level-1 cells are 0\.\.15; got 16"),
    ("TimeGrid.decode", "negative cell", lambda: _g().decode([-1], 1), IRE, "cells must be >= 0"),
    ("TimeGrid.decode", "float cells", lambda: _g().decode([1.5], 1), TypeError,
     "cells must be integers"),
    ("TimeGrid.cover", "stop before start", lambda: _g().cover("2013-03-01", "2013-02-01", 1),
     IRE, "stop must not be before start"),
    ("TimeGrid.cover", "stop year 3000", lambda: _g().cover(T0, "3000-01-01", 1), IRE,
     "stop must be within the " + NS),
    ("timecode.encode", "year 2300", lambda: timecode.encode(_y(2300), 1, t0=T0, t1=T1), IRE,
     "time must be in the " + TASK),
    ("timecode.decode", "cell too large", lambda: timecode.decode([4], 0, t0=T0, t1=T1), IRE,
     r"level-0 cells are 0\.\.1; got 4"),
    ("timecode.cover", "start year 1500", lambda: timecode.cover("1500-01-01", T1, 1, t0=T0,
                                                                 t1=T1), IRE,
     "start must be within the " + NS),
    # ---- HTM
    ("lonlat_to_id", "lat 91", lambda: htm.lonlat_to_id([0.0, 1.0], [0.0, 91.0], 3), IRE,
     LAT + r"; got lat\[1\] = 91.0"),
    ("lonlat_to_id", "lat NaN", lambda: htm.lonlat_to_id(0.0, np.nan, 3), IRE, LAT + ".*nan"),
    ("lonlat_to_id", "lat -inf", lambda: htm.lonlat_to_id(0.0, -np.inf, 3), IRE, LAT),
    ("lonlat_to_id", "lon NaN", lambda: htm.lonlat_to_id([np.nan], [0.0], 3), IRE, LON),
    ("lonlat_to_id", "lon inf", lambda: htm.lonlat_to_id([np.inf], [0.0], 3), IRE, LON),
    ("lonlat_to_id", "level 30", lambda: htm.lonlat_to_id(0.0, 0.0, 30), IRE,
     r"level must be an integer HTM level in 0\.\.29; got 30"),
    ("lonlat_to_id", "level 2.5", lambda: htm.lonlat_to_id(0.0, 0.0, 2.5), IRE, "level must be"),
    ("lonlat_to_id", "lon/lat shapes", lambda: htm.lonlat_to_id([0.0, 1.0], [0.0, 1.0, 2.0], 3),
     ValueError, "lon and lat must broadcast"),
    ("id_level", "not an id", lambda: htm.id_level([7]), IRE, "7 is not an HTM id"),
    ("id_level", "odd bit length", lambda: htm.id_level([16]), IRE, "16 is not an HTM id"),
    ("id_level", "floats", lambda: htm.id_level([8.0]), IRE, "ids must be integers"),
    ("parent", "level finer", lambda: htm.parent([1005], 5), IRE,
     "level must be between 0 and the ids' level"),
    ("children", "level 29", lambda: htm.children([15 << 58]), IRE, "level-29 trixels"),
    ("descendants", "coarser level", lambda: htm.descendants([1005], 1), IRE,
     "level 1 is coarser"),
    ("id_to_name", "not an id", lambda: htm.id_to_name(3), IRE, "3 is not an HTM id"),
    ("name_to_id", "bad face", lambda: htm.name_to_id("X0"), IRE, "'X0' is not an HTM name"),
    ("name_to_id", "bad digit", lambda: htm.name_to_id("N34"), IRE, "'N34' is not an HTM name"),
    ("name_to_id", "not a string", lambda: htm.name_to_id([1005]), TypeError,
     "names must be HTM names"),
    ("vertices", "not an id", lambda: htm.vertices(5), IRE, "5 is not an HTM id"),
    ("centre", "not an id", lambda: htm.centre(-3), IRE, "-3 is not an HTM id"),
    ("area", "not an id", lambda: htm.area(2), IRE, "2 is not an HTM id"),
    ("cover", "level 31", lambda: htm.cover(I.Cap(0, 0, 1), 31), IRE, "cover: level must be"),
    ("cover", "region type", lambda: htm.cover("Paris", 3), TypeError, "region must be a Cap"),
    ("cover", "max_ranges 0", lambda: htm.cover(I.Cap(0, 0, 1), 3, max_ranges=0), ValueError,
     "max_ranges must be >= 1"),
    ("cover_cap", "lat 95", lambda: htm.cover_cap(0.0, 95.0, 1.0, 3), IRE,
     r"lat must be a latitude in \[-90, 90\]"),
    ("cover_cap", "radius 0", lambda: htm.cover_cap(0.0, 0.0, 0.0, 3), IRE,
     r"radius must be in \(0, 180\]"),
    ("cover_cap", "radius NaN", lambda: htm.cover_cap(0.0, 0.0, np.nan, 3), IRE, "radius must"),
    ("cover_box", "lat_min NaN", lambda: htm.cover_box(0, np.nan, 10, 10, 3), IRE,
     "lat_min must be a latitude"),
    ("cover_box", "lon_max inf", lambda: htm.cover_box(0, 0, np.inf, 10, 3), IRE,
     "lon_max must be a finite longitude"),
    ("cover_box", "lat_min > lat_max", lambda: htm.cover_box(0, 20, 10, 10, 3), IRE,
     "lat_min must be <= lat_max"),
    ("cover_polygon", "lat 100", lambda: htm.cover_polygon([0, 10, 0], [0, 0, 100], 3), IRE,
     "lat must be a latitude"),
    ("cover_polygon", "two vertices", lambda: htm.cover_polygon([0, 10], [0, 0], 3), IRE,
     "at least 3 distinct vertices"),
    ("cover_polygon", "too large", lambda: htm.cover_polygon([0, 120, 240], [0, 0, 0], 3), IRE,
     "Polygon: the vertices' centroid"),
    ("Cap", "lon NaN", lambda: I.Cap(np.nan, 0.0, 1.0), IRE, "lon must be a finite longitude"),
    ("Box", "lat_max 91", lambda: I.Box(0, 0, 10, 91), IRE, "lat_max must be a latitude"),
    ("Polygon", "NaN vertex", lambda: I.Polygon([0, np.nan, 0], [0, 0, 10]), IRE,
     "lon must be a finite longitude"),
    ("Polygon", "lengths", lambda: I.Polygon([0, 1, 2], [0, 1]), IRE,
     "lon and lat must have the same length"),
    ("as_region", "a string", lambda: I.as_region("Paris"), TypeError, "region must be a Cap"),
    ("as_region", "bad tuple", lambda: I.as_region((0, -95, 10, 10)), IRE,
     "lat_min must be a latitude"),
    # ---- HTM-ST keys
    ("KeyScheme", "kind", lambda: KeyScheme("zorder", 3, T0, T1), IRE, "kind must be one of"),
    ("KeyScheme", "level 30", lambda: KeyScheme("htmst", 30, T0, T1), IRE, "level must be"),
    ("KeyScheme", "too many bits", lambda: KeyScheme("htmst", 15, T0, T1, 8), IRE,
     "level 15 with fanout 8 needs 82 bits"),
    ("KeyScheme", "t0 year 1500", lambda: KeyScheme("htmst", 3, "1500-01-01", T1), IRE,
     "t0 must be within the " + NS),
    ("KeyScheme", "fanout 6", lambda: KeyScheme("htmst", 3, T0, T1, 6), IRE,
     "fanout must be a power of two"),
    ("KeyScheme.encode", "lat 91", lambda: _s().encode([0.0], [91.0], [T0]), IRE,
     r"KeyScheme\('htmst'\).encode: " + LAT),
    ("KeyScheme.encode", "lat NaN", lambda: _s("time").encode([0.0], [np.nan], [T0]), IRE, LAT),
    ("KeyScheme.encode", "lon NaN", lambda: _s("space").encode([np.nan], [0.0], [T0]), IRE, LON),
    ("KeyScheme.encode", "outside the grid", lambda: _s().encode([0.0], [0.0], ["2012-12-31"]),
     IRE, "time must lie in the " + TASK),
    ("KeyScheme.encode", "year 3000", lambda: _s().encode([0.0], [0.0], _y(3000)), IRE,
     "time must be in the " + TASK + ".*" + NS),
    ("KeyScheme.encode", "NaT", lambda: _s().encode([0.0], [0.0], [pd.NaT]), IRE,
     "time contains NaT"),
    ("KeyScheme.encode", "shapes", lambda: _s().encode([0.0, 1.0], [0.0, 1.0], [T0, T0, T0]),
     ValueError, "lon, lat and time must broadcast together"),
    ("KeyScheme.encode_ns", "floats", lambda: _s().encode_ns([0.0], [0.0], [1.5]), TypeError,
     "time must be int64 nanoseconds"),
    ("KeyScheme.encode_ids", "hids of another level", lambda: _s().encode_ids([8], [0]), IRE,
     r"hids must be level-5 HTM ids in \[8192, 16384\); got 8"),
    ("KeyScheme.encode_ids", "cell too large", lambda: _s().encode_ids([8192], [64]), IRE,
     r"cells must be level-5 time cells in \[0, 64\); got 64"),
    ("KeyScheme.encode_ids", "negative cell", lambda: _s().encode_ids([8192], [-1]), IRE,
     "cells must be >= 0"),
    ("KeyScheme.decode", "not a key", lambda: _s().decode([5]), IRE, "keys at level 5 have"),
    ("KeyScheme.cell_range", "space-first", lambda: _s("space").cell_range([1], 2), IRE,
     "only coupled"),
    ("KeyScheme.cell_range", "finer level", lambda: _s().cell_range(_s().encode([0.0], [0.0],
                                                                                 [T0]), 6),
     IRE, "level 6 is finer"),
    ("KeyScheme.cell_range", "not a key", lambda: _s().cell_range([5], 2), IRE,
     "keys at level 5 have"),
    ("KeyScheme.cover", "region", lambda: _s().cover(42), TypeError, "region must be a Cap"),
    ("KeyScheme.cover", "stop year 3000", lambda: _s().cover(None, (T0, "3000-01-01")), IRE,
     r"time\[1\] \(stop\) must be within the " + NS + ".*pass None"),
    ("KeyScheme.cover", "period 1500", lambda: _s().cover(None, "1500-03"), IRE,
     "time '1500-03' \\(its start\\) must be within"),
    ("KeyScheme.cover", "bad period", lambda: _s().cover(None, "March"), IRE,
     "time 'March' \\(its start\\) must be within"),
    ("KeyScheme.cover", "time type", lambda: _s().cover(None, 5), TypeError,
     "time must be None, \\(start, stop\\)"),
    ("KeyScheme.cover", "numbers", lambda: _s().cover(None, (0, 5)), TypeError,
     r"time\[0\] \(start\) must be a datetime"),
    ("KeyScheme.cover", "max_ranges 0", lambda: _s().cover(None, max_ranges=0), ValueError,
     "max_ranges must be >= 1"),
    ("htmst.encode", "lat -91", lambda: htmst.encode([0.0], [-91.0], [T0], level=3, t0=T0,
                                                     t1=T1), IRE, LAT),
    ("htmst.decode", "not a key", lambda: htmst.decode([1], level=3, t0=T0, t1=T1), IRE,
     "keys at level 3"),
    ("htmst.cover", "time year 1500", lambda: htmst.cover(None, ("1500-01-01", None), level=3,
                                                          t0=T0, t1=T1), IRE,
     r"time\[0\] \(start\) must be within"),
    ("key_bits", "fanout 3", lambda: htmst.key_bits(3, 3), IRE, "fanout must be a power of two"),
    ("key_bits", "level -1", lambda: htmst.key_bits(-1, 2), IRE, "level must be"),
    # ---- H3
    ("lonlat_to_cell", "lat 91", lambda: H3.lonlat_to_cell([0.0, 1.0], [0.0, 91.0], 3), IRE,
     LAT + r"; got lat\[1\] = 91.0"),
    ("lonlat_to_cell", "lat NaN", lambda: H3.lonlat_to_cell(0.0, np.nan, 3), IRE, LAT),
    ("lonlat_to_cell", "lon NaN", lambda: H3.lonlat_to_cell(np.nan, 0.0, 3), IRE, LON),
    ("lonlat_to_cell", "level 16", lambda: H3.lonlat_to_cell(0.0, 0.0, 16), IRE,
     r"level must be an H3 resolution in 0\.\.15; got 16"),
    ("lonlat_to_cell", "level 2.5", lambda: H3.lonlat_to_cell(0.0, 0.0, 2.5), TypeError,
     "level must be an integer H3 resolution"),
    ("grid_to_cells", "lat -95", lambda: H3.grid_to_cells(np.r_[0.0], np.r_[-95.0], 3), IRE, LAT),
    ("grid_to_cells", "2-D", lambda: H3.grid_to_cells(np.zeros((2, 2)), np.zeros(2), 3),
     ValueError, "lon and lat must be 1-D"),
    ("cell_to_lonlat", "invalid", lambda: H3.cell_to_lonlat(np.array([12345], np.uint64)), IRE,
     "cells must be valid H3 cell ids; got 0x3039"),
    ("cell_to_lonlat", "floats", lambda: H3.cell_to_lonlat([1.5]), TypeError,
     "cells must be integer H3 ids"),
    ("cell_to_boundary", "invalid", lambda: H3.cell_to_boundary([0]), IRE, "not a valid H3"),
    ("cell_to_parent", "finer level", lambda: H3.cell_to_parent([CELL], 7), IRE,
     "level 7 is finer"),
    ("cell_to_parent", "invalid", lambda: H3.cell_to_parent([12345], 0), IRE, "not a valid H3"),
    ("cell_to_parent", "level -1", lambda: H3.cell_to_parent([CELL], -1), IRE,
     "level must be an H3 resolution"),
    ("cell_to_children", "coarser level", lambda: H3.cell_to_children([CELL], 3), IRE,
     "level 3 is coarser"),
    ("cell_to_children", "invalid", lambda: H3.cell_to_children([12345], 3), IRE,
     "not a valid H3"),
    ("cell_to_children", "mixed levels",
     lambda: H3.cell_to_children([CELL, int(H3.lonlat_to_cell(0.0, 0.0, 4))], 6), ValueError,
     "cells must share one level"),
    ("grid_disk", "k -1", lambda: H3.grid_disk([CELL], -1), ValueError,
     "k must be a non-negative integer"),
    ("grid_disk", "invalid", lambda: H3.grid_disk([0], 1), IRE, "not a valid H3"),
    ("cell_level", "floats", lambda: H3.cell_level([1.5]), TypeError, "cells must be integer"),
    ("is_pentagon", "floats", lambda: H3.is_pentagon([1.5]), TypeError, "cells must be integer"),
    ("is_valid", "strings", lambda: H3.is_valid(["851fb467fffffff"]), TypeError,
     "cells must be integer"),
    ("all_cells", "level 16", lambda: H3.all_cells(16), IRE, "level must be an H3 resolution"),
    ("cells_in_bbox", "south -91", lambda: H3.cells_in_bbox((0, -91, 10, 10), 2), IRE,
     r"bbox south and north must be latitudes in \[-90, 90\]"),
    ("cells_in_bbox", "east NaN", lambda: H3.cells_in_bbox((0, 0, np.nan, 10), 2), IRE,
     "bbox west and east must be finite"),
    ("cells_in_bbox", "west > east", lambda: H3.cells_in_bbox((10, 0, 0, 10), 2), ValueError,
     "bbox must be \\(west, south, east, north\\)"),
    ("edge_length", "level 99", lambda: H3.edge_length(99), IRE, "level must be an H3"),
    # ---- ranges
    ("normalize", "shape", lambda: ranges.normalize([1, 2, 3]), ValueError,
     r"ranges must be an \(n, 2\) array"),
    ("normalize", "negative", lambda: ranges.normalize([[-1, 2]]), IRE,
     "ranges must be non-negative"),
    ("normalize", "floats", lambda: ranges.normalize([[0.5, 2]]), TypeError,
     "ranges must be integers"),
    ("union", "b shape", lambda: ranges.union(GOOD, [[1, 2, 3]]), ValueError,
     r"union: b must be an \(n, 2\) array"),
    ("intersection", "a negative", lambda: ranges.intersection([[-5, 2]], GOOD), IRE,
     "intersection: a must be non-negative"),
    ("difference", "b floats", lambda: ranges.difference(GOOD, [[1.0, 2.0]]), TypeError,
     "difference: b must be integers"),
    ("simplify", "max_ranges 0", lambda: ranges.simplify(GOOD, 0), ValueError,
     "simplify: max_ranges must be an integer >= 1"),
    ("largest", "max_ranges 0", lambda: ranges.largest(GOOD, 0), ValueError,
     "largest: max_ranges must be an integer >= 1"),
    ("limit", "max_ranges -1", lambda: ranges.limit(GOOD, -1), ValueError,
     "max_ranges must be None or >= 1"),
    ("from_ids", "negative", lambda: ranges.from_ids(np.array([-1, 3])), IRE,
     "ids must be non-negative"),
    ("from_ids", "floats", lambda: ranges.from_ids([1.5]), TypeError, "ids must be integers"),
    ("contains", "negative keys", lambda: ranges.contains(GOOD, np.array([-1])), IRE,
     "keys must be non-negative"),
    ("contains", "float keys", lambda: ranges.contains(GOOD, [1.5]), TypeError,
     "keys must be integers"),
    ("overlapping", "float first", lambda: ranges.overlapping(GOOD, [1.5], [2]), TypeError,
     "first must be integers"),
    ("overlapping", "shapes", lambda: ranges.overlapping(GOOD, [1, 2], [2]), ValueError,
     "first and last must have one shape"),
    ("size", "shape", lambda: ranges.size([[1, 2, 3]]), ValueError, "size: ranges must be"),
    ("refine", "bits -1", lambda: ranges.refine(GOOD, -1), ValueError,
     r"bits must be in 0\.\.63"),
    ("refine", "bits 70", lambda: ranges.refine(GOOD, 70), ValueError, r"bits must be in 0\.\.63"),
    ("refine", "overflow", lambda: ranges.refine([[1, 2 ** 62]], 3), OverflowError,
     "do not fit in 64 bits"),
    ("coarsen", "bits -1", lambda: ranges.coarsen(GOOD, -1), ValueError,
     r"bits must be in 0\.\.63"),
]


@pytest.mark.parametrize("fn, label, call, exc, pattern", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input(fn, label, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def _public():
    """Every public function and class of stengine.index and its submodules."""
    out = set()
    for mod in (I, htm, htmst, timecode, ranges, H3):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj) or name == "Region":
                continue  # modules, constants, and the abstract base of the regions
            out.add((mod.__name__.rsplit(".", 1)[-1] if mod is not I else "", name))
    return out


# names shared by several modules: the table uses a prefix for the module's version
_ALIASES = {("timecode", "encode"): "timecode.encode", ("timecode", "decode"): "timecode.decode",
            ("timecode", "cover"): "timecode.cover", ("htmst", "encode"): "htmst.encode",
            ("htmst", "decode"): "htmst.decode", ("htmst", "cover"): "htmst.cover"}


def test_every_public_function_has_a_bad_input_case():
    covered = {c[0].split(".")[0] if "." in c[0] and c[0].split(".")[0][0].isupper() else c[0]
               for c in CASES}
    missing = sorted(f"{m}.{n}" for m, n in _public()
                     if _ALIASES.get((m, n), n) not in covered)
    assert not missing, f"no bad-input case for: {missing}"

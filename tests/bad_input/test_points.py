"""Bad input to PointStore.create / open / append / query: a table of cases.

Each case asserts the exception type and that the message names the argument or
column; appends must also leave the store exactly as it was (nothing written).
"""

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from stengine.errors import (
    AppendMismatchError,
    IndexRangeError,
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
)
from stengine.index import Cap
from stengine.io.points import PointStore

T0, T1 = "2013-01-01", "2013-03-01"
VARS = {"flux": "float32", "n": "int16", "flag": "bool"}


def good(n=5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n),
        "time": pd.date_range("2013-01-05", periods=n, freq="D"),
        "flux": rng.normal(size=n).astype("float32"), "n": np.arange(n, dtype="int16"),
        "flag": np.arange(n) % 2 == 0})


def with_(col, values, df=None):
    df = good() if df is None else df
    df = df.copy()
    df[col] = values
    return df


def ts(s, unit="s"):
    return np.array([s] * 5, f"datetime64[{unit}]")


def _make(path):
    st = PointStore.create(path, level=6, t0=T0, t1=T1, chunk_size=4, variables=VARS)
    st.append(good())
    return st


@pytest.fixture
def store(tmp_path):
    return _make(tmp_path / "p")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One store for the cases that must not change it (each case checks that it did not)."""
    return _make(tmp_path_factory.mktemp("shared") / "p")


def state(st):
    """Everything an append could change."""
    files = sorted(str(p.relative_to(st.path)) for p in st.path.rglob("*"))
    return (st.path / "zarr.json").read_bytes(), files


def nan_at(v, i=2, n=5):
    a = np.linspace(1, 2, n)
    a[i] = v
    return a


APPEND = [
    # (id, records, exception, words the message must contain)
    ("strings in a float column", with_("flux", ["a", "b", "c", "d", "e"]), AppendMismatchError,
     ["'flux'", "strings"]),
    ("pandas strings in a float column", with_("flux", pd.Series(list("abcde"), dtype="string")),
     AppendMismatchError, ["'flux'", "strings"]),
    ("None among floats (object)", with_("flux", pd.Series([1.0, None, "x", 2.0, 3.0],
                                                           dtype=object)),
     AppendMismatchError, ["'flux'"]),
    ("datetimes in a float column", with_("flux", pd.date_range("2013-01-01", periods=5)),
     AppendMismatchError, ["'flux'", "datetimes"]),
    ("complex in a float column", with_("flux", np.ones(5, complex)), AppendMismatchError,
     ["'flux'", "complex"]),
    ("1e40 into float32", with_("flux", nan_at(1e40)), AppendMismatchError,
     ["'flux'", "float32", "position 2"]),
    ("fractions into int16", with_("n", nan_at(1.5)), AppendMismatchError,
     ["'n'", "int16", "whole numbers"]),
    ("NaN into int16", with_("n", nan_at(np.nan)), AppendMismatchError, ["'n'", "int16"]),
    ("40000 into int16", with_("n", np.full(5, 40000, np.int64)), AppendMismatchError,
     ["'n'", "[-32768, 32767]"]),
    ("pd.NA into int16", with_("n", pd.array([1, None, 3, 4, 5], dtype="Int64")),
     AppendMismatchError, ["'n'", "pd.NA"]),
    ("floats into bool", with_("flag", np.linspace(0, 1, 5)), AppendMismatchError,
     ["'flag'", "bool"]),
    ("a column missing", good().drop(columns="flux"), AppendMismatchError,
     ["missing ['flux']"]),
    ("an extra column", good().assign(extra=1.0), AppendMismatchError,
     ["unexpected ['extra']"]),
    ("an extra column, no rows", good().iloc[:0].assign(extra=1.0), AppendMismatchError,
     ["unexpected ['extra']"]),
    ("duplicate columns", pd.concat([good(), good()[["flux"]]], axis=1), AppendMismatchError,
     ["duplicate", "flux"]),
    ("a non-string column name", good().rename(columns={"flux": 0}), AppendMismatchError,
     ["column names", "0"]),
    ("no lon", good().drop(columns="lon"), AppendMismatchError, ["lon", "missing ['lon']"]),
    ("no time", good().drop(columns="time"), AppendMismatchError, ["missing ['time']"]),
    ("lon NaN", with_("lon", nan_at(np.nan)), IndexRangeError, ["lon", "finite"]),
    ("lat NaN", with_("lat", nan_at(np.nan)), IndexRangeError, ["lat", "finite"]),
    ("lon inf", with_("lon", nan_at(np.inf)), IndexRangeError, ["lon", "finite"]),
    ("lat 91", with_("lat", nan_at(91.0)), IndexRangeError, ["lat", "[-90, 90]"]),
    ("lon 400", with_("lon", nan_at(400.0)), IndexRangeError, ["lon", "[-360, 360]"]),
    ("lon as strings", with_("lon", list("abcde")), AppendMismatchError, ["'lon'"]),
    ("lat as bools", with_("lat", np.ones(5, bool)), AppendMismatchError, ["'lat'"]),
    ("time NaT", with_("time", pd.to_datetime(["2013-01-05", None, "2013-01-06",
                                               "2013-01-07", "2013-01-08"])),
     IndexRangeError, ["time", "NaT"]),
    ("time before t0", with_("time", ts("2012-12-31")), IndexRangeError,
     ["time", "[2013-01-01T00:00:00.000000000, 2013-03-01T00:00:00.000000000)"]),
    ("time at t1", with_("time", ts("2013-03-01")), IndexRangeError, ["time", "task interval"]),
    ("time 1 ns before t0", with_("time", ts("2012-12-31T23:59:59.999999999", "ns")),
     IndexRangeError, ["time", "task interval"]),
    ("time in 1500 (s)", with_("time", ts("1500-01-01")), IndexRangeError, ["time"]),
    ("time in 3000 (ms)", with_("time", ts("3000-01-01", "ms")), IndexRangeError, ["time"]),
    ("time as numbers", with_("time", np.arange(5)), TypeError, ["time", "numbers"]),
    ("time as timedeltas", with_("time", pd.to_timedelta(np.arange(5), "s")), TypeError,
     ["time", "timedeltas"]),
    ("time unparsable", with_("time", ["2013-01-05", "soon", "x", "y", "z"]), IndexRangeError,
     ["time"]),
    ("records not a table", [1, 2, 3], TypeError, ["records"]),
    ("dict of unequal columns", {"lon": [1.0, 2.0], "lat": [1.0], "time": ["2013-01-05"]},
     AppendMismatchError, ["records"]),
]


@pytest.mark.parametrize("records, exc, words", [c[1:] for c in APPEND],
                         ids=[c[0] for c in APPEND])
def test_bad_append(shared, records, exc, words):
    store = shared
    before = state(store)
    with pytest.raises(exc) as e:
        store.append(records)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert "PointStore.append" in str(e.value)
    assert state(store) == before


FIRST = [  # the first append of a store without declared variables defines them
    ("a string variable", good().assign(name="x"), AppendMismatchError, ["'name'", "strings"]),
    ("a reserved name", good().assign(key=1.0), AppendMismatchError, ["key", "reserved"]),
    ("a name with a slash", good().assign(**{"a/b": 1.0}), AppendMismatchError, ["a/b"]),
    ("a categorical variable", good().assign(c=pd.Categorical(list("abcab"))),
     AppendMismatchError, ["'c'"]),
]


@pytest.mark.parametrize("records, exc, words", [c[1:] for c in FIRST],
                         ids=[c[0] for c in FIRST])
def test_bad_first_append(tmp_path, records, exc, words):
    st = PointStore.create(tmp_path / "p", level=6, t0=T0, t1=T1)
    before = state(st)
    with pytest.raises(exc) as e:
        st.append(records)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert state(st) == before and st.variables == []


GOOD_TIMES = [
    ("datetime64[s]", ts("2013-02-01T12:00:01", "s")),
    ("datetime64[ms]", ts("2013-02-01T12:00:01.001", "ms")),
    ("datetime64[us]", ts("2013-02-01T12:00:01.000001", "us")),
    ("datetime64[ns]", ts("2013-02-01T12:00:01.000000001", "ns")),
    ("datetime64[D]", ts("2013-02-01", "D")),
    ("pandas default (us)", pd.Series(pd.date_range("2013-02-01T00:00:00.000001", periods=5,
                                                    freq="h"))),
    ("tz-aware", pd.Series(pd.date_range("2013-02-01T01:00", periods=5, freq="h",
                                         tz="Europe/Berlin"))),
    ("datetime objects", [dt.datetime(2013, 2, 1, 0, 0, 0, 1)] * 5),
    ("ISO strings", ["2013-02-01T00:00:00.000000001"] * 5),
]


@pytest.mark.parametrize("times", [c[1] for c in GOOD_TIMES], ids=[c[0] for c in GOOD_TIMES])
def test_every_time_unit_is_stored_exactly(tmp_path, times):
    st = PointStore.create(tmp_path / "q", level=6, t0=T0, t1=T1, variables=VARS)
    st.append(with_("time", times))
    want = pd.Series(times)
    if getattr(want.dtype, "tz", None) is not None:
        want = want.dt.tz_convert("UTC").dt.tz_localize(None)
    want = np.sort(pd.to_datetime(want).to_numpy().astype("datetime64[ns]"))
    got = np.sort(st.read()["time"].to_numpy())
    np.testing.assert_array_equal(got, want)


def test_value_preserving_casts_are_accepted(store):
    df = good().astype({"flux": "float64", "n": "int64"})
    df["time"] = pd.date_range("2013-02-05", periods=5, freq="D")  # after the first batch
    df["flux"] = df["flux"].astype("Float64")
    df.loc[1, "flux"] = pd.NA  # a nullable float: NA becomes NaN
    df["n"] = [1.0, 2.0, -3.0, 32767.0, -32768.0]  # whole floats into int16
    store.append(df)
    got = store.read().sort_values("time").iloc[-5:]
    np.testing.assert_array_equal(got["n"].to_numpy(), np.array([1, 2, -3, 32767, -32768],
                                                                "int16"))
    assert got["flux"].dtype == np.float32 and np.isnan(got["flux"].to_numpy()[1])
    assert len(store) == 10


CREATE = [
    ("unknown key", dict(key="hilbert"), ValueError, ["key", "hilbert"]),
    ("negative level", dict(level=-1), IndexRangeError, ["level"]),
    ("level as str", dict(level="5"), IndexRangeError, ["level"]),
    ("t1 before t0", dict(t0=T1, t1=T0), IndexRangeError, ["t1", "t0"]),
    ("t0 in 1500", dict(t0=np.datetime64("1500-01-01", "s")), IndexRangeError, ["t0"]),
    ("t1 unparsable", dict(t1="someday"), IndexRangeError, ["t1"]),
    ("fanout 3", dict(fanout=3), IndexRangeError, ["fanout"]),
    ("chunk_size 0", dict(chunk_size=0), ValueError, ["chunk_size"]),
    ("chunk_size True", dict(chunk_size=True), ValueError, ["chunk_size"]),
    ("chunk_size 2.5", dict(chunk_size=2.5), ValueError, ["chunk_size"]),
    ("variables a list", dict(variables=["a"]), TypeError, ["variables"]),
    ("a variable of no dtype", dict(variables={"a": "flaot"}), TypeError,
     ["variables['a']", "flaot"]),
    ("a string variable", dict(variables={"a": "str"}), TypeError, ["variables['a']"]),
    ("a datetime variable", dict(variables={"a": "datetime64[ns]"}), TypeError,
     ["variables['a']"]),
    ("a variable named lon", dict(variables={"lon": "float32"}), ValueError, ["lon"]),
    ("a reserved variable name", dict(variables={"key": "float32"}), ValueError, ["key"]),
    ("path a number", dict(path=123), TypeError, ["path"]),
    ("overwrite a str", dict(overwrite="yes"), TypeError, ["overwrite"]),
    ("negative lock_timeout", dict(lock_timeout=-1), ValueError, ["lock_timeout"]),
    ("keys past 64 bits", dict(level=20), IndexRangeError, ["needs 65 bits"]),
]


@pytest.mark.parametrize("kw, exc, words", [c[1:] for c in CREATE], ids=[c[0] for c in CREATE])
def test_bad_create(tmp_path, kw, exc, words):
    args = dict(path=tmp_path / "p", level=6, t0=T0, t1=T1) | kw
    with pytest.raises(exc) as e:
        PointStore.create(args.pop("path"), **args)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert not (tmp_path / "p").exists()


def test_create_over_an_existing_store(shared):
    store = shared
    before = state(store)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        PointStore.create(store.path, t0=T0, t1=T1)
    assert state(store) == before


QUERY = [
    ("region a str", dict(region="Europe"), TypeError, ["region"]),
    ("stop before start", dict(time=("2013-02-10", "2013-02-01")), IndexRangeError, ["time"]),
    ("time a number", dict(time=5), TypeError, ["time"]),
    ("start unparsable", dict(time=("soon", None)), IndexRangeError, ["time[0]"]),
    ("stop in 3000", dict(time=(None, np.datetime64("3000-01-01", "s"))), IndexRangeError,
     ["time[1]"]),
    ("variables a str", dict(variables="flux"), TypeError, ["variables", "['flux']"]),
    ("an unknown variable", dict(variables=["nope"]), StoreError, ["nope"]),
    ("max_ranges 0", dict(max_ranges=0), ValueError, ["max_ranges"]),
    ("span 0", dict(span=0), ValueError, ["span"]),
    ("span 1.5", dict(span=1.5), ValueError, ["span"]),
]


@pytest.mark.parametrize("kw, exc, words", [c[1:] for c in QUERY], ids=[c[0] for c in QUERY])
def test_bad_query(shared, kw, exc, words):
    store = shared
    with pytest.raises(exc) as e:
        store.query(**kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_bad_open(tmp_path):
    with pytest.raises(TypeError, match="path"):
        PointStore(123)
    with pytest.raises(StoreNotFoundError, match=re.escape(str(tmp_path / "none"))):
        PointStore(tmp_path / "none")
    assert not (tmp_path / "none").exists()  # looking does not create anything
    with pytest.raises(ValueError, match="lock_timeout"):
        PointStore(tmp_path, lock_timeout="soon")


# corrupt stores: every error names the store and what is damaged
def test_garbled_manifest(store):
    (store.path / "zarr.json").write_text("{ torn")
    with pytest.raises(StoreCorruptError, match=re.escape(str(store.path / "zarr.json"))):
        PointStore(store.path)


def test_missing_chunk_is_an_error_not_fill_values(store):
    run = store.runs[0]["name"]
    (store.path / "runs" / run / "flux" / "c" / "0").unlink()
    with pytest.raises(StoreCorruptError) as e:
        PointStore(store.path).read()
    for w in (str(store.path), "flux/c/0", run, "missing"):
        assert w in str(e.value)


def test_garbage_chunk(store):
    run = store.runs[0]["name"]
    (store.path / "runs" / run / "lat" / "c" / "1").write_bytes(b"garbage" * 9)
    with pytest.raises(StoreCorruptError) as e:
        PointStore(store.path).query(Cap(0, 0, 180))
    for w in (str(store.path), "lat/c/1", run, "corrupt"):
        assert w in str(e.value)

"""Bad input to the Zarr cube store API: each case names the exception and what the
message must name (the argument, the store, the chunk)."""

import os

import numpy as np
import pytest

import stengine
from stengine.errors import (
    AppendMismatchError,
    StoreCorruptError,
    StoreNotFoundError,
)
from stengine.testing import make_cube


def _cube(nt=3, t0="2020-01-01", unit="ns", dtype="f4", seed=0):
    da = make_cube((nt, 20, 30), dtype, seed=seed)
    t = np.datetime64(t0, unit) + np.arange(nt) * np.timedelta64(1, "D")
    return da.assign_coords(time=t.astype(f"M8[{unit}]"))


@pytest.fixture
def store(tmp_path):
    s = tmp_path / "c.zarr"
    stengine.to_zarr(_cube().chunk({"time": 1, "y": 10, "x": 15}), s)
    return s


def _files(store):
    return {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------- to_zarr arguments
def _later(**kw):
    return _cube(2, "2020-02-01", **kw)


def _crs(da, epsg):
    ref = da.spatial_ref.assign_attrs(crs_wkt=f"EPSG:{epsg}", spatial_ref=f"EPSG:{epsg}")
    return da.assign_coords(spatial_ref=ref)


TO_ZARR_CASES = [
    # id, call(store, tmp_path), exception, message must contain ("{store}" = the path)
    ("bad-mode", lambda s, t: stengine.to_zarr(_cube(), s, mode="x"), ValueError, "mode"),
    ("append-no-dim", lambda s, t: stengine.to_zarr(_later(), s, mode="a"), ValueError,
     "append_dim"),
    ("dim-without-append", lambda s, t: stengine.to_zarr(_cube(), s, append_dim="time"),
     ValueError, "append_dim"),
    ("append-dim-not-in-data", lambda s, t: stengine.to_zarr(_later(), s, mode="a",
                                                             append_dim="band"),
     ValueError, "append_dim 'band'"),
    ("not-xarray", lambda s, t: stengine.to_zarr(np.zeros(3), s), TypeError, "obj"),
    ("compute-false", lambda s, t: stengine.to_zarr(_cube(), s, compute=False), ValueError,
     "compute"),
    ("append-missing-store", lambda s, t: stengine.to_zarr(_later(), t / "none.zarr",
                                                           mode="a", append_dim="time"),
     StoreNotFoundError, "none.zarr"),
    ("append-missing-folder", lambda s, t: stengine.to_zarr(_later(), t / "no" / "c.zarr",
                                                            mode="a", append_dim="time"),
     StoreNotFoundError, "c.zarr"),
    ("w-exists", lambda s, t: stengine.to_zarr(_cube(), s, mode="w-"), FileExistsError,
     "{store}"),
    ("w-over-non-store", lambda s, t: (os.makedirs(t / "docs"), (t / "docs" / "a").touch(),
                                       stengine.to_zarr(_cube(), t / "docs")),
     FileExistsError, "not a Zarr store"),
]


@pytest.mark.parametrize("case", TO_ZARR_CASES, ids=[c[0] for c in TO_ZARR_CASES])
def test_to_zarr_bad_input(store, tmp_path, case):
    _, call, exc, msg = case
    before = _files(store)
    with pytest.raises(exc) as info:
        call(store, tmp_path)
    assert msg.format(store=store) in str(info.value)
    assert _files(store) == before


# ----------------------------------------------------------------------- appends that differ
APPEND_CASES = [
    # id, data to append, what the message names
    ("other-crs", lambda: _crs(_later(), 4326), "CRS"),
    ("grid-shifted-1000m", lambda: _later().assign_coords(x=_later().x + 1000), "grid"),
    ("other-y-size", lambda: make_cube((2, 21, 30), "f4").assign_coords(
        time=_later().time.values), "'y'"),
    ("other-variable-name", lambda: _later().rename("w"), "variables differ"),
    ("extra-variable", lambda: _later().to_dataset().assign(w=_later()), "variables differ"),
    ("duplicate-time", lambda: _cube(2, "2020-01-03"), "not after the store's last time"),
    ("earlier-time", lambda: _cube(2, "2019-01-01"), "not after the store's last time"),
    ("unsorted-time", lambda: _later().isel(time=[1, 0]), "not strictly increasing"),
    ("repeated-time", lambda: _later().isel(time=[0, 0]), "not strictly increasing"),
    ("nat-time", lambda: _later().assign_coords(
        time=np.array(["2020-02-01", "NaT"], "M8[ns]")), "NaT"),
    ("no-time-coord", lambda: _later().drop_vars("time"), "no 'time' coordinate"),
    ("float64-overflow", lambda: _later(dtype="f8") * 0 + 1e40, "float32"),
    ("float64-overflow-dask", lambda: (_later(dtype="f8") * 0 + 1e40).chunk({"time": 1}),
     "float32"),
    ("int-not-exact-in-float32", lambda: _later(dtype="i4") * 0 + (2**24 + 1), "float32"),
    ("float-into-int-store", None, "int16"),
    ("int-overflow", None, "int16"),
    ("finer-time-than-store", None, "finer resolution"),
    ("time-outside-store-unit", lambda: _cube(2, "3000-01-01", unit="s"), "range"),
]


@pytest.mark.parametrize("case", APPEND_CASES, ids=[c[0] for c in APPEND_CASES])
def test_append_mismatch_refused_naming_what_differs(store, tmp_path, case):
    name, make, msg = case
    if make is None:  # cases that need a store of another dtype or time unit
        store = tmp_path / "other.zarr"
        if name == "finer-time-than-store":
            stengine.to_zarr(_cube(unit="s"), store)
            data = _cube(2, "2020-02-01T00:00:00.5", unit="ms")
        else:
            stengine.to_zarr(_cube(dtype="i2"), store)
            data = _later(dtype="f4") if name.startswith("float") else \
                _later(dtype="i4") * 0 + 40000
    else:
        data = make()
    before = _files(store)
    with pytest.raises(AppendMismatchError) as info:
        stengine.to_zarr(data, store, mode="a", append_dim="time")
    assert str(store) in str(info.value) and msg in str(info.value)
    assert _files(store) == before  # nothing written (or rolled back byte for byte)
    assert not [p for p in tmp_path.iterdir() if "stengine" in p.name]


# ----------------------------------------------------------------------- open_cube
def _corrupt_chunk(s):
    (s / "v" / "c" / "1" / "0" / "1").write_bytes(b"not zstd" * 8)


def _delete_chunk(s):
    (s / "v" / "c" / "2" / "1" / "0").unlink()


OPEN_CASES = [
    # id, damage(store, tmp_path) -> path to open, when (open | read), exception, names
    ("missing-store", lambda s, t: t / "none.zarr", "open", StoreNotFoundError, "none.zarr"),
    ("missing-folder", lambda s, t: t / "no" / "c.zarr", "open", StoreNotFoundError,
     "c.zarr"),
    ("a-file", lambda s, t: ((t / "f.zarr").write_text("x"), t / "f.zarr")[1], "open",
     StoreNotFoundError, "f.zarr"),
    ("garbled-root-zarr.json", lambda s, t: ((s / "zarr.json").write_text("{garbled"), s)[1],
     "open", StoreCorruptError, "c.zarr/zarr.json"),
    ("garbled-array-zarr.json", lambda s, t: ((s / "v" / "zarr.json").write_text("{x"), s)[1],
     "open", StoreCorruptError, "c.zarr/v/zarr.json"),
    ("corrupt-time-chunk", lambda s, t: ((s / "time" / "c" / "0").write_bytes(b"x" * 9),
                                         s)[1], "open", StoreCorruptError, "time/c/0"),
    ("deleted-array", lambda s, t: (os.rename(s / "v", t / "v-away"), s)[1], "open",
     StoreCorruptError, "['v']"),
    ("corrupt-chunk", lambda s, t: (_corrupt_chunk(s), s)[1], "read", StoreCorruptError,
     "v/c/1/0/1"),
    ("deleted-chunk", lambda s, t: (_delete_chunk(s), s)[1], "read", StoreCorruptError,
     "v/c/2/1/0"),
]


@pytest.mark.parametrize("case", OPEN_CASES, ids=[c[0] for c in OPEN_CASES])
def test_open_cube_bad_store(store, tmp_path, case):
    _, damage, when, exc, names = case
    path = damage(store, tmp_path)
    with pytest.raises(exc) as info:
        cube = stengine.open_cube(path)
        assert when == "read", "the open itself should have failed"
        _ = cube.values
    msg = str(info.value)
    assert str(path) in msg and names in msg, msg


@pytest.mark.parametrize("chunks", ["auto", None, {"y": 20, "x": 30}])
def test_damaged_chunk_named_whatever_the_dask_chunks(store, chunks):
    _corrupt_chunk(store)
    with pytest.raises(StoreCorruptError, match=r"v/c/1/0/1 of variable 'v'"):
        _ = stengine.open_cube(store, chunks=chunks).values


def test_missing_fill_reads_fill_values(store):
    _delete_chunk(store)
    back = stengine.open_cube(store, missing="fill").values
    expect = _cube().values
    assert np.isnan(back[2, 10:20, 0:15]).all()
    back[2, 10:20, 0:15] = expect[2, 10:20, 0:15]
    np.testing.assert_array_equal(back, expect)


@pytest.mark.parametrize("kw, exc, names", [
    (dict(missing="zero"), ValueError, "missing"),
    (dict(chunks=5), TypeError, "chunks"),
    (dict(variable="nope"), KeyError, "nope"),
])
def test_open_cube_bad_arguments(store, kw, exc, names):
    with pytest.raises(exc, match=names):
        stengine.open_cube(store, **kw)

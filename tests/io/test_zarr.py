import subprocess
import sys
import textwrap

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import stengine
from stengine.errors import StoreNotFoundError
from stengine.testing import make_cube


def _cube(nt=4, seed=0, t0="2020-01-01"):
    da = make_cube((nt, 20, 30), "f4", seed=seed)
    return da.assign_coords(time=np.datetime64(t0, "ns") + np.arange(nt) * np.timedelta64(
        6, "h")).chunk({"time": 2, "y": 8, "x": 16})


def test_round_trip_crs_time_attrs(tmp_path):
    da = _cube()
    stengine.to_zarr(da, tmp_path / "c.zarr")
    back = stengine.open_cube(tmp_path / "c.zarr")
    assert isinstance(back, xr.DataArray) and back.name == da.name
    xr.testing.assert_identical(back.compute().drop_vars("spatial_ref"),
                                da.compute().drop_vars("spatial_ref"))
    assert back.st.grid == da.st.grid
    assert back.time.dtype == np.dtype("M8[ns]")
    assert back.chunks == ((2, 2), (8, 8, 4), (16, 14))
    # compressed, Zarr v3
    meta = (tmp_path / "c.zarr" / "v" / "zarr.json").read_text()
    assert '"zarr_format": 3' in meta and "zstd" in meta


def test_round_trip_integer_nodata_is_not_masked(tmp_path):
    da = make_cube((9, 7), "u1", classes=4, nodata=0)
    stengine.to_zarr(da, tmp_path / "i.zarr")
    back = stengine.open_cube(tmp_path / "i.zarr", chunks=None)
    assert back.dtype == np.uint8 and back.attrs["nodata"] == 0
    np.testing.assert_array_equal(back.values, da.values)


def test_dataset_round_trip(tmp_path):
    ds = xr.Dataset({"a": make_cube((5, 6), "f4"), "b": make_cube((5, 6), "i2", classes=3)})
    stengine.to_zarr(ds, tmp_path / "d.zarr")
    back = stengine.open_cube(tmp_path / "d.zarr")
    assert isinstance(back, xr.Dataset) and set(back.data_vars) == {"a", "b"}
    assert back.a.st.grid == ds.a.st.grid
    assert stengine.open_cube(tmp_path / "d.zarr", variable="b").dtype == np.int16


def test_append_along_time(tmp_path):
    store = tmp_path / "c.zarr"
    a, b = _cube(3), _cube(4, seed=1, t0="2020-01-02")  # 3 % 2 != 0: partial boundary chunk
    stengine.to_zarr(a, store)
    stengine.to_zarr(b, store, mode="a", append_dim="time")
    back = stengine.open_cube(store).compute()
    expect = xr.concat([a, b], "time").compute()
    np.testing.assert_array_equal(back.values, expect.values)
    np.testing.assert_array_equal(back.time.values, expect.time.values)
    assert not list(tmp_path.glob("*stengine*"))


def _failing(da, after_blocks):
    """``da`` whose dask blocks raise after ``after_blocks`` have been produced."""
    state = {"n": 0}

    def maybe_fail(block):
        state["n"] += 1
        if state["n"] > after_blocks:
            raise RuntimeError("disk on fire")
        return block

    return da.copy(data=da.data.map_blocks(maybe_fail, dtype=da.dtype))


def test_failed_overwrite_leaves_previous_store(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube()
    stengine.to_zarr(old, store)
    with pytest.raises(RuntimeError, match="disk on fire"):
        stengine.to_zarr(_failing(_cube(seed=5), 3), store)
    np.testing.assert_array_equal(stengine.open_cube(store).values, old.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]


def test_failed_append_rolls_back(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube(3)
    stengine.to_zarr(old, store)
    before = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="disk on fire"):
        stengine.to_zarr(_failing(_cube(4, seed=2, t0="2020-01-02"), 5), store, mode="a",
                         append_dim="time")
    after = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after == before  # byte for byte, partial boundary chunk included
    back = stengine.open_cube(store)
    assert back.sizes["time"] == 3
    np.testing.assert_array_equal(back.values, old.values)


@pytest.mark.slow
def test_crash_during_append_is_recovered_on_open(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube(3)
    stengine.to_zarr(old, store)
    script = textwrap.dedent(f"""
        import os, numpy as np, xarray as xr, stengine
        from stengine.testing import make_cube
        da = make_cube((4, 20, 30), "f4", seed=3)
        da = da.assign_coords(time=np.datetime64("2020-01-02", "ns") + np.arange(4) *
                              np.timedelta64(6, "h")).chunk({{"time": 2, "y": 8, "x": 16}})
        n = [0]
        def die(b):
            n[0] += 1
            if n[0] > 4:
                os._exit(9)   # the process dies mid-write: no exception handler runs
            return b
        da = da.copy(data=da.data.map_blocks(die, dtype=da.dtype))
        import dask
        dask.config.set(scheduler="synchronous")
        stengine.to_zarr(da, {str(store)!r}, mode="a", append_dim="time")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert (tmp_path / "c.zarr.stengine-txn").exists()
    with pytest.warns(UserWarning, match="interrupted"):
        back = stengine.open_cube(store)
    assert back.sizes["time"] == 3
    np.testing.assert_array_equal(back.values, old.values)
    # and the store still takes appends
    stengine.to_zarr(_cube(2, seed=4, t0="2020-01-05"), store, mode="a", append_dim="time")
    assert stengine.open_cube(store).sizes["time"] == 5


def test_bad_input(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no Zarr store"):
        stengine.open_cube(tmp_path / "missing.zarr")
    with pytest.raises(StoreNotFoundError, match="cannot append"):
        stengine.to_zarr(_cube(), tmp_path / "missing.zarr", mode="a", append_dim="time")
    stengine.to_zarr(_cube(), tmp_path / "c.zarr")
    with pytest.raises(FileExistsError, match="mode='w'"):
        stengine.to_zarr(_cube(), tmp_path / "c.zarr", mode="w-")
    with pytest.raises(ValueError, match="append_dim"):
        stengine.to_zarr(_cube(), tmp_path / "c.zarr", mode="a")
    with pytest.raises(TypeError, match="DataArray or Dataset"):
        stengine.to_zarr(np.zeros(3), tmp_path / "x.zarr")


def test_irregular_dask_chunks_are_made_regular(tmp_path):
    da = make_cube((10, 12), "f4")
    da = da.copy(data=dsa.from_array(da.values, chunks=((3, 5, 2), (4, 8))))
    stengine.to_zarr(da, tmp_path / "r.zarr")
    np.testing.assert_array_equal(stengine.open_cube(tmp_path / "r.zarr").values, da.values)


def test_failed_write_waits_for_tasks_still_running(tmp_path):
    """Rollback must not race with chunk writes that were in flight when one failed."""
    import threading
    import time

    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    done = []
    started = threading.Event()

    def slow_or_fail(block, block_info=None):
        if block_info[0]["chunk-location"][1] == 0:
            started.wait(5)
            raise RuntimeError("first chunk fails")
        started.set()
        time.sleep(0.5)
        done.append(1)
        return block

    new = _cube(4, seed=2, t0="2020-01-02")
    new = new.copy(data=new.data.map_blocks(slow_or_fail, dtype=new.dtype))
    with pytest.raises(RuntimeError, match="first chunk fails"):
        stengine.to_zarr(new, store, mode="a", append_dim="time")
    n = len(done)
    time.sleep(0.7)
    assert len(done) == n, "a chunk task was still running after to_zarr returned"
    assert stengine.open_cube(store).sizes["time"] == 3


# --------------------------------------------------------------------------- datetimes
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_datetime_unit_round_trips_exactly(tmp_path, unit):
    t = np.array(["2020-01-01T00:00:01", "2020-01-02T03:04:05"], "M8[s]").astype(f"M8[{unit}]")
    if unit != "s":
        t = t + np.timedelta64(7, unit)  # a value only this unit holds
    da = make_cube((2, 4, 5), "f4").assign_coords(time=t)
    stengine.to_zarr(da, tmp_path / "t.zarr")
    back = stengine.open_cube(tmp_path / "t.zarr")
    assert back.time.dtype == t.dtype
    np.testing.assert_array_equal(back.time.values, t)


def test_pandas_date_range_round_trips(tmp_path):
    import pandas as pd

    t = pd.date_range("2020-01-01", periods=3, freq="D")  # datetime64[us] in pandas 3
    da = make_cube((3, 4, 5), "f4").assign_coords(time=t)
    stengine.to_zarr(da, tmp_path / "t.zarr")
    back = stengine.open_cube(tmp_path / "t.zarr")
    assert not np.isnat(back.time.values).any()
    np.testing.assert_array_equal(back.time.values, t.values)


@pytest.mark.parametrize("year", ["1500", "3000"])
def test_times_outside_the_ns_range_round_trip_and_append(tmp_path, year):
    def part(start, n=2):
        t = np.datetime64(f"{year}-{start}", "s") + np.arange(n) * np.timedelta64(1, "h")
        return make_cube((n, 4, 5), "f4").assign_coords(time=t)

    store = tmp_path / "t.zarr"
    stengine.to_zarr(part("01-01"), store)
    stengine.to_zarr(part("02-01"), store, mode="a", append_dim="time")
    back = stengine.open_cube(store)
    assert back.time.dtype == np.dtype("M8[s]")
    expect = np.concatenate([part("01-01").time.values, part("02-01").time.values])
    np.testing.assert_array_equal(back.time.values, expect)


def test_append_of_another_time_unit(tmp_path):
    store = tmp_path / "t.zarr"
    stengine.to_zarr(_cube(2), store)  # ns
    more = [_cube(1, t0="2020-02-01"), _cube(1, t0="2020-03-01"), _cube(1, t0="2020-04-01")]
    for da, unit in zip(more, ["us", "s", "ms"], strict=True):
        da = da.assign_coords(time=da.time.values.astype(f"M8[{unit}]"))
        stengine.to_zarr(da, store, mode="a", append_dim="time")
    back = stengine.open_cube(store)
    assert back.time.dtype == np.dtype("M8[ns]")
    expect = np.concatenate([_cube(2).time.values] + [d.time.values for d in more])
    np.testing.assert_array_equal(back.time.values, expect)


def test_day_unit_is_stored_as_seconds(tmp_path):
    t = np.array(["2020-01-01", "2020-01-05"], "M8[D]")
    stengine.to_zarr(make_cube((2, 4, 5), "f4").assign_coords(time=t), tmp_path / "d.zarr")
    back = stengine.open_cube(tmp_path / "d.zarr")
    np.testing.assert_array_equal(back.time.values, t.astype("M8[s]"))


# --------------------------------------------------------------------------- complete stores
def test_every_chunk_is_written_and_the_store_marked_complete(tmp_path):
    da = _cube(2) * np.nan  # all-NaN chunks: plain Zarr would skip writing them
    stengine.to_zarr(da, tmp_path / "c.zarr")
    stengine.to_zarr(_cube(2, t0="2020-01-03") * np.nan, tmp_path / "c.zarr", mode="a",
                     append_dim="time")
    files = [p for p in (tmp_path / "c.zarr" / "v" / "c").rglob("*") if p.is_file()]
    assert len(files) == 2 * 3 * 2  # time chunks of 2 (4 steps), y 8 (20), x 16 (30)
    back = stengine.open_cube(tmp_path / "c.zarr")
    assert "stengine_written" not in back.attrs
    assert np.isnan(back.values).all()
    # and the lock file is gone once nobody holds it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]


def test_append_keeps_grid_mapping_and_store_attrs(tmp_path):
    store = tmp_path / "c.zarr"
    a = _cube(2).assign_attrs(source="first")
    stengine.to_zarr(a, store)
    stengine.to_zarr(_cube(2, seed=1, t0="2020-01-03").assign_attrs(source="second"), store,
                     mode="a", append_dim="time")
    back = stengine.open_cube(store)
    assert "spatial_ref" in back.coords and back.st.grid == a.st.grid
    assert back.attrs["source"] == "first"  # the store's attrs; appends add data only


def test_append_to_a_store_with_other_cf_time_units(tmp_path):
    """A store another tool wrote ("days since 2000-01-01"): appends keep its encoding."""
    store = tmp_path / "f.zarr"
    t = np.array(["2000-01-01", "2000-01-02", "2000-01-05"], "M8[ns]")
    xr.Dataset({"v": (("time", "x"), np.ones((3, 2)))}, coords={"time": t}).to_zarr(
        store, zarr_format=3, consolidated=False,
        encoding={"time": {"units": "days since 2000-01-01"}})
    new = xr.Dataset({"v": (("time", "x"), np.zeros((1, 2)))},
                     coords={"time": np.array(["2000-01-07"], "M8[s]")})
    stengine.to_zarr(new, store, mode="a", append_dim="time")
    back = stengine.open_cube(store)
    np.testing.assert_array_equal(back.time.values, np.r_[t, np.array(["2000-01-07"],
                                                                        "M8[ns]")])
    np.testing.assert_array_equal(back.v.values, [[1, 1]] * 3 + [[0, 0]])

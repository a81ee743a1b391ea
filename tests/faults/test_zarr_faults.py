"""Faults and concurrency on Zarr cube stores, with real processes and real stores.

Writers run as spawned Python processes; a slow dask graph keeps each write open long
enough for the test to kill it (SIGKILL: no handler runs) or to race it.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import xarray as xr

import stengine
from stengine.errors import AppendMismatchError, StoreLockedError, StoreNotFoundError
from stengine.io import _atomic, _lock
from stengine.testing import make_cube

pytestmark = pytest.mark.slow

_CHILD = """
import os, sys, time, numpy as np, stengine
from stengine.testing import make_cube
store, mode, t0, nt, seed, slow, marker, go = sys.argv[1:9]
nt, seed, slow = int(nt), int(seed), float(slow)
ready, hold = os.environ.get("T_READY"), os.environ.get("T_HOLD")
da = make_cube((nt, 20, 30), "f4", seed=seed)
da = da.assign_coords(time=np.datetime64(t0, "ns") + np.arange(nt) * np.timedelta64(6, "h"))
da = da.chunk({"time": 1, "y": 10, "x": 15})
def slowly(b):
    if b.size == 0:   # dask's meta probe, at graph construction
        return b
    if marker != "-":
        open(marker, "a").close()   # the write has started: the lock is held
    while hold and not os.path.exists(hold):
        time.sleep(0.005)
    time.sleep(slow)
    return b
da = da.copy(data=da.data.map_blocks(slowly, dtype=da.dtype))
import dask
dask.config.set(scheduler="synchronous")
while go != "-" and not os.path.exists(go):
    time.sleep(0.005)
if ready:
    open(ready, "a").close()
try:
    if mode == "a":
        stengine.to_zarr(da, store, mode="a", append_dim="time")
    else:
        stengine.to_zarr(da, store)
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(3)
"""


def _cube(nt, seed=0, t0="2020-01-01"):
    da = make_cube((nt, 20, 30), "f4", seed=seed)
    return da.assign_coords(time=np.datetime64(t0, "ns") + np.arange(nt) * np.timedelta64(
        6, "h")).chunk({"time": 1, "y": 10, "x": 15})


def _writer(tmp_path, store, *, mode="a", t0="2020-01-02", nt=2, seed=1, slow=0.0,
            marker="-", go="-", env=None):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD))
    return subprocess.Popen(
        [sys.executable, str(script), str(store), mode, t0, str(nt), str(seed), str(slow),
         str(marker), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})


def _wait_for(path, proc, timeout=60):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.communicate()}")
        if time.monotonic() > end:
            raise AssertionError("writer never started writing")
        time.sleep(0.005)


def _files(store):
    return {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if "stengine" in p.name)


def test_killed_overwrite_leaves_previous_store(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube(3)
    stengine.to_zarr(old, store)
    before = _files(store)
    p = _writer(tmp_path, store, mode="w", t0="2021-01-01", nt=6, seed=7, slow=0.2,
                marker=tmp_path / "started")
    _wait_for(tmp_path / "started", p)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert any(".stengine-tmp-" in n for n in _leftovers(tmp_path))  # the kill left it
    back = stengine.open_cube(store)
    assert _leftovers(tmp_path) == []  # cleaned by the open (no writer alive)
    assert _files(store) == before
    np.testing.assert_array_equal(back.values, old.values)


def test_killed_append_rolls_back_on_next_open(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube(3)  # time chunks of 1: the append adds chunk files beyond the old shape
    stengine.to_zarr(old, store)
    before = _files(store)
    p = _writer(tmp_path, store, nt=6, slow=0.15, marker=tmp_path / "started")
    _wait_for(tmp_path / "started", p)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (tmp_path / "c.zarr.stengine-txn").exists()
    with pytest.warns(UserWarning, match="interrupted"):
        back = stengine.open_cube(store)
    assert _leftovers(tmp_path) == []
    assert _files(store) == before  # byte for byte: metadata, chunks, no extra chunk files
    np.testing.assert_array_equal(back.values, old.values)
    # and it takes appends again
    stengine.to_zarr(_cube(2, seed=4, t0="2020-01-05"), store, mode="a", append_dim="time")
    assert stengine.open_cube(store).sizes["time"] == 5


def test_reader_during_append_waits_and_never_rolls_back(tmp_path):
    store = tmp_path / "c.zarr"
    old = _cube(3)
    stengine.to_zarr(old, store)
    p = _writer(tmp_path, store, nt=4, slow=0.1, marker=tmp_path / "started")
    _wait_for(tmp_path / "started", p)
    sizes = []
    while p.poll() is None:  # a rollback would warn, and warnings are errors here
        back = stengine.open_cube(store)
        sizes.append(back.sizes["time"])
        np.testing.assert_array_equal(back.isel(time=slice(0, 3)).values, old.values)
    out, err = p.communicate()
    assert p.returncode == 0, err
    assert set(sizes) <= {3, 7} and sizes[0] == 7  # the first open waited for the commit
    back = stengine.open_cube(store)
    assert back.sizes["time"] == 7
    assert _leftovers(tmp_path) == []


def test_two_appenders_both_land_exactly_once(tmp_path):
    """B calls to_zarr while A holds the lock: B waits, then appends after A."""
    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    release = tmp_path / "release"
    a = _writer(tmp_path, store, t0="2020-01-02", nt=2, seed=1,
                marker=tmp_path / "a-started", env={"T_HOLD": str(release)})
    b = _writer(tmp_path, store, t0="2020-01-03", nt=2, seed=2, go=tmp_path / "a-started",
                env={"T_READY": str(tmp_path / "b-ready")})
    _wait_for(tmp_path / "a-started", a)
    _wait_for(tmp_path / "b-ready", b)
    time.sleep(0.3)  # B is now waiting for A's lock
    assert b.poll() is None
    release.touch()
    for p in (a, b):
        assert p.wait(120) == 0, p.communicate()
    back = stengine.open_cube(store)
    expect = xr.concat([_cube(3), _cube(2, 1, "2020-01-02"), _cube(2, 2, "2020-01-03")],
                       "time")
    np.testing.assert_array_equal(back.time.values, expect.time.values)
    np.testing.assert_array_equal(back.values, expect.values)
    assert _leftovers(tmp_path) == []


def test_racing_appenders_commit_each_once_or_fail_cleanly(tmp_path):
    """Started at the same instant: both land in time order, or the one that comes
    second with earlier times fails with AppendMismatchError and writes nothing."""
    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    go = tmp_path / "go"
    parts = {"early": ("2020-01-02", 1), "late": ("2020-01-03", 2)}
    procs = {k: _writer(tmp_path, store, t0=t0, nt=2, seed=s, slow=0.02, go=go)
             for k, (t0, s) in parts.items()}
    time.sleep(0.5)
    go.touch()
    ok = {}
    for k, p in procs.items():
        _, err = p.communicate(timeout=120)
        ok[k] = p.returncode == 0
        assert p.returncode in (0, 3), err
        if not ok[k]:
            assert "AppendMismatchError" in err and "not after the store's last" in err, err
    assert ok["late"]  # the later times always fit after whatever came first
    cubes = [_cube(3)] + [_cube(2, parts[k][1], parts[k][0]) for k in ("early", "late")
                          if ok[k]]
    expect = xr.concat(cubes, "time")
    back = stengine.open_cube(store)
    np.testing.assert_array_equal(back.time.values, expect.time.values)  # each once
    np.testing.assert_array_equal(back.values, expect.values)
    assert _leftovers(tmp_path) == []


def test_second_writer_times_out_naming_store(tmp_path):
    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    release = tmp_path / "release"
    p = _writer(tmp_path, store, nt=4, marker=tmp_path / "started",
                env={"T_HOLD": str(release)})
    _wait_for(tmp_path / "started", p)
    t = time.monotonic()
    with pytest.raises(StoreLockedError, match=rf"{store}.*pid {p.pid}"):
        stengine.to_zarr(_cube(1, t0="2021-01-01"), store, mode="a", append_dim="time",
                         lock_timeout=0.2)
    assert time.monotonic() - t < 5
    with pytest.raises(StoreLockedError, match=str(store)):
        stengine.open_cube(store, lock_timeout=0.1)  # a reader waits for the commit too
    # recovery (what PointStore and every open call) leaves a live writer's journal alone
    assert _lock.writer_alive(store) and (tmp_path / "c.zarr.stengine-txn").exists()
    assert _atomic.recover(store) is False
    assert (tmp_path / "c.zarr.stengine-txn").exists()
    release.touch()
    assert p.wait(120) == 0, p.communicate()
    assert stengine.open_cube(store).sizes["time"] == 7  # the held append landed, once


def test_interleaved_append_is_refused_before_writing(tmp_path):
    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    stengine.to_zarr(_cube(2, 1, "2020-01-03"), store, mode="a", append_dim="time")
    before = _files(store)
    with pytest.raises(AppendMismatchError, match="not after the store's last time"):
        stengine.to_zarr(_cube(2, 2, "2020-01-02"), store, mode="a", append_dim="time")
    assert _files(store) == before


def test_threads_of_one_process_take_turns(tmp_path):
    """flock locks are per open file: two threads exclude each other like processes."""
    store = tmp_path / "c.zarr"
    stengine.to_zarr(_cube(3), store)
    inside, overlap = [], []

    def hold():
        with _lock.write_lock(store):
            inside.append(1)
            if len(inside) > 1:
                overlap.append(1)
            time.sleep(0.2)
            inside.pop()

    ts = [threading.Thread(target=hold) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not overlap
    assert not _lock.writer_alive(store) and not _lock.lock_path(store).exists()


def test_swap_interrupted_between_renames_is_restored(tmp_path):
    """The state a kill between write_aside's two renames leaves: the old store moved
    aside, the new one still a tmp folder."""
    store = tmp_path / "c.zarr"
    old = _cube(3)
    stengine.to_zarr(old, store)
    before = _files(store)
    stengine.to_zarr(_cube(2, seed=9), tmp_path / "new.zarr")
    os.rename(store, tmp_path / "c.zarr.stengine-old-0123456789")
    os.rename(tmp_path / "new.zarr", tmp_path / "c.zarr.stengine-tmp-0123456789")
    with pytest.warns(UserWarning, match="swap was interrupted"):
        back = stengine.open_cube(store)
    assert _files(store) == before and _leftovers(tmp_path) == []
    np.testing.assert_array_equal(back.values, old.values)


def test_killed_first_write_leaves_nothing_behind(tmp_path):
    store = tmp_path / "c.zarr"
    p = _writer(tmp_path, store, mode="w", nt=4, slow=0.2, marker=tmp_path / "started")
    _wait_for(tmp_path / "started", p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    with pytest.raises(StoreNotFoundError, match="no Zarr store"):
        stengine.open_cube(store)
    assert _leftovers(tmp_path) == []
    stengine.to_zarr(_cube(2), store, mode="w-")  # the path is free again

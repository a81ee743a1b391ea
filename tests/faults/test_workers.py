"""A worker killed mid-compute: every op family still gives the undisturbed result.

A real 2-process ``LocalCluster``; each source chunk takes a short time to "read" (a
sleep in the task that makes it), so a computation is still running when a watcher
thread SIGKILLs the worker process holding the most finished chunks. Dask then
recomputes what that worker held on the other worker (and on the restarted one), and
the result must equal the run without a kill: a local op, a focal op, a zonal op
(computes inside the call), an H3 cell op (``to_cells``, computes inside the call) and
a Zarr write with ``stengine.to_zarr``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.base import tokenize
from distributed import Client, LocalCluster

import stengine
from stengine.cube import make_raster
from stengine.grid import Grid

pytestmark = pytest.mark.slow

READ_DELAY = 0.04  # seconds per source chunk
GRID = Grid.from_bbox((5.0, 45.0, 9.0, 48.0), 1 / 40, crs=4326)  # 120 x 160 pixels
CHUNKS = (20, 20)  # 48 chunks


def _read_block(block_info=None, *, seed, out_dtype):
    """A deterministic chunk (from its position), after a pause like a storage read."""
    info = block_info[None]
    time.sleep(READ_DELAY)
    rng = np.random.default_rng([seed, *(start for start, _ in info["array-location"])])
    return (rng.random(info["chunk-shape"]) * 100).astype(out_dtype)


def _source(seed: int, dtype="float64"):
    """A lazy raster on GRID whose chunks take READ_DELAY to make."""
    name = f"slowread-{tokenize(seed, dtype, GRID.shape, CHUNKS)}"
    data = dsa.map_blocks(_read_block, chunks=dsa.core.normalize_chunks(CHUNKS, GRID.shape),
                          dtype=dtype, seed=seed, out_dtype=dtype, name=name,
                          meta=np.empty((0, 0), dtype))
    return make_raster(data, GRID)


def _scheduler_state(dask_scheduler, prefix):
    """States of the tasks named ``prefix*``, and the worker holding most results."""
    states, holders = Counter(), Counter()
    for key, ts in dask_scheduler.tasks.items():
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith(prefix):
            states[ts.state] += 1
            if ts.state == "memory":
                holders.update(ws.address for ws in ts.who_has)
    return dict(states), holders.most_common(1)


class KillMidCompute:
    """SIGKILL, from a thread, the worker holding most results once ``after`` tasks are done.

    Counts the tasks named ``prefix*`` (default: all; dask fuses the source chunks into
    the op's tasks, so they keep no name of their own). Records the killed worker and the
    task states at that moment; ``check`` asserts the kill happened while tasks were
    still to run (mid-compute) and that the process is gone.
    """

    def __init__(self, client, *, after: int = 6, prefix: str = ""):
        self.client, self.after, self.prefix = client, after, prefix
        self.killed = None
        self.states_at_kill = None
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.is_set():
            states, top = self.client.run_on_scheduler(_scheduler_state, prefix=self.prefix)
            if states.get("memory", 0) >= self.after and top:
                address = top[0][0]
                os.kill(self.pids[address], signal.SIGKILL)
                self.killed, self.states_at_kill = address, states
                return
            time.sleep(0.01)

    def __enter__(self):
        self.pids = self.client.run(os.getpid)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self):
        assert self.killed is not None, "the watcher never killed a worker"
        pending = sum(n for s, n in self.states_at_kill.items() if s != "memory")
        assert pending > 0, f"killed after the compute was done: {self.states_at_kill}"
        pid = self.pids[self.killed]
        with pytest.raises(ProcessLookupError):  # the process is gone (not just idle)
            os.kill(pid, 0)
        assert self.killed not in self.client.scheduler_info(n_workers=-1)["workers"]


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      host="127.0.0.1", dashboard_address=":0", silence_logs=50) as cluster:
        with Client(cluster) as c:
            yield c


@pytest.fixture
def cluster_client(client):
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed one
    yield client


def _run_twice(client, fn):
    """``fn()`` undisturbed, then again with a worker killed mid-compute."""
    undisturbed = fn()
    with KillMidCompute(client) as killer:
        disturbed = fn()
    killer.check()
    return undisturbed, disturbed


def test_local_op_survives_a_killed_worker(cluster_client):
    def run():
        ndvi = stengine.ops.normalized_difference(_source(1), _source(2))
        return stengine.compute(ndvi, progress=False)

    undisturbed, disturbed = _run_twice(cluster_client, run)
    xr.testing.assert_identical(disturbed, undisturbed)


def test_focal_op_survives_a_killed_worker(cluster_client):
    def run():
        return stengine.compute(stengine.ops.focal_mean(_source(3), 5), progress=False)

    undisturbed, disturbed = _run_twice(cluster_client, run)
    xr.testing.assert_identical(disturbed, undisturbed)


def test_zonal_op_survives_a_killed_worker(cluster_client):
    zones = make_raster(dsa.from_array(
        (np.arange(GRID.shape[0])[:, None] // 15 + np.arange(GRID.shape[1]) // 40).astype("i4"),
        chunks=CHUNKS), GRID)
    ids = np.arange(12)

    def run():
        return stengine.ops.zonal_stats(_source(4), zones, zone_ids=ids,
                                        stats=["count", "sum", "mean", "max", "std"])

    undisturbed, disturbed = _run_twice(cluster_client, run)
    pd.testing.assert_frame_equal(disturbed, undisturbed)


def test_h3_cell_op_survives_a_killed_worker(cluster_client):
    def run():
        return stengine.ops.to_cells(_source(5), "h3", level=6, stat="mean")

    undisturbed, disturbed = _run_twice(cluster_client, run)
    xr.testing.assert_identical(disturbed, undisturbed)


def test_zarr_write_survives_a_killed_worker(cluster_client, tmp_path):
    stores = iter([tmp_path / "undisturbed.zarr", tmp_path / "disturbed.zarr"])

    def run():
        store = next(stores)
        stengine.to_zarr(_source(6, "float32").rename("v"), store)
        return stengine.open_cube(store).compute()

    undisturbed, disturbed = _run_twice(cluster_client, run)
    xr.testing.assert_identical(disturbed, undisturbed)
    np.testing.assert_array_equal(disturbed.values, _source(6, "float32").values)

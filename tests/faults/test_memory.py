"""Memory-limited workers spill to disk and finish; the result equals the NumPy reference.

Two real worker processes with ``memory_limit="1GB"`` each (200-400 MB of which a worker
process uses before holding any data: more on a cold numba cache, where the kernels are
compiled in the worker) compute the per-zone statistics of a raster's anomaly
``x - mean(x)`` with ``zonal_stats``: every chunk of the 1.2 GB raster
must be kept until the global mean is known, so more than both workers can hold is
alive at once and dask has to spill chunks to disk (checked: the workers wrote hundreds
of MB to their spill files) and read them back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

import numpy as np
import pytest
from distributed import Client, LocalCluster

import stengine
from stengine.cube import make_raster

pytestmark = pytest.mark.slow

SHAPE, CHUNKS = (7500, 20_000), (500, 1000)  # float64: 1.2 GB in 300 chunks of 4 MB
TIMEOUT_S = 300  # a worker paused for memory forever must fail the test, not hang CI
ZONE_ROWS = 640  # zones are bands of rows: 12 zones, not aligned with the chunks


def _block(block_info=None):
    """A deterministic chunk from its position (made on the worker, never shipped)."""
    info = block_info[None]
    rng = np.random.default_rng([7, *(start for start, _ in info["array-location"])])
    return rng.normal(10.0, 3.0, info["chunk-shape"])


def _zones(block_info=None):
    (r0, r1), (c0, c1) = info = block_info[None]["array-location"]
    del info
    return np.broadcast_to((np.arange(r0, r1) // ZONE_ROWS).astype("i4")[:, None],
                           (r1 - r0, c1 - c0)).copy()


def _reference():
    """The same raster and statistics in NumPy, assembled chunk by chunk."""
    x = np.empty(SHAPE)
    for i in range(0, SHAPE[0], CHUNKS[0]):
        for j in range(0, SHAPE[1], CHUNKS[1]):
            loc = [(i, i + CHUNKS[0]), (j, j + CHUNKS[1])]
            x[i:i + CHUNKS[0], j:j + CHUNKS[1]] = _block({None: {
                "array-location": loc, "chunk-shape": CHUNKS}})
    x -= x.mean()
    rows = [x[z:z + ZONE_ROWS] for z in range(0, SHAPE[0], ZONE_ROWS)]  # views
    return {"count": [r.size for r in rows], "mean": [r.mean() for r in rows],
            "std": [r.std() for r in rows], "min": [r.min() for r in rows],
            "max": [r.max() for r in rows]}


def test_memory_limited_workers_spill_and_finish():
    import dask.array as dsa

    x = make_raster(dsa.map_blocks(_block, chunks=dsa.core.normalize_chunks(CHUNKS, SHAPE),
                                   dtype="float64", meta=np.empty((0, 0))))
    zones = make_raster(dsa.map_blocks(_zones, chunks=dsa.core.normalize_chunks(CHUNKS, SHAPE),
                                       dtype="int32", meta=np.empty((0, 0), "i4")))
    # 1 GB, not less: dask pauses a worker whose process uses 80 % of its limit, and with
    # 500 MB a cold-cache worker (~400 MB after compiling the kernels) paused for good
    limit = 1e9
    # more than both workers may hold in memory together: dask spills once a process
    # uses 70 % of its limit, and a worker process uses at least 200 MB before any data
    assert x.nbytes > 2 * (0.7 * limit - 200e6)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit,
                      host="127.0.0.1", dashboard_address=":0", silence_logs=50) as cluster:
        with Client(cluster) as client:
            anom = x - x.mean()
            with ThreadPoolExecutor(1) as pool:
                fut = pool.submit(stengine.ops.zonal_stats, anom, zones,
                                  zone_ids=np.arange(SHAPE[0] // ZONE_ROWS + 1),
                                  stats=["count", "mean", "std", "min", "max"])
                try:
                    got = fut.result(timeout=TIMEOUT_S)
                except FuturesTimeout:
                    state = client.run(lambda dask_worker: (
                        dask_worker.status.name, dask_worker.monitor.get_process_memory()))
                    client.close()  # ends the compute in the pool's thread
                    pytest.fail(f"no result in {TIMEOUT_S} s; workers (status, process "
                                f"memory): {state}")
            spilled = client.run(lambda dask_worker: dask_worker.data.cumulative_metrics.get(
                ("disk-write", "bytes"), 0))
            restarted = client.run_on_scheduler(
                lambda dask_scheduler: sum(ws.nanny is not None and ws.status.name != "running"
                                           for ws in dask_scheduler.workers.values()))
    assert sum(spilled.values()) > 100e6, spilled  # the workers had to use their disks
    assert restarted == 0
    ref = _reference()
    np.testing.assert_array_equal(got["count"].to_numpy(), ref["count"])
    for stat in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(got[stat].to_numpy(), ref[stat], rtol=1e-9, atol=1e-12,
                                   err_msg=stat)

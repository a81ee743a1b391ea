import importlib
import sys
import time
import types

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import stengine
from stengine.testing import count_computes


@pytest.mark.slow
def test_connect_local_context_manager_and_reuse(capsys):
    with stengine.connect(dashboard_port=0) as conn:
        assert conn.cluster is not None and conn.client.status == "running"
        assert conn.dashboard_link.startswith("http://127.0.0.1:")
        addr = conn.client.scheduler.address
        assert addr.startswith("tcp://127.0.0.1:")
        # a second connect() reuses the running client and does not own it
        with stengine.connect() as again:
            assert again.client is conn.client and again.cluster is None
        assert conn.client.status == "running"
        x = dsa.ones((100, 100), chunks=10)
        assert stengine.compute(x.sum()) == 10000
        assert "dask dashboard" in capsys.readouterr().err
    assert conn.client.status == "closed"


@pytest.mark.slow
def test_connect_local_in_process_workers_talk_inproc():
    # processes=False: workers in this process, reached in memory (with host=127.0.0.1,
    # which connect() passes for TCP, LocalCluster refused to start an inproc cluster)
    with stengine.connect(n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_port=0, quiet=True) as conn:
        assert conn.client.scheduler.address.startswith("inproc://")
        x = dsa.arange(1000, chunks=100)
        assert stengine.compute(x.sum(), progress=False) == 499500
        np.testing.assert_array_equal(stengine.compute(x * 2), np.arange(1000) * 2)


@pytest.mark.slow
def test_connect_to_existing_scheduler():
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0", processes=False, protocol="tcp") as cluster:
        with stengine.connect(cluster.scheduler_address, quiet=True) as conn:
            assert isinstance(conn.client, Client)
            assert conn.client.submit(lambda: 41 + 1).result() == 42
        assert cluster.status.name == "running"  # joining does not shut the cluster down


def test_connect_bad_address():
    with pytest.raises(ValueError, match="tcp://host:port"):
        stengine.connect("slurmy")


def _slow(block, seconds=0.15):
    time.sleep(seconds)
    return block * 2


def test_compute_without_cluster_shows_progress_only_when_it_takes_a_while(capsys):
    x = dsa.arange(100, chunks=25)
    # done before the bar's 0.5 s: nothing drawn (dask's bar always drew, and its 0.1 s
    # redraw thread was waited for at the end of every computation)
    assert stengine.compute(x.sum(), progress=True) == 4950
    assert capsys.readouterr().err == ""
    assert stengine.compute(x.sum(), progress=0) == 4950  # 0: at once
    assert "100%" in capsys.readouterr().err
    # 4 chunks of 0.15 s on at most 2 threads: still running after 0.1 s
    y = x.map_blocks(_slow, dtype=x.dtype)
    np.testing.assert_array_equal(stengine.compute(y, progress=0.1), np.arange(100) * 2)
    assert "100%" in capsys.readouterr().err
    np.testing.assert_array_equal(stengine.compute(y, progress=False), np.arange(100) * 2)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_compute_on_a_cluster_shows_progress_only_when_it_takes_a_while(capsys):
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=":0") as cluster, Client(cluster):
        x = dsa.arange(100, chunks=25)
        y = x.map_blocks(_slow, dtype=x.dtype)
        assert stengine.compute(x.sum()) == 4950
        assert stengine.compute(x.sum(), x.max()) == (4950, 99)
        assert "Completed" not in capsys.readouterr().out  # distributed's bar: stdout
        np.testing.assert_array_equal(stengine.compute(y, progress=0.1), np.arange(100) * 2)
        assert "100% Completed" in capsys.readouterr().out
        da = xr.DataArray(y, dims="i", coords={"i": np.arange(100)})
        for progress in (True, 0.1, False):
            xr.testing.assert_identical(stengine.compute(da, progress=progress),
                                        da.compute(scheduler="sync"))


# --- results too large to gather --------------------------------------------------------

def _scheduler_tasks(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


@pytest.fixture
def small_workers():
    """A real 2-process cluster whose workers may use 400 MB each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="400MB",
                      host="127.0.0.1", dashboard_address=":0", silence_logs=50) as cluster:
        with Client(cluster) as client:
            yield client


@pytest.mark.slow
def test_compute_refuses_a_result_larger_than_a_worker_can_gather(small_workers):
    # 200 MB (190.73 MiB) of float64: on the old code dask's finalize task ran out of the 400 MB
    # limit on every worker in turn and the compute ended in KilledWorker
    x = dsa.random.random(25_000_000, chunks=1_000_000)
    t0 = time.monotonic()
    with pytest.raises(MemoryError, match=r"(?s)190\.73 MiB.*memory_limit 381\.47 MiB.*"
                                          r"KilledWorker.*stengine\.to_zarr"):
        stengine.compute(x, progress=False)
    assert time.monotonic() - t0 < 5
    assert _scheduler_tasks(small_workers) == 0  # refused before anything ran
    # an xarray object counts all its variables: two 100 MB variables together
    half = dsa.zeros(12_500_000, chunks=1_000_000)
    ds = xr.Dataset({"a": ("i", half), "b": ("i", half + 1)})
    from stengine.compute import result_nbytes

    assert result_nbytes(ds) == 200_000_000
    with pytest.raises(MemoryError, match="190.73 MiB"):
        stengine.compute(ds)
    assert _scheduler_tasks(small_workers) == 0


@pytest.mark.slow
def test_compute_asks_for_worker_memory_once_a_second_yet_refuses_on_a_fresh_answer(
        small_workers, monkeypatch):
    compute_module = importlib.import_module("stengine.compute")  # stengine.compute: the function

    calls = []
    real = type(small_workers).scheduler_info

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(type(small_workers), "scheduler_info", counted)
    monkeypatch.setattr(compute_module, "_WORKERS_MAX_AGE", 60.0)  # 1 s: slow machines
    x = dsa.ones(1000, chunks=100)
    for _ in range(5):
        assert stengine.compute(x.sum(), progress=False) == 1000
    assert len(calls) == 1  # the scheduler's answer is reused
    # a result that does not fit the cached answer is checked again before it is refused
    with pytest.raises(MemoryError, match="KilledWorker"):
        stengine.compute(dsa.zeros(25_000_000, chunks=1_000_000), progress=False)
    assert len(calls) == 2 and _scheduler_tasks(small_workers) == 0
    # a stale answer that says "too large" is not believed: the fresh one says it fits
    addr, limit, _, _ = compute_module._smallest_worker(small_workers)  # cached: no call
    stale = (addr, limit, limit, -1)  # "no room left"
    monkeypatch.setitem(compute_module._WORKERS, id(small_workers),
                        (time.monotonic(), small_workers.scheduler.address, stale))
    assert stengine.compute(x, progress=False).sum() == 1000
    assert len(calls) == 3


@pytest.mark.slow
def test_compute_gathers_a_result_that_fits(small_workers):
    x = dsa.ones(2_000_000, chunks=500_000)  # 16 MB
    np.testing.assert_array_equal(stengine.compute(x, progress=False), np.ones(2_000_000))
    # the check can be overridden, or given another limit
    assert stengine.compute(x[:10], max_result_bytes=None).sum() == 10
    with pytest.raises(MemoryError, match="max_result_bytes=0.95 MiB"):
        stengine.compute(x, max_result_bytes="1MB")


def test_compute_without_cluster_refuses_more_than_this_process_has():
    # 800 TB, never computed; one chunk, so that without the check numpy fails at once
    # (with another message) instead of filling this machine's memory chunk by chunk
    x = dsa.zeros((10**7, 10**7), chunks=-1)
    with pytest.raises(MemoryError, match=r"(?s)727\.60 TiB in this process.*to_zarr"):
        stengine.compute(x.T + 1, progress=False)


def test_result_nbytes_from_metadata():
    from stengine.compute import result_nbytes

    x = dsa.zeros((100, 50), chunks=10, dtype="float32")
    da = xr.DataArray(x, dims=("y", "x"), coords={"y": np.arange(100.0)})
    assert result_nbytes(x) == 20_000
    assert result_nbytes(da) == 20_000 + 800  # data and the y coordinate
    assert result_nbytes([x, {"k": x}]) == 40_000
    assert result_nbytes(x[x > 0]) == 0  # unknown size: not checked
    assert result_nbytes(dask.delayed(sum)([1, 2])) == 0
    dd = pytest.importorskip("dask.dataframe")
    series = dd.from_pandas(pd.Series(np.arange(10.0)), npartitions=2)
    with count_computes(0):  # a dataframe's length is lazy: not computed to size it
        assert result_nbytes(series) == 0 and result_nbytes(series.to_frame()) == 0


# --- resources ---------------------------------------------------------------------------

@pytest.mark.slow
def test_connect_local_workers_advertise_resources():
    with stengine.connect(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                          resources={"GPU": 1}, dashboard_port=0, quiet=True) as conn:
        workers = conn.client.scheduler_info(n_workers=-1)["workers"].values()
        assert [w["resources"] for w in workers] == [{"GPU": 1}]
        fut = conn.client.submit(lambda: 7, resources={"GPU": 1})
        assert fut.result(timeout=30) == 7


def test_connect_gpu_without_dask_cuda_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # absent even where installed
    with pytest.raises(ImportError, match=r"pip install 'stengine\[gpu\]'"):
        stengine.connect("gpu", quiet=True)


@pytest.mark.slow
def test_connect_gpu_workers_advertise_one_gpu_each(monkeypatch):
    """``connect("gpu")`` adds ``GPU=1`` to what it passes to ``LocalCUDACluster``.

    dask-cuda needs a CUDA GPU, so outside the GPU job a stand-in module provides a
    ``LocalCUDACluster`` that is the real ``LocalCluster`` (dask-cuda's is a subclass
    that passes worker keywords the same way): what is checked is the resources the
    running workers advertise.
    """
    try:
        import dask_cuda  # noqa: F401

        have_cuda = True
    except ImportError:
        have_cuda = False
    if not have_cuda:
        stand_in = types.ModuleType("dask_cuda")

        class LocalCUDACluster(LocalCluster):
            def __init__(self, **kw):
                super().__init__(n_workers=2, threads_per_worker=1, processes=False,
                                 protocol="tcp", **kw)

        stand_in.LocalCUDACluster = LocalCUDACluster
        monkeypatch.setitem(sys.modules, "dask_cuda", stand_in)
    with stengine.connect("gpu", dashboard_port=0, quiet=True) as conn:
        workers = conn.client.scheduler_info(n_workers=-1)["workers"].values()
        assert workers and all(w["resources"] == {"GPU": 1} for w in workers)

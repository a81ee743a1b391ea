import dask.array as dsa
import pytest
from distributed import Client, LocalCluster

import stengine


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


def test_compute_without_cluster_shows_progress(capsys):
    x = dsa.ones((10, 10), chunks=5)
    assert stengine.compute(x.sum(), progress=True) == 100
    assert "100%" in capsys.readouterr().err

"""Monitoring: the metrics stream (Dask events), NVML GPU status, progress, task names."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from stengine.cube.conventions import make_raster
from stengine.learn import GridSampler, fit, gpu_status, monitor, predict

# ``client``: conftest's, on the session's 2-worker cluster (processes)


@pytest.fixture(scope="module")
def sampler():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 32, 32)).astype("f4")
    y = (x[0] > 0).astype("i8")
    return GridSampler(make_raster(x, name="v"), 8, 8, labels=make_raster(y, name="lab"),
                       label_mode="centre")


def _check_status(st):
    if st["gpu"]:
        assert st["devices"] and {"name", "utilization", "memory_used",
                                  "memory_total"} <= set(st["devices"][0])
    else:
        assert isinstance(st["reason"], str) and st["reason"]


def test_gpu_status_local_without_a_driver():
    st = monitor.local_gpu_status()
    _check_status(st)
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        has_driver = True
    except Exception:  # noqa: BLE001
        has_driver = False
    if not has_driver:
        assert st == {"gpu": False, "reason": st["reason"]}
        assert st["reason"].startswith("no NVIDIA driver")


def test_gpu_status_per_worker(client):
    st = gpu_status(client)
    assert set(st) == set(client.scheduler_info()["workers"])
    for s in st.values():
        _check_status(s)


def test_metrics_stream_and_task_names(client, sampler):
    from distributed import get_task_stream

    seen = []
    monitor.subscribe(monitor.TOPIC, seen.append, client=client)
    try:
        with get_task_stream(client) as ts:
            job = fit("patch_classifier", sampler, loss="cross_entropy", epochs=2,
                      batch_size=4, params={"n_classes": 2, "width": 4, "blocks": 1},
                      progress=False)
            res = job.result(60)
            art = res.artefact
            predict(art, make_raster(np.zeros((3, 16, 16), "f4"), name="v"),
                    output="raw").compute()
        deadline = time.time() + 10
        while time.time() < deadline and not any(m.get("event") == "done" for m in seen):
            time.sleep(0.1)
    finally:
        monitor.unsubscribe(monitor.TOPIC, client=client)
    mine = [m for m in seen if m.get("job") == job.id]
    kinds = [m["event"] for m in mine]
    assert kinds[0] == "start" and kinds.count("epoch") == 2 and kinds[-1] == "done"
    ep = [m for m in mine if m["event"] == "epoch"]
    assert [m["epoch"] for m in ep] == [0, 1]
    assert all(m["loss"] > 0 and m["samples_per_s"] > 0 and m["epochs"] == 2 for m in ep)
    assert "gpu" in mine[0] and "device" in mine[0]
    # the scheduler keeps them: a late subscriber (the REST service, the CLI) reads them
    assert [m["event"] for m in monitor.events(job.topic, client=client)][:1] == ["start"]
    assert job.metrics == [{k: m[k] for k in ("epoch", "loss", "samples_per_s", "seconds",
                                              "lr")} for m in res.history] or \
        [m["epoch"] for m in job.metrics] == [0, 1]
    names = {t["key"] if isinstance(t["key"], str) else str(t["key"]) for t in ts.data}
    assert f"stengine-fit-rank-0-{job.id}-0" in names
    assert any("stengine-predict-" in n for n in names)


def test_publish_outside_a_worker_is_a_no_op():
    monitor.publish("fit", "x", {"event": "epoch"})  # no worker, no scheduler: dropped


def test_progress_line():
    buf = io.StringIO()
    p = monitor.ProgressLine("fit abc", 4, stream=buf)
    p.update(1, "loss 0.5")
    p.update(4, "loss 0.1")
    p.close()
    out = buf.getvalue()
    assert "fit abc: [######" in out and "4/4 loss 0.1" in out and out.endswith("\n")
    quiet = io.StringIO()
    q = monitor.ProgressLine("x", 2, enabled=False, stream=quiet)
    q.update(1)
    q.close()
    assert quiet.getvalue() == ""

"""stengine serve benchmarks: status polling latency under concurrent clients, job bursts.

The service runs in this process (real uvicorn on loopback, in a thread) over a temporary
state dir with a one-worker in-process Dask cluster; clients are ``httpx`` in threads.

``python -m benchmarks.serve [--size tiny|bench] [--no-write]``.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._runner import Case, benchmark

TOKEN = "bench-token"
SIZES = {"tiny": {"clients": 50, "polls": 4, "jobs": 100},
         "bench": {"clients": 50, "polls": 40, "jobs": 100}}


class _Service:
    """The app under uvicorn in a thread, a GeoTIFF source ``cls`` registered."""

    def __init__(self):
        import socket

        import httpx
        import rasterio
        import uvicorn
        from rasterio.transform import from_origin

        from stengine.serve import create_app
        self.tmp = tempfile.TemporaryDirectory()
        d = Path(self.tmp.name)
        arr = (np.arange(64 * 64).reshape(64, 64) % 4).astype("uint8")
        with rasterio.open(d / "c.tif", "w", driver="GTiff", width=64, height=64, count=1,
                           dtype="uint8", crs="EPSG:4326",
                           transform=from_origin(0, 1, 0.01, 0.01)) as f:
            f.write(arr, 1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(d / "state", token=TOKEN),
                                                    host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=60,
                                   limits=httpx.Limits(max_connections=200))
        self.client.post("/sources", json={"name": "cls", "kind": "geotiff",
                                           "location": str(d / "c.tif")}).raise_for_status()

    def job(self) -> str:
        r = self.client.post("/jobs", json={"kind": "ops", "source": "cls",
                                            "ops": [{"op": "local_count", "value": 1}]})
        r.raise_for_status()
        return r.json()["id"]

    def close(self):
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.tmp.cleanup()


@benchmark("serve", "status_polling", sizes=["tiny", "bench"])
def status_polling(size):
    """``clients`` threads each GET /jobs/{id} ``polls`` times; p50/p99 latency."""
    import httpx
    cfg = SIZES[size]
    svc = _Service()
    jid = svc.job()
    lat: list[float] = []

    def client(_):
        with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=60) as c:
            for _ in range(cfg["polls"]):
                t0 = time.perf_counter()
                c.get(f"/jobs/{jid}").raise_for_status()
                lat.append(time.perf_counter() - t0)

    def run():
        lat.clear()
        with ThreadPoolExecutor(cfg["clients"]) as ex:
            list(ex.map(client, range(cfg["clients"])))

    def info():
        q = statistics.quantiles(lat, n=100)
        return {"p50_ms": round(1e3 * q[49], 2), "p99_ms": round(1e3 * q[98], 2),
                "requests": len(lat)}
    try:
        yield Case("stengine", run, items=cfg["clients"] * cfg["polls"],
                   note=f"{cfg['clients']} concurrent clients x {cfg['polls']} polls of "
                   "GET /jobs/{id}", info=info)
    finally:
        svc.close()


@benchmark("serve", "job_burst", sizes=["tiny", "bench"])
def job_burst(size):
    """``jobs`` small jobs (local_count on a 64x64 GeoTIFF) submitted at once, all done."""
    n = SIZES[size]["jobs"]
    svc = _Service()
    failed = []

    def run():
        with ThreadPoolExecutor(16) as ex:
            ids = list(ex.map(lambda _: svc.job(), range(n)))
        pending = set(ids)
        t0 = time.time()
        while pending and time.time() - t0 < 120:
            for j in svc.client.get("/jobs").json():
                if j["id"] in pending and j["status"] not in ("pending", "running"):
                    pending.discard(j["id"])
                    if j["status"] != "succeeded":
                        failed.append(j["id"])
            time.sleep(0.05)
        if pending or failed:
            raise RuntimeError(f"{len(pending)} jobs unfinished, {len(failed)} failed")
    try:
        yield Case("stengine", run, items=n, note=f"{n} jobs POSTed from 16 threads, then "
                   "polled via GET /jobs until all succeeded", info=lambda: {"failed": len(failed)})
    finally:
        svc.close()


if __name__ == "__main__":
    import argparse
    import sys

    from ._runner import REGISTRY, run, save
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    p.add_argument("--size", action="append", help="tiny and/or bench (default both)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    res = run([b for b in REGISTRY if b.family == "serve"], sizes=a.size, repeat=a.repeat)
    for r in res.get("serve", []):
        print(f"  {r['bench']:<16} {r['size']:<6} {r['median_s']:.3f} s "
              + " ".join(f"{k}={r[k]}" for k in ("p50_ms", "p99_ms", "failed") if k in r))
    if not a.no_write:
        save(res, "python -m benchmarks.serve " + " ".join(sys.argv[1:]))

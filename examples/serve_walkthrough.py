"""A walk through ``stengine serve``: start it, register GeoTIFF sources, run an op-chain
job and read its result, train a model as a job that registers it, move its
``production`` alias and ask it for a prediction, all over HTTP.

``python examples/serve_walkthrough.py`` (a temporary state dir; everything on loopback).
"""
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import rasterio
import uvicorn
import zarr
from rasterio.transform import from_origin

from stengine.serve import create_app


def _follow(c, job):
    """Poll a job until it ends (progress is in percent)."""
    while job["status"] in ("pending", "running"):
        time.sleep(0.1)
        job = c.get(f"/jobs/{job['id']}").json()
    return job


def main():
    tmp = Path(tempfile.mkdtemp())
    arr = (np.arange(128 * 128).reshape(128, 128) % 5).astype("uint8")
    with rasterio.open(tmp / "classes.tif", "w", driver="GTiff", width=128, height=128,
                       count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(0, 1, 0.01, 0.01)) as f:
        f.write(arr, 1)
    # a 2-band image and a label raster (band 0 > 0) for the training job
    img = np.random.default_rng(0).normal(size=(2, 32, 32)).astype("float32")
    for name, a in (("img", img), ("lab", (img[:1] > 0).astype("uint8"))):
        with rasterio.open(tmp / f"{name}.tif", "w", driver="GTiff", width=32, height=32,
                           count=a.shape[0], dtype=str(a.dtype), crs="EPSG:4326",
                           transform=from_origin(10, 50, 0.01, 0.01)) as f:
            f.write(a)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # token=None would generate <state>/token; here we pick one
    app = create_app(tmp / "state", token="walkthrough-token")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                     headers={"Authorization": "Bearer walkthrough-token"})
    try:
        print("healthz", httpx.get(f"http://127.0.0.1:{port}/healthz").json())
        print("no token ->", httpx.get(f"http://127.0.0.1:{port}/sources").status_code)
        print("register", c.post("/sources", json={"name": "classes", "kind": "geotiff",
                                                   "location": str(tmp / "classes.tif"),
                                                   "options": {"chunks": 64}}).json())
        print("preview", {k: v for k, v in c.get("/sources/classes/preview").json().items()
                          if k in ("type", "shape", "dims", "crs")})
        job = c.post("/jobs", json={"kind": "ops", "source": "classes", "ops": [
            {"op": "local_reclassify", "mapping": {"0": 100}},
            {"op": "focal_mean", "window": 3}]}).json()
        job = _follow(c, job)
        print("job", job["id"], job["status"], f"{job['progress']} %", job["metrics"])
        out = zarr.open_array(job["result"]["path"], mode="r")[...]
        print("result", out.shape, out.dtype, "mean", float(np.nanmean(out)))
        print("bad op ->", c.post("/jobs", json={"kind": "ops", "source": "classes",
                                                "ops": [{"op": "nope"}]}).json())
        for name in ("img", "lab"):
            c.post("/sources", json={"name": name, "kind": "geotiff",
                                     "location": str(tmp / f"{name}.tif")}).raise_for_status()
        job = c.post("/jobs", json={
            "kind": "train", "source": "img", "labels": "lab", "epochs": 15, "batch_size": 8,
            "patch": 8, "seed": 0, "lr": 0.02, "register_as": "sign",
            "model": {"builder": "patch_unet", "n_classes": 2, "base": 4, "depth": 1}}).json()
        job = _follow(c, job)
        print("train", job["id"], job["status"], "loss per epoch",
              [round(v, 4) for v in job["metrics"]["loss"]], "->", job["result"]["model"])
        c.put("/models/sign/aliases/production", json={"version": 1}).raise_for_status()
        print("model", {k: v for k, v in c.get("/models/sign").json().items()
                        if k in ("name", "latest", "aliases")})
        x = img[None, :, :8, :8]
        pred = c.post("/models/sign/predict", json={"alias": "production",
                                                     "input": x.tolist()}).json()
        cls = np.argmax(np.array(pred["output"]), axis=1)
        print("predict", pred["shape"], "agreement with the labels",
              f"{float((cls == (x[:, 0] > 0)).mean()):.2f}")
        print("cluster", {k: v for k, v in c.get("/cluster").json().items() if k != "gpus"})
    finally:
        c.close()
        server.should_exit = True


if __name__ == "__main__":
    main()

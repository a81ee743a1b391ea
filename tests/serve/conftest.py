"""A real uvicorn server on loopback, serving ``create_app`` over a tmp state dir."""
import socket
import threading
import time

import httpx
import numpy as np
import pytest

TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app):
        import uvicorn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 30 or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def server(tmp_path):
    from stengine.serve import create_app
    app = create_app(tmp_path / "state", token=TOKEN)
    with Server(app) as s:
        s.client = httpx.Client(base_url=s.url, timeout=30,
                                headers={"Authorization": f"Bearer {TOKEN}"})
        yield s
        s.client.close()


@pytest.fixture
def tif(tmp_path):
    """A 1-band uint8 GeoTIFF of classes 0-3, 64 x 96, with its array."""
    import rasterio
    from rasterio.transform import from_origin
    arr = (np.arange(64 * 96).reshape(64, 96) % 4).astype("uint8")
    p = tmp_path / "classes.tif"
    with rasterio.open(p, "w", driver="GTiff", width=96, height=64, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(10, 50, 0.01, 0.01),
                       tiled=True, blockxsize=32, blockysize=32) as f:
        f.write(arr, 1)
    return p, arr


def wait_job(client, jid, timeout=30, until=("succeeded", "failed", "cancelled")):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = client.get(f"/jobs/{jid}").json()
        if j["status"] in until:
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {jid} still {j['status']} after {timeout} s")

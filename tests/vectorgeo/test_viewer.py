"""The similarity viewer: its JSON routes over real uvicorn, and the page in Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stengine.index import h3 as sth3
from stengine.learn.vectors import VectorIndex

from .conftest import clustered_vectors

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "similarity-viewer.png"


@pytest.fixture(scope="module")
def land_index():
    """Resolution-3 cells with a centre on land (Natural Earth), clustered 32-d vectors
    plus a smooth latitude term (so the first principal component shows structure)."""
    import shapely

    from stengine.datasets import naturalearth_countries

    cells = sth3.all_cells(3)
    lon, lat = sth3.cell_to_lonlat(cells)
    land = shapely.union_all(naturalearth_countries().geometry.values)
    cells = cells[shapely.intersects_xy(land, lon, lat)]
    vec = clustered_vectors(cells, n_clusters=25, seed=7)
    lon, lat = sth3.cell_to_lonlat(cells)
    vec[:, 0] += 3 * np.sin(np.radians(lat)) + np.cos(np.radians(lon))
    return VectorIndex.build(cells, vec)


@pytest.fixture(scope="module")
def server(land_index):
    """The standalone viewer app on loopback under real uvicorn; stopped at the end."""
    import uvicorn

    from stengine.serve.similar import create_viewer_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = uvicorn.Config(create_viewer_app(land_index), host="127.0.0.1", port=port,
                         log_level="warning", lifespan="off")
    srv = uvicorn.Server(cfg)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    t0 = time.monotonic()
    while not srv.started:
        if time.monotonic() - t0 > 20 or not t.is_alive():
            srv.should_exit = True
            pytest.fail("uvicorn did not start in 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(timeout=10)


def test_routes(server, land_index):
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.get("/", follow_redirects=True).url.path == "/similar/"
        info = c.get("/similar/info").json()
        assert info["cells"] == len(land_index) and info["resolution"] == 3
        r = c.get("/similar/similar", params={"lon": 10.0, "lat": 50.0, "k": 7}).json()
        ref = land_index.similar((10.0, 50.0), k=7)
        assert [int(x["cell"], 16) for x in r["results"]] == ref.cell.tolist()
        np.testing.assert_allclose([x["distance"] for x in r["results"]], ref.distance)
        r = c.get("/similar/similar", params={"lon": 10.0, "lat": 50.0, "k": 5,
                                             "bbox": "-20,30,40,60"}).json()
        ref = land_index.similar((10.0, 50.0), k=5, within=(-20.0, 30.0, 40.0, 60.0))
        assert [int(x["cell"], 16) for x in r["results"]] == ref.cell.tolist()
        bad = c.get("/similar/similar", params={"lon": -150.0, "lat": -40.0})  # ocean
        assert bad.status_code == 422 and "not in the index" in bad.json()["detail"]
        assert c.get("/similar/similar", params={"lon": 10, "lat": 50,
                                                "bbox": "1,2"}).status_code == 422
        png = c.get("/similar/tiles/1/2/0.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        assert c.get("/similar/tiles/1/9/0.png").status_code == 404
        assert c.get("/similar/leaflet/leaflet.js").status_code == 200
        for path in ["/similar/leaflet/../../../pyproject.toml",
                     "/similar/leaflet/%2e%2e/%2e%2e/package.json",
                     "/similar/static/..%2fsimilar.py", "/similar/static/nope.js"]:
            assert c.get(path).status_code == 404, path


def test_router_without_index_is_503():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from stengine.serve.similar import make_router

    app = FastAPI()
    app.include_router(make_router(), prefix="/similar")
    with TestClient(app) as c:
        assert c.get("/similar/info").status_code == 503


def test_page_click_highlights_similar_cells(server, land_index, tmp_path):
    from PIL import Image

    from tests.browser import page

    with page(server + "/similar/", width=1200, height=640) as (pg, foreign):
        pg.wait_for_selector("body[data-ready='1']")
        pg.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length >= 2")
        pg.evaluate("window.stMap.setView([30, 20], 2)")
        pg.wait_for_timeout(300)
        pt = pg.evaluate("(() => { const p = window.stMap.latLngToContainerPoint([48.0, 10.0]);"
                         " const r = document.getElementById('map').getBoundingClientRect();"
                         " return [p.x + r.left, p.y + r.top]; })()")
        pg.mouse.click(pt[0], pt[1])
        pg.wait_for_selector("#results li")
        lis = pg.query_selector_all("#results li")
        got = [int(li.get_attribute("data-cell"), 16) for li in lis]
        ol = pg.query_selector("#results")
        lon, lat = float(ol.get_attribute("data-lon")), float(ol.get_attribute("data-lat"))
        assert abs(lon - 10.0) < 1.0 and abs(lat - 48.0) < 1.0
        ref = land_index.similar((lon, lat), k=10)
        assert got == ref.cell.tolist()
        assert pg.locator("path.leaflet-interactive").count() >= 10
        pg.wait_for_timeout(300)
        shot = tmp_path / "viewer.png"
        pg.screenshot(path=str(shot))
        assert not foreign, foreign
    img = np.asarray(Image.open(shot).convert("RGB"), float)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 50
    if os.environ.get("STENGINE_DOCS_IMG") == "1":  # refresh the docs' picture on request only
        shutil.copy(shot, SHOT)

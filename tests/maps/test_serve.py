"""The tile router over a real uvicorn on loopback, fetched with httpx."""

import io

import httpx
import numpy as np
import pytest
from PIL import Image

import stengine
from stengine.serve.tiles import create_tile_app, start_background
from stengine.viz import tiles as T


@pytest.fixture(scope="module")
def server(utm_store):
    from stengine.viz.overviews import build_overviews
    build_overviews(utm_store, min_size=64, chunks=64)
    app = create_tile_app()
    reg = app.state.registry
    reg.add_store("cube", utm_store)
    lid = reg.register(stengine.ops.focal_mean(stengine.open_cube(utm_store), 3),
                       T.Vis(0, 100), maxzoom=18)
    srv, url = start_background(app)
    try:
        yield url, lid, reg
    finally:
        srv.should_exit = True
        srv.thread.join(10)


def test_tiles_metadata_and_errors(server):
    url, lid, reg = server
    with httpx.Client(base_url=url, timeout=30) as c:
        meta = c.get(f"/tiles/{lid}").json()
        assert meta["maxzoom"] == 18 and meta["vis"]["vmax"] == 100
        w, s, e, n = meta["bounds"]
        assert 14.9 < w < e < 15.3 and 35.9 < s < n < 36.2
        z, x, y = next(T.tiles(meta["bounds"], 13))
        r = c.get(f"/tiles/{lid}/{z}/{x}/{y}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["access-control-allow-origin"] == "*"
        got = np.asarray(Image.open(io.BytesIO(r.content)))
        chain = stengine.ops.focal_mean(stengine.open_cube(reg.stores["cube"]), 3)
        np.testing.assert_array_equal(got, T.render_tile(chain, z, x, y, T.Vis(0, 100)))
        r = c.get(f"/tiles/nope/{z}/{x}/{y}.png")
        assert r.status_code == 404 and "nope" in r.text
        assert c.get(f"/tiles/{lid}/19/0/0.png").status_code == 400
        assert c.get(f"/tiles/{lid}/3/9/0.png").status_code == 400
        page = c.get(f"/tiles/{lid}/map")
        assert page.status_code == 200 and "leaflet.js" in page.text
        assert c.get("/tiles/_leaflet/leaflet.js").status_code == 200
        assert c.get("/tiles/_leaflet/../../package.json").status_code == 404


def test_post_registers_ops_on_a_store(server):
    url, _, reg = server
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/tiles", json={"store": "cube", "ops": [{"op": "focal_mean", "args": [3]}],
                                   "vis": {"vmin": 0, "vmax": 100, "cmap": "magma"}})
        assert r.status_code == 200, r.text
        lid = r.json()["id"]
        z, x, y = next(T.tiles(r.json()["bounds"], 9))  # from an overview level
        assert reg.tiles.layer(lid).pyramid.level_for_zoom(9) == 3  # 305 m px / 30 m
        r = c.get(f"/tiles/{lid}/{z}/{x}/{y}.png")
        assert r.status_code == 200
        assert np.asarray(Image.open(io.BytesIO(r.content)))[..., 3].any()
        bad = c.post("/tiles", json={"store": "cube", "ops": [{"op": "os.system"}]})
        assert bad.status_code == 400 and "os.system" in bad.text
        assert c.post("/tiles", json={"store": "/etc"}).status_code == 400


def test_token_off_loopback():
    from stengine.errors import TileError
    with pytest.raises(TileError, match="token"):
        create_tile_app(host="0.0.0.0")
    from fastapi.testclient import TestClient
    app = create_tile_app(host="0.0.0.0", token="s3cret")
    with TestClient(app) as c:
        assert c.get("/tiles/x").status_code == 401
        assert c.get("/tiles/x", headers={"Authorization": "Bearer s3cret"}).status_code == 404

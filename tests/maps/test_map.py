"""The notebook Map without a kernel: widget objects, layer URLs, and that they serve tiles."""

import httpx
import pytest

import stengine
from stengine.testing import make_cube
from stengine.viz import tiles as T

ipyleaflet = pytest.importorskip("ipyleaflet")


@pytest.fixture
def served():
    from stengine.viz import map as M
    yield M
    M._stop_server()


def test_map_split_and_time_slider(served):
    da = make_cube((3, 128, 192), seed=2, res=60.0).chunk({"time": 1, "y": 64, "x": 64})
    m = da.st.map(vis={"vmin": 0, "vmax": 100})
    assert isinstance(m.map, ipyleaflet.Map) and m.slider.max == 2
    assert [type(x) for x in m.map.layers] == [ipyleaflet.TileLayer]
    assert m.layers[0].url.startswith("http://127.0.0.1:") and m.layers[0].url.endswith("?t=0")
    m.slider.value = 2
    assert m.layers[0].url.endswith("?t=2")
    meta = served.tile_server()[0].tiles.layer(m.ids[0]).meta()
    z, x, y = next(T.tiles(meta["bounds"], 12))
    url = m.layers[0].url.format(z=z, x=x, y=y)
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert r.content == T.to_png(T.render_tile(da, z, x, y, T.Vis(0, 100), time=2))

    split = served.Map([da.isel(time=0), stengine.ops.focal_mean(da.isel(time=0), 3)],
                       {"vmin": 0, "vmax": 100})
    ctl = [c for c in split.map.controls if isinstance(c, ipyleaflet.SplitMapControl)]
    assert len(ctl) == 1 and split.slider is None
    assert ctl[0].left_layer.url != ctl[0].right_layer.url
    assert httpx.get(ctl[0].right_layer.url.format(z=z, x=x, y=y), timeout=30).status_code == 200

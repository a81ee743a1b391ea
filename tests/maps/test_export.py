"""export_html opens from file:// in headless Chromium; export_video reads back."""

import json
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import stengine
from stengine.testing import make_cube
from stengine.viz import tiles as T
from stengine.viz.export import export_html, export_video

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# the docs' pictures are refreshed only on request: a test run must not touch tracked files
WRITE_DOCS = os.environ.get("STENGINE_DOCS_IMG") == "1"


@pytest.fixture(scope="module")
def cube():
    da = make_cube((3, 256, 384), seed=5, nan_fraction=0.0, res=60.0,
                   origin=(500000.0, 4000000.0))
    return stengine.ops.focal_mean(da.chunk({"time": 1, "y": 64, "x": 64}), 3)


def test_export_html_opens_offline(cube, tmp_path):
    from tests.browser import page
    two = [cube, stengine.ops.focal_mean(cube, 5)]
    bounds = T._lonlat_bounds(cube)
    index = export_html(two, bounds, [11, 12], tmp_path / "site",
                        vis={"vmin": 20, "vmax": 80, "cmap": "viridis"}, names=["3x3", "5x5"])
    assert (tmp_path / "site/leaflet/leaflet.js").is_file()
    assert len(list((tmp_path / "site/l1/2/12").rglob("*.png"))) == len(list(
        T.tiles(bounds, 12)))
    with page(index.as_uri()) as (pg, foreign):
        pg.wait_for_function(
            "() => { const im = [...document.querySelectorAll('img.leaflet-tile')];"
            " return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }",
            timeout=20000)
        n = pg.evaluate("document.querySelectorAll('img.leaflet-tile').length")
        assert n >= 2
        assert pg.evaluate("document.querySelector('.swipe') !== null")
        assert pg.evaluate("document.getElementById('time').max") == "2"
        pg.fill("#time", "1")
        pg.dispatch_event("#time", "input")
        pg.wait_for_function("() => [...document.querySelectorAll('img.leaflet-tile')]"
                             ".some(i => i.src.includes('/l0/1/'))", timeout=10000)
        pg.wait_for_timeout(500)
        shot = tmp_path / "shot.png"
        pg.screenshot(path=str(shot))
        assert not foreign
    img = iio.imread(shot)[..., :3].astype(float)
    assert img.std() > 10  # not blank
    if WRITE_DOCS:
        shutil.copy(shot, DOCS_IMG / "map-export.png")


def test_export_html_bbox_off_data(cube, tmp_path):
    from stengine.errors import TileError
    with pytest.raises(TileError, match="bbox"):
        export_html(cube, (-10, -10, -9, -9), [3], tmp_path / "x")


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_export_video_reads_back(cube, tmp_path, ext):
    path = export_video(cube, tmp_path / f"v{ext}", fps=2, vis={"vmin": 20, "vmax": 80},
                        zoom=12)
    frames = iio.imread(path, index=None) if ext == ".gif" else np.stack(
        list(iio.imiter(path, plugin=None)))
    side = json.loads(Path(f"{path}.json").read_text())
    xs = range(side["tiles"]["x"][0], side["tiles"]["x"][1] + 1)
    ys = range(side["tiles"]["y"][0], side["tiles"]["y"][1] + 1)
    assert frames.shape[0] == 3
    assert frames.shape[1:3] == (len(ys) * 256, len(xs) * 256)
    assert (side["width"], side["height"]) == (len(xs) * 256, len(ys) * 256)
    assert side["dates"] == ["2020-01-01", "2020-01-02", "2020-01-03"]
    # the sidecar bounds are the tile mosaic's, and the mosaic covers the data
    left, bottom, right, top = side["bounds"]
    np.testing.assert_allclose([left, top], np.array(T.tile_bounds(12, xs[0], ys[0]))[[0, 3]])
    np.testing.assert_allclose([right, bottom],
                               np.array(T.tile_bounds(12, xs[-1], ys[-1]))[[2, 1]])
    w, s, e, n = T._lonlat_bounds(cube)
    lw, ls, le, ln = side["bounds_lonlat"]
    assert lw <= w and ls <= s and le >= e and ln >= n
    # frames differ over time (the data does) and the first frame matches the tiles
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1
    if ext == ".gif":
        ref = T.render_tile(cube, 12, xs[0], ys[0], T.Vis(20, 80), time=0)
        mask = ref[..., 3] > 0
        got = frames[0][:256, :256, :3][mask].astype(int)
        assert np.abs(got[40:] - ref[..., :3][mask][40:]).mean() < 12  # GIF palette
        if WRITE_DOCS:
            iio.imwrite(DOCS_IMG / "map-video-frame.png", frames[0][..., :3])

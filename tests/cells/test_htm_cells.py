"""grid="htm": ids from stengine.index.htm, trixel neighbours, stencils, focal, painting."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from stengine.cube import cells as C
from stengine.cube import make_raster
from stengine.grid import Grid
from stengine.ops import _cells_htm
from stengine.ops.cells import cell_focal, cell_stencil, cells_to_raster, to_cells

from .reference import aggregate

htm = pytest.importorskip("stengine.index.htm")


def _raster():
    rng = np.random.default_rng(5)
    g = Grid.from_bbox((-3.0, 40.0, 4.0, 44.0), 0.25, crs=4326)
    v = rng.normal(size=g.shape)
    v[rng.random(g.shape) < 0.1] = np.nan
    return make_raster(v, g), g


@pytest.mark.parametrize("stat", ["mean", "count", "max"])
@pytest.mark.parametrize("chunks", [None, (5, 7)])
def test_to_cells_htm_matches_reference(stat, chunks):
    da, g = _raster()
    X, Y = np.meshgrid(g.xs(), g.ys())
    ref = aggregate(da.values[None], htm.lonlat_to_id(X, Y, 6), stat)
    cube = to_cells(da if chunks is None else da.chunk(dict(zip(("y", "x"), chunks, strict=True))),
                    "htm", level=6, stat=stat)
    assert cube.attrs["grid_name"] == "htm" and sorted(ref) == cube.cell_ids.values.tolist()
    for c, v in zip(cube.cell_ids.values.tolist(), np.asarray(cube.values), strict=True):
        assert np.allclose(v, ref[c][0], equal_nan=True) if ref[c][0] is not None else np.isnan(v)


def test_trixel_geometry_matches_htm_and_neighbours_share_edges():
    ids = np.arange(8 << 8, 16 << 8, dtype=np.uint64)
    v = _cells_htm.trixel_vertices(ids, 4)
    assert np.allclose(v, htm.vertices(ids, xyz=True), atol=1e-15)
    nb = _cells_htm.edge_neighbours(ids, 4)
    where = {int(i): k for k, i in enumerate(ids)}
    for i, row in zip(ids.tolist(), nb.tolist(), strict=True):
        assert len(set(row)) == 3
        for n in row:
            shared = sum(np.isclose(np.abs(v[where[i]] @ w), 1.0).any() for w in v[where[n]])
            assert shared == 2  # edge neighbours share exactly two vertices
            assert i in nb[where[n]].tolist()


def test_htm_stencil_focal_and_paint():
    box = shapely.box(-2.0, 40.5, 3.0, 43.5)
    st = cell_stencil(box, "htm", level=7)
    lon, lat = htm.centre(st.cell_ids.values)
    assert ((lon > -2) & (lon < 3) & (lat > 40.5) & (lat < 43.5)).all()
    allc = np.arange(8 << 14, 16 << 14, dtype=np.uint64)  # every level-7 trixel
    lo, la = htm.centre(allc)
    ref = allc[(lo > -2) & (lo < 3) & (la > 40.5) & (la < 43.5)]
    assert np.array_equal(st.cell_ids.values, ref)
    vals = np.arange(st.sizes["cells"], dtype=float)
    cube = C.chunk_by_parent(C.make_cell_cube(vals, st.cell_ids.values, grid="htm", level=7), 4)
    got = cell_focal(cube, 1, stat="sum").values
    rings = _cells_htm.htm_rings(cube.cell_ids.values, 7, 1)
    where = {c: i for i, c in enumerate(cube.cell_ids.values.tolist())}
    ref = [sum(vals[where[n]] for n in r.tolist() if n in where) for r in rings]
    assert np.allclose(got, ref)
    assert (rings != 0).sum(axis=1).max() == 4  # itself and three edge neighbours
    g = Grid.from_bbox((-1.0, 41.0, 2.0, 43.0), 0.1, crs=4326)
    img = cells_to_raster(cube, g)
    X, Y = np.meshgrid(g.xs(), g.ys())
    ids = htm.lonlat_to_id(X, Y, 7)
    want = np.array([vals[where[c]] if c in where else np.nan for c in ids.ravel().tolist()])
    assert np.array_equal(img.values.ravel(), want, equal_nan=True)

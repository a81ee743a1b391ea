import numpy as np
import pytest
from affine import Affine

from stengine import Grid
from stengine.cube import get_grid, make_raster
from stengine.errors import GridMismatchError


def test_from_bbox_and_coords_agree():
    g = Grid.from_bbox((10, 40, 12, 41), 0.25, crs=4326)
    assert g.shape == (4, 8) and g.transform == Affine(0.25, 0, 10, 0, -0.25, 41)
    assert Grid.from_coords(g.xs(), g.ys(), crs=4326) == g
    assert g.is_geographic and "EPSG:4326" in repr(g)


def test_window_is_a_chunk_grid():
    g = Grid.from_bbox((0, 0, 100, 50), 1.0, crs=3857)
    w = g.window(slice(10, 20), slice(30, 45))
    assert w.shape == (10, 15) and w.bounds == (30.0, 30.0, 45.0, 40.0)
    np.testing.assert_array_equal(w.xs(), g.xs()[30:45])


def test_get_grid_prefers_spatial_ref_but_follows_slicing():
    g = Grid.from_bbox((0, 0, 10, 10), 1.0, crs=32633)
    da = make_raster(np.zeros((10, 10)), g)
    assert get_grid(da) == g
    sub = da.isel(y=slice(2, 5), x=slice(3, 9))
    assert get_grid(sub) == g.window(slice(2, 5), slice(3, 9))


def test_differences_and_irregular_coords():
    a = Grid.from_bbox((0, 0, 10, 10), 1.0, crs=32633)
    assert a.differences(Grid.from_bbox((0, 0, 10, 10), 1.0, crs=32633)) == []
    assert any("CRS" in d for d in a.differences(Grid.from_bbox((0, 0, 10, 10), 1.0, crs=3857)))
    with pytest.raises(GridMismatchError, match="regularly spaced"):
        Grid.from_coords([0, 1, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="bbox"):
        Grid.from_bbox((0, 0, -1, 1), 1.0)

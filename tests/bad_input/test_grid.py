"""Grids at the edges: zero and one row/column, non-finite coordinates, and the shared
validation (cube/validate.py) every op calls."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from stengine.cube import check_dtype, check_same_grid, get_grid, make_raster
from stengine.cube.validate import raster_grid
from stengine.errors import GridMismatchError
from stengine.grid import Grid

T = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0), (1, 1), (1, 7), (7, 1)])
def test_degenerate_rasters_keep_their_grid(shape):
    """With fewer than two rows or columns the coords cannot say the pixel size (nor,
    when empty, the origin); the recorded transform does."""
    g = Grid("EPSG:32633", T, shape)
    da = make_raster(np.zeros(shape, "f4"), g)
    assert raster_grid(da) == g
    assert raster_grid(da).res == (30.0, 30.0)


def test_slices_of_one_row_keep_their_place():
    g = Grid("EPSG:32633", T, (10, 10))
    da = make_raster(np.zeros((10, 10)), g)
    assert raster_grid(da.isel(y=slice(3, 4))) == g.window(slice(3, 4), slice(0, 10))
    assert raster_grid(da.isel(x=slice(9, 10), y=slice(2, 3))) == g.window(slice(2, 3),
                                                                         slice(9, 10))
    assert raster_grid(da.isel(y=slice(2, 5))) == get_grid(da.isel(y=slice(2, 5)))


def test_from_coords_edges():
    like = Affine(30, 0, 100, 0, -30, 600)
    assert Grid.from_coords([], [], like=like).transform == like
    assert Grid.from_coords([115.0], [585.0], like=like).transform == like
    assert Grid.from_coords([115.0, 145.0], [], like=like).shape == (0, 2)
    assert Grid.from_coords([0.5], [0.5]).res == (1.0, 1.0)  # no hint: a unit pixel
    with pytest.raises(GridMismatchError, match="x coordinate has NaN or infinite"):
        Grid.from_coords([0.5, np.nan], [0.5, 1.5])
    with pytest.raises(GridMismatchError, match="y coordinate has NaN or infinite"):
        Grid.from_coords([0.5, 1.5], [np.inf, 0.5])


def test_same_grid_checks_labels_of_shared_dims():
    g = Grid("EPSG:32633", T, (2, 3))
    t = np.array(["2020-01-01", "2020-01-02"], "M8[ns]")
    a = make_raster(np.zeros((2, 2, 3)), g, dims=("time", "y", "x"), coords={"time": t})
    check_same_grid(op="op", a=a, b=a.copy())
    with pytest.raises(GridMismatchError, match="b and a have different 'time' labels"):
        check_same_grid(op="op", a=a, b=a.assign_coords(time=t + np.timedelta64(1, "D")))
    with pytest.raises(GridMismatchError, match="b has 1 'time' steps but a has 2"):
        check_same_grid(op="op", a=a, b=a.isel(time=[0]))
    with pytest.raises(GridMismatchError, match=r"b is not on the grid of a: shape"):
        check_same_grid(op="op", a=a, b=a.isel(x=slice(0, 0)))


@pytest.mark.parametrize(("dtype", "fix"), [("c8", "real part"), ("?", "astype('uint8')"),
                                            ("M8[ns]", "numeric raster"),
                                            ("O", "numeric raster")])
def test_check_dtype_says_what_and_how(dtype, fix):
    da = make_raster(np.zeros((2, 2), dtype))
    with pytest.raises(TypeError, match="myop: arg must have a int or float dtype") as info:
        check_dtype(da, "iuf", op="myop", name="arg", what="int or float")
    assert fix in str(info.value) and str(np.dtype(dtype)) in str(info.value)

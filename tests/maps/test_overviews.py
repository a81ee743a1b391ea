"""Overview pyramid: levels equal a NumPy 2x2 reduction; low zooms read no full-res chunk."""

import numpy as np
import pytest

import stengine
from stengine.viz import overviews as O
from stengine.viz import tiles as T


@pytest.fixture(scope="module")
def pyramid(utm_store):
    return O.build_overviews(utm_store, method="mean", min_size=64, chunks=64)


def test_levels_are_2x2_nanmeans(pyramid, utm_store):
    full = stengine.open_cube(utm_store).values
    assert pyramid.levels == 3
    ref = full
    for k in range(1, 4):
        ny, nx = ref.shape[0] // 2 * 2, ref.shape[1] // 2 * 2
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            ref = np.nanmean(ref[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2), axis=(1, 3))
        lev = pyramid.open_level(k)
        np.testing.assert_allclose(lev.values, ref, rtol=1e-5, equal_nan=True)
        from stengine.cube.conventions import get_grid
        assert get_grid(lev).res[0] == pytest.approx(30.0 * 2**k)
        assert get_grid(lev).bounds[0] == pytest.approx(500000.0)


def test_level_for_zoom(pyramid):
    assert pyramid.level_for_zoom(18) == 0
    assert pyramid.level_for_zoom(2) == pyramid.levels
    ks = [pyramid.level_for_zoom(z) for z in range(0, 19)]
    assert ks == sorted(ks, reverse=True)


def test_low_zoom_tiles_read_no_full_resolution_chunk(pyramid, reads):
    reg = T.TileRegistry()
    lid = reg.register(lambda da: stengine.ops.focal_mean(da, 3), T.Vis(0, 100),
                       pyramid=pyramid)
    bounds = reg.layer(lid).meta()["bounds"]
    for z in (0, 2, 8):
        for _, x, y in T.tiles(bounds, z):
            reads.keys.clear()
            png = reg.tile_png(lid, z, x, y)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert not reads.chunks("cube.zarr:v/c/"), z
            assert reads.chunks(f"{pyramid.level_for_zoom(z)}:v/c/")
    # a high zoom reads full resolution
    _, x, y = next(T.tiles(bounds, 15))
    reads.keys.clear()
    reg.tile_png(lid, 15, x, y)
    assert reads.chunks("cube.zarr:v/c/")
    # the cache answers a repeat without reading
    reads.keys.clear()
    reg.tile_png(lid, 15, x, y)
    assert not reads.keys and reg.cache_info()["hits"] == 1


def test_mode_level_is_the_most_common_class(tmp_path):
    from stengine.testing import make_cube
    da = make_cube((64, 96), classes=5, seed=1, nan_fraction=0).chunk({"y": 16, "x": 24})
    stengine.to_zarr(da, tmp_path / "c.zarr")
    pyr = O.build_overviews(tmp_path / "c.zarr", method="mode", min_size=16, chunks=16)
    full = da.values
    cells = full.reshape(32, 2, 48, 2).swapaxes(1, 2).reshape(32, 48, 4)
    ref = np.array([[min(np.unique(c, return_counts=True)[0][
        np.unique(c, return_counts=True)[1] == np.unique(c, return_counts=True)[1].max()])
        for c in row] for row in cells])
    lev = pyr.open_level(1)
    assert lev.dtype == full.dtype
    np.testing.assert_array_equal(lev.values, ref)

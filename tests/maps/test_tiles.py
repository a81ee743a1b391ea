"""Tile math against mercantile/morecantile; rendered tiles against a full-array warp."""

import io

import mercantile
import morecantile
import numpy as np
import pytest
import rasterio.transform
import rasterio.warp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rasterio.enums import Resampling

import stengine
from stengine.errors import TileError
from stengine.viz import tiles as T

TMS = morecantile.tms.get("WebMercatorQuad")

zxy = st.integers(0, 18).flatmap(
    lambda z: st.tuples(st.just(z), st.integers(0, 2**z - 1), st.integers(0, 2**z - 1)))


@settings(max_examples=200, deadline=None)
@given(zxy)
def test_tile_bounds_match_mercantile_and_morecantile(t):
    z, x, y = t
    np.testing.assert_allclose(T.tile_bounds(z, x, y), tuple(mercantile.xy_bounds(x, y, z)),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(T.tile_bounds(z, x, y), tuple(TMS.xy_bounds(x, y, z)),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(T.tile_lonlat_bounds(z, x, y), tuple(mercantile.bounds(x, y, z)),
                               rtol=0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(-179.999, 179.999), st.floats(-85, 85), st.integers(0, 20))
def test_tile_at_matches_mercantile(lon, lat, z):
    m = mercantile.tile(lon, lat, z)
    got = T.tile_at(lon, lat, z)
    # on an exact tile edge the two may round apart by float noise: then the point must
    # lie on the shared edge
    if got != (m.x, m.y):
        w, s, e, n = mercantile.bounds(*got, z)
        assert min(abs(lon - w), abs(lon - e), abs(lat - s), abs(lat - n)) < 1e-9
    mt = TMS.tile(lon, lat, z)
    assert abs(mt.x - got[0]) <= 1 and abs(mt.y - got[1]) <= 1


@settings(max_examples=60, deadline=None)
@given(st.floats(-170, 160), st.floats(-80, 70), st.floats(0.01, 10), st.floats(0.01, 10),
       st.integers(0, 9))
def test_tiles_cover_bbox_like_mercantile(w, s, dw, dh, z):
    bbox = (w, s, min(w + dw, 179.9), min(s + dh, 84.9))
    ours = {(x, y) for _, x, y in T.tiles(bbox, z)}
    ref = {(t.x, t.y) for t in mercantile.tiles(*bbox, zooms=z)}
    assert ours == ref


def test_bad_tile_ids_raise():
    with pytest.raises(TileError, match="zoom"):
        T.tile_bounds(30, 0, 0)
    with pytest.raises(TileError, match="x=4"):
        T.tile_bounds(2, 4, 0)
    with pytest.raises(TileError, match="vmax"):
        T.Vis(vmin=1, vmax=1)


def _chain(store):
    da = stengine.open_cube(store)
    return stengine.ops.focal_mean(da, 3)


def _reference(chain, z, x, y, resampling):
    """Compute the whole chain, warp the whole array into the tile (rasterio)."""
    from stengine.cube.conventions import get_grid
    g = get_grid(chain)
    full = chain.values.astype("float32")
    out = np.full((256, 256), np.nan, "float32")
    rasterio.warp.reproject(full, out, src_transform=g.transform, src_crs=g.crs.to_wkt(),
                            dst_transform=rasterio.transform.from_bounds(
                                *T.tile_bounds(z, x, y), 256, 256),
                            dst_crs="EPSG:3857", src_nodata=np.nan, dst_nodata=np.nan,
                            resampling=Resampling[resampling])
    return out


def _tiles_over(chain, z):
    from stengine.viz.tiles import _lonlat_bounds
    return list(T.tiles(_lonlat_bounds(chain), z))


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_rendered_tile_equals_full_array_warp(utm_store, resampling):
    chain = _chain(utm_store)
    vis = T.Vis(vmin=0, vmax=100, cmap="viridis", resampling=resampling)
    z = 13
    seen_edge = False
    for _, x, y in _tiles_over(chain, z):
        ours = T.tile_values(chain, z, x, y, resampling=resampling)
        ref = _reference(chain, z, x, y, resampling)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4, equal_nan=True)
        png = Image.open(io.BytesIO(T.to_png(T.render_tile(chain, z, x, y, vis))))
        alpha = np.asarray(png)[..., 3]
        assert png.size == (256, 256) and png.mode == "RGBA"
        np.testing.assert_array_equal(alpha == 0, np.isnan(ref))
        seen_edge |= bool(np.isnan(ref).any() and np.isfinite(ref).any())
    assert seen_edge  # a tile on the data's edge was checked (transparent outside)


def test_tile_reads_only_the_chunks_under_it(utm_store, reads):
    chain = _chain(utm_store)
    from stengine.cube.conventions import get_grid
    g = get_grid(chain)
    z = 14
    _, x, y = _tiles_over(chain, z)[4]
    reads.keys.clear()
    T.tile_values(chain, z, x, y)
    got = {k.split(":")[1] for k in reads.chunks(prefix="cube.zarr:v/c/")}
    rows, cols = T._src_window(g, z, x, y)
    # dask's map_overlap takes the focal halo from whole neighbouring chunks, so the
    # chunks meeting the window plus one ring of neighbours may be read; no others
    r = range(max(rows.start // 64 - 1, 0), min((rows.stop - 1) // 64 + 2, 8))
    c = range(max(cols.start // 64 - 1, 0), min((cols.stop - 1) // 64 + 2, 12))
    expected = {f"v/c/{i}/{j}" for i in r for j in c}
    assert got and got <= expected
    assert len(got) < 96 / 4  # far fewer than all 8x12 chunks

"""The scanline rasterizer behind polygon zones, pixel by pixel, against GDAL (rasterio's
``rasterize``) and exact shapely geometry, under random chunkings."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from stengine.ops import _zonal_vector as V
from stengine.ops._zonal_rasterize import ALL_TOUCHED, CENTRE, COVERAGE
from tests.reference_zonal import pixel_boxes

H, W = 23, 31


def _random_polygons(rng, n, lattice=None):
    """Star-shaped polygons, some with holes or a second part; ``lattice`` rounds vertices
    (pixel units) so that edges and vertices fall on pixel sides and centres."""
    out = []
    while len(out) < n:
        cx, cy = rng.uniform(-3, W + 3), rng.uniform(-3, H + 3)
        k = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.3, 9, k)
        pts = np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]
        if lattice:
            pts = np.round(pts / lattice) * lattice
        p = shapely.make_valid(shapely.Polygon(pts))
        if rng.random() < 0.4:
            (x0, x1), (y0, y1) = np.sort(rng.uniform(cx - 3, cx + 3, 2)), np.sort(
                rng.uniform(cy - 3, cy + 3, 2))
            hole = shapely.box(x0, y0, x1, y1)
            if lattice:
                hole = shapely.box(*(np.round(np.array(hole.bounds) / lattice) * lattice))
            p = shapely.make_valid(p.difference(hole))
        if p.geom_type in ("Polygon", "MultiPolygon") and p.area > 0:
            out.append(p)
    return out


def _to_map(geoms, T):
    return [shapely.transform(g, lambda c: np.c_[T.c + T.a * c[:, 0], T.f + T.e * c[:, 1]])
            for g in geoms]


def _burn(geoms, T, mode, rng=None):
    """Per-polygon weights (n, H, W) from our spans, on a random chunking of the grid."""
    geom = V.flatten(gpd.GeoSeries(geoms), T)
    out = np.zeros((len(geoms), H, W))
    rcut = [0, *sorted(rng.choice(np.arange(1, H), 4, replace=False)), H] if rng else [0, H]
    ccut = [0, *sorted(rng.choice(np.arange(1, W), 4, replace=False)), W] if rng else [0, W]
    polys = np.arange(len(geoms))
    for r0, r1 in zip(rcut[:-1], rcut[1:], strict=True):
        for c0, c1 in zip(ccut[:-1], ccut[1:], strict=True):
            si, sw = V.spans(geom, polys, slice(r0, r1), slice(c0, c1), mode)
            for (k, r, a, b), w in zip(si, sw, strict=True):
                assert 0 <= r < r1 - r0 and 0 <= a < b <= c1 - c0
                assert out[k, r0 + r, c0 + a:c0 + b].max() == 0, "a pixel counted twice"
                out[k, r0 + r, c0 + a:c0 + b] = w
    return out


TRANSFORMS = [Affine(0.7, 0, 100.3, 0, -0.9, 50.1), Affine(30, 0, 5e5, 0, -30, 4e6),
              Affine(0.5, 0, -10, 0, 0.5, -20)]  # the last one south-up


@pytest.mark.parametrize("lattice", [None, 0.5, 0.25])
@pytest.mark.parametrize("t", range(len(TRANSFORMS)))
def test_centre_rule_equals_gdal(lattice, t):
    """Bit-for-bit GDAL, also where centres sit exactly on edges (lattice vertices)."""
    from rasterio.features import rasterize

    rng = np.random.default_rng(t * 10 + int((lattice or 0) * 8))
    T = TRANSFORMS[t]
    geoms = _to_map(_random_polygons(rng, 60, lattice), T)
    got = _burn(geoms, T, CENTRE, rng)
    for k, g in enumerate(geoms):
        want = rasterize([g], out_shape=(H, W), transform=T, fill=0, default_value=1)
        np.testing.assert_array_equal(got[k], want, err_msg=f"polygon {k}: {g.wkt[:120]}")


@pytest.mark.parametrize("t", range(len(TRANSFORMS)))
def test_all_touched_equals_gdal_in_general_position(t):
    from rasterio.features import rasterize

    rng = np.random.default_rng(100 + t)
    T = TRANSFORMS[t]
    geoms = _to_map(_random_polygons(rng, 60), T)
    got = _burn(geoms, T, ALL_TOUCHED, rng)
    for k, g in enumerate(geoms):
        want = rasterize([g], out_shape=(H, W), transform=T, fill=0, default_value=1,
                         all_touched=True)
        np.testing.assert_array_equal(got[k], want, err_msg=f"polygon {k}")


@pytest.mark.parametrize("lattice", [None, 0.5])
def test_coverage_and_all_touched_are_exact_areas(lattice):
    """Coverage = exact pixel ∩ polygon area (holes, multipolygons, horizontal edges cutting
    pixels); all_touched = the pixels sharing area, also on lattice polygons."""
    rng = np.random.default_rng(7 + int((lattice or 0) * 4))
    T = TRANSFORMS[0]
    geoms = _to_map(_random_polygons(rng, 40, lattice), T)
    boxes = pixel_boxes(T, (H, W))
    cov = _burn(geoms, T, COVERAGE, rng)
    touched = _burn(geoms, T, ALL_TOUCHED, rng)
    for k, g in enumerate(geoms):
        area = shapely.area(shapely.intersection(boxes, g)) / abs(T.a * T.e)
        np.testing.assert_allclose(cov[k], area, rtol=0, atol=1e-12, err_msg=f"{k}")
        # pixels met only at a point or along a side (area ~0) are out; slivers of
        # 1e-12..1e-6 of a pixel may go either way (edges 1e-9 px from a side snap to it)
        clear = (area < 1e-12) | (area > 1e-6)
        np.testing.assert_array_equal(touched[k][clear], area[clear] > 1e-6, err_msg=f"{k}")


def test_chunk_index_lists_every_polygon_that_reaches_a_chunk():
    rng = np.random.default_rng(3)
    T = TRANSFORMS[0]
    geoms = _to_map(_random_polygons(rng, 80), T) + [shapely.Polygon(), None]
    geom = V.flatten(gpd.GeoSeries(geoms), T)
    rows, cols = (5, 9, 9), (7, 7, 7, 10)
    index = V.chunk_polygons(geom, rows, cols)
    rb, cb = np.cumsum((0, *rows)), np.cumsum((0, *cols))
    for i in range(len(rows)):
        for j in range(len(cols)):
            listed = index.get((i, j), np.zeros(0, int))
            assert np.all(np.diff(listed) > 0)
            si, _ = V.spans(geom, np.arange(len(geoms)), slice(rb[i], rb[i + 1]),
                            slice(cb[j], cb[j + 1]), ALL_TOUCHED)
            assert set(np.unique(si[:, 0])) <= set(listed.tolist())
    assert not any({80, 81} & set(p.tolist()) for p in index.values())  # empty geometries

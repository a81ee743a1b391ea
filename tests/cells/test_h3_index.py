"""stengine.index.h3 against the h3 package: ids, centres, hierarchy, validation."""

from __future__ import annotations

import numpy as np
import pytest
from h3.api import basic_int as h3i

from stengine.errors import IndexRangeError
from stengine.index import _h3_arrays, _h3_core, _h3_grid
from stengine.index import h3 as sth3

from .reference import h3_cells


def _sphere(n, seed):
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    return lon, lat


def _special_points():
    """Poles, the antimeridian, pentagon centres, face centres and icosahedron edges."""
    pts = [(0.0, 90.0), (0.0, -90.0), (180.0, 0.0), (-180.0, 0.0), (180.0, 45.0),
           (-180.0, -45.0), (179.9999999, 10.0), (-179.9999999, 10.0), (0.0, 0.0),
           (360.0, 10.0), (-360.0, -10.0), (540.0, 5.0)]
    rng = np.random.default_rng(7)
    pent = [h3i.cell_to_latlng(c) for c in h3i.get_pentagons(0)]
    for la, lo in pent:
        for eps in (0.0, 1e-9, 1e-5, 1e-2, 0.5):
            d = rng.normal(size=(4, 2)) * eps
            pts += [(lo + a, la + b) for a, b in d]
    c = _h3_core.FACE_CENTER
    for f in range(20):  # face centres (the acos / 1/sqd corner of H3's maths) and edges
        for eps in (0.0, 1e-12, 1e-8, 1e-4):
            p = c[f] + rng.normal(size=3) * eps
            p /= np.linalg.norm(p)
            pts.append((np.degrees(np.arctan2(p[1], p[0])), np.degrees(np.arcsin(p[2]))))
        for q in (1, 2, 3):
            g = _h3_core.FACE_NEIGHBORS[f, q, 0]
            for t in np.linspace(0.05, 0.95, 7):
                m = t * c[f] + (1 - t) * c[g]
                m /= np.linalg.norm(m)
                for eps in (0.0, 1e-13, 1e-9):
                    p = m + rng.normal(size=3) * eps
                    p /= np.linalg.norm(p)
                    pts.append((np.degrees(np.arctan2(p[1], p[0])),
                                np.degrees(np.arcsin(np.clip(p[2], -1, 1)))))
    lon, lat = np.array(pts).T
    return lon, np.clip(lat, -90, 90)


@pytest.mark.parametrize("level", range(16))
def test_lonlat_to_cell_equals_h3_random(level):
    lon, lat = _sphere(6000, level)
    assert np.array_equal(sth3.lonlat_to_cell(lon, lat, level), h3_cells(lon, lat, level))


@pytest.mark.parametrize("level", [0, 1, 2, 3, 5, 6, 9, 12, 15])
def test_lonlat_to_cell_equals_h3_special(level):
    lon, lat = _special_points()
    assert np.array_equal(sth3.lonlat_to_cell(lon, lat, level), h3_cells(lon, lat, level))


@pytest.mark.parametrize("level", [1, 4, 5, 6, 8, 9, 11, 13])
def test_grid_to_cells_equals_h3_on_pixel_centres(level):
    # a 30" grid window over an icosahedron vertex (pentagon), a global coarse grid, and
    # 1" grids on a pentagon centre and across an icosahedron face edge (pixels much
    # smaller than cells: the kernel reuses ancestors' digits between neighbours)
    lon = 10.5 + (np.arange(150) + 0.5) / 120
    lat = 64.9 - (np.arange(110) + 0.5) / 120
    lon2 = -180 + (np.arange(120) + 0.5) * 3
    lat2 = 90 - (np.arange(60) + 0.5) * 3
    plat, plon = h3i.cell_to_latlng(h3i.get_pentagons(0)[3])
    lon3 = plon - 0.02 + (np.arange(144) + 0.5) / 3600
    lat3 = plat + 0.02 - (np.arange(144) + 0.5) / 3600
    elon, elat = _face_edge_point()
    lon4 = elon - 0.02 + (np.arange(144) + 0.5) / 3600
    lat4 = elat + 0.02 - (np.arange(144) + 0.5) / 3600
    for lo, la in ((lon, lat), (lon2, lat2), (lon3, lat3), (lon4, lat4)):
        got = sth3.grid_to_cells(lo, la, level)
        X, Y = np.meshgrid(lo, la)
        assert np.array_equal(got, h3_cells(X, Y, level))
        assert np.array_equal(got, sth3.lonlat_to_cell(X, Y, level))


def _face_edge_point():
    """(lon, lat) of a point on an icosahedron face edge: the cells on either side of it
    have base cells on different faces."""
    from stengine.index._h3_core import FACE_CENTER, FACE_NEIGHBORS

    m = FACE_CENTER[0] + FACE_CENTER[FACE_NEIGHBORS[0, 1, 0]]
    m /= np.linalg.norm(m)
    return float(np.degrees(np.arctan2(m[1], m[0]))), float(np.degrees(np.arcsin(m[2])))


def test_fast_path_within_tolerance_of_exact_path():
    """The trig-free hex2d agrees with H3's trigonometric one far inside the fallback margin."""
    lon, lat = _sphere(20000, 99)
    la, lo = np.radians(lat), np.radians(lon)
    p = np.c_[np.cos(lo) * np.cos(la), np.sin(lo) * np.cos(la), np.sin(la)]
    worst = 0.0
    for res in (0, 5, 10, 15):
        ax = _h3_arrays.axes(res)
        for x in p[::7]:
            face, sqd = _h3_core._closest_face(*x)
            d = x @ _h3_core.FACE_CENTER[face]
            fx, fy = (x @ ax[face, 0]) / d, (x @ ax[face, 1]) / d
            ex, ey = _h3_core._hex2d_exact(x[0], x[1], x[2], face, sqd, res)
            tol = (abs(fx) + abs(fy) + 1.0) * (4e-14 + 4e-15 / sqd)
            worst = max(worst, max(abs(fx - ex), abs(fy - ey)) / tol)
    assert worst < 0.1


def test_cell_to_lonlat_equals_h3():
    cells = np.concatenate([sth3.all_cells(2), sth3.lonlat_to_cell(*_sphere(3000, 3), 9),
                            sth3.lonlat_to_cell(*_sphere(3000, 4), 15),
                            np.array(h3i.get_pentagons(11), np.uint64)])
    lon, lat = sth3.cell_to_lonlat(cells)
    ref = np.array([h3i.cell_to_latlng(int(c)) for c in cells])
    assert np.array_equal(lat, ref[:, 0])
    assert np.array_equal(lon, ref[:, 1])


@pytest.mark.parametrize("level", [0, 1, 3])
def test_all_cells_and_children_equal_h3(level):
    ref = sorted(c for b in h3i.get_res0_cells() for c in h3i.cell_to_children(b, level))
    assert sth3.all_cells(level).tolist() == ref
    pent = np.array(h3i.get_pentagons(1), np.uint64)
    kids = sth3.cell_to_children(pent, 3)
    assert kids.tolist() == sorted(c for p in pent.tolist() for c in h3i.cell_to_children(p, 3))


def test_parent_valid_pentagon_level():
    cells = sth3.lonlat_to_cell(*_sphere(2000, 5), 9)
    cells = np.concatenate([cells, np.array(h3i.get_pentagons(9), np.uint64)])
    for lv in (0, 4, 9):
        assert sth3.cell_to_parent(cells, lv).tolist() == [
            h3i.cell_to_parent(int(c), lv) for c in cells]
    assert sth3.is_valid(cells).all()
    assert sth3.is_pentagon(cells).tolist() == [h3i.is_pentagon(int(c)) for c in cells]
    assert (sth3.cell_level(cells) == 9).all()
    bad = np.array([0, 1, cells[0] | np.uint64(1 << 63), int(h3i.get_pentagons(2)[0]) + (1 << 39)],
                   np.uint64)
    assert sth3.is_valid(bad).tolist() == [h3i.is_valid_cell(int(b)) for b in bad]


def test_grid_disk_padding_and_pentagons():
    hexa = sth3.lonlat_to_cell(10.0, 50.0, 5)
    pent = np.uint64(h3i.get_pentagons(5)[0])
    d = sth3.grid_disk(np.array([hexa, pent]), 2)
    assert d.shape == (2, 19)
    assert set(d[0].tolist()) == set(h3i.grid_disk(int(hexa), 2))
    assert set(d[1][d[1] != 0].tolist()) == set(h3i.grid_disk(int(pent), 2))
    assert (d[1] == 0).sum() == 19 - len(h3i.grid_disk(int(pent), 2))


def test_cells_in_bbox_equals_brute_force():
    allc = sth3.all_cells(3)
    lon, lat = sth3.cell_to_lonlat(allc)
    for bbox in [(-10, 35, 30, 60), (100, -50, 179, 80), (-180, -90, 180, 90), (-5, 80, 40, 90)]:
        w, s, e, n = bbox
        ref = allc[(lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)]
        assert np.array_equal(sth3.cells_in_bbox(bbox, 3), ref)


def test_boundary_matches_h3():
    c = sth3.lonlat_to_cell(np.array([2.0, 170.0]), np.array([48.0, -20.0]), 4)
    b = sth3.cell_to_boundary(np.concatenate([c, np.array(h3i.get_pentagons(4)[3:4], np.uint64)]))
    ref = h3i.cell_to_boundary(int(c[0]))
    assert np.allclose(b[0, :6, ::-1], ref) and np.isnan(b[0, 6:]).all()
    assert np.isfinite(b[2, :, 0]).sum() >= 5


@pytest.mark.parametrize("level", [-1, 16])
def test_bad_level(level):
    with pytest.raises(IndexRangeError, match="0..15"):
        sth3.lonlat_to_cell(0.0, 0.0, level)


def test_bad_coordinates():
    with pytest.raises(IndexRangeError, match="swapped"):
        sth3.lonlat_to_cell(10.0, 95.0, 3)
    with pytest.raises(IndexRangeError, match="finite"):
        sth3.lonlat_to_cell(np.nan, 0.0, 3)
    with pytest.raises(TypeError, match="integer"):
        sth3.lonlat_to_cell(0.0, 0.0, 2.5)
    with pytest.raises(IndexRangeError, match="not a valid"):
        sth3.cell_to_lonlat(np.array([12345], np.uint64))


def test_is_valid_refuses_reserved_bits():
    """Bits 56-58 (reserved in cell mode) must be zero; is_valid used to ignore them."""
    cells = np.concatenate([sth3.lonlat_to_cell(*_sphere(50, 8), 7),
                            np.array(h3i.get_pentagons(7), np.uint64)])
    for bit in (56, 57, 58, 63):
        bad = cells ^ np.uint64(1 << bit)
        assert sth3.is_valid(bad).tolist() == [h3i.is_valid_cell(int(c)) for c in bad]
        assert not sth3.is_valid(bad).any()
        with pytest.raises(IndexRangeError, match="cells must be valid H3 cell ids"):
            sth3.cell_to_parent(bad, 3)


def test_bad_coordinates_name_the_argument():
    with pytest.raises(IndexRangeError, match=r"lat must be in \[-90, 90\].*lat\[2\] = nan"):
        sth3.lonlat_to_cell([0.0, 1.0, 2.0], [0.0, 1.0, np.nan], 3)
    with pytest.raises(IndexRangeError, match=r"lon must be finite.*lon\[1\] = inf"):
        sth3.lonlat_to_cell([0.0, np.inf], [0.0, 1.0], 3)
    with pytest.raises(IndexRangeError, match="bbox south and north"):
        sth3.cells_in_bbox((0.0, -91.0, 10.0, 10.0), 2)


# 30″ windows of the global grid: centred on the base cell 4 pentagon (an icosahedron
# vertex: five faces and their edges meet there), and at the north pole on the antimeridian
_WINDOWS = {"pentagon": (64.7, 10.536), "pole": (90.0, 180.0)}


def _window(name, n):
    lat0, lon0 = _WINDOWS[name]
    north = min(90.0, np.ceil((lat0 + n / 240) * 120) / 120)
    west = np.floor((lon0 - n / 240) * 120) / 120
    lon = west + (np.arange(n) + 0.5) / 120
    lat = north - (np.arange(n) + 0.5) / 120
    return lon, lat


def _check_window(name, n, level):
    lon, lat = _window(name, n)
    got = sth3.grid_to_cells(lon, lat, level)
    X, Y = np.meshgrid(lon, lat)
    want = h3_cells(X, Y, level)
    bad = np.flatnonzero(got.ravel() != want.ravel())
    assert bad.size == 0, (f"{bad.size} of {got.size} pixels differ; first at lon "
                           f"{X.ravel()[bad[0]]!r}, lat {Y.ravel()[bad[0]]!r}")


@pytest.mark.parametrize("level", [6, 9])
@pytest.mark.parametrize("name", list(_WINDOWS))
def test_grid_to_cells_equals_h3_on_30s_window(name, level):
    _check_window(name, 300, level)


@pytest.mark.slow
@pytest.mark.parametrize("level", [6, 9])
@pytest.mark.parametrize("name", list(_WINDOWS))
def test_grid_to_cells_equals_h3_on_2000px_30s_window(name, level):
    """Every pixel centre of a 2000×2000 30″ window (16.7° square), id for id."""
    _check_window(name, 2000, level)


def test_hex_margin_vanishes_on_decision_lines():
    """_hex2d_to_ijk_margin: same ijk as _hex2d_to_ijk, and ~0 margin on every line it tests
    (a missing line would let the trig-free path decide a point H3 rounds the other way)."""
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-50, 50, (2, 20000))
    for a, b in zip(x, y, strict=True):
        assert _h3_core._hex2d_to_ijk_margin(a, b)[:3] == _h3_core._hex2d_to_ijk(a, b)
    lines = [lambda r1: 0.5 * (1 + r1), lambda r1: 1 - r1, lambda r1: 2 * r1,
             lambda r1: 2 * r1 - 1, lambda r1: r1 / 2]
    ranges = [(0.0, 1 / 3), (1 / 3, 0.5), (1 / 3, 0.5), (0.5, 2 / 3), (2 / 3, 1.0)]
    pts = [(r1, r2) for r1 in (0.5, 1 / 3, 2 / 3) for r2 in rng.uniform(0.01, 0.99, 20)]
    for line, (lo, hi) in zip(lines, ranges, strict=True):
        pts += [(r1, line(r1)) for r1 in rng.uniform(lo + 1e-3, hi - 1e-3, 20)]
    for r1, r2 in pts:
        m1, m2 = rng.integers(20, 40, 2)
        x2 = m2 + r2
        a1 = m1 + r1 - x2 / 2.0
        a2 = x2 / _h3_core.M_RSIN60
        if a1 < 0:
            continue
        for sx, sy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            assert _h3_core._hex2d_to_ijk_margin(sx * a1, sy * a2)[3] < 1e-9


def test_digit_table_equals_walk_up():
    """The residue table gives walk_up's digits and ancestor for any axial coordinates."""
    rng = np.random.default_rng(3)
    for res in (1, 2, 5, 6, 9, 10, 15):
        for up in range(min(res, 4) + 1):
            tab = _h3_grid.digit_table(res, up)
            q = 7 ** ((up + 1) // 2)
            n = np.eye(2, dtype=np.int64)
            for r in range(res - up + 1, res + 1):
                n = (_h3_grid._CHILD_ODD if r % 2 else _h3_grid._CHILD_EVEN) @ n
            for a, b in rng.integers(-2 ** 30, 2 ** 30, (500, 2)):
                digits, pa, pb = _h3_core.walk_up(np.int64(a), np.int64(b), res, res - up)
                row = tab[(a % q) * q + b % q]
                assert row[2] == digits >> (3 * (15 - res))
                assert (a - row[0], b - row[1]) == tuple(n @ [pa, pb])


def test_residue_equals_python_mod():
    rng = np.random.default_rng(11)
    for up in range(5):
        q = 7 ** ((up + 1) // 2)
        a = np.r_[rng.integers(-2 ** 40 + 1, 2 ** 40, 20000), np.arange(-3 * q, 3 * q),
                  q * rng.integers(-2 ** 33, 2 ** 33, 5000)]
        got = [_h3_grid.residue(np.int64(v), np.int64(q), _h3_grid.RECIP_Q[up]) for v in a]
        assert got == (a % q).tolist()

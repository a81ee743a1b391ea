"""H3 cells on numpy arrays: lon/lat → cell, centres, boundaries, hierarchy, disks.

Cell ids are ``uint64`` and equal to the ``h3`` package's integer ids (``h3.str_to_int``).
Angles are degrees; arguments are ``(lon, lat)`` (x first), unlike h3's ``(lat, lng)``.

Point → cell and cell → centre run in a numba port of H3 4.5's C code
(:mod:`stengine.index._h3_core`, tables extracted from the installed h3 library), so they
are vectorized, release the GIL and give the h3 package's results bit for bit: the tests
compare millions of random points (poles, antimeridian, face edges, pentagons included)
at every level. Pixel grids take a faster path (:func:`grid_to_cells`): a lon/lat grid's
trigonometry is separable by row and column. Boundaries and disks, which are cell-count
bound, call the h3 package per cell.

Examples
--------
>>> import numpy as np
>>> from stengine.index import h3 as sth3
>>> c = sth3.lonlat_to_cell(np.array([2.35, -74.0]), np.array([48.85, 40.7]), 5)
>>> [hex(int(v)) for v in c]
['0x851fb467fffffff', '0x852a1073fffffff']
>>> lon, lat = sth3.cell_to_lonlat(c[:1])
>>> bool(abs(lon[0] - 2.35) < 0.2 and abs(lat[0] - 48.85) < 0.2)
True
>>> sth3.cell_to_parent(c, 3).tolist() == [int(sth3.lonlat_to_cell(2.35, 48.85, 3)),
...                                        int(sth3.lonlat_to_cell(-74.0, 40.7, 3))]
True
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import IndexRangeError
from . import _h3_arrays as _arr

__all__ = [
    "MAX_LEVEL",
    "lonlat_to_cell",
    "grid_to_cells",
    "cell_to_lonlat",
    "cell_to_boundary",
    "cell_to_parent",
    "cell_to_children",
    "grid_disk",
    "cell_level",
    "is_pentagon",
    "is_valid",
    "all_cells",
    "cells_in_bbox",
    "edge_length",
]

MAX_LEVEL = 15


def check_level(level, *, op: str = "h3", name: str = "level") -> int:
    """Return ``level`` as an int in ``[0, 15]`` or raise :class:`IndexRangeError`."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise TypeError(f"{op}: {name} must be an integer H3 resolution 0..15; got {level!r}")
    if not 0 <= int(level) <= MAX_LEVEL:
        raise IndexRangeError(f"{op}: {name} must be an H3 resolution in 0..15; got {level}")
    return int(level)


def _check_lonlat(lon, lat, op):
    """float64 lon, lat; refuses non-finite values and |lat| > 90 in one vectorised pass."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if lon.size and not (np.isfinite(lon.min()) and np.isfinite(lon.max())):  # NaN propagates
        i = int(np.flatnonzero(~np.isfinite(lon.ravel()))[0])
        raise IndexRangeError(f"{op}: lon must be finite degrees (any finite value wraps); got "
                              f"lon[{i}] = {lon.ravel()[i]}. Drop or fill it.")
    if lat.size and not (lat.min() >= -90.0 and lat.max() <= 90.0):  # NaN fails both
        i = int(np.flatnonzero(~((lat.ravel() >= -90.0) & (lat.ravel() <= 90.0)))[0])
        raise IndexRangeError(f"{op}: lat must be in [-90, 90] degrees; got lat[{i}] = "
                              f"{lat.ravel()[i]}. Drop or fill it; are lon and lat swapped, or "
                              "is the data projected (pass a CRS)?")
    return lon, lat


def lonlat_to_cell(lon, lat, level: int) -> np.ndarray:
    """H3 cells (uint64) containing the points ``(lon, lat)`` (degrees, broadcast).

    Equal to ``h3.latlng_to_cell(lat, lon, level)`` for every finite input.

    Raises
    ------
    IndexRangeError
        ``level`` outside 0..15, non-finite coordinates, or ``|lat| > 90``.
    """
    level = check_level(level, op="lonlat_to_cell")
    lon, lat = _check_lonlat(lon, lat, "lonlat_to_cell")
    lon, lat = np.broadcast_arrays(lon, lat)
    shape = lon.shape
    out = _arr.points_to_cells(np.ascontiguousarray(lon).reshape(-1),
                               np.ascontiguousarray(lat).reshape(-1), level)
    return out.reshape(shape)


def grid_to_cells(lon, lat, level: int) -> np.ndarray:
    """Cells of the points ``(lon[col], lat[row])`` of a lon/lat grid: a ``(rows, cols)`` array.

    ``lon`` and ``lat`` are 1-D pixel-centre coordinates (degrees). Equal to
    :func:`lonlat_to_cell` on the meshgrid, 2–5× faster: trigonometry per row and column,
    not per pixel; neighbouring pixels share the face test, and the digits of the cell or
    of the ancestor they have in common.
    """
    level = check_level(level, op="grid_to_cells")
    lon, lat = _check_lonlat(lon, lat, "grid_to_cells")
    if lon.ndim != 1 or lat.ndim != 1:
        raise ValueError(f"grid_to_cells: lon and lat must be 1-D; got shapes {lon.shape}, "
                         f"{lat.shape}")
    return _arr.grid_to_cells(lon, lat, level)


def _cells(cells, op):
    c = np.asarray(cells)
    if c.dtype.kind not in "ui":
        raise TypeError(f"{op}: cells must be integer H3 ids (uint64); got dtype {c.dtype}")
    return c.astype(np.uint64, copy=False)


def _check_valid(c, op):
    ok = _arr.valid(c)
    if not ok.all():
        bad = c[~ok][0]
        raise IndexRangeError(f"{op}: cells must be valid H3 cell ids; got {int(bad):#x}, which "
                              "is not a valid H3 cell id (see is_valid)")


def cell_level(cells) -> np.ndarray:
    """Resolution of each cell (int64)."""
    c = _cells(cells, "cell_level")
    return ((c >> np.uint64(52)) & np.uint64(15)).astype(np.int64)


def is_valid(cells) -> np.ndarray:
    """True for valid H3 cell ids (mode, digits and pentagon rules checked by bit arithmetic)."""
    return _arr.valid(_cells(cells, "is_valid"))


def is_pentagon(cells) -> np.ndarray:
    """True for the 12 pentagons of each resolution."""
    from ._h3_core import IS_PENTAGON

    c = _cells(cells, "is_pentagon")
    res = cell_level(c)
    bc = ((c >> np.uint64(45)) & np.uint64(127)).astype(np.int64)
    digits = c & np.uint64((1 << 45) - 1)
    unused = (np.uint64(1) << (np.uint64(3) * (15 - res).astype(np.uint64))) - np.uint64(1)
    return IS_PENTAGON[np.minimum(bc, 121)] & (digits == unused)


def cell_to_lonlat(cells) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(lon, lat)`` of cells in degrees, equal to ``h3.cell_to_latlng``."""
    c = _cells(cells, "cell_to_lonlat")
    _check_valid(c, "cell_to_lonlat")
    lon, lat = _arr.cell_centres(c)
    return lon.reshape(c.shape), lat.reshape(c.shape)


def cell_to_boundary(cells) -> np.ndarray:
    """Boundary vertices ``(n, 10, 2)`` as (lon, lat) degrees, NaN-padded (h3 per cell).

    Hexagons have 6 vertices and pentagons 5, plus one per icosahedron edge crossed
    (at most 10 in all); the ring is not closed.
    """
    import h3

    c = _cells(cells, "cell_to_boundary").reshape(-1)
    _check_valid(c, "cell_to_boundary")
    out = np.full((c.size, 10, 2), np.nan)
    for n, h in enumerate(c.tolist()):
        b = h3.cell_to_boundary(h3.int_to_str(h))
        out[n, : len(b)] = np.asarray(b)[:, ::-1]
    return out


def cell_to_parent(cells, level: int) -> np.ndarray:
    """Parents at ``level`` (≤ each cell's level) of cells, by digit truncation."""
    level = check_level(level, op="cell_to_parent")
    c = _cells(cells, "cell_to_parent")
    _check_valid(c, "cell_to_parent")
    if c.size and cell_level(c).min() < level:
        raise IndexRangeError(f"cell_to_parent: level {level} is finer than some cells' level "
                              f"{int(cell_level(c).min())}")
    return _arr.parents(c, level)


def cell_to_children(cells, level: int) -> np.ndarray:
    """All children at ``level`` of cells of one common level, concatenated in id order.

    A hexagon has 7 children per level, a pentagon 6 (H3's deleted k-axis child).
    """
    level = check_level(level, op="cell_to_children")
    c = _cells(cells, "cell_to_children").reshape(-1)
    if c.size == 0:
        return np.empty(0, np.uint64)
    _check_valid(c, "cell_to_children")
    lv = cell_level(c)
    if (lv != lv[0]).any():
        raise ValueError("cell_to_children: cells must share one level")
    if level < lv[0]:
        raise IndexRangeError(f"cell_to_children: level {level} is coarser than the cells' "
                              f"level {int(lv[0])}")
    return _arr.children(np.sort(c), level)


def grid_disk(cells, k: int = 1) -> np.ndarray:
    """Cells within ``k`` steps of each cell: ``(n, 3k(k+1)+1)`` uint64, 0-padded, sorted.

    Pentagons (and cells near them) have fewer neighbours; missing slots are 0. Calls
    the h3 package per cell (cell-count bound; about 2 µs a cell).
    """
    from h3.api import basic_int as h3i

    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"grid_disk: k must be a non-negative integer; got {k!r}")
    c = _cells(cells, "grid_disk").reshape(-1)
    _check_valid(c, "grid_disk")
    width = 3 * k * (k + 1) + 1
    out = np.zeros((c.size, width), np.uint64)
    disk = h3i.grid_disk
    for n, h in enumerate(c.tolist()):
        d = sorted(disk(h, k))
        out[n, : len(d)] = d
    return out


def all_cells(level: int) -> np.ndarray:
    """Every cell at ``level``, sorted (122 · 7^level − 60·… cells: 2 M at level 5)."""
    level = check_level(level, op="all_cells")
    base = np.array([(1 << 59) | (b << 45) | ((1 << 45) - 1) for b in range(122)], np.uint64)
    return _arr.children(base, level)


def edge_length(level: int) -> float:
    """Average hexagon edge length at ``level`` in degrees of arc."""
    import h3

    return h3.average_hexagon_edge_length(check_level(level, op="edge_length"), unit="km") \
        / 6371.007180918475 * 180.0 / math.pi


def _near_bbox(lon, lat, bbox, margin):
    w, s, e, n = bbox
    ok = (lat >= s - margin) & (lat <= n + margin)
    band = min(89.0, max(abs(s), abs(n)) + margin)
    if max(abs(s), abs(n)) + margin >= 89.0 or e - w >= 360.0:
        return ok
    mlon = margin / math.cos(math.radians(band))
    if mlon >= 180.0:
        return ok
    d = (lon - (w + e) / 2.0 + 180.0) % 360.0 - 180.0
    return ok & (np.abs(d) <= (e - w) / 2.0 + mlon)


def cells_in_bbox(bbox, level: int) -> np.ndarray:
    """Cells at ``level`` whose centre lies in ``bbox = (west, south, east, north)`` (degrees).

    Walks the hierarchy from the base cells, keeping at each level the cells whose
    centre is within a safe margin of the box (a descendant's centre lies within about
    one edge length of its ancestor's), so only cells near the box are visited. West
    > east (a box across the antimeridian) is not supported: split the box.
    """
    level = check_level(level, op="cells_in_bbox")
    w, s, e, n = map(float, bbox)
    if not (-90.0 <= s <= 90.0 and -90.0 <= n <= 90.0):
        raise IndexRangeError(f"cells_in_bbox: bbox south and north must be latitudes in "
                              f"[-90, 90] degrees; got bbox={bbox!r}")
    if not (math.isfinite(w) and math.isfinite(e)):
        raise IndexRangeError(f"cells_in_bbox: bbox west and east must be finite longitudes; "
                              f"got bbox={bbox!r}")
    if not (e > w and n > s):
        raise ValueError(f"cells_in_bbox: bbox must be (west, south, east, north) with east > "
                         f"west and north > south; got {bbox!r}")
    cells = all_cells(0)
    for lv in range(0, level + 1):
        if lv:
            cells = _arr.children(cells, lv)
        lon, lat = _arr.cell_centres(cells)
        margin = 0.0 if lv == level else 4.0 * edge_length(lv)
        if lv == level:
            keep = (lat >= s) & (lat <= n) & (lon >= w) & (lon <= e)
            if e > 180.0 or w < -180.0:  # boxes given in 0..360 or beyond
                lw = (lon - w) % 360.0
                keep = (lat >= s) & (lat <= n) & (lw <= e - w)
        else:
            keep = _near_bbox(lon, lat, (w, s, e, n), margin)
        cells = cells[keep]
    return cells

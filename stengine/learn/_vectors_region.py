"""Region filters of :class:`~stengine.learn.vectors.VectorIndex` through parent cells.

A polygon or bbox is covered with H3 cells at a coarse parent level (h3's ``overlap``
cover plus one ring, since a descendant's centre can lie just outside its ancestor's
hexagon); the index's rows under those parents are contiguous (cells are sorted, and a
parent id is monotone in the child id), so they are found by ``searchsorted``; the
cell centres are then checked exactly against the geometry (boundary included).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import VectorIndexError
from ..index import h3 as sth3

COVER_MAX = 4000  # parents in a cover before a coarser level is preferred


def _bbox_polygon(b):
    import shapely

    try:
        minx, miny, maxx, maxy = (float(v) for v in b)
    except (TypeError, ValueError) as e:
        raise VectorIndexError(f"within: a bbox must be 4 numbers (minx, miny, maxx, maxy) in "
                               f"degrees; got {b!r}") from e
    if not all(map(math.isfinite, (minx, miny, maxx, maxy))):
        raise VectorIndexError(f"within: bbox values must be finite; got {b!r}")
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise VectorIndexError(f"within: bbox must have -180 ≤ minx < maxx ≤ 180 and -90 ≤ miny "
                               f"< maxy ≤ 90 (split boxes across the antimeridian); got {b!r}")
    return shapely.box(minx, miny, maxx, maxy)


def _rows_under(parent_col: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Sorted rows whose parent is in ``parents`` (``parent_col`` is non-decreasing)."""
    p = np.unique(np.asarray(parents, np.uint64))
    lo = np.searchsorted(parent_col, p, side="left")
    hi = np.searchsorted(parent_col, p, side="right")
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    if lo.size == 0:
        return np.empty(0, np.int64)
    n = hi - lo
    starts = np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n)
    return starts + np.arange(n.sum())


def _cover(geom, level: int) -> np.ndarray:
    import h3

    polys = getattr(geom, "geoms", [geom])
    out = []
    for g in polys:
        if g.geom_type != "Polygon" or g.is_empty:
            continue
        shape = h3.geo_to_h3shape(g.__geo_interface__)
        out += [h3.str_to_int(c) for c in
                h3.h3shape_to_cells_experimental(shape, level, contain="overlap")]
    if not out:  # a sliver smaller than a cell: the cells of its vertices
        x, y = np.asarray(geom.exterior.coords).T if hasattr(geom, "exterior") else \
            np.asarray(geom.representative_point().coords).T
        out = sth3.lonlat_to_cell(x, y, level).tolist()
    c = np.unique(np.asarray(out, np.uint64))
    ring = sth3.grid_disk(c, 1).reshape(-1)
    return np.unique(ring[ring != 0])


@functools.lru_cache(maxsize=64)
def _cover_cached(wkb: bytes, level: int) -> np.ndarray:
    import shapely

    return _cover(shapely.from_wkb(wkb), level)


def _geometry_rows(ix, geom):
    """(rows inside, parent level, cover parents, rows under the cover but outside)."""
    import shapely

    if geom.is_empty or geom.area == 0:
        raise VectorIndexError(f"within: the region is empty (area 0); got {geom.wkt[:80]}")
    levels = sorted(ix.parents)
    level, cover = None, None
    if levels:
        wkb = shapely.to_wkb(geom)
        # the coarsest cover is cheap; each finer level has ~7x the cells
        c0 = _cover_cached(wkb, levels[0])
        level = levels[0]
        for lv in levels[1:]:
            if c0.size * 7 ** (lv - levels[0]) > COVER_MAX:
                break
            level = lv
        cover = c0 if level == levels[0] else _cover_cached(wkb, level)
        rows = _rows_under(ix.parents[level], cover)
    else:
        rows = np.arange(len(ix))
    x, y = ix.lon[rows], ix.lat[rows]
    if shapely.equals(geom, shapely.box(*geom.bounds)):   # a box: plain comparisons
        x0, y0, x1, y1 = geom.bounds
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    else:
        shapely.prepare(geom)
        inside = shapely.intersects_xy(geom, x, y)
    return rows[inside], level, cover, rows[~inside]


def _cell_rows(ix, cells):
    c = np.asarray(sorted(cells) if isinstance(cells, set | frozenset) else cells)
    if c.size == 0:
        raise VectorIndexError("within: the set of cells is empty")
    if c.dtype.kind not in "ui" or c.ndim != 1:
        raise VectorIndexError(f"within: cells must be integer H3 ids; got dtype {c.dtype}")
    c = np.unique(c.astype(np.uint64))
    ok = sth3.is_valid(c)
    if not ok.all():
        raise VectorIndexError(f"within: {int(c[~ok][0]):#x} is not a valid H3 cell id")
    lv = sth3.cell_level(c)
    if lv.max() > ix.resolution:
        raise VectorIndexError(f"within: cells must have resolution ≤ the index's "
                               f"{ix.resolution}; got resolution {int(lv.max())}")
    parts = []
    for r in np.unique(lv).tolist():
        sel = c[lv == r]
        if r == ix.resolution:
            i = np.minimum(np.searchsorted(ix.cells, sel), ix.cells.size - 1)
            parts.append(i[ix.cells[i] == sel])
        else:
            col = ix.parents.get(r)
            if col is None:
                col = sth3.cell_to_parent(ix.cells, r)
            parts.append(_rows_under(col, sel))
    return np.unique(np.concatenate(parts)), None, None, None


def rows_within(ix, within):
    """Where ``within`` puts the query: a :class:`Filter` over the rows of ``ix``."""
    import shapely

    bbox = None
    if isinstance(within, shapely.Geometry):
        if within.geom_type not in ("Polygon", "MultiPolygon"):
            raise VectorIndexError(f"within: a geometry must be a Polygon or MultiPolygon; got "
                                   f"{within.geom_type}")
        rows, level, cover, out = _geometry_rows(ix, within)
    elif isinstance(within, tuple):
        g = _bbox_polygon(within)
        bbox = g.bounds
        rows, level, cover, out = _geometry_rows(ix, g)
    elif isinstance(within, set | frozenset | list | np.ndarray):
        rows, level, cover, out = _cell_rows(ix, within)
    else:
        raise VectorIndexError(f"within must be a shapely polygon, a bbox tuple (minx, miny, "
                               f"maxx, maxy) or a set/array of cells; got {type(within).__name__}")
    if rows.size == 0:
        raise VectorIndexError("within: no indexed cell has its centre in the region; widen it")
    return Filter(rows, level, cover, out, bbox)


@dataclass
class Filter:
    """Rows inside (sorted); the parent level and cover used; rows under the cover but
    outside the geometry (None for cell sets); the bbox (minx, miny, maxx, maxy) if one."""

    rows: np.ndarray
    level: int | None
    cover: np.ndarray | None
    outside: np.ndarray | None
    bbox: tuple | None

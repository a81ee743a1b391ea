"""Vector zones: read, reproject, flatten to pixel-space arrays, and index by chunk.

Everything here runs once, on the client, while the graph is built; it costs
O(vertices) with numpy and shapely's vectorized functions. Chunks only ever see the
flat arrays (one shared graph key) and the list of their own polygons.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ._zonal_rasterize import rasterize_chunk

_POLYGONAL = {"Polygon", "MultiPolygon"}


class Geometry(NamedTuple):
    """Polygons as flat arrays in pixel coordinates of the whole raster.

    ``xy`` (n_vertices, 2) float64 columns/rows (rings closed); ``ring_off``
    (n_rings + 1) vertex offsets; ``ring_sign`` (n_rings) orientation factors that make
    shells count +1 and holes −1 in the coverage rule; ``ring_rev`` (n_rings) True for
    rings that run counter-clockwise in map coordinates (GDAL turns every ring clockwise
    before burning, which decides its horizontal-edge rule); ``poly_ring_off`` (n_polys + 1)
    ring offsets (all rings of all parts of a polygon); ``bbox`` (n_polys, 4) pixel
    bounds ``(xmin, ymin, xmax, ymax)``, NaN for empty geometries.
    """

    xy: np.ndarray
    ring_off: np.ndarray
    ring_sign: np.ndarray
    ring_rev: np.ndarray
    poly_ring_off: np.ndarray
    bbox: np.ndarray


def is_vector(zones) -> bool:
    """True for a GeoDataFrame/GeoSeries or a path to a vector file."""
    if isinstance(zones, str | os.PathLike):
        return True
    return type(zones).__name__ in ("GeoDataFrame", "GeoSeries")


def read_zones(zones, *, op: str):
    """``zones`` as a GeoDataFrame (a path is read with geopandas); checks it is usable."""
    import geopandas as gpd

    if isinstance(zones, str | os.PathLike):
        try:
            zones = gpd.read_file(zones)
        except Exception as e:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(f"{op}: could not read zones from {os.fspath(zones)!r} with "
                             f"geopandas: {e}") from e
    if isinstance(zones, gpd.GeoSeries):
        zones = zones.to_frame("geometry")
    if len(zones) == 0:
        raise ValueError(f"{op}: zones is an empty GeoDataFrame; pass at least one polygon")
    if zones.crs is None:
        raise ValueError(f"{op}: zones has no CRS; set it with zones.set_crs(...) (e.g. "
                         "zones.set_crs('EPSG:4326')) so it can be reprojected to the raster's")
    check_geometries(zones.geometry, op=op)
    return zones


def _rows(geo, bad, limit: int = 5) -> str:
    """``rows 2, 7 (index 'a', 'b')`` for the positions ``bad`` of ``geo``."""
    pos = np.flatnonzero(bad)
    shown = pos[:limit]
    more = f" and {pos.size - limit} more" if pos.size > limit else ""
    labels = ", ".join(repr(v) for v in geo.index[shown])
    word = "row" if pos.size == 1 else "rows"
    return f"{word} {', '.join(str(int(i)) for i in shown)}{more} (index {labels})"


def check_geometries(geo, *, op: str) -> None:
    """Refuse geometries no pixel rule can place: missing or empty geometries, types other
    than (Multi)Polygon, and NaN or infinite vertex coordinates. Messages name ``zones``
    and the offending rows (positions and index labels)."""
    import shapely

    arr = np.asarray(geo.values, dtype=object)
    missing = shapely.is_missing(arr)
    if missing.any():
        raise ValueError(f"{op}: zones has missing (None) geometries at {_rows(geo, missing)}; "
                         "drop them first (zones[~zones.geometry.isna()])")
    types = np.asarray(geo.geom_type, dtype=object)
    wrong = ~np.isin(types, list(_POLYGONAL))
    if wrong.any():
        found = sorted(set(types[wrong]))
        raise TypeError(f"{op}: zones must be Polygon or MultiPolygon geometries; got "
                        f"{found} at {_rows(geo, wrong)}. Buffer points/lines first (e.g. "
                        "gdf.buffer(d)).")
    empty = shapely.is_empty(arr)
    if empty.any():
        raise ValueError(f"{op}: zones has empty geometries at {_rows(geo, empty)}; an empty "
                         "polygon covers no pixel. Drop them first (zones[~zones.is_empty]).")
    bad = _nonfinite(arr)
    if bad.any():
        raise ValueError(f"{op}: zones has NaN or infinite vertex coordinates at "
                         f"{_rows(geo, bad)}; fix or drop those geometries.")


def _nonfinite(arr) -> np.ndarray:
    """Per geometry: True when any vertex coordinate is NaN or infinite."""
    import shapely

    coords, index = shapely.get_coordinates(arr, include_z=False, return_index=True)
    bad = np.zeros(arr.size, bool)
    if coords.size:
        rows = ~np.isfinite(coords).all(axis=1)
        bad[np.unique(index[rows])] = True
    return bad


def to_raster_crs(gdf, crs, *, op: str, grid=None):
    """Reproject ``gdf``'s geometries to ``crs`` (a pyproj CRS or None) once.

    Geometries that reprojection sends to NaN/infinite coordinates, or that lie wholly
    outside ``crs``'s area of use while missing the raster (``grid``, if given) too, are
    refused with an :class:`~stengine.errors.IndexRangeError` naming ``zones`` and the rows:
    their coordinates in ``crs`` would be meaningless, not merely outside the raster.
    """
    if crs is None:
        raise ValueError(f"{op}: values has no CRS, so polygon zones cannot be placed on it; "
                         "give it one with stengine.cube.set_grid (or rioxarray's write_crs)")
    geo = gdf.geometry
    if geo.crs.equals(crs):
        return geo
    from ..errors import IndexRangeError

    out = geo.to_crs(crs)
    bad = _nonfinite(np.asarray(out.values, dtype=object))
    if bad.any():
        raise IndexRangeError(
            f"{op}: zones has geometries that reprojecting to the raster's CRS "
            f"({_crs_name(crs)}) turns into NaN/infinite coordinates, at {_rows(geo, bad)}: "
            f"they lie (partly) outside where that CRS is defined{_area_text(crs)}. Clip or "
            "drop them.")
    outside = _outside_area(geo, crs, grid)
    if outside is not None and outside.any():
        raise IndexRangeError(
            f"{op}: zones has geometries wholly outside the area of use of the raster's CRS "
            f"({_crs_name(crs)}{_area_text(crs)}) and away from the raster, at "
            f"{_rows(geo, outside)}: reprojected there they would land at meaningless "
            "coordinates. Check the zones' CRS (zones.crs) or drop those rows.")
    return out


def _crs_name(crs) -> str:
    epsg = crs.to_epsg(min_confidence=70)
    return f"EPSG:{epsg}" if epsg else crs.name


def _area_text(crs) -> str:
    a = crs.area_of_use
    if a is None:
        return ""
    return f"; area of use lon {a.west:g}..{a.east:g}, lat {a.south:g}..{a.north:g}"


def _lon_overlap(w0, e0, w1, e1):
    """Do lon ranges [w0, e0] (per geometry, arrays) and [w1, e1] (may cross ±180) meet?"""
    if w1 <= e1:
        return (e0 >= w1) & (w0 <= e1)
    return (e0 >= w1) | (w0 <= e1)  # the range crosses the antimeridian


def _outside_area(geo, crs, grid):
    """Per geometry: wholly outside ``crs.area_of_use`` and away from the raster ``grid``
    (both compared in lon/lat); None when the CRS has no area of use."""
    area = crs.area_of_use
    if area is None:
        return None
    lonlat = geo if geo.crs.is_geographic else geo.to_crs("EPSG:4326")
    b = np.asarray(lonlat.bounds, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        inside = _lon_overlap(b[:, 0], b[:, 2], area.west, area.east) & \
            (b[:, 3] >= area.south) & (b[:, 1] <= area.north)
        out = ~inside & np.isfinite(b).all(axis=1)
        if out.any() and grid is not None and grid.shape[0] and grid.shape[1]:
            from pyproj import Transformer

            try:
                w, s, e, n = Transformer.from_crs(crs, "EPSG:4326", always_xy=True) \
                    .transform_bounds(*grid.bounds, densify_pts=21)
            except Exception:  # noqa: BLE001 - no lon/lat footprint: keep the area rule
                return out
            if np.isfinite([w, s, e, n]).all():
                near = _lon_overlap(b[:, 0], b[:, 2], w, e) & (b[:, 3] >= s) & (b[:, 1] <= n)
                out &= ~near
    return out


def flatten(geoms, transform) -> Geometry:
    """Flat pixel-space arrays of polygon geometries (a GeoSeries in the raster's CRS).

    Pixel coordinates follow GDAL's inverse geotransform arithmetic (``x' = inv0 +
    inv1·x + inv2·y``), so centre decisions match rasterio's ``rasterize`` bit for bit.
    """
    import shapely

    arr = np.asarray(geoms.values, dtype=object)
    n = arr.size
    ok = ~(shapely.is_missing(arr) | shapely.is_empty(arr))
    pos = np.flatnonzero(ok)
    empty = Geometry(np.zeros((0, 2)), np.zeros(1, np.int64), np.zeros(0), np.zeros(0, bool),
                     np.zeros(n + 1, np.int64), np.full((n, 4), np.nan))
    if pos.size == 0:
        return empty
    gtype, coords, offsets = shapely.to_ragged_array(arr[pos], include_z=False)
    if gtype == shapely.GeometryType.POLYGON:
        ring_off, geom_rings = offsets
        shell_of_part = geom_rings[:-1]
    else:
        ring_off, part_off, geom_parts = offsets
        geom_rings = part_off[geom_parts]
        shell_of_part = part_off[:-1]
    ring_off = np.asarray(ring_off, np.int64)
    n_rings = ring_off.size - 1
    is_shell = np.zeros(n_rings, bool)
    is_shell[np.asarray(shell_of_part, np.int64)] = True
    coords = np.asarray(coords, np.float64)
    xy = _to_pixels(coords, transform)
    ring_rev = _shoelace(coords, ring_off) > 0  # counter-clockwise in map coordinates
    # A ring with positive shoelace area in pixel space accumulates −1 inside; flip so
    # shells count +1 and holes −1 (see _zonal_rasterize).
    ring_sign = np.where(_shoelace(xy, ring_off) > 0, -1.0, 1.0) * np.where(is_shell, 1.0, -1.0)
    x, y = xy[:, 0], xy[:, 1]
    # polygons → rings; empty geometries get no rings
    poly_ring_off = np.zeros(n + 1, np.int64)
    counts = np.zeros(n, np.int64)
    counts[pos] = np.diff(np.asarray(geom_rings, np.int64))
    poly_ring_off[1:] = np.cumsum(counts)
    # pixel bounding boxes
    bbox = np.full((n, 4), np.nan)
    vstart = ring_off[poly_ring_off[pos]]
    vend = ring_off[poly_ring_off[pos + 1]]
    nonempty = vend > vstart
    # non-empty polygons' vertex ranges are consecutive, so each reduceat segment
    # [vs[i], vs[i + 1]) is exactly polygon i's vertices (the last runs to the end)
    vs, pp = vstart[nonempty], pos[nonempty]
    if pp.size:
        bbox[pp, 0] = np.minimum.reduceat(x, vs)
        bbox[pp, 1] = np.minimum.reduceat(y, vs)
        bbox[pp, 2] = np.maximum.reduceat(x, vs)
        bbox[pp, 3] = np.maximum.reduceat(y, vs)
    return Geometry(np.ascontiguousarray(xy), ring_off, ring_sign, ring_rev, poly_ring_off,
                    bbox)


def _shoelace(xy, ring_off):
    """Twice the signed area of each closed ring (positive: counter-clockwise, y up)."""
    if ring_off.size < 2:
        return np.zeros(0)
    first = np.repeat(xy[ring_off[:-1]], np.diff(ring_off), axis=0)
    x, y = (xy - first).T  # relative to each ring's first vertex: no cancellation
    cross = np.zeros(xy.shape[0])
    cross[:-1] = x[:-1] * y[1:] - x[1:] * y[:-1]
    cross[ring_off[1:] - 1] = 0.0  # a ring's last vertex does not pair with the next ring
    return np.add.reduceat(cross, ring_off[:-1])


def _to_pixels(coords, transform):
    a, b, c, d, e, f = tuple(transform)[:6]
    if b == 0.0 and d == 0.0:  # GDALInvGeoTransform's north-up special case
        inv = (-c / a, 1.0 / a, 0.0, -f / e, 0.0, 1.0 / e)
    else:
        t = ~transform
        inv = (t.c, t.a, t.b, t.f, t.d, t.e)
    X, Y = coords[:, 0], coords[:, 1]
    out = np.empty_like(coords)
    out[:, 0] = inv[0] + X * inv[1] + Y * inv[2]
    out[:, 1] = inv[3] + X * inv[4] + Y * inv[5]
    return out


def chunk_polygons(geom: Geometry, row_chunks, col_chunks) -> dict[tuple[int, int], np.ndarray]:
    """Which polygons each chunk needs: ``{(block_row, block_col): sorted polygon indices}``.

    The spatial index is arithmetic on the regular chunk grid: a polygon's pixel bounding
    box (rows ``floor(ymin)..floor(ymax)``, likewise columns) gives the range of chunk
    rows and columns it may touch. Chunks no polygon reaches are absent (never read).
    """
    rb = np.concatenate([[0], np.cumsum(row_chunks)]).astype(np.int64)
    cb = np.concatenate([[0], np.cumsum(col_chunks)]).astype(np.int64)
    H, W = int(rb[-1]), int(cb[-1])
    if H == 0 or W == 0:
        return {}  # a raster without pixels: no chunk needs any polygon
    bb = geom.bbox
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(bb).all(axis=1) & (bb[:, 2] >= 0) & (bb[:, 0] <= W) \
            & (bb[:, 3] >= 0) & (bb[:, 1] <= H)
    ids = np.flatnonzero(keep)
    if ids.size == 0:
        return {}
    r0 = np.clip(np.floor(bb[ids, 1]), 0, H - 1).astype(np.int64)
    r1 = np.clip(np.floor(bb[ids, 3]), 0, H - 1).astype(np.int64)
    c0 = np.clip(np.floor(bb[ids, 0]), 0, W - 1).astype(np.int64)
    c1 = np.clip(np.floor(bb[ids, 2]), 0, W - 1).astype(np.int64)
    bi0 = np.searchsorted(rb, r0, side="right") - 1
    bi1 = np.searchsorted(rb, r1, side="right") - 1
    bj0 = np.searchsorted(cb, c0, side="right") - 1
    bj1 = np.searchsorted(cb, c1, side="right") - 1
    ni = bi1 - bi0 + 1
    nj = bj1 - bj0 + 1
    npair = ni * nj
    poly = np.repeat(ids, npair)
    # position of each pair within its polygon's block rectangle
    start = np.repeat(np.cumsum(npair) - npair, npair)
    q = np.arange(poly.size) - start
    nj_r = np.repeat(nj, npair)
    bi = np.repeat(bi0, npair) + q // nj_r
    bj = np.repeat(bj0, npair) + q % nj_r
    nbx = len(col_chunks)
    block = bi * nbx + bj
    order = np.lexsort((poly, block))
    block, poly = block[order], poly[order]
    cuts = np.flatnonzero(np.diff(block)) + 1
    out = {}
    for blk, polys in zip(block[np.r_[0, cuts]], np.split(poly, cuts), strict=True):
        out[(int(blk) // nbx, int(blk) % nbx)] = polys
    return out


def spans(geom: Geometry, polys, rows: slice, cols: slice, mode: int):
    """Spans of ``polys`` on the chunk ``rows × cols`` (see :mod:`._zonal_rasterize`)."""
    return rasterize_chunk(geom.xy, geom.ring_off, geom.ring_sign, geom.ring_rev,
                           geom.poly_ring_off,
                           np.asarray(polys, np.int64), rows.start, rows.stop, cols.start,
                           cols.stop, mode)

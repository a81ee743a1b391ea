"""HTM helpers of the cell ops: trixel vertices from ids, edge-neighbour rings.

Trixels follow the SDSS convention of DESIGN.md ("Index conventions"): level-0 faces
8..15 with fixed vertices; child ``4·id + m`` of ``(v0, v1, v2)`` with edge midpoints
``w0 = mid(v1, v2)``, ``w1 = mid(v0, v2)``, ``w2 = mid(v0, v1)`` is ``(v0, w2, w1)``,
``(v1, w0, w2)``, ``(v2, w1, w0)`` or ``(w0, w1, w2)``. Only the point → id function comes
from :mod:`stengine.index.htm`.
"""

from __future__ import annotations

import numpy as np

_X, _Y, _Z = np.eye(3)
FACES = {8: (_X, -_Z, _Y), 9: (_Y, -_Z, -_X), 10: (-_X, -_Z, -_Y), 11: (-_Y, -_Z, _X),
         12: (_X, _Z, -_Y), 13: (-_Y, _Z, -_X), 14: (-_X, _Z, _Y), 15: (_Y, _Z, _X)}


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def trixel_vertices(ids, level: int) -> np.ndarray:
    """``(n, 3, 3)`` unit vectors (v0, v1, v2) of HTM trixels at ``level``.

    The subdivision is recomputed here (numpy, one level at a time for all ids), which is
    what :func:`stengine.index.htm.vertices` does per id; the tests check they agree.
    """
    ids = np.asarray(ids, np.uint64)
    face = (ids >> np.uint64(2 * level)).astype(np.int64)
    if ids.size and (face.min() < 8 or face.max() > 15):
        raise ValueError(f"trixel_vertices: ids are not HTM ids of level {level}")
    v = np.stack([np.stack(FACES.get(int(f), FACES[8])) for f in face]) if ids.size else \
        np.zeros((0, 3, 3))
    for lv in range(1, level + 1):
        m = ((ids >> np.uint64(2 * (level - lv))) & np.uint64(3)).astype(np.int64)
        v0, v1, v2 = v[:, 0], v[:, 1], v[:, 2]
        w0, w1, w2 = _unit(v1 + v2), _unit(v0 + v2), _unit(v0 + v1)
        cand = np.stack([np.stack([v0, w2, w1], 1), np.stack([v1, w0, w2], 1),
                         np.stack([v2, w1, w0], 1), np.stack([w0, w1, w2], 1)])
        v = cand[m, np.arange(ids.size)]
    return v


def _lonlat(p):
    return np.degrees(np.arctan2(p[..., 1], p[..., 0])), np.degrees(np.arcsin(
        np.clip(p[..., 2], -1, 1)))


def edge_neighbours(ids, level: int) -> np.ndarray:
    """``(n, 3)`` ids of the trixels across each edge (a point just past each edge midpoint)."""
    from ._cells_lift import htm_lonlat_to_id

    ids = np.asarray(ids, np.uint64)
    v = trixel_vertices(ids, level)
    c = _unit(v.sum(axis=1))
    out = np.empty((ids.size, 3), np.uint64)
    for e, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
        m = _unit(v[:, a] + v[:, b])
        p = _unit(m + 1e-3 * (m - c))
        lon, lat = _lonlat(p)
        out[:, e] = np.asarray(htm_lonlat_to_id(lon, lat, level), np.uint64)
    return out


def htm_rings(ids, level: int, k: int) -> np.ndarray:
    """``(n, D)`` sorted ids within ``k`` edge steps (0-padded), like H3's grid_disk."""
    ids = np.asarray(ids, np.uint64)
    rings = [{int(i)} for i in ids.tolist()]
    frontier = [{int(i)} for i in ids.tolist()]
    for _ in range(k):
        flat = np.array(sorted({x for f in frontier for x in f}), np.uint64)
        nb = dict(zip(flat.tolist(), edge_neighbours(flat, level).tolist(), strict=True)) \
            if flat.size else {}
        new = []
        for r, f in zip(rings, frontier, strict=True):
            nxt = {int(x) for y in f for x in nb[y]} - r
            r |= nxt
            new.append(nxt)
        frontier = new
    width = max((len(r) for r in rings), default=1)
    out = np.zeros((ids.size, width), np.uint64)
    for n, r in enumerate(rings):
        out[n, : len(r)] = sorted(r)
    return out


def htm_centres(ids, level: int):
    """(lon, lat) degrees of trixel centroids (normalised vertex means)."""
    return _lonlat(_unit(trixel_vertices(ids, level).sum(axis=1)))


def htm_cells_in_bbox(bbox, level: int) -> np.ndarray:
    """Trixels at ``level`` whose centroid is in ``bbox``; descends pruning by trixel caps."""
    w, s, e, n = bbox
    ids = np.arange(8, 16, dtype=np.uint64)
    for lv in range(0, level + 1):
        if lv:
            ids = (ids[:, None] * np.uint64(4) + np.arange(4, dtype=np.uint64)).reshape(-1)
        v = trixel_vertices(ids, lv)
        c = _unit(v.sum(axis=1))
        lon, lat = _lonlat(c)
        if lv == level:
            keep = (lat >= s) & (lat <= n) & ((lon - w) % 360.0 <= e - w)
        else:
            rad = np.degrees(np.arccos(np.clip(np.einsum("nij,nj->ni", v, c).min(1), -1, 1)))
            pad = 2 * rad
            band = np.minimum(89.9, np.maximum(abs(s), abs(n)) + pad)
            padlon = np.where(np.maximum(abs(s), abs(n)) + pad >= 89.0, 360.0,
                              pad / np.cos(np.radians(band)))
            dlon = (lon - (w + e) / 2 + 180.0) % 360.0 - 180.0
            keep = (lat >= s - pad) & (lat <= n + pad) & (
                (np.abs(dlon) <= (e - w) / 2 + padlon) | (padlon >= 180) | (e - w >= 360))
        ids = ids[keep]
    return np.sort(ids)

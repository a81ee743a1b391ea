"""Slow, obvious references for the index tests. They share no code with stengine's kernels.

Trixel vertices are rebuilt from an id's digits with plain numpy (normalised great-circle
midpoints, DESIGN.md child order); containment is the sign of ``(a x b) . p`` for the
three edges of a counter-clockwise spherical triangle. Geometry is done in extended
precision (``np.longdouble``), so the plain cross product stays accurate for the short
edges of deep levels.
"""

import functools

import numpy as np

LD = np.longdouble
X, Y, Z = np.eye(3, dtype=LD)
FACES = {  # DESIGN.md, "Index conventions"
    8: (X, -Z, Y), 9: (Y, -Z, -X), 10: (-X, -Z, -Y), 11: (-Y, -Z, X),
    12: (X, Z, -Y), 13: (-Y, Z, -X), 14: (-X, Z, Y), 15: (Y, Z, X),
}


def unit(lon, lat):
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def mid(a, b):
    m = np.asarray(a, LD) + np.asarray(b, LD)
    return m / np.sqrt(np.sum(m * m))


def child(tri, k):
    v0, v1, v2 = tri
    w0, w1, w2 = mid(v1, v2), mid(v0, v2), mid(v0, v1)
    return [(v0, w2, w1), (v1, w0, w2), (v2, w1, w0), (w0, w1, w2)][k]


def level_of(hid):
    return (int(hid).bit_length() - 4) // 2


def vertices(hid):
    """(v0, v1, v2) of an HTM id, from its digits."""
    hid = int(hid)
    lv = level_of(hid)
    tri = FACES[hid >> (2 * lv)]
    for s in range(lv - 1, -1, -1):
        tri = child(tri, (hid >> (2 * s)) & 3)
    return tri


def margin(tri, p):
    """min over edges of (a x b) . p / |a x b|: > 0 inside, < 0 outside (radians, roughly)."""
    p = np.asarray(p, LD)
    out = np.inf
    for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
        n = np.cross(a, b)
        out = min(out, float(np.dot(n, p) / np.sqrt(np.sum(n * n))))
    return out


@functools.lru_cache(maxsize=8)
def all_trixels(level):
    """Every trixel of a level: (ids, (n, 3, 3) vertices)."""
    tris = {f: FACES[f] for f in range(8, 16)}
    for _ in range(level):
        tris = {4 * i + k: child(t, k) for i, t in tris.items() for k in range(4)}
    ids = np.array(sorted(tris), dtype=np.uint64)
    return ids, np.array([np.stack(tris[int(i)]) for i in ids], dtype=LD)


def brute_lookup(p, level):
    """(id, margin) of the trixel of ``level`` containing unit vector ``p``, by testing all."""
    ids, v = all_trixels(level)
    p = np.asarray(p, LD)
    m = np.full(len(ids), np.inf, dtype=LD)
    for j in range(3):
        n = np.cross(v[:, j], v[:, (j + 1) % 3])
        m = np.minimum(m, (n @ p) / np.sqrt(np.sum(n * n, axis=1)))
    k = int(np.argmax(m))
    return int(ids[k]), float(m[k])


def descend(p, level):
    """(id, smallest margin met) by walking down from the face, testing each child."""
    face = max(FACES, key=lambda f: margin(FACES[f], p))
    hid, tri = face, FACES[face]
    worst = margin(tri, p)
    for _ in range(level):
        ms = [margin(child(tri, k), p) for k in range(4)]
        k = int(np.argmax(ms))
        worst = min(worst, ms[k])
        hid, tri = 4 * hid + k, child(tri, k)
    return hid, worst


def random_in_trixel(tri, n, rng):
    """Points inside a spherical triangle (normalised positive combinations of its vertices)."""
    w = rng.dirichlet([1, 1, 1], size=n)
    pts = w @ np.stack(tri)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def to_lonlat(p):
    p = np.atleast_2d(p)
    return np.degrees(np.arctan2(p[:, 1], p[:, 0])), np.degrees(np.arcsin(np.clip(p[:, 2], -1, 1)))


def random_lonlat(n, rng):
    """Uniform points on the sphere, degrees."""
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return lon, lat


def ids_in_ranges(rs, limit=None):
    out = []
    for a, b in np.asarray(rs, dtype=np.uint64):
        out.extend(range(int(a), int(b)))
        if limit and len(out) > limit:
            break
    return out

"""numba kernels of the HTM: point lookup, trixel vertices, region classification, covers.

All kernels are single-threaded and ``nogil`` (dask provides the parallelism). Vectors
are unit 3-vectors ``(x, y, z)`` with x = (lon 0, lat 0), y = (lon 90, lat 0), z = north
pole; trixel vertices are counter-clockwise seen from outside the sphere.

Region classification is *conservative* and three-valued: ``INSIDE`` means the whole
trixel is surely inside the region, ``OUTSIDE`` surely outside, ``PARTIAL`` anything
else (including "too close to call": every test is widened by ``eps``). Envelopes
(``INSIDE`` or ``PARTIAL`` at the finest level) are therefore complete and interiors
(``INSIDE`` only) are sound, whatever the floating-point rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

jit = numba.njit(nogil=True, cache=True)
# IEEE semantics for division (no ZeroDivisionError check): the check is a branch that
# stops LLVM from vectorising the point lookup.
jit_ieee = numba.njit(nogil=True, cache=True, error_model="numpy")

OUTSIDE, PARTIAL, INSIDE = 0, 1, 2
KIND_CONVEX, KIND_POLYGON = 0, 1

_X, _Y, _Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
_NX, _NY, _NZ = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0)
# Level-0 faces S0..S3, N0..N3 (ids 8..15), vertices (v0, v1, v2), from DESIGN.md.
FACES = np.array([
    [_X, _NZ, _Y], [_Y, _NZ, _NX], [_NX, _NZ, _NY], [_NY, _NZ, _X],
    [_X, _Z, _NY], [_NY, _Z, _NX], [_NX, _Z, _Y], [_Y, _Z, _X],
], dtype=np.float64)

_D2R = math.pi / 180.0


# --------------------------------------------------------------------------- vectors
@jit
def _orient(ux, uy, uz, vx, vy, vz, px, py, pz):
    """Sign-carrying ``((u+v) x (v-u)) . p`` = ``2 (u x v) . p``.

    The sum/difference form stays accurate when u and v are nearly parallel (short
    edges at deep levels): ``v - u`` is then exact, where ``u x v`` would cancel.
    """
    sx, sy, sz = ux + vx, uy + vy, uz + vz
    dx, dy, dz = vx - ux, vy - uy, vz - uz
    return (sy * dz - sz * dy) * px + (sz * dx - sx * dz) * py + (sx * dy - sy * dx) * pz


@jit
def _wrap_face(lon, lat):
    """Level-0 face index 0..7 (id - 8) of a lon/lat in degrees, by the tie rule."""
    lw = np.fmod(lon, 360.0) if abs(lon) > 720.0 else lon  # exact
    lw = lw - 360.0 * math.floor(lw / 360.0)
    if lw >= 360.0 or lw < 0.0:  # rounding of tiny negative lons
        lw = 0.0
    q = int(lw / 90.0)
    if q > 3:
        q = 3
    return 7 - q if lat >= 0.0 else q


# Points are processed in blocks of _LANES. The per-level state of a block lives in one
# flat array, row r at offset r * _LANES; constant row offsets (and a branch-free body)
# are what let LLVM vectorise the inner loop across points (AVX2/AVX-512), which is
# ~4x faster than one point at a time: each level is a chain of dependent sqrt/div.
_LANES = 64
_ROW_P = 9  # rows 0-8: vertices a, b, c; rows 9-11: the point; row 12: digits so far
_ROW_D = 12
_MAX_DIGITS = 20  # 4**20 < 2**53: row 12 accumulates digits exactly in a float64


@jit_ieee
def _descend(S, nlev, nb):
    """Descend ``nlev`` levels for lanes ``0..nb-1`` of block ``S``; digits go to row 12."""
    B = _LANES
    for _ in range(nlev):
        for j in range(nb):
            ax = S[j]
            ay = S[B + j]
            az = S[2 * B + j]
            bx = S[3 * B + j]
            by = S[4 * B + j]
            bz = S[5 * B + j]
            cx = S[6 * B + j]
            cy = S[7 * B + j]
            cz = S[8 * B + j]
            px = S[9 * B + j]
            py = S[10 * B + j]
            pz = S[11 * B + j]
            # midpoints, unnormalised: the orientation signs do not depend on their scale
            w0x, w0y, w0z = bx + cx, by + cy, bz + cz
            w1x, w1y, w1z = ax + cx, ay + cy, az + cz
            w2x, w2y, w2z = ax + bx, ay + by, az + bz
            o0 = _orient(w2x, w2y, w2z, w1x, w1y, w1z, px, py, pz)  # child 0's inner edge
            o1 = _orient(w0x, w0y, w0z, w2x, w2y, w2z, px, py, pz)  # child 1's
            o2 = _orient(w1x, w1y, w1z, w0x, w0y, w0z, px, py, pz)  # child 2's
            s0 = 1.0 / math.sqrt(w0x * w0x + w0y * w0y + w0z * w0z)
            s1 = 1.0 / math.sqrt(w1x * w1x + w1y * w1y + w1z * w1z)
            s2 = 1.0 / math.sqrt(w2x * w2x + w2y * w2y + w2z * w2z)
            w0x, w0y, w0z = w0x * s0, w0y * s0, w0z * s0
            w1x, w1y, w1z = w1x * s1, w1y * s1, w1z * s1
            w2x, w2y, w2z = w2x * s2, w2y * s2, w2z * s2
            # one-hot child weights, branch-free; corner children win ties (0, 1, 2, then 3):
            # a point exactly on an inner edge (orientation 0) goes to the corner child
            k0 = np.float64(o0 >= 0.0)
            k1 = (1.0 - k0) * np.float64(o1 >= 0.0)
            k2 = (1.0 - k0 - k1) * np.float64(o2 >= 0.0)
            k3 = 1.0 - k0 - k1 - k2
            # children: 0 (a, w2, w1), 1 (b, w0, w2), 2 (c, w1, w0), 3 (w0, w1, w2); the
            # weights are exactly 0 or 1, so these sums select exactly
            S[j] = k0 * ax + k1 * bx + k2 * cx + k3 * w0x
            S[B + j] = k0 * ay + k1 * by + k2 * cy + k3 * w0y
            S[2 * B + j] = k0 * az + k1 * bz + k2 * cz + k3 * w0z
            S[3 * B + j] = k0 * w2x + k1 * w0x + (k2 + k3) * w1x
            S[4 * B + j] = k0 * w2y + k1 * w0y + (k2 + k3) * w1y
            S[5 * B + j] = k0 * w2z + k1 * w0z + (k2 + k3) * w1z
            S[6 * B + j] = k0 * w1x + (k1 + k3) * w2x + k2 * w0x
            S[7 * B + j] = k0 * w1y + (k1 + k3) * w2y + k2 * w0y
            S[8 * B + j] = k0 * w1z + (k1 + k3) * w2z + k2 * w0z
            S[12 * B + j] = S[12 * B + j] * 4.0 + (k1 + 2.0 * k2 + 3.0 * k3)


@jit
def _load_point(S, j, f, px, py, pz):
    B = _LANES
    for k in range(3):
        for c in range(3):
            S[(3 * k + c) * B + j] = FACES[f, k, c]
    S[9 * B + j] = px
    S[10 * B + j] = py
    S[11 * B + j] = pz


@jit
def _run_levels(S, F, level, nb, out, i0):
    """Descend a loaded block all ``level`` levels and write ids to ``out[i0:i0+nb]``."""
    B = _LANES
    done = 0
    first = True
    while first or done < level:
        step = min(level - done, _MAX_DIGITS)
        for j in range(B):
            S[_ROW_D * B + j] = 0.0
        _descend(S, step, nb)
        for j in range(nb):
            base = np.uint64(8 + F[j]) if first else out[i0 + j]
            out[i0 + j] = (base << np.uint64(2 * step)) | np.uint64(S[_ROW_D * B + j])
        done += step
        first = False


# Taylor coefficients of sin and cos on |t| <= pi/4: the truncation error (< 1e-19) is far
# below double rounding, so the results are within ~2 ulp of libm's
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8 = (
    (-1) ** k / math.factorial(2 * k + 1) for k in range(1, 9))
_C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9 = (
    (-1) ** k / math.factorial(2 * k) for k in range(1, 10))


@jit_ieee
def sincos_deg(x):
    """(sin, cos) of ``x`` degrees, exact at multiples of 90 (a pole is exactly (0, 0, 1)).

    Reducing in degrees is exact, and a branch-free polynomial lets LLVM vectorise the
    loops that call it: ~5 ns for both against ~35 ns for libm's sin and cos.
    """
    if abs(x) > 720.0:  # fmod is exact; below 720 the quadrant arithmetic is exact too
        x = np.fmod(x, 360.0)
    q = math.floor(x * (1.0 / 90.0) + 0.5)
    t = (x - 90.0 * q) * _D2R  # |t| <= pi/4
    z = t * t
    s = t + t * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * (_S6 + z * (
        _S7 + z * _S8)))))))
    c = 1.0 + z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * (_C6 + z * (
        _C7 + z * (_C8 + z * _C9))))))))
    m = q - 4.0 * math.floor(q * 0.25)  # quadrant 0..3
    k0 = np.float64(m == 0.0)
    k1 = np.float64(m == 1.0)
    k2 = np.float64(m == 2.0)
    k3 = np.float64(m == 3.0)
    return k0 * s + k1 * c - k2 * s - k3 * c, k0 * c - k1 * s - k2 * c + k3 * s


@jit
def first_bad_lonlat(lon, lat):
    """Index of the first non-finite lon or lat outside [-90, 90]; -1 if none."""
    nbad = 0
    for i in range(lon.size):  # a branch-free count first: the usual case is all good
        nbad += (not (lat[i] >= -90.0 and lat[i] <= 90.0)) or not math.isfinite(lon[i])
    if nbad == 0:
        return -1
    for i in range(lon.size):
        if not (lat[i] >= -90.0 and lat[i] <= 90.0) or not math.isfinite(lon[i]):
            return i
    return -1


@jit_ieee
def lonlat_to_id(lon, lat, level, out):
    """Fill ``out`` with level-``level`` HTM ids; return -1, or the index of a bad input."""
    bad = first_bad_lonlat(lon, lat)
    if bad >= 0:
        return bad
    n = lon.size
    B = _LANES
    S = np.zeros(13 * B)
    F = np.zeros(B, np.int64)
    for i0 in range(0, n, B):
        nb = min(B, n - i0)
        for j in range(nb):
            lo = lon[i0 + j]
            la = lat[i0 + j]
            f = _wrap_face(lo, la)
            F[j] = f
            slo, clo = sincos_deg(lo)
            sla, cla = sincos_deg(la)
            _load_point(S, j, f, cla * clo, cla * slo, sla)
        _run_levels(S, F, level, nb, out, i0)
    return -1


@jit
def xyz_to_id(x, y, z, level, out):
    """Like :func:`lonlat_to_id` for unit vectors (face by the same tie rule)."""
    n = x.size
    S = np.zeros(13 * _LANES)
    F = np.zeros(_LANES, np.int64)
    for i0 in range(0, n, _LANES):
        nb = min(_LANES, n - i0)
        for j in range(nb):
            px, py, pz = x[i0 + j], y[i0 + j], z[i0 + j]
            f = _wrap_face(math.degrees(math.atan2(py, px)), 0.0 if pz == 0.0 else pz)
            F[j] = f
            _load_point(S, j, f, px, py, pz)
        _run_levels(S, F, level, nb, out, i0)
    return -1


@jit
def _norm3(x, y, z):
    s = 1.0 / math.sqrt(x * x + y * y + z * z)
    return x * s, y * s, z * s


@jit
def _children(v, out, k0):
    """Write the 4 children's vertices of trixel ``v`` (9 floats) to ``out[k0:k0+4]``."""
    ax, ay, az, bx, by, bz, cx, cy, cz = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]
    w0x, w0y, w0z = _norm3(bx + cx, by + cy, bz + cz)
    w1x, w1y, w1z = _norm3(ax + cx, ay + cy, az + cz)
    w2x, w2y, w2z = _norm3(ax + bx, ay + by, az + bz)
    rows = ((ax, ay, az, w2x, w2y, w2z, w1x, w1y, w1z),
            (bx, by, bz, w0x, w0y, w0z, w2x, w2y, w2z),
            (cx, cy, cz, w1x, w1y, w1z, w0x, w0y, w0z),
            (w0x, w0y, w0z, w1x, w1y, w1z, w2x, w2y, w2z))
    for k in range(4):
        r = rows[k]
        for j in range(9):
            out[k0 + k, j] = r[j]


@jit
def id_vertices(ids, levels, out):
    """Vertices (n, 9) of trixels ``ids`` (their levels given); ids are pre-validated."""
    tmp = np.empty((4, 9))
    for i in range(ids.size):
        lv = levels[i]
        f = int(ids[i] >> np.uint64(2 * lv)) - 8
        for j in range(3):
            for k in range(3):
                out[i, 3 * j + k] = FACES[f, j, k]
        for step in range(lv - 1, -1, -1):
            d = int((ids[i] >> np.uint64(2 * step)) & np.uint64(3))
            _children(out[i], tmp, 0)
            for j in range(9):
                out[i, j] = tmp[d, j]


# --------------------------------------------------------------------------- caps
@jit
def _dot(ax, ay, az, bx, by, bz):
    return ax * bx + ay * by + az * bz


@jit
def _in_tri(v, px, py, pz, eps):
    """Is p inside trixel v (or within ~eps of it)?"""
    return (_orient(v[0], v[1], v[2], v[3], v[4], v[5], px, py, pz) >= -eps
            and _orient(v[3], v[4], v[5], v[6], v[7], v[8], px, py, pz) >= -eps
            and _orient(v[6], v[7], v[8], v[0], v[1], v[2], px, py, pz) >= -eps)


@jit
def _arc_reaches(nx, ny, nz, d, ax, ay, az, bx, by, bz):
    """Does the minor arc a-b contain a point p with n.p >= d (n unit)?"""
    gx, gy, gz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    gg = gx * gx + gy * gy + gz * gz
    if gg == 0.0:
        return False
    ng = nx * gx + ny * gy + nz * gz
    # c: n projected on the arc's great circle; the arc's max of n.p is |c| if c is on it
    cx, cy, cz = nx - gx * ng / gg, ny - gy * ng / gg, nz - gz * ng / gg
    t1 = _dot(ay * cz - az * cy, az * cx - ax * cz, ax * cy - ay * cx, gx, gy, gz)
    t2 = _dot(cy * bz - cz * by, cz * bx - cx * bz, cx * by - cy * bx, gx, gy, gz)
    if t1 < 0.0 or t2 < 0.0:
        return False
    return d <= 0.0 or 1.0 - ng * ng / gg >= d * d


@jit
def _small_cap_class(nx, ny, nz, d, v, eps):
    """Trixel v against the cap {p : n.p >= d}, d >= 0 (a spherically convex cap)."""
    sure = d + eps
    da = _dot(nx, ny, nz, v[0], v[1], v[2])
    db = _dot(nx, ny, nz, v[3], v[4], v[5])
    dc = _dot(nx, ny, nz, v[6], v[7], v[8])
    if da >= sure and db >= sure and dc >= sure:
        return INSIDE
    touch = d - eps
    if da >= touch or db >= touch or dc >= touch:
        return PARTIAL
    if _in_tri(v, nx, ny, nz, eps):
        return PARTIAL
    if (_arc_reaches(nx, ny, nz, touch, v[0], v[1], v[2], v[3], v[4], v[5])
            or _arc_reaches(nx, ny, nz, touch, v[3], v[4], v[5], v[6], v[7], v[8])
            or _arc_reaches(nx, ny, nz, touch, v[6], v[7], v[8], v[0], v[1], v[2])):
        return PARTIAL
    return OUTSIDE


@jit
def cap_class(nx, ny, nz, d, v, eps):
    """Trixel v against the closed cap {p : n.p >= d}, any d in [-1, 1]."""
    if d >= 0.0:
        return _small_cap_class(nx, ny, nz, d, v, eps)
    # a cap larger than a hemisphere is the complement of a small open cap
    k = _small_cap_class(-nx, -ny, -nz, -d, v, eps)
    if k == OUTSIDE:
        return INSIDE
    if k == INSIDE:
        return OUTSIDE
    return PARTIAL


# --------------------------------------------------------------------------- polygons
@jit
def _cross2(ax, ay, bx, by):
    return ax * by - ay * bx


@jit
def _seg_dist2(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    ll = dx * dx + dy * dy
    t = 0.0 if ll == 0.0 else ((px - ax) * dx + (py - ay) * dy) / ll
    t = min(1.0, max(0.0, t))
    ex, ey = ax + t * dx - px, ay + t * dy - py
    return ex * ex + ey * ey


@jit
def _segs_near(p1x, p1y, p2x, p2y, q1x, q1y, q2x, q2y, eps):
    """Do two segments cross, touch, or come within eps of each other?"""
    d1 = _cross2(q2x - q1x, q2y - q1y, p1x - q1x, p1y - q1y)
    d2 = _cross2(q2x - q1x, q2y - q1y, p2x - q1x, p2y - q1y)
    d3 = _cross2(p2x - p1x, p2y - p1y, q1x - p1x, q1y - p1y)
    d4 = _cross2(p2x - p1x, p2y - p1y, q2x - p1x, q2y - p1y)
    if ((d1 > 0.0) != (d2 > 0.0)) and ((d3 > 0.0) != (d4 > 0.0)) and d1 != 0.0 and d2 != 0.0:
        return True
    # otherwise the closest approach is at an endpoint of one of the segments
    e2 = eps * eps
    return (_seg_dist2(p1x, p1y, q1x, q1y, q2x, q2y) <= e2
            or _seg_dist2(p2x, p2y, q1x, q1y, q2x, q2y) <= e2
            or _seg_dist2(q1x, q1y, p1x, p1y, p2x, p2y) <= e2
            or _seg_dist2(q2x, q2y, p1x, p1y, p2x, p2y) <= e2)


@jit
def pip(poly, x, y):
    """Even-odd point-in-polygon in the plane (poly: (n, 2), implicitly closed)."""
    n = poly.shape[0]
    inside = False
    j = n - 1
    for i in range(n):
        xi, yi, xj, yj = poly[i, 0], poly[i, 1], poly[j, 0], poly[j, 1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


@jit
def poly_class(poly, frame, cosr, v, eps):
    """Trixel v against a polygon given in the gnomonic plane of ``frame`` (c, e1, e2).

    Great-circle edges are straight lines in the gnomonic projection, so a trixel
    projects exactly to a planar triangle and the test is planar.
    """
    c = frame[0]
    if cap_class(c[0], c[1], c[2], cosr, v, eps) == OUTSIDE:
        return OUTSIDE
    xs = np.empty(3)
    ys = np.empty(3)
    for j in range(3):
        z = _dot(v[3 * j], v[3 * j + 1], v[3 * j + 2], c[0], c[1], c[2])
        if z < 0.02:  # beyond ~89 deg from the centre: cannot project; look closer
            return PARTIAL
        xs[j] = _dot(v[3 * j], v[3 * j + 1], v[3 * j + 2], frame[1, 0], frame[1, 1],
                     frame[1, 2]) / z
        ys[j] = _dot(v[3 * j], v[3 * j + 1], v[3 * j + 2], frame[2, 0], frame[2, 1],
                     frame[2, 2]) / z
    n = poly.shape[0]
    for j in range(3):
        k = (j + 1) % 3
        for i in range(n):
            i2 = (i + 1) % n
            if _segs_near(xs[j], ys[j], xs[k], ys[k], poly[i, 0], poly[i, 1], poly[i2, 0],
                          poly[i2, 1], eps):
                return PARTIAL
    if pip(poly, xs[0], ys[0]):
        return INSIDE
    # no edge meets and the trixel is not inside: the polygon may be inside the trixel
    px, py = poly[0, 0], poly[0, 1]
    s0 = _cross2(xs[1] - xs[0], ys[1] - ys[0], px - xs[0], py - ys[0])
    s1 = _cross2(xs[2] - xs[1], ys[2] - ys[1], px - xs[1], py - ys[1])
    s2 = _cross2(xs[0] - xs[2], ys[0] - ys[2], px - xs[2], py - ys[2])
    if (s0 >= 0 and s1 >= 0 and s2 >= 0) or (s0 <= 0 and s1 <= 0 and s2 <= 0):
        return PARTIAL
    return OUTSIDE


# --------------------------------------------------------------------------- regions
@jit
def region_class(kind, hs, conv, poly, frame, cosr, v, eps):
    """Trixel v against a region: a union of convexes (halfspace rows ``hs[conv[k]:conv[k+1]]``)
    or a gnomonic polygon."""
    if kind == KIND_POLYGON:
        return poly_class(poly, frame, cosr, v, eps)
    res = OUTSIDE
    for k in range(conv.size - 1):
        all_in = True
        out = False
        for h in range(conv[k], conv[k + 1]):
            r = cap_class(hs[h, 0], hs[h, 1], hs[h, 2], hs[h, 3], v, eps)
            if r == OUTSIDE:
                out = True
                break
            if r != INSIDE:
                all_in = False
        if out:
            continue
        if all_in:
            return INSIDE
        res = PARTIAL
    return res


@jit
def _grow(a, n):
    if n < a.shape[0]:
        return a
    b = np.empty(max(16, 2 * a.shape[0]), a.dtype)
    b[: a.shape[0]] = a
    return b


@jit
def expansion_budget(nout, ninside, npart, fan, max_nodes, interior, last):
    """How many of ``npart`` partial nodes to refine into ``fan`` children each.

    The rest are emitted whole (envelope) or dropped (interior). ``nout + ninside`` ranges
    are already spoken for; the ranges emitted in the end stay within ``max_nodes``.
    """
    if last:
        return 0
    if interior:
        room = (max_nodes - nout - ninside) // fan
    else:
        room = (max_nodes - nout - ninside - npart) // (fan - 1)
    return max(0, min(npart, room))


@jit
def cover_space(kind, hs, conv, poly, frame, cosr, eps, level, interior, max_nodes):
    """Breadth-first HTM cover; returns (starts, stops) of unsorted level-``level`` ranges.

    Partial trixels are refined while the emitted ranges stay within ``max_nodes``;
    beyond that, those that cannot be refined are emitted whole (coarsening, for
    envelopes) or dropped (interiors).
    """
    n = 8
    ids = np.arange(8, 16).astype(np.uint64)
    verts = FACES.reshape(8, 9).copy()
    starts = np.empty(64, np.uint64)
    stops = np.empty(64, np.uint64)
    m = 0
    for lv in range(level + 1):
        shift = np.uint64(2 * (level - lv))
        cls = np.empty(n, np.int8)
        npart = 0
        ninside = 0
        for i in range(n):
            cls[i] = region_class(kind, hs, conv, poly, frame, cosr, verts[i], eps)
            npart += cls[i] == PARTIAL
            ninside += cls[i] == INSIDE
        nexp = expansion_budget(m, ninside, npart, 4, max_nodes, interior, lv == level)
        nids = np.empty(4 * nexp, np.uint64)
        nverts = np.empty((4 * nexp, 9))
        k = 0
        for i in range(n):
            c = cls[i]
            if c == PARTIAL and k < 4 * nexp:
                _children(verts[i], nverts, k)
                for j in range(4):
                    nids[k + j] = (ids[i] << np.uint64(2)) | np.uint64(j)
                k += 4
            elif c == INSIDE or (c == PARTIAL and not interior):
                starts = _grow(starts, m)
                stops = _grow(stops, m)
                starts[m] = ids[i] << shift
                stops[m] = (ids[i] + np.uint64(1)) << shift
                m += 1
        if nexp == 0:
            break
        ids, verts, n = nids, nverts, k
    return starts[:m], stops[:m]


@jit
def points_in_convex(hs, conv, x, y, z, out):
    """``out[i]`` = point i lies in the union of convexes (closed halfspaces)."""
    for i in range(x.size):
        hit = False
        for k in range(conv.size - 1):
            ok = True
            for h in range(conv[k], conv[k + 1]):
                if hs[h, 0] * x[i] + hs[h, 1] * y[i] + hs[h, 2] * z[i] < hs[h, 3]:
                    ok = False
                    break
            if ok:
                hit = True
                break
        out[i] = hit


@jit
def points_in_polygon(poly, frame, x, y, z, out):
    """``out[i]`` = point i lies in the gnomonic polygon (even-odd rule)."""
    c, e1, e2 = frame[0], frame[1], frame[2]
    for i in range(x.size):
        w = c[0] * x[i] + c[1] * y[i] + c[2] * z[i]
        if w <= 0.0:
            out[i] = False
            continue
        px = (e1[0] * x[i] + e1[1] * y[i] + e1[2] * z[i]) / w
        py = (e2[0] * x[i] + e2[1] * y[i] + e2[2] * z[i]) / w
        out[i] = pip(poly, px, py)

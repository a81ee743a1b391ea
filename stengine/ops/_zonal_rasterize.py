"""Polygons → pixel runs on one chunk: scanline rasterization in numba (host side).

A *span* is ``(k, row, c0, c1)`` plus a weight ``w``: pixels ``c0 <= col < c1`` of
``row`` (chunk-local) belong to polygon ``k`` (chunk-local index) with weight ``w``.
Spans of one polygon never overlap; spans of different polygons may (overlapping
polygons each count their own pixels). Cost is O(rows × active edges) per polygon,
plus the boundary pixels for the two edge-aware rules, never O(bounding box).

Geometry comes as flat arrays in *pixel coordinates of the whole raster* (x = column,
y = row, both growing from the top-left corner), so a pixel's membership is decided
by the same arithmetic whichever chunk it falls in: polygons straddling chunk edges
count every pixel once.

Pixel rules (``mode``):

``CENTRE``
    A pixel belongs to a polygon when its centre does, decided exactly as GDAL's
    ``GDALdllImageFilledPolygon`` does (rasterio's ``rasterize``): for each row, the
    crossings of all ring edges with the line ``y = row + 0.5`` (edge included when
    ``y_low <= y < y_high``), rounded with ``floor(x + 0.5)``, sorted and filled pairwise
    (even-odd), plus GDAL's special fill of right-to-left horizontal edges lying exactly
    on the centre line.
``ALL_TOUCHED``
    Pixels sharing area with the polygon: those whose interior a ring edge passes
    through, plus those wholly inside (GDAL's ``all_touched=True``; an edge running
    exactly along a pixel side touches neither neighbour, as in GDAL 3).
``COVERAGE``
    Every pixel meeting the polygon, weighted by the exact fraction of its area inside
    (interior pixels weigh 1): per row strip, each edge adds the signed area between
    itself and the strip's right end to the cells it crosses (first differences), and
    a running sum over the sorted cells gives each boundary cell's area, and the
    constant coverage (0 or 1) of the cells between them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

CENTRE, ALL_TOUCHED, COVERAGE = 0, 1, 2
# Boundary cells covered by less than this fraction of their area are dropped: such
# slivers are floating-point noise of an edge running along a pixel side.
MIN_COVERAGE = 1e-12
# all_touched: an edge within this many pixels of a pixel side lies on it (touches
# neither neighbour through it); absorbs rounding where an edge meets a pixel corner.
_SNAP = 1e-9

jit = numba.njit(nogil=True, cache=True)


# --------------------------------------------------------------------------- buffers
@jit
def _reserve(si, sw, n, extra):
    """Room for ``extra`` more spans after ``n`` (callers check first: returning arrays
    costs reference counting)."""
    m = max(2 * si.shape[0], n + extra)
    ni = np.empty((m, 4), np.int64)
    nw = np.empty(m, np.float64)
    ni[:n] = si[:n]
    nw[:n] = sw[:n]
    return ni, nw


@jit
def _emit(si, sw, n, k, r, a, b, w):
    """Write span (k, r, a, b, w) at ``n`` (room reserved); extend the previous span
    instead when it continues it. Returns the new count."""
    if n > 0 and w == 1.0 and sw[n - 1] == 1.0 and si[n - 1, 0] == k \
            and si[n - 1, 1] == r and si[n - 1, 3] == a:
        si[n - 1, 3] = b
        return n
    si[n, 0] = k
    si[n, 1] = r
    si[n, 2] = a
    si[n, 3] = b
    sw[n] = w
    return n + 1


@jit
def _grow_entries(ec, ed, et, need):
    m = max(need, 2 * ec.size)
    nc = np.empty(m, np.int64)
    nd = np.empty(m, np.float64)
    nt = np.empty(m, np.bool_)
    nc[:ec.size] = ec
    nd[:ed.size] = ed
    nt[:et.size] = et
    return nc, nd, nt


# --------------------------------------------------------------------------- edges
@jit
def _collect_edges(xy, ring_off, ring_sign, ring_rev, poly_ring_off, p, ylo, yhi, E):
    """Edges of polygon ``p`` whose y-range meets ``[ylo, yhi]``, into ``E``; return count.

    Row of ``E``: x at the low-y end, low y, x at the high-y end, high y, signed
    direction (+1 downwards, times the ring's orientation factor), and for horizontal
    edges 1.0 when the edge runs right-to-left once its ring is turned clockwise in map
    coordinates (GDAL fills those on the centre line).
    Horizontal edges store (min x, y, max x, y).
    """
    n = 0
    for g in range(poly_ring_off[p], poly_ring_off[p + 1]):
        sg = ring_sign[g]
        rev = ring_rev[g]
        for v in range(ring_off[g], ring_off[g + 1] - 1):
            x1 = xy[v, 0]
            y1 = xy[v, 1]
            x2 = xy[v + 1, 0]
            y2 = xy[v + 1, 1]
            if y1 < y2:
                lo, hi, xl, xh, d, hz = y1, y2, x1, x2, 1.0, 0.0
            elif y1 > y2:
                lo, hi, xl, xh, d, hz = y2, y1, x2, x1, -1.0, 0.0
            else:
                if x1 == x2:
                    continue  # repeated vertex
                lo, hi, d = y1, y1, 0.0
                xl, xh = min(x1, x2), max(x1, x2)
                hz = 1.0 if (x1 > x2) != rev else 0.0
            if hi < ylo or lo > yhi:
                continue
            E[n, 0] = xl
            E[n, 1] = lo
            E[n, 2] = xh
            E[n, 3] = hi
            E[n, 4] = d * sg
            E[n, 5] = hz
            n += 1
    return n


@jit
def _sort_small(a, n):
    for i in range(1, n):  # insertion sort: a row rarely has more than a few crossings
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@jit
def _order(keys, m, buf):
    """Stable argsort of ``keys[:m]``: insertion sort for the usual few boundary cells
    of a row (no allocation), numpy's mergesort for long rows."""
    if m > 48:
        return np.argsort(keys[:m], kind="mergesort")
    for i in range(m):
        buf[i] = i
    for i in range(1, m):
        j = i - 1
        v = buf[i]
        while j >= 0 and keys[buf[j]] > keys[v]:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    return buf[:m]


# --------------------------------------------------------------------------- centre rule
@jit
def _centre(E, ne, k, row0, row1, col0, col1, si, sw, n, active, xs, hs, he):
    order = np.argsort(E[:ne, 1])
    ymin = E[order[0], 1]
    ymax = -np.inf
    for i in range(ne):
        ymax = max(ymax, E[i, 3])
    r_first = max(row0, int(math.floor(ymin - 0.5)))
    r_last = min(row1 - 1, int(math.floor(ymax)))
    nxt = 0
    na = 0
    for r in range(r_first, r_last + 1):
        yc = r + 0.5
        while nxt < ne and E[order[nxt], 1] <= yc:
            active[na] = order[nxt]
            na += 1
            nxt += 1
        m = np.int64(0)  # not the literal 0: one callee specialisation, not two
        nh = 0
        j = 0
        for q in range(na):
            e = active[q]
            dy1 = E[e, 1]
            dy2 = E[e, 3]
            if dy2 < yc:
                continue  # passed: rows only go down
            active[j] = e
            j += 1
            if dy1 == dy2:
                if E[e, 5] > 0.0:  # GDAL fills right-to-left horizontal edges on the line
                    hs[nh] = int(math.floor(E[e, 0] + 0.5))
                    he[nh] = int(math.floor(E[e, 2] + 0.5))
                    nh += 1
            elif yc < dy2:
                dx1 = E[e, 0]
                dx2 = E[e, 2]
                # same expression (and so the same rounding) as GDAL's llrasterize.cpp
                x = (yc - dy1) * (dx2 - dx1) / (dy2 - dy1) + dx1
                xs[m] = int(math.floor(x + 0.5))
                m += 1
        na = j
        _sort_small(xs, m)
        rr = r - row0
        if n + m // 2 + nh + 1 > si.shape[0]:
            si, sw = _reserve(si, sw, n, m // 2 + nh + 1)
        if nh == 0:
            for i in range(0, m - 1, 2):
                a = max(xs[i], col0)
                b = min(xs[i + 1], col1)
                if a < b:
                    n = _emit(si, sw, n, k, rr, a - col0, b - col0, 1.0)
        else:  # rare: union of the pairs and the horizontal fills
            for i in range(0, m - 1, 2):
                hs[nh] = xs[i]
                he[nh] = xs[i + 1]
                nh += 1
            idx = np.argsort(hs[:nh])
            cur_a = hs[idx[0]]
            cur_b = he[idx[0]]
            for q in range(1, nh + 1):
                if q < nh and hs[idx[q]] <= cur_b:
                    cur_b = max(cur_b, he[idx[q]])
                    continue
                a = max(cur_a, col0)
                b = min(cur_b, col1)
                if a < b:
                    n = _emit(si, sw, n, k, rr, a - col0, b - col0, 1.0)
                if q < nh:
                    cur_a = hs[idx[q]]
                    cur_b = he[idx[q]]
    return si, sw, n


# --------------------------------------------------------------------------- edge-aware rules
@jit
def _g(X, xa, xb, h):
    """Area of the strip part of height ``h`` between the segment (xa → xb) and ``x = X``."""
    ua = X - xa
    ub = X - xb
    if ua >= 0.0 and ub >= 0.0:
        return h * 0.5 * (ua + ub)
    if ua <= 0.0 and ub <= 0.0:
        return 0.0
    if ua > 0.0:
        return h * ua * ua / (2.0 * (ua - ub))
    return h * ub * ub / (2.0 * (ub - ua))


@jit
def _gap_weight(acc, mode):
    """Weight of the cells between two boundary cells: no edge crosses them, so their
    coverage is the running sum — 0 or 1, or a fraction where a horizontal edge cuts
    the strip above or below them."""
    cov = min(abs(acc), 1.0)
    if cov <= MIN_COVERAGE:
        return 0.0
    if mode == COVERAGE:
        return 1.0 if cov >= 1.0 - 1e-15 else cov
    return 1.0 if cov > 1e-9 else 0.0


@jit
def _boundary(E, ne, k, row0, row1, col0, col1, mode, si, sw, n, active, ec, ed, et,
              order_buf):
    order = np.argsort(E[:ne, 1])
    ymin = E[order[0], 1]
    ymax = -np.inf
    for i in range(ne):
        ymax = max(ymax, E[i, 3])
    r_first = max(row0, int(math.floor(ymin)))
    r_last = min(row1 - 1, int(math.floor(ymax)))
    nxt = 0
    na = 0
    for r in range(r_first, r_last + 1):
        y0 = float(r)
        y1 = y0 + 1.0
        while nxt < ne and E[order[nxt], 1] < y1:
            active[na] = order[nxt]
            na += 1
            nxt += 1
        m = np.int64(0)  # not the literal 0: one callee specialisation, not two
        acc = 0.0  # coverage carried in from cells left of the chunk
        j = 0
        for q in range(na):
            e = active[q]
            lo = E[e, 1]
            hi = E[e, 3]
            if hi < y0:
                continue
            active[j] = e
            j += 1
            xl = E[e, 0]
            xh = E[e, 2]
            if lo == hi:  # horizontal: adds no area; inside the strip it touches cells
                if mode == ALL_TOUCHED and y0 + _SNAP < lo < y1 - _SNAP:
                    c_lo = max(int(math.floor(xl + _SNAP)), col0)
                    c_hi = min(int(math.ceil(xh - _SNAP)) - 1, col1 - 1)
                    if c_lo <= c_hi:
                        if m + c_hi - c_lo + 1 > ec.size:
                            ec, ed, et = _grow_entries(ec, ed, et, m + c_hi - c_lo + 1)
                        for c in range(c_lo, c_hi + 1):
                            ec[m] = c
                            ed[m] = 0.0
                            et[m] = True
                            m += 1
                continue
            ya = max(lo, y0)
            yb = min(hi, y1)
            if yb <= ya:
                continue
            slope = (xh - xl) / (hi - lo)
            # unclipped ends keep their exact x: interpolating them can cross a pixel side
            xa = xl if ya == lo else xl + (ya - lo) * slope
            xb = xh if yb == hi else xl + (yb - lo) * slope
            h = yb - ya
            s = E[e, 4]
            x_min = min(xa, xb)
            x_max = max(xa, xb)
            c_lo = int(math.floor(x_min))
            c_hi = max(c_lo, int(math.ceil(x_max)) - 1)  # last cell the segment crosses
            # cells whose interior the segment passes through: a segment along a pixel
            # side (or through a corner) touches neither neighbour there; ends within
            # _SNAP of a pixel side count as on it (interpolation noise)
            t_lo = 0
            t_hi = -1
            if mode == ALL_TOUCHED:  # the part of the segment clear of the strip's sides
                ya2 = max(ya, y0 + _SNAP)
                yb2 = min(yb, y1 - _SNAP)
                if yb2 > ya2:
                    xa2 = xl + (ya2 - lo) * slope if ya2 != ya else xa
                    xb2 = xl + (yb2 - lo) * slope if yb2 != yb else xb
                    t_lo = int(math.floor(min(xa2, xb2) + _SNAP))
                    t_hi = int(math.ceil(max(xa2, xb2) - _SNAP)) - 1
            if c_hi < col0:
                acc += s * h  # wholly left of the chunk: every chunk cell is right of it
                continue
            if c_lo >= col1:
                continue
            c_start = max(c_lo, col0)
            prev = 0.0
            if c_start > c_lo:  # the part left of the chunk, summed (first differences telescope)
                prev = _g(float(c_start), xa, xb, h) - _g(c_start - 1.0, xa, xb, h)
                acc += s * prev
            c_stop = min(c_hi, col1 - 1)
            if m + c_stop - c_start + 2 > ec.size:
                ec, ed, et = _grow_entries(ec, ed, et, m + c_stop - c_start + 2)
            for c in range(c_start, c_stop + 1):
                a = _g(c + 1.0, xa, xb, h) - _g(float(c), xa, xb, h)
                ec[m] = c
                ed[m] = s * (a - prev)
                et[m] = t_lo <= c <= t_hi
                m += 1
                prev = a
            if c_hi + 1 < col1:
                ec[m] = c_hi + 1
                ed[m] = s * (h - prev)
                et[m] = False
                m += 1
        na = j
        rr = r - row0
        if n + 2 * m + 2 > si.shape[0]:
            si, sw = _reserve(si, sw, n, 2 * m + 2)
        if m == 0:
            w = _gap_weight(acc, mode)
            if w > 0.0:
                n = _emit(si, sw, n, k, rr, np.int64(0), col1 - col0, w)
            continue
        idx = _order(ec, m, order_buf)
        prev_c = col0 - 1
        i = 0
        while i < m:
            c = ec[idx[i]]
            if c > prev_c + 1:  # cells between boundary cells
                w = _gap_weight(acc, mode)
                if w > 0.0:
                    n = _emit(si, sw, n, k, rr, prev_c + 1 - col0, c - col0, w)
            touched = False
            while i < m and ec[idx[i]] == c:
                acc += ed[idx[i]]
                touched = touched or et[idx[i]]
                i += 1
            cov = min(abs(acc), 1.0)
            if mode == COVERAGE:
                if cov > MIN_COVERAGE:
                    n = _emit(si, sw, n, k, rr, c - col0, c - col0 + 1,
                                      1.0 if cov >= 1.0 - 1e-15 else cov)
            elif touched or cov > 1e-9:
                n = _emit(si, sw, n, k, rr, c - col0, c - col0 + 1, 1.0)
            prev_c = c
        if prev_c + 1 < col1:
            w = _gap_weight(acc, mode)
            if w > 0.0:
                n = _emit(si, sw, n, k, rr, prev_c + 1 - col0, col1 - col0, w)
    return si, sw, n, ec, ed, et


# --------------------------------------------------------------------------- driver
@jit
def rasterize_chunk(xy, ring_off, ring_sign, ring_rev, poly_ring_off, polys, row0, row1, col0,
                    col1, mode):
    """Spans of polygons ``polys`` (global indices) on the chunk ``[row0, row1) × [col0, col1)``.

    Returns ``(si, sw)``: int64 ``(n, 4)`` rows ``(k, row, c0, c1)`` with ``k`` the
    position in ``polys`` and chunk-local row/columns, and float64 weights ``(n,)``.
    """
    maxv = 1
    for k in range(polys.size):
        p = polys[k]
        maxv = max(maxv, ring_off[poly_ring_off[p + 1]] - ring_off[poly_ring_off[p]])
    E = np.empty((maxv, 6), np.float64)
    active = np.empty(maxv, np.int64)
    xs = np.empty(maxv, np.int64)
    hs = np.empty(2 * maxv, np.int64)
    he = np.empty(2 * maxv, np.int64)
    ec = np.empty(4 * maxv, np.int64)
    ed = np.empty(4 * maxv, np.float64)
    et = np.empty(4 * maxv, np.bool_)
    order_buf = np.empty(48, np.int64)
    si = np.empty((1024, 4), np.int64)
    sw = np.empty(1024, np.float64)
    n = np.int64(0)  # see m above
    for k in range(polys.size):
        ne = _collect_edges(xy, ring_off, ring_sign, ring_rev, poly_ring_off, polys[k],
                            float(row0), float(row1), E)
        if ne == 0:
            continue
        if mode == CENTRE:
            si, sw, n = _centre(E, ne, k, row0, row1, col0, col1, si, sw, n, active, xs, hs, he)
        else:
            si, sw, n, ec, ed, et = _boundary(E, ne, k, row0, row1, col0, col1, mode, si, sw,
                                              n, active, ec, ed, et, order_buf)
    return si[:n], sw[:n]

"""CPU kernels (numba) of the focal ops: one padded block in, one block out, single-threaded.

Every public function takes ``(block, valid, **params)`` where ``block`` is 4-D
``(lead, t + 2·ht, y + 2·hy, x + 2·hx)`` (see :func:`stengine.ops._lift.lift_focal`) and
``valid = (t0, t1, y0, y1, x0, x1)`` bounds the cells inside the raster; cells outside it,
NaN and ``nodata`` are *missing*. Each has a twin of the same name and signature in
``stengine.ops._cuda.focal``.

Algorithms (costs per output cell; k = window size along an axis):

- rectangle sum/count/mean/var/std: running sums down the rows (O(1)), then direct sums
  (k <= 5) or prefix-sum differences (O(1)) along the row;
- other footprints: horizontal runs, each a prefix-sum difference (O(rows of window));
- rectangle min/max: van Herk/Gil-Werman per axis for k > 3 (3 comparisons per cell for
  any k), direct for k <= 3; other footprints: direct;
- median/majority: gather and sort; weighted (focal_apply): direct, offsets in C order.

Integer sums are exact (int32/int64 where they cannot overflow); float sums use float64
running sums restarted every ``_RESTART`` rows, so drift stays at rounding level.
"""

from __future__ import annotations

import numba
import numpy as np

# error_model="numpy": float division by zero gives inf/NaN instead of a checked raise,
# which also lets loops with divisions vectorise
jit = numba.njit(nogil=True, cache=True, error_model="numpy")

SUM, COUNT, MEAN, VAR, STD = 0, 1, 2, 3, 4
_RESTART = 64  # rows between recomputations of float running sums
_DIRECT_SUM_WIDTH = 5  # widths up to this sum directly (vectorised) rather than by prefix


@jit
def _missing(v, nodata, has_nodata):
    return (v != v) or (has_nodata and v == nodata)


@jit
def any_missing(a, valid, nodata, has_nodata):
    """True when a cell inside ``valid`` is NaN or nodata."""
    t0, t1, y0, y1, x0, x1 = valid
    for l in range(a.shape[0]):
        for t in range(t0, t1):
            for r in range(y0, y1):
                row = a[l, t, r, x0:x1]
                found = False
                for c in range(x1 - x0):  # no early exit inside the row: it vectorises
                    found |= _missing(row[c], nodata, has_nodata)
                if found:
                    return True
    return False


def _has_missing(block, valid, nodata, has_nodata):
    kinds = block.dtype.kind == "f" or has_nodata  # integers without nodata: never
    return kinds and bool(any_missing(block, valid, nodata, has_nodata))


def _out(block, kshape, dtype):
    L, Tp, Yp, Xp = block.shape
    kt, ky, kx = kshape
    return np.empty((L, Tp - kt + 1, Yp - ky + 1, Xp - kx + 1), dtype)


# --------------------------------------------------------------------------- moments
@jit
def _add_row(a, l, t, kt, r, sign, valid, nodata, has_nodata, masked, want_sq, shift,
             vs, vq, vc):
    """Add (sign=1) or subtract (sign=-1) padded row ``r`` of slices t..t+kt-1 to the
    column sums."""
    t0, t1, y0, y1, x0, x1 = valid
    if r < y0 or r >= y1:
        return
    for dt in range(kt):
        tt = t + dt
        if tt < t0 or tt >= t1:
            continue
        # slice first, loop from 0: numba vectorises only loops it knows start at >= 0
        row, s, q, c = a[l, tt, r, x0:x1], vs[x0:x1], vq[x0:x1], vc[x0:x1]
        for j in range(x1 - x0):
            v = row[j]
            ok = not masked or not _missing(v, nodata, has_nodata)
            d = (v - shift) if ok else (shift - shift)
            s[j] += sign * d
            if masked:
                c[j] += sign * ok
            if want_sq:
                q[j] += sign * (d * d)


@jit
def _swap_rows(a, l, t, r_add, r_sub, valid, want_sq, shift, vs, vq):
    """Unmasked, one time slice: add row ``r_add`` and subtract row ``r_sub`` in one pass."""
    t0, t1, y0, y1, x0, x1 = valid
    add = y0 <= r_add < y1
    sub = y0 <= r_sub < y1
    if add and sub:
        ra, rs = a[l, t, r_add, x0:x1], a[l, t, r_sub, x0:x1]
        s, q = vs[x0:x1], vq[x0:x1]
        if want_sq:
            for j in range(x1 - x0):
                p = ra[j] - shift
                m = rs[j] - shift
                s[j] += p - m
                q[j] += p * p - m * m
        else:
            for j in range(x1 - x0):  # two steps: float32 inputs must not subtract in float32
                s[j] += ra[j]
                s[j] -= rs[j]
    elif add or sub:
        _add_row(a, l, t, 1, r_add if add else r_sub, 1 if add else -1, valid, a[0, 0, 0, 0],
                 False, False, want_sq, shift, vs, vq, vs)


@jit
def _box_row(v, k, n, h, p):
    """``h[j] = sum(v[j:j+k])`` for j < n: direct for small k, else prefix differences."""
    if k == 1:
        for j in range(n):
            h[j] = v[j]
    elif k == 3:
        v0, v1, v2 = v[0:n], v[1:n + 1], v[2:n + 2]
        for j in range(n):
            h[j] = v0[j] + v1[j] + v2[j]
    elif k <= _DIRECT_SUM_WIDTH:
        for j in range(n):
            h[j] = v[j]
        for d in range(1, k):
            vd = v[d:d + n]
            for j in range(n):
                h[j] += vd[j]
    else:
        acc = v[0] - v[0]
        p[0] = acc
        for j in range(n + k - 1):  # the running total stays in a register
            acc += v[j]
            p[j + 1] = acc
        pk = p[k:k + n]
        for j in range(n):
            h[j] = pk[j] - p[j]


@jit
def _finish(hs, hq, cnt, area, stat, skipna, shift, out):
    """Output row from window sums ``hs``, squares ``hq`` and valid counts ``cnt``;
    NaN where the window has no valid cell (or a missing one, with ``skipna=False``).

    One loop per statistic, so that each vectorises."""
    need = 1 if skipna else area  # fewest valid cells for a result
    if stat == COUNT:
        for j in range(out.size):
            out[j] = cnt[j]
    elif stat == SUM:
        for j in range(out.size):
            out[j] = hs[j] + shift * cnt[j] if cnt[j] >= need else np.nan
    elif stat == MEAN:
        for j in range(out.size):
            out[j] = hs[j] / cnt[j] + shift if cnt[j] >= need else np.nan
    else:
        for j in range(out.size):
            n = cnt[j]
            s = np.float64(hs[j])  # float: Σv·Σv may exceed int64 for huge windows
            var = (n * hq[j] - s * s) / (n * n)
            var = 0.0 if var < 0.0 else var
            var = var if stat == VAR else np.sqrt(var)
            out[j] = var if n >= need else np.nan


@jit
def _rect_moments(a, kt, ky, kx, valid, nodata, has_nodata, masked, stat, skipna, shift,
                  restart, vs, vq, vc, out):
    L, Tp, Yp, Xp = a.shape
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    t0, t1, y0, y1, x0, x1 = valid
    area = kt * ky * kx
    want_sq = stat >= VAR
    hs = np.empty(X, vs.dtype)
    hq = np.empty(X, vq.dtype)
    hc = np.empty(X, vc.dtype)
    ps = np.empty(Xp + 1, vs.dtype)
    pq = np.empty(Xp + 1, vq.dtype)
    pc = np.empty(Xp + 1, vc.dtype)
    cx = np.empty(X, np.int64)  # valid columns under each window (unmasked counts)
    for j in range(X):
        cx[j] = max(0, min(j + kx, x1) - max(j, x0))
    for l in range(L):
        for t in range(T):
            nt = max(0, min(t + kt, t1) - max(t, t0))
            for i in range(Y):
                if i % restart == 0:
                    vs[:] = 0
                    vq[:] = 0
                    vc[:] = 0
                    for dy in range(ky):
                        _add_row(a, l, t, kt, i + dy, 1, valid, nodata, has_nodata, masked,
                                 want_sq, shift, vs, vq, vc)
                elif kt == 1 and not masked:
                    _swap_rows(a, l, t, i + ky - 1, i - 1, valid, want_sq, shift, vs, vq)
                else:
                    _add_row(a, l, t, kt, i + ky - 1, 1, valid, nodata, has_nodata, masked,
                             want_sq, shift, vs, vq, vc)
                    _add_row(a, l, t, kt, i - 1, -1, valid, nodata, has_nodata, masked,
                             want_sq, shift, vs, vq, vc)
                if stat != COUNT:
                    _box_row(vs, kx, X, hs, ps)
                if want_sq:
                    _box_row(vq, kx, X, hq, pq)
                if masked:
                    _box_row(vc, kx, X, hc, pc)
                if not masked:  # no NaN/nodata: counts only from the raster edges
                    ny = max(0, min(i + ky, y1) - max(i, y0))
                    for j in range(X):
                        hc[j] = nt * ny * cx[j]
                _finish(hs, hq, hc, area, stat, skipna, shift, out[l, t, i])


@jit
def _prefix_row(a, l, tt, r, valid, nodata, has_nodata, shift, want_sq, ps, pq, pc):
    """Prefix sums (length Xp + 1) of padded row ``r`` of slice ``tt``; zeros if outside."""
    t0, t1, y0, y1, x0, x1 = valid
    s = shift - shift  # running totals stay in registers
    q = s * s
    c = 0
    ps[0], pq[0], pc[0] = s, q, c
    inside = t0 <= tt < t1 and y0 <= r < y1
    for j in range(a.shape[3]):
        v = a[l, tt, r, j]
        ok = inside and x0 <= j < x1 and not _missing(v, nodata, has_nodata)
        d = (v - shift) if ok else shift - shift
        s += d
        c += ok
        ps[j + 1] = s
        pc[j + 1] = c
        if want_sq:
            q += d * d
            pq[j + 1] = q


@jit
def _runs_moments(a, kt, ky, runs, area, valid, nodata, has_nodata, stat, skipna, shift,
                  ps, pq, pc, out):
    """Moments over a footprint given as runs ``(dt, dy, xa, xb)``; ``ps``/``pq``/``pc``
    are rings of prefix rows, shape ``(kt, ky, Xp + 1)``."""
    L = a.shape[0]
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    want_sq = stat >= VAR
    hs = np.empty(X, ps.dtype)
    hq = np.empty(X, pq.dtype)
    hc = np.empty(X, pc.dtype)
    for l in range(L):
        for t in range(T):
            for i in range(Y):
                first = i + ky - 1 if i > 0 else i
                for r in range(first, i + ky):
                    for dt in range(kt):
                        _prefix_row(a, l, t + dt, r, valid, nodata, has_nodata, shift,
                                    want_sq, ps[dt, r % ky], pq[dt, r % ky], pc[dt, r % ky])
                hs[:] = 0
                hq[:] = 0
                hc[:] = 0
                for k in range(runs.shape[0]):
                    dt, dy, xa, xb = runs[k, 0], runs[k, 1], runs[k, 2], runs[k, 3]
                    slot = (i + dy) % ky
                    sb, sa = ps[dt, slot, xb:xb + X], ps[dt, slot, xa:xa + X]
                    cb, ca = pc[dt, slot, xb:xb + X], pc[dt, slot, xa:xa + X]
                    for j in range(X):
                        hs[j] += sb[j] - sa[j]
                        hc[j] += cb[j] - ca[j]
                    if want_sq:
                        qb, qa = pq[dt, slot, xb:xb + X], pq[dt, slot, xa:xa + X]
                        for j in range(X):
                            hq[j] += qb[j] - qa[j]
                _finish(hs, hq, hc, area, stat, skipna, shift, out[l, t, i])


@jit
def _first_valid(a, valid, nodata, has_nodata):
    """A valid value of the block (a shift that keeps float variance sums small), or 0."""
    t0, t1, y0, y1, x0, x1 = valid
    for l in range(a.shape[0]):
        for t in range(t0, t1):
            for r in range(y0, y1):
                for c in range(x0, x1):
                    v = a[l, t, r, c]
                    if not _missing(v, nodata, has_nodata):
                        return np.float64(v)
    return 0.0


def moments(block, valid, *, stat, rect, kshape, runs, offsets, area, nodata, has_nodata,
            skipna, out_dtype, acc):
    """Sum, count, mean, variance or standard deviation (``stat``) over the window.

    ``acc``: accumulator dtype, ``"i4"``/``"i8"`` for integer data whose sums fit (exact,
    no restarts), else ``"f8"``; counts are float64. Population variance (ddof = 0).
    """
    del offsets  # the GPU twin's footprint form
    kt, ky, kx = kshape
    L, Tp, Yp, Xp = block.shape
    out = _out(block, kshape, out_dtype)
    masked = _has_missing(block, valid, nodata, has_nodata)
    acc = np.dtype(acc)
    exact = acc.kind == "i"
    # floats: shift by a data value so that sum-of-squares cancellation stays small
    shift = acc.type(0) if exact or stat < VAR else acc.type(
        _first_valid(block, valid, nodata, has_nodata))
    if rect:
        vs = np.zeros(Xp, acc)
        vq = np.zeros(Xp, acc)
        vc = np.zeros(Xp, np.float64)
        _rect_moments(block, kt, ky, kx, valid, nodata, has_nodata, masked, stat, skipna,
                      shift, 1 << 30 if exact else _RESTART, vs, vq, vc, out)
    else:
        ps = np.zeros((kt, ky, Xp + 1), acc)
        pq = np.zeros((kt, ky, Xp + 1), acc)
        pc = np.zeros((kt, ky, Xp + 1), np.float64)
        _runs_moments(block, kt, ky, runs, area, valid, nodata, has_nodata, stat, skipna,
                      shift, ps, pq, pc, out)
    return out


# --------------------------------------------------------------------------- min / max
@jit
def _ext(a, b, is_max):
    if is_max:
        return a if a > b else b
    return a if a < b else b


@jit
def _zrow(a, l, t, kt, r, valid, nodata, has_nodata, is_max, ident, z):
    """Row ``r`` of slices t..t+kt-1 reduced over time, missing and outside cells as ``ident``."""
    t0, t1, y0, y1, x0, x1 = valid
    z[:] = ident
    if r < y0 or r >= y1:
        return
    for dt in range(kt):
        tt = t + dt
        if tt < t0 or tt >= t1:
            continue
        row, zz = a[l, tt, r, x0:x1], z[x0:x1]
        for j in range(x1 - x0):
            v = row[j]
            if not _missing(v, nodata, has_nodata):
                zz[j] = _ext(zz[j], v, is_max)


@jit
def _slide_row(v, k, n, is_max, h, p, s):
    """``h[j] = ext(v[j:j+k])`` for j < n: direct for k <= 3, else van Herk/Gil-Werman."""
    if k == 1:
        h[:n] = v[:n]
        return
    if k == 2 or k == 3:
        v1, v2 = v[1:n + 1], v[k - 1:n + k - 1]  # k == 2: v2 is v1 again
        for j in range(n):
            h[j] = _ext(_ext(v[j], v1[j], is_max), v2[j], is_max)
        return
    m = n + k - 1
    for b0 in range(0, m, k):  # running ext forwards (p) and backwards (s) in blocks of k
        b1 = min(b0 + k, m)
        acc = v[b0]  # in a register: no store-to-load round trip per cell
        for j in range(b0, b1):
            acc = _ext(acc, v[j], is_max)
            p[j] = acc
        acc = v[b1 - 1]
        for j in range(b1 - 1, b0 - 1, -1):
            acc = _ext(acc, v[j], is_max)
            s[j] = acc
    pk = p[k - 1:k - 1 + n]
    for j in range(n):
        h[j] = _ext(s[j], pk[j], is_max)


@jit
def _rect_extrema(a, kt, ky, kx, valid, nodata, has_nodata, is_max, ident, out):
    L = a.shape[0]
    Xp = a.shape[3]
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    ring = np.empty((ky, Xp), a.dtype)  # time-reduced padded rows
    fwd = np.empty((ky, Xp), a.dtype)   # vHGW along y: forward block prefixes
    bwd = np.empty((ky, Xp), a.dtype)   # and backward block suffixes
    v = np.empty(Xp, a.dtype)
    hp = np.empty(Xp, a.dtype)
    hs = np.empty(Xp, a.dtype)
    h = np.empty(X, a.dtype)
    Yp = Y + ky - 1
    for l in range(L):
        for t in range(T):
            if ky <= 3:
                for i in range(Y):
                    first = i + ky - 1 if i > 0 else i
                    for r in range(first, i + ky):
                        _zrow(a, l, t, kt, r, valid, nodata, has_nodata, is_max, ident,
                              ring[r % ky])
                    v[:] = ring[i % ky]
                    for d in range(1, ky):
                        rr = ring[(i + d) % ky]
                        for j in range(Xp):
                            v[j] = _ext(v[j], rr[j], is_max)
                    _slide_row(v, kx, X, is_max, h, hp, hs)
                    out[l, t, i, :] = h
                continue
            # van Herk/Gil-Werman down the rows, one block of ky rows at a time:
            # rows [g, g+ky) give suffixes, rows [g+ky, g+2ky) prefixes; output row i
            # (window [i, i+ky)) is ext(suffix(i), prefix(i+ky-1)).
            for g in range(0, Y, ky):
                for r in range(g + ky - 1, g - 1, -1):
                    _zrow(a, l, t, kt, r, valid, nodata, has_nodata, is_max, ident, v)
                    if r == g + ky - 1:
                        bwd[r - g, :] = v
                    else:
                        for j in range(Xp):
                            bwd[r - g, j] = _ext(bwd[r - g + 1, j], v[j], is_max)
                for r in range(g + ky, min(g + 2 * ky - 1, Yp)):
                    _zrow(a, l, t, kt, r, valid, nodata, has_nodata, is_max, ident, v)
                    if r == g + ky:
                        fwd[0, :] = v
                    else:
                        for j in range(Xp):
                            fwd[r - g - ky, j] = _ext(fwd[r - g - ky - 1, j], v[j], is_max)
                for i in range(g, min(g + ky, Y)):
                    if i == g:
                        v[:] = bwd[0]
                    else:
                        for j in range(Xp):
                            v[j] = _ext(bwd[i - g, j], fwd[i - g - 1, j], is_max)
                    _slide_row(v, kx, X, is_max, h, hp, hs)
                    out[l, t, i, :] = h


@jit
def _offset_extrema(a, kt, ky, offsets, valid, nodata, has_nodata, is_max, ident, out):
    L, Xp = a.shape[0], a.shape[3]
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    ring = np.empty((kt, ky, Xp), a.dtype)
    h = np.empty(X, a.dtype)
    for l in range(L):
        for t in range(T):
            for i in range(Y):
                first = i + ky - 1 if i > 0 else i
                for r in range(first, i + ky):
                    for dt in range(kt):
                        _zrow(a, l, t + dt, 1, r, valid, nodata, has_nodata, is_max, ident,
                              ring[dt, r % ky])
                h[:] = ident
                for k in range(offsets.shape[0]):
                    dx = offsets[k, 2]
                    z = ring[offsets[k, 0], (i + offsets[k, 1]) % ky, dx:dx + X]
                    for j in range(X):
                        h[j] = _ext(h[j], z[j], is_max)
                out[l, t, i, :] = h


def extrema(block, valid, *, is_max, rect, kshape, offsets, area, nodata, has_nodata, skipna,
            out_nodata, runs):
    """Minimum or maximum over the window; ``out_nodata`` where no valid cell (or, with
    ``skipna=False``, any missing cell) is in the window."""
    kt, ky, kx = kshape
    L, Tp, Yp, Xp = block.shape
    out = _out(block, kshape, block.dtype)
    if block.dtype.kind == "f":
        ident = block.dtype.type(-np.inf if is_max else np.inf)
    else:
        info = np.iinfo(block.dtype)
        ident = block.dtype.type(info.min if is_max else info.max)
    if rect:
        _rect_extrema(block, kt, ky, kx, valid, nodata, has_nodata, is_max, ident, out)
    else:
        _offset_extrema(block, kt, ky, offsets, valid, nodata, has_nodata, is_max, ident, out)
    full = valid == (0, Tp, 0, Yp, 0, Xp)
    masked = _has_missing(block, valid, nodata, has_nodata)
    if masked or (not skipna and not full):
        # where the identity came out, or cells were missing, the count decides
        cnt = moments(block, valid, stat=COUNT, rect=rect, kshape=kshape, runs=runs,
                      offsets=offsets, area=area, nodata=nodata, has_nodata=has_nodata,
                      skipna=True, out_dtype=np.int32, acc="i8")
        bad = (cnt == 0) if skipna else (cnt < area)
        out[bad] = out_nodata
    return out


# --------------------------------------------------------------------------- median / mode
@jit
def _sort_small(b, n):
    if n > 24:
        b[:n].sort()
        return
    for i in range(1, n):
        v = b[i]
        j = i - 1
        while j >= 0 and b[j] > v:
            b[j + 1] = b[j]
            j -= 1
        b[j + 1] = v


@jit
def _rank(a, offsets, valid, nodata, has_nodata, skipna, majority, out_nodata, out):
    L = a.shape[0]
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    t0, t1, y0, y1, x0, x1 = valid
    size = offsets.shape[0]
    buf = np.empty(size, a.dtype)
    for l in range(L):
        for t in range(T):
            for i in range(Y):
                for j in range(X):
                    n = 0
                    for k in range(size):
                        tt = t + offsets[k, 0]
                        r = i + offsets[k, 1]
                        c = j + offsets[k, 2]
                        if tt < t0 or tt >= t1 or r < y0 or r >= y1 or c < x0 or c >= x1:
                            continue
                        v = a[l, tt, r, c]
                        if not _missing(v, nodata, has_nodata):
                            buf[n] = v
                            n += 1
                    if n == 0 or (not skipna and n < size):
                        out[l, t, i, j] = out_nodata
                        continue
                    _sort_small(buf, n)
                    if majority:  # longest run in sorted order; ties go to the smallest
                        best, bestn, run = buf[0], 1, 1
                        for k in range(1, n):
                            run = run + 1 if buf[k] == buf[k - 1] else 1
                            if run > bestn:
                                best, bestn = buf[k], run
                        out[l, t, i, j] = best
                    else:
                        lo = np.float64(buf[(n - 1) // 2])
                        hi = np.float64(buf[n // 2])
                        out[l, t, i, j] = (lo + hi) / 2.0


def rank(block, valid, *, majority, kshape, offsets, nodata, has_nodata, skipna, out_dtype,
         out_nodata):
    """Median (float, the mean of the two middle values for even counts) or majority
    (the most frequent value; ties go to the smallest) of the valid cells."""
    out = _out(block, kshape, out_dtype)
    _rank(block, offsets, valid, nodata, has_nodata, skipna, majority,
          out.dtype.type(out_nodata), out)
    return out


# --------------------------------------------------------------------------- weighted
@jit
def _weighted(a, offsets, weights, valid, nodata, has_nodata, skipna, normalize, out):
    L = a.shape[0]
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    t0, t1, y0, y1, x0, x1 = valid
    size = offsets.shape[0]
    acc = np.empty(X, np.float64)
    wsum = np.empty(X, np.float64)
    cnt = np.empty(X, np.int64)
    nan = out.dtype.type(np.nan)
    for l in range(L):
        for t in range(T):
            for i in range(Y):
                acc[:] = 0
                wsum[:] = 0
                cnt[:] = 0
                for k in range(size):
                    tt = t + offsets[k, 0]
                    r = i + offsets[k, 1]
                    if tt < t0 or tt >= t1 or r < y0 or r >= y1:
                        continue
                    dx = offsets[k, 2]
                    w = weights[k]
                    j0, j1 = max(0, x0 - dx), min(X, x1 - dx)  # columns inside the raster
                    row = a[l, tt, r, j0 + dx:j1 + dx]
                    ac, ws, cn = acc[j0:j1], wsum[j0:j1], cnt[j0:j1]
                    for j in range(j1 - j0):
                        v = row[j]
                        if not _missing(v, nodata, has_nodata):
                            ac[j] += w * v
                            ws[j] += w
                            cn[j] += 1
                for j in range(X):
                    n = cnt[j]
                    if n == 0 or (not skipna and n < size) or (normalize and wsum[j] == 0):
                        out[l, t, i, j] = nan
                    elif normalize:
                        out[l, t, i, j] = acc[j] / wsum[j]
                    else:
                        out[l, t, i, j] = acc[j]


def weighted(block, valid, *, kshape, offsets, weights, nodata, has_nodata, skipna, normalize,
             out_dtype):
    """Sum of weight × value over the valid cells of the window (cross-correlation);
    with ``normalize``, divided by the sum of the weights of the valid cells."""
    out = _out(block, kshape, out_dtype)
    _weighted(block, offsets, weights, valid, nodata, has_nodata, skipna, normalize, out)
    return out

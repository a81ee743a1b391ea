"""CPU kernels (numba) of the zonal ops: one chunk in, partial aggregates per zone out.

A chunk's pixels reach a zone through *spans* (row runs with a weight, see
:mod:`stengine.ops._zonal_rasterize`); zone rasters are run-length encoded into spans
first, so both kinds of zones share one aggregation loop. Partials are plain dicts of
host arrays, indexed by chunk-local zone ``k`` and flattened lead index ``t``:

``w`` weight sum (pixel count when unweighted), ``s`` weighted sum, ``m2`` sum of
weighted squared deviations from the chunk's own zone mean (two passes, so no
cancellation), ``mn``/``mx`` min/max over pixels with positive weight, and ``hist``
(per-value weight sums of integer data) as sparse ``(k, t, value, weight)`` arrays.

Every function here has a twin of the same name and signature in
``stengine.ops._cuda.zonal``.
"""

from __future__ import annotations

import numba
import numpy as np

from .._zonal_partials import hist_range

jit = numba.njit(nogil=True, cache=True)


@jit
def _moments_int(x, si, sw, nodata, has_nodata, need_minmax, vmax, vmin, w, s, mn, mx):
    # One branch-free inner loop per case, so LLVM vectorizes them; integer sums in
    # int64 are exact.
    L = x.shape[0]
    for i in range(si.shape[0]):
        k = si[i, 0]
        r = si[i, 1]
        a = si[i, 2]
        b = si[i, 3]
        wt = sw[i]
        for t in range(L):
            row = x[t, r]
            acc = np.int64(0)
            cnt = 0
            lo = vmax
            hi = vmin
            if has_nodata:
                for c in range(a, b):
                    v = row[c]
                    ok = v != nodata
                    cnt += ok
                    acc += np.int64(v) * ok
                    if need_minmax:
                        lo = min(lo, v if ok else vmax)
                        hi = max(hi, v if ok else vmin)
            elif need_minmax:
                for c in range(a, b):
                    v = row[c]
                    acc += np.int64(v)
                    lo = min(lo, v)
                    hi = max(hi, v)
                cnt = b - a
            else:
                for c in range(a, b):
                    acc += np.int64(row[c])
                cnt = b - a
            if cnt:
                w[k, t] += cnt * wt
                s[k, t] += acc * wt
                if need_minmax:
                    mn[k, t] = min(mn[k, t], np.float64(lo))
                    mx[k, t] = max(mx[k, t], np.float64(hi))


@jit
def _moments_float(x, si, sw, nodata, has_nodata, need_minmax, w, s, mn, mx):
    L = x.shape[0]
    for i in range(si.shape[0]):
        k = si[i, 0]
        r = si[i, 1]
        a = si[i, 2]
        b = si[i, 3]
        wt = sw[i]
        for t in range(L):
            row = x[t, r]
            acc = 0.0
            cnt = 0
            lo = np.inf
            hi = -np.inf
            for c in range(a, b):
                v = np.float64(row[c])
                ok = v == v  # NaN is missing
                if has_nodata:
                    ok = ok and row[c] != nodata
                cnt += ok
                acc += v if ok else 0.0
                if need_minmax:
                    lo = min(lo, v) if ok else lo
                    hi = max(hi, v) if ok else hi
            if cnt:
                w[k, t] += cnt * wt
                s[k, t] += acc * wt
                if need_minmax:
                    mn[k, t] = min(mn[k, t], lo)
                    mx[k, t] = max(mx[k, t], hi)


@jit
def _m2_pass(x, si, sw, nodata, has_nodata, w, s, m2):
    # second pass: squared deviations from the chunk's zone mean (no cancellation)
    L = x.shape[0]
    for i in range(si.shape[0]):
        k = si[i, 0]
        r = si[i, 1]
        wt = sw[i]
        for t in range(L):
            if w[k, t] <= 0.0:
                continue
            mean = s[k, t] / w[k, t]
            row = x[t, r]
            acc = 0.0
            for c in range(si[i, 2], si[i, 3]):
                v = row[c]
                if v != v or (has_nodata and v == nodata):
                    continue
                d = np.float64(v) - mean
                acc += d * d
            m2[k, t] += acc * wt


@jit
def _hist_pass(x, si, sw, nodata, has_nodata, hist_lo, hist):
    L = x.shape[0]
    for i in range(si.shape[0]):
        k = si[i, 0]
        r = si[i, 1]
        wt = sw[i]
        for t in range(L):
            row = x[t, r]
            for c in range(si[i, 2], si[i, 3]):
                v = row[c]
                if not (has_nodata and v == nodata):
                    hist[k, t, np.int64(v) - hist_lo] += wt


def span_partials(block, si, sw, nk, nodata, has_nodata, need_m2, need_minmax, need_hist):
    """Partial aggregates of ``block`` (lead, y, x) over spans ``(si, sw)`` of ``nk`` zones.

    ``nodata`` (with ``has_nodata``) and NaN are skipped. Returns a dict with ``w``,
    ``s`` and, as asked, ``m2``, ``mn``, ``mx`` (``(nk, lead)`` float64) and ``hist``
    (sparse ``(k, t, value, weight)``, integer data only).
    """
    x = np.ascontiguousarray(block)
    if x.dtype.kind == "b":
        x = x.view(np.uint8)
    L = x.shape[0]
    nd = x.dtype.type(nodata) if has_nodata else x.dtype.type(0)
    w = np.zeros((nk, L))
    s = np.zeros((nk, L))
    mn = np.full((nk, L) if need_minmax else (0, 0), np.inf)
    mx = np.full((nk, L) if need_minmax else (0, 0), -np.inf)
    if x.dtype.kind == "f":
        _moments_float(x, si, sw, nd, has_nodata, need_minmax, w, s, mn, mx)
    else:
        info = np.iinfo(x.dtype)
        _moments_int(x, si, sw, nd, has_nodata, need_minmax, x.dtype.type(info.max),
                     x.dtype.type(info.min), w, s, mn, mx)
    out = {"w": w, "s": s}
    if need_minmax:
        out["mn"], out["mx"] = mn, mx
    if need_m2:
        m2 = np.zeros((nk, L))
        _m2_pass(x, si, sw, nd, has_nodata, w, s, m2)
        out["m2"] = m2
    if need_hist:
        lo, n = hist_range(x, nodata, has_nodata, nk)
        hist = np.zeros((nk, L, n))
        _hist_pass(x, si, sw, nd, has_nodata, lo, hist)
        k, t, v = np.nonzero(hist)
        out["hist"] = (k, t, v + lo, hist[k, t, v])
    return out


@jit
def _locate(z, ids, lut, lut_lo, znd, has_znd, zi, present):
    H, W = z.shape
    n = ids.size
    use_lut = lut.size > 0
    for r in range(H):
        for c in range(W):
            v = z[r, c]
            j = -1
            if not (has_znd and v == znd):
                if use_lut:
                    o = np.int64(v) - lut_lo
                    if 0 <= o < lut.size:
                        j = lut[o]
                else:
                    q = np.searchsorted(ids, np.int64(v))
                    if q < n and ids[q] == np.int64(v):
                        j = q
            zi[r, c] = j
            if j >= 0:
                present[j] = True


@jit
def _runs(zi, local):
    H, W = zi.shape
    cap = 1024
    si = np.empty((cap, 4), np.int64)
    n = 0
    for r in range(H):
        c = 0
        while c < W:
            j = zi[r, c]
            e = c + 1
            while e < W and zi[r, e] == j:
                e += 1
            if j >= 0:
                if n == cap:
                    cap *= 2
                    new = np.empty((cap, 4), np.int64)
                    new[:n] = si[:n]
                    si = new
                si[n, 0] = local[j]
                si[n, 1] = r
                si[n, 2] = c
                si[n, 3] = e
                n += 1
            c = e
    return si[:n]


def zone_partials(block, zblock, ids, lut, lut_lo, znd, has_znd, nodata, has_nodata,
                  need_m2, need_minmax, need_hist):
    """Partial aggregates of ``block`` (lead, y, x) per zone of the zone raster ``zblock`` (y, x).

    ``ids`` are the sorted zone ids (int64); ``lut`` (int64 position per id − ``lut_lo``,
    −1 = not a zone; empty: binary search instead). Pixels whose zone is ``znd`` or not
    in ``ids`` are skipped. Returns :func:`span_partials`' dict plus ``idx``, the
    positions in ``ids`` of the zones present in the chunk.
    """
    z = np.ascontiguousarray(zblock)
    zi = np.empty(z.shape, np.int64)
    present = np.zeros(ids.size, np.bool_)
    _locate(z, ids, lut, lut_lo, z.dtype.type(znd) if has_znd else z.dtype.type(0), has_znd,
            zi, present)
    idx = np.flatnonzero(present)
    local = np.full(ids.size, -1, np.int64)
    local[idx] = np.arange(idx.size)
    si = _runs(zi, local)
    out = span_partials(block, si, np.ones(si.shape[0]), idx.size, nodata, has_nodata,
                        need_m2, need_minmax, need_hist)
    out["idx"] = idx
    return out

"""GPU twins of :mod:`stengine.ops._numba.zonal` (numba.cuda).

Spans (host arrays, from the scanline rasterizer) are copied to the device; one thread
per (span, step) walks its pixels and adds its sums to the zone with atomics. Zone
rasters run one thread per pixel. Partials come back to the host: they are small.
Sums use atomics, so their order (and the last bits of float sums) may differ from
the CPU kernels'; counts, min, max and histograms of integer data are exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..._backends import array_module, is_cupy, launch
from .._zonal_partials import hist_range


def _host(a):
    return a.get() if is_cupy(a) else np.asarray(a).view(np.ndarray)


@cuda.jit
def _span_pass1(x, si, sw, nodata, has_nodata, need_minmax, need_hist, hist_lo, w, s, mn, mx,
                hist):
    g = cuda.grid(1)
    L = x.shape[0]
    if g >= si.shape[0] * L:
        return
    i = g // L
    t = g - i * L
    k = si[i, 0]
    r = si[i, 1]
    wt = sw[i]
    cnt = 0
    acc = 0.0
    lo = math.inf
    hi = -math.inf
    for c in range(si[i, 2], si[i, 3]):
        v = x[t, r, c]
        if v != v or (has_nodata and v == nodata):
            continue
        fv = np.float64(v)
        cnt += 1
        acc += fv
        if need_minmax:
            lo = min(lo, fv)
            hi = max(hi, fv)
        if need_hist:
            cuda.atomic.add(hist, (k, t, np.int64(v) - hist_lo), wt)
    if cnt > 0:
        cuda.atomic.add(w, (k, t), cnt * wt)
        cuda.atomic.add(s, (k, t), acc * wt)
        if need_minmax:
            cuda.atomic.min(mn, (k, t), lo)
            cuda.atomic.max(mx, (k, t), hi)


@cuda.jit
def _span_pass2(x, si, sw, nodata, has_nodata, w, s, m2):
    g = cuda.grid(1)
    L = x.shape[0]
    if g >= si.shape[0] * L:
        return
    i = g // L
    t = g - i * L
    k = si[i, 0]
    r = si[i, 1]
    if w[k, t] <= 0.0:
        return
    mean = s[k, t] / w[k, t]
    acc = 0.0
    for c in range(si[i, 2], si[i, 3]):
        v = x[t, r, c]
        if v != v or (has_nodata and v == nodata):
            continue
        d = np.float64(v) - mean
        acc += d * d
    cuda.atomic.add(m2, (k, t), acc * sw[i])


def _finish(xp, w, s, mn, mx, m2, hist, lo, need_m2, need_minmax, need_hist):
    out = {"w": _host(w), "s": _host(s)}
    if need_minmax:
        out["mn"], out["mx"] = _host(mn), _host(mx)
    if need_m2:
        out["m2"] = _host(m2)
    if need_hist:
        h = _host(hist)
        k, t, v = np.nonzero(h)
        out["hist"] = (k, t, v + lo, h[k, t, v])
    return out


def _buffers(xp, nk, L, n, need_minmax, need_hist):
    w = xp.zeros((nk, L))
    s = xp.zeros((nk, L))
    mn = xp.full((nk, L) if need_minmax else (1, 1), np.inf)
    mx = xp.full((nk, L) if need_minmax else (1, 1), -np.inf)
    hist = xp.zeros((nk, L, n) if need_hist else (1, 1, 1))
    return w, s, mn, mx, hist


def span_partials(block, si, sw, nk, nodata, has_nodata, need_m2, need_minmax, need_hist):
    xp = array_module(block)
    x = xp.ascontiguousarray(block)
    L = x.shape[0]
    nd = x.dtype.type(nodata) if has_nodata else x.dtype.type(0)
    lo = n = 0
    if need_hist:
        lo, n = hist_range(x, nodata, has_nodata, nk)
    w, s, mn, mx, hist = _buffers(xp, nk, L, n, need_minmax, need_hist)
    m2 = xp.zeros((nk, L))
    if si.shape[0]:
        d_si = xp.asarray(np.ascontiguousarray(si, np.int64))
        d_sw = xp.asarray(np.ascontiguousarray(sw, np.float64))
        nthreads = si.shape[0] * L
        launch(_span_pass1, nthreads, x, d_si, d_sw, nd, has_nodata, need_minmax, need_hist,
               lo, w, s, mn, mx, hist)
        if need_m2:
            launch(_span_pass2, nthreads, x, d_si, d_sw, nd, has_nodata, w, s, m2)
    return _finish(xp, w, s, mn, mx, m2, hist, lo, need_m2, need_minmax, need_hist)


@cuda.jit
def _locate_k(z, ids, lut, lut_lo, znd, has_znd, zi, present):
    g = cuda.grid(1)
    if g >= z.size:
        return
    v = z[g]
    j = -1
    if not (has_znd and v == znd):
        if lut.size > 0:
            o = np.int64(v) - lut_lo
            if o >= 0 and o < lut.size:
                j = lut[o]
        else:
            a = 0
            b = ids.size
            while a < b:
                m = (a + b) // 2
                if ids[m] < np.int64(v):
                    a = m + 1
                else:
                    b = m
            if a < ids.size and ids[a] == np.int64(v):
                j = a
    zi[g] = j
    if j >= 0:
        present[j] = 1


@cuda.jit
def _zone_pass1(x, zi, local, nodata, has_nodata, need_minmax, need_hist, hist_lo, w, s, mn,
                mx, hist):
    g = cuda.grid(1)
    npx = zi.size
    if g >= x.shape[0] * npx:
        return
    t = g // npx
    p = g - t * npx
    j = zi[p]
    if j < 0:
        return
    v = x[t, p]
    if v != v or (has_nodata and v == nodata):
        return
    k = local[j]
    fv = np.float64(v)
    cuda.atomic.add(w, (k, t), 1.0)
    cuda.atomic.add(s, (k, t), fv)
    if need_minmax:
        cuda.atomic.min(mn, (k, t), fv)
        cuda.atomic.max(mx, (k, t), fv)
    if need_hist:
        cuda.atomic.add(hist, (k, t, np.int64(v) - hist_lo), 1.0)


@cuda.jit
def _zone_pass2(x, zi, local, nodata, has_nodata, w, s, m2):
    g = cuda.grid(1)
    npx = zi.size
    if g >= x.shape[0] * npx:
        return
    t = g // npx
    p = g - t * npx
    j = zi[p]
    if j < 0:
        return
    v = x[t, p]
    if v != v or (has_nodata and v == nodata):
        return
    k = local[j]
    d = np.float64(v) - s[k, t] / w[k, t]
    cuda.atomic.add(m2, (k, t), d * d)


def zone_partials(block, zblock, ids, lut, lut_lo, znd, has_znd, nodata, has_nodata,
                  need_m2, need_minmax, need_hist):
    xp = array_module(block)
    L = block.shape[0]
    x = xp.ascontiguousarray(block).reshape(L, -1)
    z = xp.ascontiguousarray(xp.asarray(zblock)).reshape(-1)
    zi = xp.empty(z.size, np.int64)
    present = xp.zeros(ids.size, np.int32)
    zt = z.dtype.type
    launch(_locate_k, z.size, z, xp.asarray(ids), xp.asarray(lut), lut_lo,
           zt(znd) if has_znd else zt(0), has_znd, zi, present)
    idx = np.flatnonzero(_host(present))
    local = np.full(ids.size, -1, np.int64)
    local[idx] = np.arange(idx.size)
    d_local = xp.asarray(local)
    nk = idx.size
    nd = x.dtype.type(nodata) if has_nodata else x.dtype.type(0)
    lo = n = 0
    if need_hist:
        lo, n = hist_range(block, nodata, has_nodata, nk)
    w, s, mn, mx, hist = _buffers(xp, nk, L, n, need_minmax, need_hist)
    m2 = xp.zeros((nk, L))
    if nk:
        launch(_zone_pass1, L * z.size, x, zi, d_local, nd, has_nodata, need_minmax,
               need_hist, lo, w, s, mn, mx, hist)
        if need_m2:
            launch(_zone_pass2, L * z.size, x, zi, d_local, nd, has_nodata, w, s, m2)
    out = _finish(xp, w, s, mn, mx, m2, hist, lo, need_m2, need_minmax, need_hist)
    out["idx"] = idx
    return out

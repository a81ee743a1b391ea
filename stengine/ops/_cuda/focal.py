"""GPU twins of :mod:`stengine.ops._numba.focal` (numba.cuda, one thread per output cell).

Same signatures and the same missing/skipna/boundary rules as the CPU kernels. Each
thread loops over the window's footprint directly (cost ∝ window size; fine for the
windows focal ops use on a GPU). Sums use float64; variance is two-pass (mean first),
so float results agree with the CPU's running sums to rounding. Median and majority
count ranks in place (O(n²) per cell for n window cells), so they need no per-thread
buffer and give the same value as the CPU's sort.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..._backends import array_module, launch

SUM, COUNT, MEAN, VAR, STD = 0, 1, 2, 3, 4


def _out(block, kshape, dtype):
    L, Tp, Yp, Xp = block.shape
    kt, ky, kx = kshape
    shape = (L, Tp - kt + 1, Yp - ky + 1, Xp - kx + 1)
    # *_like keeps the block's type: CuPy stays CuPy, simulated stays simulated
    return array_module(block).empty_like(block, shape=shape, dtype=dtype)


def _dev(block, host_array):
    """``host_array`` on the device of ``block`` (CuPy), or as-is under the simulator."""
    return array_module(block).asarray(host_array)


def _prep(block, valid, kshape, dtype):
    out = _out(block, kshape, dtype)
    _, T, Y, X = out.shape
    return out, _dev(block, np.asarray(valid, np.int64)), (out.shape[0] * T * Y, X)


@cuda.jit(device=True)
def _missing(v, nodata, has_nodata):
    return (v != v) or (has_nodata and v == nodata)


@cuda.jit(device=True)
def _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata):
    """(value, ok) of footprint cell ``k`` for output cell (l, t, i, j)."""
    tt = t + offs[k, 0]
    r = i + offs[k, 1]
    c = j + offs[k, 2]
    if tt < vb[0] or tt >= vb[1] or r < vb[2] or r >= vb[3] or c < vb[4] or c >= vb[5]:
        return a[l, 0, 0, 0], False
    v = a[l, tt, r, c]
    return v, not _missing(v, nodata, has_nodata)


@cuda.jit(device=True)
def _where(g, T, Y):
    l = g // (T * Y)
    rem = g - l * T * Y
    t = rem // Y
    return l, t, rem - t * Y


@cuda.jit
def _moments_k(a, offs, vb, nodata, has_nodata, stat, skipna, area, out):
    g, j = cuda.grid(2)
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    if g >= out.shape[0] * T * Y or j >= X:
        return
    l, t, i = _where(g, T, Y)
    s = 0.0
    n = 0
    for k in range(offs.shape[0]):
        v, ok = _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata)
        if ok:
            s += v
            n += 1
    if stat == COUNT:
        out[l, t, i, j] = n
        return
    if n == 0 or (not skipna and n < area):
        out[l, t, i, j] = math.nan
        return
    if stat == SUM:
        out[l, t, i, j] = s
        return
    m = s / n
    if stat == MEAN:
        out[l, t, i, j] = m
        return
    q = 0.0
    for k in range(offs.shape[0]):
        v, ok = _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata)
        if ok:
            d = v - m
            q += d * d
    var = q / n
    out[l, t, i, j] = var if stat == VAR else math.sqrt(var)


def moments(block, valid, *, stat, rect, kshape, runs, offsets, area, nodata, has_nodata,
            skipna, out_dtype, acc):
    out, vb, n = _prep(block, valid, kshape, out_dtype)
    launch(_moments_k, n, block, _dev(block, offsets), vb, nodata, has_nodata, stat, skipna,
           area, out)
    return out


@cuda.jit
def _extrema_k(a, offs, vb, nodata, has_nodata, is_max, ident, skipna, area, out_nodata, out):
    g, j = cuda.grid(2)
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    if g >= out.shape[0] * T * Y or j >= X:
        return
    l, t, i = _where(g, T, Y)
    m = ident
    n = 0
    for k in range(offs.shape[0]):
        v, ok = _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata)
        if ok:
            n += 1
            if (v > m) if is_max else (v < m):
                m = v
    if n == 0 or (not skipna and n < area):
        out[l, t, i, j] = out_nodata
    else:
        out[l, t, i, j] = m


def extrema(block, valid, *, is_max, rect, kshape, offsets, area, nodata, has_nodata, skipna,
            out_nodata, runs):
    out, vb, n = _prep(block, valid, kshape, block.dtype)
    dt = np.dtype(block.dtype)
    if dt.kind == "f":
        ident = dt.type(-np.inf if is_max else np.inf)
    else:
        info = np.iinfo(dt)
        ident = dt.type(info.min if is_max else info.max)
    launch(_extrema_k, n, block, _dev(block, offsets), vb, nodata, has_nodata, is_max, ident,
           skipna, area, dt.type(out_nodata) if dt.kind != "f" else dt.type(np.nan), out)
    return out


@cuda.jit(device=True)
def _kth(a, offs, l, t, i, j, vb, nodata, has_nodata, kth):
    """The ``kth`` smallest valid value (0-based) of the window, by counting ranks."""
    for p in range(offs.shape[0]):
        v, ok = _cell(a, offs, p, l, t, i, j, vb, nodata, has_nodata)
        if not ok:
            continue
        less = 0
        leq = 0
        for q in range(offs.shape[0]):
            w, okq = _cell(a, offs, q, l, t, i, j, vb, nodata, has_nodata)
            if okq:
                if w < v:
                    less += 1
                if w <= v:
                    leq += 1
        if less <= kth < leq:
            return v
    return a[l, 0, 0, 0]


@cuda.jit
def _rank_k(a, offs, vb, nodata, has_nodata, skipna, majority, out_nodata, out):
    g, j = cuda.grid(2)
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    if g >= out.shape[0] * T * Y or j >= X:
        return
    l, t, i = _where(g, T, Y)
    size = offs.shape[0]
    n = 0
    for k in range(size):
        v, ok = _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata)
        if ok:
            n += 1
    if n == 0 or (not skipna and n < size):
        out[l, t, i, j] = out_nodata
        return
    if majority:
        best = a[l, 0, 0, 0]
        bestn = 0
        for p in range(size):
            v, ok = _cell(a, offs, p, l, t, i, j, vb, nodata, has_nodata)
            if not ok:
                continue
            c = 0
            for q in range(size):
                w, okq = _cell(a, offs, q, l, t, i, j, vb, nodata, has_nodata)
                if okq and w == v:
                    c += 1
            if c > bestn or (c == bestn and v < best):
                best = v
                bestn = c
        out[l, t, i, j] = best
    else:
        lo = _kth(a, offs, l, t, i, j, vb, nodata, has_nodata, (n - 1) // 2)
        hi = _kth(a, offs, l, t, i, j, vb, nodata, has_nodata, n // 2)
        out[l, t, i, j] = (np.float64(lo) + np.float64(hi)) / 2.0


def rank(block, valid, *, majority, kshape, offsets, nodata, has_nodata, skipna, out_dtype,
         out_nodata):
    out, vb, n = _prep(block, valid, kshape, out_dtype)
    launch(_rank_k, n, block, _dev(block, offsets), vb, nodata, has_nodata, skipna, majority,
           np.dtype(out_dtype).type(out_nodata), out)
    return out


@cuda.jit
def _weighted_k(a, offs, wts, vb, nodata, has_nodata, skipna, normalize, out):
    g, j = cuda.grid(2)
    T, Y, X = out.shape[1], out.shape[2], out.shape[3]
    if g >= out.shape[0] * T * Y or j >= X:
        return
    l, t, i = _where(g, T, Y)
    acc = 0.0
    wsum = 0.0
    n = 0
    for k in range(offs.shape[0]):
        v, ok = _cell(a, offs, k, l, t, i, j, vb, nodata, has_nodata)
        if ok:
            acc += wts[k] * v
            wsum += wts[k]
            n += 1
    if n == 0 or (not skipna and n < offs.shape[0]) or (normalize and wsum == 0):
        out[l, t, i, j] = math.nan
    elif normalize:
        out[l, t, i, j] = acc / wsum
    else:
        out[l, t, i, j] = acc


def weighted(block, valid, *, kshape, offsets, weights, nodata, has_nodata, skipna, normalize,
             out_dtype):
    out, vb, n = _prep(block, valid, kshape, out_dtype)
    launch(_weighted_k, n, block, _dev(block, offsets), _dev(block, weights), vb, nodata,
           has_nodata, skipna, normalize, out)
    return out

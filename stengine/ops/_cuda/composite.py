"""GPU twins of :mod:`stengine.ops._numba.composite` (numba.cuda, one thread per pixel)."""

from __future__ import annotations

from numba import cuda

from ..._backends import array_module, launch


@cuda.jit
def _composite_k(x, how, nodata, has_nodata, fill, scratch, out):
    j = cuda.grid(1)
    t = x.shape[0]
    if j >= x.shape[1]:
        return
    k = 0
    acc = 0.0
    pick = 0.0
    for i in range(t):
        v = x[i, j]
        if v != v or (has_nodata and v == nodata):
            continue
        fv = float(v)
        if how == 0:
            acc += fv
        elif how == 1:
            if k == 0 or fv < pick:
                pick = fv
        elif how == 2:
            if k == 0 or fv > pick:
                pick = fv
        elif how == 3:
            if k == 0:
                pick = fv
        elif how == 4:
            pick = fv
        else:  # median: insertion sort into this pixel's scratch column
            p = k
            while p > 0 and scratch[p - 1, j] > fv:
                scratch[p, j] = scratch[p - 1, j]
                p -= 1
            scratch[p, j] = fv
        k += 1
    if k == 0:
        out[j] = fill
    elif how == 0:
        out[j] = acc / k
    elif how == 5:
        h = k // 2
        out[j] = scratch[h, j] if k % 2 else 0.5 * (scratch[h - 1, j] + scratch[h, j])
    else:
        out[j] = pick


def composite(x, how, nodata, has_nodata, fill, out):
    xp = array_module(x)
    scratch = xp.empty((x.shape[0] if how == 5 else 1, x.shape[1]), "f8")
    launch(_composite_k, x.shape[1], x, how, nodata, has_nodata, fill, scratch, out)


@cuda.jit
def _quality_k(x, q, fill, out):
    j = cuda.grid(1)
    if j >= x.shape[2]:
        return
    best = -1
    bq = 0.0
    for i in range(x.shape[0]):
        v = q[i, j]
        if v != v:
            continue
        if best < 0 or v > bq:
            best = i
            bq = v
    for b in range(x.shape[1]):
        out[b, j] = fill if best < 0 else x[best, b, j]


def quality_mosaic(x, q, nodata, has_nodata, fill, out):
    launch(_quality_k, x.shape[2], x, q, fill, out)

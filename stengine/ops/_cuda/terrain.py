"""GPU twin of :mod:`stengine.ops._numba.terrain` (numba.cuda, one thread per cell)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..._backends import array_module, launch

SLOPE_DEG, SLOPE_PCT, ASPECT, HILLSHADE = 0, 1, 2, 3


@cuda.jit(device=True)
def _missing(v, nodata, has_nodata):
    return (v != v) or (has_nodata and v == nodata)


@cuda.jit
def _horn_k(a, vb, nodata, has_nodata, dx, dy, z, xsign, ysign, what, p0, p1, p2, out):
    g, j = cuda.grid(2)
    Y, X = out.shape[2], out.shape[3]
    if g >= out.shape[0] * Y or j >= X:
        return
    l = g // Y
    i = g - l * Y
    if i < vb[2] or i + 2 >= vb[3] or j < vb[4] or j + 2 >= vb[5]:
        out[l, 0, i, j] = math.nan
        return
    bad = False
    for r in range(3):
        for c in range(3):
            if _missing(a[l, 0, i + r, j + c], nodata, has_nodata):
                bad = True
    if bad:
        out[l, 0, i, j] = math.nan
        return
    va, vb_, vc = np.float64(a[l, 0, i, j]), np.float64(a[l, 0, i, j + 1]), \
        np.float64(a[l, 0, i, j + 2])
    vd, vf = np.float64(a[l, 0, i + 1, j]), np.float64(a[l, 0, i + 1, j + 2])
    vg, vh, vi = np.float64(a[l, 0, i + 2, j]), np.float64(a[l, 0, i + 2, j + 1]), \
        np.float64(a[l, 0, i + 2, j + 2])
    gx = ((vc + 2.0 * vf + vi) - (va + 2.0 * vd + vg)) * (z * xsign / (8.0 * dx[i]))
    gy = ((va + 2.0 * vb_ + vc) - (vg + 2.0 * vh + vi)) * (z * ysign / (8.0 * dy[i]))
    if what == SLOPE_DEG:
        res = math.atan(math.sqrt(gx * gx + gy * gy)) * (180.0 / math.pi)
    elif what == SLOPE_PCT:
        res = 100.0 * math.sqrt(gx * gx + gy * gy)
    elif what == ASPECT:
        if gx == 0.0 and gy == 0.0:
            res = p0
        else:
            res = math.atan2(-gx, -gy) * (180.0 / math.pi) + 0.0
            if res < 0.0:
                res += 360.0
    else:
        res = (p0 - gx * p1 - gy * p2) / math.sqrt(1.0 + gx * gx + gy * gy)
        if res < 0.0:
            res = 0.0
    out[l, 0, i, j] = res


def horn(block, valid, *, what, dx, dy, z, xsign, ysign, params, nodata, has_nodata,
         out_dtype):
    xp = array_module(block)
    L, T, Yp, Xp = block.shape
    out = xp.empty_like(block, shape=(L, 1, Yp - 2, Xp - 2), dtype=out_dtype)
    launch(_horn_k, (L * (Yp - 2), Xp - 2), block, xp.asarray(np.asarray(valid, np.int64)),
           nodata, has_nodata, xp.asarray(np.asarray(dx, np.float64)),
           xp.asarray(np.asarray(dy, np.float64)), float(z), float(xsign), float(ysign), what,
           float(params[0]), float(params[1]), float(params[2]), out)
    return out

"""CPU kernels of :mod:`stengine.ops.composite` (numba, one pixel column at a time).

Blocks arrive as ``(T, N)`` (time first, the other dims flattened); NaN, and ``nodata``
when ``has_nodata``, are skipped; a pixel with no valid value gets ``fill``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# how codes: one int per reduction, shared with the CUDA kernels
HOW = {"mean": 0, "min": 1, "max": 2, "first": 3, "last": 4, "median": 5}


@njit(nogil=True, cache=True)
def _valid(v, nodata, has_nodata):
    return v == v and not (has_nodata and v == nodata)


@njit(nogil=True, cache=True)
def composite(x, how, nodata, has_nodata, fill, out):
    t, n = x.shape
    buf = np.empty(t, np.float64)
    for j in range(n):
        k = 0
        acc = 0.0
        pick = 0.0
        for i in range(t):
            v = x[i, j]
            if not _valid(v, nodata, has_nodata):
                continue
            fv = np.float64(v)
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
            else:  # median: insertion sort (time series are short; no allocation per pixel)
                p = k
                while p > 0 and buf[p - 1] > fv:
                    buf[p] = buf[p - 1]
                    p -= 1
                buf[p] = fv
            k += 1
        if k == 0:
            out[j] = fill
        elif how == 0:
            out[j] = acc / k
        elif how == 5:
            h = k // 2
            out[j] = buf[h] if k % 2 else 0.5 * (buf[h - 1] + buf[h])
        else:
            out[j] = pick


@njit(nogil=True, cache=True)
def quality_mosaic(x, q, nodata, has_nodata, fill, out):
    """``x``: (T, M, P) data, ``q``: (T, P) quality; ``out``: (M, P).

    Per pixel the first time step with the highest valid (non-NaN) quality; all M values
    are taken from it (NaN/nodata included: the step is chosen by quality alone)."""
    t, m, p = x.shape
    for j in range(p):
        best = -1
        bq = 0.0
        for i in range(t):
            v = q[i, j]
            if v != v:
                continue
            if best < 0 or v > bq:  # strict: ties keep the first time step
                best = i
                bq = v
        for b in range(m):
            out[b, j] = fill if best < 0 else x[best, b, j]

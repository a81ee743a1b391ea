"""CPU kernels of :mod:`stengine.ops.composite` (numba, one pixel column at a time).

Blocks arrive as ``(T, N)`` (time first, the other dims flattened); NaN, and ``nodata``
when ``has_nodata``, are skipped; a pixel with no valid value gets ``fill``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# how codes: one int per reduction, shared with the CUDA kernels
HOW = {"mean": 0, "min": 1, "max": 2, "first": 3, "last": 4, "median": 5}


# The per-pixel bodies below are plain Python, compiled twice: here by njit for the CPU
# loops, in ops/_cuda/composite.py as CUDA device functions (one thread per pixel), so
# the rules (what is skipped, ties, the median) are written once for both backends.

def composite_pixel(x, j, how, nodata, has_nodata, fill, buf, c, out):
    """Column ``j`` of ``x`` (T, N) reduced by ``how`` into ``out[j]``; ``buf[:, c]``
    (length >= T) is the median's scratch (an insertion sort: time series are short)."""
    k = 0
    acc = 0.0
    pick = 0.0
    for i in range(x.shape[0]):
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
        else:
            p = k
            while p > 0 and buf[p - 1, c] > fv:
                buf[p, c] = buf[p - 1, c]
                p -= 1
            buf[p, c] = fv
        k += 1
    if k == 0:
        out[j] = fill
    elif how == 0:
        out[j] = acc / k
    elif how == 5:
        h = k // 2
        out[j] = buf[h, c] if k % 2 else 0.5 * (buf[h - 1, c] + buf[h, c])
    else:
        out[j] = pick


def quality_pixel(x, q, j, fill, out):
    """Pixel ``j``: all M values of ``x`` (T, M, P) from the first time step with the
    highest valid (non-NaN) quality ``q`` (T, P) into ``out[:, j]`` (NaN/nodata
    included: the step is chosen by quality alone); ``fill`` where no step is valid."""
    best = -1
    bq = 0.0
    for i in range(x.shape[0]):
        v = q[i, j]
        if v != v:
            continue
        if best < 0 or v > bq:  # strict: ties keep the first time step
            best = i
            bq = v
    for b in range(x.shape[1]):
        out[b, j] = fill if best < 0 else x[best, b, j]


_composite_pixel = njit(nogil=True, cache=True, inline="always")(composite_pixel)
_quality_pixel = njit(nogil=True, cache=True, inline="always")(quality_pixel)


@njit(nogil=True, cache=True)
def composite(x, how, nodata, has_nodata, fill, out):
    buf = np.empty((x.shape[0] if how == 5 else 1, 1), np.float64)
    for j in range(x.shape[1]):
        _composite_pixel(x, j, how, nodata, has_nodata, fill, buf, 0, out)


@njit(nogil=True, cache=True)
def quality_mosaic(x, q, nodata, has_nodata, fill, out):
    """``x``: (T, M, P) data, ``q``: (T, P) quality; ``out``: (M, P) (see quality_pixel)."""
    for j in range(x.shape[2]):
        _quality_pixel(x, q, j, fill, out)

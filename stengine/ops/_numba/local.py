"""CPU kernels (numba) of the local ops: one chunk in, one chunk out, single-threaded.

Dask provides the parallelism, so kernels are ``nogil`` and never spawn threads.
Every function here has a twin of the same name and signature in
``stengine.ops._cuda.local``.
"""

from __future__ import annotations

import numba
import numpy as np

# Op codes of binary(); shared with the GPU twin.
ADD, SUB, MUL, DIV = 0, 1, 2, 3

jit = numba.njit(nogil=True, cache=True)


def _flat(x):
    return np.ascontiguousarray(x).reshape(-1)


@jit
def _lut_loop(x, lut, offset, out):
    for i in range(x.size):
        out[i] = lut[np.int64(x[i]) - offset]


def reclassify_lut(block, lut, offset):
    """``out = lut[block - offset]`` for integer blocks of 16 bits or less."""
    out = np.empty(block.shape, lut.dtype)
    _lut_loop(_flat(block), lut, offset, out.reshape(-1))
    return out


@jit
def _search_loop(x, lo, hi, new, ranges, default, keep, nodata, has_nodata, out_nodata, out):
    n = lo.size
    for i in range(x.size):
        v = x[i]
        if v != v:  # NaN stays NaN
            out[i] = v
            continue
        if has_nodata and v == nodata:
            out[i] = out_nodata
            continue
        j = np.searchsorted(lo, v, side="right") - 1
        hit = j >= 0 and ((v < hi[j]) if ranges else (v == lo[j])) and j < n
        if hit:
            out[i] = new[j]
        elif keep:
            out[i] = v
        else:
            out[i] = default


def reclassify_search(block, lo, hi, new, ranges, default, keep, nodata, has_nodata,
                      out_nodata, out_dtype):
    """Reclassify by binary search over sorted ``lo`` (exact values, or [lo, hi) ranges)."""
    out = np.empty(block.shape, out_dtype)
    _search_loop(_flat(block), lo, hi, new, ranges, out.dtype.type(default), keep,
                 nodata, has_nodata, out.dtype.type(out_nodata), out.reshape(-1))
    return out


@jit
def _count_loop(x, value, out):
    nan = value != value
    for r in range(x.shape[0]):
        c = 0
        for i in range(x.shape[1]):
            v = x[r, i]
            if (v != v) if nan else (v == value):
                c += 1
        out[r, 0] = c


def count_equal(block, value):
    """Count pixels equal to ``value`` (NaN counts NaNs) per leading index: shape ``lead``."""
    lead = block.shape[:-2]
    x = np.ascontiguousarray(block).reshape(-1, block.shape[-2] * block.shape[-1])
    out = np.zeros((x.shape[0], 1), np.int64)
    _count_loop(x, block.dtype.type(value) if block.dtype.kind != "b" else value, out)
    return out.reshape(lead)


@jit
def _hist_lut_loop(x, lut, offset, out):
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            k = lut[np.int64(x[r, i]) - offset]
            if k >= 0:
                out[r, k] += 1


@jit
def _hist_search_loop(x, classes, skip, has_skip, out):
    n = classes.size
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[r, i]
            if has_skip and v == skip:
                continue
            j = np.searchsorted(classes, v)
            if j < n and classes[j] == v:
                out[r, j] += 1


def histogram(block, classes, lut, offset, nodata, has_nodata):
    """Exact int64 counts of each of ``classes`` per leading index: shape lead + (n_classes,).

    ``lut`` (int64 class index per value, -1 = not counted) serves 8/16-bit data;
    otherwise binary search over sorted ``classes``. ``nodata`` is never counted.
    """
    lead = block.shape[:-2]
    x = np.ascontiguousarray(block).reshape(-1, block.shape[-2] * block.shape[-1])
    out = np.zeros((x.shape[0], classes.size), np.int64)
    if lut is not None:
        _hist_lut_loop(x, lut, offset, out)
    else:
        _hist_search_loop(x, classes, block.dtype.type(nodata) if has_nodata else 0,
                          has_nodata, out)
    return out.reshape(*lead, classes.size)


def pair(a, b):
    """Flatten two broadcastable operands; a size-1 operand stays size 1 (a scalar)."""
    a, b = np.asarray(a), np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    def flat(x):
        if x.size == 1:
            return x.reshape(1)
        if x.shape != shape:
            x = np.broadcast_to(x, shape)
        return _flat(x)
    return flat(a), flat(b), shape


@jit
def _binary_loop(a, b, op, nd_a, has_a, nd_b, has_b, nd_out, out):
    sa = a.size > 1
    sb = b.size > 1
    for i in range(out.size):
        x = a[i if sa else 0]
        y = b[i if sb else 0]
        if (has_a and x == nd_a) or (has_b and y == nd_b):
            out[i] = nd_out
        elif op == 0:
            out[i] = x + y
        elif op == 1:
            out[i] = x - y
        elif op == 2:
            out[i] = x * y
        elif y == 0:
            out[i] = np.nan
        else:
            out[i] = x / y


def binary(a, b, op, nd_a, has_a, nd_b, has_b, nd_out, out_dtype):
    """Elementwise ``a op b`` (op: ADD, SUB, MUL, DIV) stored in ``out_dtype``.

    ``a``/``b`` are broadcastable blocks or scalars. Integer arithmetic wraps in
    ``out_dtype`` (callers pick one wide enough); float results equal arithmetic in
    ``out_dtype``. Nodata in either input gives ``nd_out``; ``x / 0`` gives NaN.
    """
    a_, b_, shape = pair(a, b)
    out = np.empty(shape, out_dtype)
    _binary_loop(a_, b_, op, float(nd_a), has_a, float(nd_b), has_b,
                 out.dtype.type(nd_out), out.reshape(-1))
    return out


@jit
def _nd_loop(a, b, nd_a, has_a, nd_b, has_b, out):
    sa = a.size > 1
    sb = b.size > 1
    for i in range(out.size):
        x = np.float64(a[i if sa else 0])
        y = np.float64(b[i if sb else 0])
        s = x + y
        if (has_a and x == nd_a) or (has_b and y == nd_b) or s == 0:
            out[i] = np.nan
        else:
            out[i] = (x - y) / s


def normalized_difference(a, b, nd_a, has_a, nd_b, has_b, out_dtype):
    """``(a - b) / (a + b)`` in float ``out_dtype``; nodata, NaN and ``a + b == 0`` give NaN."""
    a_, b_, shape = pair(a, b)
    out = np.empty(shape, out_dtype)
    _nd_loop(a_, b_, float(nd_a), has_a, float(nd_b), has_b, out.reshape(-1))
    return out

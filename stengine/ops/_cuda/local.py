"""GPU twins of :mod:`stengine.ops._numba.local` (numba.cuda, one thread per pixel)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..._backends import array_module, launch


def _empty(block, shape, dtype):
    # *_like keeps the block's type: CuPy stays CuPy, simulated stays simulated
    return array_module(block).empty_like(block, shape=shape, dtype=dtype)


def _zeros(block, shape, dtype):
    return array_module(block).zeros_like(block, shape=shape, dtype=dtype)


def _flat(x):
    xp = array_module(x)
    return xp.ascontiguousarray(x).reshape(-1)


def _dev(block, host_array):
    """``host_array`` on the device of ``block`` (CuPy), or as-is under the simulator."""
    return array_module(block).asarray(host_array)


@cuda.jit
def _lut_k(x, lut, offset, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = lut[np.int64(x[i]) - offset]


def reclassify_lut(block, lut, offset):
    out = _empty(block, block.shape, lut.dtype)
    launch(_lut_k, block.size, _flat(block), _dev(block, lut), offset, out.reshape(-1))
    return out


@cuda.jit
def _search_k(x, lo, hi, new, ranges, default, keep, nodata, has_nodata, out_nodata, out):
    i = cuda.grid(1)
    if i >= x.size:
        return
    v = x[i]
    if v != v:
        out[i] = v
        return
    if has_nodata and v == nodata:
        out[i] = out_nodata
        return
    # binary search: last j with lo[j] <= v
    a = 0
    b = lo.size
    while a < b:
        m = (a + b) // 2
        if lo[m] <= v:
            a = m + 1
        else:
            b = m
    j = a - 1
    hit = False
    if j >= 0:
        hit = (v < hi[j]) if ranges else (v == lo[j])
    if hit:
        out[i] = new[j]
    elif keep:
        out[i] = v
    else:
        out[i] = default


def reclassify_search(block, lo, hi, new, ranges, default, keep, nodata, has_nodata,
                      out_nodata, out_dtype):
    out = _empty(block, block.shape, out_dtype)
    t = np.dtype(out_dtype).type
    launch(_search_k, block.size, _flat(block), _dev(block, lo), _dev(block, hi),
           _dev(block, new), ranges, t(default), keep, nodata, has_nodata, t(out_nodata),
           out.reshape(-1))
    return out


@cuda.jit
def _count_k(x, value, nan, out):
    r, i = cuda.grid(2)
    if r < x.shape[0] and i < x.shape[1]:
        v = x[r, i]
        if (v != v) if nan else (v == value):
            cuda.atomic.add(out, (r, 0), 1)


def count_equal(block, value):
    lead = block.shape[:-2]
    x = array_module(block).ascontiguousarray(block).reshape(
        -1, block.shape[-2] * block.shape[-1])
    out = _zeros(block, (x.shape[0], 1), np.int64)
    v = block.dtype.type(value) if block.dtype.kind != "b" else value
    launch(_count_k, x.shape, x, v, bool(value != value), out)
    return out.reshape(lead)


@cuda.jit
def _mask_count_k(x, mask, offset, out):
    r, i = cuda.grid(2)
    if r < x.shape[0] and i < x.shape[1]:
        if mask[np.int64(x[r, i]) - offset]:
            cuda.atomic.add(out, (r, 0), 1)


def count_mask(block, mask, offset):
    lead = block.shape[:-2]
    x = array_module(block).ascontiguousarray(block).reshape(
        -1, block.shape[-2] * block.shape[-1])
    out = _zeros(block, (x.shape[0], 1), np.int64)
    launch(_mask_count_k, x.shape, x, _dev(block, mask), offset, out)
    return out.reshape(lead)


@cuda.jit
def _hist_lut_k(x, lut, offset, out):
    r, i = cuda.grid(2)
    if r < x.shape[0] and i < x.shape[1]:
        k = lut[np.int64(x[r, i]) - offset]
        if k >= 0:
            cuda.atomic.add(out, (r, k), 1)


@cuda.jit
def _hist_search_k(x, classes, skip, has_skip, out):
    r, i = cuda.grid(2)
    if r >= x.shape[0] or i >= x.shape[1]:
        return
    v = x[r, i]
    if has_skip and v == skip:
        return
    a = 0
    b = classes.size
    while a < b:
        m = (a + b) // 2
        if classes[m] < v:
            a = m + 1
        else:
            b = m
    if a < classes.size and classes[a] == v:
        cuda.atomic.add(out, (r, a), 1)


def histogram(block, classes, lut, offset, nodata, has_nodata):
    xp = array_module(block)
    lead = block.shape[:-2]
    x = xp.ascontiguousarray(block).reshape(-1, block.shape[-2] * block.shape[-1])
    out = _zeros(block, (x.shape[0], classes.size), np.int64)
    if lut is not None:
        launch(_hist_lut_k, x.shape, x, _dev(block, lut), offset, out)
    else:
        launch(_hist_search_k, x.shape, x, _dev(block, classes),
               block.dtype.type(nodata) if has_nodata else block.dtype.type(0),
               has_nodata, out)
    return out.reshape(*lead, classes.size)


def _pair(a, b):
    xp = array_module(a) if hasattr(a, "shape") else array_module(b)
    like = a if hasattr(a, "shape") else b
    a = a if hasattr(a, "shape") else xp.asarray(a)  # asarray would drop the block subclass
    b = b if hasattr(b, "shape") else xp.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)

    def flat(x):
        if x.size == 1:
            return x.reshape(1)
        if x.shape != shape:
            x = xp.broadcast_to(x, shape)
        return xp.ascontiguousarray(x).reshape(-1)

    return flat(a), flat(b), shape, like


@cuda.jit
def _binary_k(a, b, op, nd_a, has_a, nd_b, has_b, nd_out, zero, out):
    i = cuda.grid(1)
    if i >= out.size:
        return
    x0 = a[i if a.size > 1 else 0]
    y0 = b[i if b.size > 1 else 0]
    # compute in the output type (zero is of it): the simulator does numpy scalar
    # arithmetic, where uint8 + uint8 would wrap before the store
    x = x0 + zero
    y = y0 + zero
    if (has_a and x0 == nd_a) or (has_b and y0 == nd_b):
        out[i] = nd_out
    elif op == 0:
        out[i] = x + y
    elif op == 1:
        out[i] = x - y
    elif op == 2:
        out[i] = x * y
    elif y == 0:
        out[i] = math.nan
    else:
        out[i] = x / y


def binary(a, b, op, nd_a, has_a, nd_b, has_b, nd_out, out_dtype):
    a_, b_, shape, like = _pair(a, b)
    out = _empty(like, shape, out_dtype)
    launch(_binary_k, out.size, a_, b_, op, float(nd_a), has_a, float(nd_b), has_b,
           out.dtype.type(nd_out), out.dtype.type(0), out.reshape(-1))
    return out


@cuda.jit
def _nd_k(a, b, nd_a, has_a, nd_b, has_b, out):
    i = cuda.grid(1)
    if i >= out.size:
        return
    x = np.float64(a[i if a.size > 1 else 0])
    y = np.float64(b[i if b.size > 1 else 0])
    s = x + y
    if (has_a and x == nd_a) or (has_b and y == nd_b) or s == 0:
        out[i] = math.nan
    else:
        out[i] = (x - y) / s


def normalized_difference(a, b, nd_a, has_a, nd_b, has_b, out_dtype):
    a_, b_, shape, like = _pair(a, b)
    out = _empty(like, shape, out_dtype)
    launch(_nd_k, out.size, a_, b_, float(nd_a), has_a, float(nd_b), has_b, out.reshape(-1))
    return out

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


def _unsigned(x, table, offset):
    """``x`` (8/16-bit int or bool, flattened to rows) viewed as unsigned, and ``table``
    (indexed by ``value - offset``) re-indexed by that unsigned view: kernels then index
    with the raw unsigned value (no offset, no negative-index check)."""
    x = np.ascontiguousarray(x)
    if x.dtype.kind == "u":
        return x, table
    ux = x.view(f"u{x.dtype.itemsize}")
    if x.dtype.kind == "b":
        return ux, table
    u = np.arange(1 << (8 * x.dtype.itemsize), dtype=np.int64)
    signed = np.where(u >= u.size // 2, u - u.size, u)  # the value each unsigned bit pattern holds
    return ux, table[signed - offset]


@jit
def _mask_count_row(x, mask):
    # 4 interleaved counters: one would wait on its own last add at every pixel
    n = x.size
    m = n - n % 4
    c0 = c1 = c2 = c3 = 0
    for i in range(0, m, 4):
        c0 += mask[x[i]]
        c1 += mask[x[i + 1]]
        c2 += mask[x[i + 2]]
        c3 += mask[x[i + 3]]
    for i in range(m, n):
        c0 += mask[x[i]]
    return c0 + c1 + c2 + c3


@jit
def _mask_count_loop(x, mask, out):
    for r in range(x.shape[0]):
        out[r, 0] = _mask_count_row(x[r], mask)


def count_mask(block, mask, offset):
    """Count pixels ``v`` with ``mask[v - offset] == 1`` (uint8 mask over every value of an
    8/16-bit dtype) per leading index: shape ``lead``. Serves ``local_count`` of a
    reclassified raster, counted on its source without materialising the reclassified chunk.
    """
    lead = block.shape[:-2]
    x, mask = _unsigned(block.reshape(-1, block.shape[-2] * block.shape[-1]), mask, offset)
    out = np.zeros((x.shape[0], 1), np.int64)
    _mask_count_loop(x, mask, out)
    return out.reshape(lead)


# Largest row (pixels of one chunk per leading index) for _hist_row8's int32 counters:
# each of the 8 counts at most an eighth of the row (plus the tail).
HIST8_MAX = 1 << 33


@jit
def _hist_row8(x, sub, lut, out):
    # 8 interleaved int32 sub-histograms (neighbouring pixels of a class raster are mostly
    # equal: fewer counters stall on their own last increment), summed into the int64
    # counts, mapped to classes through lut (-1 = not counted)
    n = x.size
    m = n - n % 8
    sub[:] = 0
    s0, s1, s2, s3, s4, s5, s6, s7 = sub[0], sub[1], sub[2], sub[3], sub[4], sub[5], \
        sub[6], sub[7]
    for i in range(0, m, 8):
        s0[x[i]] += 1
        s1[x[i + 1]] += 1
        s2[x[i + 2]] += 1
        s3[x[i + 3]] += 1
        s4[x[i + 4]] += 1
        s5[x[i + 5]] += 1
        s6[x[i + 6]] += 1
        s7[x[i + 7]] += 1
    for i in range(m, n):
        s0[x[i]] += 1
    for v in range(lut.size):
        k = lut[v]
        if k >= 0:
            t = np.int64(0)
            for j in range(8):
                t += sub[j, v]
            out[k] += t


@jit
def _hist_lut_loop8(x, lut, out):
    sub = np.zeros((8, lut.size), np.int32)
    for r in range(x.shape[0]):
        _hist_row8(x[r], sub, lut, out[r])


@jit
def _hist_lut_loop(x, lut, offset, out):
    # counts per raw value first, in 4 interleaved sub-histograms (neighbouring pixels
    # of a class raster are mostly equal: one counter would stall on its own last
    # increment), then mapped to classes through lut (-1 = not counted)
    n = x.shape[1]
    m = n - n % 4
    sub = np.zeros((4, lut.size), np.int64)
    for r in range(x.shape[0]):
        sub[:] = 0
        for i in range(0, m, 4):
            sub[0, np.int64(x[r, i]) - offset] += 1
            sub[1, np.int64(x[r, i + 1]) - offset] += 1
            sub[2, np.int64(x[r, i + 2]) - offset] += 1
            sub[3, np.int64(x[r, i + 3]) - offset] += 1
        for i in range(m, n):
            sub[0, np.int64(x[r, i]) - offset] += 1
        for v in range(lut.size):
            k = lut[v]
            if k >= 0:
                out[r, k] += sub[0, v] + sub[1, v] + sub[2, v] + sub[3, v]


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
    if lut is not None and lut.size <= 256 and x.shape[1] < HIST8_MAX:
        ux, ulut = _unsigned(x, lut, offset)
        _hist_lut_loop8(ux, ulut, out)
    elif lut is not None:
        _hist_lut_loop(x, lut, offset, out)
    else:
        _hist_search_loop(x, classes, block.dtype.type(nodata) if has_nodata else 0,
                          has_nodata, out)
    return out.reshape(*lead, classes.size)


def _flat_operand(x, shape):
    x = np.asarray(x)
    if x.shape != shape:
        x = np.broadcast_to(x, shape)
    return _flat(x)


# One loop per op, generated from one template: a per-element switch on the op (or on a
# scalar/array operand) keeps LLVM from vectorising; these loops run at memory speed.
# error_model="numpy": x / 0 is IEEE (no ZeroDivisionError check in the loop).
_OP_FUNCS = {
    ADD: numba.njit(inline="always")(lambda x, y: x + y),
    SUB: numba.njit(inline="always")(lambda x, y: x - y),
    MUL: numba.njit(inline="always")(lambda x, y: x * y),
    DIV: numba.njit(inline="always")(lambda x, y: x / y),
}


def _make_binary(op):
    f = _OP_FUNCS[op]
    div = op == DIV

    @numba.njit(nogil=True, error_model="numpy")
    def loop(a, b, z, nd_a, has_a, nd_b, has_b, nd_out, out):
        # z: zero of the output type; arithmetic happens in it (uint8 + uint8 -> uint16)
        for i in range(out.size):
            x = a[i]
            y = b[i]
            r = f(x + z, y + z)
            bad = (has_a & (x == nd_a)) | (has_b & (y == nd_b))
            out[i] = nd_out if bad else (r if not (div and y == 0) else np.nan)

    @numba.njit(nogil=True, error_model="numpy")
    def loop_scalar(a, y, z, nd_a, has_a, nd_b, has_b, nd_out, out):
        yz = y + z
        const_bad = has_b & (y == nd_b)
        for i in range(out.size):
            x = a[i]
            r = f(x + z, yz)
            bad = const_bad | (has_a & (x == nd_a))
            out[i] = nd_out if bad else (r if not (div and y == 0) else np.nan)

    return loop, loop_scalar


_BINARY = {op: _make_binary(op) for op in (ADD, SUB, MUL, DIV)}


def _typed(value, dtype, has):
    """``value`` as ``dtype`` for comparisons; a nodata that the dtype cannot hold can
    never match, so it is dropped."""
    dtype = np.dtype(dtype)
    if not has:
        return dtype.type(0), False
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (float(value) == int(value) and info.min <= value <= info.max):
            return dtype.type(0), False
    return dtype.type(value), True


def binary(a, b, op, nd_a, has_a, nd_b, has_b, nd_out, out_dtype):
    """Elementwise ``a op b`` (op: ADD, SUB, MUL, DIV) computed and stored in ``out_dtype``.

    ``a`` is a block, ``b`` a broadcastable block or a scalar. Integer arithmetic wraps
    in ``out_dtype`` (callers pick one wide enough); float arithmetic is done in
    ``out_dtype``. Nodata in either input gives ``nd_out``; ``x / 0`` gives NaN.
    """
    a = np.asarray(a)
    out_dtype = np.dtype(out_dtype)
    z = out_dtype.type(0)
    nd_out = out_dtype.type(nd_out)
    loop, loop_scalar = _BINARY[op]
    if np.ndim(b) == 0 or np.size(b) == 1 and np.ndim(b) <= a.ndim:
        bs = np.asarray(b).reshape(-1)[0]
        out = np.empty(a.shape, out_dtype)
        ta, ha = _typed(nd_a, a.dtype, has_a)
        tb, hb = _typed(nd_b, bs.dtype, has_b)
        loop_scalar(_flat(a), bs, z, ta, ha, tb, hb, nd_out, out.reshape(-1))
        return out
    b = np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.empty(shape, out_dtype)
    ta, ha = _typed(nd_a, a.dtype, has_a)
    tb, hb = _typed(nd_b, b.dtype, has_b)
    loop(_flat_operand(a, shape), _flat_operand(b, shape), z, ta, ha, tb, hb, nd_out,
         out.reshape(-1))
    return out


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _nd_loop(a, b, z, nd_a, has_a, nd_b, has_b, out):
    for i in range(out.size):
        x = a[i] + z
        y = b[i] + z
        s = x + y
        bad = (has_a & (a[i] == nd_a)) | (has_b & (b[i] == nd_b)) | (s == 0)
        out[i] = np.nan if bad else (x - y) / s


def normalized_difference(a, b, nd_a, has_a, nd_b, has_b, out_dtype):
    """``(a - b) / (a + b)`` in float ``out_dtype``; nodata, NaN and ``a + b == 0`` give NaN.

    Integers of 16 bits or less are exact in float32, so float32 arithmetic gives the
    correctly rounded result there; other inputs are computed in float64, then rounded.
    """
    a, b = np.asarray(a), np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.empty(shape, out_dtype)
    small = all(x.dtype.kind in "iub" and x.dtype.itemsize <= 2 for x in (a, b))
    z = np.float32(0) if small and np.dtype(out_dtype) == np.float32 else np.float64(0)
    ta, ha = _typed(nd_a, a.dtype, has_a)
    tb, hb = _typed(nd_b, b.dtype, has_b)
    _nd_loop(_flat_operand(a, shape), _flat_operand(b, shape), z, ta, ha, tb, hb,
             out.reshape(-1))
    return out

"""Slow, obvious NumPy references. They share no code with stengine's kernels."""

import numpy as np


def reclassify(x, mapping, default=None, nodata=None, in_nodata=None, dtype=None):
    out = x.copy() if default is None else np.full(x.shape, default)
    out = out.astype(dtype) if dtype is not None else out
    for idx in np.ndindex(x.shape):
        v = x[idx]
        if isinstance(v, float | np.floating) and np.isnan(v):
            out[idx] = v
            continue
        if in_nodata is not None and v == in_nodata:
            out[idx] = nodata
            continue
        if isinstance(mapping, dict):
            if v in mapping:
                out[idx] = mapping[v]
        else:
            for lo, hi, new in mapping:
                if lo <= v < hi:
                    out[idx] = new
    return out


def count(x, value):
    x2 = x.reshape(*x.shape[:-2], -1)
    if isinstance(value, float) and np.isnan(value):
        return np.isnan(x2).sum(axis=-1)
    return (x2 == value).sum(axis=-1)


def histogram(x, classes, nodata=None):
    x2 = x.reshape(*x.shape[:-2], -1)
    out = np.zeros((*x2.shape[:-1], len(classes)), np.int64)
    for i, c in enumerate(classes):
        if nodata is not None and c == nodata:
            continue
        out[..., i] = (x2 == c).sum(axis=-1)
    return out


def binary(a, b, op, out_dtype, nd_a=None, nd_b=None, nd_out=None):
    a = np.asarray(a)
    b = np.asarray(b)
    af = a.astype(np.float64)
    bf = b.astype(np.float64)
    with np.errstate(all="ignore"):
        res = {"add": af + bf, "subtract": af - bf, "multiply": af * bf,
               "divide": np.where(bf == 0, np.nan, af / np.where(bf == 0, 1, bf))}[op]
    bad = np.zeros(np.broadcast_shapes(a.shape, b.shape), bool)
    if nd_a is not None:
        bad |= a == nd_a
    if nd_b is not None:
        bad |= b == nd_b
    out = res.astype(out_dtype)
    out[bad] = nd_out if nd_out is not None else np.nan
    return out


def normalized_difference(a, b, nd_a=None, nd_b=None, out_dtype=np.float32):
    af = a.astype(np.float64)
    bf = b.astype(np.float64)
    s = af + bf
    with np.errstate(all="ignore"):
        out = ((af - bf) / s).astype(out_dtype)
    out[s == 0] = np.nan
    if nd_a is not None:
        out[a == nd_a] = np.nan
    if nd_b is not None:
        out[b == nd_b] = np.nan
    return out

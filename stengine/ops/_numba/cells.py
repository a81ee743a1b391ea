"""CPU kernels of :mod:`stengine.ops.cells`: per-chunk pixel → cell aggregation, gathers.

A chunk's partial aggregate is a small table: the cells its pixels fall in (sorted,
uint64) and, per cell and leading index ``t`` (time/band), the valid pixel count ``n``
and whichever of sum, min, max and per-class counts the statistic needs. Pixels are
grouped in an open-addressing hash table keyed by cell id; neighbouring pixels usually
share a cell, so the last slot is reused without hashing. Pixels that are nodata at
every ``t`` are skipped before their cell is computed (oceans cost nothing). Blocks with
about one cell per pixel, where every hash access is a cache miss, are grouped by
sorting their ids instead (:func:`table_from_ids`, same tables).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ...index import _h3_core as h3c
from ...index import _h3_grid as h3g

jit = numba.njit(nogil=True, cache=True)

EMPTY = -1  # hash slot marker; valid H3 and HTM ids are positive int64


class Spec:
    """What a partial table carries: ``sum``, ``minmax`` and ``nclass`` (class counts)."""

    def __init__(self, *, do_sum=False, do_minmax=False, classes=None):
        self.do_sum = do_sum
        self.do_minmax = do_minmax
        self.classes = None if classes is None else np.asarray(classes)
        self.nclass = 0 if classes is None else len(classes)


@jit
def _hash(key, mask):
    x = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((x >> np.uint64(29)) & np.uint64(mask))


@jit
def _init_row(i, n, s, mn, mx, cnt):
    """Row ``i`` of a partial table, empty: counts 0, sums 0, min +inf, max -inf."""
    for t in range(n.shape[1]):
        n[i, t] = 0
    for t in range(s.shape[1]):
        s[i, t] = 0.0
    for t in range(mn.shape[1]):
        mn[i, t] = np.inf
        mx[i, t] = -np.inf
    for t in range(cnt.shape[1]):
        for c in range(cnt.shape[2]):
            cnt[i, t, c] = 0


@jit
def _slot(keys, key, mask, used, n, s, mn, mx, cnt):
    """Slot of ``key``, creating and initialising it; -1 when the table is too full."""
    i = _hash(key, mask)
    while True:
        k = keys[i]
        if k == key:
            return i
        if k == EMPTY:
            if used[0] * 4 >= keys.size * 3:
                return -1
            keys[i] = key
            used[0] += 1
            _init_row(i, n, s, mn, mx, cnt)
            return i
        i = (i + 1) & mask


@jit
def _valid(v, nodata, has_nodata):
    return v == v and not (has_nodata and v == nodata)


@jit
def _any_valid(vals, r, c, nodata, has_nodata):
    for t in range(vals.shape[0]):
        if _valid(vals[t, r, c], nodata, has_nodata):
            return True
    return False


@jit
def _class_index(v, classes, lut, lut_off):
    if lut.size:
        j = np.int64(v) - lut_off
        if 0 <= j < lut.size:
            return lut[j]
        return -1
    j = np.searchsorted(classes, v)
    if j < classes.size and classes[j] == v:
        return j
    return -1


@jit
def _add(vals, r, c, i, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut, lut_off):
    for t in range(vals.shape[0]):
        v = vals[t, r, c]
        if not _valid(v, nodata, has_nodata):
            continue
        n[i, t] += 1
        if s.shape[1]:
            s[i, t] += v
        if mn.shape[1]:
            fv = np.float64(v)
            if fv < mn[i, t]:
                mn[i, t] = fv
            if fv > mx[i, t]:
                mx[i, t] = fv
        if cnt.shape[2]:
            k = _class_index(v, classes, lut, lut_off)
            if k >= 0:
                cnt[i, t, k] += 1


@jit
def agg_h3_grid(vals, clon, slon, clat, slat, res, axes, tab, anc, nodata, has_nodata, keys,
                used, n, s, mn, mx, cnt, classes, lut, lut_off):
    """Aggregate a ``(T, rows, cols)`` block on a lon/lat grid into H3 cells; False on overflow.

    ``clon``/``slon`` and ``clat``/``slat`` are cos/sin of the block's pixel-centre
    longitudes and latitudes (see :func:`stengine.index._h3_arrays.grid_trig`); ``tab`` and
    ``anc`` come from :func:`stengine.index._h3_arrays.grid_state`.
    """
    mask = keys.size - 1
    face = -1
    last = (-1, 0, 0, 0)
    slot = -1
    for r in range(vals.shape[1]):
        cr = clat[r]
        z = slat[r]
        for c in range(vals.shape[2]):
            if not _any_valid(vals, r, c, nodata, has_nodata):
                continue
            fijk = h3c._point_to_fijk(clon[c] * cr, slon[c] * cr, z, res, axes, face)
            face = fijk[0]
            if fijk != last or slot < 0:
                cell = h3g.grid_cell(fijk[0], fijk[1], fijk[2], fijk[3], res, tab, anc)
                slot = _slot(keys, cell, mask, used, n, s, mn, mx, cnt)
                if slot < 0:
                    return False
                last = fijk
            _add(vals, r, c, slot, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut,
                 lut_off)
    return True


@jit
def agg_ids(vals, ids, nodata, has_nodata, keys, used, n, s, mn, mx, cnt, classes, lut,
            lut_off):
    """Aggregate a ``(T, rows, cols)`` block by precomputed cell ids ``(rows, cols)``.

    Ids ``<= 0`` (off the grid, e.g. outside a projection's domain) are skipped.
    """
    mask = keys.size - 1
    last = np.int64(-1)
    slot = -1
    for r in range(vals.shape[1]):
        for c in range(vals.shape[2]):
            cell = ids[r, c]
            if cell <= 0 or not _any_valid(vals, r, c, nodata, has_nodata):
                continue
            if cell != last or slot < 0:
                slot = _slot(keys, cell, mask, used, n, s, mn, mx, cnt)
                if slot < 0:
                    return False
                last = cell
            _add(vals, r, c, slot, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut,
                 lut_off)
    return True


def class_lut(classes, dtype):
    """(lut, offset) mapping 8/16-bit integer values to class indices (-1: not a class)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iub" or dtype.itemsize > 2 or classes is None:
        return np.zeros(0, np.int64), 0
    info = np.iinfo(dtype) if dtype.kind != "b" else None
    lo, hi = (int(info.min), int(info.max)) if info else (0, 1)
    lut = np.full(hi - lo + 1, -1, np.int64)
    for k, v in enumerate(np.asarray(classes).tolist()):
        if lo <= v <= hi and float(v) == int(v):
            lut[int(v) - lo] = k
    return lut, lo


def empty_state(cap, T, spec):
    """Hash table arrays for ``cap`` slots (a power of two) and ``T`` leading steps."""
    return (np.full(cap, EMPTY, np.int64), np.zeros(1, np.int64),
            np.empty((cap, T), np.int64),
            np.empty((cap, T if spec.do_sum else 0), np.float64),
            np.empty((cap, T if spec.do_minmax else 0), np.float64),
            np.empty((cap, T if spec.do_minmax else 0), np.float64),
            np.empty((cap, T, spec.nclass), np.int64))


def table_from_state(state, spec):
    """Sorted partial table ``(ids, n, sum, min, max, counts)`` from a filled hash table."""
    keys, _, n, s, mn, mx, cnt = state
    idx = np.nonzero(keys != EMPTY)[0]
    order = idx[np.argsort(keys[idx], kind="stable")]
    return (keys[order].view(np.uint64), n[order], s[order] if spec.do_sum else None,
            mn[order] if spec.do_minmax else None, mx[order] if spec.do_minmax else None,
            cnt[order] if spec.nclass else None)


@jit
def _agg_groups(vals, order, starts, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut,
                lut_off):
    for g in range(starts.size - 1):
        _init_row(g, n, s, mn, mx, cnt)
        for q in range(starts[g], starts[g + 1]):  # pixel order within a cell: stable sort
            _add(vals, 0, order[q], g, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut,
                 lut_off)


def table_from_ids(vals, ids, nodata, has_nodata, spec, classes, lut, lut_off):
    """The partial table of :func:`table_from_state`, grouping by sorting ids, not hashing.

    For blocks with about as many cells as pixels (H3 res 9 on a 30″ grid), where a hash
    table is a random memory access per pixel: a stable argsort of ``ids (rows, cols)``
    (ids ``<= 0`` skipped), then one pass per cell over its pixels in scan order, so
    sums add in the same order as the hash path's.
    """
    T = vals.shape[0]
    flat = np.ascontiguousarray(ids).reshape(-1).view(np.int64)
    order = np.argsort(flat, kind="stable")
    si = flat[order]
    starts = np.flatnonzero(np.r_[True, si[1:] != si[:-1]]) if si.size else \
        np.zeros(0, np.int64)
    g = starts.size
    starts = np.r_[starts, si.size].astype(np.int64)
    n = np.empty((g, T), np.int64)
    s = np.empty((g, T if spec.do_sum else 0), np.float64)
    mn = np.empty((g, T if spec.do_minmax else 0), np.float64)
    mx = np.empty((g, T if spec.do_minmax else 0), np.float64)
    cnt = np.empty((g, T, spec.nclass), np.int64)
    flat_vals = np.ascontiguousarray(vals).reshape(T, 1, -1)  # (t, 0, pixel)
    _agg_groups(flat_vals, order, starts, nodata, has_nodata, n, s, mn, mx, cnt, classes, lut,
                lut_off)
    cells = si[starts[:-1]]
    keep = (cells > 0) & (n.sum(axis=1) > 0)  # as the hash path: a cell with a valid pixel
    return (cells[keep].view(np.uint64), n[keep], s[keep] if spec.do_sum else None,
            mn[keep] if spec.do_minmax else None, mx[keep] if spec.do_minmax else None,
            cnt[keep] if spec.nclass else None)


def merge_tables(tables):
    """Combine partial tables: same cell ids are summed (n, sum, counts) or min/max-ed."""
    tables = [t for t in tables if t is not None and t[0].size]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    ids = np.concatenate([t[0] for t in tables])
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    starts = np.r_[0, np.nonzero(ids[1:] != ids[:-1])[0] + 1]

    def red(k, ufunc):
        if tables[0][k] is None:
            return None
        a = np.concatenate([t[k] for t in tables])[order]
        return ufunc.reduceat(a, starts, axis=0)

    return (ids[starts], red(1, np.add), red(2, np.add), red(3, np.minimum),
            red(4, np.maximum), red(5, np.add))


@jit
def _gather_loop(ids, table_ids, values, fill, out):
    m = table_ids.size
    for p in range(ids.size):
        h = ids[p]
        j = np.searchsorted(table_ids, h)
        if h > 0 and j < m and table_ids[j] == h:
            for t in range(values.shape[0]):
                out[t, p] = values[t, j]
        else:
            for t in range(values.shape[0]):
                out[t, p] = fill


def gather(ids, table_ids, values, fill):
    """``out[t, p] = values[t, j]`` where ``table_ids[j] == ids[p]``, else ``fill``."""
    flat = np.ascontiguousarray(ids).reshape(-1).view(np.int64)
    v = np.ascontiguousarray(values).reshape(values.shape[0], -1)
    out = np.empty((v.shape[0], flat.size), v.dtype)
    _gather_loop(flat, np.ascontiguousarray(table_ids).view(np.int64), v,
                 v.dtype.type(fill), out)
    return out.reshape((v.shape[0],) + np.shape(ids))


@jit
def _focal_loop(values, nbr, stat, skipna, out):
    # stat: 0 mean, 1 sum, 2 min, 3 max, 4 majority (ties: smallest value)
    T = values.shape[0]
    D = nbr.shape[1]
    buf = np.empty(D, values.dtype)
    for t in range(T):
        for p in range(nbr.shape[0]):
            m = 0
            bad = False
            for d in range(D):
                j = nbr[p, d]
                if j < 0:
                    continue
                v = values[t, j]
                if v != v:
                    if not skipna:
                        bad = True
                    continue
                buf[m] = v
                m += 1
            if bad or m == 0:
                out[t, p] = np.nan
                continue
            if stat == 0 or stat == 1:
                acc = 0.0
                for q in range(m):
                    acc += buf[q]
                out[t, p] = acc / m if stat == 0 else acc
            elif stat == 2:
                acc = buf[0]
                for q in range(1, m):
                    acc = min(acc, buf[q])
                out[t, p] = acc
            elif stat == 3:
                acc = buf[0]
                for q in range(1, m):
                    acc = max(acc, buf[q])
                out[t, p] = acc
            else:
                srt = np.sort(buf[:m])
                best = srt[0]
                best_n = 0
                run = 0
                for q in range(m):
                    if q > 0 and srt[q] == srt[q - 1]:
                        run += 1
                    else:
                        run = 1
                    if run > best_n:
                        best_n = run
                        best = srt[q]
                out[t, p] = best


def focal(values, nbr, stat, skipna):
    """k-ring statistic: ``values (T, M)`` float64, ``nbr (P, D)`` column indices or -1."""
    v = np.ascontiguousarray(values, np.float64)
    out = np.empty((v.shape[0], nbr.shape[0]), np.float64)
    _focal_loop(v, np.ascontiguousarray(nbr, np.int64), stat, skipna, out)
    return out


def estimate_cells(lon_range, lat_range, n_cells_level, npix):
    """Upper estimate of distinct cells in a lon/lat box: area / (half the mean area) + edge."""
    w = math.radians(abs(lon_range[1] - lon_range[0]))
    s0, s1 = sorted(math.sin(math.radians(v)) for v in lat_range)
    area = w * (s1 - s0)
    mean_area = 4 * math.pi / n_cells_level
    est = area / (0.5 * mean_area)
    est += 8 * math.sqrt(est + 1) + 64
    return int(min(npix, est))

"""numba kernels of the HTM-ST keys: bit interleaving and the coupled (space x time) cover."""

from __future__ import annotations

import numba
import numpy as np

from . import _geom
from .timecode import cell_start

jit = numba.njit(nogil=True, cache=True)
OUTSIDE, PARTIAL, INSIDE = _geom.OUTSIDE, _geom.PARTIAL, _geom.INSIDE


@jit
def interleave(h, k, level, b, out):
    """Coupled codes: marker bit, then per level the time digit (b bits) and the HTM digit
    (3 bits at level 0, 2 below)."""
    mb = np.uint64((1 << b) - 1)
    ub = np.uint64(b)
    for i in range(h.size):
        hv, kv = h[i], k[i]
        code = np.uint64(1)
        code = (code << ub) | ((kv >> np.uint64(b * level)) & mb)
        code = (code << np.uint64(3)) | ((hv >> np.uint64(2 * level)) & np.uint64(7))
        for lv in range(1, level + 1):
            code = (code << ub) | ((kv >> np.uint64(b * (level - lv))) & mb)
            code = (code << np.uint64(2)) | ((hv >> np.uint64(2 * (level - lv))) & np.uint64(3))
        out[i] = code


@jit
def deinterleave(codes, level, b, h, k):
    mb = np.uint64((1 << b) - 1)
    for i in range(codes.size):
        c = codes[i]
        hv = np.uint64(0)
        kv = np.uint64(0)
        for lv in range(level, 0, -1):
            hv |= (c & np.uint64(3)) << np.uint64(2 * (level - lv))
            c >>= np.uint64(2)
            kv |= (c & mb) << np.uint64(b * (level - lv))
            c >>= np.uint64(b)
        hv |= ((c & np.uint64(7)) | np.uint64(8)) << np.uint64(2 * level)
        c >>= np.uint64(3)
        kv |= (c & mb) << np.uint64(b * level)
        h[i] = hv
        k[i] = kv


@jit
def _time_class(lv, kcell, b, dur, qs, qe):
    """A level-``lv`` time cell against the query ``[qs, qe)`` (ns offsets after t0)."""
    s = b * (lv + 1)
    a = cell_start(kcell, s, dur)
    z = cell_start(kcell + np.uint64(1), s, dur)
    if z <= qs or a >= qe or z <= a:
        return OUTSIDE
    if qs <= a and z <= qe:
        return INSIDE
    return PARTIAL


@jit
def cover_coupled(kind, hs, conv, poly, frame, cosr, eps, has_region, level, b, has_time, qs,
                  qe, dur, interior, max_nodes):
    """Breadth-first cover of (region x [qs, qe)) in coupled codes; unsorted level-``level`` ranges.

    A node is a coupled cell: a trixel and a time cell of the same level. It is emitted
    whole when both are inside, dropped when either is outside, else refined into its
    ``m * 4`` children (time digit major). Partial nodes are refined while the emitted
    ranges stay within ``max_nodes``; the others are emitted whole (envelopes) or
    dropped (interiors).
    """
    m = 1 << b
    n = 8 * m
    codes = np.empty(n, np.uint64)
    tk = np.empty(n, np.uint64)
    verts = np.empty((n, 9))
    sin = np.empty(n, np.bool_)
    tin = np.empty(n, np.bool_)
    for td in range(m):
        for f in range(8):
            i = td * 8 + f
            codes[i] = (np.uint64(1) << np.uint64(b + 3)) | np.uint64((td << 3) | f)
            tk[i] = np.uint64(td)
            for j in range(3):
                for c in range(3):
                    verts[i, 3 * j + c] = _geom.FACES[f, j, c]
            sin[i] = not has_region
            tin[i] = not has_time
    starts = np.empty(64, np.uint64)
    stops = np.empty(64, np.uint64)
    nout = 0
    kids = np.empty((4, 9))
    step = np.uint64(b + 2)
    for lv in range(level + 1):
        shift = np.uint64((b + 2) * (level - lv))
        sc = np.empty(n, np.int8)
        tc = np.empty(n, np.int8)
        npart = 0
        ninside = 0
        for i in range(n):
            sc[i] = INSIDE if sin[i] else _geom.region_class(kind, hs, conv, poly, frame, cosr,
                                                             verts[i], eps)
            tc[i] = INSIDE if tin[i] else _time_class(lv, tk[i], b, dur, qs, qe)
            if sc[i] == INSIDE and tc[i] == INSIDE:
                ninside += 1
            elif sc[i] != OUTSIDE and tc[i] != OUTSIDE:
                npart += 1
        nexp = _geom.expansion_budget(nout, ninside, npart, 4 * m, max_nodes, interior,
                                      lv == level)
        nn = 4 * m * nexp
        ncodes = np.empty(nn, np.uint64)
        ntk = np.empty(nn, np.uint64)
        nverts = np.empty((nn, 9))
        nsin = np.empty(nn, np.bool_)
        ntin = np.empty(nn, np.bool_)
        q = 0
        for i in range(n):
            s, t = sc[i], tc[i]
            if s == OUTSIDE or t == OUTSIDE:
                continue
            full = s == INSIDE and t == INSIDE
            if full or q >= nn:
                if full or not interior:
                    starts = _geom._grow(starts, nout)
                    stops = _geom._grow(stops, nout)
                    starts[nout] = codes[i] << shift
                    stops[nout] = (codes[i] + np.uint64(1)) << shift
                    nout += 1
                continue
            if s != INSIDE:
                _geom._children(verts[i], kids, 0)
            for td in range(m):
                for hd in range(4):
                    ncodes[q] = (codes[i] << step) | np.uint64((td << 2) | hd)
                    ntk[q] = tk[i] * np.uint64(m) + np.uint64(td)
                    if s != INSIDE:
                        for j in range(9):
                            nverts[q, j] = kids[hd, j]
                    nsin[q] = s == INSIDE
                    ntin[q] = t == INSIDE
                    q += 1
        if nexp == 0:
            break
        codes, tk, verts, sin, tin, n = ncodes, ntk, nverts, nsin, ntin, q
    return starts[:nout], stops[:nout]

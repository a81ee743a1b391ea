"""CPU kernel (numba) of the terrain ops: Horn's 3×3 gradient, then slope, aspect or hillshade.

``block`` is a padded 4-D block ``(lead, 1, y + 2, x + 2)`` with the ``valid`` box as in
:mod:`stengine.ops._numba.focal`; ``dx``/``dy`` are the cell sizes (metres) of the
block's output rows, so geographic grids can pass latitude-dependent spacing. A cell is
NaN when it or any of its 8 neighbours is missing (NaN, nodata, beyond the raster edge
under the ``"nan"`` rule). Twin: ``stengine.ops._cuda.terrain``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# error_model="numpy": float division by zero gives inf/NaN instead of a checked raise,
# which also lets loops with divisions vectorise
jit = numba.njit(nogil=True, cache=True, error_model="numpy")
inline = numba.njit(inline="always", error_model="numpy")

SLOPE_DEG, SLOPE_PCT, ASPECT, HILLSHADE = 0, 1, 2, 3

# Cephes' atan (rational approximation after range reduction; <= 1 ulp in float64),
# written without branches so that it vectorises: libm's atan is a scalar call that
# costs more than the rest of the kernel.
_P = (-8.750608600031904122785e-01, -1.615753718733365076637e+01,
      -7.500855792314704667340e+01, -1.228866684490136173410e+02,
      -6.485021904942025371773e+01)
_Q = (2.485846490142306297962e+01, 1.650270098316988542046e+02,
      4.328810604912902668951e+02, 4.853903996359136964868e+02,
      1.945506571482613964425e+02)
_T3P8 = 2.41421356237309504880  # tan(3π/8)
_MOREBITS = 6.123233995736765886130e-17


@inline
def atan(x):
    """arctan(x) in radians, branch-free (NaN in, NaN out)."""
    ax = abs(x)
    big = ax > _T3P8
    mid = (ax > 0.66) and not big
    xr = -1.0 / ax if big else ax
    xr = (ax - 1.0) / (ax + 1.0) if mid else xr
    z = xr * xr
    p = (((_P[0] * z + _P[1]) * z + _P[2]) * z + _P[3]) * z + _P[4]
    q = ((((z + _Q[0]) * z + _Q[1]) * z + _Q[2]) * z + _Q[3]) * z + _Q[4]
    r = xr * (z * p / q) + xr
    r += (math.pi / 2 + _MOREBITS) * big + (math.pi / 4 + 0.5 * _MOREBITS) * mid
    return math.copysign(r, x)


@inline
def atan2(y, x):
    """arctan2(y, x) in radians for finite or NaN inputs, branch-free."""
    ax, ay = abs(x), abs(y)
    steep = ay > ax
    t = ax / ay if steep else ay / ax  # in [0, 1]; 0/0 (flat) handled by the caller
    a = atan(t)
    a = math.pi / 2 - a if steep else a
    a = math.pi - a if x < 0 else a
    return -a if y < 0 else a


@jit
def _values(gx, gy, what, p0, p1, p2, out):
    """Slope/aspect/hillshade from dz/dx (east) and dz/dy (north) rows, both scaled by z.

    One loop per ``what`` so that each loop vectorises (a branch on ``what`` per cell
    does not)."""
    n = out.size
    if what == SLOPE_DEG:
        for j in range(n):
            out[j] = atan(math.sqrt(gx[j] * gx[j] + gy[j] * gy[j])) * (180.0 / math.pi)
    elif what == SLOPE_PCT:
        for j in range(n):
            out[j] = 100.0 * math.sqrt(gx[j] * gx[j] + gy[j] * gy[j])
    elif what == ASPECT:  # downslope direction (-gx, -gy), clockwise from north
        for j in range(n):
            deg = atan2(-gx[j], -gy[j]) * (180.0 / math.pi) + 0.0  # + 0.0: no -0.0
            deg = deg + 360.0 if deg < 0.0 else deg
            out[j] = p0 if (gx[j] == 0.0 and gy[j] == 0.0) else deg  # p0: flat
    else:  # hillshade: p0 = sin(alt), p1 = cos(alt)·sin(az), p2 = cos(alt)·cos(az)
        for j in range(n):
            shade = (p0 - gx[j] * p1 - gy[j] * p2) / math.sqrt(
                1.0 + gx[j] * gx[j] + gy[j] * gy[j])
            out[j] = 0.0 if shade < 0.0 else shade  # NaN stays NaN


@jit
def _load_row(a, l, r, valid, nodata, has_nodata, z, buf):
    """Padded row ``r`` as float64 × z, with missing and outside cells NaN."""
    t0, t1, y0, y1, x0, x1 = valid
    buf[:] = np.nan
    if r < y0 or r >= y1:
        return
    row, b = a[l, 0, r, x0:x1], buf[x0:x1]
    for j in range(x1 - x0):
        v = row[j]
        b[j] = np.nan if (v != v) or (has_nodata and v == nodata) else np.float64(v) * z


@jit
def _horn(a, valid, nodata, has_nodata, dx, dy, z, xsign, ysign, what, p0, p1, p2, out):
    L, Xp = a.shape[0], a.shape[3]
    Y, X = out.shape[2], out.shape[3]
    ring = np.empty((3, Xp), np.float64)
    gx = np.empty(X, np.float64)
    gy = np.empty(X, np.float64)
    for l in range(L):
        for i in range(Y):
            first = i + 2 if i > 0 else i
            for r in range(first, i + 3):
                _load_row(a, l, r, valid, nodata, has_nodata, z, ring[r % 3])
            n, m, s = ring[i % 3], ring[(i + 1) % 3], ring[(i + 2) % 3]  # north, mid, south
            na, nb, nc = n[0:X], n[1:X + 1], n[2:X + 2]
            md, me, mf = m[0:X], m[1:X + 1], m[2:X + 2]
            sg, sh, si = s[0:X], s[1:X + 1], s[2:X + 2]
            sx = xsign / (8.0 * dx[i])
            sy = ysign / (8.0 * dy[i])
            for j in range(X):
                # (e - e): NaN when the centre is missing, although Horn does not use it
                gx[j] = ((nc[j] + 2.0 * mf[j] + si[j]) - (na[j] + 2.0 * md[j] + sg[j])) * sx \
                    + (me[j] - me[j])
                gy[j] = ((na[j] + 2.0 * nb[j] + nc[j]) - (sg[j] + 2.0 * sh[j] + si[j])) * sy
            _values(gx, gy, what, p0, p1, p2, out[l, 0, i])


def horn(block, valid, *, what, dx, dy, z, xsign, ysign, params, nodata, has_nodata,
         out_dtype):
    """Slope (degrees or percent), aspect or hillshade of the block's cells (Horn 1981)."""
    L, T, Yp, Xp = block.shape
    out = np.empty((L, 1, Yp - 2, Xp - 2), out_dtype)
    _horn(block, valid, nodata, has_nodata, np.asarray(dx, np.float64),
          np.asarray(dy, np.float64), float(z), float(xsign), float(ysign), what,
          float(params[0]), float(params[1]), float(params[2]), out)
    return out

"""Slow, obvious NumPy references for focal ops and terrain. They share no code with stengine.

Every window statistic is: pad the array with ``numpy.pad`` (the boundary rule), take
``sliding_window_view`` over the window's box, keep the footprint cells, mark missing
cells NaN (in float64), then reduce with numpy's nan-aware functions.
"""

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PAD_MODE = {"nearest": "edge", "reflect": "symmetric", "wrap": "wrap"}


def rect(ny, nx=None, nt=1):
    return np.ones((nt, ny, nx or ny), bool)


def circle(r, nt=1, ry=1.0, rx=1.0):
    """Cells whose centre is within r (map units) of the centre; cells of ry × rx."""
    hy, hx = int(r / ry + 1e-9), int(r / rx + 1e-9)
    fp = np.zeros((2 * hy + 1, 2 * hx + 1), bool)
    for i in range(-hy, hy + 1):
        for j in range(-hx, hx + 1):
            fp[i + hy, j + hx] = (i * ry) ** 2 + (j * rx) ** 2 <= r * r * (1 + 1e-12)
    return np.repeat(fp[None], nt, axis=0)


def annulus(inner, outer, nt=1):
    fp = circle(outer)[0].copy()
    h = fp.shape[0] // 2
    for i in range(-h, h + 1):
        for j in range(-h, h + 1):
            if i * i + j * j < inner * inner * (1 - 1e-12):
                fp[i + h, j + h] = False
    return np.repeat(fp[None], nt, axis=0)


def _pad(x, halos, boundary):
    """Pad the last len(halos) axes; boundary is a rule or a list of rules (one per axis)."""
    rules = boundary if isinstance(boundary, list | tuple) else [boundary] * len(halos)
    axes = range(x.ndim - len(halos), x.ndim)
    for ax, h, rule in zip(axes, halos, rules, strict=True):
        width = [(0, 0)] * x.ndim
        width[ax] = (h, h)
        if rule == "nan":
            x = np.pad(x, width, mode="constant", constant_values=np.nan)
        else:
            x = np.pad(x, width, mode=PAD_MODE[rule])
    return x


def neighbourhoods(x, fp, boundary="nan", nodata=None):
    """float64 ``x.shape + (n,)``: the n footprint cells around each cell, NaN = missing.

    ``fp`` is a ``(nt, ny, nx)`` footprint (bool or weights); ``nt > 1`` windows run along
    axis -3 (time). ``boundary``: a rule, or a list of rules for (time,) y, x.
    """
    x = np.asarray(x)
    v = x.astype(np.float64)
    if nodata is not None:
        v[x == nodata] = np.nan
    fp = np.asarray(fp)
    if fp.ndim == 3 and fp.shape[0] == 1:
        fp = fp[0]
    halos = [s // 2 for s in fp.shape]
    p = _pad(v, halos, boundary)
    w = sliding_window_view(p, fp.shape, axis=tuple(range(x.ndim - fp.ndim, x.ndim)))
    return w[..., fp != 0]


def _finish(res, dtype, nodata=None):
    res = np.asarray(res, np.float64)
    if np.dtype(dtype).kind in "iub":
        res = np.where(np.isnan(res), nodata if nodata is not None else 0, res)
    return res.astype(dtype)


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    small = dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2) or \
        (dtype.kind == "f" and dtype.itemsize <= 4)
    return np.float32 if small else np.float64


def focal(x, stat, fp, *, boundary="nan", skipna=True, nodata=None, normalize=False):
    """Reference for focal ``stat`` (mean, sum, count, min, max, var, std, median,
    majority, apply) with the output dtype the op promises; ``fp`` holds the weights
    for ``apply``."""
    x = np.asarray(x)
    fp = np.asarray(fp)
    v = neighbourhoods(x, fp, boundary, nodata)
    valid = ~np.isnan(v)
    n = valid.sum(-1)
    full = fp.astype(bool).sum()
    none = n == 0
    bad = none if skipna else (n < full)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if stat == "count":
            return n.astype(np.int32)
        if stat == "mean":
            res = np.nanmean(v, -1)
        elif stat == "sum":
            res = np.nansum(v, -1)
        elif stat == "var":
            res = np.nanvar(v, -1)
        elif stat == "std":
            res = np.nanstd(v, -1)
        elif stat == "min":
            res = np.nanmin(v, -1)
        elif stat == "max":
            res = np.nanmax(v, -1)
        elif stat == "median":
            res = np.nanmedian(v, -1)
        elif stat == "majority":
            res = np.full(x.shape, np.nan)
            for idx in np.ndindex(x.shape):
                vals = v[idx][valid[idx]]
                if vals.size:
                    uniq, counts = np.unique(vals, return_counts=True)
                    res[idx] = uniq[np.argmax(counts)]  # first max: the smallest value
        elif stat == "apply":
            w = fp.astype(np.float64).reshape(-1)
            w = w[w != 0]  # the footprint cells, in the order neighbourhoods() lists them
            res = np.nansum(v * w, -1)
            if normalize:
                res = res / np.where(valid, w, 0).sum(-1)
        else:
            raise ValueError(stat)
    res = np.where(bad, np.nan, res)
    if stat in ("min", "max", "majority"):
        return _finish(res, x.dtype, nodata)
    if stat == "sum":
        return res.astype(np.float64 if x.dtype.kind in "iub" else x.dtype)
    return res.astype(_float_dtype(x.dtype))


# --------------------------------------------------------------------------- terrain
def horn(z, dx, dy, boundary="nan", nodata=None, z_factor=1.0):
    """Horn's dz/dx (east) and dz/dy (north) of a north-up DEM, cell by cell.

    ``dx``/``dy``: cell sizes in metres, scalars or one per row. A cell is NaN when any
    of its 3×3 cells is missing (NaN, nodata, beyond the edge under ``"nan"``).
    """
    v = np.asarray(z, np.float64) * z_factor
    if nodata is not None:
        v[np.asarray(z) == nodata] = np.nan
    p = _pad(v, [1, 1], boundary)
    ny, nx = v.shape[-2:]
    dx = np.broadcast_to(np.asarray(dx, np.float64), (ny,))
    dy = np.broadcast_to(np.asarray(dy, np.float64), (ny,))
    gx = np.full(v.shape, np.nan)
    gy = np.full(v.shape, np.nan)
    for idx in np.ndindex(v.shape[:-2]):
        for i in range(ny):
            for j in range(nx):
                w = p[idx][i:i + 3, j:j + 3]
                if np.isnan(w).any():
                    continue
                (a, b, c), (d, _, f), (g, h, k) = w
                gx[idx + (i, j)] = ((c + 2 * f + k) - (a + 2 * d + g)) / (8 * dx[i])
                gy[idx + (i, j)] = ((a + 2 * b + c) - (g + 2 * h + k)) / (8 * dy[i])
    return gx, gy


def slope(z, dx, dy, percent=False, **kw):
    gx, gy = horn(z, dx, dy, **kw)
    return 100 * np.hypot(gx, gy) if percent else np.degrees(np.arctan(np.hypot(gx, gy)))


def aspect(z, dx, dy, flat=-1.0, **kw):
    """Downslope direction, degrees clockwise from north; flat cells ``flat``."""
    gx, gy = horn(z, dx, dy, **kw)
    out = np.degrees(np.arctan2(-gx, -gy)) % 360.0
    out[(gx == 0) & (gy == 0)] = flat
    return out


def hillshade(z, dx, dy, azimuth=315.0, altitude=45.0, **kw):
    gx, gy = horn(z, dx, dy, **kw)
    az, alt = np.radians(azimuth), np.radians(altitude)
    sun = np.array([np.sin(az) * np.cos(alt), np.cos(az) * np.cos(alt), np.sin(alt)])
    shade = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(1 + gx ** 2 + gy ** 2)
    return np.where(np.isnan(shade), np.nan, np.clip(shade, 0, 1))

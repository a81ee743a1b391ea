"""Slow, obvious references for the zonal ops: one boolean/weight mask per zone.

They share no code with stengine's kernels: pixel membership comes from shapely
(pixel-centre containment, pixel-box intersection areas), statistics from numpy on the
masked pixels of each zone, one zone at a time.
"""

import numpy as np
import shapely


def pixel_boxes(transform, shape):
    """(H, W) array of shapely pixel squares of a north-up grid."""
    a, _, c, _, e, f = tuple(transform)[:6]
    H, W = shape
    xs = c + a * np.arange(W + 1)
    ys = f + e * np.arange(H + 1)
    return shapely.box(xs[None, :-1], ys[1:, None], xs[None, 1:], ys[:-1, None])


def polygon_weights(geoms, transform, shape, rule="centre"):
    """(n, H, W) float weights of each polygon's pixels.

    ``centre``: 1 where the pixel centre lies inside the polygon; ``all_touched``: 1
    where the pixel square shares area with it; ``coverage``: the fraction of the pixel
    square's area inside it. Polygons in general position (no centre on an edge).
    """
    a, _, c, _, e, f = tuple(transform)[:6]
    H, W = shape
    xc = c + a * (np.arange(W) + 0.5)
    yc = f + e * (np.arange(H) + 0.5)
    X, Y = np.meshgrid(xc, yc)
    boxes = pixel_boxes(transform, shape)
    out = np.zeros((len(geoms), H, W))
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            continue
        if rule == "centre":
            out[i] = shapely.contains_xy(g, X, Y)
        else:
            frac = shapely.area(shapely.intersection(boxes, g)) / abs(a * e)
            out[i] = frac if rule == "coverage" else (frac > 1e-12)
    return out


def zone_weights(zones, ids):
    """(n, H, W) 0/1 masks of a zone raster, one per id."""
    return np.stack([(zones == i).astype(float) for i in ids]) if len(ids) else \
        np.zeros((0, *zones.shape))


def stats(values, weights, names, nodata=None):
    """dict stat → (n, *lead) from values (*lead, H, W) and weights (n, H, W)."""
    values = np.asarray(values)
    lead = values.shape[:-2]
    flat = values.reshape(-1, *values.shape[-2:])
    n = weights.shape[0]
    out = {s: np.full((n, flat.shape[0]), np.nan) for s in names}
    for i in range(n):
        for t in range(flat.shape[0]):
            v = flat[t]
            valid = weights[i] > 0
            if v.dtype.kind == "f":
                valid &= ~np.isnan(v)
            if nodata is not None:
                valid &= v != nodata
            x = v[valid].astype(np.float64)
            w = weights[i][valid]
            cnt = w.sum()
            for s in names:
                if s == "count":
                    out[s][i, t] = cnt
                elif s == "unique":
                    out[s][i, t] = len(np.unique(x))
                elif x.size == 0:
                    continue
                elif s == "sum":
                    out[s][i, t] = (x * w).sum()
                elif s == "mean":
                    out[s][i, t] = (x * w).sum() / cnt
                elif s == "min":
                    out[s][i, t] = x.min()
                elif s == "max":
                    out[s][i, t] = x.max()
                elif s in ("var", "std"):
                    m = (x * w).sum() / cnt
                    var = (w * (x - m) ** 2).sum() / cnt
                    out[s][i, t] = var if s == "var" else np.sqrt(var)
                elif s == "median":
                    out[s][i, t] = np.median(x)
                elif s in ("majority", "minority"):
                    vals = np.unique(x)
                    tot = np.array([w[x == u].sum() for u in vals])
                    best = tot.max() if s == "majority" else tot.min()
                    out[s][i, t] = vals[np.flatnonzero(tot == best)[0]]
    return {s: a.reshape(n, *lead) for s, a in out.items()}


def crosstab(values, weights, classes, nodata=None):
    """(n, *lead, n_classes) weighted pixel counts of each class per zone."""
    values = np.asarray(values)
    lead = values.shape[:-2]
    flat = values.reshape(-1, *values.shape[-2:])
    out = np.zeros((weights.shape[0], flat.shape[0], len(classes)))
    for i in range(weights.shape[0]):
        for t in range(flat.shape[0]):
            for j, k in enumerate(classes):
                if nodata is not None and k == nodata:
                    continue
                out[i, t, j] = weights[i][flat[t] == k].sum()
    return out.reshape(weights.shape[0], *lead, len(classes))

"""Partial aggregates per zone: combine them (tree nodes) and finish them (the table).

A partial is a dict of host numpy arrays for the zones one chunk (or one subtree of
chunks) saw: ``idx`` (m,) sorted global zone positions; ``w``, ``s`` and optionally
``m2``, ``mn``, ``mx`` of shape (m, L) (L = flattened lead/time steps of the block);
optionally ``hist = (z, t, value, weight)`` sparse per-value weights with ``z`` a
global zone position. ``None`` stands for "no pixels".

Variance combines with Chan et al.'s pairwise update written for groups:
``M2 = Σ M2_i + Σ W_i (mean_i − mean)²`` with ``mean_i = S_i / W_i``, exact in
exact arithmetic and free of the cancellation of a sum-of-squares formula.
"""

from __future__ import annotations

import numpy as np

from .._backends import array_module

# Dense per-chunk histograms hold at most this many cells (zones × steps × values).
HIST_BUDGET = 2**25


def hist_range(x, nodata, has_nodata, nk) -> tuple[int, int]:
    """``(lowest value, number of values)`` a chunk's histogram must span.

    8-bit and boolean data use their whole range; wider integers the range of the
    chunk's valid values (one pass). Raises when the dense histogram would exceed
    :data:`HIST_BUDGET` cells.
    """
    dt = x.dtype
    if dt.kind not in "iub":
        raise TypeError(f"histogram statistics need integer values; got {dt}")
    if dt.itemsize == 1:
        lo, n = (0, 2) if dt.kind == "b" else (int(np.iinfo(dt).min), 256)
    else:
        xp = array_module(x)
        valid = x[x != dt.type(nodata)] if has_nodata else x.reshape(-1)
        if valid.size == 0:
            return 0, 1
        lo, hi = int(xp.min(valid)), int(xp.max(valid))
        n = hi - lo + 1
    cells = max(nk, 1) * x.shape[0] * n
    if cells > HIST_BUDGET:
        raise ValueError(
            f"histogram statistics (median, majority, minority, unique, crosstab) on a "
            f"chunk with {nk} zones × {x.shape[0]} steps and values spanning {n} integers "
            f"need {cells} cells (limit {HIST_BUDGET}); reclassify the values to fewer "
            "classes (stengine.ops.local_reclassify) or use smaller chunks")
    return lo, n


def trim(part):
    """Drop zones that got no weight (keeps partials small through the tree)."""
    if part is None:
        return None
    keep = (part["w"] > 0).any(axis=1)
    if keep.all():
        return part
    out = {k: (v[keep] if isinstance(v, np.ndarray) and v.ndim == 2 else v)
           for k, v in part.items() if k not in ("idx", "hist")}
    out["idx"] = part["idx"][keep]
    if "hist" in part:
        out["hist"] = part["hist"]
    return out if out["idx"].size else None


def combine(parts):
    """Merge partials (a tree node): sums add, min/max reduce, M2 by Chan's update."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    idx = np.concatenate([p["idx"] for p in parts])
    order = np.argsort(idx, kind="stable")
    ids = idx[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    out = {"idx": ids[starts]}

    def cat(key):
        return np.concatenate([p[key] for p in parts])[order]

    w = cat("w")
    s = cat("s")
    out["w"] = np.add.reduceat(w, starts, axis=0)
    out["s"] = np.add.reduceat(s, starts, axis=0)
    if "mn" in parts[0]:
        out["mn"] = np.minimum.reduceat(cat("mn"), starts, axis=0)
        out["mx"] = np.maximum.reduceat(cat("mx"), starts, axis=0)
    if "m2" in parts[0]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_i = np.where(w > 0, s / w, 0.0)
            mean = out["s"] / out["w"]
        group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, ids.size]))
        dev = np.where(w > 0, w * (mean_i - mean[group]) ** 2, 0.0)
        out["m2"] = np.add.reduceat(cat("m2") + dev, starts, axis=0)
    if "hist" in parts[0]:
        out["hist"] = _merge_hist([p["hist"] for p in parts])
    return out


def _merge_hist(hists):
    z = np.concatenate([h[0] for h in hists])
    t = np.concatenate([h[1] for h in hists])
    v = np.concatenate([h[2] for h in hists])
    c = np.concatenate([h[3] for h in hists])
    if z.size == 0:
        return z, t, v, c
    order = np.lexsort((v, t, z))
    z, t, v, c = z[order], t[order], v[order], c[order]
    new = np.r_[True, (z[1:] != z[:-1]) | (t[1:] != t[:-1]) | (v[1:] != v[:-1])]
    starts = np.flatnonzero(new)
    return z[starts], t[starts], v[starts], np.add.reduceat(c, starts)


def globalize(part):
    """Turn a chunk partial's local hist zone index into a global zone position."""
    if part is None or "hist" not in part:
        return part
    z, t, v, c = part["hist"]
    part = dict(part)
    part["hist"] = (np.asarray(part["idx"])[z], t, v, c)
    return part


# --------------------------------------------------------------------------- finishing
def dense(part, n_zones: int, L: int, stats, weighted: bool) -> dict[str, np.ndarray]:
    """Arrays (n_zones, L) per statistic; zones without valid pixels: count 0, else NaN."""
    w = np.zeros((n_zones, L))
    out = {}
    if part is not None:
        w[part["idx"]] = part["w"]
    has = w > 0

    def put(key):
        a = np.full((n_zones, L), np.nan)
        if part is not None:
            a[part["idx"]] = part[key]
        return np.where(has, a, np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        for st in stats:
            if st == "count":
                out[st] = w if weighted else np.rint(w).astype(np.int64)
            elif st == "sum":
                out[st] = put("s")
            elif st == "mean":
                out[st] = put("s") / np.where(has, w, 1.0)
            elif st in ("min", "max"):
                out[st] = put("mn" if st == "min" else "mx")
            elif st in ("var", "std"):
                var = np.maximum(put("m2") / np.where(has, w, 1.0), 0.0)
                out[st] = var if st == "var" else np.sqrt(var)
    hist_stats = [st for st in stats if st in ("median", "majority", "minority", "unique")]
    if hist_stats:
        h = part["hist"] if part is not None else (np.zeros(0, np.int64),) * 3 + (np.zeros(0),)
        out.update(_hist_stats(h, n_zones, L, hist_stats))
    return out


def _hist_stats(h, n_zones, L, stats):
    """median / majority / minority / unique from sorted sparse (zone, t, value, weight)."""
    z, t, v, c = h
    keep = c > 0
    z, t, v, c = z[keep], t[keep], v[keep], c[keep]
    out = {}
    g = z * L + t  # group id, already sorted (lexsort by z, t, v)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if g.size else np.zeros(0, np.int64)
    gid = g[starts]
    size = np.diff(np.r_[starts, g.size])
    gi = np.repeat(np.arange(starts.size), size)
    for st in stats:
        res = np.full(n_zones * L, np.nan)
        if st == "unique":
            res = np.zeros(n_zones * L, np.int64)
            res[gid] = size
        elif g.size and st in ("majority", "minority"):
            red = np.maximum if st == "majority" else np.minimum
            best = red.reduceat(c, starts)
            hit = c == best[gi]
            # ties go to the smallest value: the first hit in each (value-sorted) group
            pos = np.where(hit, np.arange(c.size), c.size)
            first = np.minimum.reduceat(pos, starts)
            res[gid] = v[first]
        elif g.size and st == "median":
            cum = np.cumsum(c)
            base = np.r_[0.0, cum[:-1]][starts]
            total = cum[np.r_[starts[1:], g.size] - 1] - base
            # the two middle pixels (0-based ranks (n-1)//2 and n//2), averaged like numpy
            lo_rank = np.floor((total - 1) / 2)
            hi_rank = np.floor(total / 2)
            lo_i = np.searchsorted(cum, base + lo_rank, side="right")
            hi_i = np.searchsorted(cum, base + hi_rank, side="right")
            res[gid] = (v[lo_i].astype(np.float64) + v[hi_i]) / 2
        out[st] = res.reshape(n_zones, L)
    return out


def crosstab(part, n_zones: int, L: int, classes=None):
    """(classes, weights (n_zones, L, n_classes)) from the partial's histogram."""
    if part is None or "hist" not in part:
        z = t = v = np.zeros(0, np.int64)
        c = np.zeros(0)
    else:
        z, t, v, c = part["hist"]
    if classes is None:
        classes = np.unique(v)
    classes = np.asarray(classes)
    out = np.zeros((n_zones, L, classes.size))
    if v.size and classes.size:
        order = np.argsort(classes, kind="stable")  # classes may come in any order
        j = np.searchsorted(classes[order], v).clip(0, classes.size - 1)
        hit = classes[order][j] == v
        np.add.at(out, (z[hit], t[hit], order[j[hit]]), c[hit])
    return classes, out

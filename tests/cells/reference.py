"""Slow, obvious references for the cell ops: the h3 package per point, dicts, loops."""

from __future__ import annotations

import math

import numpy as np
from h3.api import basic_int as h3i


def h3_cells(lon, lat, level):
    """h3.latlng_to_cell per point (uint64), same shape."""
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    out = np.array([h3i.latlng_to_cell(b, a, level) for a, b in zip(lon.ravel(), lat.ravel(),
                                                                      strict=True)],
                   dtype=np.uint64)
    return out.reshape(lon.shape)


def pixel_centres(grid):
    """(lon, lat) meshgrids of a lon/lat Grid's pixel centres."""
    return np.meshgrid(grid.xs(), grid.ys())


def aggregate(values, ids, stat, *, nodata=None, classes=None):
    """{cell: value-per-lead} by brute force. ``values`` (T, ny, nx), ``ids`` (ny, nx)."""
    T = values.shape[0]
    groups: dict[int, list[list]] = {}
    for t in range(T):
        for v, c in zip(values[t].ravel().tolist(), ids.ravel().tolist(), strict=True):
            valid = not (isinstance(v, float) and math.isnan(v)) and not (
                nodata is not None and v == nodata)
            g = groups.setdefault(int(c), [[] for _ in range(T)])
            if valid:
                g[t].append(v)
    out = {}
    for c, per_t in groups.items():
        if not any(per_t):
            continue
        row = []
        for vs in per_t:
            if stat == "count":
                row.append(len(vs))
            elif not vs:
                row.append(None)
            elif stat == "sum":
                row.append(float(np.sum(vs)))
            elif stat == "mean":
                row.append(float(np.mean(vs)))
            elif stat == "min":
                row.append(float(min(vs)))
            elif stat == "max":
                row.append(float(max(vs)))
            elif stat == "fractions":
                row.append([vs.count(k) / len(vs) for k in classes])
            elif stat == "mode":
                counts = [vs.count(k) for k in classes]
                row.append(classes[int(np.argmax(counts))] if max(counts) else None)
        out[c] = row
    return out


def disk(cell, k):
    return set(h3i.grid_disk(int(cell), k))

"""The two per-block groupings of to_cells (hash table, sorted ids) give the same tables."""

from __future__ import annotations

import numpy as np
import pytest

from stengine.index.h3 import grid_to_cells
from stengine.ops._numba import cells as K


def _tables(vals, ids, nodata, spec, classes):
    lut, off = K.class_lut(classes, vals.dtype)
    cls = np.asarray(classes if classes is not None else [], vals.dtype)
    nd = vals.dtype.type(nodata)
    sort = K.table_from_ids(vals, ids, nd, True, spec, cls, lut, off)
    cap = 1 << int(np.ceil(np.log2(2 * ids.size + 2)))
    state = K.empty_state(cap, vals.shape[0], spec)
    assert K.agg_ids(vals, ids, nd, True, *state, cls, lut, off)
    return sort, K.table_from_state(state, spec)


@pytest.mark.parametrize("level", [5, 9])
@pytest.mark.parametrize("kind", ["float", "classes"])
def test_sorted_grouping_equals_hash_grouping(level, kind):
    rng = np.random.default_rng(level)
    lon = 10.0 + (np.arange(90) + 0.5) / 120
    lat = 64.0 - (np.arange(70) + 0.5) / 120
    ids = grid_to_cells(lon, lat, level).view(np.int64).copy()
    ids[rng.random(ids.shape) < 0.05] = 0  # pixels off the grid
    if kind == "float":
        vals = rng.normal(size=(2,) + ids.shape)
        vals[rng.random(vals.shape) < 0.2] = np.nan
        vals[rng.random(vals.shape) < 0.1] = -9.0
        vals[:, :5, :] = -9.0  # all nodata: those cells must not appear
        spec, classes = K.Spec(do_sum=True, do_minmax=True), None
    else:
        vals = rng.integers(0, 5, (3,) + ids.shape).astype(np.uint8)
        spec, classes = K.Spec(classes=[1, 2, 3]), [1, 2, 3]
    nodata = -9.0 if kind == "float" else 0
    a, b = _tables(vals, ids, nodata, spec, classes)
    assert a[0].size > 0 and a[0].size < ids.size
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y)  # bit-equal, sums included

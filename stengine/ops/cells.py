"""Cell ops: rasters → cell cubes, stencils, hexagon-neighbourhood stats, cells → rasters.

A cell cube (see :mod:`stengine.cube.cells`) is ``(time, cells)`` keyed by sorted uint64
H3 or HTM ids. Pixels are assigned to the cell containing their *centre*.

``to_cells`` vs ``coarsen_cells``. H3 children do not nest: the seven children of a
cell cover its hexagon only approximately (the aperture-7 grid is rotated and the child
hexagons poke out of the parent's edges), so the pixels of a level-r cell are not the
union of the pixels of its level-r+1 children. ``to_cells(da, level=r)`` aggregates the
pixels whose centres fall in each level-r cell (exact for that cell's area);
``coarsen_cells(cube, level=r)`` rolls finer cells up to their *index* parent (digit
truncation), which is cheap, needs no raster, but mixes in pixels from just outside the
parent and treats children equally. HTM trixels nest exactly, so for ``count``/``sum``/
``min``/``max``/``fractions`` the two agree there (mean: when children are weighted
equally, ``coarsen_cells`` is the mean of child means).

nodata: float NaN and integer ``attrs["nodata"]`` pixels are skipped; a cell appears in
``to_cells``' output when at least one of its pixels is valid at some time step.

Edges: rasters, masks and cubes without pixels or cells give cubes without cells
(``cells_to_raster``: the fill value everywhere, or the empty raster).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._backends import is_dask
from ..cube import check_dtype, check_raster
from ..cube.cells import (
    CELL_DIM,
    CELL_IDS,
    check_cell_cube,
    check_grid_level,
    chunk_by_parent,
    default_chunk_level,
    make_cell_cube,
)
from ..cube.validate import raster_grid
from ..errors import BackendNotSupported, ChunkError, DimensionError
from . import _cells_lift as cl
from ._numba import cells as _k

__all__ = ["to_cells", "coarsen_cells", "cell_stencil", "cells_to_raster", "cell_focal"]

STATS = ("mean", "sum", "min", "max", "count", "mode", "fractions")
FOCAL_STATS = {"mean": 0, "sum": 1, "min": 2, "max": 3, "majority": 4}


def _check_backend(x, op):
    from .._backends import backend_name

    b = backend_name(x)
    if b != "numpy":
        raise BackendNotSupported(f"{op} has no {b} kernel (available: numpy). Convert with "
                                  "da.as_numpy() first.")


def _nodata(da, nodata):
    nd = da.attrs.get("nodata") if nodata is None else nodata
    if nd is None or (isinstance(nd, float) and np.isnan(nd)):
        return 0, False
    return nd, True


def _spec(stat, classes):
    return _k.Spec(do_sum=stat in ("mean", "sum"), do_minmax=stat in ("min", "max"),
                   classes=classes if stat in ("mode", "fractions") else None)


# --------------------------------------------------------------------------- to_cells
def to_cells(da, grid: str = "h3", *, level: int, stat: str = "mean", classes=None,
             nodata=None, cells=None, chunk_level: int | None = None, dims=None):
    """Aggregate a raster's pixels into the DGGS cells that contain their centres.

    Parameters
    ----------
    da : xarray.DataArray
        ``(y, x)``, ``(time, y, x)`` or any ``(..., y, x)`` raster, numpy or dask; lon/lat
        (EPSG:4326 or no CRS with lon/lat coordinates) or projected with a CRS (pixel
        centres are transformed with pyproj, slower).
    grid : {"h3", "htm"}
        Cell grid; ``level`` is its resolution (H3 0..15, HTM 0..29).
    stat : {"mean", "sum", "min", "max", "count", "mode", "fractions"}
        Per cell and leading step. ``count`` counts valid pixels; ``mode`` is the majority
        class (ties: the smallest class); ``fractions`` adds a ``class`` dim with the share
        of each class among the cell's valid pixels (nodata excluded from the
        denominator, values outside ``classes`` included).
    classes : sequence, optional
        Class values for ``mode``/``fractions``; required for dask input (finding them
        would read everything), default ``np.unique`` of in-memory data.
    nodata : number, optional
        Integer nodata to skip; default ``da.attrs["nodata"]``. NaN is always skipped.
    cells : cell cube or array of ids, optional
        Output exactly these cells (a stencil), in id order; cells without valid pixels
        get NaN (``count``: 0, ``mode``: nodata).
    chunk_level : int, optional
        Chunk the output by parent at this level (default for dask input: level − 4 for
        H3, − 6 for HTM).

    Returns
    -------
    xarray.DataArray
        Cell cube ``(..., cells)`` (``(..., cells, class)`` for fractions) with uint64
        ``cell_ids``; attrs ``grid_name``, ``level``, ``stat``. The op computes: the set of
        cells is known only after the pixels are assigned, and the result is a reduction
        (one row per cell, far fewer than pixels).

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.grid import Grid
    >>> g = Grid.from_bbox((0, 0, 4, 2), 0.5, crs=4326)
    >>> da = stengine.cube.make_raster(np.arange(32.0).reshape(4, 8), g)
    >>> cube = da.st.to_cells("h3", level=2, stat="count")
    >>> cube.dims, int(cube.sum()), cube.attrs["grid_name"]
    (('cells',), 32, 'h3')
    """
    op = "to_cells"
    grid, level = check_grid_level(grid, level, op=op)
    if stat not in STATS:
        raise ValueError(f"{op}: stat must be one of {STATS}; got {stat!r}")
    ydim, xdim = check_raster(da, dims, op=op)
    check_dtype(da, "biuf", op=op)
    _check_backend(da.data, op)
    frame = cl.lonlat_frame(da, (ydim, xdim), op=op)
    if grid == "htm":
        cl.htm_module(op)
    nd, has_nd = _nodata(da, nodata)
    if stat in ("mode", "fractions"):
        if classes is None:
            if is_dask(da.data):
                raise ChunkError(f"{op}: stat={stat!r} on dask data needs classes= (finding "
                                 "them would read all pixels). Pass e.g. classes=[1, 2, 3].")
            v = np.unique(np.asarray(da.values))
            classes = v[~np.isnan(v)] if v.dtype.kind == "f" else v
            classes = classes[classes != nd] if has_nd else classes
        classes = np.unique(np.asarray(classes))
    spec = _spec(stat, classes)
    lut, lut_off = _k.class_lut(classes, da.dtype)
    cls_arr = np.asarray(classes if classes is not None else [], dtype=da.dtype) \
        if classes is not None else np.zeros(0, da.dtype)
    src = da.transpose(..., ydim, xdim)
    lead_dims = src.dims[:-2]
    lead_shape = src.shape[:-2]
    T = int(np.prod(lead_shape, dtype=np.int64))
    ncl = cl.n_cells(grid, level)

    def block_fn(block, rows, cols, lead):
        vals = np.ascontiguousarray(block).reshape(-1, block.shape[-2], block.shape[-1])
        lon, lat = frame.block_lonlat(rows, cols)
        ok_lon = lon[np.isfinite(lon)] if lon.size else lon
        rng_lon = (ok_lon.min(), ok_lon.max()) if ok_lon.size else (0.0, 0.0)
        ok_lat = lat[np.isfinite(lat)] if lat.size else lat
        rng_lat = (ok_lat.min(), ok_lat.max()) if ok_lat.size else (0.0, 0.0)
        est = _k.estimate_cells(rng_lon, rng_lat, ncl, vals.shape[1] * vals.shape[2])
        ndv = vals.dtype.type(nd) if has_nd else vals.dtype.type(0)
        npix = vals.shape[1] * vals.shape[2]
        if 2 * est > npix:  # about one cell per pixel or less: group by sorting the ids
            ids = cl.pixel_cell_ids(lon, lat, grid, level)
            return _k.table_from_ids(vals, ids, ndv, has_nd, spec, cls_arr, lut, lut_off)
        ids = None
        if not (frame.is_lonlat and grid == "h3"):
            ids = cl.pixel_cell_ids(lon, lat, grid, level)
        cap = cl.capacity(est)
        while True:
            state = _k.empty_state(cap, vals.shape[0], spec)
            if ids is None:
                from ..index._h3_arrays import axes, grid_state, grid_trig

                ok = _k.agg_h3_grid(vals, *grid_trig(lon, lat), level, axes(level),
                                    *grid_state(lon, lat, level), ndv, has_nd, *state,
                                    cls_arr, lut, lut_off)
            else:
                ok = _k.agg_ids(vals, ids, ndv, has_nd, *state, cls_arr, lut, lut_off)
            if ok:
                return _k.table_from_state(state, spec)
            cap *= 4

    def assemble(per_lead):
        return _assemble(per_lead, lead_shape, T, spec)

    table = cl.reduce_to_table(src.data, block_fn, _k.merge_tables, assemble)
    out = _finalize(table, stat, spec, da, nd, has_nd, T, lead_shape)
    ids, values = out
    if cells is not None:
        ids, values = _reindex(ids, values, cells, stat, nd, has_nd)
    dims_out = (*lead_dims, CELL_DIM) + (("class",) if stat == "fractions" else ())
    coords = {k: v for k, v in src.coords.items() if v.dims and set(v.dims) <= set(lead_dims)}
    if stat == "fractions":
        coords["class"] = np.asarray(classes)
    attrs = {k: v for k, v in da.attrs.items() if k not in ("nodata", "_FillValue")}
    attrs["stat"] = stat
    if stat == "mode" and values.dtype.kind in "iub":
        attrs["nodata"] = nd if has_nd else 0
    cube = make_cell_cube(values, ids, grid=grid, level=level, dims=dims_out, coords=coords,
                          name=da.name, attrs=attrs)
    if chunk_level is None and is_dask(da.data):
        chunk_level = default_chunk_level(grid, level)
    return chunk_by_parent(cube, chunk_level) if chunk_level is not None else cube


def _assemble(per_lead, lead_shape, T, spec):
    """One table over all leading steps from per-leading-block tables."""
    tables = [(lead, t) for lead, t in per_lead if t is not None and t[0].size]
    if not tables:
        return (np.zeros(0, np.uint64), np.zeros((0, T), np.int64),
                np.zeros((0, T)) if spec.do_sum else None,
                np.zeros((0, T)) if spec.do_minmax else None,
                np.zeros((0, T)) if spec.do_minmax else None,
                np.zeros((0, T, spec.nclass), np.int64) if spec.nclass else None)
    if len(tables) == 1 and tables[0][1][1].shape[1] == T:
        return tables[0][1]
    ids = np.unique(np.concatenate([t[0] for _, t in tables]))
    m = ids.size
    n = np.zeros((m, T), np.int64)
    s = np.zeros((m, T)) if spec.do_sum else None
    mn = np.full((m, T), np.inf) if spec.do_minmax else None
    mx = np.full((m, T), -np.inf) if spec.do_minmax else None
    cnt = np.zeros((m, T, spec.nclass), np.int64) if spec.nclass else None
    flat = np.arange(T).reshape(lead_shape) if lead_shape else np.arange(1)
    for lead, t in tables:
        cols = flat[lead].reshape(-1) if lead_shape else np.arange(1)
        rows = np.searchsorted(ids, t[0])[:, None]
        n[rows, cols] += t[1]
        if s is not None:
            s[rows, cols] += t[2]
        if mn is not None:
            mn[rows, cols] = np.minimum(mn[rows, cols], t[3])
            mx[rows, cols] = np.maximum(mx[rows, cols], t[4])
        if cnt is not None:
            cnt[rows, cols] += t[5]
    return ids, n, s, mn, mx, cnt


def _finalize(table, stat, spec, da, nd, has_nd, T, lead_shape):
    ids, n, s, mn, mx, cnt = table
    with np.errstate(invalid="ignore", divide="ignore"):
        if stat == "count":
            v = n
        elif stat == "sum":
            v = np.where(n > 0, s, np.nan)
        elif stat == "mean":
            v = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        elif stat == "min":
            v = np.where(n > 0, mn, np.nan)
        elif stat == "max":
            v = np.where(n > 0, mx, np.nan)
        elif stat == "fractions":
            v = np.where(n[..., None] > 0, cnt / np.maximum(n, 1)[..., None], np.nan)
        else:  # mode: ties go to the smallest class (argmax takes the first maximum)
            best = np.argmax(cnt, axis=-1)
            has = cnt.max(axis=-1, initial=0) > 0
            cls = np.asarray(spec.classes, dtype=da.dtype)
            fill = (nd if has_nd else 0) if da.dtype.kind in "iub" else np.nan
            v = np.where(has, cls[best] if cls.size else fill, fill).astype(
                da.dtype if da.dtype.kind in "iub" else np.float64)
    # (cells, T[, class]) → (lead..., cells[, class])
    v = np.moveaxis(v, 0, 1)
    v = v.reshape(*lead_shape, *v.shape[1:])
    return ids, v


def _reindex(ids, values, cells, stat, nd, has_nd):
    want = cells[CELL_IDS].values if isinstance(cells, xr.DataArray) else np.asarray(cells)
    want = np.unique(want.astype(np.uint64))
    axis = values.ndim - (2 if stat == "fractions" else 1)
    fill = 0 if stat == "count" else ((nd if has_nd else 0) if values.dtype.kind in "iub"
                                      else np.nan)
    out = np.full(values.shape[:axis] + (want.size,) + values.shape[axis + 1:], fill,
                  dtype=values.dtype)
    pos = np.searchsorted(want, ids)
    hit = (pos < want.size) & (want[np.minimum(pos, want.size - 1)] == ids)
    src = [slice(None)] * values.ndim
    dst = [slice(None)] * values.ndim
    src[axis] = np.nonzero(hit)[0]
    dst[axis] = pos[hit]
    out[tuple(dst)] = values[tuple(src)]
    return want, out


# --------------------------------------------------------------------------- coarsen
def coarsen_cells(cube, level: int, *, stat: str = "mean"):
    """Roll a cell cube up to its index parents at ``level`` (see module docs vs to_cells).

    ``stat``: ``mean``/``sum``/``min``/``max`` of the child values (NaN skipped; all-NaN
    → NaN), ``count`` of non-NaN children, ``mode`` (majority child value, ties: the
    smallest). Lazy for dask cubes: chunks aligned with parents at ``level`` or coarser
    are reduced chunk by chunk; others are first rechunked by parent at ``level``.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.grid import Grid
    >>> g = Grid.from_bbox((0, 0, 4, 2), 0.25, crs=4326)
    >>> da = stengine.cube.make_raster(np.ones((8, 16)), g)
    >>> fine = da.st.to_cells("h3", level=4, stat="count")
    >>> coarse = stengine.ops.coarsen_cells(fine, 2, stat="sum")
    >>> int(coarse.sum()), coarse.attrs["level"]
    (128, 2)
    """
    op = "coarsen_cells"
    grid, fine = check_cell_cube(cube, op=op)
    check_dtype(cube, "biuf", op=op, name="cube")
    grid, level = check_grid_level(grid, level, op=op)
    if level > fine:
        raise ValueError(f"{op}: level {level} is finer than the cube's level {fine}")
    if stat not in ("mean", "sum", "min", "max", "count", "mode"):
        raise ValueError(f"{op}: stat must be mean, sum, min, max, count or mode; got {stat!r}")
    from ..cube.cells import parent_ids

    _check_backend(cube.data, op)
    parents = parent_ids(cube[CELL_IDS].values, grid, fine, level)
    axis = cube.get_axis_num(CELL_DIM)
    if is_dask(cube.data):
        cl_ = cube.attrs.get("chunk_level")
        if cl_ is None or cl_ > level:
            cube = chunk_by_parent(cube, level)
        bounds = np.r_[0, np.cumsum(cube.chunks[axis])]
        out_sizes = tuple(int(np.unique(parents[a:b]).size)
                          for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        data = cube.data.map_blocks(_coarsen_block, parents, bounds, axis, stat,
                                    chunks=cube.data.chunks[:axis] + (out_sizes,)
                                    + cube.data.chunks[axis + 1:],
                                    dtype=np.float64 if stat != "count" else np.int64,
                                    meta=np.empty((0,) * cube.ndim))
    else:
        data = _coarsen(np.asarray(cube.data), parents, axis, stat)
    ids = np.unique(parents)
    coords = {k: v for k, v in cube.coords.items() if CELL_DIM not in v.dims}
    attrs = dict(cube.attrs, level=level)
    if "chunk_level" in attrs:
        attrs["chunk_level"] = min(int(attrs["chunk_level"]), level)
    out = xr.DataArray(data, dims=cube.dims, coords=coords, name=cube.name, attrs=attrs)
    return out.assign_coords({CELL_IDS: (CELL_DIM, ids, {"grid_name": grid, "level": level})})


def _coarsen_block(block, parents, bounds, axis, stat, block_info=None):
    i = block_info[0]["chunk-location"][axis]
    return _coarsen(block, parents[bounds[i]:bounds[i + 1]], axis, stat)


def _coarsen(x, parents, axis, stat):
    x = np.moveaxis(np.asarray(x), axis, -1)
    if parents.size == 0:
        return np.moveaxis(x.astype(np.float64), -1, axis)
    starts = np.r_[0, np.nonzero(parents[1:] != parents[:-1])[0] + 1]
    xf = x.astype(np.float64)
    valid = ~np.isnan(xf)
    cnt = np.add.reduceat(valid, starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if stat == "count":
            out = cnt.astype(np.int64)
        elif stat in ("mean", "sum"):
            tot = np.add.reduceat(np.where(valid, xf, 0.0), starts, axis=-1)
            out = np.where(cnt > 0, tot / (cnt if stat == "mean" else 1), np.nan)
        elif stat in ("min", "max"):
            fill = np.inf if stat == "min" else -np.inf
            uf = np.minimum if stat == "min" else np.maximum
            out = uf.reduceat(np.where(valid, xf, fill), starts, axis=-1)
            out = np.where(cnt > 0, out, np.nan)
        else:
            lead = xf.reshape(-1, xf.shape[-1])
            res = np.empty((lead.shape[0], starts.size))
            stops = np.r_[starts[1:], xf.shape[-1]]
            for r in range(lead.shape[0]):
                for g, (a, b) in enumerate(zip(starts, stops, strict=True)):
                    v = lead[r, a:b]
                    v = v[~np.isnan(v)]
                    if v.size == 0:
                        res[r, g] = np.nan
                        continue
                    u, c = np.unique(v, return_counts=True)
                    res[r, g] = u[np.argmax(c)]
            out = res.reshape(*xf.shape[:-1], starts.size)
    return np.moveaxis(out, -1, axis)


# --------------------------------------------------------------------------- focal
def cell_focal(cube, k: int = 1, *, stat: str = "mean", skipna: bool = True):
    """k-ring statistic over each cell's neighbourhood (the cell and cells ≤ k steps away).

    Only cells present in the cube take part: cells outside it (outside a stencil, or
    missing) are ignored, and pentagons simply have fewer neighbours. NaN values are
    skipped (``skipna=False``: any NaN in the ring gives NaN). H3 rings come from
    ``grid_disk`` (the h3 package, per cell, when the graph is built); HTM rings are
    edge neighbours, k times. For dask cubes each chunk reads its own cells plus a halo:
    only the ring cells that live in other chunks, gathered from those chunks.

    Parameters
    ----------
    stat : {"mean", "sum", "min", "max", "majority"}
        ``majority`` is the most frequent value (ties: the smallest).

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.index import h3 as sth3
    >>> c = sth3.lonlat_to_cell(10.0, 50.0, 6)
    >>> ring = sth3.grid_disk([c], 1)[0]
    >>> cube = stengine.cube.cells.make_cell_cube(np.arange(7.0), ring, grid="h3", level=6)
    >>> out = stengine.ops.cell_focal(cube, 1, stat="max")
    >>> float(out.sel(cells=int(np.nonzero(cube.cell_ids.values == c)[0][0])))
    6.0
    """
    op = "cell_focal"
    grid, level = check_cell_cube(cube, op=op)
    check_dtype(cube, "biuf", op=op, name="cube")
    if stat not in FOCAL_STATS:
        raise ValueError(f"{op}: stat must be one of {tuple(FOCAL_STATS)}; got {stat!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"{op}: k must be a non-negative integer; got {k!r}")
    _check_backend(cube.data, op)
    ids = cube[CELL_IDS].values
    if cube.size == 0:  # no cells (or a 0-length time axis): the empty result
        out = cube.astype(np.float64)  # the dtype of every cell_focal result
        out.attrs = dict(cube.attrs, focal=f"{stat} k={k}")
        return out
    ring = _rings(ids, grid, level, int(k))
    pos = np.searchsorted(ids, ring)
    pos = np.minimum(pos, max(ids.size - 1, 0))
    nbr = np.where((ring != 0) & (ids[pos] == ring) if ids.size else ring != ring, pos, -1)
    src = cube.transpose(..., CELL_DIM)
    code = FOCAL_STATS[stat]
    if not is_dask(src.data):
        v = np.asarray(src.data, np.float64).reshape(-1, ids.size)
        data = _k.focal(v, nbr, code, skipna).reshape(src.shape)
    else:
        data = _focal_dask(src.data, nbr, code, skipna)
    out = src.copy(data=data)
    out.attrs = dict(cube.attrs, focal=f"{stat} k={k}")
    return out.transpose(*cube.dims)


def _rings(ids, grid, level, k):
    if grid == "h3":
        from ..index.h3 import grid_disk

        return grid_disk(ids, k).astype(np.uint64)
    from ._cells_htm import htm_rings

    return htm_rings(ids, level, k)


def _focal_chunk(pieces, nbr_local, code, skipna):
    local = np.concatenate([np.asarray(p, np.float64) for p in pieces], axis=-1)
    lead = local.shape[:-1]
    v = local.reshape(-1, local.shape[-1])
    return _k.focal(v, nbr_local, code, skipna).reshape(*lead, nbr_local.shape[0])


def _focal_gather(blocks, takes, remap, code, skipna):
    """One chunk's ring statistic: its own block plus the halo cells taken from others."""
    pieces = [b if idx is None else np.take(b, idx, axis=-1)
              for b, idx in zip(blocks, takes, strict=True)]
    return _focal_chunk(pieces, remap, code, skipna)


def _focal_dask(x, nbr, code, skipna):
    """One task per chunk: its block plus a halo taken from the chunks owning ring cells.

    The graph is written directly (one task per chunk referencing the neighbour chunks'
    keys): building it through ``dask.delayed`` cost seconds per thousand chunks.
    """
    import dask.array as dsa
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    x = x.rechunk({i: -1 for i in range(x.ndim - 1)})
    lead = (0,) * (x.ndim - 1)
    bounds = np.r_[0, np.cumsum(x.chunks[-1])]
    name = "cell_focal-" + tokenize(x, nbr, code, skipna)
    dsk = {}
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        rows = nbr[a:b]
        used = np.unique(rows[rows >= 0])
        halo = used[(used < a) | (used >= b)]
        owner = np.searchsorted(bounds, halo, side="right") - 1
        keys, takes, local_pos = [(x.name, *lead, i)], [None], [np.arange(a, b)]
        for j in np.unique(owner):
            idx = halo[owner == j]
            keys.append((x.name, *lead, int(j)))
            takes.append((idx - bounds[j]).astype(np.int32))
            local_pos.append(idx)
        local_pos = np.concatenate(local_pos)
        order = np.argsort(local_pos)
        # the graph carries one entry per cell and ring slot: the narrowest int that holds
        # the chunk's local positions keeps a global k-ring graph small
        remap = np.full(rows.shape, -1, np.int16 if local_pos.size < 2**15 else np.int32)
        ok = rows >= 0
        remap[ok] = order[np.searchsorted(local_pos[order], rows[ok])]
        dsk[(name, *lead, i)] = (_focal_gather, keys, takes, remap, code, skipna)
    if not dsk:
        return x.astype(np.float64)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    return dsa.Array(graph, name, chunks=x.chunks, dtype=np.float64,
                     meta=np.empty((0,) * x.ndim, np.float64))


# --------------------------------------------------------------------------- stencils and maps
def cell_stencil(source, grid: str = "h3", *, level: int, chunk_level: int | None = None,
                 dims=None):
    """The cells whose centre is inside a mask (True/non-zero pixels) or inside polygons.

    ``source``: a raster mask (DataArray; centres are looked up in the pixel containing
    them, edges belonging to the pixel on the east/south) or polygons (GeoDataFrame,
    GeoSeries, shapely geometry or a list; lon/lat or with a CRS; centres on a boundary
    are outside). Returns a boolean ``(cells,)`` cube of True, sorted by id — pass it as
    ``cells=`` to :func:`to_cells` or to :func:`stengine.cube.cells.restrict`.

    Examples
    --------
    >>> import numpy as np, shapely, stengine
    >>> box = shapely.box(5.0, 45.0, 10.0, 48.0)
    >>> st = stengine.ops.cell_stencil(box, "h3", level=3)
    >>> st.dims, st.sizes["cells"] > 0, bool(st.all())
    (('cells',), True, True)
    """
    from ._cells_stencil import stencil_ids

    grid, level = check_grid_level(grid, level, op="cell_stencil")
    ids = stencil_ids(source, grid, level, dims=dims)
    return make_cell_cube(np.ones(ids.size, bool), ids, grid=grid, level=level,
                          name="stencil", chunk_level=chunk_level)


def cells_to_raster(cube, like, *, fill=None, dims=("y", "x")):
    """Paint a cell cube onto a raster grid: each pixel takes its centre's cell's value.

    ``like`` is a :class:`~stengine.grid.Grid` or a raster (its grid; its dask chunks are
    kept). Pixels whose cell is not in the cube get ``fill`` (default NaN, or the cube's
    integer ``nodata``). Leading dims of the cube (``time``, ``class``) lead the output.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.grid import Grid
    >>> g = Grid.from_bbox((0, 0, 4, 2), 0.5, crs=4326)
    >>> da = stengine.cube.make_raster(np.arange(32.0).reshape(4, 8), g)
    >>> back = stengine.ops.cells_to_raster(da.st.to_cells("h3", level=1), g)
    >>> back.dims, back.shape, bool(np.isfinite(back).all())
    (('y', 'x'), (4, 8), True)
    """
    from ..cube import make_raster
    from ..grid import Grid

    op = "cells_to_raster"
    grid_name, level = check_cell_cube(cube, op=op)
    check_dtype(cube, "biuf", op=op, name="cube")
    _check_backend(cube.data, op)
    if isinstance(like, xr.DataArray):
        ydim, xdim = check_raster(like, dims, op=op, name="like")
        g = raster_grid(like, dims=(ydim, xdim))
        chunks = None
        if like.chunks:
            chunks = (like.chunks[like.get_axis_num(ydim)], like.chunks[like.get_axis_num(xdim)])
    elif isinstance(like, Grid):
        g, chunks = like, None
    else:
        raise TypeError(f"{op}: like must be a Grid or a raster DataArray; got "
                        f"{type(like).__name__}")
    frame = cl.lonlat_frame(g, dims, op=op, name="like")
    src = cube.transpose(..., CELL_DIM)
    lead_dims = src.dims[:-1]
    lead_shape = src.shape[:-1]
    ids = src[CELL_IDS].values
    if fill is None:
        fill = cube.attrs.get("nodata", 0) if src.dtype.kind in "iub" else np.nan
    out_dtype = np.dtype(np.result_type(src.dtype, np.min_scalar_type(fill))
                         if src.dtype.kind in "iub" else np.float64)

    def paint(values, rows, cols):
        lon, lat = frame.block_lonlat(rows, cols)
        cells = cl.pixel_cell_ids(lon, lat, grid_name, level)
        v = np.asarray(values, out_dtype).reshape(int(np.prod(lead_shape, dtype=np.int64)),
                                                  ids.size)
        if ids.size == 0 or v.size == 0 or cells.size == 0:  # nothing to look up: all fill
            out = np.full((v.shape[0], *cells.shape), fill, out_dtype)
        else:
            out = _k.gather(cells, ids, v, fill)
        return out.reshape(*lead_shape, *out.shape[1:])

    ny, nx = g.shape
    if chunks is None and not is_dask(src.data):
        data = paint(src.values, slice(0, ny), slice(0, nx))
    else:
        import dask.array as dsa
        from dask import delayed

        cy, cx = chunks if chunks is not None else ((ny,), (nx,))
        vals = delayed(np.asarray)(src.data)
        oy, ox = np.r_[0, np.cumsum(cy)], np.r_[0, np.cumsum(cx)]
        rows_ = []
        for i in range(len(cy)):
            row = []
            for j in range(len(cx)):
                r, c = slice(int(oy[i]), int(oy[i + 1])), slice(int(ox[j]), int(ox[j + 1]))
                row.append(dsa.from_delayed(delayed(paint)(vals, r, c),
                                            (*lead_shape, cy[i], cx[j]), dtype=out_dtype))
            rows_.append(row)
        data = dsa.block([[b for b in row] for row in rows_]) if not lead_shape else \
            dsa.concatenate([dsa.concatenate(r, axis=-1) for r in rows_], axis=-2)
    coords = {k: v for k, v in src.coords.items() if v.dims and set(v.dims) <= set(lead_dims)}
    attrs = {k: v for k, v in cube.attrs.items() if k not in ("chunk_level",)}
    if out_dtype.kind in "iub":
        attrs["nodata"] = fill
    if not lead_dims and len(dims) != 2:
        raise DimensionError(f"{op}: dims must be (y, x); got {dims!r}")
    return make_raster(data, g, dims=(*lead_dims, *dims), coords=coords, name=cube.name,
                       attrs=attrs)

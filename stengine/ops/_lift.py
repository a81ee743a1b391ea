"""The only place that knows about dask: lift per-block kernels to whole arrays.

Every lifter has an eager path (numpy / CuPy / simulated device arrays: the kernel
runs once on the whole array) and a lazy path (dask: the kernel runs per chunk), so
the same kernel code serves all backends.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from .._backends import array_module, is_dask


def meta_like(x, dtype, ndim: int):
    """An empty array of ``x``'s block type (numpy, CuPy, simulated) with ``dtype`` and ``ndim``."""
    base = x._meta if is_dask(x) else x
    xp = array_module(base)
    out = xp.empty((0,) * ndim, dtype=dtype)
    if type(base) is not type(out) and isinstance(base, np.ndarray):
        out = out.view(type(base))  # keep ndarray subclasses (simulated device arrays)
    return out


def empty_like_block(x, shape, dtype):
    """An uninitialised array of ``x``'s block type (numpy, CuPy, simulated) of ``shape``."""
    xp = array_module(x)
    out = xp.empty(shape, dtype=dtype)
    if type(x) is not type(out) and isinstance(x, np.ndarray):
        out = out.view(type(x))
    return out


def zeros_like_block(x, shape, dtype):
    """Zeros of ``x``'s block type (numpy, CuPy, simulated) of ``shape``."""
    out = empty_like_block(x, shape, dtype)
    out[...] = 0
    return out


def _skip_empty(kernel, dtype):
    """``kernel`` that never sees an empty block: zero-size blocks (a raster with a 0-length
    dim) give an empty result of ``dtype`` and the broadcast shape, on every backend."""
    def run(*blocks, **kw):
        shapes = [np.shape(b) for b in blocks]
        shape = np.broadcast_shapes(*shapes)
        if 0 in shape:
            first = next((b for b in blocks if hasattr(b, "dtype") and np.ndim(b)), blocks[0])
            return empty_like_block(first, shape, dtype)
        return kernel(*blocks, **kw)

    run.__name__ = getattr(kernel, "__name__", "kernel")
    return run


def lift_map(kernel, *rasters, dtype, kwargs=None, keep_attrs=True, attrs=None, name=None,
             block_info: bool = False):
    """Apply an elementwise ``kernel(*blocks, **kwargs)`` to aligned rasters, chunk by chunk.

    ``rasters`` are DataArrays on one grid (callers check with ``check_same_grid``);
    broadcasting follows xarray (e.g. ``(time, y, x)`` with ``(y, x)``). Output
    chunks equal the first input's chunks. ``attrs`` (if given) replaces the output's attrs.
    Zero-size blocks never reach ``kernel``: they give an empty block of ``dtype``.
    ``block_info=True`` passes ``block_info={"location": ((start, stop), ...)}`` (the
    block's place in the whole output, per axis) to ``kernel``, e.g. for messages.
    """
    first = rasters[0]
    out = xr.apply_ufunc(
        _blockwise, *rasters,
        kwargs={"kernel": _skip_empty(kernel, dtype), "dtype": np.dtype(dtype),
                "kwargs": kwargs or {}, "block_info": block_info},
        dask="allowed",  # _blockwise lifts dask inputs itself, as one fusable layer
        join="override",  # grids were checked; float noise in coords must not drop pixels
        keep_attrs=keep_attrs,
    )
    if len(rasters) > 1:
        out = out.transpose(*[d for d in first.dims if d in out.dims],
                            *[d for d in out.dims if d not in first.dims])
    if attrs is not None:
        out.attrs = dict(attrs)
    out.name = name if name is not None else first.name
    if "grid_mapping" in first.encoding:
        out.encoding["grid_mapping"] = first.encoding["grid_mapping"]
    return out


def _blockwise(*arrays, kernel, dtype, kwargs, block_info=False):
    """``kernel(*blocks, **kwargs)`` per aligned chunk; xarray has already ordered the
    dims and inserted size-1 axes for broadcasting.

    A plain ``blockwise`` layer (not ``apply_gufunc``, whose extra output layer stops
    dask from fusing the op with what reads its input and what consumes its output).
    """
    import dask.array as dsa

    if not any(is_dask(a) for a in arrays):
        if block_info:
            shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
            kwargs = dict(kwargs, block_info={"location": tuple((0, n) for n in shape)})
        return kernel(*arrays, **kwargs)
    ndim = max(np.ndim(a) for a in arrays)
    first = next(a for a in arrays if is_dask(a))
    args = []
    for a in arrays:
        if not is_dask(a):
            a = dsa.from_array(a, chunks=-1, asarray=False)
        args += [a, tuple(range(ndim - a.ndim, ndim))]
    if block_info:  # each block also gets its slice of arange(n) per axis: its location
        shape = np.broadcast_shapes(*(a.shape for a in args[::2]))
        for ax, n in enumerate(shape):
            src = next((a for a in args[::2] if a.shape[ax] == n), first)
            args += [dsa.from_array(np.arange(n), chunks=(src.chunks[ax],)), (ax,)]
        kernel = functools.partial(_located, kernel, len(arrays))
    return dsa.blockwise(kernel, tuple(range(ndim)), *args, dtype=dtype,
                         meta=meta_like(first, dtype, ndim), align_arrays=True,
                         concatenate=True, **kwargs)


def _located(kernel, narrays, *blocks, **kw):
    """``kernel(*data_blocks, block_info={"location": ...})`` from the data blocks and,
    after them, one slice of ``arange`` per axis (where the block lies)."""
    loc = tuple((int(r[0]), int(r[-1]) + 1) if r.size else (0, 0) for r in blocks[narrays:])
    return kernel(*blocks[:narrays], block_info={"location": loc}, **kw)


def lift_block_counts(kernel, da, *, dims, nbins: int | None, new_dim: str | None = None,
                      new_coord=None, kwargs=None, name=None) -> xr.DataArray:
    """Per-chunk counts over the spatial ``dims``, summed in one task (a tree over more
    than :data:`ONE_COMBINE_MAX` chunks).

    ``kernel(block, **kwargs)`` takes a block whose last two axes are ``dims`` and returns
    int64 counts of shape ``block.shape[:-2] + (nbins,)`` (or ``block.shape[:-2]`` when
    ``nbins`` is None). The result keeps the other dims of ``da`` and adds ``new_dim``
    (size ``nbins``) last; it is lazy for dask input.
    """
    import dask.array as dsa

    kwargs = kwargs or {}
    if da.dims[-2:] != tuple(dims):
        da = da.transpose(..., *dims)
    x = da.data
    lead = da.dims[:-2]
    bins = () if nbins is None else (nbins,)
    kernel = functools.partial(_counts, kernel, bins)
    if is_dask(x) and nbins is None:
        # the kernel is the reduction's chunk step, so it fuses with the read (one task
        # per chunk, as a plain (x == v).sum() gets)
        data = dsa.reduction(
            x, functools.partial(_count_chunk, kernel, kwargs), _sum_int64,
            axis=(x.ndim - 2, x.ndim - 1), dtype=np.int64,
            meta=meta_like(x, np.int64, x.ndim - 2), concatenate=True,
            split_every=_split_every(x))
    elif is_dask(x):
        nby, nbx = x.numblocks[-2:]
        per_block = x.map_blocks(
            _counts_block, kernel, kwargs, len(bins),
            chunks=(*x.chunks[:-2], (1,) * nby, (1,) * nbx, *((b,) for b in bins)),
            new_axis=list(range(x.ndim, x.ndim + len(bins))), dtype=np.int64,
            meta=meta_like(x, np.int64, x.ndim + len(bins)))
        data = dsa.reduction(  # dask's reduction, keeping the block type in meta
            per_block, _sum_int64, _sum_int64, axis=(x.ndim - 2, x.ndim - 1),
            dtype=np.int64, meta=meta_like(x, np.int64, x.ndim - 2 + len(bins)),
            concatenate=True, split_every=_split_every(x))
    else:
        data = kernel(x, **kwargs)
    coords = {k: v for k, v in da.coords.items() if v.dims and set(v.dims) <= set(lead)}
    out_dims = lead
    if nbins is not None:
        coords[new_dim] = new_coord
        out_dims = (*lead, new_dim)
    return xr.DataArray(data, dims=out_dims, coords=coords, name=name)


# A reduction over at most this many spatial chunks combines their partials in ONE task
# (partials are a few int64 each: summing a thousand costs well under a millisecond,
# while each level of a tree costs a scheduler round trip); more chunks get a tree.
ONE_COMBINE_MAX = 1024


def _split_every(x):
    """``split_every`` of a reduction over the last two axes of dask array ``x``."""
    nby, nbx = x.numblocks[-2:]
    if nby * nbx > ONE_COMBINE_MAX:
        return None  # dask's default tree
    return {x.ndim - 2: max(nby, 2), x.ndim - 1: max(nbx, 2)}


def _counts(kernel, bins, block, **kw):
    """``kernel(block)``, or zero counts for a block without pixels (zero-size dims)."""
    if block.size == 0:
        return zeros_like_block(block, (*block.shape[:-2], *bins), np.int64)
    return kernel(block, **kw)


def _count_chunk(kernel, kwargs, block, axis, keepdims):
    out = kernel(block, **kwargs)
    return out[..., None, None] if keepdims else out


def _counts_block(block, kernel, kwargs, nbins_axes):
    out = kernel(block, **kwargs)
    return out[..., None, None, :] if nbins_axes else out[..., None, None]


def _sum_int64(x, axis, keepdims):
    return x.sum(axis=axis, keepdims=keepdims, dtype=np.int64)


# --------------------------------------------------------------------------- focal
# Raster-edge rules of focal ops: what a window sees beyond the raster's edge.
FOCAL_BOUNDARIES = ("nan", "nearest", "reflect", "wrap")


def _edge_source(idx, n, rule):
    """Source index of padded positions ``idx`` (all outside ``[0, n)`` on one side).

    Halos wider than the raster repeat the rule, as ``numpy.pad`` does: ``reflect`` is
    periodic with period ``2n`` (``numpy.pad``'s ``"symmetric"``), ``wrap`` with ``n``.
    """
    if rule == "nearest":
        return np.clip(idx, 0, n - 1)
    if rule == "reflect":  # mirror including the edge cell: c b a | a b c (scipy's 'reflect')
        m = idx % (2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    return idx % n  # wrap


def _runs(src, blk):
    """``(start, stop, step)`` runs of ``src`` with one source block and a constant step
    of +1, -1 or 0 (a run of one cell has step +1)."""
    out = []
    a, step = 0, None
    for i in range(1, src.size):
        d = int(src[i] - src[i - 1])
        if blk[i] == blk[a] and d in (-1, 0, 1) and (step is None or d == step):
            step = d
            continue
        out.append((a, i, 1 if step is None else step))
        a, step = i, None
    out.append((a, src.size, 1 if step is None else step))
    return out


def _axis_plan(chunks, h, rule):
    """Per block of one axis: ``(segments, (v0, v1), padded_len)``.

    A segment ``(d0, d1, block, src)`` copies ``block[src]`` into padded positions
    ``[d0, d1)``; ``block == -1`` marks positions beyond the raster edge under the
    ``"nan"`` rule (left unfilled; the kernel treats ``[v0, v1)`` as the only valid
    range). Sources may be any block, not only neighbours, so chunks smaller than the
    halo, irregular chunks and ``wrap`` across the whole axis need no rechunking.
    """
    bounds = np.cumsum((0, *chunks))
    n = int(bounds[-1])
    plans = []
    for b in range(len(chunks)):
        start, stop = int(bounds[b]), int(bounds[b + 1])
        plen = stop - start + 2 * h
        pos = np.arange(plen)
        idx = pos + start - h
        segs = []
        v0, v1 = 0, plen
        inside = (idx >= 0) & (idx < n)
        for region, step in ((idx < 0, None), (inside, 1), (idx >= n, None)):
            p = pos[region]
            if p.size == 0:
                continue
            if step is None and rule == "nan":
                segs.append((int(p[0]), int(p[-1]) + 1, -1, None))
                if p[0] == 0:
                    v0 = int(p[-1]) + 1
                else:
                    v1 = int(p[0])
                continue
            src = idx[region] if step == 1 else _edge_source(idx[region], n, rule)
            blk = np.searchsorted(bounds, src, side="right") - 1
            if step == 1:  # inside the raster: +1 runs, cut where the source block changes
                cuts = [0, *(np.flatnonzero(np.diff(blk)) + 1), src.size]
                runs = [(a, z, 1) for a, z in zip(cuts[:-1], cuts[1:], strict=True)]
            else:  # beyond an edge (at most a halo wide): runs may turn (reflect, wrap)
                runs = _runs(src, blk)
            for a, z, step in runs:
                s0 = int(src[a] - bounds[blk[a]])
                ln = z - a
                if step == 1:
                    sl = slice(s0, s0 + ln)
                elif step == -1:
                    sl = slice(s0, s0 - ln if s0 - ln >= 0 else None, -1)
                else:  # nearest: one source cell, broadcast over the run
                    sl = slice(s0, s0 + 1)
                segs.append((int(p[a]), int(p[a]) + ln, int(blk[a]), sl))
        plans.append((segs, (v0, v1), plen))
    return plans


def _focal_block(blocks, copies, fills, pshape, dtype, kernel, valid, shape4, out_shape, kw):
    """Assemble one padded block from its sources, run the kernel, shape the result."""
    first = blocks[0]
    xp = array_module(first)
    padded = xp.empty(pshape, dtype=dtype)
    if type(padded) is not type(first) and isinstance(first, np.ndarray):
        padded = padded.view(type(first))  # keep simulated device arrays simulated
    for dst in fills:  # cells beyond the raster edge ("nan" rule): defined, never read as valid
        padded[dst] = 0
    for dst, k, src in copies:
        padded[dst] = blocks[k][src]
    out = kernel(padded.reshape(shape4), valid, **kw)
    return out.reshape(out_shape)


def check_boundary(boundary, dims, *, op: str) -> dict:
    """``boundary`` (a rule, or ``{dim: rule}``; missing dims get ``"nan"``) as ``{dim: rule}``."""
    if isinstance(boundary, str):
        rules = dict.fromkeys(dims, boundary)
    elif isinstance(boundary, dict):
        extra = [d for d in boundary if d not in dims]
        if extra:
            raise ValueError(f"{op}: boundary names dims {extra} that the window does not span; "
                             f"window dims are {tuple(dims)}")
        rules = {d: boundary.get(d, "nan") for d in dims}
    else:
        raise TypeError(f"{op}: boundary must be one of {FOCAL_BOUNDARIES} or a dict "
                        f"{{dim: rule}}; got {boundary!r}")
    for d, r in rules.items():
        if r not in FOCAL_BOUNDARIES:
            raise ValueError(f"{op}: boundary for {d!r} must be one of {FOCAL_BOUNDARIES}; "
                             f"got {r!r}")
    return rules


def lift_focal(kernel, da, window, *, dims, boundary, op: str, dtype, time_dim=None,
               kwargs=None, block_kwargs=None, attrs=None, name=None) -> xr.DataArray:
    """Run a focal ``kernel`` over ``da`` with halos taken from ``window``.

    ``dims`` are the spatial ``(y, x)`` dims; ``time_dim`` is the dim of the window's
    time axis (required when ``window.has_time``). The kernel is called per padded
    block as ``kernel(block4, valid, **kwargs, **block_kwargs(ranges))`` where
    ``block4`` has shape ``(lead, t + 2·ht, y + 2·hy, x + 2·hx)`` (``lead``: all other
    dims flattened; ``t`` is 1 for spatial windows), ``valid = (t0, t1, y0, y1, x0, x1)``
    bounds the cells inside the raster (cells beyond it under the ``"nan"`` rule hold
    garbage), and it returns the unpadded ``(lead, t, y, x)`` result of ``dtype``.
    ``block_kwargs(ranges)`` (optional) gets the block's global ``{dim: (start, stop)}``
    along the window dims, e.g. for latitude-dependent cell sizes.

    Dask input: one task per output chunk, reading only the source chunks its halo
    touches (neighbours, or further chunks when chunks are smaller than the halo, or
    the far edge under ``wrap``); output chunks equal input chunks. Other input: the
    same code on one block. dims, coords and attrs are kept (``attrs`` replaces attrs).
    """
    from itertools import product

    import dask.array as dsa
    from dask._task_spec import List, Task, TaskRef
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    kwargs = dict(kwargs or {})
    ht, hy, hx = window.halo
    wdims = ((time_dim,) if window.has_time else ()) + tuple(dims)
    rules = check_boundary(boundary, wdims, op=op)
    lead = [d for d in da.dims if d not in wdims]
    t = da.transpose(*lead, *wdims)
    halo = {d: h for d, h in zip(wdims, (ht, hy, hx)[-len(wdims):], strict=True)}
    x = t.data
    chunks = x.chunks if is_dask(x) else tuple((s,) for s in x.shape)
    plans = [_axis_plan(c, halo.get(d, 0), rules.get(d, "nan"))
             for d, c in zip(t.dims, chunks, strict=True)]
    starts = [np.cumsum((0, *c)) for c in chunks]
    nlead = len(lead)
    dtype = np.dtype(dtype)

    def task_args(idx):
        segs = [plans[a][i] for a, i in enumerate(idx)]
        pshape = tuple(p[2] for p in segs)
        sources, copies, fills = {}, [], []
        for combo in product(*(p[0] for p in segs)):
            dst = tuple(slice(s[0], s[1]) for s in combo)
            if any(s[2] < 0 for s in combo):
                fills.append(dst)
                continue
            k = sources.setdefault(tuple(s[2] for s in combo), len(sources))
            copies.append((dst, k, tuple(s[3] for s in combo)))
        v = [p[1] for p in segs[nlead:]]
        valid = ((0, 1) if not window.has_time else v[0]) + v[-2] + v[-1]
        out_shape = tuple(chunks[a][i] for a, i in enumerate(idx))
        tshape = (pshape[nlead] if window.has_time else 1,)
        shape4 = (int(np.prod(pshape[:nlead], dtype=np.int64)), *tshape, *pshape[-2:])
        kw = dict(kwargs)
        if block_kwargs is not None:
            kw.update(block_kwargs({d: (int(starts[a][idx[a]]), int(starts[a][idx[a] + 1]))
                                    for a, d in enumerate(t.dims) if d in wdims}))
        return list(sources), (copies, fills, pshape, x.dtype, kernel, valid, shape4,
                               out_shape, kw)

    if x.size == 0:  # nothing to compute: the empty result, never an empty kernel call
        data = x.map_blocks(functools.partial(_empty_block, dtype=dtype), dtype=dtype,
                            meta=meta_like(x, dtype, x.ndim)) if is_dask(x) \
            else empty_like_block(x, x.shape, dtype)
    elif is_dask(x):
        tok = tokenize(x.name, op, window, rules, dtype, kwargs, block_kwargs)
        out_name = f"{op}-{tok}"
        layer = {}
        for idx in product(*(range(len(c)) for c in chunks)):
            srcs, args = task_args(idx)
            refs = List(*(TaskRef((x.name, *s)) for s in srcs))
            layer[(out_name, *idx)] = Task((out_name, *idx), _focal_block, refs, *args)
        graph = HighLevelGraph.from_collections(out_name, layer, dependencies=[x])
        data = dsa.Array(graph, out_name, chunks, meta=meta_like(x, dtype, x.ndim))
    else:
        _, args = task_args((0,) * x.ndim)
        data = _focal_block([x], *args)
    out = t.copy(data=data).transpose(*da.dims)
    if attrs is not None:
        out.attrs = dict(attrs)
    if name is not None:
        out.name = name
    return out


def _empty_block(block, dtype=None):
    return empty_like_block(block, block.shape, dtype or block.dtype)


def lift_zonal(chunk_fn, x, *, zones=None, chunk_args=None, combine, shared=None,
               split_every: int = 8):
    """Per-chunk partial aggregates over the spatial (last two) axes, combined in a tree.

    Parameters
    ----------
    chunk_fn : callable
        ``chunk_fn(block, zone_block, shared, rows, cols, *args) -> partial``: ``block``
        is one chunk reshaped to ``(L, h, w)`` (leading axes flattened), ``zone_block``
        the matching ``(h, w)`` chunk of ``zones`` (or None), ``rows``/``cols`` the
        chunk's slices in the whole raster. Partials are small host objects.
    x : array
        ``(*lead, y, x)`` values: numpy, CuPy, simulated device, or dask.
    zones : array, optional
        ``(y, x)`` zone raster; dask zones are rechunked to ``x``'s spatial chunks, and a
        dask/eager mix is made all-dask.
    chunk_args : callable, optional
        ``chunk_args(rows, cols) -> tuple | None``: extra arguments of a spatial chunk;
        None means the chunk contributes nothing, and it is never read.
    combine : callable
        ``combine(list of partials) -> partial``; a tree node (``split_every`` children).
    shared : object, optional
        Passed to every chunk as one graph key (sent once per worker, not per chunk).

    Returns
    -------
    list of (tuple of slices, partial)
        One entry per block of the leading axes (time chunks): the lead slices and the
        combined partial — a ``dask.delayed`` object for dask input (compute them
        together, in one pass), the partial itself otherwise.
    """
    import itertools

    import dask
    import dask.array as dsa

    chunk_args = chunk_args or (lambda rows, cols: ())
    lazy = is_dask(x) or is_dask(zones)
    if not lazy:
        H, W = x.shape[-2:]
        rows, cols = slice(0, H), slice(0, W)
        args = chunk_args(rows, cols) if H and W else None  # no pixels: no partial
        lead = tuple(slice(0, n) for n in x.shape[:-2])
        part = None if args is None else _zonal_task(chunk_fn, x, zones, shared, rows, cols,
                                                     args)
        return [(lead, combine([part]))]
    if not is_dask(x):
        x = dsa.from_array(x, chunks=(*x.shape[:-2], *zones.chunks), asarray=False)
    if zones is not None:
        zones = zones.rechunk(x.chunks[-2:]) if is_dask(zones) else dsa.from_array(
            zones, chunks=x.chunks[-2:], asarray=False)
        zblocks = zones.to_delayed()
    xblocks = x.to_delayed()
    shared_d = dask.delayed(shared, pure=True, traverse=False) if shared is not None else None
    bounds = [np.r_[0, np.cumsum(c)].astype(int) for c in x.chunks]
    nby, nbx = x.numblocks[-2:]
    spatial = []
    for i, j in itertools.product(range(nby), range(nbx)):
        rows = slice(int(bounds[-2][i]), int(bounds[-2][i + 1]))
        cols = slice(int(bounds[-1][j]), int(bounds[-1][j + 1]))
        if rows.start == rows.stop or cols.start == cols.stop:
            continue  # a zero-size chunk holds no pixels: it contributes nothing
        args = chunk_args(rows, cols)
        if args is not None:
            spatial.append((i, j, rows, cols, args))
    task = dask.delayed(_zonal_task, pure=True)
    node = dask.delayed(combine, pure=True)
    out = []
    for lb in itertools.product(*(range(n) for n in x.numblocks[:-2])):
        lead = tuple(slice(int(b[k]), int(b[k + 1])) for b, k in zip(bounds[:-2], lb,
                                                                      strict=True))
        parts = [task(chunk_fn, xblocks[(*lb, i, j)],
                      None if zones is None else zblocks[i, j], shared_d, rows, cols, args)
                 for i, j, rows, cols, args in spatial]
        if not parts:
            out.append((lead, None))
            continue
        while len(parts) > 1:
            parts = [node(parts[k:k + split_every]) for k in range(0, len(parts), split_every)]
        out.append((lead, parts[0] if len(spatial) > 1 else node(parts)))
    return out


def _zonal_task(chunk_fn, block, zone_block, shared, rows, cols, args):
    if block.size == 0:  # e.g. a 0-length time chunk: no pixels, no partial
        return None
    h, w = block.shape[-2:]
    return chunk_fn(block.reshape((-1, h, w)), zone_block, shared, rows, cols, *args)

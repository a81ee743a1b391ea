"""The only place that knows about dask: lift per-block kernels to whole arrays.

Every lifter has an eager path (numpy / CuPy / simulated device arrays: the kernel
runs once on the whole array) and a lazy path (dask: the kernel runs per chunk), so
the same kernel code serves all backends.
"""

from __future__ import annotations

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


def lift_map(kernel, *rasters, dtype, kwargs=None, keep_attrs=True, attrs=None, name=None):
    """Apply an elementwise ``kernel(*blocks, **kwargs)`` to aligned rasters, chunk by chunk.

    ``rasters`` are DataArrays on one grid (callers check with ``check_same_grid``);
    broadcasting follows xarray (e.g. ``(time, y, x)`` with ``(y, x)``). Output
    chunks equal the first input's chunks. ``attrs`` (if given) replaces the output's attrs.
    """
    first = rasters[0]
    out = xr.apply_ufunc(
        kernel, *rasters,
        kwargs=kwargs or {},
        dask="parallelized",
        dask_gufunc_kwargs={"meta": meta_like(first.data, dtype, first.ndim)},
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


def lift_block_counts(kernel, da, *, dims, nbins: int | None, new_dim: str | None = None,
                      new_coord=None, kwargs=None, name=None) -> xr.DataArray:
    """Per-chunk counts over the spatial ``dims``, combined by a tree sum.

    ``kernel(block, **kwargs)`` takes a block whose last two axes are ``dims`` and returns
    int64 counts of shape ``block.shape[:-2] + (nbins,)`` (or ``block.shape[:-2]`` when
    ``nbins`` is None). The result keeps the other dims of ``da`` and adds ``new_dim``
    (size ``nbins``) last; it is lazy for dask input.
    """
    import dask.array as dsa

    kwargs = kwargs or {}
    da = da.transpose(..., *dims)
    x = da.data
    lead = da.dims[:-2]
    bins = () if nbins is None else (nbins,)
    if is_dask(x):
        nby, nbx = x.numblocks[-2:]
        per_block = x.map_blocks(
            _counts_block, kernel, kwargs, len(bins),
            chunks=(*x.chunks[:-2], (1,) * nby, (1,) * nbx, *((b,) for b in bins)),
            new_axis=list(range(x.ndim, x.ndim + len(bins))), dtype=np.int64,
            meta=meta_like(x, np.int64, x.ndim + len(bins)))
        data = dsa.reduction(  # dask's tree reduction, keeping the block type in meta
            per_block, _sum_int64, _sum_int64, axis=(x.ndim - 2, x.ndim - 1),
            dtype=np.int64, meta=meta_like(x, np.int64, x.ndim - 2 + len(bins)),
            concatenate=True)
    else:
        data = kernel(x, **kwargs)
    coords = {k: v for k, v in da.coords.items() if v.dims and set(v.dims) <= set(lead)}
    out_dims = lead
    if nbins is not None:
        coords[new_dim] = new_coord
        out_dims = (*lead, new_dim)
    return xr.DataArray(data, dims=out_dims, coords=coords, name=name)


def _counts_block(block, kernel, kwargs, nbins_axes):
    out = kernel(block, **kwargs)
    return out[..., None, None, :] if nbins_axes else out[..., None, None]


def _sum_int64(x, axis, keepdims):
    return x.sum(axis=axis, keepdims=keepdims, dtype=np.int64)

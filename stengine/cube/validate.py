"""Validation shared by every op: spatial dims, dtypes, same-grid checks."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DimensionError, GridMismatchError
from .conventions import DEFAULT_DIMS, get_grid


def spatial_dims(dims) -> tuple[str, str]:
    """Normalise a ``dims=`` argument to a ``(ydim, xdim)`` pair."""
    if dims is None:
        return DEFAULT_DIMS
    dims = tuple(dims)
    if len(dims) != 2 or not all(isinstance(d, str) for d in dims):
        raise DimensionError(f"dims must be two dim names (y, x); got {dims!r}")
    return dims


def check_raster(da, dims=None, *, op: str, name: str = "da") -> tuple[str, str]:
    """Check that ``da`` is a DataArray with spatial dims ``dims``; return them as (y, x)."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{op}: {name} must be an xarray.DataArray; got {type(da).__name__}. "
                        "Wrap arrays with stengine.cube.make_raster(array, grid).")
    dims = spatial_dims(dims)
    if not all(d in da.dims for d in dims):
        raise DimensionError(
            f"{op} needs spatial dims {dims}; {name} has {tuple(da.dims)}. "
            f"Pass dims=(ydim, xdim) or rename.")
    return dims


def check_dtype(da, kinds: str, *, op: str, name: str = "da", what: str = "") -> None:
    """Check ``da.dtype.kind`` is one of ``kinds`` (``"b"``, ``"i"``, ``"u"``, ``"f"``)."""
    if da.dtype.kind not in kinds:
        names = {"b": "bool", "i": "signed int", "u": "unsigned int", "f": "float", "c": "complex"}
        want = what or " or ".join(names[k] for k in kinds)
        raise TypeError(f"{op}: {name} must have a {want} dtype; got {da.dtype}.")


def check_same_grid(*, op: str, dims=None, **rasters) -> None:
    """Raise :class:`GridMismatchError` unless all named rasters share CRS, transform and shape.

    Scalars among ``rasters`` are ignored. The first raster is the reference; the
    message names which raster differs, how, and the fix.
    """
    dims = spatial_dims(dims)
    named = [(k, v) for k, v in rasters.items() if isinstance(v, xr.DataArray)]
    if len(named) < 2:
        return
    ref_name, ref = named[0]
    for n, v in named:
        check_raster(v, dims, op=op, name=n)
    ref_grid = get_grid(ref, dims=dims)
    for n, v in named[1:]:
        diff = ref_grid.differences(get_grid(v, dims=dims))
        if diff:
            raise GridMismatchError(
                f"{op}: {n} is not on the grid of {ref_name}: " + "; ".join(
                    d.replace(" vs ", f" ({n}) vs ", 1) + f" ({ref_name})" for d in diff)
                + f". Align it first: stengine.reproject_match({n}, {ref_name}).")
        other = [d for d in v.dims if d not in dims and d in ref.dims
                 and v.sizes[d] != ref.sizes[d]]
        if other:
            d = other[0]
            raise GridMismatchError(f"{op}: {n} has {v.sizes[d]} {d!r} steps but {ref_name} has "
                                    f"{ref.sizes[d]}; select matching {d!r} first.")


def is_integer(dtype) -> bool:
    return np.dtype(dtype).kind in "iub"

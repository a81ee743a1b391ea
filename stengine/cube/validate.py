"""Validation shared by every op: spatial dims, dtypes, same-grid checks.

Zero-size rasters (a 0-length ``y``, ``x``, ``time`` or ``band``) pass these checks:
ops return the well-defined empty result (see ``docs/reliability.md``), and never hand
an empty block to a kernel.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DimensionError, GridMismatchError
from ..grid import Grid
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


_KIND_NAMES = {"b": "bool", "i": "signed int", "u": "unsigned int", "f": "float",
               "c": "complex", "M": "datetime", "m": "timedelta", "O": "object",
               "U": "string", "S": "bytes", "V": "structured"}


def check_dtype(da, kinds: str, *, op: str, name: str = "da", what: str = "") -> None:
    """Check ``da.dtype.kind`` is one of ``kinds`` (``"b"``, ``"i"``, ``"u"``, ``"f"``).

    The :class:`TypeError` names the argument, the dtype it has and how to fix it.
    """
    kind = np.dtype(da.dtype).kind
    if kind not in kinds:
        want = what or " or ".join(_KIND_NAMES[k] for k in kinds)
        if kind == "b":
            fix = f"Cast it first, e.g. {name}.astype('uint8')."
        elif kind == "c":
            fix = f"Pass the real part or the modulus ({name}.real, abs({name}))."
        elif kind in "iuf":
            fix = f"Cast it first, e.g. {name}.astype(...)."
        else:
            fix = ("Pass a numeric raster (decode datetimes/strings to numbers, or cast "
                   f"{name}.astype(...) if the values are numbers).")
        raise TypeError(f"{op}: {name} must have a {want} dtype; got {da.dtype} "
                        f"({_KIND_NAMES.get(kind, kind)}). {fix}")


def raster_grid(da, dims=None) -> Grid:
    """The :class:`~stengine.grid.Grid` of ``da`` on the spatial ``dims``, also for rasters
    with fewer than two rows or columns.

    :func:`stengine.cube.get_grid` on ``dims`` (coords win where they disagree with
    ``spatial_ref``; an axis with 0 or 1 coordinates takes its pixel size, and when empty
    its origin, from ``spatial_ref``'s transform, so such rasters keep their real grid).
    """
    return get_grid(da, dims=spatial_dims(dims))


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
    ref_grid = raster_grid(ref, dims=dims)
    for n, v in named[1:]:
        diff = ref_grid.differences(raster_grid(v, dims=dims))
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
        for d in v.dims:  # same steps, other labels: pairing them by position would be wrong
            if d in dims or d not in ref.dims or d not in v.indexes or d not in ref.indexes:
                continue
            if not v.indexes[d].equals(ref.indexes[d]):
                raise GridMismatchError(
                    f"{op}: {n} and {ref_name} have different {d!r} labels (first "
                    f"{n}: {_first(v.indexes[d])}, {ref_name}: {_first(ref.indexes[d])}); "
                    f"align them first, e.g. {n}.sel({d}={ref_name}.{d}).")


def _first(index) -> str:
    return repr(index[0]) if len(index) else "none"


def is_integer(dtype) -> bool:
    return np.dtype(dtype).kind in "iub"

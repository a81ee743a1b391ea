"""The ``.st`` accessor on DataArray and Dataset: thin, stateless, generated from free functions.

``da.st.<op>(...)`` is ``stengine.ops.<op>(da, ...)``. On a Dataset, string arguments
that name data variables are replaced by those variables
(``ds.st.normalized_difference("nir", "red")``); with none named, the op runs on
each data variable that has the spatial dims and the results are gathered in a Dataset.
"""

from __future__ import annotations

import functools

import xarray as xr

from . import io, ops
from .cube import catalog

# Free functions whose first argument is the data, exposed as accessor methods.
_FUNCTIONS = {name: getattr(ops, name) for name in ops.__all__}
_FUNCTIONS.update({"to_zarr": io.to_zarr, "write_raster": io.write_raster,
                   "select": catalog.select, "chunk_catalog": catalog.chunk_catalog})
_NOT_DATA_FIRST = {"local_apply", "check_udf", "band_math"}  # their first argument is func/expr


def _da_method(fn):
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        return fn(self._obj, *args, **kwargs)

    method.__doc__ = f"Accessor form of :func:`{fn.__module__}.{fn.__name__}`.\n\n" + (
        fn.__doc__ or "")
    return method


def _ds_method(fn):
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        ds = self._obj
        if fn.__name__ in ("to_zarr",):
            return fn(ds, *args, **kwargs)
        named = [a for a in args if isinstance(a, str) and a in ds.data_vars]
        if named:
            args = [ds[a] if isinstance(a, str) and a in ds.data_vars else a for a in args]
            return fn(*args, **kwargs)
        dims = kwargs.get("dims") or ("y", "x")
        out = {k: fn(v, *args, **kwargs) for k, v in ds.data_vars.items()
               if all(d in v.dims for d in dims)}
        if not all(isinstance(v, xr.DataArray) for v in out.values()):
            return out  # table results (zonal ops): {variable: table}
        return xr.Dataset(out)

    method.__doc__ = f"Dataset form of :func:`{fn.__module__}.{fn.__name__}`.\n\n" + (
        fn.__doc__ or "")
    return method


@xr.register_dataarray_accessor("st")
class StDataArrayAccessor:
    """stengine ops on a DataArray: ``da.st.<op>(...)`` equals ``stengine.ops.<op>(da, ...)``."""

    def __init__(self, obj):
        self._obj = obj

    @property
    def grid(self):
        """The :class:`~stengine.grid.Grid` (CRS, transform, shape) of this raster."""
        from .cube import get_grid

        return get_grid(self._obj)

    def map(self, vis=None, **kwargs):
        """A notebook map of this chain's tiles: :class:`stengine.viz.map.Map`."""
        from .viz.map import Map

        return Map(self._obj, vis, **kwargs)


@xr.register_dataset_accessor("st")
class StDatasetAccessor:
    """stengine ops on a Dataset (see module docs for how variables are chosen)."""

    def __init__(self, obj):
        self._obj = obj


for _name, _fn in _FUNCTIONS.items():
    if _name in _NOT_DATA_FIRST:
        continue
    setattr(StDataArrayAccessor, _name, _da_method(_fn))
    setattr(StDatasetAccessor, _name, _ds_method(_fn))

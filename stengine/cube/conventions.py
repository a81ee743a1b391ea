"""Reading and writing the grid of a gridded cube, rioxarray style."""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine

from ..grid import Grid, parse_crs

SPATIAL_REF = "spatial_ref"
DEFAULT_DIMS = ("y", "x")


def _geotransform(t: Affine) -> str:
    return " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))


def set_grid(da, grid: Grid, *, dims=DEFAULT_DIMS):
    """Return ``da`` with pixel-centre coords and a ``spatial_ref`` coordinate for ``grid``.

    ``da`` may be a DataArray or Dataset whose ``dims`` sizes equal ``grid.shape``.
    """
    ydim, xdim = dims
    if (da.sizes[ydim], da.sizes[xdim]) != grid.shape:
        raise ValueError(f"grid shape {grid.shape} does not match sizes of {dims}: "
                         f"{(da.sizes[ydim], da.sizes[xdim])}")
    attrs = {"GeoTransform": _geotransform(grid.transform)}
    if grid.crs is not None:
        try:
            attrs.update(grid.crs.to_cf())
        except Exception:  # noqa: BLE001 - some CRSs have no CF form; WKT is enough
            pass
        wkt = grid.crs.to_wkt()
        attrs["crs_wkt"] = wkt
        attrs["spatial_ref"] = wkt
    out = da.assign_coords({
        xdim: (xdim, grid.xs(), {"axis": "X", "long_name": "x pixel centre"}),
        ydim: (ydim, grid.ys(), {"axis": "Y", "long_name": "y pixel centre"}),
        SPATIAL_REF: xr.Variable((), np.int64(0), attrs),
    })
    variables = out.data_vars.values() if isinstance(out, xr.Dataset) else [out]
    for v in variables:
        if ydim in v.dims and xdim in v.dims:
            v.encoding["grid_mapping"] = SPATIAL_REF
    return out


def get_grid(da, *, dims=DEFAULT_DIMS) -> Grid:
    """The :class:`~stengine.grid.Grid` of ``da``: from ``spatial_ref`` when present, else coords.

    A DataArray without CRS information gets ``crs=None``; without x/y coordinates, a
    unit pixel grid with its origin at the top-left corner.
    """
    ydim, xdim = dims
    shape = (da.sizes[ydim], da.sizes[xdim])
    crs = transform = None
    ref = da.coords.get(SPATIAL_REF)
    if ref is not None:
        a = ref.attrs
        crs = parse_crs(a.get("crs_wkt") or a.get("spatial_ref")) if (
            a.get("crs_wkt") or a.get("spatial_ref")) else None
        gt = a.get("GeoTransform")
        if gt:
            c, ta, tb, f, td, te = (float(v) for v in str(gt).split())
            transform = Affine(ta, tb, c, td, te, f)
    if transform is not None and (xdim not in da.coords or ydim not in da.coords):
        return Grid(crs, transform, shape)
    if xdim in da.coords and ydim in da.coords:
        # like=: an axis of 0 or 1 coords takes its pixel size (and origin) from spatial_ref
        from_coords = Grid.from_coords(da[xdim].values, da[ydim].values, crs, like=transform)
        # Coords win when the array was sliced after spatial_ref was written.
        if transform is None or from_coords.differences(Grid(crs, transform, shape)):
            return from_coords
        return Grid(crs, transform, shape)
    return Grid(crs, Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(shape[0])), shape)


def make_raster(data, grid: Grid | None = None, *, dims=None, coords=None, name=None,
                attrs=None, nodata=None) -> xr.DataArray:
    """Wrap an array (numpy, dask, CuPy) as a gridded DataArray.

    ``dims`` defaults to ``("y", "x")``, ``("band", "y", "x")`` or ``("time", "y", "x")``
    by ndim (3-D: ``band``). ``grid`` defaults to a unit grid with no CRS.

    Examples
    --------
    >>> import numpy as np
    >>> da = make_raster(np.zeros((2, 3)), Grid.from_bbox((0, 0, 3, 2), 1, crs=4326))
    >>> da.dims, float(da.y[0]), da.spatial_ref.attrs["GeoTransform"]
    (('y', 'x'), 1.5, '0.0 1.0 0.0 2.0 0.0 -1.0')
    """
    if dims is None:
        dims = {2: ("y", "x"), 3: ("band", "y", "x")}.get(np.ndim(data))
        if dims is None:
            raise ValueError(f"make_raster: pass dims= for a {np.ndim(data)}-D array")
    dims = tuple(dims)
    da = xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=dict(attrs or {}))
    if nodata is not None:
        da.attrs["nodata"] = nodata
    if grid is None:
        h, w = da.sizes[dims[-2]], da.sizes[dims[-1]]
        grid = Grid(None, Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(h)), (h, w))
    return set_grid(da, grid, dims=dims[-2:])

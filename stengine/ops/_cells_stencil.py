"""Stencils: the cells whose centre lies in a raster mask or in polygons."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..cube import check_raster
from ._cells_lift import htm_module, lonlat_frame


def _candidates(bbox, grid, level):
    """Cells (sorted) whose centre may lie in ``bbox`` (west, south, east, north), degrees."""
    w, s, e, n = bbox
    if grid == "h3":
        from ..index.h3 import cells_in_bbox

        if e - w >= 360.0:
            w, e = -180.0, 180.0
        return cells_in_bbox((w, max(s, -90.0), e, min(n, 90.0)), level)
    from ._cells_htm import htm_cells_in_bbox

    htm_module("cell_stencil")
    return htm_cells_in_bbox((w, s, e, n), level)


def _centres(ids, grid, level):
    if grid == "h3":
        from ..index.h3 import cell_to_lonlat

        return cell_to_lonlat(ids)
    from ._cells_htm import htm_centres

    return htm_centres(ids, level)


def _from_mask(mask, grid, level, dims):
    ydim, xdim = check_raster(mask, dims, op="cell_stencil", name="mask")
    if set(mask.dims) != {ydim, xdim}:
        raise ValueError(f"cell_stencil: the mask must be 2-D ({ydim}, {xdim}); got "
                         f"{tuple(mask.dims)}. Select one time step or band first.")
    frame = lonlat_frame(mask, (ydim, xdim), op="cell_stencil", name="mask")
    if mask.size == 0:  # no pixel: no cell centre can be inside the mask
        return np.zeros(0, np.uint64)
    ids = _candidates(frame.lonlat_bounds(), grid, level)
    lon, lat = _centres(ids, grid, level)
    g = frame.grid
    x, y = lon, lat
    if not frame.is_lonlat:
        from pyproj import Transformer

        x, y = Transformer.from_crs("EPSG:4326", frame.crs_wkt, always_xy=True).transform(lon, lat)
    t = g.transform  # north-up (checked by lonlat_frame)
    col = np.floor((np.asarray(x) - t.c) / t.a).astype(np.int64)
    row = np.floor((np.asarray(y) - t.f) / t.e).astype(np.int64)
    if frame.is_lonlat:
        # a global grid may run 0..360 or -180..180: try the centre's other longitude
        for shift in (360.0, -360.0):
            off = (col < 0) | (col >= g.shape[1])
            if off.any():
                c2 = np.floor((np.asarray(x) + shift - t.c) / t.a).astype(np.int64)
                col = np.where(off, c2, col)
    inside = (row >= 0) & (row < g.shape[0]) & (col >= 0) & (col < g.shape[1])
    m = mask.transpose(ydim, xdim)
    r, c = row[inside], col[inside]
    if hasattr(m.data, "vindex"):
        vals = np.asarray(m.data.vindex[r, c].compute())
    else:
        vals = np.asarray(m.data)[r, c]
    keep = np.zeros(ids.size, bool)
    keep[np.nonzero(inside)[0]] = (vals != 0) & (vals == vals)
    return ids[keep]


def _geoms(source):
    import geopandas as gpd
    import shapely

    if isinstance(source, gpd.GeoDataFrame | gpd.GeoSeries):
        if source.crs is not None and not source.crs.equals("EPSG:4326"):
            source = source.to_crs("EPSG:4326")
        return np.asarray(source.geometry.values, dtype=object)
    if isinstance(source, shapely.Geometry):
        return np.array([source], dtype=object)
    geoms = np.asarray(list(source), dtype=object)
    if not all(isinstance(g, shapely.Geometry) for g in geoms):
        raise TypeError("cell_stencil: source must be a raster mask DataArray, a GeoDataFrame/"
                        "GeoSeries, a shapely geometry or a list of them")
    return geoms


def _from_polygons(source, grid, level):
    import shapely

    geoms = _geoms(source)
    geoms = geoms[~shapely.is_empty(geoms)]
    if geoms.size == 0:
        return np.zeros(0, np.uint64)
    w, s = shapely.bounds(geoms)[:, :2].min(axis=0)
    e, n = shapely.bounds(geoms)[:, 2:].max(axis=0)
    ids = _candidates((w, s, e, n), grid, level)
    lon, lat = _centres(ids, grid, level)
    tree = shapely.STRtree(geoms)
    pts = shapely.points(lon, lat)
    hit = tree.query(pts, predicate="within")[0]
    return ids[np.unique(hit)]


def stencil_ids(source, grid, level, *, dims=None) -> np.ndarray:
    """Sorted uint64 ids of the cells whose centre is in ``source`` (mask or polygons)."""
    if isinstance(source, xr.DataArray):
        ids = _from_mask(source, grid, level, dims)
    else:
        ids = _from_polygons(source, grid, level)
    return np.unique(np.asarray(ids, np.uint64))

"""PNG maps: :func:`quicklook` for rasters, :func:`cell_map` for cell cubes.

Both use matplotlib's object API with the Agg canvas (no pyplot state, no display
needed) and read only what the picture needs: large dask rasters are decimated by
striding before they are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["quicklook", "cell_map", "export_html", "export_video", "Map", "Vis", "TileRegistry",
           "build_overviews"]

# map, tile and export names load on first use (ipyleaflet, imageio are the `maps` extra)
_LAZY = {"export_html": "export", "export_video": "export", "Map": "map", "Vis": "tiles",
         "TileRegistry": "tiles", "build_overviews": "overviews"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _figure(width_px, height_px, dpi=100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _first_slice(da, spatial, isel):
    if isel:
        da = da.isel(isel)
    extra = [d for d in da.dims if d not in spatial]
    return da.isel({d: 0 for d in extra}) if extra else da


def _cmap_norm(values, cmap, vmin, vmax, categorical):
    import matplotlib as mpl

    if categorical:
        classes = np.asarray(sorted(categorical)) if not isinstance(categorical, bool) else \
            np.unique(values[np.isfinite(values)])
        n = max(len(classes), 1)
        base = mpl.colormaps[cmap if cmap != "viridis" else "tab10"].resampled(n)
        bounds = np.r_[classes - 0.5, classes[-1] + 0.5] if n else [0, 1]
        return base, mpl.colors.BoundaryNorm(bounds, n), classes
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (np.nanpercentile(finite, 2) if finite.size else 0.0)
    hi = vmax if vmax is not None else (np.nanpercentile(finite, 98) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return mpl.colormaps[cmap], mpl.colors.Normalize(lo, hi), None


def _save(fig, ax, im, path, title, classes, colorbar, labels=None):
    if title:
        ax.set_title(title)
    if colorbar and im is not None:
        cb = fig.colorbar(im, ax=ax, shrink=0.7)
        if classes is not None:
            cb.set_ticks(classes)
            if labels:
                cb.set_ticklabels([labels.get(int(c), str(c)) for c in classes])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def quicklook(da, path, *, cmap: str = "viridis", vmin=None, vmax=None, title=None,
              max_size: int = 1600, categorical=None, labels=None, nodata=None,
              dims=("y", "x"), isel=None, colorbar: bool = True):
    """Write a PNG of a raster (the first step of any leading dim, or ``isel=``).

    Parameters
    ----------
    da : xarray.DataArray
        ``(..., y, x)`` raster; numpy or dask. Rasters wider than ``max_size`` pixels are
        strided down before computing, so a global 30″ cube costs one strided read.
    categorical : bool | sequence, optional
        Class values to draw with a discrete colour map (``True``: the values present).
    labels : dict, optional
        Class value → label for the colour bar.
    nodata : number, optional
        Drawn transparent; default ``da.attrs["nodata"]``.

    Returns
    -------
    pathlib.Path
    """
    ydim, xdim = dims
    a = _first_slice(da, dims, isel).transpose(ydim, xdim)
    step = max(1, int(np.ceil(max(a.shape) / max_size)))
    a = a.isel({ydim: slice(None, None, step), xdim: slice(None, None, step)})
    values = np.asarray(a.values, dtype=np.float64)
    nd = da.attrs.get("nodata") if nodata is None else nodata
    if nd is not None:
        values[values == nd] = np.nan
    cm, norm, classes = _cmap_norm(values, cmap, vmin, vmax, categorical)
    x, y = a[xdim].values if xdim in a.coords else None, a[ydim].values if ydim in a.coords \
        else None
    extent = None
    if x is not None and y is not None and x.size > 1 and y.size > 1:
        dx, dy = (x[1] - x[0]) / 2, (y[1] - y[0]) / 2
        extent = (x[0] - dx, x[-1] + dx, y[-1] + dy, y[0] - dy)
    h, w = values.shape
    scale = min(1200 / max(w, 1), 800 / max(h, 1), 4.0)
    fig = _figure(max(400, w * scale + 200), max(300, h * scale + 120))
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap=cm, norm=norm, extent=extent, interpolation="nearest",
                   aspect="auto" if extent is None else "equal")
    return _save(fig, ax, im, path, title if title is not None else (da.name or ""), classes,
                 colorbar, labels)


def cell_map(cube, path, *, bbox=None, width: int = 1440, cmap: str = "viridis", vmin=None,
             vmax=None, title=None, categorical=None, labels=None, isel=None,
             outlines: bool | None = None, colorbar: bool = True):
    """Write a PNG map of a cell cube: cells rasterized on a lon/lat grid, or as polygons.

    Parameters
    ----------
    cube : xarray.DataArray
        Cell cube; leading dims take their first step unless ``isel=`` picks one.
    bbox : (west, south, east, north), optional
        Map extent in degrees; default the cells' centres padded by a cell, or the globe.
    width : int
        Width in pixels of the lon/lat grid the cells are painted on
        (:func:`stengine.ops.cells_to_raster`).
    outlines : bool, optional
        Draw H3 cell boundaries (polygons); default when fewer than 3000 cells.

    Returns
    -------
    pathlib.Path
    """
    from ..cube.cells import CELL_DIM, CELL_IDS, check_cell_cube
    from ..grid import Grid
    from ..ops.cells import cells_to_raster

    grid, level = check_cell_cube(cube, op="cell_map")
    one = _first_slice(cube, (CELL_DIM,), isel)
    if bbox is None:
        bbox = _extent(one[CELL_IDS].values, grid, level)
    w, s, e, n = bbox
    res = (e - w) / width
    g = Grid.from_bbox((w, s, e, n), res, crs=4326)
    ras = cells_to_raster(one, g)
    values = np.asarray(ras.values, dtype=np.float64)
    if ras.attrs.get("nodata") is not None:
        values[values == ras.attrs["nodata"]] = np.nan
    cm, norm, classes = _cmap_norm(values, cmap, vmin, vmax, categorical)
    h, wpx = values.shape
    scale = min(1200 / wpx, 700 / h, 4.0)
    fig = _figure(wpx * scale + 220, h * scale + 120)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap=cm, norm=norm, extent=(w, e, s, n), interpolation="nearest")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ncell = one.sizes[CELL_DIM]
    if outlines is None:
        outlines = grid == "h3" and ncell < 3000
    if outlines and grid == "h3" and ncell:
        from matplotlib.collections import PolyCollection

        from ..index.h3 import cell_to_boundary

        b = cell_to_boundary(one[CELL_IDS].values)
        polys = []
        for ring in b:
            ring = ring[np.isfinite(ring[:, 0])]
            ring[:, 0] = np.where(ring[:, 0] - ring[0, 0] > 180, ring[:, 0] - 360, ring[:, 0])
            ring[:, 0] = np.where(ring[:, 0] - ring[0, 0] < -180, ring[:, 0] + 360, ring[:, 0])
            polys.append(ring)
        ax.add_collection(PolyCollection(polys, facecolors="none", edgecolors="k",
                                         linewidths=0.3))
        ax.set_xlim(w, e)
        ax.set_ylim(s, n)
    name = title if title is not None else \
        f"{cube.name or 'cells'} — {grid} level {level} ({ncell} cells)"
    return _save(fig, ax, im, path, name, classes, colorbar, labels)


def _extent(ids, grid, level):
    if ids.size == 0 or grid != "h3":
        return (-180.0, -90.0, 180.0, 90.0)
    from ..index.h3 import cell_to_lonlat, edge_length

    lon, lat = cell_to_lonlat(ids)
    pad = 2.5 * edge_length(level)
    w, e = lon.min() - pad / max(np.cos(np.radians(np.abs(lat).max())), 0.05), \
        lon.max() + pad / max(np.cos(np.radians(np.abs(lat).max())), 0.05)
    s, n = lat.min() - pad, lat.max() + pad
    if e - w > 300:
        w, e = -180.0, 180.0
    return (max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0))


def _is_dataarray(x) -> bool:
    return isinstance(x, xr.DataArray)

"""Dask plumbing and geometry helpers of the cell ops (candidates for ``ops/_lift.py``).

* :func:`lonlat_frame` — how a raster's pixel centres become lon/lat (regular lon/lat
  grid, or a projected CRS through pyproj), with the "projected without CRS" check;
* :func:`reduce_to_table` — per-chunk partial tables combined in a tree of ``fan_in``
  (dask delayed), one tree per block of the leading dims; computes the final table;
* :func:`pixel_cell_ids` — cell ids of a block's pixel centres (H3 or HTM).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .._backends import is_dask
from ..cube.validate import raster_grid
from ..errors import IndexRangeError
from ..grid import Grid


@dataclass(frozen=True)
class LonLatFrame:
    """Pixel-centre geometry of a raster: ``grid``, and ``crs_wkt`` when projected."""

    grid: Grid
    crs_wkt: str | None  # None: x/y are lon/lat degrees

    @property
    def is_lonlat(self) -> bool:
        return self.crs_wkt is None

    def block_lonlat(self, rows: slice, cols: slice):
        """(lon, lat): 1-D (lon/lat grids) or 2-D arrays of the block's pixel centres."""
        x, y = self.grid.xs()[cols], self.grid.ys()[rows]
        if self.is_lonlat:
            return x, y
        from pyproj import Transformer

        tr = Transformer.from_crs(self.crs_wkt, "EPSG:4326", always_xy=True)
        X, Y = np.meshgrid(x, y)
        lon, lat = tr.transform(X, Y)
        bad = ~(np.isfinite(lon) & np.isfinite(lat))
        lon[bad] = np.nan
        lat[bad] = np.nan
        return lon, lat

    def lonlat_bounds(self):
        """(west, south, east, north) of the raster in degrees."""
        b = self.grid.bounds
        if self.is_lonlat:
            return b
        from pyproj import Transformer

        tr = Transformer.from_crs(self.crs_wkt, "EPSG:4326", always_xy=True)
        return tr.transform_bounds(*b, densify_pts=51)


def lonlat_frame(da, dims, *, op: str, name: str = "da") -> LonLatFrame:
    """Check ``da`` can be placed on the sphere; return its :class:`LonLatFrame`.

    A raster without CRS is taken as lon/lat degrees only if its coordinates fit
    ([-180, 360] × [-90, 90]); otherwise it is projected data without a CRS, an error.
    """
    grid = da if isinstance(da, Grid) else raster_grid(da, dims=dims)
    t = grid.transform
    if t.b != 0 or t.d != 0:
        raise ValueError(f"{op}: {name} has a rotated grid (transform {tuple(t)[:6]}); "
                         "reproject it to a north-up grid first")
    crs = grid.crs
    if crs is None:
        w, s, e, n = grid.bounds
        tol_x, tol_y = grid.res
        if w < -180 - tol_x or e > 360 + tol_x or s < -90 - tol_y or n > 90 + tol_y:
            raise IndexRangeError(
                f"{op}: a lon/lat grid was expected but {name} spans x {w:g}..{e:g}, "
                f"y {s:g}..{n:g} and has no CRS (projected data?). Set its CRS "
                "(stengine.cube.set_grid or rioxarray's write_crs) so pixel centres can be "
                "transformed to lon/lat.")
        return LonLatFrame(grid, None)
    if crs.is_geographic:
        return LonLatFrame(grid, None)
    return LonLatFrame(grid, crs.to_wkt())


def pixel_cell_ids(lon, lat, grid_name: str, level: int) -> np.ndarray:
    """int64 cell ids of pixel centres (1-D lon × 1-D lat grid, or 2-D arrays); 0 = none."""
    if lon.ndim == 1 and grid_name == "h3":
        from ..index._h3_arrays import grid_to_cells

        return grid_to_cells(lon, lat, level).view(np.int64)
    if lon.ndim == 1:
        lon, lat = np.meshgrid(lon, lat)
    ok = np.isfinite(lon) & np.isfinite(lat)
    out = np.zeros(lon.shape, np.int64)
    if grid_name == "h3":
        from ..index._h3_arrays import points_to_cells

        out[ok] = points_to_cells(lon[ok], lat[ok], level).view(np.int64)
    else:
        out[ok] = np.asarray(htm_lonlat_to_id(lon[ok], lat[ok], level), np.uint64).view(np.int64)
    return out


def htm_module(op: str):
    """``stengine.index.htm``, or a clear error while it is not available."""
    try:
        from ..index import htm
    except ImportError as e:
        raise NotImplementedError(f"{op}: grid='htm' needs stengine.index.htm ({e})") from e
    return htm


def htm_lonlat_to_id(lon, lat, level):
    return htm_module("grid='htm'").lonlat_to_id(lon, lat, level)


def n_cells(grid_name: str, level: int) -> int:
    return 2 + 120 * 7 ** level if grid_name == "h3" else 8 * 4 ** level


def _tree(parts, merge, fan_in):
    from dask import delayed

    while len(parts) > 1:
        parts = [delayed(merge, pure=True)(parts[i:i + fan_in])
                 for i in range(0, len(parts), fan_in)]
    return parts[0]


def reduce_to_table(x, block_fn, merge, assemble, *, fan_in: int = 8):
    """Partial tables per block, tree-merged per leading block, assembled, computed.

    ``x``: array ``(lead..., rows, cols)`` (dask or in-memory). ``block_fn(block, rows,
    cols, lead_slices)`` returns a partial table; ``merge(list)`` combines tables;
    ``assemble([(lead_slices, table), ...])`` builds the result, which is returned computed.
    """
    if not is_dask(x):
        lead = tuple(slice(0, s) for s in x.shape[:-2])
        t = None if x.size == 0 else block_fn(  # no pixels: no table (never an empty block)
            np.asarray(x), slice(0, x.shape[-2]), slice(0, x.shape[-1]), lead)
        return assemble([(lead, t)])
    import dask
    from dask import delayed

    offsets = [np.r_[0, np.cumsum(c)] for c in x.chunks]
    blocks = x.to_delayed()
    # one graph key holds block_fn (and the arrays its closure carries); tasks refer to it
    # instead of each pickling a copy
    fn = delayed(block_fn, pure=True)
    per_lead = []
    for lead_idx in itertools.product(*(range(n) for n in x.numblocks[:-2])):
        lead = tuple(slice(int(offsets[a][i]), int(offsets[a][i + 1]))
                     for a, i in enumerate(lead_idx))
        parts = []
        for iy, ix in itertools.product(range(x.numblocks[-2]), range(x.numblocks[-1])):
            rows = slice(int(offsets[-2][iy]), int(offsets[-2][iy + 1]))
            cols = slice(int(offsets[-1][ix]), int(offsets[-1][ix + 1]))
            if rows.start == rows.stop or cols.start == cols.stop or any(
                    s.start == s.stop for s in lead):
                continue  # a zero-size block: no pixels, no table
            parts.append(delayed(_apply, pure=True)(fn, blocks[lead_idx + (iy, ix)], rows,
                                                    cols, lead))
        per_lead.append((lead, _tree(parts, merge, fan_in) if parts else None))
    final = delayed(assemble, pure=True)(per_lead)
    (out,) = dask.compute(final)
    return out


def _apply(fn, *args):
    return fn(*args)


def capacity(est: int) -> int:
    """Hash table size: a power of two at least twice ``est``."""
    return 1 << max(6, math.ceil(math.log2(2 * est + 2)))

"""Where the samplers read (see :mod:`stengine.learn.samplers`): toi and roi handling;
the windows ``(row0, col0)`` of the grid, random and cell samplers and which of them pass
the roi polygon and ``max_nodata``; cell labels and neighbours; and the epoch order
(chunk-grouped shuffling, per-epoch generators) that sharding slices.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..errors import DimensionError
from ._reader import _label_str

# --------------------------------------------------------------------------- roi, toi

def _select_time(cube, toi, *, op: str):
    if toi is None:
        return cube
    if "time" not in cube.dims:
        raise DimensionError(f"{op}: toi= selects along 'time', which the cube lacks "
                             f"(dims {tuple(cube.dims)}); drop toi=.")
    try:
        start, end = toi
    except (TypeError, ValueError):
        raise ValueError(f"{op}: toi must be a (start, end) pair of dates; got {toi!r}") from None
    t = cube["time"].values
    start = np.datetime64(start, "ns") if start is not None else t.min()
    end = np.datetime64(end, "ns") if end is not None else t.max()
    keep = np.flatnonzero((t >= start) & (t <= end))
    if keep.size == 0:
        raise ValueError(f"{op}: toi {toi!r} holds none of the cube's times "
                         f"({_label_str(t.min())} .. {_label_str(t.max())}); pass an interval "
                         "that overlaps them.")
    return cube.isel(time=keep)


def _check_size(size, name="size", *, op):
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"{op}: {name} must be a positive integer (pixels); got {size!r}")
    return int(size)


def _roi_geometry(roi, roi_crs, grid, *, op: str):
    """roi → (shapely geometry in the grid's CRS, is_rectangle)."""
    import shapely
    from shapely.geometry import box

    if isinstance(roi, tuple | list | np.ndarray) and len(roi) == 4:
        geom = box(*map(float, roi))
    elif isinstance(roi, shapely.Geometry):
        geom = roi
    else:
        raise TypeError(f"{op}: roi must be a (minx, miny, maxx, maxy) bbox or a shapely "
                        f"polygon; got {type(roi).__name__}")
    if roi_crs is not None:
        from pyproj import Transformer

        from ..grid import parse_crs

        if grid.crs is None:
            raise ValueError(f"{op}: roi_crs={roi_crs!r} but the cube has no CRS to project "
                             "into; drop roi_crs (roi in the cube's coordinates) or set the "
                             "cube's CRS.")
        src = parse_crs(roi_crs)
        if not src.equals(grid.crs):
            tr = Transformer.from_crs(src, grid.crs, always_xy=True)
            minx, miny, maxx, maxy = geom.bounds
            geom = shapely.segmentize(geom, max(maxx - minx, maxy - miny) / 64 or 1.0)
            geom = shapely.transform(geom, lambda xy: np.column_stack(
                tr.transform(xy[:, 0], xy[:, 1])))
    env = box(*geom.bounds)
    rect = env.area > 0 and abs(geom.area - env.area) <= 1e-9 * env.area
    return geom, rect


def _roi_pixels(geom, grid, *, op: str) -> tuple[int, int, int, int]:
    """(r_lo, r_hi, c_lo, c_hi) half-open pixel rectangle of the geometry ∩ cube."""
    inv = ~grid.transform
    minx, miny, maxx, maxy = geom.bounds
    cs = [inv.a * x + inv.b * y + inv.c for x in (minx, maxx) for y in (miny, maxy)]
    rs = [inv.d * x + inv.e * y + inv.f for x in (minx, maxx) for y in (miny, maxy)]
    h, w = grid.shape
    r_lo, r_hi = max(0, math.floor(min(rs) + 1e-9)), min(h, math.ceil(max(rs) - 1e-9))
    c_lo, c_hi = max(0, math.floor(min(cs) + 1e-9)), min(w, math.ceil(max(cs) - 1e-9))
    if r_hi <= r_lo or c_hi <= c_lo:
        raise ValueError(f"{op}: roi (bounds {tuple(round(v, 6) for v in geom.bounds)} in the "
                         f"cube's CRS) lies outside the cube (bounds "
                         f"{tuple(round(v, 6) for v in grid.bounds)}); pass an roi that "
                         "overlaps it, or roi_crs= if it is in another CRS.")
    return r_lo, r_hi, c_lo, c_hi


def _roi_window_rect(roi, roi_crs, grid, size, *, op: str):
    """(the pixel rectangle ``(r_lo, r_hi, c_lo, c_hi)`` windows lie in, the polygon their
    centres must lie in or None); the whole cube without an roi."""
    H, W = grid.shape
    rect, geom = (0, H, 0, W), None
    if roi is not None:
        geom, is_rect = _roi_geometry(roi, roi_crs, grid, op=op)
        rect = _roi_pixels(geom, grid, op=op)
        geom = None if is_rect else geom
        r_lo, r_hi, c_lo, c_hi = rect
        if r_hi - r_lo < size or c_hi - c_lo < size:
            raise ValueError(f"{op}: roi covers {r_hi - r_lo}×{c_hi - c_lo} pixels of the "
                             f"cube, fewer than size={size}; enlarge roi or pass a "
                             "smaller size.")
    return rect, geom


def _accept_windows(rows, cols, size, geom, transform, nodata_table, max_nodata) -> np.ndarray:
    """Which windows have their centre in ``geom`` (None: all) and at most ``max_nodata``
    of their pixels missing (``nodata_table()``: the summed-area table, or None)."""
    ok = np.ones(rows.size, bool)
    S = size
    if geom is not None:
        import shapely

        t = transform
        cx = t.c + t.a * (cols + S / 2) + t.b * (rows + S / 2)
        cy = t.f + t.d * (cols + S / 2) + t.e * (rows + S / 2)
        ok &= shapely.contains_xy(geom, cx, cy)
    sat = nodata_table()
    if sat is not None:
        n = (sat[rows + S, cols + S] - sat[rows, cols + S] - sat[rows + S, cols]
             + sat[rows, cols])
        ok &= n <= max_nodata * S * S
    return ok


def _grid_windows(rect, size, stride) -> tuple[np.ndarray, np.ndarray]:
    """Top-left ``(rows, cols)`` every ``stride`` pixels over ``rect``, row-major; the last
    row/column of windows flush with its edge."""
    S = size
    r_lo, r_hi, c_lo, c_hi = rect

    def starts(lo, hi):
        s = np.arange(lo, hi - S + 1, stride, dtype=np.int64)
        return s if s[-1] == hi - S else np.append(s, hi - S)

    rr, cc = np.meshgrid(starts(r_lo, r_hi), starts(c_lo, c_hi), indexing="ij")
    return rr.ravel(), cc.ravel()


def _draw_windows(rng, rect, size, n, accept, *, max_nodata) -> tuple[np.ndarray, np.ndarray]:
    """``n`` top-left ``(rows, cols)`` drawn uniformly over ``rect`` from ``rng``, those
    failing ``accept(rows, cols)`` redrawn."""
    S = size
    r_lo, r_hi, c_lo, c_hi = rect
    rows = np.empty(0, np.int64)
    cols = np.empty(0, np.int64)
    m = n
    for _ in range(200):
        need = n - rows.size
        if need <= 0:
            break
        r = rng.integers(r_lo, r_hi - S + 1, m)
        c = rng.integers(c_lo, c_hi - S + 1, m)
        ok = accept(r, c)
        rows = np.concatenate([rows, r[ok][:need]])
        cols = np.concatenate([cols, c[ok][:need]])
        m = min(50 * n, max(m, int(need / max(ok.mean(), 1e-3) * 1.2) + 16))
    if rows.size < n:
        raise ValueError(f"RandomSampler: could draw only {rows.size} of n={n} "
                         f"windows passing max_nodata={max_nodata} (and the roi); "
                         "raise max_nodata, change roi or lower n.")
    return rows, cols


def _epoch_rng(seed, *parts) -> np.random.Generator:
    return np.random.default_rng([int(seed), *map(int, parts)])


def _grouped_order(rows, cols, yb, xb, size, rng, *, mix: int, shuffle: bool,
                   tkey=None) -> np.ndarray:
    """A permutation of windows grouped by the block holding each window's centre (and
    by ``tkey``, the time block of time-sample elements).

    ``shuffle``: compact tiles of ~``mix`` blocks in random order, a tile's windows
    shuffled together; else blocks row-major and windows row-major inside each.
    """
    n = rows.size
    if n == 0:
        return np.empty(0, np.int64)
    bi = np.searchsorted(yb, np.clip(rows + size // 2, 0, yb[-1] - 1), "right") - 1
    bj = np.searchsorted(xb, np.clip(cols + size // 2, 0, xb[-1] - 1), "right") - 1
    code = bi * (len(xb) + 1) + bj
    tkey = np.zeros(n, np.int64) if tkey is None else np.asarray(tkey, np.int64)
    if not shuffle:
        return np.lexsort((cols, rows, code, tkey))
    # a round = a compact tile of ~mix blocks (th × tw), tiles in random order: windows
    # crossing into a neighbour block mostly find it in the same round (read once)
    mix = max(1, int(mix))
    th = max(1, int(math.isqrt(mix)))
    tw = max(1, mix // th)
    nbx = len(xb) + 1
    tile = (bi // th) * (nbx // tw + 1) + bj // tw + tkey * (len(yb) + 1) * (nbx + 1)
    utile, inv = np.unique(tile, return_inverse=True)
    rnd = rng.permutation(utile.size)[inv]
    return np.lexsort((rng.random(n), rnd))


def _check_fraction(v, name, *, op):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not 0 <= v <= 1:
        raise ValueError(f"{op}: {name} must be a fraction in [0, 1] (or None to keep all "
                         f"patches); got {v!r}")
    return float(v)


# --------------------------------------------------------------------------- cells

def _cell_ids(cells, *, op: str) -> np.ndarray:
    from ..cube.cells import CELL_IDS, check_cell_cube
    from ..index import h3 as sth3

    if isinstance(cells, xr.DataArray):
        grid, _ = check_cell_cube(cells, op=op, name="cells")
        if grid != "h3":
            raise ValueError(f"{op}: cells must be H3 cells; got a {grid!r} cell cube. Build "
                             "one with stengine.ops.to_cells(da, 'h3', level=...).")
        ids = np.asarray(cells[CELL_IDS].values, np.uint64)
    else:
        ids = np.unique(np.asarray(cells, dtype=np.uint64).reshape(-1))
        if ids.size and not sth3.is_valid(ids).all():
            raise ValueError(f"{op}: cells holds ids that are not valid H3 cells (e.g. "
                             f"{int(ids[~sth3.is_valid(ids)][0]):#x}); pass H3 uint64 ids or "
                             "a cell cube.")
    if ids.size == 0:
        raise ValueError(f"{op}: cells is empty; pass at least one H3 cell.")
    return ids


def _cell_windows(ids, grid, size) -> tuple[np.ndarray, np.ndarray]:
    """Top-left pixel (row, col) of the size×size window centred on each cell's centre."""
    from pyproj import CRS, Transformer

    from ..index import h3 as sth3

    lon, lat = sth3.cell_to_lonlat(ids)
    x, y = lon, lat
    if grid.crs is not None and not grid.crs.equals(CRS.from_epsg(4326),
                                                    ignore_axis_order=True):
        tr = Transformer.from_crs(4326, grid.crs, always_xy=True)
        x, y = tr.transform(lon, lat)
    inv = ~grid.transform
    col = inv.a * x + inv.b * y + inv.c
    row = inv.d * x + inv.e * y + inv.f
    ok = np.isfinite(col) & np.isfinite(row)
    r0 = np.where(ok, np.floor(np.where(ok, row, 0)), -10 * size).astype(np.int64) - size // 2
    c0 = np.where(ok, np.floor(np.where(ok, col, 0)), -10 * size).astype(np.int64) - size // 2
    return r0, c0


def _cell_labels(labels, ids, *, op: str) -> np.ndarray:
    """The value of the 1-D cell cube ``labels`` at each of the (sorted) ``ids``: -1 (int)
    or NaN (float) where it lacks the cell, -1 where it holds its ``nodata``."""
    from ..cube.cells import CELL_IDS

    if labels.ndim != 1:
        raise DimensionError(f"{op}: a cell-cube labels= must be 1-D ('cells',); got "
                             f"dims {tuple(labels.dims)}. Select one layer first.")
    lid = np.asarray(labels[CELL_IDS].values, np.uint64)
    vals = np.asarray(labels.values)
    pos = np.clip(np.searchsorted(lid, ids), 0, max(lid.size - 1, 0))
    found = lid[pos] == ids if lid.size else np.zeros(ids.size, bool)
    if vals.dtype.kind == "f":
        y = np.where(found, vals[pos], np.nan).astype(np.float32)
    else:
        y = np.where(found, vals[pos], -1).astype(np.int64)
        nd = labels.attrs.get("nodata")
        if nd is not None:
            y[found & (vals[pos] == nd)] = -1
    return y


def _neighbour_table(ids, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's neighbours within ``k`` rings that are in the (sorted) ``ids``: their
    positions in ``ids``, padded with -1, as a table (one row per cell), and their counts."""
    from ..index import h3 as sth3

    n = ids.size
    disk = sth3.grid_disk(ids, k)
    pos = np.clip(np.searchsorted(ids, disk), 0, n - 1)
    present = (disk != 0) & (ids[pos] == disk) & (pos != np.arange(n)[:, None])
    srt = np.argsort(~present, axis=1, kind="stable")
    nb = np.where(np.take_along_axis(present, srt, 1),
                  np.take_along_axis(pos, srt, 1), -1).astype(np.int64)
    return nb, present.sum(1)

"""A chunk catalog for gridded cubes: HTM-ST key ranges per chunk; selections read needed chunks.

A gridded ``(time, y, x)`` cube in lon/lat (EPSG:4326) is chunked in time and space.
Chunk ``(i, j, k)`` covers the instants of time chunk ``i`` and the pixels of spatial
chunk ``(j, k)``; its HTM-ST coupled keys are the product of the time cells of the
instants and the trixels of the pixels' footprint (an HTM envelope of the chunk's
lon/lat box), so its key ranges are ``KeyScheme.cover(box, instants)``
(:meth:`ChunkCatalog.key_ranges`). A query (region x time interval) needs chunk
``(i, j, k)`` iff those key ranges meet the query's key ranges. Because both key sets
are products of a time-cell set and a trixel set, that is the same as "the trixels
meet and the time cells meet", which :meth:`ChunkCatalog.needed` checks on the
factors (one HTM cover per spatial chunk, one time cover per time chunk) instead of
on the full key ranges.

:func:`select` returns the sub-cube of a query built from the needed chunks only:
chunks inside the query's bounding window that are not needed are replaced by
NaN blocks without reading them, and pixels whose centre is outside the region are
masked. It reports ``chunks_total``, ``chunks_read`` and ``chunks_skipped`` in
``attrs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import DimensionError, IndexRangeError
from ..index import htm, ranges
from ..index._regions import Box, as_region
from ..index.htmst import KeyScheme
from ..index.timecode import parse_interval, to_ns
from .conventions import get_grid

__all__ = ["ChunkCatalog", "chunk_catalog", "select"]

_DIMS = ("time", "y", "x")


def _chunks_of(cube: xr.DataArray, chunks):
    """Chunk sizes per dim of ``cube`` (dask chunks, else ``chunks=``, else the Zarr encoding)."""
    if chunks is not None:
        return tuple(tuple(c) if not np.isscalar(c) else _even(cube.sizes[d], int(c))
                     for d, c in zip(cube.dims, chunks, strict=True))
    if cube.chunks is not None:
        return tuple(tuple(c) for c in cube.chunks)
    enc = cube.encoding.get("preferred_chunks") or {}
    zc = cube.encoding.get("chunks")
    if enc:
        return tuple(_even(cube.sizes[d], int(enc.get(d, cube.sizes[d]))) for d in cube.dims)
    if zc:
        return tuple(_even(cube.sizes[d], int(c)) for d, c in zip(cube.dims, zc, strict=True))
    return tuple((cube.sizes[d],) for d in cube.dims)


def _even(n: int, c: int) -> tuple[int, ...]:
    c = max(1, min(c, n))
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def _bounds(sizes) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _check_cube(cube, time_dim, where):
    if not isinstance(cube, xr.DataArray):
        raise TypeError(f"{where}: cube must be an xarray.DataArray; got {type(cube).__name__}")
    dims = (time_dim, "y", "x")
    if tuple(cube.dims) != dims:
        raise DimensionError(f"{where} needs a ({time_dim}, y, x) cube; got {tuple(cube.dims)}. "
                             f"Transpose or rename first (time_dim= names the time dim).")
    t = cube[time_dim].values
    if t.dtype.kind != "M":
        raise DimensionError(f"{where}: {time_dim!r} must hold datetime64 values; got {t.dtype}")
    # exact for any unit; out-of-range instants are refused, not wrapped
    tns = to_ns(t, where=where, name=time_dim)
    if t.size > 1 and not (np.diff(tns) > 0).all():
        raise DimensionError(f"{where}: {time_dim!r} must increase strictly; sort the cube first")
    grid = get_grid(cube)
    if grid.crs is not None and not grid.is_geographic:
        raise IndexRangeError(f"{where}: the cube must be in lon/lat degrees (EPSG:4326); got CRS "
                              f"{grid.crs.to_string()}. Reproject it first "
                              "(stengine.reproject_match).")
    return grid


@dataclass(frozen=True, eq=False)
class ChunkCatalog:
    """HTM-ST key ranges of the chunks of a gridded ``(time, y, x)`` cube.

    Attributes
    ----------
    scheme : KeyScheme
        The coupled key (level, task interval, fan-out).
    chunks : tuple of tuples
        Chunk sizes along ``(time, y, x)``.
    boxes : list of Box
        Lon/lat footprint of each spatial chunk, row-major over ``(y, x)`` chunks.
    space : list of numpy.ndarray
        HTM envelope (id ranges at ``scheme.level``) of each spatial chunk.
    time_ns : numpy.ndarray
        ``(n_time_chunks, 2)`` first and last instant (int ns) of each time chunk.
    time_cells : numpy.ndarray
        ``(n_time_chunks, 2)`` time cell range of each time chunk.
    """

    scheme: KeyScheme
    chunks: tuple
    boxes: list
    space: list
    time_ns: np.ndarray
    time_cells: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of chunks along (time, y, x)."""
        return tuple(len(c) for c in self.chunks)

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.shape))

    def key_ranges(self, i: int, j: int, k: int) -> np.ndarray:
        """Coupled HTM-ST key ranges of chunk ``(i, j, k)`` (its footprint x its instants)."""
        nt, ny, nx = self.shape
        if not (0 <= i < nt and 0 <= j < ny and 0 <= k < nx):
            raise IndexError(f"ChunkCatalog.key_ranges: chunk ({i}, {j}, {k}) outside the "
                             f"chunk grid {self.shape}")
        a, z = self.time_ns[i]
        return self.scheme.cover_ns(self.boxes[j * nx + k], (int(a), int(z) + 1))

    def needed(self, region=None, time=None) -> np.ndarray:
        """Boolean ``(n_time_chunks, n_y_chunks, n_x_chunks)``: chunks a query must read.

        ``region`` and ``time`` are as in :func:`select`.
        """
        return self._needed(as_region(region, where="ChunkCatalog.needed: region"),
                            parse_interval(time, where="ChunkCatalog.needed"))

    def _needed(self, reg, iv) -> np.ndarray:
        nt, ny, nx = self.shape
        level = self.scheme.level
        if reg is None:
            space_hit = np.ones(ny * nx, bool)
        else:
            q = htm.cover(reg, level)
            lens = np.array([len(r) for r in self.space])
            allr = np.concatenate(self.space) if lens.sum() else np.empty((0, 2), np.uint64)
            hit = ranges.overlapping(q, allr[:, 0], allr[:, 1] - np.uint64(1))
            owner = np.repeat(np.arange(ny * nx), lens)
            space_hit = np.bincount(owner[hit], minlength=ny * nx) > 0
        tg = self.scheme.time
        if iv is None:
            time_hit = np.ones(nt, bool)
        else:
            qt = tg.cover_ns(iv[0], iv[1], level)
            if len(qt) == 0:
                time_hit = np.zeros(nt, bool)
            else:
                time_hit = (self.time_cells[:, 0] < qt[0, 1]) & (qt[0, 0] < self.time_cells[:, 1])
        return time_hit[:, None, None] & space_hit.reshape(ny, nx)[None]


def chunk_catalog(cube: xr.DataArray, *, level: int = 8, fanout: int = 2, t0=None, t1=None,
                  chunks=None, time_dim: str = "time") -> ChunkCatalog:
    """Build the :class:`ChunkCatalog` of a gridded lon/lat cube.

    Parameters
    ----------
    cube : xarray.DataArray
        Dims ``(time, y, x)``; ``x``/``y`` are longitude/latitude pixel centres in degrees.
    level : int
        Level of the trixels and time cells of the keys (coarse is fine: it only has to
        resolve chunks, e.g. 6-8 for chunks of a few degrees).
    fanout : int
        Time cell fan-out.
    t0, t1 : datetime-like, optional
        Task interval; by default from the first instant to just after the last.
    chunks : tuple, optional
        Chunking to catalog when the cube is not dask-backed (sizes per dim, or one int
        per dim); by default the dask chunks, else the Zarr encoding, else one chunk.
    time_dim : str
        Name of the time dim.
    """
    grid = _check_cube(cube, time_dim, "chunk_catalog")
    tns = to_ns(cube[time_dim].values, where="chunk_catalog", name=time_dim)
    a = int(tns[0]) if t0 is None else None
    z = int(tns[-1]) + 1 if t1 is None else None
    scheme = KeyScheme("htmst", level, np.datetime64(a, "ns") if t0 is None else t0,
                       np.datetime64(z, "ns") if t1 is None else t1, fanout)
    ch = _chunks_of(cube, chunks)
    tb, yb, xb = (_bounds(c) for c in ch)
    # pixel-edge footprints of the spatial chunks, in degrees
    t = grid.transform
    boxes, space = [], []
    for j in range(len(ch[1])):
        ys = [t.f + t.e * yb[j], t.f + t.e * yb[j + 1]]
        lat_lo, lat_hi = max(-90.0, min(ys)), min(90.0, max(ys))
        for k in range(len(ch[2])):
            x0, x1 = t.c + t.a * xb[k], t.c + t.a * xb[k + 1]
            lo, hi = min(x0, x1), max(x0, x1)
            box = Box(lo, lat_lo, hi if hi - lo < 360.0 else lo + 360.0, lat_hi)
            boxes.append(box)
            space.append(htm.cover(box, level))
    first = tns[tb[:-1]]
    last = tns[tb[1:] - 1]
    tg = scheme.time
    cells = np.array([tg.cover_ns(int(f), int(la) + 1, level)[0] for f, la in
                      zip(first, last, strict=True)], dtype=np.uint64).reshape(-1, 2)
    return ChunkCatalog(scheme, ch, boxes, space, np.stack([first, last], axis=1), cells)


def select(cube: xr.DataArray, region=None, time=None, *, level: int = 8,
           catalog: ChunkCatalog | None = None, mask: bool = True,
           time_dim: str = "time") -> xr.DataArray:
    """The part of a gridded cube in ``region`` during ``time``, reading only needed chunks.

    Parameters
    ----------
    cube : xarray.DataArray
        ``(time, y, x)`` in lon/lat degrees (numpy- or dask-backed).
    region : Cap | Box | Polygon | tuple | shapely.Polygon | None
        Where (None: everywhere); a pixel belongs to it when its centre does.
    time : (start, stop) | slice | str | None
        When, half-open.
    level : int
        Key level when the catalog is built here.
    catalog : ChunkCatalog, optional
        A catalog from :func:`chunk_catalog` (reuse it across queries).
    mask : bool
        Set pixels whose centre is outside the region to NaN (the result is float).

    Returns
    -------
    xarray.DataArray
        The time steps in ``[start, stop)`` and the pixel window around the region;
        lazy for dask input, with unneeded chunks as NaN blocks that read nothing.
        ``attrs`` gains ``chunks_total``, ``chunks_read`` and ``chunks_skipped``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from stengine import Grid
    >>> from stengine.cube import make_raster
    >>> from stengine.index import Cap
    >>> g = Grid.from_bbox((-180, -90, 180, 90), 10.0, crs=4326)
    >>> cube = make_raster(np.ones((4, 18, 36)), g, dims=("time", "y", "x"),
    ...     coords={"time": pd.date_range("2013-01-01", periods=4)}).chunk(time=1, y=6, x=6)
    >>> out = select(cube, Cap(0, 0, 10), ("2013-01-02", "2013-01-03"))
    >>> out.sizes["time"], out.attrs["chunks_read"], out.attrs["chunks_skipped"]
    (1, 2, 70)
    >>> float(out.sum())  # pixel centres within 10 degrees of (0, 0)
    4.0
    """
    _check_cube(cube, time_dim, "select")
    cat = catalog if catalog is not None else chunk_catalog(cube, level=level, time_dim=time_dim)
    if cube.chunks is not None and tuple(tuple(c) for c in cube.chunks) != tuple(
            tuple(c) for c in cat.chunks):
        raise DimensionError("select: the catalog was built for another chunking of the cube; "
                             "rebuild it with chunk_catalog(cube)")
    reg = as_region(region, where="select: region")
    iv = parse_interval(time, where="select")
    need = cat._needed(reg, iv)
    # the index window of the query
    tns = to_ns(cube[time_dim].values, where="select", name=time_dim)
    tsel = np.ones(tns.size, bool)
    if iv is not None:
        if iv[0] is not None:
            tsel &= tns >= iv[0]
        if iv[1] is not None:
            tsel &= tns < iv[1]
    lon = cube["x"].values.astype(np.float64)
    lat = cube["y"].values.astype(np.float64)
    if reg is None:
        ysel, xsel = np.ones(lat.size, bool), np.ones(lon.size, bool)
    else:
        lo, la0, hi, la1 = reg.bbox
        ysel = (lat >= la0) & (lat <= la1)
        xsel = np.ones(lon.size, bool) if hi - lo >= 360.0 else Box(lo, -90, hi, 90).contains(
            lon, np.zeros_like(lon))
    win = [_window(s) for s in (tsel, ysel, xsel)]
    sub = cube.isel({time_dim: win[0], "y": win[1], "x": win[2]})
    bounds = [_bounds(c) for c in cat.chunks]
    ids = [np.searchsorted(b, np.arange(w.start, w.stop), side="right") - 1
           for b, w in zip(bounds, win, strict=True)]
    # the key test is cell-exact; chunks outside the exact index window are not read either
    in_win = [np.isin(np.arange(len(c)), i) for c, i in zip(cat.chunks, ids, strict=True)]
    need = need & in_win[0][:, None, None] & in_win[1][None, :, None] & in_win[2][None, None, :]
    if hasattr(sub.data, "dask") and sub.size:
        sub = sub.copy(data=_skip_blocks(sub.data, ids, need))
    if mask and reg is not None:
        inside = reg.contains(sub["x"].values[None, :], sub["y"].values[:, None])
        sub = sub.where(xr.DataArray(inside, dims=("y", "x")))
    read = int(need.sum())
    sub.attrs.update(chunks_total=cat.n_chunks, chunks_read=read,
                     chunks_skipped=cat.n_chunks - read)
    return sub


def _window(sel: np.ndarray) -> slice:
    idx = np.flatnonzero(sel)
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def _skip_blocks(arr, ids, need):
    """``arr`` with the blocks of unneeded source chunks replaced by NaN blocks (no reads)."""
    import dask.array as dsa

    # source chunk of each block of arr (arr's blocks never straddle source chunks)
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in arr.chunks]
    src = [i[s] for i, s in zip(ids, starts, strict=True)]
    fill = np.nan if arr.dtype.kind == "f" else None
    dtype = arr.dtype if fill is not None else np.float64
    base = arr if fill is not None else arr.astype(dtype)

    def block(bi, bj, bk):
        if need[src[0][bi], src[1][bj], src[2][bk]]:
            return base.blocks[bi, bj, bk]
        shape = (arr.chunks[0][bi], arr.chunks[1][bj], arr.chunks[2][bk])
        return dsa.full(shape, np.nan, dtype=dtype, chunks=shape)

    return dsa.block([[[block(i, j, k) for k in range(len(arr.chunks[2]))]
                       for j in range(len(arr.chunks[1]))] for i in range(len(arr.chunks[0]))])

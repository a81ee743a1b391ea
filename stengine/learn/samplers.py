"""Samplers: patches of a cube (or around cells) as NumPy batches or a torch dataset.

*Where* is kept apart from *what* (TorchGeo's split): a sampler first indexes its
windows ``(row0, col0)`` in the cube's pixel grid from the coords (roi, toi, stride, or
draws from its generator); a reader then turns a list of windows into a ``(B, C, S, S)``
array. The reader groups the reads: it finds the dask/Zarr chunks the windows touch,
reads (and decodes) each missing one once, for all the windows in it, and keeps the
decoded blocks in a small LRU cache (``cache_mb``). Counters are in ``sampler.stats``.

Channels. Every data variable with the spatial dims contributes its non-spatial
positions in C order as channels, named ``var[label][label]...`` (``label`` = the
coordinate value: ISO date for ``time``, the band name for ``band``); a 2-D variable is
one channel named after it. So ``(time, y, x)`` gives one channel per time step,
``(time, band, y, x)`` time-major channels, and a Dataset the channels of each variable
in turn. Missing data (NaN, or ``attrs["nodata"]``) is NaN in ``x``; missing labels are
``-1`` (integer labels) or NaN (float labels).

Epoch order: element ids (windows, cells) are ordered by chunk-grouped shuffling
(blocks drawn in random order, ``mix`` blocks' windows shuffled together), so a batch
mixes a few regions and each block is decoded about once per epoch. ``shard(rank,
world_size)`` keeps every ``world_size``-th element of that order from ``rank``.

The sources and the reader are in ``_reader``; roi/toi, windows and epoch order in
``_windows``; here, the samplers.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
import xarray as xr

from ..cube.conventions import get_grid
from ..cube.validate import spatial_dims
from ..errors import DimensionError
from ._reader import (
    _label_source,
    _label_str,
    _missing_table,
    _Reader,
    _Source,  # noqa: F401  (importable here, as before the split: pickles may name it)
    _source_name,
    _sources,  # stengine.learn.infer imports _sources and _cell_ids from here
)
from ._windows import (
    _accept_windows,
    _cell_ids,
    _cell_labels,
    _cell_windows,
    _check_fraction,
    _check_size,
    _draw_windows,
    _epoch_rng,
    _grid_windows,
    _grouped_order,
    _neighbour_table,
    _roi_window_rect,
    _select_time,
)

__all__ = ["GridSampler", "RandomSampler", "CellSampler", "TripletSampler"]


# --------------------------------------------------------------------------- base

class _Sampler(torch.utils.data.IterableDataset):
    """Shared machinery: epoch order, sharding, batches, torch iteration, state."""

    kind = "patch"
    _read_group = 64  # elements read together by __iter__ / DataLoader workers

    def _init_common(self, seed, mix, shuffle, cache_mb, transform):
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"{type(self).__name__}: seed must be an integer; got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size = 0, 1
        self.mix = int(mix)
        self.shuffle = bool(shuffle)
        self.transform = transform
        self._cache_mb = cache_mb
        self._order_cache = None

    @property
    def stats(self) -> dict:
        """Read counters: ``chunks_read`` (dask/Zarr chunks decoded), ``blocks_read``,
        ``cache_hits``, ``patches``."""
        return self._reader.stats

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    # subclasses: _n_global(), _epoch_plan(rng) -> (order, plan), _fetch(ids, plan)
    def _plan(self):
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            rng = _epoch_rng(self.seed, self.epoch)
            order, plan = self._epoch_plan(rng)
            self._order_cache = (self.epoch, np.asarray(order, np.int64), plan)
        return self._order_cache[1], self._order_cache[2]

    def _elements(self) -> np.ndarray:
        order, _ = self._plan()
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        n = self._n_global()
        return max(0, (n - self.rank + self.world_size - 1) // self.world_size)

    def __getitem__(self, i):
        el = self._elements()
        if not -len(el) <= int(i) < len(el):
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {len(el)} "
                             "elements")
        return _unstack(self._fetch(el[int(i): int(i) + 1 or None], self._plan()[1]), 0)

    def batches(self, batch_size: int, *, drop_last: bool = False, prefetch: int = 2):
        """Batches (dicts of stacked arrays) of this shard's epoch order.

        ``prefetch``: batches read ahead in background threads while the caller works on
        this one (their chunk decodes and copies overlap); 0 reads in the caller's thread.
        """
        batch_size = _check_size(batch_size, "batch_size", op=f"{type(self).__name__}.batches")
        el = self._elements()
        _, plan = self._plan()
        stop = (len(el) // batch_size) * batch_size if drop_last else len(el)
        starts = range(0, stop, batch_size)
        if not prefetch or len(starts) < 2:
            for s in starts:
                yield self._fetch(el[s:s + batch_size], plan)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        depth = max(1, int(prefetch))
        with ThreadPoolExecutor(depth, thread_name_prefix="stengine-sampler") as ex:
            todo = iter(starts)
            inflight = deque(ex.submit(self._fetch, el[s:s + batch_size], plan)
                             for s in itertools.islice(todo, depth))
            while inflight:
                batch = inflight.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    inflight.append(ex.submit(self._fetch, el[nxt:nxt + batch_size], plan))
                yield batch

    def __iter__(self):
        el = self._elements()
        _, plan = self._plan()
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        el = el[wid::nw]
        rng = _epoch_rng(self.seed, self.epoch, self.rank, wid, 1)
        for s in range(0, len(el), self._read_group):
            batch = self._fetch(el[s:s + self._read_group], plan)
            for k in range(len(batch["index"])):
                item = _unstack(batch, k)
                yield self.transform(item, rng) if self.transform is not None else item

    def shard(self, rank: int, world_size: int):
        """A sampler of the same data holding every ``world_size``-th element from ``rank``."""
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"shard: world_size must be a positive integer; got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"shard: rank must be in 0..{world_size - 1}; got {rank!r}")
        out = copy.copy(self)
        out.rank, out.world_size = rank, world_size
        return out

    def set_epoch(self, epoch: int) -> None:
        """Reseed the epoch's order (and draws) from ``(seed, epoch)``."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "rank": self.rank,
                "world_size": self.world_size, "kind": type(self).__name__,
                "n": self._n_global()}

    def load_state_dict(self, d: dict) -> None:
        self.seed = int(d["seed"])
        self.epoch = int(d["epoch"])
        self.rank = int(d.get("rank", self.rank))
        self.world_size = int(d.get("world_size", self.world_size))
        self._order_cache = None

    def describe(self) -> dict:
        """What the sampler reads, JSON-ready: ``source`` (the store path when the cube's
        encoding or attrs carry it, else variable names), ``data_keys`` (the dask names of
        the variables: tokens of the store and its state), channels, roi, toi, times."""
        d = {"sampler": type(self).__name__, "source": self._source_name,
             "data_keys": [str(s.data.name) for s in self._reader.sources],
             "channels": self.channels, "size": self.size, "n": self._n_global(),
             "seed": self.seed, "epoch": self.epoch}
        d.update(self._describe_extra)
        return d

    def __repr__(self):
        return (f"{type(self).__name__}(n={self._n_global()}, channels={len(self._channels)}, "
                f"size={self.size}, rank={self.rank}/{self.world_size}, epoch={self.epoch})")


def _unstack(batch: dict, k: int) -> dict:
    # torch's collate has no uint64 scalars: items carry cell ids as int64 (same bits;
    # H3 ids are < 2**63)
    return {key: (v.view(np.int64) if v.dtype == np.uint64 else v)[k]
            for key, v in batch.items()}


class _GriddedBase(_Sampler):
    """Grid and random patch samplers: cube → sources, roi/toi, labels, nodata table."""

    def _setup(self, cube, size, *, roi, roi_crs, toi, bands, labels, label_mode, max_nodata,
               dims, cache_mb, time_as, op):
        self._dims = dims = spatial_dims(dims)
        self.size = size = _check_size(size, op=op)
        if time_as not in ("channels", "samples"):
            raise ValueError(f"{op}: time_as must be 'channels' (each time step a channel) or "
                             f"'samples' (each time step a sample); got {time_as!r}")
        cube = _select_time(cube, toi, op=op)
        if time_as == "samples" and "time" not in cube.dims:
            raise DimensionError(f"{op}: time_as='samples' needs a 'time' dim; the cube has "
                                 f"{tuple(cube.dims)}. Drop time_as=.")
        self.time_as = time_as
        self._T = int(cube.sizes["time"]) if time_as == "samples" else 1
        sources, ref = _sources(cube, dims, list(bands) if bands is not None else None, op=op,
                                time_samples=time_as == "samples")
        self.grid = grid = get_grid(ref, dims=dims)
        H, W = grid.shape
        if size > H or size > W:
            raise ValueError(f"{op}: size={size} is larger than the cube ({H}×{W} pixels); "
                             f"pass size <= {min(H, W)}.")
        self._rect, self._geom = _roi_window_rect(roi, roi_crs, grid, size, op=op)
        if label_mode not in ("pixel", "centre"):
            raise ValueError(f"{op}: label_mode must be 'pixel' (a label per pixel) or "
                             f"'centre' (the centre pixel's label per patch); got {label_mode!r}")
        self.label_mode = label_mode
        self._nx = len(sources)
        self._has_labels = labels is not None
        if labels is not None:
            sources.append(_label_source(labels, ref, dims, op=op, same_grid=True))
        self._reader = _Reader(sources, cache_mb)
        self._channels = [c for s in sources[: self._nx] for c in s.channels]
        self.max_nodata = _check_fraction(max_nodata, "max_nodata", op=op)
        self._sat = None
        times = [_label_str(t) for t in cube["time"].values] if "time" in cube.dims else None
        self._source_name = _source_name(cube)
        self._describe_extra = {
            "crs": grid.crs.to_string() if grid.crs is not None else None,
            "roi_pixels": list(self._rect), "roi": None if roi is None else (
                list(map(float, roi)) if isinstance(roi, tuple | list) else roi.wkt),
            "roi_crs": None if roi_crs is None else str(roi_crs),
            "toi": None if toi is None else [str(t) for t in toi], "times": times,
            "time_as": time_as, "max_nodata": self.max_nodata}

    def _tkey(self, t):
        """Time block of each element's step (for chunk grouping), or None."""
        src = next((s for s in self._reader.sources if s.time_samples), None)
        if src is None:
            return None
        return np.searchsorted(src.lead_bounds[0], t, "right") - 1

    def _nodata_table(self):
        """Summed-area table of missing pixels (read once, lazily), or None."""
        if self.max_nodata is None:
            return None
        if self._sat is None:
            self._sat = _missing_table(self._reader, self._nx, self.grid.shape)
        return self._sat

    def _accept(self, rows, cols) -> np.ndarray:
        return _accept_windows(rows, cols, self.size, self._geom, self.grid.transform,
                               self._nodata_table, self.max_nodata)

    def _fetch(self, ids, plan) -> dict:
        ids = np.asarray(ids, np.int64)
        rows, cols = plan["rows"][ids], plan["cols"][ids]
        t = plan["time"][ids] if "time" in plan else None
        S, rd = self.size, self._reader
        x = np.empty((ids.size, len(self._channels), S, S), np.float32)
        ch = 0
        for si in range(self._nx):
            rd.read(si, rows, cols, S, out=x, ch0=ch, times=t)
            ch += rd.sources[si].C
        out = {"x": x}
        if self._has_labels:
            if self.label_mode == "pixel":
                out["y"] = rd.read(self._nx, rows, cols, S)[:, 0]
            else:
                out["y"] = rd.read(self._nx, rows + S // 2, cols + S // 2, 1)[:, 0, 0, 0]
        out["index"] = ids
        out["window"] = np.stack([rows, cols], 1)
        if t is not None:
            out["time"] = t
        return out


class GridSampler(_GriddedBase):
    """Patches on a regular grid of windows: every ``stride`` pixels over the roi.

    Parameters
    ----------
    cube : xarray.DataArray | xarray.Dataset
        Lazy (Zarr/dask) or in-memory cube with spatial dims ``dims`` (default
        ``("y", "x")``); its other dims become channels (see the module docstring).
    size, stride : int
        Patch side and step in pixels. The last row/column of windows is moved flush
        with the roi's edge, so the roi is covered.
    roi : (minx, miny, maxx, maxy) | shapely geometry, optional
        Region in the cube's CRS, or in ``roi_crs`` (e.g. ``"EPSG:4326"`` for lon/lat),
        projected with pyproj. Windows lie in the roi's bounding box; for a polygon
        (or a box from another CRS) their centre lies in it.
    toi : (start, end), optional
        Time interval (inclusive) of the ``time`` steps kept.
    time_as : {"channels", "samples"}
        Time steps as channels (default), or each ``(window, time step)`` a sample whose
        channels are the other dims (batches then carry ``"time"``, the step's index in
        the kept times); "samples" keeps channel names free of dates, so a model trained
        on some times runs on others.
    bands : list, optional
        Variables of a Dataset, or labels of a DataArray's ``band`` dim, in channel order.
    labels : xarray.DataArray, optional
        A ``(y, x)`` raster on the cube's grid: ``y`` per pixel (``label_mode="pixel"``)
        or the centre pixel's label (``"centre"``).
    max_nodata : float, optional
        Skip windows whose fraction of pixels with any missing channel exceeds it.
    shuffle, seed, mix :
        Epoch order: row-major by chunk (default) or chunk-grouped shuffle.
    cache_mb : float
        Decoded-block LRU cache size per sampler (and DataLoader worker).
    transform : callable(item, rng) -> item, optional
        Applied per item in ``__iter__`` (the DataLoader path) with that worker's generator.

    Examples
    --------
    >>> from stengine.testing import make_cube
    >>> s = GridSampler(make_cube((3, 40, 50)), 16, 16)  # (time, y, x): 3 channels
    >>> len(s), s.channels[0]                            # rows 0 16 24 × cols 0 16 32 34
    (12, 'v[2020-01-01]')
    >>> b = next(s.batches(4))
    >>> b["x"].shape, b["window"][1].tolist()
    ((4, 3, 16, 16), [0, 16])
    """

    def __init__(self, cube, size: int, stride: int | None = None, *, roi=None, roi_crs=None,
                 toi=None, bands=None, labels=None, label_mode: str = "pixel",
                 max_nodata: float | None = None, time_as: str = "channels",
                 shuffle: bool = False, seed: int = 0, mix: int = 8, cache_mb: float = 256.0,
                 dims=None, transform=None):
        op = "GridSampler"
        self._init_common(seed, mix, shuffle, cache_mb, transform)
        self._setup(cube, size, roi=roi, roi_crs=roi_crs, toi=toi, bands=bands, labels=labels,
                    label_mode=label_mode, max_nodata=max_nodata, dims=dims,
                    cache_mb=cache_mb, time_as=time_as, op=op)
        self.stride = _check_size(self.size if stride is None else stride, "stride", op=op)
        rows, cols = _grid_windows(self._rect, self.size, self.stride)
        keep = self._accept(rows, cols)
        rows, cols = rows[keep], cols[keep]
        if rows.size == 0:
            raise ValueError(f"{op}: no window passes max_nodata={self.max_nodata} (or lies "
                             "in the roi polygon); raise max_nodata or change roi.")
        # element e = t * n_windows + w (time_as="samples"; else t = 0)
        self._nw = rows.size
        self._rows, self._cols = np.tile(rows, self._T), np.tile(cols, self._T)
        self._times = np.repeat(np.arange(self._T, dtype=np.int64), self._nw)
        self._describe_extra["stride"] = self.stride

    def _n_global(self):
        return int(self._rows.size)

    def _epoch_plan(self, rng):
        src = self._reader.sources[0]
        tkey = self._tkey(self._times)
        order = _grouped_order(self._rows, self._cols, src.yb, src.xb, self.size, rng,
                               mix=self.mix, shuffle=self.shuffle, tkey=tkey)
        plan = {"rows": self._rows, "cols": self._cols}
        if self.time_as == "samples":
            plan["time"] = self._times
        return order, plan


class RandomSampler(_GriddedBase):
    """``n`` windows drawn uniformly (from the sampler's generator) over the roi, per epoch.

    Same parameters as :class:`GridSampler` (no ``stride``); draws depend only on
    ``(seed, epoch)``; windows failing the roi polygon or ``max_nodata`` are redrawn.
    With ``time_as="samples"`` each draw also takes a time step, uniformly.
    """

    def __init__(self, cube, size: int, n: int, *, seed: int = 0, roi=None, roi_crs=None,
                 toi=None, bands=None, labels=None, label_mode: str = "pixel",
                 max_nodata: float | None = None, time_as: str = "channels", mix: int = 8,
                 cache_mb: float = 256.0, dims=None, transform=None):
        op = "RandomSampler"
        self._init_common(seed, mix, True, cache_mb, transform)
        self.n = _check_size(n, "n", op=op)
        self._setup(cube, size, roi=roi, roi_crs=roi_crs, toi=toi, bands=bands, labels=labels,
                    label_mode=label_mode, max_nodata=max_nodata, dims=dims,
                    cache_mb=cache_mb, time_as=time_as, op=op)

    def _n_global(self):
        return self.n

    def _epoch_plan(self, rng):
        S = self.size
        rows, cols = _draw_windows(rng, self._rect, S, self.n, self._accept,
                                   max_nodata=self.max_nodata)
        plan = {"rows": rows, "cols": cols}
        tkey = None
        if self.time_as == "samples":
            plan["time"] = rng.integers(0, self._T, self.n)
            tkey = self._tkey(plan["time"])
        src = self._reader.sources[0]
        order = _grouped_order(rows, cols, src.yb, src.xb, S, rng, mix=self.mix, shuffle=True,
                               tkey=tkey)
        return order, plan


# --------------------------------------------------------------------------- cells

class CellSampler(_Sampler):
    """A ``size × size`` patch of ``raster`` centred on each H3 cell of ``cells``.

    Each cell's centre (H3 → lon/lat) is projected into the raster's CRS with pyproj and
    falls in the window's pixel ``(size // 2, size // 2)``. Parts of a window outside the
    raster are missing (NaN); cells whose window misses the raster entirely (or exceeds
    ``max_nodata``) are left out.

    Parameters
    ----------
    cells : cell cube (xarray.DataArray with ``cell_ids``) | array of uint64 H3 ids
        The cells (a cube or a stencil), kept in id order.
    raster : xarray.DataArray | xarray.Dataset
        The gridded data; channels as in :class:`GridSampler` (``bands``, ``toi``).
    labels : cell cube | xarray.DataArray raster, optional
        A 1-D cell cube (``y`` = its value at each cell; -1/NaN where it lacks the cell),
        or a ``(y, x)`` raster (any grid; per pixel of the patch, or the centre's label
        with ``label_mode="centre"``).
    shuffle : bool
        Epoch order: id order (default; the order ``embed`` wants) or chunk-grouped shuffle.
    """

    kind = "patch"

    def __init__(self, cells, raster, size: int, *, labels=None, label_mode: str = "pixel",
                 bands=None, toi=None, max_nodata: float | None = None, shuffle: bool = False,
                 seed: int = 0, mix: int = 8, cache_mb: float = 256.0, dims=None,
                 transform=None):
        op = type(self).__name__
        self._init_common(seed, mix, shuffle, cache_mb, transform)
        dims = spatial_dims(dims)
        self.size = S = _check_size(size, op=op)
        raster = _select_time(raster, toi, op=op)
        sources, ref = _sources(raster, dims, list(bands) if bands is not None else None, op=op)
        self.grid = grid = get_grid(ref, dims=dims)
        H, W = grid.shape
        if S > H or S > W:
            raise ValueError(f"{op}: size={S} is larger than the raster ({H}×{W} pixels); "
                             f"pass size <= {min(H, W)}.")
        ids = _cell_ids(cells, op=op)
        rows, cols = _cell_windows(ids, grid, S)
        keep = (rows < H) & (rows + S > 0) & (cols < W) & (cols + S > 0)
        self._nx = len(sources)
        self.max_nodata = _check_fraction(max_nodata, "max_nodata", op=op)
        self._reader = _Reader(sources, cache_mb)
        if self.max_nodata is not None and keep.any():
            keep[keep] = self._valid_cells(rows[keep], cols[keep])
        if not keep.any():
            raise ValueError(f"{op}: no cell of cells has its {S}×{S} window on the raster "
                             f"(raster bounds {tuple(round(v, 6) for v in grid.bounds)}"
                             + (f", max_nodata={self.max_nodata}" if self.max_nodata is not None
                                else "") + "); pass cells over the raster.")
        self._ids, self._rows, self._cols = ids[keep], rows[keep], cols[keep]
        self._labels_kind = None
        if label_mode not in ("pixel", "centre"):
            raise ValueError(f"{op}: label_mode must be 'pixel' or 'centre'; got {label_mode!r}")
        self.label_mode = label_mode
        if labels is not None:
            self._setup_labels(labels, dims, op)
        self._channels = [c for s in sources[: self._nx] for c in s.channels]
        self._source_name = _source_name(raster)
        self._describe_extra = {
            "crs": grid.crs.to_string() if grid.crs is not None else None,
            "cells": int(self._ids.size), "toi": None if toi is None else [str(t) for t in toi],
            "times": [_label_str(t) for t in raster["time"].values]
            if "time" in raster.dims else None, "max_nodata": self.max_nodata}

    def _valid_cells(self, rows, cols) -> np.ndarray:
        S = self.size
        bad = np.zeros(rows.size, np.int64)
        for k in range(0, rows.size, 256):
            x = np.concatenate([self._reader.read(si, rows[k:k + 256], cols[k:k + 256], S)
                                for si in range(self._nx)], axis=1)
            bad[k:k + 256] = np.isnan(x).any(axis=1).sum(axis=(1, 2))
        return bad <= self.max_nodata * S * S

    def _setup_labels(self, labels, dims, op):
        from ..cube.cells import CELL_DIM

        if isinstance(labels, xr.DataArray) and CELL_DIM in labels.dims:
            self._cell_y = _cell_labels(labels, self._ids, op=op)
            self._labels_kind = "cells"
            return
        src = _label_source(labels, None, dims, op=op, same_grid=False)
        self._reader.sources.append(src)
        lg = get_grid(labels, dims=dims)
        self._lrows, self._lcols = _cell_windows(self._ids, lg, self.size)
        self._labels_kind = "raster"

    def _n_global(self):
        return int(self._ids.size)

    def _epoch_plan(self, rng):
        if not self.shuffle:
            return np.arange(self._ids.size), None
        src = self._reader.sources[0]
        return _grouped_order(self._rows, self._cols, src.yb, src.xb, self.size, rng,
                              mix=self.mix, shuffle=True), None

    def _read_x(self, rows, cols) -> np.ndarray:
        S, rd = self.size, self._reader
        x = np.empty((rows.size, len(self._channels), S, S), np.float32)
        ch = 0
        for si in range(self._nx):
            rd.read(si, rows, cols, S, out=x, ch0=ch)
            ch += rd.sources[si].C
        return x

    def _labels_of(self, ids) -> np.ndarray:
        if self._labels_kind == "cells":
            return self._cell_y[ids]
        S = self.size
        r, c = self._lrows[ids], self._lcols[ids]
        if self.label_mode == "pixel":
            return self._reader.read(self._nx, r, c, S)[:, 0]
        return self._reader.read(self._nx, r + S // 2, c + S // 2, 1)[:, 0, 0, 0]

    def _fetch(self, ids, plan) -> dict:
        ids = np.asarray(ids, np.int64)
        rows, cols = self._rows[ids], self._cols[ids]
        out = {"x": self._read_x(rows, cols)}
        if self._labels_kind is not None:
            out["y"] = self._labels_of(ids)
        out.update(index=ids, window=np.stack([rows, cols], 1), cell=self._ids[ids])
        return out


class TripletSampler(CellSampler):
    """Triplets of cell patches: anchor, a positive within ``k`` rings, a negative beyond.

    The anchor is a cell's patch (as in :class:`CellSampler`); the positive is the patch
    of one of its ``grid_disk(k)`` neighbours present in ``cells``; the negative, that
    of a cell of ``cells`` outside the anchor's ``k``-ring. Draws are vectorised per
    epoch from ``(seed, epoch)``: a padded ``(n, 3k(k+1))`` neighbour table, one uniform
    draw per anchor for the positive, rejection rounds for the negatives. Cells with no
    neighbour in ``cells`` are not anchors. Batches hold ``anchor``, ``positive``,
    ``negative`` (each ``(B, C, S, S)``), ``cell``, ``positive_cell``, ``negative_cell``.
    """

    kind = "triplet"

    def __init__(self, cells, raster, size: int, k: int = 1, *, bands=None, toi=None,
                 max_nodata: float | None = None, shuffle: bool = True, seed: int = 0,
                 mix: int = 8, cache_mb: float = 256.0, dims=None, transform=None):
        op = "TripletSampler"
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"{op}: k must be a positive integer (rings); got {k!r}")
        super().__init__(cells, raster, size, bands=bands, toi=toi, max_nodata=max_nodata,
                         shuffle=shuffle, seed=seed, mix=mix, cache_mb=cache_mb, dims=dims,
                         transform=transform)
        self.k = int(k)
        n = self._ids.size
        self._nb, self._nnb = _neighbour_table(self._ids, self.k)
        self._anchors = np.flatnonzero((self._nnb > 0) & (n - 1 - self._nnb > 0))
        if self._anchors.size == 0:
            raise ValueError(f"{op}: no cell of cells has both a neighbour within k={k} rings "
                             "and a cell outside them in cells; pass a larger set of cells.")
        self._describe_extra["k"] = self.k

    def _n_global(self):
        return int(self._anchors.size)

    def _epoch_plan(self, rng):
        a = self._anchors
        if self.shuffle:
            src = self._reader.sources[0]
            order = _grouped_order(self._rows[a], self._cols[a], src.yb, src.xb, self.size,
                                   rng, mix=self.mix, shuffle=True)
        else:
            order = np.arange(a.size)
        u = np.floor(rng.random(a.size) * self._nnb[a]).astype(np.int64)
        positive = self._nb[a, u]
        n = self._ids.size
        negative = rng.integers(0, n, a.size)
        for _ in range(1000):
            bad = (negative == a) | (self._nb[a] == negative[:, None]).any(1)
            if not bad.any():
                break
            negative[bad] = rng.integers(0, n, int(bad.sum()))
        return order, {"positive": positive, "negative": negative}

    def _fetch(self, ids, plan) -> dict:
        ids = np.asarray(ids, np.int64)
        a = self._anchors[ids]
        p, q = plan["positive"][ids], plan["negative"][ids]
        cells = np.concatenate([a, p, q])
        x = self._read_x(self._rows[cells], self._cols[cells])
        B = ids.size
        return {"anchor": x[:B], "positive": x[B:2 * B], "negative": x[2 * B:],
                "cell": self._ids[a], "positive_cell": self._ids[p],
                "negative_cell": self._ids[q], "index": ids,
                "window": np.stack([self._rows[a], self._cols[a]], 1)}

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
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import threading
from collections import OrderedDict

import numpy as np
import torch
import xarray as xr

from ..cube.conventions import get_grid
from ..cube.validate import check_same_grid, spatial_dims
from ..errors import DimensionError

__all__ = ["GridSampler", "RandomSampler", "CellSampler", "TripletSampler"]


# --------------------------------------------------------------------------- sources

def _label_str(v) -> str:
    v = np.asarray(v)
    if v.dtype.kind == "M":
        s = np.datetime_as_string(v, unit="s")
        return s[:10] if s.endswith("T00:00:00") else s
    return str(v.item() if v.ndim == 0 else v)


class _Source:
    """One variable as a dask array ``(lead..., H, W)``; reads whole spatial blocks."""

    def __init__(self, da: xr.DataArray, dims, *, role: str = "x", time_samples: bool = False):
        import dask.array as dsa

        ydim, xdim = dims
        lead = [d for d in da.dims if d not in dims]
        # time as samples: time first, its blocks cached apart, its labels not in names
        self.time_samples = time_samples and "time" in lead
        if self.time_samples:
            lead = ["time"] + [d for d in lead if d != "time"]
        da = da.transpose(*lead, ydim, xdim)
        data = da.data
        if not hasattr(data, "dask"):
            data = dsa.from_array(np.asarray(data), chunks=tuple(
                [-1] * len(lead) + [min(512, da.sizes[ydim]), min(512, da.sizes[xdim])]))
        self.data = data
        self.role = role
        self.name = str(da.name) if da.name is not None else "data"
        self.lead_shape = tuple(data.shape[:-2])
        self.L = int(np.prod(self.lead_shape)) if lead else 1
        self.H, self.W = data.shape[-2:]
        self.dtype = np.dtype(da.dtype)
        nd = da.attrs.get("nodata")
        self.nodata = None if nd is None or (isinstance(nd, float) and math.isnan(nd)) else nd
        self.yb = np.cumsum((0,) + tuple(data.chunks[-2]))
        self.xb = np.cumsum((0,) + tuple(data.chunks[-1]))
        self.lead_bounds = [np.cumsum((0,) + tuple(c)) for c in data.chunks[:-2]]
        self.T = int(self.lead_shape[0]) if self.time_samples else None
        self.C = self.L // self.T if self.time_samples else self.L  # channels per sample
        names = []
        named = lead[1:] if self.time_samples else lead
        if named:
            labels = [[_label_str(v) for v in (da[d].values if d in da.coords
                                               else np.arange(da.sizes[d]))] for d in named]
            for combo in np.ndindex(*[da.sizes[d] for d in named]):
                names.append(self.name + "".join(f"[{labels[k][i]}]" for k, i in enumerate(combo)))
        else:
            names.append(self.name)
        self.channels = names
        if role == "x":
            self.out_dtype, self.fill = np.dtype("f4"), np.nan
        elif self.dtype.kind == "f":
            self.out_dtype, self.fill = np.dtype("f4"), np.nan
        else:
            self.out_dtype, self.fill = np.dtype("i8"), -1
        # decoded blocks are cached compactly (int labels as int32 where they fit)
        self.cache_dtype = np.dtype("i4") if (self.out_dtype.kind == "i" and np.can_cast(
            self.dtype, np.int32)) else self.out_dtype
        self._dsk = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_dsk"] = None  # rebuilt from the dask array where it lands
        return d

    def _lead_blocks(self, tb: int) -> list:
        lbs = list(np.ndindex(*self.data.numblocks[:-2]))
        return [lb for lb in lbs if lb[0] == tb] if tb >= 0 else lbs

    def keys_of(self, tb: int, bi: int, bj: int) -> list:
        """Dask keys of spatial block (bi, bj): all lead blocks, or time block ``tb``."""
        name = self.data.name
        return [(name, *lb, bi, bj) for lb in self._lead_blocks(tb)]

    def assemble(self, tb, bi, bj, results: dict) -> np.ndarray:
        """The decoded block ``(channels, h, w)`` in the output dtype, nodata as fill;
        ``tb >= 0``: only time block ``tb`` (time-major channels)."""
        h = int(self.yb[bi + 1] - self.yb[bi])
        w = int(self.xb[bj + 1] - self.xb[bj])
        lb_all = self._lead_blocks(tb)
        lead = list(self.lead_shape)
        if tb >= 0:
            t0, t1 = int(self.lead_bounds[0][tb]), int(self.lead_bounds[0][tb + 1])
            lead[0] = t1 - t0
        if len(lb_all) == 1 and not self.lead_shape:
            raw = np.asarray(results[(self.data.name, bi, bj)])[None]
        elif len(lb_all) == 1:
            raw = np.asarray(results[(self.data.name, *lb_all[0], bi, bj)])
        else:
            raw = np.empty(tuple(lead) + (h, w), self.dtype)
            for lb in lb_all:
                sl = []
                for k, (b, i) in enumerate(zip(self.lead_bounds, lb, strict=True)):
                    base = int(self.lead_bounds[0][tb]) if (k == 0 and tb >= 0) else 0
                    sl.append(slice(int(b[i]) - base, int(b[i + 1]) - base))
                raw[tuple(sl)] = results[(self.data.name, *lb, bi, bj)]
        raw = raw.reshape(-1, h, w)
        out = raw.astype(self.cache_dtype, copy=raw.dtype != self.cache_dtype)
        bad = None
        if self.nodata is not None:
            bad = raw == np.asarray(self.nodata, raw.dtype) if raw.dtype.kind in "iub" \
                else raw == self.nodata
        if bad is not None and bad.any():
            if out is raw:
                out = out.copy()
            out[bad] = self.fill
        return out

    def invalid_mask(self):
        """Lazy ``(H, W)`` bool dask array, True where any channel is missing (or None)."""
        a = self.data
        bad = None
        if self.dtype.kind == "f":
            bad = a != a
        if self.nodata is not None:
            bad = (a == self.nodata) if bad is None else bad | (a == self.nodata)
        if bad is None:
            return None
        return bad.any(axis=tuple(range(len(self.lead_shape)))) if self.lead_shape else bad


_getpid = os.getpid
_POOLS: dict = {}  # pid → thread pool for chunk decodes (a forked child needs its own)


def _decode_pool():
    """This process's decode pool: dask's default pool is not fork-safe (a DataLoader
    worker forked from a process that used it would wait forever on its lost threads)."""
    from concurrent.futures import ThreadPoolExecutor

    pid = os.getpid()
    pool = _POOLS.get(pid)
    if pool is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        info = torch.utils.data.get_worker_info()
        n = max(1, cores // info.num_workers) if info is not None else cores
        _POOLS.clear()  # pools of a parent process are dead copies here
        pool = _POOLS[pid] = ThreadPoolExecutor(n, thread_name_prefix="stengine-decode")
    return pool


class _Reader:
    """Windows → stacked arrays, each chunk read once for all windows in it (LRU cache)."""

    def __init__(self, sources: list[_Source], cache_mb: float = 256.0):
        self.sources = sources
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()  # shards share a reader; ranks may be threads
        self._pid = _getpid()
        self._pending: dict = {}  # block key → [Event, array] while a thread decodes it
        self.stats = {"chunks_read": 0, "blocks_read": 0, "cache_hits": 0, "patches": 0}

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_cache"], d["_used"], d["_lock"], d["_pending"] = OrderedDict(), 0, None, {}
        d["stats"] = dict.fromkeys(self.stats, 0)
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock, self._pid = threading.Lock(), _getpid()

    def _fetch(self, si: int, blocks: list[tuple[int, int, int]]) -> dict:
        """Decoded blocks ``(tb, bi, bj) → array`` of source ``si``: from the cache, from
        another thread already decoding them (waited for, not decoded twice), or decoded
        here in one dask call."""
        src = self.sources[si]
        got, mine, theirs = {}, [], {}
        if self._pid != _getpid():  # forked: a lock held by a parent thread stays held
            self._lock, self._pid, self._pending = threading.Lock(), _getpid(), {}
        with self._lock:
            for b in blocks:
                key = (si, *b)
                arr = self._cache.get(key)
                if arr is not None:
                    self._cache.move_to_end(key)
                    got[b] = arr
                    self.stats["cache_hits"] += 1
                elif key in self._pending:
                    theirs[b] = self._pending[key]
                else:
                    self._pending[key] = [threading.Event(), None]
                    mine.append(b)
            if mine and src._dsk is None:
                src._dsk = dict(src.data.__dask_graph__())
        if mine:
            import dask.threaded
            from dask.optimization import cull

            arrs = {}
            try:
                keys = [k for b in mine for k in src.keys_of(*b)]
                dsk, _ = cull(src._dsk, keys)
                # one call: the chunks decode in parallel, in this process's own pool
                vals = dask.threaded.get(dsk, keys, pool=_decode_pool())
                results = dict(zip(keys, vals, strict=True))
                arrs = {b: src.assemble(*b, results) for b in mine}  # b = (tb, bi, bj)
            finally:
                with self._lock:
                    if arrs:
                        self.stats["chunks_read"] += len(keys)
                        self.stats["blocks_read"] += len(mine)
                    for b in mine:
                        rec = self._pending.pop((si, *b))
                        rec[1] = arrs.get(b)
                        rec[0].set()
                        if b in arrs:
                            got[b] = arrs[b]
                            self._cache[(si, *b)] = arrs[b]
                            self._used += arrs[b].nbytes
                    while self._used > self.cache_bytes and len(self._cache) > len(blocks):
                        _, old = self._cache.popitem(last=False)
                        self._used -= old.nbytes
        for b, rec in theirs.items():
            rec[0].wait()
            if rec[1] is None:  # that thread failed: decode here (raises its error)
                got.update(self._fetch(si, [b]))
            else:
                got[b] = rec[1]
                with self._lock:
                    self.stats["cache_hits"] += 1
        return got

    def read(self, si: int, rows, cols, size: int, out: np.ndarray | None = None,
             ch0: int = 0, times=None) -> np.ndarray:
        """Windows ``[row, row+size) × [col, col+size)`` of source ``si`` (any position;
        outside the raster is the fill value) as ``(B, C, size, size)``, or into
        ``out[:, ch0:ch0+C]``; ``times``: each window's time step (time-sample sources)."""
        src = self.sources[si]
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        B, C = rows.size, src.C
        if out is None:
            out = np.empty((B, C, size, size), src.out_dtype)
            ch0 = 0
        if src.time_samples:
            t = np.asarray(times, np.int64)
            tbs = np.searchsorted(src.lead_bounds[0], t, "right") - 1
            coff = ((t - src.lead_bounds[0][tbs]) * C).tolist()
            tbs = tbs.tolist()
        else:
            tbs, coff = [-1] * B, [0] * B
        r0 = np.clip(rows, 0, src.H)
        r1 = np.clip(rows + size, 0, src.H)
        c0 = np.clip(cols, 0, src.W)
        c1 = np.clip(cols + size, 0, src.W)
        ok = (r1 > r0) & (c1 > c0)
        partial = ~ok | (r0 != rows) | (c0 != cols) | (r1 != rows + size) | (c1 != cols + size)
        if partial.any():
            out[partial, ch0:ch0 + C] = src.fill
        bi0 = np.searchsorted(src.yb, r0, "right") - 1
        bi1 = np.searchsorted(src.yb, np.maximum(r1 - 1, 0), "right") - 1
        bj0 = np.searchsorted(src.xb, c0, "right") - 1
        bj1 = np.searchsorted(src.xb, np.maximum(c1 - 1, 0), "right") - 1
        todo = np.flatnonzero(ok).tolist()
        # Python ints from here: numpy scalar indexing costs more than the copies
        BI0, BI1, BJ0, BJ1 = bi0.tolist(), bi1.tolist(), bj0.tolist(), bj1.tolist()
        R, Cc = rows.tolist(), cols.tolist()
        A0, A1, B0, B1 = r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()
        need = set()
        for w in todo:
            tb = tbs[w]
            for bi in range(BI0[w], BI1[w] + 1):
                for bj in range(BJ0[w], BJ1[w] + 1):
                    need.add((tb, bi, bj))
        blocks = self._fetch(si, sorted(need))
        yb, xb = src.yb.tolist(), src.xb.tolist()
        ch1 = ch0 + C
        for w in todo:
            rw, cw, tb, k0 = R[w], Cc[w], tbs[w], coff[w]
            a0, a1, b0, b1 = A0[w], A1[w], B0[w], B1[w]
            if BI0[w] == BI1[w] and BJ0[w] == BJ1[w]:  # inside one block: one copy
                y0, x0 = yb[BI0[w]], xb[BJ0[w]]
                out[w, ch0:ch1, a0 - rw:a1 - rw, b0 - cw:b1 - cw] = \
                    blocks[(tb, BI0[w], BJ0[w])][k0:k0 + C, a0 - y0:a1 - y0, b0 - x0:b1 - x0]
                continue
            for bi in range(BI0[w], BI1[w] + 1):
                y0, y1 = yb[bi], yb[bi + 1]
                s0, s1 = max(a0, y0), min(a1, y1)
                for bj in range(BJ0[w], BJ1[w] + 1):
                    x0, x1 = xb[bj], xb[bj + 1]
                    t0, t1 = max(b0, x0), min(b1, x1)
                    out[w, ch0:ch1, s0 - rw:s1 - rw, t0 - cw:t1 - cw] = \
                        blocks[(tb, bi, bj)][k0:k0 + C, s0 - y0:s1 - y0, t0 - x0:t1 - x0]
        if si == 0:  # windows, counted once (not once per variable or label source)
            with self._lock:
                self.stats["patches"] += B
        return out


def _sources(cube, dims, bands, *, op: str, time_samples: bool = False
             ) -> tuple[list[_Source], xr.DataArray]:
    """The cube's channel sources (bands applied) and a reference variable for its grid."""
    if isinstance(cube, xr.Dataset):
        names = [n for n, v in cube.data_vars.items() if all(d in v.dims for d in dims)]
        if not names:
            raise DimensionError(f"{op}: cube has no data variable with spatial dims {dims}; "
                                 f"it has {dict(cube.sizes)}. Pass dims=(ydim, xdim).")
        if bands is not None:
            bad = [b for b in bands if b not in names]
            if bad:
                raise ValueError(f"{op}: bands {bad} are not variables of the cube; it has "
                                 f"{names}. Pass bands= from those.")
            names = list(bands)
        vars_ = [cube[n] for n in names]
    elif isinstance(cube, xr.DataArray):
        if not all(d in cube.dims for d in dims):
            raise DimensionError(f"{op}: cube needs spatial dims {dims}; it has "
                                 f"{tuple(cube.dims)}. Pass dims=(ydim, xdim) or rename.")
        v = cube
        if bands is not None:
            if "band" not in v.dims:
                raise ValueError(f"{op}: bands= selects along a 'band' dim, which the cube "
                                 f"lacks (dims {tuple(v.dims)}); drop bands= or pass a "
                                 "Dataset to select variables.")
            have = [(_label_str(b)) for b in (v["band"].values if "band" in v.coords
                                               else np.arange(v.sizes["band"]))]
            bad = [b for b in bands if str(b) not in have]
            if bad:
                raise ValueError(f"{op}: bands {bad} are not in the cube; its bands are {have}. "
                                 "Pass bands= from those.")
            v = v.isel(band=[have.index(str(b)) for b in bands])
        vars_ = [v]
    else:
        raise TypeError(f"{op}: cube must be an xarray DataArray or Dataset (e.g. "
                        f"stengine.open_cube(store)); got {type(cube).__name__}")
    if len(vars_) > 1:
        check_same_grid(op=op, dims=dims, **{str(v.name): v for v in vars_})
    return [_Source(v, dims, time_samples=time_samples) for v in vars_], vars_[0]


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


def _source_name(obj) -> str:
    enc = getattr(obj, "encoding", {}) or {}
    src = enc.get("source") or getattr(obj, "attrs", {}).get("source")
    if src:
        return str(src)
    if isinstance(obj, xr.Dataset):
        return "Dataset(" + ", ".join(map(str, obj.data_vars)) + ")"
    return str(obj.name) if obj.name is not None else "DataArray"


def _check_fraction(v, name, *, op):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not 0 <= v <= 1:
        raise ValueError(f"{op}: {name} must be a fraction in [0, 1] (or None to keep all "
                         f"patches); got {v!r}")
    return float(v)


def _label_source(labels, ref, dims, *, op, same_grid: bool):
    if not isinstance(labels, xr.DataArray):
        raise TypeError(f"{op}: labels must be an xarray.DataArray on the cube's grid; got "
                        f"{type(labels).__name__}")
    if not all(d in labels.dims for d in dims) or labels.ndim != 2:
        raise DimensionError(f"{op}: labels must be a 2-D {dims} raster; got dims "
                             f"{tuple(labels.dims)}. Select one label layer first.")
    if same_grid:
        check_same_grid(op=op, dims=dims, cube=ref, labels=labels)
    return _Source(labels, dims, role="label")


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
        self._rect, self._geom = (0, H, 0, W), None
        if roi is not None:
            geom, is_rect = _roi_geometry(roi, roi_crs, grid, op=op)
            self._rect = _roi_pixels(geom, grid, op=op)
            self._geom = None if is_rect else geom
            r_lo, r_hi, c_lo, c_hi = self._rect
            if r_hi - r_lo < size or c_hi - c_lo < size:
                raise ValueError(f"{op}: roi covers {r_hi - r_lo}×{c_hi - c_lo} pixels of the "
                                 f"cube, fewer than size={size}; enlarge roi or pass a "
                                 "smaller size.")
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
            import dask
            import dask.array as dsa

            masks = [m for m in (s.invalid_mask() for s in self._reader.sources[: self._nx])
                     if m is not None]
            H, W = self.grid.shape
            sat = np.zeros((H + 1, W + 1), np.int32)
            if masks:
                bad = masks[0]
                for m in masks[1:]:
                    bad = bad | m
                (bad,) = dask.compute(bad if isinstance(bad, dsa.Array) else bad,
                                      scheduler="threads", pool=_decode_pool())
                self._reader.stats["chunks_read"] += sum(
                    int(np.prod(s.data.numblocks)) for s in self._reader.sources[: self._nx])
                np.cumsum(np.cumsum(bad, 0, dtype=np.int32), 1, out=sat[1:, 1:])
            self._sat = sat
        return self._sat

    def _accept(self, rows, cols) -> np.ndarray:
        ok = np.ones(rows.size, bool)
        S = self.size
        if self._geom is not None:
            import shapely

            t = self.grid.transform
            cx = t.c + t.a * (cols + S / 2) + t.b * (rows + S / 2)
            cy = t.f + t.d * (cols + S / 2) + t.e * (rows + S / 2)
            ok &= shapely.contains_xy(self._geom, cx, cy)
        sat = self._nodata_table()
        if sat is not None:
            n = (sat[rows + S, cols + S] - sat[rows, cols + S] - sat[rows + S, cols]
                 + sat[rows, cols])
            ok &= n <= self.max_nodata * S * S
        return ok

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
        S = self.size
        r_lo, r_hi, c_lo, c_hi = self._rect

        def starts(lo, hi):
            s = np.arange(lo, hi - S + 1, self.stride, dtype=np.int64)
            return s if s[-1] == hi - S else np.append(s, hi - S)

        rr, cc = np.meshgrid(starts(r_lo, r_hi), starts(c_lo, c_hi), indexing="ij")
        rows, cols = rr.ravel(), cc.ravel()
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
        r_lo, r_hi, c_lo, c_hi = self._rect
        rows = np.empty(0, np.int64)
        cols = np.empty(0, np.int64)
        m = self.n
        for _ in range(200):
            need = self.n - rows.size
            if need <= 0:
                break
            r = rng.integers(r_lo, r_hi - S + 1, m)
            c = rng.integers(c_lo, c_hi - S + 1, m)
            ok = self._accept(r, c)
            rows = np.concatenate([rows, r[ok][:need]])
            cols = np.concatenate([cols, c[ok][:need]])
            m = min(50 * self.n, max(m, int(need / max(ok.mean(), 1e-3) * 1.2) + 16))
        if rows.size < self.n:
            raise ValueError(f"RandomSampler: could draw only {rows.size} of n={self.n} "
                             f"windows passing max_nodata={self.max_nodata} (and the roi); "
                             "raise max_nodata, change roi or lower n.")
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
        from ..cube.cells import CELL_DIM, CELL_IDS

        if isinstance(labels, xr.DataArray) and CELL_DIM in labels.dims:
            if labels.ndim != 1:
                raise DimensionError(f"{op}: a cell-cube labels= must be 1-D ('cells',); got "
                                     f"dims {tuple(labels.dims)}. Select one layer first.")
            lid = np.asarray(labels[CELL_IDS].values, np.uint64)
            vals = np.asarray(labels.values)
            pos = np.clip(np.searchsorted(lid, self._ids), 0, max(lid.size - 1, 0))
            found = lid[pos] == self._ids if lid.size else np.zeros(self._ids.size, bool)
            if vals.dtype.kind == "f":
                y = np.where(found, vals[pos], np.nan).astype(np.float32)
            else:
                y = np.where(found, vals[pos], -1).astype(np.int64)
                nd = labels.attrs.get("nodata")
                if nd is not None:
                    y[found & (vals[pos] == nd)] = -1
            self._cell_y = y
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
        from ..index import h3 as sth3

        op = "TripletSampler"
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"{op}: k must be a positive integer (rings); got {k!r}")
        super().__init__(cells, raster, size, bands=bands, toi=toi, max_nodata=max_nodata,
                         shuffle=shuffle, seed=seed, mix=mix, cache_mb=cache_mb, dims=dims,
                         transform=transform)
        self.k = int(k)
        ids = self._ids
        n = ids.size
        disk = sth3.grid_disk(ids, self.k)
        pos = np.clip(np.searchsorted(ids, disk), 0, n - 1)
        present = (disk != 0) & (ids[pos] == disk) & (pos != np.arange(n)[:, None])
        srt = np.argsort(~present, axis=1, kind="stable")
        self._nb = np.where(np.take_along_axis(present, srt, 1),
                            np.take_along_axis(pos, srt, 1), -1).astype(np.int64)
        self._nnb = present.sum(1)
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

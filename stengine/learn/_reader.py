"""Data sources and the chunk reader of the samplers (see :mod:`stengine.learn.samplers`).

A :class:`_Source` is one variable as a dask array ``(lead..., H, W)`` that reads (and
decodes) whole spatial blocks; :class:`_Reader` turns a list of windows into a
``(B, C, S, S)`` array, reading each dask/Zarr chunk the windows touch once, for all the
windows in it, in this process's decode pool, and keeps the decoded blocks in a small LRU
cache (``cache_mb``).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict

import numpy as np
import torch
import xarray as xr

from ..cube.validate import check_same_grid
from ..errors import DimensionError

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


def _source_name(obj) -> str:
    enc = getattr(obj, "encoding", {}) or {}
    src = enc.get("source") or getattr(obj, "attrs", {}).get("source")
    if src:
        return str(src)
    if isinstance(obj, xr.Dataset):
        return "Dataset(" + ", ".join(map(str, obj.data_vars)) + ")"
    return str(obj.name) if obj.name is not None else "DataArray"


def _missing_table(reader: _Reader, nx: int, shape) -> np.ndarray:
    """Summed-area table ``(H + 1, W + 1)`` of the pixels where any channel of the first
    ``nx`` sources is missing: one dask compute in the decode pool (counted in stats)."""
    import dask
    import dask.array as dsa

    masks = [m for m in (s.invalid_mask() for s in reader.sources[:nx])
             if m is not None]
    H, W = shape
    sat = np.zeros((H + 1, W + 1), np.int32)
    if masks:
        bad = masks[0]
        for m in masks[1:]:
            bad = bad | m
        (bad,) = dask.compute(bad if isinstance(bad, dsa.Array) else bad,
                              scheduler="threads", pool=_decode_pool())
        reader.stats["chunks_read"] += sum(
            int(np.prod(s.data.numblocks)) for s in reader.sources[:nx])
        np.cumsum(np.cumsum(bad, 0, dtype=np.int32), 1, out=sat[1:, 1:])
    return sat

"""The checked read path of local Zarr stores: missing and damaged chunks are errors.

* :class:`CheckedStore` wraps zarr's ``LocalStore``: for a store that stengine wrote
  complete (root attr ``stengine_written.complete``; every chunk is written, empty ones
  included), a chunk key that has no file raises :class:`~stengine.errors.StoreCorruptError`
  naming store and chunk instead of reading as the fill value. It costs nothing extra:
  the check is on the ``None`` that the read itself returns.
* :class:`ChunkReader` is what the dask tasks of an opened cube index (one call per dask
  chunk, like xarray's own wrapper): a chunk that fails to decode becomes a
  ``StoreCorruptError`` naming store, variable and chunk file.
* :func:`read_root` and :func:`diagnose` turn a missing or garbled ``zarr.json`` into
  ``StoreNotFoundError`` / ``StoreCorruptError`` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr
from zarr.storage import LocalStore, WrapperStore

from ..errors import StoreCorruptError, StoreNotFoundError

WRITTEN = "stengine_written"  # root attr: {"complete": true, "arrays": [...]}
MISSING = ("error", "fill")

_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_EPOCH = " since 1970-01-01"
_ENGINE_UNITS = {v + _EPOCH: k for k, v in _UNITS.items()}
_CALENDARS = (None, "proleptic_gregorian", "standard", "gregorian")


def _is_chunk_key(key: str) -> bool:
    return not key.endswith("zarr.json") and (key.startswith("c/") or "/c/" in key)


class CheckedStore(WrapperStore):
    """A read-only local store whose missing chunk files are errors (``strict``)."""

    def __init__(self, store, path: str = "", strict: bool = False) -> None:
        super().__init__(store)
        self._path = path
        self._strict = strict

    def _with_store(self, store):
        return type(self)(store, self._path, self._strict)

    def __getstate__(self):
        return {"store": self._store, "path": self._path, "strict": self._strict}

    def __setstate__(self, state):
        self._store = state["store"]
        self._path = state["path"]
        self._strict = state["strict"]

    def __eq__(self, other):
        return isinstance(other, CheckedStore) and self._store == other._store \
            and self._strict == other._strict

    __hash__ = None

    async def get(self, key, prototype, byte_range=None):
        buf = await self._store.get(key, prototype, byte_range)
        if buf is None and self._strict and _is_chunk_key(key):
            raise StoreCorruptError(
                f"{self._path}: chunk {key} is missing (stengine wrote this store complete, "
                "every chunk included; the file was deleted or lost). Restore the store "
                "from a copy or rewrite it; open_cube(..., missing='fill') reads the "
                "missing chunks as fill values instead.")
        return buf


def read_root(path: Path, op: str) -> dict:
    """The root ``zarr.json`` of a local store (``{}`` for a Zarr v2 store)."""
    meta = path / "zarr.json"
    try:
        text = meta.read_bytes()
    except FileNotFoundError:
        if (path / ".zgroup").exists():
            return {}
        raise StoreNotFoundError(f"{op}: no Zarr store at {str(path)!r} (no zarr.json "
                                 "there). Check the path, or write the store first with "
                                 "stengine.to_zarr.") from None
    except (NotADirectoryError, IsADirectoryError):
        raise StoreNotFoundError(f"{op}: {str(path)!r} is not a Zarr store (a Zarr store is "
                                 "a directory with a zarr.json)") from None
    try:
        meta_d = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreCorruptError(f"{op}: {meta} is not valid JSON ({e}); the store's "
                                "metadata is damaged. Restore the store from a copy or "
                                "rewrite it.") from None
    kind = meta_d.get("node_type") if isinstance(meta_d, dict) else None
    if kind != "group":
        raise StoreCorruptError(f"{op}: {meta} is not the metadata of a Zarr group "
                                f"(node_type {kind!r}); the store's metadata is damaged, or "
                                "the path is an array inside a store")
    return meta_d


def diagnose(path: Path) -> str | None:
    """What is damaged in the store at ``path`` (metadata, or a chunk of a 0-D/1-D array)
    – run only after an open failed, to name the file."""
    import zarr

    metas = [p / "zarr.json" for p in sorted(path.iterdir()) if p.is_dir()]
    for m in metas:
        if not m.exists():
            continue
        try:
            d = json.loads(m.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"{m} is not valid JSON ({e}); the store's metadata is damaged"
        if not isinstance(d, dict) or "node_type" not in d:
            return f"{m} is not Zarr metadata"
    for m in metas:
        if not m.exists():
            continue
        name = m.parent.name
        try:
            arr = zarr.open_array(LocalStore(path, read_only=True), path=name, mode="r")
        except Exception as e:  # noqa: BLE001 - reported, with the file
            return f"{m} is not valid Zarr array metadata ({type(e).__name__}: {e})"
        if arr.ndim > 1:
            continue
        for idx in np.ndindex(*arr.cdata_shape):
            sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, arr.chunks, strict=True))
            try:
                arr[sl]
            except Exception as e:  # noqa: BLE001
                key = "/".join(["c", *map(str, idx)])
                return f"chunk {name}/{key} cannot be read ({type(e).__name__}: {e})"
    return None


def _chunk_keys(name: str, key: tuple, chunks: tuple, shape: tuple) -> list[tuple]:
    ranges = []
    for k, c, n in zip(key, chunks, shape, strict=True):
        start, stop, _ = k.indices(n) if isinstance(k, slice) else (int(k), int(k) + 1, 1)
        ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
    return [tuple(r[i] for r, i in zip(ranges, idx, strict=True))
            for idx in np.ndindex(*map(len, ranges))]


class ChunkReader:
    """Numpy-style basic indexing of a zarr array, chunk errors named (for dask tasks)."""

    __slots__ = ("_array", "_path", "_name", "shape", "dtype", "ndim")

    def __init__(self, array, path: str, name: str):
        self._array = array
        self._path = path
        self._name = name
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        try:
            return self._array[key]
        except (StoreCorruptError, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with store and chunk named
            raise self._error(key, e) from e

    def _error(self, key, exc) -> StoreCorruptError:
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(key) + (slice(None),) * (self.ndim - len(key))
        chunks = tuple(self._array.chunks)
        bad = []
        cands = _chunk_keys(self._name, key, chunks, self.shape)
        for idx in cands if len(cands) > 1 else []:
            sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks, strict=True))
            try:
                self._array[sl]
            except Exception:  # noqa: BLE001
                bad.append(idx)
        bad = bad or cands[:1]
        names = ", ".join(f"{self._name}/c/" + "/".join(map(str, i)) for i in bad[:5])
        return StoreCorruptError(
            f"{self._path}: cannot read chunk {names} of variable {self._name!r} "
            f"({type(exc).__name__}: {exc}). The chunk file is damaged; restore the store "
            "from a copy or rewrite it.")


def _zarr_array(var: xr.Variable):
    d = var._data
    for _ in range(8):
        if hasattr(d, "get_array") and type(d).__name__ == "ZarrArrayWrapper":
            return d.get_array()
        d = getattr(d, "array", None)
        if d is None:
            return None
    return None


def decode_times(ds: xr.Dataset) -> xr.Dataset:
    """Decode CF datetimes (the dataset was opened with ``decode_times=False``).

    ``<unit> since 1970-01-01`` with unit s/ms/us/ns (what :func:`stengine.to_zarr`
    writes) decodes exactly to ``datetime64[<unit>]``; other CF units decode as xarray
    does by default.
    """
    new = {}
    for name, v in ds.variables.items():
        units = v.attrs.get("units")
        if not isinstance(units, str) or " since " not in units:
            continue
        cal = v.attrs.get("calendar")
        unit = _ENGINE_UNITS.get(units.strip())
        if unit is not None and cal in _CALENDARS and v.dtype.kind in "iu":
            enc = dict(v.encoding, units=units, dtype=v.dtype)
            if cal is not None:
                enc["calendar"] = cal
            attrs = {k: a for k, a in v.attrs.items() if k not in ("units", "calendar")}
            vals = np.asarray(v.values).astype(np.int64).view(f"M8[{unit}]")
            new[name] = xr.Variable(v.dims, vals, attrs, enc)
        else:
            new[name] = xr.coders.CFDatetimeCoder().decode(v, name=name)
    if not new:
        return ds
    coords = {k: val for k, val in new.items() if k in ds.coords}
    data = {k: val for k, val in new.items() if k not in ds.coords}
    if coords:
        ds = ds.assign_coords(coords)
    if data:
        ds = ds.assign(data)
    return ds


# Default ("auto") dask chunks: small store chunks merged (whole multiples, along the
# spatial axes) into tasks of about nbytes / (TASKS_PER_CORE * cores), clipped to
# [TASK_MIN_BYTES, TASK_MAX_BYTES]. The floor keeps per-task overhead (~0.1 ms on
# threads, ~1 ms distributed) small next to decoding (~5-10 ms per MiB-class chunk of
# zstd); the ceiling is low because a task of several store chunks decodes them through
# a scratch buffer and copies (a task of one store chunk decodes in place), which cost
# 8 % at MERIS size. Store chunks above the ceiling are kept, never split (a split
# chunk would be decoded twice).
TASKS_PER_CORE = 4
TASK_MIN_BYTES = 2 << 20
TASK_MAX_BYTES = 6 << 20
_RASTER_DIMS = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))


def cluster_cores() -> int:
    """Threads that run tasks: the running distributed client's, else this machine's."""
    try:
        from distributed import default_client

        n = sum(default_client().nthreads().values())
        if n:
            return n
    except (ImportError, ValueError, OSError, AttributeError):
        pass
    from ..compute import _cores

    return _cores()


def auto_chunks(shape: tuple, zchunks: tuple, itemsize: int, cores: int | None = None,
                axes: tuple = (-2, -1)) -> tuple:
    """Dask chunk shape for "auto": store chunks ``zchunks`` merged along ``axes``.

    The target task size is ``nbytes / (TASKS_PER_CORE * cores)`` clipped to
    ``[TASK_MIN_BYTES, TASK_MAX_BYTES]``; store chunks are merged (the shorter side
    first, so merged chunks stay near square) while a task stays within the target.
    Arrays smaller than ``TASK_MIN_BYTES`` keep the store's chunks (they take
    milliseconds either way, and chunk-sized reads of them stay chunk-sized).

    >>> auto_chunks((13640, 13640), (512, 512), 1, cores=2)
    (2560, 2048)
    >>> auto_chunks((13640, 13640), (2048, 2048), 1, cores=2)
    (2048, 2048)
    >>> auto_chunks((1, 16, 16), (1, 4, 4), 4, cores=2)
    (1, 4, 4)
    """
    shape, out = tuple(shape), list(zchunks)
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    if nbytes < TASK_MIN_BYTES or len(shape) < 2 or 0 in shape:
        return tuple(out)
    cores = cores or cluster_cores()
    target = min(max(nbytes // (TASKS_PER_CORE * cores), TASK_MIN_BYTES), TASK_MAX_BYTES)
    axes = [a % len(shape) for a in axes]
    while True:
        task = int(np.prod(out, dtype=np.int64)) * itemsize
        grow = [a for a in axes if out[a] < shape[a]]
        if not grow:
            break
        a = min(grow, key=lambda k: out[k])
        step = min(out[a] + zchunks[a], -(-shape[a] // zchunks[a]) * zchunks[a])
        nxt = task // out[a] * step
        if task >= target or nxt > TASK_MAX_BYTES or (nxt > target and task >= TASK_MIN_BYTES):
            break
        out[a] = step
    return tuple(min(c, n) for c, n in zip(out, shape, strict=True))


def _dask_chunks(var: xr.Variable, zchunks: tuple, chunks) -> tuple:
    if not chunks or chunks == "auto":
        return zchunks
    out = []
    for d, c in zip(var.dims, zchunks, strict=True):
        want = chunks.get(d, c) if isinstance(chunks, dict) else chunks
        out.append(var.sizes[d] if want in (-1, None) else want)
    return tuple(out)


def open_local(path: Path, root: dict, *, chunks, missing: str, op: str) -> xr.Dataset:
    """Open the local store at ``path`` (its root metadata ``root`` already read)."""
    import dask.array as dsa
    from dask.base import tokenize

    attrs = root.get("attributes") or {}
    written = attrs.get(WRITTEN) if isinstance(attrs.get(WRITTEN), dict) else {}
    strict = missing == "error" and bool(written.get("complete"))
    store = CheckedStore(LocalStore(path, read_only=True), str(path), strict)
    try:
        ds = xr.open_zarr(store, chunks=None, consolidated=False,
                          zarr_format=3 if root else None, decode_cf=True,
                          mask_and_scale=False, decode_coords="all", decode_times=False,
                          decode_timedelta=True)
    except StoreCorruptError as e:
        raise StoreCorruptError(f"{op}: {e}") from None
    except Exception as e:
        why = diagnose(path)
        if why:
            raise StoreCorruptError(f"{op}: {path}: {why}. Restore the store from a copy "
                                    "or rewrite it.") from e
        raise
    lost = [a for a in written.get("arrays", []) if a not in ds.variables]
    if lost and missing == "error":
        raise StoreCorruptError(f"{op}: {path}: arrays {lost} are missing (stengine wrote "
                                "them; their zarr.json or folder was deleted). Restore the "
                                "store from a copy or rewrite it.")
    ds.attrs.pop(WRITTEN, None)
    ds = decode_times(ds)
    stamp = os.stat(path / "zarr.json").st_mtime_ns if root else 0
    out = {}
    for name, v in ds.variables.items():
        if name in ds.indexes or v.ndim == 0:
            continue  # index coords are loaded already
        arr = _zarr_array(v)
        if arr is None or arr.dtype != v.dtype or tuple(arr.shape) != v.shape:
            if chunks is not None and not isinstance(v._data, np.ndarray):
                out[name] = v.chunk(_dask_chunks(v, v.encoding.get("chunks", v.shape),
                                                 chunks))
            continue
        want = _dask_chunks(v, tuple(arr.chunks), chunks)
        if chunks == "auto" and v.dims[-2:] in _RASTER_DIMS:
            want = auto_chunks(v.shape, tuple(arr.chunks), v.dtype.itemsize)
        reader = DirectChunks.plan(arr, path, name, strict) or ChunkReader(arr, str(path),
                                                                           name)
        tok = tokenize(str(path), name, v.shape, str(v.dtype), want, stamp, strict,
                       type(reader).__name__)
        data = dsa.from_array(reader, chunks=want,
                              name=f"open_cube-{name}-{tok}", asarray=False, fancy=False,
                              lock=False, meta=np.empty((0,) * v.ndim, v.dtype))
        if chunks is None:
            data = data.compute(scheduler="threads")
        out[name] = v.copy(deep=False, data=data)
    if out:
        ds = ds.assign_coords({k: o for k, o in out.items() if k in ds.coords})
        ds = ds.assign({k: o for k, o in out.items() if k not in ds.coords})
    for v in ds.variables.values():
        # Zarr's fill_value is storage detail here: stengine's missing data is NaN or
        # attrs["nodata"], so keep it out of attrs
        if "_FillValue" in v.attrs:
            v.encoding["_FillValue"] = v.attrs.pop("_FillValue")
    return ds


# --------------------------------------------------------------------------- fast reads
# Codecs a chunk file may have for the direct read path: zarr v3 codec class name ->
# the numcodecs codec that decodes the same bytes (each decodes into a given buffer).
def _numcodec(codec):
    import numcodecs

    name = type(codec).__name__
    if name == "ZstdCodec":
        return numcodecs.Zstd()
    if name == "BloscCodec":
        return numcodecs.Blosc()  # blosc frames describe themselves
    if name == "GzipCodec":
        return numcodecs.GZip()
    return None


class DirectChunks:
    """Numpy-style basic indexing of a local zarr v3 array that reads chunk files itself.

    Each call reads the chunk files its slice touches (one ``read()`` each) and decodes
    them with numcodecs straight into one output buffer (a chunk that is exactly the
    slice decodes in place; others through one scratch chunk). This skips zarr's async
    codec pipeline, which costs more per chunk than decoding. Only plain layouts qualify
    (:meth:`plan`); everything else goes through :class:`ChunkReader`. The guarantees are
    :class:`CheckedStore`'s and :class:`ChunkReader`'s: a missing file of a ``strict``
    store and a file that does not decode raise ``StoreCorruptError`` naming the chunk.
    """

    __slots__ = ("_dir", "_path", "_name", "_sep", "_chunks", "_stored", "_fill", "_codec",
                 "_strict", "shape", "dtype", "ndim")

    def __init__(self, array_dir, path, name, shape, chunks, dtype, stored, fill, codec,
                 sep, strict):
        self._dir, self._path, self._name, self._sep = str(array_dir), path, name, sep
        self._chunks, self._stored, self._fill, self._codec = chunks, stored, fill, codec
        self._strict = strict
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    @classmethod
    def plan(cls, array, path: Path, name: str, strict: bool):
        """A reader for ``array`` (a zarr v3 array of the local store at ``path``), or None
        when its layout is not the plain one (v3, regular grid, default key encoding,
        ``bytes`` plus at most one of zstd/blosc/gzip, no sharding or transpose)."""
        m = getattr(array, "metadata", None)
        if getattr(m, "zarr_format", None) != 3 or array.ndim == 0:
            return None
        if np.dtype(array.dtype).kind not in "biuf" or getattr(array, "shards", None):
            return None
        enc = m.chunk_key_encoding
        if type(enc).__name__ != "DefaultChunkKeyEncoding" or m.storage_transformers:
            return None
        codecs = list(m.codecs)
        if not codecs or type(codecs[0]).__name__ != "BytesCodec" or len(codecs) > 2:
            return None
        codec = _numcodec(codecs[1]) if len(codecs) == 2 else None
        if len(codecs) == 2 and codec is None:
            return None
        endian = getattr(codecs[0].endian, "value", codecs[0].endian)
        stored = np.dtype(array.dtype).newbyteorder(
            {"little": "<", "big": ">", None: "="}[endian])
        fill = np.asarray(m.fill_value, dtype=array.dtype)[()]
        array_dir = path / array.path if array.path else path
        return cls(array_dir, str(path), name, array.shape, tuple(array.chunks),
                   array.dtype, stored, fill, codec, enc.separator, strict)

    def _key(self, idx) -> str:
        return "c" + "".join(self._sep + str(i) for i in idx)

    def _file_name(self, idx) -> str:
        return f"{self._name}/{self._key(idx)}"

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(key) + (slice(None),) * (self.ndim - len(key))
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape, strict=True)]
        out_shape = tuple(max(0, b - a) for a, b in bounds)
        out = np.empty(out_shape, self.dtype)
        if 0 in out_shape:
            return out
        ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(bounds, self._chunks,
                                                                  strict=True)]
        scratch = None
        for idx in np.ndindex(*map(len, ranges)):
            idx = tuple(r[i] for r, i in zip(ranges, idx, strict=True))
            dst, src = [], []
            for i, c, (a, b) in zip(idx, self._chunks, bounds, strict=True):
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                dst.append(slice(lo - a, hi - a))
                src.append(slice(lo - i * c, hi - i * c))
            dst = tuple(dst)
            raw = self._read(idx)
            if raw is None:
                out[dst] = self._fill
                continue
            whole = all(s.start == 0 and s.stop == c for s, c in zip(src, self._chunks,
                                                                     strict=True))
            if whole and out_shape == self._chunks and self._stored == self.dtype:
                self._decode(idx, raw, out)  # the chunk is the slice: decode in place
                continue
            if scratch is None:
                scratch = np.empty(self._chunks, self._stored)
            self._decode(idx, raw, scratch)
            out[dst] = scratch[tuple(src)]
        return out

    def _read(self, idx):
        path = os.path.join(self._dir, *self._key(idx).split("/"))  # "c.0.0": one name
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            if self._strict:
                raise StoreCorruptError(
                    f"{self._path}: chunk {self._file_name(idx)} is missing (stengine wrote "
                    "this store complete, every chunk included; the file was deleted or "
                    "lost). Restore the store from a copy or rewrite it; open_cube(..., "
                    "missing='fill') reads the missing chunks as fill values instead."
                ) from None
            return None

    def _decode(self, idx, raw, dest):
        try:
            if self._codec is None:
                if len(raw) != dest.nbytes:
                    raise ValueError(f"{len(raw)} bytes, expected {dest.nbytes}")
                dest.reshape(-1).view("u1")[:] = np.frombuffer(raw, "u1")
            else:
                self._codec.decode(raw, out=dest.reshape(-1).view("u1"))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised with store and chunk named
            raise StoreCorruptError(
                f"{self._path}: cannot read chunk {self._file_name(idx)} of variable "
                f"{self._name!r} ({type(e).__name__}: {e}). The chunk file is damaged; "
                "restore the store from a copy or rewrite it.") from None

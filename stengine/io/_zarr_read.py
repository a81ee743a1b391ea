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
        tok = tokenize(str(path), name, v.shape, str(v.dtype), want, stamp, strict)
        data = dsa.from_array(ChunkReader(arr, str(path), name), chunks=want,
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

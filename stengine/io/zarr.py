"""Cubes in Zarr v3 stores: compressed, CRS and time round-trip, atomic writes and appends.

Commit protocol (see :mod:`stengine.io._atomic`): a new store or an overwrite is
written aside and swapped into place; an append along ``time`` (or any dim) keeps a
journal of the bytes it may overwrite and rolls back on failure or on the next open.
Either way, a write that fails halfway leaves the previous store readable and unchanged.

Concurrency model (local stores; :mod:`stengine.io._lock`):

* **One writer at a time.** Every write (``mode="w"``, ``"w-"``, ``"a"``, cell-cube
  writes) holds the store's exclusive lock (``flock`` on ``<store>.stengine-lock``)
  from its first check to its commit. A second writer, in another process or thread,
  waits for it (``lock_timeout=``, default 600 s or env ``STENGINE_LOCK_TIMEOUT``), then
  raises :class:`~stengine.errors.StoreLockedError` naming the store. Two appends thus
  run one after the other, and the second is checked against the store *including* the
  first: each committed append is in the store exactly once; one whose time steps are
  not after the store's last step fails with :class:`~stengine.errors.AppendMismatchError`
  and writes nothing.
* **Readers wait for commits, and never roll back a live writer.** :func:`open_cube`
  holds the shared lock while it reads the metadata and coordinates, so it sees the
  store before or after a write, never half of it. Recovery (journal rollback, restoring
  a half-swapped store, removing ``<store>.stengine-tmp-*`` folders of a killed write)
  runs only under the exclusive lock, i.e. only when the writer that left them is dead
  (the kernel releases a dead process's flock).
* **Lazy reads after open.** Chunks are read later, without a lock. An append never
  changes committed values (it rewrites only the store's partial last chunk along the
  append dim, with the same old values, atomically per file), so a cube opened before an
  append stays correct; an overwrite (``mode="w"``) replaces the store, so reopen after
  one.
* **Complete stores.** stengine writes every chunk (empty ones too) and marks the store
  complete; a missing chunk file of such a store raises
  :class:`~stengine.errors.StoreCorruptError` naming store and chunk (``missing="fill"``
  reads fill values instead), and so does a chunk that fails to decode.

Remote (fsspec URL) stores are written directly, without locks or these guarantees: one
writer at a time is the caller's job there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from .._backends import is_dask
from ..errors import StoreError, StoreNotFoundError
from . import _atomic, _lock
from ._zarr_append import check_append, normalise_times, time_encoding
from ._zarr_read import MISSING, WRITTEN, open_local, read_root

__all__ = ["to_zarr", "open_cube"]

_DA_NAME = "stengine_dataarray"  # root attr: the store holds one DataArray of this name
_DEFAULT_CHUNK = 2048  # pixels per spatial chunk side for in-memory inputs


def _is_local(store) -> bool:
    return isinstance(store, Path) or (isinstance(store, str) and "://" not in store)


def default_compressor():
    """The compressor used when none is given: Zstandard level 3 (fast to decode, ~9× on
    class rasters in our benchmark)."""
    from zarr.codecs import ZstdCodec

    return ZstdCodec(level=3)


def _as_dataset(obj) -> tuple[xr.Dataset, str | None]:
    if isinstance(obj, xr.DataArray):
        name = obj.name if obj.name is not None else "data"
        ds = obj.to_dataset(name=name)
        ds.attrs = {**obj.attrs, _DA_NAME: name}
        ds[name].attrs = dict(obj.attrs)
        return ds, name
    if isinstance(obj, xr.Dataset):
        return obj, None
    raise TypeError("to_zarr: obj must be an xarray DataArray or Dataset; "
                    f"got {type(obj).__name__}")


def _mark_grid_mapping(ds: xr.Dataset) -> xr.Dataset:
    """CF ``grid_mapping`` on every variable that has the raster's spatial_ref (encodings
    are easily lost along a pipeline; without it ``spatial_ref`` would not reopen as a
    coordinate)."""
    from ..cube import SPATIAL_REF

    if SPATIAL_REF in ds.coords:
        ds = ds.copy()
        for v in ds.data_vars.values():
            if v.ndim >= 2:
                # as an attribute: an explicit to_zarr encoding= would drop it from .encoding
                v.encoding.pop("grid_mapping", None)
                v.attrs["grid_mapping"] = SPATIAL_REF
    return ds


def _regular_chunks(ds: xr.Dataset, chunks) -> xr.Dataset:
    """Chunk ``ds`` so each data variable has regular chunks (Zarr needs them)."""
    if chunks is not None:
        return ds.chunk(chunks)
    out = {}
    for name, v in ds.data_vars.items():
        if v.chunks is None:
            want = {d: (_DEFAULT_CHUNK if d in ("x", "y") else 1 if d == "time" else -1)
                    for d in v.dims}
            out[name] = v.chunk(want)
            continue
        fix = {}
        for d, c in zip(v.dims, v.chunks, strict=True):
            if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
                fix[d] = max(c)
        out[name] = v.chunk(fix) if fix else v
    return ds.assign(out)


def _encoding(ds: xr.Dataset, compressor, encoding):
    enc = {}
    comp = default_compressor() if compressor == "default" else compressor
    for name in ds.data_vars:
        e = {"compressors": [comp] if comp is not None else None}
        e.update((encoding or {}).get(name, {}))
        enc[name] = e
    for name in ds.coords:
        if name in enc:
            continue
        # coords have no missing values: no _FillValue, which would reappear as an attr
        enc[name] = {"_FillValue": None}
    for name, v in ds.variables.items():
        if v.dtype.kind == "M":
            # int64 counts of the data's own unit since the epoch: exact round trip
            enc[name].update(time_encoding(v.dtype))
    return enc


def _array_meta(store: Path) -> dict[str, dict]:
    """zarr.json of every array in a local v3 store, keyed by path relative to the store."""
    out = {}
    for meta in store.rglob("zarr.json"):
        m = json.loads(meta.read_text())
        if m.get("node_type") == "array":
            out[str(meta.parent.relative_to(store))] = m
    return out


def _append_journal_files(store: Path, dim: str):
    """Files an append along ``dim`` may overwrite, and chunks it may add, per array."""
    files, beyond = [], {}
    for meta in store.rglob("zarr.json"):
        files.append(str(meta.relative_to(store)))
    for rel, m in _array_meta(store).items():
        names = m.get("dimension_names") or []
        if dim not in names:
            continue
        axis = names.index(dim)
        shape = m["shape"]
        chunk = m["chunk_grid"]["configuration"]["chunk_shape"]
        enc = m.get("chunk_key_encoding", {})
        sep = enc.get("configuration", {}).get("separator", "/")
        if enc.get("name") != "default" or sep != "/":
            raise StoreError(f"to_zarr: cannot journal appends to {store / rel}: chunk key "
                             f"encoding {enc} (stengine writes the default '/' encoding)")
        beyond[rel] = (axis, shape[axis], chunk[axis])
        if shape[axis] % chunk[axis]:
            # the last chunk along dim is partly filled; the append rewrites it
            idx_ranges = [range(-(-s // c)) for s, c in zip(shape, chunk, strict=True)]
            idx_ranges[axis] = [shape[axis] // chunk[axis]]
            for idx in np.ndindex(*[len(r) for r in idx_ranges]):
                key = "/".join(str(idx_ranges[k][i]) for k, i in enumerate(idx))
                files.append(f"{rel}/c/{key}" if rel != "." else f"c/{key}")
    return files, beyond


def _run(delayed, progress, *, local=False):
    """Compute a write graph; if it fails, return only once no task of it still runs.

    A failed task ends ``compute`` while other tasks may still be writing chunks; a
    rollback must not race with them (a late write could rewrite a restored chunk).
    ``local``: data already in this process is written by local threads, not shipped to
    a cluster inside the graph.
    """
    import dask

    client = None
    if not local:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
    if client is None:
        from concurrent.futures import ThreadPoolExecutor

        from ..compute import _cores

        pool = ThreadPoolExecutor(_cores())
        try:
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar(out=sys.stderr):
                    dask.compute(delayed, scheduler="threads", pool=pool)
            else:
                dask.compute(delayed, scheduler="threads", pool=pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    from ..compute import compute

    keys = set(dict(delayed.__dask_graph__()).keys())
    try:
        compute(delayed, progress=progress)
    except BaseException:
        _wait_idle(client, keys)
        raise


def _wait_idle(client, keys, timeout=600.0):
    """Block until the scheduler runs none of ``keys`` (tasks cannot be interrupted)."""
    import time

    def busy(dask_scheduler, keys):
        return sum(1 for k in keys if (ts := dask_scheduler.tasks.get(k)) is not None
                   and ts.state == "processing")

    end = time.monotonic() + timeout
    while time.monotonic() < end and client.run_on_scheduler(busy, keys=list(keys)):
        time.sleep(0.05)


def to_zarr(obj, store, *, mode: str = "w", append_dim: str | None = None, chunks=None,
            compressor="default", encoding=None, compute: bool = True, progress: bool = False,
            lock_timeout: float | None = None):
    """Write a cube (DataArray or Dataset) to a Zarr v3 store, atomically.

    Parameters
    ----------
    obj : xarray.DataArray | xarray.Dataset
        The cube. A DataArray is stored as a one-variable Dataset and opens again as a
        DataArray with :func:`open_cube`. CRS (``spatial_ref``), attrs and datetimes
        (exact, as int64 counts of their own unit, s/ms/us/ns, since 1970) round-trip.
    store : str | pathlib.Path
        Directory of the store (local), or an fsspec URL (written directly, not atomic,
        no lock).
    mode : {"w", "w-", "a"}
        ``"w"`` replaces an existing store (atomically); ``"w-"`` fails if it exists;
        ``"a"`` with ``append_dim`` appends along that dim (journaled), after checking the
        data against the store (see Raises).
    append_dim : str, optional
        Dim to append along (usually ``"time"``).
    chunks : dict, optional
        Rechunk before writing. By default dask chunks are kept (made regular if needed)
        and in-memory arrays get 2048-pixel spatial chunks, one time step per chunk.
    compressor : zarr codec | None | "default"
        Compressor for data variables; default :func:`default_compressor`.
    compute : bool
        ``False`` is not supported for atomic local writes (the commit needs the data).
    progress : bool
        Show a progress bar while chunks are computed and written.
    lock_timeout : float, optional
        Seconds to wait for another process writing (or opening) the same store; default
        env ``STENGINE_LOCK_TIMEOUT`` or 600.

    Returns
    -------
    str
        The store path.

    Raises
    ------
    StoreNotFoundError
        ``mode="a"`` on a store that does not exist.
    FileExistsError
        ``mode="w-"`` on a store that exists, or any mode on a path that is not a store.
    AppendMismatchError
        ``mode="a"`` with data that differs from the store in variables, dims, grid, CRS,
        coordinates or dtype (values that do not fit), or whose ``append_dim`` labels are
        not strictly increasing and after the store's last; nothing is written.
    StoreLockedError
        Another process held the store longer than ``lock_timeout``.
    """
    if mode not in ("w", "w-", "a"):
        raise ValueError(f"to_zarr: mode must be 'w', 'w-' or 'a'; got {mode!r}")
    if mode == "a" and append_dim is None:
        raise ValueError("to_zarr: mode='a' needs append_dim= (e.g. append_dim='time')")
    if mode != "a" and append_dim is not None:
        raise ValueError(f"to_zarr: append_dim={append_dim!r} needs mode='a'; got mode={mode!r}")
    if not compute:
        raise ValueError("to_zarr: compute=False is not supported; writes commit atomically")
    if isinstance(obj, xr.DataArray) and "cells" in obj.dims and "cell_ids" in obj.coords:
        from ..cube.cells import to_zarr_cells  # parent-group layout of cell cubes

        if mode == "a":
            raise ValueError("to_zarr: appending to a cell cube store is not supported; "
                             "write the whole cube with mode='w'")
        return to_zarr_cells(obj, store, mode=mode, progress=progress,
                             lock_timeout=lock_timeout)
    ds, _ = _as_dataset(obj)
    ds = normalise_times(ds)
    in_memory = not any(is_dask(v.data) for v in ds.variables.values())
    if not _is_local(store):
        ds = _mark_grid_mapping(_regular_chunks(ds, chunks))
        kw = dict(mode=mode, zarr_format=3, consolidated=False)
        if mode == "a":
            ds.to_zarr(store, append_dim=append_dim, **kw)
        else:
            ds.to_zarr(store, encoding=_encoding(ds, compressor, encoding), **kw)
        return store
    path = Path(store)
    if mode == "a":
        if append_dim not in ds.dims:
            raise ValueError(f"to_zarr: append_dim {append_dim!r} is not a dim of the data "
                             f"{tuple(ds.dims)}")
        if not path.parent.is_dir():
            raise StoreNotFoundError(f"to_zarr: cannot append to {str(path)!r}: no Zarr store "
                                     "there. Write it first with mode='w'.")
        with _lock.write_lock(path, timeout=lock_timeout):
            _atomic.recover(path)
            _append(ds, path, append_dim, chunks, progress, in_memory)
        return str(path)
    ds = _mark_grid_mapping(_regular_chunks(ds, chunks))
    ds.attrs[WRITTEN] = {"complete": True, "arrays": sorted(map(str, ds.variables))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock.write_lock(path, timeout=lock_timeout):
        _atomic.recover(path)
        if path.exists():
            if mode == "w-":
                raise FileExistsError(f"to_zarr: {str(path)!r} exists; use mode='w' to "
                                      "replace it")
            if not ((path / "zarr.json").is_file() or (path / ".zgroup").is_file()):
                raise FileExistsError(f"to_zarr: {str(path)!r} exists and is not a Zarr "
                                      "store; not replacing it. Remove it or pick another "
                                      "path.")
        with _atomic.write_aside(path) as tmp:
            _run(ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds, compressor, encoding),
                            zarr_format=3, consolidated=False, compute=False,
                            write_empty_chunks=True), progress, local=in_memory)
    return str(path)


def _append(ds, path: Path, append_dim: str, chunks, progress, in_memory) -> None:
    """Check ``ds`` against the store and append it (the caller holds the write lock)."""
    import zarr

    try:
        root = read_root(path, "to_zarr")
    except StoreNotFoundError:
        raise StoreNotFoundError(f"to_zarr: cannot append to {str(path)!r}: no Zarr store "
                                 "there. Write it first with mode='w'.") from None
    old = open_local(path, root, chunks="auto", missing="error", op="to_zarr")
    attrs = root.get("attributes") or {}
    new, labels = check_append(ds, old, append_dim, str(path), attrs)
    new = _regular_chunks(new, chunks)
    files, beyond = _append_journal_files(path, append_dim)
    with _atomic.journal(path, files, beyond):
        # align_chunks: new data must first fill the store's partial last chunk
        _run(new.to_zarr(path, mode="a", append_dim=append_dim, zarr_format=3,
                         consolidated=False, compute=False, align_chunks=True,
                         write_empty_chunks=True), progress, local=in_memory)
        if labels is not None:
            coord = zarr.open_array(path / append_dim, mode="r+",
                                    config={"write_empty_chunks": True})
            coord.append(labels.astype(coord.dtype))


def open_cube(store, *, chunks="auto", variable: str | None = None, missing: str = "error",
              lock_timeout: float | None = None):
    """Open a Zarr store written by :func:`to_zarr` (or any xarray-readable Zarr) lazily.

    Parameters
    ----------
    store : str | pathlib.Path
        Store path or fsspec URL. An interrupted earlier write (of a writer that died) is
        rolled back first; a live writer's commit is waited for.
    chunks : "auto" | dict | None
        ``"auto"``: whole multiples of the store's chunks, small ones merged along the
        spatial dims into tasks of 2-6 MiB sized to the cluster's cores (see "Default
        chunks" in docs/architecture.md); ``{}`` keeps exactly the store's chunks (for
        small-window reads: tiles, samplers); a dict ``{dim: size}`` sets those dims
        (others keep the store's); ``None`` loads eagerly.
    variable : str, optional
        Return this data variable as a DataArray.
    missing : {"error", "fill"}
        A chunk file missing from a store stengine wrote complete: ``"error"`` raises
        :class:`~stengine.errors.StoreCorruptError` when it is read; ``"fill"`` reads
        the fill value (NaN for floats), as plain Zarr does.
    lock_timeout : float, optional
        Seconds to wait for a live writer's commit; default env ``STENGINE_LOCK_TIMEOUT``
        or 600.

    Returns
    -------
    xarray.DataArray | xarray.Dataset
        A DataArray if the store was written from one (or ``variable`` is given); cell
        cubes (``cells`` dim, see :mod:`stengine.cube.cells`) open with padding removed.

    Raises
    ------
    StoreNotFoundError
        No store at ``store``.
    StoreCorruptError
        Metadata that does not parse, or (when read) a chunk that is missing or damaged;
        the message names the store and the file.
    StoreLockedError
        A writer held the store longer than ``lock_timeout``.
    """
    ds = open_dataset(store, chunks=chunks, missing=missing, lock_timeout=lock_timeout)
    if ds.attrs.get("stengine_layout", "").startswith("stengine-cells"):
        from ..cube.cells import open_cells

        return open_cells(store, _ds=ds)
    name = variable or ds.attrs.get(_DA_NAME)
    if name is None:
        return ds
    if name not in ds.data_vars:
        raise KeyError(f"open_cube: no variable {name!r} in {store!r}; it has "
                       f"{sorted(ds.data_vars)}")
    da = ds[name]
    da.attrs.pop(_DA_NAME, None)
    return da


def open_dataset(store, *, chunks="auto", missing: str = "error",
                 lock_timeout: float | None = None) -> xr.Dataset:
    """The store as a Dataset, as stored (after rolling back a dead writer's write)."""
    if missing not in MISSING:
        raise ValueError(f"open_cube: missing must be one of {MISSING}; got {missing!r}")
    if chunks is not None and chunks != "auto" and not isinstance(chunks, dict):
        raise TypeError(f"open_cube: chunks must be 'auto', a dict or None; got {chunks!r}")
    if not _is_local(store):
        from ._zarr_read import decode_times

        ds = xr.open_zarr(store, chunks={} if chunks == "auto" else chunks,
                          consolidated=False, decode_cf=True, mask_and_scale=False,
                          decode_coords="all", decode_times=False, decode_timedelta=True)
        ds = decode_times(ds)
        ds.attrs.pop(WRITTEN, None)
        for v in ds.variables.values():
            if "_FillValue" in v.attrs:
                v.encoding["_FillValue"] = v.attrs.pop("_FillValue")
        return ds
    path = Path(store)
    if not path.parent.is_dir():
        raise StoreNotFoundError(f"open_cube: no Zarr store at {str(path)!r} (its folder "
                                 f"{str(path.parent)!r} does not exist)")
    for _ in range(100):
        with _lock.read_lock(path, timeout=lock_timeout):
            # under the shared lock no writer is alive: anything pending is a dead one's
            if not _atomic.pending(path):
                root = read_root(path, "open_cube")
                return open_local(path, root, chunks=chunks, missing=missing,
                                  op="open_cube")
        _atomic.recover(path, wait=lock_timeout)
    raise StoreError(f"open_cube: {str(path)!r}: could not clean up an interrupted write")

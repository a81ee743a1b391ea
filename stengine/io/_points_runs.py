"""The sorted runs of a :class:`~stengine.io.points.PointStore`: writing and reading them.

A run is a Zarr group of 1-D arrays (key, lon, lat, time, the variables, all chunked
alike) plus chunk_first / chunk_last, the first and last key of each chunk. Runs are
written once and never changed; :class:`_RunReader` reads record slices of one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StoreCorruptError
from ..index import ranges

_RUN_ATTR = "stengine_run"


def _compressor():
    from zarr.codecs import BloscCodec

    # zstd inside blosc with byte shuffle: ~1.3x smaller and ~2x faster to read than plain
    # zstd on float records
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


class _RunVanished(Exception):
    """A run listed by the manifest a reader holds is gone (merged away meanwhile)."""


def _merge_sorted(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    key = np.concatenate([p["key"] for p in parts])
    # stable: equal keys keep the order of their appends
    order = np.argsort(key, kind="stable")
    return {c: np.concatenate([p[c] for p in parts])[order] for c in parts[0]}


def _write_run(path: Path, data: dict, cols: dict, chunk_size: int) -> int:
    import zarr

    # every chunk file is written (even one equal to the fill value), so a missing one is
    # an error, never silently the fill value
    g = zarr.open_group(path, mode="w-", zarr_format=3,
                        attributes={_RUN_ATTR: {"all_chunks": True}})
    n = len(data["key"])
    comp = [_compressor()]
    cfg = {"write_empty_chunks": True}
    for c in ["key", *cols]:
        v = np.ascontiguousarray(data[c])
        a = g.create_array(c, shape=(n,), dtype=v.dtype, chunks=(chunk_size,), compressors=comp,
                           dimension_names=["record"], config=cfg,
                           attributes={"units": "ns since 1970-01-01 UTC"} if c == "time" else {})
        a[:] = v
    key = data["key"]
    first = key[::chunk_size]
    last = np.append(key[chunk_size - 1::chunk_size], key[-1])[: len(first)]
    for name, v in (("chunk_first", first), ("chunk_last", last)):
        a = g.create_array(name, shape=v.shape, dtype=v.dtype, chunks=(max(1, len(v)),),
                           config=cfg)
        a[:] = v
    return len(first)


def _spans(hit: np.ndarray, span: int):
    """Group sorted chunk indices into runs of consecutive ones, at most ``span`` long."""
    if hit.size == 0:
        return
    brk = np.flatnonzero(np.diff(hit) != 1) + 1
    for grp in np.split(hit, brk):
        for i in range(0, grp.size, span):
            sub = grp[i:i + span]
            yield int(sub[0]), int(sub[-1]) + 1


def _empty_frame(vars_, cols):
    df = pd.DataFrame({"lon": np.empty(0), "lat": np.empty(0),
                       "time": np.empty(0, "datetime64[ns]")})
    for v in vars_:
        df[v] = np.empty(0, cols.get(v, "float64"))
    return df


class _RunReader:
    """Reads record slices of one run's columns.

    Chunk files are read and decoded directly when an array has the layout this module
    writes (default chunk keys, little-endian bytes then blosc; checked from its
    metadata): zarr's per-call overhead (~1 ms) would otherwise dominate reads of a few
    small chunks. Any other layout is read through zarr.

    A missing chunk file is an error naming the chunk (runs written by this version
    hold every chunk); if the whole run is gone, :class:`_RunVanished` tells the query
    to start again on the current manifest.
    """

    def __init__(self, store: Path, name: str, columns: list[str]):
        import zarr

        self.store, self.name = Path(store), name
        self.path = self.store / "runs" / name
        try:
            g = zarr.open_group(self.path, mode="r")
            self.arrays = {c: g[c] for c in columns}
            attrs = dict(g.attrs)
        except Exception as e:
            self._gone()
            raise StoreCorruptError(f"PointStore: {self.store}: run {name!r} is unreadable "
                                    f"({type(e).__name__}: {e})") from e
        self.complete = bool((attrs.get(_RUN_ATTR) or {}).get("all_chunks"))
        self.n = int(self.arrays["key"].shape[0])
        self.chunk = int(self.arrays["key"].chunks[0])
        self.direct = {c: _direct_layout(a) for c, a in self.arrays.items()}

    def _gone(self):
        if not (self.path / "zarr.json").is_file():
            raise _RunVanished(self.name)

    def _bad_chunk(self, col, i, why) -> StoreCorruptError:
        return StoreCorruptError(f"PointStore: {self.store}: chunk {col}/c/{i} of run "
                                 f"{self.name!r} is {why}; restore the store from a backup")

    def read(self, col: str, a: int, b: int) -> np.ndarray:
        layout = self.direct[col]
        if b <= a:
            return self.arrays[col][a:b]
        if layout is None:
            try:
                return self.arrays[col][a:b]
            except Exception as e:
                self._gone()
                raise StoreCorruptError(f"PointStore: {self.store}: cannot read records "
                                        f"[{a}, {b}) of {col!r} in run {self.name!r}: {e}") from e
        from numcodecs import blosc

        dtype, fill = layout
        c0, c1 = a // self.chunk, (b - 1) // self.chunk + 1
        parts = []
        for i in range(c0, c1):
            try:
                buf = (self.path / col / "c" / str(i)).read_bytes()
            except FileNotFoundError:
                self._gone()
                if self.complete:
                    raise self._bad_chunk(col, i, "missing") from None
                # runs of older versions: zarr skipped chunks equal to the fill value
                parts.append(np.full(self.chunk, fill, dtype))
                continue
            try:
                raw = blosc.decompress(buf)
            except Exception:
                raise self._bad_chunk(col, i, "corrupt (it does not decompress)") from None
            if len(raw) != self.chunk * dtype.itemsize:
                raise self._bad_chunk(col, i, f"corrupt ({len(raw)} bytes; expected "
                                              f"{self.chunk * dtype.itemsize})")
            parts.append(np.frombuffer(raw, dtype=dtype))
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        off = c0 * self.chunk
        return out[a - off:b - off]


def _direct_layout(arr):
    """(dtype, fill value) if ``arr`` chunks can be decoded directly, else None."""
    from zarr.codecs import BloscCodec, BytesCodec

    m = arr.metadata
    codecs = getattr(m, "codecs", ())
    enc = getattr(m, "chunk_key_encoding", None)
    if (getattr(m, "zarr_format", None) != 3 or len(codecs) != 2 or arr.shards is not None
            or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec)
            or getattr(enc, "name", None) != "default" or getattr(enc, "separator", None) != "/"
            or str(getattr(codecs[0].endian, "value", codecs[0].endian)) != "little"
            or arr.dtype.kind not in "iuf"):
        return None
    return arr.dtype.newbyteorder("<"), m.fill_value


def _read_span(reader, a, b, cover, reg, iv, vars_):
    """Read records ``[a, b)`` of a run and filter them: (columns, n_read, n_in_ranges).

    Variables are read only for chunks where some record passes."""
    key = reader.read("key", a, b)
    in_ranges = ranges.contains(cover, key)
    n_in = int(in_ranges.sum())
    sel = np.flatnonzero(in_ranges)
    if sel.size:
        lon = reader.read("lon", a, b)[sel]
        lat = reader.read("lat", a, b)[sel]
        t = reader.read("time", a, b)[sel]
    else:
        lon = lat = np.empty(0)
        t = np.empty(0, np.int64)
    ok = np.ones(sel.size, bool)
    if reg is not None:
        ok &= reg.contains(lon, lat)
    if iv is not None:
        if iv[0] is not None:
            ok &= t >= iv[0]
        if iv[1] is not None:
            ok &= t < iv[1]
    rows = sel[ok]
    out = {"lon": lon[ok], "lat": lat[ok], "time": t[ok].view("datetime64[ns]")}
    for v in vars_:
        out[v] = reader.read(v, a, b)[rows] if rows.size else np.empty(
            0, reader.arrays[v].dtype)
    return out, b - a, n_in

"""GeoTIFF / COG in and out through rasterio windows, lazily and in parallel.

Reading: one dask task per chunk, each reading only its window (files are opened per
task, so tasks run safely in threads and processes). Writing: chunks are computed in
parallel and written window by window into a temporary file, under a lock, then
renamed into place (or converted to a COG) — a failed write leaves no partial file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from ..cube import get_grid, set_grid
from ..errors import StoreCorruptError, StoreError, StoreNotFoundError
from ..grid import Grid

__all__ = ["read_raster", "write_raster"]

_TARGET_CHUNK_BYTES = 32 * 2**20
# GDAL GeoTIFF creation option COMPRESS
_COMPRESS = {"NONE", "DEFLATE", "LZW", "ZSTD", "LZMA", "PACKBITS", "JPEG", "WEBP", "LERC",
             "LERC_DEFLATE", "LERC_ZSTD", "JXL"}


def _exists(path: str) -> bool:
    if path.startswith("/vsi") or "://" in path:
        return True  # let GDAL say
    return os.path.exists(path)


class _RasterioWindows:
    """Array-like that reads a window per ``__getitem__`` (for ``dask.array.from_array``)."""

    def __init__(self, path, shape, dtype, indexes, masked, nodata):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.indexes, self.masked, self.nodata = list(indexes), masked, nodata
        self.ndim = 3

    def __getitem__(self, key):
        import rasterio
        import rasterio.errors
        from rasterio.windows import Window

        bsl, ysl, xsl = key
        idx = self.indexes[bsl]
        y0, y1, _ = ysl.indices(self.shape[1])
        x0, x1, _ = xsl.indices(self.shape[2])
        if not idx or y1 <= y0 or x1 <= x0:
            return np.empty((len(idx), max(0, y1 - y0), max(0, x1 - x0)), self.dtype)
        try:
            with rasterio.open(self.path) as src:
                data = src.read(idx, window=Window(x0, y0, x1 - x0, y1 - y0))
        except rasterio.errors.RasterioError as e:
            raise StoreCorruptError(
                f"read_raster: {self.path!r}: cannot read bands {idx}, rows {y0}:{y1}, "
                f"columns {x0}:{x1} ({type(e).__name__}: {e}); the file is damaged or was "
                "changed after it was opened") from e
        if self.masked and self.nodata is not None:
            out = data.astype(self.dtype)
            out[data == self.nodata] = np.nan
            return out
        return data


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{what} must be a positive int (pixels); got {v!r}")
    return int(v)


def _parse_chunks(chunks, src) -> tuple[int, int]:
    what = "read_raster: chunks"
    if isinstance(chunks, dict):
        unknown = set(chunks) - {"y", "x"}
        if unknown:
            raise ValueError(f"{what} keys must be 'y' and/or 'x'; got {sorted(unknown)}")
        return (_positive_int(chunks.get("y", src.height), what + "['y']"),
                _positive_int(chunks.get("x", src.width), what + "['x']"))
    if np.isscalar(chunks):
        n = _positive_int(chunks, what)
        return n, n
    if isinstance(chunks, (tuple, list)) and len(chunks) == 2:
        return _positive_int(chunks[0], what + "[0]"), _positive_int(chunks[1], what + "[1]")
    raise ValueError(f"{what} must be an int, a (y, x) pair or a dict with 'y'/'x'; "
                     f"got {chunks!r}")


def _parse_bands(bands, count: int, path) -> list[int]:
    if bands is None:
        return list(range(1, count + 1))
    indexes = [bands] if np.isscalar(bands) else list(bands)
    if not indexes:
        raise ValueError("read_raster: bands is empty; pass 1-based band numbers, or None "
                         "for all")
    odd = [b for b in indexes if isinstance(b, bool) or not isinstance(b, (int, np.integer))]
    if odd:
        raise TypeError(f"read_raster: bands must be 1-based ints; got {odd}")
    bad = [int(b) for b in indexes if not 1 <= b <= count]
    if bad:
        raise ValueError(f"read_raster: bands {bad} out of range 1..{count} in {path!r}")
    return [int(b) for b in indexes]


def _token(*parts) -> str:
    """Deterministic dask name: the same file and chunking give the same graph keys."""
    return uuid.uuid5(uuid.NAMESPACE_URL, repr(parts)).hex


def _default_chunks(src, itemsize) -> tuple[int, int]:
    bh, bw = src.block_shapes[0]
    h, w = src.height, src.width
    target = _TARGET_CHUNK_BYTES // itemsize
    if bw >= w:  # strips: full-width row bands
        rows = max(bh, (target // w) // bh * bh)
        return (min(rows, h), w)
    side = int(np.sqrt(target))
    return (min(h, max(bh, side // bh * bh)), min(w, max(bw, side // bw * bw)))


def read_raster(path, *, chunks=None, masked: bool = False, bands=None, squeeze: bool = True,
                name=None):
    """Open a GeoTIFF/COG (any GDAL raster) as a lazy, chunked DataArray.

    Parameters
    ----------
    path : str | pathlib.Path
        File path, URL (``https://`` is read through GDAL's ``/vsicurl``) or GDAL
        virtual path (``/vsizip/{/path/a.whl}/inner.tif``).
    chunks : int | (int, int) | dict, optional
        Spatial chunk size in pixels. Default: whole file blocks, about 32 MiB per chunk
        (full-width row bands for striped files).
    masked : bool
        ``False`` (default) keeps the file's dtype and puts its nodata value in
        ``attrs["nodata"]``; ``True`` returns float (float32 for 8/16-bit data) with
        nodata pixels as NaN.
    bands : int | list of int, optional
        1-based band numbers to read; default all.
    squeeze : bool
        Return ``(y, x)`` for a single band (default), else always ``(band, y, x)``.

    Returns
    -------
    xarray.DataArray
        dims ``(y, x)`` or ``(band, y, x)``; ``y`` runs north to south for north-up
        files; CRS and transform on the ``spatial_ref`` coordinate.

    Raises
    ------
    StoreNotFoundError
        The file does not exist.
    """
    import dask.array as dsa
    import rasterio
    from rasterio.errors import RasterioIOError

    path = os.fspath(path)
    if not _exists(path):
        raise StoreNotFoundError(f"read_raster: no such file {path!r}")
    try:
        src = rasterio.open(path)
    except RasterioIOError as e:
        if path.startswith("/vsi") or "://" in path:
            raise StoreNotFoundError(f"read_raster: cannot open {path!r}: {e}") from e
        raise StoreCorruptError(f"read_raster: {path!r} exists but GDAL cannot read it as a "
                                f"raster: {e}") from e
    with src:
        indexes = _parse_bands(bands, src.count, path)
        dtype = np.dtype(src.dtypes[indexes[0] - 1])
        nodata = src.nodata
        out_dtype = dtype
        if masked:
            out_dtype = np.dtype("f4") if dtype.itemsize <= 2 and dtype.kind != "f" else (
                dtype if dtype.kind == "f" else np.dtype("f8"))
        cy, cx = (_default_chunks(src, dtype.itemsize) if chunks is None
                  else _parse_chunks(chunks, src))
        grid = Grid(src.crs, src.transform, (src.height, src.width))
        shape = (len(indexes), src.height, src.width)
        descriptions = src.descriptions
    arr = _RasterioWindows(path, shape, out_dtype, indexes, masked, nodata)
    data = dsa.from_array(arr, chunks=(1, cy, cx), asarray=False, fancy=False, lock=False,
                          inline_array=True, meta=np.empty((0, 0, 0), out_dtype),
                          name=f"read_raster-{_token(path, masked, indexes, cy, cx)}")
    attrs = {}
    if not masked and nodata is not None:
        attrs["nodata"] = dtype.type(nodata).item() if dtype.kind != "f" else float(nodata)
    coords = {"band": indexes}
    da = xr.DataArray(data, dims=("band", "y", "x"), coords=coords, attrs=attrs,
                      name=name or Path(path.rstrip("/")).stem)
    if any(descriptions):
        da = da.assign_coords(band_name=("band", [d or "" for d in
                                                  (descriptions[i - 1] for i in indexes)]))
    da = set_grid(da, grid)
    if squeeze and len(indexes) == 1:
        da = da.isel(band=0, drop=True)
        da = da.drop_vars("band_name", errors="ignore")
    return da


def _rasterio_lock():
    """A lock that serialises window writes across the threads and processes of the run."""
    try:
        from distributed import Lock, get_client

        get_client()
        return Lock(f"stengine-write-{uuid.uuid4().hex}")
    except (ImportError, ValueError):
        from dask.utils import SerializableLock

        return SerializableLock()


class _WindowWriter:
    """``__setitem__`` target for ``dask.array.store``: writes one window per call."""

    def __init__(self, path, ndim):
        self.path, self.ndim = path, ndim

    def __setitem__(self, key, value):
        import rasterio
        from rasterio.windows import Window

        if self.ndim == 2:
            key, value = (slice(None), *key), value[None]
        bsl, ysl, xsl = key
        with rasterio.open(self.path, "r+") as dst:
            idx = list(range(1, dst.count + 1))[bsl]
            dst.write(np.asarray(value), idx, window=Window(
                xsl.start, ysl.start, xsl.stop - xsl.start, ysl.stop - ysl.start))


def write_raster(da, path, *, driver: str = "GTiff", blocksize: int = 512,
                 compress: str = "deflate", nodata=None, overwrite: bool = True) -> str:
    """Write a ``(y, x)`` or ``(band, y, x)`` raster to a tiled GeoTIFF or a COG.

    Chunks are computed in parallel (dask) and written window by window; the file
    appears at ``path`` only when complete. ``driver="COG"`` writes a Cloud-Optimized
    GeoTIFF (with overviews). ``nodata`` defaults to ``da.attrs["nodata"]``, or NaN for
    float data. Returns the path.
    """
    import dask.array as dsa
    import rasterio
    import rasterio.shutil

    if not isinstance(da, xr.DataArray):
        raise TypeError(f"write_raster: da must be a DataArray; got {type(da).__name__}")
    if da.ndim == 3:
        if da.dims[1:] != ("y", "x"):
            da = da.transpose(..., "y", "x")
    elif da.ndim != 2 or da.dims != ("y", "x"):
        raise ValueError(f"write_raster: da must have dims (y, x) or (band, y, x); got {da.dims}")
    if driver not in ("GTiff", "COG"):
        raise ValueError(f"write_raster: driver must be 'GTiff' or 'COG'; got {driver!r}")
    if 0 in da.shape:
        raise ValueError(f"write_raster: da has zero size {dict(da.sizes)}; a GeoTIFF needs "
                         "at least one pixel and one band")
    if (isinstance(blocksize, bool) or not isinstance(blocksize, (int, np.integer))
            or blocksize <= 0 or blocksize % 16):
        raise ValueError("write_raster: blocksize must be a positive multiple of 16 (TIFF "
                         f"tiles); got {blocksize!r}")
    if str(compress).upper() not in _COMPRESS:
        raise ValueError(f"write_raster: compress must be one of {sorted(_COMPRESS)} "
                         f"(case-insensitive); got {compress!r}")
    if da.dtype.kind not in "biufc":
        raise TypeError(f"write_raster: da must hold numbers or booleans; got {da.dtype}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"write_raster: {str(path)!r} exists (overwrite=False)")
    grid = get_grid(da)
    if nodata is None:
        nodata = da.attrs.get("nodata", np.nan if da.dtype.kind == "f" else None)
    count = da.shape[0] if da.ndim == 3 else 1
    dtype = np.dtype(da.dtype)
    if dtype == np.bool_:
        da, dtype = da.astype("u1"), np.dtype("u1")
    if nodata is not None and not (dtype.kind in "fc" and np.isnan(nodata)):
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        if info is not None and (not np.isfinite(nodata) or float(nodata) != int(nodata)
                                 or not info.min <= nodata <= info.max):
            raise ValueError(f"write_raster: nodata={nodata!r} is not a {dtype} value "
                             f"(range {info.min}..{info.max}); pick one that fits, or cast da")
    profile = dict(driver="GTiff", width=grid.shape[1], height=grid.shape[0], count=count,
                   dtype=dtype.name, crs=grid.crs.to_wkt() if grid.crs else None,
                   transform=grid.transform, nodata=nodata, tiled=True,
                   blockxsize=blocksize, blockysize=blocksize, compress=compress,
                   BIGTIFF="IF_SAFER")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"write_raster: cannot create the folder of {str(path)!r}: {e}") from e
    tmp = path.with_name(f".{path.name}.stengine-tmp-{uuid.uuid4().hex[:8]}.tif")
    try:
        with rasterio.open(tmp, "w", **profile):
            pass
        data = da.data if hasattr(da.data, "dask") else dsa.from_array(
            np.asarray(da.data), chunks=(-1,) * (da.ndim - 2) + (blocksize * 4,) * 2)
        # whole tiles per chunk, so no tile is written twice
        want = tuple(-1 for _ in range(da.ndim - 2)) + tuple(
            max(blocksize, (max(c) // blocksize) * blocksize) for c in data.chunks[-2:])
        data = data.rechunk(want)
        if hasattr(data._meta, "get"):  # CuPy blocks: bring to host before writing
            data = data.map_blocks(lambda b: b.get(), meta=np.empty((0,) * data.ndim, dtype))
        dsa.store(data, _WindowWriter(str(tmp), da.ndim), lock=_rasterio_lock(),
                  compute=True)
        if driver == "COG":
            cog = tmp.with_suffix(".cog.tif")
            rasterio.shutil.copy(tmp, cog, driver="COG", compress=compress,
                                 blocksize=blocksize, overviews="AUTO")
            os.replace(cog, path)
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        for p in (tmp, tmp.with_suffix(".cog.tif")):
            if p.exists():
                p.unlink()
        raise
    return str(path)

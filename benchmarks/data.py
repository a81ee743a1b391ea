"""Benchmark data, generated block by block and cached under ``.cache/bench/``.

Sizes follow the raster benchmark's three datasets (Haynes et al.): GLC ≈ 18 M px,
MERIS ≈ 186 M px, NLCD ≈ 1.69 G px, plus ``tiny`` for smoke runs. Class rasters are
land-cover-like (16 NLCD class codes in patches at several scales: value noise from a
hash of global pixel coordinates, so any block can be generated alone and every
chunking gives the same raster). Projected CRS (EPSG:5070, CONUS Albers, 30 m), y
running north to south.
"""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "tiny": (1024, 1024),          # 1 M px, for --smoke and tests
    "glc": (4096, 4400),           # 18.0 M px
    "meris": (13640, 13640),       # 186 M px
    "nlcd": (41100, 41100),        # 1.69 G px
}
NLCD_CLASSES = np.array([11, 12, 21, 22, 23, 24, 31, 41, 42, 43, 52, 71, 81, 82, 90, 95], "u1")
CRS = "EPSG:5070"
RES = 30.0
ORIGIN = (-2356095.0, 3172605.0)  # top-left corner (x, y) in metres


def cache() -> Path:
    d = Path(os.environ.get("STENGINE_BENCH_DATA", ROOT / ".cache" / "bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def grid(size: str):
    from stengine import Grid

    return Grid(CRS, (RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]), SIZES[size])


@numba.njit(inline="always")
def _hash(ix, iy, seed):
    h = (ix * np.int64(374761393) + iy * np.int64(668265263) + seed * np.int64(2147483647)) \
        & np.int64(0xFFFFFFFF)
    h = ((h ^ (h >> 13)) * np.int64(1274126177)) & np.int64(0xFFFFFFFF)
    h = h ^ (h >> 16)
    return (h & np.int64(0xFFFFFF)) / 16777216.0


@numba.njit(nogil=True, cache=True)
def _noise_block(r0, c0, h, w, seed, scales, weights, out):
    for i in range(h):
        for j in range(w):
            v = 0.0
            for k in range(scales.size):
                s = scales[k]
                y = (r0 + i) / s
                x = (c0 + j) / s
                iy = np.int64(np.floor(y))
                ix = np.int64(np.floor(x))
                fy = y - iy
                fx = x - ix
                fy = fy * fy * (3 - 2 * fy)
                fx = fx * fx * (3 - 2 * fx)
                sk = seed * 7 + k
                a = _hash(ix, iy, sk)
                b = _hash(ix + 1, iy, sk)
                c = _hash(ix, iy + 1, sk)
                d = _hash(ix + 1, iy + 1, sk)
                top = a * (1 - fx) + b * fx
                bottom = c * (1 - fx) + d * fx
                v += weights[k] * (top * (1 - fy) + bottom * fy)
            out[i, j] = v


def _classes_block(block_info=None, seed=0):
    info = block_info[None]
    (r0, r1), (c0, c1) = info["array-location"]
    v = np.empty((r1 - r0, c1 - c0), np.float64)
    _noise_block(r0, c0, r1 - r0, c1 - c0, seed, np.array([700.0, 90.0, 9.0]),
                 np.array([0.6, 0.3, 0.1]), v)
    # noise sums cluster around 0.5: stretch so all 16 classes occur
    idx = np.clip(((v - 0.5) * 2.2 + 0.5) * 16, 0, 15).astype(np.intp)
    return NLCD_CLASSES[idx]


def _dem_block(block_info=None, seed=0):
    info = block_info[None]
    (r0, r1), (c0, c1) = info["array-location"]
    v = np.empty((r1 - r0, c1 - c0), np.float64)
    _noise_block(r0, c0, r1 - r0, c1 - c0, seed + 100, np.array([2000.0, 300.0, 40.0]),
                 np.array([0.7, 0.25, 0.05]), v)
    return (v * 3000.0).astype(np.float32)  # metres


def _lazy(size, tile, fn, dtype, seed):
    import dask.array as dsa

    from stengine.cube import make_raster

    shape = SIZES[size]
    data = dsa.map_blocks(fn, dtype=dtype, chunks=dsa.core.normalize_chunks(tile, shape),
                          seed=seed, meta=np.empty((0, 0), dtype))
    return make_raster(data, grid(size))


def class_raster(size: str, tile: int = 2048, seed: int = 0):
    """The lazy (not stored) class raster: uint8 NLCD codes, nodata none."""
    da = _lazy(size, tile, _classes_block, np.uint8, seed)
    da.name = "landcover"
    return da


def class_raster_zarr(size: str, tile: int = 2048, seed: int = 0) -> Path:
    """Path of a zstd-compressed Zarr store of :func:`class_raster` (written once)."""
    from stengine import to_zarr

    path = cache() / f"classes_{size}_t{tile}_s{seed}.zarr"
    if not (path / "zarr.json").exists():
        to_zarr(class_raster(size, tile, seed), path, progress=size != "tiny")
    return path


def class_raster_tif(size: str, tile: int = 512, seed: int = 0) -> Path:
    """Path of a tiled, deflate-compressed GeoTIFF of the same raster (for GDAL peers)."""
    from stengine import write_raster

    path = cache() / f"classes_{size}_t{tile}_s{seed}.tif"
    if not path.exists():
        write_raster(class_raster(size, max(tile, 2048), seed), path, blocksize=tile)
    return path


def dem_zarr(size: str, tile: int = 2048, seed: int = 0) -> Path:
    """Path of a Zarr store of a smooth float32 terrain in metres (0–3000 m)."""
    from stengine import to_zarr

    path = cache() / f"dem_{size}_t{tile}_s{seed}.zarr"
    if not (path / "zarr.json").exists():
        da = _lazy(size, tile, _dem_block, np.float32, seed)
        da.name = "elevation"
        da.attrs["units"] = "m"
        to_zarr(da, path, progress=size != "tiny")
    return path

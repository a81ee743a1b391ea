"""Local ops of the raster benchmark: pixel count, histogram, reclassify, raster add.

Every case ends in a pixel count (or a histogram), as in the paper, so a full output
raster is never materialised. stengine and plain dask read the same zstd Zarr store with
dask's threaded scheduler on all cores, and at MERIS/NLCD size also on a LocalCluster
(``stengine.connect(quiet=True)``); NumPy reads the tiled GeoTIFF with rasterio (its
best format) and is timed with and without the read. "decode floor" reads and decodes
every chunk file of the same store(s) once, on all cores, with numcodecs and nothing else
(no Zarr, no dask): the time no reader of that store can beat.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._runner import Case, benchmark
from .data import NLCD_CLASSES, SIZES, class_raster_tif, class_raster_zarr

# NLCD-like classes → 8 general classes (water, developed, barren, forest, shrub,
# grass, crops, wetland)
RECLASS = {11: 1, 12: 1, 21: 2, 22: 2, 23: 2, 24: 2, 31: 3, 41: 4, 42: 4, 43: 4, 52: 5,
           71: 6, 81: 7, 82: 7, 90: 8, 95: 8}
VALUE = 41  # the class whose pixels are counted
CLUSTER_SIZES = ("meris", "nlcd")  # sizes also run on a LocalCluster


def _lut():
    lut = np.arange(256, dtype="u1")
    for k, v in RECLASS.items():
        lut[k] = v
    return lut


def _npix(size):
    return SIZES[size][0] * SIZES[size][1]


def _read_tif(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _tasks(x):
    return lambda: {"tasks": len(dict(x.__dask_graph__()))}


def _codec(meta):
    import numcodecs

    codecs = {c["name"]: c.get("configuration", {}) for c in meta["codecs"]}
    if "zstd" in codecs:
        return numcodecs.Zstd()
    if "blosc" in codecs:
        return numcodecs.Blosc()
    if "gzip" in codecs:
        return numcodecs.GZip()
    if "sharding_indexed" in codecs:
        raise ValueError("decode floor: sharded stores are timed by benchmarks.decode_floor")
    return None


def chunk_files(store, var="landcover"):
    """(chunk files, bytes of one decoded chunk, numcodecs codec) of ``store/var``."""
    meta = json.loads((store / var / "zarr.json").read_text())
    shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
    nbytes = int(np.prod(shape)) * np.dtype(meta["data_type"]).itemsize
    files = sorted(p for p in (store / var / "c").rglob("*") if p.is_file())
    return files, nbytes, _codec(meta)


@contextlib.contextmanager
def decode_floor(*stores):
    """A callable that reads and decodes every chunk file of ``stores`` once, on all
    cores (one thread per core, numcodecs into a fresh buffer per chunk)."""
    from stengine.compute import _cores

    jobs = []
    for s in stores:
        files, nbytes, codec = chunk_files(s)
        jobs += [(f, nbytes, codec) for f in files]

    def one(job):
        f, nbytes, codec = job
        with open(f, "rb") as fh:
            raw = fh.read()
        buf = np.empty(nbytes, "u1")
        if codec is None:
            buf[:] = np.frombuffer(raw, "u1")
        else:
            codec.decode(raw, out=buf)
        return nbytes

    with ThreadPoolExecutor(_cores()) as pool:
        yield lambda: sum(pool.map(one, jobs))


@contextlib.contextmanager
def _cluster(size):
    """A LocalCluster client for the sizes that run on one (else None)."""
    if size not in CLUSTER_SIZES:
        yield None
        return
    import stengine

    with stengine.connect(quiet=True) as conn:
        yield conn.client


TILES = [512, 1024, 2048, 4096]


def _cases(size, stores, st_expr, dask_expr, *, st_note, dask_note):
    """decode floor, stengine and plain dask (threads; and LocalCluster at big sizes)."""
    import dask.array as dsa

    import stengine

    n = _npix(size)
    with decode_floor(*stores) as floor:
        yield Case("decode floor", floor, items=n,
                   note="read + numcodecs decode of every chunk file once, all cores; "
                        "no Zarr, no dask")
    expr = st_expr(*(stengine.open_cube(s) for s in stores))
    yield Case("stengine", lambda: np.asarray(expr.compute()), items=n, note=st_note,
               info=_tasks(expr))
    zs = [dsa.from_zarr(str(s), component="landcover") for s in stores]
    plain = dask_expr(*zs)
    yield Case("dask.array", lambda: np.asarray(plain.compute()), items=n, note=dask_note,
               info=_tasks(plain))
    with _cluster(size) as client:
        if client is None:
            return
        # opened under the client: "auto" chunks are sized to the cluster's threads
        c_expr = st_expr(*(stengine.open_cube(s) for s in stores))
        yield Case("stengine (LocalCluster)", lambda: np.asarray(c_expr.compute()), items=n,
                   note=st_note + "; stengine.connect() LocalCluster", info=_tasks(c_expr))
        yield Case("dask.array (LocalCluster)", lambda: np.asarray(plain.compute()), items=n,
                   note=dask_note + "; same LocalCluster")


def _numpy_cases(size, tile, fn, note, *, seeds=(0,)):
    if not (size in ("tiny", "glc", "meris") or tile == 2048):
        return
    tifs = [class_raster_tif(size, seed=s) for s in seeds]
    yield Case("numpy+read", lambda: fn(*(_read_tif(t) for t in tifs)), items=_npix(size),
               note=f"tiled GeoTIFF read whole (rasterio), then {note}",
               repeat=1 if size == "nlcd" else None, warmup=size != "nlcd")
    mem = [_read_tif(t) for t in tifs]
    yield Case("numpy (in memory)", lambda: fn(*mem), items=_npix(size),
               note=f"array already in memory; no read; {note}")


@benchmark("local", "pixel_count", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def pixel_count(size, tile):
    from stengine import ops

    yield from _cases(size, [class_raster_zarr(size, tile)],
                      lambda da: ops.local_count(da, VALUE).data,
                      lambda z: (z == VALUE).sum(),
                      st_note="Zarr (zstd), numba count per chunk + one combine",
                      dask_note="Zarr, (x == v).sum()")
    yield from _numpy_cases(size, tile, lambda x: int((x == VALUE).sum()), "(x == v).sum()")


def _bincount_block(b):
    return np.bincount(b.ravel(), minlength=256)[None, None, :]


@benchmark("local", "histogram", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def histogram(size, tile):
    from stengine import ops

    yield from _cases(size, [class_raster_zarr(size, tile)],
                      lambda da: ops.local_histogram(da).data,
                      lambda z: z.map_blocks(_bincount_block, dtype=np.int64, new_axis=2,
                                             chunks=((1,) * z.numblocks[0],
                                                     (1,) * z.numblocks[1], (256,))
                                             ).sum(axis=(0, 1)),
                      st_note="Zarr; counts of all 256 uint8 values per chunk + one combine",
                      dask_note="Zarr, np.bincount per block, then sum")
    yield from _numpy_cases(size, tile, lambda x: np.bincount(x.ravel(), minlength=256),
                            "np.bincount")


@benchmark("local", "reclassify", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def reclassify(size, tile):
    import stengine
    from stengine import ops

    store = class_raster_zarr(size, tile)
    lut = _lut()
    yield from _cases(size, [store],
                      lambda da: ops.local_count(ops.local_reclassify(da, RECLASS), 4).data,
                      lambda z: (z.map_blocks(lambda b: lut[b], dtype="u1") == 4).sum(),
                      st_note="Zarr; reclassify fused into the count (source over the preimage)",
                      dask_note="Zarr, lut[x] per block, then count")
    try:
        from xrspatial.classify import reclassify as xrs_reclassify
    except ImportError as e:
        raise ImportError("xarray-spatial not installed") from e
    keys = sorted(RECLASS)
    da = stengine.open_cube(store)
    xrs = (xrs_reclassify(da, bins=keys, new_values=[RECLASS[k] for k in keys]) == 4).sum()
    yield Case("xarray-spatial", lambda: int(xrs.compute()), items=_npix(size),
               note="Zarr, xrspatial.classify.reclassify (dask), then count")
    yield from _numpy_cases(size, tile, lambda x: int((lut[x] == 4).sum()), "lut[x], count")


@benchmark("local", "raster_add", sizes=["tiny", "glc", "meris", "nlcd"],
           params={"tile": TILES})
def raster_add(size, tile):
    import stengine
    from stengine import ops

    stores = [class_raster_zarr(size, tile, seed=0), class_raster_zarr(size, tile, seed=1)]
    target = int(NLCD_CLASSES[7]) + int(NLCD_CLASSES[8])  # 41 + 42
    yield from _cases(size, stores,
                      lambda a, b: ops.local_count(ops.local_add(a, b), target).data,
                      lambda za, zb: ((za.astype("u2") + zb) == target).sum(),
                      st_note="2 Zarr stores; add (uint16, grid-checked), count",
                      dask_note="2 Zarr stores; x.astype(u2) + y, count")
    a, b = (stengine.open_cube(s) for s in stores)
    xa = (a.astype("u2") + b == target).sum()
    yield Case("xarray (dask)", lambda: int(xa.compute()), items=_npix(size),
               note="2 Zarr stores; DataArray add (aligns coords), count")
    yield from _numpy_cases(size, tile, lambda x, y: int(((x.astype("u2") + y) == target)
                                                         .sum()), "add, count", seeds=(0, 1))

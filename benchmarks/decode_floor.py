"""Can the decode floor of local ops be lowered? ``python -m benchmarks.decode_floor``.

The floor of a local op on a Zarr store is reading and decoding every chunk once (see
the "decode floor" rows of ``python -m benchmarks --family local``). This script writes
the MERIS-size class raster (186 M px, uint8) with several codecs, levels, chunk shapes
and sharding, and prints for each store: its size on disk, the floor (every chunk file
read and decoded once with numcodecs on all cores, no Zarr, no dask), and stengine's
``local_count`` on it (dask threads, all cores), best of ``--repeat``. Stores are cached
under ``.cache/bench/`` (``floor_<variant>.zarr``); nothing is written elsewhere.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .data import cache, class_raster

# variant -> (dask/write chunk, inner chunk if sharded, zarr v3 compressor factory)
VARIANTS = {
    "zstd1 c2048": (2048, None, lambda c: c.ZstdCodec(level=1)),
    "zstd3 c2048 (default)": (2048, None, lambda c: c.ZstdCodec(level=3)),
    "zstd9 c2048": (2048, None, lambda c: c.ZstdCodec(level=9)),
    "lz4 blosc c2048": (2048, None, lambda c: c.BloscCodec(cname="lz4", clevel=5,
                                                           shuffle="noshuffle")),
    "zstd3 c1024": (1024, None, lambda c: c.ZstdCodec(level=3)),
    "zstd3 c4096": (4096, None, lambda c: c.ZstdCodec(level=3)),
    "zstd3 c1024 sharded 4096": (4096, 1024, lambda c: c.ZstdCodec(level=3)),
}


def _store(size, name):
    import zarr.codecs as zc

    from stengine import to_zarr

    tile, inner, comp = VARIANTS[name]
    slug = name.split(" (")[0].replace(" ", "_")
    path = cache() / f"floor_{size}_{slug}.zarr"
    if not (path / "zarr.json").exists():
        enc = {"landcover": {"chunks": (inner, inner), "shards": (tile, tile)}} if inner \
            else None
        to_zarr(class_raster(size, tile), path, compressor=comp(zc), encoding=enc)
    return path


def _du(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _codec(meta):
    import numcodecs

    names = [c["name"] for c in meta]
    if "zstd" in names:
        return numcodecs.Zstd()
    if "blosc" in names:
        return numcodecs.Blosc()
    return None


def _jobs(path):
    """(file, (offset, nbytes) ranges or None, decoded bytes per chunk, codec)."""
    meta = json.loads((path / "landcover" / "zarr.json").read_text())
    files = sorted(p for p in (path / "landcover" / "c").rglob("*") if p.is_file())
    codecs = meta["codecs"]
    if codecs[0]["name"] == "sharding_indexed":
        conf = codecs[0]["configuration"]
        inner = conf["chunk_shape"]
        per = [a // b for a, b in zip(meta["chunk_grid"]["configuration"]["chunk_shape"],
                                      inner, strict=True)]
        n = int(np.prod(per))
        return [(f, n, int(np.prod(inner)), _codec(conf["codecs"])) for f in files]
    shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return [(f, None, int(np.prod(shape)), _codec(codecs)) for f in files]


def _read_decode(job):
    f, n_inner, nbytes, codec = job
    raw = f.read_bytes()
    if n_inner is None:
        buf = np.empty(nbytes, "u1")
        codec.decode(raw, out=buf)
        return nbytes
    # shard: index of n_inner (offset, nbytes) uint64 pairs + crc32c at the end
    index = struct.unpack(f"<{2 * n_inner}Q", raw[-(16 * n_inner + 4):-4])
    total = 0
    for k in range(n_inner):
        off, ln = index[2 * k], index[2 * k + 1]
        if off == 2**64 - 1:
            continue  # empty inner chunk
        buf = np.empty(nbytes, "u1")
        codec.decode(raw[off:off + ln], out=buf)
        total += nbytes
    return total


def _best(fn, repeat):
    fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main(argv=None) -> None:
    import dask

    import stengine
    from stengine.compute import _cores
    from stengine.ops import local_count

    p = argparse.ArgumentParser(prog="python -m benchmarks.decode_floor", description=__doc__)
    p.add_argument("--size", default="meris")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variant", action="append", choices=list(VARIANTS))
    a = p.parse_args(argv)
    cores = _cores()
    print(f"{a.size}: read + decode every chunk once on {cores} threads (floor), and "
          f"stengine local_count (dask threads), best of {a.repeat}")
    print("| store | size (MB) | floor (s) | local_count (s) | count / floor |")
    print("|---|---:|---:|---:|---:|")
    for name in a.variant or VARIANTS:
        path = _store(a.size, name)
        jobs = _jobs(path)
        with ThreadPoolExecutor(cores) as ex:
            t_floor = _best(lambda jobs=jobs: sum(ex.map(_read_decode, jobs)), a.repeat)
        da = stengine.open_cube(path)
        expr = local_count(da, 41).data
        with dask.config.set(scheduler="threads"):
            t_st = _best(expr.compute, a.repeat)
        print(f"| {name} | {_du(path) / 1e6:.1f} | {t_floor:.3f} | {t_st:.3f} | "
              f"{t_st / t_floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()

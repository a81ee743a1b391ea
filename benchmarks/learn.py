"""stengine.learn benchmarks: sampler throughput.

64×64 patches of a 6-channel float32 cube (``band, y, x``; smooth multi-scale noise, one
seed per band) from a local zstd Zarr store written by ``stengine.to_zarr`` with
512-pixel chunks (all 6 bands in a chunk), opened lazily with ``stengine.open_cube``.
Every case starts from a cold sampler (no decoded block cached) and ends with stacked
``(B, 6, 64, 64)`` float32 NumPy batches:

* stengine ``RandomSampler`` (``n`` random windows, an epoch of ``batches(256)``) and
  ``GridSampler`` (non-overlapping windows, ``batches(256)``): chunk-grouped reads.
* xbatcher's ``BatchGenerator(input_dims={y: 64, x: 64})`` over the same store (its
  windows are the grid's): one dask graph per patch; run on a sample of the windows and
  reported per patch (``est_all_zones_s`` scales its time to all of them).
* TorchGeo (``RandomGeoSampler`` + ``RasterDataset`` on a tiled GeoTIFF): not
  installable beside torch 2.13 here; reported as a skip.

``python -m benchmarks.learn [--size tiny|bench] [--no-write]``.
"""

from __future__ import annotations

import numpy as np

from ._runner import Case, benchmark
from .data import _noise_block, cache

SIZES = {"tiny": (6, 1024, 1024), "bench": (6, 4096, 4096)}
PATCH = 64
CHUNK = 512
BATCH = 256


def _bands_block(block_info=None):
    info = block_info[None]
    (b0, b1), (r0, r1), (c0, c1) = info["array-location"]
    out = np.empty((b1 - b0, r1 - r0, c1 - c0), np.float32)
    v = np.empty((r1 - r0, c1 - c0), np.float64)
    for k, b in enumerate(range(b0, b1)):
        _noise_block(r0, c0, r1 - r0, c1 - c0, 300 + b, np.array([900.0, 120.0, 15.0]),
                     np.array([0.6, 0.3, 0.1]), v)
        out[k] = v * (100.0 * (b + 1))
    return out


def cube_zarr(size: str):
    """Path of the 6-band float32 zstd Zarr store (written once, cached)."""
    import dask.array as dsa

    from stengine import Grid, to_zarr
    from stengine.cube import make_raster

    path = cache() / f"learn6_{size}_c{CHUNK}.zarr"
    if not (path / "zarr.json").exists():
        shape = SIZES[size]
        data = dsa.map_blocks(_bands_block, dtype=np.float32,
                              chunks=dsa.core.normalize_chunks((6, CHUNK, CHUNK), shape),
                              meta=np.empty((0, 0, 0), np.float32))
        g = Grid("EPSG:32633", (30.0, 0, 500000.0, 0, -30.0, 4000000.0), shape[1:])
        da = make_raster(data, g, dims=("band", "y", "x"), name="bands",
                         coords={"band": np.arange(6)})
        to_zarr(da, path, progress=size != "tiny")
    return path


def _drain(batches) -> int:
    n = 0
    for b in batches:
        n += b["x"].shape[0]
    return n


@benchmark("learn", "sampler_throughput", sizes=["tiny", "bench"],
           params={"sampler": ["random", "grid"]})
def sampler_throughput(size, sampler):
    import time

    import stengine
    from stengine.learn import GridSampler, RandomSampler

    store = cube_zarr(size)
    cube = stengine.open_cube(store)
    _, h, w = SIZES[size]
    n_grid = (h // PATCH) * (w // PATCH)
    if sampler == "random":
        n = 4 * n_grid  # ~1.3 windows per pixel: an epoch over the cube

        def run():
            c0 = time.process_time()
            s = RandomSampler(cube, PATCH, n, seed=0)
            got = _drain(s.batches(BATCH))
            stats.update(s.stats, cpu_s=time.process_time() - c0)
            return got

        stats = {}
        yield Case("stengine", run, items=n,
                   note=f"RandomSampler n={n}, batches({BATCH}), cold cache; Zarr zstd "
                   f"chunks {CHUNK}", info=lambda: {"chunks_read": stats.get("chunks_read"),
                                 "cpu_s": round(stats.get("cpu_s", 0), 3)})
    else:
        n = n_grid

        def run():
            c0 = time.process_time()
            s = GridSampler(cube, PATCH, PATCH)
            got = _drain(s.batches(BATCH))
            stats.update(s.stats, cpu_s=time.process_time() - c0)
            return got

        stats = {}
        yield Case("stengine", run, items=n,
                   note=f"GridSampler stride {PATCH}, batches({BATCH}), cold cache",
                   info=lambda: {"chunks_read": stats.get("chunks_read"),
                                 "cpu_s": round(stats.get("cpu_s", 0), 3)})
    yield from _xbatcher(cube, n, size)
    raise ImportError("TorchGeo: not installable beside torch 2.13 (CPU) in this "
                      "environment; RandomGeoSampler + RasterDataset not measured")


def _xbatcher(cube, n_items, size):
    try:
        import xbatcher
    except ImportError as e:
        raise ImportError("xbatcher not installed") from e
    gen = xbatcher.BatchGenerator(cube, input_dims={"y": PATCH, "x": PATCH})
    sample = min(len(gen), 64 if size == "tiny" else 256)
    # xbatcher's patch order is row-major over the grid: take every k-th so the sample
    # touches as many chunks as the whole set (no chunk reuse between neighbours)
    idx = np.linspace(0, len(gen) - 1, sample).astype(int)

    def run():
        out = np.empty((BATCH, 6, PATCH, PATCH), np.float32)
        for j, i in enumerate(idx):
            out[j % BATCH] = gen[int(i)].values
        return sample

    per = {}

    def info():
        return {"sampled_patches": sample, "cpu_s": round(per.get("cpu", 0), 3),
                "est_all_zones_s": per.get("t", 0) * n_items / sample}

    def timed():
        import time

        t0, c0 = time.perf_counter(), time.process_time()
        r = run()
        per["t"] = time.perf_counter() - t0
        per["cpu"] = time.process_time() - c0
        return r

    yield Case("xbatcher", timed, items=sample, repeat=1,
               note="BatchGenerator(input_dims={y: 64, x: 64}) on the same Zarr (dask), "
               f"gen[i].values for {sample} windows spread over the grid; "
               "est_all_zones_s = its time scaled to the stengine case's patches",
               info=info)
    # xbatcher's batched mode: batch_dims = one 512 chunk, its 64 patches stacked
    big = xbatcher.BatchGenerator(cube.to_dataset(), input_dims={"y": PATCH, "x": PATCH},
                                  batch_dims={"y": CHUNK, "x": CHUNK}, concat_input_dims=True)
    nb = min(len(big), 2 if size == "tiny" else 4)
    bidx = np.linspace(0, len(big) - 1, nb).astype(int)
    per2 = {}

    def timed_big():
        import time

        t0, c0 = time.perf_counter(), time.process_time()
        got = 0
        for i in bidx:
            got += big[int(i)][cube.name].values.reshape(-1, 6, PATCH, PATCH).shape[0]
        per2["t"] = time.perf_counter() - t0
        per2["cpu"] = time.process_time() - c0
        per2["n"] = got
        return got

    yield Case("xbatcher (batch_dims)", timed_big, items=nb * (CHUNK // PATCH) ** 2, repeat=1,
               note=f"BatchGenerator(input_dims 64, batch_dims {CHUNK}, concat_input_dims) "
               f"on a Dataset of the same store (its DataArray path fails in this xarray), "
               f"{nb} batches of {(CHUNK // PATCH) ** 2} patches; time scaled likewise",
               info=lambda: {"sampled_patches": per2.get("n"),
                             "cpu_s": round(per2.get("cpu", 0), 3),
                             "est_all_zones_s": per2.get("t", 0) * n_items / max(
                                 per2.get("n", 1), 1)})

if __name__ == "__main__":
    import argparse

    from ._runner import REGISTRY, run, save

    p = argparse.ArgumentParser(prog="python -m benchmarks.learn")
    p.add_argument("--size", action="append", help="tiny and/or bench (default both)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    res = run([b for b in REGISTRY if b.family == "learn"], sizes=a.size, repeat=a.repeat)
    print("\nsummary (patches/s; peers' speed-up = their time for stengine's patches / "
          "stengine's time):")
    for rows in res.values():
        ref = {}
        for r in rows:
            key = (r["size"], r["params"]["sampler"])
            if r["impl"] == "stengine":
                ref[key] = r
        for r in rows:
            key = (r["size"], r["params"]["sampler"])
            rate = r["items"] / r["median_s"]
            n_cpu = r.get("sampled_patches") or r["items"]
            cpu = n_cpu / r["cpu_s"] if r.get("cpu_s") else float("nan")
            line = (f"  {key[0]:<6} {key[1]:<6} {r['impl']:<22} {rate:10.0f} patches/s "
                    f"{cpu:9.0f} per CPU-s")
            if r["impl"] != "stengine" and key in ref:
                line += f"   stengine is {r['est_all_zones_s'] / ref[key]['median_s']:.1f}x"
            elif "chunks_read" in r:
                line += f"   chunks_read={r['chunks_read']}"
            print(line)
    if not a.no_write:
        import sys

        save(res, "python -m benchmarks.learn " + " ".join(sys.argv[1:]))

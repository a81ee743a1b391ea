"""stengine.learn benchmarks: sampler throughput and batch inference.

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
* TorchGeo (``RandomGeoSampler`` + ``RasterDataset`` on a tiled GeoTIFF): torchvision
  does not import beside torch 2.13 (CPU), so it is measured in a separate peers
  environment by :mod:`benchmarks.learn_torchgeo`; here it is a reported skip.

Inference (``inference``): ``stengine.learn.predict`` (class output, centre blend, patch
64, overlap 16, batches of 64 windows) of a small ``patch_unet`` artefact over a 6-channel
float32 zstd Zarr cube (512² tiny, 2048² bench; 512-pixel chunks), computed on a fresh
LocalCluster of 1 or 2 worker processes × 1 thread, against a hand-written
single-process torch loop over the same lattice of windows (read the store, pad with NaN,
``Artefact.run`` per batch, crop-and-stitch the centres, argmax) with torch at 1 thread and the
same malloc tuning as the workers (:func:`stengine.learn._cache.tune_malloc`: the nanny's
``MALLOC_TRIM_THRESHOLD_=65536`` makes torch 2-3x slower). ``overhead`` = stengine on 1
worker / the hand loop - 1 (target ≤ 10 %), also given against the hand loop's forward
passes alone (``forward_s``: no reading, tiling or stitching); the speed-up = 1 worker /
2 workers (target ≥ 1.7×). The summary line prints all three.

``python -m benchmarks.learn [--size tiny|bench] [--no-write] [--only NAME]``.
"""

from __future__ import annotations

import numpy as np

from ._runner import Case, benchmark
from .data import _noise_block, cache

SIZES = {"tiny": (6, 1024, 1024), "bench": (6, 4096, 4096)}
INFER_SIZES = {"tiny": (6, 512, 512), "bench": (6, 2048, 2048)}
INFER_OVERLAP = 16
INFER_BATCH = 64
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


def cube_zarr(size: str, *, kind: str = ""):
    """Path of the 6-band float32 zstd Zarr store (written once, cached); ``kind="infer"``:
    the inference benchmark's cube (:data:`INFER_SIZES`)."""
    import dask.array as dsa

    from stengine import Grid, to_zarr
    from stengine.cube import make_raster

    path = cache() / f"learn6_{kind}{size}_c{CHUNK}.zarr"
    if not (path / "zarr.json").exists():
        shape = (INFER_SIZES if kind else SIZES)[size]
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
    raise ImportError("TorchGeo: needs torchvision, which does not import beside torch "
                      "2.13 (CPU); measured in a peers env by python -m "
                      "benchmarks.learn_torchgeo --peers-python PY")


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


# --------------------------------------------------------------------------- inference


def _infer_artefact(size: str):
    """A small trained-shape ``patch_unet`` (6 → 4 classes, base 8, depth 2), seeded."""
    import torch

    from stengine.learn import build
    from stengine.learn.registry import ModelSpec, save_artefact

    path = cache() / f"learn_unet6_{size}"
    if (path / "sha256").exists():
        from stengine.learn import load

        return load(path)
    params = {"in_channels": 6, "n_classes": 4, "base": 8, "depth": 2}
    torch.manual_seed(0)
    spec = ModelSpec(name="patch_unet", params=params, channels=[f"b{i}" for i in range(6)],
                     patch_size=PATCH, output="classes", n_outputs=4,
                     mean=[50.0 * (b + 1) for b in range(6)],
                     std=[30.0 * (b + 1) for b in range(6)])
    return save_artefact(build("patch_unet", **params), spec, path)


def hand_loop(store, art, *, patch=PATCH, overlap=INFER_OVERLAP, batch=INFER_BATCH,
              timing=None):
    """The single-process reference: the same window lattice as ``predict`` (stride
    ``patch - overlap``, first window ``overlap // 2`` before the raster), the same model
    call (``Artefact.run``: normalise, forward under ``no_grad``), centre crops stitched,
    then one argmax; int16 ``(H, W)``. ``timing["forward_s"]``: the seconds spent in the
    model calls alone (the floor of any inference engine)."""
    import time

    import zarr

    g = zarr.open_group(str(store), mode="r")
    a = np.asarray(g["bands"][...], np.float32)
    _, H, W = a.shape
    m = overlap // 2
    s = patch - 2 * m
    pad = np.pad(a, ((0, 0), (patch, patch), (patch, patch)), constant_values=np.nan)
    wins = [(i * s - m, j * s - m) for i in range(-(-H // s)) for j in range(-(-W // s))]
    logits = np.empty((art.spec.n_outputs, H, W), np.float32)
    fwd = 0.0
    for k in range(0, len(wins), batch):
        part = wins[k:k + batch]
        x = np.stack([pad[:, gy + patch:gy + 2 * patch, gx + patch:gx + 2 * patch]
                      for gy, gx in part])
        t0 = time.perf_counter()
        out = art.run(x)
        fwd += time.perf_counter() - t0
        for (gy, gx), o in zip(part, out, strict=True):
            y0, x0 = gy + m, gx + m
            y1, x1 = min(y0 + s, H), min(x0 + s, W)
            logits[:, y0:y1, x0:x1] = o[:, m:m + y1 - y0, m:m + x1 - x0]
    if timing is not None:
        timing["forward_s"] = fwd
    return logits.argmax(axis=0).astype(np.int16)


@benchmark("learn", "inference", sizes=["tiny", "bench"], params={"workers": [1, 2]})
def inference(size, workers):
    import torch
    from distributed import Client, LocalCluster

    import stengine
    from stengine.learn import predict
    from stengine.learn._cache import tune_malloc

    store = cube_zarr(size, kind="infer")
    art = _infer_artefact(size)
    cube = stengine.open_cube(store)
    _, h, w = INFER_SIZES[size]
    s = PATCH - INFER_OVERLAP
    n_win = (-(-h // s)) * (-(-w // s))
    got = {}
    lc = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None)
    try:
        with Client(lc):

            def run():
                pred = predict(art, cube, patch=PATCH, overlap=INFER_OVERLAP,
                               batch_size=INFER_BATCH, match="position", progress=False)
                got["tasks"] = len(pred.data.__dask_graph__())
                got["cls"] = pred.values
                return got["cls"]

            yield Case("stengine", run, items=n_win,
                       note=f"predict on {workers} worker process(es) x 1 thread, patch "
                       f"{PATCH}, overlap {INFER_OVERLAP}, batch {INFER_BATCH}, Zarr chunks "
                       f"{CHUNK}", info=lambda: {"workers": workers, "tasks": got["tasks"]})
        if workers != 1:
            return
    finally:
        lc.close()
    # the reference, in this process, as a worker has it: 1 torch thread, tuned malloc
    tune_malloc()
    threads = torch.get_num_threads()

    def ref():
        torch.set_num_threads(1)
        try:
            got["ref"] = hand_loop(store, art, timing=got)
            return got["ref"]
        finally:
            torch.set_num_threads(threads)

    def check():  # the same classes as predict's (batches differ: rounding may flip ties)
        same = float((got["ref"] == got["cls"]).mean()) if "cls" in got else None
        return {"workers": 1, "equal_fraction": same,
                "forward_s": round(got["forward_s"], 3)}

    yield Case("torch hand loop", ref, items=n_win,
               note="one process, torch.set_num_threads(1), tune_malloc, the same windows "
               "read from the same store", info=check)


if __name__ == "__main__":
    import argparse

    from ._runner import REGISTRY, run, save

    p = argparse.ArgumentParser(prog="python -m benchmarks.learn")
    p.add_argument("--size", action="append", help="tiny and/or bench (default both)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--only", action="append", help="sampler_throughput and/or inference")
    a = p.parse_args()
    res = run([b for b in REGISTRY if b.family == "learn" and (not a.only or b.name in a.only)],
              sizes=a.size, repeat=a.repeat)
    rows = [r for rs in res.values() for r in rs]
    samp = [r for r in rows if r["bench"] == "sampler_throughput"]
    if samp:
        print("\nsummary (patches/s; peers' speed-up = their time for stengine's patches / "
              "stengine's time):")
    ref = {}
    for r in samp:
        key = (r["size"], r["params"]["sampler"])
        if r["impl"] == "stengine":
            ref[key] = r
    for r in samp:
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
    inf = [r for r in rows if r["bench"] == "inference"]
    for size in dict.fromkeys(r["size"] for r in inf):
        t = {(r["impl"], r["params"]["workers"]): r["median_s"] for r in inf
             if r["size"] == size}
        one, two, hand = (t.get(("stengine", 1)), t.get(("stengine", 2)),
                          t.get(("torch hand loop", 1)))
        fwd = next((r["forward_s"] for r in inf if r["size"] == size and "forward_s" in r),
                   None)
        print(f"\ninference {size}: stengine 1 worker {one:.3f} s" if one else
              f"\ninference {size}:", end="")
        if one and hand:
            print(f", hand loop {hand:.3f} s: overhead {one / hand - 1:+.1%} (target <= 10 %)",
                  end="")
        if one and fwd:
            print(f" (its forward passes alone {fwd:.3f} s: stengine {one / fwd - 1:+.1%})",
                  end="")
        if one and two:
            print(f"; 2 workers {two:.3f} s: speed-up {one / two:.2f}x (target >= 1.7x)",
                  end="")
        print()
    if not a.no_write:
        import sys

        save(res, "python -m benchmarks.learn " + " ".join(sys.argv[1:]))

"""Sampler throughput against TorchGeo, in one run: stengine's ``RandomSampler`` on the
Zarr store of :mod:`benchmarks.learn` and TorchGeo's ``RandomGeoSampler`` +
``RasterDataset`` on the same data as a tiled GeoTIFF.

TorchGeo needs torchvision, which does not import beside the project's CPU
``torch==2.13.0``; it runs in a separate peers environment (``../shared/DATA.md``:
``pip install torch==2.14.1 torchvision==0.29.1 torchgeo`` into its own venv) that this
script calls as a subprocess::

    python -m benchmarks.learn_torchgeo --peers-python /tmp/peers/bin/python [--n 16384]

Both sides: 64×64 patches of the 6-band float32 4096² cube, ``n`` random windows, stacked
into batches of 256, cold start (a new sampler/dataset, the OS page cache warm for both),
one process, wall and CPU seconds. The GeoTIFF is tiled 512 (the Zarr chunk), pixel
interleaved, zstd level 3 (the Zarr codec), written once by ``stengine.write_raster``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PATCH, BATCH = 64, 256


def _torchgeo(tif: str, n: int, seed: int) -> dict:
    """Runs in the peers environment: only torchgeo, torch and rasterio are imported."""
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import RandomGeoSampler

    class Cube(RasterDataset):
        filename_glob = Path(tif).name
        is_image = True

    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    ds = Cube(paths=str(Path(tif).parent))
    sampler = RandomGeoSampler(ds, size=PATCH, length=n)
    got = 0
    for batch in DataLoader(ds, sampler=sampler, batch_size=BATCH, collate_fn=stack_samples,
                            num_workers=0):
        got += batch["image"].shape[0]
    import torchgeo

    return {"impl": f"torchgeo {torchgeo.__version__}", "patches": got,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "shape": list(batch["image"].shape[1:])}


def _stengine(store, n: int, seed: int) -> dict:
    import stengine
    from stengine.learn import RandomSampler

    t0, c0 = time.perf_counter(), time.process_time()
    s = RandomSampler(stengine.open_cube(store), PATCH, n, seed=seed)
    got = 0
    for b in s.batches(BATCH):
        got += b["x"].shape[0]
        shape = list(b["x"].shape[1:])
    return {"impl": f"stengine {stengine.__version__}", "patches": got,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "shape": shape, "chunks_read": s.stats.get("chunks_read")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learn_torchgeo")
    p.add_argument("--peers-python", help="python of the environment with torchgeo")
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="bench")
    p.add_argument("--torchgeo-only", metavar="TIF", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.torchgeo_only:
        print(json.dumps(_torchgeo(a.torchgeo_only, a.n, a.seed)))
        return 0
    if not a.peers_python:
        p.error("--peers-python is required (a venv with torch==2.14.1, torchvision, "
                "torchgeo)")
    import stengine

    from .learn import cube_zarr

    store = cube_zarr(a.size)
    tif = Path(store).with_suffix(".tif")
    if not tif.exists():
        cube = stengine.open_cube(store)
        stengine.write_raster(cube, tif, blocksize=512, compress="zstd")
    rows = [_stengine(store, a.n, a.seed)]
    r = subprocess.run([a.peers_python, "-m", "benchmarks.learn_torchgeo", "--n", str(a.n),
                        "--seed", str(a.seed), "--torchgeo-only", str(tif)],
                       capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return 1
    rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    for row in rows:
        row["patches_per_s"] = row["patches"] / row["wall_s"]
        print(json.dumps(row))
    print(f"stengine / torchgeo: {rows[0]['patches_per_s'] / rows[1]['patches_per_s']:.1f}x "
          "patches/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

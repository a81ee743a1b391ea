"""How much of a local-op run is Zstandard decoding: ``python -m benchmarks.decode_floor``.

Reads every chunk file of the NLCD-size class store (tile 4096, made by
``python -m benchmarks --family local --size nlcd``) and decodes it with numcodecs' Zstd
in 2 threads, without Zarr or dask, then times ``local_count`` and plain dask's
``(x == v).sum()`` on the same store (best of 3, 2 threads). See docs/local.md.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .data import class_raster_zarr


def main(size: str = "nlcd", tile: int = 4096, threads: int = 2) -> None:
    import dask
    from numcodecs import Zstd

    import stengine
    from stengine.ops import local_count

    store = class_raster_zarr(size, tile)
    files = sorted(p for p in (store / "landcover" / "c").rglob("*") if p.is_file())
    z = Zstd()

    def read_decode(path):
        return len(z.decode(path.read_bytes()))

    with ThreadPoolExecutor(threads) as ex:
        sum(ex.map(read_decode, files))  # warm the page cache
        t = time.perf_counter()
        nbytes = sum(ex.map(read_decode, files))
        t_decode = time.perf_counter() - t

    def best(fn, n=3):
        fn()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return min(out)

    da = stengine.open_cube(store)
    with dask.config.set(scheduler="threads", num_workers=threads):
        t_st = best(local_count(da, 41).compute)
        t_dask = best((da.data == 41).sum().compute)
    print(f"{len(files)} chunks, {nbytes / 1e9:.2f} GB decoded: read + zstd decode "
          f"{t_decode:.2f} s; stengine local_count {t_st:.2f} s "
          f"(decode {t_decode / t_st:.0%}); dask (x == v).sum() {t_dask:.2f} s")


if __name__ == "__main__":
    main()

"""Fixed cost per computation: what a ``compute`` costs beyond the work itself.

``n_chunks``: a computation over N chunks of tiny work (an ``(8 N, 8)`` uint8 array in
8 × 8 chunks: a pixel count per chunk, then the sum), so the time is the engine's:
graph construction, optimisation, submission, scheduling, gathering. stengine (an op
and ``stengine.compute``, with and without its progress bar) beside plain dask on the
same chunks, on dask's threaded scheduler and on ``stengine.connect()``'s LocalCluster.
``ms_per_chunk`` is the median time over N.

``local_op_1mpx``: an op on a 1 M px raster (1024 × 1024, one Zarr chunk), the
interactive case (tiles, the service): the target is ≤ 50 ms through ``connect()``'s
cluster, with the plain-dask figure beside it.
"""

from __future__ import annotations

import contextlib
import statistics
import time

from ._runner import Case, benchmark
from .data import NLCD_CLASSES, class_raster_zarr

NS = [1, 10, 100, 1000, 10000]


def _timed(fn, per: int):
    """``fn`` that records its wall times, and an ``info`` giving ms per item of the runs."""
    times = []

    def run():
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        return out

    def info():
        timed = times[1:] if len(times) > 1 else times  # the first run warms up
        return {"ms_per_chunk": round(statistics.median(timed) * 1e3 / per, 4)}

    return run, info


@contextlib.contextmanager
def _where(where):
    """``connect()``'s cluster for "cluster"; nothing for "threads"."""
    if where == "threads":
        yield
        return
    import stengine

    with stengine.connect(dashboard_port=0, quiet=True):
        yield


@benchmark("overhead", "n_chunks", sizes=["tiny"],
           params={"n": NS, "where": ["threads", "cluster"]})
def n_chunks(size, n, where):
    import dask.array as dsa
    import xarray as xr

    import stengine
    from stengine import ops

    a = dsa.ones((8 * n, 8), chunks=(8, 8), dtype="u1")
    st = ops.local_count(xr.DataArray(a, dims=("y", "x")), 1)
    plain = (a == 1).sum()
    tasks = {"tasks_stengine": len(dict(st.data.__dask_graph__())),
             "tasks_dask": len(dict(plain.__dask_graph__()))}
    big = n >= 10000  # one timed run, no warm-up: tens of seconds on a loaded laptop
    kw = {"repeat": 1, "warmup": False} if big else {}
    with _where(where):
        sched = {"scheduler": "threads"} if where == "threads" else {}
        note = "dask threaded scheduler" if where == "threads" else "connect()'s LocalCluster"
        fn, info = _timed(lambda: stengine.compute(st, progress=False, **sched), n)
        yield Case("stengine", fn, items=n, note=f"op + stengine.compute(progress=False); {note}",
                   info=lambda: {**info(), **tasks}, **kw)
        fn, info = _timed(lambda: stengine.compute(st), n)
        yield Case("stengine (progress)", fn, items=n,
                   note=f"stengine.compute() (bar after 0.5 s); {note}", info=info, **kw)
        fn, info = _timed(lambda: plain.compute(**sched), n)
        yield Case("dask.array", fn, items=n, note=f"(x == 1).sum().compute(); {note}",
                   info=info, **kw)


@benchmark("overhead", "local_op_1mpx", sizes=["tiny"],
           params={"where": ["cluster", "threads"], "op": ["count", "reclassify", "add"]})
def local_op_1mpx(size, where, op):
    import dask.array as dsa

    import stengine
    from stengine import ops

    a_store, b_store = class_raster_zarr(size, 1024, seed=0), class_raster_zarr(size, 1024, seed=1)
    a, b = stengine.open_cube(a_store), stengine.open_cube(b_store)
    za = dsa.from_zarr(str(a_store), component="landcover")
    zb = dsa.from_zarr(str(b_store), component="landcover")
    value, target = int(NLCD_CLASSES[7]), int(NLCD_CLASSES[7]) + int(NLCD_CLASSES[8])
    if op == "count":
        def build():
            return ops.local_count(a, value)
        plain = (za == value).sum()
    elif op == "reclassify":
        import numpy as np

        from .local import RECLASS, _lut

        lut = _lut()

        def build():
            return ops.local_count(ops.local_reclassify(a, RECLASS), 4)
        plain = (za.map_blocks(lambda blk: lut[blk], dtype=np.uint8) == 4).sum()
    else:
        def build():
            return ops.local_count(ops.local_add(a, b), target)
        plain = ((za.astype("u2") + zb) == target).sum()
    n = a.size
    with _where(where):
        sched = {"scheduler": "threads"} if where == "threads" else {}
        note = "dask threaded scheduler" if where == "threads" else "connect()'s LocalCluster"
        yield Case("stengine", lambda: stengine.compute(build()), items=n,
                   note=f"op built + stengine.compute() (the user's path); {note}")
        x = build()
        yield Case("stengine (built, no bar)",
                   lambda: stengine.compute(x, progress=False, **sched), items=n,
                   note=f"graph built once; stengine.compute(progress=False); {note}")
        yield Case("dask.array", lambda: plain.compute(**sched), items=n,
                   note=f"dask.array.from_zarr, same op; {note}")

"""Index benchmarks: HTM point lookup, cap covers, and the HTM-ST paper's queries.

* ``lonlat_to_id``: ids per second at levels 12 and 20, stengine on 2 dask threads and
  on 1 thread, esutil (C++, one thread) and lsst-sphgeom (one Python call per point, so
  it is timed on a 100 k subsample). The ids are checked against each peer's on a sample
  (``agree``: the share of equal ids; the rest lie within ~1e-15 rad of an edge).
* ``cap_cover``: envelope of a cap (1 and 10 degrees radius) at level 12, as id ranges
  (stengine, sphgeom's RangeSet) or an id list (esutil's ``intersect``).
* ``paper_query``: the paper's queries I, II, III on generated satellite tracks (one day,
  or the two months of docs/htmst.md) in point stores with coupled, time-first and
  space-first keys; ``info`` adds records read, chunks read, records returned.
"""

from __future__ import annotations

import os

import numpy as np

from ._runner import Case, benchmark
from .data import cache

_POINTS = {"1M": 1_000_000, "10M": 10_000_000}
_SPHGEOM_N = 100_000


def _points(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


@benchmark("index", "lonlat_to_id", sizes=["1M", "10M"], params={"level": [12, 20]})
def lonlat_to_id(size, level):
    import dask
    import dask.array as dsa

    from stengine.index import htm

    n = _POINTS[size]
    lon, lat = _points(n)
    threads = min(2, os.cpu_count() or 1)
    dlon = dsa.from_array(lon, chunks=-(-n // (threads * 4)))
    dlat = dsa.from_array(lat, chunks=-(-n // (threads * 4)))

    def two_threads():
        with dask.config.set(scheduler="threads", num_workers=threads):
            return htm.lonlat_to_id(dlon, dlat, level).compute()

    ours = htm.lonlat_to_id(lon, lat, level)
    yield Case("stengine", two_threads, items=n,
               note=f"numba (AVX), {threads} dask threads, {threads * 4} chunks")
    yield Case("stengine (1 thread)", lambda: htm.lonlat_to_id(lon, lat, level), items=n,
               note="one numba call")
    import esutil.htm

    h = esutil.htm.HTM(level)
    theirs = h.lookup_id(lon[:200_000], lat[:200_000]).astype(np.uint64)
    agree = float((theirs == ours[:200_000]).mean())
    yield Case("esutil", lambda: h.lookup_id(lon, lat), items=n, note="C++, one thread",
               info=lambda: {"agree": round(agree, 6)})
    import lsst.sphgeom as sg

    pix = sg.HtmPixelization(level)
    m = _SPHGEOM_N

    def sphgeom_ids():
        return np.fromiter((pix.index(sg.UnitVector3d(sg.LonLat.fromDegrees(a, b)))
                            for a, b in zip(lon[:m], lat[:m], strict=True)), np.uint64, m)

    agree_s = float((sphgeom_ids() == ours[:m]).mean())
    yield Case("lsst-sphgeom", sphgeom_ids, items=m, repeat=1,
               note=f"one Python call per point, {m:,} points",
               info=lambda: {"agree": round(agree_s, 6)})


@benchmark("index", "cap_cover", sizes=["L12"], params={"radius": [1.0, 10.0]})
def cap_cover(size, radius):
    from stengine.index import htm

    level = int(size[1:])
    lon, lat = 10.0, 20.0
    n = len(htm.cover_cap(lon, lat, radius, level))
    yield Case("stengine", lambda: htm.cover_cap(lon, lat, radius, level), repeat=20,
               note="envelope as id ranges", info=lambda: {"ranges": n})
    import lsst.sphgeom as sg

    pix = sg.HtmPixelization(level)
    circle = sg.Circle(sg.UnitVector3d(sg.LonLat.fromDegrees(lon, lat)),
                       sg.Angle.fromDegrees(radius))
    ns = len(pix.envelope(circle).ranges())
    yield Case("lsst-sphgeom", lambda: pix.envelope(circle), repeat=20,
               note="envelope as RangeSet", info=lambda: {"ranges": ns})
    import esutil.htm

    h = esutil.htm.HTM(level)
    ne = len(h.intersect(lon, lat, radius, inclusive=True))
    yield Case("esutil", lambda: h.intersect(lon, lat, radius, inclusive=True), repeat=20,
               note="intersect(inclusive=True): an id list", info=lambda: {"ids": ne})


_PERIODS = {"1d": ("2013-02-01", "2013-02-02"), "59d": ("2013-01-01", "2013-03-01")}


def paper_store(size: str, key: str, level: int = 8, chunk: int = 65536):
    """A point store of generated tracks, built once under the benchmark cache."""
    from stengine._demo.htmst import satellite_tracks
    from stengine.io.points import PointStore

    start, stop = _PERIODS[size]
    path = cache() / "htmst" / f"{size}-{key}-L{level}-c{chunk}"
    if (path / "zarr.json").exists():
        st = PointStore(path)
        if len(st):
            return st
    st = PointStore.create(path, key=key, level=level, t0=start, t1=stop, chunk_size=chunk,
                           overwrite=True)
    st.append(satellite_tracks(start, stop))
    return st


@benchmark("index", "paper_query", sizes=["1d", "59d"],
           params={"query": ["III", "I", "II"]})
def paper_query(size, query):
    from stengine._demo.htmst import paper_queries

    reg, iv = paper_queries(*_PERIODS[size])[query]
    for key in ("htmst", "time", "space"):
        st = paper_store(size, key)
        r = st.query(reg, iv)

        def info(r=r):
            return {"records_read": r.records_read, "chunks_read": f"{r.chunks_read}/"
                    f"{r.chunks_total}", "records_in_ranges": r.records_in_ranges,
                    "records_returned": r.records_returned}

        yield Case("stengine" if key == "htmst" else f"stengine ({key}-first key)",
                   lambda st=st: st.query(reg, iv), items=r.records_returned,
                   note=f"{key} key, level 8, 65536-record chunks, {len(st):,} records",
                   info=info)

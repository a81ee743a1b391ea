"""VectorGeo similarity search: index build and k=10 queries, pgvector (HNSW) vs exact NumPy.

Data: H3 cells with synthetic clustered embeddings (float32): each cell takes the centre
of the nearest of 64 random anchor points on the sphere, plus 0.7 × a smooth function of
its position (random Fourier features, frequency σ = 4 per unit vector) and Gaussian noise
σ = 0.1. (A first run with isotropic noise σ = 0.35 alone gave recall@10 0.83 at
ef_search 100: in 64-d such noise makes a cell's neighbours all but equidistant.)

* ``tiny``: all 5,882 resolution-2 cells, D = 16 (the CI smoke size);
* ``land5``: the 572,805 resolution-5 cells whose centre is on land
  (``cell_stencil(land_mask(), "h3", level=5)``), D = 64 (the pipeline's embedding size).

``vector_build``: ``VectorIndex.build(backend="pgvector")`` into the embedded PostgreSQL 18
+ pgvector 0.8.5 (binary COPY, primary key, parent B-trees, HNSW m=16,
ef_construction=64; columns ``copy_s``/``hnsw_s``), against the exact backend's build
(normalising the rows). ``vector_query``: 200 queries by cell id (the cell's vector is
read from the index first), k = 10, self excluded, for ``filter`` none, a bbox (Europe),
a polygon (Brazil, Natural Earth) or a small polygon (France); each case reports the
per-query p50/p99 in ms and, for pgvector, recall@10 against the exact backend on the
same queries. Targets: build ≤ 2 min, p50 ≤ 10 ms, p99 ≤ 50 ms, recall@10 ≥ 0.95.
"""

from __future__ import annotations

import atexit
import time

import numpy as np

from ._runner import Case, benchmark
from .data import cache

try:
    from . import vectorgeo_embed  # noqa: F401  (the pipeline's embedding benchmark)
except ModuleNotFoundError:
    pass

SIZES = {"tiny": (2, 16), "land5": (5, 64)}
N_QUERIES = {"tiny": 40, "land5": 200}
_BUILT: dict = {}


def _cells(size):
    from stengine.index import h3 as sth3

    res, _ = SIZES[size]
    if size == "tiny":
        return sth3.all_cells(res)
    path = cache() / "vectorgeo_land5_cells.npy"
    if not path.exists():
        from stengine.datasets import land_mask
        from stengine.ops import cell_stencil

        np.save(path, np.asarray(cell_stencil(land_mask(), "h3", level=5)["cell_ids"].values))
    return np.load(path)


def _vectors(cells, dim, seed=0, n_clusters=64):
    from stengine.index import h3 as sth3

    rng = np.random.default_rng(seed)
    lon, lat = sth3.cell_to_lonlat(cells)
    xyz = np.c_[np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
                np.cos(np.radians(lat)) * np.sin(np.radians(lon)), np.sin(np.radians(lat))]
    anchors = rng.normal(size=(n_clusters, 3))
    label = np.argmax(xyz @ anchors.T, axis=1)
    # smooth in space (random Fourier features of the position, as learnt embeddings
    # are), plus noise: isotropic noise alone makes every neighbour equidistant in 64-d
    freq = rng.normal(scale=4.0, size=(3, dim))
    smooth = np.cos(xyz @ freq + rng.uniform(0, 2 * np.pi, dim))
    v = (rng.normal(size=(n_clusters, dim))[label] + 0.7 * smooth
         + 0.1 * rng.normal(size=(cells.size, dim)))
    return v.astype(np.float32)


def _server():
    from stengine._pgserver import EmbeddedPostgres

    srv = EmbeddedPostgres(cache() / "pgdata")
    if not srv.running():
        srv.start()
        atexit.register(srv.stop)  # a server this run started stops with it
    return srv


def _data(size):
    if size not in _BUILT:
        cells = _cells(size)
        _BUILT[size] = (cells, _vectors(cells, SIZES[size][1]))
    return _BUILT[size]


def _pg_index(size):
    from stengine.errors import VectorIndexError
    from stengine.learn.vectors import VectorIndex

    key = ("pg", size)
    if key not in _BUILT:
        cells, vec = _data(size)
        try:  # the data are deterministic: an index left by an earlier run is reused
            ix = VectorIndex.open(f"bench_{size}", dsn=_server().dsn)
            if len(ix) != cells.size or ix.dim != vec.shape[1]:
                raise VectorIndexError("stale")
        except VectorIndexError:
            ix = VectorIndex.build(cells, vec, backend="pgvector", dsn=_server().dsn,
                                   name=f"bench_{size}")
        _BUILT[key] = ix
    return _BUILT[key]


@benchmark("vectorgeo", "vector_build", sizes=list(SIZES))
def vector_build(size):
    from stengine.learn.vectors import VectorIndex

    cells, vec = _data(size)
    dsn = _server().dsn
    out = {}

    def pg():
        ix = VectorIndex.build(cells, vec, backend="pgvector", dsn=dsn, name=f"bench_{size}")
        out.update(ix.build_seconds)
        old = _BUILT.pop(("pg", size), None)
        if old is not None:
            old.close()
        _BUILT[("pg", size)] = ix

    yield Case("stengine", pg, items=cells.size, warmup=False, repeat=1,
               note=f"pgvector HNSW, D={vec.shape[1]}, embedded PostgreSQL",
               info=lambda: {k: round(v, 2) for k, v in out.items()})
    yield Case("numpy exact", lambda: VectorIndex.build(cells, vec), items=cells.size,
               note="exact backend (normalise rows)")


def _region(name):
    import shapely

    if name == "none":
        return None
    if name == "bbox":
        return (-10.0, 35.0, 30.0, 60.0)
    from stengine.datasets import naturalearth_countries

    g = naturalearth_countries()
    country = {"polygon": "Brazil", "small": "France"}[name]
    geom = g.loc[g["name"] == country, "geometry"].iloc[0]
    return geom if name == "polygon" else shapely.intersection(geom, shapely.box(-6, 41, 10, 52))


@benchmark("vectorgeo", "vector_query", sizes=list(SIZES),
           params={"filter": ["none", "bbox", "polygon", "small"]})
def vector_query(size, filter):  # noqa: A002 - the runner passes params by name
    from stengine.learn.vectors import VectorIndex

    cells, vec = _data(size)
    within = _region(filter)
    exact = VectorIndex.build(cells, vec)
    pg = _pg_index(size)
    rng = np.random.default_rng(11)
    queries = cells[rng.choice(cells.size, N_QUERIES[size], replace=False)].tolist()
    truth = [set(exact.similar(int(c), k=10, within=within).cell.tolist()) for c in queries]
    stats: dict[str, dict] = {}

    def run(ix, impl):
        lat, hits = [], 0
        for c, t in zip(queries, truth, strict=True):
            t0 = time.perf_counter()
            r = ix.similar(int(c), k=10, within=within)
            lat.append(time.perf_counter() - t0)
            hits += len(t & set(r.cell.tolist()))
        ms = np.asarray(lat) * 1e3
        stats[impl] = {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                       "p99_ms": round(float(np.percentile(ms, 99)), 2),
                       "recall10": round(hits / sum(map(len, truth)), 4)}

    n = len(queries)
    note = f"{n} queries k=10, filter={filter}"
    yield Case("stengine", lambda: run(pg, "pg"), items=n, repeat=1,
               note="pgvector HNSW; " + note, info=lambda: stats["pg"])
    yield Case("numpy exact", lambda: run(exact, "exact"), items=n, repeat=1,
               note="exact backend; " + note, info=lambda: stats["exact"])

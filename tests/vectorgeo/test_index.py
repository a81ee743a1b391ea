"""VectorIndex: the exact backend against a brute-force NumPy reference, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.errors import IndexRangeError, SourceConnectionError, VectorIndexError
from stengine.index import h3 as sth3
from stengine.learn.vectors import VectorIndex


def brute(cells, vectors, q, k, metric, allowed=None, skip=None):
    """Reference: float64 distances to every row, sorted by (distance, cell id)."""
    o = np.argsort(cells)
    c, x = cells[o], vectors[o].astype(np.float64)
    q = np.asarray(q, np.float64)
    if metric == "cosine":
        d = 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    else:
        d = np.sqrt(((x - q) ** 2).sum(axis=1))
    keep = np.ones(c.size, bool)
    if allowed is not None:
        keep &= np.isin(c, allowed)
    if skip is not None:
        keep &= c != skip
    c, d = c[keep], d[keep]
    s = np.lexsort((c, d))[:k]
    return c[s], d[s]


@pytest.fixture(scope="module")
def res2():
    cells = sth3.all_cells(2)
    rng = np.random.default_rng(1)
    return cells, rng.normal(size=(cells.size, 16)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 10, 57])
def test_exact_equals_brute_force(res2, seed, k):
    cells, vec = res2
    ix = VectorIndex.build(cells, vec)
    q = np.random.default_rng(seed).normal(size=16)
    got = ix.similar(q, k=k)
    rc, rd = brute(cells, vec, q, k, "cosine")
    np.testing.assert_allclose(got.distance, rd, atol=2e-6)
    # cells agree wherever the reference's neighbours are not within float32 noise
    gap = np.diff(np.r_[rd, np.inf]) > 1e-5
    sure = gap & np.r_[True, gap[:-1]]
    assert (got.cell.to_numpy()[sure] == rc[sure]).all()
    lon, lat = sth3.cell_to_lonlat(got.cell.to_numpy())
    np.testing.assert_allclose(got.lon, lon)
    np.testing.assert_allclose(got.lat, lat)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(2, 5))
def test_exact_ties_by_cell_id(seed, k, levels):
    """Integer vectors with many duplicates: ties are broken by cell id, exactly."""
    rng = np.random.default_rng(seed)
    cells = sth3.all_cells(1)
    vec = rng.integers(-1, levels, size=(cells.size, 3)).astype(np.float32)
    perm = rng.permutation(cells.size)           # build from an unsorted order
    ix = VectorIndex.build(cells[perm], vec[perm], metric="l2")
    q = rng.integers(-1, levels, size=3).astype(np.float32)
    got = ix.similar(q, k=k)
    rc, rd = brute(cells[perm], vec[perm], q, k, "l2")
    assert got.cell.tolist() == rc.tolist()
    np.testing.assert_allclose(got.distance, rd, rtol=1e-6, atol=1e-6)


def test_exact_query_forms_and_self(res2):
    cells, vec = res2
    ix = VectorIndex.build(cells, vec)
    c = int(cells[100])
    by_cell = ix.similar(c, k=5)
    assert c not in by_cell.cell.tolist()
    rc, _ = brute(cells, vec, vec[100], 5, "cosine", skip=c)
    assert by_cell.cell.tolist() == rc.tolist()
    with_self = ix.similar(c, k=5, exclude_self=False)
    assert with_self.cell.iloc[0] == c and with_self.distance.iloc[0] < 1e-6
    lon, lat = sth3.cell_to_lonlat(np.array([c], np.uint64))
    by_loc = ix.similar((float(lon[0]), float(lat[0])), k=5)
    assert by_loc.cell.tolist() == by_cell.cell.tolist()


@pytest.mark.parametrize("within", [
    (-20.0, 30.0, 40.0, 60.0),
    shapely.Polygon([(60, 10), (140, 5), (100, 60)]),
    shapely.MultiPolygon([shapely.box(-80, -40, -50, 0), shapely.box(10, -30, 30, -10)]),
])
def test_exact_within_region(res2, within):
    cells, vec = res2
    ix = VectorIndex.build(cells, vec)
    geom = shapely.box(*within) if isinstance(within, tuple) else within
    lon, lat = sth3.cell_to_lonlat(cells)
    allowed = cells[shapely.intersects_xy(geom, lon, lat)]   # no parents: every centre
    q = np.random.default_rng(5).normal(size=16)
    got = ix.similar(q, k=20, within=within)
    rc, rd = brute(cells, vec, q, 20, "cosine", allowed=allowed)
    assert got.cell.tolist() == rc.tolist()
    np.testing.assert_allclose(got.distance, rd, atol=2e-6)
    assert shapely.intersects_xy(geom, got.lon, got.lat).all()


def test_exact_within_cells(res2):
    cells, vec = res2
    ix = VectorIndex.build(cells, vec)
    parents = {int(sth3.cell_to_parent(cells[i:i + 1], 0)[0]) for i in (0, 2000, 4000)}
    some = set(cells[::7].tolist())
    q = np.random.default_rng(6).normal(size=16)
    for within, allowed in [
        (parents, cells[np.isin(sth3.cell_to_parent(cells, 0), list(parents))]),
        (some, cells[::7]),
        (np.array(sorted(parents | some), np.uint64), None),
    ]:
        if allowed is None:
            allowed = np.union1d(cells[np.isin(sth3.cell_to_parent(cells, 0), list(parents))],
                                 cells[::7])
        got = ix.similar(q, k=15, within=within)
        rc, _ = brute(cells, vec, q, 15, "cosine", allowed=allowed)
        assert got.cell.tolist() == rc.tolist()


def test_from_parquet_roundtrip(res2, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells, vec = res2
    lon, lat = sth3.cell_to_lonlat(cells)
    p1 = sth3.cell_to_parent(cells, 1)
    t = pa.table({"cell": pa.array(cells, pa.uint64()), "parent_r1": pa.array(p1, pa.uint64()),
                  "lon": lon, "lat": lat,
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), 16),
                  "model_hash": ["abc"] * cells.size})
    folder = tmp_path / "emb"
    pq.write_to_dataset(t.drop(["parent_r1"]).append_column(
        "parent_r0", pa.array(sth3.cell_to_parent(cells, 0).astype(np.int64))),
        folder, partition_cols=["parent_r0"])
    ix = VectorIndex.from_parquet(folder)
    assert len(ix) == cells.size and ix.dim == 16 and ix.model_hash == "abc"
    assert sorted(ix.parents) == [0]
    q = vec[10]
    assert ix.similar(q, k=8).cell.tolist() == VectorIndex.build(cells, vec).similar(
        q, k=8).cell.tolist()


BAD = [
    (dict(query=int(sth3.all_cells(3)[5])), VectorIndexError, "resolution 3"),
    (dict(query=12345), VectorIndexError, "not a valid H3"),
    (dict(query=np.ones(5)), VectorIndexError, "length D = 16"),
    (dict(query=np.full(16, np.nan)), VectorIndexError, "finite"),
    (dict(query=(200.0, 10.0)), IndexRangeError, "lon, lat"),
    (dict(query=(10.0, 95.0)), IndexRangeError, "lon, lat"),
    (dict(query=np.ones(16), k=0), VectorIndexError, "k must"),
    (dict(query=np.ones(16), within=(10.0, 10.0, 10.0, 20.0)), VectorIndexError, "bbox"),
    (dict(query=np.ones(16), within=shapely.Polygon()), VectorIndexError, "empty"),
    (dict(query=np.ones(16), within=shapely.box(0.0, 0.0, 0.01, 0.01)), VectorIndexError,
     "no indexed cell"),
    (dict(query=np.ones(16), within=set()), VectorIndexError, "empty"),
    (dict(query=np.ones(16), within=shapely.Point(0, 0)), VectorIndexError, "Polygon"),
    (dict(query=np.ones(16), within="europe"), VectorIndexError, "within must"),
]


@pytest.mark.parametrize(("kw", "err", "match"), BAD)
def test_bad_input(res2, kw, err, match):
    cells, vec = res2
    ix = VectorIndex.build(cells, vec)
    with pytest.raises(err, match=match):
        ix.similar(**kw)


def test_unknown_cell():
    cells = sth3.all_cells(2)[:100]
    ix = VectorIndex.build(cells, np.ones((100, 4)))
    with pytest.raises(VectorIndexError, match="not in the index"):
        ix.similar(int(sth3.all_cells(2)[500]))
    with pytest.raises(VectorIndexError, match="not in the index"):
        ix.similar((-150.0, -50.0))


@pytest.mark.parametrize(("kw", "match"), [
    (dict(vectors=np.ones((3, 4))), "vectors must be"),
    (dict(cells=np.array([1, 2, 3, 4])), "valid H3"),
    (dict(backend="faiss"), "backend must"),
    (dict(metric="dot"), "metric must"),
])
def test_bad_build(kw, match):
    args = dict(cells=sth3.all_cells(0)[:4], vectors=np.ones((4, 3)))
    args.update(kw)
    with pytest.raises(VectorIndexError, match=match):
        VectorIndex.build(args.pop("cells"), args.pop("vectors"), **args)


def test_unreachable_dsn_names_it_without_password():
    pytest.importorskip("psycopg")
    with pytest.raises(SourceConnectionError, match="dsn") as e:
        VectorIndex.build(sth3.all_cells(0)[:4], np.ones((4, 3)), backend="pgvector",
                          dsn="postgresql://bob:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "s3cret" not in str(e.value) and e.value.field == "dsn"

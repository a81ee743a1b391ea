"""The VectorGeo pipeline at H3 res 2 on a real 2-worker Dask cluster and real rasters:
the stencil against the h3 package and the land mask read directly, the GeoParquet
layout, resume after a failed run, the quality metric against a brute-force reference,
and triplet training with a checkpoint resume."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from stengine.datasets import land_mask  # noqa: E402
from stengine.learn import vectorgeo as vg  # noqa: E402

RES = 2


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as lc, Client(lc) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


@pytest.fixture(scope="module")
def result(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("vg")
    return vg.run(RES, out, epochs=2, client=client, progress=False)


def _h3_land_cells(res):
    """Independent: every h3 cell of ``res``, its centre looked up in the 30″ mask."""
    cells = [c for r0 in h3.get_res0_cells() for c in h3.cell_to_children(r0, res)]
    ll = np.array([h3.cell_to_latlng(c) for c in cells])
    m = np.asarray(land_mask().values)
    r = np.clip(np.floor((90.0 - ll[:, 0]) * 120).astype(int), 0, m.shape[0] - 1)
    c = np.clip(np.floor((ll[:, 1] + 180.0) * 120).astype(int), 0, m.shape[1] - 1)
    return np.sort(np.array([h3.str_to_int(x) for x, k in zip(cells, m[r, c], strict=True)
                             if k],
                            np.uint64))


def test_land_stencil_equals_h3_land_cells():
    got = np.asarray(vg.land_stencil(RES)["cell_ids"].values, np.uint64)
    want = _h3_land_cells(RES)
    assert got.dtype == np.uint64 and np.all(np.diff(got.astype(np.int64)) > 0)
    np.testing.assert_array_equal(got, want)


def test_channels_are_the_datasets():
    from stengine.datasets import altitude, koppen_geiger_12th, linke_turbidity

    ch = vg.channels()
    assert list(ch["band"].values) == vg.CHANNELS and ch.shape == (18, 2160, 4320)
    win = dict(y=slice(500, 540), x=slice(2000, 2040))
    got = np.asarray(ch.isel(**win).values)
    kg = np.asarray(koppen_geiger_12th().isel(**win).values)
    for c in range(5):
        np.testing.assert_array_equal(got[c], (kg == c + 1).astype("f4"))
    np.testing.assert_array_equal(got[5], np.asarray(altitude().isel(**win).values))
    np.testing.assert_array_equal(got[6:], np.asarray(linke_turbidity().isel(**win).values))


def test_embeddings_layout(result):
    want = _h3_land_cells(RES)
    path = result["embeddings"]
    files = sorted(p for p in __import__("pathlib").Path(path).rglob("*.parquet"))
    assert len(files) == result["partitions"] > 1
    t = pds.dataset(path, format="parquet").to_table()
    s = t.schema
    assert s.field("cell").type == "uint64"
    assert s.field("lon").type == "double" and s.field("lat").type == "double"
    emb = s.field("embedding").type
    assert emb.list_size == 16 and emb.value_type == "float"
    assert s.field("model_hash").type == "string"
    assert {f"parent_r{k}" for k in (0, 1)} <= set(s.names)
    ids = np.sort(t["cell"].to_numpy())
    np.testing.assert_array_equal(ids, want)  # one row per land cell, no duplicates
    assert set(t["model_hash"].to_pylist()) == {result["model_hash"]}
    lat, lon = np.array([h3.cell_to_latlng(h3.int_to_str(int(c)))
                         for c in t["cell"].to_numpy()]).T
    np.testing.assert_allclose(t["lon"].to_numpy(), lon, atol=1e-9)
    np.testing.assert_allclose(t["lat"].to_numpy(), lat, atol=1e-9)
    for f in files:  # each file holds exactly the cells of its directory's parent
        parent = int(f.parent.name.split("=")[1], 16)
        ft = pq.read_table(f)
        cells = [h3.int_to_str(int(c)) for c in ft["cell"].to_numpy()]
        assert {h3.str_to_int(h3.cell_to_parent(c, 0)) for c in cells} == {parent}
        assert set(ft["parent_r0"].to_numpy().tolist()) == {parent}
        assert ft.schema.metadata and b"geo" in ft.schema.metadata
    import geopandas as gpd

    g = gpd.read_parquet(files[0])
    assert g.crs.to_epsg() == 4326
    np.testing.assert_allclose(g.geometry.x, g["lon"])


def test_index_loaded(result):
    ix = result["index"]
    if ix is None:
        pytest.skip("stengine.learn.vectors is not available")
    assert len(ix.cells) == result["cells"]


def test_resume_after_failure(result, client, tmp_path):
    from stengine.learn.registry import load

    art = load(result["artefact"])
    cells = vg.land_stencil(RES)
    ch = vg.channels()
    out = tmp_path / "emb"
    with pytest.raises(RuntimeError, match="simulated failure"):
        vg.embed_cells(art, cells, ch, out, client=client, progress=False, _fail_after=20)
    done = list(out.rglob("*.parquet"))
    assert 0 < len(done) < result["partitions"]
    assert all(not p.name.startswith(".") for p in done)  # no half file under a real name
    before = {p: p.stat().st_mtime_ns for p in done}
    r = vg.embed_cells(art, cells, ch, out, client=client, progress=False)
    assert r["skipped"] > 0 and r["written"] > 0 and r["cells"] == result["cells"]
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())  # not rewritten
    assert not [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    ids, vec, _, _ = vg.read_embeddings(out)
    ids0, vec0, _, _ = vg.read_embeddings(result["embeddings"])
    np.testing.assert_array_equal(ids, ids0)
    np.testing.assert_allclose(vec, vec0, atol=1e-5)


def _agreement_reference(x, cls, k):
    """Slow and obvious: full sort of cosine similarities per row."""
    keep = cls > 0
    x, cls = x[keep], cls[keep]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = 0
    for i in range(len(x)):
        s = x @ x[i]
        s[i] = -np.inf
        nb = np.argsort(-s, kind="stable")[:k]
        hits += int((cls[nb] == cls[i]).sum())
    p = np.bincount(cls)[1:] / len(cls)
    return hits / (len(x) * k), float((p[p > 0] ** 2).sum())


def test_agreement_equals_brute_force():
    rng = np.random.default_rng(1)
    cls = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 8)).astype("f4") + cls[:, None] * 0.5
    got = vg.neighbour_class_agreement(x, cls, k=10, block=64)
    agree, chance = _agreement_reference(x, cls, 10)
    assert got["agreement"] == pytest.approx(agree)
    assert got["chance"] == pytest.approx(chance)
    with pytest.raises(ValueError, match="k must be"):
        vg.neighbour_class_agreement(x, cls, k=0)


def test_quality_beats_chance(result):
    for name in ("untrained", "trained"):
        q = result[f"quality_{name}"]
        assert q["cells"] > 1000 and q["agreement"] > 2 * q["chance"], (name, q)
    assert result["loss"][-1] < result["loss"][0]


def test_fit_triplets_checkpoint_resume(client, tmp_path):
    ch = vg.channels()
    smp = vg.triplet_sampler(vg.land_stencil(1), ch, patch=8, seed=3)
    kw = dict(dim=8, width=8, blocks=1, batch_size=32, seed=3, client=client, progress=False)
    full = vg.train(smp, epochs=2, checkpoint_dir=tmp_path / "a", **kw)
    part = vg.train(smp, epochs=1, checkpoint_dir=tmp_path / "b", **kw)
    assert len(part.history) == 1 and part.checkpoint
    resumed = vg.train(smp, epochs=2, checkpoint_dir=tmp_path / "b", **kw)
    assert [h["epoch"] for h in resumed.history][-1] == full.history[-1]["epoch"]
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-5)
    import torch

    a, b = full.artefact.model.state_dict(), resumed.artefact.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="res must be an H3 resolution"):
        vg.land_stencil(16)
    with pytest.raises(ValueError, match="chunk must be an integer"):
        vg.channels(chunk=3)
    with pytest.raises(ValueError, match="bands must be a non-empty subset"):
        vg.run(1, tmp_path, bands=["nope"], client=object())

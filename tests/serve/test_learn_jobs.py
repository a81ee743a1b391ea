"""``train`` jobs: real fit on a tiny GeoTIFF via the service, compared with fit by hand."""
import numpy as np
import pytest

from .conftest import wait_job

torch = pytest.importorskip("torch")


@pytest.fixture
def rasters(tmp_path):
    import rasterio
    from rasterio.transform import from_origin
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 16, 16)).astype("float32")
    lab = (img[0] > 0).astype("uint8")
    paths = {}
    for name, arr in (("img", img), ("lab", lab[None])):
        p = tmp_path / f"{name}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=16, height=16, count=arr.shape[0],
                           dtype=str(arr.dtype), crs="EPSG:4326",
                           transform=from_origin(10, 50, 0.01, 0.01)) as f:
            f.write(arr)
        paths[name] = p
    return paths


def _body(**kw):
    return {"kind": "train", "source": "img", "labels": "lab",
            "model": {"builder": "patch_unet", "n_classes": 2, "base": 4, "depth": 1},
            "epochs": 2, "batch_size": 4, "patch": 4, "seed": 3, **kw}


def test_train_job_registers_a_model_that_predicts(server, rasters):
    from stengine.io.sources import SourceSpec, open_source
    from stengine.learn import fit
    from stengine.serve._learn_jobs import fit_args
    c = server.client
    for name, p in rasters.items():
        r = c.post("/sources", json={"name": name, "kind": "geotiff", "location": str(p)})
        assert r.status_code == 201, r.text
    r = c.post("/jobs", json=_body(register_as="seg"))
    assert r.status_code == 202, r.text
    j = wait_job(c, r.json()["id"], timeout=60)
    assert j["status"] == "succeeded", j
    assert j["progress"] == 100.0 and j["metrics"]["epochs_done"] == 2
    loss = j["metrics"]["loss"]
    assert len(loss) == 2 and all(np.isfinite(loss))
    assert j["result"]["model"] == {"name": "seg", "version": 1}
    assert "epoch 2/2 loss" in c.get(f"/jobs/{j['id']}/log").text
    # the same fit by hand, same seed and arguments: the same losses
    da = open_source(SourceSpec.from_dict({"kind": "geotiff",
                                           "location": str(rasters["img"])}))
    lab = open_source(SourceSpec.from_dict({"kind": "geotiff",
                                            "location": str(rasters["lab"])}))
    spec = {**_body(), "lr": 1e-3, "resources": {}}
    model, sampler, kw = fit_args(spec, da, lab)
    want = fit(model, sampler, **kw, client=server.app.state.client).result(timeout=60)
    np.testing.assert_allclose(loss, [h["loss"] for h in want.history], rtol=1e-5)
    # the registered version predicts like the hand-trained artefact
    m = c.get("/models/seg").json()
    assert m["latest"] == 1 and m["versions"][0]["n_bands"] == 2
    x = np.random.default_rng(1).normal(size=(1, 2, 4, 4)).astype("float32")
    r = c.post("/models/seg/predict", json={"input": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["output"]), want.artefact.run(x),
                               rtol=1e-4, atol=1e-5)


def test_train_job_bad_fields(server, rasters):
    c = server.client
    for name, p in rasters.items():
        c.post("/sources", json={"name": name, "kind": "geotiff", "location": str(p)})
    for body, field in [
            (_body(model={"builder": "nope"}), "model.builder"),
            (_body(model={"builder": "patch_unet", "n_classes": 2, "in_channels": 3}),
             "model.in_channels"),
            (_body(epochs=0), "epochs"),
            (_body(batch_size=-1), "batch_size"),
            (_body(patch=64), "patch"),
            (_body(labels=None), "labels"),
            (_body(labels="img"), "labels"),
            (_body(labels="none"), "labels"),
            (_body(source="none"), "source"),
            (_body(register_as="a b"), "register_as"),
            (_body(extra=1), "extra"),
            (_body(model="patch_unet"), "model")]:
        r = c.post("/jobs", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (field, r.text)
    assert c.get("/jobs").json() == []


def test_embed_job_matches_learn_embed(server, rasters, tmp_path):
    import zarr

    from stengine.io.sources import SourceSpec, open_source
    from stengine.learn import GridSampler, build, embed
    from stengine.learn.registry import ModelSpec, save_artefact
    from stengine.serve._learn_jobs import source_cells
    c = server.client
    for name, p in rasters.items():
        c.post("/sources", json={"name": name, "kind": "geotiff", "location": str(p)})
    da = open_source(SourceSpec.from_dict({"kind": "geotiff",
                                           "location": str(rasters["img"])}))
    smp = GridSampler(da, 4)
    spec = ModelSpec.for_sampler("triplet_cnn", smp, params={"dim": 3, "width": 4,
                                                             "blocks": 1})
    torch.manual_seed(0)
    art = save_artefact(build("triplet_cnn", **spec.params), spec, tmp_path / "emb")
    seg = ModelSpec.for_sampler("patch_unet", smp, params={"n_classes": 2, "base": 4,
                                                          "depth": 1}, output="classes",
                                n_outputs=2)
    unet = save_artefact(build("patch_unet", **seg.params), seg, tmp_path / "unet")
    assert c.post("/models/emb/versions", json={"path": str(art.path)}).status_code == 201
    assert c.post("/models/unet/versions", json={"path": str(unet.path)}).status_code == 201
    r = c.post("/jobs", json={"kind": "embed", "source": "img", "model": "emb", "level": 7})
    assert r.status_code == 202, r.text
    j = wait_job(c, r.json()["id"], timeout=60)
    assert j["status"] == "succeeded", j
    g = zarr.open_group(j["result"]["path"], mode="r")
    want = embed(art, source_cells(da, 7), da, client=server.app.state.client,
                 progress=False)
    assert want.shape[0] > 0 and want.shape[1] == 3
    np.testing.assert_array_equal(g["cell_ids"][...], want["cell_ids"].values)
    np.testing.assert_allclose(g["embedding"][...], want.values, rtol=1e-6)
    for body, field in [
            ({"kind": "embed", "source": "img", "model": "unet"}, "model"),
            ({"kind": "embed", "source": "img", "model": "nope"}, "model"),
            ({"kind": "embed", "source": "lab", "model": "emb"}, "source"),
            ({"kind": "embed", "source": "img", "model": "emb", "level": 99}, "level"),
            ({"kind": "embed", "source": "img", "model": "emb", "version": 4}, "version")]:
        r = c.post("/jobs", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (field, r.text)


def test_worker_death_fails_the_job_with_the_reason(tmp_path, monkeypatch, tif):
    import httpx

    from stengine.serve import _jobs, create_app

    from .conftest import TOKEN, Server

    def die(block):  # a local function: pickled by value into the worker process
        import os

        from distributed import get_worker
        try:
            get_worker()
        except ValueError:  # dask trying it on an empty array in the service's process
            return block
        os._exit(3)

    monkeypatch.setattr(_jobs, "apply_op",
                        lambda da, op: da.copy(data=da.data.map_blocks(die, dtype=da.dtype)))
    app = create_app(tmp_path / "state", token=TOKEN,
                     cluster_kwargs={"processes": True, "n_workers": 1,
                                     "threads_per_worker": 1})
    with Server(app) as s:
        c = httpx.Client(base_url=s.url, timeout=30,
                         headers={"Authorization": f"Bearer {TOKEN}"})
        c.post("/sources", json={"name": "t", "kind": "geotiff", "location": str(tif[0])})
        r = c.post("/jobs", json={"kind": "ops", "source": "t",
                                  "ops": [{"op": "focal_mean", "window": 3}]})
        assert r.status_code == 202, r.text
        j = wait_job(c, r.json()["id"], timeout=60)
        assert j["status"] == "failed", j
        assert "KilledWorker" in j["error"] and "worker" in j["error"], j["error"]
        c.close()

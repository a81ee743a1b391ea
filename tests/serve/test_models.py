"""``/models``: register real stengine.learn artefacts / ONNX, versions, aliases, predict."""
import io
import tarfile

import httpx
import numpy as np
import pytest

from .conftest import TOKEN, Server

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _artefact(path, c=3, seed=0):
    from stengine.learn.registry import ModelSpec, save_artefact
    torch.manual_seed(seed)
    spec = ModelSpec(name="patch_unet", params=dict(in_channels=c, n_classes=2),
                     channels=[f"b{i}" for i in range(c)], patch_size=8, output="classes",
                     n_outputs=2, mean=list(np.arange(c) + 1.0), std=list(np.arange(c) + 2.0))
    return save_artefact(spec.build(), spec, path)


def _tar(folder) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(str(folder), arcname="model")
    return buf.getvalue()


@pytest.fixture
def arts(tmp_path):
    from stengine.learn.registry import export_onnx
    a = _artefact(tmp_path / "unet", seed=0)
    b = _artefact(tmp_path / "unet2", seed=1)
    onnx = export_onnx(a, tmp_path / "unet.onnx")
    return a, b, onnx


def test_register_versions_aliases_predict(server, arts, tmp_path):
    c = server.client
    a, b, onnx = arts
    r = c.post("/models/unet/versions", files={"file": ("unet.tar.gz", _tar(a.path))})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["version"], v1["format"], v1["sha256"]) == (1, "artefact", a.sha256)
    assert v1["bands"] == ["b0", "b1", "b2"] and v1["dtype"] == "float32"
    assert v1["patch_size"] == 8
    r = c.post("/models/unet/versions", json={"path": str(b.path)})
    assert r.status_code == 201 and r.json()["version"] == 2, r.text
    with open(onnx, "rb") as f:
        r = c.post("/models/unet/versions", files={"file": ("unet.onnx", f.read())})
    assert r.status_code == 201 and r.json()["format"] == "onnx", r.text
    assert r.json()["version"] == 3
    stored = tmp_path / "state" / "models" / "unet"
    assert sorted(p.name for p in stored.iterdir()) == ["1", "2", "3"]  # no temp dirs left
    m = c.get("/models/unet").json()
    assert [v["version"] for v in m["versions"]] == [1, 2, 3] and m["latest"] == 3
    assert c.get("/models").json()[0]["versions"] == [1, 2, 3]

    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype("float32")
    x[0, 1, 2, 3] = np.nan  # NaN policy: the same on both sides
    xs = np.nan_to_num(x, nan=0.5)  # JSON has no NaN; send finite values

    def pred(**kw):
        r = c.post("/models/unet/predict", json={"input": xs.tolist(), **kw})
        assert r.status_code == 200, r.text
        return r.json()

    # default: latest (no production alias yet)
    p = pred()
    assert p["version"] == 3 and p["shape"] == [2, 2, 8, 8] and p["dtype"] == "float32"
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(np.array(p["output"]), sess.run(None, {"x": xs})[0],
                               rtol=1e-4, atol=1e-5)
    # production alias moved 1 -> 2
    assert c.put("/models/unet/aliases/production", json={"version": 1}).status_code == 200
    p1 = pred()
    assert p1["version"] == 1
    np.testing.assert_allclose(np.array(p1["output"]), a.run(xs), rtol=1e-5, atol=1e-6)
    r = c.put("/models/unet/aliases/production", json={"version": 2})
    assert r.json()["aliases"] == {"production": 2}
    p2 = pred()
    assert p2["version"] == 2
    np.testing.assert_allclose(np.array(p2["output"]), b.run(xs), rtol=1e-5, atol=1e-6)
    assert not np.allclose(p1["output"], p2["output"])  # really another model
    # one (bands, y, x) patch, by explicit version; by alias
    p = c.post("/models/unet/predict", json={"version": 1, "input": xs[1].tolist()}).json()
    np.testing.assert_allclose(np.array(p["output"]), a.run(xs[1:]), rtol=1e-5, atol=1e-6)
    assert pred(alias="production")["version"] == 2
    assert c.get("/models/unet/versions/2").json()["aliases"] == ["production"]

    # refuse to delete an aliased version; delete alias, then the version
    r = c.delete("/models/unet/versions/2")
    assert r.status_code == 409 and r.json()["field"] == "alias"
    assert "production" in r.json()["detail"]
    assert c.delete("/models/unet/versions/1").status_code == 204
    assert c.delete("/models/unet/aliases/production").status_code == 204
    assert c.delete("/models/unet/versions/2").status_code == 204
    assert c.get("/models/unet/versions/2").status_code == 404
    # numbers are never reused
    r = c.post("/models/unet/versions", json={"path": str(a.path)})
    assert r.json()["version"] == 4


def test_bad_models_name_field(server, arts, tmp_path):
    c = server.client
    a, _b, _onnx = arts
    # a tampered artefact (weights changed after saving): sha256 check fails
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("spec.json", "sha256"):
        (bad / f).write_bytes((tmp_path / "unet" / f).read_bytes())
    (bad / "weights.pt").write_bytes(b"not torch weights")
    r = c.post("/models/m/versions", json={"path": str(bad)})
    assert r.status_code == 422 and r.json()["field"] == "path", r.text
    assert "sha256" in r.json()["detail"]
    r = c.post("/models/m/versions", files={"file": ("bad.tar.gz", _tar(bad))})
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    r = c.post("/models/m/versions", files={"file": ("x.onnx", b"\x00garbage")})
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    r = c.post("/models/m/versions", files={"file": ("x.bin", b"plain bytes")})
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    r = c.post("/models/m/versions", json={"path": str(tmp_path / "nothing")})
    assert r.status_code == 422 and r.json()["field"] == "path", r.text
    assert c.get("/models").json() == []  # nothing half-registered
    assert not list((tmp_path / "state" / "models").glob("*/.tmp-*"))
    r = c.post("/models/a b/versions", json={"path": str(a.path)})
    assert r.status_code == 422 and r.json()["field"] == "name"

    assert c.post("/models/m/versions", json={"path": str(a.path)}).status_code == 201
    for inp, field, status in [
            (np.zeros((1, 4, 8, 8)).tolist(), "input", 422),   # 4 bands, model takes 3
            (np.zeros((3, 8)).tolist(), "input", 422),
            ([["a", "b"]], "input", 422),
            ([[[1.0], [2.0, 3.0]]], "input", 422),
            (np.zeros((1, 3, 1200, 1200)).tolist(), "input", 413)]:
        r = c.post("/models/m/predict", json={"input": inp})
        assert r.status_code == status and r.json()["field"] == field, r.text[:300]
    r = c.post("/models/m/predict", json={"input": np.zeros((1, 4, 8, 8)).tolist()})
    assert "3 band(s)" in r.json()["detail"] and "float32" in r.json()["detail"]
    assert c.post("/models/m/predict", json={"version": 9, "input": []}).status_code == 404
    r = c.post("/models/m/predict", json={"alias": "nope", "input": []})
    assert r.status_code == 422 and r.json()["field"] == "alias"
    assert c.get("/models/zz").status_code == 404
    r = c.put("/models/m/aliases/production", json={"version": 7})
    assert r.status_code == 404 and r.json()["field"] == "version"
    for m, url in [("GET", "/models"), ("POST", "/models/m/predict")]:
        assert httpx.request(m, server.url + url).status_code == 401


def test_models_survive_restart(tmp_path, arts):
    from stengine.serve import create_app
    a, b, _onnx = arts
    h = {"Authorization": f"Bearer {TOKEN}"}
    with Server(create_app(tmp_path / "state", token=TOKEN)) as s:
        c = httpx.Client(base_url=s.url, headers=h, timeout=30)
        for art in (a, b):
            assert c.post("/models/u/versions", json={"path": art.path}).status_code == 201
        c.put("/models/u/aliases/production", json={"version": 1})
        c.put("/models/u/aliases/staging", json={"version": 2})
        c.close()
    left = tmp_path / "state" / "models" / "u" / ".tmp-dead"  # a killed upload
    (left / "artefact").mkdir(parents=True)
    with Server(create_app(tmp_path / "state", token=TOKEN)) as s:
        assert not left.exists()
        c = httpx.Client(base_url=s.url, headers=h, timeout=30)
        m = c.get("/models/u").json()
        assert [v["version"] for v in m["versions"]] == [1, 2]
        assert m["aliases"] == {"production": 1, "staging": 2}
        x = np.ones((1, 3, 8, 8), "float32")
        p = c.post("/models/u/predict", json={"input": x.tolist()}).json()
        np.testing.assert_allclose(np.array(p["output"]), a.run(x), rtol=1e-5, atol=1e-6)
        assert c.post("/models/u/versions", json={"path": a.path}).json()["version"] == 3
        c.close()


def test_predict_job_matches_learn_predict(server, arts, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from stengine.io.sources import SourceSpec, open_source
    from stengine.learn import predict

    from .conftest import wait_job
    c = server.client
    a, _b, _onnx = arts
    rng = np.random.default_rng(1)
    paths = {}
    for n in (3, 2):
        p = tmp_path / f"img{n}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=40, height=32, count=n,
                           dtype="float32", crs="EPSG:4326",
                           transform=from_origin(10, 50, 0.01, 0.01)) as f:
            f.write(rng.normal(size=(n, 32, 40)).astype("float32"))
        paths[n] = p
        c.post("/sources", json={"name": f"img{n}", "kind": "geotiff", "location": str(p)})
    c.post("/models/unet/versions", json={"path": a.path})
    c.put("/models/unet/aliases/production", json={"version": 1})
    r = c.post("/jobs", json={"kind": "predict", "source": "img3", "model": "unet"})
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["version"] == 1
    j = wait_job(c, r.json()["id"], timeout=60)
    assert j["status"] == "succeeded", j
    import zarr
    got = zarr.open_array(j["result"]["path"], mode="r")[...]
    da = open_source(SourceSpec.from_dict({"kind": "geotiff", "location": str(paths[3])}))
    want = predict(a, da, match="position", progress=False).values
    np.testing.assert_array_equal(got, want)
    assert got.shape == (32, 40) and got.dtype == np.int16
    r = c.post("/jobs", json={"kind": "predict", "source": "img3", "model": "unet",
                              "version": 1, "output": "raw"})
    j = wait_job(c, r.json()["id"], timeout=60)
    assert j["status"] == "succeeded", j
    got = zarr.open_array(j["result"]["path"], mode="r")[...]
    want = predict(a, da, match="position", output="raw", progress=False).values
    assert got.shape == (2, 32, 40) and np.std(got) > 0  # real outputs, not a constant
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for body, field in [
            ({"kind": "predict", "source": "img2", "model": "unet"}, "source"),
            ({"kind": "predict", "source": "img3", "model": "nope"}, "model"),
            ({"kind": "predict", "source": "img3", "model": "unet", "version": 5}, "version"),
            ({"kind": "predict", "source": "img3", "model": "unet", "ops": []}, "ops")]:
        r = c.post("/jobs", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert "2 band(s)" in c.post("/jobs", json={"kind": "predict", "source": "img2",
                                               "model": "unet"}).json()["detail"]

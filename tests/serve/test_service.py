"""The service over real uvicorn + httpx + a real (in-process) Dask cluster."""
import json
import re

import httpx
import numpy as np
import pytest

from .conftest import TOKEN, wait_job


def test_healthz_and_sources_roundtrip(server, tif):
    c, (p, _arr) = server.client, tif
    assert httpx.get(server.url + "/healthz").json() == {"ok": True}
    r = c.post("/sources", json={"name": "cls", "kind": "geotiff", "location": str(p)})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "geotiff"
    assert [s["name"] for s in c.get("/sources").json()] == ["cls"]
    assert c.get("/sources/cls").json()["location"] == str(p)
    assert c.post("/sources/cls/test").json()["ok"] is True
    pv = c.get("/sources/cls/preview").json()
    assert pv["shape"][-2:] == [64, 96]
    png = c.get("/sources/cls/quicklook.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.post("/sources", json={"name": "cls", "kind": "geotiff",
                                    "location": str(p)}).json()["field"] == "name"
    assert c.delete("/sources/cls").status_code == 204
    r = c.get("/sources/cls")
    assert r.status_code == 404 and r.json()["field"] == "name"


def _routes(routes, prefix=""):
    """Routes with their prefixes (FastAPI >= 0.16x keeps included routers lazily)."""
    for r in routes:
        sub = getattr(r, "original_router", None)
        if sub is not None:
            yield from _routes(sub.routes, prefix + r.include_context.prefix)
        else:
            yield r, prefix


def test_every_route_refuses_missing_and_wrong_tokens(server):
    paths = set()
    for route, prefix in _routes(server.app.routes):
        path = getattr(route, "path", None)
        path = None if path is None else prefix + path
        if path is None or path in ("/healthz", "/login"):
            continue
        for m in sorted(getattr(route, "methods", None) or {"GET"}):
            if m == "HEAD":
                continue
            url = re.sub(r"\{[^}]+\}", "x1", path)
            paths.add((m, url))
    assert len(paths) > 15  # sources, jobs, cluster, UI, tiles, similar
    for m, url in sorted(paths):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "stengine_token=no"}):
            r = httpx.request(m, server.url + url, headers=headers, timeout=10)
            assert r.status_code == 401, (m, url, headers, r.status_code)
            assert r.json()["field"] == "authorization"
    # the cookie works, and the sign-in form sets it HttpOnly + SameSite=Strict
    r = httpx.post(server.url + "/login", data={"token": "bad"})
    assert r.status_code == 401
    r = httpx.post(server.url + "/login", data={"token": TOKEN})
    assert r.status_code == 303
    sc = r.headers["set-cookie"].lower()
    assert "httponly" in sc and "samesite=strict" in sc
    assert httpx.get(server.url + "/sources", cookies={"stengine_token": TOKEN}).json() == []
    assert httpx.get(server.url + "/", headers={"Accept": "text/html"}).status_code == 303


def test_password_never_leaks(server, tmp_path, caplog, capsys):
    pw = "Sup3r-S3cret-pw-4242"
    c = server.client
    body = {"name": "db", "kind": "sql", "location": f"postgresql://me:{pw}@127.0.0.1:1/x",
            "options": {"table": "obs", "password": pw, "connect_timeout": 1}}
    texts = []
    with caplog.at_level("DEBUG"):
        r = c.post("/sources", json=body)
        assert r.status_code == 201, r.text
        texts += [r.text, c.get("/sources").text, c.get("/sources/db").text]
        t = c.post("/sources/db/test")
        assert t.status_code in (422, 502) and t.json()["field"], t.text
        texts.append(t.text)
        texts.append(c.get("/sources/db/preview").text)
        j = c.post("/jobs", json={"kind": "ops", "source": "db",
                                  "ops": [{"op": "local_count", "value": 1}]})
        texts += [j.text]
        done = wait_job(c, j.json()["id"])
        assert done["status"] == "failed"
        texts += [json.dumps(done), c.get(f"/jobs/{done['id']}/log").text, c.get("/jobs").text]
    out = capsys.readouterr()
    texts += [caplog.text, out.out, out.err]
    for t in texts:
        assert pw not in t
    assert "***" in c.get("/sources/db").text
    raw = b"".join(f.read_bytes() for f in (tmp_path / "state").rglob("*") if f.is_file())
    assert pw.encode() not in raw
    assert (tmp_path / "state" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_job_matches_numpy(server, tif):
    c, (p, arr) = server.client, tif
    c.post("/sources", json={"name": "cls", "kind": "geotiff", "location": str(p),
                             "options": {"chunks": 32}})
    ops = [{"op": "local_reclassify", "mapping": {"1": 10, "2": 20}}]
    r = c.post("/jobs", json={"kind": "ops", "source": "cls", "ops": ops})
    assert r.status_code == 202, r.text
    j = wait_job(c, r.json()["id"])
    assert j["status"] == "succeeded", j
    assert j["progress"] == 100 and j["metrics"]["chunks"] == 6
    import zarr
    got = zarr.open_array(j["result"]["path"], mode="r")[...]
    want = np.where(arr == 1, 10, np.where(arr == 2, 20, arr))
    np.testing.assert_array_equal(np.squeeze(got), want)
    # histogram -> JSON
    r = c.post("/jobs", json={"kind": "ops", "source": "cls", "ops": [{"op": "local_histogram"}]})
    j = wait_job(c, r.json()["id"])
    assert j["status"] == "succeeded", j
    res = json.loads(open(j["result"]["path"]).read())
    counts = dict(zip(np.ravel(res["coords"][res["dims"][-1]]).tolist(),
                      np.ravel(res["values"]).tolist(), strict=True))
    counts = {k: v for k, v in counts.items() if v}
    assert counts == {k: int((arr == k).sum()) for k in range(4)}
    assert "succeeded" in c.get(f"/jobs/{j['id']}/log").text
    assert {x["id"] for x in c.get("/jobs").json()} >= {j["id"]}


@pytest.mark.parametrize("body, field", [
    ({"kind": "nope", "source": "cls", "ops": [{"op": "focal_mean", "window": 3}]}, "kind"),
    ({"kind": "ops", "source": "missing", "ops": [{"op": "focal_mean", "window": 3}]}, "source"),
    ({"kind": "ops", "source": "cls", "ops": [{"op": "explode"}]}, "ops[0].op"),
    ({"kind": "ops", "source": "cls", "ops": [{"op": "focal_mean"}]}, "ops[0].window"),
    ({"kind": "ops", "source": "cls", "ops": [{"op": "focal_mean", "window": 3, "x": 1}]},
     "ops[0].x"),
    ({"kind": "ops", "source": "cls", "ops": [{"op": "local_histogram"},
                                              {"op": "focal_mean", "window": 3}]}, "ops[0].op"),
    ({"kind": "ops", "source": "cls", "ops": [], "resources": {"GPU": 1}}, "ops"),
    ({"kind": "ops", "source": "cls", "ops": [{"op": "local_histogram"}], "resources": [1]},
     "resources"),
])
def test_bad_job_names_field(server, tif, body, field):
    server.client.post("/sources", json={"name": "cls", "kind": "geotiff",
                                         "location": str(tif[0])})
    r = server.client.post("/jobs", json=body)
    assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_bad_sources_name_field(server):
    c = server.client
    for body, field in [({"name": "a b", "kind": "geotiff", "location": "x.tif"}, "name"),
                        ({"name": "a", "kind": "nope", "location": "x.tif"}, "kind"),
                        ({"name": "a", "kind": "geotiff"}, "location"),
                        ({"name": "a", "kind": "geotiff", "location": "x.tif",
                          "options": {"bogus": 1}}, "bogus")]:
        r = c.post("/sources", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_cancel_and_cluster(server, tif):
    c = server.client
    c.post("/sources", json={"name": "cls", "kind": "geotiff", "location": str(tif[0])})
    # no worker has a GPU resource: the job waits until cancelled
    r = c.post("/jobs", json={"kind": "ops", "source": "cls", "resources": {"GPU": 1},
                              "ops": [{"op": "focal_mean", "window": 3}]})
    jid = r.json()["id"]
    wait_job(c, jid, until=("running",))
    j = c.post(f"/jobs/{jid}/cancel").json()
    assert j["status"] == "cancelled", j
    cl = c.get("/cluster").json()
    assert len(cl["workers"]) == 1 and cl["threads"] == 2 and "gpus" in cl

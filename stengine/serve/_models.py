"""``/models``: registered stengine.learn artefacts / ONNX files, numbered versions, aliases,
predict on the service's Dask cluster.

Storage: ``<state>/models/<name>/<version>/`` holds ``artefact/`` (weights.pt, spec.json,
sha256) or ``model.onnx``; rows in the SQLite tables ``models``, ``model_versions`` and
``model_aliases``. A version is written aside (``.tmp-*``), loaded to validate it, then
renamed into place; version numbers are never reused (MLflow style).
"""
from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ._jobs import check_model_job, check_resources

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ARTEFACT_FILES = ("weights.pt", "spec.json", "sha256")
MAX_VALUES = 4_000_000
DEFAULT_ALIAS = "production"


class ModelError(ValueError):
    """A bad model request: ``status``, ``field``."""

    def __init__(self, status, message, field):
        super().__init__(message)
        self.status, self.field = status, field


# --------------------------------------------------------------------------- storage

def _safe_extract(data: bytes, filename: str, dest: Path) -> Path:
    """Unpack an uploaded artefact (.onnx, or a tar/zip of the artefact folder) into
    ``dest``; the path to load."""
    if filename.endswith(".onnx"):
        p = dest / "model.onnx"
        p.write_bytes(data)
        return p
    out = dest / "artefact"
    out.mkdir()
    members: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for i in z.infolist():
                    if not i.is_dir():
                        members[i.filename] = z.read(i)
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                for m in t.getmembers():
                    if m.isfile():
                        members[m.name] = t.extractfile(m).read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise ModelError(422, f"not a model: {filename!r} is neither a .onnx file nor a "
                         f"tar/zip of an artefact folder ({', '.join(ARTEFACT_FILES)}): "
                         f"{e}", "file") from None
    for k, v in members.items():
        base = k.replace("\\", "/").rsplit("/", 1)[-1]
        if base in ARTEFACT_FILES:
            (out / base).write_bytes(v)
    missing = [f for f in ARTEFACT_FILES if not (out / f).exists()]
    if missing:
        raise ModelError(422, f"not a model: the archive {filename!r} lacks {missing} (an "
                         f"artefact folder holds {', '.join(ARTEFACT_FILES)})", "file")
    return out


def _copy_local(path: str, dest: Path) -> Path:
    p = Path(path)
    if p.is_file() and p.suffix == ".onnx":
        shutil.copyfile(p, dest / "model.onnx")
        return dest / "model.onnx"
    if p.is_dir():
        missing = [f for f in ARTEFACT_FILES if not (p / f).is_file()]
        if missing:
            raise ModelError(422, f"not a model: the folder {path!r} lacks {missing}", "path")
        out = dest / "artefact"
        out.mkdir()
        for f in ARTEFACT_FILES:
            shutil.copyfile(p / f, out / f)
        return out
    raise ModelError(422, f"no artefact folder or .onnx file at {path!r} on the server", "path")


def _validate(path: Path, field: str) -> dict:
    """Load the stored copy; the version's record fields (or ModelError naming ``field``)."""
    from ..learn.registry import load
    try:
        art = load(path)
    except Exception as e:  # hash mismatch, bad spec, unreadable ONNX, weights that don't fit
        raise ModelError(422, f"not a valid model: {type(e).__name__}: {e}", field) from None
    spec = art.spec
    if spec is None:
        raise ModelError(422, "the ONNX file has no stengine spec in its metadata (export it "
                         "with stengine.learn.export_onnx)", field)
    return {"format": "onnx" if path.suffix == ".onnx" else "artefact",
            "sha256": art.sha256, "architecture": spec.name, "bands": list(spec.channels),
            "n_bands": len(spec.channels), "dtype": spec.dtype, "patch_size": spec.patch_size,
            "output": spec.output, "n_outputs": spec.n_outputs}


class ModelStore:
    """Model rows in the service's SQLite (``state``) and files under ``<state>/models``."""

    def __init__(self, state):
        self.state = state
        self.root = state.dir / "models"
        self.root.mkdir(exist_ok=True)
        for t in self.root.glob("*/.tmp-*"):  # left by a service killed mid-upload
            shutil.rmtree(t, ignore_errors=True)

    def _one(self, sql, args=()):
        rows = self.state._all(sql, args)
        return rows[0] if rows else None

    def add_version(self, name: str, fill, field: str, origin: str) -> dict:
        """Write the files with ``fill(tmpdir) -> path``, validate, number, rename, record."""
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            rec = _validate(fill(tmp), field)
            st = self.state
            with st.lock:
                st.db.execute("BEGIN IMMEDIATE")
                try:
                    row = st.db.execute("SELECT last_version FROM models WHERE name=?",
                                        (name,)).fetchone()
                    v = (row[0] if row else 0) + 1
                    if row:
                        st.db.execute("UPDATE models SET last_version=? WHERE name=?", (v, name))
                    else:
                        st.db.execute("INSERT INTO models VALUES (?, ?, ?)",
                                      (name, time.time(), v))
                    final = d / str(v)
                    if final.exists():  # left by a crash between rename and commit
                        shutil.rmtree(final)
                    tmp.rename(final)
                    stored = final / ("model.onnx" if rec["format"] == "onnx" else "artefact")
                    st.db.execute("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)",
                                  (name, v, json.dumps(rec), str(stored), origin, time.time()))
                    st.db.execute("COMMIT")
                except BaseException:
                    st.db.execute("ROLLBACK")
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.version(name, v)

    @staticmethod
    def _ver(r) -> dict:
        return {"name": r["name"], "version": r["version"], **json.loads(r["record"]),
                "path": r["path"], "origin": r["origin"], "created": r["created"]}

    def version(self, name: str, v: int) -> dict | None:
        r = self._one("SELECT * FROM model_versions WHERE name=? AND version=?", (name, v))
        if r is None:
            return None
        out = self._ver(r)
        out["aliases"] = [a for a, x in self.aliases(name).items() if x == v]
        return out

    def aliases(self, name: str) -> dict:
        return {r["alias"]: r["version"] for r in self.state._all(
            "SELECT alias, version FROM model_aliases WHERE name=? ORDER BY alias", (name,))}

    def model(self, name: str) -> dict | None:
        m = self._one("SELECT * FROM models WHERE name=?", (name,))
        if m is None:
            return None
        vs = [self._ver(r) for r in self.state._all(
            "SELECT * FROM model_versions WHERE name=? ORDER BY version", (name,))]
        return {"name": name, "created": m["created"], "aliases": self.aliases(name),
                "latest": vs[-1]["version"] if vs else None, "versions": vs}

    def models(self) -> list[dict]:
        out = []
        for m in self.state._all("SELECT name FROM models ORDER BY name"):
            d = self.model(m["name"])
            d["versions"] = [v["version"] for v in d["versions"]]
            out.append(d)
        return out

    def set_alias(self, name: str, alias: str, v: int) -> None:
        self.state._tx("INSERT INTO model_aliases VALUES (?, ?, ?) ON CONFLICT(name, alias) "
                       "DO UPDATE SET version=excluded.version", (name, alias, v))

    def delete_alias(self, name: str, alias: str) -> bool:
        return self.state._tx("DELETE FROM model_aliases WHERE name=? AND alias=?",
                              (name, alias)) > 0

    def delete_version(self, name: str, v: int) -> None:
        self.state._tx("DELETE FROM model_versions WHERE name=? AND version=?", (name, v))
        shutil.rmtree(self.root / name / str(v), ignore_errors=True)

    def check_predict_job(self, spec: dict, src, api_error) -> dict:
        """A predict job's spec with the model version pinned (``version``, ``model_path``,
        ``sha256``), or ``api_error`` 422 naming ``model``/``version``/``alias``/``source``."""
        try:
            return _pin(self, spec, src)
        except ModelError as e:
            raise api_error(e.status, str(e), e.field) from None

    def resolve(self, name: str, version=None, alias=None) -> dict:
        """The version record a predict/job asks for (default: alias production, else
        the latest)."""
        m = self.model(name)
        if m is None:
            raise ModelError(404, f"no model named {name!r}", "name")
        if version is not None and alias is not None:
            raise ModelError(422, "give version or alias, not both", "version")
        if alias is not None:
            if alias not in m["aliases"]:
                raise ModelError(422, f"model {name!r} has no alias {alias!r}; aliases: "
                                 f"{sorted(m['aliases'])}", "alias")
            version = m["aliases"][alias]
        elif version is None:
            version = m["aliases"].get(DEFAULT_ALIAS, m["latest"])
            if version is None:
                raise ModelError(422, f"model {name!r} has no versions", "version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ModelError(422, f"version must be an integer; got {version!r}", "version")
        rec = self.version(name, version)
        if rec is None:
            raise ModelError(404, f"model {name!r} has no version {version}", "version")
        return rec


# --------------------------------------------------------------------------- predict

def validate_predict_job(body: dict, job_error) -> dict:
    """The spec of a ``{"kind": "predict", "source", "model", "version"/"alias"}`` job."""
    check_model_job(body, {"kind", "source", "model", "version", "alias", "output",
                           "resources"}, job_error)
    if body.get("output") not in (None, "class", "proba", "raw"):
        raise job_error(f"output must be 'class', 'proba' or 'raw'; got {body['output']!r}",
                        "output")
    res = check_resources(body, job_error)
    return {"kind": "predict", "source": body["source"], "model": body["model"],
            "version": body.get("version"), "alias": body.get("alias"),
            "output": body.get("output"), "resources": res}


def _check_source(spec: dict, rec: dict, src) -> None:
    from ..io.sources import open_source
    da = open_source(src)
    bands = int(np.prod([n for d, n in da.sizes.items() if d not in ("y", "x")] or [1]))
    takes = (f"model {rec['name']!r} v{rec['version']} takes {rec['n_bands']} band(s) "
             f"{rec['bands']} of {rec['dtype']}")
    if np.dtype(da.dtype).kind not in "iuf":
        raise ModelError(422, f"source {spec['source']!r} has dtype {da.dtype}; {takes}",
                         "source")
    if bands != rec["n_bands"]:
        raise ModelError(422, f"source {spec['source']!r} has {bands} band(s); {takes}",
                         "source")
    if min(da.sizes.get("y", 0), da.sizes.get("x", 0)) < rec["patch_size"]:
        raise ModelError(422, f"source {spec['source']!r} ({dict(da.sizes)}) is smaller than "
                         f"the model's patch ({rec['patch_size']} pixels)", "source")


def _pin(store, spec, src) -> dict:
    try:
        rec = store.resolve(spec["model"], spec["version"], spec["alias"])
    except ModelError as e:
        raise ModelError(422, str(e), "model" if e.field == "name" else e.field) from None
    _check_source(spec, rec, src)
    return {**spec, "version": rec["version"], "model_path": rec["path"],
            "sha256": rec["sha256"]}



def _load(location):
    from ..learn.registry import load
    return load(location)


def run_model(key: str, location: str, x: np.ndarray) -> np.ndarray:
    """On a worker: the artefact at ``location`` (loaded once per worker, keyed by its
    sha256, via ``stengine.learn._cache``) run on raw patches ``x``."""
    from ..learn import _cache
    return _cache.get(key, location, _load).run(x)


def check_input(x, rec: dict) -> np.ndarray:
    """``input`` as a float32 (B, C, y, x) batch the model of ``rec`` takes, or ModelError."""
    takes = (f"model {rec['name']!r} v{rec['version']} takes {rec['n_bands']} band(s) "
             f"{rec['bands']} of {rec['dtype']}, (bands, y, x) or (batch, bands, y, x), "
             f"patch {rec['patch_size']}")
    if not isinstance(x, list):
        raise ModelError(422, f"input must be a nested list; {takes}", "input")
    try:
        a = np.asarray(x)
    except ValueError as e:
        raise ModelError(422, f"input is ragged ({e}); {takes}", "input") from None
    if a.size > MAX_VALUES:
        raise ModelError(413, f"input has {a.size} values; at most {MAX_VALUES} per request "
                         "(submit a predict job for bigger inputs)", "input")
    if a.dtype.kind not in "iuf":
        raise ModelError(422, f"input has dtype {a.dtype} (not numbers); {takes}", "input")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ModelError(422, f"input has {a.ndim} dimension(s); {takes}", "input")
    if a.shape[1] != rec["n_bands"]:
        raise ModelError(422, f"input has {a.shape[1]} band(s); {takes}", "input")
    return a.astype(rec["dtype"])


# --------------------------------------------------------------------------- routes

def make_router(store: ModelStore, api_error) -> APIRouter:
    """The ``/models`` routes over ``store`` (``api_error(status, detail, field)``)."""
    r = APIRouter()

    def guard(f, *a, **kw):
        try:
            return f(*a, **kw)
        except ModelError as e:
            raise api_error(e.status, str(e), e.field) from None

    def check_name(name):
        if not _NAME.match(name):
            raise api_error(422, "name must be 1-64 letters, digits, '_', '.', '-'", "name")

    def model_of(name):
        m = store.model(name)
        if m is None:
            raise api_error(404, f"no model named {name!r}", "name")
        return m

    def version_of(name, v):
        model_of(name)
        rec = store.version(name, v)
        if rec is None:
            raise api_error(404, f"model {name!r} has no version {v}", "version")
        return rec

    @r.post("/{name}/versions", status_code=201)
    async def register_version(name: str, request: Request):
        check_name(name)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            up = form.get("file")
            if up is None or isinstance(up, str):
                raise api_error(422, "multipart upload needs a file field 'file' (a .onnx "
                                "file or a tar/zip of an artefact folder)", "file")
            data, fname = await up.read(), up.filename or "upload"
            fill, field, origin = (lambda d: _safe_extract(data, fname, d)), "file", \
                f"upload:{fname}"
        else:
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                raise api_error(422, "body must be JSON {'path': ...} or a multipart "
                                "upload with field 'file'", "body") from None
            if not isinstance(body, dict) or not isinstance(body.get("path"), str):
                raise api_error(422, "give {'path': artefact folder or .onnx file on the "
                                "server} or upload a file (multipart field 'file')", "path")
            path = body["path"]
            fill, field, origin = (lambda d: _copy_local(path, d)), "path", path
        return await run_in_threadpool(guard, store.add_version, name, fill, field, origin)

    @r.get("")
    def list_models():
        return store.models()

    @r.get("/{name}")
    def show_model(name: str):
        return model_of(name)

    @r.get("/{name}/versions/{version}")
    def show_version(name: str, version: int):
        return version_of(name, version)

    @r.put("/{name}/aliases/{alias}")
    def put_alias(name: str, alias: str, body: dict = Body(  # noqa: B008 (FastAPI idiom)
            ..., examples=[{"version": 2}])):
        check_name(alias)
        v = body.get("version") if isinstance(body, dict) else None
        if isinstance(v, bool) or not isinstance(v, int):
            raise api_error(422, f"body must be {{'version': int}}; got {body!r}", "version")
        version_of(name, v)
        store.set_alias(name, alias, v)
        return model_of(name)

    @r.delete("/{name}/aliases/{alias}", status_code=204)
    def delete_alias(name: str, alias: str):
        model_of(name)
        if not store.delete_alias(name, alias):
            raise api_error(404, f"model {name!r} has no alias {alias!r}", "alias")
        return Response(status_code=204)

    @r.delete("/{name}/versions/{version}", status_code=204)
    def delete_version(name: str, version: int):
        rec = version_of(name, version)
        if rec["aliases"]:
            raise api_error(409, f"version {version} of {name!r} is aliased as "
                            f"{rec['aliases'][0]!r}; move or delete the alias first", "alias")
        store.delete_version(name, version)
        return Response(status_code=204)

    @r.post("/{name}/predict")
    def predict(request: Request, name: str, body: dict = Body(  # noqa: B008
            ..., examples=[{"alias": "production", "input": [[[0.0]]]}])):
        extra = sorted(set(body) - {"version", "alias", "input"})
        if extra:
            raise api_error(422, f"unknown field {extra[0]!r}", extra[0])
        rec = guard(store.resolve, name, body.get("version"), body.get("alias"))
        x = guard(check_input, body.get("input"), rec)
        client = request.app.state.client
        fut = client.submit(run_model, rec["sha256"], rec["path"], x, pure=False)
        try:
            y = fut.result(timeout=120)
        except ValueError as e:  # the model refused the input (e.g. patch size)
            raise api_error(422, f"the model cannot take this input: {e}", "input") from None
        return {"output": y.tolist(), "shape": list(y.shape), "dtype": str(y.dtype),
                "model": name, "version": rec["version"]}

    return r

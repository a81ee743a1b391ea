"""``create_app``: the FastAPI service (sources, jobs, cluster, tiles, similar, UI)."""
from __future__ import annotations

import hmac
import logging
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from ..errors import SourceConnectionError, SourceError, StEngineError
from ..io.sources import SourceSpec, check_source, preview_source, quicklook_png
from ._jobs import JobError, Runner, validate
from ._state import State, ensure_token

log = logging.getLogger("stengine.serve")
STATIC = Path(__file__).parent / "static"
COOKIE = "stengine_token"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PUBLIC = ("/healthz", "/login")


class ApiError(Exception):
    """An HTTP error as ``{"detail", "field"}``."""

    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def _err(status, detail, field=None):
    return JSONResponse({"detail": detail, "field": field}, status_code=status)


def _login_page(msg: str = "") -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>stengine sign in</title>"
            "</head><body><form method='post' action='/login'><h1>stengine</h1>"
            f"<p>{msg}</p><label>Token <input id='token' name='token' type='password' "
            "autocomplete='off'></label> <button id='signin' type='submit'>Sign in</button>"
            "</form></body></html>")


def create_app(state_dir, *, scheduler=None, token=None, cluster_kwargs=None) -> FastAPI:
    """The service over ``state_dir`` (SQLite, key and token files, job results).

    Parameters
    ----------
    state_dir : path
        Created if missing; survives restarts.
    scheduler : str, optional
        ``tcp://host:port`` of a running Dask scheduler; default a LocalCluster made in
        the app's lifespan with ``cluster_kwargs``.
    token : str, optional
        The bearer token; default ``$STENGINE_TOKEN`` or ``<state>/token`` (made if missing).
    """
    state = State(state_dir)
    from ._models import ModelStore
    models_store = ModelStore(state)
    if token is None:
        token, _ = ensure_token(state.dir)
    ck = {"processes": False, "n_workers": 1, "threads_per_worker": 2,
          "dashboard_address": ":0", **(cluster_kwargs or {})}

    @asynccontextmanager
    async def lifespan(app):
        from distributed import Client, LocalCluster
        n = state.fail_orphans()
        if n:
            log.warning("marked %d job(s) left by a killed service as failed", n)
        cluster = None
        if scheduler:
            client = await run_in_threadpool(Client, scheduler, timeout="10s")
        else:
            import dask

            def make():  # a task whose worker dies is retried once, then KilledWorker
                with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                    return LocalCluster(**ck)
            cluster = await run_in_threadpool(make)
            client = await run_in_threadpool(Client, cluster)
        app.state.client = client
        app.state.runner = Runner(state, client)
        app.state.runner.models = models_store
        try:
            yield
        finally:
            for jid in list(app.state.runner.threads):
                app.state.runner.cancel(jid)
            for t in list(app.state.runner.threads.values()):
                await run_in_threadpool(t.join, 5)
            await run_in_threadpool(client.close)
            if cluster is not None:
                await run_in_threadpool(cluster.close)
            state.close()

    app = FastAPI(title="stengine serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store = state

    def authed(request: Request) -> bool:
        h = request.headers.get("authorization", "")
        got = h[7:].strip() if h.lower().startswith("bearer ") else \
            request.cookies.get(COOKIE, "")
        return bool(got) and hmac.compare_digest(got.encode(), token.encode())

    def auth(request: Request):
        if not authed(request):
            raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' "
                           "or sign in at /login", "authorization")

    @app.exception_handler(ApiError)
    async def _api(request, e: ApiError):
        if e.status == 401 and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/login", status_code=303)
        return _err(e.status, e.detail, e.field)

    @app.exception_handler(SourceError)
    async def _src(request, e: SourceError):
        return _err(502 if isinstance(e, SourceConnectionError) else 422, str(e), e.field)

    @app.exception_handler(StEngineError)
    async def _st(request, e: StEngineError):
        return _err(422, str(e), getattr(e, "field", None))

    @app.exception_handler(RequestValidationError)
    async def _val(request, e: RequestValidationError):
        errs = e.errors()
        loc = [str(x) for x in errs[0]["loc"] if x != "body"] if errs else []
        return _err(422, errs[0]["msg"] if errs else "invalid request", ".".join(loc) or "body")

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/login", response_class=HTMLResponse)
    def login_form():
        return _login_page()

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        got = str(form.get("token", ""))
        if not (got and hmac.compare_digest(got.encode(), token.encode())):
            return HTMLResponse(_login_page("Wrong token."), status_code=401)
        r = RedirectResponse("/", status_code=303)
        r.set_cookie(COOKIE, got, httponly=True, samesite="strict",
                     secure=request.url.scheme == "https")
        return r

    api = APIRouter(dependencies=[Depends(auth)])

    @api.get("/openapi.json", include_in_schema=False)
    def openapi():
        return app.openapi()

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    @api.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        p = STATIC / name
        if name not in {"app.js", "style.css"} or not p.exists():
            raise ApiError(404, f"no static file {name!r}", "name")
        return FileResponse(p)

    # sources
    def spec_of(name: str) -> SourceSpec:
        spec = state.source_spec(name)
        if spec is None:
            raise ApiError(404, f"no source named {name!r}", "name")
        return spec

    @api.post("/sources", status_code=201)
    def add_source(body: dict = Body(  # noqa: B008 (FastAPI idiom)
            ..., examples=[{"name": "dem", "kind": "geotiff",
                           "location": "/data/dem.tif"}])):
        body = dict(body)
        name = body.pop("name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ApiError(422, "name must be 1-64 letters, digits, '_', '.', '-'", "name")
        spec = SourceSpec.from_dict(body)
        if not state.can_seal and "password" in spec.options:
            raise ApiError(422, "cryptography is not installed: give password_env (the name "
                           "of an environment variable), not password", "password")
        if state.source(name) is not None:
            raise ApiError(409, f"a source named {name!r} exists", "name")
        state.add_source(name, spec)
        log.info("registered source %s", name)
        return state.source(name)

    @api.get("/sources")
    def list_sources():
        return state.sources()

    @api.get("/sources/{name}")
    def show_source(name: str):
        spec_of(name)
        return state.source(name)

    @api.post("/sources/{name}/test")
    def test_source(name: str):
        return check_source(spec_of(name))

    @api.get("/sources/{name}/preview")
    def preview(name: str, n: int = 5):
        return preview_source(spec_of(name), n=n)

    @api.get("/sources/{name}/quicklook.png")
    def quicklook(name: str, width: int = 512):
        return Response(quicklook_png(spec_of(name), width=width), media_type="image/png")

    @api.delete("/sources/{name}", status_code=204)
    def delete_source(name: str):
        spec_of(name)
        state.delete_source(name)
        return Response(status_code=204)

    # jobs
    def job_of(jid: str, log: bool = False) -> dict:
        j = state.job(jid, log)
        if j is None:
            raise ApiError(404, f"no job {jid!r}", "id")
        return j

    @api.post("/jobs", status_code=202)
    def submit(request: Request, body: dict = Body(  # noqa: B008 (FastAPI idiom)
            ..., examples=[
            {"kind": "ops", "source": "dem", "ops": [{"op": "focal_mean", "window": 3}]}])):
        try:
            spec = validate(body)
        except JobError as e:
            raise ApiError(422, str(e), e.field) from None
        if state.source(spec["source"]) is None:
            raise ApiError(422, f"no source named {spec['source']!r}", "source")
        if spec["kind"] == "predict":
            spec = models_store.check_predict_job(spec, spec_of(spec["source"]), ApiError)
        if spec["kind"] == "train":
            from ._learn_jobs import check_train_job
            if spec["labels"] is not None and state.source(spec["labels"]) is None:
                raise ApiError(422, f"no source named {spec['labels']!r}", "labels")
            check_train_job(spec, spec_of, ApiError)
        if spec["kind"] == "embed":
            from ._learn_jobs import check_embed_job
            spec = check_embed_job(models_store, spec, spec_of(spec["source"]), ApiError)
        jid = state.add_job(spec["kind"], spec)
        what = (f"{len(spec['ops'])} op(s)" if spec["kind"] == "ops"
                else f"train {spec['model']['builder']!r}" if spec["kind"] == "train"
                else f"model {spec['model']!r} v{spec['version']}")
        state.log_job(jid, f"submitted: {what} on {spec['source']!r}")
        request.app.state.runner.submit(jid)
        return job_of(jid)

    @api.get("/jobs")
    def list_jobs():
        return state.jobs()

    @api.get("/jobs/{id}")
    def show_job(id: str):
        return job_of(id)

    @api.get("/jobs/{id}/log", response_class=Response)
    def job_log(id: str):
        return Response(job_of(id, log=True)["log"], media_type="text/plain")

    @api.post("/jobs/{id}/cancel")
    def cancel(request: Request, id: str):
        j = job_of(id)
        if j["status"] in ("pending", "running"):
            request.app.state.runner.cancel(id)
            for _ in range(50):
                if state.job(id)["status"] not in ("pending", "running"):
                    break
                time.sleep(0.05)
        return job_of(id)

    @api.get("/cluster")
    def cluster(request: Request):
        client = request.app.state.client
        info = client.scheduler_info()
        workers = [{"address": a, "threads": w.get("nthreads"),
                    "memory_limit": w.get("memory_limit"),
                    "memory": (w.get("metrics") or {}).get("memory"),
                    "resources": w.get("resources") or {}}
                   for a, w in info.get("workers", {}).items()]
        try:
            from ..learn.monitor import gpu_status
            gpus = gpu_status(client)
        except Exception as e:  # no NVML, no learn extras
            gpus = {"gpu": False, "reason": f"no GPU ({type(e).__name__})"}
        return {"scheduler": client.scheduler.address, "workers": workers,
                "threads": sum(w["threads"] or 0 for w in workers),
                "gpus": gpus, "dashboard": client.dashboard_link if ck.get(
                    "dashboard_address") or scheduler else None}

    app.include_router(api)
    from ._models import make_router as models_router
    app.include_router(models_router(models_store, ApiError), prefix="/models",
                       dependencies=[Depends(auth)])
    for prefix, mod in (("/similar", "similar"), ("/tiles", "tiles")):
        try:
            import importlib
            router = importlib.import_module(f"stengine.serve.{mod}").make_router()
        except Exception as e:  # optional parts
            log.info("not mounting %s: %s", prefix, e)
            continue
        app.include_router(router, prefix=prefix, dependencies=[Depends(auth)])
    return app

"""The tile router: XYZ PNG tiles of registered lazy chains, their metadata and a map page.

Routes (relative to the prefix the app mounts the router under, ``/tiles``):

- ``POST /``: register a chain built from a registered Zarr store (by name) and a JSON op
  list, ``{"store": name, "ops": [{"op": "focal_mean", "args": [3]}], "vis": {...}}`` →
  ``{"id": ...}``; Python callers use ``registry.register(chain, vis)`` instead.
- ``GET /{id}``: bounds (degrees), zoom range, vis.
- ``GET /{id}/{z}/{x}/{y}.png`` (``?t=`` time index): a 256×256 PNG, CORS header set.
- ``GET /{id}/map``: a Leaflet page using relative URLs.

Unknown id → 404 naming it; zoom or tile out of range → 400. The router has no auth of
its own: :func:`create_tile_app` adds a token check off loopback, the service its own.
"""


import ipaddress
import secrets
import threading
import time
from pathlib import Path

from ..errors import TileError

__all__ = ["make_router", "create_tile_app", "StoreTileRegistry", "start_background"]


class StoreTileRegistry:
    """A :class:`~stengine.viz.tiles.TileRegistry` plus named Zarr stores that HTTP
    clients may build chains from (only stores added here, never arbitrary paths)."""

    def __init__(self, cache_size: int = 512):
        from ..viz.tiles import TileRegistry
        self.tiles = TileRegistry(cache_size)
        self.stores: dict[str, Path] = {}

    def add_store(self, name: str, path) -> None:
        self.stores[name] = Path(path)

    def register(self, chain, vis=None, **kw) -> str:
        return self.tiles.register(chain, vis, **kw)

    def register_ops(self, store: str, ops: list, vis=None) -> str:
        """Register ``ops`` (``[{"op": name, "args": [...], "kwargs": {...}}]``, names from
        :mod:`stengine.ops`) applied to store ``store``, through its overviews if built."""
        from .. import ops as st_ops
        from ..viz.overviews import Pyramid
        if store not in self.stores:
            raise TileError(f"store={store!r} is not registered; expected one of "
                            f"{sorted(self.stores)}")
        steps = []
        for i, step in enumerate(ops or []):
            name = step.get("op") if isinstance(step, dict) else None
            if name not in st_ops.__all__:
                raise TileError(f"ops[{i}].op={name!r}: expected a stengine.ops function "
                                f"such as 'focal_mean'")
            steps.append((getattr(st_ops, name), list(step.get("args", [])),
                          dict(step.get("kwargs", {}))))

        def chain(da):
            for fn, args, kwargs in steps:
                da = fn(da, *args, **kwargs)
            return da

        return self.tiles.register(chain, vis, pyramid=Pyramid(self.stores[store]))


def _registry(registry):
    if registry is None:
        return StoreTileRegistry()
    if not hasattr(registry, "tiles"):  # a bare TileRegistry
        wrapped = StoreTileRegistry()
        wrapped.tiles = registry
        return wrapped
    return registry


def make_router(registry=None):
    """A FastAPI ``APIRouter`` serving ``registry`` (a :class:`StoreTileRegistry` or a
    :class:`~stengine.viz.tiles.TileRegistry`; a new empty one if None) as
    ``router.registry``."""
    from fastapi import APIRouter, Body, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, Response

    reg = _registry(registry)
    router = APIRouter()
    router.registry = reg

    def layer(lid):
        try:
            return reg.tiles.layer(lid)
        except KeyError as e:
            raise HTTPException(404, str(e.args[0])) from None

    @router.post("")
    def register(body: dict = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
        try:
            lid = reg.register_ops(body.get("store"), body.get("ops", []), body.get("vis"))
        except (TileError, TypeError) as e:
            raise HTTPException(400, str(e)) from None
        return {"id": lid, **reg.tiles.layer(lid).meta()}

    @router.get("/_leaflet/{name:path}", include_in_schema=False)
    def leaflet(name: str):
        from ..web import leaflet_dir
        root = Path(leaflet_dir()).resolve()
        p = (root / name).resolve()
        if root not in p.parents or not p.is_file():
            raise HTTPException(404, f"no Leaflet file {name!r}")
        return FileResponse(p)

    @router.get("/_static/{name}", include_in_schema=False)
    def static(name: str):
        p = Path(__file__).parent.parent / "viz" / "static" / name
        if name not in ("map.js",) or not p.is_file():
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(p, media_type="text/javascript")

    @router.get("/{lid}")
    def meta(lid: str):
        return {"id": lid, **layer(lid).meta()}

    @router.get("/{lid}/map", response_class=HTMLResponse)
    def map_page(lid: str):
        from ..viz.export import page_html
        m = layer(lid).meta()
        cfg = {"layers": [{"url": "{z}/{x}/{y}.png?t={t}", "name": lid}], **m}
        return page_html(cfg, leaflet="../_leaflet", script="../_static/map.js")

    @router.get("/{lid}/{z}/{x}/{y}.png")
    def tile(lid: str, z: int, x: int, y: int, t: int | None = Query(None)):
        lay = layer(lid)
        if t is not None and not 0 <= t < max(lay.ntime, 1):
            raise HTTPException(400, f"time index t={t} out of range; expected 0 <= t < "
                                     f"{max(lay.ntime, 1)}")
        try:
            png = reg.tiles.tile_png(lid, z, x, y, time=t)
        except TileError as e:
            raise HTTPException(400, str(e)) from None
        return Response(png, media_type="image/png",
                        headers={"Access-Control-Allow-Origin": "*",
                                 "Cache-Control": "max-age=60"})

    return router


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_tile_app(registry=None, *, host: str = "127.0.0.1", token: str | None = None):
    """A standalone FastAPI app with the tile router at ``/tiles``.

    Off loopback (``host`` not 127.0.0.1/::1/localhost) a ``token`` is required, passed as
    ``Authorization: Bearer <token>`` or ``?token=`` (image tags cannot send headers).
    """
    from fastapi import Depends, FastAPI, HTTPException, Request

    if token is None and not _is_loopback(host):
        raise TileError(f"host={host!r} is not loopback: pass token= (e.g. "
                        f"secrets.token_urlsafe()) so the tiles are not open to the network")

    def auth(request: Request):
        if token is None:
            return
        got = request.query_params.get("token") or request.headers.get(
            "authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(got or "", token):
            raise HTTPException(401, "missing or wrong token")

    router = make_router(registry)
    app = FastAPI(title="stengine tiles")
    app.include_router(router, prefix="/tiles", dependencies=[Depends(auth)])
    app.state.registry = router.registry
    return app


def start_background(app, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0):
    """Run ``app`` with uvicorn in a daemon thread; returns ``(server, base_url)``.

    ``port=0`` picks a free port. Stop with ``server.should_exit = True``.
    """
    import socket

    import uvicorn
    sock = socket.socket()
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > timeout or not thread.is_alive():
            server.should_exit = True
            raise TileError(f"tile server did not start on {host}:{port} in {timeout} s")
        time.sleep(0.02)
    server.thread = thread
    return server, f"http://{host}:{port}"

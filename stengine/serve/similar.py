"""The similarity map viewer (VectorGeo's vg-site): a router over a :class:`VectorIndex`.

``make_router(index)`` returns a FastAPI router with no auth of its own; the service
mounts it under a prefix (e.g. ``/similar``) behind its auth. ``create_viewer_app(index)``
is a standalone app with the router at ``/similar/``. Routes (relative to the prefix):

* ``GET /``: the page: a Leaflet map (plate carrée, ``L.CRS.EPSG4326``) of the cells
  coloured by the first principal component of their embeddings, Natural Earth outlines
  and a graticule; a click asks for the most similar cells, drawn and listed.
* ``GET similar?lon=&lat=&k=&bbox=minx,miny,maxx,maxy`` (or ``cell=<hex>``): JSON, the
  answer of :meth:`VectorIndex.similar` plus each cell's boundary.
* ``GET info``, ``GET tiles/{z}/{x}/{y}.png`` (cells coloured by PC1, rendered from the
  index at each pixel centre), ``GET countries.geojson``, ``GET leaflet/{file}``,
  ``GET static/{file}``.

The page loads everything from the app (relative URLs under a ``<base>`` that carries the
prefix): no CDN, no web tiles.
"""


import functools
import io
from html import escape as html_escape
from pathlib import Path

import numpy as np

from stengine.errors import IndexRangeError, VectorIndexError

__all__ = ["make_router", "create_viewer_app"]

STATIC = Path(__file__).resolve().parent / "similar_static"
TILE = 256
MAX_ZOOM = 12
# viridis at 9 stops (matplotlib's), interpolated into a 256-entry table
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], float)
LUT = np.stack([np.interp(np.linspace(0, 8, 256), np.arange(9), _VIRIDIS[:, i])
                for i in range(3)], axis=1).astype(np.uint8)


def _safe_file(root: Path, name: str) -> Path:
    """``root/name`` if it is a file inside ``root`` (no ``..``, no links out), else 404."""
    from fastapi import HTTPException

    root = root.resolve()
    p = (root / name).resolve()
    if not p.is_relative_to(root) or not p.is_file():
        raise HTTPException(status_code=404, detail=f"no file {name!r}")
    return p


class _Colours:
    """PC1 of each cell scaled to 0..255 by its 2nd..98th percentiles (computed once)."""

    def __init__(self, index):
        pc = index.pca(1)[:, 0]
        lo, hi = np.percentile(pc, [2, 98]) if pc.size else (0.0, 1.0)
        self.code = np.clip((pc - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)


def render_tile(index, colours: _Colours, z: int, x: int, y: int) -> bytes:
    """PNG (RGBA) of EPSG:4326 tile ``z/x/y``: each pixel takes its centre's cell colour."""
    from PIL import Image

    from stengine.index import h3 as sth3

    span = 180.0 / 2**z
    step = span / TILE
    lon = -180.0 + x * span + (np.arange(TILE) + 0.5) * step
    lat = 90.0 - y * span - (np.arange(TILE) + 0.5) * step
    rgba = np.zeros((TILE, TILE, 4), np.uint8)
    okr = (lat > -90.0) & (lat < 90.0)
    okc = (lon > -180.0) & (lon < 180.0)
    if okr.any() and okc.any() and len(index):
        cells = sth3.grid_to_cells(lon[okc], lat[okr], index.resolution)
        i = np.minimum(np.searchsorted(index.cells, cells), len(index) - 1)
        hit = index.cells[i] == cells
        sub = np.zeros(cells.shape + (4,), np.uint8)
        sub[..., :3] = LUT[colours.code[i]]
        sub[..., 3] = np.where(hit, 235, 0)
        rgba[np.ix_(okr, okc)] = sub
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _countries_geojson() -> bytes:
    from stengine.datasets import naturalearth_countries

    g = naturalearth_countries()[["name", "geometry"]]
    return g.to_json(drop_id=True).encode()


def _parse_bbox(bbox: str | None):
    if not bbox:
        return None
    try:
        v = tuple(float(s) for s in bbox.split(","))
    except ValueError:
        v = ()
    if len(v) != 4:
        raise VectorIndexError(f"bbox must be 'minx,miny,maxx,maxy' in degrees; got {bbox!r}")
    return v


def answer(index, *, lon=None, lat=None, cell=None, k=10, bbox=None) -> dict:
    """The JSON answer of the ``similar`` route (also usable without HTTP)."""
    from stengine.index import h3 as sth3

    within = _parse_bbox(bbox)
    if cell is not None:
        try:
            query = int(cell, 16)
        except ValueError as e:
            raise VectorIndexError(f"cell must be an H3 id in hex; got {cell!r}") from e
    elif lon is not None and lat is not None:
        query = (float(lon), float(lat))
    else:
        raise VectorIndexError("pass lon and lat, or cell")
    res = index.similar(query, k=int(k), within=within)
    bnd = sth3.cell_to_boundary(res.cell.to_numpy()) if len(res) else np.empty((0, 10, 2))
    qcell = query if isinstance(query, int) else int(
        sth3.lonlat_to_cell(query[0], query[1], index.resolution))
    qb = sth3.cell_to_boundary(np.array([qcell], np.uint64))[0]
    ring = lambda b: [[round(float(a), 5), round(float(c), 5)]  # noqa: E731
                      for a, c in b[~np.isnan(b[:, 0])]]
    return {
        "query": {"cell": f"{qcell:x}", "lon": None if cell else float(lon),
                  "lat": None if cell else float(lat), "boundary": ring(qb)},
        "k": int(k), "bbox": within,
        "results": [{"rank": n + 1, "cell": f"{int(c):x}", "distance": float(d),
                     "lon": float(lo), "lat": float(la), "boundary": ring(b)}
                    for n, (c, d, lo, la, b) in enumerate(zip(
                        res.cell, res.distance, res.lon, res.lat, bnd, strict=True))],
    }


def make_router(index=None, *, max_k: int = 200):
    """The viewer's routes. ``index=None``: use ``request.app.state.similar_index``."""
    from fastapi import APIRouter, HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    from stengine.web import leaflet_dir

    router = APIRouter()
    cache: dict[int, _Colours] = {}

    def get_index(request: Request):
        ix = index if index is not None else getattr(request.app.state, "similar_index", None)
        if ix is None:
            raise HTTPException(status_code=503, detail="no vector index is loaded")
        return ix

    def colours(ix) -> _Colours:
        c = cache.get(id(ix))
        if c is None:
            c = cache[id(ix)] = _Colours(ix)
        return c

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request):
        base = request.scope.get("root_path", "") + request.url.path
        html = (STATIC / "index.html").read_text()
        return HTMLResponse(html.replace("{{BASE}}", html_escape(base.rstrip("/") + "/")))

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        return FileResponse(_safe_file(STATIC, name))

    @router.get("/leaflet/{name:path}", include_in_schema=False)
    def leaflet(name: str):
        return FileResponse(_safe_file(leaflet_dir(), name))

    @router.get("/countries.geojson", include_in_schema=False)
    def countries():
        return Response(_countries_geojson(), media_type="application/geo+json")

    @router.get("/info")
    def info(request: Request):
        ix = get_index(request)
        return {"cells": len(ix), "dim": ix.dim, "resolution": ix.resolution,
                "metric": ix.metric, "backend": ix.backend, "model_hash": ix.model_hash,
                "bounds": [float(ix.lon.min()), float(ix.lat.min()), float(ix.lon.max()),
                           float(ix.lat.max())], "max_zoom": MAX_ZOOM}

    @router.get("/tiles/{z}/{x}/{y}.png", include_in_schema=False)
    def tile(request: Request, z: int, x: int, y: int):
        ix = get_index(request)
        if not (0 <= z <= MAX_ZOOM and 0 <= x < 2 ** (z + 1) and 0 <= y < 2**z):
            raise HTTPException(status_code=404, detail=f"no tile {z}/{x}/{y}")
        return Response(render_tile(ix, colours(ix), z, x, y), media_type="image/png",
                        headers={"Cache-Control": "max-age=600"})

    @router.get("/similar")
    def similar(request: Request, lon: float | None = None, lat: float | None = None,
                cell: str | None = None, k: int = Query(10, ge=1, le=max_k),
                bbox: str | None = None):
        ix = get_index(request)
        try:
            return answer(ix, lon=lon, lat=lat, cell=cell, k=k, bbox=bbox)
        except (VectorIndexError, IndexRangeError) as e:
            return JSONResponse({"detail": str(e)}, status_code=422)

    return router


def create_viewer_app(index, *, prefix: str = "/similar"):
    """A standalone FastAPI app: the viewer at ``{prefix}/`` (``/`` redirects there)."""
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(title="stengine similarity viewer")
    app.include_router(make_router(index), prefix=prefix)

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse(f"{prefix}/")

    @app.get(prefix, include_in_schema=False)
    def no_slash():
        return RedirectResponse(f"{prefix}/")

    return app

"""Exports: a Leaflet page with pre-rendered tiles that opens from file://, and videos.

Both render with :func:`stengine.viz.tiles.render_tile`, the function the tile route uses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import TileError
from .tiles import TILE, Vis, _lonlat_bounds, render_tile, tile_bounds, tiles, to_png

__all__ = ["export_html", "export_video", "page_html"]

_STATIC = Path(__file__).parent / "static"


def page_html(config: dict, *, leaflet: str, script: str) -> str:
    """The map page for ``config`` (layers, bounds, zooms, ntime), with Leaflet and the
    page script loaded from the relative URLs ``leaflet`` (a folder) and ``script``."""
    # </ inside the JSON would end the script element early
    cfg = json.dumps(config).replace("</", "<\\/")
    return (_STATIC / "map.html").read_text().format(config=cfg, leaflet=leaflet, script=script)


def _as_list(chains, vis):
    chains = list(chains) if isinstance(chains, (list, tuple)) else [chains]
    if not 1 <= len(chains) <= 2:
        raise TileError(f"chains: expected one chain or two (split view); got {len(chains)}")
    vis = list(vis) if isinstance(vis, (list, tuple)) else [vis] * len(chains)
    return chains, [v if isinstance(v, Vis) else Vis(**(v or {})) for v in vis]


def export_html(chains, bbox, zooms, path, *, vis=None, names=None, outline=True) -> Path:
    """Write ``path/index.html`` with tiles ``path/<layer>/<t>/z/x/y.png`` and Leaflet copied.

    Parameters
    ----------
    chains : DataArray | list of one or two DataArrays
        Lazy chains with a CRS; two give a split (swipe) view; a ``time`` dim a slider.
    bbox : tuple
        ``(west, south, east, north)`` in degrees; must meet the data.
    zooms : iterable of int
        Zoom levels to pre-render.
    vis : Vis | dict | list
        Visualisation (one for all, or one per chain).
    outline : bool
        Draw Natural Earth country outlines (offline GeoJSON) under the tiles.
    """
    chains, vis = _as_list(chains, vis)
    path = Path(path)
    zooms = sorted(set(zooms))
    w, s, e, n = bbox
    db = _lonlat_bounds(chains[0])
    if w >= db[2] or e <= db[0] or s >= db[3] or n <= db[1]:
        raise TileError(f"bbox={tuple(bbox)} does not meet the data (bounds {db})")
    path.mkdir(parents=True, exist_ok=True)
    ntime = int(chains[0].sizes.get("time", 0))
    layers = []
    for i, (chain, v) in enumerate(zip(chains, vis, strict=True)):
        for t in range(max(ntime, 1)):
            for z, x, y in tiles(bbox, zooms):
                rgba = render_tile(chain, z, x, y, v, time=t if ntime else None)
                f = path / f"l{i}" / str(t) / str(z) / str(x) / f"{y}.png"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(to_png(rgba))
        name = (names or [None, None])[i] or str(chain.name or f"layer {i}")
        layers.append({"url": f"l{i}/{{t}}/{{z}}/{{x}}/{{y}}.png", "name": name})
    from ..web import leaflet_dir
    shutil.copytree(leaflet_dir(), path / "leaflet", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.map", "*esm*", "leaflet-src.js"))
    shutil.copy(_STATIC / "map.js", path / "map.js")
    times = None
    if ntime:
        times = [str(np.datetime_as_string(v, unit="D")) for v in chains[0].time.values]
    cfg = {"layers": layers, "bounds": list(bbox), "minzoom": zooms[0],
           "maxzoom": zooms[-1] + 2, "maxnative": zooms[-1], "ntime": ntime, "times": times}
    if outline:
        cfg["outline"] = _outline(bbox)
    (path / "index.html").write_text(page_html(cfg, leaflet="leaflet", script="map.js"))
    return path / "index.html"


def _outline(bbox):
    try:
        from ..datasets import naturalearth_countries
        gdf = naturalearth_countries()
    except Exception:  # an optional basemap: the page works without it
        return None
    w, s, e, n = bbox
    gdf = gdf.cx[w - 10:e + 10, s - 10:n + 10]
    return json.loads(gdf[["geometry"]].to_json())


def _frame_tiles(bbox, z):
    ts = list(tiles(bbox, z))
    xs = sorted({x for _, x, _ in ts})
    ys = sorted({y for _, _, y in ts})
    return xs, ys


def export_video(cube, path, *, fps: float = 2, vis=None, zoom: int | None = None,
                 bbox=None, max_px: int = 1024) -> Path:
    """Write ``cube`` (dims ``(time, y, x)``) as an MP4 or GIF (by ``path``'s extension),
    one frame per time step with its date stamped, and ``path + ".json"`` with the frame
    bounds (EPSG:3857 metres and degrees), CRS, size, fps and dates.

    The frame is a mosaic of zoom-``zoom`` web-mercator tiles over ``bbox`` (default: the
    data's bounds); the default zoom is the largest whose mosaic is at most ``max_px`` wide.
    """
    import imageio.v3 as iio
    from PIL import Image, ImageDraw

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".mp4", ".gif"):
        raise TileError(f"path={str(path)!r}: expected a .mp4 or .gif file name")
    if "time" not in cube.dims:
        raise TileError(f"export_video needs a 'time' dim; got dims {cube.dims}")
    vis = vis if isinstance(vis, Vis) else Vis(**(vis or {}))
    bbox = tuple(bbox or _lonlat_bounds(cube))
    if zoom is None:
        zoom = 0
        while zoom < 22 and len(_frame_tiles(bbox, zoom + 1)[0]) * TILE <= max_px:
            zoom += 1
    xs, ys = _frame_tiles(bbox, zoom)
    frames, dates = [], []
    for t in range(cube.sizes["time"]):
        img = np.zeros((len(ys) * TILE, len(xs) * TILE, 4), "uint8")
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                img[j * TILE:(j + 1) * TILE, i * TILE:(i + 1) * TILE] = render_tile(
                    cube, zoom, x, y, vis, time=t)
        # transparent → white, then stamp the date
        rgb = Image.new("RGB", (img.shape[1], img.shape[0]), "white")
        rgb.paste(Image.fromarray(img, "RGBA"), mask=Image.fromarray(img[..., 3]))
        date = str(np.datetime_as_string(cube.time.values[t], unit="D"))
        draw = ImageDraw.Draw(rgb)
        draw.rectangle([4, 4, 12 + 7 * len(date), 22], fill="white")
        draw.text((8, 8), date, fill="black")
        frames.append(np.asarray(rgb))
        dates.append(date)
    stack = np.stack(frames)
    if ext == ".mp4":
        iio.imwrite(path, stack, fps=fps, codec="libx264", macro_block_size=16)
    else:
        iio.imwrite(path, stack, duration=1000 / fps, loop=0)
    left = tile_bounds(zoom, xs[0], ys[0])[0]
    top = tile_bounds(zoom, xs[0], ys[0])[3]
    right = tile_bounds(zoom, xs[-1], ys[-1])[2]
    bottom = tile_bounds(zoom, xs[-1], ys[-1])[1]
    from .tiles import _lat, _lon
    side = {"crs": "EPSG:3857", "bounds": [left, bottom, right, top],
            "bounds_lonlat": [_lon(left), _lat(bottom), _lon(right), _lat(top)],
            "width": int(stack.shape[2]), "height": int(stack.shape[1]), "zoom": zoom,
            "tiles": {"x": [xs[0], xs[-1]], "y": [ys[0], ys[-1]]}, "fps": fps,
            "dates": dates, "vis": vis.to_dict()}
    Path(f"{path}.json").write_text(json.dumps(side, indent=1))
    return path

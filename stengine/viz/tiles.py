"""Web-mercator XYZ tiles of lazy chains: tile math, rendering, a registry with an LRU cache.

Conventions: tiles are XYZ (``y`` counts down from the north), 256×256 px, in
web-mercator (EPSG:3857, metres); longitudes/latitudes are degrees (EPSG:4326).

A tile is: tile bounds → source window (densified bounds, padded 2 px) → slice the lazy
chain to that window and compute it (dask reads only the chunks under it, with the
halo a focal op needs) → ``rasterio.warp.reproject`` into the tile's 3857 transform →
colormap with a *fixed* value range, so neighbouring tiles have no seams. NaN and nodata
become transparent. :func:`render_tile` is the one function shared by the tile route,
the HTML export and the video export.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import TileError

__all__ = ["Vis", "TileRegistry", "tile_bounds", "tile_lonlat_bounds", "tile_at", "tiles",
           "render_tile", "tile_values", "to_png", "TILE", "ORIGIN", "MAX_ZOOM"]

TILE = 256
ORIGIN = 20037508.342789244  # half the web-mercator world width, m
MAX_ZOOM = 24
_MAX_LAT = 85.0511287798066


def _check_tile(z, x, y):
    if not (isinstance(z, (int, np.integer)) and 0 <= z <= MAX_ZOOM):
        raise TileError(f"zoom z={z!r} is out of range; expected an int in [0, {MAX_ZOOM}]")
    n = 1 << int(z)
    if not (0 <= x < n and 0 <= y < n):
        raise TileError(f"tile x={x}, y={y} is out of range at z={z}; expected 0 <= x, y < {n}")


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Bounds ``(left, bottom, right, top)`` of XYZ tile ``z/x/y`` in EPSG:3857 metres.

    >>> tile_bounds(1, 0, 0) == (-ORIGIN, 0.0, 0.0, ORIGIN)
    True
    """
    _check_tile(z, x, y)
    size = 2 * ORIGIN / (1 << z)
    left, top = -ORIGIN + x * size, ORIGIN - y * size
    return (left, top - size, left + size, top)


def _lon(xm):
    return math.degrees(xm / 6378137.0)


def _lat(ym):
    return math.degrees(2 * math.atan(math.exp(ym / 6378137.0)) - math.pi / 2)


def tile_lonlat_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Bounds ``(west, south, east, north)`` of tile ``z/x/y`` in degrees."""
    left, bottom, right, top = tile_bounds(z, x, y)
    return (_lon(left), _lat(bottom), _lon(right), _lat(top))


def tile_at(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The ``(x, y)`` of the zoom-``z`` tile holding ``(lon, lat)`` (degrees); latitudes
    are clipped to ±85.0511°, the east edge (lon 180) belongs to the last column."""
    _check_tile(z, 0, 0)
    n = 1 << z
    lat = min(max(lat, -_MAX_LAT), _MAX_LAT)
    fx = (lon + 180.0) / 360.0
    s = math.sin(math.radians(lat))
    fy = 0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)
    x = min(max(int(math.floor(fx * n)), 0), n - 1)
    y = min(max(int(math.floor(fy * n)), 0), n - 1)
    return x, y


def tiles(bbox, zooms):
    """Yield ``(z, x, y)`` of every tile meeting ``bbox = (west, south, east, north)``
    (degrees) at each zoom in ``zooms`` (an int or an iterable of ints)."""
    west, south, east, north = bbox
    if not (west < east and south < north):
        raise TileError(f"bbox={bbox!r} is empty; expected (west, south, east, north)")
    zooms = [zooms] if isinstance(zooms, (int, np.integer)) else list(zooms)
    for z in zooms:
        x0, y0 = tile_at(west, north, z)
        # a bbox edge exactly on a tile edge does not meet the next tile
        eps = 1e-9
        x1, y1 = tile_at(east - eps, south + eps, z)
        for x, y in itertools.product(range(x0, x1 + 1), range(y0, y1 + 1)):
            yield (z, x, y)


@dataclass(frozen=True)
class Vis:
    """How values become colours: ``cmap`` (matplotlib name) over the FIXED range
    ``[vmin, vmax]``, or ``bands`` (three indices along ``band_dim``) for RGB scaled by
    the same range. ``time`` picks a time index of a cube with a ``time`` dim;
    ``resampling`` is a rasterio resampling name used by the warp."""

    vmin: float = 0.0
    vmax: float = 1.0
    cmap: str = "viridis"
    bands: tuple[int, int, int] | None = None
    band_dim: str = "band"
    resampling: str = "bilinear"

    def __post_init__(self):
        if not self.vmax > self.vmin:
            raise TileError(f"vis vmin={self.vmin}, vmax={self.vmax}: expected vmax > vmin")
        if self.bands is not None and len(self.bands) != 3:
            raise TileError(f"vis bands={self.bands!r}: expected three band indices")
        from rasterio.enums import Resampling
        if self.resampling not in Resampling.__members__:
            raise TileError(f"vis resampling={self.resampling!r}: expected a rasterio "
                            f"Resampling name such as 'nearest' or 'bilinear'")

    def to_dict(self) -> dict:
        return {"vmin": self.vmin, "vmax": self.vmax, "cmap": self.cmap,
                "bands": list(self.bands) if self.bands else None,
                "band_dim": self.band_dim, "resampling": self.resampling}


def _grid(da):
    from ..cube.conventions import get_grid
    return get_grid(da, dims=("y", "x"))


def _src_window(grid, z, x, y, pad: int = 2):
    """``(rows, cols)`` slices of the source grid under tile z/x/y, or None if off the data."""
    from rasterio.warp import transform_bounds
    left, bottom, right, top = transform_bounds("EPSG:3857", grid.crs.to_wkt(),
                                                *tile_bounds(z, x, y), densify_pts=21)
    inv = ~grid.transform
    corners = [inv @ (px, py) for px in (left, right) for py in (bottom, top)]
    cols, rows = zip(*corners, strict=True)
    r0 = max(int(math.floor(min(rows))) - pad, 0)
    r1 = min(int(math.ceil(max(rows))) + pad, grid.shape[0])
    c0 = max(int(math.floor(min(cols))) - pad, 0)
    c1 = min(int(math.ceil(max(cols))) + pad, grid.shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def tile_values(da, z: int, x: int, y: int, *, resampling: str = "bilinear") -> np.ndarray:
    """Float values of ``da`` (dims ``(..., y, x)``, a CRS) warped to tile ``z/x/y``.

    Returns a float32 array ``(..., 256, 256)``, NaN where there is no data. Only the
    source window under the tile is computed.
    """
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.warp import reproject

    _check_tile(z, x, y)
    grid = _grid(da)
    if grid.crs is None:
        raise TileError("da has no CRS (spatial_ref); tiles need one to be placed on the map")
    lead = da.shape[:-2]
    out = np.full((*lead, TILE, TILE), np.nan, dtype="float32")
    win = _src_window(grid, z, x, y)
    if win is None:
        return out
    rows, cols = win
    sub = da.isel(y=rows, x=cols)
    src = np.asarray(sub.data.compute(scheduler="threads") if hasattr(sub.data, "dask")
                     else sub.values).astype("float32")
    nodata = da.attrs.get("_FillValue", da.attrs.get("nodata"))
    if nodata is not None and not np.isnan(nodata):
        src[src == nodata] = np.nan
    src_t = grid.transform @ grid.transform.translation(cols.start, rows.start)
    dst_t = from_bounds(*tile_bounds(z, x, y), TILE, TILE)
    flat_src = src.reshape(-1, *src.shape[-2:])
    flat_out = out.reshape(-1, TILE, TILE)
    for i in range(flat_src.shape[0]):
        reproject(flat_src[i], flat_out[i], src_transform=src_t, src_crs=grid.crs.to_wkt(),
                  dst_transform=dst_t, dst_crs="EPSG:3857", src_nodata=np.nan,
                  dst_nodata=np.nan, resampling=Resampling[resampling])
    return out


@functools.lru_cache(maxsize=32)
def _cmap_lut(name: str) -> np.ndarray:
    import matplotlib
    return (matplotlib.colormaps[name](np.linspace(0, 1, 256)) * 255).round().astype("uint8")


def colorize(values: np.ndarray, vis: Vis) -> np.ndarray:
    """RGBA uint8 ``(256, 256, 4)`` of tile ``values`` under ``vis``; alpha 0 where NaN."""
    scaled = (values - vis.vmin) / (vis.vmax - vis.vmin)
    if vis.bands is not None:
        rgb = np.clip(np.nan_to_num(scaled) * 255, 0, 255).round().astype("uint8")
        rgba = np.dstack([*rgb, np.full(rgb.shape[1:], 255, "uint8")])
        rgba[..., 3][np.isnan(values).any(axis=0)] = 0
        return rgba
    idx = np.clip(np.nan_to_num(scaled) * 255, 0, 255).round().astype("uint8")
    rgba = _cmap_lut(vis.cmap)[idx]
    rgba[..., 3][np.isnan(values)] = 0
    return rgba


def _select(da, vis: Vis, time: int | None):
    if "time" in da.dims:
        da = da.isel(time=time or 0)
    if vis.bands is not None:
        da = da.isel({vis.band_dim: list(vis.bands)})
    elif da.ndim > 2:
        raise TileError(f"a colormap tile needs a 2-D (y, x) chain; got dims {da.dims}. "
                        f"Pass vis bands= for RGB or select a band")
    return da


def render_tile(da, z: int, x: int, y: int, vis: Vis | None = None, *,
                time: int | None = None) -> np.ndarray:
    """RGBA uint8 ``(256, 256, 4)`` tile ``z/x/y`` of chain ``da`` under ``vis``."""
    vis = vis or Vis()
    return colorize(tile_values(_select(da, vis, time), z, x, y,
                                resampling=vis.resampling), vis)


def to_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an RGBA uint8 image."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class Layer:
    """A registered chain: ``chain`` (a DataArray, or a callable ``level -> DataArray``
    over an overview pyramid), its ``vis``, data ``bounds`` (degrees) and zoom range."""

    chain: object
    vis: Vis
    bounds: tuple[float, float, float, float]
    minzoom: int = 0
    maxzoom: int = 22
    pyramid: object = None  # overviews.Pyramid when tiles pick a level per zoom
    ntime: int = 0

    def source(self, z: int):
        if self.pyramid is None:
            return self.chain
        return self.pyramid.chain_for_zoom(z, self.chain)

    def meta(self) -> dict:
        return {"bounds": list(self.bounds), "minzoom": self.minzoom, "maxzoom": self.maxzoom,
                "vis": self.vis.to_dict(), "ntime": self.ntime, "tile_size": TILE}


def _lonlat_bounds(da):
    from rasterio.warp import transform_bounds
    g = _grid(da)
    left, bottom, right, top = g.bounds if hasattr(g, "bounds") else _bounds(g)
    w, s, e, n = transform_bounds(g.crs.to_wkt(), "EPSG:4326", left, bottom, right, top,
                                  densify_pts=21)
    return (w, max(s, -_MAX_LAT), e, min(n, _MAX_LAT))


def _bounds(g):
    t, (h, w) = g.transform, g.shape
    xs, ys = zip(*(t @ (c, r) for c in (0, w) for r in (0, h)), strict=False)
    return min(xs), min(ys), max(xs), max(ys)


class TileRegistry:
    """Registered chains by id, with an LRU cache of PNG tiles keyed by ``(id, z, x, y, t)``.

    >>> reg = TileRegistry(cache_size=8)
    >>> reg.cache_info()["maxsize"]
    8
    """

    def __init__(self, cache_size: int = 512):
        self._layers: dict[str, Layer] = {}
        self._cache: OrderedDict = OrderedDict()
        self._maxsize = cache_size
        self.hits = self.misses = 0
        self._ids = itertools.count()

    def register(self, chain, vis: Vis | dict | None = None, *, pyramid=None,
                 minzoom: int = 0, maxzoom: int = 22, id: str | None = None) -> str:
        """Register ``chain`` (a lazy DataArray with a CRS, or with ``pyramid=`` a callable
        applied to the pyramid level a zoom needs) and return its id."""
        vis = Vis(**vis) if isinstance(vis, dict) else (vis or Vis())
        probe = pyramid.chain_for_level(0, chain) if pyramid is not None else chain
        lid = id or f"t{next(self._ids)}"
        ntime = int(probe.sizes.get("time", 0))
        self._layers[lid] = Layer(chain, vis, _lonlat_bounds(probe), minzoom, maxzoom,
                                  pyramid, ntime)
        return lid

    def layer(self, lid: str) -> Layer:
        try:
            return self._layers[lid]
        except KeyError:
            raise KeyError(f"unknown tile id {lid!r}; registered: {sorted(self._layers)}") from None

    def __contains__(self, lid):
        return lid in self._layers

    def tile_png(self, lid: str, z: int, x: int, y: int, *, time: int | None = None) -> bytes:
        """PNG bytes of tile ``z/x/y`` of layer ``lid`` (cached)."""
        layer = self.layer(lid)
        if not layer.minzoom <= z <= layer.maxzoom:
            raise TileError(f"zoom z={z} is out of range for {lid!r}; expected "
                            f"{layer.minzoom} <= z <= {layer.maxzoom}")
        _check_tile(z, x, y)
        key = (lid, z, x, y, time)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        self.misses += 1
        png = to_png(render_tile(layer.source(z), z, x, y, layer.vis, time=time))
        self._cache[key] = png
        if len(self._cache) > self._maxsize:
            self._cache.popitem(last=False)
        return png

    def cache_info(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "maxsize": self._maxsize,
                "currsize": len(self._cache)}

    def cache_clear(self):
        self._cache.clear()
        self.hits = self.misses = 0

"""Map tile benchmarks: one 256×256 web-mercator PNG tile of a lazy chain.

``chain_tile``: normalized difference of two float32 bands (smooth terrain-like noise,
``benchmarks.data.dem_zarr`` seeds 0 and 1, zstd Zarr, 512-px chunks, EPSG:5070 30 m) →
threshold (``> 0``) → 3×3 focal mean, the zoom-12 tile at the raster's centre. stengine
uncached (``render_tile`` + PNG, only the chunks under the tile) and cached (the
registry's LRU cache); rio-tiler serves the precomputed chain result as a COG (written
with rasterio, deflate, 512-px tiles, overviews 2/4/8/16) as the peer.

``overview_tile``: a zoom-2 tile of the class raster (NLCD codes) through the overview
pyramid (mode) built by :func:`stengine.viz.overviews.build_overviews`;
``full_res_chunks_read`` counts level-0 chunk reads (must be 0). The bench size is GLC
(18 M px), not NLCD (1.69 G px): generating and pyramiding NLCD takes too long on the
shared machine.
"""

from __future__ import annotations

import numpy as np

from ._runner import Case, benchmark
from .data import cache, class_raster_zarr, dem_zarr

CHAIN_SIZES = {"tiny": "tiny", "bench": "glc"}


def _center_tile(da, z):
    from stengine.viz.tiles import _lonlat_bounds, tile_at
    w, s, e, n = _lonlat_bounds(da)
    return (z, *tile_at((w + e) / 2, (s + n) / 2, z))


@benchmark("tiles", "chain_tile", sizes=["tiny", "bench"])
def chain_tile(size):
    import stengine
    from stengine.viz.tiles import TileRegistry, Vis, render_tile, to_png

    s = CHAIN_SIZES[size]
    a = stengine.open_cube(dem_zarr(s, 512, 0))
    b = stengine.open_cube(dem_zarr(s, 512, 1))
    nd = stengine.ops.normalized_difference(a, b)
    chain = stengine.ops.focal_mean((nd > 0).astype("float32"), 3)
    vis = Vis(0, 1, "viridis")
    z, x, y = _center_tile(chain, 12)
    reg = TileRegistry()
    lid = reg.register(chain, vis)

    yield Case("stengine", lambda: to_png(render_tile(chain, z, x, y, vis)), items=65536,
               note="uncached: chunks under the tile, warp, PNG")
    yield Case("stengine (cached)", lambda: reg.tile_png(lid, z, x, y), items=65536,
               note="LRU cache hit", repeat=20)
    yield from _rio_tiler(chain, s, z, x, y)


def _rio_tiler(chain, s, z, x, y):
    try:
        from rio_tiler.io import Reader
    except ImportError:
        return
    import rasterio
    from rasterio.enums import Resampling

    from stengine.cube import get_grid
    path = cache() / f"tiles_chain_{s}.tif"
    if not path.exists():
        g = get_grid(chain)
        data = chain.values.astype("float32")
        with rasterio.open(path, "w", driver="GTiff", width=g.shape[1], height=g.shape[0],
                           count=1, dtype="float32", crs=g.crs.to_wkt(),
                           transform=g.transform, tiled=True, blockxsize=512,
                           blockysize=512, compress="deflate", nodata=np.nan) as dst:
            dst.write(data, 1)
            dst.build_overviews([2, 4, 8, 16], Resampling.average)

    def run():
        with Reader(str(path)) as r:
            img = r.tile(x, y, z, resampling_method="bilinear")
        img.rescale(((0, 1),))
        return img.render(img_format="PNG", colormap=None)

    yield Case("rio-tiler", run, items=65536, note="precomputed COG with overviews")


@benchmark("tiles", "overview_tile", sizes=["tiny", "bench"])
def overview_tile(size):
    from zarr.storage import LocalStore

    from stengine.viz.overviews import Pyramid, build_overviews
    from stengine.viz.tiles import TileRegistry, Vis

    s = {"tiny": "tiny", "bench": "glc"}[size]
    store = class_raster_zarr(s, 1024)
    pyr = Pyramid(store)
    if pyr.levels == 0:
        pyr = build_overviews(store, method="mode", min_size=256, chunks=256)
    reg = TileRegistry()
    lid = reg.register(None, Vis(0, 95, "tab20", resampling="nearest"), pyramid=pyr)
    z, x, y = _center_tile(pyr.open_level(0), 2)
    reads = []
    orig = LocalStore.get

    async def get(self, key, *a, **k):
        if self.root.name == store.name and key.startswith("landcover/c/"):  # data chunks
            reads.append(key)
        return await orig(self, key, *a, **k)

    def run():
        reg.cache_clear()
        reads.clear()
        LocalStore.get = get
        try:
            return reg.tile_png(lid, z, x, y)
        finally:
            LocalStore.get = orig

    yield Case("stengine", run, items=65536,
               note=f"level {pyr.level_for_zoom(z)} of {pyr.levels}",
               info=lambda: {"full_res_chunks_read": len(reads), "level": pyr.level_for_zoom(z)})

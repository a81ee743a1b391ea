"""Overview pyramids: a multiscale Zarr written by the engine, and the level a zoom needs.

Level 0 is the store itself; level ``k`` (``k >= 1``) halves the pixel count along y
and x of level ``k - 1`` (``mean`` ignoring NaN, ``mode`` for classes, or ``nearest``)
and is written with :func:`stengine.to_zarr` (atomically) to ``<store>.overviews/<k>``,
next to the store, so the store itself is left as it was. Each level is built from the
previous *written* level, so building level ``k`` never reads full resolution again.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TileError

__all__ = ["build_overviews", "Pyramid"]

METHODS = ("mean", "mode", "nearest")


def _mode2x2(block):
    """Most common value of each 2×2 cell of a (..., 2m, 2n) block (ties: the smallest)."""
    *lead, h, w = block.shape
    cells = block.reshape(*lead, h // 2, 2, w // 2, 2).swapaxes(-3, -2)
    flat = np.sort(cells.reshape(*lead, h // 2, w // 2, 4), axis=-1)
    counts = (flat[..., :, None] == flat[..., None, :]).sum(-1)
    return np.take_along_axis(flat, counts.argmax(-1)[..., None], -1)[..., 0]


def _halve(da, method: str):
    from ..cube.conventions import get_grid, set_grid
    from ..grid import Grid

    g = get_grid(da, dims=("y", "x"))
    ny, nx = (da.sizes["y"] // 2) * 2, (da.sizes["x"] // 2) * 2
    da = da.isel(y=slice(0, ny), x=slice(0, nx))
    if method == "nearest":
        out = da.isel(y=slice(0, None, 2), x=slice(0, None, 2))
    elif method == "mean":
        out = da.coarsen(y=2, x=2, boundary="trim").mean()
    else:
        # even chunks so each block holds whole 2x2 cells
        even = {d: max(2 * (c[0] // 2), 2) for d, c in zip(da.dims, da.chunks or (), strict=False)
                if d in ("y", "x")}
        data = da.chunk(even).data if da.chunks else da.data
        if hasattr(data, "map_blocks"):
            halved = (*data.chunks[:-2], *(tuple(n // 2 for n in c) for c in data.chunks[-2:]))
            red = data.map_blocks(_mode2x2, chunks=halved, dtype=data.dtype)
        else:
            red = _mode2x2(np.asarray(data))
        out = da.isel(y=slice(0, None, 2), x=slice(0, None, 2)).copy(data=red)
    t = g.transform @ g.transform.scale(2, 2)
    return set_grid(out.drop_vars(["y", "x", "spatial_ref"], errors="ignore"),
                    Grid(g.crs, t, (ny // 2, nx // 2)), dims=("y", "x"))


def build_overviews(store, *, method: str = "mean", min_size: int = 256,
                    chunks: int = 256) -> Pyramid:
    """Write overview levels of the Zarr cube at ``store`` until the smaller side is at
    most ``min_size`` px; returns the :class:`Pyramid`.

    ``method`` is ``"mean"`` (continuous values, NaN ignored), ``"mode"`` (classes) or
    ``"nearest"``; levels are chunked ``chunks`` px along y and x.
    """
    from ..io.zarr import open_cube, to_zarr

    if method not in METHODS:
        raise TileError(f"method={method!r}: expected one of {METHODS}")
    store = Path(store)
    root = Path(f"{store}.overviews")
    root.mkdir(exist_ok=True)
    cur = open_cube(store)
    k = 0
    while min(cur.sizes["y"], cur.sizes["x"]) > min_size:
        k += 1
        nxt = _halve(cur, method)
        nxt = nxt.chunk({"y": chunks, "x": chunks})
        to_zarr(nxt, root / str(k))
        cur = open_cube(root / str(k))
    return Pyramid(store)


@dataclass(frozen=True)
class Pyramid:
    """Levels of a store: 0 is ``store``, ``k`` is ``<store>.overviews/<k>``."""

    store: Path

    def __post_init__(self):
        object.__setattr__(self, "store", Path(self.store))

    @functools.cached_property
    def grid(self):
        """The level-0 grid (read once: opening the store reads its coordinate chunks)."""
        from ..cube.conventions import get_grid
        return get_grid(self.open_level(0), dims=("y", "x"))

    @property
    def levels(self) -> int:
        root = Path(f"{self.store}.overviews")
        ks = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.exists() else []
        return max(ks, default=0)

    def open_level(self, k: int):
        """The lazy cube of level ``k``."""
        from ..io.zarr import open_cube
        if not 0 <= k <= self.levels:
            raise TileError(f"level k={k} out of range; expected 0 <= k <= {self.levels}")
        # store chunks, not the merged "auto" ones: a tile reads only the chunks under it
        return open_cube(self.store if k == 0 else Path(f"{self.store}.overviews") / str(k),
                         chunks={})

    def level_for_zoom(self, z: int) -> int:
        """The coarsest level whose pixels are no larger than a zoom-``z`` tile pixel.

        Pixel sizes are compared in metres at the data's centre (source units for a
        projected CRS, degrees × 111 km × cos(lat) for a geographic one).
        """
        from .tiles import ORIGIN, TILE
        g = self.grid
        res = abs(g.transform.a)
        if g.crs is not None and g.crs.is_geographic:
            lat = g.transform.f + g.transform.e * g.shape[0] / 2
            res *= 111_320.0 * max(math.cos(math.radians(lat)), 0.01)
            tile_px = 2 * ORIGIN / TILE / (1 << z) * max(math.cos(math.radians(lat)), 0.01)
        else:
            tile_px = 2 * ORIGIN / TILE / (1 << z)
        k = int(math.floor(math.log2(tile_px / res))) if tile_px > res else 0
        return min(max(k, 0), self.levels)

    def chain_for_level(self, k: int, fn):
        return fn(self.open_level(k)) if callable(fn) else self.open_level(k)

    def chain_for_zoom(self, z: int, fn):
        """``fn`` (the chain's ops, a callable) applied to the level zoom ``z`` needs."""
        return self.chain_for_level(self.level_for_zoom(z), fn)

"""The grid of a gridded cube: CRS, affine transform and shape, and "same grid?" checks.

Conventions: the transform maps (col, row) of pixel *corners* to map coordinates,
GDAL style (``x = c + a*col + b*row``, ``y = f + d*col + e*row``); ``x``/``y``
coordinates of a DataArray are pixel *centres*; for north-up rasters ``e < 0`` and
``y`` runs from north to south (row 0 is the northern edge).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS

from .errors import GridMismatchError

__all__ = ["Grid", "parse_crs"]


@functools.lru_cache(maxsize=256)
def _crs_from_text(text: str) -> CRS:
    return CRS.from_user_input(text)


def parse_crs(crs) -> CRS | None:
    """Return a ``pyproj.CRS`` for ``crs`` (EPSG int, ``"EPSG:4326"``, WKT, rasterio/pyproj CRS)."""
    if crs is None:
        return None
    if isinstance(crs, CRS):
        return crs
    if hasattr(crs, "to_wkt"):  # rasterio.crs.CRS
        return _crs_from_text(crs.to_wkt())
    if isinstance(crs, int):
        return _crs_from_text(f"EPSG:{crs}")
    return _crs_from_text(str(crs))


def _crs_equal(a: CRS | None, b: CRS | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or a.equals(b, ignore_axis_order=True)


@dataclass(frozen=True)
class Grid:
    """A raster grid: ``crs`` (pyproj CRS or None), ``transform`` (Affine), ``shape`` (rows, cols).

    Examples
    --------
    >>> g = Grid.from_bbox((0, 0, 10, 5), resolution=1, crs=4326)
    >>> g.shape, g.res, g.bounds
    ((5, 10), (1.0, 1.0), (0.0, 0.0, 10.0, 5.0))
    >>> g.ys()[:2]  # pixel centres, north to south
    array([4.5, 3.5])
    """

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    def __post_init__(self):
        object.__setattr__(self, "crs", parse_crs(self.crs))
        object.__setattr__(self, "transform", Affine(*tuple(self.transform)[:6]))
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))

    def __repr__(self):
        if self.crs is None:
            crs = "None"
        else:
            epsg = self.crs.to_epsg(min_confidence=90)
            crs = f"EPSG:{epsg}" if epsg else repr(self.crs.name)
        b = ", ".join(f"{v:.6g}" for v in self.bounds)
        return (f"Grid(crs={crs}, shape={self.shape}, res={tuple(round(r, 12) for r in self.res)}, "
                f"bounds=({b}))")

    def __hash__(self):
        return hash((self.crs.to_wkt() if self.crs else None, tuple(self.transform), self.shape))

    # constructors ---------------------------------------------------------
    @classmethod
    def from_bbox(cls, bbox, resolution, crs=None) -> Grid:
        """Grid covering ``bbox = (left, bottom, right, top)`` with square or (xres, yres) pixels.

        The top-left corner is ``(left, top)``; rows run southwards.
        """
        left, bottom, right, top = map(float, bbox)
        xres, yres = (resolution, resolution) if np.isscalar(resolution) else resolution
        if not (xres > 0 and yres > 0):
            raise ValueError(f"resolution must be positive; got {resolution!r}")
        if not (right > left and top > bottom):
            raise ValueError("bbox must be (left, bottom, right, top) with right>left, "
                             f"top>bottom; "
                             f"got {bbox!r}")
        ncols = int(round((right - left) / xres))
        nrows = int(round((top - bottom) / yres))
        return cls(crs, Affine(xres, 0.0, left, 0.0, -yres, top), (nrows, ncols))

    @classmethod
    def from_coords(cls, x, y, crs=None, *, like=None) -> Grid:
        """Grid from regularly spaced pixel-centre coordinates ``x`` (columns) and ``y`` (rows).

        An axis with fewer than two coordinates does not say its pixel size (nor, when
        empty, where it starts): ``like`` (an ``Affine`` or :class:`Grid`, e.g. the
        transform a ``spatial_ref`` recorded) supplies them; without it the pixel is a
        unit step (``+1`` along x, ``-1`` along y) starting at 0.

        Examples
        --------
        >>> from affine import Affine
        >>> Grid.from_coords([15.0], [45.0], like=Affine(30, 0, 0, 0, -30, 60)).transform[:6]
        (30.0, 0.0, 0.0, 0.0, -30.0, 60.0)
        """
        x = np.asarray(x, dtype="f8").reshape(-1)
        y = np.asarray(y, dtype="f8").reshape(-1)
        if isinstance(like, Grid):
            like = like.transform
        ref = Affine(*tuple(like)[:6]) if like is not None else Affine(1.0, 0.0, 0.0, 0.0,
                                                                          -1.0, 0.0)
        dx = float(x[1] - x[0]) if x.size > 1 else float(ref.a)
        dy = float(y[1] - y[0]) if y.size > 1 else float(ref.e)
        for name, c, d in (("x", x, dx), ("y", y, dy)):
            if c.size > 2 and not np.allclose(np.diff(c), d, rtol=1e-6, atol=1e-9 * abs(d)):
                raise GridMismatchError(f"{name} coordinate is not regularly spaced; "
                                        "a raster grid needs constant pixel size")
            if not np.isfinite(c).all():
                raise GridMismatchError(f"{name} coordinate has NaN or infinite values; a "
                                        "raster grid needs finite pixel-centre coordinates")
        x0 = x[0] - dx / 2 if x.size else float(ref.c)
        y0 = y[0] - dy / 2 if y.size else float(ref.f)
        return cls(crs, Affine(dx, 0.0, x0, 0.0, dy, y0), (y.size, x.size))

    # properties -----------------------------------------------------------
    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        t, (h, w) = self.transform, self.shape
        xs = (t.c, t.c + t.a * w)
        ys = (t.f, t.f + t.e * h)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def is_geographic(self) -> bool:
        """True when the CRS is lon/lat in degrees."""
        return bool(self.crs is not None and self.crs.is_geographic)

    def xs(self) -> np.ndarray:
        """Pixel-centre x coordinates (float64), west to east for a north-up grid."""
        t = self.transform
        return t.c + t.a * (np.arange(self.shape[1]) + 0.5)

    def ys(self) -> np.ndarray:
        """Pixel-centre y coordinates (float64), north to south for a north-up grid."""
        t = self.transform
        return t.f + t.e * (np.arange(self.shape[0]) + 0.5)

    def window(self, rows: slice, cols: slice) -> Grid:
        """The sub-grid of rows ``rows`` and columns ``cols`` (e.g. one chunk)."""
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        return Grid(self.crs, self.transform @ Affine.translation(c0, r0), (r1 - r0, c1 - c0))

    # comparisons ----------------------------------------------------------
    def differences(self, other: Grid) -> list[str]:
        """What differs between two grids, in words (empty when they match)."""
        out = []
        if self.shape != other.shape:
            out.append(f"shape {other.shape} vs {self.shape}")
        if not _crs_equal(self.crs, other.crs):
            def name(c):
                return "none" if c is None else (c.to_string() if c.to_epsg() else c.name)
            out.append(f"CRS {name(other.crs)} vs {name(self.crs)}")
        tol = 1e-6 * min(self.res + other.res)
        if any(abs(p - q) > tol for p, q in zip(tuple(self.transform)[:6],
                                                  tuple(other.transform)[:6], strict=True)):
            out.append(f"transform {tuple(other.transform)[:6]} vs {tuple(self.transform)[:6]}")
        return out

    def __eq__(self, other):
        return isinstance(other, Grid) and not self.differences(other)

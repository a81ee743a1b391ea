"""``Window``: the neighbourhood of a focal op, as a small frozen value that knows its halo.

A window is a stack of 2-D weight planes over ``(time, y, x)`` offsets, always of odd
size along every axis so that it has a centre cell. A window over space only has one
time plane. Statistics (``focal_mean``, ``focal_max``, ...) use the window's
*footprint* (the cells with non-zero weight); ``focal_apply`` uses the weights.

Row offsets run the way array rows run: ``dy > 0`` is the next row, i.e. *south* on a
north-up raster; ``dx > 0`` is east. A window given as an array is laid out like the
raster (row 0 north), centred on the cell being computed.

Windows in cells are ready to use. Circles and annuli can also be given in map units
(``units="map"``: the CRS's own units; ``units="m"``: metres, projected CRS only); ops
turn those into cells with :meth:`Window.resolve` and the raster's cell size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Window"]

_UNITS = ("cells", "map", "m")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?(?:[x×]\s*(\d+)\s*)?$", re.IGNORECASE)


def _odd(n, what: str, spec) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"window: size along {what} must be an integer; got {n!r} in {spec!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"window: size along {what} must be >= 1; got {n} in {spec!r}")
    if n % 2 == 0:
        raise ValueError(f"window: size {n} along {what} is even; a focal window needs a centre "
                         f"cell, so sizes must be odd (got {spec!r}). Use {n - 1} or {n + 1}.")
    return n


def _ellipse(inner: float, outer: float, ry: float, rx: float) -> np.ndarray:
    """Cells whose centre distance d (in map units, cell size ry × rx) has inner <= d <= outer."""
    eps = 1e-9 * max(outer, 1e-300)  # cells exactly on the radius are in, despite rounding
    hy = int(math.floor(outer / ry + 1e-9))
    hx = int(math.floor(outer / rx + 1e-9))
    dy, dx = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    d = np.hypot(dy * ry, dx * rx)
    return (d <= outer + eps) & (d >= inner - eps)


@dataclass(frozen=True)
class Window:
    """A focal neighbourhood: weights over ``(time, y, x)`` offsets around a centre cell.

    Build one with :meth:`parse` (``3``, ``"3x3"``, ``(5, 7)``, ``(3, 5, 5)``, an array),
    :meth:`rectangle`, :meth:`circle`, :meth:`annulus` or :meth:`from_array`. Windows
    are frozen and hashable. ``halo`` is the number of cells a chunk needs from its
    neighbours along ``(time, y, x)``: half the size, rounded down.

    Examples
    --------
    >>> w = Window.parse("3x5")
    >>> w.shape, w.halo, w.size, w.is_rectangle
    ((1, 3, 5), (0, 1, 2), 15, True)
    >>> c = Window.circle(1)
    >>> c.footprint[0].astype(int)
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    >>> Window.parse((3, 5, 5)).halo   # 3 time steps × 5 × 5 cells
    (1, 2, 2)
    """

    kind: str
    shape: tuple[int, int, int]
    data: bytes = field(repr=False)  # float64 weights, C order, ``shape``
    pending: tuple | None = field(default=None, repr=False)  # map-unit spec, see resolve()
    label: str = field(default="", compare=False)

    # constructors ---------------------------------------------------------
    @classmethod
    def _from_weights(cls, kind, w, label, pending=None) -> Window:
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 2:
            w = w[None]
        return cls(kind, tuple(int(s) for s in w.shape), np.ascontiguousarray(w).tobytes(),
                   pending, label)

    @classmethod
    def rectangle(cls, ny: int, nx: int | None = None, *, time: int = 1) -> Window:
        """A full ``ny`` × ``nx`` rectangle of cells (``nx`` defaults to ``ny``), odd sizes,
        optionally ``time`` steps deep."""
        nx = ny if nx is None else nx
        return cls._rect(time, ny, nx, (time, ny, nx) if time != 1 else (ny, nx))

    @classmethod
    def _rect(cls, nt, ny, nx, spec) -> Window:
        nt, ny, nx = _odd(nt, "time", spec), _odd(ny, "y", spec), _odd(nx, "x", spec)
        label = f"{ny}x{nx}" if nt == 1 else f"{nt}x{ny}x{nx}"
        return cls._from_weights("rectangle", np.ones((nt, ny, nx)), label)

    square = rectangle

    @classmethod
    def circle(cls, radius: float, *, units: str = "cells", time: int = 1) -> Window:
        """Cells whose centre lies within ``radius`` of the centre cell's centre.

        ``units``: ``"cells"`` (default), ``"map"`` (the CRS's units, e.g. degrees on a
        lon/lat grid) or ``"m"`` (metres; needs a projected CRS). Map units are turned
        into cells with the raster's cell size (an ellipse in cells when the cells are
        not square); radius 0 is the centre cell alone.
        """
        return cls.annulus(0.0, radius, units=units, time=time, _kind="circle")

    @classmethod
    def annulus(cls, inner: float, outer: float, *, units: str = "cells", time: int = 1,
                _kind: str = "annulus") -> Window:
        """A ring: cells whose centre distance ``d`` satisfies ``inner <= d <= outer``.

        The centre cell is part of the ring only when ``inner == 0``. ``units`` as in
        :meth:`circle`.
        """
        for name, v in (("inner", inner), ("outer", outer)):
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) \
                    or not math.isfinite(v) or v < 0:
                raise ValueError(f"window: {_kind} {name} radius must be a finite number >= 0; "
                                 f"got {v!r}")
        if inner > outer:
            raise ValueError(f"window: annulus needs inner <= outer; got inner={inner}, "
                             f"outer={outer}")
        if units not in _UNITS:
            raise ValueError(f"window: units must be one of {_UNITS}; got {units!r}")
        nt = _odd(time, "time", time)
        label = (f"circle({outer:g}" if _kind == "circle" else f"annulus({inner:g}, {outer:g}") \
            + ("" if units == "cells" else f", units={units!r}") \
            + ("" if nt == 1 else f", time={nt}") + ")"
        if units != "cells":
            return cls(_kind, (nt, 0, 0), b"", (_kind, float(inner), float(outer), units, nt),
                       label)
        fp = _ellipse(float(inner), float(outer), 1.0, 1.0)
        if not fp.any():
            raise ValueError(f"window: {label} contains no cell centre; widen the ring")
        return cls._from_weights(_kind, np.repeat(fp[None], nt, axis=0), label)

    @classmethod
    def from_array(cls, weights) -> Window:
        """A window from a 2-D ``(y, x)`` or 3-D ``(time, y, x)`` array of odd sizes.

        Booleans select cells; numbers are weights for :func:`~stengine.ops.focal_apply`
        (statistics use the cells with non-zero weight). Row 0 is the northern row.
        """
        w = np.asarray(weights)
        if w.ndim not in (2, 3):
            raise ValueError(f"window: a window array must be 2-D (y, x) or 3-D (time, y, x); "
                             f"got shape {w.shape}")
        if w.dtype.kind not in "biuf":
            raise TypeError(f"window: a window array must be bool or numeric; got {w.dtype}")
        for n, what in zip(w.shape[::-1], ("x", "y", "time"), strict=False):
            _odd(int(n), what, f"array of shape {w.shape}")
        w = w.astype(np.float64)
        if not np.isfinite(w).all():
            raise ValueError("window: window weights must be finite (no NaN or inf)")
        if not (w != 0).any():
            raise ValueError("window: the window array has no non-zero cell")
        label = f"array{tuple(w.shape)}"
        return cls._from_weights("array", w, label)

    @classmethod
    def parse(cls, window) -> Window:
        """Turn any accepted window spelling into a :class:`Window`.

        ``int`` n → n × n square; ``"3x3"``, ``"3x5"`` (rows × columns), ``"3x5x5"``
        (time × rows × columns); a tuple ``(ny, nx)`` or ``(nt, ny, nx)``; a 2-D/3-D array
        (see :meth:`from_array`); or a :class:`Window` (returned as is).
        """
        if isinstance(window, Window):
            return window
        if isinstance(window, bool):
            raise TypeError(f"window must be an int, a 'NxM' string, a tuple, an array or a "
                            f"Window; got {window!r}")
        if isinstance(window, int | np.integer):
            return cls._rect(1, window, window, window)
        if isinstance(window, str):
            m = _SIZE_RE.match(window)
            if not m:
                raise ValueError(f"window: cannot parse {window!r}; expected e.g. '3x3', '5x7' "
                                 "or '3x5x5' (time x rows x columns)")
            sizes = [int(g) for g in m.groups() if g is not None]
            if len(sizes) == 1:
                sizes = sizes * 2
            if len(sizes) == 2:
                sizes = [1, *sizes]
            return cls._rect(*sizes, window)
        if isinstance(window, tuple | list) and all(
                isinstance(s, int | np.integer) and not isinstance(s, bool) for s in window):
            if len(window) == 2:
                return cls._rect(1, int(window[0]), int(window[1]), window)
            if len(window) == 3:
                return cls._rect(*(int(s) for s in window), window)
            raise ValueError(f"window: a tuple window is (ny, nx) or (nt, ny, nx); got {window!r}")
        if isinstance(window, np.ndarray) or hasattr(window, "__array__"):
            return cls.from_array(np.asarray(window))
        raise TypeError(f"window must be an int, a 'NxM' string, a tuple, an array or a Window; "
                        f"got {type(window).__name__} {window!r}")

    # resolution of map units ------------------------------------------------
    def resolve(self, grid=None) -> Window:
        """This window in cells, using ``grid`` (a :class:`~stengine.grid.Grid`) for map units.

        Windows already in cells are returned unchanged. ``units="m"`` needs a projected
        CRS (its linear unit converted to metres); a geographic (lon/lat) grid raises,
        since a metre radius would be mixed with degree-sized cells.
        """
        if self.pending is None:
            return self
        kind, inner, outer, units, nt = self.pending
        if grid is None:
            raise ValueError(f"window: {self.label} is in map units; pass the raster's grid to "
                             "resolve() (focal ops do this)")
        rx, ry = grid.res
        if units == "m":
            crs = grid.crs
            if crs is None:
                raise ValueError(f"window: {self.label} is in metres but the raster has no CRS, "
                                 "so its cell size in metres is unknown. Set a CRS or use "
                                 "units='cells'.")
            if crs.is_geographic:
                raise ValueError(
                    f"window: {self.label} is in metres but the raster is on a geographic "
                    f"(lon/lat) grid with cells of {rx:g}° × {ry:g}°; a metre radius would mix "
                    "metres and degrees. Use units='cells', units='map' (degrees), or "
                    "reproject to a projected CRS.")
            factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
            rx, ry = rx * factor, ry * factor
        fp = _ellipse(inner, outer, ry, rx)
        if not fp.any():
            raise ValueError(f"window: {self.label} contains no cell centre on a grid with cells "
                             f"of {rx:g} × {ry:g}")
        return Window._from_weights(kind, np.repeat(fp[None], nt, axis=0), self.label)

    # properties -------------------------------------------------------------
    def _need_cells(self):
        if self.pending is not None:
            raise ValueError(f"window: {self.label} is in map units; call .resolve(grid) first")

    @property
    def weights(self) -> np.ndarray:
        """Weights as a read-only float64 array of shape ``(time, y, x)``."""
        self._need_cells()
        w = np.frombuffer(self.data, dtype=np.float64).reshape(self.shape)
        return w

    @property
    def footprint(self) -> np.ndarray:
        """Cells in the window (non-zero weight), bool ``(time, y, x)``."""
        return self.weights != 0

    @property
    def halo(self) -> tuple[int, int, int]:
        """Cells needed beyond a chunk's edge along ``(time, y, x)``: ``size // 2`` each."""
        self._need_cells()
        return tuple(s // 2 for s in self.shape)

    @property
    def size(self) -> int:
        """Number of cells in the footprint."""
        return int(self.footprint.sum())

    @property
    def is_rectangle(self) -> bool:
        """True when every cell of the bounding box is in the footprint with weight 1."""
        return bool((self.weights == 1).all())

    @property
    def has_time(self) -> bool:
        """True when the window spans more than one time step."""
        return self.shape[0] > 1

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, weights)`` of footprint cells: int64 ``(n, 3)`` of ``(t, y, x)`` indices
        into the window's box (0-based, centre at ``halo``) and float64 ``(n,)`` weights,
        in C order."""
        w = self.weights
        idx = np.argwhere(w != 0).astype(np.int64)
        return idx, w[w != 0].astype(np.float64)

    def runs(self) -> np.ndarray:
        """The footprint as horizontal runs: int64 ``(n, 4)`` of ``(t, y, x_start, x_stop)``
        (box indices, stop exclusive), in C order."""
        fp = self.footprint
        out = []
        for t in range(fp.shape[0]):
            for y in range(fp.shape[1]):
                row = np.r_[False, fp[t, y], False].astype(np.int8)
                d = np.diff(row)
                for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0], strict=True):
                    out.append((t, y, a, b))
        return np.asarray(out, dtype=np.int64).reshape(-1, 4)

    def __repr__(self):
        return f"Window({self.label or self.kind})"

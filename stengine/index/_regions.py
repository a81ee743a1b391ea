"""Regions on the sphere that covers and exact filters understand: caps, lon/lat boxes, polygons.

All angles are degrees; longitudes may be given in any range and wrap (360-periodic).
Each region offers ``contains(lon, lat)`` (the exact filter of a query) and a
``_descriptor()`` for the numba cover kernels: a union of convexes (rows of halfspaces
``n . p >= d``) or a polygon in a gnomonic plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import IndexRangeError
from . import _geom

__all__ = ["Region", "Cap", "Box", "Polygon", "as_region"]

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
_MAX_POLY_RADIUS = 80.0  # degrees from the polygon's centre to its farthest vertex


def _unit(lon, lat):
    # wrap in degrees first (fmod is exact), as HTM's lon/lat -> id does: radians of a
    # huge longitude would round to another meridian than the one its trixel is on
    lon = np.radians(np.fmod(np.asarray(lon, dtype=np.float64), 360.0))
    lat = np.radians(np.asarray(lat, dtype=np.float64))
    c = np.cos(lat)
    return c * np.cos(lon), c * np.sin(lon), np.sin(lat)


def _check_lat(name, lat, where):
    lat = np.asarray(lat, dtype=np.float64)
    bad = ~((lat >= -90.0) & (lat <= 90.0))
    if bad.any():
        v = lat.ravel()[np.flatnonzero(bad.ravel())[0]]
        raise IndexRangeError(f"{where}: {name} must be a latitude in [-90, 90] degrees; got {v}")


def _check_lon(name, lon, where):
    lon = np.asarray(lon, dtype=np.float64)
    bad = ~np.isfinite(lon)
    if bad.any():
        v = lon.ravel()[np.flatnonzero(bad.ravel())[0]]
        raise IndexRangeError(f"{where}: {name} must be a finite longitude in degrees; got {v}")


class Region:
    """A region on the sphere (base class of :class:`Cap`, :class:`Box`, :class:`Polygon`)."""

    def contains(self, lon, lat) -> np.ndarray:  # pragma: no cover - abstract
        """Boolean mask of the points (degrees) that lie in the region (boundary included)."""
        raise NotImplementedError

    @property
    def bbox(self) -> tuple[float, float, float, float]:  # pragma: no cover - abstract
        """(lon_min, lat_min, lon_max, lat_max) in degrees enclosing the region;
        ``lon_max < lon_min`` when it crosses the antimeridian."""
        raise NotImplementedError

    def _descriptor(self):  # pragma: no cover - abstract
        raise NotImplementedError


def _convex_descriptor(convexes):
    """(kind, hs, conv, poly, frame, cosr) for a union of convexes (lists of (n, d))."""
    rows, offs = [], [0]
    for cv in convexes:
        rows.extend([*n, d] for n, d in cv)
        offs.append(len(rows))
    hs = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return (_geom.KIND_CONVEX, hs, np.array(offs, dtype=np.int64), np.zeros((1, 2)),
            np.zeros((3, 3)), 0.0)


@dataclass(frozen=True)
class Cap(Region):
    """A spherical cap: points within ``radius`` degrees (great-circle) of ``(lon, lat)``.

    Examples
    --------
    >>> saa = Cap(-45.0, -30.0, 45.0)     # the South Atlantic Anomaly query of the paper
    >>> saa.contains([-45.0, 100.0], [-30.0, 0.0]).tolist()
    [True, False]
    """

    lon: float
    lat: float
    radius: float

    def __post_init__(self):
        _check_lon("lon", self.lon, "Cap")
        _check_lat("lat", self.lat, "Cap")
        if not (0.0 < float(self.radius) <= 180.0):
            raise IndexRangeError(f"Cap: radius must be in (0, 180] degrees; got {self.radius}")
        for f in ("lon", "lat", "radius"):
            object.__setattr__(self, f, float(getattr(self, f)))

    @property
    def centre_xyz(self):
        return tuple(float(v) for v in _unit(self.lon, self.lat))

    def contains(self, lon, lat):
        x, y, z = _unit(lon, lat)
        cx, cy, cz = self.centre_xyz
        # chord length: accurate for small caps, where 1 - cos(r) would cancel
        chord2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        return chord2 <= 4.0 * math.sin(math.radians(self.radius) / 2.0) ** 2

    @property
    def bbox(self):
        if self.lat + self.radius >= 90.0 or self.lat - self.radius <= -90.0:
            return (-180.0, max(-90.0, self.lat - self.radius), 180.0,
                    min(90.0, self.lat + self.radius))
        dlon = math.degrees(math.asin(min(1.0, math.sin(math.radians(self.radius))
                                          / math.cos(math.radians(self.lat)))))
        lo = (self.lon - dlon + 180.0) % 360.0 - 180.0
        hi = (self.lon + dlon + 180.0) % 360.0 - 180.0
        return (lo, self.lat - self.radius, hi, self.lat + self.radius)

    def _descriptor(self):
        return _convex_descriptor([[(self.centre_xyz, math.cos(math.radians(self.radius)))]])


@dataclass(frozen=True)
class Box(Region):
    """A lon/lat box: ``lat_min <= lat <= lat_max``, lon from ``lon_min`` east to ``lon_max``.

    Meridian edges are great circles and latitude edges are parallels (small circles),
    so the box is exactly the set of points with those lon/lat bounds. ``lon_max <
    lon_min`` (e.g. ``Box(170, -10, -170, 10)``) crosses the antimeridian; a width of
    360 or more is the whole latitude band.

    Examples
    --------
    >>> Box(-7.5, -90, 7.5, 90).contains([0.0, 7.5, 8.0, 365.0], [0, 0, 0, 89]).tolist()
    [True, True, False, True]
    """

    lon_min: float
    lat_min: float
    lon_max: float
    lat_max: float

    def __post_init__(self):
        for f in ("lon_min", "lon_max"):
            _check_lon(f, getattr(self, f), "Box")
        for f in ("lat_min", "lat_max"):
            _check_lat(f, getattr(self, f), "Box")
        if self.lat_min > self.lat_max:
            raise IndexRangeError(f"Box: lat_min must be <= lat_max; got lat_min={self.lat_min}, "
                                  f"lat_max={self.lat_max}")
        for f in ("lon_min", "lat_min", "lon_max", "lat_max"):
            object.__setattr__(self, f, float(getattr(self, f)))

    @property
    def width(self) -> float:
        """Longitude extent in degrees, in [0, 360]."""
        d = self.lon_max - self.lon_min
        return 360.0 if d >= 360.0 else d % 360.0

    def contains(self, lon, lat):
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        ok = (lat >= self.lat_min) & (lat <= self.lat_max)
        if self.width >= 360.0:
            return ok
        # fmod first (exact): "lon - lon_min" would lose a small lon_min next to a huge lon
        d = np.fmod(lon, 360.0) - math.fmod(self.lon_min, 360.0)
        return ok & (np.mod(d, 360.0) <= self.width)

    @property
    def bbox(self):
        if self.width >= 360.0:
            return (-180.0, self.lat_min, 180.0, self.lat_max)
        return (self.lon_min, self.lat_min, self.lon_max, self.lat_max)

    def _descriptor(self):
        lat_hs = []
        if self.lat_min > -90.0:
            lat_hs.append(((0.0, 0.0, 1.0), math.sin(math.radians(self.lat_min))))
        if self.lat_max < 90.0:
            lat_hs.append(((0.0, 0.0, -1.0), -math.sin(math.radians(self.lat_max))))
        w = self.width
        if w >= 360.0:
            return _convex_descriptor([lat_hs or [((0.0, 0.0, 1.0), -1.0)]])
        # a lune wider than 180 degrees is not convex: split it in two halves
        parts = [(self.lon_min, w)] if w <= 180.0 else [(self.lon_min, w / 2),
                                                          (self.lon_min + w / 2, w / 2)]
        convexes = []
        for lo, width in parts:
            lo = math.fmod(lo, 360.0)  # exact: radians of a huge longitude would round
            a, b = math.radians(lo), math.radians(lo + width)
            east_of_a = ((-math.sin(a), math.cos(a), 0.0), 0.0)
            west_of_b = ((math.sin(b), -math.cos(b), 0.0), 0.0)
            convexes.append([east_of_a, west_of_b, *lat_hs])
        return _convex_descriptor(convexes)


class Polygon(Region):
    """A spherical polygon whose edges are great-circle arcs between consecutive vertices.

    Parameters
    ----------
    lon, lat : sequence of float
        Vertices in degrees, in order (either orientation; a repeated closing vertex
        is dropped). Self-intersecting rings follow the even-odd rule.

    The polygon must fit within 80 degrees of the centroid of its vertices (split
    larger ones). Edges are great circles, not parallels: densify an east-west edge
    that should follow a line of latitude.

    Examples
    --------
    >>> tri = Polygon([0, 10, 0], [0, 0, 10])
    >>> tri.contains([2.0, 9.0], [2.0, 9.0]).tolist()
    [True, False]
    """

    def __init__(self, lon, lat):
        lon = np.asarray(lon, dtype=np.float64).ravel()
        lat = np.asarray(lat, dtype=np.float64).ravel()
        if lon.shape != lat.shape:
            raise IndexRangeError(f"Polygon: lon and lat must have the same length; got "
                                  f"{lon.size} and {lat.size}")
        _check_lon("lon", lon, "Polygon")
        _check_lat("lat", lat, "Polygon")
        x, y, z = _unit(lon, lat)
        v = np.stack([x, y, z], axis=1)
        if len(v) > 1 and np.allclose(v[0], v[-1], atol=1e-15):
            v, lon, lat = v[:-1], lon[:-1], lat[:-1]
        if len(v) < 3:
            raise IndexRangeError(f"Polygon: needs at least 3 distinct vertices; got {len(v)}")
        c = v.sum(axis=0)
        if np.linalg.norm(c) < 1e-9:
            raise IndexRangeError("Polygon: the vertices' centroid is at the centre of the "
                                  "sphere; the polygon is too large or degenerate. Split it.")
        c /= np.linalg.norm(c)
        cosr = float(np.min(v @ c))
        if cosr < math.cos(math.radians(_MAX_POLY_RADIUS)):
            raise IndexRangeError(
                f"Polygon: vertices reach {math.degrees(math.acos(max(-1.0, cosr))):.1f} degrees "
                f"from their centroid; at most {_MAX_POLY_RADIUS:.0f} is supported. Split the "
                "polygon into smaller ones (a union of covers is a cover).")
        e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0.0, 0.0], c)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(c, e1)
        w = v @ c
        self._frame = np.stack([c, e1, e2])
        self._plane = np.ascontiguousarray(np.stack([(v @ e1) / w, (v @ e2) / w], axis=1))
        self._cosr = cosr
        self.lon = tuple(float(a) for a in lon)
        self.lat = tuple(float(a) for a in lat)

    def __repr__(self):
        return f"Polygon({len(self.lon)} vertices)"

    def __eq__(self, other):
        return isinstance(other, Polygon) and (self.lon, self.lat) == (other.lon, other.lat)

    def __hash__(self):
        return hash((self.lon, self.lat))

    def contains(self, lon, lat):
        x, y, z = (np.ascontiguousarray(np.broadcast_to(a, np.broadcast(lon, lat).shape),
                                        dtype=np.float64) for a in _unit(lon, lat))
        out = np.empty(x.shape, bool)
        _geom.points_in_polygon(self._plane, self._frame, x.ravel(), y.ravel(), z.ravel(),
                                out.reshape(-1))
        return out

    @property
    def bbox(self):
        lon = np.asarray(self.lon)
        lat = np.asarray(self.lat)
        # great-circle edges bulge poleward of their vertices: add each edge's extreme
        lat_lo, lat_hi = float(lat.min()), float(lat.max())
        x, y, z = _unit(lon, lat)
        v = np.stack([x, y, z], axis=1)
        for a, b in zip(v, np.roll(v, -1, axis=0), strict=True):
            g = np.cross(a, b)
            if np.linalg.norm(g) == 0.0:
                continue
            g /= np.linalg.norm(g)
            for pole in (1.0, -1.0):
                t = np.array([0.0, 0.0, pole]) - pole * g[2] * g
                if np.linalg.norm(t) == 0.0:
                    continue
                t /= np.linalg.norm(t)
                if np.dot(np.cross(a, t), g) >= 0 and np.dot(np.cross(t, b), g) >= 0:
                    tl = math.degrees(math.asin(max(-1.0, min(1.0, t[2]))))
                    lat_lo, lat_hi = min(lat_lo, tl), max(lat_hi, tl)
        north, south = self.contains([0.0, 0.0], [90.0, -90.0])
        if north or south:
            return (-180.0, -90.0 if south else lat_lo, 180.0, 90.0 if north else lat_hi)
        c = self._frame[0]
        clon = math.degrees(math.atan2(c[1], c[0]))
        rel = (lon - clon + 180.0) % 360.0 - 180.0
        lo = (clon + rel.min() + 180.0) % 360.0 - 180.0
        hi = (clon + rel.max() + 180.0) % 360.0 - 180.0
        return (lo, lat_lo, hi, lat_hi)

    def _descriptor(self):
        return (_geom.KIND_POLYGON, np.zeros((1, 4)), np.zeros(2, np.int64), self._plane,
                self._frame, self._cosr)


def as_region(region, *, where: str = "region") -> Region | None:
    """Turn a region argument into a :class:`Region`.

    Accepts a Region, ``None`` (everywhere), a 4-tuple ``(lon_min, lat_min, lon_max,
    lat_max)`` (a :class:`Box`), or a shapely Polygon in lon/lat (its exterior ring,
    with great-circle edges).
    """
    if region is None or isinstance(region, Region):
        return region
    if isinstance(region, tuple | list) and len(region) == 4 and all(
            np.isscalar(v) for v in region):
        return Box(*region)
    if getattr(region, "geom_type", None) == "Polygon":
        xs, ys = region.exterior.coords.xy
        return Polygon(list(xs), list(ys))
    raise TypeError(f"{where} must be a Cap, Box, Polygon, a (lon_min, lat_min, lon_max, lat_max) "
                    f"tuple or a shapely Polygon; got {type(region).__name__}")

"""The Hierarchical Triangular Mesh (HTM): SDSS ids, point lookup, trixel geometry, covers.

Conventions (DESIGN.md, "Index conventions"), shared with other HTM libraries (SDSS,
esutil, lsst-sphgeom):

* Level 0 is the octahedron's 8 faces S0..S3, N0..N3 with ids 8..15; each level
  appends 2 bits (children ``4*id + 0..3``, parent ``id >> 2``), so a level-L id has
  ``2L + 4`` bits, and the descendants of one trixel at a finer level form one
  contiguous id range. Levels 0..29 (a level-29 trixel is ~2 cm across; level 12 ~2 km,
  level 13 ~1 km).
* Child k of (v0, v1, v2) is (v0, w2, w1), (v1, w0, w2), (v2, w1, w0), (w0, w1, w2)
  for the normalised great-circle midpoints w0 = mid(v1, v2), w1 = mid(v0, v2),
  w2 = mid(v0, v1).
* Angles are degrees. Longitudes wrap (any finite value); latitudes must be in
  [-90, 90].

**Tie rule** (points exactly on an edge). Level 0 is decided from lon/lat: the
equator belongs to the north (lat >= 0 is N); the meridians 0, 90, 180 and 270 belong
to the face on their east (lon wraps to [0, 360) and each face takes
``[90q, 90(q+1))``). Below level 0, a point whose orientation test against an inner
edge is exactly 0 goes to the corner child (0, then 1, then 2) rather than the centre
child 3. Orientation tests use ``((a+b) x (b-a)) . p``, which stays accurate for the
short edges of deep levels, so points near edges at level 20+ land in the trixel that
exact arithmetic would choose (up to the ~1e-16 rounding of the point itself).

Examples
--------
>>> lonlat_to_id([10.0], [20.0], 3)            # the worked example of DESIGN.md
array([1005], dtype=uint64)
>>> id_to_name(1005), name_to_id("N3231")
('N3231', 1005)
>>> int(parent(1005)), children(251).tolist()
(251, [1004, 1005, 1006, 1007])
>>> cover_cap(10.0, 20.0, 1.0, 5).tolist()   # sorted half-open id ranges at level 5
[[16089, 16094], [16095, 16096]]
"""

from __future__ import annotations

import numpy as np

from ..errors import IndexRangeError
from . import _geom, ranges
from ._regions import EARTH_RADIUS_KM, Box, Cap, Polygon, Region, as_region

__all__ = [
    "MAX_LEVEL",
    "lonlat_to_id",
    "id_level",
    "parent",
    "children",
    "descendants",
    "id_to_name",
    "name_to_id",
    "vertices",
    "centre",
    "area",
    "cover",
    "cover_cap",
    "cover_box",
    "cover_polygon",
    "Region",
    "Cap",
    "Box",
    "Polygon",
    "EARTH_RADIUS_KM",
]

MAX_LEVEL = 29
_EPS = 1e-12  # radians of slack in cover tests (~6 um on Earth): covers stay complete
_FACE_NAMES = ["S0", "S1", "S2", "S3", "N0", "N1", "N2", "N3"]


def check_level(level, *, where: str, name: str = "level") -> int:
    """Return ``level`` as an int, or raise :class:`IndexRangeError` if not in 0..29."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not (
            0 <= int(level) <= MAX_LEVEL):
        raise IndexRangeError(f"{where}: {name} must be an integer HTM level in 0..{MAX_LEVEL}; "
                              f"got {level!r}")
    return int(level)


def lonlat_block(lon, lat, level, *, where: str = "lonlat_to_id"):
    """:func:`lonlat_to_id` on numpy input; errors name ``where``."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    try:
        lon_b, lat_b = np.broadcast_arrays(lon, lat)
    except ValueError:
        raise ValueError(f"{where}: lon and lat must broadcast together; got shapes "
                         f"{lon.shape} and {lat.shape}") from None
    shape = lon_b.shape
    lon_f = np.ascontiguousarray(lon_b).reshape(-1)
    lat_f = np.ascontiguousarray(lat_b).reshape(-1)
    out = np.empty(lon_f.size, np.uint64)
    bad = _geom.lonlat_to_id(lon_f, lat_f, level, out)
    if bad >= 0:
        if not np.isfinite(lon_f[bad]):
            raise IndexRangeError(f"{where}: lon must be finite degrees (any finite value "
                                  f"wraps); got lon[{bad}] = {lon_f[bad]}. Drop or fill it.")
        raise IndexRangeError(f"{where}: lat must be in [-90, 90] degrees; got lat[{bad}] = "
                              f"{lat_f[bad]}. Drop or fill it; are lon and lat swapped, or is "
                              "the data projected?")
    return out.reshape(shape)


def lonlat_to_id(lon, lat, level: int):
    """HTM ids of points given in degrees.

    Parameters
    ----------
    lon, lat : array_like or dask arrays
        Longitude (any finite value; wraps) and latitude in [-90, 90], degrees;
        broadcast together.
    level : int
        HTM level, 0..29.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``uint64`` ids of the broadcast shape; lazy for dask input.

    Raises
    ------
    IndexRangeError
        A latitude outside [-90, 90], a non-finite longitude, or a bad level.

    Examples
    --------
    >>> lonlat_to_id([10.0, 10.0, 10.0], [20.0, 20.0, 20.0], 0).tolist()
    [15, 15, 15]
    >>> int(lonlat_to_id(0.0, 0.0, 0)), int(lonlat_to_id(0.0, -1e-9, 0))  # tie rule
    (15, 8)
    """
    level = check_level(level, where="lonlat_to_id")
    if hasattr(lon, "dask") or hasattr(lat, "dask"):
        import dask.array as dsa

        lon, lat = dsa.broadcast_arrays(dsa.asarray(lon), dsa.asarray(lat))
        return dsa.map_blocks(lonlat_block, lon, lat, level, dtype=np.uint64)
    return lonlat_block(lon, lat, level)


def _as_ids(ids, where):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise IndexRangeError(f"{where}: HTM ids must be integers; got dtype {ids.dtype}")
    if ids.dtype.kind == "i" and (ids < 8).any():
        raise IndexRangeError(f"{where}: {np.atleast_1d(ids)[np.atleast_1d(ids < 8)][0]} is not "
                              "an HTM id (ids are >= 8; 8..15 are the level-0 faces)")
    return ids.astype(np.uint64)


def id_level(ids) -> np.ndarray:
    """Level of each id (``(bit_length - 4) / 2``); raises for values that are not HTM ids.

    >>> id_level([8, 15, 62, 1005]).tolist()
    [0, 0, 1, 3]
    """
    ids = _as_ids(ids, "id_level")
    bl = np.zeros(ids.shape, np.int64)  # bit length, by binary search on the bits
    v = np.atleast_1d(ids).copy().reshape(ids.shape)
    for s in (32, 16, 8, 4, 2, 1):
        big = v >= (np.uint64(1) << np.uint64(s))
        bl[big] += s
        v[big] >>= np.uint64(s)
    bl += (v > 0)
    bad = (bl < 4) | (bl % 2 == 1) | (bl > 2 * MAX_LEVEL + 4)
    if bad.any():
        first = int(np.atleast_1d(ids)[np.atleast_1d(bad)][0])
        raise IndexRangeError(f"id_level: {first} is not an HTM id (a level-L id has 2L+4 bits "
                              "and starts with binary 1, e.g. 8..15 at level 0)")
    return (bl - 4) // 2


def parent(ids, level: int | None = None) -> np.ndarray:
    """The ancestor of each id at ``level`` (default: one level up).

    >>> parent([1005, 1006], 1).tolist()
    [62, 62]
    """
    ids = _as_ids(ids, "parent")
    lv = id_level(ids)
    target = lv - 1 if level is None else np.full(lv.shape, check_level(level, where="parent"))
    if np.any(target < 0) or np.any(target > lv):
        raise IndexRangeError(f"parent: level must be between 0 and the ids' level; got "
                              f"{'one up' if level is None else level} for ids of level "
                              f"{int(np.min(lv))}..{int(np.max(lv))}")
    return ids >> (2 * (lv - target)).astype(np.uint64)


def children(ids) -> np.ndarray:
    """The 4 children of each id: shape ``ids.shape + (4,)``."""
    ids = _as_ids(ids, "children")
    if np.any(id_level(ids) >= MAX_LEVEL):
        raise IndexRangeError(f"children: level-{MAX_LEVEL} trixels have no children")
    return (ids[..., None] << np.uint64(2)) + np.arange(4, dtype=np.uint64)


def descendants(ids, level: int) -> np.ndarray:
    """Half-open id ranges ``[start, stop)`` of each trixel's descendants at ``level``.

    Returns shape ``ids.shape + (2,)``.

    >>> descendants([15], 2).tolist()
    [[240, 256]]
    """
    ids = _as_ids(ids, "descendants")
    level = check_level(level, where="descendants")
    lv = id_level(ids)
    if np.any(lv > level):
        raise IndexRangeError(f"descendants: level {level} is coarser than the ids' level "
                              f"{int(np.max(lv))}")
    s = (2 * (level - lv)).astype(np.uint64)
    return np.stack([ids << s, (ids + np.uint64(1)) << s], axis=-1)


def id_to_name(ids):
    """Names like ``"N3231"`` (face, then one digit per level); a str for a scalar id."""
    scalar = np.ndim(ids) == 0
    arr = np.atleast_1d(_as_ids(ids, "id_to_name")).ravel()
    lv = id_level(arr)
    names = []
    for i, level in zip(arr.tolist(), lv.tolist(), strict=True):
        digits = "".join(str((i >> (2 * s)) & 3) for s in range(level - 1, -1, -1))
        names.append(_FACE_NAMES[(i >> (2 * level)) - 8] + digits)
    return names[0] if scalar else np.array(names)


def name_to_id(names):
    """Inverse of :func:`id_to_name`; an int for a single name."""
    scalar = isinstance(names, str)
    out = []
    for nm in [names] if scalar else list(names):
        if not isinstance(nm, str):
            raise TypeError(f"name_to_id: names must be HTM names (str) like 'N3231'; got "
                            f"{type(nm).__name__} {nm!r}. For ids use id_to_name.")
        if (len(nm) < 2 or nm[:2] not in _FACE_NAMES or any(c not in "0123" for c in nm[2:])
                or len(nm) - 2 > MAX_LEVEL):
            raise IndexRangeError(f"name_to_id: {nm!r} is not an HTM name (S0..S3 or N0..N3, "
                                  f"then up to {MAX_LEVEL} digits 0-3)")
        v = 8 + _FACE_NAMES.index(nm[:2])
        for c in nm[2:]:
            v = (v << 2) | int(c)
        out.append(v)
    return out[0] if scalar else np.array(out, dtype=np.uint64)


def _vertices_xyz(ids) -> np.ndarray:
    ids = _as_ids(ids, "vertices")
    lv = id_level(ids)
    out = np.empty((ids.size, 9))
    _geom.id_vertices(np.ascontiguousarray(ids).reshape(-1),
                      np.ascontiguousarray(lv).reshape(-1), out)
    return out.reshape(*ids.shape, 3, 3)


def _to_lonlat(xyz):
    lon = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(xyz[..., 2], -1.0, 1.0)))
    return lon, lat


def vertices(ids, *, xyz: bool = False) -> np.ndarray:
    """Vertices (v0, v1, v2) of each trixel, counter-clockwise seen from outside.

    Returns shape ``ids.shape + (3, 2)`` lon/lat degrees, or ``ids.shape + (3, 3)``
    unit vectors with ``xyz=True``. (A pole vertex reports lon 0.)

    >>> vertices(15).round(6).tolist()   # N3: +y, +z, +x
    [[90.0, 0.0], [0.0, 90.0], [0.0, 0.0]]
    """
    v = _vertices_xyz(ids)
    if xyz:
        return v
    lon, lat = _to_lonlat(v)
    return np.stack([lon, lat], axis=-1)


def centre(ids) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in degrees of each trixel's centre (normalised sum of its vertices).

    >>> [round(float(a), 4) for a in centre(15)]
    [45.0, 35.2644]
    """
    c = _vertices_xyz(ids).sum(axis=-2)
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    return _to_lonlat(c)


def area(ids) -> np.ndarray:
    """Area of each trixel in steradians (times ``EARTH_RADIUS_KM**2`` for km²).

    >>> round(float(area(8)) * 8 / (4 * np.pi), 12)   # the 8 faces tile the sphere
    1.0
    """
    v = _vertices_xyz(ids)
    a, b, c = v[..., 0, :], v[..., 1, :], v[..., 2, :]
    # spherical excess (Van Oosterom & Strackee)
    num = np.abs(np.einsum("...i,...i", a, np.cross(b, c)))
    den = 1.0 + np.einsum("...i,...i", a, b) + np.einsum("...i,...i", b, c) + np.einsum(
        "...i,...i", c, a)
    return 2.0 * np.arctan2(num, den)


# --------------------------------------------------------------------------- covers
def budgeted(run, max_ranges):
    """Run a breadth-first cover kernel ``run(budget) -> (starts, stops)`` under a range budget.

    The kernels count ranges before adjacent ones merge, so a first pass often lands far
    under ``max_ranges``; the budget is then raised (at most 4 times) to use it.
    """
    if not max_ranges:
        return ranges.normalize(np.stack(run(np.iinfo(np.int64).max), axis=1))
    budget = 4 * max_ranges
    for _ in range(5):
        out = ranges.normalize(np.stack(run(budget), axis=1))
        if len(out) >= max_ranges // 2:
            break
        budget *= 4
    return out


def cover(region, level: int, *, interior: bool = False, max_ranges: int | None = None):
    """Trixels at ``level`` that cover a region, as sorted half-open id ranges.

    Parameters
    ----------
    region : Region | tuple | shapely.Polygon
        A :class:`Cap`, :class:`Box` or :class:`Polygon` (or what
        :func:`~stengine.index.htm.as_region` accepts).
    level : int
        HTM level of the ids, 0..29.
    interior : bool
        ``False`` (default): the *envelope*, every trixel that intersects the region
        (possibly a few more that only come within ~1e-12 rad of it, or, for boxes and
        polygons, touch its bounding halfspaces near a corner). ``True``: the
        *interior*, only trixels wholly inside the region.
    max_ranges : int, optional
        Cap on the number of ranges. The descent stops at a coarser level once the
        frontier would exceed it, then the smallest gaps are merged (envelopes grow,
        staying complete); interiors keep their largest ranges (they shrink, staying
        inside).

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` ``uint64`` ranges ``[start, stop)`` of level-``level`` ids, sorted,
        non-overlapping and non-adjacent (see :mod:`stengine.index.ranges`).
    """
    level = check_level(level, where="cover")
    reg = as_region(region, where="cover: region")
    if reg is None:
        return np.array([[8 << (2 * level), 16 << (2 * level)]], dtype=np.uint64)
    if max_ranges is not None and max_ranges < 1:
        raise ValueError(f"cover: max_ranges must be >= 1; got {max_ranges}")
    desc = reg._descriptor()
    out = budgeted(lambda budget: _geom.cover_space(*desc, _EPS, level, bool(interior), budget),
                   max_ranges)
    return ranges.limit(out, max_ranges, interior)


def cover_cap(lon, lat, radius_deg, level: int, *, interior: bool = False,
              max_ranges: int | None = None):
    """Cover of the cap of angular radius ``radius_deg`` around ``(lon, lat)`` (degrees).

    See :func:`cover` for ``interior``, ``max_ranges`` and the result.
    """
    return cover(Cap(lon, lat, radius_deg), level, interior=interior, max_ranges=max_ranges)


def cover_box(lon_min, lat_min, lon_max, lat_max, level: int, *, interior: bool = False,
              max_ranges: int | None = None):
    """Cover of a lon/lat box (degrees; ``lon_max < lon_min`` crosses the antimeridian).

    See :class:`Box` for the box and :func:`cover` for the rest.
    """
    return cover(Box(lon_min, lat_min, lon_max, lat_max), level, interior=interior,
                 max_ranges=max_ranges)


def cover_polygon(lon, lat, level: int, *, interior: bool = False,
                  max_ranges: int | None = None):
    """Cover of a polygon with great-circle edges through vertices ``lon``, ``lat`` (degrees).

    See :class:`Polygon` for the polygon and :func:`cover` for the rest.
    """
    return cover(Polygon(lon, lat), level, interior=interior, max_ranges=max_ranges)

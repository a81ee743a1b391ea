"""Image collections: STAC-like items → filters → :meth:`Collection.load` → a lazy cube.

An :class:`Item` has an id, a footprint (shapely, EPSG:4326 lon/lat), a UTC datetime,
properties and assets (band name → file path or URL). A :class:`Collection` is an
immutable, ordered tuple of items; every filter returns a new collection (GEE style).

Examples
--------
>>> from stengine.collection import Collection, Item
>>> from shapely.geometry import box
>>> c = Collection([Item("a", box(0, 0, 1, 1), "2020-01-02", {"eo:cloud_cover": 5.0}),
...                 Item("b", box(2, 2, 3, 3), "2020-01-05", {"eo:cloud_cover": 50.0})])
>>> [i.id for i in c.filter("eo:cloud_cover", "<", 10)]
['a']
>>> len(c.filter_point(2.5, 2.5)), len(c.filter_date("2020-01-03", "2020-01-10"))
(1, 1)
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import IndexRangeError

__all__ = ["Item", "Collection", "OPERATORS"]


def _contains(a, b):
    return a is not None and b in a


def _in(a, b):
    return a in b


# GEE-style comparison operators of Collection.filter (plus a few aliases).
OPERATORS = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq, "=": operator.eq,
    "!=": operator.ne, ">=": operator.ge, ">": operator.gt,
    "lt": operator.lt, "lte": operator.le, "eq": operator.eq, "neq": operator.ne,
    "gte": operator.ge, "gt": operator.gt,
    "in": _in, "not in": lambda a, b: a not in b, "contains": _contains,
    "startswith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "endswith": lambda a, b: isinstance(a, str) and a.endswith(b),
}


def to_utc(value) -> _dt.datetime:
    """A timezone-aware UTC datetime from a datetime, date, ISO string or numpy datetime64.

    Naive values are taken as UTC; a bare date is its midnight.
    """
    if isinstance(value, np.datetime64):
        value = str(np.datetime_as_string(value.astype("datetime64[us]")))
    if isinstance(value, str):
        s = value.strip().replace("Z", "+00:00")
        try:
            value = _dt.datetime.fromisoformat(s)
        except ValueError as e:
            raise ValueError(f"datetime: expected an ISO 8601 string; got {value!r}") from e
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"datetime: expected datetime, date, ISO string or datetime64; got "
                        f"{type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def _check_lonlat(lon, lat, what):
    if not (-180.0 <= lon <= 180.0) or not (-90.0 <= lat <= 90.0):
        raise IndexRangeError(f"{what}: lon must be in [-180, 180] and lat in [-90, 90]; "
                              f"got lon={lon}, lat={lat}")


@dataclass(frozen=True, eq=False)
class Item:
    """One scene: ``id``, ``geometry`` (shapely, lon/lat), UTC ``datetime``, ``properties``,
    ``assets`` (band name → path or URL)."""

    id: str
    geometry: object
    datetime: _dt.datetime
    properties: dict = field(default_factory=dict)
    assets: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "datetime", to_utc(self.datetime))

    @property
    def solar_day(self) -> np.datetime64:
        """The local solar date: UTC time + centroid lon / 15 hours, as ``datetime64[D]``."""
        lon = self.geometry.centroid.x
        t = self.datetime + _dt.timedelta(hours=lon / 15.0)
        return np.datetime64(t.date().isoformat(), "D")

    def get(self, prop, default=None):
        """A property, or ``id`` / ``datetime`` for those names."""
        if prop == "id":
            return self.id
        if prop == "datetime":
            return self.datetime
        return self.properties.get(prop, default)

    def __repr__(self):
        return f"Item({self.id!r}, {self.datetime.isoformat()}, bands={list(self.assets)})"


class Collection:
    """An ordered, immutable set of :class:`Item`; filters return new collections.

    Build with :meth:`from_stac` (pystac items, a static catalog, GeoJSON item files or an
    ItemCollection/FeatureCollection file) or :meth:`from_files` (rasters on disk).
    """

    def __init__(self, items: Iterable[Item] = ()):
        self._items = tuple(items)
        for i, it in enumerate(self._items):
            if not isinstance(it, Item):
                raise TypeError(f"Collection: items[{i}] is {type(it).__name__}, not an Item")

    # -- building ----------------------------------------------------------------
    @classmethod
    def from_stac(cls, source) -> Collection:
        """Items from pystac Items/ItemCollection/Catalog, dicts, or paths to JSON files.

        Paths may be single Items, ItemCollection/FeatureCollection files or a static
        catalog's ``catalog.json`` (all items below it). Relative asset hrefs are made
        absolute against the item's own file.
        """
        from ._collection_stac import items_from_stac

        return cls(items_from_stac(source))

    @classmethod
    def from_files(cls, paths, *, datetime, band="band", item_id=None,
                   properties=None) -> Collection:
        """Items from rasters on disk, one file per (item, band).

        Parameters
        ----------
        paths : str | Path | list
            Files, or a glob pattern (``"scenes/*.tif"``).
        datetime : callable | str | list
            ``datetime(path) -> datetime-like``, a regex with one group matching an ISO
            date in the file name, or one value per path.
        band : str | callable
            The band name, or ``band(path) -> name``.
        item_id : callable, optional
            ``item_id(path) -> id``; files with the same id and datetime form one item
            (e.g. ``scene1_red.tif``, ``scene1_nir.tif``). Default: the file stem.
        properties : callable, optional
            ``properties(path) -> dict`` (e.g. cloud cover from a sidecar).
        """
        from ._collection_stac import items_from_files

        return cls(items_from_files(paths, datetime=datetime, band=band, item_id=item_id,
                                    properties=properties))

    # -- container ---------------------------------------------------------------
    def __len__(self):
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Collection(self._items[i])
        return self._items[i]

    def __repr__(self):
        return f"<Collection of {len(self)} items, bands {self.bands}>"

    @property
    def items(self) -> tuple[Item, ...]:
        return self._items

    @property
    def bands(self) -> list[str]:
        """Band names present in any item, in first-seen order."""
        seen: dict[str, None] = {}
        for it in self._items:
            seen.update(dict.fromkeys(it.assets))
        return list(seen)

    # -- filters -----------------------------------------------------------------
    def filter_point(self, lon: float, lat: float) -> Collection:
        """Items whose footprint contains (or touches) the point (degrees)."""
        from shapely.geometry import Point

        _check_lonlat(lon, lat, "filter_point")
        return self.filter_geometry(Point(lon, lat))

    def filter_bbox(self, bbox) -> Collection:
        """Items whose footprint meets ``bbox = (west, south, east, north)`` in degrees."""
        from shapely.geometry import box

        if len(bbox) != 4:
            raise ValueError(f"filter_bbox: bbox must be (west, south, east, north); got {bbox}")
        w, s, e, n = (float(v) for v in bbox)
        _check_lonlat(w, s, "filter_bbox")
        _check_lonlat(e, n, "filter_bbox")
        if w > e or s > n:
            raise ValueError(f"filter_bbox: need west <= east and south <= north; got {bbox}")
        return self.filter_geometry(box(w, s, e, n))

    def filter_geometry(self, geometry) -> Collection:
        """Items whose footprint intersects ``geometry`` (shapely or GeoJSON dict, lon/lat)."""
        from shapely.geometry import shape

        if isinstance(geometry, dict):
            geometry = shape(geometry)
        if not hasattr(geometry, "intersects"):
            raise TypeError(f"filter_geometry: expected a shapely geometry or GeoJSON dict; "
                            f"got {type(geometry).__name__}")
        return Collection(it for it in self._items if it.geometry.intersects(geometry))

    def filter_date(self, start=None, end=None) -> Collection:
        """Items with ``start <= datetime < end`` (UTC; either bound may be None)."""
        t0 = to_utc(start) if start is not None else None
        t1 = to_utc(end) if end is not None else None
        return Collection(it for it in self._items
                          if (t0 is None or it.datetime >= t0) and (t1 is None or it.datetime < t1))

    def filter_day(self, start_day: int, end_day: int | None = None, *,
                   by: str = "year") -> Collection:
        """Items in a recurring window: day of year (``by="year"``, 1-366) or month
        (``by="month"``, 1-12), inclusive; ``start > end`` wraps (e.g. Nov to Feb)."""
        end_day = start_day if end_day is None else end_day
        if by not in ("year", "month"):
            raise ValueError(f"filter_day: by must be 'year' or 'month'; got {by!r}")
        key = (lambda t: t.timetuple().tm_yday) if by == "year" else (lambda t: t.month)
        if start_day <= end_day:
            ok = lambda k: start_day <= k <= end_day  # noqa: E731
        else:
            ok = lambda k: k >= start_day or k <= end_day  # noqa: E731
        return Collection(it for it in self._items if ok(key(it.datetime)))

    def filter(self, prop: str, op: str, value) -> Collection:
        """Items whose property ``prop`` compares true with ``value`` by ``op``.

        ``op`` is one of :data:`OPERATORS` (``"<", "<=", "==", "!=", ">=", ">", "in",
        "not in", "contains", "startswith", "endswith"``). Items lacking ``prop`` never
        match (GEE drops them too). ``datetime`` values may be given as strings.
        """
        fn = OPERATORS.get(op)
        if fn is None:
            raise ValueError(f"filter: unknown operator {op!r}; expected one of "
                             f"{sorted(OPERATORS)}")
        if prop == "datetime" and op not in ("in", "not in"):
            value = to_utc(value)
        out = []
        for it in self._items:
            v = it.get(prop)
            if v is None:
                continue
            try:
                if fn(v, value):
                    out.append(it)
            except TypeError as e:
                raise TypeError(f"filter: cannot compare {prop}={v!r} of item {it.id!r} "
                                f"{op} {value!r}: {e}") from e
        return Collection(out)

    def sort(self, prop: str = "datetime", *, ascending: bool = True) -> Collection:
        """Items sorted by a property (stable; items lacking it go last)."""
        have = [it for it in self._items if it.get(prop) is not None]
        lack = [it for it in self._items if it.get(prop) is None]
        have.sort(key=lambda it: it.get(prop), reverse=not ascending)
        return Collection(have + lack)

    def limit(self, n: int, prop: str | None = None, *, ascending: bool = True) -> Collection:
        """The first ``n`` items (after sorting by ``prop`` if given)."""
        if n < 0:
            raise ValueError(f"limit: n must be >= 0; got {n}")
        c = self.sort(prop, ascending=ascending) if prop else self
        return Collection(c._items[:n])

    def summary(self):
        """A pandas table: one row per item (id, datetime, solar_day, bands, bounds, props)."""
        import pandas as pd

        rows = []
        for it in self._items:
            w, s, e, n = it.geometry.bounds
            row = {"id": it.id, "datetime": pd.Timestamp(it.datetime),
                   "solar_day": it.solar_day, "bands": ",".join(it.assets),
                   "west": w, "south": s, "east": e, "north": n}
            row.update({k: v for k, v in it.properties.items()
                        if isinstance(v, (int, float, str, bool)) and k not in row})
            rows.append(row)
        return pd.DataFrame(rows)

    # -- loading -----------------------------------------------------------------
    def load(self, bands=None, *, crs=None, resolution=None, bbox=None, chunks=512,
             groupby="solar_day", resampling="nearest", nodata=None, dtype="float32"):
        """A lazy ``(time, band, y, x)`` cube on one grid; see :mod:`stengine._collection_load`.

        Parameters
        ----------
        bands : list[str], optional
            Asset names (default: all of :attr:`bands`).
        crs : CRS-like, optional
            Output CRS (default: the first raster's).
        resolution : float, optional
            Pixel size in ``crs`` units (default: the first raster's).
        bbox : tuple, optional
            ``(west, south, east, north)`` in lon/lat degrees (default: all footprints).
        chunks : int | tuple
            Spatial chunk size ``(y, x)`` in pixels; time and band chunks are 1 and all.
        groupby : "solar_day" | None
            Items of the same solar day become one time step (mosaic: first valid pixel
            in collection order wins); None keeps one time step per item.
        resampling : str
            A rasterio Resampling name.
        nodata : float, optional
            Source nodata, overriding the files' own; such pixels become NaN.

        Raises
        ------
        CollectionError
            Empty collection, unknown band, bbox outside every footprint.
        """
        from ._collection_load import load

        return load(self, bands, crs=crs, resolution=resolution, bbox=bbox, chunks=chunks,
                    groupby=groupby, resampling=resampling, nodata=nodata, dtype=dtype)


def _as_path(p) -> str:
    return str(Path(p)) if not (isinstance(p, str) and "://" in p) else p

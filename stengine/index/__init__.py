"""Spatiotemporal indexing: HTM ids and covers, time cells, HTM-ST keys, H3 and range sets.

Modules: :mod:`~stengine.index.htm` (SDSS HTM), :mod:`~stengine.index.timecode` (time
cells of a task interval), :mod:`~stengine.index.htmst` (coupled, time-first and
space-first keys), :mod:`~stengine.index.ranges` (sorted ``uint64`` range sets) and
:mod:`~stengine.index.h3`. Regions for covers and queries: :class:`Cap`, :class:`Box`,
:class:`Polygon`.
"""

from __future__ import annotations

from . import h3, htm, htmst, ranges, timecode
from ._regions import Box, Cap, Polygon, Region, as_region
from .htm import cover, cover_box, cover_cap, cover_polygon, lonlat_to_id
from .htmst import KeyScheme
from .timecode import TimeGrid

__all__ = [
    "htm",
    "htmst",
    "timecode",
    "ranges",
    "h3",
    "Region",
    "Cap",
    "Box",
    "Polygon",
    "as_region",
    "lonlat_to_id",
    "cover",
    "cover_cap",
    "cover_box",
    "cover_polygon",
    "KeyScheme",
    "TimeGrid",
]

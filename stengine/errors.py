"""The exception and warning hierarchy: what is wrong, what we got, how to fix it."""

from __future__ import annotations

__all__ = [
    "StEngineError",
    "DimensionError",
    "GridMismatchError",
    "BackendNotSupported",
    "ChunkError",
    "ChunkWarning",
    "UDFError",
    "StoreError",
    "StoreNotFoundError",
    "StoreLockedError",
    "StoreCorruptError",
    "AppendMismatchError",
    "IndexRangeError",
]


class StEngineError(Exception):
    """Base class of every error stengine raises on purpose."""


class DimensionError(StEngineError, ValueError):
    """An array lacks the dims an op needs, or has unexpected ones."""


class GridMismatchError(StEngineError, ValueError):
    """Two rasters that must share a grid (CRS, transform, shape) do not."""


class BackendNotSupported(StEngineError, NotImplementedError):
    """An op has no kernel for this array type (e.g. no CuPy kernel)."""


class ChunkError(StEngineError, ValueError):
    """The chunking of a dask input does not allow the op without loading everything."""


class UDFError(StEngineError, ValueError):
    """A user function given to ``local_apply`` misbehaved on a sample."""


class StoreError(StEngineError, OSError):
    """A store (Zarr, point store) is unusable: wrong layout, broken commit."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A store or file the call needs does not exist."""


class StoreLockedError(StoreError, TimeoutError):
    """Another process holds the store's write lock and did not release it in time."""


class StoreCorruptError(StoreError):
    """A store's metadata or a chunk is missing or unreadable; the message names both."""


class AppendMismatchError(StoreError, ValueError):
    """Data appended to a store does not match it (grid, CRS, variables, dtype, time)."""


class IndexRangeError(StEngineError, ValueError):
    """A coordinate or key is outside the range an index accepts (lon/lat, time, level)."""


class SourceError(StEngineError, ValueError):
    """A data source spec is invalid (unknown kind, bad option); ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class SourceConnectionError(SourceError, ConnectionError):
    """A source could not be reached or refused the credentials (host, port, user)."""


class CollectionError(StEngineError, ValueError):
    """An image collection operation cannot proceed (empty after filtering, unknown band)."""


class VectorIndexError(StEngineError, ValueError):
    """A similarity query is invalid for its index (unknown cell, wrong dimension, empty region)."""


class TileError(StEngineError, ValueError):
    """A map tile request is invalid (unknown tile id, zoom out of range, bbox off the data)."""


class ChunkWarning(UserWarning):
    """Chunks were changed to make an op possible (e.g. chunks smaller than a halo)."""

"""Map algebra: local, focal, zonal and cell ops. Every op is also a ``.st`` accessor method."""

from __future__ import annotations

from . import cells, interpolate, local, zonal  # interpolate: point tables, not rasters
from .cells import *  # noqa: F403
from .local import *  # noqa: F403
from .zonal import *  # noqa: F403

__all__ = [*local.__all__, *zonal.__all__, *cells.__all__]

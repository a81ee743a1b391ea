"""Map algebra: local, focal, zonal and cell ops. Every op is also a ``.st`` accessor method."""

from __future__ import annotations

from . import cells, focal, local, terrain, zonal
from . import interpolate as interpolate  # point tables, not rasters: no .st methods
from .cells import *  # noqa: F403
from .composite import composite, quality_mosaic  # the function shadows the module
from .focal import *  # noqa: F403
from .local import *  # noqa: F403
from .terrain import *  # noqa: F403
from .window import Window  # noqa: F401 - a value type: no .st method, so not in __all__
from .zonal import *  # noqa: F403

__all__ = [*local.__all__, *focal.__all__, *terrain.__all__, *zonal.__all__, *cells.__all__,
           "composite", "quality_mosaic"]

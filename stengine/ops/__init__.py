"""Map algebra: local, focal, zonal and cell ops. Every op is also a ``.st`` accessor method."""

from __future__ import annotations

from . import local
from .local import *  # noqa: F403

__all__ = [*local.__all__]

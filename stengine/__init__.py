"""stengine: a Dask-based distributed spatiotemporal compute engine.

Space-time cubes on xarray + Zarr, spatiotemporal indexing (HTM, time cells, HTM-ST,
H3), and map algebra that runs the same on numpy, dask, CuPy and dask+CuPy.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401 - registers the .st accessor
from . import cube, errors, index, io, ops
from .compute import compute, connect, tls_security
from .grid import Grid
from .io import open_cube, read_raster, to_zarr, write_raster
from .ops.window import Window
from .reproject import align, reproject_match

__version__ = "0.1.0"

__all__ = [
    "connect",
    "compute",
    "tls_security",
    "read_raster",
    "write_raster",
    "open_cube",
    "to_zarr",
    "align",
    "reproject_match",
    "Grid",
    "Window",
    "cube",
    "index",
    "ops",
    "io",
    "errors",
]

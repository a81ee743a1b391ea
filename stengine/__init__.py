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

# Heavier parts load on first use, so `import stengine` stays light.
_LAZY = {"open_source": ("stengine.io.sources", "open_source"),
         "SourceSpec": ("stengine.io.sources", "SourceSpec"),
         "Collection": ("stengine.collection", "Collection")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'stengine' has no attribute {name!r}")


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
    "open_source",
    "SourceSpec",
    "Collection",
]

"""GPU twins of :mod:`stengine.ops._numba.composite` (numba.cuda, one thread per pixel):
the per-pixel bodies are that module's, compiled here as device functions."""

from __future__ import annotations

from numba import cuda

from ..._backends import array_module, launch
from .._numba.composite import composite_pixel, quality_pixel

_composite_pixel = cuda.jit(device=True)(composite_pixel)
_quality_pixel = cuda.jit(device=True)(quality_pixel)


@cuda.jit
def _composite_k(x, how, nodata, has_nodata, fill, scratch, out):
    j = cuda.grid(1)
    if j < x.shape[1]:
        _composite_pixel(x, j, how, nodata, has_nodata, fill, scratch, j, out)


def composite(x, how, nodata, has_nodata, fill, out):
    xp = array_module(x)
    scratch = xp.empty((x.shape[0] if how == 5 else 1, x.shape[1]), "f8")
    launch(_composite_k, x.shape[1], x, how, nodata, has_nodata, fill, scratch, out)


@cuda.jit
def _quality_k(x, q, fill, out):
    j = cuda.grid(1)
    if j < x.shape[2]:
        _quality_pixel(x, q, j, fill, out)


def quality_mosaic(x, q, nodata, has_nodata, fill, out):
    launch(_quality_k, x.shape[2], x, q, fill, out)

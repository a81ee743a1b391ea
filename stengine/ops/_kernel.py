"""One kernel per block type, no per-backend glue.

``Kernel`` answers one question: given a block (numpy, CuPy, simulated device array),
which implementation runs? Lazy or eager, dask or not, is the lifter's business
(:mod:`stengine.ops._lift`). A kernel's GPU implementation is named by a dotted path
and imported on first use, so ``import stengine`` never imports CuPy or numba.cuda.
"""

from __future__ import annotations

import importlib

import numpy as np

from .._backends import SimulatedDeviceArray, backend_name, is_cupy
from ..errors import BackendNotSupported


def _resolve(path: str):
    mod, _, attr = path.partition(":")
    return getattr(importlib.import_module(mod), attr)


class Kernel:
    """A per-block kernel dispatched on the block's type.

    Parameters
    ----------
    name : str
        The op's name, for messages.
    cpu : callable, optional
        Implementation for ``numpy.ndarray`` blocks (numba).
    gpu : str, optional
        ``"module:function"`` of the GPU implementation (numba.cuda / CuPy). It serves
        CuPy blocks and :class:`~stengine._backends.SimulatedDeviceArray` blocks (the CUDA
        simulator) alike, so the GPU source is what runs in both.
    """

    def __init__(self, name: str, *, cpu=None, gpu: str | None = None):
        self.name = name
        self._impl: dict[type, object] = {}
        self._gpu_path = gpu
        self._gpu = None
        if cpu is not None:
            self._impl[np.ndarray] = cpu

    def register(self, block_type: type, func=None):
        """Register ``func`` for ``block_type`` (usable as a decorator)."""
        if func is None:
            return lambda f: self.register(block_type, f)
        self._impl[block_type] = func
        return func

    @property
    def backends(self) -> list[str]:
        names = ["numpy"] if np.ndarray in self._impl else []
        return names + (["cupy", "cudasim"] if self._gpu_path else [])

    def implementation(self, block):
        """The function that runs for ``block``; raises :class:`BackendNotSupported`."""
        if isinstance(block, SimulatedDeviceArray) or is_cupy(block):
            if self._gpu_path is None:
                raise BackendNotSupported(
                    f"{self.name} has no GPU kernel (available: {', '.join(self.backends)}). "
                    "Convert with da.as_numpy() first.")
            if self._gpu is None:
                self._gpu = _resolve(self._gpu_path)
            return self._gpu
        for t in type(block).__mro__:
            if t in self._impl:
                return self._impl[t]
        raise BackendNotSupported(
            f"{self.name} has no kernel for {backend_name(block)} blocks "
            f"(available: {', '.join(self.backends) or 'none'}).")

    def __call__(self, block, *args, **kwargs):
        return self.implementation(block)(block, *args, **kwargs)

    def __repr__(self):
        return f"Kernel({self.name!r}, backends={self.backends})"

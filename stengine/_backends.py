"""Array-type helpers: which backend a block belongs to, and the simulated GPU block type.

``SimulatedDeviceArray`` is a plain ``numpy.ndarray`` subclass that the kernel
registry treats as a GPU block: ops dispatch it to their GPU kernel (numba.cuda),
which runs under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``). It lets the GPU
kernels' own source run on machines without a GPU, in CI and in users' tests.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["SimulatedDeviceArray", "is_dask", "is_cupy", "is_gpu_block", "array_module",
           "backend_name", "gpu_available", "simulator_enabled"]


class SimulatedDeviceArray(np.ndarray):
    """A numpy array that ops treat as a GPU array (kernels run in the CUDA simulator)."""

    def __array_finalize__(self, obj):  # nothing to carry; keep the subclass through views
        pass


def is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "dask")


def is_cupy(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def is_gpu_block(x) -> bool:
    return is_cupy(x) or isinstance(x, SimulatedDeviceArray)


def array_module(x):
    """``cupy`` for CuPy arrays, else ``numpy`` (also for simulated device arrays)."""
    if is_cupy(x):
        import cupy

        return cupy
    return np


def backend_name(x) -> str:
    """``"numpy"``, ``"cupy"`` or ``"cudasim"`` for a block; looks through dask's ``_meta``."""
    if is_dask(x):
        x = x._meta
    if isinstance(x, SimulatedDeviceArray):
        return "cudasim"
    if is_cupy(x):
        return "cupy"
    return "numpy" if isinstance(x, np.ndarray) else type(x).__name__


def simulator_enabled() -> bool:
    """True when numba.cuda runs in the simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means no usable GPU
        return False


# The simulator runs one kernel at a time (numba asserts it); real GPUs queue launches.
_SIM_LOCK = threading.Lock()


def launch(kernel, n: int | tuple, *args, threads: int | tuple = 256):
    """Launch a numba.cuda ``kernel`` over ``n`` items (int) or a 2-D ``(rows, cols)`` range."""
    sim = simulator_enabled()
    if isinstance(n, tuple):
        tb = threads if isinstance(threads, tuple) else (16, 16)
        if sim:  # the simulator runs each GPU thread as a Python thread: launch no idle ones
            tb = tuple(max(1, min(t, k)) for t, k in zip(tb, n, strict=True))
        blocks = tuple(max(1, -(-k // t)) for k, t in zip(n, tb, strict=True))
    else:
        tb = max(1, min(threads, int(n))) if sim else threads
        blocks = max(1, -(-int(n) // tb))
    if sim:
        # The simulator wants plain ndarrays and copies every array argument back after
        # the launch, so read-only inputs (broadcast views, dask slices) get a copy.
        args = tuple((a.view(np.ndarray) if a.flags.writeable else np.array(a))
                     if isinstance(a, np.ndarray) else a for a in args)
        with _SIM_LOCK:
            kernel[blocks, tb](*args)
    else:
        kernel[blocks, tb](*args)


def _register_dask_dispatch():
    """Make dask concatenate simulated device blocks into a simulated device array
    (numpy's concatenate would silently return a plain ndarray)."""
    from dask.array.dispatch import concatenate_lookup

    @concatenate_lookup.register(SimulatedDeviceArray)
    def _concat(arrays, axis=0, out=None):
        plain = [a.view(np.ndarray) if isinstance(a, np.ndarray) else a for a in arrays]
        return np.concatenate(plain, axis=axis).view(SimulatedDeviceArray)


_register_dask_dispatch()

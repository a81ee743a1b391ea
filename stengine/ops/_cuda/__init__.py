"""GPU kernels (numba.cuda). Imported lazily, only for CuPy or simulated device blocks.

Each module mirrors a CPU module in ``stengine.ops._numba`` function for function, with
the same signatures; blocks are CuPy arrays on a GPU, or
:class:`~stengine._backends.SimulatedDeviceArray` under ``NUMBA_ENABLE_CUDASIM=1``.
"""

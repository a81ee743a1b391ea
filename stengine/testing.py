"""Test helpers for stengine's ops and for users' own ops: backends, cubes, chunkings.

``assert_backends_match`` runs an op on one backend (numpy, dask, the CUDA simulator,
CuPy, with any chunking) and checks it against a plain NumPy reference: values,
block type (CuPy stays CuPy), dims/coords/attrs, chunks, and that building the graph
computed nothing.
"""

from __future__ import annotations

import contextlib

import numpy as np
import xarray as xr

from ._backends import SimulatedDeviceArray, gpu_available, is_cupy, is_dask, simulator_enabled
from .cube import make_raster
from .grid import Grid

__all__ = ["BACKENDS", "backend_skip_reason", "to_backend", "to_numpy", "make_cube",
           "chunkings", "assert_backends_match", "count_computes"]

BACKENDS = ("numpy", "dask", "cudasim", "dask-cudasim", "cupy", "dask-cupy")


def backend_skip_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None if it can."""
    if "cupy" in backend and not gpu_available():
        return "needs CuPy and a CUDA GPU"
    if "cudasim" in backend and not simulator_enabled():
        return "needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported"
    return None


def _block(x, backend):
    x = np.asarray(x)
    if "cudasim" in backend:
        return x.view(SimulatedDeviceArray)
    if "cupy" in backend:
        import cupy

        return cupy.asarray(x)
    return x


def to_backend(obj, backend: str, chunks=None):
    """Return ``obj`` (DataArray or ndarray) with its data on ``backend``.

    ``chunks`` (dask backends): a dict by dim, or a tuple for the *last* dims (e.g. the
    spatial ``(y, x)``); other dims get chunks of 1 (``time``, ``band``). ``-1`` is one
    chunk.
    """
    import dask.array as dsa

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    reason = backend_skip_reason(backend)
    if reason:
        raise RuntimeError(f"backend {backend!r} unavailable: {reason}")
    is_da = isinstance(obj, xr.DataArray)
    data = to_numpy(obj.data if is_da else obj)
    block = _block(data, backend)
    if backend.startswith("dask"):
        dims = obj.dims if is_da else tuple(f"d{i}" for i in range(data.ndim))
        lead = [1] * (data.ndim - 2)
        if chunks is None or isinstance(chunks, int):
            c = -1 if chunks is None else chunks
            spec = tuple(lead) + (c, c)
        elif isinstance(chunks, dict):
            spec = tuple(chunks.get(d, 1 if i < data.ndim - 2 else -1)
                         for i, d in enumerate(dims))
        else:
            spec = tuple(lead) + tuple(chunks)
        block = dsa.from_array(block, chunks=spec, asarray=False)
    return obj.copy(data=block) if is_da else block


def to_numpy(x):
    """Host numpy copy of any block or array (dask computed, CuPy fetched, subclass dropped)."""
    if isinstance(x, xr.DataArray):
        x = x.data
    if is_dask(x):
        x = x.compute()
    if is_cupy(x):
        x = x.get()
    if isinstance(x, np.ndarray) and type(x) is not np.ndarray:
        x = x.view(np.ndarray)
    return np.asarray(x)


def make_cube(shape=(7, 9), dtype="f4", *, seed=0, nan_fraction=0.1, classes=None,
              nodata=None, crs="EPSG:32633", res=30.0, origin=(500000.0, 4000000.0),
              dims=None, name="v") -> xr.DataArray:
    """A small test raster/cube with NaN (or nodata) at the corners and scattered inside.

    ``classes`` (int) gives integer values ``0..classes-1`` (nodata, if given, at the
    corners); otherwise float values in [0, 100) with NaN. 3-D shapes get a ``time``
    dim with daily steps from 2020-01-01. Projected CRS (UTM 33N) by default.
    """
    rng = np.random.default_rng(seed)
    if classes is not None:
        data = rng.integers(0, classes, size=shape).astype(dtype)
        bad_value = nodata
    else:
        data = (rng.random(shape) * 100).astype(dtype)
        bad_value = np.nan if np.dtype(dtype).kind == "f" else nodata
    if bad_value is not None:
        mask = rng.random(shape) < nan_fraction
        mask[..., 0, 0] = mask[..., -1, -1] = mask[..., 0, -1] = mask[..., -1, 0] = True
        data[mask] = bad_value
    ny, nx = shape[-2:]
    grid = Grid(crs, (res, 0, origin[0], 0, -res, origin[1]), (ny, nx))
    if dims is None:
        dims = {2: ("y", "x"), 3: ("time", "y", "x")}[len(shape)]
    coords = {}
    if "time" in dims:
        coords["time"] = np.datetime64("2020-01-01", "ns") + np.arange(
            shape[dims.index("time")]) * np.timedelta64(1, "D")
    return make_raster(data, grid, dims=dims, coords=coords, name=name,
                       attrs={"units": "1", "long_name": "test"}, nodata=nodata)


def chunkings(shape):
    """Hypothesis strategy of dask chunk tuples for ``shape`` (irregular, down to size 1)."""
    from hypothesis import strategies as st

    def one(n):
        return st.lists(st.integers(1, n), min_size=1, max_size=n).map(
            lambda cuts: _partition(n, cuts))

    return st.tuples(*(one(n) for n in shape))


def _partition(n, cuts):
    points = sorted(set(c for c in cuts if 0 < c < n))
    edges = [0, *points, n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True))


class _CountingScheduler:
    def __init__(self, limit):
        self.limit, self.count = limit, 0

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.count += 1
        if self.count > self.limit:
            raise AssertionError(
                f"dask computed {self.count} time(s) while building the graph (allowed: "
                f"{self.limit}); ops must stay lazy")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def count_computes(limit: int = 0):
    """Fail if dask computes more than ``limit`` times inside the block."""
    import dask

    sched = _CountingScheduler(limit)
    with dask.config.set(scheduler=sched):
        yield sched


def _expected_block_type(backend):
    if "cudasim" in backend:
        return SimulatedDeviceArray
    if "cupy" in backend:
        import cupy

        return cupy.ndarray
    return np.ndarray


def assert_backends_match(op, ref, *inputs, backend: str, chunks=None, exact: bool = False,
                          rtol: float = 1e-5, atol: float = 1e-6, same_shape: bool = True,
                          max_computes: int = 0, check_chunks: bool = True, **kwargs):
    """Check ``op(*inputs, **kwargs)`` on ``backend`` against ``ref(*numpy_inputs, **kwargs)``.

    Parameters
    ----------
    op : callable
        The stengine op; takes DataArrays, returns a DataArray.
    ref : callable
        Plain NumPy reference; takes the inputs' numpy arrays, returns an array.
    backend : str
        One of :data:`BACKENDS`.
    chunks : see :func:`to_backend`
    exact : bool
        Bit-for-bit equality instead of ``assert_allclose(rtol, atol)`` (NaN equal NaN).
    same_shape : bool
        The op returns the input's shape: check dims, coords, attrs and (dask) chunks.
    max_computes : int
        Computes allowed while building the graph (e.g. a UDF's sample check).

    Returns
    -------
    xarray.DataArray
        The op's computed result (on the backend's block type).
    """
    conv = [to_backend(x, backend, chunks) if isinstance(x, xr.DataArray) else x
            for x in inputs]
    with count_computes(max_computes):
        out = op(*conv, **kwargs)
    block_type = _expected_block_type(backend)
    if backend.startswith("dask"):
        assert is_dask(out.data), f"{backend}: op returned {type(out.data).__name__}, not dask"
        assert isinstance(out.data._meta, block_type), (
            f"{backend}: dask meta is {type(out.data._meta).__name__}, expected "
            f"{block_type.__name__}")
        if same_shape and check_chunks:
            assert out.chunks == conv[0].chunks, (
                f"{backend}: output chunks {out.chunks} differ from input chunks {conv[0].chunks}")
    computed = out.compute()
    data = computed.data
    assert isinstance(data, block_type), (
        f"{backend}: result blocks are {type(data).__name__}, expected {block_type.__name__}")
    if block_type is np.ndarray:
        assert type(data) is np.ndarray, f"{backend}: result is {type(data).__name__}"
    expected = ref(*[to_numpy(x) if isinstance(x, xr.DataArray) else x for x in inputs],
                   **kwargs)
    got = to_numpy(data)
    assert got.shape == np.shape(expected), f"shape {got.shape} != reference {np.shape(expected)}"
    if exact:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if same_shape:
        first = inputs[0]
        assert computed.dims == first.dims, f"dims {computed.dims} != input dims {first.dims}"
        for k, c in first.coords.items():
            assert k in computed.coords, f"coordinate {k!r} was dropped"
            np.testing.assert_array_equal(computed.coords[k].values, c.values)
            assert computed.coords[k].attrs == c.attrs, f"attrs of coordinate {k!r} changed"
    return computed

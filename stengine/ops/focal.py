"""Focal (moving-window) statistics over the spatial dims of gridded cubes, exact at chunk edges.

Every op takes the data first and a ``window`` (an odd ``int`` square size, a string like
``"3x3"`` or ``"3x5x5"``, a tuple ``(ny, nx)`` / ``(nt, ny, nx)``, an array, or a
:class:`~stengine.ops.window.Window` such as ``Window.circle(2)``) and runs on every
time step / band. A window with a time extent (``(3, 5, 5)``) also spans ``time_dim``.
The same kernels run on numpy, dask, CuPy and dask+CuPy blocks.

Conventions, identical on every backend:

* **missing cells**: NaN in float rasters; ``attrs["nodata"]`` (any dtype) when set;
  cells beyond the raster edge under ``boundary="nan"``.
* **skipna** (default True): missing cells are ignored; a window with no valid cell
  gives NaN (integer outputs: ``attrs["nodata"]``). ``skipna=False``: any missing cell
  in the window gives NaN — including windows that reach beyond the raster edge under
  ``boundary="nan"``.
* **boundary** — what a window sees beyond the raster edge: ``"nan"`` (default; missing),
  ``"nearest"`` (the edge cell repeated), ``"reflect"`` (mirrored including the edge
  cell, ``c b a | a b c``, as scipy.ndimage's ``"reflect"``), ``"wrap"`` (the opposite
  edge; for global lon grids across the antimeridian). A dict ``{"x": "wrap",
  "y": "nearest"}`` sets it per dim (dims left out get ``"nan"``).
* **halos**: each chunk is computed with ``window.halo`` cells from the chunks around it
  (or from further chunks when chunks are smaller than the halo; no rechunking), so the
  result for any chunking equals the one-chunk result: bit for bit for min, max,
  count, median and majority, and for sums/means of integers; to float rounding for
  float sums, means, var and std (running sums, float64 accumulators).
* **output dtypes**: mean, var, std, median, apply: float32 for float32/float16 and
  integers of 16 bits or less, else float64; sum: float64 for integers (exact), the
  input dtype for floats; count: int32; min, max, majority: the input dtype.
* var/std are population statistics (ddof = 0).
* **edges of the input domain**: a zero-size raster gives the empty result (no kernel
  runs); windows wider than the raster are fine, the boundary rule repeating as
  ``numpy.pad`` does (``reflect`` with period ``2n``, ``wrap`` with period ``n``), so a
  one-pixel raster has a result under every rule.

Rows run the way the array runs (row 0 is north on a north-up raster); window arrays
are laid out the same way, centred on the output cell.
"""

from __future__ import annotations

import numpy as np

from ..cube import check_dtype, check_raster
from ..cube.validate import raster_grid
from ..errors import DimensionError
from ._kernel import Kernel
from ._lift import check_boundary, lift_focal
from ._numba import focal as _cpu
from .window import Window

__all__ = [
    "focal_mean",
    "focal_sum",
    "focal_count",
    "focal_min",
    "focal_max",
    "focal_var",
    "focal_std",
    "focal_median",
    "focal_majority",
    "focal_apply",
]

_GPU = "stengine.ops._cuda.focal:"


def _kernel(name, impl):
    return Kernel(name, cpu=getattr(_cpu, impl), gpu=_GPU + impl)


_K = {name: _kernel(name, impl) for name, impl in (
    ("focal_mean", "moments"), ("focal_sum", "moments"), ("focal_count", "moments"),
    ("focal_var", "moments"), ("focal_std", "moments"), ("focal_min", "extrema"),
    ("focal_max", "extrema"), ("focal_median", "rank"), ("focal_majority", "rank"),
    ("focal_apply", "weighted"))}


def float_dtype(dtype) -> np.dtype:
    """Float output dtype for ``dtype``: float32 for float32/16 and <= 16-bit ints, else float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2) or \
            (dtype.kind == "f" and dtype.itemsize <= 4):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def nodata_of(da, op: str = "focal"):
    """``(value, present)``: the raster's nodata as its dtype, or ``(0, False)``."""
    nd = da.attrs.get("nodata")
    if nd is None or (isinstance(nd, float | np.floating) and np.isnan(nd)):
        return da.dtype.type(0), False
    try:
        value = da.dtype.type(nd)
    except (OverflowError, ValueError) as e:
        raise ValueError(f"{op}: da.attrs['nodata']={nd!r} does not fit the raster's dtype "
                         f"{da.dtype}; set a nodata the dtype can hold, or cast da first") from e
    return value, True


def prepare(da, window, *, op, dims, time_dim, boundary):
    """Validate inputs; return ``(da, dims, window, nodata, has_nodata)``."""
    dims = check_raster(da, dims, op=op)
    check_dtype(da, "biuf", op=op)
    w = Window.parse(window)
    if w.pending is not None:
        w = w.resolve(raster_grid(da, dims=dims))
    if w.has_time:
        if time_dim is None or time_dim not in da.dims:
            raise DimensionError(
                f"{op}: the window ({w.label}) spans {w.shape[0]} steps along time, but da has "
                f"no {time_dim!r} dim (dims {tuple(da.dims)}). Pass time_dim= or a spatial "
                "window such as '3x3'.")
        if time_dim in dims:
            raise DimensionError(f"{op}: time_dim {time_dim!r} is one of the spatial dims {dims}")
    check_boundary(boundary, ((time_dim,) if w.has_time else ()) + tuple(dims), op=op)
    da = kernel_dtype(da)
    nd, has_nd = nodata_of(da, op)
    return da, dims, w, nd, has_nd


def kernel_dtype(da):
    """``da`` in a dtype the kernels compile for: bool → uint8, float16 → float32,
    native byte order (lazy casts; results are the same)."""
    if da.dtype.kind == "b":
        return da.astype(np.uint8)
    if da.dtype == np.float16:
        return da.astype(np.float32)
    if not da.dtype.isnative:
        return da.astype(da.dtype.newbyteorder("="))
    return da


def _attrs(da, keep_nodata: bool):
    a = dict(da.attrs)
    if not keep_nodata:
        a.pop("nodata", None)
    return a


def _can_miss(w, boundary, dims, time_dim):
    """Whether windows can reach beyond the raster edge (some dim's rule is ``"nan"``)."""
    wdims = ((time_dim,) if w.has_time else ()) + tuple(dims)
    rules = check_boundary(boundary, wdims, op="focal")
    return any(r == "nan" for r in rules.values())


def _int_nodata(op, da, nd, has_nd, skipna, w, boundary, dims, time_dim):
    """The value an integer output writes where there is no result."""
    if da.dtype.kind == "f":
        return np.nan
    if has_nd:
        return nd
    if not skipna and _can_miss(w, boundary, dims, time_dim):
        raise ValueError(
            f"{op}: skipna=False with boundary='nan' makes windows at the raster edge "
            f"missing, but this {da.dtype} raster has no attrs['nodata'] to write there. Set "
            "da.attrs['nodata'], pass skipna=True, or use boundary='nearest'/'reflect'.")
    return 0  # never written: every window holds its own (valid) centre cell


# --------------------------------------------------------------------------- moments
def _moments(op, stat, da, window, boundary, skipna, dims, time_dim):
    da, dims, w, nd, has_nd = prepare(da, window, op=op, dims=dims, time_dim=time_dim,
                                      boundary=boundary)
    if stat == _cpu.COUNT:
        out_dtype = np.dtype(np.int32)
    elif stat == _cpu.SUM:
        out_dtype = np.dtype(np.float64) if da.dtype.kind in "iu" else da.dtype
    else:
        out_dtype = float_dtype(da.dtype)
    area = w.size
    acc = "f8"
    if da.dtype.kind in "iu":  # exact integer sums (Σv, and Σv² for var/std) where they fit
        info = np.iinfo(da.dtype)
        big = max(abs(int(info.min)), int(info.max))
        most = big * area if stat < _cpu.VAR else big * big * area
        acc = "i4" if most < 2 ** 31 else "i8" if most < 2 ** 62 else "f8"
    kw = dict(stat=stat, rect=bool(w.footprint.all()), kshape=w.shape, runs=w.runs(),
              offsets=w.offsets()[0], area=area, nodata=nd, has_nodata=has_nd,
              skipna=bool(skipna), out_dtype=out_dtype, acc=acc)
    return lift_focal(_K[op], da, w, dims=dims, boundary=boundary, op=op, dtype=out_dtype,
                      time_dim=time_dim, kwargs=kw, attrs=_attrs(da, False))


_COMMON = """
    Parameters
    ----------
    da : xarray.DataArray
        Raster or cube with spatial dims ``dims`` (numpy, dask, CuPy or dask+CuPy); bool,
        int or float. NaN and ``attrs["nodata"]`` are missing.
    window : int | str | tuple | array | Window
        Odd square size (``3``), ``"3x5"`` (rows × columns), ``(nt, ny, nx)`` with a
        time extent, a bool/weight array, or ``Window.circle(r)`` / ``Window.annulus``
        (radius in cells, or map units with ``units="map"``/``"m"``).
    boundary : str | dict, default "nan"
        Beyond the raster edge: ``"nan"`` (missing), ``"nearest"``, ``"reflect"``,
        ``"wrap"``, or ``{dim: rule}``.
    dims : (str, str), optional
        Spatial dims ``(y, x)``; default ``("y", "x")``.
    time_dim : str, default "time"
        The dim a window's time extent runs along.
"""

_SKIPNA = """    skipna : bool, default True
        Ignore missing cells; False: any missing cell in the window gives a missing result.
"""

_RAISES = """
    Raises
    ------
    DimensionError
        ``da`` lacks ``dims`` (or ``time_dim`` for a space-time window).
    ValueError
        Even window sizes, bad ``boundary``, or a metre radius on a geographic grid.
        (Windows wider than the raster are fine: the boundary rule repeats, as
        ``numpy.pad`` does; a zero-size raster gives the empty result.)
"""


def _doc(summary, returns, example, skipna=True):
    return (summary + "\n" + _COMMON + (_SKIPNA if skipna else "") + "\n    Returns\n    -------\n"
            "    xarray.DataArray\n        " + returns + " Same dims, coords and chunks as "
            "``da``; lazy for dask input.\n" + _RAISES + "\n    See Also\n    --------\n"
            "    stengine.ops.window.Window, focal_mean, focal_max, focal_apply\n\n"
            "    Examples\n    --------\n" + example)


def focal_mean(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _moments("focal_mean", _cpu.MEAN, da, window, boundary, skipna, dims, time_dim)


def focal_sum(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _moments("focal_sum", _cpu.SUM, da, window, boundary, skipna, dims, time_dim)


def focal_count(da, window, *, boundary="nan", dims=None, time_dim="time"):
    return _moments("focal_count", _cpu.COUNT, da, window, boundary, True, dims, time_dim)


def focal_var(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _moments("focal_var", _cpu.VAR, da, window, boundary, skipna, dims, time_dim)


def focal_std(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _moments("focal_std", _cpu.STD, da, window, boundary, skipna, dims, time_dim)


# --------------------------------------------------------------------------- min / max
def _extrema(op, is_max, da, window, boundary, skipna, dims, time_dim):
    da, dims, w, nd, has_nd = prepare(da, window, op=op, dims=dims, time_dim=time_dim,
                                      boundary=boundary)
    out_nd = _int_nodata(op, da, nd, has_nd, skipna, w, boundary, dims, time_dim)
    kw = dict(is_max=is_max, rect=bool(w.footprint.all()), kshape=w.shape,
              offsets=w.offsets()[0], runs=w.runs(), area=w.size, nodata=nd,
              has_nodata=has_nd, skipna=bool(skipna), out_nodata=out_nd)
    return lift_focal(_K[op], da, w, dims=dims, boundary=boundary, op=op, dtype=da.dtype,
                      time_dim=time_dim, kwargs=kw, attrs=_attrs(da, da.dtype.kind != "f"))


def focal_min(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _extrema("focal_min", False, da, window, boundary, skipna, dims, time_dim)


def focal_max(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _extrema("focal_max", True, da, window, boundary, skipna, dims, time_dim)


# --------------------------------------------------------------------------- median / mode
def _rank(op, majority, da, window, boundary, skipna, dims, time_dim):
    da, dims, w, nd, has_nd = prepare(da, window, op=op, dims=dims, time_dim=time_dim,
                                      boundary=boundary)
    if majority:
        out_dtype = da.dtype
        out_nd = _int_nodata(op, da, nd, has_nd, skipna, w, boundary, dims, time_dim)
    else:
        out_dtype, out_nd = float_dtype(da.dtype), np.nan
    kw = dict(majority=majority, kshape=w.shape, offsets=w.offsets()[0], nodata=nd,
              has_nodata=has_nd, skipna=bool(skipna), out_dtype=out_dtype, out_nodata=out_nd)
    keep = majority and da.dtype.kind != "f"
    return lift_focal(_K[op], da, w, dims=dims, boundary=boundary, op=op, dtype=out_dtype,
                      time_dim=time_dim, kwargs=kw, attrs=_attrs(da, keep))


def focal_median(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _rank("focal_median", False, da, window, boundary, skipna, dims, time_dim)


def focal_majority(da, window, *, boundary="nan", skipna=True, dims=None, time_dim="time"):
    return _rank("focal_majority", True, da, window, boundary, skipna, dims, time_dim)


# --------------------------------------------------------------------------- weighted
def focal_apply(da, weights, *, boundary="nan", skipna=True, normalize=False, dims=None,
                time_dim="time"):
    op = "focal_apply"
    da, dims, w, nd, has_nd = prepare(da, weights, op=op, dims=dims, time_dim=time_dim,
                                      boundary=boundary)
    out_dtype = float_dtype(da.dtype)
    offsets, wts = w.offsets()
    kw = dict(kshape=w.shape, offsets=offsets, weights=wts, nodata=nd, has_nodata=has_nd,
              skipna=bool(skipna), normalize=bool(normalize), out_dtype=out_dtype)
    return lift_focal(_K[op], da, w, dims=dims, boundary=boundary, op=op, dtype=out_dtype,
                      time_dim=time_dim, kwargs=kw, attrs=_attrs(da, False))


focal_mean.__doc__ = _doc(
    "Mean of the valid cells in a moving window.", "Float mean (see module dtypes).", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_mean
    >>> da = stengine.cube.make_raster(np.arange(25, dtype="f4").reshape(5, 5))
    >>> focal_mean(da, 3).values        # = da.st.focal_mean(3); corners average 4 cells
    array([[ 3. ,  3.5,  4.5,  5.5,  6. ],
           [ 5.5,  6. ,  7. ,  8. ,  8.5],
           [10.5, 11. , 12. , 13. , 13.5],
           [15.5, 16. , 17. , 18. , 18.5],
           [18. , 18.5, 19.5, 20.5, 21. ]], dtype=float32)
    >>> focal_mean(da, 3, boundary="nearest").values[0, 0]   # (0+0+1)*2 + (5+5+6) = 18; /9
    np.float32(2.0)
""")
focal_sum.__doc__ = _doc(
    "Sum of the valid cells in a moving window (NaN where none is valid).",
    "Sums: float64 for integer input (exact), else the input dtype.", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_sum
    >>> da = stengine.cube.make_raster(np.ones((5, 5), dtype="uint8"))
    >>> focal_sum(da, 3).values           # cells in each 3x3 window inside the raster
    array([[4., 6., 6., 6., 4.],
           [6., 9., 9., 9., 6.],
           [6., 9., 9., 9., 6.],
           [6., 9., 9., 9., 6.],
           [4., 6., 6., 6., 4.]])
""")
focal_count.__doc__ = _doc(
    "Number of valid (non-missing, inside-the-raster) cells in a moving window.",
    "int32 counts.", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_count
    >>> a = np.ones((5, 5), "f4"); a[2, 2] = np.nan
    >>> focal_count(stengine.cube.make_raster(a), "3x3", boundary="wrap").values
    array([[9, 9, 9, 9, 9],
           [9, 8, 8, 8, 9],
           [9, 8, 8, 8, 9],
           [9, 8, 8, 8, 9],
           [9, 9, 9, 9, 9]], dtype=int32)
""", skipna=False)
focal_var.__doc__ = _doc(
    "Population variance (ddof = 0) of the valid cells in a moving window.",
    "Float variance.", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_var
    >>> da = stengine.cube.make_raster(np.tile(np.arange(5.0), (5, 1)))  # columns 0..4
    >>> focal_var(da, "1x3", boundary="nearest").values[0]   # var of (0,0,1), (0,1,2), ...
    array([0.22222222, 0.66666667, 0.66666667, 0.66666667, 0.22222222])
""")
focal_std.__doc__ = _doc(
    "Population standard deviation (ddof = 0) of the valid cells in a moving window.",
    "Float standard deviation.", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_std
    >>> da = stengine.cube.make_raster(np.tile(np.arange(5.0), (5, 1)))
    >>> focal_std(da, "1x3").values[0].round(4)   # std of (0,1), (0,1,2), ..., (3,4)
    array([0.5   , 0.8165, 0.8165, 0.8165, 0.5   ])
""")
focal_min.__doc__ = _doc(
    "Minimum of the valid cells in a moving window (van Herk/Gil-Werman for rectangles).",
    "Minimum, in the input dtype (integer results with no valid cell: attrs['nodata']).", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_min
    >>> da = stengine.cube.make_raster(np.arange(25, dtype="int16").reshape(5, 5))
    >>> focal_min(da, 3).values
    array([[ 0,  0,  1,  2,  3],
           [ 0,  0,  1,  2,  3],
           [ 5,  5,  6,  7,  8],
           [10, 10, 11, 12, 13],
           [15, 15, 16, 17, 18]], dtype=int16)
""")
focal_max.__doc__ = _doc(
    "Maximum of the valid cells in a moving window (van Herk/Gil-Werman for rectangles).",
    "Maximum, in the input dtype (integer results with no valid cell: attrs['nodata']).", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_max
    >>> from stengine.ops.window import Window
    >>> a = np.zeros((5, 5), "f4"); a[2, 2] = 1
    >>> focal_max(stengine.cube.make_raster(a), Window.circle(1)).values   # a plus sign
    array([[0., 0., 0., 0., 0.],
           [0., 0., 1., 0., 0.],
           [0., 1., 1., 1., 0.],
           [0., 0., 1., 0., 0.],
           [0., 0., 0., 0., 0.]], dtype=float32)
""")
focal_median.__doc__ = _doc(
    "Median of the valid cells in a moving window (mean of the two middle values for an "
    "even count, as numpy.nanmedian).", "Float median (see module dtypes).", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_median
    >>> a = np.zeros((5, 5), "uint8"); a[2, 2] = 200          # one spike
    >>> focal_median(stengine.cube.make_raster(a), 3).values.max()  # removed
    np.float32(0.0)
""")
focal_majority.__doc__ = _doc(
    "Most frequent value (mode) of the valid cells in a moving window, for class rasters; "
    "ties go to the smallest value.", "Majority class, in the input dtype.", """\
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_majority
    >>> a = np.array([[1, 1, 2, 2, 2], [1, 1, 2, 2, 2], [1, 3, 3, 2, 2],
    ...               [1, 1, 3, 2, 2], [1, 1, 1, 2, 2]], dtype="uint8")
    >>> focal_majority(stengine.cube.make_raster(a), 3).values   # the 3s are absorbed
    array([[1, 1, 2, 2, 2],
           [1, 1, 2, 2, 2],
           [1, 1, 2, 2, 2],
           [1, 1, 1, 2, 2],
           [1, 1, 1, 2, 2]], dtype=uint8)
""")
focal_apply.__doc__ = """Weighted sum over a moving window: ``Σ w[dy, dx] · v[y + dy, x + dx]``.

    The weights are applied as laid out (cross-correlation, as
    ``scipy.ndimage.correlate``; flip them for a true convolution), row 0 north, centred
    on the output cell. Missing cells contribute nothing (``skipna=True``) or make the
    result NaN (``skipna=False``, for cells under a non-zero weight); a window with no
    valid cell gives NaN. With ``normalize=True`` the sum is divided by the sum of the
    weights of the valid cells (a weighted mean that stays unbiased next to NaN).
""" + _COMMON.replace("window : int | str | tuple | array | Window", "weights : array | Window")\
    .replace("Odd square size (``3``), ``\"3x5\"`` (rows × columns), ``(nt, ny, nx)`` with a",
             "2-D ``(y, x)`` or 3-D ``(time, y, x)`` weights of odd sizes (or anything") \
    .replace("time extent, a bool/weight array, or ``Window.circle(r)`` / ``Window.annulus``",
             "``Window.parse`` accepts: ``3`` is a 3x3 box of ones)") \
    .replace("        (radius in cells, or map units with ``units=\"map\"``/``\"m\"``).\n", "") \
    + _SKIPNA + """    normalize : bool, default False
        Divide by the sum of the weights of the valid cells.

    Returns
    -------
    xarray.DataArray
        Float result (see module dtypes). Same dims, coords and chunks as ``da``.
""" + _RAISES + """
    Examples
    --------
    >>> import numpy as np, stengine
    >>> from stengine.ops.focal import focal_apply
    >>> da = stengine.cube.make_raster(np.tile(np.arange(5.0), (5, 1)))   # x gradient
    >>> sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    >>> focal_apply(da, sobel_x, boundary="nearest").values[2]   # 8 per cell inside
    array([4., 8., 8., 8., 4.])
"""

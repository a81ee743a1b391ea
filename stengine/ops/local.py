"""Local (per-pixel) map algebra: reclassify, pixel counts, raster arithmetic, indices, UDFs.

nodata conventions, the same on every backend:

- float rasters: NaN is missing; it propagates through arithmetic and is never counted
  by :func:`local_histogram` (count NaNs explicitly with ``local_count(da, np.nan)``);
- integer rasters: ``attrs["nodata"]`` (if set) is missing; arithmetic writes the
  output's nodata where any input is nodata; histograms skip it;
- float results of integer inputs (``normalized_difference``, division) use NaN.

Edges: a zero-size raster (a 0-length ``y``, ``x``, ``time`` or ``band``) gives the empty
same-shape raster, and counts of 0 (``local_count``, ``local_histogram``); one-pixel
and all-missing rasters follow the rules above. Kernels never see an empty block.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._backends import is_dask
from ..cube import check_dtype, check_raster, check_same_grid
from ..errors import UDFError
from ._kernel import Kernel
from ._lift import lift_block_counts, lift_map
from ._numba import local as _cpu

__all__ = [
    "local_reclassify",
    "local_count",
    "local_histogram",
    "local_add",
    "local_subtract",
    "local_multiply",
    "local_divide",
    "normalized_difference",
    "band_math",
    "local_apply",
    "check_udf",
]

_GPU = "stengine.ops._cuda.local:"
reclassify_lut_k = Kernel("local_reclassify", cpu=_cpu.reclassify_lut, gpu=_GPU + "reclassify_lut")
reclassify_search_k = Kernel("local_reclassify", cpu=_cpu.reclassify_search,
                             gpu=_GPU + "reclassify_search")
count_k = Kernel("local_count", cpu=_cpu.count_equal, gpu=_GPU + "count_equal")
count_mask_k = Kernel("local_count", cpu=_cpu.count_mask, gpu=_GPU + "count_mask")
histogram_k = Kernel("local_histogram", cpu=_cpu.histogram, gpu=_GPU + "histogram")
binary_k = Kernel("local_binary", cpu=_cpu.binary, gpu=_GPU + "binary")
normalized_difference_k = Kernel("normalized_difference", cpu=_cpu.normalized_difference,
                                 gpu=_GPU + "normalized_difference")


def _nodata(da):
    """(value, present) of an integer raster's nodata attribute; NaN rasters have none."""
    nd = da.attrs.get("nodata") if isinstance(da, xr.DataArray) else None
    if nd is None or (isinstance(nd, float) and np.isnan(nd)):
        return 0, False
    return nd, True


def _small_int(dtype) -> bool:
    return np.dtype(dtype).kind in "iub" and np.dtype(dtype).itemsize <= 2


def _fit_dtype(values, like) -> np.dtype:
    """Smallest sensible dtype holding ``values``: ``like`` if it can, else numpy promotion."""
    vals = np.asarray([v for v in values if v is not None])
    like = np.dtype(like)
    if vals.size == 0:
        return like
    if vals.dtype.kind == "f" and np.all(np.isnan(vals) | (vals == np.round(vals))) and \
            like.kind in "iu" and not np.any(np.isnan(vals)):
        vals = vals.astype(np.int64)
    if vals.dtype.kind in "iub" and like.kind in "iub":
        lo, hi = vals.min(), vals.max()
        if np.can_cast(np.min_scalar_type(lo), like) and np.can_cast(np.min_scalar_type(hi), like):
            return like
        return np.result_type(like, np.min_scalar_type(lo), np.min_scalar_type(hi))
    if like.kind == "f":
        return like if vals.dtype.kind in "iub" else np.result_type(like, np.float32)
    return np.result_type(np.float32, like, vals.dtype)


# --------------------------------------------------------------------------- reclassify
def local_reclassify(da, mapping, *, default=None, nodata=None, dtype=None, dims=None):
    """Map pixel values to new values, by exact value or by ``[lo, hi)`` range.

    Parameters
    ----------
    da : xarray.DataArray
        Raster (numpy, dask, CuPy or dask+CuPy); int or float.
    mapping : dict | sequence of (lo, hi, new)
        ``{old: new}`` for exact values, or ranges ``lo <= v < hi`` (non-overlapping).
    default : number, optional
        Value for pixels that match nothing; ``None`` keeps them unchanged.
    nodata : number, optional
        Output nodata for integer outputs; defaults to ``da.attrs["nodata"]``. Input
        nodata pixels become output nodata; NaN stays NaN.
    dtype : dtype, optional
        Output dtype; by default the input dtype if it holds every new value.

    Returns
    -------
    xarray.DataArray
        Same dims, coords and chunks as ``da``.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> da = stengine.cube.make_raster(np.array([[1, 2], [3, 4]], dtype="uint8"))
    >>> da.st.local_reclassify({1: 10, 2: 20}).values
    array([[10, 20],
           [ 3,  4]], dtype=uint8)
    >>> da.st.local_reclassify([(0, 3, 1), (3, 9, 2)]).values
    array([[1, 1],
           [2, 2]], dtype=uint8)
    """
    op = "local_reclassify"
    check_raster(da, dims, op=op)
    check_dtype(da, "iubf", op=op)
    in_nd, has_nd = _nodata(da)
    if isinstance(mapping, dict):
        ranges = False
        items = sorted(mapping.items())
        lo = np.array([k for k, _ in items])
        hi = lo
        new = [v for _, v in items]
    else:
        ranges = True
        try:
            items = sorted((lo_, hi_, v) for lo_, hi_, v in mapping)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{op}: mapping must be a dict {{old: new}} or a sequence of "
                            f"(lo, hi, new) ranges; got {mapping!r}") from e
        lo = np.array([r[0] for r in items])
        hi = np.array([r[1] for r in items])
        new = [r[2] for r in items]
        if np.any(hi <= lo) or np.any(hi[:-1] > lo[1:]):
            raise ValueError(f"{op}: ranges must satisfy lo < hi and must not overlap; "
                             f"got {items}")
    if len(items) == 0:
        raise ValueError(f"{op}: mapping is empty")
    keys = np.asarray(lo if not ranges else np.r_[lo, hi], dtype=float)
    if np.isnan(keys).any():
        raise ValueError(f"{op}: mapping has NaN keys or bounds; NaN pixels stay NaN (no "
                         "pixel equals NaN). Fill them first (da.fillna(v)) to map them.")
    out_nd = nodata if nodata is not None else (in_nd if has_nd else None)
    out_dtype = np.dtype(dtype) if dtype is not None else _fit_dtype(
        [*new, default, out_nd] + ([] if default is not None else [0]), da.dtype)
    if default is None and dtype is not None and not np.can_cast(da.dtype, out_dtype):
        raise TypeError(f"{op}: default=None keeps unmatched {da.dtype} values, which "
                        f"{out_dtype} cannot hold; pass default= or a wider dtype=")
    if default is None and out_dtype.kind in "iu" and da.dtype.kind == "f":
        raise TypeError(f"{op}: unmatched float pixels would be kept but the output is "
                        f"{out_dtype}; pass default= (e.g. default=0)")
    attrs = dict(da.attrs)
    if out_nd is not None and out_dtype.kind in "iub":
        attrs["nodata"] = out_nd
    else:
        attrs.pop("nodata", None)
    new_arr = np.asarray(new, dtype=out_dtype)
    if _small_int(da.dtype):
        info = np.iinfo(da.dtype) if da.dtype.kind != "b" else None
        lo_v, hi_v = (info.min, info.max) if info else (0, 1)
        values = np.arange(lo_v, hi_v + 1)
        lut = values.astype(out_dtype) if default is None else np.full(
            values.size, default, dtype=out_dtype)
        if ranges:
            j = np.searchsorted(lo, values, side="right") - 1
            hit = (j >= 0) & (values < hi[np.maximum(j, 0)])
        else:
            j = np.searchsorted(lo, values).clip(0, lo.size - 1)
            hit = lo[j] == values
        lut[hit] = new_arr[j[hit]]
        if has_nd and lo_v <= in_nd <= hi_v:
            lut[int(in_nd) - lo_v] = out_nd
        out = lift_map(reclassify_lut_k, da, dtype=out_dtype, attrs=attrs,
                       kwargs={"lut": lut, "offset": int(lo_v)})
        if is_dask(out.data) and is_dask(da.data):
            # lets local_count / local_histogram of this very result read da instead
            out.data._st_reclassified = (da.data, da.dims, lut, int(lo_v))
        return out
    kw = dict(lo=lo.astype(da.dtype), hi=hi.astype(da.dtype), new=new_arr, ranges=ranges,
              default=0 if default is None else default, keep=default is None,
              nodata=da.dtype.type(in_nd), has_nodata=has_nd,
              out_nodata=0 if out_nd is None else out_nd, out_dtype=out_dtype)
    return lift_map(reclassify_search_k, da, dtype=out_dtype, attrs=attrs, kwargs=kw)


# --------------------------------------------------------------------------- counts
def _reclassified_source(da):
    """``(source DataArray, lut, offset)`` when ``da`` is the unmodified dask result of a
    LUT :func:`local_reclassify` (``da == lut[source - offset]`` pixel for pixel), else None.

    The source gets ``da``'s dims, coords and name, so counts of it are labelled as counts
    of ``da`` would be. Anything that makes a new dask array (arithmetic, ``isel``,
    ``transpose``, ``astype``) drops the marker, and counts take the general path.
    """
    mark = getattr(da.data, "_st_reclassified", None) if isinstance(da, xr.DataArray) \
        else None
    if mark is None:
        return None
    src, src_dims, lut, offset = mark
    if tuple(src_dims) != tuple(da.dims) or src.shape != da.shape or \
            src.chunks != da.data.chunks:
        return None
    return da.copy(data=src), lut, offset


def _count_of_reclassified(da, value, dims):
    """local_count of a reclassified raster as a count of its source over the preimage
    ``{k : lut[k] == value}``: the reclassified chunk is never made. None: not applicable."""
    src = _reclassified_source(da)
    if src is None:
        return None
    base, lut, offset = src
    try:  # the value as count_equal compares it (cast to the reclassified dtype)
        with np.errstate(all="ignore"):
            v = lut.dtype.type(value) if lut.dtype.kind != "b" else value
    except (OverflowError, ValueError, TypeError):
        return None
    mask = (lut != lut) if v != v else (lut == v)
    return lift_block_counts(count_mask_k, base, dims=dims, nbins=None,
                             kwargs={"mask": mask.astype(np.uint8), "offset": offset},
                             name="count")


def local_count(da, value, *, dims=None):
    """Count pixels equal to ``value`` over the spatial dims, exactly (int64).

    ``value=np.nan`` counts NaN pixels. Other dims (``time``, ``band``) are kept.
    Per-chunk counts are summed in a tree; the result is lazy for dask input.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> da = stengine.cube.make_raster(np.array([[1, 2], [2, 2]], dtype="uint8"))
    >>> int(da.st.local_count(2))
    3
    """
    dims = check_raster(da, dims, op="local_count")
    check_dtype(da, "biuf", op="local_count")
    if not (isinstance(value, int | float | bool | np.number) and not isinstance(
            value, complex | np.complexfloating | np.datetime64 | np.timedelta64)):
        raise TypeError(f"local_count: value must be a real number (or np.nan); got "
                        f"{value!r} ({type(value).__name__})")
    fused = _count_of_reclassified(da, value, dims)
    if fused is not None:
        return fused
    return lift_block_counts(count_k, da, dims=dims, nbins=None, kwargs={"value": value},
                             name="count")


def local_histogram(da, *, classes=None, dims=None):
    """Exact pixel counts (int64) of each integer class over the spatial dims.

    Parameters
    ----------
    da : xarray.DataArray
        Integer or bool raster. ``attrs["nodata"]`` is not counted.
    classes : array-like, optional
        Classes to count. Default: every value of an 8- or 16-bit dtype; for wider
        dtypes, the values present (numpy input only: a dask input would have to be
        loaded to find them, so pass ``classes=`` there).

    Returns
    -------
    xarray.DataArray
        int64 counts with dims ``(*other_dims, "class")``; lazy for dask input.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> da = stengine.cube.make_raster(np.array([[1, 2], [2, 0]], "uint8"), nodata=0)
    >>> h = da.st.local_histogram(classes=[1, 2, 3])
    >>> h.values.tolist(), h["class"].values.tolist()
    ([1, 2, 0], [1, 2, 3])
    """
    from ..errors import ChunkError

    op = "local_histogram"
    dims = check_raster(da, dims, op=op)
    check_dtype(da, "iub", op=op, what="integer (class)")
    nd, has_nd = _nodata(da)
    if classes is None:
        if _small_int(da.dtype):
            info = np.iinfo(da.dtype) if da.dtype.kind != "b" else None
            classes = np.arange(info.min, info.max + 1) if info else np.array([0, 1])
        elif not hasattr(da.data, "dask"):
            classes = np.unique(np.asarray(da.data))
        else:
            raise ChunkError(f"{op} on a dask {da.dtype} raster needs classes= (finding them "
                             "would load the whole raster). Pass classes=[...] if intended.")
    classes = np.unique(np.asarray(classes))
    if classes.dtype.kind not in "biuf" or (classes.dtype.kind == "f" and not np.all(
            np.isfinite(classes) & (classes == np.round(classes)))):
        raise ValueError(f"{op}: classes must be integers (class values of da); got "
                         f"{classes.tolist()[:10]}")
    if classes.size and da.dtype.kind in "iu":
        info = np.iinfo(da.dtype)
        if classes.min() < info.min or classes.max() > info.max:
            raise ValueError(f"{op}: classes must fit da's dtype {da.dtype} ({info.min}.."
                             f"{info.max}); got {classes.min()}..{classes.max()}")
    classes = classes.astype(da.dtype if da.dtype.kind != "b" else "u1")
    if has_nd:
        classes = classes[classes != nd]
    src = _reclassified_source(da)
    if src is not None:  # counts of the source's values, mapped to classes through the LUT
        base, rlut, offset = src
        out_v = rlut.astype(np.int64)
        cls = classes.astype(np.int64)
        j = np.searchsorted(cls, out_v).clip(0, max(cls.size - 1, 0))
        hit = (cls[j] == out_v) if cls.size else np.zeros(out_v.size, bool)
        lut = np.where(hit, j, -1).astype(np.int64)
        return lift_block_counts(
            histogram_k, base, dims=dims, nbins=classes.size, new_dim="class",
            new_coord=classes, kwargs={"classes": classes, "lut": lut, "offset": offset,
                                       "nodata": 0, "has_nodata": False}, name="count")
    lut = offset = None
    if _small_int(da.dtype):
        info = np.iinfo(da.dtype) if da.dtype.kind != "b" else None
        offset = int(info.min) if info else 0
        size = (int(info.max) - offset + 1) if info else 2
        lut = np.full(size, -1, np.int64)
        lut[classes.astype(np.int64) - offset] = np.arange(classes.size)
    else:
        offset = 0
    return lift_block_counts(
        histogram_k, da, dims=dims, nbins=classes.size, new_dim="class", new_coord=classes,
        kwargs={"classes": classes, "lut": lut, "offset": offset, "nodata": nd,
                "has_nodata": has_nd}, name="count")


# --------------------------------------------------------------------------- arithmetic
_OPS = {"add": _cpu.ADD, "subtract": _cpu.SUB, "multiply": _cpu.MUL, "divide": _cpu.DIV}


def _widen(dtype):
    """Next wider integer dtype, so that sums and products of two values cannot wrap."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype("u1")
    if dtype.kind not in "iu" or dtype.itemsize >= 8:
        return dtype
    return np.dtype(f"{dtype.kind}{dtype.itemsize * 2}")


def _binary(name, a, b, dtype, dims):
    op = f"local_{name}"
    if not isinstance(a, xr.DataArray):
        raise TypeError(f"{op}: a must be an xarray.DataArray raster; got {type(a).__name__}")
    check_raster(a, dims, op=op, name="a")
    if isinstance(b, xr.DataArray):
        check_same_grid(op=op, dims=dims, a=a, b=b)
    elif not np.isscalar(b):
        raise TypeError(f"{op}: b must be a raster or a scalar; got {type(b).__name__}")
    for n, x in (("a", a), ("b", b)):
        check_dtype(x if isinstance(x, xr.DataArray) else np.asarray(x), "iubf", op=op, name=n)
    nd_a, has_a = _nodata(a)
    nd_b, has_b = _nodata(b)
    if dtype is not None:
        out_dtype = np.dtype(dtype)
    else:
        bt = b.dtype if isinstance(b, xr.DataArray) else np.min_scalar_type(b)
        base = np.result_type(a.dtype, bt)
        if name == "divide":
            out_dtype = np.result_type(base, np.float32)
        elif name == "subtract" and base.kind == "u":
            out_dtype = np.dtype(f"i{min(8, base.itemsize * 2)}")
        else:
            out_dtype = _widen(base) if name in ("add", "multiply") else base
    attrs = dict(a.attrs)
    attrs.pop("nodata", None)
    if (has_a or has_b) and out_dtype.kind in "iu":
        nd_out = nd_a if has_a else nd_b
        if not np.can_cast(np.min_scalar_type(nd_out), out_dtype):
            nd_out = np.iinfo(out_dtype).max
        attrs["nodata"] = nd_out
    else:
        nd_out = np.nan if out_dtype.kind == "f" else 0
    kw = dict(op=_OPS[name], nd_a=nd_a, has_a=has_a, nd_b=nd_b, has_b=has_b, nd_out=nd_out,
              out_dtype=out_dtype)
    if isinstance(b, xr.DataArray):
        return lift_map(binary_k, a, b, dtype=out_dtype, kwargs=kw, attrs=attrs)
    return lift_map(binary_k, a, dtype=out_dtype, kwargs={"b": b, **kw}, attrs=attrs)


def local_add(a, b, *, dtype=None, dims=None):
    """Add two rasters on the same grid (or a raster and a scalar), pixel by pixel.

    Grids are checked (CRS, transform, shape). Integer sums are computed in the next
    wider dtype (``uint8 + uint8 -> uint16``) so they cannot wrap; pass ``dtype`` to
    choose. Nodata in either input gives nodata (integers) or NaN (floats).

    Examples
    --------
    >>> import numpy as np, stengine
    >>> a = stengine.cube.make_raster(np.array([[200, 1]], "uint8"))
    >>> a.st.local_add(a).values
    array([[400,   2]], dtype=uint16)
    """
    return _binary("add", a, b, dtype, dims)


def local_subtract(a, b, *, dtype=None, dims=None):
    """``a - b`` pixel by pixel (unsigned inputs give a signed result); see :func:`local_add`."""
    return _binary("subtract", a, b, dtype, dims)


def local_multiply(a, b, *, dtype=None, dims=None):
    """``a * b`` pixel by pixel (integers widened); see :func:`local_add`."""
    return _binary("multiply", a, b, dtype, dims)


def local_divide(a, b, *, dtype=None, dims=None):
    """``a / b`` pixel by pixel as float; ``x / 0`` gives NaN; see :func:`local_add`."""
    return _binary("divide", a, b, dtype, dims)


def normalized_difference(a, b, *, dtype=None, dims=None):
    """``(a - b) / (a + b)``, e.g. NDVI = ``normalized_difference(nir, red)``.

    Float32 unless an input is float64 (or ``dtype`` says otherwise). Nodata, NaN and
    ``a + b == 0`` give NaN. Grids are checked.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> nir = stengine.cube.make_raster(np.array([[3, 0]], "uint16"))
    >>> red = stengine.cube.make_raster(np.array([[1, 0]], "uint16"))
    >>> nir.st.normalized_difference(red).values
    array([[0.5, nan]], dtype=float32)
    """
    op = "normalized_difference"
    for n, x in (("a", a), ("b", b)):
        check_raster(x, dims, op=op, name=n)
        check_dtype(x, "iuf", op=op, name=n)
    check_same_grid(op=op, dims=dims, a=a, b=b)
    out_dtype = np.dtype(dtype) if dtype is not None else (
        np.dtype("f8") if np.dtype("f8") in (a.dtype, b.dtype)
        or max(a.dtype.itemsize, b.dtype.itemsize) > 2 and a.dtype.kind != "f" else np.dtype("f4"))
    nd_a, has_a = _nodata(a)
    nd_b, has_b = _nodata(b)
    attrs = {k: v for k, v in a.attrs.items() if k != "nodata"}
    return lift_map(normalized_difference_k, a, b, dtype=out_dtype, attrs=attrs,
                    kwargs=dict(nd_a=nd_a, has_a=has_a, nd_b=nd_b, has_b=has_b,
                                out_dtype=out_dtype))


# --------------------------------------------------------------------------- UDFs
def _samples(rasters, size):
    """Small corners of ``rasters`` (spatial dims cut to ``size``), in memory, in one compute."""
    import dask

    out = []
    for da in rasters:
        sl = {d: slice(0, size) for d in da.dims[-2:]}
        sl.update({d: slice(0, 2) for d in da.dims[:-2]})
        out.append(da.isel(sl).data)
    return list(dask.compute(*out)) if any(hasattr(s, "dask") for s in out) else out


def check_udf(func, *rasters, sample: int = 16, **params):
    """Run ``func`` on a small sample of ``rasters`` and return its output dtype.

    Raises :class:`~stengine.errors.UDFError` naming the problem (an exception, a
    non-array result, a wrong shape or a non-numeric dtype) before anything runs at scale.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> da = stengine.cube.make_raster(np.ones((4, 4), "f4"))
    >>> check_udf(lambda a: a * 2, da)
    dtype('float32')
    >>> check_udf(lambda a: a.sum(), da)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stengine.errors.UDFError: local_apply: <lambda> returned shape () on a (4, 4) sample; ...
    """
    if not callable(func):
        raise TypeError(f"local_apply: func must be callable; got {type(func).__name__}")
    if not rasters:
        raise TypeError("local_apply: pass at least one raster after func")
    name = getattr(func, "__name__", repr(func))
    blocks = _samples(rasters, sample)
    want = np.broadcast_shapes(*(b.shape for b in blocks))
    try:
        out = func(*blocks, **params)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise UDFError(f"local_apply: {name} raised {type(e).__name__}: {e} on a "
                       f"{want} sample of the inputs; fix it before running at scale.") from e
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise UDFError(f"local_apply: {name} returned {type(out).__name__}, not an array; it "
                       f"must return an array of shape {want} (one value per pixel).")
    if tuple(out.shape) != tuple(want):
        raise UDFError(f"local_apply: {name} returned shape {tuple(out.shape)} on a {want} "
                       f"sample; it must return the shape of its inputs, {want} "
                       "(one value per pixel).")
    if np.dtype(out.dtype).kind not in "biuf":
        raise UDFError(f"local_apply: {name} returned dtype {out.dtype}; expected a numeric "
                       "or bool dtype.")
    return np.dtype(out.dtype)


def local_apply(func, *rasters, dtype=None, check: bool = True, name=None, dims=None,
                **params):
    """Apply a user's array function to one or more rasters, chunk by chunk.

    ``func(*blocks, **params)`` gets the aligned blocks of ``rasters`` (numpy, or CuPy
    for GPU rasters) and must return one value per pixel, same shape. Grids are checked,
    and with ``check=True`` the function is first run on a 16×16 sample
    (:func:`check_udf`) so mistakes surface before the cluster works. Chunks along a
    dim the function needs whole (e.g. ``band``) must be a single chunk.

    Every chunk's result is checked too: it must be an array of the chunk's shape and
    of exactly the output dtype (``dtype=``, or the sample's dtype). Zero-size chunks
    never reach ``func``.

    Raises
    ------
    UDFError
        ``func`` fails on the sample or on a chunk, returns something that is not an
        array, a wrong shape, or a dtype other than the declared/sampled one; the
        message names the function and the chunk (its index range along every dim).

    Examples
    --------
    >>> import numpy as np, stengine
    >>> a = stengine.cube.make_raster(np.arange(4.0).reshape(2, 2))
    >>> stengine.ops.local_apply(lambda x, k: x * k, a, k=10).values
    array([[ 0., 10.],
           [20., 30.]])
    """
    if not rasters:
        raise TypeError("local_apply: pass at least one raster after func")
    for i, r in enumerate(rasters):
        check_raster(r, dims, op="local_apply", name=f"rasters[{i}]")
    check_same_grid(op="local_apply", dims=dims,
                    **{f"rasters[{i}]": r for i, r in enumerate(rasters)})
    out_dtype = check_udf(func, *rasters, **params) if check else None
    if dtype is not None and out_dtype is not None and np.dtype(dtype) != out_dtype:
        raise UDFError(f"local_apply: {getattr(func, '__name__', repr(func))} returned dtype "
                       f"{out_dtype} on the sample but dtype={np.dtype(dtype)} was declared; "
                       f"return {np.dtype(dtype)} (e.g. .astype('{np.dtype(dtype)}') in the "
                       f"function) or pass dtype='{out_dtype}'.")
    out_dtype = np.dtype(dtype) if dtype is not None else out_dtype
    if out_dtype is None:
        raise TypeError("local_apply: pass dtype= when check=False")

    fname = getattr(func, "__name__", repr(func))
    dims_out = _out_dims(rasters)

    def kernel(*blocks, block_info, **kw):
        return _checked_call(func, fname, blocks, kw, out_dtype, dims_out, block_info,
                             declared=dtype is not None)

    kernel.__name__ = getattr(func, "__name__", "udf")
    attrs = {k: v for k, v in rasters[0].attrs.items() if k != "nodata"}
    return lift_map(kernel, *rasters, dtype=out_dtype, kwargs=params, attrs=attrs,
                    name=name or rasters[0].name, block_info=True)


def _out_dims(rasters):
    """The output dims of :func:`lift_map` on ``rasters`` (first raster's order, then new)."""
    out = list(rasters[0].dims)
    for r in rasters[1:]:
        out += [d for d in r.dims if d not in out]
    return out


def _checked_call(func, fname, blocks, kw, dtype, dims, block_info, *, declared):
    """``func(*blocks, **kw)`` on one chunk, checked against what the sample check (or
    ``dtype=``) promised: an array of the chunk's shape and exactly ``dtype``."""
    loc = block_info["location"]
    where = ", ".join(f"{d} {a}:{b}" for d, (a, b) in zip(dims, loc, strict=False))
    want = tuple(b - a for a, b in loc)
    try:
        out = func(*blocks, **kw)
    except Exception as e:  # noqa: BLE001 - re-raised with the chunk named
        raise UDFError(f"local_apply: {fname} raised {type(e).__name__}: {e} on the chunk at "
                       f"{where} (shape {want}).") from e
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise UDFError(f"local_apply: {fname} returned {type(out).__name__}, not an array, on "
                       f"the chunk at {where}; it must return an array of shape {want}.")
    if tuple(out.shape) != want:
        raise UDFError(f"local_apply: {fname} returned shape {tuple(out.shape)} on the chunk "
                       f"at {where}; expected {want}, the chunk's shape (one value per pixel).")
    if np.dtype(out.dtype) != dtype:
        said = "declared with dtype=" if declared else "inferred from the 16x16 sample check"
        raise UDFError(f"local_apply: {fname} returned dtype {out.dtype} on the chunk at "
                       f"{where}, but the output dtype is {dtype} ({said}). Return "
                       f"a {dtype} array (e.g. .astype('{dtype}') in the function) or pass "
                       f"dtype='{out.dtype}'.")
    return out


# --------------------------------------------------------------------------- band math
_ALLOWED_FUNCS = {"sqrt", "log", "log10", "exp", "abs", "where", "minimum", "maximum",
                  "clip", "sin", "cos", "tan", "arctan2", "floor", "ceil", "isnan"}


# Bounds that keep parsing and evaluating an untrusted expression cheap (milliseconds).
MAX_EXPR_CHARS = 4096
MAX_EXPR_NODES = 1024
MAX_EXPR_DEPTH = 100


def _compile_expr(expr, names, *, op):
    """Check ``expr`` against band_math's grammar and bounds; return its code object.

    Only numbers, the raster ``names``, the allowed functions (called) and arithmetic,
    comparison and ``& | ~`` operators are accepted, within :data:`MAX_EXPR_CHARS`,
    :data:`MAX_EXPR_NODES` and :data:`MAX_EXPR_DEPTH`. Number literals become float64 and
    constant sub-expressions are folded here in float64 (overflow, division by zero and
    invalid results refused), so evaluation never does Python big-integer arithmetic
    (``10**10**7``) or any per-chunk work beyond numpy's, whatever the input.
    """
    import ast

    if not isinstance(expr, str):
        raise TypeError(f"{op}: expr must be a string; got {type(expr).__name__}")
    if len(expr) > MAX_EXPR_CHARS:
        raise ValueError(f"{op}: expr is {len(expr)} characters long (limit "
                         f"{MAX_EXPR_CHARS}); split it into several band_math calls")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ValueError(f"{op}: cannot parse expr {_short(expr)}: "
                         f"{getattr(e, 'msg', None) or e}") from e
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name,
               ast.Load, ast.Constant, ast.operator, ast.unaryop, ast.cmpop)
    binops = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
              ast.BitAnd, ast.BitOr)
    unops = (ast.USub, ast.UAdd, ast.Invert)
    cmpops = (ast.Lt, ast.Gt, ast.LtE, ast.GtE, ast.Eq, ast.NotEq)
    nodes = 0
    stack = [(tree, 1)]
    while stack:  # iterative: a deep tree must not exhaust the interpreter's stack
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_EXPR_NODES:
            raise ValueError(f"{op}: expr has more than {MAX_EXPR_NODES} syntax nodes; split "
                             "it into several band_math calls")
        if depth > MAX_EXPR_DEPTH:
            raise ValueError(f"{op}: expr nests deeper than {MAX_EXPR_DEPTH} levels; "
                             "simplify it or split it into several band_math calls")
        if not isinstance(node, allowed):
            raise ValueError(f"{op}: {type(node).__name__} is not allowed in expr "
                             f"{_short(expr)}")
        if isinstance(node, ast.BinOp) and not isinstance(node.op, binops):
            raise ValueError(f"{op}: operator {type(node.op).__name__} is not allowed in expr "
                             f"{_short(expr)}; use + - * / // % ** & |")
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, unops):
            raise ValueError(f"{op}: {type(node.op).__name__} is not allowed in expr "
                             f"{_short(expr)}; use ~ for a logical not")
        if isinstance(node, ast.Compare) and (len(node.ops) != 1 or
                                              not isinstance(node.ops[0], cmpops)):
            raise ValueError(f"{op}: expr {_short(expr)} chains comparisons (or uses 'is'/"
                             "'in'); write (lo < a) & (a < hi) instead")
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_FUNCS):
                raise ValueError(f"{op}: only {sorted(_ALLOWED_FUNCS)} may be called in expr "
                                 f"{_short(expr)}")
            if node.keywords:
                raise ValueError(f"{op}: keyword arguments are not allowed in expr "
                                 f"{_short(expr)}; pass arguments by position")
            stack.extend((a, depth + 1) for a in node.args)
            continue
        if isinstance(node, ast.Name):
            if node.id in _ALLOWED_FUNCS and node.id not in names:
                raise ValueError(f"{op}: {node.id} must be called in expr {_short(expr)}")
            if node.id not in names and node.id not in _ALLOWED_FUNCS:
                raise ValueError(f"{op}: unknown name {node.id!r} in expr {_short(expr)}; "
                                 f"rasters given: {sorted(names)}")
        if isinstance(node, ast.Constant) and (
                isinstance(node.value, complex) or not isinstance(node.value, int | float)):
            raise ValueError(f"{op}: only real numbers may appear as constants in expr "
                             f"{_short(expr)}; got {node.value!r}")
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))
    tree = _fold(tree, expr, op)
    return compile(ast.fix_missing_locations(tree), "<band_math>", "eval")


def _short(expr: str, n: int = 80) -> str:
    return repr(expr if len(expr) <= n else expr[:n] + "...")


def _fold(tree, expr, op):
    """Number literals as float64, constant sub-expressions folded in float64 (bounded)."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
           ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
           ast.Lt: operator.lt, ast.Gt: operator.gt, ast.LtE: operator.le,
           ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}

    def num(v):
        """A Python float (or bool) for a literal or a folded value; big ints refused."""
        if isinstance(v, bool | np.bool_):
            return bool(v)
        try:
            f = float(v)
        except OverflowError:
            f = np.inf
        if not np.isfinite(f) and not isinstance(v, float | np.floating):
            raise ValueError(f"{op}: the number {str(v)[:20]}... in expr {_short(expr)} does "
                             "not fit a float64")
        return f

    def arg(v):
        return np.bool_(v) if isinstance(v, bool) else np.float64(v)

    def const(node):
        return node.value if isinstance(node, ast.Constant) else None

    class Folder(ast.NodeTransformer):
        def visit_Constant(self, node):
            return ast.copy_location(ast.Constant(num(node.value)), node)

        def _try(self, node, fn, *args):
            if any(a is None for a in args):
                return node
            try:
                with np.errstate(all="raise"):
                    v = fn(*(arg(a) for a in args))
            except (FloatingPointError, ZeroDivisionError, OverflowError, TypeError) as e:
                raise ValueError(f"{op}: a constant part of expr {_short(expr)} cannot be "
                                 f"evaluated in float64 ({type(e).__name__}: {e}); numbers "
                                 "must stay within float64's range") from e
            if not isinstance(v, np.bool_ | bool) and not np.isfinite(v) and all(
                    isinstance(a, bool) or np.isfinite(a) for a in args):
                raise ValueError(f"{op}: a constant part of expr {_short(expr)} overflows "
                                 "float64; numbers must stay within float64's range")
            return ast.copy_location(ast.Constant(num(v)), node)

        def visit_BinOp(self, node):
            self.generic_visit(node)
            return self._try(node, ops[type(node.op)], const(node.left), const(node.right))

        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            return self._try(node, ops[type(node.op)], const(node.operand))

        def visit_Compare(self, node):
            self.generic_visit(node)
            return self._try(node, ops[type(node.ops[0])], const(node.left),
                             const(node.comparators[0]))

    return Folder().visit(tree)


def band_math(expr: str, /, *, dims=None, **rasters):
    """Evaluate an arithmetic expression over named rasters, chunk by chunk, as float.

    ``expr`` uses the names of ``rasters``, numbers, ``+ - * / // % ** < > <= >= == !=
    & | ~`` and the functions ``sqrt log log10 exp abs where minimum maximum clip sin cos
    tan arctan2 floor ceil isnan``. Grids are checked. Integer nodata becomes NaN first;
    the result is float32 (float64 if any input is float64).

    ``expr`` may come from untrusted users: it is checked in well under a millisecond
    against the grammar above and bounds (at most :data:`MAX_EXPR_CHARS` characters,
    :data:`MAX_EXPR_NODES` syntax nodes, :data:`MAX_EXPR_DEPTH` levels of nesting);
    numbers are float64 and constant parts are folded once, in float64, so evaluation
    costs what numpy's array arithmetic costs, never Python big-integer work
    (``10**10**7`` is refused: it overflows float64).

    Raises
    ------
    ValueError
        ``expr`` does not parse, uses anything outside the grammar, exceeds a bound, or
        has a constant part that overflows float64 or divides by zero; the message
        names ``expr``.

    Examples
    --------
    >>> import numpy as np, stengine
    >>> nir = stengine.cube.make_raster(np.array([[4, 2]], "uint16"))
    >>> red = stengine.cube.make_raster(np.array([[2, 2]], "uint16"))
    >>> band_math("(nir - red) / (nir + red)", nir=nir, red=red).values
    array([[0.33333334, 0.        ]], dtype=float32)
    """
    op = "band_math"
    if not rasters:
        raise TypeError(f"{op}: pass the rasters as keywords, e.g. band_math('a+b', a=..., b=...)")
    code = _compile_expr(expr, set(rasters), op=op)
    names = list(rasters)
    for n in names:
        check_raster(rasters[n], dims, op=op, name=n)
        check_dtype(rasters[n], "iubf", op=op, name=n)
    check_same_grid(op=op, dims=dims, **rasters)
    out_dtype = np.dtype("f8") if any(r.dtype == np.float64 or r.dtype.itemsize > 2
                                      and r.dtype.kind != "f" for r in rasters.values()) \
        else np.dtype("f4")
    nodata = [_nodata(rasters[n]) for n in names]

    def kernel(*blocks):
        from .._backends import array_module

        xp = array_module(blocks[0])
        env = {f: getattr(xp, f) for f in _ALLOWED_FUNCS}
        for n, b, (nd, has) in zip(names, blocks, nodata, strict=True):
            v = b.astype(out_dtype)
            if has:
                v[b == nd] = np.nan
            env[n] = v
        with np.errstate(all="ignore"):  # inf/NaN results are values, as numpy gives them
            r = eval(code, {"__builtins__": {}}, env)
            shape = np.broadcast_shapes(*(b.shape for b in blocks))
            if not hasattr(r, "shape") or r.shape != shape:  # e.g. "2" or an unused raster
                r = r + xp.zeros_like(blocks[0], shape=shape, dtype=out_dtype)
            return r.astype(out_dtype, copy=False)

    kernel.__name__ = "band_math"
    first = rasters[names[0]]
    attrs = {k: v for k, v in first.attrs.items() if k != "nodata"}
    return lift_map(kernel, *rasters.values(), dtype=out_dtype, attrs=attrs, name=None)

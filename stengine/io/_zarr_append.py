"""Appends checked against the store, and exact datetime encoding for Zarr writes.

An append must match the store in: variables (names, dims, sizes of the other dims),
grid (x/y coordinates, CRS and transform via :class:`~stengine.grid.Grid`), other
coordinates, dtype (safe casts; narrowing casts are checked value by value inside the
write tasks), and order along the append dim (new labels strictly increasing and after
the store's last one). :func:`check_append` refuses with an
:class:`~stengine.errors.AppendMismatchError` naming what differs, before anything is
written; a value outside the store's dtype fails its write task, and the journal rolls
the append back.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import AppendMismatchError, GridMismatchError
from ._zarr_read import _ENGINE_UNITS, _EPOCH, _UNITS

_ORDER = ["s", "ms", "us", "ns"]


# ------------------------------------------------------------------------------ time
def time_unit(dtype, name: str = "time", op: str = "to_zarr") -> str:
    """The stored unit of a datetime64 dtype: its own for s/ms/us/ns; coarser units
    (D, h, m, ...) are stored as seconds (exact)."""
    unit, _ = np.datetime_data(dtype)
    if unit in _UNITS:
        return unit
    if unit in ("ps", "fs", "as"):
        raise ValueError(f"{op}: {name!r} has datetime64[{unit}] values; Zarr stores hold "
                         "at most nanosecond resolution. Convert with .astype('M8[ns]').")
    return "s"


def normalise_times(ds: xr.Dataset, op: str = "to_zarr") -> xr.Dataset:
    """Cast datetime64 variables of units other than s/ms/us/ns to seconds."""
    cast = {}
    for name, v in ds.variables.items():
        if v.dtype.kind == "M":
            unit = time_unit(v.dtype, name, op)
            if np.datetime_data(v.dtype)[0] != unit:
                cast[name] = v.astype(f"M8[{unit}]")
    if not cast:
        return ds
    return ds.assign_coords({k: v for k, v in cast.items() if k in ds.coords}).assign(
        {k: v for k, v in cast.items() if k not in ds.coords})


def time_encoding(dtype) -> dict:
    """Encoding that stores ``dtype`` values exactly: int64 ``<unit> since 1970-01-01``."""
    unit = time_unit(dtype)
    return {"units": _UNITS[unit] + _EPOCH, "calendar": "proleptic_gregorian",
            "dtype": "int64"}


_NS_RANGE = "1677-09-21T00:12:43.145224193 .. 2262-04-11T23:47:16.854775807"


def to_store_unit(values: np.ndarray, unit: str, where: str, name: str) -> np.ndarray:
    """``values`` (datetime64) as int64 counts of ``unit``, exactly, or refuse."""
    src = np.datetime_data(values.dtype)[0]
    if np.isnat(values).any():
        raise AppendMismatchError(f"{where}: {name!r} has NaT values; every appended "
                                  f"{name} needs a label")
    ints = values.astype(np.int64)
    if src == unit:
        return ints
    if src in _ORDER and _ORDER.index(src) < _ORDER.index(unit):  # finer store unit
        factor = 1000 ** (_ORDER.index(unit) - _ORDER.index(src))
        lim = np.iinfo(np.int64).max // factor
        if ints.size and (ints.max() > lim or ints.min() < -lim):
            lo = np.datetime64(-lim, src)
            hi = np.datetime64(lim, src)
            raise AppendMismatchError(
                f"{where}: {name!r} values are outside the store's datetime64[{unit}] range "
                f"({lo} .. {hi}); got {values.min()} .. {values.max()}. Write them to a "
                f"store of a coarser time unit (e.g. {name} as datetime64[{src}]).")
        return ints * factor
    conv = values.astype(f"M8[{unit}]")
    if not np.array_equal(conv.astype(values.dtype), values):
        raise AppendMismatchError(
            f"{where}: {name!r} values have a finer resolution than the store's "
            f"datetime64[{unit}] (e.g. {values[conv.astype(values.dtype) != values][0]}); "
            f"round them to {_UNITS[unit]} first (e.g. .dt.floor) or write another store.")
    return conv.astype(np.int64)


# ------------------------------------------------------------------------------ casts
def _cast_checked(block, dtype, name, where, block_info=None):
    """``block`` cast to ``dtype``; raise if a value does not fit (the task fails, the
    journal rolls the append back)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = block.astype(dtype)
        if block.dtype.kind in "iub":  # integers must stay exact (float32 holds 2**24)
            bad = out.astype(block.dtype) != block
        else:
            bad = np.isinf(out) & np.isfinite(block)
        if not bad.any():
            return out
        val = block[bad].flat[0]
    else:
        info = np.iinfo(dtype)
        if block.dtype.kind == "f":
            lo_ok = np.isnan(block) | (block >= info.min)
            bad = ~(lo_ok & (np.isnan(block) | (block <= info.max)))
        else:
            bad = (block < info.min) | (block > info.max)
        if not bad.any():
            return block.astype(dtype)
        val = block[bad].flat[0]
    loc = block_info[0]["chunk-location"] if block_info else None
    at = f" (in the dask chunk at {loc})" if loc is not None else ""
    raise AppendMismatchError(
        f"{where}: variable {name!r} has a value {val!r}{at} that the store's dtype "
        f"{dtype} cannot hold (out of range, or an integer it cannot represent exactly); "
        "nothing was appended. Rescale or clip the data, or write a new store with a "
        "wider dtype.")


def _cast(var: xr.DataArray, dtype, name: str, where: str) -> xr.DataArray:
    src, dst = var.dtype, np.dtype(dtype)
    if src == dst:
        return var
    if np.can_cast(src, dst, "safe"):
        return var.astype(dst)
    if not (np.can_cast(src, dst, "same_kind") and src.kind in "biuf" and dst.kind in "iuf"):
        raise AppendMismatchError(
            f"{where}: variable {name!r} is {src}; the store holds {dst}, and {src} values "
            f"cannot be stored as {dst} without changing them. Convert explicitly (e.g. "
            f".round().astype('{dst}')) or write another store.")
    if isinstance(var.data, np.ndarray):  # in memory: check now, before anything is written
        return var.copy(data=_cast_checked(var.data, dst, name, where))
    data = var.data.map_blocks(_cast_checked, dst, name, where, dtype=dst)
    return var.copy(data=data)


# ------------------------------------------------------------------------------ checks
def _crs_name(var) -> str:
    from ..grid import parse_crs

    a = var.attrs if var is not None else {}
    text = a.get("crs_wkt") or a.get("spatial_ref")
    if not text:
        return "none"
    crs = parse_crs(text)
    return crs.to_string() if crs.to_epsg() else crs.name


def _same_coord(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a, b = a.astype("f8"), b.astype("f8")
        step = np.abs(np.diff(a)).min() if a.size > 1 else max(abs(a).max(initial=0), 1.0)
        return bool(np.allclose(a, b, rtol=0, atol=1e-6 * step, equal_nan=True))
    return bool(np.array_equal(a, b))


def check_append(new: xr.Dataset, old: xr.Dataset, dim: str, store: str,
                 root_attrs: dict) -> tuple[xr.Dataset, np.ndarray | None]:
    """Check ``new`` against the store ``old`` (opened lazily) for an append along ``dim``.

    Returns the dataset to append (data variables along ``dim`` only, cast to the store's
    dtypes, attrs as stored) and the int64 values to append to the store's ``dim``
    coordinate (None when it has none).
    """
    from ..cube import SPATIAL_REF, get_grid

    where = f"to_zarr: cannot append to {store!r}"
    if dim not in old.dims:
        raise AppendMismatchError(f"{where}: append_dim {dim!r} is not a dim of the store "
                                  f"{tuple(old.dims)}")
    nv, ov = set(new.data_vars), set(old.data_vars)
    if nv != ov:
        raise AppendMismatchError(
            f"{where}: variables differ: the store has {sorted(ov)}, the data has "
            f"{sorted(nv)}. Rename the data's variables to the store's (da.rename(...)) or "
            "write another store.")
    out = {}
    for name in sorted(nv):
        a, b = old[name], new[name]
        if set(a.dims) != set(b.dims):
            raise AppendMismatchError(f"{where}: variable {name!r} has dims {b.dims}; the "
                                      f"store's has {a.dims}")
        b = b.transpose(*a.dims)
        for d in a.dims:
            if d != dim and a.sizes[d] != b.sizes[d]:
                raise AppendMismatchError(
                    f"{where}: variable {name!r} has {b.sizes[d]} along {d!r}; the store has "
                    f"{a.sizes[d]} (only {dim!r} may differ)")
        if "y" in a.dims and "x" in a.dims:
            try:
                diff = get_grid(a).differences(get_grid(b))
            except GridMismatchError:  # irregular coords: compared one by one below
                diff = []
            if diff:
                raise AppendMismatchError(
                    f"{where}: the data's grid differs from the store's: {'; '.join(diff)} "
                    "(data vs store). Reproject or align the data to the store's grid "
                    "(stengine.reproject) first.")
        b = _cast(b, a.dtype, name, where)
        b = b.drop_vars([c for c in b.coords])
        b.attrs = dict(a.attrs)
        b.encoding = {}
        out[name] = b
    from ..grid import _crs_equal, parse_crs

    def crs(r):
        t = (r.attrs.get("crs_wkt") or r.attrs.get("spatial_ref")) if r is not None else None
        return parse_crs(t) if t else None

    old_ref, new_ref = old.coords.get(SPATIAL_REF), new.coords.get(SPATIAL_REF)
    if not _crs_equal(crs(old_ref), crs(new_ref)):
        raise AppendMismatchError(
            f"{where}: CRS differs: the store's is {_crs_name(old_ref)}, the data's is "
            f"{_crs_name(new_ref)}. Reproject the data to the store's CRS first.")
    along = {}
    for cname, c in old.coords.items():
        if dim in c.dims and cname != dim:
            if cname not in new.coords:
                raise AppendMismatchError(f"{where}: the data lacks the coordinate {cname!r} "
                                          f"that the store has along {dim!r}")
            along[cname] = new[cname].variable.copy(deep=False)
            along[cname].encoding = {}
    for cname, c in new.coords.items():
        if cname == SPATIAL_REF or (dim in c.dims and (cname == dim or cname in along)):
            continue
        if cname not in old.variables:
            raise AppendMismatchError(f"{where}: the data has a coordinate {cname!r} that the "
                                      "store does not have; drop it (.drop_vars) or write "
                                      "another store")
        oc = old[cname]
        if oc.dims != c.dims or not _same_coord(np.asarray(oc.values), np.asarray(c.values)):
            ov_, nv_ = np.asarray(oc.values).ravel()[:3], np.asarray(c.values).ravel()[:3]
            raise AppendMismatchError(
                f"{where}: coordinate {cname!r} differs from the store's (data starts "
                f"{nv_}, store starts {ov_}; sizes {c.shape} vs {oc.shape}): the data is on "
                "another grid. Align it to the store's coordinates first.")
    labels = None
    if dim in old.coords:
        if dim not in new.coords:
            raise AppendMismatchError(f"{where}: the data has no {dim!r} coordinate; the "
                                      f"store's {dim!r} is labelled. Assign one "
                                      f"(.assign_coords({dim}=...)).")
        ovals = np.asarray(old[dim].values)
        nvals = np.asarray(new[dim].values)
        if ovals.dtype.kind == "M":
            if nvals.dtype.kind != "M":
                raise AppendMismatchError(f"{where}: {dim!r} of the data is {nvals.dtype}; the "
                                          f"store's is {ovals.dtype}")
            unit = np.datetime_data(ovals.dtype)[0]
            labels = to_store_unit(nvals, unit, where, dim)
            olab = ovals.astype(np.int64)
            shown = nvals
        else:
            if not np.can_cast(nvals.dtype, ovals.dtype, "same_kind"):
                raise AppendMismatchError(f"{where}: {dim!r} of the data is {nvals.dtype}; "
                                          f"the store's is {ovals.dtype}")
            labels, olab, shown = nvals.astype(ovals.dtype), ovals, nvals
        if labels.size > 1 and not np.all(labels[1:] > labels[:-1]):
            i = int(np.argmin(labels[1:] > labels[:-1]))
            raise AppendMismatchError(
                f"{where}: the data's {dim!r} labels are not strictly increasing ({shown[i]} "
                f"then {shown[i + 1]}); sort them (.sortby({dim!r})) and drop duplicates")
        increasing = olab.size < 2 or bool(np.all(olab[1:] > olab[:-1]))
        if increasing and olab.size and labels.size and labels[0] <= olab[-1]:
            raise AppendMismatchError(
                f"{where}: the data's {dim!r} starts at {shown[0]}, not after the store's "
                f"last {dim} {ovals[-1]}; an append must add later {dim} steps only (this "
                "one is a duplicate, or earlier). Select the new steps (.sel("
                f"{dim}=slice(...))) or overwrite the store with mode='w'.")
        if not increasing and np.isin(labels, olab).any():
            raise AppendMismatchError(f"{where}: some of the data's {dim!r} labels are "
                                      "already in the store")
        if old[dim].dtype.kind == "M":
            labels = labels.astype(np.int64)
            if str(old[dim].encoding.get("units", "")).strip() not in _ENGINE_UNITS:
                # another writer's CF units (e.g. days since 2000): xarray encodes them
                along[dim] = xr.Variable((dim,), labels.view(ovals.dtype))
                labels = None
    ds = xr.Dataset(out)
    if along:
        ds = ds.assign_coords(along)
    ds.attrs = dict(root_attrs)
    return ds, labels

"""Checking the input of :class:`~stengine.io.points.PointStore` before anything is written.

A batch of records (:func:`_prepare`): column names and set, every column's type and
dtype (safe or value-preserving casts only), lon/lat (finite; lat in [-90, 90]) and
time (no NaT, within the store's task interval, any ``datetime64`` unit taken exactly);
and the arguments of ``create`` / ``PointStore`` (``variables``, ``lock_timeout``).
Errors name the column or argument.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AppendMismatchError, IndexRangeError
from ..index.htmst import KeyScheme
from ..index.timecode import to_ns

_BASE = {"lon": "float64", "lat": "float64", "time": "int64"}
_RESERVED = ("key", "chunk_first", "chunk_last", "zarr.json")
_LON_RANGE = (-360.0, 360.0)


def _check_timeout(t, where):
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, int | float | np.integer | np.floating) or not (
            t >= 0):
        raise ValueError(f"{where}: lock_timeout must be seconds >= 0 (or None for the "
                         f"default); got {t!r}")
    return float(t)


def _records_frame(records, where: str) -> pd.DataFrame:
    if hasattr(records, "dask") and hasattr(records, "compute"):
        records = records.compute()
    if isinstance(records, dict):
        try:
            records = pd.DataFrame(records)
        except (ValueError, TypeError) as e:
            raise AppendMismatchError(f"{where}: records (a dict of columns) must hold "
                                      f"equal-length 1-D columns: {e}") from None
    if not isinstance(records, pd.DataFrame):
        raise TypeError(f"{where}: records must be a pandas or dask DataFrame (or a dict of "
                        f"columns); got {type(records).__name__}")
    return records


def _check_names(cols, where, what="column", exc=AppendMismatchError):
    bad = [c for c in cols if not isinstance(c, str) or c in _RESERVED or not c
           or "/" in c or "\\" in c or c.startswith(".")]
    if bad:
        raise exc(
            f"{where}: {what} names {bad} are reserved or invalid (names must be non-empty "
            f"strings without '/' or a leading '.', and not one of {list(_RESERVED)}); "
            "rename them")


def _variable_dtypes(variables, where) -> dict:
    """``{name: dtype name}`` of ``create(variables=...)``."""
    if not isinstance(variables, dict):
        raise TypeError(f"{where}: variables must be a dict {{name: dtype}}; got "
                        f"{type(variables).__name__}")
    base = [k for k in variables if k in _BASE]
    if base:
        raise ValueError(f"{where}: variables must not name {base}: lon, lat (float64 "
                         "degrees) and time (ns) are always stored")
    _check_names(list(variables), where, "variable", ValueError)
    out = {}
    for k, v in variables.items():
        try:
            dt = np.dtype(v)
        except TypeError:
            raise TypeError(f"{where}: variables[{k!r}]: {v!r} is not a dtype; use e.g. "
                            "'float32', 'int16' or 'bool'") from None
        if dt.kind not in "biuf":
            raise TypeError(f"{where}: variables[{k!r}] must be a numeric or bool dtype; got "
                            f"{dt}. Store datetimes as int64 ns and strings as category codes")
        out[k] = dt.name
    return out


def _values(s: pd.Series, name: str, where: str, kinds: str = "biuf") -> np.ndarray:
    """The numpy values of column ``name``, refusing non-numeric ones."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind == "O":
        kind = pd.api.types.infer_dtype(s, skipna=False)
        if kind in ("integer", "floating", "mixed-integer-float", "boolean"):
            arr = np.asarray(s.tolist())
        else:
            raise _not_numeric(name, where, f"{kind} values (object dtype)")
    elif isinstance(dt, np.dtype):
        arr = s.to_numpy()
    else:  # a pandas extension dtype: nullable ints, floats, bools; strings; categories
        npdt = getattr(dt, "numpy_dtype", None)
        if npdt is None or np.dtype(npdt).kind not in "biuf":
            what = "strings" if pd.api.types.is_string_dtype(dt) else f"values of dtype {dt}"
            raise _not_numeric(name, where, what)
        na = np.asarray(s.isna())
        if na.any():
            if np.dtype(npdt).kind != "f":
                raise AppendMismatchError(
                    f"{where}: column {name!r} has a missing value (pd.NA) at position "
                    f"{int(np.argmax(na))}, which {dt} values cannot be stored without; fill "
                    "or drop those records, or make the column float (NaN)")
            arr = s.to_numpy(dtype=npdt, na_value=np.nan)
        else:
            arr = s.to_numpy(dtype=npdt)
    if arr.dtype.kind not in kinds:
        what = {"U": "strings", "S": "bytes", "M": "datetimes", "m": "timedeltas",
                "c": "complex numbers", "b": "booleans"}.get(arr.dtype.kind,
                                                            f"values of dtype {arr.dtype}")
        raise _not_numeric(name, where, what, kinds)
    return arr


def _not_numeric(name, where, what, kinds="biuf") -> AppendMismatchError:
    want = "real numbers (int or float)" if kinds == "iuf" else "numbers or booleans"
    return AppendMismatchError(f"{where}: column {name!r} must hold {want}; got {what}. "
                               "Convert it (e.g. pandas.to_numeric) or drop it")


def _cast(arr: np.ndarray, name: str, dst: np.dtype, where: str) -> np.ndarray:
    """``arr`` as ``dst`` when the cast changes no value, else AppendMismatchError."""
    src = arr.dtype
    if src == dst:
        return arr
    if np.can_cast(src, dst, "safe"):
        return arr.astype(dst)
    bad = None
    with np.errstate(all="ignore"):
        if dst.kind in "iu" and src.kind in "iuf":
            info = np.iinfo(dst)
            ok = (arr >= info.min) & (arr <= info.max)
            if src.kind == "f":
                ok &= np.isfinite(arr) & (arr == np.round(arr))
            if not ok.all():
                bad = int(np.argmin(ok))
                why = (f"whole numbers in [{info.min}, {info.max}]")
        elif dst.kind == "f" and src.kind == "f":
            out = arr.astype(dst)
            over = np.isinf(out) & np.isfinite(arr)
            if over.any():
                bad = int(np.argmax(over))
                why = f"values within the {dst} range (|x| <= {np.finfo(dst).max:.4g})"
            else:
                return out
        elif dst.kind == "f" and src.kind in "iu":
            out = arr.astype(dst)
            ok = out.astype(np.float64) == arr.astype(np.float64)
            if not ok.all():
                bad = int(np.argmin(ok))
                why = f"integers that {dst} holds exactly"
            else:
                return out
        else:
            raise AppendMismatchError(
                f"{where}: column {name!r} is {dst} in the store; got {src} values, which "
                f"cannot be cast to {dst} safely. Convert the column to {dst} first")
    if bad is not None:
        raise AppendMismatchError(
            f"{where}: column {name!r} is {dst} in the store, so it needs {why}; got "
            f"{arr[bad]!r} ({src}) at position {bad}. Fix those values, or create the store "
            "with a wider dtype for this variable")
    return arr.astype(dst)


def _coordinate(s: pd.Series, name: str, where: str) -> np.ndarray:
    arr = _cast(_values(s, name, where, kinds="iuf"), name, np.dtype("float64"), where)
    lo, hi = _LON_RANGE if name == "lon" else (-90.0, 90.0)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(f"{where}: {name} must be finite degrees; got {arr[i]} at "
                              f"position {i}. Drop or fix those records")
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(f"{where}: {name} must be in [{lo:g}, {hi:g}] degrees; got "
                              f"{arr[i]} at position {i}")
    return arr


def _times(s: pd.Series, scheme: KeyScheme, where: str) -> np.ndarray:
    """int64 ns of the time column, all in the task interval (any datetime64 unit, exact)."""
    t0, t1 = scheme.t0, scheme.t1
    ns = to_ns(s, where=where, name="time", within=(t0, t1))
    bad = (ns < t0) | (ns >= t1)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexRangeError(
            f"{where}: time must lie in the store's task interval [{np.datetime64(t0, 'ns')}, "
            f"{np.datetime64(t1, 'ns')}) (its time grid); got {np.datetime64(int(ns[i]), 'ns')} "
            f"at position {i}. Drop those records, or create the store with a task interval "
            "that holds them")
    return ns


def _prepare(df: pd.DataFrame, cols: dict | None, scheme: KeyScheme, where: str):
    """Check a batch against the store; ``(columns, sorted batch)``, or None if empty."""
    names = list(df.columns)
    notstr = [c for c in names if not isinstance(c, str)]
    if notstr:
        raise AppendMismatchError(f"{where}: column names must be strings; got {notstr!r}. "
                                  "Rename them (df.columns = df.columns.astype(str))")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise AppendMismatchError(f"{where}: records have duplicate columns {dup}; keep one "
                                  "of each")
    missing = [c for c in ("lon", "lat", "time") if c not in names]
    if missing:
        raise AppendMismatchError(f"{where}: records need columns lon, lat, time; missing "
                                  f"{missing} (got {names})")
    if cols is None:  # the first batch defines the variables
        extra = [c for c in names if c not in _BASE]
        _check_names(extra, where)
        cols = {**_BASE, **{c: _values(df[c], c, where).dtype.name for c in extra}}
    extra = sorted(set(names) - set(cols))
    missing = [c for c in cols if c not in names]
    if extra or missing:
        raise AppendMismatchError(f"{where}: records must have exactly the store's columns "
                                  f"{list(cols)}; missing {missing}, unexpected {extra}")
    if len(df) == 0:
        return None
    data = {c: _coordinate(df[c], c, where) for c in ("lon", "lat")}
    data["time"] = _times(df["time"], scheme, where)
    for c, dt in cols.items():
        if c not in _BASE:
            data[c] = _cast(_values(df[c], c, where), c, np.dtype(dt), where)
    key = scheme.encode_ns(data["lon"], data["lat"], data["time"])
    order = np.argsort(key, kind="stable")
    return cols, {"key": key[order], **{c: v[order] for c, v in data.items()}}

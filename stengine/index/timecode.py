"""Hierarchical time cells: a task interval ``[t0, t1)`` split level by level into ``2**b`` cells.

Level 0 splits ``[t0, t1)`` into ``m`` cells, level L into ``m**(L+1)``, so a time code
at level L has ``b*(L+1)`` bits and its parent is ``code >> b``. Times are UTC and
handled as integer nanoseconds since 1970 (``datetime64[ns]``); naive datetimes are
taken as UTC, aware ones are converted.

Every time argument goes through :func:`to_ns`: ``datetime64`` of any unit (pandas 3
makes ``us`` by default), pandas, ``datetime`` and ISO strings are read exactly. Instants
outside the int64-nanosecond range [1677-09-21T00:12:43.145224193,
2262-04-11T23:47:16.854775807] and NaT are refused with
:class:`~stengine.errors.IndexRangeError` naming the argument (numpy's own conversion
would wrap them silently to other dates); times to encode must also lie in the task
interval ``[t0, t1)``.

Cell ``k`` of level L holds the instants ``t`` with
``floor((t - t0) * N / D) = k``, where ``N = m**(L+1)`` and ``D = t1 - t0`` in ns,
computed exactly in integers. Its bounds are ``[t0 + ceil(k*D/N), t0 + ceil((k+1)*D/N))``;
when ``D`` is not a multiple of ``N`` cells differ in length by at most 1 ns, and
cells are nested exactly (the children of a cell partition it).

Examples
--------
>>> g = TimeGrid("2013-01-01", "2013-01-09", fanout=2)   # 8 days, halved per level
>>> g.encode(["2013-01-01", "2013-01-04T12:00"], 1).tolist()   # 4 cells of 2 days
[0, 1]
>>> start, stop = g.decode([1], 1)
>>> str(start[0]), str(stop[0])
('2013-01-03T00:00:00.000000000', '2013-01-05T00:00:00.000000000')
>>> g.cover("2013-01-02", "2013-01-06", 1).tolist()   # cells meeting [2 Jan, 6 Jan)
[[0, 3]]
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numba
import numpy as np

from ..errors import IndexRangeError

__all__ = ["TimeGrid", "to_ns", "encode", "decode", "cover"]

jit = numba.njit(nogil=True, cache=True)
_MAX_DURATION = 1 << 62  # ns (146 years): keeps the integer arithmetic inside 64 bits
_M32 = np.uint64(0xFFFFFFFF)


NS_MIN = int(np.iinfo(np.int64).min) + 1  # int64 min is NaT
NS_MAX = int(np.iinfo(np.int64).max)
NS_RANGE = "[1677-09-21T00:12:43.145224193, 2262-04-11T23:47:16.854775807]"
_SUB_NS = ("ps", "fs", "as")


def _fmt_ns(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns"))


def _first(mask) -> int:
    return int(np.flatnonzero(np.ravel(mask))[0])


def _at(arr, i) -> str:
    return "" if np.ndim(arr) == 0 else f" (at index {i})"


def _out_of_range(where, name, value, at, within) -> IndexRangeError:
    if within is None:
        valid = f"within the datetime64[ns] range {NS_RANGE}"
        fix = ("Times are held as int64 nanoseconds since 1970 UTC; pass times within that "
               "range (drop or correct the others).")
    else:
        valid = (f"in the task interval [{_fmt_ns(within[0])}, {_fmt_ns(within[1])}) of this "
                 f"index (and any time within the datetime64[ns] range {NS_RANGE})")
        fix = "Drop or correct those records (no task interval can reach past the ns range)."
    return IndexRangeError(f"{where}: {name} must be {valid}; got {value}{at}. {fix}")


_UNIT_NS = {"W": 7 * 86400 * 10 ** 9, "D": 86400 * 10 ** 9, "h": 3600 * 10 ** 9,
            "m": 60 * 10 ** 9, "s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}
_NAT = np.iinfo(np.int64).min


def _datetime64_to_ns(arr: np.ndarray, where, name, within) -> np.ndarray:
    """int64 ns (NaT kept as int64 min) of a ``datetime64`` array of any unit.

    Done in integers, not with ``astype("datetime64[ns]")``: numpy wraps silently on
    overflow (year 1500 in seconds becomes 2084 in ns) and misconverts values near the
    ends of the range. Units finer than ns (always in range) are floored to whole ns.
    """
    unit, count = np.datetime_data(arr.dtype)
    if unit in ("Y", "M"):  # calendar units: to days first, after a range check in years
        v = arr.view(np.int64)
        ok = v == _NAT
        lim = 300 if unit == "Y" else 3600  # 1670..2270 in years / months of count
        ok |= np.abs(v) <= lim // count
        if not ok.all():
            i = _first(~ok)
            raise _out_of_range(where, name, np.ravel(arr)[i], _at(arr, i), within)
        arr = arr.astype("datetime64[D]")
        unit, count = "D", 1
    if unit not in _UNIT_NS:  # sub-ns units (ps, fs, as) or generic (NaT only)
        return arr.astype("datetime64[ns]").view(np.int64)
    f = _UNIT_NS[unit] * count
    v = arr.view(np.int64)
    if f == 1:
        return v.copy()  # a copy, as for every other unit
    lo, hi = -(-NS_MIN // f), NS_MAX // f
    if v.size == 0:
        return v.copy()
    vmin, vmax = int(v.min()), int(v.max())
    if vmin == _NAT:  # NaT present (to_ns refuses it): mask it out of the range check
        nat = v == _NAT
        vv = np.where(nat, 0, v)
        vmin, vmax = int(vv.min()), int(vv.max())
    else:
        nat, vv = None, v
    if vmin < lo or vmax > hi:
        bad = (vv < lo) | (vv > hi)
        i = _first(bad if nat is None else bad & ~nat)
        raise _out_of_range(where, name, np.ravel(arr)[i], _at(arr, i), within)
    ns = vv * np.int64(f)
    return ns if nat is None else np.where(nat, _NAT, ns)


def to_ns(times, *, where: str = "to_ns", name: str = "time", within=None) -> np.ndarray:
    """Nanoseconds since 1970-01-01 UTC (int64) of datetime-like values.

    The one conversion every index function uses for times.

    Parameters
    ----------
    times : datetime-like or array_like
        ``datetime64`` arrays or scalars of any unit (``s``, ``ms``, ``us``, ``ns``,
        ``D``, ...; finer than ns is floored to whole ns), pandas Series, Index or
        Timestamps of any unit, ``datetime``/``date`` objects, or ISO 8601 strings.
        tz-aware values are converted to UTC; naive ones are taken as UTC.
    where, name : str
        The calling function and the argument, named in errors.
    within : (int, int), optional
        The task interval ``[t0, t1)`` (ns) of the caller's index, named in the error
        for times outside the ns range (the caller checks the interval itself).

    Returns
    -------
    numpy.ndarray
        int64 ns of ``times``' shape, exact for every representable instant.

    Raises
    ------
    IndexRangeError
        NaT (missing times), unparsable strings, or instants outside the int64
        nanosecond range [1677-09-21T00:12:43.145224193, 2262-04-11T23:47:16.854775807]
        (which numpy would otherwise wrap silently).
    TypeError
        Numbers or timedeltas (convert with ``pandas.to_datetime(values, unit=...)``).

    Examples
    --------
    >>> to_ns(["1970-01-01T00:00:01"]).tolist()
    [1000000000]
    >>> to_ns(np.array(["1970-01-02"], "datetime64[D]")).tolist()
    [86400000000000]
    """
    tz = getattr(getattr(times, "dtype", None), "tz", None)
    if tz is not None:  # tz-aware pandas Series / DatetimeIndex: to naive UTC, vectorised
        times = times.dt.tz_convert(None) if hasattr(times, "dt") else times.tz_convert(None)
    arr = np.asarray(times)
    if arr.size == 0:  # e.g. an empty list (float64 to numpy): nothing to misread
        return np.empty(arr.shape, np.int64)
    if arr.dtype.kind in "iufbcm":
        what = "timedeltas" if arr.dtype.kind == "m" else "numbers"
        raise TypeError(f"{where}: {name} must be datetimes (datetime64, pandas, datetime or ISO "
                        f"strings); got {what} of dtype {arr.dtype}. Convert with "
                        "pandas.to_datetime(values, unit=...) first.")
    if arr.dtype.kind != "M":
        import pandas as pd

        vals = np.ravel(arr) if arr.ndim else np.array([arr.item()], dtype=object)
        try:
            idx = pd.to_datetime(vals, utc=True,
                                 format="ISO8601" if arr.dtype.kind in "US" else None)
        except (ValueError, TypeError, OverflowError) as e:  # incl. OutOfBoundsDatetime
            raise IndexRangeError(f"{where}: cannot read {name} as datetimes (ISO 8601 strings, "
                                  f"datetime or datetime64 within {NS_RANGE}): {e}") from e
        # pandas picks the unit (s/us/ns) that holds the values exactly
        arr = np.asarray(idx.tz_convert(None).values).reshape(arr.shape)
    ns = _datetime64_to_ns(arr, where, name, within)
    bad = ns == np.iinfo(np.int64).min
    if bad.any():
        i = _first(bad)
        raise IndexRangeError(f"{where}: {name} contains NaT (missing times){_at(ns, i)}; drop "
                              "or fill them")
    return ns


def _as_ns_ints(ns, where, name) -> np.ndarray:
    """int64 ns of the ``*_ns`` methods' input: integers, or datetime64 (read exactly)."""
    arr = np.asarray(ns)
    if arr.dtype.kind == "M":
        return to_ns(arr, where=where, name=name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be int64 nanoseconds since 1970 (or datetime64); "
                        f"got dtype {arr.dtype}. Use the method without _ns for other forms.")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _scalar_ns(t, where, name) -> int:
    if isinstance(t, int | np.integer) and not isinstance(t, bool):
        raise TypeError(f"{where}: {name} must be a datetime; got the number {t!r}")
    ns = to_ns(t, where=where, name=name)
    if ns.size != 1:
        raise TypeError(f"{where}: {name} must be a single datetime; got {ns.size} values")
    return int(ns.reshape(-1)[0])


@jit
def _mul_shift_ceil(k, dur, s):
    """``ceil(k * dur / 2**s)`` exactly, for ``k < 2**s`` (s <= 63) and ``dur < 2**62``."""
    k_lo, k_hi = k & _M32, k >> np.uint64(32)
    d_lo, d_hi = dur & _M32, dur >> np.uint64(32)
    p0, p1, p2, p3 = k_lo * d_lo, k_lo * d_hi, k_hi * d_lo, k_hi * d_hi
    mid = (p0 >> np.uint64(32)) + (p1 & _M32) + (p2 & _M32)
    lo = (p0 & _M32) | (mid << np.uint64(32))
    hi = p3 + (p1 >> np.uint64(32)) + (p2 >> np.uint64(32)) + (mid >> np.uint64(32))
    if s == 0:
        return lo
    su = np.uint64(s)
    q = (lo >> su) | (hi << (np.uint64(64) - su))
    rem = lo & ((np.uint64(1) << su) - np.uint64(1))
    return q + np.uint64(1) if rem != np.uint64(0) else q


@jit
def cell_start(k, s, dur):
    """Start offset (ns after t0) of cell ``k`` of a level with ``2**s`` cells."""
    return np.int64(_mul_shift_ceil(np.uint64(k), np.uint64(dur), s))


@jit
def _encode(t, t0, dur, s, out):
    """``out[i] = floor((t[i] - t0) * 2**s / dur)`` by binary long division; -1 if all ok,
    else the index of the first time outside [t0, t0 + dur)."""
    for i in range(t.size):
        x = t[i] - t0
        if x < 0 or x >= dur:
            return i
        q = np.uint64(0)
        r = x
        for _ in range(s):
            r = r << 1
            q = q << np.uint64(1)
            if r >= dur:
                r -= dur
                q |= np.uint64(1)
        out[i] = q
    return -1


@jit
def _decode(k, s, dur, t0, start, stop):
    for i in range(k.size):
        start[i] = t0 + cell_start(k[i], s, dur)
        stop[i] = t0 + cell_start(k[i] + np.uint64(1), s, dur)


@dataclass(frozen=True)
class TimeGrid:
    """The hierarchical time cells of a task interval ``[t0, t1)`` with fan-out ``fanout``.

    Parameters
    ----------
    t0, t1 : datetime-like
        The task interval (UTC), half-open; at most 146 years long.
    fanout : int
        Children per cell, ``m = 2**b`` (2, 4, 8, ...).
    """

    t0: object
    t1: object
    fanout: int = 2

    def __post_init__(self):
        t0 = _scalar_ns(self.t0, "TimeGrid", "t0")
        t1 = _scalar_ns(self.t1, "TimeGrid", "t1")
        object.__setattr__(self, "t0", t0)
        object.__setattr__(self, "t1", t1)
        f = self.fanout
        if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 2 or f & (f - 1):
            raise IndexRangeError(f"TimeGrid: fanout must be a power of two >= 2 (m = 2**b); "
                                  f"got {f!r}")
        object.__setattr__(self, "fanout", int(f))
        if not t1 > t0:
            raise IndexRangeError(f"TimeGrid: t1 must be after t0; got t0={self.start}, "
                                  f"t1={self.stop}")
        if t1 - t0 >= _MAX_DURATION:
            raise IndexRangeError("TimeGrid: the task interval must be shorter than 2**62 ns "
                                  f"(146 years); got {self.start} to {self.stop}")

    @property
    def bits(self) -> int:
        """b: bits per level (``fanout = 2**b``)."""
        return self.fanout.bit_length() - 1

    @property
    def duration(self) -> int:
        """t1 - t0 in nanoseconds."""
        return self.t1 - self.t0

    @property
    def start(self) -> np.datetime64:
        return np.datetime64(self.t0, "ns")

    @property
    def stop(self) -> np.datetime64:
        return np.datetime64(self.t1, "ns")

    def _shift(self, level) -> int:
        if isinstance(level, bool) or not isinstance(level, int | np.integer) or level < 0:
            raise IndexRangeError(f"time level must be an integer >= 0; got {level!r}")
        s = self.bits * (int(level) + 1)
        if s > 63:
            raise IndexRangeError(
                f"time level {level} with fanout {self.fanout} needs {s} bits; at most 63 fit "
                f"(the deepest level with this fanout is {63 // self.bits - 1})")
        return s

    def n_cells(self, level: int) -> int:
        """Number of cells at ``level`` (``fanout**(level+1)``)."""
        return 1 << self._shift(level)

    def cell_duration(self, level: int) -> np.timedelta64:
        """Length of a cell at ``level``, rounded down (exact cells differ by at most 1 ns)."""
        return np.timedelta64(self.duration >> self._shift(level), "ns")

    def encode_ns(self, ns, level: int, *, where: str = "TimeGrid.encode") -> np.ndarray:
        """Cell indices (uint64) at ``level`` of int64 ns times; all must lie in ``[t0, t1)``."""
        s = self._shift(level)
        ns = _as_ns_ints(ns, where, "time")
        out = np.empty(ns.size, np.uint64)
        flat = ns.reshape(-1).view()
        flat.flags.writeable = False  # one kernel specialisation, read-only or not
        bad = _encode(flat, self.t0, self.duration, s, out)
        if bad >= 0:
            t = np.datetime64(int(ns.reshape(-1)[bad]), "ns")
            raise IndexRangeError(f"{where}: time must lie in the task interval [{self.start}, "
                                  f"{self.stop}); got {t} (at index {bad}). Create the index "
                                  "with a task interval that contains all records.")
        return out.reshape(ns.shape)

    def encode(self, times, level: int) -> np.ndarray:
        """Time cell (uint64) at ``level`` of each time; raises for times outside ``[t0, t1)``.

        ``times`` takes every form :func:`to_ns` reads (any ``datetime64`` unit, pandas,
        ``datetime``, ISO strings).
        """
        self._shift(level)
        ns = to_ns(times, where="TimeGrid.encode", within=(self.t0, self.t1))
        return self.encode_ns(ns, level)

    def bounds_ns(self, cells, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) int64 ns of each cell, half-open."""
        s = self._shift(level)
        k = np.asarray(cells)
        if k.dtype.kind not in "iu":
            raise TypeError(f"TimeGrid.decode: cells must be integers (uint64 time cells); got "
                            f"dtype {k.dtype}")
        if k.dtype.kind == "i" and k.size and int(k.min()) < 0:
            raise IndexRangeError(f"TimeGrid.decode: cells must be >= 0; got {int(k.min())}")
        k = np.ascontiguousarray(k, dtype=np.uint64)
        if k.size and int(k.max()) >= (1 << s):
            raise IndexRangeError(f"TimeGrid.decode: level-{level} cells are 0..{(1 << s) - 1}; "
                                  f"got {int(k.max())}")
        start = np.empty(k.size, np.int64)
        stop = np.empty(k.size, np.int64)
        _decode(k.reshape(-1), s, self.duration, self.t0, start, stop)
        return start.reshape(k.shape), stop.reshape(k.shape)

    def decode(self, cells, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) ``datetime64[ns]`` of each cell, half-open."""
        a, b = self.bounds_ns(cells, level)
        return a.view("datetime64[ns]"), b.view("datetime64[ns]")

    def cover_ns(self, start: int | None, stop: int | None, level: int) -> np.ndarray:
        """Cells meeting ``[start, stop)`` (int ns; None: unbounded), clipped to ``[t0, t1)``."""
        self._shift(level)
        lo = self.t0 if start is None else max(int(start), self.t0)
        hi = self.t1 if stop is None else min(int(stop), self.t1)
        if hi <= lo:
            return np.empty((0, 2), np.uint64)
        k = self.encode_ns(np.array([lo, hi - 1]), level)
        return np.array([[k[0], k[1] + np.uint64(1)]], dtype=np.uint64)

    def cover(self, start, stop, level: int) -> np.ndarray:
        """Time cells at ``level`` that meet ``[start, stop)``, as one half-open range ``(n, 2)``.

        Times outside the task interval are clipped; an interval that misses it gives
        an empty ``(0, 2)`` array.
        """
        a = None if start is None else _scalar_ns(start, "TimeGrid.cover", "start")
        b = None if stop is None else _scalar_ns(stop, "TimeGrid.cover", "stop")
        if a is not None and b is not None and b < a:
            raise IndexRangeError(f"TimeGrid.cover: stop must not be before start; got "
                                  f"{np.datetime64(a, 'ns')} to {np.datetime64(b, 'ns')}")
        return self.cover_ns(a, b, level)


def parse_interval(time, *, where: str) -> tuple[int | None, int | None] | None:
    """``(start_ns, stop_ns)`` of a time argument: None, a ``(start, stop)`` pair or a slice.

    Either bound may be None (unbounded). A single datetime-like is a 1-ns instant
    interval; a string like ``"2013-02"`` is the whole month (pandas period rules).
    """
    if time is None:
        return None
    if isinstance(time, slice):
        time = (time.start, time.stop)
    if isinstance(time, tuple | list) and len(time) == 2:
        try:
            a = None if time[0] is None else _scalar_ns(time[0], where, "time[0] (start)")
            b = None if time[1] is None else _scalar_ns(time[1], where, "time[1] (stop)")
        except IndexRangeError as e:
            raise IndexRangeError(f"{e} For an open-ended interval pass None as that "
                                  "bound.") from None
        if a is not None and b is not None and b < a:
            raise IndexRangeError(f"{where}: time must be (start, stop) with stop >= start; got "
                                  f"{np.datetime64(a, 'ns')} to {np.datetime64(b, 'ns')}")
        return a, b
    if isinstance(time, str):
        import pandas as pd

        try:
            p = pd.Period(time)
            start, stop = p.start_time, (p + 1).start_time
        except (ValueError, OverflowError) as e:  # incl. OutOfBoundsDatetime
            raise IndexRangeError(f"{where}: cannot read time {time!r} as a period (e.g. "
                                  f"'2013-02') within {NS_RANGE}: {e}") from e
        a = _scalar_ns(start, where, f"time {time!r} (its start)")
        return a, _scalar_ns(stop, where, f"time {time!r} (its end)")
    if isinstance(time, np.datetime64 | _dt.datetime | _dt.date):
        a = _scalar_ns(time, where, "time")
        return a, a + 1
    raise TypeError(f"{where}: time must be None, (start, stop), a slice, or a period string like "
                    f"'2013-02'; got {type(time).__name__}")


def encode(times, level: int, *, t0, t1, fanout: int = 2) -> np.ndarray:
    """Time cells of ``times`` at ``level`` in the task interval ``[t0, t1)``."""
    return TimeGrid(t0, t1, fanout).encode(times, level)


def decode(cells, level: int, *, t0, t1, fanout: int = 2):
    """(start, stop) ``datetime64[ns]`` of time cells (see :class:`TimeGrid`)."""
    return TimeGrid(t0, t1, fanout).decode(cells, level)


def cover(start, stop, level: int, *, t0, t1, fanout: int = 2) -> np.ndarray:
    """Time cells meeting ``[start, stop)`` as one range ``(n, 2)`` (see :class:`TimeGrid`)."""
    return TimeGrid(t0, t1, fanout).cover(start, stop, level)

"""HTM-ST keys: one 64-bit key per record from an HTM trixel and a time cell of the same level.

Three layouts share one interface (:class:`KeyScheme`), so they can be compared on the
same data. With fan-out ``m = 2**b`` and level ``L`` (trixel id ``h`` with the digits
``f h1 .. hL``, time cell ``k`` with the digits ``t0 t1 .. tL``), every key has
``4 + b + L*(b + 2)`` bits (at most 63, so that a half-open key range can end one
past the last key)::

    coupled ("htmst"):  1 | t0 f | t1 h1 | t2 h2 | ... | tL hL      per level: b + 2 bits
                            b  3   b  2    b  2          b  2      (3 at level 0)
    time-first ("time"):  1 | t0 t1 .. tL | f h1 .. hL
    space-first ("space"): 1 | f h1 .. hL | t0 t1 .. tL             (= h << b(L+1) | k)

The leading 1 is a marker bit, so keys of different levels never collide. In the
coupled key (a Z-order of time and space) the descendants of a coupled cell (a
trixel and a time cell of one level) form one contiguous key range, so a (region x
time interval) query becomes a short list of ranges; the uncoupled keys keep one of
the two dimensions contiguous only.

Examples
--------
>>> from stengine.index import Cap
>>> s = KeyScheme("htmst", level=3, t0="2013-01-01", t1="2013-03-01", fanout=2)
>>> s.bits
14
>>> key = s.encode([10.0], [20.0], ["2013-01-20"])
>>> h, k = s.decode(key)
>>> int(h[0]), int(k[0])      # trixel N3231, time cell 5 of 16
(1005, 5)
>>> r = s.cover(Cap(10.0, 20.0, 1.0), ("2013-01-19", "2013-01-21"))
>>> bool(ranges.contains(r, key)[0])
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IndexRangeError
from . import _keys, htm, ranges
from ._regions import Region, as_region
from .timecode import TimeGrid, parse_interval, to_ns

__all__ = ["KeyScheme", "KINDS", "key_bits", "encode", "decode", "cover"]

KINDS = ("htmst", "time", "space")
_DEFAULT_PRODUCT_CAP = 1 << 20  # ranges an uncoupled cover may enumerate before coarsening


def key_bits(level: int, fanout: int) -> int:
    """Bits of a key at ``level`` with ``fanout`` (same for all three layouts)."""
    level = htm.check_level(level, where="key_bits")
    if isinstance(fanout, bool) or not isinstance(fanout, int | np.integer) or fanout < 2 or \
            fanout & (fanout - 1):
        raise IndexRangeError(f"key_bits: fanout must be a power of two >= 2; got {fanout!r}")
    b = int(fanout).bit_length() - 1
    return 4 + b + level * (b + 2)


def _fit_message(level: int, fanout: int) -> str:
    b = fanout.bit_length() - 1
    need = key_bits(level, fanout)
    max_level = (59 - b) // (b + 2)
    fits = [2 ** bb for bb in range(1, 8) if key_bits(level, 2 ** bb) <= 63]
    msg = (f"an HTM-ST key at level {level} with fanout {fanout} needs {need} bits (4 + b + "
           f"L*(b+2) with b = {b}); 64 fit (63 with the end of a key range). With fanout "
           f"{fanout} the deepest level is {max_level}")
    return msg + (f"; at level {level} use fanout {' or '.join(map(str, fits))}." if fits else
                  f"; no fanout fits level {level} (the limit is level 19 with fanout 2).")


@dataclass(frozen=True)
class KeyScheme:
    """A key layout (``"htmst"`` coupled, ``"time"`` time-first, ``"space"`` space-first)
    at one level, over the time cells of ``[t0, t1)`` with ``fanout`` children per cell.

    Parameters
    ----------
    kind : {"htmst", "time", "space"}
    level : int
        Level of both the trixels (HTM level) and the time cells; ``4 + b + L*(b+2)``
        bits must fit in 64 (e.g. level <= 19 with fanout 2, <= 14 with fanout 4).
    t0, t1 : datetime-like
        The task interval; every record's time must lie in ``[t0, t1)``.
    fanout : int
        Time cell fan-out ``m = 2**b``.
    """

    kind: str
    level: int
    t0: object
    t1: object
    fanout: int = 2

    def __post_init__(self):
        if self.kind not in KINDS:
            raise IndexRangeError(f"KeyScheme: kind must be one of {KINDS}; got {self.kind!r}")
        htm.check_level(self.level, where="KeyScheme")
        tg = TimeGrid(self.t0, self.t1, self.fanout)
        object.__setattr__(self, "level", int(self.level))
        object.__setattr__(self, "t0", tg.t0)
        object.__setattr__(self, "t1", tg.t1)
        object.__setattr__(self, "fanout", tg.fanout)
        if key_bits(self.level, self.fanout) > 63:
            # 63 and not 64: a half-open range must be able to end one past the last key
            raise IndexRangeError("KeyScheme: " + _fit_message(self.level, self.fanout))

    # layout ---------------------------------------------------------------
    @property
    def time(self) -> TimeGrid:
        """The :class:`~stengine.index.timecode.TimeGrid` of the time cells."""
        return TimeGrid(np.datetime64(self.t0, "ns"), np.datetime64(self.t1, "ns"), self.fanout)

    @property
    def b(self) -> int:
        return self.fanout.bit_length() - 1

    @property
    def bits(self) -> int:
        """Bits of every key, marker included."""
        return key_bits(self.level, self.fanout)

    @property
    def _tbits(self) -> int:
        return self.b * (self.level + 1)

    @property
    def _hbits(self) -> int:
        return 3 + 2 * self.level

    def to_dict(self) -> dict:
        """JSON-able description (times as int ns since 1970); inverse of :meth:`from_dict`."""
        return {"kind": self.kind, "level": self.level, "t0": self.t0, "t1": self.t1,
                "fanout": self.fanout}

    @classmethod
    def from_dict(cls, d: dict) -> KeyScheme:
        return cls(d["kind"], d["level"], np.datetime64(int(d["t0"]), "ns"),
                   np.datetime64(int(d["t1"]), "ns"), d["fanout"])

    # encode / decode ------------------------------------------------------
    def encode_ids(self, hids, cells) -> np.ndarray:
        """Keys of level-``level`` trixel ids and time cells (uint64 arrays)."""
        h = _uint_ids(hids, "KeyScheme.encode_ids", "hids").reshape(-1)
        k = _uint_ids(cells, "KeyScheme.encode_ids", "cells").reshape(-1)
        if h.shape != k.shape:
            raise IndexRangeError(f"KeyScheme.encode_ids: hids and cells must have one shape; "
                                  f"got {np.shape(hids)} and {np.shape(cells)}")
        lo, hi = 8 << (2 * self.level), 16 << (2 * self.level)
        if h.size and (int(h.min()) < lo or int(h.max()) >= hi):
            bad = h[(h < np.uint64(lo)) | (h >= np.uint64(hi))][0]
            raise IndexRangeError(f"KeyScheme.encode_ids: hids must be level-{self.level} HTM ids "
                                  f"in [{lo}, {hi}); got {int(bad)}. Encode points with encode().")
        if k.size and int(k.max()) >> self._tbits:
            raise IndexRangeError(f"KeyScheme.encode_ids: cells must be level-{self.level} time "
                                  f"cells in [0, {1 << self._tbits}); got {int(k.max())}")
        if self.kind == "htmst":
            out = np.empty(h.size, np.uint64)
            _keys.interleave(h, k, self.level, self.b, out)
        elif self.kind == "time":
            marker = np.uint64(1) << np.uint64(self.bits - 1)
            low = h - (np.uint64(8) << np.uint64(2 * self.level))
            out = marker | (k << np.uint64(self._hbits)) | low
        else:
            out = (h << np.uint64(self._tbits)) | k
        return out.reshape(np.shape(hids))

    def encode(self, lon, lat, time) -> np.ndarray:
        """Keys (uint64) of records at ``lon``, ``lat`` (degrees) and ``time`` (datetime-like).

        Raises :class:`~stengine.errors.IndexRangeError` for latitudes outside
        [-90, 90] or NaN, non-finite longitudes (finite ones wrap), NaT, times outside
        ``[t0, t1)`` or outside the int64-ns range; each error names ``lon``, ``lat`` or
        ``time``, the valid range, and the first offending value and its index.
        ``time`` takes every form :func:`~stengine.index.timecode.to_ns` reads.
        """
        where = f"KeyScheme({self.kind!r}).encode"
        ns = to_ns(time, where=where, within=(self.t0, self.t1))
        return self._encode_ns(lon, lat, ns, where)

    def encode_ns(self, lon, lat, ns) -> np.ndarray:
        """Like :meth:`encode` with times as int64 ns since 1970."""
        return self._encode_ns(lon, lat, ns, f"KeyScheme({self.kind!r}).encode_ns")

    def _encode_ns(self, lon, lat, ns, where):
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        try:
            shape = np.broadcast_shapes(lon.shape, lat.shape, np.shape(ns))
        except ValueError:
            raise ValueError(f"{where}: lon, lat and time must broadcast together; got "
                                  f"shapes {lon.shape}, {lat.shape} and {np.shape(ns)}") from None
        hid = htm.lonlat_block(np.broadcast_to(lon, shape), np.broadcast_to(lat, shape),
                               self.level, where=where)
        cells = self.time.encode_ns(np.broadcast_to(ns, shape), self.level, where=where)
        return self.encode_ids(hid, cells)

    def decode(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """(trixel ids, time cells) at ``level`` of keys of this scheme."""
        keys = np.ascontiguousarray(self._check_keys(keys, "decode"))
        flat = keys.reshape(-1)
        if self.kind == "htmst":
            h = np.empty(flat.size, np.uint64)
            k = np.empty(flat.size, np.uint64)
            _keys.deinterleave(flat, self.level, self.b, h, k)
        elif self.kind == "time":
            hb = np.uint64(self._hbits)
            h = (flat & ((np.uint64(1) << hb) - np.uint64(1))) | (
                np.uint64(8) << np.uint64(2 * self.level))
            k = (flat >> hb) & ((np.uint64(1) << np.uint64(self._tbits)) - np.uint64(1))
        else:
            tb = np.uint64(self._tbits)
            h = flat >> tb
            k = flat & ((np.uint64(1) << tb) - np.uint64(1))
        return h.reshape(keys.shape), k.reshape(keys.shape)

    def _check_keys(self, keys, op) -> np.ndarray:
        k = _uint_ids(keys, f"KeyScheme.{op}", "keys")
        if k.size and (int(k.max()) >> (self.bits - 1) != 1 or
                       int(k.min()) >> (self.bits - 1) != 1):
            raise IndexRangeError(f"KeyScheme.{op}: {self.kind} keys at level {self.level} have "
                                  f"{self.bits} bits with the top one set; got keys outside "
                                  f"[{1 << (self.bits - 1)}, {1 << self.bits})")
        return k

    def cell_range(self, key, level: int) -> np.ndarray:
        """Coupled keys only: the key range ``[start, stop)`` of the level-``level`` coupled
        cell that contains ``key`` (its descendants form one contiguous range)."""
        if self.kind != "htmst":
            raise IndexRangeError("cell_range: only coupled ('htmst') keys have contiguous "
                                  "descendants in both time and space")
        htm.check_level(level, where="cell_range")
        if level > self.level:
            raise IndexRangeError(f"cell_range: level {level} is finer than the keys' level "
                                  f"{self.level}")
        s = np.uint64((self.b + 2) * (self.level - level))
        code = self._check_keys(key, "cell_range") >> s
        return np.stack([code << s, (code + np.uint64(1)) << s], axis=-1)

    # covers ---------------------------------------------------------------
    def cover(self, region=None, time=None, *, max_ranges: int | None = None,
              interior: bool = False) -> np.ndarray:
        """Key ranges of the records that may lie in ``region`` during ``time``.

        Parameters
        ----------
        region : Region | tuple | shapely.Polygon | None
            Where (None: everywhere); see :func:`~stengine.index.as_region`.
        time : (start, stop) | slice | str | None
            When, half-open; None is the whole task interval. Parts outside
            ``[t0, t1)`` are clipped.
        max_ranges : int, optional
            Cap on the number of ranges (coarser covers, then merged gaps). Covers stay
            complete (supersets); with ``interior=True`` they stay inside.
        interior : bool
            Only keys whose cells lie wholly inside (region x time).

        Returns
        -------
        numpy.ndarray
            ``(n, 2)`` sorted, disjoint half-open ``uint64`` key ranges.
        """
        return self.cover_ns(as_region(region, where="KeyScheme.cover: region"),
                             parse_interval(time, where="KeyScheme.cover"),
                             max_ranges=max_ranges, interior=interior)

    def cover_ns(self, reg: Region | None, iv: tuple | None, *, max_ranges: int | None = None,
                 interior: bool = False) -> np.ndarray:
        """:meth:`cover` for a parsed region and an interval ``(start_ns, stop_ns)`` (or None)."""
        if max_ranges is not None and max_ranges < 1:
            raise ValueError(f"KeyScheme.cover: max_ranges must be >= 1; got {max_ranges}")
        qs = 0 if iv is None or iv[0] is None else iv[0] - self.t0
        qe = self.t1 - self.t0 if iv is None or iv[1] is None else iv[1] - self.t0
        qs, qe = max(qs, 0), min(qe, self.t1 - self.t0)
        if qe <= qs:
            return np.empty((0, 2), np.uint64)
        if self.kind == "htmst":
            out = self._cover_coupled(reg, iv is not None, qs, qe, max_ranges, interior)
        else:
            out = self._cover_product(reg, qs, qe, max_ranges, interior)
        return ranges.limit(out, max_ranges, interior)

    def _cover_coupled(self, reg: Region | None, has_time, qs, qe, max_ranges, interior):
        if reg is None:
            desc = (0, np.zeros((1, 4)), np.zeros(2, np.int64), np.zeros((1, 2)),
                    np.zeros((3, 3)), 0.0)
        else:
            desc = reg._descriptor()
        return htm.budgeted(
            lambda budget: _keys.cover_coupled(*desc, htm._EPS, reg is not None, self.level,
                                               self.b, has_time, qs, qe, self.t1 - self.t0,
                                               bool(interior), budget), max_ranges)

    def _cover_product(self, reg, qs, qe, max_ranges, interior):
        tg = self.time
        if interior:
            # time cells wholly inside [qs, qe)
            lo = tg.encode_ns(np.array([self.t0 + qs]), self.level)[0]
            a, _ = tg.bounds_ns(np.array([lo]), self.level)
            lo = int(lo) + (int(a[0]) < self.t0 + qs)
            hi = int(tg.encode_ns(np.array([self.t0 + qe - 1]), self.level)[0]) + 1
            _, z = tg.bounds_ns(np.array([hi - 1], dtype=np.uint64), self.level)
            hi -= int(z[0]) > self.t0 + qe
            trange = (lo, hi)
        else:
            tr = tg.cover_ns(self.t0 + qs, self.t0 + qe, self.level)
            trange = (int(tr[0, 0]), int(tr[0, 1]))
        if trange[1] <= trange[0]:
            return np.empty((0, 2), np.uint64)
        hr = htm.cover(reg, self.level, interior=interior) if reg is not None else \
            htm.cover(None, self.level)
        cap = 4 * max_ranges if max_ranges else _DEFAULT_PRODUCT_CAP
        if self.kind == "time":
            return self._product(trange, hr - (np.uint64(8) << np.uint64(2 * self.level)),
                                 self._hbits, major_is_time=True, cap=cap, interior=interior)
        return self._product(trange, hr, self._tbits, major_is_time=False, cap=cap,
                             interior=interior)

    def _product(self, trange, hr, minor_bits, *, major_is_time, cap, interior):
        """Ranges of {major << minor_bits | minor} over a product of key sets."""
        marker = np.uint64(1) << np.uint64(self.bits - 1) if major_is_time else np.uint64(0)
        mb = np.uint64(minor_bits)
        if major_is_time:
            majors, minors = trange, hr
            full_minor = len(hr) == 1 and int(hr[0, 0]) == 0 and int(hr[0, 1]) == 1 << minor_bits
        else:
            majors, minors = hr, np.array([trange], dtype=np.uint64)
            full_minor = trange[0] == 0 and trange[1] == 1 << minor_bits
        if major_is_time:
            major_ranges = np.array([majors], dtype=np.uint64)
        else:
            major_ranges = majors
        if len(major_ranges) == 0 or len(minors) == 0:
            return np.empty((0, 2), np.uint64)
        if full_minor:  # the minor dimension is unconstrained: one range per major range
            out = np.stack([(major_ranges[:, 0] << mb), (major_ranges[:, 1] << mb)], axis=1)
            # "+" not "|": the last stop may be 2**(bits-1) + marker, past every key
            return ranges.normalize(out + marker)
        n_major = int(sum(int(b) - int(a) for a, b in major_ranges))
        if n_major * len(minors) > cap and interior:
            # an interior may only shrink: keep the largest minor ranges
            minors = ranges.largest(minors, max(1, cap // max(n_major, 1)))
            if n_major > cap:
                return np.empty((0, 2), np.uint64)
        elif n_major * len(minors) > cap:
            minors = ranges.simplify(minors, max(1, cap // max(n_major, 1)))
            if n_major > cap:
                # too many majors even for one range each: one hull range per major range
                out = np.stack([(major_ranges[:, 0] << mb) + minors[0, 0],
                                ((major_ranges[:, 1] - np.uint64(1)) << mb) + minors[-1, 1]],
                               axis=1)
                return ranges.normalize(out + marker)
        major_vals = np.concatenate([np.arange(int(a), int(b), dtype=np.uint64)
                                     for a, b in major_ranges])
        base = (major_vals[:, None] << mb) + marker
        # "+" not "|": a stop may be 2**minor_bits, one past the last minor value
        out = np.stack([base + minors[None, :, 0], base + minors[None, :, 1]], axis=-1)
        return ranges.normalize(out.reshape(-1, 2))


def _uint_ids(v, where: str, name: str) -> np.ndarray:
    """``v`` as contiguous uint64; floats (truncated) and negatives (wrapped) refused."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers (uint64); got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and int(a.min()) < 0:
        raise IndexRangeError(f"{where}: {name} must be >= 0; got {int(a.min())}")
    return np.asarray(a, dtype=np.uint64)


def _scheme(kind, level, t0, t1, fanout) -> KeyScheme:
    return KeyScheme(kind, level, t0, t1, fanout)


def encode(lon, lat, time, *, level: int, t0, t1, fanout: int = 2, kind: str = "htmst"):
    """Keys of records (degrees, datetimes); see :class:`KeyScheme`."""
    return _scheme(kind, level, t0, t1, fanout).encode(lon, lat, time)


def decode(keys, *, level: int, t0, t1, fanout: int = 2, kind: str = "htmst"):
    """(trixel ids, time cells) of keys; see :class:`KeyScheme`."""
    return _scheme(kind, level, t0, t1, fanout).decode(keys)


def cover(region=None, time=None, *, level: int, t0, t1, fanout: int = 2, kind: str = "htmst",
          max_ranges: int | None = None, interior: bool = False):
    """Key ranges of (region x time interval); see :meth:`KeyScheme.cover`."""
    return _scheme(kind, level, t0, t1, fanout).cover(region, time, max_ranges=max_ranges,
                                                      interior=interior)

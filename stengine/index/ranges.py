"""Sorted sets of half-open ``uint64`` key ranges: the currency of every index cover.

A *range set* is an ``(n, 2)`` ``uint64`` array of half-open ranges ``[start, stop)``,
sorted by ``start``, non-empty, non-overlapping and non-adjacent (``stop`` of one
range is strictly less than ``start`` of the next). :func:`normalize` turns any list of
ranges into that form; every other function here takes and returns normalized sets.

Examples
--------
>>> import numpy as np
>>> a = normalize([[10, 20], [0, 5], [5, 8]])
>>> a.tolist()
[[0, 8], [10, 20]]
>>> intersection(a, [[4, 12]]).tolist()
[[4, 8], [10, 12]]
>>> union(a, [[8, 10]]).tolist()
[[0, 20]]
>>> simplify(normalize([[0, 1], [3, 4], [10, 11]]), 2).tolist()  # merge the smallest gap
[[0, 4], [10, 11]]
>>> contains(a, [4, 8, 9, 10]).tolist()
[True, False, False, True]
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import IndexRangeError

__all__ = [
    "normalize",
    "union",
    "intersection",
    "difference",
    "simplify",
    "largest",
    "limit",
    "from_ids",
    "contains",
    "overlapping",
    "size",
    "refine",
    "coarsen",
]

_U64 = np.uint64
jit = numba.njit(nogil=True, cache=True)


def _as_pairs(ranges, where: str = "normalize", name: str = "ranges") -> np.ndarray:
    r = np.asarray(ranges)
    if r.size == 0:
        return np.empty((0, 2), _U64)
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"{where}: {name} must be an (n, 2) array of [start, stop) pairs; got "
                         f"shape {r.shape}")
    if r.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers (uint64 keys); got dtype {r.dtype}")
    if r.dtype.kind == "i" and int(r.min()) < 0:
        raise IndexRangeError(f"{where}: {name} must be non-negative (uint64 keys); got "
                              f"{int(r.min())}")
    return r.astype(_U64, copy=False)


def _as_keys(keys, where: str, name: str) -> np.ndarray:
    """uint64 keys; refuses floats (they would be truncated) and negatives (they would wrap)."""
    k = np.asarray(keys)
    if k.size == 0:
        return k.astype(_U64)
    if k.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers (uint64 keys); got dtype {k.dtype}")
    if k.dtype.kind == "i" and k.size and int(k.min()) < 0:
        raise IndexRangeError(f"{where}: {name} must be non-negative (uint64 keys); got "
                              f"{int(k.min())}")
    return k.astype(_U64, copy=False)


def _check_count(max_ranges, where):
    if isinstance(max_ranges, bool) or not isinstance(max_ranges, int | np.integer) or \
            max_ranges < 1:
        raise ValueError(f"{where}: max_ranges must be an integer >= 1; got {max_ranges!r}")


def _check_bits(bits, where):
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 0 <= bits <= 63:
        raise ValueError(f"{where}: bits must be in 0..63; got {bits!r}")


def normalize(ranges) -> np.ndarray:
    """Sort ranges, drop empty ones and merge overlapping or adjacent ones.

    Parameters
    ----------
    ranges : array_like of shape (n, 2)
        Half-open ``[start, stop)`` integer pairs in any order.

    Returns
    -------
    numpy.ndarray
        ``(m, 2)`` ``uint64``, a normalized range set (``m <= n``).
    """
    return _normalize(_as_pairs(ranges))


def _normalize(r) -> np.ndarray:
    r = r[r[:, 1] > r[:, 0]]
    if len(r) <= 1:
        return np.ascontiguousarray(r)
    r = r[np.argsort(r[:, 0], kind="stable")]
    stop = np.maximum.accumulate(r[:, 1])
    # a new range begins where a start lies strictly beyond everything before it
    brk = r[1:, 0] > stop[:-1]
    first = np.concatenate(([True], brk))
    last = np.concatenate((brk, [True]))
    return np.stack([r[first, 0], stop[last]], axis=1)


def union(a, b) -> np.ndarray:
    """Union of two range sets (normalized)."""
    return _normalize(np.concatenate([_as_pairs(a, "union", "a"), _as_pairs(b, "union", "b")]))


@jit
def _intersect(a, b, out):
    i = j = k = 0
    while i < a.shape[0] and j < b.shape[0]:
        lo = max(a[i, 0], b[j, 0])
        hi = min(a[i, 1], b[j, 1])
        if lo < hi:
            out[k, 0] = lo
            out[k, 1] = hi
            k += 1
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return k


def intersection(a, b) -> np.ndarray:
    """Intersection of two range sets (normalized inputs give a normalized output)."""
    a = _normalize(_as_pairs(a, "intersection", "a"))
    b = _normalize(_as_pairs(b, "intersection", "b"))
    out = np.empty((len(a) + len(b), 2), _U64)
    return out[: _intersect(a, b, out)]


def difference(a, b) -> np.ndarray:
    """Keys in ``a`` and not in ``b``, as a normalized range set."""
    a = _normalize(_as_pairs(a, "difference", "a"))
    b = _normalize(_as_pairs(b, "difference", "b"))
    if len(a) == 0 or len(b) == 0:
        return a
    lo = min(int(a[0, 0]), int(b[0, 0]))
    hi = max(int(a[-1, 1]), int(b[-1, 1]))
    # complement of b inside [lo, hi)
    edges = np.concatenate([[lo], b.ravel(), [hi]]).astype(_U64)
    comp = normalize(edges.reshape(-1, 2))
    return intersection(a, comp)


def simplify(ranges, max_ranges: int) -> np.ndarray:
    """Merge across the smallest gaps until at most ``max_ranges`` ranges remain.

    The result is a superset of the input (gaps are filled), chosen to add as few keys
    as possible: the ``len - max_ranges`` smallest gaps are closed (ties: leftmost first).

    Parameters
    ----------
    ranges : array_like of shape (n, 2)
        A range set (normalized first if it is not).
    max_ranges : int
        At least 1.
    """
    _check_count(max_ranges, "simplify")
    r = _normalize(_as_pairs(ranges, "simplify"))
    n = len(r)
    if n <= max_ranges:
        return r
    gaps = r[1:, 0] - r[:-1, 1]
    close = np.zeros(n - 1, bool)
    close[np.argsort(gaps, kind="stable")[: n - max_ranges]] = True
    first = np.concatenate(([True], ~close))
    last = np.concatenate((~close, [True]))
    return np.stack([r[first, 0], r[last, 1]], axis=1)


def largest(ranges, max_ranges: int) -> np.ndarray:
    """The ``max_ranges`` longest ranges (a subset; ties: leftmost first), still sorted."""
    _check_count(max_ranges, "largest")
    r = _normalize(_as_pairs(ranges, "largest"))
    if len(r) <= max_ranges:
        return r
    length = r[:, 1] - r[:, 0]
    keep = np.argsort(-length.astype(np.float64), kind="stable")[:max_ranges]
    return r[np.sort(keep)]


def limit(ranges, max_ranges: int | None, interior: bool = False) -> np.ndarray:
    """At most ``max_ranges`` ranges: an envelope grows (:func:`simplify`), an interior
    shrinks (:func:`largest`), so each stays what it claims to be. ``None``: unchanged."""
    if max_ranges is None:
        return ranges
    if isinstance(max_ranges, bool) or not isinstance(max_ranges, int | np.integer) or \
            max_ranges < 1:
        raise ValueError(f"limit: max_ranges must be None or >= 1; got {max_ranges!r}")
    if len(ranges) <= max_ranges:
        return ranges
    return largest(ranges, max_ranges) if interior else simplify(ranges, max_ranges)


def from_ids(ids) -> np.ndarray:
    """Range set holding exactly the given keys (any order, duplicates allowed).

    >>> from_ids([5, 3, 4, 9]).tolist()
    [[3, 6], [9, 10]]
    """
    ids = np.unique(_as_keys(ids, "from_ids", "ids"))
    if ids.size == 0:
        return np.empty((0, 2), _U64)
    brk = np.flatnonzero(np.diff(ids) != 1)
    starts = ids[np.concatenate(([0], brk + 1))]
    stops = ids[np.concatenate((brk, [ids.size - 1]))] + _U64(1)
    return np.stack([starts, stops], axis=1)


def contains(ranges, keys) -> np.ndarray:
    """Boolean mask: which ``keys`` fall in one of the (normalized) ``ranges``."""
    r = _normalize(_as_pairs(ranges, "contains"))
    keys = _as_keys(keys, "contains", "keys")
    if len(r) == 0:
        return np.zeros(keys.shape, bool)
    j = np.searchsorted(r[:, 1], keys, side="right")  # first range whose stop > key
    ok = j < len(r)
    out = np.zeros(keys.shape, bool)
    out[ok] = r[j[ok], 0] <= keys[ok]
    return out


def overlapping(ranges, first, last) -> np.ndarray:
    """Which closed intervals ``[first[i], last[i]]`` meet a range of ``ranges``.

    This is the chunk test of a sorted store: chunk ``i`` holds keys ``first[i]`` to
    ``last[i]`` (inclusive) and must be read if any query range overlaps it.
    """
    r = _normalize(_as_pairs(ranges, "overlapping"))
    first = _as_keys(first, "overlapping", "first")
    last = _as_keys(last, "overlapping", "last")
    if first.shape != last.shape:
        raise ValueError(f"overlapping: first and last must have one shape; got {first.shape} "
                         f"and {last.shape}")
    if len(r) == 0:
        return np.zeros(first.shape, bool)
    j = np.searchsorted(r[:, 1], first, side="right")
    ok = j < len(r)
    out = np.zeros(first.shape, bool)
    out[ok] = r[j[ok], 0] <= last[ok]
    return out


def size(ranges) -> int:
    """Number of keys in a range set (a Python int: it may exceed 2**63)."""
    r = _normalize(_as_pairs(ranges, "size"))
    return int((r[:, 1] - r[:, 0]).astype(object).sum()) if len(r) else 0


def refine(ranges, bits: int) -> np.ndarray:
    """The same keys at a finer level: every key gains ``bits`` low bits (all values).

    For HTM ids one level finer is ``bits=2``; for HTM-ST coupled keys, ``bits = b + 2``.
    """
    _check_bits(bits, "refine")
    r = _normalize(_as_pairs(ranges, "refine"))
    if len(r) and bits and int(r[-1, 1]) > (1 << (64 - bits)):
        raise OverflowError(f"refine: ranges up to {int(r[-1, 1])} do not fit in 64 bits "
                            f"after adding {bits} bits")
    return r << _U64(bits)


def coarsen(ranges, bits: int) -> np.ndarray:
    """The coarser keys (``bits`` low bits dropped) whose descendants meet ``ranges``."""
    _check_bits(bits, "coarsen")
    r = _normalize(_as_pairs(ranges, "coarsen"))
    if len(r) == 0:
        return r
    lo = r[:, 0] >> _U64(bits)
    hi = ((r[:, 1] - _U64(1)) >> _U64(bits)) + _U64(1)
    return normalize(np.stack([lo, hi], axis=1))

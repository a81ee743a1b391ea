import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.index import ranges as R

pairs = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=12).map(
    lambda xs: [(a, a + n) for a, n in xs])


def keys(rs):
    return {k for a, b in rs for k in range(int(a), int(b))}


def is_normalized(r):
    r = np.asarray(r, dtype=np.uint64)
    return r.dtype == np.uint64 and r.ndim == 2 and (r[:, 1] > r[:, 0]).all() and (
        r[1:, 0] > r[:-1, 1]).all()


@settings(max_examples=150, deadline=None)
@given(a=pairs, b=pairs)
def test_algebra_matches_sets(a, b):
    na = R.normalize(np.array(a, dtype=np.int64).reshape(-1, 2))
    assert is_normalized(na) and keys(na) == keys(a)
    assert keys(R.union(a, b)) == keys(a) | keys(b)
    assert keys(R.intersection(a, b)) == keys(a) & keys(b)
    assert keys(R.difference(a, b)) == keys(a) - keys(b)
    for f in (R.union, R.intersection, R.difference):
        assert is_normalized(f(a, b)) or len(f(a, b)) == 0
    assert R.size(a) == len(keys(a))
    probe = np.arange(0, 260, dtype=np.uint64)
    np.testing.assert_array_equal(R.contains(a, probe), [int(k) in keys(a) for k in probe])
    np.testing.assert_array_equal(R.from_ids(sorted(keys(a))), na)


@settings(max_examples=100, deadline=None)
@given(a=pairs, m=st.integers(1, 5))
def test_simplify_and_largest(a, m):
    na = R.normalize(np.array(a, dtype=np.int64).reshape(-1, 2))
    s = R.simplify(na, m)
    assert len(s) <= m and keys(na) <= keys(s)
    # the added keys are exactly the closed gaps, and the smallest ones
    if len(na) > m:
        gaps = np.sort((na[1:, 0] - na[:-1, 1]).astype(int))
        assert len(keys(s)) - len(keys(na)) == gaps[: len(na) - m].sum()
    lg = R.largest(na, m)
    assert len(lg) == min(m, len(na)) and keys(lg) <= keys(na)


@settings(max_examples=100, deadline=None)
@given(a=pairs, first=st.lists(st.integers(0, 250), min_size=1, max_size=10),
       width=st.integers(0, 30))
def test_overlapping_chunks(a, first, width):
    first = np.sort(np.array(first, dtype=np.uint64))
    last = first + np.uint64(width)
    got = R.overlapping(a, first, last)
    want = [bool(keys(a) & set(range(int(f), int(la) + 1))) for f, la in zip(first, last,
                                                                              strict=True)]
    assert got.tolist() == want


def test_refine_coarsen_roundtrip():
    r = R.normalize([[9, 11], [14, 15]])
    fine = R.refine(r, 2)
    assert fine.tolist() == [[36, 44], [56, 60]]
    assert R.coarsen(fine, 2).tolist() == r.tolist()
    assert R.coarsen([[37, 38]], 2).tolist() == [[9, 10]]


def test_bad_input():
    with pytest.raises(ValueError, match="\\(n, 2\\)"):
        R.normalize([1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        R.normalize([[-1, 2]])
    with pytest.raises(ValueError, match="max_ranges"):
        R.simplify([[0, 1]], 0)
    with pytest.raises(OverflowError, match="64 bits"):
        R.refine(np.array([[0, 2 ** 63]], dtype=np.uint64), 2)

"""H3 cells of a stream of neighbouring pixels: the digits below a shared ancestor by table.

Pixels of a raster row arrive in order, and neighbours usually share their ancestor a few
levels up. :func:`grid_cell` keeps the last such ancestor (its digits, base cell and
turns) and reads a pixel's own lower digits from a :func:`digit_table` row picked by the
residue of its axial coordinates, instead of walking the aperture-7 steps of
:mod:`stengine.index._h3_core` per pixel. Ids are those of ``_h3_core.fijk_to_cell``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _h3_core as core

jit = numba.njit(nogil=True, cache=True)


# Child centre ``v_r = M v_(r-1)`` in axial coordinates, for an odd (Class III) and an even
# (Class II) child level ``r``: the inverse of ``walk_up``'s rounding steps.
_CHILD_ODD = np.array([[2, 1], [-1, 3]], np.int64)
_CHILD_EVEN = np.array([[3, -1], [1, 2]], np.int64)


def digit_table(res: int, up: int) -> np.ndarray:
    """Digits of the last ``up`` levels of a res-``res`` cell as a function of a residue.

    The centres of the res-``res`` cells' ancestors at ``res - up``, in res-``res`` axial
    coordinates, form the lattice ``N Z²`` (``N`` the product of ``up`` child maps, of
    determinant ``7^up``), and ``walk_up``'s rounding commutes with shifts by that lattice
    (``lround(n / 7 + m) = lround(n / 7) + m``: never a tie). The two child maps multiply
    to ``7 I``, so ``N Z²`` contains ``q Z²`` with ``q = 7^ceil(up / 2)``: the digits of
    levels ``res - up + 1 .. res`` and the offset of ``(a, b)`` from its ancestor's centre
    ``N · anc`` depend only on ``(a mod q, b mod q)``. Row ``(a mod q) · q + b mod q`` of
    the returned ``int16 (q², 8)`` table holds that offset and the digits turned 0..5
    times 60° ccw, packed in ``3 · up`` bits (``up <= 4``).
    """
    if not 0 <= up <= min(res, 4):
        raise ValueError(f"digit_table: up must be in 0..min(res, 4); got {up} at res {res}")
    n = np.eye(2, dtype=np.int64)
    for r in range(res - up + 1, res + 1):
        n = (_CHILD_ODD if r % 2 else _CHILD_EVEN) @ n
    q = 7 ** ((up + 1) // 2)
    tab = np.zeros((q * q, 8), np.int16)
    _fill_digit_table(res, up, n, q, tab)
    return tab


@jit
def _fill_digit_table(res, up, n, q, tab):
    stop = res - up
    shift = 3 * (15 - res)
    for a in range(q):
        for b in range(q):
            digits, pa, pb = core.walk_up(np.int64(a), np.int64(b), res, stop)
            row = a * q + b
            tab[row, 0] = a - (n[0, 0] * pa + n[0, 1] * pb)
            tab[row, 1] = b - (n[1, 0] * pa + n[1, 1] * pb)
            for rots in range(6):
                tab[row, 2 + rots] = core.rotate_digits(digits, rots, stop + 1, res) >> shift


# 1 / q for the digit_table moduli q = 7^ceil(up / 2), up = 0..4
RECIP_Q = np.array([1.0 / 7 ** ((up + 1) // 2) for up in range(5)])


@jit
def residue(a, q, inv):
    """``a mod q`` (Python's sign) for ``|a| < 2**40``, ``inv = 1 / q``: a multiply and a
    fix-up instead of an integer division (the floor of ``a * inv`` is off by at most 1)."""
    r = a - q * np.int64(math.floor(a * inv))
    if r >= q:
        r -= q
    elif r < 0:
        r += q
    return r


@jit
def grid_cell(face, i, j, k, res, tab, anc):
    """``fijk_to_cell`` for a stream of neighbouring pixels, with a :func:`digit_table`.

    Neighbouring pixels usually share their ancestor ``up`` levels above ``res``. ``anc``
    (int64[7]) holds the last such ancestor, ``anc[0] < 0`` when empty: its face, the
    axial coordinates of its centre at ``res``, its cell bits and rotation count; then
    ``up`` and the modulus ``q`` of ``tab``. A pixel of a cached ancestor costs two
    residues and two table reads, not ``up`` aperture-7 steps. In a pentagon base cell
    the turns depend on the leading non-zero digit, so an ancestor whose digits are all
    zero (the pentagon's own descendant) is not cached.
    """
    a = np.int64(i - k)
    b = np.int64(j - k)
    q = anc[6]
    inv = RECIP_Q[anc[5]]
    rho = residue(a, q, inv) * q + residue(b, q, inv)
    ca = a - tab[rho, 0]
    cb = b - tab[rho, 1]
    if anc[0] == face and anc[1] == ca and anc[2] == cb:
        return anc[3] | (np.int64(tab[rho, 2 + anc[4]]) << (3 * (15 - res)))
    stop = res - anc[5]
    digits, sa, sb = core.walk_up(a, b, res, stop)
    hi, a0, b0 = core.walk_up(sa, sb, stop, 0)
    bc, rots = core.base_rotations(face, a0, b0)
    if bc < 0:
        anc[0] = -1
        return np.int64(0)
    head = core.CELL_MODE | (np.int64(res) << 52) | ((np.int64(1) << (3 * (15 - res))) - 1)
    h = head | hi | digits | (np.int64(bc) << 45)
    if core.IS_PENTAGON[bc]:
        rots = core.pentagon_rotations(h, bc, face, rots)
    cell = core.rotate_digits(h, rots, 1, res) if rots else h
    # a pentagon's turns are fixed by its leading non-zero digit: cacheable if the
    # ancestor has one (hi: digits 1..stop, unrotated)
    if not core.IS_PENTAGON[bc] or hi != 0:
        anc[0] = face
        anc[1] = ca
        anc[2] = cb
        anc[3] = cell & ~core.digit_mask(stop + 1, res)
        anc[4] = rots
    else:
        anc[0] = -1
    return cell


def grid_state(res: int, up: int, tab=None):
    """``(tab, anc)`` for :func:`grid_cell`: the digit table and an empty ancestor cache."""
    tab = digit_table(res, up) if tab is None else tab
    return tab, np.array([-1, 0, 0, 0, 0, up, 7 ** ((up + 1) // 2)], np.int64)

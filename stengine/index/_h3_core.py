"""A numba port of H3's point → cell and cell → centre maths (H3 4.5 "Vec3" pipeline).

Everything here works on one point or one cell at a time and is called from the array
loops in :mod:`stengine.index._h3_arrays`. Index layout (H3 cell mode): bits 59–62
mode (1), 52–55 resolution, 45–51 base cell, then 15 three-bit digits, digit ``r`` at bit
``3 * (15 - r)``; unused digits are 7.

Two ways to reach a cell's face-IJK coordinates from a point on the sphere:

* ``_hex2d_exact`` repeats H3's own floating point operations (acos of the chord, the
  azimuth in the face centre's tangent plane, tan, the per-resolution scaling loop,
  cos/sin) in the same order, so it rounds as the C library does;
* ``_hex2d_fast`` computes the same gnomonic coordinates as two dot products and one
  division (no trigonometry). It differs from H3's values by rounding only, so its result
  is used only when the point is farther than a bound on both rounding errors from every
  decision boundary of the hexagon quantisation; otherwise the exact path decides. The
  face choice uses H3's exact squared distances in both paths.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _h3_tables as _t

jit = numba.njit(nogil=True, cache=True)

# Constants as H3 defines them (constants.h); Python rounds them to the same doubles.
M_PI_180 = 0.0174532925199432957692369076848861271111
M_180_PI = 57.29577951308232087679815481410517033240547
EPSILON = 0.0000000000000001
M_2PI = 6.28318530717958647692528676655900576839433
M_SQRT7 = 2.6457513110645905905016157536392604257102
M_RSQRT7 = 0.37796447300922722721451653623418006081576
M_AP7_ROT_RADS = 0.333473172251832115336090755351601070065900389
RES0_U_GNOMONIC = 0.38196601125010500003
INV_RES0_U_GNOMONIC = 2.61803398874989588842
M_SQRT3_2 = 0.8660254037844386467637231707529361834714
M_RSIN60 = 1.1547005383792515290182975610039149112953
MAX_RES = 15

FACE_CENTER = np.ascontiguousarray(_t.FACE_CENTER)
FACE_AXIS0 = np.ascontiguousarray(_t.FACE_AXES_AZ[:, 0])
FACE_NEIGHBORS = np.ascontiguousarray(_t.FACE_NEIGHBORS)
BASE_CELL_DATA = np.ascontiguousarray(_t.BASE_CELL_DATA)
FACE_IJK_BC = np.ascontiguousarray(_t.FACE_IJK_BASE_CELLS)
IS_PENTAGON = BASE_CELL_DATA[:, 4].astype(np.bool_)
MAX_DIM = np.array([2 * 7 ** (r // 2) if r % 2 == 0 else -1 for r in range(17)], np.int64)
UNIT_SCALE = np.array([7 ** (r // 2) if r % 2 == 0 else -1 for r in range(17)], np.int64)
ROT_CCW = np.array([0, 5, 3, 1, 6, 4, 2, 7], np.int64)  # digit after a 60° ccw turn
ROT_CW = np.array([0, 3, 6, 2, 5, 1, 4, 7], np.int64)
H3_INIT = 0x00001FFFFFFFFFFF  # every digit 7, resolution 0, base cell 0
CELL_MODE = 1 << 59


def _tangent_basis(p):
    """North and east unit vectors at ``p``, with H3's operations in H3's order."""
    s = -p[2]
    n = [0.0 + s * p[0], 0.0 + s * p[1], 1.0 + s * p[2]]
    norm = math.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
    inv = 1.0 / norm
    n = [n[0] * inv, n[1] * inv, n[2] * inv]
    e = [n[1] * p[2] - n[2] * p[1], n[2] * p[0] - n[0] * p[2], n[0] * p[1] - n[1] * p[0]]
    return n, e


_basis = [_tangent_basis(c) for c in FACE_CENTER]
FACE_NORTH = np.array([b[0] for b in _basis])
FACE_EAST = np.array([b[1] for b in _basis])
del _basis


def fast_axes(res: int) -> np.ndarray:
    """Per face, the vectors ``ux, uy`` with ``hex2d = (p·ux, p·uy) / (p·c)`` at ``res``.

    ``(p·ux) / (p·c)`` is the gnomonic projection of ``p`` onto the face's tangent plane,
    measured along the face's i-axis (rotated for Class III) in units of the hexagon
    spacing at ``res`` — the quantity H3 computes with trigonometry.
    """
    scale = INV_RES0_U_GNOMONIC * M_SQRT7 ** res
    out = np.empty((20, 2, 3))
    for f in range(20):
        a = FACE_AXIS0[f] - (M_AP7_ROT_RADS if res % 2 else 0.0)
        n, e = FACE_NORTH[f], FACE_EAST[f]
        # theta = a - azimuth, so x = |q| cos(a - az) = q·(cos a n + sin a e), y likewise
        out[f, 0] = scale * (math.cos(a) * n + math.sin(a) * e)
        out[f, 1] = scale * (math.sin(a) * n - math.cos(a) * e)
    return out


# --------------------------------------------------------------------------- IJK helpers
@jit
def _normalize(i, j, k):
    if i < 0:
        j -= i
        k -= i
        i = 0
    if j < 0:
        i -= j
        k -= j
        j = 0
    if k < 0:
        i -= k
        j -= k
        k = 0
    m = min(i, j, k)
    if m > 0:
        i -= m
        j -= m
        k -= m
    return i, j, k


# lround(n / 7) for |n| < 2**40 (no ties: n / 7 is never a half-integer), as an unsigned
# floor division by the constant 14 (a multiply and a shift) after an offset making it >= 0
_R7_OFFSET = 14 * (1 << 40)


@jit
def _round7(n):
    return np.int64(np.uint64(2 * n + 7 + _R7_OFFSET) // np.uint64(14)) - (1 << 40)


@jit
def _up_ap7(i, j, k):
    ii = i - k
    jj = j - k
    return _normalize(_round7(3 * ii - jj), _round7(ii + 2 * jj), 0)


@jit
def _up_ap7r(i, j, k):
    ii = i - k
    jj = j - k
    return _normalize(_round7(2 * ii + jj), _round7(3 * jj - ii), 0)


@jit
def _down_ap7(i, j, k):
    return _normalize(3 * i + j, 3 * j + k, i + 3 * k)


@jit
def _down_ap7r(i, j, k):
    return _normalize(3 * i + k, i + 3 * j, j + 3 * k)


@jit
def _rot60ccw(i, j, k):
    return _normalize(i + k, i + j, j + k)


@jit
def _rot60cw(i, j, k):
    return _normalize(i + j, j + k, i + k)


@jit
def _unfold(i, j, x, y):
    """The first-quadrant hex ``(i, j)`` of ``(|x|, |y|)`` moved back to the quadrant of
    ``(x, y)``, normalised to ijk (H3's ``_hex2dToCoordIJK`` tail)."""
    if x < 0.0:
        if j % 2 == 0:
            i = i - 2 * (i - j // 2)
        else:
            i = i - (2 * (i - (j + 1) // 2) + 1)
    if y < 0.0:
        i = i - (2 * j + 1) // 2
        j = -j
    return _normalize(i, j, 0)


@jit
def _hex2d_to_ijk(x, y):
    a1 = abs(x)
    a2 = abs(y)
    x2 = a2 * M_RSIN60
    x1 = a1 + x2 / 2.0
    m1 = np.int64(x1)
    m2 = np.int64(x2)
    r1 = x1 - m1
    r2 = x2 - m2
    if r1 < 0.5:
        if r1 < 1.0 / 3.0:
            i = m1
            j = m2 if r2 < (1.0 + r1) / 2.0 else m2 + 1
        else:
            j = m2 if r2 < (1.0 - r1) else m2 + 1
            i = m1 + 1 if ((1.0 - r1) <= r2 and r2 < (2.0 * r1)) else m1
    else:
        if r1 < 2.0 / 3.0:
            j = m2 if r2 < (1.0 - r1) else m2 + 1
            i = m1 if ((2.0 * r1 - 1.0) < r2 and r2 < (1.0 - r1)) else m1 + 1
        else:
            i = m1 + 1
            j = m2 if r2 < (r1 / 2.0) else m2 + 1
    return _unfold(i, j, x, y)


@jit
def _hex2d_to_ijk_margin(x, y):
    """``_hex2d_to_ijk`` and the distance of ``(x, y)`` from its decision lines.

    The margin is the smallest gap of the comparisons on the branch taken (the signs of
    ``x`` and ``y``, the integer parts, then the ``r1``/``r2`` tests): if the input moves
    by less than it, every one of those comparisons, hence the branch and the result,
    stays the same.
    """
    a1 = abs(x)
    a2 = abs(y)
    x2 = a2 * M_RSIN60
    x1 = a1 + x2 / 2.0
    m1 = np.int64(x1)
    m2 = np.int64(x2)
    r1 = x1 - m1
    r2 = x2 - m2
    m = min(a1, a2, r1, 1.0 - r1, r2, 1.0 - r2, abs(r1 - 0.5))
    if r1 < 0.5:
        m = min(m, abs(r1 - 1.0 / 3.0))
        if r1 < 1.0 / 3.0:
            t = (1.0 + r1) / 2.0
            m = min(m, abs(r2 - t))
            i = m1
            j = m2 if r2 < t else m2 + 1
        else:
            t = 1.0 - r1
            m = min(m, abs(r2 - t), abs(r2 - 2.0 * r1))
            j = m2 if r2 < t else m2 + 1
            i = m1 + 1 if (t <= r2 and r2 < (2.0 * r1)) else m1
    else:
        m = min(m, abs(r1 - 2.0 / 3.0))
        if r1 < 2.0 / 3.0:
            t = 1.0 - r1
            m = min(m, abs(r2 - t), abs(r2 - (2.0 * r1 - 1.0)))
            j = m2 if r2 < t else m2 + 1
            i = m1 if ((2.0 * r1 - 1.0) < r2 and r2 < t) else m1 + 1
        else:
            m = min(m, abs(r2 - r1 / 2.0))
            i = m1 + 1
            j = m2 if r2 < (r1 / 2.0) else m2 + 1
    i, j, k = _unfold(i, j, x, y)
    return i, j, k, m


# --------------------------------------------------------------------------- sphere → hex2d
@jit
def _pos_angle(a):
    t = a + M_2PI if a < 0.0 else a
    if a >= M_2PI:
        t -= M_2PI
    return t


@jit
def _closest_face(px, py, pz):
    face = 0
    sqd = 5.0
    for f in range(20):
        dx = FACE_CENTER[f, 0] - px
        dy = FACE_CENTER[f, 1] - py
        dz = FACE_CENTER[f, 2] - pz
        d = dx * dx + dy * dy + dz * dz
        if d < sqd:
            face = f
            sqd = d
    return face, sqd


# Per face, c_f - c_g for its three edge neighbours g: p·(c_f - c_g) > 0 on f's side of
# the shared edge; inside all three p is in f's spherical triangle, i.e. f is closest.
FACE_BISECT = np.array([[FACE_CENTER[f] - FACE_CENTER[FACE_NEIGHBORS[f, q, 0]] for q in (1, 2, 3)]
                        for f in range(20)])


@jit
def _face_near(px, py, pz, prev):
    """``_closest_face``, trying face ``prev`` first (neighbouring pixels share a face).

    A point more than ~1e-12 inside ``prev``'s triangle is farther from every other face
    centre by more than the rounding of H3's squared distances, so H3 picks ``prev`` too.
    """
    if prev >= 0:
        inside = True
        for q in range(3):
            if px * FACE_BISECT[prev, q, 0] + py * FACE_BISECT[prev, q, 1] + \
                    pz * FACE_BISECT[prev, q, 2] < 1e-12:
                inside = False
                break
        if inside:
            dx = FACE_CENTER[prev, 0] - px
            dy = FACE_CENTER[prev, 1] - py
            dz = FACE_CENTER[prev, 2] - pz
            return prev, dx * dx + dy * dy + dz * dz
    return _closest_face(px, py, pz)


@jit
def _hex2d_exact(px, py, pz, face, sqd, res):
    """H3's ``_vec3ToHex2d`` after the face choice, operation for operation."""
    r = math.acos(1.0 - sqd * 0.5)
    if r < EPSILON:
        return 0.0, 0.0
    cx = FACE_CENTER[face, 0]
    cy = FACE_CENTER[face, 1]
    cz = FACE_CENTER[face, 2]
    s = -(px * cx + py * cy + pz * cz)
    qx = 1.0 * px + s * cx
    qy = 1.0 * py + s * cy
    qz = 1.0 * pz + s * cz
    norm = math.sqrt(qx * qx + qy * qy + qz * qz)
    if norm != 0.0:
        inv = 1.0 / norm
        qx *= inv
        qy *= inv
        qz *= inv
    east = qx * FACE_EAST[face, 0] + qy * FACE_EAST[face, 1] + qz * FACE_EAST[face, 2]
    north = qx * FACE_NORTH[face, 0] + qy * FACE_NORTH[face, 1] + qz * FACE_NORTH[face, 2]
    theta = _pos_angle(FACE_AXIS0[face] - _pos_angle(math.atan2(east, north)))
    if res % 2 == 1:
        theta = _pos_angle(theta - M_AP7_ROT_RADS)
    r = math.tan(r)
    r *= INV_RES0_U_GNOMONIC
    for _ in range(res):
        r *= M_SQRT7
    return r * math.cos(theta), r * math.sin(theta)


@jit
def _point_to_fijk(px, py, pz, res, axes, prev_face=-1):
    """(face, i, j, k) of the res-``res`` cell containing unit vector ``p``."""
    face, sqd = _face_near(px, py, pz, prev_face)
    if sqd > 1e-12:
        d = px * FACE_CENTER[face, 0] + py * FACE_CENTER[face, 1] + pz * FACE_CENTER[face, 2]
        inv = 1.0 / d
        x = (px * axes[face, 0, 0] + py * axes[face, 0, 1] + pz * axes[face, 0, 2]) * inv
        y = (px * axes[face, 1, 0] + py * axes[face, 1, 1] + pz * axes[face, 1, 2]) * inv
        i, j, k, m = _hex2d_to_ijk_margin(x, y)
        # margin > 3 tol, tol = (|x| + |y| + 1)(4e-14 + 4e-15 / sqd): H3's own rounding
        # grows like 1/sqd near a face centre (acos of 1 - sqd/2); multiplied out by sqd
        if m * sqd > 3.0 * (abs(x) + abs(y) + 1.0) * (4e-14 * sqd + 4e-15):
            return face, i, j, k
    x, y = _hex2d_exact(px, py, pz, face, sqd, res)
    i, j, k = _hex2d_to_ijk(x, y)
    return face, i, j, k


# --------------------------------------------------------------------------- index digits
@jit
def get_digit(h, r):
    return (h >> (3 * (15 - r))) & 7


@jit
def set_digit(h, r, d):
    shift = 3 * (15 - r)
    return (h & ~(np.int64(7) << shift)) | (np.int64(d) << shift)


@jit
def get_res(h):
    return (h >> 52) & 15


@jit
def get_base_cell(h):
    return (h >> 45) & 127


@jit
def leading_nonzero_digit(h):
    for r in range(1, get_res(h) + 1):
        d = get_digit(h, r)
        if d != 0:
            return d
    return 0


@jit
def rotate60ccw(h):
    for r in range(1, get_res(h) + 1):
        h = set_digit(h, r, ROT_CCW[get_digit(h, r)])
    return h


@jit
def rotate60cw(h):
    for r in range(1, get_res(h) + 1):
        h = set_digit(h, r, ROT_CW[get_digit(h, r)])
    return h


@jit
def rotate_pent60ccw(h):
    found = False
    for r in range(1, get_res(h) + 1):
        h = set_digit(h, r, ROT_CCW[get_digit(h, r)])
        if not found and get_digit(h, r) != 0:
            found = True
            # skip the deleted k-axes subsequence of pentagons
            if leading_nonzero_digit(h) == 1:
                h = rotate60ccw(h)
    return h


# Digit of a unit step (da, db) in axial coordinates, at index 3 * (da + 1) + (db + 1);
# 7 (invalid) where the step is not one of the six unit vectors.
AXIAL_DIGIT = np.array([1, 3, 7, 5, 0, 2, 7, 4, 6], np.int64)
# ROT_CCW_N[n, d]: digit d after n turns of 60° counter-clockwise
ROT_CCW_N = np.array([np.arange(8)] + [np.zeros(8, np.int64)] * 5, np.int64)
for _n in range(1, 6):
    ROT_CCW_N[_n] = ROT_CCW[ROT_CCW_N[_n - 1]]


@jit
def walk_up(a, b, res, stop):
    """Aperture-7 steps from axial ``(a, b)`` at ``res`` up to ``stop``.

    Returns the digits of levels ``stop + 1 .. res`` (unrotated, in their places of an H3
    index, all other bits zero) and the axial coordinates of the ancestor at ``stop``.
    """
    h = np.int64(0)
    for r in range(res - 1, stop - 1, -1):
        if (r + 1) % 2 == 1:  # Class III child: up ccw, back down ccw
            pa = _round7(3 * a - b)
            pb = _round7(a + 2 * b)
            ca = 2 * pa + pb
            cb = 3 * pb - pa
        else:
            pa = _round7(2 * a + b)
            pb = _round7(3 * b - a)
            ca = 3 * pa - pb
            cb = pa + 2 * pb
        da = a - ca
        db = b - cb
        digit = AXIAL_DIGIT[3 * (da + 1) + (db + 1)] if abs(da) <= 1 and abs(db) <= 1 else 7
        h |= np.int64(digit) << (3 * (14 - r))
        a = pa
        b = pb
    return h, a, b


@jit
def digit_mask(lo, hi):
    """Bits of the digits of levels ``lo .. hi`` in an H3 index."""
    if hi < lo:
        return np.int64(0)
    return ((np.int64(1) << (3 * (hi - lo + 1))) - 1) << (3 * (15 - hi))


@jit
def rotate_digits(h, rots, lo, hi):
    """Digits ``lo .. hi`` of ``h`` turned ``rots`` times 60° counter-clockwise."""
    for r in range(lo, hi + 1):
        h = set_digit(h, r, ROT_CCW_N[rots, get_digit(h, r)])
    return h


@jit
def fijk_to_cell(face, i, j, k, res):
    """H3's ``_faceIjkToH3``: int64 cell id, or 0 for coordinates off the face.

    Works in axial coordinates ``(a, b) = (i - k, j - k)``, in which H3's aperture-7
    steps are linear maps and IJK normalisation is the identity.
    """
    unused = (np.int64(1) << (3 * (15 - res))) - 1
    digits, a, b = walk_up(np.int64(i - k), np.int64(j - k), res, 0)
    h = CELL_MODE | (np.int64(res) << 52) | unused | digits
    return finish_cell(h, face, a, b, res)


@jit
def base_rotations(face, a, b):
    """(base cell, 60° ccw rotations) of the res-0 axial ``(a, b)`` on ``face``; (-1, 0) off it."""
    i, j, k = _normalize(a, b, 0)
    if i > 2 or j > 2 or k > 2:
        return -1, 0
    return FACE_IJK_BC[face, i, j, k, 0], FACE_IJK_BC[face, i, j, k, 1]


@jit
def pentagon_rotations(h, bc, face, rots):
    """60° ccw turns of the digits of ``h`` (base cell ``bc``, a pentagon, set) from ``rots``.

    H3 turns a pentagon's digits one 60° step at a time, and once more whenever the leading
    non-zero digit lands on the deleted k-axis (1); the leading digit decides every step,
    so count the steps on it and turn all digits once. The count depends on ``h`` only
    through its leading non-zero digit (0: no turn).
    """
    d = leading_nonzero_digit(h)
    if d == 0:
        return 0
    n = 0
    if d == 1:
        if BASE_CELL_DATA[bc, 5] == face or BASE_CELL_DATA[bc, 6] == face:
            d = ROT_CW[d]
            n = 5
        else:
            d = ROT_CCW[d]
            n = 1
    for _ in range(rots):
        d = ROT_CCW[d]
        n += 1
        if d == 1:
            d = ROT_CCW[d]
            n += 1
    return n % 6


@jit
def finish_cell(h, face, a, b, res):
    """Base cell and rotations of index ``h`` (digits unrotated) from its res-0 ``(a, b)``."""
    bc, rots = base_rotations(face, a, b)
    if bc < 0:
        return np.int64(0)
    h = h | (np.int64(bc) << 45)
    if IS_PENTAGON[bc]:
        rots = pentagon_rotations(h, bc, face, rots)
    if rots:
        h = rotate_digits(h, rots, 1, res)
    return h


@jit
def vec3_to_cell(px, py, pz, res, axes):
    face, i, j, k = _point_to_fijk(px, py, pz, res, axes)
    return fijk_to_cell(face, i, j, k, res)


# --------------------------------------------------------------------------- cell → centre
@jit
def _adjust_overage(face, i, j, k, res, pent_leading4):
    """H3's ``_adjustOverageClassII`` (not substrate); returns (moved, face, i, j, k)."""
    max_dim = MAX_DIM[res]
    if i + j + k <= max_dim:
        return False, face, i, j, k
    if k > 0:
        if j > 0:
            q = 3
        else:
            q = 2
            if pent_leading4:
                ti, tj, tk = _rot60cw(i - max_dim, j, k)
                i, j, k = ti + max_dim, tj, tk
    else:
        q = 1
    nf = FACE_NEIGHBORS[face, q, 0]
    for _ in range(FACE_NEIGHBORS[face, q, 4]):
        i, j, k = _rot60ccw(i, j, k)
    s = UNIT_SCALE[res]
    i, j, k = _normalize(i + FACE_NEIGHBORS[face, q, 1] * s, j + FACE_NEIGHBORS[face, q, 2] * s,
                         k + FACE_NEIGHBORS[face, q, 3] * s)
    return True, nf, i, j, k


@jit
def cell_to_fijk(h):
    """H3's ``_h3ToFaceIjk``: the (face, i, j, k) of cell ``h`` on its home face."""
    bc = get_base_cell(h)
    res = get_res(h)
    pent = IS_PENTAGON[bc]
    if pent and leading_nonzero_digit(h) == 5:
        h = rotate60cw(h)
    face = BASE_CELL_DATA[bc, 0]
    i = BASE_CELL_DATA[bc, 1]
    j = BASE_CELL_DATA[bc, 2]
    k = BASE_CELL_DATA[bc, 3]
    overage = pent or not (res == 0 or (i == 0 and j == 0 and k == 0))
    for r in range(1, res + 1):
        if r % 2 == 1:
            i, j, k = _down_ap7(i, j, k)
        else:
            i, j, k = _down_ap7r(i, j, k)
        d = get_digit(h, r)
        if 0 < d < 7:
            i, j, k = _normalize(i + ((d >> 2) & 1), j + ((d >> 1) & 1), k + (d & 1))
    if not overage:
        return face, i, j, k
    oi, oj, ok = i, j, k
    ares = res
    if res % 2 == 1:
        i, j, k = _down_ap7r(i, j, k)
        ares += 1
    lead4 = pent and leading_nonzero_digit(h) == 4
    moved, face2, i, j, k = _adjust_overage(face, i, j, k, ares, lead4)
    if moved:
        face = face2
        if pent:
            while True:
                moved, face2, i, j, k = _adjust_overage(face, i, j, k, ares, False)
                if not moved:
                    break
                face = face2
        if ares != res:
            i, j, k = _up_ap7r(i, j, k)
        return face, i, j, k
    return face, oi, oj, ok


@jit
def fijk_to_lonlat(face, i, j, k, res):
    """Centre (lon, lat) in degrees of the cell at face-IJK, as H3's ``cellToLatLng``."""
    x = np.float64(i - k) - 0.5 * np.float64(j - k)
    y = np.float64(j - k) * M_SQRT3_2
    cx = FACE_CENTER[face, 0]
    cy = FACE_CENTER[face, 1]
    cz = FACE_CENTER[face, 2]
    r = math.sqrt(x * x + y * y)
    if r < EPSILON:
        vx, vy, vz = cx, cy, cz
    else:
        theta = math.atan2(y, x)
        for _ in range(res):
            r *= M_RSQRT7
        r *= RES0_U_GNOMONIC
        r = math.atan(r)
        if res % 2 == 1:
            theta = _pos_angle(theta + M_AP7_ROT_RADS)
        theta = _pos_angle(FACE_AXIS0[face] - theta)
        ct = math.cos(theta)
        st = math.sin(theta)
        dx = ct * FACE_NORTH[face, 0] + st * FACE_EAST[face, 0]
        dy = ct * FACE_NORTH[face, 1] + st * FACE_EAST[face, 1]
        dz = ct * FACE_NORTH[face, 2] + st * FACE_EAST[face, 2]
        cr = math.cos(r)
        sr = math.sin(r)
        vx = cr * cx + sr * dx
        vy = cr * cy + sr * dy
        vz = cr * cz + sr * dz
        norm = math.sqrt(vx * vx + vy * vy + vz * vz)
        if norm != 0.0:
            inv = 1.0 / norm
            vx *= inv
            vy *= inv
            vz *= inv
    return math.atan2(vy, vx) * M_180_PI, math.asin(vz) * M_180_PI

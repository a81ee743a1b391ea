"""Exact k-nearest search in NumPy: blocked float32 matrix products and argpartition.

Distances: ``cosine`` = 1 − cos(x, q) (rows stored unit-normalised), ``l2`` = Euclidean.
Ties are broken by row order (rows are sorted by cell id), so results are deterministic.
"""

from __future__ import annotations

import numpy as np

BLOCK = 65536  # rows per matrix product: ~16 MiB of float32 at D = 64


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32 C-contiguous rows; unit-normalised for cosine (zero rows stay zero)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        n = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(n > 0, n, 1.0).astype(np.float32)
    return x


def _dist(block: np.ndarray, q: np.ndarray, metric: str, sqn: np.ndarray | None) -> np.ndarray:
    dots = block @ q.T                                   # (rows, m) float32
    if metric == "cosine":
        return 1.0 - dots
    qn = np.einsum("ij,ij->i", q, q)
    return np.sqrt(np.maximum(sqn[:, None] - 2.0 * dots + qn[None, :], 0.0))


def topk(x: np.ndarray, queries: np.ndarray, k: int, metric: str, *,
         rows: np.ndarray | None = None, skip: np.ndarray | None = None):
    """Nearest ``k`` rows of ``x`` to each query: ``(idx, dist)``, each ``(m, k')``.

    ``rows``: candidate row numbers (sorted) or None for all; ``skip``: one row per query
    to leave out (−1: none). ``k' = min(k, candidates)``; sorted by (distance, row).
    """
    q = np.atleast_2d(np.asarray(queries, np.float32))
    if metric == "cosine":
        n = np.linalg.norm(q, axis=1, keepdims=True)
        q = q / np.where(n > 0, n, 1.0).astype(np.float32)
    m = q.shape[0]
    cand = np.arange(x.shape[0]) if rows is None else np.asarray(rows, np.int64)
    kk = min(k, cand.size - (0 if skip is None else 1))
    kk = max(kk, 0)
    best_i = [np.empty(0, np.int64) for _ in range(m)]
    best_d = [np.empty(0, np.float32) for _ in range(m)]
    if kk == 0:
        return np.empty((m, 0), np.int64), np.empty((m, 0), np.float32)
    for s in range(0, cand.size, BLOCK):
        ids = cand[s:s + BLOCK]
        blk = x[ids] if rows is not None else x[s:s + BLOCK]
        sqn = np.einsum("ij,ij->i", blk, blk) if metric == "l2" else None
        d = _dist(blk, q, metric, sqn).T                  # (m, rows)
        if skip is not None:
            d[ids[None, :] == np.asarray(skip)[:, None]] = np.inf
        for r in range(m):
            dr = d[r]
            if kk < dr.size:
                # every row tied with the block's k-th distance is kept, so the final
                # (distance, row) order does not depend on argpartition's choice
                t = dr[np.argpartition(dr, kk - 1)[kk - 1]]
                sel = np.flatnonzero(dr <= t)
            else:
                sel = np.arange(dr.size)
            ci = np.concatenate([best_i[r], ids[sel]])
            cdist = np.concatenate([best_d[r], dr[sel]])
            o = np.lexsort((ci, cdist))[:kk]
            best_i[r], best_d[r] = ci[o], cdist[o]
    return np.stack(best_i), np.stack(best_d)

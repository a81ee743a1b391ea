"""PostgreSQL partitions fetched with ``COPY (SELECT ...) TO STDOUT (FORMAT csv)``.

Row-by-row DBAPI fetches build a Python tuple per row (about 0.3-0.5 M rows/s per core);
COPY streams CSV that pyarrow parses in C, several times faster (benchmarks/sources.py).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ._sources_sql import _columns_sql, _source_sql, divisions


def _arrow_types(meta: pd.DataFrame):
    import pyarrow as pa
    types = {}
    for c, dt in meta.dtypes.items():
        if pd.api.types.is_bool_dtype(dt):
            types[c] = pa.bool_()
        elif pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt):
            types[c] = pa.float64() if pd.api.types.is_float_dtype(dt) else pa.int64()
        elif pd.api.types.is_datetime64_any_dtype(dt):
            # the COPY session runs in UTC, so timestamptz text ends in "+00"
            types[c] = pa.timestamp("us", tz="UTC" if getattr(dt, "tz", None) else None)
        else:  # text and anything else: strings, cast to the meta's dtype after
            types[c] = pa.string()
    return types


def _fetch(part, *, conninfo, sql_tpl, index_col, empty, timeout):
    meta = empty  # from_map takes meta= for itself
    import psycopg
    import pyarrow.csv as pcsv
    lo, hi, last = part
    op = "<=" if last else "<"
    sql = sql_tpl.replace("{where}", f'"{index_col}" >= %s AND "{index_col}" {op} %s')
    buf = io.BytesIO()
    with psycopg.connect(conninfo, connect_timeout=timeout, options="-c TimeZone=UTC") as con, \
            psycopg.ClientCursor(con) as cur:
        with cur.copy(_copy_sql(cur, sql, lo, hi)) as cp:
            for chunk in cp:
                buf.write(chunk)
    buf.seek(0)
    types = _arrow_types(meta)
    if buf.getbuffer().nbytes == 0:
        return meta.set_index(index_col)
    tbl = pcsv.read_csv(buf, convert_options=pcsv.ConvertOptions(
        column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
        true_values=["t", "true"], false_values=["f", "false"]))
    df = tbl.to_pandas()
    df = df.astype({c: dt for c, dt in meta.dtypes.items() if df[c].dtype != dt},
                   errors="ignore")
    return df.set_index(index_col)


def _copy_sql(cur, sql, lo, hi):
    # the bounds are bound by psycopg (client-side) so COPY, which takes no parameters,
    # receives literal values
    return cur.mogrify(sql, (lo, hi))


def read_copy(spec, url, meta, index_col, lo, hi, npart):
    """A dask DataFrame of the source, one COPY per index range (edges as dask divisions)."""
    import dask.dataframe as dd
    frm, _ = _source_sql(spec)
    cols = _columns_sql(spec)
    meta_i = meta.set_index(index_col)
    divs = divisions(lo, hi, npart, meta[index_col].dtype)
    if divs is None:
        return dd.from_pandas(meta_i, npartitions=1)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    sel = cols  # open_spec put index_col into columns=
    # % in the user's query would be taken as a placeholder by mogrify
    tpl = (f"COPY (SELECT {sel} FROM {frm.replace('%', '%%')} WHERE " + "{where}) TO STDOUT "
           "(FORMAT csv, HEADER true)")
    parts = [(_py(divs[i]), _py(divs[i + 1]), i == len(divs) - 2) for i in range(len(divs) - 1)]
    timeout = max(1, int(round(float(spec.options.get("connect_timeout", 10)))))
    return dd.from_map(_fetch, parts, conninfo=conninfo, sql_tpl=tpl, index_col=index_col,
                       empty=meta, timeout=timeout, meta=meta_i, divisions=divs,
                       label="read-sql-copy", enforce_metadata=False)


def _py(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v

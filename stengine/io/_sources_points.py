"""Observation tables (lon, lat, time, values) read from SQL into an HTM-ST PointStore."""

from __future__ import annotations

import pandas as pd

from ..errors import SourceError
from ._sources_sql import _connect, _ident, _source_sql, shown


def _names(spec):
    o = spec.options
    lon, lat, time = (_ident(o.get(k, k), k) for k in ("lon", "lat", "time"))
    values = o.get("values")
    if values is None:
        raise SourceError("sql-points needs values= (the list of value columns to store)",
                          field="values")
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise SourceError("values must be a non-empty list of column names", field="values")
    return lon, lat, time, [_ident(v, "values") for v in values]


def _utc(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s


def load_points(spec):
    """Write the observation rows of a sql-points spec into a new PointStore at ``store=``.

    ``t0``/``t1`` default to the table's first time and one second past its last.
    """
    import sqlalchemy as sa

    from .points import PointStore
    store = spec.options.get("store")
    if not isinstance(store, str) or not store:
        raise SourceError("sql-points needs store= (a local directory for the PointStore)",
                          field="store")
    lon, lat, time, values = _names(spec)
    frm, _ = _source_sql(spec)
    batch = spec.options.get("batch_size", 500_000)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SourceError(f"batch_size must be a positive int (rows); got {batch!r}",
                          field="batch_size")
    sel = ", ".join([f'"{lon}" AS lon', f'"{lat}" AS lat', f'"{time}" AS time']
                    + [f'"{v}"' for v in values])
    eng, url, con = _connect(spec)
    try:
        t0, t1 = spec.options.get("t0"), spec.options.get("t1")
        if t0 is None or t1 is None:
            try:
                lo, hi = con.execute(sa.text(f'SELECT min("{time}"), max("{time}") '
                                             f"FROM {frm}")).one()
            except sa.exc.SQLAlchemyError as e:
                raise SourceError(f"sql-points: cannot read {time!r} from {shown(url)!r}: "
                                  f"{type(e.orig or e).__name__}", field="time") from None
            if lo is None:
                raise SourceError("sql-points: the source has no rows", field="table")
            lo, hi = _utc(pd.Series([lo, hi]))
            t0 = lo if t0 is None else t0
            t1 = hi + pd.Timedelta(seconds=1) if t1 is None else t1
        ps = PointStore.create(
            store, key=spec.options.get("key", "htmst"), level=spec.options.get("level", 10),
            t0=t0, t1=t1, fanout=spec.options.get("fanout", 2),
            chunk_size=spec.options.get("chunk_size", 65536),
            overwrite=bool(spec.options.get("overwrite", False)))
        for df in pd.read_sql(sa.text(f"SELECT {sel} FROM {frm}"), con, chunksize=batch):
            df["time"] = _utc(df["time"])
            ps.append(df)
    finally:
        con.close()
        eng.dispose()
    return ps

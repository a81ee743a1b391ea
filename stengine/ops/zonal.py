"""Zonal statistics by zone raster or by polygons: per-chunk partials, tree-combined.

Design (see ``docs/zonal.md``): each chunk of the values raster computes partial
aggregates for the zones it sees — with polygon zones, only the polygons whose pixel
bounding box reaches the chunk (arithmetic on the regular chunk grid), rasterized on
the chunk's own window into pixel runs by a scanline kernel; with a zone raster, the
matching zone chunk, run-length encoded. Partials (count, sum, min, max, M2 for a
stable parallel variance, per-value histograms of integer data) are merged in a dask
tree. No global zone raster is built and no pixel moves between chunks; the small
result table is computed eagerly.

nodata: NaN pixels, and pixels equal to ``nodata`` (default ``values.attrs["nodata"]``),
are not counted. A zone raster's ``attrs["nodata"]`` (and any id not in ``zone_ids``)
marks pixels that belong to no zone.

Edges: a raster without pixels (a 0-length ``y`` or ``x``) gives every zone count 0 and
NaN elsewhere; a 0-length ``time`` gives tables with a 0-length ``time``. Polygons are
checked before anything runs: missing or empty geometries, non-polygons, NaN/infinite
vertices, geometries that reprojection sends to non-finite coordinates, and geometries
wholly outside the raster CRS's area of use (and away from the raster) are refused,
naming ``zones`` and the rows. A valid polygon that misses the raster has count 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..cube import check_dtype, check_raster, check_same_grid
from ..cube.validate import raster_grid
from ..errors import ChunkError, DimensionError
from . import _zonal_partials as P
from . import _zonal_vector as V
from ._kernel import Kernel
from ._lift import lift_zonal
from ._numba import zonal as _cpu
from ._zonal_rasterize import ALL_TOUCHED, CENTRE, COVERAGE

__all__ = ["zonal_stats", "zonal_crosstab"]

STATS = ("count", "sum", "mean", "min", "max", "std", "var", "median", "majority",
         "minority", "unique")
HIST_STATS = ("median", "majority", "minority", "unique")
_GPU = "stengine.ops._cuda.zonal:"
span_k = Kernel("zonal_stats", cpu=_cpu.span_partials, gpu=_GPU + "span_partials")
zone_k = Kernel("zonal_stats", cpu=_cpu.zone_partials, gpu=_GPU + "zone_partials")
_LUT_MAX = 2**22  # zone id ranges up to this use a lookup table, wider ones binary search


def zonal_stats(values, zones, *, stats=("count", "sum", "mean", "min", "max", "std"),
                all_touched: bool = False, weights: str | None = None, zone_ids=None,
                nodata=None, dims=None):
    """Summarize ``values`` per zone: by an integer zone raster, or by polygons.

    Parameters
    ----------
    values : xarray.DataArray
        ``(y, x)`` raster, or a cube with more dims before them (``(time, y, x)``,
        ``(band, y, x)``); numpy, dask, CuPy or the CUDA simulator.
    zones : xarray.DataArray | geopandas.GeoDataFrame | GeoSeries | str | os.PathLike
        An integer ``(y, x)`` zone raster on the grid of ``values`` (checked), or
        (Multi)Polygons in any CRS (reprojected to the raster's) — a path is read with
        geopandas. Polygons may overlap: each counts its own pixels.
    stats : str | sequence of str
        Any of ``count``, ``sum``, ``mean``, ``min``, ``max``, ``std``, ``var``
        (population, ddof=0), ``median`` (the mean of the two middle values for even
        counts, like numpy), ``majority``/``minority`` (most/least frequent value; ties
        go to the smaller), ``unique`` (number of distinct values). The last four need
        integer values (class rasters): they run on per-zone histograms, exactly.
    all_touched : bool
        Polygons: count every pixel the polygon touches, not only those whose centre
        it contains (GDAL's ``all_touched``).
    weights : None | "coverage"
        Polygons: weight each pixel by the fraction of its area inside the polygon
        (exact), as exactextract does; ``count`` and ``sum`` become weighted sums, ``mean``,
        ``std``/``var`` weighted moments, ``min``/``max`` cover pixels with any coverage,
        and ``majority``/``minority``/``unique`` use covered area. Not with ``median``.
    zone_ids : array-like, optional
        Zone raster: the ids to report, in result order. Required for dask zones
        (finding them would read the whole zone raster); default ``np.unique(zones)``
        without the zone nodata. Pixels of other ids are ignored.
    nodata : number, optional
        Values to skip, besides NaN; default ``values.attrs.get("nodata")``.
    dims : (str, str), optional
        Spatial dims; default ``("y", "x")``.

    Returns
    -------
    pandas.DataFrame | geopandas.GeoDataFrame | xarray.Dataset
        For a ``(y, x)`` raster, a table with one row per zone and one column per
        statistic: indexed by zone id (index name ``zone``) for a zone raster; for
        polygons, a copy of the GeoDataFrame (same index, attributes and geometry) with
        the statistic columns added. With more dims, a Dataset of one variable per
        statistic over ``("zone", *other dims)``; polygon attributes become coordinates
        along ``zone``. ``count`` is int64 (float64 with coverage weights), ``unique``
        int64, the rest float64. A zone without valid pixels has count 0, unique 0, and
        NaN elsewhere.

    Raises
    ------
    TypeError
        Non-integer zone raster; histogram statistics on float values; non-polygon
        geometries.
    ValueError
        Unknown statistic; polygons without a CRS; an empty GeoDataFrame; ``weights``
        or ``all_touched`` with a zone raster.
    GridMismatchError
        A zone raster not on the grid of ``values``.
    ChunkError
        Dask zone raster without ``zone_ids=``.

    See Also
    --------
    zonal_crosstab : per-class pixel counts or fractions per zone.

    Examples
    --------
    ``values.st.zonal_stats(zones)`` is the same call. A 5×5 raster and three zones:

    >>> import numpy as np
    >>> from stengine.cube import make_raster
    >>> from stengine.ops.zonal import zonal_stats
    >>> v = make_raster(np.arange(25, dtype="f4").reshape(5, 5))
    >>> z = make_raster(np.tile(np.array([7, 7, 8, 8, 9], "u1"), (5, 1)))
    >>> zonal_stats(v, z, stats=["count", "mean", "max"])  # doctest: +NORMALIZE_WHITESPACE
          count  mean   max
    zone
    7        10  10.5  21.0
    8        10  12.5  23.0
    9         5  14.0  24.0

    Polygons (any CRS): a square of 2 × 2 pixel centres, by the centre rule and weighted
    by covered area:

    >>> import geopandas as gpd, shapely
    >>> from stengine.grid import Grid
    >>> v = make_raster(np.arange(25, dtype="f4").reshape(5, 5),
    ...                 Grid.from_bbox((0, 0, 5, 5), 1, crs=3857))
    >>> sq = gpd.GeoDataFrame({"name": ["sq"]}, geometry=[shapely.box(0.2, 2.2, 2, 4)],
    ...                       crs=3857)
    >>> zonal_stats(v, sq, stats=["count", "sum"])[["name", "count", "sum"]]
      name  count   sum
    0   sq      4  32.0
    >>> zonal_stats(v, sq, stats=["count", "sum"], weights="coverage")[["count", "sum"]]
       count   sum
    0   3.24  25.2
    """
    op = "zonal_stats"
    check_raster(values, dims, op=op, name="values")
    stats = _parse_stats(stats, op)
    bad = [s for s in stats if s in HIST_STATS]
    if bad and values.dtype.kind not in "iub":
        raise TypeError(f"{op}: {bad} need integer values (class rasters); values has dtype "
                        f"{values.dtype}. Reclassify to integer classes first "
                        "(stengine.ops.local_reclassify), or drop those statistics.")
    if weights == "coverage" and "median" in stats:
        raise ValueError(f"{op}: median is not available with weights='coverage'; use the "
                         "centre rule (weights=None) for medians")
    kw = dict(need_m2=bool({"std", "var"} & set(stats)),
              need_minmax=bool({"min", "max"} & set(stats)), need_hist=bool(bad))
    plan = _plan(values, zones, op=op, all_touched=all_touched, weights=weights,
                 zone_ids=zone_ids, nodata=nodata, dims=dims, kw=kw)
    parts = _run(plan)
    n = plan["n"]
    ints = {"unique"} | ({"count"} if weights is None else set())
    out = {s: np.zeros((n, *plan["lead_shape"]), np.int64 if s in ints else np.float64)
           for s in stats}
    for lead, part in parts:  # one combined partial per block of the leading dims
        sizes = [sl.stop - sl.start for sl in lead]
        d = P.dense(part, n, int(np.prod(sizes, dtype=np.int64)), stats,
                    weights == "coverage")
        for s in stats:
            out[s][(slice(None), *lead)] = d[s].reshape(n, *sizes)
    return _table(out, plan, stats)


def zonal_crosstab(values, zones, *, classes=None, normalize: bool = False,
                   all_touched: bool = False, weights: str | None = None, zone_ids=None,
                   nodata=None, dims=None):
    """Count (or weigh) the pixels of each class of ``values`` in each zone.

    Parameters
    ----------
    values : xarray.DataArray
        Integer class raster ``(y, x)`` (e.g. land cover), optionally with more dims
        before them.
    zones : xarray.DataArray | geopandas.GeoDataFrame | GeoSeries | str | os.PathLike
        As for :func:`zonal_stats`.
    classes : array-like, optional
        Class values to report, in column order; default every class that occurs.
        Pixels of other classes still count in the ``normalize`` denominator.
    normalize : bool
        Fractions of each zone's valid pixels (or covered area) instead of counts.
    all_touched, weights, zone_ids, nodata, dims
        As for :func:`zonal_stats` (``weights="coverage"`` gives covered pixel areas).

    Returns
    -------
    pandas.DataFrame | xarray.DataArray
        For a ``(y, x)`` raster, a DataFrame with one row per zone (zone ids, or the
        polygons' GeoDataFrame index) and one column per class (columns named
        ``class``): int64 counts, float64 when weighted or normalized (NaN fractions
        for zones without valid pixels). With more dims, a DataArray over
        ``("zone", *other dims, "class")``. Join to polygons with ``gdf.join(table)``.

    Examples
    --------
    ``values.st.zonal_crosstab(zones)`` is the same call.

    >>> import numpy as np
    >>> from stengine.cube import make_raster
    >>> from stengine.ops.zonal import zonal_crosstab
    >>> lc = make_raster(np.array([[1, 1, 2], [2, 2, 3], [0, 3, 3]], "u1"), nodata=0)
    >>> z = make_raster(np.array([[5, 5, 5], [6, 6, 6], [6, 6, 6]], "i4"))
    >>> zonal_crosstab(lc, z)  # doctest: +NORMALIZE_WHITESPACE
    class  1  2  3
    zone
    5      2  1  0
    6      0  2  3
    >>> zonal_crosstab(lc, z, normalize=True).round(2)  # doctest: +NORMALIZE_WHITESPACE
    class     1     2    3
    zone
    5      0.67  0.33  0.0
    6      0.00  0.40  0.6
    """
    op = "zonal_crosstab"
    check_raster(values, dims, op=op, name="values")
    if values.dtype.kind not in "iub":
        raise TypeError(f"{op}: values must be an integer class raster; got dtype "
                        f"{values.dtype}. Reclassify first (stengine.ops.local_reclassify).")
    kw = dict(need_m2=False, need_minmax=False, need_hist=True)
    plan = _plan(values, zones, op=op, all_touched=all_touched, weights=weights,
                 zone_ids=zone_ids, nodata=nodata, dims=dims, kw=kw)
    parts = _run(plan)
    if classes is None:
        found = [np.unique(p["hist"][2]) for _, p in parts if p is not None]
        classes = np.unique(np.concatenate(found)) if found else np.zeros(0, values.dtype)
    classes = np.asarray(classes)
    n, lead_shape = plan["n"], plan["lead_shape"]
    counts = np.zeros((n, *lead_shape, classes.size))
    total = np.zeros((n, *lead_shape))
    for lead, part in parts:
        sizes = [sl.stop - sl.start for sl in lead]
        L = int(np.prod(sizes, dtype=np.int64))
        _, c = P.crosstab(part, n, L, classes)
        counts[(slice(None), *lead)] = c.reshape(n, *sizes, classes.size)
        total[(slice(None), *lead)] = P.dense(part, n, L, ("count",), True)["count"].reshape(
            n, *sizes)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = np.where(total[..., None] > 0, counts / total[..., None], np.nan)
    elif weights is None:
        counts = np.rint(counts).astype(np.int64)
    cls = pd.Index(classes, name="class")
    if not plan["lead_dims"]:
        return pd.DataFrame(counts, index=plan["index"], columns=cls)
    return xr.DataArray(counts, dims=("zone", *plan["lead_dims"], "class"),
                        coords={"zone": plan["index"].to_numpy(), **plan["lead_coords"],
                                "class": classes}, name="crosstab")


# --------------------------------------------------------------------------- helpers
def _parse_stats(stats, op):
    stats = (stats,) if isinstance(stats, str) else tuple(stats)
    if not stats:
        raise ValueError(f"{op}: stats is empty; choose from {STATS}")
    unknown = [s for s in stats if s not in STATS]
    if unknown:
        raise ValueError(f"{op}: unknown statistics {unknown or stats!r}; choose from {STATS}")
    return tuple(dict.fromkeys(stats))


def _value_nodata(values, nodata):
    nd = values.attrs.get("nodata") if nodata is None else nodata
    if nd is None or (isinstance(nd, float) and np.isnan(nd)):
        return 0, False
    dt = values.dtype
    if dt.kind in "iu" and not (np.iinfo(dt).min <= nd <= np.iinfo(dt).max and nd == int(nd)):
        return 0, False  # no pixel can hold it
    return nd, True


def _plan(values, zones, *, op, all_touched, weights, zone_ids, nodata, dims, kw):
    """Check the inputs; return what the run needs (arrays, chunk function, index)."""
    dims = check_raster(values, dims, op=op, name="values")
    check_dtype(values, "iubf", op=op, name="values")
    if weights not in (None, "coverage"):
        raise ValueError(f"{op}: weights must be None or 'coverage'; got {weights!r}")
    if weights == "coverage" and all_touched:
        raise ValueError(f"{op}: pass either all_touched=True or weights='coverage', not both "
                         "(coverage already weighs every touched pixel)")
    values = values.transpose(..., *dims)
    lead_dims = values.dims[:-2]
    nd, has_nd = _value_nodata(values, nodata)
    kw = dict(kw, nodata=nd, has_nodata=has_nd)
    plan = {"x": values.data, "lead_dims": lead_dims, "lead_shape": values.shape[:-2],
            "lead_coords": {k: v.variable for k, v in values.coords.items()
                            if v.dims and set(v.dims) <= set(lead_dims)}}
    if V.is_vector(zones):
        if zone_ids is not None:
            raise ValueError(f"{op}: zone_ids= is for zone rasters; polygon results follow "
                             "the GeoDataFrame's index (set it with gdf.set_index)")
        gdf = V.read_zones(zones, op=op)
        grid = raster_grid(values, dims=dims)
        geom = V.flatten(V.to_raster_crs(gdf, grid.crs, op=op, grid=grid), grid.transform)
        chunks = values.chunks[-2:] if values.chunks else ((grid.shape[0],), (grid.shape[1],))
        by_block = V.chunk_polygons(geom, *chunks)
        rb = np.r_[0, np.cumsum(chunks[0])]
        cb = np.r_[0, np.cumsum(chunks[1])]
        table = {(int(rb[i]), int(cb[j])): p for (i, j), p in by_block.items()}
        mode = COVERAGE if weights == "coverage" else ALL_TOUCHED if all_touched else CENTRE

        def args(rows, cols):
            p = table.get((rows.start, cols.start))
            return None if p is None else (p, mode, kw)

        plan.update(fn=_polygon_chunk, zones=None, shared=tuple(geom), args=args, n=len(gdf),
                    gdf=gdf, index=gdf.index)
        return plan
    if not isinstance(zones, xr.DataArray):
        raise TypeError(f"{op}: zones must be an integer zone raster (xarray.DataArray) or "
                        f"polygons (GeoDataFrame, GeoSeries or a path); got "
                        f"{type(zones).__name__}")
    if weights is not None or all_touched:
        raise ValueError(f"{op}: all_touched and weights apply to polygon zones; a zone "
                         "raster assigns each pixel to exactly one zone")
    check_raster(zones, dims, op=op, name="zones")
    if zones.ndim != 2:
        raise DimensionError(f"{op}: zones must be a 2-D (y, x) raster; got dims "
                             f"{tuple(zones.dims)}")
    check_dtype(zones, "iub", op=op, name="zones", what="integer (zone id)")
    check_same_grid(op=op, dims=dims, values=values, zones=zones)
    zones = zones.transpose(*dims)
    znd = zones.attrs.get("nodata")
    has_znd = znd is not None and not (isinstance(znd, float) and np.isnan(znd))
    if zone_ids is None:
        if hasattr(zones.data, "dask"):
            raise ChunkError(f"{op} on dask zones needs zone_ids= (finding them would load all "
                             "zones). Pass zone_ids=np.unique(zones.values) if intended.")
        ids = np.unique(np.asarray(zones.data.get() if hasattr(zones.data, "get")
                                   else zones.data))
        if has_znd:
            ids = ids[ids != znd]
    else:
        ids = np.asarray(zone_ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{op}: zone_ids must be integers; got {ids.dtype}")
    ids = ids.astype(np.int64)
    uniq = np.unique(ids)
    if uniq.size != ids.size:
        raise ValueError(f"{op}: zone_ids has duplicates")
    lut, lo = np.zeros(0, np.int64), 0
    if uniq.size and uniq[-1] - uniq[0] < _LUT_MAX:
        lo = int(uniq[0])
        lut = np.full(int(uniq[-1] - uniq[0]) + 1, -1, np.int64)
        lut[uniq - lo] = np.arange(uniq.size)
    # results follow zone_ids' order: map sorted positions back
    plan.update(fn=_raster_chunk, zones=zones.data, shared=(uniq, lut, lo),
                args=lambda rows, cols: (0 if not has_znd else znd, has_znd, kw),
                n=uniq.size, index=pd.Index(ids, name="zone"),
                order=np.searchsorted(uniq, ids))
    return plan


def _polygon_chunk(block, zblock, geom, rows, cols, polys, mode, kw):
    si, sw = V.spans(V.Geometry(*geom), polys, rows, cols, mode)
    if si.shape[0] == 0:
        return None
    part = span_k(block, si, sw, polys.size, **kw)
    part["idx"] = polys
    return P.trim(P.globalize(part))


def _raster_chunk(block, zblock, shared, rows, cols, znd, has_znd, kw):
    ids, lut, lo = shared
    part = zone_k(block, zblock, ids, lut, lo, znd, has_znd, **kw)
    return P.trim(P.globalize(part))


def _run(plan):
    """Per-chunk partials through the tree; one dask compute for all lead blocks."""
    import dask

    parts = lift_zonal(plan["fn"], plan["x"], zones=plan["zones"], chunk_args=plan["args"],
                       combine=P.combine, shared=plan["shared"])
    lazy = [p for _, p in parts if hasattr(p, "dask")]
    if lazy:
        done = iter(dask.compute(*lazy))
        parts = [(lead, next(done) if hasattr(p, "dask") else p) for lead, p in parts]
    if "order" in plan:  # zone rasters: sorted positions → zone_ids order
        parts = [(lead, _reorder(p, plan["order"])) for lead, p in parts]
    return parts


def _reorder(part, order):
    if part is None:
        return None
    inv = np.empty(order.size, np.int64)
    inv[order] = np.arange(order.size)
    out = dict(part)
    out["idx"] = inv[part["idx"]]
    if "hist" in part:
        z, t, v, c = part["hist"]
        z = inv[z]
        srt = np.lexsort((v, t, z))
        out["hist"] = (z[srt], t[srt], v[srt], c[srt])
    return out


def _table(out, plan, stats):
    if not plan["lead_dims"]:
        df = pd.DataFrame({s: out[s] for s in stats}, index=plan["index"])
        if "gdf" not in plan:
            return df
        gdf = plan["gdf"]
        clash = [s for s in stats if s in gdf.columns]
        if clash:
            raise ValueError(f"zonal_stats: zones already has columns {clash}; rename them "
                             "(the statistics are added as columns of that name)")
        res = gdf.copy()
        for s in stats:
            res[s] = df[s].to_numpy()
        return res
    coords = {"zone": plan["index"].to_numpy(), **plan["lead_coords"]}
    if "gdf" in plan:
        gdf = plan["gdf"]
        for c in gdf.columns:
            if c != gdf.geometry.name and c not in stats and c not in coords:
                coords[c] = ("zone", gdf[c].to_numpy())
    return xr.Dataset({s: (("zone", *plan["lead_dims"]), out[s]) for s in stats},
                      coords=coords)

"""``Collection.load``: items → a lazy ``(time, band, y, x)`` cube, warped per chunk.

* Grid: ``crs`` (default: the first raster's), ``resolution`` (default: the first
  raster's pixel size, or GDAL's suggestion when the CRS differs); the extent is ``bbox``
  (lon/lat) or the union of the footprints, transformed to ``crs`` and snapped outwards to
  whole pixels of ``resolution`` from the CRS origin, north up (y descending).
* Time: with ``groupby="solar_day"`` one step per local solar date (UTC + centroid
  lon / 15 h), labelled with that date's midnight; ``None``: one step per distinct UTC
  datetime. Within a step the items are mosaicked in collection order: the first valid
  (non-NaN, non-nodata) pixel wins, so ``sort("eo:cloud_cover")`` first to prefer clear
  scenes.
* Graph: one task per (time step, spatial chunk), holding only the items whose footprint
  meets the chunk (a shapely STRtree query per chunk), so the graph grows with the chunks
  touched, not with the items. Each task warps its items' bands with
  ``rasterio.warp.reproject`` from the open file into the chunk's window (GDAL reads only
  the source blocks it needs). Output is float (NaN = no data).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import CollectionError


def _src_info(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.crs, abs(src.transform.a), abs(src.transform.e), src.bounds


def target_grid(items, *, crs, resolution, bbox):
    """The output :class:`~stengine.grid.Grid` (see module docs)."""
    from affine import Affine
    from rasterio.warp import calculate_default_transform, transform_bounds
    from shapely import union_all
    from shapely.geometry import box

    from .grid import Grid, parse_crs

    first = next(iter(items[0].assets.values()))
    src_crs, rx, ry, src_bounds = _src_info(first)
    out_crs = parse_crs(crs if crs is not None else src_crs)
    if resolution is None:
        if out_crs == parse_crs(src_crs):
            resolution = rx
        else:
            t, _, _ = calculate_default_transform(src_crs, out_crs.to_wkt(), 1000, 1000,
                                                  *src_bounds)
            resolution = abs(t.a)
    res = float(resolution)
    if not res > 0:
        raise ValueError(f"load: resolution must be > 0 (in CRS units); got {resolution}")
    footprint = union_all([it.geometry for it in items])
    if bbox is not None:
        if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
            raise ValueError(f"load: bbox must be (west, south, east, north) in degrees; "
                             f"got {bbox}")
        if not box(*bbox).intersects(footprint):
            raise CollectionError(f"load: bbox {tuple(bbox)} is outside every item's "
                                  f"footprint (the items cover {footprint.bounds})")
        area = tuple(float(v) for v in bbox)
    else:
        area = footprint.bounds
    w, s, e, n = transform_bounds("EPSG:4326", out_crs.to_wkt(), *area, densify_pts=21)
    x0, x1 = math.floor(w / res) * res, math.ceil(e / res) * res
    y0, y1 = math.floor(s / res) * res, math.ceil(n / res) * res
    shape = (max(1, round((y1 - y0) / res)), max(1, round((x1 - x0) / res)))
    return Grid(out_crs, Affine(res, 0.0, x0, 0.0, -res, y1), shape)


def _steps(items, groupby):
    """[(label datetime64[ns], [item index, ...])] in time order; items keep collection order."""
    groups: dict = {}
    for k, it in enumerate(items):
        if groupby == "solar_day":
            key = it.solar_day.astype("datetime64[ns]")
        elif groupby is None:
            key = np.datetime64(it.datetime.replace(tzinfo=None), "ns")
        else:
            raise ValueError(f"load: groupby must be 'solar_day' or None; got {groupby!r}")
        groups.setdefault(key, []).append(k)
    return sorted(groups.items())


def read_chunk(sources, transform, shape, crs, nbands, resampling, nodata, dtype):
    """One output block ``(1, nbands, h, w)``: warp each item's bands, first valid wins.

    ``sources``: per item (in mosaic order) a tuple of paths per band (None: band absent).
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.warp import Resampling, reproject

    out = np.full((1, nbands, *shape), np.nan, dtype)
    tmp = np.empty(shape, dtype)
    for paths in sources:
        for b, path in enumerate(paths):
            if path is None:
                continue
            hole = np.isnan(out[0, b])
            if not hole.any():
                continue  # earlier items filled this band of the chunk
            with rasterio.open(path) as src:
                tmp.fill(np.nan)
                with warnings.catch_warnings():  # the bare NumPy destination has no transform
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    reproject(rasterio.band(src, 1), tmp, dst_transform=transform,
                              dst_crs=crs,
                              src_nodata=src.nodata if nodata is None else nodata,
                              dst_nodata=np.nan, resampling=Resampling[resampling])
            out[0, b][hole] = tmp[hole]
    return out


def load(col, bands, *, crs, resolution, bbox, chunks, groupby, resampling, nodata, dtype):
    import dask.array as dsa
    import xarray as xr
    from affine import Affine
    from dask.array.core import normalize_chunks
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from rasterio.enums import Resampling
    from rasterio.warp import transform_bounds
    from shapely import STRtree, box

    from .cube import set_grid

    if len(col) == 0:
        raise CollectionError("load: the collection is empty (did the filters drop every "
                              "item?)")
    have = col.bands
    bands = list(have) if bands is None else [bands] if isinstance(bands, str) else list(bands)
    unknown = [b for b in bands if b not in have]
    if unknown:
        raise CollectionError(f"load: unknown band(s) {unknown}; the items have {have}")
    if resampling not in Resampling.__members__:
        raise ValueError(f"load: resampling must be a rasterio Resampling name "
                         f"({', '.join(Resampling.__members__)}); got {resampling!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"load: dtype must be a float dtype (NaN marks no data); got {dtype}")
    items = [it for it in col if any(b in it.assets for b in bands)]
    if not items:
        raise CollectionError(f"load: no item has any of the bands {bands}")
    grid = target_grid(items, crs=crs, resolution=resolution, bbox=bbox)
    steps = _steps(items, groupby)
    ch = chunks if isinstance(chunks, tuple) else (chunks, chunks)
    ychunks, xchunks = normalize_chunks(ch, grid.shape, dtype=dtype)
    tree = STRtree([it.geometry for it in items])
    step_of = {k: t for t, (_, ks) in enumerate(steps) for k in ks}
    srcs = [tuple(it.assets.get(b) for b in bands) for it in items]
    name = "collection-load-" + tokenize(
        [(it.id, srcs[k], str(it.datetime)) for k, it in enumerate(items)], grid.transform,
        grid.shape, str(grid.crs), ch, groupby, resampling, nodata, str(dtype))
    dsk = {}
    t = grid.transform
    wkt = grid.crs.to_wkt()
    y0 = 0
    for iy, h in enumerate(ychunks):
        x0 = 0
        for ix, w in enumerate(xchunks):
            ct = t @ Affine.translation(x0, y0)
            bounds = (ct.c, ct.f + h * ct.e, ct.c + w * ct.a, ct.f)
            lonlat = transform_bounds(wkt, "EPSG:4326", *bounds, densify_pts=5)
            hits = sorted(int(k) for k in tree.query(box(*lonlat)))
            per_step: list[list[int]] = [[] for _ in steps]
            for k in hits:  # sorted: collection order within a step
                per_step[step_of[k]].append(k)
            for ti, ks in enumerate(per_step):
                dsk[(name, ti, 0, iy, ix)] = (
                    read_chunk, tuple(srcs[k] for k in ks), ct, (h, w), wkt,
                    len(bands), resampling, nodata, dtype)
            x0 += w
        y0 += h
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    data = dsa.Array(graph, name, chunks=((1,) * len(steps), (len(bands),), ychunks, xchunks),
                     dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype))
    times = np.array([s for s, _ in steps], "datetime64[ns]")
    da = xr.DataArray(data, dims=("time", "band", "y", "x"),
                      coords={"time": times, "band": bands},
                      attrs={"groupby": str(groupby), "resampling": resampling,
                             "mosaic": "first valid pixel in collection order"})
    return set_grid(da, grid)

"""Demo step: an image collection of generated multi-date, multi-band GeoTIFFs (UTM 33N,
synthetic clouds recorded as ``eo:cloud_cover``) → filters (point, date, cloud cover) →
a lazy cube → NDVI → max-NDVI quality mosaic and a median composite, with a map page and
a short video when :mod:`stengine.viz` has ``export_html`` / ``export_video``, else
PNG quicklooks."""

from __future__ import annotations

import time

import numpy as np

from .. import ops, viz
from .._collection_synth import write_scenes
from ..compute import compute


def run(ctx) -> list[tuple[str, str]]:
    rows = []
    t0 = time.perf_counter()
    dates, size = (4, 96) if ctx.quick else (8, 192)
    col = write_scenes(ctx.out / "collection_scenes", dates=dates, tiles=(2, 3), size=size,
                       overlap=16, seed=7)
    rows.append(("scenes (GeoTIFF, int16, 10 m)",
                 f"{len(col)} items × {len(col.bands)} bands → {ctx.out / 'collection_scenes'} "
                 f"({time.perf_counter() - t0:.1f} s)"))
    lon, lat = col[0].geometry.centroid.coords[0]
    picked = (col.filter_point(lon, lat).filter_date("2021-06-01", "2021-12-31")
              .filter("eo:cloud_cover", "<", 40).sort("eo:cloud_cover"))
    rows.append(("filters", f"point ({lon:.3f}, {lat:.3f}) → {len(col.filter_point(lon, lat))}"
                 f", + date & cloud < 40 % → {len(picked)} items"))
    # the whole area for the mosaic, clear-first so the first valid pixel is the clearest
    cube = col.filter("eo:cloud_cover", "<", 40).sort("eo:cloud_cover").load(
        ["red", "nir"], chunks=128)
    red, nir = cube.sel(band="red", drop=True), cube.sel(band="nir", drop=True)
    ndvi = ops.normalized_difference(nir, red).rename("ndvi")
    best = ops.quality_mosaic(cube, ndvi)
    median = ops.composite(cube, "median")
    best_ndvi = ops.composite(ndvi, "max")
    t1 = time.perf_counter()
    best, median, best_ndvi = compute(best, median, best_ndvi, progress=False)
    rows.append(("cube", f"{dict(cube.sizes)}, {cube.data.npartitions} tasks to load"))
    filled = float(np.isfinite(best_ndvi.values).mean())
    rows.append(("max-NDVI mosaic", f"{filled:.1%} pixels filled, mean NDVI "
                 f"{float(np.nanmean(best_ndvi.values)):.3f} ({time.perf_counter() - t1:.1f} s)"))
    rows.append(("median composite red (×10⁴)", f"{float(np.nanmean(median.sel(band='red'))):.0f}"))
    export_html, export_video = _exporters()
    if export_html is not None and export_video is not None:
        try:
            w, s, e, n = (float(v) for v in _bounds(col))
            page = export_html([best_ndvi], (w, s, e, n), (12, 13),
                               ctx.out / "collection_map")
            video = export_video(ndvi, ctx.out / "collection_ndvi.mp4", fps=2)
            rows.append(("map page, video", f"{page}, {video}"))
        except Exception as exc:  # noqa: BLE001 - the viz API is another part's; report it
            rows.append(("map page, video", f"export failed: {type(exc).__name__}: {exc}"))
    else:
        rows.append(("map page, video", "stengine.viz.export_html/export_video not available:"
                     " PNG quicklooks instead"))
    p = viz.quicklook(best_ndvi, ctx.out / "collection_max_ndvi.png", cmap="RdYlGn",
                      vmin=0, vmax=0.8, title="max-NDVI quality mosaic (synthetic scenes)")
    rows.append(("quicklook", p.name))
    return rows


def _exporters():
    """``export_html``, ``export_video`` from stengine.viz (or its export module), or Nones."""
    try:
        from ..viz import export as ex
    except ImportError:
        ex = None
    pick = [getattr(viz, n, None) or getattr(ex, n, None) for n in ("export_html", "export_video")]
    return pick[0], pick[1]


def _bounds(col):
    from shapely import union_all

    return union_all([it.geometry for it in col]).bounds

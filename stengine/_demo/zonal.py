"""Demo step: Köppen-Geiger climate-class fractions per country (zonal crosstab).

The real 30″ global class raster (43200×21600, Zarr) against the 177 Natural Earth
country polygons: each chunk rasterizes only the countries that reach it, per-class
pixel counts per country are tree-combined, one pass. ``ctx.quick`` runs Europe and
Africa only.
"""

from __future__ import annotations

import time

from .. import datasets
from ..datasets import KOPPEN_CLASSES
from ..ops.zonal import zonal_crosstab

QUICK = {"x": slice(-20.0, 55.0), "y": slice(72.0, -36.0)}  # Europe and Africa


def run(ctx):
    kg = getattr(ctx, "koppen", None)
    kg = kg if kg is not None else datasets.koppen_geiger()
    countries = datasets.naturalearth_countries().set_index("name")
    if getattr(ctx, "quick", False):
        kg = kg.sel(QUICK)
        countries = countries.cx[QUICK["x"].start:QUICK["x"].stop,
                                 QUICK["y"].stop:QUICK["y"].start]
    t0 = time.perf_counter()
    counts = zonal_crosstab(kg, countries)  # pixel counts per (country, class), one pass
    seconds = time.perf_counter() - t0
    counts = counts.rename(columns={k: v for k, v in KOPPEN_CLASSES.items()})
    total = counts.sum(axis=1)
    table = counts.div(total.where(total > 0), axis=0).round(3)
    table.insert(0, "pixels", total)
    table.insert(1, "dominant", counts.idxmax(axis=1).where(total > 0))
    table = table.sort_values("pixels", ascending=False)
    out = ctx.out / "zonal_koppen_by_country.csv"
    table.to_csv(out)
    print("Köppen-Geiger class fractions per country (largest first):")
    print(table.head(10).to_string())
    top = table.index[0]
    return [
        ("raster", f"{kg.shape[0]}×{kg.shape[1]} px, {getattr(kg.data, 'npartitions', 1)} chunks"),
        ("zones", f"{len(countries)} Natural Earth countries (polygons)"),
        ("crosstab time", f"{seconds:.1f} s ({kg.size / seconds / 1e6:.0f} M px/s)"),
        (f"largest: {top}", ", ".join(f"{c} {table.loc[top, c]:.0%}"
                                      for c in KOPPEN_CLASSES.values()
                                      if table.loc[top, c] > 0.005)),
        ("table", str(out)),
    ]

"""Demo step: an H3 land stencil at resolution 5, Köppen-Geiger class fractions per land
cell, the dominant class smoothed over hexagon rings, a cell-cube Zarr store and a PNG map.

It runs over Europe and Africa (116 M of the raster's 933 M px; Europe alone with
``quick``): every climate class occurs there, and the same code runs on the globe
(``run(ctx, region=None)``) in about eight times as long."""

from __future__ import annotations

import time

import numpy as np

from ..cube.cells import chunk_by_parent, open_cells, select_parents, to_zarr_cells
from ..datasets import KOPPEN_CLASSES, koppen_geiger, land_mask
from ..ops.cells import cell_focal, cell_stencil, to_cells
from ..viz import cell_map

LEVEL = 5
EUROPE = (-12.0, 34.0, 42.0, 72.0)  # west, south, east, north
EUROPE_AFRICA = (-20.0, -36.0, 55.0, 72.0)
GLOBE = (-180.0, -60.0, 180.0, 84.0)  # the map's extent when region is None


def run(ctx, region="default") -> list[tuple[str, str]]:
    rows = []
    kg = getattr(ctx, "koppen", None)
    if kg is None:
        kg = koppen_geiger(progress=False)
    land = land_mask()
    if region == "default":
        region = EUROPE if ctx.quick else EUROPE_AFRICA
    if region is not None:
        w, s, e, n = region
        land = land.sel(x=slice(w, e), y=slice(n, s))
        kg = kg.sel(x=slice(w, e), y=slice(n, s))
    where = {EUROPE: "Europe", EUROPE_AFRICA: "Europe and Africa", None: "global"}.get(
        region, f"{region}")
    # 1. stencil: cells whose centre is on land (30″ mask from the global-land-mask wheel)
    t0 = time.perf_counter()
    stencil = cell_stencil(land, "h3", level=LEVEL)
    rows.append((f"land stencil ({where}, H3 res {LEVEL})",
                 f"{stencil.sizes['cells']:,} cells with centre on land "
                 f"({time.perf_counter() - t0:.1f} s)"))
    # 2. class fractions of the raster's window (933 M px for the globe) per land cell
    t0 = time.perf_counter()
    classes = sorted(KOPPEN_CLASSES)
    frac = to_cells(kg, "h3", level=LEVEL, stat="fractions", classes=classes, cells=stencil,
                    chunk_level=LEVEL - 4)
    frac.name = "koppen_fractions"
    npx = kg.shape[0] * kg.shape[1]
    dt = time.perf_counter() - t0
    rows.append(("Köppen-Geiger → cell fractions",
                 f"{npx / 1e6:,.0f} M px → {frac.sizes['cells']:,} cells × {len(classes)} "
                 f"classes ({dt:.1f} s, {npx / dt / 1e6:.0f} M px/s)"))
    v = np.asarray(frac.values)
    covered = np.isfinite(v).all(axis=1)
    dominant = np.where(covered, np.asarray(classes)[np.argmax(np.nan_to_num(v, nan=-1),
                                                               axis=1)], np.nan)
    share = {KOPPEN_CLASSES[c]: float(np.mean(dominant[covered] == c)) for c in classes}
    rows.append(("dominant class share of land cells", ", ".join(
        f"{k.split()[0]} {100 * x:.0f}%" for k, x in share.items())))
    # 3. hexagon neighbourhood: majority of the dominant class over 1-rings
    t0 = time.perf_counter()
    dom = frac.isel({"class": 0}, drop=True).copy(data=dominant)
    dom = chunk_by_parent(dom, LEVEL - 4)  # res-1 parents: ~2,000 cells a chunk
    smooth = cell_focal(dom, 1, stat="majority")
    changed = int(np.nansum(np.asarray(smooth.values) != dominant) - np.isnan(dominant).sum())
    rows.append(("1-ring majority (halo across parent chunks)",
                 f"{changed:,} cells change class ({time.perf_counter() - t0:.1f} s)"))
    # 4. the cell cube in Zarr, chunked by parent; read one parent back
    store = ctx.out / "koppen_h3_fractions.zarr"
    to_zarr_cells(frac, store)
    back = open_cells(store)
    first = select_parents(back, _parents(back)[:1])
    rows.append(("cell cube store", f"{store.name}: {len(back.chunks[0])} parent chunks "
                 f"(res {back.attrs['chunk_level']}); one parent = "
                 f"{first.sizes['cells']} cells, {first.data.npartitions} chunk read"))
    # 5. PNG map of the dominant class
    png = cell_map(dom, ctx.out / "koppen_h3_dominant.png", categorical=classes,
                   labels=KOPPEN_CLASSES, cmap="tab10",
                   bbox=region or GLOBE, width=900 if region == EUROPE else 1400,
                   title=f"Dominant Köppen-Geiger class per H3 res-{LEVEL} land cell")
    rows.append(("map", png.name))
    return rows


def _parents(cube):
    from ..cube.cells import parent_ids

    return parent_ids(cube.cell_ids.values, "h3", LEVEL, int(cube.attrs["chunk_level"]))

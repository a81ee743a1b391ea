"""Demo step: local map algebra on the real Köppen-Geiger raster and a generated
multi-band raster on the same grid (reclassify, pixel counts, band index, raster add,
a user function), written to Zarr with PNG quicklooks."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import ops
from ..compute import compute
from ..datasets import KOPPEN_CLASSES
from ..io import to_zarr
from ..viz import quicklook

BANDS = ("blue", "red", "nir", "swir")
# typical surface reflectance per Köppen class (ocean/nodata, A, B, C, D, E), per band
_REFL = np.array([[0.04, 0.03, 0.02, 0.01],
                  [0.03, 0.04, 0.35, 0.15],
                  [0.12, 0.22, 0.28, 0.35],
                  [0.04, 0.06, 0.30, 0.18],
                  [0.04, 0.05, 0.27, 0.16],
                  [0.60, 0.58, 0.55, 0.10]], "f4")


def _bands_block(kg, block_info=None):
    """Synthetic reflectance: a class mean plus deterministic texture (a hash of row/col)."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"][-2:]
    rows = np.arange(r0, r1, dtype=np.uint64)[:, None]
    cols = np.arange(c0, c1, dtype=np.uint64)[None, :]
    h = (rows * np.uint64(2654435761) ^ cols * np.uint64(40503)) % np.uint64(1000)
    tex = (h.astype("f4") / 1000 - 0.5) * 0.06
    base = _REFL[kg.astype(np.intp)]  # (y, x, band)
    return np.clip(np.moveaxis(base, -1, 0) + tex, 0, 1).astype("f4")


def burn_scar_rule(red, nir, swir, *, nbr_max):
    """A JEODPP-style user function: low NBR and low NDVI -> burn-scar candidate (1)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 over water is NaN: no burn
        nbr = (nir - swir) / (nir + swir)
        ndvi = (nir - red) / (nir + red)
    return ((nbr < nbr_max) & (ndvi < 0.35) & (red > 0.05)).astype("u1")


def run(ctx):
    kg = ctx.koppen
    rows = []
    # 1. exact pixel counts per class over the whole globe (per-chunk counts, tree sum)
    classes = sorted(KOPPEN_CLASSES)
    hist = ops.local_histogram(kg, classes=classes)
    # 2. reclassify the five main classes into three thermal groups
    groups = ops.local_reclassify(kg, {1: 1, 2: 2, 3: 2, 4: 3, 5: 3})
    ghist = ops.local_histogram(groups, classes=[1, 2, 3])
    hist, ghist = compute(hist, ghist)
    land = int(hist.sum())
    rows.append(("land pixels (classes 1–5)", f"{land:,}"))
    rows.append(("class shares", ", ".join(
        f"{KOPPEN_CLASSES[c].split()[0]} {100 * int(hist.sel({'class': c})) / land:.1f}%"
        for c in classes)))
    rows.append(("reclassified (hot / mild+dry / cold)",
                 " / ".join(f"{int(v):,}" for v in ghist.values)))

    # 3. a generated 4-band raster over Europe on the same grid, and a band index
    lat0, lat1, lon0, lon1 = (45, 55, 0, 20) if ctx.quick else (35, 70, -10, 40)
    region = kg.sel(y=slice(lat1, lat0), x=slice(lon0, lon1))
    kg_r = region.data
    data = dsa.map_blocks(_bands_block, kg_r, new_axis=0,
                          chunks=((len(BANDS),), *kg_r.chunks), dtype="f4",
                          meta=np.empty((0, 0, 0), "f4"))
    bands = xr.DataArray(data, dims=("band", "y", "x"),
                         coords={**{k: v for k, v in region.coords.items()}, "band": list(BANDS)},
                         name="reflectance", attrs={"units": "1"})
    red, nir, swir = (bands.sel(band=b, drop=True) for b in ("red", "nir", "swir"))
    ndvi = ops.normalized_difference(nir, red).rename("ndvi")
    # 4. raster add: Köppen class + 10 × NDVI class, one code per (climate, greenness)
    ndvi_class = ops.local_reclassify(ndvi, [(-1.0, 0.2, 0), (0.2, 0.5, 10), (0.5, 1.01, 20)],
                                      default=0, dtype="u1").rename("ndvi_class")
    combo = ops.local_add(region, ndvi_class).rename("climate_greenness")
    # 5. a user function, checked on a sample before it runs at scale
    burn = ops.local_apply(burn_scar_rule, red, nir, swir, nbr_max=0.1, name="burn_candidate")
    ds = xr.Dataset({"ndvi": ndvi, "climate_greenness": combo, "burn_candidate": burn})
    store = to_zarr(ds, ctx.out / "local_ops.zarr", progress=True)
    combo_counts = ops.local_histogram(combo, classes=[c + 10 * k for k in range(3)
                                                       for c in range(1, 6)])
    burn_count = ops.local_count(burn, 1)
    combo_counts, burn_count = compute(combo_counts, burn_count, progress=False)
    top = combo_counts.sortby(combo_counts, ascending=False)[:3]
    rows.append((f"Europe subset {region.shape[0]}×{region.shape[1]} px",
                 "NDVI, climate×greenness code, burn rule → " + store))
    rows.append(("top climate×greenness codes", ", ".join(
        f"{int(c)}: {int(v):,}" for c, v in zip(top["class"].values, top.values, strict=True))))
    rows.append(("burn-rule candidates (synthetic)", f"{int(burn_count):,} px"))
    # 6. quicklooks
    p1 = quicklook(kg, ctx.out / "koppen_geiger.png", categorical=classes,
                   labels=KOPPEN_CLASSES, cmap="tab10", title="Köppen-Geiger main classes")
    p2 = quicklook(ndvi, ctx.out / "ndvi_europe.png", cmap="RdYlGn", vmin=-0.2, vmax=0.9,
                   title="NDVI (generated bands)")
    rows.append(("quicklooks", f"{p1.name}, {p2.name}"))
    return rows

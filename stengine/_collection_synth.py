"""Synthetic multi-date, multi-band scenes as real GeoTIFFs (tests, demo, benchmark).

Tiles of ``size`` pixels at 10 m in UTM 33N (EPSG:32633) on a regular lattice with a
``overlap``-pixel overlap, one GeoTIFF per (date, tile, band), int16 reflectance × 10⁴
with nodata -9999 where synthetic clouds are; each scene's cloud fraction is its
``eo:cloud_cover`` property (percent). ``red`` and ``nir`` follow a smooth vegetation
field that grows over the dates, so a max-NDVI mosaic prefers late, clear pixels.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

ORIGIN = (500000.0, 5000000.0)  # UTM 33N, about 15 E, 45 N
RES = 10.0
NODATA = -9999


def scene_values(rng, size, day, band, x0, y0):
    """int16 values of one band: a vegetation field plus noise (x0, y0: pixel offsets)."""
    yy, xx = np.mgrid[y0:y0 + size, x0:x0 + size].astype("f8")
    veg = 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    veg = np.clip(veg * (0.4 + 0.15 * day), 0, 1)
    base = {"red": 0.25 - 0.18 * veg, "nir": 0.2 + 0.5 * veg, "green": 0.1 + 0.05 * veg,
            "blue": 0.08 + 0.02 * veg}[band]
    return np.clip((base + rng.normal(0, 0.01, base.shape)) * 1e4, 0, 1e4).astype("i2")


def write_scenes(folder, *, dates=4, tiles=(1, 2), size=64, overlap=8,
                 bands=("red", "nir"), seed=0, start="2021-06-01", cloud_max=0.6):
    """Write the scenes under ``folder``; return a :class:`~stengine.collection.Collection`.

    File names are ``<date>_t<row><col>_<band>.tif``; items are (date, tile); datetimes are
    10:00 UTC plus a minute per tile, so tiles of one date share a solar day.
    """
    import rasterio
    from affine import Affine

    from .collection import Collection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = _dt.datetime.fromisoformat(start)
    clouds = {}
    paths = []
    step = size - overlap
    for d in range(dates):
        day = (t0 + _dt.timedelta(days=5 * d)).date().isoformat()
        for r in range(tiles[0]):
            for c in range(tiles[1]):
                x0, y0 = c * step, r * step
                frac = rng.uniform(0, cloud_max)
                cy, cx = rng.uniform(0, size, 2)
                yy, xx = np.mgrid[:size, :size]
                cloud = (yy - cy) ** 2 + (xx - cx) ** 2 < frac * size * size / np.pi
                stem = f"{day}_t{r}{c}"
                clouds[stem] = round(100.0 * cloud.mean(), 2)
                tr = Affine(RES, 0, ORIGIN[0] + x0 * RES, 0, -RES, ORIGIN[1] - y0 * RES)
                for b in bands:
                    v = scene_values(rng, size, d, b, x0, y0)
                    v[cloud] = NODATA
                    p = folder / f"{stem}_{b}.tif"
                    with rasterio.open(p, "w", driver="GTiff", width=size, height=size,
                                       count=1, dtype="int16", crs="EPSG:32633", transform=tr,
                                       nodata=NODATA) as dst:
                        dst.write(v, 1)
                    paths.append(p)
    minutes = {f"t{r}{c}": r * tiles[1] + c for r in range(tiles[0]) for c in range(tiles[1])}

    def when(p):
        day, tile, _ = Path(p).stem.split("_")
        return f"{day}T10:{minutes[tile]:02d}:00Z"

    return Collection.from_files(
        paths, datetime=when, band=lambda p: Path(p).stem.split("_")[2],
        item_id=lambda p: "_".join(Path(p).stem.split("_")[:2]),
        properties=lambda p: {"eo:cloud_cover": clouds["_".join(Path(p).stem.split("_")[:2])],
                              "platform": "synthetic"})

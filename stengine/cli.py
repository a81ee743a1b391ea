"""The ``stengine`` command: ``demo`` (the main job), ``warm``, ``info`` and ``serve``."""

from __future__ import annotations

import argparse
import sys


def _info() -> int:
    import importlib.metadata as md
    import os

    from . import datasets
    from ._backends import gpu_available

    print(f"stengine {md.version('stengine')} on Python {sys.version.split()[0]}")
    for pkg in ("numpy", "numba", "dask", "distributed", "xarray", "zarr", "rasterio",
                "geopandas", "shapely", "pyproj", "h3", "cupy", "dask-cuda", "torch"):
        try:
            print(f"  {pkg:<12} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"  {pkg:<12} -")
    print(f"cores: {len(os.sched_getaffinity(0))}; GPU: {'yes' if gpu_available() else 'no'}")
    print(f"data cache: {datasets.cache_dir()}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="stengine", description="Dask-based spatiotemporal engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the end-to-end demo on an embedded local cluster")
    d.add_argument("--out", default="stengine-demo", help="output folder (default %(default)s)")
    d.add_argument("--quick", action="store_true", help="smaller regions, for a fast check")
    d.add_argument("--steps", help="comma-separated subset of the steps (default all): "
                   "local,focal,zonal,cells,htmst,learn,vectorgeo,collection")
    d.add_argument("--scheduler", help="tcp://host:port of an existing scheduler")
    sub.add_parser("info", help="versions, devices and the data cache")
    sub.add_parser("warm", help="compile the numba kernels into their on-disk cache "
                   "(once per checkout; `demo` does it too)")
    sub.add_parser("serve", add_help=False,
                   help="the web service: sources, models, jobs, tiles (stengine serve --help)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        from .serve.cli import main as serve

        return serve(argv[1:])
    a = p.parse_args(argv)
    if a.cmd == "info":
        return _info()
    if a.cmd == "warm":
        from ._warm import main as warm

        return warm()
    from ._demo import main as demo

    return demo(a.out, quick=a.quick, steps=a.steps.split(",") if a.steps else None,
                address=a.scheduler)


if __name__ == "__main__":
    sys.exit(main())

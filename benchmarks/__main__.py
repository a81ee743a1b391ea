"""``python -m benchmarks``: run the side-by-side benchmarks and record them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from ._runner import REGISTRY, render, run, save

FAMILIES = ["local", "focal", "zonal", "index", "cells", "learn", "sources", "serve",
            "vectorgeo", "collection", "tiles", "overhead"]


def load(families):
    for f in families:
        try:
            importlib.import_module(f"benchmarks.{f}")
        except ModuleNotFoundError as e:
            if e.name != f"benchmarks.{f}":
                raise


def _only(bench, params):
    """``bench`` restricted to the ``NAME=VALUE`` parameter values given (others kept)."""
    want = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param must be NAME=VALUE, e.g. tile=4096; got {item!r}")
        want.setdefault(name, []).append(value)
    new = {k: ([v for v in vals if str(v) in want[k]] if k in want else vals)
           for k, vals in bench.params.items()}
    return dataclasses.replace(bench, params=new)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--family", action="append", choices=FAMILIES,
                   help="only these families (repeatable); default all")
    p.add_argument("--bench", action="append", help="only benchmarks with these names")
    p.add_argument("--size", action="append", help="only these sizes (e.g. glc, meris, nlcd)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="only this value of a benchmark parameter, e.g. tile=4096 (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case (median kept)")
    p.add_argument("--smoke", action="store_true",
                   help="smallest size, one run, nothing written (checks that cases still run)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--render", action="store_true", help="only re-render docs/benchmarks.md")
    a = p.parse_args(argv)
    if a.render:
        render()
        return 0
    families = a.family or FAMILIES
    load(families)
    benches = [b for b in REGISTRY if b.family in families and (not a.bench or b.name in a.bench)]
    benches = [_only(b, a.param) for b in benches]
    results = run(benches, sizes=a.size, repeat=a.repeat, smoke=a.smoke)
    if not (a.smoke or a.no_write):
        args = argv if argv is not None else sys.argv[1:]
        save(results, "python -m benchmarks " + " ".join(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small side-by-side benchmark runner.

A benchmark is a generator function registered with :func:`benchmark`::

    @benchmark("local", "pixel_count", sizes=["tiny", "glc", "meris", "nlcd"],
               params={"tile": [1024, 4096]})
    def pixel_count(size, tile):
        data = ...                       # setup: not timed
        yield Case("stengine", lambda: ..., items=npix, note="zarr")
        yield Case("numpy", lambda: ..., note="in memory")

Each case is called once to warm up (JIT, caches), then ``repeat`` times; the median
wall time, the peak resident memory above the starting level, and ``items/s`` are
recorded. Results go to ``benchmarks/results/<family>.json`` and the family's table in
``docs/benchmarks.md`` (between ``<!-- bench:<family> -->`` markers), with each peer's
time as a ratio to stengine's from the same run.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass
class Case:
    """One implementation of a benchmark: ``fn()`` does the timed work.

    ``items`` (e.g. pixels, points) gives a throughput column; ``note`` says what the
    implementation reads and how (e.g. "Zarr, dask threads"); ``warmup=False`` skips the
    untimed first call for very slow peers; ``repeat`` overrides the runner's count.
    ``info`` (a callable returning a dict) adds extra columns after the timing, e.g.
    ``{"tasks": 123}`` or ``{"records_read": ...}``.
    """

    impl: str
    fn: Callable[[], object]
    items: int | None = None
    note: str = ""
    warmup: bool = True
    repeat: int | None = None
    info: Callable[[], dict] | None = None


@dataclass
class Bench:
    family: str
    name: str
    func: Callable[..., Iterator[Case]]
    sizes: list[str]
    params: dict[str, list] = field(default_factory=dict)


REGISTRY: list[Bench] = []


def benchmark(family: str, name: str, *, sizes, params=None):
    """Register a benchmark generator ``func(size, **params) -> Iterator[Case]``."""

    def deco(func):
        REGISTRY.append(Bench(family, name, func, list(sizes), dict(params or {})))
        return func

    return deco


class _PeakRSS:
    """Samples this process's RSS every 5 ms in a thread; ``peak`` is the max seen."""

    def __init__(self):
        import psutil

        self._p = psutil.Process()
        self.start = self.peak = self._p.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._p.memory_info().rss)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._p.memory_info().rss)


def run_case(case: Case, repeat: int) -> dict:
    n = case.repeat or repeat
    if case.warmup:
        case.fn()
    times = []
    gc.collect()
    with _PeakRSS() as mem:
        for _ in range(n):
            t0 = time.perf_counter()
            case.fn()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out = {"impl": case.impl, "median_s": med, "min_s": min(times), "runs": n,
           "peak_mib": (mem.peak - mem.start) / 2**20, "note": case.note}
    if case.items:
        out["items"] = case.items
        out["items_per_s"] = case.items / med
    if case.info:
        out.update(case.info())
    return out


def machine() -> dict:
    import importlib.metadata as md

    import psutil

    versions = {}
    for pkg in ("stengine", "numpy", "numba", "dask", "distributed", "xarray", "zarr",
                "rasterio", "scipy", "xarray-spatial", "rasterstats", "exactextract", "flox",
                "h3", "esutil", "lsst-sphgeom", "geopandas", "shapely"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(terse=True),
            "versions": versions}


def run(benches, sizes=None, repeat=3, smoke=False, log=print) -> dict[str, list[dict]]:
    """Run benches; return {family: [result rows]}."""
    out: dict[str, list[dict]] = {}
    for b in benches:
        for size in ([b.sizes[0]] if smoke else [s for s in b.sizes if not sizes or s in sizes]):
            keys = list(b.params)
            combos = [()] if not keys else list(itertools.product(*(b.params[k] for k in keys)))
            if smoke:
                combos = combos[:1]
            for combo in combos:
                kw = dict(zip(keys, combo, strict=True))
                label = f"{b.family}.{b.name} size={size} " + " ".join(
                    f"{k}={v}" for k, v in kw.items())
                log(f"== {label}")
                gen = b.func(size, **kw)
                while True:
                    try:
                        case = next(gen)
                    except StopIteration:
                        break
                    except ImportError as e:  # a missing peer is a reported skip
                        log(f"   skip: {e}")
                        break
                    try:
                        row = run_case(case, 1 if smoke else repeat) if not smoke else \
                            run_case(Case(case.impl, case.fn, case.items, case.note,
                                          warmup=False, repeat=1, info=case.info), 1)
                    except ImportError as e:
                        log(f"   {case.impl}: skipped ({e})")
                        continue
                    row.update(bench=b.name, size=size, params=kw)
                    log(f"   {case.impl:<22} {row['median_s']:9.3f} s"
                        + (f"  {row['items_per_s'] / 1e6:9.1f} M/s" if "items_per_s" in row
                           else "") + f"  peak +{row['peak_mib']:.0f} MiB  {case.note}")
                    out.setdefault(b.family, []).append(row)
    return out


def _ratios(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["bench"], r["size"], json.dumps(r["params"], sort_keys=True)),
                          []).append(r)
    for g in groups.values():
        ref = next((r for r in g if r["impl"] == "stengine"), None)
        for r in g:
            # a peer run on a sample of the work reports its time scaled to all of it
            t = r.get("est_all_zones_s", r["median_s"])
            r["vs_stengine"] = (t / ref["median_s"]) if ref else None
    return rows


def save(results: dict[str, list[dict]], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command,
            "machine": machine()}
    for family, rows in results.items():
        path = RESULTS / f"{family}.json"
        old = json.loads(path.read_text()) if path.exists() else {"rows": []}
        # replace rows of the benches that ran; keep others
        ran = {(r["bench"], r["size"]) for r in rows}
        kept = [r for r in old["rows"] if (r["bench"], r["size"]) not in ran]
        runs = [m for m in old.get("runs", []) if m["command"] != command][-4:] + [meta]
        path.write_text(json.dumps({"runs": runs, "rows": kept + _ratios(rows)}, indent=1))
    render()


def _fmt_params(p):
    return " ".join(f"{k}={v}" for k, v in p.items())


def render() -> None:
    """Rewrite each family's table in docs/benchmarks.md from benchmarks/results/*.json."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    for path in sorted(RESULTS.glob("*.json")):
        family = path.stem
        data = json.loads(path.read_text())
        lines = []
        for m in data.get("runs", [])[-3:]:
            mc = m["machine"]
            v = ", ".join(f"{k} {x}" for k, x in mc["versions"].items())
            lines.append(f"Run {m['date']}: `{m['command']}` on {mc['cpu']}, {mc['cores']} cores, "
                         f"{mc['memory_gib']} GiB, Python {mc['python']}; {v}.")
        lines += ["", "| benchmark | size | params | implementation | median s | vs stengine "
                  "| M items/s | peak MiB | note |", "|---|---|---|---|---:|---:|---:|---:|---|"]
        for r in data["rows"]:
            pk = f"{r['peak_mib']:.0f}"
            ratio = r.get("vs_stengine")
            ratio_s = "—" if ratio is None else ("1 (ref)" if r["impl"] == "stengine"
                                                 else f"{ratio:.2f}×")
            extra = {k: v for k, v in r.items() if k not in {
                "impl", "median_s", "min_s", "runs", "peak_mib", "note", "items", "items_per_s",
                "bench", "size", "params", "vs_stengine"}}
            note = "; ".join([r["note"]] * bool(r["note"]) + [f"{k}={v}" for k, v in extra.items()])
            ips = f"{r['items_per_s'] / 1e6:.1f}" if "items_per_s" in r else ""
            lines.append(f"| {r['bench']} | {r['size']} | {_fmt_params(r['params'])} | {r['impl']} "
                         f"| {r['median_s']:.3f} | {ratio_s} | {ips} | {pk} | {note} |")
        block = "\n".join(lines)
        start, end = f"<!-- bench:{family} -->", f"<!-- /bench:{family} -->"
        if start in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1] if end in rest else ""
            text = f"{head}{start}\n{block}\n{end}{tail}"
        else:
            text += f"\n## {family}\n\n{start}\n{block}\n{end}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)

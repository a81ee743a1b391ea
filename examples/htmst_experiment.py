"""The HTM-ST paper's experiment on generated satellite tracks: coupled, time-first, space-first.

Kang, Zou, Hu, Zhong (Journal of Geo-information Science, 2017) stored satellite
particle-flux records in HBase with three row keys and counted the records that
three space-time queries read. This script generates tracks like theirs (five
sun-synchronous polar orbiters at 850 km, one record every 2 s, 20 flux variables),
writes one point store per key layout, level and chunk size, runs the three queries
and records, for each: key ranges, records read (in the chunks read), chunks read,
records in the key ranges (what a range scan would read), records returned and wall
time. The table goes to docs/htmst.md (between ``<!-- htmst:experiment -->`` markers)
and the raw numbers to ``<out>/experiment.json``.

Run::

    python examples/htmst_experiment.py                      # two months, ~13 M records
    python examples/htmst_experiment.py --stop 2013-01-03    # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from stengine._demo.htmst import paper_queries, satellite_tracks
from stengine.io.points import PointStore

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "htmst.md"
PAPER_III = {"htmst": 6e5, "time": 1.5e6, "space": 6.6e7}  # records read, query III
KEYS = ("htmst", "time", "space")


def run(start, stop, levels, chunks, out: Path, repeat=3, keep=False, max_ranges=4096,
        log=print):
    t = time.perf_counter()
    df = satellite_tracks(start, stop)
    log(f"generated {len(df):,} records ({start} to {stop}) in {time.perf_counter() - t:.1f} s")
    queries = paper_queries(start, stop)
    rows = []
    for level in levels:
        for chunk in chunks:
            for key in KEYS:
                path = out / f"{key}-L{level}-c{chunk}"
                st = PointStore.create(path, key=key, level=level, t0=start, t1=stop,
                                       chunk_size=chunk, overwrite=True)
                t = time.perf_counter()
                st.append(df)
                build = time.perf_counter() - t
                log(f"{key:>5} L{level} chunk {chunk}: {len(st):,} records, {st.n_chunks} "
                    f"chunks, built in {build:.1f} s")
                for q, (reg, iv) in queries.items():
                    r = st.query(reg, iv, max_ranges=max_ranges)  # warm (JIT, caches)
                    times = []
                    for _ in range(repeat):
                        r = st.query(reg, iv, max_ranges=max_ranges)
                        times.append(r.seconds)
                    rows.append({"query": q, "key": key, "level": level, "chunk": chunk,
                                 "ranges": r.n_ranges, "records_read": r.records_read,
                                 "chunks_read": r.chunks_read, "chunks_total": r.chunks_total,
                                 "records_in_ranges": r.records_in_ranges,
                                 "records_returned": r.records_returned,
                                 "seconds": statistics.median(times), "build_s": build})
                    log(f"   query {q:<3} {r}")
                if not keep:
                    shutil.rmtree(path, ignore_errors=True)
    return {"start": str(start), "stop": str(stop), "records": len(df),
            "max_ranges": max_ranges, "rows": rows}


def _fmt(n):
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e3 else str(n)


def table(res) -> str:
    lines = [f"Generated {res['records']:,} records ({res['start']} to {res['stop']}); covers "
             f"capped at {res['max_ranges']} key ranges; wall time is the median of the "
             "query's repeats (cover, chunk selection, parallel reads and exact filter).", "",
             "| query | key | level | chunk | ranges | records read | chunks read | "
             "records in ranges | records returned | time ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['query']} | {r['key']} | {r['level']} | {r['chunk']} | {r['ranges']} | "
                     f"{_fmt(r['records_read'])} | {r['chunks_read']}/{r['chunks_total']} | "
                     f"{_fmt(r['records_in_ranges'])} | {_fmt(r['records_returned'])} | "
                     f"{r['seconds'] * 1e3:.0f} |")
    # query III against the paper's, for every level and chunk size
    q3 = [r for r in res["rows"] if r["query"] == "III"]
    configs = sorted({(r["level"], r["chunk"]) for r in q3})
    if q3:
        lines += ["", "Query III, records read, against the paper's HBase prototype (two years of "
                  "data; here two months), for each level / chunk size:", "",
                  "| key | paper | " + " | ".join(f"L{lv} / {ch // 1024} k" for lv, ch in configs)
                  + " | returned |", "|---|---:|" + "---:|" * (len(configs) + 1)]
        for k in KEYS:
            by = {(r["level"], r["chunk"]): r for r in q3 if r["key"] == k}
            cells = [_fmt(by[c]["records_read"]) if c in by else "" for c in configs]
            ret = next(iter(by.values()))["records_returned"] if by else 0
            lines.append(f"| {k} | {_fmt(PAPER_III[k])} | " + " | ".join(cells)
                         + f" | {_fmt(ret)} |")
    return "\n".join(lines)


def write_doc(text: str, marker: str = "experiment") -> None:
    start, end = f"<!-- htmst:{marker} -->", f"<!-- /htmst:{marker} -->"
    doc = DOC.read_text() if DOC.exists() else "# HTM-ST\n"
    if start in doc:
        head, rest = doc.split(start, 1)
        tail = rest.split(end, 1)[1] if end in rest else ""
        doc = f"{head}{start}\n{text}\n{end}{tail}"
    else:
        doc += f"\n{start}\n{text}\n{end}\n"
    DOC.write_text(doc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--start", default="2013-01-01")
    p.add_argument("--stop", default="2013-03-01")
    p.add_argument("--levels", type=int, nargs="+", default=[8, 10])
    p.add_argument("--chunks", type=int, nargs="+", default=[16384, 65536])
    p.add_argument("--max-ranges", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "htmst_experiment")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/htmst.md")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    res = run(np.datetime64(a.start), np.datetime64(a.stop), a.levels, a.chunks, a.out,
              repeat=a.repeat, keep=a.keep, max_ranges=a.max_ranges)
    (a.out / "experiment.json").write_text(json.dumps(res, indent=1))
    text = table(res)
    print(text)
    if not a.no_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

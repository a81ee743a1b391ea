"""Each benchmark case runs once at its smallest size, so none of them rots."""

import pytest

from benchmarks import __main__ as bench_main
from benchmarks._runner import REGISTRY, run


@pytest.mark.slow
@pytest.mark.parametrize("family", bench_main.FAMILIES)
def test_benchmark_cases_run(family, tmp_path, monkeypatch):
    monkeypatch.setenv("STENGINE_BENCH_DATA", str(tmp_path))
    bench_main.load([family])
    benches = [b for b in REGISTRY if b.family == family]
    if not benches:
        pytest.skip(f"no {family} benchmarks registered")
    lines = []
    results = run(benches, smoke=True, log=lines.append)
    rows = results.get(family, [])
    assert {r["bench"] for r in rows} == {b.name for b in benches}, "\n".join(lines)
    assert all(r["median_s"] > 0 for r in rows)
    assert any(r["impl"] == "stengine" for r in rows)

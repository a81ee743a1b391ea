"""The numba warm-up: compiles into the on-disk cache once; a later process only loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# cheap recipes (a few kernels each); two of them so the process pool really splits
NAMES = ["collection", "local"]
SCRIPT = """
import json, sys
from stengine import _warm
r = _warm.warm(processes=int(sys.argv[1]), names=sys.argv[2].split(",")) \\
    if sys.argv[1] != "0" else _warm.load(sys.argv[2].split(","))
print(json.dumps({k: r[k] for k in ("compiled", "loaded")}))
"""


def _run(cache, processes):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(processes), ",".join(NAMES)],
                         env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_warm_compiles_once_then_other_processes_only_load(tmp_path):
    first = _run(tmp_path, 2)  # two spawned processes, a share each, empty cache
    assert first["compiled"] > 0
    assert any(tmp_path.rglob("*.nbi"))
    again = _run(tmp_path, 0)  # a new process (a worker, say): every kernel from the cache
    assert again == {"compiled": 0, "loaded": again["loaded"]}
    assert again["loaded"] > 0
    assert _run(tmp_path, 2)["compiled"] == 0  # warming a warm cache compiles nothing


def test_split_deals_every_recipe_once():
    from stengine._warm import RECIPES, _split

    for n in (1, 2, 3, 16):
        shares = _split(list(RECIPES), n)
        assert sorted(sum(shares, [])) == sorted(RECIPES)
        assert len(shares) == min(n, len(RECIPES))


CLUSTER = """
import json
from distributed import Client
from stengine import _warm
with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
    r = _warm.warm_cluster(c, names=["collection", "local"])
print(json.dumps({k: r[k] for k in ("compiled", "missed", "processes")}))
"""


def test_warm_cluster_shares_the_work_and_misses_nothing(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", CLUSTER], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["processes"] == 2 and r["compiled"] > 0 and r["missed"] == 0


AHEAD = """
import json
from distributed import Client
from stengine import _warm
if __name__ == "__main__":
    ahead = _warm.start_background(["collection"])
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as c:
        r = _warm.warm_cluster(c, names=["collection", "local"], ahead=ahead)
    print(json.dumps({k: r[k] for k in ("compiled", "missed", "processes", "ahead")}))
"""


def test_warm_cluster_counts_a_background_share_and_skips_it(tmp_path):
    """A recipe compiled ahead (beside the ingest) is not dealt out again, only loaded,
    and its compiles count in the total."""
    script = tmp_path / "ahead.py"
    script.write_text(AHEAD)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "nb")}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["ahead"][0] == ["collection"]
    assert r["processes"] == 1  # only "local" was left to deal out
    assert r["compiled"] > 0 and r["missed"] == 0

"""PointStore under killed writers, concurrent writers and concurrent readers.

Every writer and reader here is a real process (``subprocess``); kills are SIGKILL (no
cleanup runs). Results are compared with a plain pandas reference: the batches that
should be committed, concatenated.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stengine.errors import StoreCorruptError, StoreLockedError
from stengine.io.points import PointStore

ROOT = Path(__file__).resolve().parents[2]
T0, T1 = "2013-01-01", "2013-03-01"
COLS = ["lon", "lat", "time", "rid", "x"]


def size(wid: int, bid: int) -> int:
    """Records in batch ``bid`` of writer ``wid`` (distinct sizes, so counts tell batches)."""
    return 60 + 17 * bid + 5 * wid


def batch(wid: int, bid: int, n: int | None = None) -> pd.DataFrame:
    """A deterministic batch; ``rid`` is unique over all (wid, bid); times in us (pandas 3)."""
    n = size(wid, bid) if n is None else n
    rng = np.random.default_rng([wid, bid])
    t = np.datetime64(T0, "us") + rng.integers(0, 58 * 86400 * 10**6, n).astype("m8[us]")
    return pd.DataFrame({"lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n),
                         "time": t, "rid": wid * 10**6 + bid * 10**4 + np.arange(n),
                         "x": rng.normal(size=n)})


def reference(batches) -> pd.DataFrame:
    """What the store must hold: the batches, once each, by rid."""
    df = pd.concat(batches, ignore_index=True)[COLS]
    df["time"] = df["time"].astype("datetime64[ns]")
    return df.sort_values("rid").reset_index(drop=True)


def holds_exactly(path, batches):
    got = PointStore(path).read()[COLS].sort_values("rid").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, reference(batches), check_exact=True)


def assert_clean(path):
    """No leftovers: only the committed runs in runs/, nothing beside (but a lock file)."""
    path = Path(path)
    st = PointStore(path)
    assert sorted(p.name for p in path.iterdir()) == ["runs", "zarr.json"]
    assert sorted(p.name for p in (path / "runs").iterdir()) == [r["name"] for r in st.runs]
    beside = {p.name for p in path.parent.iterdir() if p.name.startswith(path.name)}
    assert beside - {path.name + ".stengine-lock"} == {path.name}


def new_store(path, *batches, chunk_size=64):
    st = PointStore.create(path, level=6, t0=T0, t1=T1, chunk_size=chunk_size,
                           variables={"rid": "int64", "x": "float64"})
    for b in batches:
        st.append(b)
    return st


_PRELUDE = f"""
import os, signal, sys, time, json
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, pandas as pd
from stengine.io import points
from tests.faults.test_points_faults import batch, size

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no finally
"""


def child(code: str, *args, env=None) -> subprocess.Popen:
    script = _PRELUDE + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(p: subprocess.Popen, timeout=240):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


# killed writers --------------------------------------------------------------------
# each hook kills the writer at one point of the append sequence
KILL_AT = {
    # half of the new run's chunks written, in its staging directory
    "during-run-write": """
        real = points._write_run
        def hook(path, data, cols, chunk):
            real(path, {c: v[: len(v) // 2] for c, v in data.items()}, cols, chunk)
            die()
        points._write_run = hook
    """,
    # the run whole and flushed, not yet renamed into place
    "before-run-rename": """
        real = points._fsync_tree
        def hook(root):
            real(root)
            die()
        points._fsync_tree = hook
    """,
    # the run in place and the new manifest staged, not yet renamed over zarr.json
    "before-commit": """
        points._replace = die
    """,
    # committed; the runs it merged away not yet deleted
    "after-commit": """
        points._retire = die
    """,
}


def test_killed_append_leaves_the_last_commit(tmp_path):
    old = [batch(0, 0, 300)]
    new = batch(1, 0, 200)  # 300 <= 2 * 200: the append merges the old run into its new one
    procs = {}
    for point, hook in KILL_AT.items():
        new_store(tmp_path / point, *old)
        procs[point] = child(textwrap.dedent(hook) + textwrap.dedent("""
            points.PointStore(sys.argv[1]).append(batch(1, 0, 200))
            print("survived")
        """), tmp_path / point)
    for point, p in procs.items():
        rc, out, err = finish(p)
        assert rc == -signal.SIGKILL, (point, out, err)
        path = tmp_path / point
        committed = old + [new] if point == "after-commit" else old
        # readers see exactly the last commit, and ignore the leftovers
        holds_exactly(path, committed)
        leftovers = {q.name for q in (path / "runs").iterdir()} - {
            r["name"] for r in PointStore(path).runs}
        assert leftovers, point  # the kill did leave something behind
        # the next write removes them (under the lock) and commits normally
        more = batch(2, 0)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            PointStore(path).append(more)
        lost = [x for x in w if "never committed" in str(x.message)]
        assert bool(lost) == (point != "after-commit"), (point, [str(x.message) for x in w])
        holds_exactly(path, committed + [more])
        assert_clean(path)


@pytest.mark.slow
def test_kill_at_random_moments(tmp_path):
    # an external kill -9 at several moments of a long append (many chunks, a merge)
    old = [batch(0, 0, 3000)]
    new = batch(1, 0, 20000)
    procs = {}
    for delay in (0.1, 0.8):
        path = tmp_path / f"d{delay}"
        new_store(path, *old, chunk_size=16)
        procs[delay] = (path, child("""
            b = batch(1, 0, 20000)
            st = points.PointStore(sys.argv[1])
            print("go", flush=True)
            st.append(b)
            print("done", flush=True)
            time.sleep(60)
        """, path))
    for delay, (path, p) in procs.items():
        assert p.stdout.readline().strip() == "go"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        finish(p)
        st = PointStore(path)
        n = len(st)
        assert n in (len(old[0]), len(old[0]) + len(new)), (delay, n)
        committed = old + [new] if n > len(old[0]) else old
        holds_exactly(path, committed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st.append(batch(2, 0))
        holds_exactly(path, committed + [batch(2, 0)])
        assert_clean(path)


# concurrent writers and readers -----------------------------------------------------
W, K = 3, 4  # writers, batches per writer

_APPENDER = """
    wid = int(sys.argv[2])
    st = points.PointStore(sys.argv[1])  # one object: its view goes stale between appends
    for bid in range(int(sys.argv[3])):
        st.append(batch(wid, bid))
"""

_READER = """
    from stengine.index import Box
    path, stop, W, K = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sizes = {(w, b): size(w, b) for w in range(W) for b in range(K)}
    st = points.PointStore(path)
    reads, states, bad = 0, set(), []
    while not os.path.exists(stop):
        try:
            n = len(st)
            df = st.read()
            half = st.query(Box(0, -90, 180, 90)).df
        except Exception as e:
            bad.append(f"{type(e).__name__}: {e}")
            break
        reads += 1
        rid = df["rid"].to_numpy()
        if len(np.unique(rid)) != len(rid):
            bad.append("a record seen twice")
        counts = pd.Series(rid // 10**4).value_counts()
        for k, c in counts.items():
            if c != sizes[(int(k) // 100, int(k) % 100)]:
                bad.append(f"batch {k} seen with {c} records")
        if not (half["lon"] >= 0).all():
            bad.append("query returned records outside its region")
        states.add((n, len(df)))
    print(json.dumps({"reads": reads, "states": sorted(states), "bad": bad[:5]}))
"""


def totals(W, K):
    """Record counts of every state the store may be in: a prefix of each writer's batches."""
    return {sum(sum(size(w, b) for b in range(k)) for w, k in enumerate(ks))
            for ks in product(range(K + 1), repeat=W)}


def test_concurrent_appenders_and_reader(tmp_path):
    path = tmp_path / "p"
    new_store(path)
    stop = tmp_path / "stop"
    reader = child(_READER, path, stop, W, K)
    time.sleep(1.0)  # let the reader start its loop first, so it reads during the appends
    writers = [child(_APPENDER, path, w, K) for w in range(W)]
    for w in writers:
        rc, out, err = finish(w)
        assert rc == 0, err
    stop.touch()
    rc, out, err = finish(reader)
    assert rc == 0, err
    seen = json.loads(out)
    assert seen["bad"] == [] and seen["reads"] > 0, seen
    ok = totals(W, K)
    assert all(n in ok and m in ok for n, m in seen["states"]), seen["states"]
    # every committed record present exactly once, equal to the reference
    holds_exactly(path, [batch(w, b) for w in range(W) for b in range(K)])
    assert_clean(path)


def test_stale_store_objects_lose_nothing(tmp_path):
    # the lost update in one process: two objects opened on one store, appending in turn
    path = tmp_path / "p"
    new_store(path)
    a, b = PointStore(path), PointStore(path)
    a.append(batch(0, 0))
    b.append(batch(1, 0))
    a.append(batch(0, 1))
    assert len(a) == len(b) == size(0, 0) + size(1, 0) + size(0, 1)
    holds_exactly(path, [batch(0, 0), batch(1, 0), batch(0, 1)])


def test_first_append_race_defines_columns_once(tmp_path):
    # two objects see a store without columns; the second append must be checked
    # against the columns the first one committed, not against its stale view
    from stengine.errors import AppendMismatchError

    path = tmp_path / "p"
    PointStore.create(path, level=6, t0=T0, t1=T1)
    a, b = PointStore(path), PointStore(path)
    a.append(batch(0, 0))
    with pytest.raises(AppendMismatchError, match=r"unexpected \['y'\]"):
        b.append(batch(1, 0).rename(columns={"x": "y"}))
    holds_exactly(path, [batch(0, 0)])


_HOLDER = """
    st = points.PointStore(sys.argv[1])
    def slow(*a, **k):  # holds the write lock, mid-append
        open(sys.argv[2], "w").close()
        time.sleep(120)
    points._write_run = slow
    st.append(batch(9, 0))
"""

_SECOND = """
    while not os.path.exists(sys.argv[2]):  # started with the holder: wait until it holds
        time.sleep(0.05)
    try:
        points.PointStore(sys.argv[1]).append(batch(8, 0))
        print("appended")
    except Exception as e:
        print(type(e).__name__, e)
"""


def test_second_writer_gets_store_locked_error(tmp_path):
    path = tmp_path / "p"
    old = [batch(0, 0)]
    new_store(path, *old)
    marker = tmp_path / "holding"
    holder = child(_HOLDER, path, marker)
    second = child(_SECOND, path, marker, env={"STENGINE_LOCK_TIMEOUT": "0.3"})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert holder.poll() is None, finish(holder)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # a timeout passed in...
        t = time.monotonic()
        with pytest.raises(StoreLockedError, match=re.escape(str(path))):
            PointStore(path, lock_timeout=0.5).append(batch(1, 0))
        assert 0.5 <= time.monotonic() - t < 30
        # ... or through STENGINE_LOCK_TIMEOUT
        rc, out, err = finish(second)
        assert out.startswith("StoreLockedError") and f"pid {holder.pid}" in out, (out, err)
        # readers do not wait for the writer, and see the last commit
        t = time.monotonic()
        holds_exactly(path, old)
        assert time.monotonic() - t < 30
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel releases its lock
        finish(holder)
        if second.poll() is None:
            second.kill()
            finish(second)
    PointStore(path, lock_timeout=30).append(batch(1, 0))
    holds_exactly(path, old + [batch(1, 0)])
    assert_clean(path)


# a damaged store ----------------------------------------------------------------------
def test_manifest_naming_a_missing_run_is_an_error_not_a_loss(tmp_path):
    import shutil

    path = tmp_path / "p"
    st = new_store(path, batch(0, 0, 1000), batch(1, 0, 100))  # two runs, no merge
    runs = [r["name"] for r in st.runs]
    assert len(runs) == 2
    shutil.rmtree(path / "runs" / runs[0])  # lost outside stengine
    meta = (path / "zarr.json").read_bytes()
    for call in (lambda: PointStore(path).read(), lambda: PointStore(path).query((0, 0, 10, 10)),
                 lambda: PointStore(path).append(batch(2, 0)), lambda: PointStore(path).compact()):
        with pytest.raises(StoreCorruptError, match=re.escape(str(path)) + ".*" + runs[0]):
            call()
    # nothing was written, the intact run is untouched
    assert (path / "zarr.json").read_bytes() == meta
    assert sorted(p.name for p in (path / "runs").iterdir()) == [runs[1]]
    assert len(PointStore(path)) == 1100


# killed overwrites ------------------------------------------------------------------
KILL_CREATE_AT = {
    # the new (empty) store half made beside the old one: <store>.stengine-tmp-<id>
    "while-writing-aside": """
        points._fsync_tree = die
    """,
    # the old store renamed aside (<store>.stengine-old-<id>), the new one not yet in
    "between-the-renames": """
        real, calls = os.rename, []
        def hook(a, b):
            calls.append(a)
            if len(calls) == 2:
                die()
            real(a, b)
        points.os.rename = hook
    """,
}


@pytest.mark.slow
def test_killed_overwrite_keeps_the_old_store(tmp_path):
    old = [batch(0, 0)]
    procs = {}
    for point, hook in KILL_CREATE_AT.items():
        new_store(tmp_path / point, *old)
        procs[point] = child(textwrap.dedent(hook) + textwrap.dedent("""
            points.PointStore.create(sys.argv[1], level=3, t0="2013-01-01", t1="2014-01-01",
                                     overwrite=True)
            print("survived")
        """), tmp_path / point)
    for point, p in procs.items():
        rc, out, err = finish(p)
        assert rc == -signal.SIGKILL, (point, out, err)
        path = tmp_path / point
        assert any(".stengine-" in q.name and not q.name.endswith("-lock")
                   for q in tmp_path.iterdir() if q.name.startswith(point)), point
        holds_exactly(path, old)  # the open puts a half-swapped store back
        PointStore(path).append(batch(1, 0))  # the next write removes the rest
        holds_exactly(path, old + [batch(1, 0)])
        assert_clean(path)


def test_reader_on_a_superseded_manifest_starts_again(tmp_path, monkeypatch):
    # a query that planned on a manifest whose runs a writer then merged away must not
    # return part of them (or fill values): it starts again on the new manifest
    path = tmp_path / "p"
    reader = new_store(path, batch(0, 0, 300))
    stale = PointStore(path)._load()
    PointStore(path).append(batch(1, 0, 200))  # merges r000001 away
    assert [r["name"] for r in PointStore(path).runs] == ["r000002"]
    calls = []
    real = PointStore._load

    def first_stale(self):
        calls.append(1)
        return stale if len(calls) == 1 else real(self)

    monkeypatch.setattr(PointStore, "_load", first_stale)
    df = reader.read()
    monkeypatch.undo()
    assert len(calls) >= 2  # it did start again
    got = df[COLS].sort_values("rid").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, reference([batch(0, 0, 300), batch(1, 0, 200)]))


def test_failure_after_the_commit_does_not_fail_the_append(tmp_path, monkeypatch):
    # once the manifest is in place the append is committed: reporting an error then
    # would make the caller retry, and duplicate the batch
    from stengine.io import points

    path = tmp_path / "p"
    new_store(path, batch(0, 0, 300))

    def fail(p):
        raise PermissionError(f"cannot remove {p} (simulated)")

    monkeypatch.setattr(points, "_retire", fail)
    PointStore(path).append(batch(1, 0, 200))  # merges the old run away, cannot delete it
    monkeypatch.undo()
    holds_exactly(path, [batch(0, 0, 300), batch(1, 0, 200)])
    PointStore(path).append(batch(2, 0))  # the next write removes the merged-away run
    holds_exactly(path, [batch(0, 0, 300), batch(1, 0, 200), batch(2, 0)])
    assert_clean(path)

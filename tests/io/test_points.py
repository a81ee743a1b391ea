import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from stengine._demo.htmst import paper_queries, satellite_tracks
from stengine.errors import IndexRangeError, StoreError, StoreNotFoundError
from stengine.index import Box, Cap, Polygon
from stengine.io import points
from stengine.io.points import PointStore

T0, T1 = "2013-01-01", "2013-03-01"


@pytest.fixture(scope="module")
def tracks():
    # 2 x 3 h of 5 satellites, in Feb so the paper's queries I and III apply
    a = satellite_tracks("2013-02-01", "2013-02-01T03:00", n_vars=3, seed=1)
    b = satellite_tracks("2013-02-03", "2013-02-03T03:00", n_vars=3, seed=2)
    return pd.concat([a, b], ignore_index=True)


def brute(df, reg, iv):
    """The records a query should return, by filtering every record."""
    m = np.ones(len(df), bool)
    if reg is not None:
        m &= reg.contains(df.lon.to_numpy(), df.lat.to_numpy())
    if iv is not None:
        if iv[0] is not None:
            m &= df.time.to_numpy() >= np.datetime64(pd.Timestamp(iv[0]))
        if iv[1] is not None:
            m &= df.time.to_numpy() < np.datetime64(pd.Timestamp(iv[1]))
    return df[m]


def same_records(got, want):
    cols = list(want.columns)
    g = got[cols].sort_values(["time", "sat"]).reset_index(drop=True)
    w = want[cols].sort_values(["time", "sat"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(g, w, check_dtype=True)


QUERIES = [
    *paper_queries("2013-02-01", "2013-03-01").values(),
    (Polygon([-20, 30, 30, 5, -20], [-10, -10, 40, 20, 40]), ("2013-02-01T01:00", None)),
    (Box(170, -30, -170, 30), None),
    (None, ("2013-02-03", "2013-02-03T01:00")),
    (None, None),
    (Cap(100, 0, 1), ("2014-01-01", "2014-02-01")),  # outside the task interval: nothing
]


@pytest.mark.parametrize("key", ["htmst", "time", "space"])
def test_queries_match_brute_force(key, tracks, tmp_path):
    st = PointStore.create(tmp_path / "p", key=key, level=7, t0=T0, t1=T1, chunk_size=2048)
    st.append(tracks)
    assert len(st) == len(tracks) and st.variables == ["sat", "flux_00", "flux_01", "flux_02"]
    for reg, iv in QUERIES:
        r = st.query(reg, iv)
        want = brute(tracks, reg, iv)
        same_records(r.df, want)
        assert r.records_returned == len(want) == r.df.attrs["records_returned"]
        assert r.records_returned <= r.records_in_ranges <= r.records_read <= len(tracks)
        assert r.chunks_read <= r.chunks_total == st.n_chunks
        assert r.records_read <= r.chunks_read * 2048
    # a selective query reads a fraction of the store
    r = st.query(*QUERIES[2])
    assert r.records_read < 0.7 * len(tracks)


def test_appends_merge_runs_and_stay_sorted(tracks, tmp_path, rng):
    st = PointStore.create(tmp_path / "p", key="htmst", level=6, t0=T0, t1=T1, chunk_size=1000)
    shuffled = tracks.sample(frac=1.0, random_state=3)
    parts = [shuffled.iloc[i::9] for i in range(9)]
    for i, p in enumerate(parts):
        st.append(p)
        assert len(st) == sum(len(q) for q in parts[: i + 1])
    runs = st.runs
    assert 1 < len(runs) < 9  # size-tiered: some runs merged
    for r in runs:
        key = points.PointStore(st.path)._read_run(r["name"])["key"]
        assert (np.diff(key.astype(np.float64)) >= 0).all()
    reg, iv = QUERIES[2]
    same_records(st.query(reg, iv).df, brute(tracks, reg, iv))
    st.compact()
    assert len(st.runs) == 1 and len(st) == len(tracks)
    assert len(list((st.path / "runs").iterdir())) == 1
    same_records(PointStore(st.path).query(reg, iv).df, brute(tracks, reg, iv))


def test_variables_and_dtypes(tracks, tmp_path):
    st = PointStore.create(tmp_path / "p", level=5, t0=T0, t1=T1, chunk_size=4096,
                           variables={"sat": "int8", "flux_00": "float32", "flux_01": "float32",
                                      "flux_02": "float32"})
    st.append(tracks)
    r = st.query(variables=["flux_01"])
    assert list(r.df.columns) == ["lon", "lat", "time", "flux_01"]
    assert r.df.flux_01.dtype == np.float32 and r.df.time.dtype == np.dtype("datetime64[ns]")
    assert list(st.query(variables=[]).df.columns) == ["lon", "lat", "time"]
    with pytest.raises(StoreError, match="unknown variables \\['nope'\\]"):
        st.query(variables=["nope"])


def test_dask_dataframe_input(tracks, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    st = PointStore.create(tmp_path / "p", level=6, t0=T0, t1=T1, chunk_size=4096)
    st.append(dd.from_pandas(tracks, npartitions=4))
    same_records(st.read(), tracks)


def _snapshot(st):
    r = st.query(None, None)
    return len(st), st.runs, r.df.sort_values(["time", "sat"]).reset_index(drop=True)


def _assert_unchanged(path, before):
    st = PointStore(path)
    n, runs, df = _snapshot(st)
    assert n == before[0] and runs == before[1]
    pd.testing.assert_frame_equal(df, before[2])


@pytest.fixture
def store(tracks, tmp_path):
    st = PointStore.create(tmp_path / "p", level=6, t0=T0, t1=T1, chunk_size=1500)
    st.append(tracks.iloc[: len(tracks) // 2])
    return st


def test_failed_run_write_leaves_store_unchanged(store, tracks, monkeypatch):
    before = _snapshot(store)
    real = points._write_run

    def half_then_fail(path, data, cols, chunk):
        real(path, {c: v[: len(v) // 2] for c, v in data.items()}, cols, chunk)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(points, "_write_run", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        store.append(tracks.iloc[len(tracks) // 2:])
    monkeypatch.undo()
    _assert_unchanged(store.path, before)
    assert sorted(p.name for p in (store.path / "runs").iterdir()) == [r["name"] for r in
                                                                       store.runs]


def test_failed_manifest_commit_leaves_store_unchanged(store, tracks, monkeypatch):
    # the commit is one atomic rename of the new zarr.json over the old one; failing
    # there (after the new run is durable and in place) must leave no trace
    before = _snapshot(store)

    def fail(src, dst):
        raise OSError("crash at the commit (simulated)")

    monkeypatch.setattr(points, "_replace", fail)
    with pytest.raises(OSError, match="simulated"):
        store.append(tracks.iloc[len(tracks) // 2:])
    monkeypatch.undo()
    json.loads((store.path / "zarr.json").read_text())
    _assert_unchanged(store.path, before)
    assert sorted(p.name for p in store.path.iterdir()) == ["runs", "zarr.json"]
    assert sorted(p.name for p in (store.path / "runs").iterdir()) == [r["name"] for r in
                                                                       store.runs]


def test_bad_batch_is_rejected_before_writing(store, tracks):
    before = _snapshot(store)
    bad = tracks.iloc[len(tracks) // 2:].copy()
    bad.loc[bad.index[-1], "time"] = pd.Timestamp("2013-03-05")  # the last record is late
    with pytest.raises(IndexRangeError, match="task interval"):
        store.append(bad)
    bad = tracks.iloc[:10].copy()
    bad.loc[bad.index[3], "lat"] = 91.0
    with pytest.raises(IndexRangeError, match="lat must be in"):
        store.append(bad)
    with pytest.raises(StoreError, match="missing \\['flux_02'\\], unexpected \\['extra'\\]"):
        store.append(tracks.iloc[:10].drop(columns="flux_02").assign(extra=1.0))
    with pytest.raises(StoreError, match="need columns lon, lat, time"):
        store.append(tracks.iloc[:10].drop(columns="time"))
    _assert_unchanged(store.path, before)


_CRASH = textwrap.dedent("""
    import os, sys
    from stengine.io import points
    from stengine._demo.htmst import satellite_tracks

    def die(src, dst):
        os._exit(3)  # no cleanup: a hard crash with the new run and manifest staged

    points._replace = die
    st = points.PointStore(sys.argv[1])
    st.append(satellite_tracks("2013-02-05", "2013-02-05T00:30", n_vars=3))
""")


def test_crash_leftovers_are_ignored_then_removed(store, tracks):
    # a process dies just before its commit: its new run is in place and its manifest
    # staged, neither committed; readers see the old store, the next write cleans up
    before = _snapshot(store)
    p = subprocess.run([sys.executable, "-c", _CRASH, str(store.path)], capture_output=True,
                       text=True)
    assert p.returncode == 3, p.stderr
    assert len(list((store.path / "runs").iterdir())) == len(store.runs) + 1
    assert len(list(store.path.glob("zarr.json.stengine-tmp-*"))) == 1
    reopened = PointStore(store.path)
    _assert_unchanged(store.path, before)
    with pytest.warns(UserWarning, match="interrupted write that was never committed"):
        reopened.append(tracks.iloc[len(tracks) // 2:])
    assert len(reopened) == len(tracks)
    assert sorted(p.name for p in (store.path / "runs").iterdir()) == [r["name"] for r in
                                                                       reopened.runs]
    assert sorted(p.name for p in store.path.iterdir()) == ["runs", "zarr.json"]
    same_records(reopened.read(), tracks)


def test_open_and_create_errors(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no point store"):
        PointStore(tmp_path / "nothing")
    PointStore.create(tmp_path / "p", t0=T0, t1=T1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        PointStore.create(tmp_path / "p", t0=T0, t1=T1)
    PointStore.create(tmp_path / "p", t0=T0, t1=T1, overwrite=True, level=4)
    assert PointStore(tmp_path / "p").scheme.level == 4
    import zarr

    zarr.open_group(tmp_path / "z", mode="w")
    with pytest.raises(StoreError, match="not a point store"):
        PointStore(tmp_path / "z")
    with pytest.raises(IndexRangeError, match="needs 65 bits"):
        PointStore.create(tmp_path / "q", level=20, t0=T0, t1=T1)

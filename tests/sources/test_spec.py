"""SourceSpec: JSON round trip, validation naming the field, redaction of secrets, HDFS."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stengine.errors import SourceError
from stengine.io.sources import SOURCE_KINDS, SourceSpec, infer_kind, open_source

json_leaf = st.none() | st.booleans() | st.integers(-2**53, 2**53) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
json_val = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.text(max_size=5), c, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["sql", "sql-points"]),
       loc=st.text(min_size=1, max_size=20).filter(str.strip),
       table=st.text(max_size=8), so=json_val, npart=st.integers(1, 64))
def test_json_round_trip(kind, loc, table, so, npart):
    opts = {"table": table, "npartitions": npart} if kind == "sql" else \
        {"table": table, "values": [table], "t0": so}
    s = SourceSpec(kind, loc, opts)
    assert SourceSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@settings(max_examples=40, deadline=None)
@given(so=st.dictionaries(st.text(max_size=6), json_val, max_size=4))
def test_round_trip_storage_options(so):
    s = SourceSpec("csv", "s3://b/k.csv", {"storage_options": so})
    back = SourceSpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and hash(back) == hash(s)


def test_tuples_become_lists():
    s = SourceSpec("geoparquet", "a.parquet", {"bbox": (1, 2, 3, 4)})
    assert s.options["bbox"] == [1, 2, 3, 4]
    assert SourceSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("d, field", [
    ({"kind": "excel", "location": "a.xls"}, "kind"),
    ({"kind": "csv", "location": ""}, "location"),
    ({"kind": "csv", "location": "   "}, "location"),
    ({"location": "a.csv"}, "kind"),
    ({"kind": "csv"}, "location"),
    ({"kind": "csv", "location": "a.csv", "options": {"bogus": 1}}, "bogus"),
    ({"kind": "csv", "location": "a.csv", "options": {"blocksize": {1, 2}}}, "options"),
    ({"kind": "csv", "location": "a.csv", "extra": 1}, "extra"),
    ({"kind": "csv", "location": "a.csv", "options": []}, "options"),
])
def test_from_dict_errors_name_the_field(d, field):
    with pytest.raises(SourceError) as e:
        SourceSpec.from_dict(d)
    assert e.value.field == field, str(e.value)


def test_kinds_and_inference():
    assert set(SOURCE_KINDS) >= {"geotiff", "zarr", "netcdf", "geoparquet", "csv", "sql",
                                 "sql-points", "hdfs"}
    cases = {"/x/dem.TIF": "geotiff", "s3://b/c.zarr/": "zarr", "http://h/a.nc": "netcdf",
             "memory://t.parquet": "geoparquet", "file:///a.csv.gz": "csv",
             "hdfs://nn:8020/a.parquet": "hdfs", "postgresql+psycopg://u@h/db": "sql",
             "sqlite:///a.db": "sql"}
    for loc, kind in cases.items():
        assert infer_kind(loc) == kind, loc
    with pytest.raises(SourceError, match="kind=") as e:
        open_source("/x/data.bin")
    assert e.value.field == "kind"


SECRET = "s3cr3t-Pa55"


def secret_specs():
    return [
        SourceSpec("sql", f"postgresql://me:{SECRET}@db.example:5432/x", {"table": "t"}),
        SourceSpec("sql", "postgresql://me@db/x", {"table": "t", "password": SECRET}),
        SourceSpec("sql", f"postgresql://me@db/x?password={SECRET}", {"table": "t"}),
        SourceSpec("csv", "s3://b/a.csv", {"storage_options": {
            "key": SECRET, "secret": SECRET, "client_kwargs": {"aws_session_token": SECRET}}}),
        SourceSpec("zarr", "s3://b/a.zarr", {"storage_options": {"token": SECRET}}),
    ]


@pytest.mark.parametrize("spec", secret_specs())
def test_redaction_and_repr(spec):
    r = spec.redacted()
    assert SECRET not in json.dumps(r)
    assert "***" in json.dumps(r)
    assert SECRET not in repr(spec) and SECRET not in str(spec)
    assert SECRET not in f"{[spec]}"
    assert SECRET in json.dumps(spec.to_dict())  # to_dict keeps them (it is the record)
    assert r["kind"] == spec.kind


def test_password_env_not_shown(monkeypatch, caplog):
    monkeypatch.setenv("STENGINE_TEST_PW", SECRET)
    s = SourceSpec("sql", "postgresql://me@127.0.0.1:1/x",
                   {"table": "t", "password_env": "STENGINE_TEST_PW", "connect_timeout": 1,
                    "index_col": "id"})
    assert SECRET not in repr(s) and s.redacted()["options"]["password_env"] == \
        "STENGINE_TEST_PW"
    with caplog.at_level(logging.DEBUG, logger="stengine"), pytest.raises(SourceError) as e:
        open_source(s)
    assert SECRET not in str(e.value) and SECRET not in caplog.text
    assert SECRET not in repr(e.value)


def test_hdfs_url_parsing_and_missing_client(monkeypatch):
    from stengine.io._sources_files import hdfs_inner, parse_hdfs
    assert parse_hdfs("hdfs://nn:9000/a/b.csv") == {"host": "nn", "port": 9000,
                                                    "path": "/a/b.csv"}
    assert parse_hdfs("hdfs://nn/a.zarr")["port"] == 8020
    for bad in ("hdfs://nn:x/a.csv", "hdfs://nn/", "s3://b/a.csv"):
        with pytest.raises(SourceError) as e:
            parse_hdfs(bad)
        assert e.value.field == "location"
    for v in ("JAVA_HOME", "HADOOP_HOME", "CLASSPATH", "ARROW_LIBHDFS_DIR"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(SourceError) as e:
        open_source("hdfs://nn:9000/data/obs.csv")
    msg = str(e.value)
    assert e.value.field == "kind"
    for need in ("libhdfs", "JAVA_HOME", "HADOOP_HOME", "CLASSPATH"):
        assert need in msg
    with pytest.raises(SourceError) as e:
        hdfs_inner(SourceSpec("hdfs", "hdfs://nn/a.bin"))
    assert e.value.field == "kind"  # cannot infer the inner format
    with pytest.raises(SourceError) as e:
        hdfs_inner(SourceSpec("hdfs", "hdfs://nn/a.bin", {"format": "excel"}))
    assert e.value.field == "format"

"""Schemathesis examples for every operation of the service's own routes: no 5xx."""
import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import TOKEN


def test_no_server_errors(server, tif):
    schemathesis = pytest.importorskip("schemathesis")
    c = server.client
    c.post("/sources", json={"name": "cls", "kind": "geotiff", "location": str(tif[0])})
    schema = schemathesis.openapi.from_dict(c.get("/openapi.json").json())
    ops, errors, calls = 0, [], []
    for res in schema.get_all_operations():
        op = res.ok()
        if op.path.startswith(("/tiles", "/similar")):  # tested by their own suites
            continue
        ops += 1

        @settings(max_examples=4, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(op.as_strategy())
        def check(case):
            r = case.call(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=20)
            calls.append(r.status_code)
            if r.status_code >= 500:
                errors.append((case.method, case.formatted_path, r.status_code, r.text[:200]))
        check()
    assert ops >= 10 and len(calls) >= 2 * ops, (ops, len(calls))
    assert not errors, errors

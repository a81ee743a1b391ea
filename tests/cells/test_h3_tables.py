"""The committed H3 tables equal the ones in the installed h3 library."""

from __future__ import annotations

import numpy as np
import pytest

from stengine.index import _h3_tables


def test_tables_equal_installed_h3():
    gen = pytest.importorskip("tests.cells.h3_tables_gen")
    try:
        tables = gen.extract()
    except (OSError, AttributeError, RuntimeError) as e:  # a differently built h3 wheel
        pytest.skip(f"cannot read tables from this h3 build: {e}")
    for name, value in tables.items():
        assert np.array_equal(getattr(_h3_tables, name), value), name

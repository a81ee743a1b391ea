import numpy as np
import pytest

from stengine.testing import BACKENDS, backend_skip_reason


def _param(b):
    reason = backend_skip_reason(b)
    return pytest.param(b, marks=pytest.mark.skip(reason=reason)) if reason else b


# tiny / odd / irregular / one chunk, for (y, x) rasters of shape (7, 9)
CHUNKS = [(1, 1), (2, 3), ((1, 4, 2), (3, 1, 3, 2)), -1]


@pytest.fixture(params=[_param(b) for b in BACKENDS])
def backend(request):
    return request.param


@pytest.fixture(params=[_param(b) for b in BACKENDS if "dask" not in b])
def eager_backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(42)

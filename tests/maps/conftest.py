import numpy as np
import pytest

import stengine
from stengine.testing import make_cube


@pytest.fixture(scope="session")
def utm_store(tmp_path_factory):
    """A 512x768 float cube in UTM 33N (30 m), Zarr chunks 64x64, with NaN holes."""
    da = make_cube((512, 768), seed=3, nan_fraction=0.02, res=30.0,
                   origin=(500000.0, 4000000.0))
    da = da.chunk({"y": 64, "x": 64})
    path = tmp_path_factory.mktemp("maps") / "cube.zarr"
    stengine.to_zarr(da, path)
    return path


class ReadCounter:
    """Records the chunk keys read from local Zarr stores: through zarr
    (``zarr.storage.LocalStore.get``) and through stengine's direct chunk reads
    (``DirectChunks._read``), as ``"<store folder>:<array>/c/<i>/<j>"``."""

    def __init__(self):
        self.keys = []

    def chunks(self, prefix="v/c/"):
        return {k for k in self.keys if k.startswith(prefix)}


@pytest.fixture
def reads(monkeypatch):
    from zarr.storage import LocalStore
    counter = ReadCounter()
    orig = LocalStore.get

    async def get(self, key, *a, **k):
        counter.keys.append(f"{self.root.name}:{key}")
        return await orig(self, key, *a, **k)

    monkeypatch.setattr(LocalStore, "get", get)
    from pathlib import Path

    from stengine.io._zarr_read import DirectChunks
    orig_read = DirectChunks._read

    def read(self, idx):
        counter.keys.append(f"{Path(self._path).name}:{self._file_name(idx)}")
        return orig_read(self, idx)

    monkeypatch.setattr(DirectChunks, "_read", read)
    return counter


def nonempty(a):
    return np.isfinite(a).any()

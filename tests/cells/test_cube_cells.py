"""The cell cube model: sorting, parent chunks, parent index, Zarr layout and reads."""

from __future__ import annotations

import numpy as np
import pytest
from h3.api import basic_int as h3i

from stengine.cube import cells as C
from stengine.errors import ChunkError, DimensionError, IndexRangeError
from stengine.index import h3 as sth3


@pytest.fixture
def cube():
    rng = np.random.default_rng(1)
    ids = rng.permutation(sth3.cells_in_bbox((0, 40, 20, 55), 4))[:1500]
    vals = rng.normal(size=(3, ids.size))
    return C.make_cell_cube(vals, ids, grid="h3", level=4, coords={"time": np.arange(3)},
                            name="v")


def test_make_sorts_and_labels(cube):
    ids = cube.cell_ids.values
    assert cube.dims == ("time", "cells") and ids.dtype == np.uint64
    assert (np.diff(ids.astype(np.int64)) > 0).all()
    for a in (cube.attrs, cube.cell_ids.attrs):
        assert a["grid_name"] == "h3" and a["level"] == 4
    # values followed their ids through the sort
    rng = np.random.default_rng(1)
    raw = rng.permutation(sth3.cells_in_bbox((0, 40, 20, 55), 4))[:1500]
    vals = rng.normal(size=(3, raw.size))
    assert np.array_equal(cube.sel(cells=list(ids).index(raw[7])).values, vals[:, 7])


def test_xdggs_decodes(cube):
    xdggs = pytest.importorskip("xdggs")
    decoded = xdggs.decode(cube.to_dataset())
    assert decoded is not None


def test_bad_cubes():
    with pytest.raises(ValueError, match="grid must be one of"):
        C.make_cell_cube(np.ones(1), [1], grid="s2", level=1)
    with pytest.raises(IndexRangeError, match="0..15"):
        C.make_cell_cube(np.ones(1), [1], grid="h3", level=16)
    with pytest.raises(ValueError, match="unique"):
        C.make_cell_cube(np.ones(2), [5, 5], grid="h3", level=1)
    with pytest.raises(DimensionError, match="cell cube"):
        C.check_cell_cube(C.make_cell_cube(np.ones(1), [5], grid="h3", level=1).rename(
            cells="c"), op="t")


@pytest.mark.parametrize("chunk_level", [0, 1, 2, 3])
def test_chunk_boundaries_fall_on_parents(cube, chunk_level):
    out = C.chunk_by_parent(cube, chunk_level)
    parents = [h3i.cell_to_parent(int(c), chunk_level) for c in out.cell_ids.values]
    bounds = np.cumsum(out.chunks[1])[:-1]
    for b in bounds:
        assert parents[b] != parents[b - 1]
    assert len(out.chunks[1]) == len(set(parents))
    ps, starts, stops = C.parent_index(out)
    for p, a, b in zip(ps, starts, stops, strict=True):
        assert set(parents[a:b]) == {int(p)}
    packed = C.chunk_by_parent(cube, chunk_level, max_cells=300)
    for b in np.cumsum(packed.chunks[1])[:-1]:
        assert parents[b] != parents[b - 1]


def test_select_parents_touches_only_their_chunks(cube):
    out = C.chunk_by_parent(cube, 2)
    ps, starts, stops = C.parent_index(out)
    sel = C.select_parents(out, ps[[3, 10]])
    want = np.r_[np.arange(starts[3], stops[3]), np.arange(starts[10], stops[10])]
    assert np.array_equal(sel.cell_ids.values, out.cell_ids.values[want])
    assert sel.data.numblocks == (out.data.numblocks[0], 2)


def _count_reads(monkeypatch):
    from zarr.storage import LocalStore

    reads = []
    orig = LocalStore.get

    async def get(self, key, *a, **k):
        reads.append(key)
        return await orig(self, key, *a, **k)

    monkeypatch.setattr(LocalStore, "get", get)
    try:  # plain local chunks are read as files, past zarr's store
        from stengine.io._zarr_read import DirectChunks
    except ImportError:
        return reads
    orig_read = DirectChunks._read

    def read(self, idx):
        reads.append(self._file_name(idx))
        return orig_read(self, idx)

    monkeypatch.setattr(DirectChunks, "_read", read)
    return reads


def test_zarr_round_trip_and_reads(cube, tmp_path, monkeypatch):
    out = C.chunk_by_parent(cube, 2)
    store = tmp_path / "cells.zarr"
    C.to_zarr_cells(out, store)
    back = C.open_cells(store)
    assert back.dims == out.dims and back.attrs["chunk_level"] == 2
    assert np.array_equal(back.cell_ids.values, out.cell_ids.values)
    assert np.array_equal(back.values, out.values)
    # every dask chunk along cells is whole parent groups (one Zarr chunk each)
    parents = C.parent_ids(back.cell_ids.values, "h3", 4, 2)
    for b in np.cumsum(back.chunks[1])[:-1]:
        assert parents[b] != parents[b - 1]
    ps = C.parent_index(back)[0]
    reads = _count_reads(monkeypatch)
    one = C.select_parents(back, ps[5:6]).values
    data_reads = [k for k in reads if k.startswith("v/c/")]
    assert np.array_equal(one, C.select_parents(out, ps[5:6]).values)
    # one parent → the one Zarr chunk holding it (time is stored whole)
    assert len(data_reads) == 1
    whole = C.open_cells(store)
    reads.clear()
    assert whole.values.shape == back.shape
    assert len([k for k in reads if k.startswith("v/c/")]) == len(back.chunks[1])


def test_zarr_dask_cube_and_chunk_len(cube, tmp_path):
    out = C.chunk_by_parent(cube.chunk({"time": 1}), 1)
    with pytest.raises(ChunkError, match="chunk_len"):
        C.to_zarr_cells(out, tmp_path / "a.zarr", chunk_len=5)
    C.to_zarr_cells(out, tmp_path / "b.zarr", chunk_len=2000)
    back = C.open_cells(tmp_path / "b.zarr")
    assert np.array_equal(back.values, cube.values)
    with pytest.raises(ValueError, match="not a cell cube store"):
        from stengine.io import to_zarr

        to_zarr(cube.isel(cells=slice(0, 3)).drop_vars("cell_ids"), tmp_path / "c.zarr")
        C.open_cells(tmp_path / "c.zarr")


def test_restrict_and_htm_parents():
    ids = np.arange(8 * 16, 16 * 16, dtype=np.uint64)  # every HTM level-2 trixel
    c = C.make_cell_cube(np.arange(ids.size, dtype=float), ids, grid="htm", level=2,
                         chunk_level=0)
    assert len(c.chunks[0]) == 8
    assert np.array_equal(C.parent_ids(ids, "htm", 2, 1), ids >> np.uint64(2))
    r = C.restrict(c, ids[::3])
    assert np.array_equal(r.cell_ids.values, ids[::3])


def test_generic_to_zarr_and_open_cube_use_the_cell_layout(cube, tmp_path):
    import stengine

    out = C.chunk_by_parent(cube, 2)
    stengine.to_zarr(out, tmp_path / "g.zarr")
    back = stengine.open_cube(tmp_path / "g.zarr")
    assert back.attrs["chunk_level"] == 2
    assert np.array_equal(back.cell_ids.values, out.cell_ids.values)
    assert np.array_equal(back.values, out.values)
    with pytest.raises(ValueError, match="appending to a cell cube"):
        stengine.to_zarr(out, tmp_path / "g.zarr", mode="a", append_dim="time")

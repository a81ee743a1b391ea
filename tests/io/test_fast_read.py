"""The direct chunk read path of local Zarr stores (``DirectChunks``) and "auto" chunks.

Every layout is checked against zarr's own read of the same store; layouts the direct
path does not handle (sharding, transpose, other codecs) must fall back to zarr.
"""

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, TransposeCodec, ZstdCodec

import stengine
from stengine.errors import StoreCorruptError
from stengine.io import _zarr_read
from stengine.io._zarr_read import ChunkReader, DirectChunks, auto_chunks
from stengine.testing import make_cube


def _reader(da):
    """The reader object the dask graph of an opened variable indexes."""
    graph = dict(da.data.__dask_graph__())
    found = [v for v in graph.values() if isinstance(v, DirectChunks | ChunkReader)]
    if not found:  # held inside a task's arguments
        import dask._task_spec as ts

        for v in graph.values():
            if isinstance(v, ts.DataNode) and isinstance(v.value, DirectChunks | ChunkReader):
                found.append(v.value)
    assert len(found) == 1, graph
    return found[0]


def _write(path, data, chunks=(4, 5), **enc):
    ds = xr.Dataset({"v": (("y", "x"), data)})
    ds.to_zarr(path, zarr_format=3, consolidated=False,
               encoding={"v": {"chunks": chunks, **enc}})
    return path


def _expect(path):
    return zarr.open_array(path / "v", mode="r")[...]


DTYPES = ["u1", "i2", "<u2", ">i4", "f4", ">f8", "bool"]
CHUNKINGS = ["auto", {"y": 1, "x": 1}, {"y": 7, "x": 3}, {"y": 8, "x": 10}, {"y": -1, "x": -1},
             {"y": (3, 10, 1), "x": (2, 2, 7)}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_direct_read_equals_zarr(tmp_path, dtype, chunks):
    rng = np.random.default_rng(0)
    data = (rng.random((14, 11)) * 100).astype(dtype)
    dt = np.dtype(dtype)
    enc = {"serializer": BytesCodec(endian="big")} if dt.byteorder == ">" else {}
    path = _write(tmp_path / "s.zarr", data.astype(dt.newbyteorder("=")), **enc)
    ds = stengine.open_cube(path, chunks=chunks)
    assert isinstance(_reader(ds.v), DirectChunks)
    got = ds.v.values
    np.testing.assert_array_equal(got, _expect(path))
    assert got.dtype == _expect(path).dtype


@pytest.mark.parametrize("compressors", [None, [ZstdCodec(level=1, checksum=True)],
                                         [BloscCodec(cname="lz4")], [GzipCodec()]])
def test_direct_read_of_each_compressor(tmp_path, compressors):
    data = np.arange(14 * 11, dtype="f4").reshape(14, 11)
    path = _write(tmp_path / "s.zarr", data, compressors=compressors)
    da = stengine.open_cube(path, chunks={"y": 7, "x": 6}).v
    assert isinstance(_reader(da), DirectChunks)
    np.testing.assert_array_equal(da.values, data)


@pytest.mark.parametrize("enc", [
    {"shards": (8, 10)},
    {"serializer": BytesCodec(), "filters": [TransposeCodec(order=(1, 0))]},
])
def test_other_layouts_fall_back_to_zarr(tmp_path, enc):
    data = np.arange(14 * 11, dtype="i4").reshape(14, 11)
    path = _write(tmp_path / "s.zarr", data, **enc)
    da = stengine.open_cube(path, chunks={"y": 7, "x": 3}).v
    assert isinstance(_reader(da), ChunkReader)
    np.testing.assert_array_equal(da.values, data)


def test_missing_chunk_of_a_partial_store_reads_the_fill_value(tmp_path):
    data = np.arange(14 * 11, dtype="i2").reshape(14, 11) + 1
    ds = xr.Dataset({"v": (("y", "x"), data)})
    ds.to_zarr(tmp_path / "s.zarr", zarr_format=3, consolidated=False,
               encoding={"v": {"chunks": (4, 5), "fill_value": -7}})
    (tmp_path / "s.zarr" / "v" / "c" / "1" / "2").unlink()
    da = stengine.open_cube(tmp_path / "s.zarr", chunks={"y": 8, "x": 11}).v
    assert isinstance(_reader(da), DirectChunks)
    want = data.copy()
    want[4:8, 10:11] = -7
    np.testing.assert_array_equal(da.values, want)


@pytest.fixture
def written(tmp_path):
    s = tmp_path / "c.zarr"
    stengine.to_zarr(make_cube((2, 20, 30), "f4").chunk({"time": 1, "y": 10, "x": 15}), s)
    return s


@pytest.mark.parametrize("chunks", ["auto", {"time": 2, "y": 20, "x": 30}, {"y": 3, "x": 7}])
def test_missing_chunk_of_a_complete_store_is_named(written, chunks):
    (written / "v" / "c" / "1" / "1" / "0").unlink()
    da = stengine.open_cube(written, chunks=chunks)
    assert isinstance(_reader(da), DirectChunks)
    with pytest.raises(StoreCorruptError, match=r"chunk v/c/1/1/0 is missing") as info:
        _ = da.values
    assert str(written) in str(info.value)
    back = stengine.open_cube(written, chunks=chunks, missing="fill").values
    want = make_cube((2, 20, 30), "f4").values
    want[1, 10:, :15] = np.nan
    np.testing.assert_array_equal(back, want)


@pytest.mark.parametrize("damage", [b"", b"not zstd" * 8, None])
@pytest.mark.parametrize("chunks", ["auto", {"time": 2, "y": 20, "x": 30}])
def test_damaged_chunk_is_named(written, damage, chunks):
    f = written / "v" / "c" / "0" / "1" / "1"
    f.write_bytes(f.read_bytes()[:-5] if damage is None else damage)
    with pytest.raises(StoreCorruptError, match=r"chunk v/c/0/1/1 of variable 'v'") as info:
        _ = stengine.open_cube(written, chunks=chunks).values
    assert str(written) in str(info.value)


def test_uncompressed_chunk_of_the_wrong_size_is_named(tmp_path):
    path = _write(tmp_path / "s.zarr", np.ones((14, 11), "f4"), compressors=None)
    f = path / "v" / "c" / "1" / "1"
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(StoreCorruptError, match=r"v/c/1/1 of variable 'v'"):
        _ = stengine.open_cube(path).v.values


def test_dot_separator(tmp_path):
    data = np.arange(14 * 11, dtype="u2").reshape(14, 11)
    z = zarr.create_array(tmp_path / "s.zarr", name="v", shape=data.shape, chunks=(4, 5),
                          dtype="u2", chunk_key_encoding={"name": "default",
                                                          "separator": "."},
                          dimension_names=("y", "x"))
    z[...] = data
    da = stengine.open_cube(tmp_path / "s.zarr", chunks={"y": 6, "x": 6}).v
    assert isinstance(_reader(da), DirectChunks)
    np.testing.assert_array_equal(da.values, data)


def test_a_count_is_one_task_per_chunk_plus_one_combine(tmp_path):
    s = tmp_path / "c.zarr"
    stengine.to_zarr(make_cube((20, 30), "u1").chunk({"y": 4, "x": 5}), s)
    da = stengine.open_cube(s)
    for x in (stengine.ops.local_count(da, 3).data,
              stengine.ops.local_histogram(da).data,
              stengine.ops.local_count(stengine.ops.local_reclassify(da, {3: 4}), 4).data):
        (opt,) = dask.optimize(x)
        keys = {k for k in dict(opt.__dask_graph__()) if isinstance(k, tuple)}
        assert len(keys) == 5 * 6 + 1, sorted(keys)[:5]


# ------------------------------------------------------------------------ auto chunks
def test_auto_chunks_merge_small_store_chunks_of_big_rasters():
    # MERIS size, 512² uint8 store chunks: merged to tasks of at most 6 MiB
    c = auto_chunks((13640, 13640), (512, 512), 1, cores=2)
    assert c[0] % 512 == 0 and c[1] % 512 == 0
    assert 2 << 20 <= c[0] * c[1] <= _zarr_read.TASK_MAX_BYTES
    # many cores: more, smaller tasks, never under the floor
    c64 = auto_chunks((13640, 13640), (512, 512), 1, cores=64)
    assert c64[0] * c64[1] <= c[0] * c[1] and c64[0] * c64[1] >= _zarr_read.TASK_MIN_BYTES
    # big store chunks are kept, never split; small arrays keep their chunks
    assert auto_chunks((41100, 41100), (4096, 4096), 1, cores=2) == (4096, 4096)
    assert auto_chunks((20, 30), (4, 5), 4, cores=2) == (4, 5)
    # leading axes are never merged
    assert auto_chunks((3, 8192, 8192), (1, 256, 256), 4, cores=2)[0] == 1


def test_open_cube_auto_merges_whole_store_chunks(tmp_path):
    s = tmp_path / "big.zarr"
    data = (np.arange(2048 * 2048, dtype=np.uint32).reshape(2048, 2048) % 251).astype("u1")
    da = stengine.cube.make_raster(data).chunk({"y": 256, "x": 256})
    da.name = "v"
    stengine.to_zarr(da, s)
    back = stengine.open_cube(s)
    sizes = back.data.chunksize
    assert sizes[0] % 256 == 0 and sizes[1] % 256 == 0 and sizes[0] * sizes[1] > 256 * 256
    assert back.data.numblocks[0] * back.data.numblocks[1] < 64
    np.testing.assert_array_equal(back.values, data)
    assert stengine.open_cube(s, chunks={"y": 256, "x": 256}).data.chunksize == (256, 256)
    assert stengine.open_cube(s, chunks={}).data.chunksize == (256, 256)  # store chunks

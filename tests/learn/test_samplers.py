"""Samplers: patches equal NumPy slices of the same windows, chunk reads are grouped,
draws are deterministic, shards are disjoint and cover the epoch, errors name the
argument."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely
import torch
from pyproj import Transformer

from stengine.learn import CellSampler, GridSampler, RandomSampler, TripletSampler


def _slice(a, r, c, s):
    return a[..., r:r + s, c:c + s]


def _padded(a, r, c, s, pad=32):
    """The window of ``a`` with NaN outside it (for windows crossing the edge)."""
    p = np.pad(a.astype("f4"), [(0, 0)] * (a.ndim - 2) + [(pad, pad)] * 2,
               constant_values=np.nan)
    return p[..., r + pad:r + pad + s, c + pad:c + pad + s]


def _all(sampler, bs=7):
    out = {}
    for b in sampler.batches(bs):
        for k, v in b.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------ grid: values and reads

def test_grid_patches_equal_numpy_slices(band_cube):
    cube, a = band_cube
    s = GridSampler(cube, 20, 13)
    assert s.channels == ["refl[B1]", "refl[B2]", "refl[B3]", "refl[B4]"]
    got = _all(s)
    rows, cols = got["window"][:, 0], got["window"][:, 1]
    # stride 13 from 0, plus the last window flush with the edge
    assert sorted(set(rows.tolist())) == list(range(0, 96 - 20, 13)) + [76]
    assert sorted(set(cols.tolist())) == list(range(0, 80 - 20, 13)) + [60]
    assert len(s) == len(got["index"]) == 7 * 6
    for k in range(len(rows)):
        np.testing.assert_array_equal(got["x"][k], _slice(a, rows[k], cols[k], 20))
    assert got["x"].dtype == np.float32 and got["x"].shape[1:] == (4, 20, 20)


def test_each_chunk_read_once_for_all_patches(band_cube):
    cube, _ = band_cube
    s = GridSampler(cube, 16, 4)  # 411 overlapping windows over 3x3 blocks of 2 band chunks
    n = sum(len(b["index"]) for b in s.batches(32))
    assert n == len(s) > 300
    assert s.stats["chunks_read"] == 3 * 3 * 2  # every Zarr chunk decoded exactly once
    assert s.stats["blocks_read"] == 9
    # a second epoch reads from the cache
    s.set_epoch(1)
    list(s.batches(32))
    assert s.stats["chunks_read"] == 18


def test_small_cache_still_reads_a_chunk_once_per_batch(band_cube):
    cube, a = band_cube
    s = GridSampler(cube, 16, 8, cache_mb=0)  # evict after each batch
    batches = list(s.batches(64))
    # per batch at most the distinct blocks its windows touch, never once per patch
    assert s.stats["chunks_read"] < len(s)
    b = batches[1]
    r, c = b["window"][5]
    np.testing.assert_array_equal(b["x"][5], _slice(a, r, c, 16))


def test_time_steps_are_channels_and_toi_selects(time_cube):
    cube, a = time_cube
    s = GridSampler(cube, 24, toi=("2020-01-02", "2020-01-04"))
    assert s.channels == ["lt[2020-01-02]", "lt[2020-01-03]", "lt[2020-01-04]"]
    b = next(s.batches(100))
    r, c = b["window"][3]
    np.testing.assert_array_equal(b["x"][3], _slice(a[1:4], r, c, 24))
    assert s.describe()["times"] == ["2020-01-02", "2020-01-03", "2020-01-04"]


def test_dataset_variables_and_nodata(dataset_cube):
    ds, labels, ref = dataset_cube
    s = GridSampler(ds, 16, labels=labels, bands=["alt", "lt"])  # bands: variables, in order
    assert s.channels == ["alt", "lt[2021-01-15]", "lt[2021-02-15]", "lt[2021-03-18]"]
    got = _all(s, 5)
    for k in range(len(got["index"])):
        r, c = got["window"][k]
        alt = _slice(ref["alt"], r, c, 16).astype("f4")
        alt[alt == -1] = np.nan  # integer nodata → NaN in x
        np.testing.assert_array_equal(got["x"][k, 0], alt)
        np.testing.assert_array_equal(got["x"][k, 1:], _slice(ref["lt"], r, c, 16))
        y = _slice(ref["cls"], r, c, 16).astype(np.int64)
        y[y == 0] = -1  # missing labels → -1
        np.testing.assert_array_equal(got["y"][k], y)
    assert got["y"].dtype == np.int64
    assert (got["y"] == -1).sum() == 16 and np.isnan(got["x"][:, 0]).sum() == 4
    sb = GridSampler(ds, 16, bands=["lt"], labels=labels, label_mode="centre")
    b = next(sb.batches(4))
    r, c = b["window"][2]
    assert b["y"][2] == ref["cls"][r + 8, c + 8] and b["y"].shape == (4,)
    assert sb.channels == s.channels[1:]


# ------------------------------------------------------------------ roi, nodata

def test_roi_bbox_in_cube_crs(band_cube):
    cube, a = band_cube
    # x 500000 + 30 * [10, 50) cols, y 4000000 - 30 * [20, 70) rows
    roi = (500000 + 300, 4000000 - 2100, 500000 + 1500, 4000000 - 600)
    s = GridSampler(cube, 10, 10, roi=roi)
    w = _all(s)["window"]
    assert w[:, 0].min() == 20 and w[:, 0].max() + 10 == 70
    assert w[:, 1].min() == 10 and w[:, 1].max() + 10 == 50
    r = RandomSampler(cube, 10, 200, roi=roi, seed=3)
    w = _all(r)["window"]
    assert (w[:, 0] >= 20).all() and (w[:, 0] + 10 <= 70).all()
    assert (w[:, 1] >= 10).all() and (w[:, 1] + 10 <= 50).all()


def test_roi_lonlat_polygon_projected(band_cube):
    cube, _ = band_cube
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    # a triangle in lon/lat over the cube
    pts = [(500000 + 60, 4000000 - 60), (500000 + 2300, 4000000 - 60),
           (500000 + 60, 4000000 - 2800)]
    tri = shapely.Polygon([tr.transform(*p) for p in pts])
    s = RandomSampler(cube, 8, 300, roi=tri, roi_crs="EPSG:4326", seed=0)
    w = _all(s)["window"]
    cx = 500000 + 30 * (w[:, 1] + 4)
    cy = 4000000 - 30 * (w[:, 0] + 4)
    lon, lat = tr.transform(cx, cy)
    assert shapely.contains_xy(tri, lon, lat).all()


def test_max_nodata_skips_patches(band_cube):
    cube, a = band_cube
    bad = np.isnan(a).any(0)
    s = GridSampler(cube, 8, 4, max_nodata=0.05)
    full = GridSampler(cube, 8, 4)
    got = _all(s)
    fr = np.array([_slice(bad, r, c, 8).mean() for r, c in got["window"]])
    assert (fr <= 0.05).all()
    kept = {tuple(w) for w in got["window"]}
    dropped = [tuple(w) for w in _all(full)["window"] if tuple(w) not in kept]
    assert dropped and all(_slice(bad, r, c, 8).mean() > 0.05 for r, c in dropped)
    r = RandomSampler(cube, 8, 100, max_nodata=0.0, seed=1)
    x = _all(r)["x"]
    assert len(x) == 100 and not np.isnan(x).any()


# ------------------------------------------------------------------ random: determinism

def test_random_is_deterministic_for_a_seed(band_cube):
    cube, a = band_cube
    w1 = _all(RandomSampler(cube, 12, 50, seed=7))
    w2 = _all(RandomSampler(cube, 12, 50, seed=7))
    np.testing.assert_array_equal(w1["window"], w2["window"])
    np.testing.assert_array_equal(w1["x"], w2["x"])
    w3 = _all(RandomSampler(cube, 12, 50, seed=8))["window"]
    assert not np.array_equal(np.sort(w1["window"], 0), np.sort(w3, 0))
    s = RandomSampler(cube, 12, 50, seed=7)
    s.set_epoch(1)
    w4 = _all(s)["window"]
    assert not np.array_equal(np.sort(w1["window"], 0), np.sort(w4, 0))
    for k in range(0, 50, 9):
        r, c = w1["window"][k]
        np.testing.assert_array_equal(w1["x"][k], _slice(a, r, c, 12))


def test_getitem_and_len_match_batches(band_cube):
    cube, _ = band_cube
    s = RandomSampler(cube, 12, 30, seed=2)
    b = next(s.batches(30))
    assert len(s) == 30
    for i in (0, 13, 29, -1):
        it = s[i]
        np.testing.assert_array_equal(it["x"], b["x"][i])
        assert it["index"] == b["index"][i]
    with pytest.raises(IndexError):
        s[30]


def test_shards_are_disjoint_interleaved_and_cover_the_epoch(band_cube):
    cube, _ = band_cube
    s = RandomSampler(cube, 12, 103, seed=5)
    s.set_epoch(3)
    whole = [b["index"] for b in s.batches(12)]
    shards = [s.shard(r, 3) for r in range(3)]
    parts = [[b["index"] for b in sh.batches(4)] for sh in shards]
    flat = [np.concatenate(p) for p in parts]
    assert sum(map(len, flat)) == 103 and [len(sh) for sh in shards] == [35, 34, 34]
    assert len(set(np.concatenate(flat).tolist())) == 103
    for k in range(len(whole)):  # union of the ranks' k-th batches of 4 = k-th batch of 12
        union = np.concatenate([p[k] for p in parts if k < len(p)])
        assert sorted(union.tolist()) == sorted(whole[k].tolist())
    st = shards[1].state_dict()
    assert st["rank"] == 1 and st["world_size"] == 3 and st["epoch"] == 3 and st["seed"] == 5
    t = RandomSampler(cube, 12, 103, seed=0)
    t.load_state_dict(st)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in t.batches(4)]), flat[1])


def test_torch_dataloader_workers_split_the_shard(band_cube):
    cube, _ = band_cube
    s = RandomSampler(cube, 12, 40, seed=1)
    ref = {int(i): x for b in s.batches(40) for i, x in zip(b["index"], b["x"], strict=True)}
    dl = torch.utils.data.DataLoader(s, batch_size=8, num_workers=2,
                                     multiprocessing_context="fork")
    seen = []
    for b in dl:
        assert isinstance(b["x"], torch.Tensor) and b["x"].shape[1:] == (4, 12, 12)
        for i, x in zip(b["index"].tolist(), b["x"].numpy(), strict=True):
            np.testing.assert_array_equal(x, ref[i])
            seen.append(i)
    assert sorted(seen) == sorted(ref)


def test_grid_shuffle_is_seeded_and_keeps_the_windows(band_cube):
    cube, _ = band_cube
    a = _all(GridSampler(cube, 16, 8, shuffle=True, seed=1))["index"]
    b = _all(GridSampler(cube, 16, 8, shuffle=True, seed=1))["index"]
    c = _all(GridSampler(cube, 16, 8, shuffle=True, seed=2))["index"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and sorted(a) == sorted(c)


# ------------------------------------------------------------------ cells

def test_cell_patches_are_centred_on_the_cells(lonlat_raster, h3_cells):
    raster, a = lonlat_raster
    s = CellSampler(h3_cells, raster, 9, labels=h3_cells)
    got = _all(s, 50)
    assert len(got["cell"]) == h3_cells.sizes["cells"]
    np.testing.assert_array_equal(got["cell"], h3_cells.cell_ids.values)  # id order
    for k in range(0, len(got["cell"]), 7):
        lat, lon = h3.cell_to_latlng(h3.int_to_str(int(got["cell"][k])))
        centre = got["x"][k, :, 4, 4]  # pixel (S//2, S//2) holds the cell centre
        assert abs(centre[0] - lon) <= 0.025 + 1e-6 and abs(centre[1] - lat) <= 0.025 + 1e-6
        r, c = got["window"][k]
        np.testing.assert_array_equal(got["x"][k], _slice(a, r, c, 9))
    np.testing.assert_array_equal(got["y"], (got["cell"] % np.uint64(5)).astype(np.int64))


def test_cell_sampler_projected_raster_and_raster_labels(band_cube, h3_cells):
    cube, a = band_cube
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(500000 + 1200, 4000000 - 1440)
    from stengine.index import h3 as sth3

    cells = sth3.grid_disk(sth3.lonlat_to_cell(lon, lat, 9), 3).ravel()
    s = CellSampler(cells[cells != 0], cube, 8, labels=cube.isel(band=0))
    got = _all(s)
    fwd = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    clon, clat = sth3.cell_to_lonlat(got["cell"])
    x, y = fwd.transform(clon, clat)
    col = np.floor((x - 500000) / 30).astype(int)
    row = np.floor((4000000 - y) / 30).astype(int)
    np.testing.assert_array_equal(got["window"][:, 0], row - 4)
    np.testing.assert_array_equal(got["window"][:, 1], col - 4)
    for k in range(len(row)):
        np.testing.assert_array_equal(got["x"][k], _padded(a, row[k] - 4, col[k] - 4, 8))
        np.testing.assert_array_equal(got["y"][k], _padded(a[0], row[k] - 4, col[k] - 4, 8))
    assert got["y"].dtype == np.float32 and got["y"].shape[1:] == (8, 8)


def test_cell_window_partly_outside_is_nan(lonlat_raster):
    raster, a = lonlat_raster
    from stengine.index import h3 as sth3

    cell = sth3.lonlat_to_cell(np.array([0.06]), np.array([49.9]), 7)  # near the NW corner
    b = next(CellSampler(cell, raster, 16).batches(1))
    r, c = b["window"][0]
    assert r < 0 and c < 0
    x = b["x"][0]
    assert np.isnan(x[:, : -r]).all() and np.isnan(x[:, :, : -c]).all()
    np.testing.assert_array_equal(x[:, -r:, -c:], a[:, : 16 + r, : 16 + c])


def test_triplets_positive_within_k_negative_outside(lonlat_raster, h3_cells):
    raster, _ = lonlat_raster
    for k in (1, 2):
        s = TripletSampler(h3_cells, raster, 8, k=k, seed=4)
        assert s.kind == "triplet"
        got = _all(s, 64)
        ids = [h3.int_to_str(int(v)) for v in got["cell"]]
        pos = [h3.int_to_str(int(v)) for v in got["positive_cell"]]
        neg = [h3.int_to_str(int(v)) for v in got["negative_cell"]]
        dp = np.array([h3.grid_distance(x, y) for x, y in zip(ids, pos, strict=True)])
        assert ((dp >= 1) & (dp <= k)).all()
        for x, y in zip(ids, neg, strict=True):
            try:
                assert h3.grid_distance(x, y) > k
            except h3.H3FailedError:  # too far apart for a grid distance: outside
                pass
        # the triplet's patches are the cells' patches
        cs = CellSampler(h3_cells, raster, 8)
        cid = {int(c): i for i, c in enumerate(_all(cs)["cell"])}
        j = cid[int(got["positive_cell"][3])]
        np.testing.assert_array_equal(got["positive"][3], cs[j]["x"])
    again = _all(TripletSampler(h3_cells, raster, 8, k=2, seed=4), 64)
    np.testing.assert_array_equal(again["negative_cell"], got["negative_cell"])


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kw, match", [
    (dict(size=200), r"size=200 is larger than the cube \(96×80"),
    (dict(size=0), "size must be a positive integer"),
    (dict(size=8, stride=0), "stride must be a positive integer"),
    (dict(size=8, roi=(0, 0, 10, 10)), "roi .* lies outside the cube"),
    (dict(size=8, bands=["B9"]), r"bands \['B9'\] are not in the cube; its bands are"),
    (dict(size=8, toi=("2020", "2021")), "toi= selects along 'time'"),
    (dict(size=8, max_nodata=2), "max_nodata must be a fraction"),
    (dict(size=8, label_mode="mean"), "label_mode must be"),
])
def test_bad_input_names_the_argument(band_cube, kw, match):
    cube, _ = band_cube
    with pytest.raises((ValueError, TypeError), match=match):
        GridSampler(cube, **kw)


def test_bad_input_time_and_cells(time_cube, lonlat_raster):
    cube, _ = time_cube
    with pytest.raises(ValueError, match=r"toi .* holds none of the cube's times \(2020-01-01"):
        RandomSampler(cube, 8, 10, toi=("2019-01-01", "2019-02-01"))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        RandomSampler(cube, 8, 0)
    raster, _ = lonlat_raster
    from stengine.index import h3 as sth3

    far = sth3.lonlat_to_cell(np.array([100.0]), np.array([-30.0]), 5)
    with pytest.raises(ValueError, match="no cell of cells has its 8×8 window on the raster"):
        CellSampler(far, raster, 8)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        TripletSampler(far, raster, 8, k=0)
    with pytest.raises(ValueError, match="not valid H3 cells"):
        CellSampler(np.array([12345], np.uint64), raster, 8)


def test_pickled_shards_read_the_same_and_threads_share_a_reader(band_cube):
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    cube, _ = band_cube
    s = RandomSampler(cube, 12, 60, seed=9)
    ref = [b["x"] for b in s.shard(1, 2).batches(10)]
    back = pickle.loads(pickle.dumps(s.shard(1, 2)))
    assert back.stats["chunks_read"] == 0 and back.rank == 1  # no cache travels
    for a, b in zip(ref, back.batches(10), strict=True):
        np.testing.assert_array_equal(a, b["x"])
    fresh = RandomSampler(cube, 12, 60, seed=9)
    with ThreadPoolExecutor(2) as ex:  # two ranks as threads of one process
        outs = list(ex.map(lambda r: [b["x"] for b in fresh.shard(r, 2).batches(5)], [0, 1]))
    np.testing.assert_array_equal(np.concatenate(outs[1]), np.concatenate(ref))


def test_time_as_samples(time_cube, dataset_cube):
    cube, a = time_cube
    s = GridSampler(cube, 24, 24, time_as="samples", toi=("2020-01-02", None))
    assert s.channels == ["lt"] and len(s) == 4 * 3 * 3
    got = _all(s, 8)
    assert sorted(set(got["time"].tolist())) == [0, 1, 2, 3]
    for k in range(len(got["index"])):
        r, c = got["window"][k]
        np.testing.assert_array_equal(got["x"][k, 0], _slice(a[1 + got["time"][k]], r, c, 24))
    # 4 time chunks x 3x3 spatial chunks, each decoded once
    assert s.stats["chunks_read"] == 4 * 9
    ds, _, ref = dataset_cube
    r = RandomSampler(ds, 16, 40, seed=3, time_as="samples", bands=["alt", "lt"])
    assert r.channels == ["alt", "lt"]
    b = next(r.batches(40))
    for k in range(0, 40, 5):
        rr, cc = b["window"][k]
        np.testing.assert_array_equal(b["x"][k, 1], _slice(ref["lt"][b["time"][k]], rr, cc, 16))
    assert len(set(b["time"].tolist())) == 3
    with pytest.raises(ValueError, match="time_as must be"):
        GridSampler(cube, 8, time_as="bands")
    with pytest.raises(ValueError, match="time_as='samples' needs a 'time' dim"):
        GridSampler(ds["alt"], 8, time_as="samples")


def test_describe_is_json_and_triplets_iterate_as_a_dataset(band_cube, lonlat_raster, h3_cells):
    import json

    cube, _ = band_cube
    d = json.loads(json.dumps(GridSampler(cube, 16, roi=(500000, 3998000, 501500, 4000000),
                                          max_nodata=0.5).describe()))
    assert d["channels"][0] == "refl[B1]" and d["roi_pixels"] == [0, 67, 0, 50]
    assert d["data_keys"][0].startswith("open_")
    raster, _ = lonlat_raster
    t = TripletSampler(h3_cells, raster, 8, seed=1)
    dl = torch.utils.data.DataLoader(t, batch_size=16)
    b = next(iter(dl))
    assert b["anchor"].shape == (16, 2, 8, 8) and b["negative_cell"].dtype == torch.int64
    assert (b["cell"].numpy().astype(np.uint64) == next(t.batches(16))["cell"]).all()


def test_transform_gets_a_seeded_generator_per_worker(band_cube):
    cube, _ = band_cube

    def jitter(item, rng):
        item["noise"] = rng.random()
        return item

    def run():
        s = RandomSampler(cube, 8, 24, seed=3, transform=jitter)
        dl = torch.utils.data.DataLoader(s, batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
        return {int(it["index"]): float(it["noise"]) for it in dl}

    a, b = run(), run()
    assert a == b and len(a) == 24 and len(set(a.values())) == 24


def test_cell_max_nodata_and_centre_labels(lonlat_raster, h3_cells):
    raster, a = lonlat_raster
    holed = raster.where(raster.x > 5.0)  # west half missing
    s = CellSampler(h3_cells, holed, 8, max_nodata=0.0)
    got = _all(s, 64)
    assert 0 < len(got["cell"]) < h3_cells.sizes["cells"] and not np.isnan(got["x"]).any()
    labels = raster.isel(band=1)  # the latitude as a float label raster
    c = CellSampler(h3_cells, raster, 8, labels=labels, label_mode="centre")
    b = next(c.batches(16))
    np.testing.assert_array_equal(b["y"], b["x"][:, 1, 4, 4])

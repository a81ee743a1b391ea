"""predict and embed as Dask tasks: equal to a direct torch forward, independent of the
chunking, one model load per worker, ONNX, GeoParquet, bad input."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import stengine
from stengine.cube.conventions import make_raster
from stengine.learn import CellSampler, embed, export_onnx, predict, register
from stengine.learn.infer import cache_stats, release
from stengine.learn.registry import ModelSpec, normalise, save_artefact
from stengine.learn.train import ResourceUnavailableError


def fcn_nobias(*, in_channels, n_classes=3, width=6):
    """Three 3×3 convs without bias: receptive radius 3. Windows see zero (normalised
    missing) pixels beyond the raster where a whole-raster pass zero-pads every layer:
    the two agree except in the outer 2 pixels (radius - 1) of the raster."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1, bias=False), nn.Tanh(),
                         nn.Conv2d(width, n_classes, 3, padding=1, bias=False))


def _register():
    register("fcn_nobias", fcn_nobias, replace=True)


_register()


@pytest.fixture(scope="module")
def client(client):
    """conftest's client (the session's 2-worker cluster), with this module's model."""
    client.run(_register)  # custom models: registered where they are loaded
    return client


@pytest.fixture(scope="module")
def raster():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 70, 90)).astype("f4") * 3 + 1
    a[1, 5, 7] = np.nan          # one channel missing: normalised to 0, still predicted
    a[:, 40:44, 50:53] = np.nan  # every channel missing: masked in the output
    return a


@pytest.fixture(scope="module")
def artefact(raster, tmp_path_factory):
    spec = ModelSpec(name="fcn_nobias", params={"in_channels": 4, "n_classes": 3},
                     channels=[f"v[{i}]" for i in range(4)], patch_size=16, output="classes",
                     n_outputs=3, mean=[1.0, 1.0, 0.5, 1.0], std=[3.0, 3.0, 2.0, 3.0])
    return save_artefact(fcn_nobias(in_channels=4), spec,
                         tmp_path_factory.mktemp("art") / "fcn")


def _forward(art, a):
    with torch.no_grad():
        x = normalise(torch.from_numpy(a[None]), art.spec)
        return art.model(x)[0].numpy()


@pytest.mark.parametrize("chunks", [None, 16, 25, ((20, 30, 20), (40, 17, 33))])
def test_predict_equals_direct_forward(client, raster, artefact, chunks):
    cube = make_raster(raster, name="v")
    if chunks is not None:
        cube = cube.chunk({"band": -1, "y": chunks if isinstance(chunks, int) else chunks[0],
                           "x": chunks if isinstance(chunks, int) else chunks[1]})
    pred = predict(artefact, cube, patch=16, overlap=8, output="raw")
    assert pred.dims == ("output", "y", "x") and pred.shape == (3, 70, 90)
    assert any(k.startswith("stengine-predict-") for k in map(str, pred.data.dask.layers))
    got = pred.values
    ref = _forward(artefact, raster)
    missing = np.isnan(raster).all(axis=0)
    assert np.isnan(got[:, missing]).all()
    inner = np.zeros_like(missing)
    inner[2:-2, 2:-2] = True  # the outer 2 px: a whole-raster pass zero-pads each layer
    ok = inner & ~missing
    np.testing.assert_allclose(got[:, ok], ref[:, ok], rtol=1e-4, atol=1e-5)
    # the class output is the argmax, -1 where the input is missing
    cls = predict(artefact, cube, patch=16, overlap=8).values
    assert cls.dtype == np.int16
    np.testing.assert_array_equal(cls[ok], ref.argmax(0)[ok])
    assert (cls[missing] == -1).all()
    xr.testing.assert_equal(pred.x, cube.x)


def test_linear_blend_does_not_depend_on_chunks(client, raster, artefact):
    cube = make_raster(raster, name="v")
    outs = [predict(artefact, cube.chunk({"y": c, "x": c}), patch=16, overlap=6,
                    blend="linear", output="proba").values for c in (17, 40, 90)]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-5, atol=1e-6, equal_nan=True)
    ok = np.isfinite(outs[0]).all(axis=0)
    np.testing.assert_allclose(outs[0][:, ok].sum(0), 1, rtol=1e-5)


@pytest.mark.parametrize("chunks", [25, 40, ((20, 30, 20), (40, 17, 33))])
def test_center_blend_runs_each_window_once(raster, artefact, chunks, monkeypatch):
    """Chunk edges off the window lattice would run the windows they cut in both chunks:
    the output chunks are aligned to the stride, and every window runs in one task."""
    import dask

    from stengine.learn import infer

    seen = []
    call = infer._Runner.__call__
    monkeypatch.setattr(infer._Runner, "__call__", lambda self, x: seen.append(len(x))
                        or call(self, x))
    cy, cx = (chunks, chunks) if isinstance(chunks, int) else chunks
    cube = make_raster(raster, name="v").chunk({"band": -1, "y": cy, "x": cx})
    pred = predict(artefact, cube, patch=16, overlap=8, output="raw")  # stride 8
    for c in pred.chunks[1:]:
        assert not (np.cumsum(c)[:-1] % 8).any() and min(c) >= 16
    with dask.config.set(scheduler="sync"):  # in this process: the runner is counted
        got = pred.values
    assert sum(seen) == math.ceil(70 / 8) * math.ceil(90 / 8)
    ref = predict(artefact, make_raster(raster, name="v"), patch=16, overlap=8,
                  output="raw").values
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_one_model_load_per_worker_and_small_graph(client, raster, tmp_path):
    # a bigger model (~0.6 MB of weights): the tasks must carry only its key and path
    spec = ModelSpec(name="fcn_nobias", params={"in_channels": 4, "n_classes": 3,
                                                "width": 128},
                     channels=[f"v[{i}]" for i in range(4)], patch_size=16, output="classes",
                     n_outputs=3)
    art = save_artefact(fcn_nobias(in_channels=4, width=128), spec, tmp_path / "big")
    weights = (tmp_path / "big" / "weights.pt").stat().st_size
    assert weights > 5e5
    cube = make_raster(raster, name="v").chunk({"y": 16, "x": 16})  # 5 × 6 chunks
    release(client=client)
    pred = predict(art, cube, patch=16, overlap=4, output="raw")
    layer = pred.data.dask.layers[next(k for k in pred.data.dask.layers
                                       if str(k).startswith("stengine-predict-"))]
    assert len(pickle.dumps(dict(layer))) < weights / 20
    pred.compute()
    pred[:, 20:60, 20:60].compute()  # the second job reuses the cached model
    loads = {w: s["loads"].get(art.sha256, 0) for w, s in cache_stats(client=client).items()}
    print("model loads per worker:", loads)
    assert sum(loads.values()) >= 1 and max(loads.values()) == 1
    dropped = release(art.sha256, client=client)
    assert sum(dropped.values()) == sum(loads.values())
    assert all(art.sha256 not in s["models"] for s in cache_stats(client=client).values())


def test_predict_onnx_equals_torch(client, raster, artefact, tmp_path):
    cube = make_raster(raster, name="v").chunk({"y": 35, "x": 45})
    onnx_path = export_onnx(artefact, tmp_path / "m.onnx")
    a = predict(artefact, cube, patch=16, overlap=8, output="raw").values
    b = predict(onnx_path, cube, patch=16, overlap=8, output="raw").values
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_predict_out_writes_zarr(client, raster, artefact, tmp_path):
    cube = make_raster(raster, name="v").chunk({"y": 35, "x": 45})
    lazy = predict(artefact, cube, patch=16, overlap=8)
    back = predict(artefact, cube, patch=16, overlap=8, out=tmp_path / "p.zarr",
                   progress=False)
    np.testing.assert_array_equal(back.values, lazy.values)
    assert back.attrs["nodata"] == -1
    assert stengine.open_cube(tmp_path / "p.zarr").st  # opens as a cube


def test_predict_bad_input(client, raster, artefact, band_cube):
    cube, _ = band_cube
    spec6 = ModelSpec(name="fcn_nobias", params={"in_channels": 6, "n_classes": 2},
                      channels=[f"b{i}" for i in range(6)], patch_size=8, output="classes",
                      n_outputs=2)
    import tempfile

    art6 = save_artefact(fcn_nobias(in_channels=6, n_classes=2), spec6,
                         tempfile.mkdtemp() + "/a6")
    with pytest.raises(ValueError, match=r"takes 6 channels.*cube has 4"):
        predict(art6, cube)
    with pytest.raises(ValueError, match=r"unknown|known models: .*patch_unet"):
        predict("no_such_model", cube)
    with pytest.raises(ValueError, match=r"registered architecture without weights"):
        predict("patch_unet", cube)
    small = make_raster(raster[:, :10, :10], name="v")
    with pytest.raises(ValueError, match=r"patch=16 must be between 1 and the cube's size"):
        predict(artefact, small)
    named = make_raster(raster, name="w")
    with pytest.raises(ValueError, match=r"channel 0 of the cube is 'w\[0\]'.*'v\[0\]'"):
        predict(artefact, named)
    assert predict(artefact, named, match="position").shape == (70, 90)
    with pytest.raises(ValueError, match="overlap=16"):
        predict(artefact, make_raster(raster, name="v"), overlap=16)
    with pytest.raises(ResourceUnavailableError, match="GPU"):
        predict(artefact, make_raster(raster, name="v"), resources={"GPU": 1})


def test_embed_cells(client, lonlat_raster, h3_cells, tmp_path):
    from stengine.learn import build

    cube, _ = lonlat_raster
    smp = CellSampler(h3_cells, cube, 8)
    spec = ModelSpec.for_sampler("triplet_cnn", smp, params={"dim": 5, "width": 4,
                                                             "blocks": 2})
    torch.manual_seed(1)
    art = save_artefact(build("triplet_cnn", **spec.params), spec, tmp_path / "emb")
    out = embed(art, h3_cells, cube, batch_size=32, cells_per_task=40, out=tmp_path / "pq",
                progress=False)
    assert out.dims == ("cells", "feature") and out.shape[1] == 5
    ref_ids, ref = [], []
    for b in smp.batches(64):
        ref_ids.append(b["cell"])
        ref.append(art.run(b["x"]))
    np.testing.assert_array_equal(out.cell_ids.values, np.concatenate(ref_ids))
    np.testing.assert_allclose(out.values, np.concatenate(ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out.values, axis=1), 1, rtol=1e-5)
    import geopandas as gpd

    parts = sorted((tmp_path / "pq").glob("parent=*/part.parquet"))
    assert len(parts) >= 2
    g = gpd.read_parquet(parts[0])
    assert g.crs.to_epsg() == 4326 and {"cell", "f0", "f4"} <= set(g.columns)
    total = sum(len(gpd.read_parquet(p)) for p in parts)
    assert total == out.sizes["cells"]

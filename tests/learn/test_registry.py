"""Model registry, artefacts (weights + spec + sha256) and ONNX: outputs equal torch's,
tampering and mismatched specs are clear errors."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from stengine.errors import StoreCorruptError, StoreNotFoundError
from stengine.learn import GridSampler, build, export_onnx, load, models, register
from stengine.learn.registry import (
    Artefact,
    ModelSpec,
    UnknownModelError,
    load_weights,
    normalise,
    save_artefact,
)

KINDS = {"patch_unet": ("classes", dict(n_classes=3)),
         "patch_classifier": ("label", dict(n_classes=3)),
         "triplet_cnn": ("vector", dict(dim=8))}


def _spec(name, c=4, size=16, **extra):
    output, p = KINDS[name]
    params = dict(in_channels=c, **p, **extra)
    return ModelSpec(name=name, params=params, channels=[f"b{i}" for i in range(c)],
                     patch_size=size, output=output, n_outputs=next(iter(p.values())),
                     mean=list(np.arange(c) + 1.0), std=list(np.arange(c) + 2.0))


def _trained(spec, seed=0):
    torch.manual_seed(seed)
    m = spec.build()
    # non-trivial BatchNorm running stats: one forward in train mode
    m.train()
    with torch.no_grad():
        m(torch.randn(8, len(spec.channels), spec.patch_size, spec.patch_size) * 3 + 1)
    return m.eval()


def _x(n=5, c=4, s=16, seed=0):
    x = np.random.default_rng(seed).normal(2, 3, (n, c, s, s)).astype("f4")
    x[0, 1, 2:5, 3] = np.nan
    return x


def test_models_lists_builtins_and_unknown_names_list_them():
    assert {"patch_unet", "patch_classifier", "triplet_cnn"} <= set(models())
    with pytest.raises(UnknownModelError, match=r"unknown model 'unet9'; known models: \[") as e:
        build("unet9")
    assert isinstance(e.value, KeyError) and "patch_unet" in str(e.value)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_builtin_output_shapes(name):
    spec = _spec(name)
    y = spec.build().eval()(torch.zeros(3, 4, 16, 16))
    want = {"classes": (3, 3, 16, 16), "label": (3, 3), "vector": (3, 8)}[spec.output]
    assert tuple(y.shape) == want
    if spec.output == "vector":
        torch.testing.assert_close(y.norm(dim=1), torch.ones(3))
    if name == "patch_unet":  # odd sizes work too
        assert tuple(spec.build()(torch.zeros(1, 4, 13, 13)).shape) == (1, 3, 13, 13)


def test_register_and_replace():
    @register("tiny_test_model", replace=True)
    def tiny(*, in_channels, n_classes=2):
        return nn.Conv2d(in_channels, n_classes, 1)

    assert "tiny_test_model" in models()
    assert isinstance(build("tiny_test_model", in_channels=3), nn.Conv2d)
    with pytest.raises(ValueError, match="exists; pass replace=True"):
        register("tiny_test_model", tiny)
    with pytest.raises(ValueError, match="exists"):
        register("patch_unet", tiny)


def test_entry_point_models_load_lazily(tmp_path, monkeypatch):
    (tmp_path / "stx_models_plugin.py").write_text(textwrap.dedent("""
        from torch import nn
        def factory(*, in_channels, n_classes=2):
            return nn.Conv2d(in_channels, n_classes, 3, padding=1)
        """))
    dist = tmp_path / "stx_models_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stx-models-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[stengine.models]\n"
                                           "plugin_conv = stx_models_plugin:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin_conv" in models()
    assert "stx_models_plugin" not in sys.modules  # listed, not imported
    m = build("plugin_conv", in_channels=4)
    assert "stx_models_plugin" in sys.modules and isinstance(m, nn.Conv2d)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_artefact_roundtrip_and_onnx_equal_torch(tmp_path, name):
    spec = _spec(name)
    model = _trained(spec)
    art = save_artefact(model, spec, tmp_path / "art")
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["sha256", "spec.json",
                                                                    "weights.pt"]
    back = load(tmp_path / "art")
    assert isinstance(back, Artefact) and back.spec == spec and back.sha256 == art.sha256
    x = _x()
    ref = art.run(x)
    direct = model(normalise(torch.from_numpy(x), spec)).detach().numpy()
    np.testing.assert_array_equal(ref, direct)
    np.testing.assert_array_equal(back.run(x), ref)
    assert np.isfinite(ref).all()  # NaN → 0 after normalisation
    path = export_onnx(back, tmp_path / "m.onnx")
    onx = load(path)
    assert onx.spec == spec
    for n in (5, 1, 7):  # dynamic batch axis
        xb = _x(n, seed=n)
        np.testing.assert_allclose(onx.run(xb), back.run(xb), rtol=1e-4, atol=1e-5)


def test_tampered_artefact_is_an_error_naming_the_path(tmp_path):
    spec = _spec("patch_classifier")
    save_artefact(_trained(spec), spec, tmp_path / "a")
    w = tmp_path / "a" / "weights.pt"
    data = bytearray(w.read_bytes())
    data[-20] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=f"{tmp_path / 'a'}.*fails its sha256 check"):
        load(tmp_path / "a")
    save_artefact(_trained(spec), spec, tmp_path / "b")
    s = tmp_path / "b" / "spec.json"
    s.write_text(s.read_text().replace('"n_outputs": 3', '"n_outputs": 4'))
    with pytest.raises(StoreCorruptError, match="sha256"):
        load(tmp_path / "b")
    with pytest.raises(StoreNotFoundError, match="no model artefact"):
        load(tmp_path / "nothing")


def test_weights_of_another_spec_do_not_load(tmp_path):
    spec = _spec("patch_classifier")
    art = save_artefact(_trained(spec), spec, tmp_path / "a")
    other = _spec("patch_classifier", c=6)
    with pytest.raises(ValueError, match=r"do not fit this PatchClassifier: .*shapes"):
        load_weights(other.build(), art.model.state_dict(), source="the checkpoint")
    with pytest.raises(ValueError, match=r"another model: params.*channels"):
        other.check_compatible(art.spec, what="the weights at a")
    with pytest.raises(ValueError, match="missing .*unexpected"):
        load_weights(_spec("patch_unet").build(), art.model.state_dict())


def test_check_sampler_names_channels(band_cube):
    cube, _ = band_cube
    s = GridSampler(cube, 16)
    spec6 = _spec("patch_unet", c=6)
    with pytest.raises(ValueError, match=r"expects 6 channels \['b0'.*the sampler gives 4: "
                                         r"\['refl\[B1\]'"):
        spec6.check_sampler(s)
    spec = ModelSpec.for_sampler("patch_unet", s, params={"n_classes": 3})
    spec.check_sampler(s)
    assert spec.channels == s.channels and spec.n_outputs == 3 and spec.output == "classes"
    x = next(s.batches(64))["x"]
    np.testing.assert_allclose(spec.mean, np.nanmean(x, axis=(0, 2, 3)), rtol=1e-3)


def test_normalise_nan_policy_and_spec_errors():
    s = ModelSpec("triplet_cnn", {}, ["a", "b"], 4, "vector", 8, mean=[1, 2], std=[2, 4])
    x = np.array([[[[3.0, np.nan]], [[6.0, 2.0]]]], np.float32)
    np.testing.assert_array_equal(normalise(x, s), [[[[1.0, 0.0]], [[1.0, 0.0]]]])
    t = normalise(torch.from_numpy(x), s)
    assert isinstance(t, torch.Tensor) and not torch.isnan(t).any()
    with pytest.raises(ValueError, match="output must be one of"):
        ModelSpec("x", {}, ["a"], 4, "pixels", 2)
    with pytest.raises(ValueError, match="std must be positive"):
        ModelSpec("x", {}, ["a"], 4, "label", 2, std=[0.0])
    with pytest.raises(ValueError, match="export_onnx: a bare module needs spec="):
        export_onnx(nn.Conv2d(1, 1, 1), "x.onnx")

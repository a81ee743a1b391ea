"""Models by name, artefacts (weights + spec + sha256) and ONNX.

* :func:`register` / :func:`models` / :func:`build`: a model is a factory
  ``f(**params) -> torch.nn.Module`` registered by name; built-ins are ``patch_unet``
  (per-pixel classes), ``patch_classifier`` (per-patch label) and ``triplet_cnn``
  (per-patch vector). Third-party packages add theirs through the ``stengine.models``
  entry-point group (``name = "pkg.module:factory"``), loaded only when first built.
* :class:`ModelSpec`: what a model takes and gives (channels and their names, patch
  size, dtype, per-channel mean/std, output kind and size).
* :class:`Artefact`: a folder ``weights.pt`` (torch ``state_dict``) + ``spec.json`` +
  ``sha256`` (of the weights' bytes then the spec's); :func:`load` verifies the hash.
* :func:`export_onnx`: the model with its normalisation baked in (raw sampler ``x`` in,
  dynamic batch axis), the spec in the file's metadata; ``load("m.onnx")`` runs it with
  onnxruntime behind the same ``run(x) -> numpy`` as a torch artefact.

NaN policy: :func:`normalise` computes ``(x - mean) / std`` per channel, then sets NaN
(missing data) to 0, i.e. to the channel mean. ``Artefact.run`` and ONNX files apply it
themselves; ``Artefact.model`` expects normalised input.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import StoreCorruptError, StoreNotFoundError
from . import _models

__all__ = [
    "register",
    "models",
    "build",
    "ModelSpec",
    "Artefact",
    "OnnxArtefact",
    "UnknownModelError",
    "save_artefact",
    "load",
    "load_weights",
    "export_onnx",
    "normalise",
    "channel_stats",
    "OUTPUTS",
]

ENTRY_POINT_GROUP = "stengine.models"
OUTPUTS = ("classes", "label", "vector")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_SPEC_KEY = "stengine_spec"


class UnknownModelError(KeyError):
    """A model name that is neither registered, built in nor an entry point."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def register(name: str, factory: Callable[..., nn.Module] | None = None, *,
             replace: bool = False):
    """Register ``factory(**params) -> nn.Module`` as ``name`` (also as a decorator).

    Examples
    --------
    >>> from torch import nn
    >>> @register("tiny_linear_doc", replace=True)
    ... def tiny(*, in_channels, n_outputs=2):
    ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(n_outputs))
    >>> "tiny_linear_doc" in models()
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string; got {name!r}")
    if factory is None:
        return lambda f: register(name, f, replace=replace)
    if not callable(factory):
        raise TypeError(f"register: factory for {name!r} must be callable; got "
                        f"{type(factory).__name__}")
    if not replace and (name in _REGISTRY or name in _models.BUILTINS):
        raise ValueError(f"register: a model named {name!r} exists; pass replace=True to "
                         "override it, or choose another name.")
    _REGISTRY[name] = factory
    return factory


def _entry_points() -> dict:
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 - broken metadata must not break the registry
        return {}
    return {ep.name: ep for ep in eps}


def models() -> list[str]:
    """Names of every buildable model: built-ins, registered, entry points (not loaded)."""
    return sorted(set(_models.BUILTINS) | set(_REGISTRY) | set(_entry_points()))


def _factory(name: str):
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _models.BUILTINS:
        return _models.BUILTINS[name][0]
    ep = _entry_points().get(name)
    if ep is not None:
        try:
            f = ep.load()
        except Exception as e:
            raise ImportError(f"build: the entry point {name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP!r} failed to load: {e}") from e
        _REGISTRY[name] = f
        return f
    raise UnknownModelError(
        f"build: unknown model {name!r}; known models: {models()}. Register one with "
        f"stengine.learn.register(name, factory) or install a package with a "
        f"{ENTRY_POINT_GROUP!r} entry point.")


def build(name: str, **params) -> nn.Module:
    """A new module from the model registered as ``name``.

    Examples
    --------
    >>> m = build("patch_classifier", in_channels=4, n_classes=3)
    >>> tuple(m(torch.zeros(2, 4, 16, 16)).shape)
    (2, 3)
    """
    return _factory(name)(**params)


# --------------------------------------------------------------------------- spec

@dataclass(frozen=True)
class ModelSpec:
    """What a model takes and gives; stored as ``spec.json`` beside its weights.

    ``params`` rebuild the module (``build(name, **params)``); ``channels`` name its
    input channels in order (a sampler's ``channels``); ``mean``/``std`` normalise them;
    ``output`` is ``"classes"`` (per pixel, ``(B, n_outputs, S, S)``), ``"label"``
    (per patch, ``(B, n_outputs)``) or ``"vector"`` (per patch embedding).
    """

    name: str
    params: dict
    channels: list
    patch_size: int
    output: str
    n_outputs: int
    mean: list = field(default=None)
    std: list = field(default=None)
    dtype: str = "float32"

    def __post_init__(self):
        c = list(map(str, self.channels))
        object.__setattr__(self, "channels", c)
        object.__setattr__(self, "params", dict(self.params))
        if self.output not in OUTPUTS:
            raise ValueError(f"ModelSpec: output must be one of {list(OUTPUTS)}; got "
                             f"{self.output!r}")
        for k in ("mean", "std"):
            v = getattr(self, k)
            v = [0.0 if k == "mean" else 1.0] * len(c) if v is None else [float(a) for a in v]
            if len(v) != len(c):
                raise ValueError(f"ModelSpec: {k} has {len(v)} values for {len(c)} channels")
            object.__setattr__(self, k, v)
        if any(s <= 0 or not np.isfinite(s) for s in self.std):
            raise ValueError(f"ModelSpec: std must be positive and finite; got {self.std}")
        object.__setattr__(self, "patch_size", int(self.patch_size))
        object.__setattr__(self, "n_outputs", int(self.n_outputs))

    def __hash__(self):
        return hash(self.to_json())

    @classmethod
    def for_sampler(cls, name: str, sampler, *, params: dict | None = None,
                    n_outputs: int | None = None, output: str | None = None,
                    stats_batches: int = 4, batch_size: int = 64) -> ModelSpec:
        """A spec for a built-in or registered model fed by ``sampler``: channels and
        patch size from it, mean/std from its first ``stats_batches`` batches (NaN
        skipped), ``in_channels`` added to ``params``."""
        params = dict(params or {})
        params.setdefault("in_channels", len(sampler.channels))
        if name in _models.BUILTINS:
            _, kind, key = _models.BUILTINS[name]
            output = output or kind
            n_outputs = n_outputs or params.get(key)
            if n_outputs is None and kind == "vector":
                n_outputs = 64
        if output is None or n_outputs is None:
            raise ValueError(f"ModelSpec.for_sampler: pass output= and n_outputs= for model "
                             f"{name!r}")
        mean, std = channel_stats(sampler, batches=stats_batches, batch_size=batch_size)
        return cls(name=name, params=params, channels=sampler.channels,
                   patch_size=sampler.size, output=output, n_outputs=n_outputs,
                   mean=mean, std=std)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def build(self) -> nn.Module:
        """A new (untrained) module of this spec."""
        return build(self.name, **self.params)

    def check_sampler(self, sampler) -> None:
        """Raise ValueError, naming both channel lists, when ``sampler`` does not feed
        this model's channels (count, names and order)."""
        got = list(sampler.channels)
        if got != self.channels:
            how = (f"{len(self.channels)} channels" if len(got) != len(self.channels)
                   else "these channels in this order")
            raise ValueError(
                f"model {self.name!r} expects {how} {self.channels}; the sampler gives "
                f"{len(got)}: {got}. Build the sampler with bands=/toi= matching the model, "
                "or train a model for these channels.")

    def check_compatible(self, other: ModelSpec, *, what: str = "weights") -> None:
        """Raise ValueError if ``other`` describes another architecture or input."""
        diff = [f"{k}: {getattr(other, k)!r} vs {getattr(self, k)!r}"
                for k in ("name", "params", "channels", "output", "n_outputs")
                if getattr(other, k) != getattr(self, k)]
        if diff:
            raise ValueError(f"{what} are for another model: " + "; ".join(diff)
                             + " (theirs vs this model's). Build the model from their spec "
                             "(ModelSpec.build) or start from scratch.")


def _as_tensor_stats(spec: ModelSpec, like):
    c = len(spec.channels)
    mean = np.asarray(spec.mean, np.float32).reshape(1, c, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, c, 1, 1)
    if isinstance(like, torch.Tensor):
        return (torch.as_tensor(mean, device=like.device),
                torch.as_tensor(std, device=like.device))
    return mean, std


def normalise(x, spec: ModelSpec):
    """``(x - mean) / std`` per channel, NaN → 0; numpy or torch ``(B, C, S, S)``/``(C, S, S)``.

    Examples
    --------
    >>> s = ModelSpec("triplet_cnn", {}, ["a"], 4, "vector", 8, mean=[1.0], std=[2.0])
    >>> normalise(np.array([[[[3.0, np.nan]]]], np.float32), s).tolist()
    [[[[1.0, 0.0]]]]
    """
    squeeze = x.ndim == 3
    if squeeze:
        x = x[None]
    if x.shape[1] != len(spec.channels):
        raise ValueError(f"normalise: x has {x.shape[1]} channels; model {spec.name!r} "
                         f"expects {len(spec.channels)} {spec.channels}")
    mean, std = _as_tensor_stats(spec, x)
    y = (x - mean) / std
    if isinstance(y, torch.Tensor):
        y = torch.nan_to_num(y, nan=0.0)
    else:
        y = np.where(np.isnan(y), np.float32(0), y).astype(np.float32, copy=False)
    return y[0] if squeeze else y


def channel_stats(sampler, *, batches: int = 4, batch_size: int = 64):
    """Per-channel (mean, std) over the sampler's first batches, NaN skipped (std ≥ 1e-6)."""
    s = np.zeros(len(sampler.channels))
    s2 = np.zeros_like(s)
    n = np.zeros_like(s)
    for k, b in enumerate(sampler.batches(batch_size)):
        if k >= batches:
            break
        for key in ("x", "anchor"):
            if key in b:
                x = b[key].astype(np.float64)
                ok = ~np.isnan(x)
                s += np.where(ok, x, 0).sum(axis=(0, 2, 3))
                s2 += np.where(ok, x * x, 0).sum(axis=(0, 2, 3))
                n += ok.sum(axis=(0, 2, 3))
    mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    var = np.where(n > 0, s2 / np.maximum(n, 1) - mean**2, 1.0)
    std = np.sqrt(np.maximum(var, 1e-12))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()


# --------------------------------------------------------------------------- artefacts

def _sha(weights: bytes, spec_json: bytes) -> str:
    h = hashlib.sha256()
    h.update(weights)
    h.update(spec_json)
    return h.hexdigest()


class _RunMixin:
    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"run: x must be a (B, C, S, S) batch; got shape {x.shape}")
        if self.spec is not None and x.shape[1] != len(self.spec.channels):
            raise ValueError(f"run: x has {x.shape[1]} channels; model {self.spec.name!r} "
                             f"expects {len(self.spec.channels)} {self.spec.channels}")
        return x


class Artefact(_RunMixin):
    """A trained torch model and its spec: ``.model`` (eval mode), ``.spec``, ``.sha256``,
    ``.path`` (where it was saved or loaded from, or None)."""

    def __init__(self, model: nn.Module, spec: ModelSpec, *, sha256: str | None = None,
                 path: str | None = None):
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"Artefact: spec must be a ModelSpec; got {type(spec).__name__}")
        self.model = model.eval()
        self.spec = spec
        self.path = path
        self.sha256 = sha256 or _sha(_weights_bytes(model), spec.to_json().encode())

    def __repr__(self):
        return (f"Artefact({self.spec.name!r}, channels={len(self.spec.channels)}, "
                f"output={self.spec.output!r}, sha256={self.sha256[:12]}…, path={self.path!r})")

    def save(self, path) -> Artefact:
        """Write the artefact folder (atomically: written aside, renamed last)."""
        return save_artefact(self.model, self.spec, path)

    @torch.no_grad()
    def run(self, x, *, device=None) -> np.ndarray:
        """Raw sampler patches ``(B, C, S, S)`` → the model's outputs as float32 numpy
        (normalised first, NaN policy applied)."""
        x = self._x(x)
        p = next(self.model.parameters(), None)
        dev = device or (p.device if p is not None else "cpu")
        t = normalise(torch.from_numpy(x).to(dev), self.spec)
        return self.model(t).float().cpu().numpy()


def _weights_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def save_artefact(model: nn.Module, spec: ModelSpec, path) -> Artefact:
    """Save ``model``'s weights with ``spec`` as an artefact folder at ``path``."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"save_artefact: spec must be a ModelSpec; got {type(spec).__name__}")
    path = Path(path)
    weights = _weights_bytes(model)
    spec_json = spec.to_json().encode()
    sha = _sha(weights, spec_json)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise OSError(f"save_artefact: cannot write under {str(path.parent)!r}: {e}. Pass a "
                      "writable path.") from e
    (tmp / "weights.pt").write_bytes(weights)
    (tmp / "spec.json").write_bytes(spec_json)
    (tmp / "sha256").write_text(sha + "\n")
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Artefact(model, spec, sha256=sha, path=str(path))


def load_weights(model: nn.Module, state: dict, *, source: str = "weights") -> nn.Module:
    """``model.load_state_dict(state)`` with an error that says what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{'…' if len(extra) > 5 else ''}")
        if shapes:
            parts.append("shapes (theirs vs model's) " + "; ".join(shapes[:5]))
        raise ValueError(f"{source} do not fit this {type(model).__name__}: "
                         + ", ".join(parts) + ". They are from another model or spec; build "
                         "the model from their spec.")
    model.load_state_dict(state)
    return model


def load(path, *, device=None, providers=None):
    """An artefact folder → :class:`Artefact` (hash verified); a ``.onnx`` file →
    :class:`OnnxArtefact` (onnxruntime; CUDA first where available)."""
    p = Path(path)
    if str(path).endswith(".onnx"):
        return OnnxArtefact(p, providers=providers)
    if not p.is_dir():
        raise StoreNotFoundError(f"load: no model artefact at {str(p)!r} (a folder with "
                                 "weights.pt, spec.json and sha256, or a .onnx file)")
    try:
        weights = (p / "weights.pt").read_bytes()
        spec_json = (p / "spec.json").read_bytes()
        want = (p / "sha256").read_text().strip()
    except FileNotFoundError as e:
        raise StoreCorruptError(f"load: the artefact at {str(p)!r} lacks "
                                f"{Path(e.filename).name}; save it again with "
                                "save_artefact(model, spec, path)") from e
    got = _sha(weights, spec_json)
    if got != want:
        raise StoreCorruptError(f"load: the artefact at {str(p)!r} fails its sha256 check "
                                f"(stored {want[:12]}…, files hash to {got[:12]}…): "
                                "weights.pt or spec.json changed after it was saved. Save it "
                                "again or restore the original files.")
    spec = ModelSpec.from_dict(json.loads(spec_json))
    model = spec.build()
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    load_weights(model, state, source=f"the weights in {str(p)!r}")
    if device is not None:
        model = model.to(device)
    return Artefact(model, spec, sha256=got, path=str(p))


# --------------------------------------------------------------------------- ONNX

class _WithNormalisation(nn.Module):
    def __init__(self, model, spec):
        super().__init__()
        self.model = model
        c = len(spec.channels)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, x):
        y = (x - self.mean) / self.std
        return self.model(torch.where(torch.isnan(y), torch.zeros_like(y), y))


def export_onnx(model_or_artefact, path, *, spec: ModelSpec | None = None,
                opset: int = 17) -> str:
    """Write an ONNX file (dynamic batch axis) taking raw sampler patches.

    ``model_or_artefact``: an :class:`Artefact` (its spec is used) or a module with
    ``spec=``. Normalisation and the NaN policy are part of the graph; the spec is in
    the file's metadata (``stengine_spec``), so :func:`load` gives an
    :class:`OnnxArtefact` with the same ``run``. Returns the path.
    """
    if isinstance(model_or_artefact, Artefact):
        model, spec = model_or_artefact.model, spec or model_or_artefact.spec
    elif isinstance(model_or_artefact, nn.Module):
        model = model_or_artefact
        if spec is None:
            raise ValueError("export_onnx: a bare module needs spec= (a ModelSpec: channels, "
                             "patch size, normalisation); or pass an Artefact.")
    else:
        raise TypeError("export_onnx: model_or_artefact must be an Artefact or a torch "
                        f"nn.Module; got {type(model_or_artefact).__name__}")
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    wrapped = _WithNormalisation(model.eval(), spec).cpu()
    dev = next(model.parameters(), torch.empty(0)).device
    wrapped.model.to("cpu")
    x = torch.zeros(2, len(spec.channels), spec.patch_size, spec.patch_size)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(wrapped, (x,), str(tmp), dynamo=False, input_names=["x"],
                              output_names=["y"], opset_version=opset,
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        m = onnx.load(str(tmp))
        entry = m.metadata_props.add()
        entry.key, entry.value = _SPEC_KEY, spec.to_json()
        onnx.save(m, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        model.to(dev)
        model.train(was_training)
    return str(path)


class OnnxArtefact(_RunMixin):
    """An ONNX model run by onnxruntime: ``.spec`` (from the file's metadata, or None),
    ``.sha256`` (of the file), ``.path``, ``run(x) -> numpy`` on raw patches."""

    model = None

    def __init__(self, path, *, providers=None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise StoreNotFoundError(f"load: no ONNX file at {str(path)!r}")
        data = path.read_bytes()
        self.path = str(path)
        self.sha256 = hashlib.sha256(data).hexdigest()
        avail = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in avail]
        try:
            self.session = ort.InferenceSession(data, providers=providers)
        except Exception as e:
            raise StoreCorruptError(f"load: onnxruntime cannot read {str(path)!r}: {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = ModelSpec.from_dict(json.loads(meta[_SPEC_KEY])) if _SPEC_KEY in meta \
            else None
        self._input = self.session.get_inputs()[0].name

    def __repr__(self):
        name = self.spec.name if self.spec else "?"
        return f"OnnxArtefact({name!r}, path={self.path!r}, sha256={self.sha256[:12]}…)"

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, d):
        self.__init__(d["path"])

    def run(self, x) -> np.ndarray:
        """Raw sampler patches ``(B, C, S, S)`` → outputs (float32 numpy)."""
        return np.asarray(self.session.run(None, {self._input: self._x(x)})[0], np.float32)

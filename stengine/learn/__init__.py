"""Deep learning on the cluster: samplers over cubes and cells, a model registry with
artefacts and ONNX export, training and batch inference as Dask tasks.

Needs the ``learn`` extra (``pip install 'stengine[learn]'``: CPU torch, onnxruntime,
nvidia-ml-py). ``import stengine`` never imports torch; this package does.

Layout: ``samplers`` (where and what to read; chunk-grouped reads), ``registry`` (models
by name, artefacts = weights + spec + sha256, ONNX), ``train`` (``fit``: one Dask task
per rank, DDP, checkpoints, resume), ``infer`` (``predict``, ``embed``, the per-worker
model cache), ``monitor`` (metrics stream, NVML GPU status).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "stengine.learn needs the learn extra (torch, onnxruntime, nvidia-ml-py): "
        "pip install 'stengine[learn]'") from e

from .infer import embed, predict
from .monitor import gpu_status
from .registry import build, export_onnx, load, models, register
from .samplers import CellSampler, GridSampler, RandomSampler, TripletSampler
from .train import fit
from .vectors import VectorIndex

__all__ = [
    "GridSampler",
    "RandomSampler",
    "CellSampler",
    "TripletSampler",
    "register",
    "build",
    "models",
    "load",
    "fit",
    "predict",
    "embed",
    "export_onnx",
    "gpu_status",
    "VectorIndex",
]

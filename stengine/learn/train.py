"""Training as Dask tasks: ``fit`` runs one task per rank, pinned to its worker.

Shape (Ray Train's, not dask-pytorch-ddp's):

- One task per rank, submitted with ``workers=[address]``, ``allow_other_workers=False``
  and ``retries=0`` under the key ``stengine-fit-rank-<r>-<job>-<attempt>``, so the
  dashboard's task stream names it and Dask never reruns one rank alone (the others
  would wait for it forever).
- ``workers=N > 1``: torch DDP; gloo on CPU workers, NCCL on GPU workers. Rank 0's
  worker finds a free port (``client.run`` there); every rank calls
  ``init_process_group(backend, init_method="tcp://host:port", rank=, world_size=,
  timeout=)`` with its own values (never through ``os.environ``, which the threads of a
  worker share).
- The driver (a thread behind :class:`TrainJob`) watches the gang. When a rank fails
  with a lost worker or a broken collective, every rank is cancelled and the whole gang
  restarts from the last checkpoint (at most ``max_restarts`` times). An error of the
  user's code (a bad loss, a shape mismatch) fails the job at once: rerunning it would
  fail the same way.
- Requested resources that no worker advertises fail before anything is submitted,
  with an error that says how to get such workers; nothing waits in ``no-worker``.

Checkpoints (rank 0, after every epoch and every ``checkpoint_every`` steps) hold the
model, optimiser and LR scheduler states, the sampler's state and epoch, the torch /
NumPy / Python RNG states of every rank, the metrics history and the lineage (the data
each run trained on, ``sampler.describe()``). They go to any fsspec path: a directory
of ``ckpt-e<epoch>-s<step>.pt`` files written aside (a temporary name, then
``os.replace`` locally), committed by rewriting ``latest.json`` last. They load with
``torch.load(weights_only=True)``: nothing in them is unpickled code.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import torch

from ..errors import StEngineError
from ..io._atomic import _fsync_dir
from . import monitor

__all__ = ["fit", "TrainJob", "FitResult", "ResourceUnavailableError", "load_checkpoint",
           "latest_checkpoint"]

_FORMAT = "stengine-checkpoint/1"
_LOSSES = ("cross_entropy", "mse", "l1", "triplet")
_OPTIMIZERS = ("adam", "adamw", "sgd")


class ResourceUnavailableError(StEngineError, RuntimeError):
    """No worker (or too few) can give what a learn job asks for (GPU, number of ranks)."""


# --------------------------------------------------------------------------- results


@dataclass
class FitResult:
    """What a finished :func:`fit` returns.

    ``artefact`` (the trained model, see :mod:`stengine.learn.registry`), ``history``
    (one dict per epoch: ``epoch``, ``loss``, ``samples_per_s``, ``seconds``, ``lr``),
    ``checkpoint`` (the last committed checkpoint file, or ``None``), ``lineage`` (the
    data every run of this model trained on), ``restarts`` (gang restarts) and
    ``seconds`` (wall time).
    """

    artefact: Any
    history: list[dict]
    checkpoint: str | None
    lineage: list[dict]
    restarts: int
    seconds: float


@dataclass
class _Config:
    """Everything a rank needs (pickled into each rank's task)."""

    job: str
    model: Any                      # the initial nn.Module (built once by fit, pickled)
    spec: Any                       # registry.ModelSpec
    sampler: Any
    loss: Any
    epochs: int
    batch_size: int
    optimizer: Any
    lr: float
    scheduler: Any
    seed: int
    checkpoint: str | None
    checkpoint_every: int | None
    keep: int
    resume_from: str | None = None  # a checkpoint file to continue from
    init_from: str | None = None    # a checkpoint file whose weights start a new run
    use_gpu: bool = False
    timeout: float = 300.0
    describe: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- checkpoints


def _fs(path: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(path))
    return fs, root.rstrip("/")


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _join(fs, root: str, name: str) -> str:
    return f"{root}/{name}" if root else name


def _url(path: str, fs, p: str) -> str:
    """``p`` (a path in ``fs``) written the way ``path`` was (URL or local)."""
    if "://" in str(path) and not _is_local(fs):
        return fs.unstrip_protocol(p)
    return p


def latest_checkpoint(path) -> str | None:
    """The last committed checkpoint file under the checkpoint directory ``path``, if any.

    ``path`` may also be a checkpoint file itself (returned as is when it exists).
    """
    fs, root = _fs(path)
    if fs.isfile(root):
        return _url(path, fs, root)
    pointer = _join(fs, root, "latest.json")
    if not fs.exists(pointer):
        return None
    name = json.loads(fs.cat_file(pointer))["file"]
    f = _join(fs, root, name)
    if not fs.exists(f):
        raise StEngineError(f"checkpoint {path}: latest.json names {name}, which is missing; "
                            "the directory was changed by hand. Remove latest.json to start "
                            "over, or restore the file.")
    return _url(path, fs, f)


def load_checkpoint(path) -> dict:
    """Read a checkpoint (a file, or a directory's latest) into a dict.

    The JSON members (``spec``, ``lineage``, ``history``, ``sampler``) come back as
    Python objects.

    Raises
    ------
    FileNotFoundError
        No committed checkpoint at ``path``.
    ValueError
        ``path`` is not a stengine checkpoint.
    """
    f = latest_checkpoint(path)
    if f is None:
        raise FileNotFoundError(f"no checkpoint at {path!s}: neither a checkpoint file nor a "
                                "directory with a committed latest.json")
    fs, p = _fs(f)
    try:
        state = torch.load(io.BytesIO(fs.cat_file(p)), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{f} is not a stengine checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{f} is not a stengine checkpoint (format "
                         f"{state.get('format') if isinstance(state, dict) else None!r}, "
                         f"expected {_FORMAT!r})")
    for k in ("spec", "lineage", "history", "sampler", "rng_py"):
        if isinstance(state.get(k), str):
            state[k] = json.loads(state[k])
    state["path"] = f
    return state


def _write_checkpoint(path: str, state: dict, *, keep: int) -> str:
    """Write ``state`` under the directory ``path``: aside, then commit latest.json last."""
    fs, root = _fs(path)
    name = f"ckpt-e{state['epoch']:04d}-s{state['step']:07d}.pt"
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    pointer = json.dumps({"file": name, "epoch": state["epoch"], "step": state["step"],
                          "written": datetime.now(UTC).isoformat()}).encode()
    if _is_local(fs):
        os.makedirs(root, exist_ok=True)
        for target, payload in ((name, data), ("latest.json", pointer)):
            tmp = os.path.join(root, f".{target}.{uuid.uuid4().hex[:8]}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, os.path.join(root, target))
        _fsync_dir(root)
    else:
        # object stores write an object whole or not at all; the pointer goes last
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(_join(fs, root, name), data)
        fs.pipe_file(_join(fs, root, "latest.json"), pointer)
    # keep the newest `keep` files (the committed one included)
    files = sorted(p for p in fs.ls(root, detail=False)
                   if p.rsplit("/", 1)[-1].startswith("ckpt-") and p.endswith(".pt"))
    for old in files[:-keep]:
        if not old.endswith(name):
            with contextlib.suppress(OSError):
                fs.rm_file(old)
    return _url(path, fs, _join(fs, root, name))


def _check_writable(path) -> None:
    """Fail before training when the checkpoint directory cannot be written."""
    try:
        fs, root = _fs(path)
        fs.makedirs(root, exist_ok=True)
        probe = _join(fs, root, f".stengine-probe-{uuid.uuid4().hex[:8]}")
        fs.pipe_file(probe, b"ok")
        fs.rm_file(probe)
    except Exception as e:
        raise PermissionError(
            f"fit: checkpoint={str(path)!r} is not writable ({type(e).__name__}: {e}). Pass "
            "a directory (local path or fsspec URL) this process and the workers can "
            "write, or checkpoint=None to train without checkpoints.") from e


def _fingerprint(model) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def _check_same_model(state: dict, spec, model, *, arg: str, path) -> None:
    """A checkpoint of another model (architecture or channels) is refused by name."""
    theirs = state.get("spec") or {}
    mine = _spec_dict(spec)
    problems = []
    fields = ["name", "params", "output", "n_outputs"]
    # a resumed run reads the same data; a new run (init_from) may read new time slices
    # with other channel names, but as many channels
    fields.append("channels" if arg == "checkpoint" else "n_channels")
    for k in fields:
        a = len(theirs.get("channels", [])) if k == "n_channels" else theirs.get(k)
        b = len(mine.get("channels", [])) if k == "n_channels" else mine.get(k)
        if k in theirs or k == "n_channels":
            if a != b:
                problems.append(f"{k} {_short(a)} there, {_short(b)} here")
    fp_theirs = {k: tuple(s) for k, s in state.get("fingerprint", [])}
    fp_mine = {k: tuple(s) for k, s in _fingerprint(model)}
    if fp_theirs != fp_mine:
        diff = [k for k in fp_mine if fp_theirs.get(k) != fp_mine[k]] + \
               [k for k in fp_theirs if k not in fp_mine]
        if diff:
            k = diff[0]
            problems.append(f"parameter {k!r} has shape {fp_theirs.get(k)} there, "
                            f"{fp_mine.get(k)} here")
    if problems:
        what = "checkpoint=" if arg == "checkpoint" else f"{arg}="
        fix = ("pass another checkpoint directory or resume=False to start over"
               if arg == "checkpoint" else "pass a checkpoint of this model, or init_from=None")
        raise ValueError(f"fit: {what}{str(path)!r} holds a checkpoint of another model "
                         f"({'; '.join(problems[:3])}); {fix}.")


def _short(v, k: int = 4):
    if isinstance(v, list) and len(v) > k:
        return repr(v[:k])[:-1] + f", ... ({len(v)})]"
    return repr(v)


def _spec_dict(spec) -> dict:
    import dataclasses

    if dataclasses.is_dataclass(spec):
        d = dataclasses.asdict(spec)
    else:
        d = dict(spec)
    return json.loads(json.dumps(d, default=_jsonable))


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------- pieces


def _make_loss(loss, kind: str):
    import torch.nn.functional as F

    if isinstance(loss, str):
        if loss == "cross_entropy":
            return lambda out, y: F.cross_entropy(out, y, ignore_index=-1)
        if loss == "mse":
            return lambda out, y: F.mse_loss(out.reshape(y.shape), y.float())
        if loss == "l1":
            return lambda out, y: F.l1_loss(out.reshape(y.shape), y.float())
        if loss == "triplet":
            return torch.nn.TripletMarginLoss()
    return loss


def _make_optimizer(optimizer, params, lr):
    if isinstance(optimizer, str):
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "sgd": torch.optim.SGD}[optimizer]
        return cls(params, lr=lr)
    return optimizer(params, lr=lr)


# The global (legacy) NumPy, Python and torch RNGs are saved and restored on purpose: user
# losses, transforms and models may draw from them, and resume must replay their draws.
def _rng_state() -> dict:
    np_state = np.random.get_state()  # noqa: NPY002
    st = {"torch": torch.get_rng_state(),
          "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                    int(np_state[2]), int(np_state[3]), float(np_state[4])],
          "python": json.dumps(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))  # noqa: NPY002
    py = json.loads(st["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(st["cuda"])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def _build_model(cfg: _Config):
    return copy.deepcopy(cfg.model)


def _normaliser(spec, device):
    """Raw sampler patches (numpy) → normalised tensors on ``device`` (registry's NaN
    policy: NaN → 0 after normalisation)."""
    from .registry import normalise

    def norm(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)
        return normalise(t, spec)

    return norm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _host_of(address: str) -> str:
    rest = address.split("://", 1)[-1]
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


# --------------------------------------------------------------------------- one rank


def _rank_main(cfg: _Config, rank: int, world: int, init_method: str | None):
    """The body of rank ``rank``'s task (runs on its pinned worker)."""
    import dask
    import torch.distributed as dist

    try:
        from distributed import Event, get_worker

        worker = get_worker()
        nthreads = worker.state.nthreads
        cancel = Event(f"stengine-fit-cancel-{cfg.job}")
    except (ImportError, ValueError):  # run in-process (tests, no cluster)
        worker, nthreads, cancel = None, 1, None
    device = torch.device("cpu")
    if cfg.use_gpu:
        if not torch.cuda.is_available():
            raise ResourceUnavailableError(
                "fit: this worker advertises a GPU but torch.cuda.is_available() is False "
                "here (a CPU build of torch, or no driver); install a CUDA torch on the GPU "
                "workers, or pass resources=None to train on CPU.")
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu":
        torch.set_num_threads(max(1, nthreads))
    from ._cache import tune_malloc

    tune_malloc()  # torch on CPU under the nanny's 64 KiB malloc trim threshold: 2-3x slower
    group = False
    if world > 1:
        deadline = time.monotonic() + 60
        while dist.is_initialized() and time.monotonic() < deadline:
            time.sleep(0.2)  # a previous gang's rank in this process is still unwinding
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method, rank=rank,
                                world_size=world, timeout=timedelta(seconds=cfg.timeout))
        group = True
    try:
        with dask.config.set(scheduler="sync"):
            return _train(cfg, rank, world, device, cancel)
    finally:
        if group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _train(cfg: _Config, rank: int, world: int, device, cancel):
    import torch.distributed as dist

    spec = cfg.spec
    kind = getattr(cfg.sampler, "kind", "patch")
    _seed_all(cfg.seed)
    model = _build_model(cfg).to(device)
    opt = _make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    sched = cfg.scheduler(opt) if cfg.scheduler is not None else None
    loss_fn = _make_loss(cfg.loss, kind)
    start_epoch, start_step, history, lineage = 0, 0, [], []
    run = {"run": cfg.job, "data": cfg.describe, "init_from": cfg.init_from,
           "started": datetime.now(UTC).isoformat()}
    if cfg.resume_from:
        st = load_checkpoint(cfg.resume_from)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if sched is not None and st.get("scheduler") is not None:
            sched.load_state_dict(st["scheduler"])
        start_epoch, start_step = int(st["epoch"]), int(st["step"])
        history = list(st.get("history") or [])
        lineage = list(st.get("lineage") or [])
        if lineage:
            run = lineage.pop()  # resuming continues that run
        rngs = st.get("rng") or []
        if len(rngs) == world:
            _set_rng_state(rngs[rank])
        else:
            _seed_all(cfg.seed + 1_000_003 * start_epoch + start_step)
    elif cfg.init_from:
        st = load_checkpoint(cfg.init_from)
        model.load_state_dict(st["model"])
        lineage = list(st.get("lineage") or [])
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model
    net.train()
    sampler = cfg.sampler.shard(rank, world) if world > 1 else cfg.sampler
    per_rank = cfg.batch_size // world
    n_steps = len(cfg.sampler) // cfg.batch_size
    norm = _normaliser(spec, device)
    last_cancel_check = time.monotonic()
    last_ckpt = None

    def checkpoint(epoch: int, step: int):
        nonlocal last_ckpt
        rng = _rng_state()
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if rank != 0 or not cfg.checkpoint:
            return
        sampler_state = cfg.sampler.state_dict()
        sampler_state["epoch"] = epoch
        state = {
            "format": _FORMAT, "job": cfg.job, "epoch": epoch, "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "sampler": json.dumps(sampler_state, default=_jsonable),
            "rng": rngs,
            "spec": json.dumps(_spec_dict(spec)),
            "fingerprint": _fingerprint(model),
            "history": json.dumps(history, default=_jsonable),
            "lineage": json.dumps(lineage + [{**run, "epochs_done": epoch,
                                              "step": step}], default=_jsonable),
            "seed": cfg.seed, "batch_size": cfg.batch_size, "world_size": world,
        }
        last_ckpt = _write_checkpoint(cfg.checkpoint, state, keep=cfg.keep)

    if rank == 0:
        monitor.publish("fit", cfg.job, {"event": "start", "epoch": start_epoch,
                                         "epochs": cfg.epochs, "world_size": world,
                                         "device": str(device),
                                         "gpu": monitor.local_gpu_status()})
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        t0 = time.perf_counter()
        tot = torch.zeros(2, dtype=torch.float64, device=device)
        step = 0
        for step, batch in enumerate(sampler.batches(per_rank, drop_last=True)):
            if step >= n_steps:
                break
            if step < skip:
                continue
            if kind == "triplet":
                x = np.concatenate([batch["anchor"], batch["positive"], batch["negative"]])
                out = net(norm(x))
                a, p, n = torch.chunk(out, 3)
                loss = loss_fn(a, p, n)
                nb = len(batch["anchor"])
            else:
                out = net(norm(batch["x"]))
                y = torch.as_tensor(batch["y"], device=device)
                loss = loss_fn(out, y)
                nb = len(batch["x"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot[0] += float(loss.detach()) * nb
            tot[1] += nb
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                    and step + 1 < n_steps:
                checkpoint(epoch, step + 1)
            if cancel is not None and time.monotonic() - last_cancel_check > 1.0:
                last_cancel_check = time.monotonic()
                if cancel.is_set():
                    raise _Cancelled()
        if sched is not None:
            sched.step()
        if world > 1:
            dist.all_reduce(tot)
        dt = time.perf_counter() - t0
        done = max(0, n_steps - skip) * cfg.batch_size
        m = {"epoch": epoch, "loss": float(tot[0] / max(tot[1], 1)),
             "samples_per_s": done / dt if dt > 0 else float("nan"), "seconds": dt,
             "lr": float(opt.param_groups[0]["lr"]), "steps": n_steps}
        history.append(m)
        checkpoint(epoch + 1, 0)
        if rank == 0:
            msg = {"event": "epoch", **m, "epochs": cfg.epochs}
            if device.type == "cuda":
                msg["gpu"] = monitor.local_gpu_status()
            monitor.publish("fit", cfg.job, msg)
    if rank != 0:
        return None
    final = lineage + [{**run, "epochs_done": cfg.epochs, "step": 0}]
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": history, "lineage": final, "checkpoint": last_ckpt}


class _Cancelled(Exception):
    """Raised inside a rank when its job was cancelled."""


# --------------------------------------------------------------------------- the job


_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


class TrainJob:
    """A running :func:`fit`: ``result()``, ``status``, live ``metrics``, ``cancel()``.

    Attributes
    ----------
    id : str
        The job id (in task keys ``stengine-fit-rank-<r>-<id>-<attempt>`` and in the
        metrics topic).
    topic : str
        The job's metrics topic (:func:`stengine.learn.monitor.subscribe`).
    status : str
        ``"pending"``, ``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
    restarts : int
        Gang restarts so far.
    """

    def __init__(self, client, cfg: _Config, *, workers: int, resources, max_restarts: int,
                 progress: bool, artefact_path):
        self.id = cfg.job
        self.topic = monitor.topic("fit", cfg.job)
        self.status = "pending"
        self.restarts = 0
        self._client = client
        self._cfg = cfg
        self._workers = workers
        self._resources = resources
        self._max_restarts = max_restarts
        self._artefact_path = artefact_path
        self._metrics: dict[int, dict] = {}
        self._events: list[dict] = []
        self._futures: list = []
        self._result: FitResult | None = None
        self._error: BaseException | None = None
        self._cancel_requested = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._progress = monitor.ProgressLine(f"fit {self.id}", cfg.epochs, enabled=progress)
        self._t0 = time.perf_counter()
        client.subscribe_topic(self.topic, self._on_event)
        self._thread = threading.Thread(target=self._run, name=f"stengine-fit-{self.id}",
                                        daemon=True)
        self._thread.start()

    # -- public
    @property
    def metrics(self) -> list[dict]:
        """Per-epoch metrics so far (``epoch``, ``loss``, ``samples_per_s``, ...), live."""
        with self._lock:
            return [self._metrics[k] for k in sorted(self._metrics)]

    @property
    def events(self) -> list[dict]:
        """Every message of the job's stream received so far (start, epochs, restarts)."""
        with self._lock:
            return list(self._events)

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> FitResult:
        """Wait for the job; return its :class:`FitResult` or raise its error."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"fit job {self.id} still {self.status} after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self, timeout: float | None = None):
        self._done.wait(timeout)
        return self._error

    def cancel(self) -> None:
        """Stop the job: ranks stop at their next check (about a second), status
        becomes ``"cancelled"``; the last checkpoint stays for a later ``resume``."""
        self._cancel_requested = True
        with contextlib.suppress(Exception):
            from distributed import Event

            Event(f"stengine-fit-cancel-{self.id}", client=self._client).set()
        self._done.wait(30)

    def __repr__(self):
        last = self.metrics[-1] if self._metrics else None
        tail = f" epoch {last['epoch'] + 1}/{self._cfg.epochs} loss {last['loss']:.4g}" \
            if last else ""
        return f"<TrainJob {self.id} {self.status}{tail}>"

    # -- internals
    def _on_event(self, event):
        _ts, msg = event
        with self._lock:
            self._events.append(msg)
            if msg.get("event") == "epoch":
                self._metrics[int(msg["epoch"])] = {k: msg[k] for k in (
                    "epoch", "loss", "samples_per_s", "seconds", "lr") if k in msg}
        if msg.get("event") == "epoch":
            self._progress.update(int(msg["epoch"]) + 1,
                                  f"loss {msg['loss']:.4g}, {msg['samples_per_s']:,.0f} samples/s")

    def _emit(self, msg):
        full = {"job": self.id, "kind": "fit", "time": time.time(), **msg}
        with contextlib.suppress(Exception):
            self._client.log_event([monitor.TOPIC, self.topic], full)

    def _run(self):
        try:
            self.status = "running"
            self._result = self._gang()
            self.status = "succeeded"
            self._emit({"event": "done", "seconds": self._result.seconds})
        except _Cancelled:
            self.status = "cancelled"
            self._error = RuntimeError(f"fit job {self.id} was cancelled")
            self._emit({"event": "cancelled"})
        except BaseException as e:  # noqa: BLE001 - handed to result()
            self.status = "failed"
            self._error = e
            self._emit({"event": "failed", "error": f"{type(e).__name__}: {e}"})
        finally:
            self._progress.close()
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic(self.topic)
            self._done.set()

    def _gang(self) -> FitResult:
        from distributed import wait

        client, cfg = self._client, self._cfg
        attempt = 0
        while True:
            addrs = _pick_workers(client, self._workers, self._resources, op="fit")
            resume_from = None
            if attempt == 0:
                resume_from = cfg.resume_from
            elif cfg.checkpoint:
                # this run's own last checkpoint, else where it started from
                f = latest_checkpoint(cfg.checkpoint)
                ok = f is not None and (f == cfg.resume_from
                                        or load_checkpoint(f).get("job") == cfg.job)
                resume_from = f if ok else cfg.resume_from
            run_cfg = replace(cfg, resume_from=resume_from)
            init_method = None
            if self._workers > 1:
                port = client.run(_free_port, workers=[addrs[0]])[addrs[0]]
                init_method = f"tcp://{_host_of(addrs[0])}:{port}"
            # the config (sampler, initial model) goes to the workers once, as data: not
            # embedded in every rank's task (samplers can hold MBs of window indices)
            cfg_f = client.scatter(run_cfg, workers=addrs, hash=False)
            futures = [client.submit(_rank_main, cfg_f, r, self._workers, init_method,
                                     key=f"stengine-fit-rank-{r}-{self.id}-{attempt}",
                                     workers=[a], allow_other_workers=False,
                                     resources=self._resources, pure=False, retries=0)
                       for r, a in enumerate(addrs)]
            self._futures = futures
            outcome, detail = self._watch(futures, addrs)
            if outcome == "ok":
                out = futures[0].result()
                client.cancel(futures)
                return self._finish(out, attempt)
            client.cancel(futures, force=True)
            if outcome == "cancelled":
                raise _Cancelled()
            if outcome == "error" and not _restartable(detail):
                raise detail
            attempt += 1
            self.restarts = attempt
            if attempt > self._max_restarts:
                last = latest_checkpoint(cfg.checkpoint) if cfg.checkpoint else None
                raise RuntimeError(
                    f"fit job {self.id}: the gang failed {attempt} times (last: "
                    f"{_describe(detail)}); giving up after max_restarts={self._max_restarts}. "
                    f"The last checkpoint ({last or 'none'}) "
                    "can be resumed with resume=True.") from (
                        detail if isinstance(detail, BaseException) else None)
            self._emit({"event": "restart", "attempt": attempt, "reason": _describe(detail)})
            print(f"\nstengine fit {self.id}: rank lost ({_describe(detail)}); restarting the "
                  f"gang from the last checkpoint (restart {attempt}/{self._max_restarts})",
                  file=sys.stderr)
            # wait for the cluster to have enough workers again (nannies restart them)
            with contextlib.suppress(Exception):
                wait(futures, timeout=10)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    _pick_workers(client, self._workers, self._resources, op="fit")
                    break
                except ResourceUnavailableError:
                    time.sleep(0.5)

    def _watch(self, futures, addrs):
        """Wait for the gang: ("ok"|"error"|"lost"|"cancelled", detail)."""
        from distributed import wait

        while True:
            # a lost worker can also cancel a rank (its scattered config went with it)
            with contextlib.suppress(Exception):
                wait(futures, timeout=0.5, return_when="FIRST_COMPLETED")
            if self._cancel_requested:
                return "cancelled", None
            for f in futures:
                if f.status == "error":
                    exc = f.exception()
                    if isinstance(exc, _Cancelled):
                        return "cancelled", None
                    return "error", exc
                if f.status == "cancelled":
                    return "lost", f"task {f.key} was cancelled by the scheduler"
            if all(f.status == "finished" for f in futures):
                return "ok", None
            gone = [a for a in addrs if a not in _workers_info(self._client)]
            if gone:
                time.sleep(1.0)  # asked twice: a worker is lost, not a slow answer
                gone = [a for a in addrs if a not in _workers_info(self._client)]
                if gone:
                    return "lost", f"worker {gone[0]} left the cluster"

    def _finish(self, out: dict, attempt: int) -> FitResult:
        cfg = self._cfg
        model = _build_model(cfg)
        model.load_state_dict(out["model"])
        model.eval()
        artefact = _save_artefact(model, cfg.spec, self._artefact_path, out["lineage"],
                                  out["history"])
        with self._lock:
            for m in out["history"]:
                self._metrics[int(m["epoch"])] = m
        return FitResult(artefact=artefact, history=out["history"],
                         checkpoint=out["checkpoint"], lineage=out["lineage"],
                         restarts=attempt, seconds=time.perf_counter() - self._t0)


def _save_artefact(model, spec, path, lineage, history):
    import tempfile

    from .registry import save_artefact

    if path is None:
        path = tempfile.mkdtemp(prefix="stengine-artefact-")
    art = save_artefact(model, spec, path)
    with contextlib.suppress(AttributeError, TypeError):
        art.lineage = lineage
        art.history = history
    return art


def _describe(detail) -> str:
    if isinstance(detail, BaseException):
        return f"{type(detail).__name__}: {str(detail)[:200]}"
    return str(detail)


def _restartable(exc) -> bool:
    """A lost worker or a broken collective (restart the gang), not the user's error."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(exc, KilledWorker | CommClosedError | ConnectionError | TimeoutError):
        return True
    dist_errors = tuple(e for e in (getattr(torch.distributed, "DistError", None),)
                        if e is not None)
    if dist_errors and isinstance(exc, dist_errors):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo",
        "Gloo", "NCCL", "Timed out", "timed out", "ProcessGroup", "worker died"))


def _workers_info(client) -> dict:
    """``{address: worker info}`` straight from the scheduler.

    (``client.scheduler_info()`` returns a cache that the client's background refresh
    overwrites with a worker-less summary: read from another thread it can be empty.)
    """
    return dict(client.sync(client.scheduler.identity, n_workers=-1).get("workers", {}))


def _pick_workers(client, n: int, resources, *, op: str) -> list[str]:
    """``n`` worker addresses that have ``resources``; fail fast (no waiting) otherwise."""
    info = _workers_info(client)
    if not info:
        raise ResourceUnavailableError(
            f"{op}: the cluster has no workers; start some (stengine.connect() starts a local "
            "cluster) before training.")
    ok = sorted(a for a, w in info.items()
                if all(w.get("resources", {}).get(k, 0) >= v for k, v in (resources or {}).items()))
    if not ok:
        have = sorted({k for w in info.values() for k in w.get("resources", {})})
        want = ", ".join(f"{k}={v}" for k, v in resources.items())
        gpu = "GPU" in resources
        flag = want.replace(", ", ",")
        fix = ("use stengine.connect('gpu') (dask-cuda: one GPU worker per device), or start "
               "workers with `dask worker <scheduler> --resources GPU=1`; or pass "
               "resources=None to train on the CPU workers" if gpu else
               f"start workers with `dask worker <scheduler> --resources {flag}` "
               "or drop that resource")
        raise ResourceUnavailableError(
            f"{op}: resources={dict(resources)!r} asked, but none of the {len(info)} workers "
            f"advertises {want} (worker resources: {have or 'none'}). To fix: {fix}.")
    if len(ok) < n:
        raise ResourceUnavailableError(
            f"{op}: workers={n} ranks asked, but only {len(ok)} worker(s) "
            f"{'with ' + str(dict(resources)) + ' ' if resources else ''}are in the cluster "
            f"({', '.join(ok)}). Pass workers={len(ok)}, or add workers (one rank per worker).")
    return ok[:n]


def _auto_resources(client, resources):
    if resources != "auto":
        return dict(resources) if resources else None
    info = _workers_info(client)
    if any(w.get("resources", {}).get("GPU", 0) >= 1 for w in info.values()):
        return {"GPU": 1}
    return None


# --------------------------------------------------------------------------- fit


def _check_sampler(sampler):
    need = ("shard", "set_epoch", "batches", "state_dict", "describe", "channels", "size")
    missing = [a for a in need if not hasattr(sampler, a)]
    if missing or not hasattr(sampler, "__len__"):
        raise TypeError(f"fit: sampler must be a stengine.learn sampler (GridSampler, "
                        f"RandomSampler, CellSampler, TripletSampler); got "
                        f"{type(sampler).__name__}, which lacks {missing or ['__len__']}")


def _infer_output(model, sampler, spec_output=None):
    """(output kind, n_outputs) from a dry forward pass on one zero patch."""
    c, s = len(sampler.channels), int(sampler.size)
    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.zeros(1, c, s, s))
        except Exception as e:
            raise ValueError(f"fit: the model cannot take the sampler's patches "
                             f"(1, {c}, {s}, {s}) [{c} channels {sampler.channels[:6]}"
                             f"{'...' if c > 6 else ''}]: {type(e).__name__}: {e}") from e
    model.train()
    if out.ndim == 4:
        if tuple(out.shape[-2:]) != (s, s):
            raise ValueError(f"fit: a per-pixel model must keep the patch size; it maps "
                             f"{s}×{s} patches to {tuple(out.shape[-2:])}")
        return spec_output or "classes", int(out.shape[1])
    if out.ndim == 2:
        kind = "vector" if getattr(sampler, "kind", "patch") == "triplet" else "label"
        return spec_output or kind, int(out.shape[1])
    raise ValueError(f"fit: model output has shape {tuple(out.shape)}; expected (B, n, S, S) "
                     "per pixel or (B, n) per patch")


def _check_labels(sampler, output: str, loss: str) -> None:
    """The built-in losses need labels shaped like the model's output (checked on one
    sample before anything is submitted)."""
    if getattr(sampler, "kind", "patch") == "triplet":
        if loss != "triplet":
            raise ValueError(f"fit: a TripletSampler needs loss='triplet' (or a callable "
                             f"loss(anchor, positive, negative)); got loss={loss!r}")
        return
    if loss == "triplet":
        raise ValueError("fit: loss='triplet' needs a TripletSampler (anchor, positive, "
                         "negative patches)")
    item = sampler[0]
    if "y" not in item:
        raise ValueError(f"fit: loss={loss!r} needs labels, and the sampler has none; build "
                         "it with labels= (a raster or a cell cube)")
    y = np.asarray(item["y"])
    if output == "classes" and y.ndim != 2:
        raise ValueError("fit: the model gives classes per pixel (B, n, S, S) but the "
                         "sampler's labels are one per patch; build the sampler with "
                         "label_mode='pixel' or use a per-patch model (patch_classifier)")
    if output in ("label", "vector") and y.ndim != 0:
        raise ValueError("fit: the model gives one output per patch (B, n) but the "
                         f"sampler's labels are per pixel {y.shape}; build the sampler with "
                         "label_mode='centre' or use a per-pixel model (patch_unet)")


def _make_spec(model, sampler, *, spec, params, normalise, seed):
    """(module, ModelSpec) for the run; the module is built here, once, and shipped to the
    ranks (so custom registered models need no registration on the workers)."""
    from . import _models, registry

    c = len(sampler.channels)
    kind = None
    if isinstance(model, str):
        mparams = dict(params or {})
        mparams.setdefault("in_channels", c)
        torch.manual_seed(seed)
        try:
            module = registry.build(model, **mparams)
        except registry.UnknownModelError:
            raise ValueError(f"fit: unknown model {model!r}; known models: "
                             f"{registry.models()}. Register one with "
                             "stengine.learn.register(name, factory).") from None
        except TypeError as e:
            raise ValueError(f"fit: model {model!r} cannot be built with params={mparams}: "
                             f"{e}") from e
        name = model
        if model in _models.BUILTINS:
            kind = _models.BUILTINS[model][1]
    elif isinstance(model, torch.nn.Module):
        module = copy.deepcopy(model)
        name = getattr(spec, "name", None) or type(model).__name__
        mparams = dict(getattr(spec, "params", None) or params or {})
        if name not in registry.models():
            raise ValueError(
                f"fit: model is a {type(model).__name__} module whose name {name!r} is not "
                "registered, so its artefact could not be rebuilt for inference. Register "
                "its factory (stengine.learn.register(name, factory)) and pass the name with "
                "params=, or pass spec=ModelSpec(name=<registered name>, params=...).")
    elif isinstance(model, registry.Artefact):  # fine-tune a trained artefact
        module = copy.deepcopy(model.model)
        name, mparams = model.spec.name, dict(model.spec.params)
        spec = spec or model.spec
    else:
        raise TypeError(f"fit: model must be a registered model name ({registry.models()}), "
                        f"a torch.nn.Module or an Artefact; got {type(model).__name__}")
    if spec is not None and getattr(spec, "channels", None) and spec.mean is not None \
            and isinstance(model, registry.Artefact):
        spec.check_sampler(sampler)
        mean, std = list(spec.mean), list(spec.std)
    elif normalise is None:
        mean, std = [0.0] * c, [1.0] * c
    elif isinstance(normalise, str):
        if normalise != "auto":
            raise ValueError(f"fit: normalise must be 'auto', None or (mean, std); got "
                             f"{normalise!r}")
        mean, std = registry.channel_stats(copy.deepcopy(sampler))
    else:
        mean, std = (list(map(float, v)) for v in normalise)
    output, n_out = _infer_output(module, sampler, kind or getattr(spec, "output", None))
    full = registry.ModelSpec(name=name, params=mparams, channels=list(sampler.channels),
                              patch_size=int(sampler.size), output=output, n_outputs=n_out,
                              mean=mean, std=std)
    return full, module


def fit(model, sampler, *, loss, epochs: int, batch_size: int, optimizer="adam",
        lr: float = 1e-3, scheduler=None, workers: int = 1, resources="auto",
        checkpoint=None, checkpoint_every: int | None = None, keep: int = 2,
        resume: bool = True, init_from=None, seed: int = 0, params=None, spec=None,
        normalise="auto", artefact=None, max_restarts: int = 2, timeout: float = 300.0,
        progress: bool = True, client=None) -> TrainJob:
    """Train a model on a sampler's patches as Dask tasks (one per rank) and return its job.

    Parameters
    ----------
    model : str | torch.nn.Module | Artefact
        A registered model name (built with ``params``), a module, or an artefact to
        fine-tune. Its spec (channels, patch size, normalisation, output kind) comes
        from the sampler and a dry forward pass.
    sampler : GridSampler | RandomSampler | CellSampler | TripletSampler
        The training data; sharded per rank (``shard(rank, world_size)``) and reseeded
        per epoch (``set_epoch``).
    loss : str | callable
        ``"cross_entropy"`` (labels ``-1`` ignored), ``"mse"``, ``"l1"``, ``"triplet"``,
        or a callable ``loss(output, y)`` (``loss(anchor, positive, negative)`` for
        triplet samplers); a ``torch.nn`` loss module works as is.
    epochs, batch_size : int
        Passes over the sampler and the *global* batch (split evenly over the ranks, so
        a run gives the same result on 1 or N workers). The last partial batch of an
        epoch is dropped (``len(sampler) // batch_size`` steps an epoch).
    optimizer : str | callable
        ``"adam"``, ``"adamw"``, ``"sgd"`` or ``factory(params, lr=lr)``.
    scheduler : callable, optional
        ``factory(optimizer) -> LR scheduler``, stepped once an epoch.
    workers : int
        Ranks (one per Dask worker). ``> 1`` runs torch DDP: gloo on CPU, NCCL on GPU.
    resources : dict | None | "auto"
        Dask resources every rank's task needs; ``"auto"`` asks ``{"GPU": 1}`` when a
        worker advertises a GPU, else nothing (CPU). A request no worker can meet fails
        at once (:class:`ResourceUnavailableError`).
    checkpoint : str | path, optional
        Directory (local or fsspec URL) for checkpoints, written by rank 0 after every
        epoch (and every ``checkpoint_every`` steps), atomically; the newest ``keep``
        files stay.
    resume : bool
        Continue from the checkpoint directory's last checkpoint if there is one (the
        result is the same as an uninterrupted run on CPU with the same seed).
    init_from : str | path, optional
        A checkpoint (file or directory) whose weights start this new run (incremental
        training on new data); its lineage is carried on.
    seed : int
        Seeds torch, NumPy and Python's ``random`` on every rank.
    params : dict, optional
        Parameters of a registered model (``build(name, **params)``).
    spec : ModelSpec, optional
        Overrides the spec fields (name, output kind) a module cannot tell.
    normalise : "auto" | (mean, std) | None
        Per-channel normalisation stored in the spec: ``"auto"`` estimates it from the
        sampler's first batches; ``None`` is identity. NaN inputs become 0 after it.
    artefact : str | path, optional
        Where the trained artefact is saved (default a new temporary directory).
    max_restarts : int
        Gang restarts allowed after lost ranks.
    timeout : float
        Seconds a collective may wait for a peer (``init_process_group(timeout=)``).
    progress : bool
        Print a progress line per epoch.
    client : distributed.Client, optional
        Default: the current client.

    Returns
    -------
    TrainJob
        ``.result()`` → :class:`FitResult` (artefact, history, checkpoint, lineage).

    Raises
    ------
    ResourceUnavailableError
        ``resources`` or ``workers`` that the cluster cannot give.
    PermissionError
        ``checkpoint`` cannot be written.
    ValueError
        A bad argument, or a checkpoint (``checkpoint`` with ``resume``, or
        ``init_from``) of another model.
    """
    from distributed import default_client

    client = client or default_client()
    _check_sampler(sampler)
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("workers", workers)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"fit: {name} must be a positive integer; got {v!r}")
    if batch_size % workers:
        raise ValueError(f"fit: batch_size={batch_size} (the global batch) must divide evenly "
                         f"over workers={workers} ranks; pass a multiple of {workers}")
    n = len(sampler)
    if n < batch_size:
        raise ValueError(f"fit: batch_size={batch_size} is larger than the sampler's {n} "
                         f"samples (the last partial batch is dropped, so no step would run); "
                         f"pass batch_size <= {n}")
    if isinstance(loss, str) and loss not in _LOSSES:
        raise ValueError(f"fit: unknown loss {loss!r}; choose from {_LOSSES} or pass a callable")
    if not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"fit: loss must be a name {_LOSSES} or a callable; got {loss!r}")
    if isinstance(optimizer, str) and optimizer not in _OPTIMIZERS:
        raise ValueError(f"fit: unknown optimizer {optimizer!r}; choose from {_OPTIMIZERS} or "
                         "pass factory(params, lr=lr)")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise ValueError(f"fit: checkpoint_every must be a positive number of steps or None; "
                         f"got {checkpoint_every!r}")
    res = _auto_resources(client, resources)
    _pick_workers(client, workers, res, op="fit")  # fail fast, before anything else
    full_spec, module = _make_spec(model, sampler, spec=spec, params=params,
                                   normalise=normalise, seed=int(seed))
    if isinstance(loss, str):
        _check_labels(sampler, full_spec.output, loss)
    ckpt = str(checkpoint) if checkpoint is not None else None
    resume_from = None
    if ckpt is not None:
        _check_writable(ckpt)
        if resume:
            resume_from = latest_checkpoint(ckpt)
            if resume_from is not None:
                st = load_checkpoint(resume_from)
                _check_same_model(st, full_spec, module, arg="checkpoint", path=ckpt)
                full_spec = replace(full_spec, mean=st["spec"]["mean"], std=st["spec"]["std"])
    init = None
    if init_from is not None:
        if resume_from is not None:
            raise ValueError(f"fit: checkpoint={ckpt!r} already holds a run to resume and "
                             f"init_from={str(init_from)!r} asks for a new one; pass "
                             "resume=False (start over from init_from) or drop init_from")
        init = latest_checkpoint(init_from)
        if init is None:
            raise FileNotFoundError(f"fit: init_from={str(init_from)!r} holds no checkpoint "
                                    "(no checkpoint file, no latest.json)")
        st = load_checkpoint(init)
        _check_same_model(st, full_spec, module, arg="init_from", path=init_from)
        full_spec = replace(full_spec, mean=st["spec"]["mean"], std=st["spec"]["std"])
    describe = json.loads(json.dumps(sampler.describe(), default=_jsonable))
    cfg = _Config(job=uuid.uuid4().hex[:10], model=module, spec=full_spec,
                  sampler=sampler, loss=loss, epochs=int(epochs), batch_size=int(batch_size),
                  optimizer=optimizer, lr=float(lr), scheduler=scheduler, seed=int(seed),
                  checkpoint=ckpt, checkpoint_every=checkpoint_every, keep=max(1, int(keep)),
                  resume_from=resume_from, init_from=init, use_gpu=bool(res and "GPU" in res),
                  timeout=float(timeout), describe=describe)
    if math.isnan(cfg.lr) or cfg.lr <= 0:
        raise ValueError(f"fit: lr must be a positive number; got {lr!r}")
    return TrainJob(client, cfg, workers=int(workers), resources=res,
                    max_restarts=int(max_restarts), progress=progress,
                    artefact_path=str(artefact) if artefact is not None else None)

"""Jobs: validate an ops chain, run it on the service's Dask client in a thread per job."""
from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback

import numpy as np

from ..io._sources_secrets import redact_text
from ..io.sources import open_source

JOB_KINDS = ("ops", "predict", "train", "embed")
#: op -> (allowed arguments, required arguments)
OPS: dict[str, tuple[set, set]] = {
    "local_reclassify": ({"mapping", "default", "nodata", "dtype"}, {"mapping"}),
    "normalized_difference": ({"a", "b", "dtype"}, {"a", "b"}),
    "local_histogram": ({"classes"}, set()),
    "local_count": ({"value"}, {"value"}),
    "focal_mean": ({"window", "boundary", "skipna"}, {"window"}),
}
TERMINAL = ("local_histogram", "local_count")


class JobError(ValueError):
    """A bad job request; ``field`` names the culprit."""

    def __init__(self, message, field):
        super().__init__(message)
        self.field = field


def validate(body) -> dict:
    """The job spec of a POST /jobs body, or :class:`JobError`."""
    if not isinstance(body, dict):
        raise JobError("expected a JSON object", "body")
    kind = body.get("kind")
    if kind not in JOB_KINDS:
        raise JobError(f"kind must be one of {JOB_KINDS}; got {kind!r}", "kind")
    if kind == "predict":
        from ._models import validate_predict_job
        return validate_predict_job(body, JobError)
    if kind == "train":
        from ._learn_jobs import validate_train_job
        return validate_train_job(body, JobError)
    if kind == "embed":
        from ._learn_jobs import validate_embed_job
        return validate_embed_job(body, JobError)
    extra = sorted(set(body) - {"kind", "source", "ops", "resources"})
    if extra:
        raise JobError(f"unknown field {extra[0]!r}", extra[0])
    if not isinstance(body.get("source"), str):
        raise JobError("source must be the name of a registered source", "source")
    ops = body.get("ops")
    if not isinstance(ops, list) or not ops:
        raise JobError("ops must be a non-empty list of {'op': ...} objects", "ops")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in OPS:
            raise JobError(f"ops[{i}].op must be one of {sorted(OPS)}; got "
                           f"{op.get('op') if isinstance(op, dict) else op!r}", f"ops[{i}].op")
        allowed, required = OPS[op["op"]]
        for k in sorted(set(op) - {"op"} - allowed):
            raise JobError(f"ops[{i}]: unknown argument {k!r} for {op['op']}; expected "
                           f"some of {sorted(allowed)}", f"ops[{i}].{k}")
        for k in sorted(required - set(op)):
            raise JobError(f"ops[{i}]: {op['op']} needs {k!r}", f"ops[{i}].{k}")
        if op["op"] in TERMINAL and i != len(ops) - 1:
            raise JobError(f"ops[{i}]: {op['op']} must be the last op", f"ops[{i}].op")
    res = check_resources(body, JobError)
    return {"kind": kind, "source": body["source"], "ops": ops, "resources": res}


def check_model_job(body: dict, allowed: set, job_error) -> None:
    """A model job's common fields: no field outside ``allowed``, ``source`` and ``model``
    names (strings); ``job_error(message, field)`` raises."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise job_error(f"unknown field {extra[0]!r}", extra[0])
    if not isinstance(body.get("source"), str):
        raise job_error("source must be the name of a registered source", "source")
    if not isinstance(body.get("model"), str):
        raise job_error("model must be the name of a registered model", "model")


def check_resources(body, error=None) -> dict:
    """``body["resources"]`` as dask resources ({name: positive number}); ``error`` raises."""
    res = body.get("resources") or {}
    if not isinstance(res, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0
            for v in res.values()):
        raise (error or JobError)("resources must map names to positive numbers, "
                                  "e.g. {'GPU': 1}", "resources")
    return res


def _key(k):
    try:
        f = float(k)
    except (TypeError, ValueError):
        raise JobError(f"mapping key {k!r} is not a number", "mapping") from None
    return int(f) if f.is_integer() else f


def apply_op(da, op: dict):
    """One op of the whitelist on a DataArray."""
    from ..ops import focal, local
    name, kw = op["op"], {k: v for k, v in op.items() if k != "op"}
    if name == "local_reclassify":
        m = kw.pop("mapping")
        m = {_key(k): v for k, v in m.items()} if isinstance(m, dict) else [tuple(r) for r in m]
        return local.local_reclassify(da, m, **kw)
    if name == "normalized_difference":
        return local.normalized_difference(da.isel(band=kw["a"]), da.isel(band=kw["b"]),
                                           dtype=kw.get("dtype"))
    if name == "local_histogram":
        return local.local_histogram(da, **kw)
    if name == "local_count":
        return local.local_count(da, np.nan if kw["value"] is None else kw["value"])
    return focal.focal_mean(da, kw["window"], **{k: v for k, v in kw.items() if k != "window"})


class Runner:
    """Starts jobs in threads; ``cancel`` stops one; ``client`` is a distributed Client."""

    def __init__(self, state, client, poll: float = 0.1):
        self.state, self.client, self.poll = state, client, poll
        self.cancelled: set[str] = set()
        self.threads: dict[str, threading.Thread] = {}
        self.models = None  # the app's ModelStore (train jobs register versions in it)

    def submit(self, jid: str) -> None:
        t = threading.Thread(target=self._run, args=(jid,), name=f"job-{jid}", daemon=True)
        self.threads[jid] = t
        t.start()

    def cancel(self, jid: str) -> None:
        self.cancelled.add(jid)

    def _run(self, jid: str) -> None:
        st = self.state
        job = st.job(jid)
        spec = job["spec"]
        src = st.source_spec(spec["source"])
        secrets = src.secrets() if src is not None else []
        try:
            st.update_job(jid, status="running", started=time.time())
            st.log_job(jid, f"opening source {spec['source']!r}")
            self._execute(jid, spec, src)
        except Exception as e:  # the job fails; the service goes on
            msg = redact_text(f"{type(e).__name__}: {e}", secrets)
            st.log_job(jid, "failed: " + msg)
            tb = redact_text(traceback.format_exc(limit=3), secrets)
            st.log_job(jid, tb.strip().splitlines()[-1])
            st.update_job(jid, status="failed", error=msg, ended=time.time())

    def _execute(self, jid, spec, src):
        from distributed import futures_of, wait
        st, t0 = self.state, time.time()
        if spec["kind"] == "train":
            from ._learn_jobs import run_train
            return run_train(self, jid, spec, src)
        if spec["kind"] == "embed":
            from ._learn_jobs import run_embed
            return run_embed(self, jid, spec, src)
        da = open_source(src)
        if spec["kind"] == "predict":
            from ..learn import predict
            st.log_job(jid, f"model {spec['model']!r} v{spec['version']} "
                       f"({spec['sha256'][:12]})")
            da = predict(spec["model_path"], da, match="position", client=self.client,
                         output=spec.get("output"),
                         resources=spec["resources"] or None, progress=False)
        for op in spec.get("ops", ()):
            da = apply_op(da, op)
        x = self.client.persist(da, resources=spec["resources"] or None)
        futs = futures_of(x)
        total = max(len(futs), 1)
        st.log_job(jid, f"{len(futs)} chunks on the cluster")
        while True:
            done = sum(f.done() for f in futs)
            st.update_job(jid, progress=done / total,
                          metrics={"chunks_done": done, "chunks": total,
                                   "elapsed_s": round(time.time() - t0, 3)})
            if jid in self.cancelled:
                self.client.cancel(futs)
                st.log_job(jid, "cancelled")
                st.update_job(jid, status="cancelled", ended=time.time())
                return
            bad = [f for f in futs if f.status in ("error", "cancelled")]
            if bad:
                bad[0].result()  # raises the task's error (KilledWorker when a worker died)
                raise RuntimeError("a task of the job was cancelled on the cluster")
            if done == len(futs):
                break
            # returns as soon as the last chunk is done: no poll interval added to a job
            with contextlib.suppress(TimeoutError):
                wait(futs, timeout=self.poll)
        out = self.client.compute(x).result()
        result = self._save(jid, spec, out)
        st.log_job(jid, f"succeeded in {time.time() - t0:.2f} s")
        st.update_job(jid, status="succeeded", progress=1.0, ended=time.time(), result=result,
                      metrics={"chunks_done": total, "chunks": total,
                               "elapsed_s": round(time.time() - t0, 3)})

    def _save(self, jid, spec, out) -> dict:
        d = self.state.dir / "jobs" / jid
        d.mkdir(parents=True, exist_ok=True)
        arr = np.asarray(out.values)
        if spec["kind"] == "ops" and (spec["ops"][-1]["op"] in TERMINAL or arr.size <= 64):
            data = {"dims": list(out.dims), "values": arr.tolist(),
                    "coords": {k: np.asarray(v).tolist() for k, v in out.coords.items()
                               if k in out.dims}}
            (d / "result.json").write_text(json.dumps(data))
            return {"format": "json", "path": str(d / "result.json"), "shape": list(arr.shape)}
        import zarr
        z = zarr.open_array(str(d / "result.zarr"), mode="w", shape=arr.shape,
                            dtype=arr.dtype, chunks=arr.shape)
        z[...] = arr
        z.attrs["dims"] = list(out.dims)
        return {"format": "zarr", "path": str(d / "result.zarr"), "shape": list(arr.shape),
                "dtype": str(arr.dtype)}

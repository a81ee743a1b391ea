"""``train`` jobs: :func:`stengine.learn.fit` on the service's cluster, live loss per epoch,
checkpoints in the job dir, the trained artefact optionally registered as a model version."""
from __future__ import annotations

import time

import numpy as np

from ._jobs import check_model_job, check_resources

TRAIN_FIELDS = {"kind", "source", "labels", "model", "epochs", "batch_size", "patch", "seed",
                "lr", "register_as", "resources"}


def _posint(body, name, default, job_error):
    v = body.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise job_error(f"{name} must be a positive integer; got {v!r}", name)
    return v


def validate_train_job(body: dict, job_error) -> dict:
    """The spec of a ``{"kind": "train", "source", "model": {"builder", ...}, ...}`` job."""
    import re
    extra = sorted(set(body) - TRAIN_FIELDS)
    if extra:
        raise job_error(f"unknown field {extra[0]!r}", extra[0])
    if not isinstance(body.get("source"), str):
        raise job_error("source must be the name of a registered source", "source")
    if body.get("labels") is not None and not isinstance(body["labels"], str):
        raise job_error("labels must be the name of a registered source", "labels")
    m = body.get("model")
    if not isinstance(m, dict) or not isinstance(m.get("builder"), str):
        raise job_error("model must be {'builder': <registered model>, params...}", "model")
    from ..learn.registry import models
    if m["builder"] not in models():
        raise job_error(f"unknown builder {m['builder']!r}; choose from {models()}",
                        "model.builder")
    reg = body.get("register_as")
    if reg is not None and (not isinstance(reg, str)
                            or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", reg)):
        raise job_error("register_as must be 1-64 letters, digits, '_', '.', '-'",
                        "register_as")
    lr = body.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise job_error(f"lr must be a positive number; got {lr!r}", "lr")
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise job_error(f"seed must be an integer; got {seed!r}", "seed")
    res = check_resources(body, job_error)
    return {"kind": "train", "source": body["source"], "labels": body.get("labels"),
            "model": dict(m), "epochs": _posint(body, "epochs", 1, job_error),
            "batch_size": _posint(body, "batch_size", 8, job_error),
            "patch": _posint(body, "patch", 16, job_error), "seed": seed, "lr": float(lr),
            "register_as": reg, "resources": res}


def _bands(da) -> int:
    return int(np.prod([n for d, n in da.sizes.items() if d not in ("y", "x")] or [1]))


def check_train_job(spec: dict, source_spec, api_error) -> None:
    """422 naming ``model``/``labels``/``patch``/``source`` for what the data cannot give."""
    from ..io.sources import open_source
    da = open_source(source_spec(spec["source"]))
    params = {k: v for k, v in spec["model"].items() if k != "builder"}
    c = params.get("in_channels")
    if c is not None and c != _bands(da):
        raise api_error(422, f"source {spec['source']!r} has {_bands(da)} band(s); model "
                        f"in_channels is {c}", "model.in_channels")
    if min(da.sizes.get("y", 0), da.sizes.get("x", 0)) < spec["patch"]:
        raise api_error(422, f"source {spec['source']!r} ({dict(da.sizes)}) is smaller than "
                        f"patch={spec['patch']}", "patch")
    builder = spec["model"]["builder"]
    from ..learn._models import BUILTINS
    out = BUILTINS.get(builder, (None, None))[1]
    if spec["labels"] is None and out in ("classes", "label"):
        raise api_error(422, f"builder {builder!r} ({out}) needs a labels source", "labels")
    if spec["labels"] is not None:
        lab = open_source(source_spec(spec["labels"]))
        if _bands(lab) != 1 or lab.sizes.get("y") != da.sizes.get("y") \
                or lab.sizes.get("x") != da.sizes.get("x"):
            raise api_error(422, f"labels {spec['labels']!r} ({dict(lab.sizes)}) must be one "
                            f"band on the grid of {spec['source']!r} ({dict(da.sizes)})",
                            "labels")


def fit_args(spec: dict, da, labels=None) -> tuple:
    """``(model, sampler, kwargs)`` of the :func:`stengine.learn.fit` call of a train job
    (the same call a user makes by hand)."""
    from ..learn import GridSampler
    from ..learn._models import BUILTINS
    out = BUILTINS.get(spec["model"]["builder"], (None, None))[1]
    lab = None
    if labels is not None:
        lab = labels.isel(band=0, drop=True) if "band" in labels.dims else labels
        lab = lab.astype("int64")
    sampler = GridSampler(da.astype("float32"), spec["patch"], labels=lab,
                          **({"label_mode": "centre"} if out == "label" else {}))
    loss = "cross_entropy" if lab is not None else "mse"
    params = {k: v for k, v in spec["model"].items() if k != "builder"}
    kw = {"loss": loss, "epochs": spec["epochs"], "batch_size": spec["batch_size"],
          "seed": spec["seed"], "lr": spec["lr"], "params": params, "progress": False,
          "max_restarts": 1}
    return spec["model"]["builder"], sampler, kw


def run_train(runner, jid: str, spec: dict, src) -> None:
    """Run a train job in the runner's thread; update progress/metrics/log as epochs end."""
    from ..io.sources import open_source
    from ..learn import fit
    st, t0 = runner.state, time.time()
    d = st.dir / "jobs" / jid
    d.mkdir(parents=True, exist_ok=True)
    da = open_source(src)
    labels = open_source(st.source_spec(spec["labels"])) if spec["labels"] else None
    model, sampler, kw = fit_args(spec, da, labels)
    st.log_job(jid, f"fit {model!r}: {len(sampler)} patches, {spec['epochs']} epoch(s)")
    job = fit(model, sampler, **kw, checkpoint=str(d / "checkpoints"),
              artefact=str(d / "artefact"), resources=spec["resources"] or "auto",
              client=runner.client)
    seen = 0

    def report():
        nonlocal seen
        ms = job.metrics
        for m in ms[seen:]:
            st.log_job(jid, f"epoch {m['epoch'] + 1}/{spec['epochs']} loss {m['loss']:.6g}")
        seen = len(ms)
        st.update_job(jid, progress=min(len(ms) / spec["epochs"], 1.0),
                      metrics={"epochs_done": len(ms), "epochs": spec["epochs"],
                               "loss": [m["loss"] for m in ms],
                               "elapsed_s": round(time.time() - t0, 3)})

    while not job.done():
        if jid in runner.cancelled:
            job.cancel()
            st.log_job(jid, "cancelled")
            st.update_job(jid, status="cancelled", ended=time.time())
            return
        report()
        time.sleep(runner.poll)
    res = job.result()
    report()
    result = {"format": "artefact", "path": str(res.artefact.path),
              "sha256": res.artefact.sha256, "checkpoint": res.checkpoint,
              "history": res.history, "restarts": res.restarts}
    if spec["register_as"]:
        from ._models import _copy_local
        v = runner.models.add_version(spec["register_as"],
                                      lambda tmp: _copy_local(str(res.artefact.path), tmp),
                                      "register_as", f"job {jid}")
        result["model"] = {"name": v["name"], "version": v["version"]}
        st.log_job(jid, f"registered as model {v['name']!r} v{v['version']}")
    st.log_job(jid, f"succeeded in {time.time() - t0:.2f} s")
    st.update_job(jid, status="succeeded", progress=1.0, ended=time.time(), result=result,
                  metrics={"epochs_done": len(res.history), "epochs": spec["epochs"],
                           "loss": [h["loss"] for h in res.history],
                           "elapsed_s": round(time.time() - t0, 3)})


# --------------------------------------------------------------------------- embed

def validate_embed_job(body: dict, job_error) -> dict:
    """The spec of ``{"kind": "embed", "source", "model", "version"/"alias", "level"}``:
    one vector per H3 cell (``level``, default 4) over the source's extent."""
    check_model_job(body, {"kind", "source", "model", "version", "alias", "level",
                           "batch_size", "resources"}, job_error)
    level = body.get("level", 4)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 15:
        raise job_error(f"level must be an H3 level 0-15; got {level!r}", "level")
    res = check_resources(body, job_error)
    return {"kind": "embed", "source": body["source"], "model": body["model"],
            "version": body.get("version"), "alias": body.get("alias"), "level": level,
            "batch_size": _posint(body, "batch_size", 256, job_error), "resources": res}


def check_embed_job(store, spec: dict, src, api_error) -> dict:
    """The spec pinned to a model version; 422 naming ``model`` if it is no embedding model."""
    spec = store.check_predict_job(spec, src, api_error)
    rec = store.version(spec["model"], spec["version"])
    if rec["output"] != "vector":
        raise api_error(422, f"model {spec['model']!r} v{spec['version']} outputs "
                        f"{rec['output']!r}, not embeddings ('vector')", "model")
    return spec


def source_cells(da, level: int) -> np.ndarray:
    """H3 ids of the cells whose centre lies in the raster's extent (lon/lat)."""
    from ..index import h3 as sth3
    x, y = np.asarray(da["x"]), np.asarray(da["y"])
    box = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
    crs = da.attrs.get("crs")
    if crs is None and "spatial_ref" in da.coords:
        crs = da.coords["spatial_ref"].attrs.get("crs_wkt")
    if crs is not None:
        from pyproj import CRS, Transformer
        crs = CRS.from_user_input(crs)
        if not crs.is_geographic:
            box = Transformer.from_crs(crs, "EPSG:4326",
                                       always_xy=True).transform_bounds(*box)
    ids = sth3.cells_in_bbox(box, level)
    lon, lat = sth3.cell_to_lonlat(ids)
    keep = (lon >= box[0]) & (lon <= box[2]) & (lat >= box[1]) & (lat <= box[3])
    return ids[keep]


def run_embed(runner, jid: str, spec: dict, src) -> None:
    from ..io.sources import open_source
    from ..learn import embed
    st, t0 = runner.state, time.time()
    d = st.dir / "jobs" / jid
    d.mkdir(parents=True, exist_ok=True)
    da = open_source(src)
    ids = source_cells(da, spec["level"])
    st.log_job(jid, f"model {spec['model']!r} v{spec['version']}: {len(ids)} H3 cell(s) "
               f"at level {spec['level']}")
    out = embed(spec["model_path"], ids, da, batch_size=spec["batch_size"],
                resources=spec["resources"] or "auto", client=runner.client, progress=False)
    if jid in runner.cancelled:
        st.log_job(jid, "cancelled")
        st.update_job(jid, status="cancelled", ended=time.time())
        return
    import zarr
    g = zarr.open_group(str(d / "result.zarr"), mode="w")
    vals = np.asarray(out.values)
    g.create_array("embedding", data=vals)
    g.create_array("cell_ids", data=np.asarray(out["cell_ids"].values, np.uint64))
    result = {"format": "zarr", "path": str(d / "result.zarr"), "shape": list(vals.shape),
              "dtype": str(vals.dtype)}
    st.log_job(jid, f"succeeded in {time.time() - t0:.2f} s")
    st.update_job(jid, status="succeeded", progress=1.0, ended=time.time(), result=result,
                  metrics={"cells": int(vals.shape[0]), "elapsed_s": round(time.time() - t0, 3)})

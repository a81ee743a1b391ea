"""VectorGeo: a geo-embedding for every land cell of an H3 stencil.

The flow, each step a call on the current Dask cluster::

    cells = land_stencil(5)                    # H3 cells whose centre is on land
    ch = channels()                            # 18 channels on the 1/12° grid
    smp = triplet_sampler(land_stencil(3), ch) # anchor / neighbour / distant patches
    res = train(smp, epochs=3, checkpoint_dir="ckpt")           # triplet CNN
    embed_cells(res.artefact, cells, ch, "emb.parquet")          # GeoParquet by parent
    neighbour_class_agreement(vectors, classes)                  # quality vs chance

or all of it: ``run(5, "out/")``. Channels (all on pvlib's 1/12° EPSG:4326 grid, rows
from 90° N southwards, columns from 180° W eastwards): the five Köppen-Geiger classes
one-hot (the 30″ class at the pixel nearest each 1/12° centre; 0 over ocean), altitude
(m, NaN over ocean) and the 12 monthly Linke turbidities. A model sees ``patch × patch``
pixels of 1/12°, not cells, so it can train on a coarser stencil than it embeds.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["land_stencil", "channels", "dominant_class", "triplet_sampler", "train",
           "untrained_artefact", "embed_cells", "read_embeddings",
           "neighbour_class_agreement", "load_index", "run", "CHANNELS"]

CHANNELS = ([f"kg_{c}" for c in "ABCDE"] + ["altitude"]
            + [f"lt_{m:02d}" for m in range(1, 13)])
_STORE = "vectorgeo_channels_v1_c{chunk}.zarr"


def _ids(cells, *, op: str) -> np.ndarray:
    from ._windows import _cell_ids

    return np.asarray(_cell_ids(cells, op=op), np.uint64)


def land_stencil(res: int, *, chunk_level: int | None = None) -> xr.DataArray:
    """The H3 cells at resolution ``res`` whose centre is on land (global 30″ land mask):
    a boolean ``(cells,)`` cube sorted by id (572,805 cells at res 5)."""
    from ..datasets import land_mask
    from ..ops import cell_stencil

    if isinstance(res, bool) or not isinstance(res, int | np.integer) or not 0 <= res <= 15:
        raise ValueError(f"land_stencil: res must be an H3 resolution 0..15; got {res!r}")
    return cell_stencil(land_mask(), "h3", level=int(res), chunk_level=chunk_level)


def channels(*, chunk: int = 270) -> xr.DataArray:
    """The 18 input channels as one lazy ``(band, y, x)`` float32 cube on the 1/12° grid.

    Bands are :data:`CHANNELS`. Stored once as ``<cache>/vectorgeo_channels_v1_c<chunk>.zarr``
    with all bands in every ``chunk × chunk`` block, so one block read gives every channel
    of a patch (small blocks: an embedding task reads only the few around its cells).
    """
    from ..datasets import altitude, cache_dir, koppen_geiger_12th, linke_turbidity
    from ..io import open_cube, to_zarr

    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 16:
        raise ValueError(f"channels: chunk must be an integer >= 16 (pixels); got {chunk!r}")
    store = cache_dir() / _STORE.format(chunk=chunk)
    if not (store / "zarr.json").exists():
        kg = koppen_geiger_12th()
        alt = altitude()
        lt = linke_turbidity()
        bands = [(kg == c).astype("f4") for c in range(1, 6)] + [alt.astype("f4")]
        bands += [lt.isel(time=m, drop=True).astype("f4") for m in range(12)]
        keep = [c for c in alt.coords if c not in alt.dims]
        da = xr.concat([b.drop_vars([c for c in b.coords if c not in b.dims], errors="ignore")
                        for b in bands], dim="band")
        da = da.assign_coords(band=CHANNELS, **{c: alt[c] for c in keep})
        da.name, da.attrs = "vg", {"source": "Köppen-Geiger 12th one-hot, pvlib altitude (m), "
                                   "pvlib Linke turbidity (12 months)"}
        to_zarr(da.chunk({"band": -1, "y": chunk, "x": chunk}), store)
    return open_cube(store)


def dominant_class(cells) -> np.ndarray:
    """The majority Köppen-Geiger class (1–5) of each cell's 1/12° pixels, in id order;
    cells holding no pixel centre take the pixel under their centre; 0 = ocean only."""
    from ..datasets import koppen_geiger_12th
    from ..index import h3 as sth3

    ids = _ids(cells, op="dominant_class")
    level = int(sth3.cell_level(ids[:1])[0])
    kg = koppen_geiger_12th()
    cube = cells if isinstance(cells, xr.DataArray) else None
    if cube is None:
        from ..cube.cells import make_cell_cube

        cube = make_cell_cube(np.ones(ids.size, bool), ids, grid="h3", level=level)
    mode = kg.st.to_cells("h3", level=level, stat="mode", classes=[1, 2, 3, 4, 5], cells=cube)
    out = np.asarray(mode.values)
    got = np.asarray(mode["cell_ids"].values, np.uint64)
    cls = np.zeros(ids.size, np.int64)
    pos = np.searchsorted(ids, got)
    ok = (pos < ids.size) & (ids[np.minimum(pos, ids.size - 1)] == got)
    cls[pos[ok]] = np.where(out[ok] > 0, out[ok], 0)
    miss = cls <= 0
    if miss.any():  # cells smaller than a pixel: the pixel under the centre
        lon, lat = sth3.cell_to_lonlat(ids[miss])
        r = np.clip(((90.0 - lat) * 12).astype(np.int64), 0, kg.shape[0] - 1)
        c = np.clip(((lon + 180.0) * 12).astype(np.int64), 0, kg.shape[1] - 1)
        cls[miss] = np.asarray(kg.data.vindex[r, c].compute())
    return cls


def triplet_sampler(cells, chans, *, patch: int = 8, k: int = 1, seed: int = 0,
                    cache_mb: float = 1024.0):
    """Triplets around cells: anchor = a cell's ``patch × patch`` window of ``chans``,
    positive = that of a cell within ``k`` rings, negative = that of a cell outside them."""
    from .samplers import TripletSampler

    return TripletSampler(_ids(cells, op="triplet_sampler"), chans, patch, k=k, seed=seed,
                          cache_mb=cache_mb)


def train(sampler, *, epochs: int = 3, checkpoint_dir=None, artefact=None, dim: int = 16,
          width: int = 16, blocks: int = 2, batch_size: int = 128, lr: float = 3e-3,
          seed: int = 0, resume: bool = True, client=None, progress: bool = True):
    """Fit the built-in ``triplet_cnn`` (``dim``-vector, unit norm) with the triplet loss
    as a Dask task (GPU worker when there is one); checkpoints after every epoch go to
    ``checkpoint_dir`` and a re-run resumes from them. Returns the :class:`FitResult`."""
    from .train import fit

    bs = min(int(batch_size), len(sampler))
    job = fit("triplet_cnn", sampler, loss="triplet", epochs=epochs, batch_size=bs, lr=lr,
              params={"dim": dim, "width": width, "blocks": blocks},
              checkpoint=checkpoint_dir, resume=resume, artefact=artefact, seed=seed,
              progress=progress, client=client)
    return job.result()


def untrained_artefact(spec, path, *, seed: int = 0):
    """An artefact of ``spec``'s model with fresh random weights (seeded): the baseline
    the trained model is compared with (same normalisation, same architecture)."""
    import torch

    from .registry import save_artefact

    torch.manual_seed(int(seed))
    return save_artefact(spec.build(), spec, path)


def _partitions(ids: np.ndarray, level: int, partition_res: int):
    from ..cube.cells import parent_ids

    par = parent_ids(ids, "h3", level, partition_res)
    cut = np.flatnonzero(np.diff(par)) + 1
    starts = np.r_[0, cut]
    stops = np.r_[cut, ids.size]
    return par[starts], starts, stops


def embed_cells(artefact, cells, chans, out_path, *, partition_res: int | None = None,
                batch_size: int = 1024, client=None, progress: bool = True,
                _fail_after: int | None = None) -> dict:
    """Embed every cell of ``cells`` with ``artefact`` into GeoParquet, one Dask task and
    one file per parent cell.

    ``out_path/h3_r<P>=<parent hex>/part-<hash>.parquet`` holds columns ``cell`` (uint64 H3
    id), ``parent_r<k>`` (uint64 parents, k = 1..min(3, res-1) and P), ``lon``, ``lat``
    (float64 degrees, cell centre), ``embedding`` (fixed-size list of float32),
    ``model_hash`` (the artefact's sha256) and ``geometry`` (centre point, EPSG:4326).
    Files are written under a temporary name and renamed; partitions whose file for this
    model exists are skipped, so a re-run after a failure resumes. ``partition_res``
    defaults to ``max(0, res - 4)`` (at most 2,401 cells a file).

    Returns ``{"path", "cells", "partitions", "written", "skipped", "seconds"}``.
    """
    from distributed import default_client

    from ..index import h3 as sth3
    from ._vectorgeo_write import Box, embed_partition
    from .infer import _release_everywhere, _resolve_model

    op = "embed_cells"
    t0 = time.perf_counter()
    art, key, location = _resolve_model(artefact, op=op)
    if art.spec.output != "vector":
        raise ValueError(f"{op}: artefact must output vectors (a triplet_cnn); its spec says "
                         f"output={art.spec.output!r}")
    ids = _ids(cells, op=op)
    level = int(sth3.cell_level(ids[:1])[0])
    P = max(0, level - 4) if partition_res is None else int(partition_res)
    if not 0 <= P < level:
        raise ValueError(f"{op}: partition_res must be in 0..{level - 1} (below the cells' "
                         f"resolution {level}); got {partition_res!r}")
    levels = tuple(sorted({P, *range(1, min(3, level - 1) + 1)}))
    client = client or default_client()
    out = Path(out_path)
    out.mkdir(parents=True, exist_ok=True)
    parents, starts, stops = _partitions(ids, level, P)
    # one copy of the (lazy) raster on the workers; tasks carry its key
    box = client.scatter(Box(chans), broadcast=True, hash=False)
    futs = [client.submit(
        embed_partition, ids[a:b], int(p), raster=box, model_key=key, location=location,
        out=str(out), partition_res=P, parent_levels=levels, level=level,
        batch_size=batch_size, fail=_fail_after is not None and i >= _fail_after,
        key=f"vectorgeo-embed-{key[:8]}-{int(p)}-{uuid.uuid4().hex[:6]}", pure=False)
        for i, (p, a, b) in enumerate(zip(parents, starts, stops, strict=True))]
    if progress:
        _say(progress, f"embedding {ids.size:,} cells in {len(futs)} partition tasks")
    try:
        results = client.gather(futs)
    finally:
        client.cancel([box])
    _release_everywhere(client, key)
    written = sum(r[1] for r in results if r[2] == "written")
    skipped = sum(r[1] for r in results if r[2] == "skipped")
    return {"path": str(out), "cells": written + skipped, "partitions": len(results),
            "written": written, "skipped": skipped, "partition_res": P,
            "seconds": time.perf_counter() - t0}


def read_embeddings(path):
    """The embeddings folder as ``(cells uint64, vectors (n, D) float32, lon, lat)``,
    sorted by cell id."""
    import pyarrow.dataset as pds

    t = pds.dataset(str(path), format="parquet").to_table(
        columns=["cell", "embedding", "lon", "lat"])
    ids = t["cell"].to_numpy()
    emb = t["embedding"].combine_chunks()
    vec = emb.values.to_numpy().reshape(len(ids), emb.type.list_size)
    o = np.argsort(ids, kind="stable")
    return ids[o], vec[o], t["lon"].to_numpy()[o], t["lat"].to_numpy()[o]


def neighbour_class_agreement(embeddings, classes, *, k: int = 10, queries=None,
                              block: int = 2048) -> dict:
    """The share of each cell's ``k`` nearest neighbours (cosine on the rows of
    ``embeddings``, self excluded, brute force) that share its class, against chance.

    ``classes``: int per row; rows with class <= 0 are left out (as queries and as
    neighbours). ``queries``: optional row indices to average over (all by default).
    ``chance`` is ``sum_c p_c**2`` of the class shares; ``lift`` = agreement / chance.
    """
    x = np.asarray(embeddings, np.float32)
    c = np.asarray(classes)
    if x.ndim != 2 or c.shape != (x.shape[0],):
        raise ValueError(f"neighbour_class_agreement: embeddings must be (n, D) and classes "
                         f"(n,); got {x.shape} and {c.shape}")
    keep = np.flatnonzero(c > 0)
    x, c = x[keep], c[keep]
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"neighbour_class_agreement: k must be an integer in 1..{n - 1}; "
                         f"got {k!r}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    q = np.arange(n) if queries is None else np.flatnonzero(np.isin(keep, queries))
    hits = 0
    for a in range(0, q.size, block):
        qi = q[a:a + block]
        s = x[qi] @ x.T
        s[np.arange(qi.size), qi] = -np.inf  # not its own neighbour
        nb = np.argpartition(-s, k, axis=1)[:, :k]
        hits += int((c[nb] == c[qi, None]).sum())
    _, counts = np.unique(c, return_counts=True)
    p = counts / counts.sum()
    agree = hits / (q.size * k)
    chance = float((p ** 2).sum())
    return {"agreement": agree, "chance": chance, "lift": agree / chance, "k": k,
            "queries": int(q.size), "cells": int(n)}


def load_index(path, *, backend: str = "exact", dsn: str | None = None):
    """The embeddings folder loaded into :class:`stengine.learn.vectors.VectorIndex`, or
    ``None`` when that module is not available."""
    try:
        from .vectors import VectorIndex
    except ImportError:
        return None
    return VectorIndex.from_parquet(str(path), backend=backend, dsn=dsn)


def _say(progress, msg):
    if progress:
        print(f"vectorgeo: {msg}", file=sys.stderr, flush=True)


def run(res: int, out, *, epochs: int = 3, train_res: int | None = None, patch: int = 8,
        dim: int = 16, k_eval: int = 10, eval_cells: int = 20_000, bands=None,
        dsn: str | None = None, seed: int = 0, client=None, progress: bool = True) -> dict:
    """The whole pipeline at H3 resolution ``res`` into folder ``out``: stencil,
    triplets (on the stencil at ``train_res``, default ``min(res, 3)``), training
    (checkpoints in ``out/checkpoints``), embeddings (``out/embeddings``), quality of the
    untrained and the trained model on up to ``eval_cells`` cells, and the vector index
    (exact, or pgvector at ``dsn``). ``bands``: a subset of :data:`CHANNELS` as inputs
    (e.g. without the Köppen one-hot, to see what training adds). Returns a dict of
    paths, counts, seconds and figures.
    """
    from distributed import default_client

    from .infer import embed

    client = client or default_client()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr = min(res, 3) if train_res is None else int(train_res)
    r: dict = {"res": res, "train_res": tr}
    t = time.perf_counter()
    cells = land_stencil(res)
    ids = _ids(cells, op="run")
    ch = channels()
    if bands is not None:
        bad = [b for b in bands if b not in CHANNELS]
        if bad or not bands:
            raise ValueError(f"run: bands must be a non-empty subset of {CHANNELS}; got {bands!r}")
        ch = ch.sel(band=list(bands))
    r["cells"], r["t_stencil"] = int(ids.size), time.perf_counter() - t
    _say(progress, f"{ids.size:,} land cells at res {res} ({r['t_stencil']:.1f} s)")
    t = time.perf_counter()
    smp = triplet_sampler(land_stencil(tr) if tr != res else cells, ch, patch=patch, seed=seed)
    fitres = train(smp, epochs=epochs, checkpoint_dir=out / "checkpoints", dim=dim,
                   artefact=out / "model", seed=seed, client=client, progress=progress)
    r["t_train"] = time.perf_counter() - t
    r["loss"] = [h["loss"] for h in fitres.history]
    r["triplets"], r["epochs"] = len(smp), epochs
    r["artefact"], r["model_hash"] = str(out / "model"), fitres.artefact.sha256
    _say(progress, f"trained on {len(smp):,} triplets × {epochs} epochs in "
         f"{r['t_train']:.1f} s; loss {r['loss'][0]:.3f} → {r['loss'][-1]:.3f}")
    e = embed_cells(fitres.artefact, ids, ch, out / "embeddings", client=client,
                    progress=progress)
    r["embeddings"], r["t_embed"] = e["path"], e["seconds"]
    r["partitions"] = e["partitions"]
    _say(progress, f"embedded {e['cells']:,} cells into {e['partitions']} partitions in "
         f"{e['seconds']:.1f} s")
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    ev = np.sort(rng.choice(ids, min(eval_cells, ids.size), replace=False))
    cls = dominant_class(ev)
    base = untrained_artefact(fitres.artefact.spec, out / "model_untrained", seed=seed)
    for name, art in (("untrained", base), ("trained", fitres.artefact)):
        v = embed(art, ev, ch, client=client, progress=False)
        order = np.searchsorted(ev, np.asarray(v["cell_ids"].values, np.uint64))
        r[f"quality_{name}"] = neighbour_class_agreement(np.asarray(v.values), cls[order],
                                                         k=k_eval)
    r["chance"] = r["quality_trained"]["chance"]
    r["t_quality"] = time.perf_counter() - t
    _say(progress, f"{k_eval}-NN Köppen agreement: untrained "
         f"{r['quality_untrained']['agreement']:.3f}, trained "
         f"{r['quality_trained']['agreement']:.3f}, chance {r['chance']:.3f}")
    t = time.perf_counter()
    r["index"] = load_index(out / "embeddings", backend="pgvector" if dsn else "exact",
                            dsn=dsn)
    r["t_index"] = time.perf_counter() - t
    return r

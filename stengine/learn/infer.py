"""Batch inference as Dask tasks: ``predict`` (per-pixel outputs over a cube) and ``embed``
(one vector per cell).

``predict`` tiles the raster with windows on one global lattice (stride ``patch -
overlap``, the first window starting ``overlap // 2`` pixels before the raster), so which
windows cover a pixel never depends on the chunking. Each output chunk is one task that
takes the input blocks its windows reach, assembles their tile itself (NaN beyond the
raster, 0 after normalisation; no slice/concatenate tasks in the graph), runs every
window touching the chunk in batches, and blends their outputs:

- ``blend="center"`` (default): each pixel takes the window whose central
  ``stride × stride`` square holds it (crop and stitch). For a fully convolutional model
  whose receptive field reaches at most ``overlap // 2`` pixels this equals one forward
  pass over the whole raster. The output chunks are the cube's rounded to multiples of
  the stride, so each window runs in exactly one task.
- ``blend="linear"``: windows weighted by a ramp over their outer ``overlap`` pixels
  and averaged (smoother seams for models that are not translation-equivariant).

The model is loaded once per worker and cached there, keyed by the artefact's sha256
(:mod:`stengine.learn._cache`); tasks carry the key and the artefact's location only.
Task keys are ``stengine-predict-<token>`` / ``stengine-embed-<token>`` (dashboard).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from . import _cache, monitor

__all__ = ["predict", "embed", "release", "cache_stats"]

_OUTPUTS = ("class", "proba", "raw")
_BLENDS = ("center", "linear")


# --------------------------------------------------------------------------- models


class _Runner:
    """A loaded artefact on one worker (torch on the GPU when there is one, or ONNX):
    ``runner(x)`` takes raw patches and normalises them itself (``Artefact.run``)."""

    def __init__(self, art, location):
        self.art = art
        self.spec = art.spec
        self.location = location
        self.device = None
        if getattr(art, "model", None) is not None:
            import torch

            if torch.cuda.is_available():
                self.device = torch.device("cuda")
                art.model.to(self.device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.art.run(x)


def _load_runner(location):
    from .registry import load

    path = location
    if not isinstance(location, str | os.PathLike):  # scattered bytes of an ONNX file
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".onnx", prefix="stengine-model-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(location)
    _set_torch_threads()
    return _Runner(load(path), str(location) if isinstance(location, str | os.PathLike)
                   else "<bytes>")


def _set_torch_threads():
    """One torch thread per worker thread (workers share the machine's cores)."""
    _cache.tune_malloc()
    try:
        from distributed import get_worker

        n = get_worker().state.nthreads
    except (ImportError, ValueError):
        return
    import torch

    with contextlib.suppress(RuntimeError):
        torch.set_num_threads(max(1, int(n)))


def _runner(key, location):
    return _cache.get(key, location, _load_runner)


def _resolve_model(model, *, op: str):
    """(artefact, key, location) of ``model`` (artefact, artefact path, ONNX path)."""
    from . import registry

    if isinstance(model, str | os.PathLike) and not isinstance(model, bool):
        p = str(model)
        if not (Path(p).exists() or "://" in p):
            known = registry.models()
            if p in known:
                raise ValueError(f"{op}: model={p!r} is a registered architecture without "
                                 "weights; pass a trained artefact (fit(...).result().artefact),"
                                 " its folder, or an ONNX file")
            raise ValueError(f"{op}: model={p!r} is neither an artefact/ONNX path nor a known "
                             f"model; known models: {known}")
        art = registry.load(p)
        return art, art.sha256, p
    if hasattr(model, "spec") and hasattr(model, "sha256"):
        loc = getattr(model, "path", None)
        if loc is None:
            import tempfile

            loc = tempfile.mkdtemp(prefix="stengine-artefact-")
            model.save(loc)
        return model, model.sha256, str(loc)
    import torch

    if isinstance(model, torch.nn.Module):
        raise TypeError(f"{op}: model must be an artefact (with its spec: channels, patch "
                        "size, normalisation); got a bare torch module. Save it with "
                        "stengine.learn.registry.save_artefact(module, spec, path) first")
    raise TypeError(f"{op}: model must be an Artefact, an artefact folder or an ONNX file; "
                    f"got {type(model).__name__}")


# --------------------------------------------------------------------------- cube


def _channels_array(cube, dims, bands, *, op: str):
    """The cube as a lazy ``(C, H, W)`` float32 dask array (NaN = missing), its channel
    names and a reference variable for the grid."""
    import dask.array as dsa

    from ._reader import _sources

    sources, ref = _sources(cube, dims, list(bands) if bands is not None else None, op=op)
    parts = []
    for s in sources:
        a = s.data
        if a.ndim != 3:
            a = a.reshape((s.L,) + a.shape[-2:], merge_chunks=True)
        a = a.astype(np.float32)
        if s.nodata is not None:
            raw = s.data.reshape(a.shape, merge_chunks=True) if s.data.ndim != 3 else s.data
            a = dsa.where(raw == s.nodata, np.float32(np.nan), a)
        parts.append(a)
    arr = dsa.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return arr.rechunk({0: -1}), [c for s in sources for c in s.channels], ref


def _check_channels(spec, channels, *, op: str, match: str):
    want = list(spec.channels)
    if len(want) != len(channels):
        raise ValueError(
            f"{op}: the model takes {len(want)} channels {_short(want)}; the cube has "
            f"{len(channels)} {_short(channels)}. Pass a cube (or bands=) with the model's "
            "channels, in its order.")
    if match == "name" and want != list(channels):
        diff = next(i for i, (a, b) in enumerate(zip(want, channels, strict=True)) if a != b)
        raise ValueError(
            f"{op}: channel {diff} of the cube is {channels[diff]!r} but the model was trained "
            f"on {want[diff]!r} (model {_short(want)}, cube {_short(channels)}). Pass a cube "
            "with the model's channels, or match='position' to pair them by position.")


def _short(names, k=6):
    names = list(names)
    return str(names) if len(names) <= k else str(names[:k])[:-1] + f", ... ({len(names)})]"


# --------------------------------------------------------------------------- windows


def _weights(P: int, m: int, s: int, blend: str) -> np.ndarray:
    if blend == "center":
        w = np.zeros(P, np.float32)
        w[m:m + s] = 1
    else:
        ov = P - s
        u = np.arange(P, dtype=np.float32)
        w = np.minimum(np.minimum(u + 1, P - u), ov + 1) / (ov + 1)
    return w


def _window_range(a: int, b: int, n_total: int, P: int, m: int, s: int, blend: str):
    """Indices of the lattice windows that give pixels [a, b) a non-zero weight: those
    whose central ``s`` pixels meet it (``center``), or whose whole span does."""
    n_win = max(1, math.ceil(n_total / s))
    if blend == "center":
        lo, hi = a // s, (b - 1) // s
    else:
        lo, hi = (a + m - P) // s + 1, (b - 1 + m) // s
    return range(max(0, lo), min(n_win - 1, hi) + 1)


def _tile_extent(a: int, b: int, n_total: int, P: int, m: int, s: int, blend: str):
    """Raster pixels ``[t0, t1)`` (may reach beyond the raster) that the windows of the
    chunk ``[a, b)`` read, and those windows' indices."""
    r = _window_range(a, b, n_total, P, m, s, blend)
    if not len(r):
        return a, b, r
    return min(a, r.start * s - m), max(b, (r.stop - 1) * s - m + P), r


def _predict_tile(blocks, *, rows, cols, loc, runner_key, location, P, m, s, shape, blend,
                  batch_size, out_kind, n_out):
    """One output chunk ``loc = (y0, y1, x0, x1)`` from the input blocks it needs
    (``blocks[i][j]`` spans raster rows ``rows[i]``, columns ``cols[j]``): the tile is
    assembled here (NaN beyond the raster), in the task, not by slice/concatenate tasks of
    its own (one scheduler round trip each: 12 % of a 1-worker run)."""
    y0, y1, x0, x1 = loc
    H, W = shape
    ty0, ty1, wy = _tile_extent(y0, y1, H, P, m, s, blend)
    tx0, tx1, wx = _tile_extent(x0, x1, W, P, m, s, blend)
    c = blocks[0][0].shape[0]
    tile = np.full((c, ty1 - ty0, tx1 - tx0), np.nan, np.float32)
    for (r0, r1), brow in zip(rows, blocks, strict=True):
        a0, a1 = max(r0, ty0), min(r1, ty1)
        for (c0, c1), blk in zip(cols, brow, strict=True):
            b0, b1 = max(c0, tx0), min(c1, tx1)
            if a0 < a1 and b0 < b1:
                tile[:, a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0] = \
                    blk[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0]
    return _predict_windows(tile, (ty0, tx0), loc, wy, wx, key=runner_key, location=location,
                            P=P, m=m, s=s, blend=blend, batch_size=batch_size,
                            out_kind=out_kind, n_out=n_out)


def _predict_windows(tile, origin, loc, rows, cols, *, key, location, P, m, s, blend,
                     batch_size, out_kind, n_out):
    """Run the windows ``rows × cols`` (lattice indices) of the chunk ``loc`` over
    ``tile`` (whose pixel 0, 0 is raster pixel ``origin``), blend, mask missing pixels."""
    runner = _runner(key, location)
    y0, y1, x0, x1 = loc
    h, w = y1 - y0, x1 - x0
    wy = _weights(P, m, s, blend)
    wx = wy
    center_blend = blend == "center"
    # centre blend: each pixel comes from one window, copied (no weights to sum)
    acc = np.zeros((n_out, h, w), np.float32 if center_blend else np.float64)
    wsum = np.zeros((h, w), np.float32 if center_blend else np.float64)
    oy, ox = origin  # the tile's origin in raster pixels
    wins = [(i * s - m, j * s - m) for i in rows for j in cols]
    # windows that only cover missing pixels add nothing (their pixels are masked)
    keep = [(gy, gx) for gy, gx in wins
            if not np.isnan(tile[:, gy - oy:gy - oy + P, gx - ox:gx - ox + P]).all()]
    lo, hi = (m, m + s) if center_blend else (0, P)  # the part of a window that counts
    for k in range(0, len(keep), batch_size):
        part = keep[k:k + batch_size]
        x = np.stack([tile[:, gy - oy:gy - oy + P, gx - ox:gx - ox + P] for gy, gx in part])
        out = runner(x)
        if out.ndim == 2:
            out = np.broadcast_to(out[:, :, None, None], out.shape + (P, P))
        for (gy, gx), o in zip(part, out, strict=True):
            a0, a1 = max(gy + lo, y0), min(gy + hi, y1)
            b0, b1 = max(gx + lo, x0), min(gx + hi, x1)
            if a0 >= a1 or b0 >= b1:
                continue
            dst = (slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0))
            src = o[:, a0 - gy:a1 - gy, b0 - gx:b1 - gx]
            if center_blend:
                acc[(slice(None),) + dst] = src
                wsum[dst] = 1
                continue
            ww = np.outer(wy[a0 - gy:a1 - gy], wx[b0 - gx:b1 - gx])
            acc[(slice(None),) + dst] += src * ww
            wsum[dst] += ww
    center = tile[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    missing = np.isnan(center).all(axis=0) | (wsum == 0)
    if center_blend:
        res = acc
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            res = (acc / np.where(wsum > 0, wsum, 1)).astype(np.float32)
    if out_kind == "class":
        cls = res.argmax(axis=0).astype(np.int16)
        cls[missing] = -1
        return cls
    if out_kind == "proba":
        e = np.exp(res - res.max(axis=0, keepdims=True))
        res = e / e.sum(axis=0, keepdims=True)
    res[:, missing] = np.nan
    return res


def predict(model, cube, *, patch: int | None = None, overlap: int | None = None,
            batch_size: int = 64, output: str | None = None, blend: str = "center",
            bands=None, dims=None, match: str = "name", resources="auto", out=None,
            client=None, progress: bool = True):
    """Run a model over every pixel of a cube; return a lazy DataArray on the cube's grid.

    Parameters
    ----------
    model : Artefact | str | path
        A trained artefact (``fit(...).result().artefact``), its folder, or an ONNX file
        exported with :func:`~stengine.learn.export_onnx`.
    cube : xarray.DataArray | xarray.Dataset
        The input, with the model's channels (named as the samplers name them:
        ``var[label]``); dask-backed (e.g. :func:`stengine.open_cube`) or in memory.
    patch : int, optional
        Window side in pixels (default: the model's patch size).
    overlap : int, optional
        Pixels shared by neighbouring windows (default ``patch // 4``, rounded down to
        even); windows step by ``patch - 2 * (overlap // 2)``.
    batch_size : int
        Windows per forward pass.
    output : {"class", "proba", "raw"}, optional
        ``"class"``: the argmax class per pixel (int16, -1 where the input is missing);
        ``"proba"``: softmax of the blended outputs ``(class, y, x)``; ``"raw"``: the
        blended model outputs ``(output, y, x)``. Default ``"class"`` for per-pixel class
        models, ``"raw"`` otherwise (per-patch outputs fill their window).
    blend : {"center", "linear"}
        How overlapping windows combine (see the module notes).
    bands, dims : optional
        Channel selection and spatial dims, as for the samplers.
    match : {"name", "position"}
        Pair the cube's channels with the model's by name (default) or by position.
    resources : dict | None | "auto"
        Dask resources of the inference tasks; ``"auto"``: ``{"GPU": 1}`` when a worker
        advertises a GPU. A request no worker can meet fails at once.
    out : str | path, optional
        Also write the result with :func:`stengine.to_zarr` (atomically) and return it
        opened from there; cached models are released afterwards.
    client : distributed.Client, optional
        Used to check resources (default: the current one, if any).
    progress : bool
        Progress bar while writing ``out``.

    Raises
    ------
    ValueError
        Channels that differ from the model's (before anything runs), a patch larger
        than the cube, a bad ``overlap``/``output``/``blend``, an unknown model name
        (the known ones are listed).
    ResourceUnavailableError
        ``resources`` that no worker advertises.
    """
    import dask
    import dask.array as dsa

    from ..cube.validate import spatial_dims

    op = "predict"
    art, key, location = _resolve_model(model, op=op)
    spec = art.spec
    dims = spatial_dims(dims)
    arr, channels, ref = _channels_array(cube, dims, bands, op=op)
    if match not in ("name", "position"):
        raise ValueError(f"{op}: match must be 'name' or 'position'; got {match!r}")
    _check_channels(spec, channels, op=op, match=match)
    P = int(patch if patch is not None else spec.patch_size)
    H, W = arr.shape[-2:]
    if P < 1 or P > H or P > W:
        raise ValueError(f"{op}: patch={P} must be between 1 and the cube's size ({H}×{W} "
                         f"pixels); pass patch <= {min(H, W)}")
    if overlap is None:
        overlap = (P // 4) // 2 * 2
    if not 0 <= overlap < P:
        raise ValueError(f"{op}: overlap={overlap} must be in [0, patch={P}); windows step by "
                         "patch - overlap")
    m = overlap // 2
    s = P - 2 * m
    if blend not in _BLENDS:
        raise ValueError(f"{op}: blend must be one of {_BLENDS}; got {blend!r}")
    kind = spec.output
    if output is None:
        output = "class" if kind == "classes" else "raw"
    if output not in _OUTPUTS:
        raise ValueError(f"{op}: output must be one of {_OUTPUTS}; got {output!r}")
    if output in ("class", "proba") and kind not in ("classes", "label"):
        raise ValueError(f"{op}: output={output!r} needs a class model; this model's output "
                         f"is {kind!r}: use output='raw'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{op}: batch_size must be a positive integer; got {batch_size!r}")
    res = _resources(client, resources, op=op)
    n_out = int(spec.n_outputs)
    if blend == "center":
        # chunk edges on the window lattice (multiples of the stride): each window's
        # centre square lies in one chunk, so each window runs once, not once per chunk
        # it straddles (512-pixel chunks, stride 48: 9.5 % more forward passes otherwise)
        oy, ox = (_aligned_chunks(n, c, s, P) for n, c in ((H, arr.chunks[1]),
                                                          (W, arr.chunks[2])))
    else:
        # chunks at least a window wide (fewer windows shared by two chunks)
        oy, ox = (_wide_chunks(n, c, P) for n, c in ((H, arr.chunks[1]), (W, arr.chunks[2])))
    token = dask.base.tokenize(key, arr.name, P, m, blend, output, batch_size, oy, ox)
    name = f"stengine-predict-{token}"
    kw = dict(runner_key=key, location=location, P=P, m=m, s=s, shape=(H, W), blend=blend,
              batch_size=batch_size, out_kind=output, n_out=n_out)
    lead = () if output == "class" else (0,)
    in_y, in_x = _spans(arr.chunks[1]), _spans(arr.chunks[2])
    dsk = {}
    for i, (y0, y1) in enumerate(_spans(oy)):
        ty0, ty1, _ = _tile_extent(y0, y1, H, P, m, s, blend)
        bi = [k for k, (r0, r1) in enumerate(in_y) if r0 < ty1 and r1 > ty0]
        for j, (x0, x1) in enumerate(_spans(ox)):
            tx0, tx1, _ = _tile_extent(x0, x1, W, P, m, s, blend)
            bj = [k for k, (c0, c1) in enumerate(in_x) if c0 < tx1 and c1 > tx0]
            fn = functools.partial(_predict_tile, rows=[in_y[k] for k in bi],
                                   cols=[in_x[k] for k in bj], loc=(y0, y1, x0, x1), **kw)
            dsk[(name, *lead, i, j)] = (fn, [[(arr.name, 0, r, c) for c in bj] for r in bi])
    from dask.highlevelgraph import HighLevelGraph

    with dask.annotate(resources=res) if res else contextlib.nullcontext():
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[arr])
    if output == "class":
        data = dsa.Array(graph, name, (oy, ox), dtype=np.int16,
                         meta=np.empty((0, 0), np.int16))
    else:
        data = dsa.Array(graph, name, ((n_out,), oy, ox), dtype=np.float32,
                         meta=np.empty((0, 0, 0), np.float32))
    ydim, xdim = dims
    coords = {d: ref[d] for d in (ydim, xdim) if d in ref.coords}
    from ..cube import SPATIAL_REF

    if SPATIAL_REF in ref.coords:
        coords[SPATIAL_REF] = ref[SPATIAL_REF]
    attrs = {"model": spec.name, "model_sha256": key, "patch": P, "overlap": 2 * m,
             "blend": blend, "output": output}
    if output == "class":
        attrs["nodata"] = -1
        result = xr.DataArray(data, dims=(ydim, xdim), coords=coords, name="prediction",
                              attrs=attrs)
    else:
        lead = "class" if output == "proba" else "output"
        coords[lead] = np.arange(n_out)
        result = xr.DataArray(data, dims=(lead, ydim, xdim), coords=coords, name="prediction",
                              attrs=attrs)
    if SPATIAL_REF in result.coords:
        result = result.assign_attrs(grid_mapping=SPATIAL_REF)
    if out is None:
        return result
    from ..io import open_cube, to_zarr

    t0 = time.perf_counter()
    try:
        to_zarr(result, out, progress=progress)
    finally:
        _release_everywhere(client, key)
    if progress:
        print(f"predict: wrote {out} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return open_cube(out)


def _aligned_chunks(n: int, chunks, s: int, least: int) -> tuple[int, ...]:
    """Chunk sizes along an axis of ``n`` pixels, near the largest of ``chunks``, each at
    least ``least``, with every interior edge on a multiple of the stride ``s``; the
    given ``chunks`` when they already are.

    Examples
    --------
    >>> _aligned_chunks(2048, (512,) * 4, 48, 64)
    (528, 528, 528, 464)
    >>> _aligned_chunks(70, (25, 25, 20), 8, 16)
    (24, 24, 22)
    >>> _aligned_chunks(96, (48, 48), 8, 16)
    (48, 48)
    """
    chunks = tuple(int(c) for c in chunks)
    edges = np.cumsum(chunks)[:-1]
    if min(chunks) >= least and not (edges % s).any():
        return chunks
    step = max(1, round(max(chunks) / s), -(-least // s)) * s
    sizes = [step] * (n // step)
    rem = n - step * len(sizes)
    if rem and sizes and rem < least:
        sizes[-1] += rem
    elif rem:
        sizes.append(rem)
    return tuple(sizes)


def _wide_chunks(n: int, chunks, least: int) -> tuple[int, ...]:
    """``chunks`` when each is at least ``least`` pixels, else near-even ones that are."""
    chunks = tuple(int(c) for c in chunks)
    if min(chunks) >= least:
        return chunks
    c = max(least, max(chunks))
    sizes = (c,) * (n // c) + ((n % c,) if n % c else ())
    return sizes if sizes[-1] >= least else _even_chunks(n, c, least)


def _spans(chunks) -> list[tuple[int, int]]:
    edges = np.concatenate([[0], np.cumsum(chunks)]).astype(int).tolist()
    return list(zip(edges[:-1], edges[1:], strict=True))


def _even_chunks(n: int, c: int, least: int) -> tuple[int, ...]:
    k = max(1, n // max(c, least))
    base = n // k
    sizes = [base] * k
    for i in range(n - base * k):
        sizes[i] += 1
    return tuple(sizes)


def _resources(client, resources, *, op: str):
    from .train import _auto_resources, _pick_workers

    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            if resources not in ("auto", None):
                raise ValueError(f"{op}: resources={resources!r} needs a Dask cluster "
                                 "(stengine.connect('gpu')); no client is running") from None
            return None
    res = _auto_resources(client, resources)
    if res:
        _pick_workers(client, 1, res, op=op)
    return res


def _release_everywhere(client, key):
    try:
        if client is None:
            from distributed import default_client

            client = default_client()
        client.run(_cache.release, key)
    except (ImportError, ValueError):
        _cache.release(key)


def release(key: str | None = None, *, client=None) -> dict:
    """Drop cached models (``key`` = artefact sha256, or all) on every worker and free
    their GPU memory; returns ``{worker: models dropped}``."""
    try:
        if client is None:
            from distributed import default_client

            client = default_client()
        return client.run(_cache.release, key)
    except (ImportError, ValueError):
        return {"local": _cache.release(key)}


def cache_stats(*, client=None) -> dict:
    """``{worker: {"models": [...], "loads": {sha256: n}}}``: what each worker has loaded."""
    try:
        if client is None:
            from distributed import default_client

            client = default_client()
        return client.run(_cache.stats)
    except (ImportError, ValueError):
        return {"local": _cache.stats()}


# --------------------------------------------------------------------------- embed


def _embed_part(sampler, *, key, location, batch_size, job):
    """Embed the cells of one part: (cell ids, vectors)."""
    import dask

    runner = _runner(key, location)
    ids, vecs = [], []
    with dask.config.set(scheduler="sync"):
        for b in sampler.batches(batch_size):
            out = runner(b["x"])
            if out.ndim == 4:  # per-pixel model: the centre pixel's vector
                c = out.shape[-1] // 2
                out = out[:, :, c, c]
            ids.append(np.asarray(b["cell"], np.uint64))
            vecs.append(np.asarray(out, np.float32))
    monitor.publish("embed", job, {"event": "chunk", "cells": int(sum(map(len, ids)))})
    if not ids:
        return np.empty(0, np.uint64), np.empty((0, 0), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)


def embed(model, cells, raster, *, batch_size: int = 256, cells_per_task: int = 20_000,
          bands=None, toi=None, dims=None, out=None, parent_level: int | None = None,
          resources="auto", client=None, progress: bool = True):
    """One vector per cell: the model applied to the patch of ``raster`` around each cell.

    Parameters
    ----------
    model : Artefact | str | path
        A model whose output is per patch (``(B, n)``: embeddings, labels); a per-pixel
        model gives the centre pixel's outputs.
    cells : cell cube | array of uint64 H3 ids
        Where (a cube or a stencil); cells whose window misses the raster are left out.
    raster : xarray.DataArray | xarray.Dataset
        The gridded data, with the model's channels.
    batch_size, cells_per_task : int
        Patches per forward pass, and cells per Dask task.
    out : str | path, optional
        Also write GeoParquet (one point per cell centre, EPSG:4326) partitioned by parent
        cell: ``out/parent=<id>/part.parquet``.
    parent_level : int, optional
        The partitions' parent level (default: the cell level minus 3, at least 0).

    Returns
    -------
    xarray.DataArray
        ``(cells, feature)`` cell cube (float32), computed.
    """
    import dask

    from ..cube.cells import make_cell_cube
    from ._windows import _cell_ids
    from .samplers import CellSampler

    op = "embed"
    art, key, location = _resolve_model(model, op=op)
    spec = art.spec
    ids = np.asarray(_cell_ids(cells, op=op), np.uint64)
    level, grid = _cells_level(cells, ids)
    res = _resources(client, resources, op=op)
    job = uuid.uuid4().hex[:10]
    parts = []
    for a in range(0, ids.size, cells_per_task):
        sub = ids[a:a + cells_per_task]
        try:
            smp = CellSampler(sub, raster, int(spec.patch_size), bands=bands, toi=toi,
                              dims=dims)
        except ValueError as e:
            if "no cell of cells" in str(e):
                continue
            raise
        if a == 0 or not parts:
            _check_channels(spec, smp.channels, op=op, match="name")
        parts.append(smp)
    if not parts:
        raise ValueError(f"{op}: no cell of cells has its window on the raster")
    token = dask.base.tokenize(key, ids.tobytes(), batch_size)
    tasks = [dask.delayed(_embed_part, pure=True, name=f"stengine-embed-{token}-{i}")(
        p, key=key, location=location, batch_size=batch_size, job=job)
        for i, p in enumerate(parts)]
    from ..compute import compute

    t0 = time.perf_counter()
    with dask.annotate(resources=res) if res else contextlib.nullcontext():
        results = compute(*tasks, progress=progress) if len(tasks) > 1 else \
            (compute(tasks[0], progress=progress),)
    _release_everywhere(client, key)
    got_ids = np.concatenate([r[0] for r in results])
    vecs = np.concatenate([r[1] for r in results if len(r[0])])
    cube = make_cell_cube(vecs, got_ids, grid=grid, level=level, dims=("cells", "feature"),
                          name="embedding",
                          attrs={"model": spec.name, "model_sha256": key,
                                 "seconds": time.perf_counter() - t0})
    cube = cube.assign_coords(feature=np.arange(vecs.shape[1]))
    if out is not None:
        _write_geoparquet(cube, out, parent_level if parent_level is not None
                          else max(0, level - 3))
    return cube


def _cells_level(cells, ids):
    from ..cube.cells import CELL_IDS

    if isinstance(cells, xr.DataArray) and CELL_IDS in cells.coords:
        a = cells[CELL_IDS].attrs
        if "level" in a:
            return int(a["level"]), a.get("grid_name", "h3")
    from ..index import h3 as sth3

    return int(sth3.cell_level(ids[:1])[0]), "h3"


def _write_geoparquet(cube, out, parent_level: int):
    import geopandas as gpd
    import pandas as pd

    from ..cube.cells import CELL_IDS, parent_ids
    from ..index import h3 as sth3

    ids = np.asarray(cube[CELL_IDS].values, np.uint64)
    level = int(cube[CELL_IDS].attrs["level"])
    parents = parent_ids(ids, "h3", level, parent_level)
    lon, lat = sth3.cell_to_lonlat(ids)
    vec = np.asarray(cube.values)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in np.unique(parents):
        sel = parents == p
        df = pd.DataFrame({"cell": ids[sel]})
        for k in range(vec.shape[1]):
            df[f"f{k}"] = vec[sel, k]
        g = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(lon[sel], lat[sel]), crs=4326)
        d = out / f"parent={int(p)}"
        d.mkdir(exist_ok=True)
        tmp = d / f".part.{uuid.uuid4().hex[:6]}.tmp"
        g.to_parquet(tmp)
        os.replace(tmp, d / "part.parquet")

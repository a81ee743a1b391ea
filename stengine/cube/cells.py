"""Cell cubes: ``(time, cells)`` DataArrays keyed by sorted uint64 DGGS cell ids.

Conventions (compatible with xdggs):

* a ``cells`` dim with a ``cell_ids`` coordinate (uint64, strictly increasing) whose
  attrs carry ``grid_name`` (``"h3"`` or ``"htm"``) and ``level`` (the resolution); the
  DataArray's attrs repeat both, plus ``chunk_level`` when the cube is chunked by parent;
* other dims (``time``, ``class``) are free; ``cells`` may be the only dim;
* **chunked by parent**: sorted ids put the children of one coarse cell next to each
  other (an H3 id's digits and an HTM id's bit pairs run coarse to fine), so the dask
  chunk boundaries along ``cells`` are placed where the parent at ``chunk_level``
  changes; :func:`parent_index` maps parent → slice and :func:`select_parents` reads only
  the chunks of the parents asked for.

Zarr layout (:func:`to_zarr_cells` / :func:`open_cells`): Zarr needs regular chunks, parent
groups are irregular. Consecutive parent groups are packed whole into Zarr chunks of
``chunk_len`` slots (a group never straddles two chunks; ``chunk_len`` defaults to the
largest group), and each chunk's unused tail is padding (cell id 0, fill value). The store
keeps ``chunk_count`` (valid slots per chunk), so opening drops the padding with one slice
per chunk: every dask chunk of the opened cube is one Zarr chunk, and reading one parent
reads exactly the one Zarr chunk that holds it.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ChunkError, DimensionError, IndexRangeError

__all__ = [
    "CELL_DIM",
    "CELL_IDS",
    "GRIDS",
    "make_cell_cube",
    "check_cell_cube",
    "cell_grid",
    "check_grid_level",
    "parent_ids",
    "parent_index",
    "default_chunk_level",
    "chunk_by_parent",
    "select_parents",
    "restrict",
    "to_zarr_cells",
    "open_cells",
]

CELL_DIM = "cells"
CELL_IDS = "cell_ids"
GRIDS = {"h3": 15, "htm": 29}  # grid name → finest level
_LAYOUT = "stengine-cells-v1"


def check_grid_level(grid, level, *, op: str) -> tuple[str, int]:
    """Validate ``grid`` (``"h3"`` | ``"htm"``) and ``level``; return them normalised."""
    if not isinstance(grid, str) or grid.lower() not in GRIDS:
        raise ValueError(f"{op}: grid must be one of {sorted(GRIDS)}; got {grid!r}")
    grid = grid.lower()
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise TypeError(f"{op}: level must be an integer; got {level!r}")
    if not 0 <= int(level) <= GRIDS[grid]:
        raise IndexRangeError(f"{op}: level for grid {grid!r} must be in 0..{GRIDS[grid]}; "
                              f"got {level}")
    return grid, int(level)


def make_cell_cube(data, cell_ids, *, grid: str, level: int, dims=None, coords=None,
                   name=None, attrs=None, chunk_level: int | None = None) -> xr.DataArray:
    """Wrap values per cell as a cell cube, sorted by cell id.

    Parameters
    ----------
    data : array-like
        Values with a cells axis (numpy or dask).
    cell_ids : array-like of uint64
        One id per cell along the cells axis; unique.
    grid, level : str, int
        ``"h3"`` (levels 0..15) or ``"htm"`` (0..29), and the cells' level.
    dims : sequence of str, optional
        Default ``("cells",)``, ``("time", "cells")`` by ndim; must include ``"cells"``.
    chunk_level : int, optional
        Chunk the result by parent cell at this level (see :func:`chunk_by_parent`).

    Examples
    --------
    >>> import numpy as np
    >>> ids = np.array([0x85283473fffffff, 0x8528340bfffffff], dtype=np.uint64)
    >>> cube = make_cell_cube(np.array([1.0, 2.0]), ids, grid="h3", level=5)
    >>> cube.dims, cube.values, cube.cell_ids.attrs["grid_name"]
    (('cells',), array([2., 1.]), 'h3')
    """
    grid, level = check_grid_level(grid, level, op="make_cell_cube")
    ids = np.asarray(cell_ids)
    if ids.dtype.kind not in "ui":
        raise TypeError(f"make_cell_cube: cell_ids must be integers (uint64); got {ids.dtype}")
    ids = ids.astype(np.uint64)
    if dims is None:
        dims = {1: (CELL_DIM,), 2: ("time", CELL_DIM)}.get(np.ndim(data))
        if dims is None:
            raise DimensionError(f"make_cell_cube: pass dims= for {np.ndim(data)}-D data")
    dims = tuple(dims)
    if CELL_DIM not in dims:
        raise DimensionError(f"make_cell_cube: dims must include {CELL_DIM!r}; got {dims}")
    axis = dims.index(CELL_DIM)
    if np.shape(data)[axis] != ids.size:
        raise ValueError(f"make_cell_cube: {ids.size} cell_ids for {np.shape(data)[axis]} "
                         f"values along {CELL_DIM!r}")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.size > 1 and (np.diff(ids) == 0).any():
        raise ValueError("make_cell_cube: cell_ids must be unique")
    if ids.size > 1 and np.any(order[1:] < order[:-1]):
        data = np.take(data, order, axis=axis) if not hasattr(data, "dask") else \
            data[(slice(None),) * axis + (order,)]
    a = dict(attrs or {})
    a.update(grid_name=grid, level=level)
    cube = xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=a)
    cube = cube.assign_coords({CELL_IDS: (CELL_DIM, ids, {"grid_name": grid, "level": level})})
    if chunk_level is not None:
        cube = chunk_by_parent(cube, chunk_level)
    return cube


def check_cell_cube(cube, *, op: str, name: str = "cube") -> tuple[str, int]:
    """Check ``cube`` is a cell cube; return its ``(grid_name, level)``."""
    if not isinstance(cube, xr.DataArray):
        raise TypeError(f"{op}: {name} must be an xarray.DataArray cell cube; got "
                        f"{type(cube).__name__}")
    if CELL_DIM not in cube.dims or CELL_IDS not in cube.coords:
        raise DimensionError(f"{op}: {name} must have a {CELL_DIM!r} dim with a {CELL_IDS!r} "
                             f"coordinate (a cell cube); got dims {tuple(cube.dims)}. Make one "
                             "with stengine.ops.to_cells or stengine.cube.cells.make_cell_cube.")
    return cell_grid(cube, op=op)


def cell_grid(cube, *, op: str = "cell_grid") -> tuple[str, int]:
    """``(grid_name, level)`` of a cell cube, from ``cell_ids`` attrs (xdggs) or the cube's."""
    a = {**cube.attrs, **cube[CELL_IDS].attrs}
    grid = a.get("grid_name")
    level = a.get("level", a.get("resolution"))
    if grid is None or level is None:
        raise DimensionError(f"{op}: the cell cube lacks grid_name/level attrs on {CELL_IDS!r}")
    return check_grid_level(str(grid), int(level), op=op)


def parent_ids(cell_ids, grid: str, level: int, chunk_level: int) -> np.ndarray:
    """Parents at ``chunk_level`` of cells at ``level`` (uint64; monotone for sorted input)."""
    grid, level = check_grid_level(grid, level, op="parent_ids")
    if not 0 <= chunk_level <= level:
        raise IndexRangeError(f"parent_ids: chunk_level must be in 0..{level} (the cells' "
                              f"level); got {chunk_level}")
    c = np.asarray(cell_ids, np.uint64)
    if grid == "htm":
        return c >> np.uint64(2 * (level - chunk_level))
    from ..index.h3 import cell_to_parent

    return cell_to_parent(c, chunk_level)


def _groups(ids, grid, level, chunk_level):
    p = parent_ids(ids, grid, level, chunk_level)
    if p.size == 0:
        return p, np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.r_[0, np.nonzero(p[1:] != p[:-1])[0] + 1]
    stops = np.r_[starts[1:], p.size]
    return p[starts], starts, stops


def parent_index(cube, chunk_level: int | None = None):
    """Parent → slice index: ``(parents, starts, stops)`` along ``cells``.

    ``chunk_level`` defaults to the cube's ``attrs["chunk_level"]``.
    """
    grid, level = check_cell_cube(cube, op="parent_index")
    if chunk_level is None:
        chunk_level = cube.attrs.get("chunk_level")
        if chunk_level is None:
            raise ValueError("parent_index: the cube has no chunk_level; pass chunk_level=")
    return _groups(cube[CELL_IDS].values, grid, level, int(chunk_level))


def default_chunk_level(grid: str, level: int) -> int:
    """A parent level giving chunks of at most ~2.4k (H3: 7⁴) or ~4k (HTM: 4⁶) cells."""
    return max(0, level - (4 if grid == "h3" else 6))


def chunk_by_parent(cube, chunk_level: int | None = None, *, max_cells: int | None = None):
    """Rechunk ``cube`` along ``cells`` so chunk boundaries fall where the parent changes.

    With ``max_cells``, consecutive parent groups are packed into chunks of up to that
    many cells (a group larger than ``max_cells`` stays one chunk); without it each
    parent group is one chunk. Other dims keep their chunks (numpy input: one chunk).
    """
    grid, level = check_cell_cube(cube, op="chunk_by_parent")
    if chunk_level is None:
        chunk_level = default_chunk_level(grid, level)
    _, starts, stops = _groups(cube[CELL_IDS].values, grid, level, int(chunk_level))
    sizes = tuple(int(s) for s in _pack(stops - starts, max_cells)) or (cube.sizes[CELL_DIM],)
    scattered = _scatter_chunks(cube, sizes)
    out = cube.copy(data=scattered) if scattered is not None else cube.chunk({CELL_DIM: sizes})
    out.attrs["chunk_level"] = int(chunk_level)
    return out


def _scatter_chunks(cube, sizes):
    """In-memory data on a distributed cluster: send each chunk to the workers once, and
    build the dask array from those futures (``.chunk()`` would embed the data in every
    graph that uses it)."""
    if hasattr(cube.data, "dask") or not isinstance(cube.data, np.ndarray):
        return None
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return None
    import dask.array as dsa
    from dask import delayed

    axis = cube.get_axis_num(CELL_DIM)
    data = cube.data
    bounds = np.r_[0, np.cumsum(sizes)]
    blocks = [np.take(data, np.arange(a, b), axis=axis) for a, b in
              zip(bounds[:-1], bounds[1:], strict=True)]
    futures = client.scatter(blocks)
    parts = [dsa.from_delayed(delayed(f), b.shape, dtype=b.dtype, meta=b[:0] if b.ndim else b)
             for f, b in zip(futures, blocks, strict=True)]
    return dsa.concatenate(parts, axis=axis)


def _pack(sizes, max_cells):
    if max_cells is None or len(sizes) == 0:
        return np.asarray(sizes, np.int64)
    out, cur = [], 0
    for s in sizes:
        if cur and cur + s > max_cells:
            out.append(cur)
            cur = 0
        cur += s
    out.append(cur)
    return np.asarray(out, np.int64)


def select_parents(cube, parents) -> xr.DataArray:
    """The cells of ``parents`` (ids at the cube's ``chunk_level``), reading only their chunks."""
    ps, starts, stops = parent_index(cube)
    want = np.unique(np.asarray(parents, np.uint64))
    pos = np.searchsorted(ps, want)
    hit = (pos < ps.size) & (ps[np.minimum(pos, ps.size - 1)] == want)
    pieces = [cube.isel({CELL_DIM: slice(int(starts[i]), int(stops[i]))}) for i in pos[hit]]
    if not pieces:
        return cube.isel({CELL_DIM: slice(0, 0)})
    return xr.concat(pieces, dim=CELL_DIM, combine_attrs="override") if len(pieces) > 1 \
        else pieces[0]


def restrict(cube, stencil) -> xr.DataArray:
    """``cube`` limited to the cells of ``stencil`` (a cell cube or an array of ids)."""
    check_cell_cube(cube, op="restrict")
    ids = stencil[CELL_IDS].values if isinstance(stencil, xr.DataArray) else \
        np.asarray(stencil, np.uint64)
    keep = np.isin(cube[CELL_IDS].values, ids)
    return cube.isel({CELL_DIM: np.nonzero(keep)[0]})


# --------------------------------------------------------------------------- Zarr layout
def _fill_value(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    return 0


def to_zarr_cells(cube, store, *, chunk_len: int | None = None, mode: str = "w",
                  progress: bool = False, lock_timeout: float | None = None) -> str:
    """Write a cell cube to Zarr in the packed parent-group layout (see module docs).

    ``chunk_len`` (slots per Zarr chunk along ``cells``) defaults to the largest parent
    group; it must be at least that. Other dims (``time``) are stored whole, so reading
    one parent group reads exactly one Zarr chunk. The write is atomic and holds the
    store's write lock, as :func:`stengine.io.zarr.to_zarr` does (``lock_timeout``).
    """
    import dask.array as dsa

    from ..io.zarr import to_zarr

    grid, level = check_cell_cube(cube, op="to_zarr_cells")
    chunk_level = cube.attrs.get("chunk_level")
    if chunk_level is None:
        chunk_level = default_chunk_level(grid, level)
    ids = cube[CELL_IDS].values
    _, starts, stops = _groups(ids, grid, level, int(chunk_level))
    sizes = stops - starts
    biggest = int(sizes.max()) if sizes.size else 1
    if chunk_len is None:
        chunk_len = biggest
    if chunk_len < biggest:
        raise ChunkError(f"to_zarr_cells: chunk_len={chunk_len} is smaller than the largest "
                         f"parent group ({biggest} cells at chunk_level {chunk_level}); pass "
                         f"chunk_len>={biggest} or a finer chunk_level")
    counts = _pack(sizes, chunk_len) if sizes.size else np.zeros(0, np.int64)
    nchunks = counts.size
    # slot of each cell: its chunk's base plus its offset within the chunk
    chunk_of = np.repeat(np.arange(nchunks), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    slots = chunk_of * chunk_len + (np.arange(ids.size) - first[chunk_of])
    nslots = max(nchunks, 1) * chunk_len
    axis = cube.get_axis_num(CELL_DIM)
    src = cube.transpose(*[d for d in cube.dims if d != CELL_DIM], CELL_DIM)
    data = src.data
    fill = _fill_value(src.dtype)
    lead = data.shape[:-1]
    if isinstance(data, np.ndarray):
        padded = np.full((*lead, nslots), fill, dtype=src.dtype)
        padded[..., slots] = data  # stays in memory: to_zarr writes it with local threads
    else:
        pieces = []
        data = data.rechunk({data.ndim - 1: tuple(int(c) for c in counts) or -1})
        for c in range(nchunks):
            blk = data[..., int(first[c]): int(first[c] + counts[c])]
            pad = dsa.full((*lead, chunk_len - int(counts[c])), fill, dtype=src.dtype)
            pieces.append(dsa.concatenate([blk, pad], axis=-1))
        padded = dsa.concatenate(pieces, axis=-1).rechunk({data.ndim - 1: chunk_len})
    padded_ids = np.zeros(nslots, np.uint64)
    padded_ids[slots] = ids
    name = cube.name if cube.name is not None else "data"
    coords = {k: v for k, v in src.coords.items() if CELL_DIM not in v.dims}
    ds = xr.Dataset({name: (src.dims, padded)}, coords=coords)
    ds[name].attrs = dict(cube.attrs)
    ds[CELL_IDS] = xr.Variable((CELL_DIM,), padded_ids, dict(cube[CELL_IDS].attrs))
    ds["chunk_count"] = xr.Variable(("cell_chunk",), counts.astype(np.int64))
    ds.attrs = {"stengine_layout": _LAYOUT, "variable": str(name), "grid_name": grid,
                "level": level, "chunk_level": int(chunk_level), "chunk_len": int(chunk_len),
                "cells_axis": int(axis)}
    # other dims are stored whole, so one parent group is exactly one Zarr chunk
    return to_zarr(ds, store, mode=mode, chunks={CELL_DIM: chunk_len}, progress=progress,
                   lock_timeout=lock_timeout)


def open_cells(store, *, missing: str = "error", lock_timeout: float | None = None,
               _ds=None) -> xr.DataArray:
    """Open a cell cube written by :func:`to_zarr_cells`, lazily, padding removed.

    Each dask chunk along ``cells`` is the valid prefix of one Zarr chunk (whole parent
    groups), so :func:`select_parents` on the result reads only the chunks it needs.
    ``missing`` and ``lock_timeout`` are those of :func:`stengine.io.zarr.open_cube`
    (missing or damaged chunks are errors naming store and chunk).
    """
    import dask.array as dsa

    from ..io.zarr import open_dataset

    ds = _ds if _ds is not None else open_dataset(store, missing=missing,
                                                  lock_timeout=lock_timeout)
    if not isinstance(ds, xr.Dataset) or ds.attrs.get("stengine_layout") != _LAYOUT:
        raise ValueError(f"open_cells: {store!r} is not a cell cube store (written by "
                         "stengine.cube.cells.to_zarr_cells)")
    name = ds.attrs["variable"]
    L = int(ds.attrs["chunk_len"])
    counts = ds["chunk_count"].values
    v = ds[name]
    data = v.data
    pieces = [data[..., c * L: c * L + int(n)] for c, n in enumerate(counts)]
    body = dsa.concatenate(pieces, axis=-1) if pieces else data[..., :0]
    ids_all = ds[CELL_IDS].values
    ids = np.concatenate([ids_all[c * L: c * L + int(n)] for c, n in enumerate(counts)]) \
        if len(counts) else ids_all[:0]
    coords = {k: c for k, c in v.coords.items() if CELL_DIM not in c.dims}
    out = xr.DataArray(body, dims=v.dims, coords=coords, name=name, attrs=dict(v.attrs))
    out = out.assign_coords({CELL_IDS: (CELL_DIM, ids, dict(ds[CELL_IDS].attrs))})
    axis = int(ds.attrs.get("cells_axis", out.ndim - 1))
    order = [d for d in out.dims if d != CELL_DIM]
    order.insert(axis, CELL_DIM)
    out = out.transpose(*order)
    out.attrs["chunk_level"] = int(ds.attrs["chunk_level"])
    return out

"""The per-partition task of :func:`stengine.learn.vectorgeo.embed_cells`: embed the cells
of one coarse parent cell and write them as one GeoParquet file, atomically.

Layout: ``<out>/h3_r<P>=<parent H3 hex>/part-<model hash[:16]>.parquet``. The file is
written under a temporary name in the same folder and renamed, so a killed run leaves
only whole files (plus ``.tmp`` leftovers that readers skip and the next run removes),
and a re-run skips the partitions whose file for this model already exists.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

__all__ = ["partition_dir", "part_name", "embed_partition", "Box", "COLUMNS"]


class Box:
    """Holds a lazy raster so Dask passes it to tasks as it is: a bare dask-backed
    DataArray argument would be computed (the whole 672 MB cube) as a dependency."""

    def __init__(self, obj):
        self.obj = obj

COLUMNS = ("cell", "parent_r*", "lon", "lat", "embedding", "model_hash", "geometry")


def partition_dir(out, partition_res: int, parent: int) -> Path:
    """``out/h3_r<P>=<parent as H3 hex string>``: a hive key that is not a column of the
    files (their ``parent_r<P>`` is uint64; a hive key of that name would be a string)."""
    return Path(out) / f"h3_r{partition_res}={int(parent):x}"


def part_name(model_hash: str) -> str:
    return f"part-{model_hash[:16]}.parquet"


def _table(ids, vecs, parents: dict, model_hash: str):
    """A GeoParquet-ready Arrow table with the contract's columns (see vectorgeo)."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa
    from geopandas.io.arrow import _geopandas_to_arrow

    from ..index import h3 as sth3

    lon, lat = sth3.cell_to_lonlat(ids)
    cols = {"cell": ids}
    cols.update({f"parent_r{k}": v for k, v in parents.items()})
    cols.update({"lon": np.asarray(lon, np.float64), "lat": np.asarray(lat, np.float64)})
    df = pd.DataFrame(cols)
    g = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    # geopandas' own converter writes the "geo" metadata; the embedding is added as a
    # fixed-size list (pandas has no such column type)
    t = _geopandas_to_arrow(g, index=False)
    d = vecs.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), d)
    t = t.add_column(t.schema.get_field_index("geometry"), "embedding", emb)
    mh = pa.array([model_hash] * len(ids), pa.string())
    return t.add_column(t.schema.get_field_index("geometry"), "model_hash", mh)


def embed_partition(ids, parent: int, *, raster, model_key: str, location, out, partition_res: int,
                    parent_levels: tuple, level: int, batch_size: int, fail: bool = False):
    """Embed ``ids`` (uint64, one parent's cells) and write their file; returns
    ``(parent, rows, "written" | "skipped")``. ``fail=True`` raises after the temporary file
    is written (tests simulate a crash mid-write with it)."""
    import dask
    import pyarrow.parquet as pq

    from ..cube.cells import parent_ids
    from .infer import _runner
    from .samplers import CellSampler

    d = partition_dir(out, partition_res, parent)
    final = d / part_name(model_key)
    if final.exists():
        return int(parent), int(pq.read_metadata(final).num_rows), "skipped"
    runner = _runner(model_key, location)
    raster = raster.obj if isinstance(raster, Box) else raster
    smp = CellSampler(np.asarray(ids, np.uint64), raster, int(runner.spec.patch_size))
    got, vecs = [], []
    # the sampler's reads run inside this task, not as a nested graph on the cluster
    with dask.config.set(scheduler="sync"):
        for b in smp.batches(batch_size):
            got.append(np.asarray(b["cell"], np.uint64))
            vecs.append(np.asarray(runner(b["x"]), np.float32))
    got = np.concatenate(got)
    vecs = np.concatenate(vecs)
    parents = {k: parent_ids(got, "h3", level, k) for k in parent_levels}
    table = _table(got, vecs, parents, model_key)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp)
    if fail:
        raise RuntimeError(f"simulated failure while writing partition {parent}")
    os.replace(tmp, final)
    for old in d.iterdir():  # files of other models, and temporary leftovers
        if old.name != final.name:
            old.unlink(missing_ok=True)
    return int(parent), int(got.size), "written"

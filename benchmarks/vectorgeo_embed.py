"""VectorGeo benchmarks: embeddings of every H3 land cell, end to end from the stencil.

``embed_land_cells``: :func:`stengine.learn.vectorgeo.land_stencil` (30″ land mask → H3
cells) then :func:`~stengine.learn.vectorgeo.embed_cells` (one Dask task per parent-cell
partition: 8×8 patches of the 18-channel 1/12° stack, the ``triplet_cnn`` with
``dim=16, width=16, blocks=2``, a GeoParquet file per partition written atomically) into a
fresh folder, on a LocalCluster of 2 worker processes × 1 thread. Training is excluded
(the model's weights do not change the work; its spec's normalisation comes from a
:class:`~stengine.learn.CellSampler` at res 1); target ≤ 5 min for the 572,805 res-5
cells on 2 cores. The case ``training (apart)`` times training: ``fit`` of the same model
on the TripletSampler of a coarser stencil (res 3; res 1 for ``tiny``), one epoch,
batches of 128. Sizes: ``tiny`` = res 1 (smoke), ``res5``.

``python -m benchmarks --family vectorgeo --bench embed_land_cells``.
"""

from __future__ import annotations

import shutil
import tempfile

from ._runner import Case, benchmark

EMBED_RES = {"tiny": 1, "res5": 5}
TRAIN_RES = {"tiny": 1, "res5": 3}  # stencil of the training case
PARAMS = {"dim": 16, "width": 16, "blocks": 2}


def _cluster():
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None)
    return lc, Client(lc)


def _artefact(tmp, ch):
    from stengine.learn import CellSampler
    from stengine.learn.registry import ModelSpec
    from stengine.learn.vectorgeo import land_stencil, untrained_artefact

    smp = CellSampler(land_stencil(1), ch, 8)
    spec = ModelSpec.for_sampler("triplet_cnn", smp, params=dict(PARAMS))
    return untrained_artefact(spec, f"{tmp}/model")


def _warm(client):
    """Import torch on the workers before timing (10-30 s in fresh processes)."""
    client.run(lambda: __import__("torch") and None)


@benchmark("vectorgeo", "embed_land_cells", sizes=["tiny", "res5"])
def embed_land_cells(size):
    from stengine.learn import vectorgeo as vg

    res = EMBED_RES[size]
    tres = TRAIN_RES[size]
    ch = vg.channels()
    tmp = tempfile.mkdtemp(prefix="stengine-vg-bench-")
    lc, client = _cluster()
    got = {}
    try:
        _warm(client)
        art = _artefact(tmp, ch)
        n = int(vg.land_stencil(res).sizes["cells"])

        def run():
            out = f"{tmp}/emb"
            shutil.rmtree(out, ignore_errors=True)
            cells = vg.land_stencil(res)
            r = vg.embed_cells(art, cells, ch, out, client=client, progress=False)
            got.update(partitions=r["partitions"], cells=r["cells"])
            return r

        yield Case("stengine", run, items=n, repeat=1 if size != "tiny" else None,
                   note=f"land_stencil + embed_cells, H3 res {res}, 2 workers x 1 thread, "
                   "patch 8, 18 channels, GeoParquet per parent",
                   info=lambda: dict(got))
        smp = vg.triplet_sampler(vg.land_stencil(tres), ch, patch=8)

        def fit():
            return vg.train(smp, epochs=1, checkpoint_dir=None, batch_size=128, client=client,
                            progress=False, **PARAMS)

        # training apart (not part of the embedding target): same cluster, 1 rank
        yield Case("training (apart)", fit, items=len(smp), repeat=1,
                   note=f"fit triplet_cnn, TripletSampler over H3 res {tres} land cells, "
                   "1 epoch, batch 128, 1 rank (CPU)")
    finally:
        client.close()
        lc.close()
        shutil.rmtree(tmp, ignore_errors=True)

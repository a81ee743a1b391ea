"""Demo step: VectorGeo, a geo-embedding for every H3 land cell (res 4; res 3 quick):
land stencil, triplets of 1/12° patches (Köppen one-hot, altitude, 12-month Linke
turbidity), a triplet CNN trained as a Dask task, per-parent GeoParquet, vector index."""

from __future__ import annotations


def run(ctx) -> list[tuple[str, str]]:
    try:
        from ..learn import vectorgeo as vg
        from ..learn._vectorgeo_plot import pc1_map
    except ImportError as e:  # the learn extra (torch) is not installed
        return [("skipped", str(e))]

    res = 3 if ctx.quick else 4
    r = vg.run(res, ctx.out / "vectorgeo", epochs=2, train_res=3, eval_cells=5_000,
               client=ctx.client, progress=True)
    qu, qt = r["quality_untrained"], r["quality_trained"]
    rows = [
        ("land stencil", f"{r['cells']:,} H3 res-{res} cells ({r['t_stencil']:.1f} s)"),
        ("training (triplet_cnn)", f"{r['triplets']:,} triplets (res {r['train_res']}) × "
         f"{r['epochs']} epochs, loss {r['loss'][0]:.3f} → {r['loss'][-1]:.3f}, "
         f"{r['t_train']:.1f} s"),
        ("embeddings (GeoParquet)", f"{r['cells']:,} cells in {r['partitions']} parent "
         f"partitions, {r['t_embed']:.1f} s ({r['cells'] / r['t_embed']:,.0f} cells/s)"),
        ("10-NN Köppen agreement", f"untrained {qu['agreement']:.3f}, trained "
         f"{qt['agreement']:.3f}, chance {r['chance']:.3f} (random sample of "
         f"{qt['queries']:,} land cells)"),
        ("vector index", repr(r["index"]) if r["index"] is not None else "not available"),
    ]
    png = pc1_map(r["embeddings"], ctx.out / "vectorgeo_pc1.png")
    rows.append(("map (first PC)", png.name))
    return rows

"""VectorGeo end to end: geo-embeddings for every H3 land cell, written as GeoParquet and
loaded into a vector index, on a local Dask cluster (GPU worker for training if any).

    python examples/vectorgeo.py --res 4 --out vectorgeo-out --epochs 2
    python examples/vectorgeo.py --res 5 --dsn postgresql://...   # pgvector index

Prints the counts, the seconds of each step and the 10-NN Köppen-Geiger agreement of the
untrained and the trained model against chance; draws the first PC of the embeddings.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=4, help="H3 resolution of the cells (0-15)")
    ap.add_argument("--out", type=Path, default=Path("vectorgeo-out"), help="output folder")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs")
    ap.add_argument("--train-res", type=int, default=None,
                    help="H3 resolution of the training stencil (default min(res, 3))")
    ap.add_argument("--dsn", default=None, help="PostgreSQL+pgvector DSN for the index "
                    "(default: the exact in-memory index)")
    a = ap.parse_args(argv)

    import stengine
    from stengine.learn import vectorgeo as vg
    from stengine.learn._vectorgeo_plot import pc1_map

    with stengine.connect() as conn:
        r = vg.run(a.res, a.out, epochs=a.epochs, train_res=a.train_res, dsn=a.dsn,
                   client=conn.client)
    qu, qt = r["quality_untrained"], r["quality_trained"]
    print(f"cells: {r['cells']:,} at res {a.res} (stencil {r['t_stencil']:.1f} s)")
    print(f"training: {r['triplets']:,} triplets x {r['epochs']} epochs, {r['t_train']:.1f} s, "
          f"loss {r['loss'][0]:.3f} -> {r['loss'][-1]:.3f}")
    print(f"embeddings: {r['embeddings']} ({r['partitions']} partitions, {r['t_embed']:.1f} s)")
    print(f"10-NN Koppen agreement: untrained {qu['agreement']:.3f}, trained "
          f"{qt['agreement']:.3f}, chance {r['chance']:.3f}")
    print(f"index: {r['index']!r}")
    print(f"map: {pc1_map(r['embeddings'], a.out / 'vectorgeo_pc1.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Demo step: learn the Köppen-Geiger class from the monthly Linke turbidity climatology
and altitude (13 channels, 1/12°), train a small U-Net as a Dask task (on a GPU worker
when the cluster has one), predict the whole globe into Zarr, compare with the truth."""

from __future__ import annotations

import time

import numpy as np

from ..datasets import KOPPEN_CLASSES, altitude, koppen_geiger_12th, linke_turbidity

PATCH = 8


def run(ctx) -> list[tuple[str, str]]:
    import xarray as xr

    try:
        from ..learn import RandomSampler, fit, predict
    except ImportError as e:  # the learn extra (torch) is not installed
        return [("skipped", str(e))]

    rows = []
    t0 = time.perf_counter()
    lt = linke_turbidity()
    alt = altitude()
    # labels: the 30″ classes at the pixel nearest each 1/12° centre (Zarr, cached)
    lab = koppen_geiger_12th()
    truth = np.asarray(lab.values)
    # inputs over land only (Köppen's own land/ocean split): ocean windows are skipped
    land = lab > 0
    # |latitude| (degrees) as a third input: a proxy for the temperature zones that
    # turbidity and altitude do not tell apart (77.0 -> 79.9 % here; C stays hard)
    abslat = xr.zeros_like(alt, dtype="f4") + np.abs(alt["y"]).astype("f4")
    cube = xr.Dataset({"linke_turbidity": lt.where(land), "altitude": alt.where(land),
                       "abs_latitude": abslat.where(land)})
    rows.append(("inputs", f"Linke turbidity 12 months + altitude + |lat|, "
                 f"{lt.shape[1]}×{lt.shape[2]} px (1/12°), labels = Köppen-Geiger at the "
                 f"nearest 30″ pixel ({time.perf_counter() - t0:.1f} s)"))
    # train: random 8×8 patches with at most half missing, per-pixel classes
    n = 1500 if ctx.quick else 3000
    epochs = 2 if ctx.quick else 3
    # the decoded cube (~0.5 GB) fits the sampler's block cache: every block read once
    smp = RandomSampler(cube, PATCH, n, labels=lab, max_nodata=0.5, seed=0, cache_mb=1024)
    ckpt = ctx.out / "learn_checkpoints"
    t0 = time.perf_counter()
    job = fit("patch_unet", smp, loss="cross_entropy", epochs=epochs, batch_size=64, lr=3e-3,
              params={"n_classes": 6, "base": 8, "depth": 1}, checkpoint=ckpt, resume=False,
              artefact=ctx.out / "koppen_unet", seed=0)
    res = job.result()
    t_fit = time.perf_counter() - t0
    last = res.history[-1]
    device = next((e.get("device") for e in job.events if e.get("event") == "start"), "?")
    rows.append(("training (patch_unet, 1 rank)",
                 f"{n:,} patches × {epochs} epochs on {device}: loss "
                 f"{res.history[0]['loss']:.3f} → {last['loss']:.3f}, {t_fit:.1f} s, "
                 f"{last['samples_per_s']:,.0f} samples/s"))
    rows.append(("checkpoint", str(res.checkpoint)))
    # predict the globe into Zarr (windows of 64 px, 8 px overlap, centre blend)
    t0 = time.perf_counter()
    store = ctx.out / "koppen_predicted.zarr"
    pred = predict(res.artefact, cube.chunk({"y": 540, "x": 1080}), patch=64, overlap=8,
                   batch_size=32, out=store, progress=False)
    p = np.asarray(pred.values)
    t_pred = time.perf_counter() - t0
    rows.append(("inference (globe → Zarr)",
                 f"{p.size / 1e6:.1f} M px in {t_pred:.1f} s ({p.size / t_pred / 1e6:.2f} M px/s) "
                 f"→ {store.name}"))
    ok = (truth > 0) & (p >= 0)
    acc = float(np.mean(p[ok] == truth[ok]))
    base = float(np.max(np.bincount(truth[ok], minlength=6)[1:]) / ok.sum())
    per = ", ".join(
        f"{KOPPEN_CLASSES[c].split()[0]} {100 * np.mean(p[ok & (truth == c)] == c):.0f}%"
        for c in sorted(KOPPEN_CLASSES) if (ok & (truth == c)).any())
    rows.append(("accuracy vs true classes",
                 f"{100 * acc:.1f}% of {ok.sum():,} land px (majority class {100 * base:.1f}%); "
                 f"per class recall {per}"))
    png = _figure(p, truth, ctx.out / "koppen_learned.png", acc)
    rows.append(("map", png.name))
    return rows


def _figure(pred, truth, path, acc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colors = ["#ffffff", "#1a9850", "#fdae61", "#a6d96a", "#4575b4", "#c2a5cf"]
    cmap = ListedColormap(colors)
    show_p = np.where(pred < 0, 0, pred)
    fig, axes = plt.subplots(2, 1, figsize=(9, 9.5))
    for ax, a, title in ((axes[0], truth, "Köppen-Geiger (truth, nearest 30″ pixel)"),
                         (axes[1], show_p, f"Predicted from Linke turbidity + altitude "
                                           f"({100 * acc:.1f}% of land pixels)")):
        ax.imshow(a[::2, ::2], cmap=cmap, vmin=-0.5, vmax=5.5, extent=(-180, 180, -90, 90),
                  interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[c]) for c in sorted(KOPPEN_CLASSES)]
    fig.legend(handles, [KOPPEN_CLASSES[c] for c in sorted(KOPPEN_CLASSES)], loc="lower center",
               ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

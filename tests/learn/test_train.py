"""fit as Dask tasks on a real 2-worker LocalCluster (processes, the session's):
checkpoints, resume, init_from, DDP on gloo, a killed worker, fail-fast resources, bad input."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stengine.cube.conventions import make_raster
from stengine.learn import GridSampler, fit, load, register
from stengine.learn.train import (
    ResourceUnavailableError,
    latest_checkpoint,
    load_checkpoint,
)


def tiny_fcn(*, in_channels, n_classes=2, width=8):
    """Bias-carrying, BatchNorm-free FCN (DDP-equivalent to one process)."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, n_classes, 3, padding=1))


register("tiny_fcn", tiny_fcn, replace=True)


# ``client``: conftest's, on the session's 2-worker cluster. The killed-worker tests keep
# it: the nanny restarts the killed process and they wait for both workers again.


def _data(seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 48, 48)).astype("f4") + shift
    y = ((x[0] - shift) + (x[1] - shift) > 0).astype("i8")
    return make_raster(x, name="v"), make_raster(y, name="lab")


@pytest.fixture(scope="module")
def sampler():
    cube, lab = _data()
    return GridSampler(cube, 12, 6, labels=lab, shuffle=True, seed=3)


def _weights(res):
    return {k: v.detach().clone() for k, v in res.artefact.model.state_dict().items()}


def _max_rel(a, b):
    return max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12)) for k in a)


FIT = dict(loss="cross_entropy", batch_size=8, params={"n_classes": 2}, progress=False,
           seed=7)


def test_fit_single_worker_writes_checkpoints(client, sampler, tmp_path):
    sched = lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)  # noqa: E731
    job = fit("tiny_fcn", sampler, epochs=2, checkpoint=tmp_path / "ck", scheduler=sched,
              **FIT)
    res = job.result(timeout=120)
    assert job.status == "succeeded"
    assert [m["epoch"] for m in res.history] == [0, 1]
    assert all(np.isfinite(m["loss"]) and m["samples_per_s"] > 0 for m in res.history)
    assert res.history[1]["loss"] < res.history[0]["loss"] * 1.05
    assert [m["epoch"] for m in job.metrics] == [0, 1]  # the live stream saw both
    # the last checkpoint holds everything a resume needs
    st = load_checkpoint(tmp_path / "ck")
    assert st["epoch"] == 2 and st["step"] == 0
    assert set(st) >= {"model", "optimizer", "scheduler", "sampler", "rng", "spec", "lineage",
                       "history", "fingerprint"}
    assert st["sampler"]["epoch"] == 2 and st["sampler"]["seed"] == 3
    assert st["scheduler"]["last_epoch"] == 2
    assert st["optimizer"]["state"]  # Adam moments
    assert {"torch", "numpy", "python"} <= set(st["rng"][0])
    assert st["lineage"][-1]["data"]["channels"] == sampler.channels
    assert st["path"] == res.checkpoint
    # committed atomically: no temporary files left, keep=2 files at most
    names = sorted(os.listdir(tmp_path / "ck"))
    assert "latest.json" in names and not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.startswith("ckpt-")]) == 2
    # the artefact reloads with the trained weights
    art = load(res.artefact.path)
    assert art.sha256 == res.artefact.sha256
    for k, v in art.model.state_dict().items():
        torch.testing.assert_close(v, st["model"][k])


def test_resume_equals_uninterrupted(client, sampler, tmp_path):
    full = fit("tiny_fcn", sampler, epochs=3, checkpoint=tmp_path / "a", **FIT).result(120)
    fit("tiny_fcn", sampler, epochs=1, checkpoint=tmp_path / "b", **FIT).result(120)
    resumed = fit("tiny_fcn", sampler, epochs=3, checkpoint=tmp_path / "b", **FIT).result(120)
    assert [m["epoch"] for m in resumed.history] == [0, 1, 2]
    a, b = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 3


def test_resume_mid_epoch_from_step_checkpoint(client, sampler, tmp_path):
    full = fit("tiny_fcn", sampler, epochs=2, checkpoint=tmp_path / "a", **FIT).result(120)
    # stop after epoch 0 + 2 steps: train 1 epoch with step checkpoints, then fake the
    # interruption by committing the step checkpoint of a 2-epoch run
    job = fit("tiny_fcn", sampler, epochs=2, checkpoint=tmp_path / "b", checkpoint_every=2,
              keep=20, **FIT)
    job.result(120)
    files = sorted(p for p in os.listdir(tmp_path / "b") if p.startswith("ckpt-e0001-s"))
    mid = [p for p in files if not p.endswith("s0000000.pt")][0]
    (tmp_path / "b" / "latest.json").write_text(f'{{"file": "{mid}"}}')
    assert load_checkpoint(tmp_path / "b")["step"] == 2
    resumed = fit("tiny_fcn", sampler, epochs=2, checkpoint=tmp_path / "b", **FIT).result(120)
    a, b = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_init_from_records_lineage(client, sampler, tmp_path):
    first = fit("tiny_fcn", sampler, epochs=1, checkpoint=tmp_path / "a", **FIT).result(120)
    cube2, lab2 = _data(seed=5, shift=0.5)  # new data, same channels
    s2 = GridSampler(cube2, 12, 6, labels=lab2, shuffle=True, seed=4)
    second = fit("tiny_fcn", s2, epochs=1, checkpoint=tmp_path / "b", init_from=tmp_path / "a",
                 **FIT).result(120)
    lin = load_checkpoint(tmp_path / "b")["lineage"]
    assert len(lin) == 2
    assert lin[0]["data"] == sampler.describe() and lin[0]["init_from"] is None
    assert lin[1]["data"] == s2.describe()
    assert lin[1]["init_from"] == latest_checkpoint(tmp_path / "a")
    assert second.lineage == lin
    # normalisation is the first run's (the weights were trained with it)
    assert second.artefact.spec.mean == first.artefact.spec.mean
    # the run started from the first run's weights, not from scratch
    scratch = fit("tiny_fcn", s2, epochs=1, **FIT).result(120)
    assert second.history[0]["loss"] < scratch.history[0]["loss"]


def test_checkpoint_of_another_model_is_refused(client, sampler, tmp_path):
    fit("tiny_fcn", sampler, epochs=1, checkpoint=tmp_path / "a", **FIT).result(120)
    other = dict(FIT, params={"n_classes": 2, "width": 4})
    with pytest.raises(ValueError, match=r"checkpoint=.*another model.*width"):
        fit("tiny_fcn", sampler, epochs=2, checkpoint=tmp_path / "a", **other)
    with pytest.raises(ValueError, match=r"init_from=.*another model"):
        fit("tiny_fcn", sampler, epochs=1, init_from=tmp_path / "a", **other)


def test_unwritable_checkpoint_fails_before_training(client, sampler, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    t0 = time.perf_counter()
    with pytest.raises(PermissionError, match=r"checkpoint=.*not writable"):
        fit("tiny_fcn", sampler, epochs=1, checkpoint=blocker / "ck", **FIT)
    assert time.perf_counter() - t0 < 5


def test_gpu_resources_fail_fast(client, sampler):
    t0 = time.perf_counter()
    with pytest.raises(ResourceUnavailableError, match=r"GPU.*connect\('gpu'\).*--resources GPU=1"):
        fit("tiny_fcn", sampler, epochs=1, resources={"GPU": 1}, **FIT)
    assert time.perf_counter() - t0 < 5
    assert not client.processing() or not any(client.processing().values())


def test_more_ranks_than_workers_fail_fast(client, sampler):
    with pytest.raises(ResourceUnavailableError, match=r"workers=3.*only 2"):
        fit("tiny_fcn", sampler, epochs=1, workers=3, **dict(FIT, batch_size=9))


def test_bad_arguments(client, sampler, band_cube):
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*patch_unet"):
        fit("nope", sampler, epochs=1, **FIT)
    with pytest.raises(ValueError, match=r"batch_size=9.*workers=2"):
        fit("tiny_fcn", sampler, epochs=1, workers=2, **dict(FIT, batch_size=9))
    with pytest.raises(ValueError, match=r"batch_size=1000 is larger"):
        fit("tiny_fcn", sampler, epochs=1, **dict(FIT, batch_size=1000))
    with pytest.raises(ValueError, match=r"unknown loss"):
        fit("tiny_fcn", sampler, epochs=1, **dict(FIT, loss="hinge"))
    with pytest.raises(ValueError, match=r"epochs must be a positive integer"):
        fit("tiny_fcn", sampler, epochs=0, **FIT)
    with pytest.raises(ValueError, match=r"one output per patch.*label_mode='centre'"):
        fit("patch_classifier", sampler, epochs=1, **FIT)
    # a trained 4-channel artefact fine-tuned on a 2-channel sampler: named channels
    cube, _ = band_cube
    two = GridSampler(cube, 12, 12, bands=["B1", "B2"])
    art = fit("tiny_fcn", sampler, epochs=1, **FIT).result(120).artefact
    with pytest.raises(ValueError, match=r"expects 4 channels.*gives 2"):
        fit(art, two, epochs=1, **FIT)


def test_user_errors_fail_without_restart(client, sampler):
    def bad_loss(out, y):
        raise ZeroDivisionError("boom in the loss")

    job = fit("tiny_fcn", sampler, epochs=1, **dict(FIT, loss=bad_loss))
    with pytest.raises(ZeroDivisionError, match="boom"):
        job.result(120)
    assert job.status == "failed" and job.restarts == 0


def test_cancel(client, sampler):
    def slow_loss(out, y):
        time.sleep(0.2)
        return F.cross_entropy(out, y, ignore_index=-1)

    job = fit("tiny_fcn", sampler, epochs=50, **dict(FIT, loss=slow_loss))
    time.sleep(1.5)
    job.cancel()
    assert job.status == "cancelled"
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result(5)


class KillOnce:
    """A loss that SIGKILLs its own worker process at its ``at``-th call, once (marker)."""

    def __init__(self, marker, at):
        self.marker, self.at, self.calls = str(marker), at, 0

    def __call__(self, out, y):
        self.calls += 1
        if self.calls == self.at and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return F.cross_entropy(out, y, ignore_index=-1)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_killed_worker_resumes_from_checkpoint(client, sampler, tmp_path, workers):
    steps = len(sampler) // 8
    ref = fit("tiny_fcn", sampler, epochs=3, workers=workers, **FIT).result(120)
    # killed in the middle of epoch 1 (of 0..2): the gang restarts from the epoch-1 ckpt
    loss = KillOnce(tmp_path / "killed", at=steps + steps // 2)
    job = fit("tiny_fcn", sampler, epochs=3, workers=workers, checkpoint=tmp_path / "ck",
              max_restarts=2, **dict(FIT, loss=loss))
    res = job.result(timeout=240)
    assert (tmp_path / "killed").exists()
    assert res.restarts == 1 and job.status == "succeeded"
    assert any(e.get("event") == "restart" for e in job.events) or res.restarts == 1
    a, b = _weights(ref), _weights(res)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_ddp_two_workers_equals_one_process(client, sampler):
    """20 steps, global batch 8: 2 gloo ranks × 4 ≡ 1 rank × 8 (max rel diff ≤ 1e-5)."""
    steps = len(sampler) // 8
    epochs = -(-20 // steps)
    one = fit("tiny_fcn", sampler, epochs=epochs, workers=1, **FIT).result(180)
    two = fit("tiny_fcn", sampler, epochs=epochs, workers=2, **FIT).result(180)
    assert sum(m["steps"] for m in two.history) >= 20
    rel = _max_rel(_weights(two), _weights(one))
    print(f"DDP max relative parameter difference after {epochs * steps} steps: {rel:.2e}; "
          f"wall per epoch 1 worker {np.mean([m['seconds'] for m in one.history]):.3f} s, "
          f"2 workers {np.mean([m['seconds'] for m in two.history]):.3f} s")
    assert rel <= 1e-5
    for a, b in zip(one.history, two.history, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1, abs(a["loss"]))

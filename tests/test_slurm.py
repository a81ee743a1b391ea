"""connect("slurm") and cluster/slurm/ against a real Slurm, where one answers.

``cluster/slurm/local-slurm.sh`` sets up a single-node Slurm (CI runs it when it is root);
without a responding node the ``slurm`` tests are skipped, and the tests at the end that
need no Slurm still run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest
import yaml
from distributed import get_task_stream

import stengine

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "cluster" / "slurm"


def _default_partition() -> str | None:
    """The default partition, if it has a node that responds and can take a job."""
    if not (shutil.which("sbatch") and shutil.which("sinfo") and shutil.which("squeue")):
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True,
                             timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        part, _, state = line.partition(" ")
        # "*" after a partition marks the default; after a state, a node not responding
        if part.endswith("*") and state.strip() in ("idle", "mix"):
            return part.rstrip("*")
    return None


PARTITION = _default_partition()
requires_slurm = pytest.mark.skipif(
    PARTITION is None, reason="no Slurm with an idle node in the default partition "
    "(cluster/slurm/local-slurm.sh sets one up)")


def _queued(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i %t"], capture_output=True,
                         text=True, timeout=15).stdout
    # squeue may list a just-cancelled job as CG (completing) for a few seconds
    return any(line.split()[0] == job_id and line.split()[1] != "CG"
               for line in out.splitlines() if line.strip())


def _job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, timeout=15).stdout
    match = re.search(r"\bJobState=(\w+)", out)
    return match.group(1) if match else "UNKNOWN"


@pytest.mark.slurm
@requires_slurm
def test_connect_slurm_runs_ops_in_a_slurm_job(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4, size=(60, 50)).astype("uint8")
    da = stengine.cube.make_raster(dsa.from_array(data, chunks=(20, 25)))
    with stengine.connect("slurm", jobs=1, cores=1, memory="2GiB", processes=1,
                          walltime="00:10:00", queue=PARTITION, timeout=120,
                          log_directory=str(tmp_path), quiet=True) as conn:
        job_ids = [job.job_id for job in conn.cluster.workers.values()]
        assert len(job_ids) == 1 and _queued(job_ids[0])
        # the only worker is the process the Slurm job started
        env = conn.client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert list(env.values()) == job_ids
        with get_task_stream(conn.client) as stream:
            count = stengine.ops.local_count(da, 2).compute()
        assert int(count) == int(np.count_nonzero(data == 2))
        assert stream.data and {t["worker"] for t in stream.data} == set(env)
    assert conn.client.status == "closed"
    deadline = time.monotonic() + 30
    while _queued(job_ids[0]) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _queued(job_ids[0]), "the worker job outlived the connection"


@pytest.mark.slurm
@requires_slurm
def test_batch_template_runs_a_script(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        "import dask.array as da\n"
        "import stengine\n"
        "with stengine.connect(os.environ['STENGINE_SCHEDULER'], quiet=True) as conn:\n"
        "    n = len(conn.client.scheduler_info()['workers'])\n"
        "    total = stengine.compute(da.ones((40, 40), chunks=10).sum(), progress=False)\n"
        "    print('RESULT', n, int(total), sys.argv[1:])\n")
    out = tmp_path / "job.out"
    env = {**os.environ, "STENGINE_PYTHON": sys.executable,
           "STENGINE_JOB_DIR": str(tmp_path / "job")}
    # not `sbatch --wait`: it polls after 2, 10 and 42 s, so a 9 s job would take 42 s
    job_id = subprocess.run(
        ["sbatch", "--parsable", "-p", PARTITION, "--cpus-per-task=1", "--mem=2G", "--time=5",
         f"--output={out}", str(SLURM_DIR / "stengine-batch.sbatch"), str(script), "a", "b"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=True).stdout.strip().split(";")[0]
    deadline = time.monotonic() + 180
    while (state := _job_state(job_id)) in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
        assert time.monotonic() < deadline, f"job {job_id} still {state} after 180 s"
        time.sleep(0.5)
    log = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", (state, log)
    assert "RESULT 1 1600 ['a', 'b']" in log, log


# --- no Slurm needed --------------------------------------------------------------------

def test_connect_slurm_without_dask_jobqueue(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match=r"pip install 'stengine\[slurm\]'"):
        stengine.connect("slurm", cores=1, memory="1GiB")


def test_connect_bad_address_lists_slurm():
    with pytest.raises(ValueError, match="'slurm'.*tcp://host:port"):
        stengine.connect("slurmy")


def test_connect_slurm_needs_cores_and_memory():
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(ValueError, match="cores and memory.*jobqueue.yaml"):
        stengine.connect("slurm", quiet=True)


def _fake_slurm(tmp_path, monkeypatch, sbatch: str) -> None:
    """Put fake sbatch and scancel first on PATH (a real Slurm, if any, is not touched)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in [("sbatch", sbatch), ("scancel", "exit 0")]:
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_connect_slurm_sbatch_refused_fails_fast(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    _fake_slurm(tmp_path, monkeypatch,
                "echo 'sbatch: error: invalid partition specified: nosuch' >&2; exit 1")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"sbatch refused.*'nosuch'.*sinfo"):
        stengine.connect("slurm", cores=1, memory="1GiB", queue="nosuch", timeout=60,
                         quiet=True, scheduler_options={"dashboard_address": ":0"})
    assert time.monotonic() - t0 < 30


def test_connect_slurm_no_worker_times_out_clearly(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    _fake_slurm(tmp_path, monkeypatch, "echo 'Submitted batch job 424242'")
    with pytest.raises(TimeoutError, match=r"within 3 s.*'short'.*424242.*squeue"):
        stengine.connect("slurm", cores=1, memory="1GiB", queue="short", timeout=3,
                         quiet=True, scheduler_options={"dashboard_address": ":0"})


@pytest.mark.parametrize("section, expected", [
    ("slurm", ["#SBATCH --mem=", "distributed.cli.dask_worker"]),
    ("slurm-gpu", ["#SBATCH --gres=gpu:1", "-m dask_cuda.cli", "--resources GPU=1"]),
])
def test_jobqueue_yaml_sections_make_job_scripts(section, expected):
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    config = yaml.safe_load((SLURM_DIR / "jobqueue.yaml").read_text())["jobqueue"]
    with dask.config.set({f"jobqueue.{name}": keys for name, keys in config.items()}):
        with dask_jobqueue.SLURMCluster(config_name=section,
                                        scheduler_options={"dashboard_address": ":0"}) as cluster:
            script = cluster.job_script()
    for text in expected:
        assert text in script, script

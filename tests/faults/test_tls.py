"""TLS on loopback: generated certificates, a TLS-only cluster, peers without them refused.

Everything here is real: certificates made by ``openssl`` (or ``cryptography``), scheduler
and worker processes listening on ``tls://127.0.0.1``, and, for the Slurm paths, the job
script dask-jobqueue writes and ``cluster/slurm/stengine-batch.sbatch`` run on this machine
in place of a Slurm node (``sbatch``/``srun`` stand-ins that run the job here, so what is
checked is the script's TLS, not Slurm's scheduling).
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
from distributed import Client, LocalCluster

import stengine
from stengine.compute import tls_security

ROOT = Path(__file__).resolve().parents[2]
BATCH = ROOT / "cluster" / "slurm" / "stengine-batch.sbatch"


def _no_certificate_refused(address) -> bool:
    """A TLS client that presents no certificate: the scheduler must end the connection.

    (A ``distributed.Client`` without certificates does not even try a ``tls://``
    address, so this speaks TLS with the standard library.)
    """
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # trust any server
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"\0" * 64)
                return tls.recv(1) == b""  # closed without a byte of dask's protocol
        except (ssl.SSLError, ConnectionError):
            return True  # TLS 1.3 reports the missing certificate here


def _refused(address, **kw):
    """The exception a client gets from ``address`` (it must not connect)."""
    with pytest.raises((OSError, TimeoutError)) as info:
        Client(address, timeout=5, **kw).close()
    return info.value


def test_tls_security_writes_private_files(tmp_path):
    d = tmp_path / "certs"
    sec = tls_security(d)
    assert sec.require_encryption
    assert {p.name for p in d.iterdir()} == {"ca.pem", "cert.pem", "key.pem"}
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "key.pem").stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (d / "cert.pem").read_text()
    assert sec.tls_ca_file == str(d / "ca.pem") and sec.tls_worker_key == str(d / "key.pem")
    before = (d / "key.pem").read_bytes()
    tls_security(d)  # reused, not regenerated: running workers keep trusting it
    assert (d / "key.pem").read_bytes() == before


def test_connect_security_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"security=.*ca\.pem.*missing.*tls_security"):
        stengine.connect("tls://127.0.0.1:1", security=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="security=True generates a new CA"):
        stengine.connect("tls://127.0.0.1:1", security=True, quiet=True)
    with pytest.raises(ValueError, match="security must be None, True"):
        stengine.connect(security=42, quiet=True)


@pytest.mark.slow
def test_tls_cluster_computes_and_refuses_peers_without_its_certificate(tmp_path):
    sec = tls_security(tmp_path / "certs")
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", protocol="tls://",
                      security=sec, dashboard_address=":0", silence_logs=50) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        # a client with the certificates (given as their directory) computes
        data = np.arange(400.0).reshape(20, 20)
        raster = stengine.cube.make_raster(dsa.from_array(data, chunks=10))
        with stengine.connect(address, security=tmp_path / "certs", quiet=True) as conn:
            workers = conn.client.scheduler_info(n_workers=-1)["workers"]
            assert list(workers) and all(w.startswith("tls://") for w in workers)
            out = stengine.compute(stengine.ops.focal_mean(raster, 3), progress=False)
        ref = np.asarray(stengine.ops.focal_mean(raster.compute(), 3))
        np.testing.assert_allclose(np.asarray(out), ref, equal_nan=True)
        # no certificate at all: the TLS handshake fails
        assert _no_certificate_refused(address)
        # plain TCP to the TLS port: refused too
        _refused(address.replace("tls://", "tcp://"))
        # a certificate from another CA (e.g. someone's own Security.temporary()) is not
        # trusted either
        _refused(address, security=tls_security(tmp_path / "other"))
        assert cluster.status.name == "running"


@pytest.mark.slow
def test_connect_local_security_true_generates_and_removes_certificates(tmp_path):
    with stengine.connect(n_workers=1, threads_per_worker=1, security=True,
                          dashboard_port=0, quiet=True) as conn:
        address = conn.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        (certs,) = conn._cleanup
        assert sorted(os.listdir(certs)) == ["ca.pem", "cert.pem", "key.pem"]
        assert stengine.compute(dsa.ones((50, 50), chunks=10).sum(), progress=False) == 2500
        assert _no_certificate_refused(address)
    assert not os.path.exists(certs)


def _stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
    (bin_dir / name).chmod(0o755)


@pytest.mark.slow
def test_connect_slurm_security_true_workers_join_over_tls(tmp_path, monkeypatch):
    """``connect("slurm", security=True)``: the job script's worker speaks TLS only."""
    pytest.importorskip("dask_jobqueue")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    # sbatch stand-in: run the job script here, in the background; its pid is the job id
    _stand_in(tmp_path / "bin", "sbatch",
              f'cp "$1" {jobs}/job.sh\n'
              f'setsid bash {jobs}/job.sh >{jobs}/job.log 2>&1 < /dev/null &\n'
              'echo "Submitted batch job $!"')
    _stand_in(tmp_path / "bin", "scancel", 'for j in "$@"; do kill -- -"$j" 2>/dev/null; done\n'
                                            "exit 0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    shared = tmp_path / "shared"
    with stengine.connect("slurm", jobs=1, cores=1, memory="1GiB", processes=1,
                          python=sys.executable, security=True, timeout=90,
                          shared_temp_directory=str(shared), quiet=True,
                          scheduler_options={"dashboard_address": ":0",
                                             "host": "127.0.0.1"}) as conn:
        script = (jobs / "job.sh").read_text()
        assert "--tls-ca-file" in script and "--tls-key" in script
        address = conn.client.scheduler.address
        assert address.startswith("tls://")
        (certs,) = conn._cleanup
        assert Path(certs).parent == shared
        workers = conn.client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 1 and all(w.startswith("tls://") for w in workers)
        assert stengine.compute(dsa.ones((40, 40), chunks=10).sum(), progress=False) == 1600
        assert _no_certificate_refused(address)
    assert not os.path.exists(certs)


@pytest.mark.slow
def test_batch_template_uses_tls_by_default(tmp_path):
    """stengine-batch.sbatch outside Slurm: ``srun`` stand-in runs the worker command here."""
    _stand_in(tmp_path / "bin", "srun",
              'while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"')
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        "import dask.array as da\n"
        "import stengine\n"
        "with stengine.connect(os.environ['STENGINE_SCHEDULER'], quiet=True) as conn:\n"
        "    n = len(conn.client.scheduler_info()['workers'])\n"
        "    total = stengine.compute(da.ones((40, 40), chunks=10).sum(), progress=False)\n"
        "    print('RESULT', os.environ['STENGINE_SCHEDULER'][:6], n, int(total))\n"
        "    sys.path.insert(0, sys.argv[1])\n"
        "    from test_tls import _no_certificate_refused\n"
        "    if _no_certificate_refused(os.environ['STENGINE_SCHEDULER']):\n"
        "        print('REFUSED without certificate')\n")
    job_dir = tmp_path / "job"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "STENGINE_"))}
    env.update(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
               STENGINE_PYTHON=sys.executable, STENGINE_JOB_DIR=str(job_dir),
               SLURM_JOB_ID="4242", SLURM_CPUS_PER_TASK="1", SLURM_MEM_PER_NODE="1024")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(BATCH), str(script), str(Path(__file__).parent)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log + (job_dir / "scheduler.log").read_text()
    assert "RESULT tls:// 1 1600" in log, log  # the scheduler file's address is tls://
    assert "REFUSED without certificate" in log, log
    assert stat.S_IMODE((job_dir / "tls").stat().st_mode) == 0o700
    assert time.monotonic() - t0 < 120

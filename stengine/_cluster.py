"""TLS certificates and Slurm clusters for :func:`stengine.compute.connect` (kept apart so
that compute.py holds what every computation runs through)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# --- TLS ----------------------------------------------------------------------------------

_TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


def tls_security(directory, *, days: int = 30):
    """Write (or reuse) a self-signed TLS certificate in ``directory``; return its ``Security``.

    One key and one certificate, which is also the CA (as
    ``distributed.security.Security.temporary`` does, but as files, so that workers on
    other nodes can read them from a shared filesystem): ``ca.pem``, ``cert.pem`` and
    ``key.pem``, the directory made private (mode 0700, the key 0600). Files already
    there are reused. Every role (scheduler, worker, client) uses the same pair and
    ``require_encryption`` is on, so a peer without the key is refused.

    Parameters
    ----------
    directory : str | pathlib.Path
        Where the files go (created if needed).
    days : int
        Validity of a new certificate.

    Returns
    -------
    distributed.security.Security

    Raises
    ------
    RuntimeError
        Neither the ``openssl`` command nor the ``cryptography`` package is available.
    """
    from distributed.security import Security

    d = Path(directory).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    ca, cert, key = (d / name for name in _TLS_FILES)
    if not (ca.is_file() and cert.is_file() and key.is_file()):
        _write_certificate(cert, key, days)
        shutil.copyfile(cert, ca)
    key.chmod(0o600)
    ca, cert, key = str(ca), str(cert), str(key)
    return Security(require_encryption=True, tls_ca_file=ca,
                    tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key)


def _write_certificate(cert: Path, key: Path, days: int) -> None:
    """A 2048-bit RSA key and a self-signed certificate for CN=dask-internal."""
    openssl = shutil.which("openssl")
    if openssl is not None:
        old = os.umask(0o077)
        try:
            subprocess.run(
                [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-days", str(int(days)), "-subj", "/CN=dask-internal",
                 "-addext", "subjectAltName=DNS:dask-internal",
                 "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True, timeout=120)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"tls_security: openssl could not make a certificate in "
                               f"{cert.parent}: {e.stderr.decode(errors='replace').strip()}"
                               ) from None
        finally:
            os.umask(old)
        return
    try:
        from distributed.security import Security

        temp = Security.temporary()  # needs cryptography
    except ImportError:
        raise RuntimeError("tls_security: making a certificate needs the `openssl` command "
                           "or the cryptography package (pip install cryptography); or pass "
                           "your own certificates as a distributed.security.Security"
                           ) from None
    key.touch(mode=0o600)
    key.write_text(temp.tls_worker_key)
    cert.write_text(temp.tls_worker_cert)


def _security(security, directory, *, generate: bool = True):
    """``connect``'s ``security=`` as (Security or None, directories to remove at close)."""
    from distributed.security import Security

    if security is None or security is False:
        return None, []
    if isinstance(security, Security):
        return security, []
    if security is True and generate:
        if directory is None:
            d = tempfile.mkdtemp(prefix="stengine-tls-")
        else:
            base = Path(os.path.expandvars(str(directory))).expanduser()
            base.mkdir(parents=True, exist_ok=True)
            d = tempfile.mkdtemp(prefix=".stengine-tls-", dir=base)
        try:
            return tls_security(d), [d]
        except BaseException:
            _remove([d])
            raise
    if isinstance(security, (str, os.PathLike)) and not isinstance(security, bool):
        d = Path(security).expanduser()
        missing = [n for n in _TLS_FILES if not (d / n).is_file()]
        if missing:
            raise ValueError(f"connect: security={str(security)!r} must be a directory holding "
                             f"{', '.join(_TLS_FILES)} (missing: {', '.join(missing)}); make "
                             f"them with `from stengine.compute import tls_security; "
                             f"tls_security(directory)`, or pass security=True to generate "
                             f"them")
        return tls_security(d), []
    if security is True:
        raise ValueError("connect: security=True generates a new CA, which a running "
                         "scheduler does not trust; to join a tls:// scheduler pass the "
                         "directory of its certificates or a distributed.security.Security")
    raise ValueError(f"connect: security must be None, True (generate a certificate), a "
                     f"directory of certificates or a distributed.security.Security; got "
                     f"{security!r}")


def _remove(paths) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _connect_slurm(*, jobs: int, timeout: float, security=None, **cluster_kwargs):
    """``connect("slurm")``: a ``SLURMCluster`` scaled to ``jobs`` jobs, once a worker is in."""
    import dask
    from distributed import Client

    from .compute import Connection

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as e:
        raise ImportError("connect('slurm') needs dask-jobqueue: "
                          "pip install 'stengine[slurm]'") from e
    section = f"jobqueue.{cluster_kwargs.get('config_name') or 'slurm'}"
    missing = [k for k in ("cores", "memory")
               if cluster_kwargs.get(k) is None and dask.config.get(f"{section}.{k}", None) is None]
    if missing:
        raise ValueError(f"connect('slurm') needs {' and '.join(missing)} per job: pass e.g. "
                         f"cores=8, memory='32GiB', or set them in the dask config section "
                         f"{section!r} (copy cluster/slurm/jobqueue.yaml to ~/.config/dask/)")
    # generated certificates go where the jobs can read them: shared_temp_directory
    shared = (cluster_kwargs.get("shared_temp_directory")
              or dask.config.get(f"{section}.shared-temp-directory", None) or os.getcwd())
    sec, cleanup = _security(security, shared)
    if sec is not None:
        cluster_kwargs["security"] = sec
    try:
        cluster = SLURMCluster(**cluster_kwargs)
    except BaseException:
        _remove(cleanup)
        raise
    client = None
    try:
        cluster.scale(jobs=jobs)
        client = Client(cluster, security=sec)
        _wait_for_slurm_worker(client, cluster, jobs=jobs, timeout=timeout)
    except BaseException as e:
        queue = (cluster_kwargs.get("queue") or dask.config.get(f"{section}.queue", None)
                 or "the default partition")
        job_ids = [j.job_id for j in list(cluster.workers.values()) if j.job_id]
        if client is not None:
            client.close()
        # distributed asserts on a job that sbatch refused (it never started): the
        # scheduler is closed by then, so only that complaint is dropped
        with contextlib.suppress(AssertionError):
            cluster.close()
        _remove(cleanup)
        if isinstance(e, _SbatchFailed):
            raise RuntimeError(
                f"connect('slurm'): sbatch refused the job(s) for partition {queue!r}; its "
                f"error is logged above (e.g. 'invalid partition specified', or memory/cores "
                f"the partition cannot give). `sinfo` lists partitions and their nodes.") from None
        if isinstance(e, TimeoutError):
            raise TimeoutError(
                f"connect('slurm'): no Dask worker joined within {timeout:g} s; {jobs} job(s) "
                f"were submitted to partition {queue!r} (job ids: {', '.join(job_ids)}) and "
                f"are now cancelled. They may have been waiting in the queue, or failed to "
                f"start a worker: check `squeue -u $USER`, `sinfo -p <partition>` and the job "
                f"logs (pass log_directory=...), or pass timeout= to wait longer.") from e
        raise
    return Connection(client, cluster, owned=True, cleanup=cleanup)


class _SbatchFailed(Exception):
    """Every job of a SLURMCluster was refused by sbatch."""


def _wait_for_slurm_worker(client, cluster, *, jobs: int, timeout: float) -> None:
    """Wait for the first worker; fail early when sbatch refused every job."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_workers(1, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            return
        except TimeoutError:
            submitted = list(cluster.workers.values())  # filled once every sbatch has returned
            if len(submitted) >= jobs and not any(j.job_id for j in submitted):
                raise _SbatchFailed() from None
            if time.monotonic() >= deadline:
                raise

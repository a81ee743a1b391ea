"""Where computations run: ``connect()`` to an embedded local cluster or a scheduler, and
``compute()`` with a progress bar.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = ["connect", "Connection", "compute"]


def _cores() -> int:
    """Cores this process may use (affinity-aware)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return n or 1


def _machine():
    """(cores, memory bytes) available to this process (cgroup-aware)."""
    from distributed.system import MEMORY_LIMIT

    return _cores(), int(MEMORY_LIMIT)


class Connection:
    """A dask ``Client`` plus what ``connect()`` started, usable as a context manager.

    Attributes: ``client`` (``distributed.Client``), ``cluster`` (the cluster started
    here, or ``None``), ``dashboard_link`` (URL). Leaving the ``with`` block closes only
    what this connection started; a reused client is left running.
    """

    def __init__(self, client, cluster=None, owned=False):
        self.client, self.cluster, self._owned = client, cluster, owned

    @property
    def dashboard_link(self) -> str:
        return self.client.dashboard_link

    def close(self):
        if self._owned:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            self._owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return (f"<stengine.Connection {self.client.scheduler.address} workers={len(workers)} "
                f"threads={threads} dashboard={self.dashboard_link}>")


def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int | None = None, memory_limit=None,
            dashboard_port: int = 8787, quiet: bool = False, jobs: int = 1,
            timeout: float = 300, **cluster_kwargs) -> Connection:
    """Connect to a Dask cluster and return a :class:`Connection`.

    Parameters
    ----------
    address : str, optional
        ``None`` or ``"local"``: reuse the running client if there is one, else start an
        embedded ``LocalCluster`` sized to this machine and bound to 127.0.0.1.
        ``"tcp://host:port"``: join an existing scheduler (e.g. the Helm chart's, or one
        started by ``cluster/slurm/stengine-batch.sbatch``).
        ``"gpu"``: a ``dask_cuda.LocalCUDACluster`` (one worker per GPU; needs the
        ``gpu`` extra).
        ``"slurm"``: a ``dask_jobqueue.SLURMCluster`` (needs the ``slurm`` extra): the
        scheduler runs in this process, ``jobs`` batch jobs are submitted with
        ``sbatch``, each running Dask workers, and ``connect`` returns once the first
        worker has joined (the others join as their jobs start). ``cluster_kwargs`` go
        to ``SLURMCluster`` (``cores``, ``memory``, ``processes``, ``queue``,
        ``walltime``, ``account``, ``job_extra_directives=["--gres=gpu:1"]``,
        ``config_name``, ...); what is not given comes from the dask config section
        ``jobqueue.slurm``, e.g. ``cluster/slurm/jobqueue.yaml`` copied to
        ``~/.config/dask/``. Leaving the ``with`` block cancels the jobs.
    n_workers, threads_per_worker, memory_limit
        Override the local sizing: by default one worker process per 4 cores, all
        cores used as threads (the numba kernels release the GIL), and 90 % of memory
        shared between workers. Not used by ``"slurm"`` (use ``cores``/``processes``).
    dashboard_port : int
        Preferred dashboard port on 127.0.0.1 (another is picked if it is taken).
    quiet : bool
        Do not print the dashboard link.
    jobs : int
        ``"slurm"`` only: the number of Slurm jobs to submit (``cluster.scale(jobs=)``).
    timeout : float
        ``"slurm"`` only: seconds to wait for the first worker before giving up.

    Raises
    ------
    ImportError
        ``"gpu"`` without dask-cuda, ``"slurm"`` without dask-jobqueue.
    RuntimeError
        ``"slurm"``: ``sbatch`` refused every job (its error is logged).
    TimeoutError
        ``"slurm"``: no worker joined within ``timeout`` seconds; the jobs are cancelled.
    ValueError
        An address of another form, or ``"slurm"`` without ``cores``/``memory`` given
        or configured.

    Examples
    --------
    >>> with stengine.connect() as conn:            # doctest: +SKIP
    ...     print(conn.dashboard_link)
    http://127.0.0.1:8787/status
    >>> with stengine.connect("slurm", jobs=4, cores=8, memory="32GiB",
    ...                       queue="compute", walltime="02:00:00") as conn:  # doctest: +SKIP
    ...     stengine.compute(result)
    """
    from distributed import Client, LocalCluster

    if address in (None, "local"):
        with contextlib.suppress(ValueError):
            from distributed import default_client

            client = default_client()
            if not client.status == "closed":
                return Connection(client, None, owned=False)
        cores, mem = _machine()
        if n_workers is None:
            n_workers = max(1, cores // 4)
        if threads_per_worker is None:
            threads_per_worker = max(1, cores // n_workers)
        if memory_limit is None:
            memory_limit = int(mem * 0.9 / n_workers)
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker,
            memory_limit=memory_limit, host="127.0.0.1",
            dashboard_address=f"127.0.0.1:{dashboard_port}", **cluster_kwargs)
        client = Client(cluster)
        conn = Connection(client, cluster, owned=True)
    elif address == "gpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as e:
            raise ImportError("connect('gpu') needs dask-cuda: pip install 'stengine[gpu]'") from e
        cluster = LocalCUDACluster(host="127.0.0.1",
                                   dashboard_address=f"127.0.0.1:{dashboard_port}",
                                   **cluster_kwargs)
        conn = Connection(Client(cluster), cluster, owned=True)
    elif address == "slurm":
        conn = _connect_slurm(jobs=jobs, timeout=timeout, **cluster_kwargs)
    elif isinstance(address, str) and "://" in address:
        conn = Connection(Client(address), None, owned=True)
    else:
        raise ValueError(f"connect: address must be None, 'local', 'gpu', 'slurm' or "
                         f"'tcp://host:port'; got {address!r}")
    if not quiet:
        print(f"stengine: dask dashboard at {conn.dashboard_link}", file=sys.stderr)
    return conn


def _connect_slurm(*, jobs: int, timeout: float, **cluster_kwargs) -> Connection:
    """``connect("slurm")``: a ``SLURMCluster`` scaled to ``jobs`` jobs, once a worker is in."""
    import dask
    from distributed import Client

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
    cluster = SLURMCluster(**cluster_kwargs)
    client = None
    try:
        cluster.scale(jobs=jobs)
        client = Client(cluster)
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
    return Connection(client, cluster, owned=True)


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


def compute(*objs, progress: bool = True, **kwargs):
    """Compute dask-backed objects, showing a progress bar (terminal or notebook).

    With a distributed client, uses its progress bar (a widget in notebooks); without
    one, dask's local ``ProgressBar``. Returns the computed objects (a single one when
    one is given).
    """
    import dask

    try:
        from distributed import default_client
        from distributed import progress as dprogress

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if not progress:
        out = dask.compute(*objs, **kwargs)
    elif client is not None:
        futures = client.compute(list(objs), **kwargs)
        dprogress(futures, notebook=None, multi=False)
        print(file=sys.stderr)
        out = client.gather(futures)
    else:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            out = dask.compute(*objs, **kwargs)
    return out[0] if len(objs) == 1 else tuple(out)

"""Where computations run: ``connect()`` to an embedded local cluster or a scheduler, and
``compute()`` with a progress bar.
"""

from __future__ import annotations

import contextlib
import os
import sys

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
            dashboard_port: int = 8787, quiet: bool = False, **cluster_kwargs) -> Connection:
    """Connect to a Dask cluster and return a :class:`Connection`.

    Parameters
    ----------
    address : str, optional
        ``None`` or ``"local"``: reuse the running client if there is one, else start an
        embedded ``LocalCluster`` sized to this machine and bound to 127.0.0.1.
        ``"tcp://host:port"``: join an existing scheduler (e.g. the Helm chart's).
        ``"gpu"``: a ``dask_cuda.LocalCUDACluster`` (one worker per GPU; needs the
        ``gpu`` extra).
    n_workers, threads_per_worker, memory_limit
        Override the local sizing: by default one worker process per 4 cores, all
        cores used as threads (the numba kernels release the GIL), and 90 % of memory
        shared between workers.
    dashboard_port : int
        Preferred dashboard port on 127.0.0.1 (another is picked if it is taken).
    quiet : bool
        Do not print the dashboard link.

    Examples
    --------
    >>> with stengine.connect() as conn:            # doctest: +SKIP
    ...     print(conn.dashboard_link)
    http://127.0.0.1:8787/status
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
    elif isinstance(address, str) and "://" in address:
        conn = Connection(Client(address), None, owned=True)
    else:
        raise ValueError(f"connect: address must be None, 'local', 'gpu' or 'tcp://host:port'; "
                         f"got {address!r}")
    if not quiet:
        print(f"stengine: dask dashboard at {conn.dashboard_link}", file=sys.stderr)
    return conn


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

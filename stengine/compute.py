"""Where computations run: ``connect()`` to an embedded local cluster or a scheduler, and
``compute()`` with a progress bar (refusing, before anything runs, a result too large to
gather). ``tls_security()`` makes the certificates for a TLS-only cluster.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import os
import shutil
import sys
import threading
import time

from ._cluster import _connect_slurm, _remove, _security, tls_security

__all__ = ["connect", "Connection", "compute", "tls_security", "result_nbytes",
           "check_result_size"]


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

    def __init__(self, client, cluster=None, owned=False, cleanup=()):
        self.client, self.cluster, self._owned = client, cluster, owned
        self._cleanup = list(cleanup)  # directories (generated certificates) to remove

    @property
    def dashboard_link(self) -> str:
        return self.client.dashboard_link

    def close(self):
        if self._owned:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            self._owned = False
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self._cleanup = []

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
            resources: dict | None = None, security=None,
            dashboard_port: int = 8787, quiet: bool = False, jobs: int = 1,
            timeout: float = 300, **cluster_kwargs) -> Connection:
    """Connect to a Dask cluster and return a :class:`Connection`.

    Parameters
    ----------
    address : str, optional
        ``None`` or ``"local"``: reuse the running client if there is one (and neither
        ``security`` nor ``resources`` is given), else start an embedded
        ``LocalCluster`` sized to this machine and bound to 127.0.0.1.
        ``"tcp://host:port"`` or ``"tls://host:port"``: join an existing scheduler (e.g.
        the Helm chart's, or one started by ``cluster/slurm/stengine-batch.sbatch``).
        ``"gpu"``: a ``dask_cuda.LocalCUDACluster`` (one worker per GPU, each advertising
        the resource ``GPU=1``; needs the ``gpu`` extra).
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
        Worker processes (behind a nanny) are the default although in-process threads
        are quicker: a worker over its memory limit, or killed, is restarted and its
        tasks rerun, and a crash in a kernel does not end this session. Measured on 2
        cores (busy, load 5-7) per computation: a 1 M px ``local_count`` 28-35 ms with
        1 worker process × 2 threads, 22-26 ms with 2 processes × 1 thread, 17-19 ms
        with ``processes=False`` (in-process threads, ``inproc://``), 5-8 ms on dask's
        threaded scheduler; 1000 tiny chunks 4.4-5.0 s, 4.0-4.7 s, 3.1-3.3 s and
        0.3-0.4 s; an 18 M px reclassify + count 230 ms, 140-260 ms, 70-80 ms and 45 ms.
        ``connect(processes=False)`` (as ``stengine serve`` does) suits interactive use
        (tiles, small ops), where that fixed cost is most of the time.
    resources : dict, optional
        Abstract resources every worker started here advertises, e.g. ``{"GPU": 1}``
        (tasks that ask for them run only there). ``"gpu"`` defaults to ``{"GPU": 1}``;
        for ``"slurm"`` use ``worker_extra_args=["--resources", "GPU=1"]``.
    security : bool | str | pathlib.Path | distributed.security.Security, optional
        TLS for every connection (scheduler, workers, this client), which then need a
        certificate signed by the cluster's CA. ``True``: generate a self-signed
        certificate for this connection with :func:`tls_security` (for ``"slurm"`` in
        ``shared_temp_directory``, or the current directory, which the jobs must see);
        it is deleted when the connection closes. A directory: the certificates
        :func:`tls_security` (or ``stengine-batch.sbatch``) wrote there. A ``Security``:
        used as is. ``None``: plain TCP, except that a ``tls://`` address takes the
        certificates from the dask config (``distributed.comm.tls``).
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
        An address of another form, ``"slurm"`` without ``cores``/``memory`` given
        or configured, or ``security`` of another form.

    Examples
    --------
    >>> with stengine.connect() as conn:            # doctest: +SKIP
    ...     print(conn.dashboard_link)
    http://127.0.0.1:8787/status
    >>> with stengine.connect("slurm", jobs=4, cores=8, memory="32GiB", security=True,
    ...                       queue="compute", walltime="02:00:00") as conn:  # doctest: +SKIP
    ...     stengine.compute(result)
    """
    from distributed import Client, LocalCluster

    if address in (None, "local"):
        # a running client is reused, unless TLS or resources are asked for (it may have
        # neither): then a cluster is started as asked
        with contextlib.suppress(ValueError):
            from distributed import default_client

            client = default_client()
            if client.status != "closed" and security is None and resources is None:
                return Connection(client, None, owned=False)
        cores, mem = _machine()
        if n_workers is None:
            n_workers = max(1, cores // 4)
        if threads_per_worker is None:
            threads_per_worker = max(1, cores // n_workers)
        if memory_limit is None:
            memory_limit = int(mem * 0.9 / n_workers)
        sec, cleanup = _security(security, None)
        if resources is not None:
            cluster_kwargs["resources"] = resources
        if sec is not None:
            cluster_kwargs.update(security=sec, protocol="tls://")
        # in-process workers talk to the scheduler in memory (inproc://, nothing
        # serialised), unless a protocol is asked for; a host does not apply there
        inproc = (cluster_kwargs.get("processes") is False
                  and cluster_kwargs.get("protocol", "inproc").startswith("inproc"))
        if not inproc:
            cluster_kwargs["host"] = "127.0.0.1"
        try:
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker,
                memory_limit=memory_limit,
                dashboard_address=f"127.0.0.1:{dashboard_port}", **cluster_kwargs)
            client = Client(cluster, security=sec)
        except BaseException:
            _remove(cleanup)
            raise
        conn = Connection(client, cluster, owned=True, cleanup=cleanup)
    elif address == "gpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as e:
            raise ImportError("connect('gpu') needs dask-cuda (and a CUDA GPU): "
                              "pip install 'stengine[gpu]'") from e
        # dask-cuda starts one worker per GPU but advertises no resource; the training
        # and inference tasks of stengine.learn ask for GPU=1
        cluster_kwargs["resources"] = {"GPU": 1} if resources is None else resources
        sec, cleanup = _security(security, None)
        if sec is not None:
            cluster_kwargs.update(security=sec, protocol="tls://")
        try:
            cluster = LocalCUDACluster(host="127.0.0.1",
                                       dashboard_address=f"127.0.0.1:{dashboard_port}",
                                       **cluster_kwargs)
            client = Client(cluster, security=sec)
        except BaseException:
            _remove(cleanup)
            raise
        conn = Connection(client, cluster, owned=True, cleanup=cleanup)
    elif address == "slurm":
        conn = _connect_slurm(jobs=jobs, timeout=timeout, security=security, **cluster_kwargs)
    elif isinstance(address, str) and "://" in address:
        sec, _ = _security(security, None, generate=False)
        conn = Connection(Client(address, security=sec), None, owned=True)
    else:
        raise ValueError(f"connect: address must be None, 'local', 'gpu', 'slurm', "
                         f"'tcp://host:port' or 'tls://host:port'; got {address!r}")
    if not quiet:
        print(f"stengine: dask dashboard at {conn.dashboard_link}", file=sys.stderr)
    return conn


def compute(*objs, progress: bool | float = True, max_result_bytes="auto", **kwargs):
    """Compute dask-backed objects, with a progress bar if they take a while.

    With a distributed client, uses its progress bar (a widget in notebooks); without
    one, dask's local ``ProgressBar``. Returns the computed objects (a single one when
    one is given). The bar appears only for a computation still running after
    ``progress`` seconds (0.5 by default), and nothing polls on the way out: a quick
    computation returns as fast as with ``progress=False`` (a fixed 100 ms poll used
    to add 30-100 ms to every call).

    Before anything runs, the size of each result is estimated from its metadata (a
    dask array: shape × itemsize; an xarray object: the sum over its variables) and a
    result too large to bring back is refused: gathering joins a result's chunks on
    one worker (chunks and joined copy at once), so it must fit twice in the smallest
    worker's free memory (its ``memory_limit`` up to dask's terminate fraction, less
    what the process already uses), and all results twice in this process's
    available memory. Without that check the worker running dask's finalize task is
    killed for exceeding its limit, again on every worker it is retried on, and the
    compute ends in ``KilledWorker`` after all the work is done. The workers' memory
    is asked of the scheduler at most once a second (it reports what the workers'
    last heartbeats said); a refusal is always checked against a fresh answer.

    Parameters
    ----------
    *objs
        Dask collections (arrays, xarray objects backed by dask, delayed, ...), or
        lists, tuples and dicts of them. Sizes unknown from metadata (delayed objects,
        arrays of unknown chunk sizes, dataframes) are not checked.
    progress : bool | float
        ``True``: show a progress bar once the computation has run 0.5 s. A number:
        after that many seconds (``0``: at once). ``False``: never.
    max_result_bytes : "auto" | int | str | None
        ``"auto"``: the limits above. A number of bytes or a size string (``"2GiB"``):
        refuse when the results together are larger. ``None``: no check.
    **kwargs
        Passed to ``Client.compute`` or ``dask.compute``.

    Raises
    ------
    MemoryError
        A result is too large to gather; the message gives its size, the limit and
        how to write it to a store instead.
    """
    import dask

    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    check_result_size(objs, client=client, max_result_bytes=max_result_bytes)
    after = _PROGRESS_AFTER if progress is True else float(progress or 0)
    if progress is False or progress is None:
        out = dask.compute(*objs, **kwargs)
    elif client is not None:
        from distributed import progress as dprogress

        futures = client.compute(list(objs), **kwargs)
        if not _finished(futures, after):
            dprogress(futures, notebook=None, multi=False)
            print(file=sys.stderr)
        out = client.gather(futures)
    else:
        with _bar_class()(minimum=after, out=sys.stderr):
            out = dask.compute(*objs, **kwargs)
    return out[0] if len(objs) == 1 else tuple(out)


_PROGRESS_AFTER = 0.5  # seconds a computation runs before compute() shows a bar


def _finished(futures, timeout: float) -> bool:
    """Whether ``futures`` finish (or fail) within ``timeout`` seconds."""
    from distributed import wait

    if timeout <= 0:
        return False
    try:
        wait(futures, timeout=timeout)
    except TimeoutError:
        return False
    return True


@functools.cache
def _bar_class():
    """dask's ``ProgressBar``, its drawing thread woken at the end instead of waited for.

    dask's thread sleeps ``dt`` (0.1 s) between redraws and ``_finish`` joins it, so
    every computation under it lasted until the thread's next wake-up.
    """
    from dask.diagnostics import ProgressBar

    class Bar(ProgressBar):
        def _start(self, dsk):
            self._done = threading.Event()
            super()._start(dsk)

        def _finish(self, dsk, state, errored):
            self._done.set()
            super()._finish(dsk, state, errored)

        def _timer_func(self):
            while not self._done.is_set():
                elapsed = time.perf_counter() - self._start_time
                if elapsed > self._minimum:
                    self._update_bar(elapsed)
                self._done.wait(self._dt)

    return Bar


# --- result size --------------------------------------------------------------------------

_FIX = ("Write it to a store instead (stengine.to_zarr(result, path), or "
        "stengine.write_raster(result, path) for a raster) and open that, or reduce it before "
        "computing (a reduction such as .mean(...), a subset with .isel(...)/.sel(...), a "
        "coarser grid or cell level)")


def result_nbytes(obj) -> int:
    """Bytes the computed ``obj`` will take, from metadata only (nothing is computed).

    A dask or NumPy array: ``size × itemsize``; an xarray ``DataArray``/``Dataset``: the
    sum over its variables (coordinates included); lists, tuples, sets and dicts: the sum
    over their items. Whatever has no known size (delayed objects, dataframes, arrays
    with unknown chunk sizes) counts 0.
    """
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(result_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(result_nbytes(o) for o in obj.values())
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(obj, (xr.DataArray, xr.Dataset)):
        if isinstance(obj, xr.Dataset):
            variables = list(obj.variables.values())
        else:
            variables = [obj.variable, *(c.variable for c in obj.coords.values())]
        return sum(result_nbytes(v.data) for v in variables)
    shape, dtype = getattr(obj, "shape", None), getattr(obj, "dtype", None)
    if shape is None or dtype is None or not hasattr(dtype, "itemsize"):
        return 0
    try:
        dims = [operator.index(n) for n in shape]
    except TypeError:  # NaN (unknown chunk sizes) or lazy (a dask dataframe's length)
        return 0
    return math.prod(dims) * int(dtype.itemsize)


def check_result_size(objs, *, client=None, max_result_bytes="auto") -> None:
    """Raise ``MemoryError`` if computing ``objs`` would bring back too large a result.

    The check of :func:`compute` (see there), for code that gathers results itself.
    ``client``: the distributed client that will compute them, or ``None``.
    """
    if max_result_bytes is None:
        return
    from dask.utils import format_bytes, parse_bytes

    sizes = [result_nbytes(o) for o in objs]
    total = sum(sizes)
    if total == 0:
        return
    what = (f"the result would take {format_bytes(total)}" if len(sizes) == 1 else
            f"the {len(sizes)} results would take {format_bytes(total)} together")
    if max_result_bytes != "auto":
        limit = (parse_bytes(max_result_bytes) if isinstance(max_result_bytes, str)
                 else int(max_result_bytes))
        if total > limit:
            raise MemoryError(f"compute: {what}, more than max_result_bytes="
                              f"{format_bytes(limit)}. {_FIX}; or raise max_result_bytes.")
        return
    biggest = max(sizes)
    if client is not None:
        worker = _smallest_worker(client)
        if worker is not None and 2 * biggest > worker[3]:
            worker = _smallest_worker(client, max_age=0)  # refuse only on a fresh answer
        if worker is not None:
            addr, mem_limit, used, free = worker
            if 2 * biggest > free:
                size = (what if len(sizes) == 1 else
                        f"one of the results would take {format_bytes(biggest)}")
                raise MemoryError(
                    f"compute: {size} once gathered, and gathering joins it on one worker "
                    f"(its chunks and the joined copy at once: "
                    f"{format_bytes(2 * biggest)}), but the smallest worker ({addr}, "
                    f"memory_limit {format_bytes(mem_limit)}, {format_bytes(used)} in use) "
                    f"has {format_bytes(max(free, 0))} before dask kills it, so the compute "
                    f"would end in KilledWorker. {_FIX}; or start workers with a larger "
                    f"memory_limit, or pass max_result_bytes= to override this check.")
    avail = _local_available()
    if 2 * total > avail:
        raise MemoryError(
            f"compute: {what} in this process, which has {format_bytes(avail)} of memory "
            f"available (receiving needs room for the result twice: "
            f"{format_bytes(2 * total)}). {_FIX}; or pass max_result_bytes= to override "
            f"this check.")


_WORKERS: dict = {}  # id(client) -> (time, scheduler address, _smallest_worker's answer)
_WORKERS_MAX_AGE = 1.0  # seconds


def _smallest_worker(client, max_age: float | None = None):
    """(address, memory_limit, process memory, free bytes) of the worker with least room.

    Free = memory_limit × dask's terminate fraction − the process's memory now. ``None``
    when no worker has a memory limit (or none has joined yet). An answer up to
    ``max_age`` seconds (default 1) old is reused: asking the scheduler is a round trip
    per compute, and what it knows of memory is as old as the workers' last heartbeat.
    """
    import dask

    max_age = _WORKERS_MAX_AGE if max_age is None else max_age
    now = time.monotonic()
    address = getattr(getattr(client, "scheduler", None), "address", None)
    seen = _WORKERS.get(id(client))
    if seen is not None and seen[1] == address and now - seen[0] <= max_age:
        return seen[2]
    frac = dask.config.get("distributed.worker.memory.terminate", 0.95) or 1.0
    best = None
    try:
        info = client.scheduler_info(n_workers=-1)  # all of them (the default lists 5)
    except TypeError:  # distributed before n_workers= listed all
        info = client.scheduler_info()
    for addr, w in info.get("workers", {}).items():
        limit = w.get("memory_limit") or 0
        if not limit:
            continue
        used = int((w.get("metrics") or {}).get("memory") or 0)
        free = int(limit * frac) - used
        if best is None or free < best[3]:
            best = (addr, int(limit), used, free)
    if len(_WORKERS) > 16:
        _WORKERS.clear()
    _WORKERS[id(client)] = (now, address, best)
    return best


def _local_available() -> int:
    """Bytes this process can still allocate: system available memory, within a cgroup."""
    import psutil
    from distributed.system import MEMORY_LIMIT

    avail = psutil.virtual_memory().available
    rss = psutil.Process().memory_info().rss
    return int(min(avail, max(int(MEMORY_LIMIT) - rss, 0)))

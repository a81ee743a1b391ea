"""Monitoring for learn jobs: a live metrics stream (Dask events), NVML GPU status, and a
plain-text progress line.

Every training rank and inference task publishes its metrics with
``distributed.Worker.log_event`` on two topics: :data:`TOPIC` (``"stengine-learn"``,
every job) and ``"stengine-<kind>-<job id>"`` (one job). A notebook, the CLI and the REST
service all read the same stream with :func:`subscribe` (a callback per message, in the
client's event loop) or :func:`events` (what the scheduler holds so far). Messages are
plain dicts: ``{"job", "kind", "event", ...}`` with ``event`` one of ``"start"``,
``"epoch"``, ``"step"``, ``"restart"``, ``"done"``, ``"failed"``, ``"cancelled"``,
``"chunk"``.

:func:`gpu_status` asks NVML (``nvidia-ml-py``) on each worker for the name, utilisation
and memory of its GPUs, and answers ``{"gpu": False, "reason": ...}`` where there is no
driver or no device.
"""

from __future__ import annotations

import sys
import time

__all__ = ["TOPIC", "topic", "publish", "subscribe", "unsubscribe", "events", "gpu_status",
           "local_gpu_status", "ProgressLine"]

TOPIC = "stengine-learn"


def topic(kind: str, job: str) -> str:
    """The per-job topic: ``"stengine-<kind>-<job>"`` (e.g. ``"stengine-fit-1a2b3c"``)."""
    return f"stengine-{kind}-{job}"


def publish(kind: str, job: str, msg: dict) -> None:
    """Publish ``msg`` on :data:`TOPIC` and the job's topic, from a Dask task.

    Outside a worker (a task run by a local scheduler) the message is dropped: there is
    no scheduler to hold it.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    full = {"job": job, "kind": kind, "time": time.time(), **msg}
    worker.log_event([TOPIC, topic(kind, job)], full)


def subscribe(name: str, callback, *, client=None) -> None:
    """Call ``callback(msg)`` for every message published on topic ``name`` from now on.

    ``name`` is :data:`TOPIC` or a job's topic (``TrainJob.topic``). The callback runs in
    the client's event loop: keep it short (append to a list, update a widget).
    """
    client = _client(client)

    def handler(event):
        _ts, msg = event
        callback(msg)

    client.subscribe_topic(name, handler)


def unsubscribe(name: str, *, client=None) -> None:
    """Stop the callbacks registered with :func:`subscribe` on topic ``name``."""
    client = _client(client)
    client.unsubscribe_topic(name)


def events(name: str = TOPIC, *, client=None) -> list[dict]:
    """The messages the scheduler holds for topic ``name`` (oldest first)."""
    client = _client(client)
    return [msg for _ts, msg in client.get_events(name)]


def _client(client):
    if client is not None:
        return client
    from distributed import default_client

    return default_client()


def local_gpu_status() -> dict:
    """NVML status of this machine's GPUs (the ones this process may see).

    Returns ``{"gpu": True, "driver": str, "devices": [{"index", "name",
    "utilization", "memory_used", "memory_total"}]}`` (utilisation in %, memory in
    bytes), or ``{"gpu": False, "reason": "..."}`` without ``nvidia-ml-py``, without an
    NVIDIA driver, or without a device.
    """
    try:
        import pynvml
    except ImportError:
        return {"gpu": False, "reason": "nvidia-ml-py is not installed "
                                        "(pip install 'stengine[learn]')"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return {"gpu": False, "reason": f"no NVIDIA driver ({e})"}
    try:
        n = pynvml.nvmlDeviceGetCount()
        if n == 0:
            return {"gpu": False, "reason": "NVIDIA driver found but no GPU device"}
        visible = _visible_indices(n)
        devices = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for i in visible:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            devices.append({
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "utilization": int(util.gpu),
                "memory_used": int(mem.used),
                "memory_total": int(mem.total),
            })
        return {"gpu": bool(devices), "driver": driver if isinstance(driver, str)
                else driver.decode(), "devices": devices,
                **({} if devices else {"reason": "CUDA_VISIBLE_DEVICES hides every GPU"})}
    except pynvml.NVMLError as e:
        return {"gpu": False, "reason": f"NVML query failed ({e})"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _visible_indices(n: int) -> list[int]:
    """Device indices named by ``CUDA_VISIBLE_DEVICES`` (integers; UUIDs count as all)."""
    import os

    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    if v is None:
        return list(range(n))
    out = []
    for part in v.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            return list(range(n))
        i = int(part)
        if i < 0:
            break
        if i < n:
            out.append(i)
    return out


def gpu_status(client=None) -> dict:
    """GPU status per Dask worker, through NVML on each worker.

    Parameters
    ----------
    client : distributed.Client, optional
        The cluster to ask; default the current client. Without any client, this
        machine's status (:func:`local_gpu_status`) is returned under the key
        ``"local"``.

    Returns
    -------
    dict
        ``{worker address: status}``, each status as :func:`local_gpu_status` returns
        it; ``{"gpu": False, "reason": "no NVIDIA driver (...)"}`` on machines without one.
    """
    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            return {"local": local_gpu_status()}
    return client.run(local_gpu_status)


class ProgressLine:
    """A one-line text progress display on stderr (terminal and notebook alike).

    ``update(done, text)`` redraws ``"<what>: [####    ] done/total text"``; ``close()``
    ends the line. Quiet when ``enabled`` is false.
    """

    def __init__(self, what: str, total: int, *, enabled: bool = True, width: int = 24,
                 stream=None):
        self.what, self.total, self.enabled, self.width = what, max(int(total), 1), enabled, width
        self.stream = stream or sys.stderr
        self._last = ""

    def update(self, done: int, text: str = "") -> None:
        if not self.enabled:
            return
        k = int(self.width * min(done, self.total) / self.total)
        line = f"\r{self.what}: [{'#' * k}{' ' * (self.width - k)}] {done}/{self.total} {text}"
        pad = max(0, len(self._last) - len(line))
        self.stream.write(line + " " * pad)
        self.stream.flush()
        self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""

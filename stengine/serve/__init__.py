"""``stengine serve``: the web service (sources, jobs, cluster, tiles, similar, UI).

``create_app(state_dir)`` builds the FastAPI app; ``stengine serve`` runs it with uvicorn.
"""
from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name):
    if name == "create_app":
        from ._app import create_app
        return create_app
    raise AttributeError(name)

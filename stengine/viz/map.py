"""The notebook map: a chain's tiles on an ipyleaflet map, served from a loopback thread.

``Map(chain, vis)`` (or ``da.st.map(vis)``) registers the chain with a process-wide tile
app (uvicorn in a daemon thread on 127.0.0.1, started on first use), and shows an
``ipyleaflet.Map`` with a ``TileLayer`` on it; ``Map([a, b])`` shows a split view
(``SplitMapControl``); a chain with a ``time`` dim gets an ``IntSlider`` that switches
the layers' URLs to ``?t=<index>``.
"""

from __future__ import annotations

import threading

from ..errors import TileError

__all__ = ["Map", "tile_server"]

_SERVER: dict = {}
_LOCK = threading.Lock()


def tile_server():
    """``(registry, base_url)`` of the process's loopback tile app (started on first use)."""
    from ..serve.tiles import create_tile_app, start_background
    with _LOCK:
        if "url" not in _SERVER:
            app = create_tile_app()
            server, url = start_background(app)
            _SERVER.update(app=app, server=server, url=url, registry=app.state.registry)
    return _SERVER["registry"], _SERVER["url"]


def _stop_server():
    """Stop the background server (tests; a notebook keeps it for the session)."""
    with _LOCK:
        if "server" in _SERVER:
            _SERVER["server"].should_exit = True
            _SERVER["server"].thread.join(10)
            _SERVER.clear()


class Map:
    """An ipyleaflet map of one chain, or two in a split view, with a time slider.

    Attributes: ``map`` (``ipyleaflet.Map``), ``layers`` (``TileLayer``), ``ids``
    (registered tile ids), ``slider`` (``ipywidgets.IntSlider`` or None), ``widget``
    (what to display). ``Map`` displays itself in Jupyter.
    """

    def __init__(self, chains, vis=None, *, zoom: int | None = None, pyramid=None):
        import ipyleaflet
        import ipywidgets

        chains = list(chains) if isinstance(chains, (list, tuple)) else [chains]
        if not 1 <= len(chains) <= 2:
            raise TileError(f"chains: expected one chain or two (split view); got "
                            f"{len(chains)}")
        vis = list(vis) if isinstance(vis, (list, tuple)) else [vis] * len(chains)
        registry, url = tile_server()
        self.base_url = url
        self.ids = [registry.register(c, v, pyramid=pyramid) for c, v in
                    zip(chains, vis, strict=True)]
        meta = registry.tiles.layer(self.ids[0]).meta()
        w, s, e, n = meta["bounds"]
        self.ntime = meta["ntime"]
        self.layers = [ipyleaflet.TileLayer(url=self.tile_url(i, 0), name=i, max_zoom=22,
                                            max_native_zoom=22, no_wrap=True)
                       for i in self.ids]
        self.map = ipyleaflet.Map(center=((s + n) / 2, (w + e) / 2), zoom=zoom or 10,
                                  basemap=ipyleaflet.basemaps.Esri.WorldStreetMap,
                                  scroll_wheel_zoom=True)
        # no basemap from the web: drop the default layer, keep only our tiles
        self.map.layers = tuple(self.layers if len(self.layers) == 1 else ())
        if len(self.layers) == 2:
            self.map.add(ipyleaflet.SplitMapControl(left_layer=self.layers[0],
                                                    right_layer=self.layers[1]))
        if zoom is None:
            self.map.fit_bounds([[s, w], [n, e]])
        self.slider = None
        if self.ntime > 1:
            self.slider = ipywidgets.IntSlider(0, 0, self.ntime - 1, description="time")
            self.slider.observe(lambda ch: self.set_time(ch["new"]), names="value")
        self.widget = (ipywidgets.VBox([self.slider, self.map]) if self.slider is not None
                       else self.map)

    def tile_url(self, lid: str, t: int) -> str:
        suffix = f"?t={t}" if self.ntime else ""
        return f"{self.base_url}/tiles/{lid}/{{z}}/{{x}}/{{y}}.png{suffix}"

    def set_time(self, t: int):
        """Show time index ``t`` in every layer."""
        if not 0 <= t < max(self.ntime, 1):
            raise TileError(f"time index t={t} out of range; expected 0 <= t < {self.ntime}")
        for lid, layer in zip(self.ids, self.layers, strict=True):
            layer.url = self.tile_url(lid, t)

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)

// One or two tile layers over a bounds; a swipe (clip) control for two layers and a time
// slider when the layers have a time axis. Tile URLs hold {t} for the time index.
(function () {
  const c = CONFIG;
  const b = c.bounds;
  const map = L.map("map", {minZoom: c.minzoom, maxZoom: c.maxzoom});
  map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
  if (c.outline) {
    L.geoJSON(c.outline, {style: {color: "#555", weight: 1, fill: false}}).addTo(map);
  }
  let t = 0;
  const url = (l) => l.url.replace("{t}", String(t));
  const layers = c.layers.map((l) => L.tileLayer(url(l), {
    minZoom: c.minzoom, maxZoom: c.maxzoom, maxNativeZoom: c.maxnative || c.maxzoom,
    tileSize: 256, noWrap: true, bounds: [[b[1], b[0]], [b[3], b[2]]],
  }).addTo(map));
  const bar = document.getElementById("bar");
  bar.textContent = c.layers.map((l) => l.name).join(" | ");
  if (layers.length === 2) {
    // swipe: clip the second layer's container to the right of a draggable divider
    const div = document.createElement("div");
    div.className = "swipe";
    map.getContainer().appendChild(div);
    let frac = 0.5;
    const clip = () => {
      const size = map.getSize();
      const x = size.x * frac;
      div.style.left = (x - 2) + "px";
      const nw = map.containerPointToLayerPoint([0, 0]);
      const se = map.containerPointToLayerPoint(size);
      const cx = map.containerPointToLayerPoint([x, 0]).x;
      layers[1].getContainer().style.clip =
        `rect(${nw.y}px, ${se.x}px, ${se.y}px, ${cx}px)`;
      layers[0].getContainer().style.clip =
        `rect(${nw.y}px, ${cx}px, ${se.y}px, ${nw.x}px)`;
    };
    let drag = false;
    div.addEventListener("mousedown", (e) => { drag = true; map.dragging.disable(); e.stopPropagation(); });
    document.addEventListener("mouseup", () => { drag = false; map.dragging.enable(); });
    document.addEventListener("mousemove", (e) => {
      if (!drag) return;
      const r = map.getContainer().getBoundingClientRect();
      frac = Math.min(Math.max((e.clientX - r.left) / r.width, 0), 1);
      clip();
    });
    map.on("move zoom resize", clip);
    clip();
  }
  if (c.ntime > 1) {
    const s = document.createElement("input");
    s.type = "range"; s.min = 0; s.max = c.ntime - 1; s.value = 0; s.id = "time";
    const lab = document.createElement("span");
    const show = () => { lab.textContent = " " + (c.times ? c.times[t] : t); };
    s.addEventListener("input", () => {
      t = Number(s.value); show();
      layers.forEach((ly, i) => ly.setUrl(url(c.layers[i])));
    });
    bar.appendChild(document.createElement("br"));
    bar.appendChild(s); bar.appendChild(lab); show();
  }
  window.STMAP = {map, layers};
})();

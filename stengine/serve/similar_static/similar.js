// stengine similarity viewer: every URL is relative to <base href> (the router's prefix).
(function () {
  "use strict";
  const map = L.map("map", { crs: L.CRS.EPSG4326, center: [20, 0], zoom: 1, minZoom: 0,
                             maxZoom: 12, worldCopyJump: false });
  window.stMap = map;
  const $ = (id) => document.getElementById(id);
  L.tileLayer("tiles/{z}/{x}/{y}.png", { tileSize: 256, noWrap: true, maxZoom: 12,
    bounds: [[-90, -180], [90, 180]], attribution: "stengine · Natural Earth" }).addTo(map);
  // graticule every 30 degrees
  const lines = [];
  for (let lon = -180; lon <= 180; lon += 30) lines.push([[-90, lon], [90, lon]]);
  for (let lat = -60; lat <= 60; lat += 30) lines.push([[lat, -180], [lat, 180]]);
  L.polyline(lines, { color: "#99a", weight: 0.6, interactive: false }).addTo(map);
  fetch("countries.geojson").then((r) => r.json()).then((g) => {
    L.geoJSON(g, { style: { color: "#333", weight: 0.7, fill: false }, interactive: false })
      .addTo(map);
  });
  fetch("info").then((r) => r.json()).then((i) => {
    $("meta").textContent = `${i.cells.toLocaleString()} cells · H3 res ${i.resolution} · ` +
      `D=${i.dim} · ${i.metric} · ${i.backend}`;
    document.body.dataset.ready = "1";
  });
  const hits = L.layerGroup().addTo(map);
  let region = null;
  const ll = (ring) => ring.map((p) => [p[1], p[0]]);

  function bbox() {
    const v = ["minx", "miny", "maxx", "maxy"].map((id) => $(id).value.trim());
    if (v.every((s) => s === "")) return null;
    return v.map(Number).join(",");
  }
  function drawRegion() {
    if (region) { map.removeLayer(region); region = null; }
    const b = bbox();
    if (!b) return;
    const [x0, y0, x1, y1] = b.split(",").map(Number);
    region = L.rectangle([[y0, x0], [y1, x1]], { color: "#e66", weight: 1.5, fill: false,
                                                 dashArray: "4 3", interactive: false })
      .addTo(map);
  }
  $("useview").onclick = () => {
    const b = map.getBounds();
    $("minx").value = Math.max(-180, b.getWest()).toFixed(2);
    $("miny").value = Math.max(-90, b.getSouth()).toFixed(2);
    $("maxx").value = Math.min(180, b.getEast()).toFixed(2);
    $("maxy").value = Math.min(90, b.getNorth()).toFixed(2);
    drawRegion();
  };
  $("clear").onclick = () => { ["minx", "miny", "maxx", "maxy"].forEach((id) => { $(id).value = ""; });
                               drawRegion(); };
  ["minx", "miny", "maxx", "maxy"].forEach((id) => { $(id).onchange = drawRegion; });

  map.on("click", (e) => {
    const lon = e.latlng.lng, lat = e.latlng.lat;
    const q = new URLSearchParams({ lon: lon.toFixed(6), lat: lat.toFixed(6), k: $("k").value });
    const b = bbox();
    if (b) q.set("bbox", b);
    $("status").textContent = "searching…";
    $("status").className = "";
    fetch("similar?" + q.toString()).then(async (r) => {
      const body = await r.json();
      if (!r.ok) throw new Error(body.detail || r.statusText);
      return body;
    }).then(show).catch((err) => {
      $("status").textContent = String(err.message || err);
      $("status").className = "error";
    });
  });

  function show(a) {
    hits.clearLayers();
    L.polygon(ll(a.query.boundary), { color: "#000", weight: 2.5, fill: false }).addTo(hits);
    const ol = $("results");
    ol.innerHTML = "";
    ol.dataset.lon = a.query.lon;
    ol.dataset.lat = a.query.lat;
    ol.dataset.query = a.query.cell;
    a.results.forEach((c) => {
      L.polygon(ll(c.boundary), { color: "#d7191c", weight: 2, fillColor: "#fdae61",
                                 fillOpacity: 0.55 })
        .bindTooltip(`#${c.rank} ${c.cell} d=${c.distance.toFixed(4)}`).addTo(hits);
      const li = document.createElement("li");
      li.dataset.cell = c.cell;
      li.dataset.distance = c.distance;
      li.innerHTML = `${c.cell} <span class="d">${c.distance.toFixed(4)}</span>`;
      li.onclick = () => map.panTo([c.lat, c.lon]);
      ol.appendChild(li);
    });
    $("status").textContent = `${a.results.length} most similar to ${a.query.cell}` +
      (a.bbox ? " in the region" : "");
    document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
  }
})();

// stengine serve UI: polls /sources, /jobs, /cluster with the sign-in cookie.
"use strict";
const $ = (s) => document.querySelector(s);
const history = {};  // job id -> [progress %...]

async function get(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { $("#status").textContent = "not signed in"; throw new Error("401"); }
  return r.json();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

async function sources() {
  const rows = await get("/sources");
  const tb = $("#sources tbody"); tb.textContent = "";
  const sel = $("#job-source"); const cur = sel.value; sel.textContent = "";
  for (const s of rows) {
    const tr = document.createElement("tr");
    cell(tr, s.name); cell(tr, s.kind); cell(tr, s.location);
    tb.appendChild(tr);
    const o = document.createElement("option"); o.textContent = s.name; sel.appendChild(o);
  }
  if (cur) sel.value = cur;
}

async function jobs() {
  const rows = await get("/jobs");
  const tb = $("#jobs tbody"); tb.textContent = "";
  for (const j of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = j.id;
    cell(tr, j.id); cell(tr, j.spec.source);
    cell(tr, j.spec.ops.map((o) => o.op).join(" → "));
    cell(tr, j.status, "job-status " + j.status).title = j.error || "";
    const td = cell(tr, "");
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = j.progress; td.appendChild(bar);
    td.appendChild(document.createTextNode(" " + j.progress + " %"));
    tb.appendChild(tr);
    (history[j.id] = history[j.id] || []).push(j.progress);
  }
  plot(rows[0]);
}

function plot(job) {
  const c = $("#plot"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = "#555"; g.fillText("progress of the newest job (%)", 6, 12);
  if (!job) return;
  const h = history[job.id].slice(-100);
  g.strokeStyle = "#2a6"; g.beginPath();
  h.forEach((p, i) => {
    const x = 6 + (i / Math.max(h.length - 1, 1)) * (c.width - 12);
    const y = c.height - 6 - (p / 100) * (c.height - 24);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillText(job.id + ": " + job.status + " " + job.progress + " %", 6, 26);
}

const mib = (b) => Math.round((b || 0) / 2 ** 20);

async function cluster() {
  const c = await get("/cluster");
  const gpu = JSON.stringify(c.gpus);
  $("#cluster").textContent =
    "scheduler " + c.scheduler + "\nworkers " + c.workers.length + ", threads " + c.threads +
    "\n" + c.workers.map((w) => w.address + "  memory " + mib(w.memory) + " / " +
    mib(w.memory_limit) + " MiB").join("\n") + "\nGPUs " + gpu +
    (c.dashboard ? "\ndashboard " + c.dashboard : "");
}

const OPS = {
  focal_mean: [{ op: "focal_mean", window: 3 }],
  local_reclassify: [{ op: "local_reclassify", mapping: { 1: 10 } }],
  local_histogram: [{ op: "local_histogram" }],
};

$("#submit").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  await fetch("/jobs", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ kind: "ops", source: $("#job-source").value, ops: OPS[$("#job-op").value] }),
  });
  jobs();
});

async function tick() {
  try {
    await Promise.all([sources(), jobs(), cluster()]);
    $("#status").textContent = "signed in · " + new Date().toLocaleTimeString();
  } catch (e) { /* shown in #status */ }
}
tick();
setInterval(tick, 500);

// shardcast's dashboard: polls the admin API once a second and draws what it answers.
// Plain browser JavaScript, no build step. With a bearer token on the admin listener, the
// token is asked for once and kept in this browser's localStorage.
"use strict";

const COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const colour = (id) => COLOURS[id % COLOURS.length];
const SLOTS = 16384;
let renders = 0;

async function api(path) {
  const headers = {};
  const token = localStorage.getItem("shardcast-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, { headers });
  if (r.status === 401) {
    const t = prompt("This admin listener needs its bearer token:");
    if (t) localStorage.setItem("shardcast-token", t.trim());
    throw new Error("unauthorized");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function drawSlotMap(segments, topology) {
  const canvas = document.getElementById("slotmap");
  const ctx = canvas.getContext("2d");
  const cols = canvas.width, rows = canvas.height;
  // 16384 slots in 16 bands of 1024 columns: slot s at (s % 1024, band of s / 1024).
  const perRow = 1024, band = rows / (SLOTS / perRow);
  ctx.clearRect(0, 0, cols, rows);
  let drawn = 0, migrating = 0;
  for (const s of segments.segments) {
    for (let slot = s.slot_start; slot <= s.slot_end; slot++) {
      const x = slot % perRow, y = Math.floor(slot / perRow) * band;
      ctx.fillStyle = colour(s.owner);
      ctx.fillRect(x, y, 1, band);
      if (s.migrating && (x + y) % 4 < 2) {
        ctx.fillStyle = "rgba(255,255,255,0.75)";
        ctx.fillRect(x, y, 1, band);
      }
      drawn++;
    }
    if (s.migrating) migrating++;
  }
  canvas.dataset.slotsDrawn = String(drawn);
  canvas.dataset.migrating = String(migrating);
  // `?probe=<slot>`: read back the pixel drawn for that slot and name its owner by colour,
  // so that a test can check the picture, not only the loop that drew it.
  const probe = Number(new URLSearchParams(location.search).get("probe"));
  if (location.search.includes("probe=") && probe >= 0 && probe < SLOTS) {
    const x = probe % perRow, row = Math.floor(probe / perRow);
    let y = row * band;
    while ((x + y) % 4 < 2) y++; // a pixel the migration stripes leave alone
    const [r, g, b] = ctx.getImageData(x, y, 1, 1).data;
    const hex = "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("");
    const owner = topology.instances.find((i) => colour(i.id) === hex);
    canvas.dataset.probeOwner = owner ? owner.name : "unknown " + hex;
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren(...topology.instances.map((i) => {
    const swatch = el("i");
    swatch.style.background = colour(i.id);
    return el("span", {}, swatch, `${i.name} (${i.state}, ${i.segments} segments, ${i.slots} slots)`);
  }));
}

// A line chart of `values` (nulls skipped) with forecasts drawn over it: the expected value
// as a dashed line and the interval as a band, each at the time it forecasts.
function chart(title, values, intervalMs, nowMs, forecasts, unit) {
  const W = 300, H = 110, pad = 4;
  const n = values.length;
  const fc = forecasts || [];
  const startMs = nowMs - (n - 1) * intervalMs;
  const endMs = Math.max(nowMs, ...fc.map((f) => f.at_ms + f.horizon_ms));
  const xs = (t) => pad + (W - 2 * pad) * (endMs === startMs ? 1 : (t - startMs) / (endMs - startMs));
  const finite = values.filter((v) => v !== null);
  // The scale follows what was measured and expected; a wide interval is clipped to it.
  const top = Math.max(unit === "load" ? 0.1 : 1, ...finite,
    ...fc.map((f) => f.expected).filter(Number.isFinite)) * 1.25;
  const ys = (v) => H - pad - (H - 2 * pad) * Math.min(1, Math.max(0, v / top));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const ns = (tag, attrs) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    svg.append(e);
    return e;
  };
  const visible = fc.filter((f) => f.at_ms + f.horizon_ms >= startMs);
  if (visible.length > 0) {
    const pts = visible.map((f) => [xs(f.at_ms + f.horizon_ms), f]);
    const band = pts.map(([x, f]) => `${x},${ys(f.high)}`)
      .concat(pts.slice().reverse().map(([x, f]) => `${x},${ys(Math.max(0, f.low))}`));
    ns("polygon", { points: band.join(" "), fill: "rgba(242,142,43,0.18)", class: "interval" });
    ns("polyline", { points: pts.map(([x, f]) => `${x},${ys(f.expected)}`).join(" "),
      fill: "none", stroke: "#f28e2b", "stroke-dasharray": "4 3", class: "forecast" });
  }
  const line = [];
  values.forEach((v, i) => { if (v !== null) line.push(`${xs(startMs + i * intervalMs)},${ys(v)}`); });
  ns("polyline", { points: line.join(" "), fill: "none", stroke: "#4e79a7", "stroke-width": 1.5, class: "measured" });
  svg.dataset.points = String(line.length);
  svg.dataset.forecasts = String(visible.length);
  const last = finite.length ? finite[finite.length - 1] : null;
  const digits = unit === "µs" ? 0 : unit === "load" ? 2 : 1;
  let label = last === null ? "no data yet" : `${last.toFixed(digits)} ${unit}`;
  if (visible.length > 0) {
    const f = visible[visible.length - 1];
    label += `; forecast ${f.expected.toFixed(digits)} in ${(f.horizon_ms / 1000).toFixed(0)} s`;
  }
  return el("div", { class: "chart" }, el("h3", {}, `${title}: ${label}`), svg);
}

function drawCharts(series) {
  const box = document.getElementById("charts");
  const charts = [];
  for (const i of series.instances) {
    charts.push(chart(`${i.name} load`, i.load, series.interval_ms, series.now_ms,
      i.forecasts.filter((f) => f.metric === "load"), "load"));
    charts.push(chart(`${i.name} p99`, i.p99_us, series.interval_ms, series.now_ms,
      i.forecasts.filter((f) => f.metric === "latency-p99-us"), "µs"));
  }
  box.replaceChildren(...charts);
}

function drawMigrations(migrations, topology) {
  const name = (id) => (topology.instances.find((i) => i.id === id) || { name: id }).name;
  const rows = migrations.slice().reverse().slice(0, 12).map((m) => el("tr", {},
    el("td", {}, m.id), el("td", {}, m.segment), el("td", {}, `${name(m.source)} → ${name(m.target)}`),
    el("td", {}, m.phase), el("td", {}, m.keys_moved), el("td", { title: m.detail }, m.outcome)));
  document.querySelector("#migrations tbody").replaceChildren(...rows);
}

function drawPolicies(list) {
  const rows = [];
  const add = (v) => {
    if (!v) return;
    const faults = Object.values(v.stats.faults || {}).reduce((a, b) => a + b, 0);
    rows.push(el("tr", {}, el("td", {}, v.role), el("td", {}, v.label), el("td", {}, v.id.slice(0, 8)),
      el("td", {}, v.stats.calls), el("td", {}, v.stats.call_p99_us), el("td", {}, faults),
      el("td", {}, v.stats.rejections)));
  };
  add(list.active); add(list.previous); list.candidates.forEach(add);
  document.querySelector("#policies tbody").replaceChildren(...rows);
  const s = list.shadow;
  const p = document.getElementById("shadow");
  if (s.candidate) {
    const pct = (x) => (x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%");
    p.textContent = `Shadow ${s.candidate} against ${s.against || "?"}: agrees on ${pct(s.agreement)} of ${s.ticks} ticks, ` +
      `${pct(s.acting_agreement)} of the ${s.acting_ticks} ticks where either acted.`;
    p.dataset.agreement = String(s.agreement);
  } else {
    p.textContent = "No shadow candidate. Start one with `shardcast policy shadow <file.wasm>`.";
  }
}

function describe(d) {
  const acts = (xs) => (xs || []).map((a) => JSON.stringify(a)).join(", ");
  switch (d.kind) {
    case "tick": {
      const parts = [];
      if ((d.accepted || []).length) parts.push(`${d.planner} accepted ${acts(d.accepted)}`);
      if ((d.rejected || []).length) parts.push(`refused ${d.rejected.map((r) => r.message).join("; ")}`);
      if ((d.notes || []).length) parts.push(`because: ${d.notes.join(" / ")}`);
      return `tick ${d.tick}: ` + (parts.join("; ") || "no action");
    }
    case "outcome": return `migration ${d.migration.id} of segment ${d.migration.segment}: ${d.migration.outcome} (${d.migration.detail}) [${d.policy}]`;
    case "refused": return `executor refused ${JSON.stringify(d.action)}: ${d.reason} [${d.policy}]`;
    case "applied": return `applied ${JSON.stringify(d.action)} at epoch ${d.epoch} [${d.policy}]`;
    case "shadow": return `tick ${d.tick}: shadow ${d.policy} would ${acts(d.accepted) || "do nothing"} (${d.agrees ? "agrees" : "differs"})`;
    default: return JSON.stringify(d);
  }
}

function drawDecisions(page) {
  const items = page.decisions.slice().reverse().map((d) =>
    el("li", { value: d.seq }, new Date(d.at_ms).toLocaleTimeString() + " " + describe(d)));
  document.getElementById("decisions").replaceChildren(...items);
}

async function refresh() {
  try {
    const [status, topology, segments, series, migrations, decisions] = await Promise.all([
      api("/v1/status"), api("/v1/topology"), api("/v1/segments"), api("/v1/series"),
      api("/v1/migrations"), api("/v1/decisions?acting=true&limit=30")]);
    const up = Object.entries(status.instances).map(([k, v]) => `${v} ${k}`).join(", ");
    document.getElementById("summary").textContent =
      `epoch ${status.epoch} · ${status.segments} segments · ${up} · ${status.migrations_running} migrating · ` +
      `${status.sessions} sessions · policy ${status.policy || "none"}`;
    drawSlotMap(segments, topology);
    drawCharts(series);
    drawMigrations(migrations, topology);
    drawDecisions(decisions);
    if (status.policy) drawPolicies(await api("/v1/policies"));
    document.getElementById("error").textContent = "";
    renders++;
    document.body.dataset.renders = String(renders);
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
  }
}

refresh();
setInterval(refresh, 1000);

// shoal dashboard: live pages fed by server-sent events (/events). Plain DOM, SVG and
// canvas; no libraries.
"use strict";

const page = document.body.dataset.page;
const state = { snapshot: null, history: [], runs: [], sortKey: "name", sortUp: true };
const STREAM_WINDOW = 30; // seconds of task stream shown
const HISTORY_SHOWN = 600; // points in the charts (5 minutes)

const $ = (id) => document.getElementById(id);
const intFormat = new Intl.NumberFormat("en-US");
const fmtInt = (n) => intFormat.format(Math.round(Number(n)));
function fmtBytes(b) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : String(Math.round(b))) + " " + units[i];
}
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function hue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}
function prefixOf(key) {
  const m = /^\(?['"]?([^'",]*)/.exec(key);
  const words = (m ? m[1] : key).split("-");
  const kept = [];
  for (const w of words) {
    if (!w || /^\d+$/.test(w) || (w.length >= 8 && /^[0-9a-f]+$/i.test(w) && /\d/.test(w))) break;
    kept.push(w);
  }
  return kept.length ? kept.join("-") : words[0] || "unnamed";
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("init", (e) => {
    const d = JSON.parse(e.data);
    state.history = d.history;
    state.runs = d.runs;
    apply(d.snapshot);
    $("conn").textContent = "live";
  });
  source.addEventListener("update", (e) => {
    const d = JSON.parse(e.data);
    state.history.push(d.point);
    if (state.history.length > 2400) state.history.splice(0, state.history.length - 2400);
    state.runs.push(...d.snapshot.runs);
    const cut = d.snapshot.at - STREAM_WINDOW * 4;
    let drop = 0;
    while (drop < state.runs.length && state.runs[drop].stop < cut) drop++;
    if (drop) state.runs.splice(0, drop);
    apply(d.snapshot);
  });
  source.onerror = () => { $("conn").textContent = "disconnected (retrying)"; };
}

function apply(s) {
  state.snapshot = s;
  const threads = s.workers.reduce((a, w) => a + w.nthreads, 0);
  $("workers-count").textContent = fmtInt(s.workers.length);
  $("threads-count").textContent = fmtInt(threads);
  $("conn").textContent = "live · " + new Date(s.at * 1000).toLocaleTimeString();
  if (page === "status") renderStatus(s);
  else renderWorkers(s);
}

// ---- status page ----------------------------------------------------------------------

function rate(field, scale) {
  const h = state.history;
  if (h.length < 2) return 0;
  const a = h[Math.max(0, h.length - 5)], b = h[h.length - 1];
  const dt = b.at - a.at;
  return dt > 0 ? ((b[field] - a[field]) / dt) * (scale || 1) : 0;
}

function renderStatus(s) {
  $("clients-count").textContent = fmtInt(s.clients);
  $("finished-total").textContent = fmtInt(s.finished_total);
  $("failed-total").textContent = fmtInt(s.failed_total);
  $("throughput").textContent = fmtInt(Math.round(rate("finished_total")));
  const head = $("states").tHead.rows[0], body = $("states").tBodies[0].rows[0];
  head.innerHTML = s.states.map((n) => "<th>" + n + "</th>").join("");
  body.innerHTML = s.tasks.map((n, i) => '<td data-state="' + s.states[i] + '">' + fmtInt(n) + "</td>").join("");
  renderProgress(s);
  renderStream(s);
  const h = state.history.slice(-HISTORY_SHOWN);
  const rates = (f, scale) => h.map((p, i) => (i === 0 ? 0 : Math.max(0, (p[f] - h[i - 1][f]) / Math.max(1e-9, p.at - h[i - 1].at)) * (scale || 1)));
  lineChart($("chart-throughput"), h, [{ values: rates("finished_total"), color: "#3a9a5b" }], fmtInt);
  lineChart($("chart-memory"), h, [
    { values: h.map((p) => p.managed), color: "#4a7fd0" },
    { values: h.map((p) => p.unmanaged), color: "#9cb8e6" },
    { values: h.map((p) => p.spilled), color: "#d9a13b" },
  ], fmtBytes);
  const last = h[h.length - 1];
  if (last) {
    $("memory-now").textContent = fmtBytes(last.managed + last.unmanaged) + " in memory, " + fmtBytes(last.spilled) + " spilled" + (last.memory_limit ? ", limit " + fmtBytes(last.memory_limit) : "");
    $("transfers-now").textContent = "fetched so far: TCP " + fmtBytes(last.tcp_bytes) + ", MPI " + fmtBytes(last.mpi_bytes);
  }
  lineChart($("chart-transfers"), h, [
    { values: rates("tcp_bytes"), color: "#4a7fd0" },
    { values: rates("mpi_bytes"), color: "#3a9a5b" },
  ], fmtBytes);
  lineChart($("chart-scheduler"), h, [
    { values: rates("cpu_seconds", 100), color: "#4a7fd0" },
    { values: h.map((p) => p.loop_lag_seconds * 1000), color: "#d0463c" },
  ], (v) => v.toFixed(1));
  const sc = s.scheduler;
  $("scheduler-now").textContent = "CPU " + rate("cpu_seconds", 100).toFixed(1) + " %, RSS " + fmtBytes(sc.rss_bytes) + ", loop lag " + (sc.loop_lag_seconds * 1000).toFixed(1) + " ms (max " + (sc.loop_lag_max_seconds * 1000).toFixed(1) + " ms)";
}

function renderProgress(s) {
  // states: waiting ready queued running memory erred released
  const rows = s.prefixes
    .map((p) => {
      const waiting = p.states[0] + p.states[1], proc = p.states[2] + p.states[3];
      const total = p.finished + waiting + proc + p.failed;
      return { name: p.name, waiting, proc, done: p.finished, failed: p.failed, total, live: waiting + proc };
    })
    .filter((r) => r.total > 0)
    .sort((a, b) => (b.live > 0) - (a.live > 0) || b.total - a.total)
    .slice(0, 40);
  $("progress").innerHTML = rows
    .map((r) => {
      const pc = (n) => ((100 * n) / r.total).toFixed(2) + "%";
      return '<div class="row" data-prefix="' + escapeHtml(r.name) + '"><span>' + escapeHtml(r.name) + '</span><div class="bar">' +
        '<span class="done" style="width:' + pc(r.done) + '"></span><span class="err" style="width:' + pc(r.failed) + '"></span>' +
        '<span class="proc" style="width:' + pc(r.proc) + '"></span><span class="wait" style="width:' + pc(r.waiting) + '"></span></div>' +
        '<span class="count">' + fmtInt(r.done) + " / " + fmtInt(r.total) + "</span></div>";
    })
    .join("");
}

function renderStream(s) {
  const canvas = $("stream");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const rows = new Map();
  for (const wk of s.workers) rows.set(wk.address.split(" ")[0], rows.size);
  const n = Math.max(1, rows.size);
  const rowH = Math.max(1, (h - 14) / n);
  const t1 = s.at, t0 = t1 - STREAM_WINDOW;
  const x = (t) => ((t - t0) / STREAM_WINDOW) * w;
  for (const r of state.runs) {
    if (r.stop < t0) continue;
    const row = rows.get(r.worker);
    if (row === undefined) continue;
    ctx.fillStyle = r.ok ? "hsl(" + hue(prefixOf(r.key)) + ",55%,52%)" : "#d0463c";
    const x0 = x(r.start);
    ctx.fillRect(x0, row * rowH, Math.max(1, x(r.stop) - x0), Math.max(1, rowH - (rowH > 3 ? 1 : 0)));
  }
  ctx.fillStyle = "#667";
  ctx.font = "10px sans-serif";
  ctx.fillText("-" + STREAM_WINDOW + " s", 2, h - 2);
  ctx.fillText("now", w - 22, h - 2);
}

function lineChart(svg, points, series, fmt) {
  const W = 500, H = 150, pad = 4;
  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  const n = points.length;
  let out = "";
  if (n >= 2 && max > 0) {
    for (const s of series) {
      const path = s.values
        .map((v, i) => (i ? "L" : "M") + ((i / (n - 1)) * W).toFixed(1) + " " + (H - pad - (v / max) * (H - 2 * pad - 12)).toFixed(1))
        .join("");
      out += '<path d="' + path + '" fill="none" stroke="' + s.color + '" stroke-width="1.5"/>';
    }
  }
  out += '<text x="4" y="11">max ' + escapeHtml(fmt(max)) + "</text>";
  svg.innerHTML = out;
}

// ---- workers page ---------------------------------------------------------------------

function workerRow(w) {
  const unmanaged = Math.max(0, w.rss - w.memory.managed);
  return {
    w, name: w.name, host: w.host, mpi_rank: w.mpi_rank === null ? -1 : w.mpi_rank, nthreads: w.nthreads,
    managed: w.memory.managed, unmanaged, spilled: w.memory.spilled, memory: w.rss, memory_limit: w.memory_limit,
    executing: w.executing, queued: w.queued, assigned: w.assigned, finished: w.finished, paused: w.paused ? 1 : 0,
    fetched: w.transfers.tcp_bytes + w.transfers.mpi_bytes,
  };
}

function memoryBar(r) {
  const w = r.w;
  const scale = Math.max(w.memory_limit, r.managed + r.unmanaged + r.spilled, 1);
  const pc = (n) => ((100 * n) / scale).toFixed(2) + "%";
  let lines = "";
  if (w.memory_limit) {
    for (const f of w.memory.thresholds || []) if (f > 0) lines += '<span class="line" style="left:' + (100 * f).toFixed(1) + '%"></span>';
  }
  return '<div class="membar"><span class="managed" style="width:' + pc(r.managed) + '"></span><span class="unmanaged" style="width:' + pc(r.unmanaged) +
    '"></span><span class="spilled" style="width:' + pc(r.spilled) + '"></span>' + lines + "</div>";
}

// One row element per worker, kept across updates: an update rewrites only the cells whose
// text changed and moves only the rows whose place changed, so that a thousand workers
// cost a few milliseconds per update rather than a rebuilt table.
const workerRows = new Map(); // worker id -> { tr, cells, bar }
const CELL_CLASS = { 9: "executing", 12: "finished" };

function workerRowOf(id) {
  let e = workerRows.get(id);
  if (!e) {
    const tr = document.createElement("tr");
    const cells = [];
    for (let i = 0; i < 15; i++) {
      const td = document.createElement("td");
      if (CELL_CLASS[i]) td.className = CELL_CLASS[i];
      tr.appendChild(td);
      cells.push(td);
    }
    e = { tr, cells, bar: "" };
    workerRows.set(id, e);
  }
  return e;
}

function workerTexts(r) {
  const w = r.w;
  return [w.name, w.host, w.mpi_rank === null ? "" : String(w.mpi_rank), String(w.nthreads), null, fmtBytes(r.managed),
    fmtBytes(r.unmanaged), fmtBytes(r.spilled), w.memory_limit ? fmtBytes(w.memory_limit) : "none", fmtInt(w.executing),
    fmtInt(w.queued), fmtInt(w.assigned), fmtInt(w.finished), w.paused ? "paused" : "", fmtBytes(r.fetched)];
}

function renderWorkers(s) {
  const filter = ($("filter").value || "").toLowerCase();
  let rows = s.workers.map(workerRow);
  $("running-count").textContent = fmtInt(rows.reduce((a, r) => a + r.executing, 0));
  $("paused-count").textContent = fmtInt(rows.reduce((a, r) => a + r.paused, 0));
  if (filter) rows = rows.filter((r) => r.name.toLowerCase().includes(filter) || r.host.toLowerCase().includes(filter));
  const k = state.sortKey, dir = state.sortUp ? 1 : -1;
  rows.sort((a, b) => (a[k] < b[k] ? -dir : a[k] > b[k] ? dir : a.name < b.name ? -1 : 1));
  const body = $("workers").tBodies[0];
  const live = new Set(s.workers.map((w) => w.id));
  for (const [id, e] of workerRows) {
    if (!live.has(id)) {
      e.tr.remove();
      workerRows.delete(id);
    }
  }
  rows.forEach((r, i) => {
    const e = workerRowOf(r.w.id);
    if (e.tr.dataset.worker !== r.w.name) e.tr.dataset.worker = r.w.name;
    e.tr.classList.toggle("paused", r.w.paused);
    workerTexts(r).forEach((text, j) => {
      if (text !== null && e.cells[j].textContent !== text) e.cells[j].textContent = text;
    });
    const bar = memoryBar(r);
    if (bar !== e.bar) {
      e.cells[4].innerHTML = bar;
      e.bar = bar;
    }
    const here = body.children[i];
    if (here !== e.tr) body.insertBefore(e.tr, here || null);
  });
  // Rows the filter hides ended up after the shown ones.
  while (body.children.length > rows.length) body.lastElementChild.remove();
}

if (page === "workers") {
  for (const th of document.querySelectorAll("#workers th")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sortUp = state.sortKey === key ? !state.sortUp : true;
      state.sortKey = key;
      if (state.snapshot) renderWorkers(state.snapshot);
    });
  }
  $("filter").addEventListener("input", () => state.snapshot && renderWorkers(state.snapshot));
}

connect();

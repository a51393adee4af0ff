// The slotpilot operator console: reads the admin port's JSON API and /metrics every few seconds
// and shows the slot map, the masters, traffic, the migrations and the redirect loops. The only
// writes are POST /v1/migrations/{slot}/finish|rollback, with a token the operator types in; the
// token lives in this module's memory only (never a URL, a cookie or storage).
import {
  MARKER_COLOURS, SLOT_COUNT, UNASSIGNED_COLOUR, cellOrigin, drawChart, drawSlotMap, slotAt,
} from "/draw.js";

// Distinct, colour-blind-friendly hues for masters; orange and red are kept for the markers.
const PALETTE = ["#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#86bcb6"];
const CHART_WINDOW_MS = 2 * 60 * 1000;
const ACTIVE_LOOP_MS = 60 * 1000;  // a loop seen this recently is marked on the map
const NO_TOKEN_REASON = "admin actions are disabled: start slotpilot with --admin-token-file";
const WATCHER_OFF_REASON = "the migration watcher is off (--watcher=off)";

const state = {
  paused: false,
  intervalMs: 2000,
  timer: null,
  inFlight: false,
  token: null,          // the admin token, in memory only
  data: {},             // last good answer of each endpoint
  model: null,          // what the views draw, built from data
  previousCounters: null,
  samples: [],          // { t, rps, eps, p99 }
  pendingAction: null,  // { slot, action } while the dialog is open
};

const $ = (id) => document.getElementById(id);

// ---- small helpers ----------------------------------------------------------------------------

// Builds an element; text children become text nodes (never parsed as HTML).
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child != null) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function swatch(colour) {
  const el = h("span", { class: "swatch" });
  el.style.backgroundColor = colour;  // CSSOM, allowed by the CSP (a style attribute is not)
  return el;
}

function formatNumber(value, digits = 0) {
  if (value == null || !Number.isFinite(value)) return "\u2013";
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function formatRate(value) {
  if (value == null) return "\u2013";
  return formatNumber(value, value < 10 && value % 1 !== 0 ? 1 : 0);
}

function formatMs(ms) {
  if (ms == null) return "\u2013";
  if (ms < 1) return `${formatNumber(ms, 2)} ms`;
  if (ms < 100) return `${formatNumber(ms, 1)} ms`;
  return `${formatNumber(ms, 0)} ms`;
}

function formatBytes(bytes) {
  if (bytes == null || bytes < 0) return "\u2013";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) {
    bytes /= 1024;
    i++;
  }
  return `${formatNumber(bytes, i === 0 || bytes >= 100 ? 0 : 1)} ${units[i]}`;
}

function formatDuration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function clockTime(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

// "12 s ago" with the full timestamp as a tooltip.
function ago(iso) {
  if (!iso) return h("span", { class: "muted" }, "\u2013");
  const then = new Date(iso);
  return h("time", { datetime: iso, title: then.toString() },
    `${formatDuration((Date.now() - then.getTime()) / 1000)} ago`);
}

function plural(n, word) {
  return `${formatNumber(n)} ${word}${n === 1 ? "" : "s"}`;
}

function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

// "127.0.0.1:7001" -> ["127.0.0.1", 7001], for a stable, natural order of masters.
function compareAddresses(a, b) {
  const [hostA, portA] = [a.slice(0, a.lastIndexOf(":")), Number(a.slice(a.lastIndexOf(":") + 1))];
  const [hostB, portB] = [b.slice(0, b.lastIndexOf(":")), Number(b.slice(b.lastIndexOf(":") + 1))];
  return hostA === hostB ? portA - portB : hostA.localeCompare(hostB);
}

// ---- fetching ---------------------------------------------------------------------------------

const FETCH_TIMEOUT_MS = 5000;  // a hung admin port must not stop the refresh loop

async function fetchText(path) {
  const res = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  return { status: res.status, text: await res.text() };
}

async function fetchJson(path) {
  const { status, text } = await fetchText(path);
  if (status !== 200) throw new Error(`${path}: HTTP ${status}`);
  return JSON.parse(text);
}

const SOURCES = {
  slots: () => fetchJson("/v1/slots"),
  migrations: () => fetchJson("/v1/migrations"),
  loops: () => fetchJson("/v1/loops"),
  cluster: () => fetchJson("/v1/cluster"),
  config: () => fetchJson("/v1/config"),
  ready: () => fetchText("/readyz"),
  metrics: async () => parseMetrics((await fetchText("/metrics")).text),
};

// Fetches every source, one after another: the admin server has a thread per connection and a
// small pool, so the page keeps one connection busy, never one per request, and leaves the other
// threads to probes and scrapes. Keeps the last good answer of any source that fails.
async function refresh() {
  if (state.inFlight) return;
  state.inFlight = true;
  const failed = [];
  for (const [name, load] of Object.entries(SOURCES)) {
    try {
      state.data[name] = await load();
      if (name === "metrics") addSample(state.data.metrics);
    } catch (e) {
      failed.push(name);
    }
  }
  state.inFlight = false;
  state.model = buildModel(state.data);
  render(failed);
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(async () => {
    await refresh();
    schedule();
  }, state.intervalMs);
}

// ---- metrics ----------------------------------------------------------------------------------

// Prometheus text format -> [{ name, labels, value }].
function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const row of text.split("\n")) {
    if (row === "" || row.startsWith("#")) continue;
    const m = line.exec(row);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(label)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

function metricSum(samples, name) {
  return samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
}

function metricValue(samples, name, labels = {}) {
  const hit = samples.find((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hit ? hit.value : null;
}

// The q-quantile of a histogram's bucket increments, as Prometheus' histogram_quantile does:
// linear within the bucket that holds the rank. null without observations.
function histogramQuantile(q, buckets) {
  const total = buckets.length ? buckets[buckets.length - 1].count : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return lowerBound;
      const inBucket = b.count - lowerCount;
      return lowerBound + (b.le - lowerBound) * (inBucket > 0 ? (rank - lowerCount) / inBucket : 1);
    }
    lowerBound = b.le;
    lowerCount = b.count;
  }
  return lowerBound;
}

function counters(samples) {
  const buckets = samples
    .filter((s) => s.name === "slotpilot_request_duration_seconds_bucket")
    .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), count: s.value }))
    .sort((a, b) => a.le - b.le);
  return {
    t: Date.now(),
    requests: metricSum(samples, "slotpilot_requests_total"),
    errors: metricSum(samples, "slotpilot_request_errors_total"),
    buckets,
  };
}

// One chart point from the counters' increase since the previous scrape.
function addSample(samples) {
  const now = counters(samples);
  const before = state.previousCounters;
  state.previousCounters = now;
  if (!before || now.requests < before.requests) return;  // first scrape, or a restart
  const seconds = (now.t - before.t) / 1000;
  if (seconds <= 0) return;
  const increments = now.buckets.map((b, i) => ({
    le: b.le, count: b.count - (before.buckets[i] ? before.buckets[i].count : 0),
  }));
  const p99 = histogramQuantile(0.99, increments);
  state.samples.push({
    t: now.t,
    rps: (now.requests - before.requests) / seconds,
    eps: (now.errors - before.errors) / seconds,
    p99: p99 == null ? null : p99 * 1000,
  });
  while (state.samples.length && state.samples[0].t < now.t - CHART_WINDOW_MS) state.samples.shift();
}

// ---- the model --------------------------------------------------------------------------------

// Everything the views need, from the endpoints' answers: masters with a letter and a colour,
// each slot's owner, and per-slot marks (open, loop, stuck).
function buildModel(data) {
  const masters = buildMasters(data);
  const byAddress = new Map(masters.map((m) => [m.address, m]));
  const owner = new Int16Array(SLOT_COUNT).fill(-1);
  for (const r of (data.slots && data.slots.ranges) || []) {
    const m = r.address ? byAddress.get(r.address) : null;
    if (m) owner.fill(m.index, r.start, r.end + 1);
  }
  const migrations = (data.migrations && data.migrations.migrations) || [];
  const loops = (data.loops && data.loops.loops) || [];
  const slots = new Map();  // slot -> { open, migration, loop }
  const at = (slot) => slots.get(slot) || slots.set(slot, { slot }).get(slot);
  for (const o of (data.slots && data.slots.open_slots) || []) at(o.slot).open = o;
  for (const m of migrations) at(m.slot).migration = m;
  for (const l of loops) at(l.slot).loop = l;
  return { masters, byAddress, owner, slots, migrations, loops };
}

function buildMasters(data) {
  const found = new Map();
  const add = (address, id) => {
    if (!address) return;
    const m = found.get(address) || { address, id: "", slots: 0 };
    m.id = m.id || id || "";
    found.set(address, m);
  };
  for (const r of (data.slots && data.slots.ranges) || []) {
    add(r.address, r.node_id);
    if (r.address) found.get(r.address).slots += r.end - r.start + 1;
  }
  for (const m of (data.cluster && data.cluster.masters) || []) add(m.address, m.id);
  return [...found.values()]
    .sort((a, b) => compareAddresses(a.address, b.address))
    .map((m, index) => ({
      ...m,
      index,
      letter: index < 26 ? String.fromCharCode(65 + index) : `M${index + 1}`,
      colour: index < PALETTE.length ? PALETTE[index] : `hsl(${(index * 137) % 360} 45% 55%)`,
    }));
}

function masterLabel(model, address) {
  const m = model.byAddress.get(address);
  return m ? m.letter : address || "?";
}

function isLoopActive(loop) {
  return loop && Date.now() - new Date(loop.last_seen).getTime() < ACTIVE_LOOP_MS;
}

// The marks drawn over the grid, stuck slots first so their labels win the space.
function gridMarks(model) {
  const colourOf = (address) => {
    const m = model.byAddress.get(address);
    return m ? m.colour : UNASSIGNED_COLOUR;
  };
  const marks = [];
  for (const s of model.slots.values()) {
    const source = (s.migration && s.migration.source) || (s.open && s.open.source) || "";
    const target = (s.migration && s.migration.target) || (s.open && s.open.target) || "";
    const mark = {
      slot: s.slot,
      open: Boolean(s.open),
      loop: isLoopActive(s.loop),
      stuck: Boolean(s.migration && s.migration.verdict === "stuck"),
      sourceColour: colourOf(source),
      targetColour: colourOf(target),
    };
    if (!mark.open && !mark.loop && !mark.stuck) continue;
    mark.label = mark.open && source && target
      ? `${s.slot} ${masterLabel(model, source)}\u2192${masterLabel(model, target)}` : `${s.slot}`;
    marks.push(mark);
  }
  return marks.sort((a, b) => Number(b.stuck) - Number(a.stuck) || a.slot - b.slot);
}

// ---- rendering --------------------------------------------------------------------------------

function render(failed) {
  renderStatus(failed);
  renderSlotMap();
  renderMasters();
  renderTraffic();
  renderMigrations();
  renderLoops();
}

function setPill(id, text, tone) {
  const pill = $(id);
  pill.textContent = text;
  pill.className = `pill ${tone || ""}`;
}

function renderStatus(failed) {
  const { ready, slots, migrations, config } = state.data;
  if (failed.length === Object.keys(SOURCES).length) {
    setPill("pill-ready", "admin port unreachable", "bad");
  } else if (ready) {
    setPill("pill-ready", ready.status === 200 ? "ready" : `not ready: ${ready.text.trim()}`,
      ready.status === 200 ? "good" : "bad");
  }
  if (slots) {
    setPill("pill-topology", slots.loaded
      ? `topology v${slots.version} \u00b7 ${formatNumber(slots.slots_assigned)}/16,384 slots`
      : "no topology yet", slots.loaded && slots.slots_assigned === SLOT_COUNT ? "" : "bad");
  }
  if (migrations) {
    const healthy = migrations.mode === "off" ? "" : migrations.cluster_healthy ? " \u00b7 cluster healthy"
      : ` \u00b7 ${migrations.unhealthy_reason || "cluster unhealthy"}`;
    setPill("pill-watcher", `watcher ${migrations.mode}${healthy}`,
      migrations.mode !== "off" && !migrations.cluster_healthy ? "warn" : "");
  }
  if (config) {
    const enabled = tokenConfigured();
    setPill("pill-admin", enabled ? "admin actions enabled" : "read-only: no admin token",
      enabled ? "" : "muted-pill");
  }
  const when = clockTime(new Date());
  $("updated").textContent = failed.length ? `updated ${when}; failed: ${failed.join(", ")}`
    : state.paused ? `paused at ${when}` : `updated ${when}`;
  $("updated").classList.toggle("error-text", failed.length > 0);
}

function tokenConfigured() {
  const config = state.data.config;
  return Boolean(config) && config["admin-token"] !== "<unset>";
}

function renderSlotMap() {
  const model = state.model;
  const marks = gridMarks(model);
  drawSlotMap($("slot-map"), { owner: model.owner, colours: model.masters.map((m) => m.colour), marks });
  const assigned = model.owner.reduce((n, o) => n + (o >= 0 ? 1 : 0), 0);
  $("slot-summary").textContent = `${formatNumber(assigned)} of 16,384 slots assigned \u00b7 ` +
    `${plural(model.masters.length, "master")} \u00b7 ${marks.filter((m) => m.open).length} open`;
  renderLegend(model, assigned);
  renderOpenSlots(model, marks);
}

function renderLegend(model, assigned) {
  const items = model.masters.map((m) => h("li", {
    dataset: { address: m.address, colour: m.colour, letter: m.letter, slots: String(m.slots) },
  }, swatch(m.colour), h("strong", {}, m.letter), ` ${m.address}`,
  h("span", { class: "muted" }, ` ${formatNumber(m.slots)} slots`)));
  if (assigned < SLOT_COUNT) {
    items.push(h("li", { dataset: { colour: UNASSIGNED_COLOUR } }, swatch(UNASSIGNED_COLOUR),
      `unassigned `, h("span", { class: "muted" }, `${formatNumber(SLOT_COUNT - assigned)} slots`)));
  }
  $("legend").replaceChildren(...items);
}

function renderOpenSlots(model, marks) {
  const items = marks.map((mark) => {
    const s = model.slots.get(mark.slot);
    const m = s.migration;
    const source = (m && m.source) || (s.open && s.open.source);
    const target = (m && m.target) || (s.open && s.open.target);
    const what = [];
    if (mark.open) what.push(`${masterLabel(model, source)} \u2192 ${masterLabel(model, target)}`);
    if (m) what.push(`${m.verdict} (${m.signature})`);
    if (mark.loop) what.push(`${s.loop.pattern} loop`);
    return h("li", { dataset: { slot: String(mark.slot) }, class: mark.stuck ? "stuck" : "" },
      h("strong", {}, `slot ${mark.slot}`), ` ${what.join(" \u00b7 ")}`);
  });
  $("open-slots").replaceChildren(...items);
}

function renderTooltip(event) {
  const tooltip = $("tooltip");
  const slot = state.model ? slotAt($("slot-map"), event.clientX, event.clientY) : -1;
  if (slot < 0) {
    tooltip.hidden = true;
    return;
  }
  tooltip.replaceChildren(...tooltipRows(state.model, slot));
  tooltip.hidden = false;
  const { x, y } = cellOrigin(slot);
  const wrap = $("map-wrap").getBoundingClientRect();
  const canvas = $("slot-map").getBoundingClientRect();
  // Below the slot (clear of its rings and label), or above it near the bottom edge.
  const cellLeft = canvas.left - wrap.left + x;
  const cellTop = canvas.top - wrap.top + y;
  const left = Math.max(0, Math.min(cellLeft - 20, wrap.width - tooltip.offsetWidth));
  const below = cellTop + 20;
  const top = below + tooltip.offsetHeight <= wrap.height ? below : cellTop - 16 - tooltip.offsetHeight;
  tooltip.style.left = `${left}px`;
  tooltip.style.top = `${top}px`;
}

function tooltipRows(model, slot) {
  const row = (label, ...value) => h("div", { class: "tip-row" }, h("span", { class: "tip-label" }, label),
    h("span", {}, ...value));
  const ownerIndex = model.owner[slot];
  const owner = ownerIndex >= 0 ? model.masters[ownerIndex] : null;
  const s = model.slots.get(slot) || {};
  const rows = [h("div", { class: "tip-title" }, `Slot ${slot}`),
    row("owner", owner ? `${owner.letter} ${owner.address} (${shortId(owner.id)})` : "unassigned")];
  const m = s.migration;
  const source = (m && m.source) || (s.open && s.open.source);
  const target = (m && m.target) || (s.open && s.open.target);
  rows.push(row("state", s.open
    ? `open: ${masterLabel(model, source)} ${source || "?"} \u2192 ${masterLabel(model, target)} ${target || "?"}`
    : "stable"));
  if (m) {
    rows.push(row("verdict", `${m.verdict} (${m.signature})`));
    rows.push(row("keys", `source ${formatNumber(m.keys_source)} \u00b7 target ${formatNumber(m.keys_target)}`));
  }
  if (s.loop) {
    rows.push(row("loops", `${s.loop.pattern} \u00d7 ${formatNumber(s.loop.count)}, last ${clockTime(new Date(s.loop.last_seen))}`));
  }
  return rows;
}

function renderMasters() {
  const { masters } = state.model;
  const cluster = new Map(((state.data.cluster && state.data.cluster.masters) || []).map((m) => [m.address, m]));
  const throttled = new Map(((state.data.migrations && state.data.migrations.throttled_nodes) || [])
    .map((t) => [t.node, t]));
  const metrics = state.data.metrics || [];
  const rows = masters.map((m) => {
    const c = cluster.get(m.address);
    const reachableMetric = metricValue(metrics, "slotpilot_master_reachable", { address: m.address });
    const reachable = c ? c.reachable : reachableMetric == null ? null : reachableMetric === 1;
    return h("tr", { dataset: { address: m.address } },
      h("td", {}, swatch(m.colour), h("strong", {}, m.letter)),
      h("td", { class: "mono" }, m.address),
      h("td", { class: "mono", title: m.id }, shortId(m.id)),
      h("td", { class: "num" }, formatNumber(m.slots)),
      h("td", {}, reachableBadge(reachable, c)),
      h("td", { class: "num" }, c ? formatBytes(c.used_memory) : "\u2013"),
      h("td", {}, headroom(c)),
      h("td", {}, throttleText(throttled.get(m.address))));
  });
  $("masters").tBodies[0].replaceChildren(...rows);
  const c = state.data.cluster;
  $("cluster-summary").textContent = c && c.masters
    ? (c.healthy ? "cluster healthy" : `cluster unhealthy: ${c.unhealthy_reason}`)
    : "watcher off: reachability from this proxy's PINGs";
}

function reachableBadge(reachable, c) {
  if (reachable == null) return h("span", { class: "muted" }, "\u2013");
  const detail = c && c.cluster_state && c.cluster_state !== "ok" ? ` (cluster_state ${c.cluster_state})` : "";
  return h("span", { class: `badge ${reachable ? "good" : "bad"}`, title: (c && c.error) || "" },
    `${reachable ? "yes" : "no"}${detail}`);
}

function headroom(c) {
  if (!c) return h("span", { class: "muted" }, "\u2013");
  if (!c.maxmemory) return h("span", { class: "muted" }, "no maxmemory");
  const free = Math.max(0, c.maxmemory - c.used_memory);
  const percent = (100 * free) / c.maxmemory;
  return h("span", { class: percent < 10 ? "error-text" : "" },
    `${formatBytes(free)} (${formatNumber(percent)}%) of ${formatBytes(c.maxmemory)}`);
}

function throttleText(t) {
  if (!t) return h("span", { class: "muted" }, "not throttled");
  return h("span", {
    class: "badge warn",
    title: `throttled (${t.evidence}) for slots ${t.slots.join(", ")}: ${formatRate(t.rate_ops)} of ` +
      `${formatRate(t.budget_ops)} requests/s budget used, ${t.waiting} waiting`,
  }, `${formatRate(t.rate_ops)}/${formatRate(t.budget_ops)} ops/s` + (t.waiting ? `, ${t.waiting} waiting` : ""));
}

function renderTraffic() {
  const last = state.samples[state.samples.length - 1];
  $("stat-rps").textContent = last ? formatRate(last.rps) : "\u2013";
  $("stat-eps").textContent = last ? formatRate(last.eps) : "\u2013";
  $("stat-eps").classList.toggle("error-text", Boolean(last && last.eps > 0));
  $("stat-p99").textContent = last ? formatMs(last.p99) : "\u2013";
  const clients = metricValue(state.data.metrics || [], "slotpilot_client_connections");
  $("stat-clients").textContent = formatNumber(clients);
  const now = Date.now();
  const points = (key) => state.samples.map((s) => ({ t: s.t, v: s[key] }));
  drawChart($("chart-rate"), [
    { colour: "#4e79a7", points: points("rps") },
    { colour: MARKER_COLOURS.stuck, points: points("eps") },
  ], { windowMs: CHART_WINDOW_MS, now, format: (v) => formatRate(v) });
  drawChart($("chart-latency"), [{ colour: "#7c3aed", points: points("p99") }],
    { windowMs: CHART_WINDOW_MS, now, format: (v) => formatNumber(v, v > 0 && v < 10 ? 1 : 0) });
}

function renderMigrations() {
  const data = state.data.migrations;
  const list = [...state.model.migrations].sort((a, b) =>
    Number(b.verdict === "stuck") - Number(a.verdict === "stuck") || a.slot - b.slot);
  const actionsBlocked = actionsBlockedReason();
  $("actions-note").hidden = !actionsBlocked;
  $("actions-note").textContent = actionsBlocked ? `Finish and rollback are unavailable: ${actionsBlocked}.` : "";
  $("migrations").tBodies[0].replaceChildren(...list.map((m) => migrationRow(m, actionsBlocked)));
  $("migrations").hidden = list.length === 0;
  $("migrations-empty").hidden = list.length > 0;
  const stuck = list.filter((m) => m.verdict === "stuck").length;
  $("migrations-summary").textContent = data
    ? `watcher ${data.mode} \u00b7 ${plural(list.length, "slot")} \u00b7 ${stuck} stuck` +
      (data.last_poll_error ? ` \u00b7 last poll error: ${data.last_poll_error}` : "")
    : "";
}

// Why no action can be requested from this page at all ("" when they can).
function actionsBlockedReason() {
  if (!state.data.config) return "";
  if (!tokenConfigured()) return NO_TOKEN_REASON;
  if (state.data.migrations && state.data.migrations.mode === "off") return WATCHER_OFF_REASON;
  return "";
}

function migrationRow(m, blocked) {
  const model = state.model;
  const endpoints = [h("span", {}, `${masterLabel(model, m.source)} ${m.source || "?"}`),
    h("span", {}, h("span", { class: "arrow" }, "\u2192 "), `${masterLabel(model, m.target)} ${m.target || "?"}`)];
  const reason = [m.reason, m.verdict !== "stuck" ? m.why_not_stuck : ""].filter(Boolean).join(" \u2014 ");
  return h("tr", { dataset: { slot: String(m.slot), verdict: m.verdict } },
    h("td", { class: "num" }, h("strong", {}, String(m.slot))),
    h("td", {}, h("span", { class: `badge verdict-${m.verdict}` }, m.verdict),
      h("div", { class: "muted small" }, m.signature + (m.scenario ? ` (${m.scenario})` : ""))),
    h("td", { class: "mono endpoints" }, endpoints),
    h("td", { class: "num" }, `${formatNumber(m.keys_source)} / ${formatNumber(m.keys_target)}`),
    h("td", { class: "reason" }, reason || "\u2013"),
    h("td", { class: "plan-cell" }, planList(m)),
    h("td", { class: "mono" }, m.lease_holder || h("span", { class: "muted" }, "none")),
    h("td", {}, ago(m.since)),
    h("td", { class: "actions" }, actionButtons(m, blocked)));
}

function planList(m) {
  const steps = m.plan && m.plan.length ? m.plan : [];
  const list = h("ol", { class: "plan" }, steps.map((step) => h("li", {}, step)));
  // In observe mode `action` only repeats the plan ("would run: 1) ..."); show what ran instead.
  const ran = m.action && !/^(would run|plan):/.test(m.action) ? m.action : "";
  return [h("div", { class: "small" }, h("strong", {}, m.plan_kind || "none")),
    steps.length ? list : null, ran ? h("div", { class: "muted small" }, ran) : null];
}

function actionButtons(m, blocked) {
  if (m.verdict === "healthy" || m.verdict === "healthy-again") return h("span", { class: "muted" }, "\u2013");
  const button = (action, label, why) => h("button", {
    type: "button", class: action === "finish" ? "primary" : "", disabled: Boolean(why),
    title: why || `${label} slot ${m.slot}`, dataset: { action, slot: String(m.slot) },
    onclick: () => openActionDialog(m, action),
  }, label);
  return [
    button("finish", "Finish", blocked || (m.repairable ? "" : "no repair plan for this state (alert only)")),
    button("rollback", "Roll back", blocked || (m.rollback && m.rollback.length ? "" : "no rollback for this state")),
  ];
}

function renderLoops() {
  const loops = [...state.model.loops].sort((a, b) => b.last_seen.localeCompare(a.last_seen));
  const rows = loops.map((l) => h("tr", { dataset: { slot: String(l.slot) }, class: isLoopActive(l) ? "" : "stale" },
    h("td", { class: "num" }, h("strong", {}, String(l.slot))),
    h("td", {}, h("span", { class: "badge warn" }, l.pattern)),
    h("td", { class: "mono" }, l.nodes.map((n) => `${masterLabel(state.model, n)} ${n}`).join(", ")),
    h("td", { class: "num" }, formatNumber(l.count)),
    h("td", {}, ago(l.first_seen)),
    h("td", {}, ago(l.last_seen)),
    h("td", { class: "mono small" }, l.last_chain)));
  $("loops").tBodies[0].replaceChildren(...rows);
  $("loops").hidden = rows.length === 0;
  $("loops-empty").hidden = rows.length > 0;
}

// ---- finish / rollback ------------------------------------------------------------------------

function openActionDialog(m, action) {
  state.pendingAction = { slot: m.slot, action };
  const finish = action === "finish";
  $("action-title").textContent = `${finish ? "Finish" : "Roll back"} slot ${m.slot}`;
  $("action-what").textContent = finish
    ? `Moves the slot forward to ${m.target || "its target"} (${m.plan_kind}). The watcher runs these steps:`
    : `Moves the slot's keys back to ${m.source || "its source"}. The watcher runs these steps:`;
  const steps = finish ? m.plan : m.rollback;
  $("action-plan").replaceChildren(...(steps || []).map((s) => h("li", {}, s)));
  $("action-token").value = state.token || "";
  $("action-confirm").textContent = finish ? "Finish" : "Roll back";
  $("action-dialog").showModal();
  $("action-token").focus();
}

async function confirmAction() {
  const pending = state.pendingAction;
  const token = $("action-token").value.trim();
  if (!pending || !token) {
    $("action-token").focus();
    return;
  }
  closeActionDialog();
  const path = `/v1/migrations/${pending.slot}/${pending.action}`;
  showResult(`POST ${path} \u2026`, "");
  try {
    const res = await fetch(path, {
      method: "POST", body: "", cache: "no-store", headers: { Authorization: `Bearer ${token}` },
    });
    const text = (await res.text()).trim();
    // Keep a token the server accepted; forget one it refused.
    state.token = res.status === 401 || res.status === 403 ? null : token;
    showResult(`POST ${path} \u2192 HTTP ${res.status}: ${describeAnswer(text)}`, res.ok ? "good" : "bad");
  } catch (e) {
    showResult(`POST ${path} failed: ${e.message}`, "bad");
  }
  refresh();
}

function describeAnswer(text) {
  try {
    const body = JSON.parse(text);
    if (body.error) return body.error;
    if (body.accepted) return `accepted: the watcher will ${body.action} slot ${body.slot}`;
  } catch (e) {
    // not JSON: show it as it is
  }
  return text;
}

function showResult(text, tone) {
  const box = $("action-result");
  box.textContent = text;
  box.className = `result ${tone}`;
  box.hidden = false;
}

function closeActionDialog() {
  $("action-token").value = "";  // the token stays only in state.token
  state.pendingAction = null;
  if ($("action-dialog").open) $("action-dialog").close();
}

// ---- start ------------------------------------------------------------------------------------

function wireControls() {
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").classList.toggle("primary", state.paused);
    if (state.paused) {
      clearTimeout(state.timer);
      $("updated").textContent = `paused at ${clockTime(new Date())}`;
    } else {
      refresh().then(schedule);
    }
  });
  $("refresh-interval").addEventListener("change", (e) => {
    state.intervalMs = Number(e.target.value);
    schedule();
  });
  $("slot-map").addEventListener("mousemove", renderTooltip);
  $("slot-map").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  $("action-confirm").addEventListener("click", confirmAction);
  $("action-cancel").addEventListener("click", closeActionDialog);
  $("action-forget").addEventListener("click", () => {
    state.token = null;
    $("action-token").value = "";
  });
  $("action-token").addEventListener("keydown", (e) => {
    if (e.key === "Enter") confirmAction();
  });
  $("action-dialog").addEventListener("cancel", closeActionDialog);
}

wireControls();
refresh().then(schedule);

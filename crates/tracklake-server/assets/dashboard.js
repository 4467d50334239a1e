// The dashboard: pipeline charts from /v1/metrics/history, web analytics
// for a chosen range from /v1/reports/web, analytics from /v1/reports, a funnel, a retention triangle and flagged users from
// /v1/reports/funnel|retention|abnormal, alarm states from /v1/alarms, a
// user lookup over /v1/users/{id}/events. Charts are uPlot (shipped in the binary).
// Refreshes every 15 s. #selfcheck holds what each chart drew, for tests.
"use strict";

const REFRESH_MS = 15000;
const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));
const drawn = {};
const yAxes = {};
let lookupRows = null;

// Each chart: [title, [[series or metric name, label], …]]. Counters show
// their increase per interval; a counter never incremented is a zero line.
const PIPELINE = {
  incoming: ["Incoming records (events received)", [["tracklake_events_received_total", "received"]]],
  stored: ["Records stored in the table", [["tracklake_events_stored_total", "stored"], ["tracklake_events_duplicate_total", "duplicate"]]],
  streamed: ["Records streamed to delivery", [["tracklake_stream_records_size_sum", "records"]]],
  delivered: ["Records delivered to the lake", [["tracklake_delivery_records_total", "records"]]],
  rejected: ["Rejected events", [["tracklake_events_rejected_total", "rejected"]]],
  failures: ["Failed lake uploads (failed_put_count)", [["tracklake_delivery_failed_put_count_total", "failed"]]],
  lag: ["Delivery lag", [["tracklake_delivery_lag_events", "events"], ["tracklake_delivery_lag_seconds", "seconds"]]],
  latency: ["Ingest latency, ms (average per interval)", [["commit", "table commit"], ["http", "POST /v1/events"]]],
};
const RATIOS = {
  commit: ["tracklake_table_commit_seconds_sum", "tracklake_table_commit_seconds_count"],
  http: ['tracklake_http_request_seconds_sum{route="/v1/events"}', 'tracklake_http_request_seconds_count{route="/v1/events"}'],
};
const COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626"];

// With API keys configured, the data needs a read key: asked for once,
// kept in this browser's localStorage, sent as a Bearer token.
const KEY = "tracklake-read-key";
async function getJson(path) {
  const key = localStorage.getItem(KEY);
  const r = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  if (r.status === 401 || r.status === 403) {
    document.getElementById("keyform").hidden = false;
    throw new Error(`${path}: ${r.status}, a read key is needed`);
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function card(parent, id, title) {
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("div");
    el.className = "card";
    el.id = id;
    el.innerHTML = `<h3></h3><div class="chart"></div>`;
    el.querySelector("h3").textContent = title;
    parent.appendChild(el);
  }
  return el.querySelector(".chart");
}

function plot(target, id, opts, data) {
  target.innerHTML = "";
  const points = data.slice(1).reduce((n, s) => n + s.filter((v) => v != null).length, 0);
  drawn[id] = points;
  if (!data[0].length) {
    target.innerHTML = `<p class="empty">no data yet</p>`;
    return;
  }
  const width = Math.max(target.clientWidth, 200);
  // For the self-check: the y axis's width and its widest label's, as drawn.
  const measure = (u) => {
    const axis = u.axes[1];
    u.ctx.font = axis.font[0];
    const widest = Math.max(0, ...(axis._values ?? []).map((v) => u.ctx.measureText(v).width / devicePixelRatio));
    yAxes[id] = { size: axis._size, label_room: Math.floor(axis._size - axis.ticks.size - axis.gap), widest: Math.ceil(widest) };
  };
  new uPlot({ width, height: 200, legend: { live: false }, hooks: { draw: [measure] }, ...opts }, data, target);
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
// Y labels: 1.2M rather than 1,200,000, and an axis as wide as its longest
// label (uPlot's fixed 50 px cut large numbers to "0,000").
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const yLabel = (v) => (v == null ? "" : Math.abs(v) >= 1000 ? compact.format(v) : String(+v.toPrecision(3)));
function fitLabels(u, values, axisIdx, cycle) {
  const axis = u.axes[axisIdx];
  if (cycle > 1) return axis._size;
  const longest = (values ?? []).reduce((a, v) => (v.length > a.length ? v : a), "");
  u.ctx.font = axis.font[0];
  return Math.ceil(axis.ticks.size + axis.gap + u.ctx.measureText(longest).width / devicePixelRatio) + 4;
}
const Y_AXIS = { values: (u, ticks) => ticks.map(yLabel), size: fitLabels };
const TIME_AXES = [{ values: (u, ticks) => ticks.map(clock) }, Y_AXIS];
// Counts start at zero, so bar heights compare honestly.
const FROM_ZERO = { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } };

function seriesOpts(labels, extra = {}) {
  return [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, ...extra }))];
}

async function refreshPipeline() {
  const history = await getJson("/v1/metrics/history");
  document.getElementById("interval").textContent =
    history.interval_secs === 60 ? "minute" : `${history.interval_secs} s`;
  // values[series or metric][time]: a metric's labelled series add up.
  const values = {};
  const times = new Set();
  const add = (key, kind, t, v) => {
    values[key] ??= { kind, at: {} };
    values[key].at[t] = (values[key].at[t] ?? 0) + v;
  };
  for (const s of history.series) {
    const metric = s.name.split("{")[0];
    for (const [t, v] of s.points) {
      times.add(t);
      add(s.name, s.kind, t, v);
      if (metric !== s.name) add(metric, s.kind, t, v);
    }
  }
  const xs = [...times].sort((a, b) => a - b);
  const column = (name) => {
    const v = values[name];
    if (name in RATIOS) {
      const [sum, count] = RATIOS[name].map((n) => values[n]?.at ?? {});
      return xs.map((t) => (count[t] > 0 ? (1000 * sum[t]) / count[t] : null));
    }
    // A metric absent from the history was never recorded: zero increases.
    if (!v) return xs.map(() => (name.endsWith("_total") || name.endsWith("_sum") ? 0 : null));
    return xs.map((t) => v.at[t] ?? (v.kind === "counter" ? 0 : null));
  };
  const parent = document.getElementById("pipeline");
  for (const [id, [title, series]] of Object.entries(PIPELINE)) {
    const data = [xs, ...series.map(([name]) => column(name))];
    plot(card(parent, `chart-${id}`, title), id, { axes: TIME_AXES, series: seriesOpts(series.map(([, l]) => l)) }, data);
  }
}

// Values over named categories (days, devices): bars, or lines when
// several series share the categories.
function categories(target, id, labels, series, names) {
  const xs = labels.map((_, i) => i);
  const bars = series.length === 1;
  const opts = {
    scales: { x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] }, ...FROM_ZERO },
    axes: [{ values: (u, ticks) => ticks.map((i) => labels[i] ?? ""), incrs: [1], gap: 4 }, Y_AXIS],
    series: seriesOpts(names, bars
      ? { fill: "rgba(37,99,235,.35)", paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } }
      : {}),
  };
  plot(target, id, opts, [xs, ...series]);
}

// Rows (objects) as a table of the named columns; a number column as
// [name, format].
function table(target, id, rows, cols) {
  drawn[id] = rows.length;
  if (!rows.length) {
    target.innerHTML = `<p class="empty">none in this window</p>`;
    return;
  }
  const named = cols.map((c) => (Array.isArray(c) ? c : [c, (v) => v]));
  target.innerHTML = `<div class="scroll"><table><tr>${named.map(([c]) => `<th>${esc(c)}</th>`).join("")}</tr>${rows
    .map((r) => `<tr>${named.map(([c, f]) => `<td>${esc(r[c] == null ? "" : f(r[c]))}</td>`).join("")}</tr>`)
    .join("")}</table></div>`;
}
const reportTable = (target, id, report) => table(target, id, report.rows, report.columns.map((c) => c.name));

async function refreshAnalytics() {
  const parent = document.getElementById("analytics");
  const get = (name) => getJson(`/v1/reports/${name}`);
  const [logins, perType, dau, types, os, browsers, sharing, scraping] = await Promise.all(
    ["logins_per_day", "events_per_type_per_day", "daily_active_users", "device_types", "device_os",
     "device_browsers", "account_sharing", "possible_scraping"].map(get));
  categories(card(parent, "chart-logins", "Logins per day (last 7 days)"), "logins",
    logins.rows.map((r) => r.day.slice(5)), [logins.rows.map((r) => r.logins)], ["logins"]);
  const days = [...new Set(perType.rows.map((r) => r.day))].sort();
  const kinds = [...new Set(perType.rows.map((r) => r.event_type))].sort();
  const byType = kinds.map((k) => days.map((d) => perType.rows.find((r) => r.day === d && r.event_type === k)?.events ?? 0));
  categories(card(parent, "chart-types", "Events by type per day"), "types", days.map((d) => d.slice(5)), byType, kinds);
  categories(card(parent, "chart-dau", "Daily active users (30 days)"), "dau",
    dau.rows.map((r) => r.day.slice(5)), [dau.rows.map((r) => r.users)], ["users"]);
  for (const [id, title, report, key] of [
    ["devices", "Device types (7 days)", types, "device_type"],
    ["os", "Operating systems (7 days)", os, "os"],
    ["browsers", "Browsers (7 days)", browsers, "browser"],
  ]) {
    const rows = report.rows.slice(0, 8);
    categories(card(parent, `chart-${id}`, title), id, rows.map((r) => r[key]), [rows.map((r) => r.events)], ["events"]);
  }
  reportTable(card(parent, "table-sharing", "Possible account sharing"), "sharing", sharing);
  reportTable(card(parent, "table-scraping", "Possible scraping"), "scraping", scraping);
}

const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const pct = (n, of) => (of > 0 ? `${((100 * n) / of).toFixed(0)}%` : "-");

async function refreshProduct() {
  const parent = document.getElementById("product");
  const steps = document.getElementById("steps").value.trim() || "login,material-view";
  const within = document.getElementById("within").value.trim() || "1d";
  const q = (params) => new URLSearchParams(params).toString();
  const [funnel, retention, abnormal] = await Promise.all([
    getJson(`/v1/reports/funnel?${q({ steps, within })}`),
    getJson(`/v1/reports/retention?${q({ cohort: "login", return: "material-view", period: "week" })}`),
    getJson("/v1/reports/abnormal"),
  ]);
  const first = funnel.steps[0]?.users ?? 0;
  categories(card(parent, "chart-funnel", `Funnel, within ${within} (users at each step)`), "funnel",
    funnel.steps.map((s, i) => `${i + 1}. ${s.event_type} (${pct(s.users, first)})`), [funnel.steps.map((s) => s.users)], ["users"]);
  if (!first) drawn.funnel = 0;

  const triangle = card(parent, "table-retention", "Retention: weekly cohorts of login, back for material-view");
  drawn.retention = retention.cohorts.length;
  const width = Math.max(0, ...retention.cohorts.map((c) => c.returned.length));
  triangle.innerHTML = retention.cohorts.length
    ? `<div class="scroll"><table><tr><th>cohort</th><th>users</th>${[...Array(width).keys()].map((n) => `<th>week ${n}</th>`).join("")}</tr>${retention.cohorts
        .map((c) => `<tr><td>${esc(c.cohort)}</td><td>${c.users}</td>${c.returned
          .map((r) => `<td style="background:rgba(37,99,235,${(c.users ? r / c.users : 0) * 0.6})">${pct(r, c.users)}</td>`).join("")}</tr>`)
        .join("")}</table></div>`
    : `<p class="empty">no cohorts in this window</p>`;

  const flagged = card(parent, "table-flagged", "Flagged users (last 24 hours)");
  const rows = [
    ...abnormal.account_sharing.users.map((u) => [u.user_id, "account sharing", u.score,
      `${u.networks} networks, ${u.devices} devices within ${abnormal.account_sharing.window_secs} s: ${u.ip_addresses.join(" ")}`]),
    ...abnormal.scraping.users.map((u) => [u.user_id, "scraping", u.score,
      `${u.views} views, ${u.materials} materials, ${u.peak_per_minute} in a minute (${u.reasons.join(", ")})`]),
  ];
  drawn.flagged = rows.length;
  flagged.innerHTML = rows.length
    ? `<div class="scroll"><table><tr><th>user</th><th>why</th><th>score</th><th>evidence</th></tr>${rows
        .map(([user, why, score, evidence]) => `<tr><td><a href="?user=${encodeURIComponent(user)}">${esc(user)}</a></td><td>${why}</td><td>${score.toFixed(1)}</td><td>${esc(evidence)}</td></tr>`)
        .join("")}</table></div>`
    : `<p class="empty">nobody flagged</p>`;
}

// Web: the range is whole UTC days ending today. Eight scans of the range
// each time, so the periodic refresh redoes it every 5 minutes (the other
// reports' cache age), and at once when the range or the bots switch change.
const WEB_EVERY_MS = 300000;
let webSummary = null;
let webAt = 0;
const utcDay = (d) => d.toISOString().slice(0, 10);
const seconds = (s) => (s == null ? "-" : s < 60 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${(s % 60).toFixed(0)} s`);
const percent = (r) => (r == null ? "-" : pct(r, 1));
async function refreshWeb() {
  webAt = Date.now();
  const days = Number(document.getElementById("webrange").value);
  const to = new Date();
  const from = new Date(to.getTime() - (days - 1) * 86400000);
  const bots = document.getElementById("webbots").checked ? "include" : "exclude";
  const r = await getJson(`/v1/reports/web?${new URLSearchParams({ from: utcDay(from), to: utcDay(to), bots })}`);
  const s = r.summary ?? {};
  const botEvents = r.bots.reduce((n, b) => n + b.events, 0);
  webSummary = { ...s, bot_events: botEvents, days };
  document.getElementById("webtiles").innerHTML = [
    [s.visitors ?? 0, "visitors"], [s.page_views ?? 0, "page views"], [s.sessions ?? 0, "sessions"],
    [percent(s.bounce_rate), "bounce rate"], [seconds(s.avg_session_seconds), "average session"],
    [botEvents, bots === "include" ? "bot events (included)" : "bot events (left out)"],
  ].map(([v, label]) => `<div class="tile"><b>${esc(v)}</b><span>${label}</span></div>`).join("");
  const parent = document.getElementById("web");
  // Every day of the range, zero where nothing happened.
  const perDay = Object.fromEntries(r.per_day.map((d) => [d.day, d]));
  const labels = [...Array(days).keys()].map((i) => utcDay(new Date(from.getTime() + i * 86400000)));
  categories(card(parent, "chart-web-days", "Visitors and page views per day"), "web-days", labels.map((d) => d.slice(5)),
    [labels.map((d) => perDay[d]?.visitors ?? 0), labels.map((d) => perDay[d]?.page_views ?? 0)], ["visitors", "page views"]);
  if (!r.per_day.length) drawn["web-days"] = 0;
  for (const [id, title, cols] of [
    ["top_pages", "Top pages", ["path", "page_views", "visitors"]],
    ["entry_pages", "Entry pages", ["path", "sessions", ["bounce_rate", percent]]],
    ["exit_pages", "Exit pages", ["path", "sessions"]],
    ["referrers", "Referrers", ["referrer", "sessions", "visitors"]],
    ["campaigns", "Campaigns (UTM)", ["utm_source", "utm_medium", "utm_campaign", "sessions"]],
    ["devices", "Devices", ["device_type", "visitors", "page_views"]],
    ["bots", "Bots", ["kind", "name", "events"]],
  ]) table(card(parent, `table-web-${id}`, title), `web-${id}`, r[id], cols);
}

async function refreshHeader() {
  const [status, alarms] = await Promise.all([getJson("/v1/status"), getJson("/v1/alarms")]);
  const d = status.delivery ?? {};
  document.getElementById("health").textContent =
    `${status.ready ? "ready" : "not ready"} · ${status.table?.last_seq ?? 0} events stored · lake lag ${d.lag_events ?? 0} events / ${d.lag_seconds ?? 0} s`;
  const el = document.getElementById("alarms");
  el.innerHTML = "";
  for (const a of alarms.alarms) {
    const span = document.createElement("span");
    span.className = `alarm ${a.state}`;
    span.title = `${a.description}\n${a.reason}`;
    span.textContent = `${a.name}: ${a.state}`;
    el.appendChild(span);
  }
  drawn.alarms = alarms.alarms.length;
}

async function lookup(user) {
  const target = document.getElementById("activity");
  const page = await getJson(`/v1/users/${encodeURIComponent(user)}/events?limit=20`);
  lookupRows = page.events.length;
  if (!page.events.length) {
    target.innerHTML = `<p class="empty">no events for user ${user.replace(/[&<>]/g, "")}</p>`;
    return;
  }
  const dev = (e) => e.device ?? {};
  target.innerHTML = `<table><tr><th>time</th><th>type</th><th>IP</th><th>device</th><th>browser</th><th>OS</th></tr>${page.events
    .map((e) => `<tr><td>${esc(e.event_at)}</td><td>${esc(e.event_type)}</td><td>${esc(e.ip_address)}</td><td>${esc(dev(e).type)}</td>` +
      `<td>${esc([dev(e).browser, dev(e).browser_version].filter(Boolean).join(" "))}</td><td>${esc([dev(e).os, dev(e).os_version].filter(Boolean).join(" "))}</td></tr>`)
    .join("")}</table>`;
}

async function refresh() {
  const results = await Promise.allSettled([refreshHeader(), refreshPipeline(),
    Date.now() - webAt >= WEB_EVERY_MS ? refreshWeb() : null, refreshAnalytics(), refreshProduct()]);
  for (const r of results) if (r.status === "rejected") errors.push(String(r.reason));
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.getElementById("selfcheck").textContent = JSON.stringify({
    drawn, lookup: lookupRows, errors, y_axes: yAxes, label_of_1200000: yLabel(1200000), web: webSummary,
  });
}

document.getElementById("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(KEY, document.getElementById("key").value.trim());
  document.getElementById("keyform").hidden = true;
  errors.length = 0;
  refresh();
});
for (const id of ["webrange", "webbots"]) {
  document.getElementById(id).addEventListener("change", () => refreshWeb().catch((err) => errors.push(String(err))));
}
document.getElementById("webform").addEventListener("submit", (e) => e.preventDefault());
document.getElementById("funnelform").addEventListener("submit", (e) => {
  e.preventDefault();
  refreshProduct().catch((err) => errors.push(String(err)));
});
document.getElementById("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  const user = document.getElementById("user").value.trim();
  if (user) lookup(user).catch((err) => errors.push(String(err)));
});
const initialUser = new URLSearchParams(location.search).get("user");
(async () => {
  if (initialUser) {
    document.getElementById("user").value = initialUser;
    await lookup(initialUser).catch((err) => errors.push(String(err)));
  }
  await refresh();
  setInterval(refresh, REFRESH_MS);
})();

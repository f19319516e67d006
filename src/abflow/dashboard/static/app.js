"use strict";
// abflow dashboard: reads /ui/api/* with a bearer token kept in sessionStorage.
// The server sends finished text (formatted by abflow.analysis.formatting, as in the HTML
// report) and finished SVG charts; text is written with textContent (never innerHTML), and
// charts are parsed as SVG documents, so names in specs stay text.

const TOKEN_KEY = "abflow-token";
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401 || response.status === 403) {
    const error = new Error(response.status === 401 ? "the token was not accepted" : "this token may not read results");
    error.status = response.status;
    throw error;
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.json();
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function cell(row, text, className) { return row.appendChild(element("td", text, className)); }

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function svg(markup) {
  if (!markup) return document.createTextNode("");
  const parsed = new DOMParser().parseFromString(markup, "image/svg+xml");
  const root = parsed.documentElement;
  if (root.nodeName !== "svg") return document.createTextNode("");
  return document.importNode(root, true);
}

function show(ids) {
  for (const name of ["login", "experiments", "result"]) $(name).hidden = true;
  for (const name of ids) $(name).hidden = false;
  $("sign-out").hidden = !token();
}

function pill(text, tone) { return element("span", text, "pill " + (tone || "neutral")); }

async function loadExperiments() {
  $("status").textContent = "loading experiments…";
  const data = await api("/ui/api/experiments");
  const tbody = clear($("experiment-table").querySelector("tbody"));
  for (const experiment of data.experiments) {
    const row = element("tr", null, "clickable");
    row.dataset.key = experiment.key;
    const name = cell(row, experiment.key, "name");
    if (experiment.name) name.appendChild(element("div", experiment.name, "meta"));
    const status = cell(row);
    status.appendChild(pill(experiment.status, experiment.status_tone));
    if (experiment.is_served_here) status.appendChild(element("div", "served here", "meta"));
    cell(row, experiment.stage, "tone-" + experiment.stage_tone);
    cell(row, experiment.variants);
    cell(row, experiment.phase);
    cell(row, experiment.since);
    cell(row, "v" + experiment.version, "num");
    row.addEventListener("click", () => { location.hash = "#/experiments/" + encodeURIComponent(experiment.key); });
    tbody.appendChild(row);
  }
  const n = data.experiments.length;
  $("status").textContent = n + (n === 1 ? " experiment" : " experiments");
  show(["experiments"]);
}

function fillTable(tbody, rows, numericFrom) {
  clear(tbody);
  for (const values of rows) {
    const row = element("tr");
    values.forEach((value, index) => cell(row, value, index >= numericFrom ? "num" : ""));
    tbody.appendChild(row);
  }
}

function renderMetrics(view) {
  const head = clear($("metric-table").querySelector("thead"));
  const header = element("tr");
  header.appendChild(element("th", "metric"));
  for (const name of view.variant_names) header.appendChild(element("th", name, "num"));
  if (view.has_vs) header.appendChild(element("th", "vs"));
  for (const name of ["effect", "95% interval", "p / P(win)"]) header.appendChild(element("th", name, "num"));
  header.appendChild(element("th", "verdict"));
  head.appendChild(header);
  const body = clear($("metric-table").querySelector("tbody"));
  for (const m of view.metrics) {
    const row = element("tr");
    row.dataset.metric = m.name;
    row.dataset.variant = m.variant;
    const name = cell(row, m.is_first ? m.name : "", "name");
    if (m.is_first) name.appendChild(element("div", m.kind + " · " + m.role, "meta"));
    for (const value of m.values) cell(row, value, "num value");
    if (view.has_vs) cell(row, m.variant);
    cell(row, m.effect, "num effect");
    const interval = cell(row, "", "num interval");
    const bounds = m.interval.split(", ");
    if (bounds.length === 2) {
      interval.appendChild(element("span", bounds[0] + ","));
      interval.appendChild(document.createTextNode(" "));
      interval.appendChild(element("span", bounds[1]));
    } else interval.textContent = m.interval;
    const p = cell(row, m.p, "num p");
    if (m.raw_p) p.appendChild(element("div", m.raw_p + " raw", "meta"));
    cell(row, "", "status").appendChild(pill(m.status, m.tone));
    body.appendChild(row);
  }
  const notes = clear($("notes"));
  for (const note of view.notes) notes.appendChild(element("li", note));
  const charts = clear($("effect-charts"));
  for (const chart of view.charts.effects) charts.appendChild(svg(chart));
}

function renderRollout(rollout) {
  $("rollout-stage").textContent = "";
  $("rollout-stage").appendChild(pill(rollout.stage, rollout.stage_tone));
  $("rollout-stage").appendChild(document.createTextNode(rollout.has_plan
    ? " challenger " + rollout.challenger
    : " add a rollout section to the spec to ramp the challenger step by step"));
  const steps = clear($("rollout-steps"));
  for (const step of rollout.steps) {
    const item = element("li", step.label, "step " + step.state);
    item.title = step.detail;
    steps.appendChild(item);
  }
  const history = clear($("rollout-history").querySelector("tbody"));
  $("rollout-history").hidden = rollout.history.length === 0;
  for (const entry of rollout.history) {
    const row = element("tr");
    cell(row, entry.when); cell(row, entry.what, "text tone-" + entry.tone); cell(row, entry.actor); cell(row, entry.detail, "text");
    history.appendChild(row);
  }
}

function renderShadow(shadows) {
  $("shadow").hidden = shadows.length === 0;
  const body = clear($("shadow-body"));
  for (const s of shadows) {
    body.appendChild(element("h4", "Shadow " + s.variant + " vs served"));
    body.appendChild(element("p", s.summary, "meta"));
    const table = element("table");
    const head = table.appendChild(element("thead")).appendChild(element("tr"));
    s.columns.forEach((c, i) => head.appendChild(element("th", c, i ? "num" : "")));
    const tbody = table.appendChild(element("tbody"));
    fillTable(tbody, s.rows, 1);
    const wrap = element("div", null, "wide");
    wrap.appendChild(table);
    body.appendChild(wrap);
  }
}

async function loadResult(key) {
  $("status").textContent = "analysing " + key + "…";
  const view = await api("/ui/api/experiments/" + encodeURIComponent(key));
  $("result-title").textContent = view.title;
  $("meta").textContent = view.meta;
  $("verdict").className = "verdict " + view.verdict.tone;
  $("verdict-summary").textContent = view.verdict.summary;
  const reasons = clear($("verdict-reasons"));
  for (const reason of view.verdict.reasons) reasons.appendChild(element("li", reason));
  const warnings = clear($("warnings"));
  for (const warning of view.warnings) warnings.appendChild(element("p", "⚠ " + warning, "warn"));
  fillTable($("variant-table").querySelector("tbody"), view.variants.map((v) => [v.variant, v.units, v.observed, v.expected]), 1);
  $("srm").textContent = view.srm.text;
  $("srm").className = "tone-" + view.srm.tone;
  $("progress").textContent = "Progress: " + view.progress;
  renderMetrics(view);
  const timeline = clear($("timeline-charts"));
  $("timeline").hidden = view.charts.timeline.length === 0;
  for (const chart of view.charts.timeline) {
    timeline.appendChild(element("h4", chart.metric));
    timeline.appendChild(svg(chart.svg));
  }
  renderRollout(view.rollout);
  renderShadow(view.shadow);
  $("monitoring-message").textContent = view.monitoring.message;
  const monitoring = clear($("monitoring-charts"));
  for (const chart of view.monitoring.charts) {
    monitoring.appendChild(element("h4", chart.title));
    monitoring.appendChild(svg(chart.svg));
  }
  $("monitoring-alarms").hidden = view.monitoring.alarms.length === 0;
  fillTable($("monitoring-alarms").querySelector("tbody"),
    view.monitoring.alarms.map((a) => [a.window, a.variant, a.measure, a.value, a.threshold, a.p]), 3);
  $("latency").hidden = view.latency.length === 0;
  fillTable($("latency-table").querySelector("tbody"), view.latency, 1);
  clear($("latency-chart")).appendChild(svg(view.charts.latency));
  const audit = clear($("audit-table").querySelector("tbody"));
  for (const entry of view.audit) {
    const row = element("tr");
    cell(row, entry.seq, "num"); cell(row, entry.when); cell(row, entry.actor); cell(row, entry.what); cell(row, entry.detail, "text");
    audit.appendChild(row);
  }
  $("footer").textContent = "The same analysis as a report: " + view.command;
  $("status").textContent = "analysed " + view.generated;
  show(["result"]);
}

async function route() {
  if (!token()) { show(["login"]); $("status").textContent = ""; return; }
  try {
    const match = location.hash.match(/^#\/experiments\/(.+)$/);
    if (match) await loadResult(decodeURIComponent(match[1]));
    else await loadExperiments();
  } catch (error) {
    if (error.status === 401) { sessionStorage.removeItem(TOKEN_KEY); $("login-error").textContent = error.message; show(["login"]); return; }
    $("status").textContent = "error: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    route();
  });
  $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.hash = ""; route(); });
  window.addEventListener("hashchange", route);
  route();
});

"use strict";
// abflow dashboard: reads the gateway's JSON API with a bearer token kept in sessionStorage.
// Everything is written with textContent (never innerHTML), so names in specs stay text.

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
    throw new Error(detail);
  }
  return response.json();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function clear(tbody) { while (tbody.firstChild) tbody.removeChild(tbody.firstChild); }

function show(id) {
  for (const name of ["login", "experiments", "result"]) $(name).hidden = true;
  for (const name of id) $(name).hidden = false;
  $("sign-out").hidden = !token();
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return String(Number.parseFloat(Number(value).toPrecision(digits)));
}

function signed(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return (value >= 0 ? "+" : "") + fmt(value);
}

function pct(value) { return (100 * value).toFixed(1) + "%"; }

function effectPlot(comparison, scale) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "effect");
  svg.setAttribute("viewBox", "0 0 160 18");
  const x = (v) => 80 + (scale > 0 ? (v / scale) * 70 : 0);
  const axis = document.createElementNS(ns, "line");
  for (const [k, v] of [["x1", 80], ["x2", 80], ["y1", 0], ["y2", 18], ["stroke", "#bbb"]]) axis.setAttribute(k, v);
  svg.appendChild(axis);
  if (Number.isFinite(comparison.ci_low) && Number.isFinite(comparison.ci_high)) {
    const bar = document.createElementNS(ns, "line");
    const colour = comparison.outcome === "better" ? "#176b31" : comparison.outcome === "worse" ? "#a11" : "#555";
    for (const [k, v] of [["x1", x(comparison.ci_low)], ["x2", x(comparison.ci_high)], ["y1", 9], ["y2", 9], ["stroke", colour], ["stroke-width", 3]]) bar.setAttribute(k, v);
    svg.appendChild(bar);
    const dot = document.createElementNS(ns, "circle");
    for (const [k, v] of [["cx", x(comparison.effect)], ["cy", 9], ["r", 3.5], ["fill", colour]]) dot.setAttribute(k, v);
    svg.appendChild(dot);
  }
  return svg;
}

async function loadExperiments() {
  $("status").textContent = "loading experiments…";
  const data = await api("/v1/experiments");
  const tbody = $("experiment-table").querySelector("tbody");
  clear(tbody);
  for (const experiment of data.experiments) {
    const row = document.createElement("tr");
    row.className = "clickable";
    row.dataset.key = experiment.key;
    cell(row, experiment.key + (experiment.name ? " — " + experiment.name : ""));
    cell(row, experiment.variants.map((v) => v.name + " (" + fmt(v.weight, 3) + ")" + (v.is_shadow ? " shadow" : "")).join(", "));
    cell(row, String(experiment.phase), "num");
    cell(row, String(experiment.version), "num");
    row.addEventListener("click", () => { location.hash = "#/experiments/" + encodeURIComponent(experiment.key); });
    tbody.appendChild(row);
  }
  $("status").textContent = data.experiments.length + " live experiment(s)";
  show(["experiments"]);
}

async function loadResult(key) {
  $("status").textContent = "analysing " + key + "…";
  const result = await api("/v1/experiments/" + encodeURIComponent(key) + "/results");
  $("result-title").textContent = result.experiment_key + " — phase " + result.phase;
  const verdict = $("verdict");
  verdict.className = "verdict " + result.decision.verdict;
  verdict.textContent = result.decision.summary;
  const p = result.provenance;
  $("meta").textContent = "method " + result.method + ", correction " + result.correction + ", spec v" + p.spec_version + " (" + p.spec_hash.slice(0, 12) + "), abflow " + p.abflow_version;
  const variants = $("variant-table").querySelector("tbody");
  clear(variants);
  for (const v of result.variants) {
    const row = document.createElement("tr");
    cell(row, v.variant); cell(row, v.units.toLocaleString("en"), "num");
    cell(row, pct(v.observed_share), "num"); cell(row, pct(v.expected_share), "num");
    variants.appendChild(row);
  }
  const srm = $("srm");
  const unchecked = result.srm.status === "not_enough_data";
  srm.textContent = unchecked ? "Split not checked yet: not enough data for the SRM test"
    : (result.srm.is_mismatch ? "Sample ratio mismatch" : "Split as expected") + " (SRM p = " + fmt(result.srm.p_value, 3) + ")";
  srm.className = unchecked ? "" : (result.srm.is_mismatch ? "bad" : "good");
  const metrics = $("metric-table").querySelector("tbody");
  clear(metrics);
  for (const m of result.metrics) {
    const control = m.values[0];
    const scale = Math.max(1e-12, ...m.comparisons.map((c) => Math.max(Math.abs(c.ci_low || 0), Math.abs(c.ci_high || 0))));
    for (const c of m.comparisons) {
      const treatment = m.values.find((v) => v.variant === c.variant);
      const row = document.createElement("tr");
      row.dataset.metric = m.name;
      cell(row, m.name); cell(row, m.role); cell(row, c.variant);
      cell(row, control ? fmt(control.value) : "—", "num");
      cell(row, treatment ? fmt(treatment.value) : "—", "num");
      cell(row, signed(c.effect) + " [" + signed(c.ci_low) + ", " + signed(c.ci_high) + "]" + (m.relative ? " (relative)" : ""), "num");
      cell(row, c.adjusted_p_value === null ? (c.chance_to_win === null ? "—" : "P(win) " + pct(c.chance_to_win)) : fmt(c.adjusted_p_value, 3), "num");
      const status = m.role === "guardrail" ? (c.guardrail || "inconclusive") : c.outcome;
      cell(row, status, status === "fail" || status === "worse" ? "bad" : status === "pass" || status === "better" ? "good" : "");
      row.appendChild(document.createElement("td")).appendChild(effectPlot(c, scale));
      metrics.appendChild(row);
    }
  }
  const progress = result.progress;
  $("progress").textContent = progress.units.toLocaleString("en") + " units" +
    (progress.required_units ? " of " + progress.required_units.toLocaleString("en") + " planned" : "") +
    (progress.remaining_days !== null ? ", about " + fmt(progress.remaining_days, 2) + " days to go" : "");
  $("status").textContent = "analysed " + new Date(p.generated_at * 1000).toISOString();
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

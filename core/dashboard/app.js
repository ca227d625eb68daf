// The wasmgate dashboard: plain JS over the admin API; no framework, no network but this host.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const KEY = "wasmgate-token";
const COLORS = ["#3366cc", "#1a7f37", "#e69500", "#c62828", "#8e44ad", "#00838f", "#6d4c41"];

function token() { return sessionStorage.getItem(KEY) || ""; }

function auth() { return token() ? { "Authorization": "Bearer " + token() } : {}; }

async function get(path) {
  // The token goes along when there is one: off loopback, reads need it too.
  const resp = await fetch(path, { cache: "no-store", headers: auth() });
  if (resp.status === 401 || resp.status === 403) {
    throw new Error(path + ": " + resp.status + " (enter the admin token)");
  }
  if (!resp.ok) throw new Error(path + ": " + resp.status);
  return resp.json();
}

// What a card shows until its first data arrives.
const LOADING = `<p class="loading">Loading…</p>`;

async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  return { status: resp.status, data };
}

function notice(text, ok) {
  const n = $("#notice");
  n.hidden = !text;
  n.className = ok ? "ok" : "";
  n.textContent = text || "";
}

function refused(r) {
  return r.status + " " + (r.status === 401 ? "Unauthorized" : r.status === 403 ? "Forbidden" : "")
    + ": " + (r.data.error || "");
}

function table(id, heads, rows) {
  return `<table id="${id}"><thead><tr>${heads.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead>`
    + `<tbody>${rows.join("")}</tbody></table>`;
}

function ago(seconds) {
  const s = Math.floor(seconds), d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
  return (d ? d + "d " : "") + (h ? h + "h " : "") + Math.floor(s / 60) % 60 + "m " + s % 60 + "s";
}

// ------------------------------------------------------------------ pages

const pages = {};

pages.overview = {
  init(el) { el.innerHTML = `<section><h2>Overview</h2><dl id="overview">${LOADING}</dl></section>`; },
  async update() {
    const c = await get("/config");
    const last = c.last_reload;
    const reload = !last ? "none yet"
      : last.ok ? `<span class="ok">ok</span>` : `<span class="error">failed: ${esc(last.error)}</span>`;
    const workers = (c.config.server || {}).workers ?? 1;
    $("#overview").innerHTML = [
      ["wasmgate", `<span id="wasmgate-version">${esc(c.wasmgate)}</span>`],
      ["config version", `<span id="config-version">${esc(c.version)}</span> <code>${esc(c.hash)}</code>`],
      ["loaded at", esc(c.loaded_at)],
      ["last reload", `<span id="last-reload">${reload}</span>`],
      ["listeners", esc(c.listeners.join(", "))],
      ["workers", esc(workers)],
      ["uptime", esc(ago(c.uptime_seconds))],
      ["source", `<code>${esc(c.source)}</code>`],
    ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  },
};

pages.routes = {
  init(el) {
    el.innerHTML = `<section><h2>Routes</h2>
      <input id="route-filter" type="search" placeholder="filter by host or name">
      <div id="routes">${LOADING}</div></section>`;
    $("#route-filter").addEventListener("input", () => this.draw());
  },
  async update() { this.data = (await get("/routes")).routes; this.draw(); },
  draw() {
    if (!this.data) return;
    const q = $("#route-filter").value.trim().toLowerCase();
    const shown = this.data.filter((r) => !q || r.name.toLowerCase().includes(q)
      || r.hosts.some((h) => h.toLowerCase().includes(q)));
    $("#routes").innerHTML = table("routes-table", ["route", "hosts", "paths", "upstream", "chain (in order)"],
      shown.map((r) => `<tr class="route" data-name="${esc(r.name)}"><td>${esc(r.name)}</td>`
        + `<td>${esc(r.hosts.join(", ") || "*")}</td>`
        + `<td>${r.paths.map((p) => `<code>${esc(p.match || "")} ${esc(p.path ?? p.value ?? JSON.stringify(p))}</code>`).join("<br>")}</td>`
        + `<td>${esc(r.upstream)}</td><td><ol>${r.chain.map((f) => `<li class="filter" data-plugin="${esc(f.plugin)}">`
          + `<b>${esc(f.name)}</b> ${esc(f.plugin)} ${esc(f.version)} <span class="kind ${esc(f.kind)}">${esc(f.kind)}</span>`
          + ` fail-${esc(f.fail)}${f.errors ? ` <span class="error">${esc(f.errors)} errors</span>` : ""}</li>`).join("")}</ol></td></tr>`));
  },
};

// An endpoint's active health check: its verdict, when it last ran and, failing, why.
function checkCell(hc, c) {
  if (!hc || !c) return `<span class="muted">off</span>`;
  const what = hc.type === "http" ? `HTTP ${esc(hc.path)}` : "TCP";
  const when = c.last_check_seconds_ago == null ? "not yet run" : `${c.last_check_seconds_ago}s ago`;
  const streak = c.failures_in_a_row ? `, ${c.failures_in_a_row} failed in a row` : "";
  const why = c.last_error ? `<br><small class="error">${esc(c.last_error)}</small>` : "";
  return `<span class="${esc(c.state)}">${esc(c.state)}</span> <small>${what}, ${when}${streak}</small>${why}`;
}

pages.upstreams = {
  init(el) { el.innerHTML = `<section><h2>Upstreams</h2><div id="upstreams">${LOADING}</div></section>`; },
  async update() {
    const ups = (await get("/api/upstreams")).upstreams;
    const rows = [];
    for (const u of ups) {
      const errors = (u.responses["5xx"] || 0);
      for (const e of u.endpoints) {
        rows.push(`<tr><td>${esc(u.name)}</td><td>${esc(e.address)}</td>`
          + `<td class="${esc(e.health)}">${esc(e.health)}${e.ejected_for_seconds ? ` (ejected ${e.ejected_for_seconds}s)` : ""}</td>`
          + `<td class="check">${checkCell(u.health_check, e.check)}</td>`
          + `<td>${e.active}</td><td>${e.idle}</td><td>${e.failures}</td><td>${e.ejections}</td><td>${errors}</td></tr>`);
      }
    }
    $("#upstreams").innerHTML = table("upstreams-table",
      ["upstream", "endpoint", "health", "active check", "active", "idle", "failures in a row", "ejections", "5xx (pool)"], rows);
  },
};

function chart(svg, series, unit) {
  const W = 300, H = 100;
  const n = Math.max(30, ...series.map((s) => s.values.length));  // at least a minute wide
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v != null)));
  const lines = series.map((s, i) => {
    const pad = n - s.values.length;  // the newest sample is at the right edge
    const pts = s.values.map((v, j) => v == null ? null
      : `${((pad + j) / (n - 1) * W).toFixed(1)},${(H - v / max * (H - 12)).toFixed(1)}`).filter(Boolean);
    const color = COLORS[i % COLORS.length], end = pts.length ? pts[pts.length - 1].split(",") : null;
    return `<polyline stroke="${color}" points="${pts.join(" ")}"></polyline>`
      + (end ? `<circle cx="${end[0]}" cy="${end[1]}" r="1.8" fill="${color}"></circle>` : "");
  });
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.points = String(series.length ? series[0].values.length : 0);
  svg.innerHTML = lines.join("") + `<text x="3" y="10" font-size="8">${esc(+max.toFixed(2))} ${esc(unit)}</text>`;
  svg.nextElementSibling.innerHTML = series.map((s, i) =>
    `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)}</span>`).join("");
}

pages.traffic = {
  init(el) {
    const box = (id, title) => `<div><h2>${title}</h2><svg id="${id}"></svg><div class="legend">${LOADING}</div></div>`;
    el.innerHTML = `<section><h2>Traffic <small>(last 10 minutes, every 2 s)</small></h2>
      <p>requests in the window: <b id="total-requests">0</b>, now <b id="rps">0</b>/s</p>
      <div class="charts">${box("chart-rps", "requests/s")}${box("chart-codes", "status classes /s")}
      ${box("chart-latency", "latency (ms)")}${box("chart-route-p99", "p99 per route (ms)")}
      ${box("chart-plugins", "plugin calls / errors / traps (per sample)")}</div></section>
      <section><h2>Per route (last sample)</h2><div id="traffic-routes">${LOADING}</div></section>`;
  },
  async update() {
    const { points, step } = await get("/api/traffic");
    const col = (f) => points.map(f);
    $("#total-requests").textContent = String(points.reduce((a, p) => a + p.requests, 0));
    $("#rps").textContent = String(points.length ? points[points.length - 1].rps : 0);
    chart($("#chart-rps"), [{ name: "requests/s", values: col((p) => p.rps) }], "/s");
    chart($("#chart-codes"), ["2xx", "3xx", "4xx", "5xx"].map((c) =>
      ({ name: c, values: col((p) => (p.codes[c] || 0) / step) })), "/s");
    chart($("#chart-latency"), ["p50", "p95", "p99"].map((q) => ({ name: q, values: col((p) => p[q]) })), "ms");
    const routes = [...new Set(points.flatMap((p) => Object.keys(p.routes)))];
    chart($("#chart-route-p99"), routes.map((r) => ({ name: r, values: col((p) => (p.routes[r] || {}).p99) })), "ms");
    const plugins = [...new Set(points.flatMap((p) => Object.keys(p.plugins)))];
    chart($("#chart-plugins"), plugins.flatMap((f) => [
      { name: f + " calls", values: col((p) => (p.plugins[f] || {}).calls || 0) },
      { name: f + " errors", values: col((p) => (p.plugins[f] || {}).errors || 0) },
      { name: f + " traps", values: col((p) => (p.plugins[f] || {}).traps || 0) },
    ]).filter((s) => s.name.endsWith("calls") || s.values.some((v) => v)), "");
    const last = points[points.length - 1] || { routes: {} };
    $("#traffic-routes").innerHTML = table("traffic-routes-table", ["route", "req/s", "p50 ms", "p95 ms", "p99 ms"],
      Object.entries(last.routes).map(([r, v]) =>
        `<tr><td>${esc(r)}</td><td>${v.rps}</td><td>${v.p50 ?? ""}</td><td>${v.p95 ?? ""}</td><td>${v.p99 ?? ""}</td></tr>`));
  },
};

function schemaTable(schema) {
  if (!schema || !schema.properties) return "<p>no config schema</p>";
  const req = new Set(schema.required || []);
  return table("", ["field", "type", "default", "description"], Object.entries(schema.properties).map(([k, v]) =>
    `<tr><td><code>${esc(k)}</code>${req.has(k) ? " *" : ""}</td><td>${esc(v.type || (v.enum ? "enum " + v.enum.join("|") : ""))}</td>`
    + `<td>${esc(v.default === undefined ? "" : JSON.stringify(v.default))}</td><td>${esc(v.description || "")}</td></tr>`));
}

pages.plugins = {
  init(el) {
    el.innerHTML = `<section><h2>Installed (gateway.lock)</h2><div id="installed">${LOADING}</div></section>
      <section><h2>Market</h2><form id="market-form"><input id="market-q" type="search" placeholder="search the registry">
      <button id="market-search">Search</button></form><div id="market-results">${LOADING}</div></section>`;
    $("#market-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.search(); });
    this.search();
  },
  async update() {
    const inst = await get("/api/installed");
    $("#installed").innerHTML = (inst.error ? `<p class="error">${esc(inst.error)}</p>` : "")
      + (!inst.plugins.length && !inst.error ? `<p class="hint">No plugin is installed from a registry (gateway.lock pins none).</p>` : "")
      + table("installed-table", ["plugin", "version", "kind", "signer", "digest"], inst.plugins.map((p) => p.error
        ? `<tr><td>${esc(p.name)}</td><td colspan="4" class="error">${esc(p.error)}</td></tr>`
        : `<tr data-name="${esc(p.name)}"><td>${esc(p.name)}</td><td>${esc(p.version)}</td><td>${esc(p.kind)}</td>`
          + `<td><code>${esc(p.signer)}</code></td><td><code>${esc(p.digest.slice(0, 16))}…</code></td></tr>`));
  },
  async search() {
    const out = $("#market-results");
    const resp = await fetch("/api/market?q=" + encodeURIComponent($("#market-q").value), { headers: auth() });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { out.innerHTML = `<p class="error">${esc(data.error || resp.status)}</p>`; return; }
    if (!data.registry) {  // no [market] registry: say how to set one, not an error
      out.innerHTML = `<p id="no-registry" class="hint">${esc(data.note || "No registry is configured.")}</p>`;
      return;
    }
    const canInstall = !!token();
    out.innerHTML = `<p>registry <code>${esc(data.registry)}</code>: ${data.plugins.length} found</p>`
      + data.plugins.map((p) => `<div class="pkg" data-name="${esc(p.name)}"><h3>${esc(p.name)} ${esc(p.version)}
        <span class="kind ${esc(p.kind)}">${esc(p.kind)}</span></h3><p>${esc(p.description)}</p>
        <p>versions: <select class="constraint">${p.versions.map((v) => `<option>${esc(v)}</option>`).join("")}</select>
        ${canInstall ? `<button class="install">Install</button>` : "<small>enter the admin token to install</small>"}
        signer <code>${esc(p.signer)}</code>, keywords ${esc(p.keywords.join(", "))}</p>
        <details><summary>config schema</summary>${schemaTable(p.config_schema)}</details>
        ${p.readme ? `<details><summary>README</summary><pre>${esc(p.readme)}</pre></details>` : ""}</div>`).join("");
    out.querySelectorAll(".install").forEach((b) => b.addEventListener("click", () => {
      const pkg = b.closest(".pkg");
      this.install(pkg.dataset.name, $(".constraint", pkg).value);
    }));
  },
  async install(name, version) {
    notice(`installing ${name} ${version}…`, true);
    const r = await post("/api/market/install", { name, constraint: version });
    if (r.status === 401 || r.status === 403) { notice(refused(r)); return; }
    if (r.data.error) { notice(`install ${name}: ${r.data.error}`); return; }
    const result = (r.data.reload || {}).result || {};
    notice(`installed: ${(r.data.changes || []).join("; ") || "no change"}; reload `
      + (result.ok ? "ok" : "failed: " + (result.error || (r.data.reload || {}).error || "")), result.ok);
    this.update();
  },
};

// ------------------------------------------------------------------ shell

let current = null;
async function refresh() {
  if (!current) return;
  try { await pages[current].update(); } catch (e) { notice(String(e)); }
}

function show() {
  const name = (location.hash || "#overview").slice(1);
  current = pages[name] ? name : "overview";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.hash === "#" + current));
  pages[current].init($("#view"));
  refresh();
}

$("#token").value = token();
$("#auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("#token").value.trim());
  notice("");
  show();
});
$("#reload").addEventListener("click", async () => {
  const r = await post("/reload");
  if (r.status === 401 || r.status === 403) notice(refused(r));
  else if (r.data.result && r.data.result.ok) notice(`reloaded: version ${r.data.version}`, true);
  else notice("reload failed: " + ((r.data.result || {}).error || r.data.error || r.status));
  refresh();
});
window.addEventListener("hashchange", () => { notice(""); show(); });
setInterval(refresh, 2000);
show();

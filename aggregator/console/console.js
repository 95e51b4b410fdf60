// tapwire's console: plain ES module, no build step, no network but the
// API it is served with. Pages are hash routes (#/graph, #/connections,
// ...); every call carries the bearer token kept in this tab's session
// storage (from the sign-in dialog or a `?token=` sign-in link).

const TOKEN_KEY = "tapwire-token";
const GRAPH_EDGES = 2000;
const MODES = [
  ["audit", "Audit-mode"],
  ["enforce", "Enforce-mode"],
  ["other", "Other"],
];

const $ = (sel, root = document) => root.querySelector(sel);
const page = () => $("#page");

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// ------------------------------------------------------------- sign-in

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/// A sign-in link (`?token=...`) signs in once; the token leaves the URL.
function takeTokenFromUrl() {
  const url = new URL(location.href);
  const t = url.searchParams.get("token");
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

class Unauthorized extends Error {}

/// JSON text indented, numbers left as written (nanosecond timestamps do
/// not survive JavaScript's numbers).
function prettyJson(text) {
  let out = "";
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === "\\") out += text[++i];
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') { inString = true; out += c; continue; }
    if (c === "{" || c === "[") { depth++; out += c + "\n" + "  ".repeat(depth); continue; }
    if (c === "}" || c === "]") { depth--; out += "\n" + "  ".repeat(depth) + c; continue; }
    if (c === ",") { out += ",\n" + "  ".repeat(depth); continue; }
    if (c === ":") { out += ": "; continue; }
    if (!/\s/.test(c)) out += c;
  }
  return out;
}

async function api(path, params = {}, raw = false) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""),
  );
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) {
    signIn("The token was refused: sign in again.");
    throw new Unauthorized("401");
  }
  const text = await response.text();
  let body = {};
  try {
    body = JSON.parse(text);
  } catch {
    body = {};
  }
  if (!response.ok) {
    throw new Error(body.error || `${response.status} ${response.statusText}`);
  }
  return raw ? text : body;
}

function signIn(message = "") {
  const dialog = $("#signin");
  $("#signin-error").textContent = message;
  if (!dialog.open) dialog.showModal();
}

async function whoAmI() {
  try {
    const me = await api("/api/v1/whoami");
    $("#user").textContent = `${me.name} (${me.role})`;
    return true;
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("#user").textContent = String(e.message);
    return false;
  }
}

// ------------------------------------------------------------- helpers

function time(ns) {
  if (!ns) return "";
  return new Date(Number(ns) / 1e6).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function endpoint(ip, port) {
  if (!ip) return "";
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return port ? `${host}:${port}` : host;
}

function podLink(namespace, pod) {
  return el("a", { href: `#/pod?namespace=${encodeURIComponent(namespace)}&name=${encodeURIComponent(pod)}`, class: "pod" }, pod);
}

/// The source cell: pod name (a link) and IP:port, or the address.
function sourceCell(r) {
  const at = endpoint(r.src_ip, r.src_port);
  if (r.src_pod) return el("td", {}, podLink(r.src_namespace, r.src_pod), " ", at);
  return el("td", {}, [r.src_domain, at].filter(Boolean).join(" "));
}

/// The destination cell: pod name (a link) or domain name, and IP:port.
function destinationCell(r) {
  const at = endpoint(r.dst_ip, r.dst_port);
  if (r.dst_pod) return el("td", {}, podLink(r.dst_namespace, r.dst_pod), " ", at);
  return el("td", {}, [r.dst_domain, at].filter(Boolean).join(" "));
}

/// A table of `rows` (objects) with their keys as columns.
function genericTable(rows) {
  if (!rows || rows.length === 0) return el("p", { class: "empty" }, "(none)");
  const columns = Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object" || rows[0][k] === null);
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el(
      "tbody",
      {},
      rows.map((r) =>
        el("tr", {}, columns.map((c) => {
          const v = r[c];
          if ((c === "pod" || c === "src_pod" || c === "dst_pod") && v && r.namespace !== undefined) {
            return el("td", {}, podLink(r.namespace, v));
          }
          return el("td", { class: typeof v === "number" ? "num" : "" }, v === null ? "" : String(v));
        })),
      ),
    ),
  );
}

function showError(where, e) {
  if (e instanceof Unauthorized) return;
  where.append(el("p", { class: "error" }, e.message));
}

function params() {
  const [, query = ""] = location.hash.split("?");
  return new URLSearchParams(query);
}

// ------------------------------------------------------------- the graph

const graph = { edges: [], view: null, scale: 1, x: 0, y: 0 };

function modeOf(e) {
  if (e.enforce > 0) return "enforce";
  if (e.audit > 0) return "audit";
  return "other";
}

function nodeId(ns, name) {
  return `${ns}\u0000${name}`;
}

async function graphPage() {
  const root = page();
  root.replaceChildren(el("p", {}, "Loading the last 15 minutes..."));
  let view;
  try {
    // Up to 2,000 edges (and rows per tab) of the window, busiest first.
    view = await api("/api/v1/network/connections-view", { window: "15m", limit: GRAPH_EDGES });
  } catch (e) {
    root.replaceChildren();
    showError(root, e);
    return;
  }
  graph.view = view;
  graph.edges = view.edges;
  const namespaces = [...new Set(view.edges.flatMap((e) => [e.src_namespace, e.dst_namespace]).filter(Boolean))].sort();
  const nsSelect = el("select", { id: "graph-namespace" }, el("option", { value: "" }, "all namespaces"), namespaces.map((n) => el("option", { value: n }, n)));
  const modeSelect = el("select", { id: "graph-mode" }, el("option", { value: "" }, "all modes"), MODES.map(([m, label]) => el("option", { value: m }, label)));
  const svgRoot = svg("svg", { id: "graph-svg" });
  root.replaceChildren(
    el(
      "div",
      { class: "toolbar" },
      el("strong", {}, `Connections from ${time(view.from_s * 1e9)} to ${time(view.until_s * 1e9)}`),
      nsSelect,
      modeSelect,
      el("button", { id: "graph-fit", onclick: () => fit(svgRoot) }, "Fit"),
      el(
        "span",
        { class: "legend" },
        el("span", { class: "enforce" }, "\u2508 Enforce-mode"),
        el("span", { class: "audit" }, "\u2500 Audit-mode"),
        el("span", { class: "other" }, "\u2500 Other"),
      ),
    ),
    svgRoot,
  );
  const redraw = () => draw(svgRoot, nsSelect.value, modeSelect.value);
  nsSelect.addEventListener("change", redraw);
  modeSelect.addEventListener("change", redraw);
  enablePanZoom(svgRoot);
  redraw();
}

function draw(root, namespace, mode) {
  // Namespace boxes under the edges, the edges under the nodes.
  const boxes = svg("g", { class: "boxes" });
  const layer = svg("g", { class: "edges" });
  const nodesLayer = svg("g", { class: "nodes" });
  root.replaceChildren(boxes, layer, nodesLayer);
  const edges = graph.edges.filter(
    (e) =>
      (!namespace || e.src_namespace === namespace || e.dst_namespace === namespace) &&
      (!mode || e[mode] > 0),
  );
  // Nodes grouped by namespace; the ones with none are outside the cluster.
  const groups = new Map();
  for (const e of edges) {
    for (const [ns, name] of [[e.src_namespace, e.src], [e.dst_namespace, e.dst]]) {
      const group = ns || "outside the cluster";
      if (!groups.has(group)) groups.set(group, new Map());
      groups.get(group).set(nodeId(ns, name), { ns, name });
    }
  }
  const order = [...groups.keys()].sort((a, b) =>
    a === "outside the cluster" ? 1 : b === "outside the cluster" ? -1 : a.localeCompare(b),
  );
  const position = new Map();
  const perColumn = Math.max(4, Math.ceil(Math.sqrt(edges.length * 2)));
  let x = 20;
  for (const group of order) {
    const nodes = [...groups.get(group).values()].sort((a, b) => a.name.localeCompare(b.name));
    const columns = Math.ceil(nodes.length / perColumn);
    const width = columns * 200 + 20;
    const height = Math.min(nodes.length, perColumn) * 40 + 50;
    const box = svg("g", { class: "ns", "data-namespace": group });
    box.append(svg("rect", { class: "ns-box", x, y: 10, width, height, rx: 8 }));
    const label = svg("text", { class: "ns-label", x: x + 10, y: 30 });
    label.textContent = group;
    box.append(label);
    boxes.append(box);
    nodes.forEach((n, i) => {
      const cx = x + 30 + Math.floor(i / perColumn) * 200;
      const cy = 60 + (i % perColumn) * 40;
      position.set(nodeId(n.ns, n.name), [cx, cy]);
      const kind = n.ns ? "pod" : /^[\d.:a-f]+$/i.test(n.name) ? "host" : "external";
      const g = svg("g", { class: `node ${kind}`, "data-node": n.name, "data-namespace": n.ns });
      g.append(svg("circle", { cx, cy, r: 7 }));
      const t = svg("text", { x: cx + 11, y: cy + 4 });
      t.textContent = n.name;
      g.append(t);
      if (n.ns) {
        g.style.cursor = "pointer";
        g.addEventListener("click", () => {
          location.hash = `#/pod?namespace=${encodeURIComponent(n.ns)}&name=${encodeURIComponent(n.name)}`;
        });
      }
      nodesLayer.append(g);
    });
    x += width + 40;
  }
  const pairs = new Set(edges.map((e) => `${nodeId(e.src_namespace, e.src)}>${nodeId(e.dst_namespace, e.dst)}`));
  for (const e of edges) {
    const from = position.get(nodeId(e.src_namespace, e.src));
    const to = position.get(nodeId(e.dst_namespace, e.dst));
    // Both directions: each curves to its own side.
    const both = pairs.has(`${nodeId(e.dst_namespace, e.dst)}>${nodeId(e.src_namespace, e.src)}`);
    const [mx, my] = [(from[0] + to[0]) / 2, (from[1] + to[1]) / 2];
    const [dx, dy] = [to[0] - from[0], to[1] - from[1]];
    const len = Math.hypot(dx, dy) || 1;
    const bend = (both ? 40 : 18) + (from[0] === to[0] ? 60 : 0);
    const [cx, cy] = [mx - (dy / len) * bend, my + (dx / len) * bend];
    const d = from[0] === to[0] && from[1] === to[1]
      ? `M ${from[0]} ${from[1]} c 40 -40 40 40 0 0`
      : `M ${from[0]} ${from[1]} Q ${cx} ${cy} ${to[0]} ${to[1]}`;
    const path = svg("path", { class: `edge ${modeOf(e)}`, d, "data-src": e.src, "data-dst": e.dst, "data-audit": e.audit, "data-enforce": e.enforce, "data-other": e.other });
    const hit = svg("path", { class: "hit", d, "data-src": e.src, "data-dst": e.dst });
    for (const target of [path, hit]) {
      target.addEventListener("mousemove", (ev) => tooltip(ev, e));
      target.addEventListener("mouseleave", () => ($("#tooltip").hidden = true));
      target.addEventListener("click", () => {
        for (const p of root.querySelectorAll(".edge.selected")) p.classList.remove("selected");
        path.classList.add("selected");
        openEdge(e);
      });
    }
    layer.append(path, hit);
  }
  if (edges.length === 0) {
    const t = svg("text", { x: 30, y: 60 });
    t.textContent = "No connections in the last 15 minutes.";
    root.append(t);
  }
  fit(root);
}

function tooltip(ev, e) {
  const tip = $("#tooltip");
  tip.replaceChildren(
    el("div", {}, `${e.src} \u2192 ${e.dst}`),
    el("div", { class: "counts" }, `Audit-mode: ${e.audit} \u00b7 Enforce-mode: ${e.enforce} \u00b7 Other: ${e.other}`),
  );
  tip.style.left = `${ev.clientX + 14}px`;
  tip.style.top = `${ev.clientY + 14}px`;
  tip.hidden = false;
}

function fit(root) {
  const box = root.getBBox ? root.getBBox() : { x: 0, y: 0, width: 800, height: 600 };
  const pad = 20;
  graph.x = box.x - pad;
  graph.y = box.y - pad;
  graph.w = Math.max(box.width + 2 * pad, 200);
  graph.h = Math.max(box.height + 2 * pad, 200);
  root.setAttribute("viewBox", `${graph.x} ${graph.y} ${graph.w} ${graph.h}`);
}

function enablePanZoom(root) {
  let drag = null;
  root.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const k = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    const r = root.getBoundingClientRect();
    const px = graph.x + ((ev.clientX - r.left) / r.width) * graph.w;
    const py = graph.y + ((ev.clientY - r.top) / r.height) * graph.h;
    graph.w *= k;
    graph.h *= k;
    graph.x = px - (px - graph.x) * k;
    graph.y = py - (py - graph.y) * k;
    root.setAttribute("viewBox", `${graph.x} ${graph.y} ${graph.w} ${graph.h}`);
  }, { passive: false });
  root.addEventListener("mousedown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, gx: graph.x, gy: graph.y };
  });
  window.addEventListener("mouseup", () => (drag = null));
  root.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const r = root.getBoundingClientRect();
    graph.x = drag.gx - ((ev.clientX - drag.x) / r.width) * graph.w;
    graph.y = drag.gy - ((ev.clientY - drag.y) / r.height) * graph.h;
    root.setAttribute("viewBox", `${graph.x} ${graph.y} ${graph.w} ${graph.h}`);
  });
}

/// The sidebar of one edge: the three tabs over the 15 minutes before it
/// opened, the count next to each tab's name.
async function openEdge(e) {
  const side = $("#sidebar");
  side.hidden = false;
  side.replaceChildren(el("p", {}, "Loading..."));
  let detail;
  try {
    detail = await api("/api/v1/network/edge", {
      src_namespace: e.src_namespace,
      src: e.src,
      dst_namespace: e.dst_namespace,
      dst: e.dst,
      window: "15m",
    });
  } catch (err) {
    side.replaceChildren();
    showError(side, err);
    return;
  }
  const view = detail.view;
  const body = el("div", { class: "tab-body" });
  const buttons = MODES.map(([mode, label]) =>
    el("button", { "data-mode": mode, onclick: () => select(mode) }, `${label} (${view.totals[mode]})`),
  );
  const select = (mode) => {
    for (const b of buttons) b.classList.toggle("active", b.dataset.mode === mode);
    body.replaceChildren(connectionTable(view[mode], view.rows[mode]));
  };
  side.replaceChildren(
    el("button", { class: "close", onclick: () => (side.hidden = true) }, "Close"),
    el("h2", {}, `${e.src} \u2192 ${e.dst}`),
    el("p", {}, `From ${time(view.from_s * 1e9)} to ${time(view.until_s * 1e9)}`),
    el("div", { class: "tabs" }, buttons),
    body,
  );
  const first = MODES.find(([m]) => view.totals[m] > 0) || MODES[0];
  select(first[0]);
}

function connectionTable(rows, total) {
  if (!rows || rows.length === 0) return el("p", { class: "empty" }, "(none)");
  const table = el(
    "table",
    { class: "connections" },
    el("thead", {}, el("tr", {}, ["Source", "Protocol", "Destination", "Number of connections", "Last connection"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      rows.map((r) =>
        el("tr", {}, sourceCell(r), el("td", {}, r.protocol.toUpperCase()), destinationCell(r), el("td", { class: "num" }, r.connections), el("td", {}, time(r.last_seen_ns))),
      ),
    ),
  );
  const more = total > rows.length ? el("p", {}, `${total - rows.length} more rows not shown`) : null;
  return el("div", {}, table, more);
}

// ------------------------------------------------------------- other pages

async function podPage() {
  const p = params();
  const root = page();
  root.replaceChildren(el("h2", {}, `Pod ${p.get("namespace")}/${p.get("name")}`));
  try {
    const pod = await api("/api/v1/pod", { namespace: p.get("namespace"), name: p.get("name") }, true);
    root.append(el("pre", { id: "pod-json" }, prettyJson(pod)));
  } catch (e) {
    showError(root, e);
  }
}

async function connectionsPage() {
  const p = params();
  const pageNo = Number(p.get("page") || 1);
  const sensorId = p.get("sensor_id") || "";
  const root = page();
  const sensor = el("input", { id: "sensor", placeholder: "sensor id (all)", value: sensorId });
  const go = (n) => {
    location.hash = `#/connections?page=${n}&sensor_id=${encodeURIComponent(sensor.value)}`;
  };
  sensor.addEventListener("change", () => go(1));
  root.replaceChildren(el("div", { class: "toolbar" }, el("h2", {}, "Connections"), sensor));
  try {
    const body = await api("/api/v1/network/connections", { page: pageNo, page_size: 50, sensor_id: sensorId });
    const rows = body.connections || body.items || [];
    root.append(genericTable(rows));
    root.append(
      el(
        "div",
        { class: "pager" },
        el("button", { id: "prev", disabled: pageNo <= 1 ? "" : null, onclick: () => go(pageNo - 1) }, "Previous"),
        el("span", { id: "page-no" }, `page ${pageNo} of ${body.page_count ?? "?"} (${body.total ?? rows.length} connections)`),
        el("button", { id: "next", disabled: pageNo >= (body.page_count ?? 1) ? "" : null, onclick: () => go(pageNo + 1) }, "Next"),
      ),
    );
  } catch (e) {
    showError(root, e);
  }
}

async function listenersPage() {
  const p = params();
  const proto = p.get("proto") === "udp" ? "udp" : "tcp";
  const root = page();
  root.replaceChildren(
    el(
      "div",
      { class: "toolbar tabs" },
      el("h2", {}, "Listening services"),
      el("a", { href: "#/listeners?proto=tcp", class: proto === "tcp" ? "active" : "" }, "TCP"),
      el("a", { href: "#/listeners?proto=udp", class: proto === "udp" ? "active" : "" }, "UDP"),
    ),
  );
  try {
    const body = await api(proto === "udp" ? "/api/v1/network/udp-listeners" : "/api/v1/network/listeners", { sensor_id: p.get("sensor_id") });
    root.append(genericTable(body.listeners));
  } catch (e) {
    showError(root, e);
  }
}

async function flowsPage() {
  const p = params();
  const state = p.get("state") === "completed" ? "completed" : "active";
  const root = page();
  root.replaceChildren(
    el(
      "div",
      { class: "toolbar tabs" },
      el("h2", {}, "Flows"),
      el("a", { href: "#/flows?state=active" }, "Active"),
      el("a", { href: "#/flows?state=completed" }, "Completed"),
    ),
  );
  try {
    const body = await api("/api/v1/network/flows", { state, limit: 200 });
    root.append(genericTable(body.flows));
  } catch (e) {
    showError(root, e);
  }
}

async function summaryPage() {
  const root = page();
  root.replaceChildren(el("h2", {}, "Summary"));
  try {
    const body = await api("/api/v1/network/summary");
    root.append(genericTable(body.sensors));
  } catch (e) {
    showError(root, e);
  }
}

async function investigatePage() {
  const p = params();
  const root = page();
  const sensor = el("input", { id: "inv-sensor", placeholder: "sensor id (all)", value: p.get("sensor_id") || "" });
  const kind = el("input", { id: "inv-kind", placeholder: "kind (all)", value: p.get("kind") || "" });
  const windowInput = el("input", { id: "inv-window", value: p.get("window") || "15m", size: 5 });
  const kfl = el("input", { id: "inv-kfl", placeholder: "KFL, e.g. dst.port == 443", value: p.get("kfl") || "", size: 50 });
  const run = () => {
    const q = new URLSearchParams({ sensor_id: sensor.value, kind: kind.value, window: windowInput.value, kfl: kfl.value });
    location.hash = `#/investigate?${q}`;
  };
  const form = el("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); run(); } }, el("h2", {}, "Investigate"), sensor, kind, windowInput, kfl, el("button", { type: "submit" }, "Search"));
  root.replaceChildren(form);
  try {
    const body = await api("/api/v1/events", { sensor_id: p.get("sensor_id"), kind: p.get("kind"), window: p.get("window") || "15m", kfl: p.get("kfl"), limit: 100 });
    root.append(genericTable(body.events || []));
  } catch (e) {
    root.append(el("pre", { class: "error", id: "inv-error" }, e.message));
  }
}

/// Recorded traffic (served by `tapwire investigate LOCATION --serve`):
/// streams by KFL and time range, and their packets as one PCAP.
async function recordingsPage() {
  const p = params();
  const root = page();
  const kfl = el("input", { id: "rec-kfl", placeholder: "KFL, e.g. http and response.status >= 500", value: p.get("kfl") || "", size: 50 });
  const since = el("input", { id: "rec-since", placeholder: "since (e.g. 2h, 2026-12-01T10:00:00Z)", value: p.get("since") || "" });
  const until = el("input", { id: "rec-until", placeholder: "until", value: p.get("until") || "" });
  const query = () => ({ kfl: kfl.value, since: since.value, until: until.value });
  const form = el(
    "form",
    { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); location.hash = `#/recordings?${new URLSearchParams(query())}`; } },
    el("h2", {}, "Recordings"), kfl, since, until, el("button", { type: "submit" }, "Search"),
  );
  root.replaceChildren(form);
  let body;
  try {
    body = await api("/api/v1/recordings/streams", { kfl: p.get("kfl"), since: p.get("since"), until: p.get("until") });
  } catch (e) {
    const hint = /404/.test(e.message)
      ? "Recordings are served by `tapwire investigate s3://BUCKET/PREFIX --serve ADDR` (or a directory, or a capture file)."
      : e.message;
    root.append(el("pre", { class: "error", id: "rec-error" }, hint));
    return;
  }
  const rows = body.streams || [];
  const download = el("button", { id: "rec-download", disabled: rows.length ? null : "" }, `Download PCAP (${rows.length} streams)`);
  download.addEventListener("click", async () => {
    const q = new URLSearchParams(Object.entries({ kfl: p.get("kfl") || "", since: p.get("since") || "", until: p.get("until") || "" }).filter(([, v]) => v));
    const response = await fetch(`/api/v1/recordings/pcap?${q}`, { headers: { Authorization: `Bearer ${token()}` } });
    if (!response.ok) {
      root.append(el("p", { class: "error" }, `download: ${response.status}`));
      return;
    }
    const blob = await response.blob();
    document.body.dataset.downloaded = String(blob.size);
    const a = el("a", { href: URL.createObjectURL(blob), download: "tapwire-recording.pcap" });
    document.body.append(a);
    a.click();
    a.remove();
  });
  root.append(
    el("p", {}, download),
    rows.length === 0
      ? el("p", { class: "empty" }, "(no recorded stream matches)")
      : el(
          "table",
          { id: "rec-streams" },
          el("thead", {}, el("tr", {}, ["Time", "Source", "Destination", "Protocol", "Summary", "Packets"].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows.map((r) => el("tr", {}, el("td", {}, time(r.time_ns)), el("td", {}, r.source), el("td", {}, r.destination), el("td", {}, r.protocol), el("td", {}, r.summary), el("td", { class: "num" }, r.packets)))),
        ),
  );
}

/// The scan job queue and what the scans found (served by `tapwire
/// serve`): jobs per status, scanners Free or Busy, the latest jobs;
/// findings by kind with their state, and for admins, accept a risk for a
/// number of days or mark a threat removed.
async function scansPage() {
  const p = params();
  const root = page();
  const kind = el("select", { id: "scan-kind" },
    ["", "sensitive_data", "malware", "misconfiguration", "non_compliance"].map((k) =>
      el("option", { value: k, selected: p.get("kind") === k ? "" : null }, k || "all kinds")));
  const state = el("select", { id: "scan-state" },
    ["", "open", "accepted", "removed"].map((k) =>
      el("option", { value: k, selected: p.get("state") === k ? "" : null }, k || "any state")));
  const form = el(
    "form",
    { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); location.hash = `#/scans?${new URLSearchParams({ kind: kind.value, state: state.value })}`; } },
    el("h2", {}, "Scans"), kind, state, el("button", { type: "submit" }, "Show"),
  );
  root.replaceChildren(form);
  let queue;
  let found;
  try {
    [queue, found] = await Promise.all([
      api("/api/v1/scans/queue", { limit: 20 }),
      api("/api/v1/scans/findings", { kind: p.get("kind"), state: p.get("state"), limit: 200 }),
    ]);
  } catch (e) {
    const hint = /404/.test(e.message) ? "Scans are served by `tapwire serve` (ClickHouse and Kafka)." : e.message;
    root.append(el("pre", { class: "error", id: "scan-error" }, hint));
    return;
  }
  root.append(
    el("h3", {}, "Queue"),
    el("p", { id: "scan-statuses" }, Object.entries(queue.statuses).map(([s, n]) => el("span", { class: "count", "data-status": s }, `${s}: ${n}`))),
    el("table", { id: "scan-scanners" },
      el("thead", {}, el("tr", {}, ["Scanner", "State", "Job", "Finished", "Rules", "Last heard"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (queue.scanners || []).map((s) => el("tr", { "data-scanner": s.scanner },
        el("td", {}, s.scanner), el("td", {}, Number(s.alive) ? s.status : `${s.status} (not heard)`), el("td", {}, s.job_id),
        el("td", { class: "num" }, s.finished), el("td", { class: "num" }, s.rules), el("td", {}, time(s.at_ns)))))),
    el("table", { id: "scan-jobs" },
      el("thead", {}, el("tr", {}, ["Object", "Kind", "Status", "Attempts", "Scanner", "Findings", "Reason", "Updated"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (queue.jobs || []).map((j) => el("tr", {},
        el("td", {}, j.object), el("td", {}, j.object_kind), el("td", {}, j.status), el("td", { class: "num" }, j.attempts),
        el("td", {}, j.scanner), el("td", { class: "num" }, j.findings), el("td", {}, j.reason), el("td", {}, time(j.updated_ns)))))),
    el("h3", {}, "Findings"),
    el("p", { id: "scan-open" }, Object.entries(found.open_by_kind || {}).map(([k, n]) => el("span", { class: "count", "data-kind": k }, `${k}: ${n} open`))),
  );
  const admin = /\(admin\)$/.test($("#user").textContent);
  const act = async (id, action, query) => {
    const q = new URLSearchParams(query);
    const response = await fetch(`/api/v1/admin/scans/findings/${id}/${action}?${q}`, { method: "POST", headers: { Authorization: `Bearer ${token()}` } });
    const body = await response.json().catch(() => ({}));
    const note = $("#scan-note");
    note.textContent = response.ok ? `${action}: recorded (${body.event ? body.event.event : ""})` : `${action}: ${response.status} ${body.error || ""}`;
    note.dataset.status = String(response.status);
  };
  const rows = found.findings || [];
  root.append(
    el("p", { id: "scan-note" }),
    rows.length === 0
      ? el("p", { class: "empty" }, "(no finding)")
      : el("table", { id: "scan-findings" },
          el("thead", {}, el("tr", {}, ["Kind", "Rule", "Severity", "Object", "Where", "Frame", "Excerpt", "State", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows.map((f) => el("tr", { "data-finding": f.finding_id, "data-rule": f.rule },
            el("td", {}, f.kind), el("td", {}, f.rule), el("td", {}, f.severity), el("td", {}, f.object), el("td", {}, f.location),
            el("td", { class: "num" }, Number(f.frame) >= 0 ? f.frame : ""), el("td", { class: "excerpt" }, f.excerpt),
            el("td", { class: "state" }, f.state === "accepted" ? `accepted until ${time(f.until_ns)}` : f.state),
            el("td", {}, admin && f.state === "open" ? [
              el("button", { class: "accept", onclick: () => act(f.finding_id, "accept", { days: "30", reason: "accepted in the console" }) }, "Accept 30 days"),
              el("button", { class: "remove", onclick: () => act(f.finding_id, "remove", { reason: "removed in the console" }) }, "Mark removed"),
            ] : []))))),
  );
}

const PAGES = {
  graph: graphPage,
  pod: podPage,
  connections: connectionsPage,
  listeners: listenersPage,
  flows: flowsPage,
  summary: summaryPage,
  investigate: investigatePage,
  recordings: recordingsPage,
  scans: scansPage,
};

async function route() {
  const name = (location.hash.replace(/^#\//, "").split("?")[0]) || "graph";
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  $("#sidebar").hidden = true;
  document.body.dataset.page = name;
  document.body.dataset.loaded = "";
  await (PAGES[name] || graphPage)();
  document.body.dataset.loaded = name;
}

async function start() {
  takeTokenFromUrl();
  $("#signin-form").addEventListener("submit", async () => {
    sessionStorage.setItem(TOKEN_KEY, $("#signin-token").value);
    if (await whoAmI()) route();
  });
  window.addEventListener("hashchange", route);
  if (!token()) {
    signIn();
    return;
  }
  if (await whoAmI()) await route();
}

start();

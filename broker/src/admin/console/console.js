// ferromq web console: a few views over the management API (/api/...),
// routed by the URL fragment. No framework, no network beyond this origin.
// Each view polls while shown; leaving a view stops its timer.
"use strict";

const view = () => document.getElementById("view");
let stopView = () => {};

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function status(text, ok) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.className = ok ? "ok" : "";
}

async function api(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    const why = data && data.error ? data.error : `HTTP ${r.status}`;
    throw new Error(why);
  }
  return { data, total: Number(r.headers.get("X-Total-Count") || 0) };
}

function fmt(n) {
  if (typeof n !== "number") return n === null || n === undefined ? "-" : String(n);
  if (!Number.isInteger(n)) return n.toFixed(1);
  return n.toLocaleString("en-US");
}

function bytes(n) {
  if (typeof n !== "number") return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function destPath(d) {
  const short = d.name.startsWith(`/${d.kind}/`) ? d.name.slice(d.kind.length + 2) : d.name;
  return `/api/destinations/${d.kind}/${encodeURIComponent(short)}`;
}

function every(ms, fn) {
  let alive = true;
  let timer = null;
  const loop = async () => {
    if (!alive) return;
    try { await fn(); } catch (e) { status(e.message); }
    if (alive) timer = setTimeout(loop, ms);
  };
  loop();
  return () => { alive = false; clearTimeout(timer); };
}

// A line chart of several series on a canvas (latest value at the right).
function drawChart(canvas, series) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 200;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flatMap(s => s.values));
  g.strokeStyle = "#e5e9ef"; g.fillStyle = "#5b6778"; g.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = 10 + (h - 20) * i / 4;
    g.beginPath(); g.moveTo(40, y); g.lineTo(w - 5, y); g.stroke();
    g.fillText(fmt(Math.round(max * (4 - i) / 4)), 2, y + 4);
  }
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = 2; g.beginPath();
    const n = s.values.length;
    s.values.forEach((v, i) => {
      const x = w - 5 - (n - 1 - i) * (w - 45) / 59;
      const y = 10 + (h - 20) * (1 - v / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function sparkline(values) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 80 18");
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i * 80 / 19).toFixed(1)},${(17 - 16 * v / max).toFixed(1)}`).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  return svg;
}

// ---------- overview ----------

const history = { pub: [], ack: [], depth: [] };

function overview() {
  const cards = el("div", { class: "cards", id: "overview-cards" });
  const canvas = el("canvas", { id: "rates-chart" });
  const depthCanvas = el("canvas", { id: "depth-chart" });
  view().replaceChildren(
    el("h2", {}, "Overview"), cards,
    el("h3", {}, "Message rates (per second, last 2 minutes)"),
    el("div", { class: "legend" }, el("span", { class: "pub" }, "published"), el("span", { class: "ack" }, "acknowledged")),
    canvas,
    el("h3", {}, "Messages waiting"),
    depthCanvas);
  return every(2000, async () => {
    const { data: o } = await api("GET", "/api/overview");
    document.getElementById("broker").textContent = `${o.node} ${o.version} · ${o.role} · up ${o.uptime_seconds} s`;
    const t = o.totals;
    const card = (k, v, id) => el("div", { class: "card", id }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
    cards.replaceChildren(
      card("destinations", fmt(t.destinations), "card-destinations"),
      card("messages waiting", fmt(t.messages), "card-messages"),
      card("unacked", fmt(t.unacked)),
      card("consumers", fmt(t.consumers)),
      card("connections", fmt(o.connections.total), "card-connections"),
      card("published/s", fmt(o.rates.published_per_second)),
      card("delivered/s", fmt(o.rates.delivered_per_second)),
      card("acked/s", fmt(o.rates.acked_per_second)),
      card("store on disk", o.store ? bytes(o.store.disk_bytes) : "-"));
    for (const [k, v] of [["pub", o.rates.published_per_second], ["ack", o.rates.acked_per_second], ["depth", t.messages]]) {
      history[k].push(v);
      if (history[k].length > 60) history[k].shift();
    }
    drawChart(canvas, [{ color: "#2b6fd6", values: history.pub }, { color: "#1a9a4b", values: history.ack }]);
    drawChart(depthCanvas, [{ color: "#c06a00", values: history.depth }]);
    status("");
  });
}

// ---------- destinations ----------

const destState = { kind: "all", name: "", sort: "name", order: "asc", page: 1, pageSize: 50 };
const depths = new Map(); // name -> recent depths, for the sparklines of shown rows

function destinations() {
  const filter = el("input", { type: "text", id: "dest-filter", placeholder: "name contains (or glob with *)", value: destState.name });
  const kind = el("select", { id: "dest-kind" }, ["all", "queue", "topic"].map(k => el("option", { value: k }, k)));
  kind.value = destState.kind;
  const pager = el("span", { id: "dest-pager", class: "muted" });
  const prev = el("button", { id: "dest-prev" }, "‹ prev");
  const next = el("button", { id: "dest-next" }, "next ›");
  const columns = [["name", "name"], ["kind", null], ["messages", "messages"], ["trend", null], ["unacked", "unacked"],
    ["consumers", "consumers"], ["enqueued", "enqueued"], ["dequeued", "dequeued"], ["in/s", null], ["out/s", null], ["memory", "bytes"],
    ["stored", "store_bytes"]];
  const head = el("tr", {}, columns.map(([label, key]) => {
    const th = el("th", { class: (key ? "sortable " : "") + (label === "name" || label === "kind" || label === "trend" ? "" : "num") }, label);
    if (key) {
      if (destState.sort === key) th.classList.add("sorted", destState.order);
      th.addEventListener("click", () => {
        destState.order = destState.sort === key && destState.order === "asc" ? "desc" : "asc";
        destState.sort = key; destState.page = 1; route();
      });
    }
    return th;
  }));
  const body = el("tbody");
  view().replaceChildren(el("h2", {}, "Destinations"),
    el("div", { class: "toolbar" }, filter, kind, prev, pager, next),
    el("table", { id: "dest-table" }, el("thead", {}, head), body));
  let refresh = async () => {};
  let typing = null;
  filter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { destState.name = filter.value; destState.page = 1; refresh(); }, 250);
  });
  kind.addEventListener("change", () => { destState.kind = kind.value; destState.page = 1; refresh(); });
  prev.addEventListener("click", () => { if (destState.page > 1) { destState.page--; refresh(); } });
  next.addEventListener("click", () => { destState.page++; refresh(); });
  refresh = async () => {
    const q = new URLSearchParams({ kind: destState.kind, sort: destState.sort, order: destState.order,
      page: destState.page, page_size: destState.pageSize });
    if (destState.name) q.set("name", destState.name);
    const { data, total } = await api("GET", "/api/destinations?" + q);
    const pages = Math.max(1, Math.ceil(total / destState.pageSize));
    if (destState.page > pages) { destState.page = pages; return refresh(); }
    pager.textContent = `page ${destState.page} of ${pages} · ${fmt(total)} destinations`;
    prev.disabled = destState.page <= 1; next.disabled = destState.page >= pages;
    const shown = new Set();
    body.replaceChildren(...data.map(d => {
      shown.add(d.name);
      const h = depths.get(d.name) || [];
      h.push(d.messages); if (h.length > 20) h.shift();
      depths.set(d.name, h);
      const link = el("a", { href: `#/destination/${d.kind}/${encodeURIComponent(d.name)}` }, d.name);
      return el("tr", { "data-name": d.name },
        el("td", {}, link), el("td", {}, d.kind),
        el("td", { class: "num depth" }, fmt(d.messages)), el("td", {}, sparkline(h)),
        el("td", { class: "num" }, fmt(d.unacked)), el("td", { class: "num" }, fmt(d.consumers)),
        el("td", { class: "num" }, fmt(d.enqueued)), el("td", { class: "num" }, fmt(d.dequeued)),
        el("td", { class: "num" }, fmt(d.rates.published_per_second)), el("td", { class: "num" }, fmt(d.rates.acked_per_second)),
        el("td", { class: "num" }, bytes(d.bytes)), el("td", { class: "num store-bytes" }, bytes(d.store_bytes)));
    }));
    // Forget the history of rows no longer shown: memory stays bounded by the page.
    for (const name of depths.keys()) if (!shown.has(name)) depths.delete(name);
  };
  return every(3000, () => refresh());
}

// ---------- one destination ----------

function destination(kind, name) {
  const d = { kind, name };
  const path = destPath(d);
  const stats = el("div", { class: "cards", id: "dest-stats" });
  const subs = el("tbody");
  const messages = el("tbody");
  const limit = el("input", { type: "number", id: "browse-limit", value: "20", min: "1", max: "1000" });
  const browseButton = el("button", { id: "browse-button" }, "Browse");
  const purgeButton = el("button", { id: "purge-button", class: "danger" }, "Purge…");
  const deleteButton = el("button", { id: "delete-button", class: "danger" }, "Delete…");
  const sendBody = el("textarea", { id: "send-body", rows: "4" });
  const sendHeaders = el("textarea", { id: "send-headers", rows: "2", placeholder: "name=value, one per line" });
  const persistent = el("input", { type: "checkbox", id: "send-persistent" });
  const sendButton = el("button", { id: "send-button", type: "submit" }, "Send");
  const form = el("form", { class: "send", id: "send-form" },
    el("label", { for: "send-body" }, "Body"), sendBody,
    el("label", { for: "send-headers" }, "Headers"), sendHeaders,
    el("label", {}, persistent, " persistent"), sendButton);
  const browse = async () => {
    const { data } = await api("GET", `${path}/messages?limit=${encodeURIComponent(limit.value)}`);
    messages.replaceChildren(...data.messages.map(m => el("tr", {},
      el("td", {}, m.message_id), el("td", { class: "num" }, fmt(m.size)), el("td", {}, m.persistent ? "yes" : "no"),
      el("td", { class: "num" }, m.priority),
      el("td", { class: "body" }, Object.entries(m.headers).map(([k, v]) => `${k}: ${v}`).join("\n")),
      el("td", { class: "body" }, m.body_error ? `(${m.body_error})` : (m.body_encoding === "base64" ? "base64: " : "") + (m.body || "") + (m.body_truncated ? " …" : "")))));
    status(`${data.messages.length} message(s) shown`, true);
  };
  browseButton.addEventListener("click", () => browse().catch(e => status(e.message)));
  purgeButton.addEventListener("click", async () => {
    if (!confirm(`Purge every waiting message of ${name}?`)) return;
    try {
      const { data } = await api("POST", `${path}/purge`);
      status(`purged ${data.purged} message(s)`, true);
      await refresh(); await browse();
    } catch (e) { status(e.message); }
  });
  deleteButton.addEventListener("click", async () => {
    if (!confirm(`Delete ${name} and its waiting messages?`)) return;
    try {
      const { data } = await api("DELETE", path);
      status(`deleted ${data.deleted}`, true);
      location.hash = "#/destinations";
    } catch (e) { status(e.message); }
  });
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const headers = {};
    for (const line of sendHeaders.value.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    try {
      const { data } = await api("POST", `${path}/messages`, { body: sendBody.value, headers, persistent: persistent.checked });
      status(`sent ${data.message_id}`, true);
      await refresh();
    } catch (e) { status(e.message); }
  });
  view().replaceChildren(el("h2", {}, name), stats,
    el("h3", {}, "Subscriptions"),
    el("table", { id: "subs-table" }, el("thead", {}, el("tr", {}, ["connection", "tag", "ack", "prefetch", "unacked", "selector"].map(h => el("th", {}, h)))), subs),
    el("h3", {}, "Messages"),
    el("div", { class: "toolbar" }, "show up to", limit, browseButton, purgeButton, deleteButton),
    el("table", { id: "messages-table" }, el("thead", {}, el("tr", {}, ["message id", "size", "persistent", "priority", "headers", "body"].map(h => el("th", {}, h)))), messages),
    el("h3", {}, "Send a message"), form);
  const refresh = async () => {
    const { data: x } = await api("GET", path);
    const card = (k, v, id) => el("div", { class: "card", id }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
    stats.replaceChildren(card("messages", fmt(x.messages), "depth"), card("unacked", fmt(x.unacked)),
      card("consumers", fmt(x.consumers)), card("enqueued", fmt(x.enqueued)), card("dequeued", fmt(x.dequeued)),
      card("memory", bytes(x.bytes)), card("stored", bytes(x.store_bytes), "store-bytes"),
      card("blocked producers", fmt(x.blocked_producers)));
    subs.replaceChildren(...x.subscriptions.map(s => el("tr", {},
      el("td", {}, el("a", { href: `#/connections` }, s.connection)), el("td", {}, s.tag), el("td", {}, s.ack),
      el("td", { class: "num" }, s.prefetch), el("td", { class: "num" }, s.unacked), el("td", {}, s.selector || ""))));
  };
  return every(3000, refresh);
}

// ---------- connections and durables ----------

function connections() {
  const body = el("tbody");
  view().replaceChildren(el("h2", {}, "Connections"),
    el("table", { id: "conn-table" }, el("thead", {}, el("tr", {},
      ["id", "protocol", "peer", "user", "connected", "subscriptions", "unacked", "in", "out", "msgs in", "msgs out", ""].map(h => el("th", {}, h)))), body));
  const refresh = async () => {
    const { data } = await api("GET", "/api/connections");
    body.replaceChildren(...data.map(c => el("tr", { "data-id": c.id },
      el("td", {}, c.id), el("td", {}, c.protocol), el("td", {}, c.peer), el("td", {}, c.user || "-"),
      el("td", {}, new Date(c.connected_at).toLocaleTimeString()),
      el("td", { class: "num" }, c.subscriptions), el("td", { class: "num" }, c.unacked),
      el("td", { class: "num" }, bytes(c.bytes_in)), el("td", { class: "num" }, bytes(c.bytes_out)),
      el("td", { class: "num" }, c.messages_in), el("td", { class: "num" }, c.messages_out),
      el("td", {}, el("button", { class: "danger close-conn", "data-id": c.id, onclick: async () => {
        if (!confirm(`Close connection ${c.id} (${c.peer})?`)) return;
        try {
          await api("DELETE", `/api/connections/${c.id}?reason=${encodeURIComponent("closed from the console")}`);
          status(`connection ${c.id} closing`, true);
          setTimeout(() => refresh().catch(e => status(e.message)), 300);
        } catch (e) { status(e.message); }
      } }, "Close…")))));
  };
  return every(3000, refresh);
}

function durables() {
  const body = el("tbody");
  view().replaceChildren(el("h2", {}, "Durable subscriptions"),
    el("table", { id: "durable-table" }, el("thead", {}, el("tr", {},
      ["client id", "name", "topic", "messages", "active", ""].map(h => el("th", {}, h)))), body));
  const refresh = async () => {
    const { data } = await api("GET", "/api/subscriptions/durable");
    body.replaceChildren(...data.map(d => el("tr", {},
      el("td", {}, d.client_id), el("td", {}, d.name), el("td", {}, d.topic),
      el("td", { class: "num" }, fmt(d.messages)), el("td", {}, d.active ? "yes" : "no"),
      el("td", {}, el("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete durable subscription ${d.name} of ${d.client_id} and its messages?`)) return;
        try {
          await api("DELETE", `/api/subscriptions/durable/${encodeURIComponent(d.queue)}`);
          status(`deleted ${d.queue}`, true); await refresh();
        } catch (e) { status(e.message); }
      } }, "Delete…")))));
  };
  return every(3000, refresh);
}

// ---------- routing ----------

function route() {
  stopView();
  status("");
  const hash = location.hash || "#/";
  const parts = hash.slice(2).split("/");
  for (const a of document.querySelectorAll("header nav a")) a.classList.remove("active");
  const mark = id => document.getElementById(id).classList.add("active");
  if (parts[0] === "destinations") { mark("nav-destinations"); stopView = destinations(); }
  else if (parts[0] === "destination" && parts.length >= 3) {
    mark("nav-destinations");
    stopView = destination(parts[1], decodeURIComponent(parts.slice(2).join("/")));
  }
  else if (parts[0] === "connections") { mark("nav-connections"); stopView = connections(); }
  else if (parts[0] === "durables") { mark("nav-durables"); stopView = durables(); }
  else { mark("nav-overview"); stopView = overview(); }
}

window.addEventListener("hashchange", route);
route();

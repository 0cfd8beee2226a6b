// labs dashboard: renders each reading the server pushes (server-sent events on /api/events).
// Everything from the target goes in through textContent, never as HTML.
"use strict";

const panels = document.getElementById("panels");

// A DOM element: h("td", {class: "num"}, "12", child, ...).
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function section(title, wide, ...children) {
  return h("section", wide ? { class: "wide" } : {}, h("h2", {}, title), ...children);
}

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

const num = (value) => h("td", { class: "num" }, value === null || value === undefined ? "n/a" : value);
const rate = (value) => (value === null || value === undefined ? "n/a" : value.toFixed(1));
const shortHash = (key) => (key.length > 12 ? key.slice(0, 6) + "…" + key.slice(-4) : key);

// A sparkline of the last minute's samples.
function sparkline(values) {
  const width = 120, height = 24;
  const chart = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` });
  if (values.length > 1) {
    const top = Math.max(1, ...values);
    const step = width / (values.length - 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`);
    chart.append(svg("polyline", { points: points.join(" ") }));
  }
  return chart;
}

function verdict(last) {
  if (!last) return h("span", { class: "muted" }, "not verified yet");
  const when = new Date(last.at_unix_seconds * 1000).toLocaleTimeString();
  const cls = last.outcome === "passed" ? "ok" : "bad";
  return h("span", {}, h("span", { class: cls }, last.outcome), ` at ${when}`);
}

function examplesPanel(examples) {
  const words = { up: "up", "partly-up": "partly up", down: "not provisioned", "not-built": "not built" };
  return section("Examples", false, table(["example", "title", "state", "last labs verify"],
    examples.map((e) => h("tr", {},
      h("td", {}, e.example), h("td", {}, e.title),
      h("td", {}, words[e.state] + (e.state === "partly-up" ? ` (${e.present} of ${e.declared})` : "")),
      h("td", {}, e.state === "up" || e.state === "partly-up" ? verdict(e.last_verify) : "")))));
}

function lineage(shard) {
  const parents = [shard.parent_shard_id, shard.adjacent_parent_shard_id].filter(Boolean);
  return parents.length ? "child of " + parents.join(" + ") : "";
}

function streamsPanel(streams) {
  return section("Kinesis streams", true, streams.map((s) => [
    h("h3", {}, `${s.name} (${s.example}): `, h("span", { class: "stream-records", "data-stream": s.name },
      s.records === null ? "n/a" : s.records), " records"),
    s.rates_unavailable ? h("p", { class: "muted" }, s.rates_unavailable) : null,
    table(["shard", "state", "lineage", "hash keys", "records", "records/s", "last minute"],
      s.shards.map((shard) => h("tr", {},
        h("td", {}, shard.shard_id),
        h("td", {}, shard.open ? "open" : "closed"),
        h("td", {}, lineage(shard)),
        h("td", { title: `${shard.starting_hash_key} … ${shard.ending_hash_key}` },
          `${shortHash(shard.starting_hash_key)} … ${shortHash(shard.ending_hash_key)}`),
        num(shard.records),
        h("td", { class: "num shard-rate" }, rate(shard.records_per_second)),
        h("td", {}, sparkline(shard.history))))),
  ]));
}

function queuesPanel(queues, topics) {
  return section("Queues and topics", false,
    queues.length ? table(["queue", "visible", "in flight", "dead-lettered"],
      queues.map((q) => h("tr", {},
        h("td", {}, q.name + (q.is_dead_letter_queue ? " (dead letters)" : "")),
        num(q.waiting), num(q.in_flight),
        q.dead_letter_queue ? num(q.dead_lettered) : h("td", { class: "muted" }, "no DLQ")))) : null,
    topics.map((t) => [
      h("h3", {}, `topic ${t.name}`),
      h("p", { class: "muted" }, "published: " + t.published),
      table(["subscribed queue", "holds now"], t.subscriptions.map((s) => h("tr", {}, h("td", {}, s.queue), num(s.holds)))),
    ]));
}

function mappingsPanel(mappings) {
  return section("Stream mappings", true, mappings.map((m) => [
    h("h3", {}, `${m.mapping}: ${m.run_by}${m.runner_pid ? ` (pid ${m.runner_pid})` : ""}`),
    h("p", { class: "muted" }, m.settings),
    m.shards.length
      ? table(["shard", "checkpoint", "ms behind", "retries in progress", "last result", "sent to on-failure"],
        m.shards.map((s) => h("tr", {},
          h("td", {}, s.shard_id),
          h("td", {}, (s.checkpoint || "-") + (s.finished ? " (finished)" : "")),
          num(s.millis_behind_latest), num(s.retries_in_progress),
          h("td", {}, s.last_result || "-"), num(s.discarded_batches))))
      : h("p", { class: "muted" }, "iterator age: " + m.iterator_age_source),
  ]));
}

function driftPanel(drift) {
  const cls = drift.rows_disagreeing === 0 ? "ok" : "bad";
  return section("Example 3: index drift", false,
    h("p", {}, h("span", { class: cls, id: "index-drift" }, drift.rows_disagreeing),
      " index rows disagree with the products table", drift.rows_disagreeing === 0 ? " (in sync)" : ""));
}

function totalsPanel(totals) {
  const gap = totals.naive - totals.exactly_once;
  return section("Example 4: exactly-once vs naive totals", false,
    h("p", {}, `exactly once ${totals.exactly_once}, naive ${totals.naive}: `,
      h("span", { class: gap === 0 ? "ok" : "bad" }, `gap ${gap}`), " (what redeliveries added twice)"),
    table(["user", "exactly once", "naive", "gap"], totals.users.map((u) =>
      h("tr", {}, h("td", {}, u.user), num(u.exactly_once), num(u.naive), num(u.naive - u.exactly_once)))));
}

// Example 6: windows on a time axis (one row per window key), the watermark as a red line.
function timePanel(time) {
  const byName = Object.fromEntries(time.tables.map((t) => [t.declared, t]));
  const windows = (byName["ex6-windows"] || { rows: [] }).rows.filter((w) => Number.isFinite(w.start) && Number.isFinite(w.end));
  const marks = (byName["ex6-watermarks"] || { rows: [] }).rows.flatMap((row) =>
    Object.entries(row).filter(([k, v]) => k.includes("watermark") && Number.isFinite(v)).map(([, v]) => v));
  const parts = [table(["table", "rows"], time.tables.map((t) => h("tr", {}, h("td", {}, t.name), num(t.total))))];
  if (windows.length) {
    const keys = [...new Set(windows.map((w) => w.window_key))].sort().slice(0, 16);
    const from = Math.min(...windows.map((w) => w.start)), to = Math.max(...windows.map((w) => w.end), ...marks);
    const width = 900, row = 18, left = 180, height = keys.length * row + 24;
    const x = (t) => left + ((t - from) / Math.max(1, to - from)) * (width - left - 10);
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
    keys.forEach((key, i) => {
      const label = svg("text", { x: 0, y: i * row + 13, "font-size": 11, fill: "#5b6475" });
      label.textContent = key;
      chart.append(label);
      for (const w of windows.filter((w) => w.window_key === key)) {
        const fill = w.final ? "#1b7f3b" : w.revision > 0 ? "#e08a00" : "#9aa5b8";
        chart.append(svg("rect", { x: x(w.start), y: i * row + 2, width: Math.max(2, x(w.end) - x(w.start) - 1), height: row - 5, fill }));
      }
    });
    if (marks.length) {
      const at = x(Math.max(...marks));
      chart.append(svg("line", { x1: at, x2: at, y1: 0, y2: height - 14, stroke: "#b3261e", "stroke-width": 2 }));
      const label = svg("text", { x: Math.min(at + 4, width - 120), y: height - 2, "font-size": 11, fill: "#b3261e" });
      label.textContent = "watermark " + new Date(Math.max(...marks)).toISOString().slice(11, 19);
      chart.append(label);
    }
    parts.push(h("p", { class: "muted" }, "grey: open, orange: revised, green: final"), chart);
  }
  return section("Example 6: windows and the watermark", true, parts);
}

function render(reading) {
  document.getElementById("where").textContent = `${reading.target}, prefix ${reading.prefix}`;
  const live = document.getElementById("live");
  live.textContent = "live, read at " + new Date(reading.taken_at_unix_millis).toLocaleTimeString();
  const out = [];
  if (reading.empty) out.push(h("section", { class: "wide empty", id: "empty" }, reading.empty));
  if (reading.errors.length) out.push(section("Could not read", true, h("ul", { class: "errors" }, reading.errors.map((e) => h("li", {}, e)))));
  if (reading.streams.length) out.push(streamsPanel(reading.streams));
  if (reading.mappings.length) out.push(mappingsPanel(reading.mappings));
  out.push(examplesPanel(reading.examples));
  if (reading.queues.length || reading.topics.length) out.push(queuesPanel(reading.queues, reading.topics));
  if (reading.index_drift) out.push(driftPanel(reading.index_drift));
  if (reading.exactly_once) out.push(totalsPanel(reading.exactly_once));
  if (reading.time) out.push(timePanel(reading.time));
  const example6 = reading.examples.find((e) => e.example === "example-6");
  if (!reading.time && example6) {
    out.push(section("Example 6: windows and the watermark", false,
      h("p", { class: "muted" }, example6.state === "not-built" ? "not built" : "not provisioned: run `labs up example-6`")));
  }
  panels.replaceChildren(...out);
}

const events = new EventSource("/api/events");
events.onmessage = (message) => {
  const reading = JSON.parse(message.data);
  if (!reading.pending) render(reading);
  document.getElementById("live").className = "on";
};
// EventSource reconnects by itself; say so meanwhile.
events.onerror = () => {
  const live = document.getElementById("live");
  live.className = "off";
  live.textContent = "reconnecting…";
};

// The collector's live page: polls the read API (/v1/stats, /v1/events, /v1/rejected,
// /v1/timeline) and keeps the server-rendered page up to date. Message data is only ever
// put in the DOM with textContent / setAttribute, never parsed as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const FILTERS = ["type", "user_id", "event"];
  const TABS = ["events", "rejected"];
  const CHARTS = ["received", "event"];
  const CHART_TITLES = {
    received: "Events per minute by type, last hour (UTC)",
    event: "Events by their own timestamp, by type (UTC)",
  };
  const body = document.body;
  const POLL_MS = Number(body.dataset.pollMs) || 1500;
  const LIMIT = Number(body.dataset.limit) || 100;
  const $ = (id) => document.getElementById(id);

  let seq = 0; // the latest refresh; an older one that finishes late is dropped
  let timer = null;

  // -- the view, kept in the URL's query string ------------------------------------------

  function readView() {
    const q = new URLSearchParams(location.search);
    const filters = {};
    for (const name of FILTERS) {
      const value = q.get(name);
      if (value) filters[name] = value;
    }
    const tab = TABS.includes(q.get("tab")) ? q.get("tab") : "events";
    const chart = CHARTS.includes(q.get("chart")) ? q.get("chart") : "received";
    return { filters, tab, chart };
  }

  function viewHref(filters, tab, chart) {
    const q = new URLSearchParams(filters);
    if (tab !== "events") q.set("tab", tab);
    if (chart !== "received") q.set("chart", chart);
    return q.toString() ? "/?" + q.toString() : "/";
  }

  function writeView(view) {
    history.replaceState(null, "", viewHref(view.filters, view.tab, view.chart));
    for (const name of TABS) {
      $("tab-" + name).setAttribute("href", viewHref(view.filters, name, view.chart));
    }
    for (const mode of CHARTS) {
      const link = $("chart-" + mode);
      link.setAttribute("href", viewHref(view.filters, view.tab, mode));
      link.setAttribute("aria-pressed", String(mode === view.chart));
    }
    $("chart-title").textContent = CHART_TITLES[view.chart];
  }

  // -- DOM helpers ---------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function str(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function fmt(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : "-";
  }

  function shortTime(receivedAt) {
    const text = str(receivedAt);
    if (text.length < 19) return text;
    const today = new Date().toISOString().slice(0, 10);
    const clock = text.slice(11, 19);
    return text.slice(0, 10) === today ? clock : text.slice(0, 10) + " " + clock;
  }

  // The event's own timestamp in UTC, written as receivedAt is (page.py's event_time()).
  function eventTime(timestamp) {
    if (typeof timestamp !== "string" || !timestamp) return "";
    const when = new Date(timestamp);
    return isNaN(when.getTime()) ? "" : when.toISOString();
  }

  // Same rules as page.py's label() and who().
  function label(m) {
    if (!m || typeof m !== "object") return "";
    if (m.type === "track" || m.type === "event") return str(m.event);
    if (m.type === "init" && m.protocol === "atrack") {
      return m.isNewUser === true ? "new user" : "returning user";
    }
    if (m.type === "attributes" && m.protocol === "atrack") return str(m.mode);
    if (m.type === "page" || m.type === "screen") {
      return [str(m.category), str(m.name)].filter(Boolean).join(" \u00b7 ");
    }
    if (m.type === "group") return str(m.groupId);
    if (m.type === "alias") return str(m.previousId);
    return "";
  }

  function who(m) {
    if (!m || typeof m !== "object") return ["", false];
    const user = str(m.protocol === "atrack" ? m.uuid : m.userId);
    return user ? [user, false] : [str(m.anonymousId), true];
  }

  function keys(items, parts) {
    const seen = new Map();
    return items.map((item) => {
      const base = parts.map((p) => (item && typeof item === "object" ? str(item[p]) : "")).join("|");
      const n = seen.get(base) || 0;
      seen.set(base, n + 1);
      return n === 0 ? base : base + "#" + n;
    });
  }

  function timeCell(receivedAt) {
    const t = el("time", "", shortTime(receivedAt));
    t.setAttribute("datetime", str(receivedAt));
    t.title = str(receivedAt);
    return t;
  }

  function atCell(timestamp) {
    const at = eventTime(timestamp);
    if (!at) return el("span", "at none", "-");
    const t = el("time", "at", shortTime(at));
    t.setAttribute("datetime", at);
    t.title = "event time: " + str(timestamp);
    return t;
  }

  function row(key, cells, full) {
    const li = el("li");
    li.dataset.key = key;
    const details = el("details");
    const summary = el("summary");
    for (const cell of cells) summary.appendChild(cell);
    details.appendChild(summary);
    details.appendChild(el("pre", "", JSON.stringify(full, null, 2)));
    li.appendChild(details);
    return li;
  }

  function eventRow(key, m) {
    const kind = str(m.type);
    const name = label(m);
    const [user, anonymous] = who(m);
    const type = el("span", "type", kind);
    if (/^[a-z]+$/.test(kind)) type.classList.add("t-" + kind);
    return row(key, [
      timeCell(m.receivedAt),
      atCell(m.timestamp),
      type,
      el("span", name ? "name" : "name none", name || "-"),
      el("span", anonymous ? "user anon" : "user", user),
    ], m);
  }

  function rejectedRow(key, r) {
    return row(key, [
      timeCell(r.receivedAt),
      el("span", "reason", str(r.reason)),
      el("span", "mid", str(r.messageId) || "no messageId"),
    ], r.message);
  }

  // Make `list` show `items` in order, reusing the rows it already has (an open <details>
  // stays open); rows new since the page loaded are marked "fresh" for a moment.
  function sync(list, items, parts, build) {
    const existing = new Map();
    for (const li of list.children) existing.set(li.dataset.key, li);
    let ref = list.firstElementChild;
    keys(items, parts).forEach((key, i) => {
      let li = existing.get(key);
      if (li) {
        existing.delete(key);
      } else {
        li = build(key, items[i]);
        li.classList.add("fresh");
        li.addEventListener("animationend", () => li.classList.remove("fresh"), { once: true });
      }
      if (li === ref) ref = ref.nextElementSibling;
      else list.insertBefore(li, ref);
    });
    for (const li of existing.values()) li.remove();
  }

  // -- the chart ----------------------------------------------------------------------------

  function niceMax(n) {
    for (const step of [1, 2, 5, 10, 20, 25, 50]) if (n <= step) return step;
    const p = Math.pow(10, Math.floor(Math.log10(n)));
    for (const m of [1, 2, 5, 10]) if (n <= m * p) return m * p;
    return n;
  }

  // How a bucket's start is written on the axis: HH:MM for the last hour, else by unit.
  function bucketLabel(timeline, b) {
    const start = str(b.start || b.minute);
    const unit = timeline.unit || "minute";
    if (timeline.by !== "event") return start.slice(11, 16);
    if (unit === "month") return start.slice(0, 7);
    if (unit === "day") return start.slice(0, 10);
    return start.slice(0, 10) + " " + start.slice(11, 16);
  }

  function drawChart(timeline) {
    const chart = $("chart");
    const W = 720, H = 150, left = 34, right = 6, top = 8, bottom = 20;
    const plotW = W - left - right, plotH = H - top - bottom;
    const buckets = timeline.buckets || [];
    const types = (timeline.types || []).filter((t) => /^[a-z]+$/.test(t));
    const max = niceMax(Math.max(1, ...buckets.map((b) => b.total)));
    const parts = [];
    for (const v of [0, max / 2, max]) {
      const y = top + plotH - (v / max) * plotH;
      parts.push(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }));
      if (Number.isInteger(v)) {
        parts.push(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" },
          String(v)));
      }
    }
    const slot = plotW / Math.max(buckets.length, 1);
    const barW = Math.max(slot - 2, 1);
    buckets.forEach((b, i) => {
      if (!b.total) return;
      const g = svg("g", { class: "bar" });
      const lines = [bucketLabel(timeline, b) + " UTC: " + b.total];
      let y = top + plotH;
      for (const t of types) {
        const n = (b.by_type || {})[t] || 0;
        if (!n) continue;
        const h = (n / max) * plotH;
        y -= h;
        g.appendChild(svg("rect", { x: left + i * slot + 1, y, width: barW, height: h, class: "t-" + t }));
        lines.push(t + " " + n);
      }
      g.appendChild(svg("title", {}, lines.join("\n")));
      parts.push(g);
    });
    if (buckets.length) {
      const ticks = [0, Math.floor(buckets.length / 2), buckets.length - 1];
      for (const i of ticks) {
        const anchor = i === 0 ? "start" : i === buckets.length - 1 ? "end" : "middle";
        const x = i === buckets.length - 1 ? W - right : left + i * slot + (i ? slot / 2 : 0);
        parts.push(svg("text", { x, y: H - 5, class: "axis", "text-anchor": anchor },
          bucketLabel(timeline, buckets[i])));
      }
    }
    if (!buckets.some((b) => b.total)) {
      parts.push(svg("text", { x: left + plotW / 2, y: top + plotH / 2, class: "nodata",
        "text-anchor": "middle" },
        timeline.by === "event" ? "no events with a timestamp" : "no events in the last hour"));
    }
    chart.replaceChildren(...parts);
  }

  // -- polling -------------------------------------------------------------------------------

  async function getJSON(path) {
    const resp = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
  }

  function showCounts(stats) {
    $("count-accepted").textContent = fmt(stats.events);
    $("count-rejected").textContent = fmt(stats.rejected);
    $("count-requests").textContent = fmt((stats.requests || {}).total);
    $("count-distinct-users").textContent = fmt(stats.distinct_users);
    $("badge-rejected").textContent = fmt(stats.rejected);
  }

  function showTab(tab) {
    for (const name of TABS) {
      const active = name === tab;
      $("panel-" + name).hidden = !active;
      const link = $("tab-" + name);
      link.classList.toggle("active", active);
      link.setAttribute("aria-selected", String(active));
    }
  }

  function summary(n, filters) {
    let text = "latest " + n + " event" + (n === 1 ? "" : "s");
    const parts = Object.entries(filters).map(([k, v]) => k + " = " + v);
    if (parts.length) text += " where " + parts.join(", ");
    return text;
  }

  async function refresh() {
    const mine = ++seq;
    const view = readView();
    const status = $("status");
    try {
      const q = new URLSearchParams(view.filters);
      q.set("limit", String(LIMIT));
      const listing = view.tab === "events"
        ? getJSON("/v1/events?" + q.toString())
        : getJSON("/v1/rejected?limit=" + LIMIT);
      const [stats, items, timeline] = await Promise.all([
        getJSON("/v1/stats"), listing,
        getJSON(view.chart === "event" ? "/v1/timeline?by=event" : "/v1/timeline?minutes=60"),
      ]);
      if (mine !== seq) return;
      showCounts(stats);
      drawChart(timeline);
      if (view.tab === "events") {
        sync($("events"), items, ["messageId", "receivedAt"], eventRow);
        $("events-empty").hidden = items.length > 0;
        $("events-summary").textContent = summary(items.length, view.filters);
      } else {
        sync($("rejected"), items, ["receivedAt", "index", "messageId"], rejectedRow);
        $("rejected-empty").hidden = items.length > 0;
      }
      status.className = "live";
      status.textContent = "live \u00b7 updated " + new Date().toISOString().slice(11, 19) + " UTC";
    } catch (err) {
      if (mine !== seq) return;
      status.className = "error";
      status.textContent = "cannot reach the collector (" + err.message + "); retrying";
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }

  async function tick() {
    if (!document.hidden) await refresh();
    schedule(POLL_MS);
  }

  function apply(view) {
    writeView(view);
    showTab(view.tab);
    schedule(0);
  }

  // -- wiring --------------------------------------------------------------------------------

  function formFilters(form) {
    const filters = {};
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) filters[name] = value;
    }
    return filters;
  }

  function init() {
    const form = $("filters");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      apply({ filters: formFilters(form), tab: "events", chart: readView().chart });
    });
    form.elements.type.addEventListener("change", () => {
      apply({ filters: formFilters(form), tab: "events", chart: readView().chart });
    });
    $("clear").addEventListener("click", (ev) => {
      ev.preventDefault();
      form.reset();
      for (const name of FILTERS) form.elements[name].value = "";
      apply({ filters: {}, tab: "events", chart: readView().chart });
    });
    for (const name of TABS) {
      $("tab-" + name).addEventListener("click", (ev) => {
        ev.preventDefault();
        const view = readView();
        apply({ filters: view.filters, tab: name, chart: view.chart });
      });
    }
    for (const mode of CHARTS) {
      $("chart-" + mode).addEventListener("click", (ev) => {
        ev.preventDefault();
        const view = readView();
        apply({ filters: view.filters, tab: view.tab, chart: mode });
      });
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) schedule(0);
    });
    schedule(0);
  }

  init();
})();

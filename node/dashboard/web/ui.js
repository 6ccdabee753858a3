// Aspen dashboards: shared helpers (token, API calls, formatting, charts).
// Plain browser JavaScript, no dependencies, no build step.
"use strict";

const Aspen = (() => {
  const TOKEN_KEY = "aspen-token";
  const MSG_KEY = "aspen-login-message";

  // ---- token ---------------------------------------------------------

  // takeFragmentToken moves a token from the one-time link (#token=...)
  // into sessionStorage and removes it from the address bar and history.
  function takeFragmentToken() {
    const m = /^#token=([^&]*)/.exec(location.hash);
    if (!m) return;
    const tok = decodeURIComponent(m[1]).trim();
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const setToken = (t) => sessionStorage.setItem(TOKEN_KEY, t);
  const clearToken = () => sessionStorage.removeItem(TOKEN_KEY);

  // ---- API -------------------------------------------------------------

  class Unauthorized extends Error {}
  class APIError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  let onUnauthorized = () => {};

  // api GETs path with the bearer token and returns the parsed JSON. A
  // 401 clears the token and returns to the login page.
  async function api(path, opts = {}) {
    const headers = { Authorization: "Bearer " + (opts.token ?? token()), Accept: "application/json" };
    const r = await fetch(path, { method: opts.method || "GET", headers, cache: "no-store", signal: opts.signal });
    if (r.status === 401) {
      if (!opts.token) {
        clearToken();
        onUnauthorized("The node refused the token (401). Sign in again.");
      }
      throw new Unauthorized("unauthorized");
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!r.ok) throw new APIError(r.status, (body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  // ---- formatting -------------------------------------------------------

  // money formats integer micro-units as a decimal with six places, trailing
  // zeros trimmed to two: 40000 -> "0.04" (as protocol.Micros.String).
  function money(micros) {
    if (micros === undefined || micros === null || isNaN(micros)) return "–";
    const neg = micros < 0;
    const u = Math.abs(Math.trunc(micros));
    let s = Math.floor(u / 1e6) + "." + String(u % 1e6).padStart(6, "0");
    while (s.endsWith("0") && s.length - s.indexOf(".") > 3) s = s.slice(0, -1);
    return (neg ? "-" : "") + s;
  }
  // speed formats milli standard units: 1250 -> "1.25".
  function speed(milli) {
    if (milli === undefined || milli === null) return "–";
    let s = Math.floor(milli / 1000) + "." + String(milli % 1000).padStart(3, "0");
    while (s.endsWith("0") && s.length - s.indexOf(".") > 2) s = s.slice(0, -1);
    return s;
  }
  // ppm formats parts per million as a percentage.
  function ppm(p) {
    if (p === undefined || p === null) return "–";
    return (p / 10000).toFixed(p % 10000 === 0 ? 0 : 2) + "%";
  }
  function pad2(n) { return String(n).padStart(2, "0"); }
  function time(ms) {
    if (!ms) return "–";
    const d = new Date(ms);
    const now = new Date();
    const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) return hms;
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hms}`;
  }
  // duration formats milliseconds: 950 -> "950 ms", 61000 -> "1m 1s".
  function duration(ms) {
    if (ms === undefined || ms === null || isNaN(ms)) return "–";
    ms = Math.round(ms);
    if (Math.abs(ms) < 1000) return ms + " ms";
    let s = Math.floor(Math.abs(ms) / 1000);
    const sign = ms < 0 ? "-" : "";
    if (s < 60) return sign + (Math.abs(ms) / 1000).toFixed(s < 10 ? 2 : 1) + " s";
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${sign}${d}d ${h}h`;
    if (h) return `${sign}${h}h ${m}m`;
    return `${sign}${m}m ${s}s`;
  }
  // relative: "in 5m 3s" / "12 s ago".
  function relative(ms) {
    if (!ms) return "–";
    const dt = ms - Date.now();
    return dt >= 0 ? "in " + duration(dt) : duration(-dt) + " ago";
  }
  function short(id, n = 8) {
    if (!id) return "–";
    return id.length > n + 1 ? "…" + id.slice(-n) : id;
  }
  function decodeB64(b64) {
    if (!b64) return "";
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  }

  // ---- DOM ----------------------------------------------------------------

  // el builds an element: el("td", {class: "num", title: "x"}, "text", child…).
  // Text is always set as text, never parsed as HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  function setText(sel, text) { const e = typeof sel === "string" ? $(sel) : sel; if (e) e.textContent = text; }
  function stateSpan(state, text) {
    const cls = String(state || "").toLowerCase().replace(/[^a-z0-9]+/g, "-");
    return el("span", { class: "state dot " + cls }, text ?? state);
  }
  // fillTable replaces a table's tbody rows; empty shows a placeholder row.
  function fillTable(table, rows, empty) {
    const tb = table.tBodies[0];
    const cols = table.tHead ? table.tHead.rows[0].cells.length : 1;
    tb.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: cols }, empty || "Nothing yet."))]));
  }

  // ---- polling -------------------------------------------------------------

  // every runs fn now and then every ms while active; a slow call is never
  // overlapped by the next one. Returns a stop function.
  function every(ms, fn) {
    let stopped = false, timer = null;
    const tick = async () => {
      if (stopped) return;
      try { await fn(); } catch (e) { if (!(e instanceof Unauthorized)) console.warn(e); }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  // ---- charts (inline SVG) ---------------------------------------------------

  const SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  // chart draws a line (kind "line", points [{x, y}] sorted by x, drawn as
  // steps) or bars (kind "bar", points [{x, y}] with equal x spacing) into
  // container. x is a time in ms; yfmt formats the y axis.
  function chart(container, kind, points, opts = {}) {
    const W = 600, H = 220, L = 58, R = 12, T = 12, B = 30;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": opts.label || "chart" });
    const yfmt = opts.yfmt || String;
    if (!points.length) {
      s.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "none" }, opts.empty || "No data yet"));
      container.replaceChildren(s);
      return;
    }
    let x0 = points[0].x, x1 = points[points.length - 1].x;
    if (opts.xmin !== undefined) x0 = Math.min(x0, opts.xmin);
    if (opts.xmax !== undefined) x1 = Math.max(x1, opts.xmax);
    if (x1 <= x0) { x0 -= 30000; x1 += 30000; }
    const ymax = niceMax(Math.max(...points.map((p) => p.y)));
    const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const py = (y) => T + (1 - y / ymax) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const y = (ymax * i) / 4;
      s.append(svg("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: i ? "grid" : "axis" }));
      s.append(svg("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end" }, yfmt(y)));
    }
    const tfmt = (ms) => { const d = new Date(ms); return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`; };
    for (const [x, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
      s.append(svg("text", { x: px(x), y: H - 10, "text-anchor": anchor }, tfmt(x)));
    }
    if (kind === "bar") {
      const bw = Math.max(1, ((W - L - R) / Math.max(1, (x1 - x0) / (opts.step || 60000) + 1)) * 0.8);
      for (const p of points) {
        if (!p.y) continue;
        const x = px(p.x) - bw / 2;
        const bar = svg("rect", { x: Math.max(L, x), y: py(p.y), width: bw, height: py(0) - py(p.y), class: "barr" });
        bar.append(svg("title", {}, `${tfmt(p.x)}: ${yfmt(p.y)}`));
        s.append(bar);
      }
    } else {
      let d = `M ${px(points[0].x)} ${py(0)} L ${px(points[0].x)} ${py(points[0].y)}`;
      for (let i = 1; i < points.length; i++) d += ` L ${px(points[i].x)} ${py(points[i - 1].y)} L ${px(points[i].x)} ${py(points[i].y)}`;
      const last = points[points.length - 1];
      d += ` L ${px(x1)} ${py(last.y)}`;
      s.append(svg("path", { d: d + ` L ${px(x1)} ${py(0)} Z`, class: "area" }));
      s.append(svg("path", { d, class: "line" }));
      const dot = svg("circle", { cx: px(last.x), cy: py(last.y), r: 3.5, class: "barr" });
      dot.append(svg("title", {}, `${time(last.x)}: ${yfmt(last.y)}`));
      s.append(dot);
    }
    container.replaceChildren(s);
  }

  // ---- login and shell ------------------------------------------------------

  // start wires the login form and calls ready(info) once a token works;
  // infoPath is the endpoint used to check the token.
  function start({ infoPath, ready }) {
    takeFragmentToken();
    // A one-time link opened in a tab already showing the dashboard only
    // changes the fragment: take the token and start over.
    window.addEventListener("hashchange", () => {
      if (/^#token=/.test(location.hash)) {
        takeFragmentToken();
        location.reload();
      }
    });
    const login = $("#login"), form = $("#login-form"), input = $("#token-input"), errEl = $("#login-error");
    let started = false;
    const showLogin = (msg) => {
      for (const v of document.querySelectorAll(".view")) v.hidden = true;
      for (const sel of ["#nav", "#who", "#banner"]) { const e = $(sel); if (e) e.hidden = true; }
      login.hidden = false;
      errEl.textContent = msg || "";
      input.value = "";
      input.focus();
      document.body.dataset.state = "login";
      if (started) { // drop every poller and piece of state
        sessionStorage.setItem(MSG_KEY, msg || "");
        location.reload();
      }
    };
    onUnauthorized = showLogin;
    const tryToken = async (tok) => {
      const info = await api(infoPath, { token: tok });
      setToken(tok);
      login.hidden = true;
      errEl.textContent = "";
      document.body.dataset.state = "ready";
      started = true;
      ready(info);
    };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const tok = input.value.trim();
      if (!tok) return;
      try { await tryToken(tok); } catch (e) {
        errEl.textContent = e instanceof Unauthorized ? "That token was refused." : "Cannot reach the API: " + e.message;
      }
    });
    const lo = $("#logout");
    if (lo) lo.addEventListener("click", () => { clearToken(); location.hash = ""; location.reload(); });
    const saved = sessionStorage.getItem(MSG_KEY) || "";
    sessionStorage.removeItem(MSG_KEY);
    if (!token()) { showLogin(saved); return; }
    tryToken(token()).catch((e) => {
      if (e instanceof Unauthorized) { clearToken(); showLogin("The saved token was refused. Sign in again."); }
      else showLogin("Cannot reach the API: " + e.message);
    });
  }

  function banner(msg) {
    const b = $("#banner");
    if (!b) return;
    b.hidden = !msg;
    b.textContent = msg || "";
  }

  return { api, Unauthorized, APIError, token, money, speed, ppm, time, duration, relative, short, decodeB64,
    el, $, setText, stateSpan, fillTable, every, chart, start, banner };
})();

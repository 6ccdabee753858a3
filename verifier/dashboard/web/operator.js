// Aspen operator dashboard: workers, market, groups and ledger over the
// verifier's operator API (/v1, bearer token). See ui.js for the helpers.
"use strict";

(() => {
  const A = Aspen;
  const { el, $, setText, money, speed, ppm, short } = A;

  let info = null;
  let stops = [];
  let currentView = "";
  let revenue = null;

  function stopAll() { for (const s of stops) s(); stops = []; }
  function poll(ms, fn) { stops.push(A.every(ms, fn)); }

  function ready(first) {
    info = first;
    $("#nav").hidden = false;
    $("#who").hidden = false;
    $("#summary").hidden = false;
    renderInfo();
    A.every(3000, async () => {
      info = await A.api("/v1/info");
      renderInfo();
      const { workers } = await A.api("/v1/workers");
      setText("#s-live", `${(workers || []).filter((w) => w.live).length} live · ${(workers || []).filter((w) => w.in_book).length} offering`);
    });
    A.every(10000, async () => {
      const acc = await A.api("/v1/accounts");
      const op = (acc.accounts || []).find((a) => a.account === "operator");
      revenue = op ? op.balance_micros : 0;
      setText("#s-revenue", money(revenue));
    });
    window.addEventListener("hashchange", route);
    route();
  }

  function renderInfo() {
    setText("#peer-id", short(info.peer, 12));
    $("#peer-id").title = info.peer;
    setText("#s-workers", String(info.workers));
    setText("#s-groups", String(info.groups));
    setText("#s-tasks", String(info.open_tasks));
    setText("#s-queued", `${info.queued} queued`);
    setText("#foot", `aspen-verifier · peer ${info.peer}`);
  }

  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
    let view = parts[0] || "workers";
    if (!["workers", "worker", "market", "groups", "group", "ledger"].includes(view)) view = "workers";
    stopAll();
    A.banner("");
    for (const v of document.querySelectorAll(".view")) v.hidden = true;
    const tab = { worker: "workers", group: "groups" }[view] || view;
    for (const a of document.querySelectorAll("#nav a[data-tab]")) a.classList.toggle("active", a.dataset.tab === tab);
    currentView = view;
    document.body.dataset.view = view;
    $("#summary").hidden = view === "ledger";
    switch (view) {
      case "workers": showWorkers(); break;
      case "worker": showWorker(decodeURIComponent(parts[1] || "")); break;
      case "market": showMarket(); break;
      case "groups": showGroups(); break;
      case "group": showGroup(parts[1] || ""); break;
      case "ledger": showLedger(); break;
    }
  }

  function guard(fn) {
    return async () => {
      try { await fn(); } catch (e) {
        if (e instanceof A.APIError) { A.banner(e.message); return; }
        throw e;
      }
    };
  }

  // ---- workers ------------------------------------------------------------------

  function workerState(w) {
    if (w.struck_out) return ["struck", "struck out"];
    if (w.benchmarking) return ["benchmarking", "benchmarking"];
    if (!w.live) return ["no", "offline"];
    if (!w.rated) return ["pending", "unrated"];
    return ["live", w.in_book ? "offering" : "live"];
  }

  function spotText(s) {
    const n = s.passed + s.too_slow + s.wrong;
    if (!n) return el("span", { class: "muted" }, "none yet");
    return el("span", {},
      A.stateSpan("ok", `${s.passed} passed`),
      s.too_slow ? [" ", A.stateSpan("too-slow", `${s.too_slow} slow`)] : null,
      s.wrong ? [" ", A.stateSpan("wrong-result", `${s.wrong} wrong`)] : null);
  }

  function mttf(w) { return w.failures ? A.duration(w.mttf_ms) : "no failures"; }

  function showWorkers() {
    $("#view-workers").hidden = false;
    poll(2000, guard(async () => {
      const { workers } = await A.api("/v1/workers");
      const rows = (workers || []).map((w) => {
        const [cls, label] = workerState(w);
        return el("tr", { class: "worker clickable", dataset: { id: w.id }, onclick: () => { location.hash = "#/worker/" + encodeURIComponent(w.id); } },
          el("td", {}, el("code", { title: w.id }, short(w.id, 10)), w.owner ? el("div", { class: "muted" }, w.owner) : null),
          el("td", {}, A.stateSpan(cls, label)),
          el("td", { class: "num" }, w.rated ? speed(w.speed) : "–"),
          el("td", { class: "num" }, ppm(w.reliability_ppm)),
          el("td", { class: "num" }, mttf(w)),
          el("td", { class: "num" }, String(w.completed)),
          el("td", { class: "num" }, String(w.failures)),
          el("td", { class: "num" }, w.strikes ? A.stateSpan("failed", String(w.strikes)) : "0"),
          el("td", {}, spotText(w.spot_checks)),
          el("td", {}, w.speed_checks ? `${w.speed_checks - w.speed_misses}/${w.speed_checks} on speed` : el("span", { class: "muted" }, "–")),
          el("td", { class: "num" }, money(w.min_price)),
          el("td", { class: "num" }, `${w.outstanding}/${w.capacity}`),
          el("td", {}, w.last_seen ? A.relative(w.last_seen) : "–"));
      });
      A.fillTable($("#worker-table"), rows, "No worker has registered yet.");
    }));
  }

  function card(label, value, sub) {
    return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), sub ? el("div", { class: "sub" }, sub) : null);
  }

  function showWorker(id) {
    $("#view-worker").hidden = false;
    setText("#wk-title", "Worker " + id);
    poll(3000, guard(async () => {
      const { workers } = await A.api("/v1/workers");
      const w = (workers || []).find((x) => x.id === id);
      if (!w) { A.banner(`No worker ${id}.`); return; }
      const [cls, label] = workerState(w);
      $("#wk-cards").replaceChildren(
        card("State", A.stateSpan(cls, label), w.last_seen ? "seen " + A.relative(w.last_seen) : ""),
        card("Speed", w.rated ? speed(w.speed) : "unrated", "standard units"),
        card("Reliability", ppm(w.reliability_ppm), `MTTF ${mttf(w)}`),
        card("Strikes", String(w.strikes), w.struck_out ? "struck out" : ""),
        card("Completed", String(w.completed), `${w.failures} failures`),
        card("Spot checks", String(w.spot_checks.passed + w.spot_checks.too_slow + w.spot_checks.wrong), spotText(w.spot_checks)));
      const kv = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v));
      $("#wk-table").tBodies[0].replaceChildren(
        kv("Peer ID", el("code", {}, w.id)),
        kv("Owner", w.owner || "–"),
        kv("Registered", A.time(w.registered)),
        kv("Rating", w.rated ? `issued ${A.relative(w.rating_issued)}, expires ${A.relative(w.rating_expires)}` : "not rated"),
        kv("Benchmark failures", String(w.bench_failures)),
        kv("Uptime", A.duration(w.uptime_ms)),
        kv("Speed checks", `${w.speed_checks} (${w.speed_misses} more than 15% slow)`),
        kv("Minimum price", money(w.min_price) + " per hour"),
        kv("Slots · load", `${w.slots} slots · ${w.outstanding} held of ${w.capacity}`),
        kv("In the book", w.in_book ? "yes" : "no"),
        kv("Addresses", el("div", {}, ...(w.addrs || []).map((a) => el("div", {}, el("code", {}, a))))));
      const hist = (w.speed_history || []).slice().sort((a, b) => a.time - b.time);
      A.chart($("#chart-speed"), "line", hist.map((s) => ({ x: s.time, y: s.speed })), { yfmt: (v) => speed(Math.round(v)), xmax: Date.now(), label: "measured speed", empty: "No measurement yet" });
      A.fillTable($("#wk-history"), hist.slice().reverse().slice(0, 200).map((s) => el("tr", {},
        el("td", {}, A.time(s.time)), el("td", { class: "num" }, speed(s.speed)), el("td", {}, s.source))), "No measurement yet.");
    }));
  }

  // ---- market -------------------------------------------------------------------

  function showMarket() {
    $("#view-market").hidden = false;
    poll(2000, guard(async () => {
      const [{ workers }, { groups }] = await Promise.all([A.api("/v1/workers"), A.api("/v1/groups")]);
      const perStd = (w) => (w.speed > 0 ? Math.round((w.min_price * 1000) / w.speed) : Infinity);
      const offers = (workers || []).filter((w) => w.in_book).sort((a, b) => perStd(a) - perStd(b));
      A.fillTable($("#offer-table"), offers.map((w) => el("tr", { class: "offer" },
        el("td", {}, el("code", { title: w.id }, short(w.id, 10))),
        el("td", {}, w.owner || "–"),
        el("td", { class: "num" }, money(w.min_price)),
        el("td", { class: "num" }, w.rated ? speed(w.speed) : "–"),
        el("td", { class: "num" }, isFinite(perStd(w)) ? money(perStd(w)) : "–"),
        el("td", { class: "num" }, ppm(w.reliability_ppm)),
        el("td", { class: "num" }, String(w.strikes)),
        el("td", { class: "num" }, `${w.outstanding}/${w.capacity}`))), "No offers in the book.");
      const bids = (groups || []).filter((g) => g.open && !g.canceled);
      A.fillTable($("#bid-table"), bids.map((g) => el("tr", { class: "clickable", onclick: () => { location.hash = "#/group/" + g.id; } },
        el("td", {}, el("code", { title: g.id }, short(g.id, 10))),
        el("td", {}, el("code", { title: g.consumer }, short(g.consumer, 10))),
        el("td", { class: "num" }, money(g.max_price)),
        el("td", { class: "num" }, speed(g.min_speed)),
        el("td", { class: "num" }, String(g.replicas)),
        el("td", {}, countsText(g.counts)),
        el("td", {}, A.time(g.created)))), "No open bids.");
    }));
  }

  function countsText(c) {
    const order = ["queued", "running", "verified", "failed", "canceled"];
    const parts = order.filter((k) => c && c[k]).map((k) => A.stateSpan(k, `${c[k]} ${k}`));
    return parts.length ? el("span", { class: "counts" }, ...parts.flatMap((p) => [p, " "])) : el("span", { class: "muted" }, "–");
  }

  function groupState(g) {
    const c = g.counts || {};
    if (!g.open && g.undelivered) return "undelivered";
    if (g.canceled) return "canceled";
    if (g.open && (c.queued || c.running)) return "running";
    if (c.failed) return "finished-with-failures";
    if (!g.open && !c.verified) return "closed";
    return "verified";
  }

  // ---- groups -------------------------------------------------------------------

  function showGroups() {
    $("#view-groups").hidden = false;
    const all = $("#groups-all");
    const load = guard(async () => {
      const { groups } = await A.api("/v1/groups" + (all.checked ? "?all=1" : ""));
      const gs = (groups || []).slice().sort((a, b) => b.created - a.created);
      A.fillTable($("#group-table"), gs.map((g) => {
        const st = groupState(g);
        return el("tr", { class: "group clickable", dataset: { id: g.id }, onclick: () => { location.hash = "#/group/" + g.id; } },
          el("td", {}, el("code", { title: g.id }, short(g.id, 10))),
          el("td", {}, el("code", { title: g.consumer }, short(g.consumer, 10))),
          el("td", {}, A.stateSpan(st, st.replace(/-/g, " "))),
          el("td", {}, countsText(g.counts)),
          el("td", { class: "num" }, money(g.charged)),
          el("td", { class: "num" }, money(g.max_price)),
          el("td", {}, A.time(g.created)));
      }), all.checked ? "No groups." : "No open groups (tick the box to see closed ones).");
    });
    all.onchange = load;
    poll(2000, load);
  }

  let lastGroup = null;
  function showGroup(id) {
    $("#view-group").hidden = false;
    setText("#g-title", "Group " + id);
    $("#task-filter").onchange = () => lastGroup && renderTasks(lastGroup);
    poll(2000, guard(async () => {
      const g = await A.api("/v1/groups/" + encodeURIComponent(id));
      lastGroup = g;
      const item = (label, value) => el("div", { class: "item" }, el("div", { class: "label" }, label), el("div", { class: "v" }, value));
      const tasks = g.tasks || [];
      const spot = tasks.filter((t) => t.spot_checked).length;
      const strikes = tasks.reduce((s, t) => s + t.strikes, 0);
      const cut = tasks.reduce((s, t) => s + t.operator_cut, 0);
      const st = groupState(g);
      $("#g-head").replaceChildren(
        item("State", A.stateSpan(st, st.replace(/-/g, " "))),
        item("Tasks", countsText(g.counts)),
        item("Consumer", el("code", { title: g.consumer }, short(g.consumer, 12))),
        item("Charged", money(g.charged)),
        item("Operator cut", money(cut)),
        item("Spot-checked", `${spot} of ${tasks.length}`),
        item("Strikes", String(strikes)),
        item("Max price", money(g.max_price) + "/h"),
        item("Min speed", speed(g.min_speed)),
        item("Replicas", String(g.replicas)),
        item("Timeout", A.duration(g.timeout_ms)),
        item("Created", A.time(g.created)),
        item("Module", el("code", { title: g.module }, short(g.module, 12))),
        ...(g.undelivered ? [item("Undelivered", `${g.undelivered} results never acknowledged; given up ${A.time(g.gave_up)} (a submit of the group by its consumer releases them again)`)] : []));
      renderTasks(g);
      if (!g.open) stopAll();
    }));
  }

  function replicaLine(r) {
    const verdict = r.verdict || r.state;
    return el("div", { class: "replica" },
      el("code", { title: r.worker }, short(r.worker, 8)), " ",
      A.stateSpan(verdict, verdict),
      r.strike ? el("span", { class: "state failed" }, " strike") : null,
      r.exec_us ? el("span", { class: "muted" }, ` ${A.duration(r.exec_us / 1000)}`) : null,
      r.effective_speed ? el("span", { class: "muted" }, ` @${speed(r.effective_speed)} (rated ${speed(r.rated_speed)})`) : null,
      r.paid ? el("span", { class: "muted" }, ` paid ${money(r.paid)}`) : null,
      r.reason ? el("span", { class: "muted" }, ` — ${r.reason}`) : null);
  }

  function renderTasks(g) {
    const f = $("#task-filter").value;
    const all = g.tasks || [];
    const shown = all.filter((t) => !f || (f === "spot" ? t.spot_checked : f === "strikes" ? t.strikes > 0 : t.state === f));
    setText("#task-count", `${shown.length} of ${all.length} tasks` + (shown.length > 500 ? " (first 500 shown)" : ""));
    A.fillTable($("#task-table"), shown.slice(0, 500).map((t) => el("tr", { class: "task", dataset: { index: t.index, state: t.state } },
      el("td", { class: "num" }, String(t.index)),
      el("td", {}, A.stateSpan(t.state), t.reason ? el("div", { class: "muted" }, t.reason) : null),
      el("td", {}, ...(t.replicas || []).map(replicaLine)),
      el("td", {}, t.spot_checked ? A.stateSpan(t.trusted ? "ok" : "pending", t.verifier_ran ? (t.trusted ? "verifier ran it (reference)" : "verifier ran it") : "spot check pending") : el("span", { class: "muted" }, "replicas only")),
      el("td", { class: "num" }, money(t.charged)),
      el("td", { class: "num" }, money(t.operator_cut)),
      el("td", { class: "num" }, money(t.refund)),
      el("td", {}, t.result ? el("code", { title: t.result }, short(t.result, 10)) : "–", t.exit_code ? ` exit ${t.exit_code}` : ""))), "No tasks match.");
  }

  // ---- ledger ---------------------------------------------------------------------

  function accountKind(a) { const i = a.indexOf(":"); return i < 0 ? a : a.slice(0, i); }
  function accountLabel(a) {
    const i = a.indexOf(":");
    if (i < 0) return el("span", {}, a);
    return el("span", { title: a }, a.slice(0, i + 1), el("code", {}, short(a.slice(i + 1), 10)));
  }

  function showLedger() {
    $("#view-ledger").hidden = false;
    poll(3000, guard(async () => {
      const [acc, { batches }] = await Promise.all([A.api("/v1/accounts"), A.api("/v1/payouts")]);
      const accounts = acc.accounts || [];
      const sum = { consumer: 0, escrow: 0, worker: 0, operator: 0, external: 0 };
      for (const a of accounts) sum[accountKind(a.account)] = (sum[accountKind(a.account)] || 0) + a.balance_micros;
      setText("#l-consumer", money(sum.consumer));
      setText("#l-escrow", money(sum.escrow));
      setText("#l-worker", money(sum.worker));
      setText("#l-operator", money(sum.operator));
      const paid = (batches || []).reduce((s, b) => s + b.total, 0);
      setText("#l-paid", money(paid));
      setText("#l-total", money(acc.total));
      setText("#l-check", acc.total === 0 ? "balanced: money is neither created nor lost" : "NOT BALANCED");
      $("#l-check").className = "sub state wrap " + (acc.total === 0 ? "ok" : "failed");
      const f = $("#acct-filter").value;
      const shown = accounts.filter((a) => !f || accountKind(a.account) === f).sort((a, b) => b.balance_micros - a.balance_micros);
      A.fillTable($("#acct-table"), shown.map((a) => el("tr", { class: "account" },
        el("td", {}, accountLabel(a.account)), el("td", {}, accountKind(a.account)), el("td", { class: "num" }, money(a.balance_micros)))), "No accounts.");
      const bs = (batches || []).slice().sort((a, b) => b.time - a.time);
      A.fillTable($("#batch-table"), bs.map((b) => el("tr", { class: "batch" },
        el("td", {}, el("code", {}, b.id)),
        el("td", {}, A.time(b.time)),
        el("td", { class: "num" }, money(b.threshold)),
        el("td", { class: "num" }, String((b.lines || []).length)),
        el("td", { class: "num" }, money(b.total)),
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => exportCSV(b) }, "CSV")))), "No payout batch yet.");
    }));
    $("#acct-filter").onchange = () => { stopAll(); showLedger(); };
    journal(0);
    $("#journal-go").onclick = () => journal(0);
    $("#journal-account").onkeydown = (e) => { if (e.key === "Enter") journal(0); };
  }

  const PAGE = 100;
  async function journal(after) {
    const acct = $("#journal-account").value.trim();
    let es;
    try {
      ({ entries: es } = await A.api(`/v1/ledger?limit=${PAGE}&after=${after}` + (acct ? "&account=" + encodeURIComponent(acct) : "")));
    } catch (e) {
      if (e instanceof A.APIError) { A.banner("Journal: " + e.message); return; }
      throw e;
    }
    es = es || [];
    setText("#journal-range", es.length ? `entries ${es[0].seq}–${es[es.length - 1].seq}` : after ? "no more entries" : "no entries");
    const next = $("#journal-next");
    next.hidden = es.length < PAGE;
    next.onclick = () => journal(es[es.length - 1].seq);
    A.fillTable($("#journal-table"), es.map((e) => el("tr", { class: "entry" },
      el("td", { class: "num" }, String(e.seq)),
      el("td", {}, A.time(e.time)),
      el("td", {}, e.kind),
      el("td", { class: "hide-sm" }, el("code", { title: e.id }, e.id.length > 40 ? e.id.slice(0, 39) + "…" : e.id), e.memo ? el("div", { class: "muted" }, e.memo) : null),
      el("td", {}, ...(e.entries || []).map((x) => el("div", {}, accountLabel(x.account), " ",
        el("span", { class: x.amount < 0 ? "state failed" : "state ok" }, (x.amount > 0 ? "+" : "") + money(x.amount))))))), "No entries.");
  }

  function exportCSV(b) {
    const q = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    const lines = ["batch,time,worker,amount"];
    const t = new Date(b.time).toISOString();
    for (const l of b.lines || []) lines.push([b.id, t, l.worker, money(l.amount)].map(q).join(","));
    const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    const a = el("a", { href: url, download: `payout-${b.id}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  A.start({ infoPath: "/v1/info", ready });
})();

// Aspen node dashboard: consumer, worker and network pages over the node's
// local API (/v1, bearer token). See ui.js for the shared helpers.
"use strict";

(() => {
  const A = Aspen;
  const { el, $, setText, money, speed, ppm, short } = A;
  const STATUS = ["ok", "exit", "trap", "timeout", "memory-limit", "output-limit", "invalid-module", "missing-import", "fetch-failed"];
  const statusName = (s) => STATUS[s] ?? `status(${s})`;

  let info = null;       // last /v1/info
  let stops = [];        // pollers of the current view
  let balance = null;    // last /v1/balance (or null)
  let balanceErr = "";

  const isWorker = () => info && (info.role === "worker" || info.role === "both");
  const isConsumer = () => info && (info.role === "consumer" || info.role === "both");

  function stopAll() { for (const s of stops) s(); stops = []; }
  function poll(ms, fn) { stops.push(A.every(ms, fn)); }

  // ---- shell --------------------------------------------------------------

  function ready(first) {
    info = first;
    $("#nav").hidden = false;
    $("#who").hidden = false;
    for (const a of document.querySelectorAll("#nav a[data-tab]")) {
      const t = a.dataset.tab;
      a.hidden = (t === "consumer" && !isConsumer()) || (t === "worker" && !isWorker());
    }
    renderInfo();
    A.every(5000, async () => { info = await A.api("/v1/info"); renderInfo(); });
    window.addEventListener("hashchange", route);
    route();
  }

  function renderInfo() {
    setText("#role-badge", info.role);
    setText("#peer-id", short(info.peer_id, 12));
    $("#peer-id").title = info.peer_id;
    setText("#foot", `aspen-node API ${info.version} · peer ${info.peer_id}`);
    document.title = `Aspen ${info.role} ${short(info.peer_id, 6)}`;
    if (currentView === "worker") renderRating();
    if (currentView === "network") renderSelf();
  }

  let currentView = "";
  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    const parts = h.split("/").filter(Boolean);
    let view = parts[0] || (isConsumer() ? "consumer" : "worker");
    if ((view === "consumer" || view === "group") && !isConsumer()) view = "worker";
    if (view === "worker" && !isWorker()) view = isConsumer() ? "consumer" : "network";
    if (!["consumer", "group", "worker", "network"].includes(view)) view = isConsumer() ? "consumer" : "worker";
    stopAll();
    A.banner("");
    for (const v of document.querySelectorAll(".view")) v.hidden = true;
    for (const a of document.querySelectorAll("#nav a[data-tab]")) {
      a.classList.toggle("active", a.dataset.tab === view || (view === "group" && a.dataset.tab === "consumer"));
    }
    currentView = view;
    document.body.dataset.view = view;
    switch (view) {
      case "consumer": showConsumer(); break;
      case "group": showGroup(parts[1] || "", parts[2] === "results" ? "results" : "tasks"); break;
      case "worker": showWorker(); break;
      case "network": showNetwork(); break;
    }
  }

  function pollBalance(render) {
    poll(5000, async () => {
      try {
        balance = await A.api("/v1/balance");
        balanceErr = "";
      } catch (e) {
        if (e instanceof A.Unauthorized) throw e;
        balanceErr = e.message;
      }
      A.banner(balanceErr ? "The verifier's statement is unavailable: " + balanceErr : "");
      render();
    });
  }

  // ---- consumer ---------------------------------------------------------------

  const groupCards = new Map(); // id -> {key, node}

  function showConsumer() {
    $("#view-consumer").hidden = false;
    pollBalance(() => {
      setText("#c-balance", balance ? money(balance.Balance) : "–");
      setText("#c-escrow", balance ? money(balance.Escrow) : "–");
      setText("#c-spent", balance ? money(balance.Spent) : "–");
    });
    poll(1000, async () => renderGroups(await A.api("/v1/groups")));
  }

  function progressBar(g) {
    const n = Math.max(1, g.tasks);
    const seg = (cls, k) => { const s = el("span", { class: cls, title: `${k} ${cls}` }); s.style.width = (100 * k / n) + "%"; return s; };
    return el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": g.tasks, "aria-valuenow": g.verified + g.failed + g.canceled },
      seg("verified", g.verified), seg("fetching", g.fetching), seg("failed", g.failed), seg("canceled", g.canceled));
  }

  function groupName(g) { return g.name || "group " + short(g.id, 8); }

  function groupCard(g) {
    const done = g.verified + g.failed + g.canceled;
    return el("a", { class: "group", href: "#/group/" + g.id, dataset: { id: g.id, state: g.state } },
      el("div", { class: "row" },
        el("span", { class: "name" }, groupName(g)),
        A.stateSpan(g.state, g.state),
        el("span", { class: "meta" }, `${done} / ${g.tasks} done`),
        el("span", { class: "meta" }, `spent ${money(g.spent)}`),
        el("span", { class: "meta hide-sm" }, `max ${money(g.max_price)}/h · ${g.replicas} replicas · ${A.time(g.created)}`)),
      progressBar(g),
      el("div", { class: "counts" },
        el("span", {}, A.stateSpan("verified", `${g.verified} verified`)),
        g.fetching ? el("span", {}, A.stateSpan("fetching", `${g.fetching} fetching`)) : null,
        el("span", {}, A.stateSpan("pending", `${g.pending} pending`)),
        g.failed ? el("span", {}, A.stateSpan("failed", `${g.failed} failed`)) : null,
        g.canceled ? el("span", {}, A.stateSpan("canceled", `${g.canceled} canceled`)) : null,
        g.submitted < g.tasks && !g.error ? el("span", { class: "muted" }, `${g.submitted}/${g.tasks} submitted`) : null,
        g.error ? el("span", { class: "state failed wrap" }, g.error) : null));
  }

  function renderGroups(groups) {
    groups = groups || [];
    $("#groups-empty").hidden = groups.length > 0;
    setText("#c-running", String(groups.filter((g) => !g.done).length));
    const box = $("#groups");
    const nodes = groups.map((g) => {
      const key = JSON.stringify(g);
      const old = groupCards.get(g.id);
      if (old && old.key === key) return old.node;
      const node = groupCard(g);
      groupCards.set(g.id, { key, node });
      return node;
    });
    // Replace only what changed, keeping order (newest first).
    if (box.children.length !== nodes.length || nodes.some((n, i) => box.children[i] !== n)) box.replaceChildren(...nodes);
  }

  function headItem(label, value) {
    return el("div", { class: "item" }, el("div", { class: "label" }, label), el("div", { class: "v" }, value));
  }

  function showGroup(id, sub) {
    $("#view-group").hidden = false;
    document.body.dataset.group = id;
    for (const a of document.querySelectorAll("#g-tabs a")) {
      a.href = `#/group/${id}` + (a.dataset.sub === "results" ? "/results" : "");
      a.classList.toggle("active", a.dataset.sub === sub);
    }
    $("#g-tasks").hidden = sub !== "tasks";
    $("#g-results").hidden = sub !== "results";
    let group = null, tasksDone = false;
    poll(1000, async () => {
      try {
        group = await A.api("/v1/groups/" + encodeURIComponent(id));
      } catch (e) {
        if (e instanceof A.APIError) { A.banner(`Group ${id}: ${e.message}`); return; }
        throw e;
      }
      renderGroupHead(group);
      if (sub === "tasks" && !tasksDone) {
        renderTasks(await A.api(`/v1/groups/${encodeURIComponent(id)}/tasks`));
        tasksDone = group.done; // one last refresh once the group is done
      }
    });
    if (sub === "results") showResults(id, () => group);
    $("#task-filter").onchange = () => { tasksDone = false; lastTasks && renderTasks(lastTasks); };
  }

  function renderGroupHead(g) {
    setText("#g-title", groupName(g));
    const head = $("#g-head");
    head.dataset.state = g.state;
    head.replaceChildren(
      headItem("State", A.stateSpan(g.state, g.state)),
      headItem("Progress", `${g.verified + g.failed + g.canceled} / ${g.tasks}`),
      headItem("Verified", String(g.verified)),
      headItem("Failed", String(g.failed)),
      headItem("Spent", money(g.spent)),
      headItem("Max price", money(g.max_price) + "/h"),
      headItem("Min speed", speed(g.min_speed)),
      headItem("Replicas", String(g.replicas)),
      headItem("Timeout", A.duration(g.timeout_ms)),
      headItem("Created", A.time(g.created)),
      headItem("Module", el("code", { title: g.module }, short(g.module, 12))),
      headItem("Group ID", el("code", {}, g.id)));
    const wrap = el("div", { class: "item" }, progressBar(g));
    wrap.style.flexBasis = "100%";
    head.append(wrap);
    if (g.error) head.append(el("div", { class: "item" }, el("span", { class: "state failed wrap" }, g.error)));
  }

  let lastTasks = null;
  const MAX_ROWS = 500;
  function renderTasks(tasks) {
    lastTasks = tasks || [];
    const f = $("#task-filter").value;
    const shown = lastTasks.filter((t) => !f || t.state === f);
    setText("#task-count", `${shown.length} of ${lastTasks.length} tasks` + (shown.length > MAX_ROWS ? ` (first ${MAX_ROWS} shown)` : ""));
    const rows = shown.slice(0, MAX_ROWS).map((t) => {
      let outcome = "–";
      if (t.state === "verified" || t.state === "fetching") outcome = A.stateSpan(t.status === 0 ? "ok" : "warn", statusName(t.status));
      else if (t.reason) outcome = el("span", { class: t.state === "failed" ? "state failed wrap" : "muted" }, t.reason);
      return el("tr", { class: "task", dataset: { index: t.index, state: t.state } },
        el("td", { class: "num" }, String(t.index)),
        el("td", {}, A.stateSpan(t.state)),
        el("td", {}, outcome),
        el("td", { class: "num" }, t.state === "verified" || t.state === "fetching" ? String(t.exit_code) : "–"),
        el("td", { class: "num" }, t.replicas ? String(t.replicas) : "–"),
        el("td", { class: "num" }, money(t.charged)),
        el("td", {}, t.result ? el("code", { class: "cid", title: t.result }, short(t.result, 10)) : "–"),
        el("td", {}, A.time(t.updated)));
    });
    A.fillTable($("#task-table"), rows, "No tasks match.");
  }

  function showResults(id, groupNow) {
    const box = $("#results"), more = $("#results-more");
    const PAGE = 50;
    let loaded = 0;
    box.replaceChildren();
    const load = async (from, limit) => {
      const rs = await A.api(`/v1/groups/${encodeURIComponent(id)}/results?from=${from}&limit=${limit}`);
      return rs || [];
    };
    const render = (rs, append) => {
      const nodes = rs.map(resultCard);
      if (append) box.append(...nodes); else box.replaceChildren(...nodes);
    };
    more.onclick = async () => {
      const rs = await load(loaded, PAGE);
      loaded += rs.length;
      render(rs, true);
      more.hidden = rs.length < PAGE;
    };
    poll(2000, async () => {
      const g = groupNow();
      const rs = await load(0, Math.max(PAGE, loaded));
      loaded = rs.length;
      render(rs, false);
      more.hidden = !g || loaded >= g.tasks;
      if (!rs.length) box.replaceChildren(el("p", { class: "muted" }, "No results yet."));
      if (g && g.done) stopAll(); // final: keep what is shown
    });
  }

  function resultCard(r) {
    const stdout = A.decodeB64(r.stdout), stderr = A.decodeB64(r.stderr);
    const ok = r.state === "verified" && r.status === "ok";
    return el("div", { class: "result", dataset: { index: r.index, state: r.state } },
      el("div", { class: "head" },
        el("strong", {}, `#${r.index}`),
        A.stateSpan(r.state),
        r.status ? A.stateSpan(ok ? "ok" : "bad", r.status + (r.exit_code ? ` (exit ${r.exit_code})` : "")) : null,
        r.charged ? el("span", { class: "muted" }, "charged " + money(r.charged)) : null,
        r.reason ? el("span", { class: "muted" }, r.reason) : null,
        r.message ? el("span", { class: "muted" }, r.message) : null),
      r.state === "verified" ? el("pre", { class: "stdout" }, stdout || "(no output)") : null,
      stderr ? el("pre", { class: "stderr" }, stderr) : null);
  }

  // ---- worker -------------------------------------------------------------------

  function showWorker() {
    $("#view-worker").hidden = false;
    renderRating();
    pollBalance(() => {
      setText("#w-earned", balance ? money(balance.Earned) : "–");
      setText("#w-pending", balance ? money(balance.Pending) : "–");
      setText("#w-paid", balance ? money(balance.PaidOut) : "–");
    });
    poll(2000, async () => renderJobs(await A.api("/v1/jobs?limit=20000")));
  }

  function renderRating() {
    const r = info && info.rating;
    setText("#r-price", info ? money(info.min_price || 0) : "–");
    setText("#r-slots", info && info.slots ? `${info.slots} slot${info.slots === 1 ? "" : "s"}` : "");
    $("#r-speed").classList.toggle("small", !r);
    if (!r) {
      setText("#r-speed", "not rated yet");
      for (const id of ["#r-rel", "#r-strikes", "#r-exp"]) setText(id, "–");
      setText("#r-ppm", "benchmarking with the verifier");
      setText("#r-issued", "");
      return;
    }
    setText("#r-speed", speed(r.Speed));
    setText("#r-rel", ppm(r.ReliabilityPPM));
    setText("#r-ppm", `${r.ReliabilityPPM.toLocaleString()} ppm`);
    setText("#r-strikes", String(r.Strikes));
    setText("#r-exp", A.relative(r.Expires));
    $("#r-exp").title = new Date(r.Expires).toString();
    setText("#r-issued", "issued " + A.relative(r.Issued));
  }

  function renderJobs(jobs) {
    jobs = jobs || []; // newest first
    setText("#w-jobs", jobs.length >= 20000 ? "20000+" : String(jobs.length));
    $("#jobs-empty").hidden = jobs.length > 0;
    $("#job-table").parentElement.hidden = jobs.length === 0;
    const asc = jobs.slice().sort((a, b) => a.finished - b.finished);
    let sum = 0;
    const pts = asc.map((j) => ({ x: j.finished, y: (sum += j.value) }));
    A.chart($("#chart-earnings"), "line", pts, { yfmt: (v) => money(Math.round(v)), xmax: Date.now(), label: "cumulative earnings", empty: "No jobs yet" });
    const MIN = 60000, end = Math.floor(Date.now() / MIN) * MIN;
    let span = 10;
    if (asc.length) span = Math.min(60, Math.max(10, Math.ceil((end - asc[0].finished) / MIN) + 1));
    const bins = [];
    for (let i = span - 1; i >= 0; i--) bins.push({ x: end - i * MIN, y: 0 });
    for (const j of asc) {
      const k = Math.floor(j.finished / MIN) * MIN;
      const idx = span - 1 - (end - k) / MIN;
      if (idx >= 0 && idx < span) bins[idx].y++;
    }
    A.chart($("#chart-throughput"), "bar", asc.length ? bins : [], { yfmt: (v) => String(Math.round(v * 10) / 10), step: MIN, label: "jobs per minute", empty: "No jobs yet" });
    const rows = jobs.slice(0, 200).map((j) => el("tr", { class: "job", dataset: { group: j.group, index: j.index } },
      el("td", {}, A.time(j.finished)),
      el("td", {}, el("code", { title: j.group }, short(j.group, 8)), ` #${j.index}`, j.replica ? el("span", { class: "muted" }, ` r${j.replica}`) : null),
      el("td", {}, el("code", { title: j.consumer }, short(j.consumer, 8))),
      el("td", {}, A.stateSpan(j.status === 0 ? "ok" : "warn", j.status_text || statusName(j.status)), j.exit_code ? ` (exit ${j.exit_code})` : ""),
      el("td", { class: "num" }, A.duration(j.exec_micros / 1000)),
      el("td", { class: "num" }, money(j.price)),
      el("td", { class: "num" }, money(j.value))));
    A.fillTable($("#job-table"), rows, "No jobs yet.");
  }

  // ---- network -----------------------------------------------------------------

  function showNetwork() {
    $("#view-network").hidden = false;
    renderSelf();
    poll(3000, async () => {
      const [peers, offers] = await Promise.all([A.api("/v1/peers"), A.api("/v1/offers")]);
      renderSelf(); // info is refreshed every 5 s: reachability changes show
      renderPeers(peers || []);
      renderOffers(offers || []);
    });
  }

  function renderSelf() {
    setText("#n-verifier", short(info.verifier, 12));
    $("#n-verifier").title = info.verifier;
    const kv = (k, v) => el("tr", {}, el("th", {}, k), el("td", {}, v));
    const rows = [kv("Peer ID", el("code", {}, info.peer_id)), kv("Role", info.role), kv("Verifier", el("code", {}, info.verifier)),
      kv("Listening", el("div", {}, ...(info.addrs || []).map((a) => el("div", {}, el("code", {}, a)))))];
    const nw = info.network || {};
    const reach = nw.status === "public" ? "public: peers dial it directly"
      : nw.status === "private" && nw.inbound === "relayed" ? "behind NAT: peers reach it through a relay"
      : nw.status === "private" ? "behind NAT, no relay slot yet: peers cannot reach it"
      : "not determined yet";
    rows.push(kv("Reachability", reach + (nw.verifier_path ? "; verifier connection: " + nw.verifier_path : "")));
    if ((nw.relays || []).length) rows.push(kv("Relayed addresses", el("div", {}, ...nw.relays.map((a) => el("div", {}, el("code", {}, a))))));
    if (isWorker()) rows.push(kv("Minimum price", money(info.min_price || 0) + " per hour"), kv("Slots", String(info.slots || 1)));
    $("#self-table").tBodies[0].replaceChildren(...rows);
  }

  function renderPeers(peers) {
    setText("#n-peers", String(peers.length));
    peers.sort((a, b) => a.id.localeCompare(b.id));
    A.fillTable($("#peer-table"), peers.map((p) => el("tr", { class: "peer" },
      el("td", {}, el("code", { title: p.id }, short(p.id, 12)), p.id === info.verifier ? el("span", { class: "badge" }, " verifier") : null),
      el("td", {}, ...(p.addrs || []).map((a) => el("div", {}, el("code", {}, a)))))), "Not connected to any peer.");
  }

  function renderOffers(offers) {
    setText("#n-offers", String(offers.length));
    offers.sort((a, b) => a.min_price - b.min_price || a.worker.localeCompare(b.worker));
    A.fillTable($("#offer-table"), offers.map((o) => el("tr", { class: "offer" },
      el("td", {}, el("code", { title: o.worker }, short(o.worker, 12)), o.worker === info.peer_id ? el("span", { class: "muted" }, " (this node)") : null),
      el("td", { class: "num" }, money(o.min_price)),
      el("td", { class: "num" }, o.rating ? speed(o.rating.Speed) : "unrated"),
      el("td", { class: "num" }, o.rating ? ppm(o.rating.ReliabilityPPM) : "–"),
      el("td", { class: "num" }, o.rating ? String(o.rating.Strikes) : "–"),
      el("td", { class: "num" }, String(o.slots)),
      el("td", { class: "num" }, String(o.capacity)),
      el("td", {}, A.relative(o.seen)))), "No offers seen yet.");
  }

  A.start({ infoPath: "/v1/info", ready });
})();

// GrokProxy admin console. Plain browser JavaScript, no build step.
//
// The admin key lives in sessionStorage only and travels in the
// Authorization header of each /admin call. Every value from the API is
// put into the page with textContent or attributes, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "grokproxy.adminKey";
  const PAGES = ["overview", "sessions", "users", "requests", "audit"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (sel, root = document) => root.querySelector(sel);

  // el builds an element: attrs sets attributes (on* keys add listeners,
  // "text" sets textContent), children are nodes or strings.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  // ---- state and API -------------------------------------------------

  const state = { users: new Map(), refreshTimer: null };

  function adminKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + adminKey() };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new APIError(0, "The gateway could not be reached: " + err.message);
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (res.status === 401 || res.status === 403) {
      signOut("The admin key was rejected (HTTP " + res.status + "). Sign in again.");
      throw new APIError(res.status, "signed out");
    }
    if (!res.ok) {
      const msg = data && data.error && data.error.message ? data.error.message : "HTTP " + res.status;
      throw new APIError(res.status, msg);
    }
    return data;
  }

  // ---- messages ------------------------------------------------------

  function announce(text) { $("#status").textContent = text; }

  function showError(err) {
    if (err instanceof APIError && err.message === "signed out") return;
    const box = $("#alert");
    box.textContent = err.message || String(err);
    box.hidden = false;
  }

  function clearError() { $("#alert").hidden = true; $("#alert").textContent = ""; }

  // run performs an action with its button disabled and reports errors.
  async function run(button, fn) {
    clearError();
    if (button) button.disabled = true;
    try {
      await fn();
    } catch (err) {
      showError(err);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // settleConfirm resolves the promise of the open confirmation, if any.
  let settleConfirm = null;

  function answerConfirm(ok) {
    const settle = settleConfirm;
    settleConfirm = null;
    if (settle) settle(ok);
  }

  // watchConfirm resolves the open confirmation from the submit and cancel
  // events, which fire at once. The browser queues the close event, so a close
  // event can arrive after the dialog was opened again for a new confirmation.
  function watchConfirm() {
    const dialog = $("#confirm");
    const form = dialog.querySelector("form");
    form.addEventListener("submit", (e) => answerConfirm(e.submitter?.value === "ok"));
    dialog.addEventListener("cancel", () => answerConfirm(false));
    dialog.addEventListener("close", () => { if (!dialog.open) answerConfirm(false); });
  }

  // confirmAction opens the modal dialog and resolves to true on OK.
  function confirmAction(title, text, okLabel) {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel || "Confirm";
    answerConfirm(false);
    return new Promise((resolve) => {
      settleConfirm = resolve;
      dialog.showModal();
      $("#confirm-cancel").focus();
    });
  }

  // ---- formatting ----------------------------------------------------

  const numberFormat = new Intl.NumberFormat();

  function fmtTime(iso) {
    if (!iso) return "never";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function fmtAgo(iso) {
    if (!iso) return "never";
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return s <= 1 ? "just now" : s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function fmtMS(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function fmtPercent(x) { return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%"; }

  function timeCell(iso) {
    return el("td", {}, iso ? el("time", { datetime: iso, title: fmtTime(iso), text: fmtAgo(iso) }) : "never");
  }

  function statusClass(status) {
    switch (status) {
      case "healthy": case "closed": case "ok": return "ok";
      case "resting": case "half-open": case "half_open": case "quarantined": return "warn";
      case "expired": case "revoked": case "open": case "error": return "bad";
      default: return "neutral";
    }
  }

  function keyBadge(revoked, expiring) {
    if (revoked) return badge("revoked", "bad");
    if (expiring) return badge("expiring", "warn");
    return badge("active", "ok");
  }

  function httpStatusClass(status) {
    if (status < 400) return "ok";
    if (status === 429) return "warn";
    return "bad";
  }

  function badge(text, kind) { return el("span", { class: "badge " + (kind || statusClass(text)), text }); }

  function userLabel(id) {
    if (!id) return "–";
    const u = state.users.get(id);
    return u ? u.name : id;
  }

  function table(caption, headers, rows, emptyText, attrs = {}) {
    const head = el("tr", {}, headers.map((h) =>
      el("th", { scope: "col", class: h.num ? "num" : null, text: h.label || h })));
    // Phones show each row as a block; data-label names each cell there.
    for (const row of rows) {
      [...row.children].forEach((cell, i) => { if (headers[i]) cell.dataset.label = headers[i].label || headers[i]; });
    }
    const body = el("tbody", {}, rows.length ? rows
      : el("tr", { class: "empty" }, el("td", { colspan: headers.length, text: emptyText })));
    return el("div", { class: "table-wrap", role: "region", "aria-label": caption, tabindex: "0" },
      el("table", attrs, el("caption", { class: "visually-hidden", text: caption }), el("thead", {}, head), body));
  }

  function field(label, input, hint) {
    const id = input.id || "f-" + Math.random().toString(36).slice(2);
    input.id = id;
    return el("div", { class: "field" }, el("label", { for: id }, label, hint ? el("span", { class: "hint", text: " " + hint }) : null), input);
  }

  async function loadUsers() {
    const res = await api("GET", "/admin/users");
    state.users = new Map(res.data.map((u) => [u.id, u]));
    return res.data;
  }

  // ---- sign in and routing ------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    state.users = new Map();
    stopRefresh();
    $("#page").replaceChildren();
    if (message) showError(new Error(message));
    showSignIn();
  }

  function showSignIn() {
    $("#nav").hidden = true;
    $("#signout").hidden = true;
    $("#signin").hidden = false;
    $("#signin-key").value = "";
    $("#signin-key").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("#signin-key");
    const key = input.value.trim();
    input.value = "";
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    const button = event.submitter || $("#signin-form button");
    await run(button, async () => {
      await api("GET", "/admin/stats");
      announce("Signed in.");
      if (!location.hash || location.hash === "#/") location.hash = "#/overview";
      else route();
    });
  }

  function currentPage() {
    const name = location.hash.replace(/^#\/?/, "").split("?")[0];
    return PAGES.includes(name) ? name : "overview";
  }

  function stopRefresh() {
    if (state.refreshTimer) clearInterval(state.refreshTimer);
    state.refreshTimer = null;
  }

  async function route() {
    stopRefresh();
    if (!adminKey()) { showSignIn(); return; }
    $("#signin").hidden = true;
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    const page = currentPage();
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.page === page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    clearError();
    announce("");
    const root = el("div", { id: "page-" + page });
    $("#page").replaceChildren(root);
    document.title = $("#nav a[data-page='" + page + "']").textContent + " · GrokProxy console";
    try {
      await renderers[page](root);
    } catch (err) {
      showError(err);
    }
  }

  // ---- charts ----------------------------------------------------------

  // barChart draws one or two bar series per minute as SVG.
  function barChart(label, minutes, series) {
    const W = 600, H = 180, L = 36, B = 22, T = 8;
    const maxV = Math.max(1, ...minutes.map((m) => Math.max(...series.map((s) => m[s.key] || 0))));
    const plotW = W - L - 6, plotH = H - B - T;
    const step = plotW / minutes.length;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    for (const frac of [0, 0.5, 1]) {
      const y = T + plotH * (1 - frac);
      root.append(svg("line", { class: frac ? "grid-line" : "axis", x1: L, x2: W - 6, y1: y, y2: y }));
      root.append(svg("text", { class: "label", x: L - 4, y: y + 4, "text-anchor": "end" }, String(Math.round(maxV * frac))));
    }
    minutes.forEach((m, i) => {
      series.forEach((s, j) => {
        const v = m[s.key] || 0;
        if (!v) return;
        const h = (v / maxV) * plotH;
        const w = Math.max(1, step / series.length - 1);
        root.append(svg("rect", { class: s.cls, x: L + i * step + j * w, y: T + plotH - h, width: w, height: h }));
      });
    });
    axisLabels(root, minutes, L, step, H);
    return root;
  }

  // lineChart draws latency lines; gaps are minutes without data.
  function lineChart(label, minutes, series) {
    const W = 600, H = 180, L = 48, B = 22, T = 8;
    const values = minutes.flatMap((m) => series.map((s) => m[s.key] || 0));
    const maxV = Math.max(1, ...values);
    const plotW = W - L - 6, plotH = H - B - T;
    const step = plotW / minutes.length;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    for (const frac of [0, 0.5, 1]) {
      const y = T + plotH * (1 - frac);
      root.append(svg("line", { class: frac ? "grid-line" : "axis", x1: L, x2: W - 6, y1: y, y2: y }));
      root.append(svg("text", { class: "label", x: L - 4, y: y + 4, "text-anchor": "end" }, fmtMS(Math.round(maxV * frac))));
    }
    for (const s of series) {
      let d = "", pen = "M";
      minutes.forEach((m, i) => {
        const v = m[s.key];
        if (v === null || v === undefined) { pen = "M"; return; }
        const x = L + i * step + step / 2, y = T + plotH - (v / maxV) * plotH;
        d += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
        pen = "L";
        // A dot per minute keeps a lone minute visible.
        root.append(svg("circle", { class: s.cls + " dot", cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5 }));
      });
      if (d) root.append(svg("path", { class: s.cls, d }));
    }
    axisLabels(root, minutes, L, step, H);
    return root;
  }

  function axisLabels(root, minutes, L, step, H) {
    const last = minutes.length - 1;
    for (const i of [0, 30, last]) {
      if (!minutes[i]) continue;
      const t = new Date(minutes[i].start).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
      let x = L + i * step, anchor = "middle";
      if (i === 0) anchor = "start";
      if (i === last) { x = L + (i + 1) * step; anchor = "end"; }
      root.append(svg("text", { class: "label", x, y: H - 6, "text-anchor": anchor }, t));
    }
  }

  function legend(items) {
    return el("div", { class: "legend", "aria-hidden": "true" }, items.map(([cls, text]) => el("span", { class: cls, text })));
  }

  // ---- overview --------------------------------------------------------

  async function renderOverview(root) {
    root.append(el("h1", { text: "Overview" }));
    const body = el("div");
    const refresh = el("button", { type: "button", class: "secondary", id: "overview-refresh", text: "Refresh" });
    root.append(el("div", { class: "actions" }, refresh), body);
    const load = async () => {
      const [summary, stats] = await Promise.all([api("GET", "/admin/metrics/summary"), api("GET", "/admin/stats")]);
      body.replaceChildren(...overviewCards(summary, stats));
      announce("Overview updated at " + new Date().toLocaleTimeString() + ".");
    };
    refresh.addEventListener("click", () => run(refresh, load));
    await load();
    state.refreshTimer = setInterval(() => { if (!document.hidden) load().catch(showError); }, 30000);
  }

  function overviewCards(summary, stats) {
    const ttft = summary.first_token_ms;
    const figures = el("div", { class: "grid" },
      el("div", { class: "card", id: "card-requests" }, el("h2", { text: "Requests, last hour" }),
        el("div", { class: "figure", text: numberFormat.format(summary.requests) })),
      el("div", { class: "card", id: "card-errors" }, el("h2", { text: "Errors, last hour" }),
        el("div", { class: "figure" }, numberFormat.format(summary.errors), " ",
          el("small", { text: summary.requests ? fmtPercent(summary.error_rate) + " of requests" : "" }))),
      el("div", { class: "card", id: "card-ttft" }, el("h2", { text: "Time to first token" }),
        el("dl", { class: "pairs" },
          el("dt", { text: "median" }), el("dd", { text: fmtMS(ttft.p50) }),
          el("dt", { text: "p90" }), el("dd", { text: fmtMS(ttft.p90) }),
          el("dt", { text: "p99" }), el("dd", { text: fmtMS(ttft.p99) }),
          el("dt", { text: "samples" }), el("dd", { text: numberFormat.format(ttft.count) }))));

    const statuses = Object.entries(stats.sessions || {});
    const sessions = el("div", { class: "card", id: "card-sessions" }, el("h2", { text: "Sessions by status" }),
      el("dl", { class: "pairs" }, statuses.flatMap(([k, n]) => [el("dt", {}, badge(k)), el("dd", { text: String(n) })]),
        el("dt", { text: "usable now" }), el("dd", { text: String(stats.usable ?? "–") })));

    const circuitRows = Object.entries(stats.circuits || {}).map(([provider, st]) => {
      const reset = el("button", { type: "button", class: "small secondary", text: "Reset", "aria-label": "Reset circuit of " + provider });
      reset.addEventListener("click", async () => {
        if (!await confirmAction("Reset circuit", `Close the circuit breaker of ${provider}? Requests go upstream again at once.`, "Reset")) return;
        await run(reset, async () => {
          await api("POST", "/admin/circuit/reset", { provider });
          announce(`Circuit of ${provider} reset.`);
          await route();
        });
      });
      return el("tr", {}, el("td", { text: provider }), el("td", {}, badge(st)), el("td", {}, reset));
    });
    const circuits = el("div", { class: "card", id: "card-circuits" }, el("h2", { text: "Circuit breakers" }),
      table("Circuit breakers", ["Provider", "State", "Action"], circuitRows, "No providers."));

    const since = "since " + fmtTime(summary.since);
    const charts = el("div", { class: "grid wide" },
      el("div", { class: "card chart" }, el("h2", { text: "Requests and errors per minute" }),
        barChart(`Requests and errors per minute over the last hour: ${summary.requests} requests, ${summary.errors} errors`,
          summary.minutes, [{ key: "requests", cls: "bar-1" }, { key: "errors", cls: "bar-2" }]),
        legend([["key-1", "requests"], ["key-2", "errors"]]), el("p", { class: "hint", text: since })),
      el("div", { class: "card chart" }, el("h2", { text: "Time to first token per minute" }),
        lineChart(`Time to first token per minute; median over the hour ${fmtMS(ttft.p50)}`,
          summary.minutes, [{ key: "first_token_p50_ms", cls: "line-1" }, { key: "first_token_p95_ms", cls: "line-2" }]),
        legend([["key-1", "median"], ["key-3", "p95"]]), el("p", { class: "hint", text: since })));
    return [figures, charts, el("div", { class: "grid wide" }, sessions, circuits)];
  }

  // ---- sessions --------------------------------------------------------

  async function renderSessions(root) {
    root.append(el("h1", { text: "Sessions" }));

    const provider = el("select", { id: "session-provider", name: "provider" },
      el("option", { value: "grok", text: "Grok web (cookie)" }), el("option", { value: "xai", text: "xAI API key" }));
    const creds = el("textarea", { id: "session-credentials", name: "credentials", required: true, spellcheck: "false",
      autocomplete: "off", autocapitalize: "off", placeholder: "sso=…" });
    const label = el("input", { id: "session-label", name: "label", maxlength: "200", autocomplete: "off" });
    const add = el("button", { type: "submit", id: "session-add", text: "Add" });
    const results = el("div", { id: "session-add-results", "aria-live": "polite" });
    const form = el("form", { class: "stack", autocomplete: "off" },
      field("Provider", provider),
      field("Credentials", creds, "one per line: cookie text for Grok web, API key for xAI"),
      field("Label", label, "optional, applied to each"),
      el("div", { class: "actions" }, add), results);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      run(add, () => addSessions(provider.value, creds, label.value.trim(), results, list));
    });
    root.append(el("details", { class: "card", id: "session-add-panel", open: true },
      el("summary", {}, el("h2", { class: "visually-hidden", text: "Add sessions" }), "Add one session or paste many"), form));

    const filter = el("select", { id: "session-filter" },
      ["", "healthy", "resting", "quarantined", "expired", "revoked"].map((s) => el("option", { value: s, text: s || "all" })));
    const list = el("div", { id: "sessions-list" });
    root.append(el("div", { class: "card" },
      el("form", { class: "inline", role: "search" }, field("Status", filter)), el("br"), list));
    filter.addEventListener("change", () => run(null, () => loadSessions(list, filter.value)));
    list.dataset.filter = "";
    await loadSessions(list, "");
  }

  async function addSessions(provider, creds, label, results, list) {
    const lines = creds.value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    if (!lines.length) throw new Error("Enter at least one credential.");
    const item = (text) => {
      const s = { provider };
      if (provider === "xai") s.api_key = text; else s.cookie_text = text;
      if (label) s.label = label;
      return s;
    };
    let added = 0;
    const failures = [];
    if (lines.length === 1) {
      await api("POST", "/admin/sessions", item(lines[0]));
      added = 1;
    } else {
      const res = await api("POST", "/admin/sessions", { sessions: lines.map(item) });
      for (const r of res.data) {
        if (r.error) failures.push(`Line ${r.index + 1}: ${r.error.message}`);
        else added++;
      }
    }
    // Credentials leave the page once sent.
    creds.value = "";
    results.replaceChildren(el("p", { text: `Added ${added} of ${lines.length}.` }),
      failures.length ? el("ul", {}, failures.map((f) => el("li", { text: f }))) : "");
    announce(`Added ${added} session${added === 1 ? "" : "s"}.`);
    await loadSessions(list, list.dataset.filter || "");
  }

  async function loadSessions(list, status, after) {
    list.dataset.filter = status;
    const q = new URLSearchParams({ limit: "100" });
    if (status) q.set("status", status);
    if (after) q.set("after", after);
    const res = await api("GET", "/admin/sessions?" + q);
    const rows = res.data.map((s) => sessionRow(s, list));
    const headers = ["Session", "Provider", "Status", "Reason", { label: "Failure rate", num: true },
      "Remaining quota", "Last used", "Actions"];
    const more = res.next_cursor
      ? el("button", { type: "button", class: "secondary", text: "Next page",
        onclick: (e) => run(e.currentTarget, () => loadSessions(list, status, res.next_cursor)) })
      : null;
    list.replaceChildren(table("Sessions", headers, rows, "No sessions match.", { id: "sessions-table" }),
      more ? el("div", { class: "actions" }, more) : "");
  }

  function quotaText(quota) {
    const parts = Object.entries(quota || {}).map(([model, q]) => `${model}: ${q.remaining}/${q.total}`);
    return parts.length ? parts.join(", ") : "unknown";
  }

  function sessionRow(s, list) {
    const name = s.label || s.id;
    const shown = s.resting && s.status === "healthy" ? "resting" : s.status;
    const act = (action, text, cls, fn, question) => el("button", {
      type: "button", class: "small " + cls, "data-action": action, "aria-label": `${text} ${name}`, text,
      onclick: async (e) => {
        const button = e.currentTarget;
        if (!await confirmAction(text + " session", question, text)) return;
        await run(button, async () => {
          await fn();
          announce(`${text}: ${name} done.`);
          await loadSessions(list, list.dataset.filter || "");
        });
      },
    });
    const actions = [];
    if (s.status === "healthy") {
      actions.push(act("quarantine", "Quarantine", "secondary",
        () => api("PATCH", `/admin/sessions/${encodeURIComponent(s.id)}/quarantine`, { reason: "admin console" }),
        `Take ${name} out of rotation? The health check keeps probing it.`));
    } else {
      actions.push(act("activate", "Activate", "secondary",
        () => api("PATCH", `/admin/sessions/${encodeURIComponent(s.id)}/activate`),
        `Put ${name} back into rotation?`));
    }
    actions.push(act("probe", "Probe", "secondary",
      () => api("POST", `/admin/sessions/${encodeURIComponent(s.id)}/probe`),
      `Send a quota probe upstream with ${name} now?`));
    actions.push(act("delete", "Delete", "danger",
      () => api("DELETE", `/admin/sessions/${encodeURIComponent(s.id)}`),
      `Delete ${name} and its stored credential? This cannot be undone.`));
    return el("tr", { "data-id": s.id, "data-status": s.status },
      el("td", {}, el("div", { text: s.label || "(no label)" }), el("code", { text: s.id })),
      el("td", { text: s.provider }),
      el("td", {}, badge(shown)),
      el("td", { text: s.status_reason || s.last_reason || "" }),
      el("td", { class: "num", text: fmtPercent(s.failure_rate || 0) }),
      el("td", { text: quotaText(s.quota) }),
      timeCell(s.last_used_at),
      el("td", {}, el("div", { class: "actions" }, actions)));
  }

  // ---- users and keys -------------------------------------------------

  async function renderUsers(root) {
    root.append(el("h1", { text: "Users and keys" }));
    const name = el("input", { id: "user-name", name: "name", required: true, maxlength: "200", autocomplete: "off" });
    const role = el("select", { id: "user-role" }, el("option", { value: "user", text: "user" }), el("option", { value: "admin", text: "admin" }));
    const rate = el("input", { id: "user-rate", type: "number", min: "1", inputmode: "numeric" });
    const create = el("button", { type: "submit", id: "user-create", text: "Create user" });
    const form = el("form", { class: "inline", autocomplete: "off" },
      field("Name", name), field("Role", role), field("Requests per minute", rate, "blank: gateway default"), create);
    const list = el("div", { id: "users-list" });
    const detail = el("div", { id: "user-detail" });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      run(create, async () => {
        const body = { name: name.value.trim(), role: role.value };
        if (rate.value) body.rate_limit_per_minute = Number(rate.value);
        const u = await api("POST", "/admin/users", body);
        name.value = ""; rate.value = "";
        announce(`User ${u.name} created.`);
        await loadUserList(list, detail);
        await showUser(detail, u.id, list);
      });
    });
    root.append(el("div", { class: "card" }, el("h2", { text: "Create a user" }), form), el("div", { class: "card" }, list), detail);
    await loadUserList(list, detail);
  }

  async function loadUserList(list, detail) {
    const users = await loadUsers();
    const rows = users.map((u) => el("tr", { "data-id": u.id },
      el("td", {}, el("div", { text: u.name }), el("code", { text: u.id })),
      el("td", { text: u.role }),
      el("td", {}, badge(u.active ? "active" : "inactive", u.active ? "ok" : "neutral")),
      el("td", { class: "num", text: u.rate_limit_per_minute ?? "default" }),
      el("td", {}, el("button", { type: "button", class: "small secondary", "data-action": "open-user",
        "aria-label": "Keys and limits of " + u.name, text: "Keys and limits",
        onclick: (e) => run(e.currentTarget, () => showUser(detail, u.id, list)) }))));
    list.replaceChildren(table("Users", ["User", "Role", "Status", { label: "Requests per minute", num: true }, "Actions"],
      rows, "No users yet.", { id: "users-table" }));
  }

  async function showUser(detail, id, list) {
    const [u, keys] = await Promise.all([api("GET", `/admin/users/${encodeURIComponent(id)}`),
      api("GET", `/admin/users/${encodeURIComponent(id)}/keys`)]);
    const secretSlot = el("div", { id: "new-key-slot" });

    const rate = el("input", { id: "limit-rate", type: "number", min: "1", inputmode: "numeric", value: u.rate_limit_per_minute ?? "" });
    const conc = el("input", { id: "limit-concurrency", type: "number", min: "0", inputmode: "numeric", value: u.max_concurrent_per_key });
    const models = el("input", { id: "limit-models", value: (u.models || []).join(", "), autocomplete: "off" });
    const active = el("input", { id: "limit-active", type: "checkbox", checked: u.active });
    const save = el("button", { type: "submit", id: "limit-save", text: "Save limits" });
    const limits = el("form", { class: "inline", autocomplete: "off" },
      field("Requests per minute", rate, "blank: default"), field("In-flight per key", conc, "0: no cap"),
      field("Models", models, "comma-separated; blank: all"),
      el("div", { class: "field" }, el("label", { for: "limit-active" }, "Active"), active), save);
    limits.addEventListener("submit", (e) => {
      e.preventDefault();
      run(save, async () => {
        await api("PATCH", `/admin/users/${encodeURIComponent(id)}`, {
          rate_limit_per_minute: rate.value ? Number(rate.value) : null,
          max_concurrent_per_key: Number(conc.value || 0),
          models: models.value.split(",").map((m) => m.trim()).filter(Boolean),
          active: active.checked,
        });
        announce(`Limits of ${u.name} saved.`);
        await loadUserList(list, detail);
        await showUser(detail, id, list);
      });
    });

    const keyName = el("input", { id: "key-name", maxlength: "200", autocomplete: "off" });
    const createKey = el("button", { type: "submit", id: "key-create", text: "Create key" });
    const keyForm = el("form", { class: "inline", autocomplete: "off" }, field("Key name", keyName, "optional"), createKey);
    keyForm.addEventListener("submit", (e) => {
      e.preventDefault();
      run(createKey, async () => {
        const k = await api("POST", `/admin/users/${encodeURIComponent(id)}/keys`, keyName.value.trim() ? { name: keyName.value.trim() } : undefined);
        keyName.value = "";
        await reloadKeys();
        revealKey(secretSlot, k);
      });
    });

    const keyList = el("div", { id: "keys-list" });
    const reloadKeys = async () => {
      const res = await api("GET", `/admin/users/${encodeURIComponent(id)}/keys`);
      renderKeys(keyList, res.data, secretSlot, reloadKeys);
    };
    renderKeys(keyList, keys.data, secretSlot, reloadKeys);

    const del = el("button", { type: "button", class: "danger", id: "user-delete", text: "Delete user",
      onclick: async (e) => {
        const button = e.currentTarget;
        if (!await confirmAction("Delete user", `Delete ${u.name} and revoke all of their keys?`, "Delete")) return;
        await run(button, async () => {
          await api("DELETE", `/admin/users/${encodeURIComponent(id)}`);
          announce(`User ${u.name} deleted.`);
          detail.replaceChildren();
          await loadUserList(list, detail);
        });
      } });

    detail.replaceChildren(el("section", { class: "card", "aria-labelledby": "user-detail-title", "data-user": id },
      el("h2", { id: "user-detail-title", tabindex: "-1", text: `${u.name} (${u.role})` }),
      secretSlot,
      el("h3", { text: "Limits" }), limits,
      el("h3", { text: "API keys" }), keyForm, el("br"), keyList,
      el("h3", { text: "Danger zone" }), del));
    $("#user-detail-title").focus();
  }

  function renderKeys(keyList, keys, secretSlot, reloadKeys) {
    const rows = keys.map((k) => {
      const revoked = !!k.revoked_at;
      const expiring = !revoked && k.expires_at;
      const label = k.name || k.prefix;
      const actions = revoked ? [] : [
        el("button", { type: "button", class: "small secondary", "data-action": "rotate", "aria-label": "Rotate key " + label, text: "Rotate",
          onclick: async (e) => {
            const button = e.currentTarget;
            if (!await confirmAction("Rotate key", `Create a replacement for ${label}? The old key keeps working for one hour.`, "Rotate")) return;
            await run(button, async () => {
              const nk = await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/rotate`, { request_id: crypto.randomUUID() });
              await reloadKeys();
              revealKey(secretSlot, nk);
            });
          } }),
        el("button", { type: "button", class: "small danger", "data-action": "revoke", "aria-label": "Revoke key " + label, text: "Revoke",
          onclick: async (e) => {
            const button = e.currentTarget;
            if (!await confirmAction("Revoke key", `Revoke ${label}? Clients that use it are rejected within a second.`, "Revoke")) return;
            await run(button, async () => {
              await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/revoke`);
              announce(`Key ${label} revoked.`);
              await reloadKeys();
            });
          } }),
      ];
      return el("tr", { "data-id": k.id },
        el("td", { text: k.name || "(no name)" }), el("td", {}, el("code", { text: k.prefix + "…" })),
        el("td", {}, keyBadge(revoked, expiring)),
        timeCell(k.created_at), timeCell(k.last_used_at),
        el("td", { text: k.expires_at ? fmtTime(k.expires_at) : "never" }),
        el("td", {}, el("div", { class: "actions" }, actions)));
    });
    keyList.replaceChildren(table("API keys", ["Name", "Prefix", "Status", "Created", "Last used", "Expires", "Actions"],
      rows, "No keys yet.", { id: "keys-table" }));
  }

  // revealKey shows a new key's text once. It is dropped from the page on
  // Done or when the page changes; the API never returns it again.
  function revealKey(slot, k) {
    if (!k.key) return;
    const value = el("input", { id: "new-key-value", readonly: true, value: k.key, "aria-label": "New API key", spellcheck: "false" });
    const copy = el("button", { type: "button", id: "new-key-copy", text: "Copy",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(value.value);
          announce("Key copied to the clipboard.");
        } catch {
          value.select();
          announce("Copying was blocked; the key is selected, so press Ctrl+C or Cmd+C.");
        }
      } });
    const done = el("button", { type: "button", class: "secondary", id: "new-key-done", text: "Done",
      onclick: () => { slot.replaceChildren(); announce("The key is no longer shown."); } });
    slot.replaceChildren(el("div", { class: "card secret-box", role: "group", "aria-labelledby": "new-key-title" },
      el("h3", { id: "new-key-title", text: "New key: copy it now" }),
      el("p", { text: "This is the only time the key is shown. Store it somewhere safe." }),
      el("div", { class: "row" }, value, copy, done)));
    value.focus();
    value.select();
  }

  // ---- recent requests ------------------------------------------------

  async function renderRequests(root) {
    root.append(el("h1", { text: "Recent requests" }));
    await loadUsers();
    const user = el("select", { id: "requests-user" }, el("option", { value: "", text: "all users" }),
      [...state.users.values()].map((u) => el("option", { value: u.id, text: u.name })));
    const status = el("select", { id: "requests-status" },
      [["", "all"], ["ok", "succeeded"], ["error", "failed"], ["429", "429 rate limited"], ["502", "502"], ["503", "503"]]
        .map(([v, t]) => el("option", { value: v, text: t })));
    const refresh = el("button", { type: "submit", class: "secondary", id: "requests-refresh", text: "Refresh" });
    const list = el("div", { id: "requests-list" });
    const form = el("form", { class: "inline", role: "search" }, field("User", user), field("Status", status), refresh);
    const load = () => loadRequests(list, { user: user.value, status: status.value }, null, false);
    form.addEventListener("submit", (e) => { e.preventDefault(); run(refresh, load); });
    user.addEventListener("change", () => run(null, load));
    status.addEventListener("change", () => run(null, load));
    root.append(el("div", { class: "card" }, form), list);
    await load();
  }

  async function loadRequests(list, filter, cursor, append) {
    const q = new URLSearchParams({ limit: "50" });
    if (filter.user) q.set("user", filter.user);
    if (filter.status) q.set("status", filter.status);
    if (cursor) q.set("cursor", cursor);
    const res = await api("GET", "/admin/generations?" + q);
    const headers = ["Time", "Model", "User", "Status", { label: "Latency", num: true },
      { label: "First token", num: true }, "Error type"];
    if (res.content_shown) headers.push("Prompt");
    const rows = res.data.map((g) => {
      const cells = [timeCell(g.created_at), el("td", { text: g.model || "–" }), el("td", { text: userLabel(g.user_id) }),
        el("td", {}, badge(String(g.status), httpStatusClass(g.status))),
        el("td", { class: "num", text: fmtMS(g.latency_ms) }), el("td", { class: "num", text: fmtMS(g.first_token_ms) }),
        el("td", { text: g.error_type || "" })];
      if (res.content_shown) cells.push(el("td", {}, contentCell(g)));
      return el("tr", { "data-id": g.id, "data-request-id": g.request_id }, cells);
    });
    let tbody = list.querySelector("#requests-table tbody");
    if (append && tbody) {
      tbody.append(...rows);
    } else {
      list.replaceChildren(table("Recent requests", headers, rows, "No requests match.", { id: "requests-table" }));
      tbody = list.querySelector("#requests-table tbody");
    }
    list.querySelector(".more")?.remove();
    if (res.next_cursor) {
      list.append(el("div", { class: "actions more" }, el("button", { type: "button", class: "secondary", text: "Load more",
        onclick: (e) => run(e.currentTarget, () => loadRequests(list, filter, res.next_cursor, true)) })));
    }
    if (!res.content_shown && !append) {
      list.append(el("p", { class: "hint", text: "Prompt text is not shown: this gateway stores no full prompt text (STORE_CONTENT is not full)." }));
    }
  }

  function contentCell(g) {
    if (g.prompt === undefined) return el("span", { class: "muted", text: "not available" });
    const preview = g.prompt.length > 80 ? g.prompt.slice(0, 80) + "…" : g.prompt;
    return el("details", {}, el("summary", { text: preview || "(empty)" }),
      el("pre", { class: "content", text: g.prompt }),
      el("strong", { text: "Response" }), el("pre", { class: "content", text: g.response || "" }),
      g.content_truncated ? el("p", { class: "hint", text: "Shortened; export the user's data for the full text." }) : null);
  }

  // ---- audit log --------------------------------------------------------

  async function renderAudit(root) {
    root.append(el("h1", { text: "Admin audit log" }));
    const list = el("div", { id: "audit-list" });
    root.append(list);
    await loadAudit(list, null);
  }

  async function loadAudit(list, cursor) {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const res = await api("GET", "/admin/audit?" + q);
    const rows = res.data.map((e) => el("tr", { "data-id": e.id, "data-action": e.action },
      timeCell(e.at), el("td", {}, el("code", { text: e.action })), el("td", { text: userLabel(e.actor) }),
      el("td", {}, el("code", { text: e.target || "" })), el("td", { text: e.details && e.details.status ? String(e.details.status) : "" }),
      el("td", { text: e.client_ip || "" })));
    let tbody = list.querySelector("#audit-table tbody");
    if (cursor && tbody) tbody.append(...rows);
    else list.replaceChildren(table("Admin audit log", ["Time", "Action", "Actor", "Target", "Status", "Client IP"],
      rows, "No admin actions recorded.", { id: "audit-table" }));
    list.querySelector(".more")?.remove();
    if (res.next_cursor) {
      list.append(el("div", { class: "actions more" }, el("button", { type: "button", class: "secondary", text: "Load more",
        onclick: (e) => run(e.currentTarget, () => loadAudit(list, res.next_cursor)) })));
    }
  }

  const renderers = {
    overview: renderOverview, sessions: renderSessions, users: renderUsers,
    requests: renderRequests, audit: renderAudit,
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("#signin-form").addEventListener("submit", signIn);
    watchConfirm();
    $("#signout").addEventListener("click", () => { signOut(); announce("Signed out."); });
    window.addEventListener("hashchange", route);
    route().then(() => {
      if (adminKey()) $("#main").focus();
    });
  });
})();

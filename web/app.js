// runboat dashboard: ES modules, no framework, no build step, no network
// resource other than runboat's own API. This module does the DOM, the
// network and the timers; the pure logic (grouping, filters, sorting, the
// end-of-snapshot removals, status words, ages, URLs) is in logic.mjs, which
// test/web/ tests with node's test runner.
//
// Safety: builds carry hostile strings (branch names, repos). Every piece of
// data reaches the DOM through textContent or setAttribute; links are checked
// to be http(s) (safeUrl) before they become an href. No innerHTML anywhere.
//
// Live updates and resynchronization
// ----------------------------------
// The WebSocket /api/v1/ws?batch=1&repo=... sends the snapshot (an "upd" for
// every matching build) as JSON arrays of {"event": "upd"|"del", "build"},
// then one {"event": "synced"}, then changes (single events, or arrays when
// the server had a backlog for this page). So:
//   1. Events are applied as they come (upd replaces or adds, del removes), and
//      every name an event mentions after the socket opened is remembered in
//      `seen` (name -> "upd" | "del").
//   2. At the marker, every build the stream has announced with an "upd"
//      since the socket opened is the server's; a build of the page that it
//      did not announce no longer exists: it is removed (this is what drops
//      builds deleted while disconnected; syncedRemovals). From then on the
//      stream alone is authoritative.
// A server that predates ?batch=1 (during a rolling upgrade this page may
// come from a new replica and its socket reach an old one) ignores the
// parameter: single events, never a marker. When the first message is not
// an array or the marker, or nothing comes within LEGACY_WAIT_MS of the
// socket opening (an empty snapshot), the page resynchronizes as it did
// before the marker existed: GET /api/v1/builds with the same filters (at
// least as new as the subscription), and a build neither listed nor
// announced by an "upd" since the socket opened is gone (resyncPlan).
// Until the marker the page renders at most every LOADING_RENDER_MS (a
// snapshot of thousands of builds takes a fraction of a second: one render
// at its end), and at once on the marker.
// The same happens on the first connection and on every reconnection, so a
// reconnect converges to the server's state without a page reload or a
// GET /api/v1/builds.
//
// Reconnection: exponential backoff 1 s, 2 s, 4 s ... capped at 30 s, with
// "equal jitter" (a delay d is drawn in [d/2, d]). The attempt counter resets
// once a connection has stayed open for 5 s, and a reconnect happens at once
// when the browser goes offline or back online or the tab becomes visible
// again. The indicator says "live" (socket open), "reconnecting" (waiting for
// the next attempt) or "offline" (the same, while navigator.onLine is false).
// While the socket is down, /api/v1/builds is polled every 30 s (and at once
// if nothing was loaded yet), so the page never stays empty or very stale
// behind a proxy that refuses WebSockets; the poll replaces the state only
// while no socket exists, so it never races the resynchronization above.
//
// Counters: /api/v1/status is fetched at start, at most once a second after
// events (throttled), after each (re)synchronization and every 30 s.

import {
  ACTION_WORDS, PAGE_BUILDS, STATUS_WORDS, age, allowedActions, b64utf8, backoffDelay, buildLabel,
  counterView, createdOf, filterRows, filtersUrl, groupBuilds, logTail, matcher, moreText, parseLocation,
  parseMessage, parseTime, prOf, rowKey, safeUrl as safeUrlFrom, shortSha, showsLogTail, statusLine,
  statusWord, str, streamQuery, summaryText, syncedRemovals, validBuild, visibleRows,
  batchedStart, resyncPlan,
} from "./logic.mjs";

const API = "/api/v1";
const STABLE_MS = 5000;
const POLL_MS = 30000;
const STATUS_THROTTLE_MS = 1000;
const AGE_TICK_MS = 15000;
const PENDING_TIMEOUT_MS = 20000;

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

// Creates an element. attrs: "class", "text" (textContent) or attributes
// (null/false skipped, true -> ""). Children are nodes or strings (as text).
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// The URL if it is http(s) (absolute or relative to this page), else null.
function safeUrl(u) {
  return safeUrlFrom(u, location.href);
}

// Sets or removes an <a>'s href; an <a> without href is not a link (not
// focusable, styled as plain text).
function setHref(a, url) {
  const u = safeUrl(url);
  if (u) a.setAttribute("href", u);
  else a.removeAttribute("href");
  return !!u;
}

// ------------------------------------------------------------------ state

const state = {
  buildName: null,   // the /builds/{name} page, else null
  live: false,       // ?live: go to the instance once it is started
  liveDone: false,
  focusMissing: false,
  repo: "",          // "" = all repositories (scope of the subscription)
  text: "",          // client-side filter on target branch / PR
  status: "",        // client-side filter on status
  repos: [],         // [{name, link}]
  reposGen: 0,       // changes when repos does (the cards' repo links)
  limit: PAGE_BUILDS, // the list shows about this many builds (visibleRows)
  builds: new Map(), // name -> build
  loaded: false,     // a first list was received for the current scope
  loadError: "",     // why the first list could not be loaded
  counts: null,
  pending: new Map(),   // name -> {action, timer}
  watched: new Set(),   // names whose status changes are announced
};

// ---------------------------------------------------------------- messages

// Shows a message in the assertive live region. kind: "error" | "info".
function showMessage(text, kind = "error") {
  const box = $("messages");
  const close = h("button", { type: "button", class: "msg-close", "aria-label": "Dismiss message" }, "×");
  const item = h("div", { class: `msg msg-${kind}` }, h("span", { class: "msg-text", text }), close);
  close.addEventListener("click", () => item.remove());
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => item.remove(), 8000);
}

// Polite announcement for screen readers (status changes).
function announce(text) {
  const a = $("announcer");
  a.textContent = "";
  // a separate task so that repeating the same text is announced again
  setTimeout(() => { a.textContent = text; }, 50);
}

// -------------------------------------------------------------------- api

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// fetch + JSON with {"detail"} errors turned into ApiError. With auth (the
// base64 "user:password" of the login form), the request is sent with
// credentials "omit": the Authorization header is ours, and per the Fetch
// standard the browser then never opens its own login prompt on a 401 with
// "WWW-Authenticate: Basic" (which would also hang a headless browser).
async function api(method, path, { auth = null } = {}) {
  const headers = { Accept: "application/json" };
  if (auth) headers.Authorization = `Basic ${auth}`;
  let res;
  try {
    res = await fetch(API + path, {
      method, headers, cache: "no-store", credentials: auth ? "omit" : "same-origin",
    });
  } catch (e) {
    throw new ApiError(0, "the server cannot be reached");
  }
  let body = null;
  const text = await res.text().catch(() => "");
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!res.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail
      : `${res.status} ${res.statusText || "error"}`;
    throw new ApiError(res.status, detail);
  }
  return body;
}

function scopeQuery() {
  const q = new URLSearchParams();
  if (state.repo) q.set("repo", state.repo);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ------------------------------------------------------------- counters

let statusTimer = null;

function scheduleStatus() {
  if (statusTimer) return;
  statusTimer = setTimeout(() => { statusTimer = null; fetchStatus(); }, STATUS_THROTTLE_MS);
}

async function fetchStatus() {
  try {
    const s = await api("GET", "/status");
    if (s && typeof s === "object") state.counts = s;
    $("counters").classList.remove("stale");
  } catch {
    $("counters").classList.add("stale");
  }
  renderCounters();
}

function renderCounters() {
  const c = state.counts;
  const set = (key, value, max, extra) => {
    const li = document.querySelector(`.counter[data-counter="${key}"]`);
    if (!li) return;
    const v = counterView(value, max, extra);
    li.querySelector(".counter-value").textContent = v.text;
    const bar = li.querySelector(".bar > span");
    if (bar) bar.style.width = `${v.percent}%`;
    li.classList.toggle("full", v.full);
  };
  if (!c) return;
  const queued = Number.isFinite(Number(c.to_initialize)) ? Number(c.to_initialize) : 0;
  set("started", c.started, c.max_started);
  set("initializing", c.initializing, c.max_initializing, queued ? `+${queued} queued` : "");
  set("deployed", c.deployed, c.max_deployed);
  set("failed", c.failed, null);
  document.querySelector('.counter[data-counter="failed"]').classList.toggle("bad", Number(c.failed) > 0);
}

// ------------------------------------------------------------------ repos

let reposLoading = false;
let reposFailed = false; // retried after the next successful load of builds

async function fetchRepos() {
  if (reposLoading) return;
  reposLoading = true;
  try {
    const r = await api("GET", "/repos");
    if (Array.isArray(r)) {
      state.repos = r.filter((x) => x && typeof x.name === "string");
      state.reposGen++;
    }
    reposFailed = false;
  } catch {
    reposFailed = true; // the summary line already says why nothing loads
  } finally {
    reposLoading = false;
  }
  renderRepos();
  scheduleRender(); // the cards' repository links
}

function renderRepos() {
  const sel = $("repo-select");
  const names = state.repos.map((r) => r.name).sort((a, b) => a.localeCompare(b));
  if (state.repo && !names.includes(state.repo)) names.push(state.repo);
  const want = ["", ...names];
  const have = Array.from(sel.options, (o) => o.value);
  if (want.join("\n") !== have.join("\n")) {
    sel.replaceChildren(h("option", { value: "", text: "All repositories" }),
      ...names.map((n) => h("option", { value: n, text: n })));
  }
  sel.value = state.repo;
  const link = $("repo-link");
  const repo = state.repos.find((r) => r.name === state.repo);
  link.hidden = !(repo && setHref(link, repo.link));
}

// ------------------------------------------------------------------ stream

let ws = null;          // the current WebSocket, or null
let wsGen = 0;          // bumps on every connect(): stale callbacks are ignored
let attempt = 0;        // consecutive failed attempts, for the backoff
let retryTimer = null;
let stableTimer = null;
let seen = null;        // name -> "upd" | "del" since the socket opened, until the marker
let firstMessage = false; // the socket is open and has sent nothing yet
let legacyTimer = null;   // no message since the socket opened: an old server?
const LEGACY_WAIT_MS = 3000;
let lastPoll = 0;

function setConn(s, detail = "") {
  const el = $("conn");
  const words = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
  el.dataset.state = s;
  el.querySelector(".conn-text").textContent = words[s] || s;
  el.title = detail || (s === "live" ? "Receiving live updates" : "");
}

// (Re)opens the stream for the current scope.
function connect() {
  clearTimeout(retryTimer);
  clearTimeout(stableTimer);
  retryTimer = null;
  const gen = ++wsGen;
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(); } catch { /* already closed */ }
    ws = null;
  }
  seen = null;
  firstMessage = false;
  clearTimeout(legacyTimer);
  legacyTimer = null;
  // the marks of the last connection only (the benchmark reads them)
  for (const m of ["runboat:connect", "runboat:open", "runboat:synced", "runboat:rendered"]) {
    performance.clearMarks(m);
  }
  performance.mark("runboat:connect");
  // navigator.onLine === false is only a hint (a local runboat may still be
  // reachable): try anyway, but say "offline" until a socket opens
  if (navigator.onLine === false) setConn("offline", "The browser is offline");
  else setConn(attempt === 0 && !state.loaded ? "connecting" : "reconnecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let sock;
  try {
    sock = new WebSocket(`${proto}//${location.host}${API}/ws${streamQuery(scopeQuery())}`);
  } catch {
    scheduleReconnect();
    return;
  }
  ws = sock;
  sock.onopen = () => {
    if (gen !== wsGen) return;
    performance.mark("runboat:open");
    seen = new Map();
    setConn("live");
    stableTimer = setTimeout(() => { attempt = 0; }, STABLE_MS);
    firstMessage = true;
    legacyTimer = setTimeout(() => { legacyTimer = null; legacyResync(gen); }, LEGACY_WAIT_MS);
  };
  sock.onmessage = (ev) => {
    if (gen !== wsGen) return;
    if (firstMessage) {
      firstMessage = false;
      clearTimeout(legacyTimer);
      legacyTimer = null;
      if (!batchedStart(ev.data)) legacyResync(gen);
    }
    onMessage(ev.data);
  };
  sock.onclose = () => {
    if (gen !== wsGen) return;
    ws = null;
    seen = null;
    clearTimeout(legacyTimer);
    legacyTimer = null;
    clearTimeout(stableTimer);
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (retryTimer) return;
  const delay = backoffDelay(attempt, Math.random());
  attempt++;
  const next = `Next attempt in ${Math.ceil(delay / 1000)} s`;
  if (navigator.onLine === false) setConn("offline", `The browser is offline. ${next}`);
  else setConn("reconnecting", next);
  retryTimer = setTimeout(() => { retryTimer = null; connect(); }, delay);
  // keep the page useful without a socket
  if (!state.loaded || Date.now() - lastPoll > POLL_MS) poll();
}

// Replaces the state with a plain list, when no socket is open.
async function poll() {
  const gen = wsGen;
  lastPoll = Date.now();
  try {
    const list = await api("GET", `/builds${scopeQuery()}`);
    if (gen !== wsGen || ws || !Array.isArray(list)) return;
    state.builds = new Map(list.filter(validBuild).map((b) => [b.name, b]));
    allRows = null;
    state.loaded = true;
    state.loadError = "";
    if (reposFailed) fetchRepos();
    render();
  } catch (e) {
    // the indicator already says we are not live; say why nothing shows
    if (gen === wsGen && !state.loaded) {
      state.loadError = e.message;
      render();
    }
  }
  fetchStatus();
}

// The end of the snapshot (see the comment at the top).
function onSynced() {
  if (!seen) return; // a marker without a snapshot: nothing to conclude
  performance.mark("runboat:synced");
  const gone = syncedRemovals(state.builds, seen);
  for (const name of gone) state.builds.delete(name);
  if (gone.length) allRows = null;
  synced();
}

// The snapshot fetch of a server that sends no marker (see the top).
async function legacyResync(gen) {
  let list;
  try {
    list = await api("GET", `/builds${scopeQuery()}`);
    if (!Array.isArray(list)) throw new ApiError(0, "unexpected answer");
  } catch (e) {
    if (gen !== wsGen) return;
    showMessage(`Could not load the builds: ${e.message}`);
    if (ws) ws.close(); // the whole connection again, with backoff
    return;
  }
  if (gen !== wsGen || !seen) return; // closed, or the marker came meanwhile
  const plan = resyncPlan(state.builds, list, seen);
  for (const name of plan.remove) state.builds.delete(name);
  if (plan.remove.length) allRows = null;
  for (const b of plan.add) setBuild(b);
  synced();
}

// The page holds the server's state: the stream alone updates it now.
function synced() {
  seen = null;
  state.loaded = true;
  state.loadError = "";
  if (reposFailed) fetchRepos();
  lastPoll = Date.now();
  clearTimeout(snapshotTimer);
  snapshotTimer = null;
  render();
  performance.mark("runboat:rendered");
  fetchStatus();
}

// One stream message: its events applied in order, one render asked for.
function onMessage(data) {
  let changed = false;
  for (const msg of parseMessage(data)) {
    if (msg.event === "synced") {
      onSynced();
      continue;
    }
    changed = true;
    const b = msg.build;
    if (msg.event === "upd") {
      setBuild(b);
      if (seen) seen.set(b.name, "upd");
      if (b.commit_info.repo && !knownRepo(b.commit_info.repo)) fetchRepos();
    } else {
      const old = state.builds.get(b.name);
      state.builds.delete(b.name);
      if (old) allRows = null;
      if (seen) seen.set(b.name, "del");
      if (old && (state.watched.has(b.name) || b.name === state.buildName)) {
        announce(`Build ${buildLabel(old)} was undeployed`);
      }
    }
  }
  if (changed) {
    scheduleRender();
    scheduleStatus();
  }
}

// The rows of every build (groupBuilds), kept until a build is added,
// removed or moved to another row or place: the usual update (a status)
// replaces the build in its row. A filter only filters these rows.
let allRows = null; // {branches, prs, byKey: row key -> row} or null

function rowsOfAll() {
  if (!allRows) {
    const g = groupBuilds(Array.from(state.builds.values()));
    const byKey = new Map();
    for (const r of g.branches) byKey.set(r.key, r);
    for (const r of g.prs) byKey.set(r.key, r);
    allRows = { branches: g.branches, prs: g.prs, byKey };
  }
  return allRows;
}

// Keeps allRows right when build old (or undefined) becomes b.
function rowsChanged(old, b) {
  if (!allRows) return;
  if (old && rowKey(old) === rowKey(b) && createdOf(old) === createdOf(b)) {
    const row = allRows.byKey.get(rowKey(b));
    const i = row ? row.builds.indexOf(old) : -1;
    if (i >= 0) {
      row.builds[i] = b;
      return;
    }
  }
  allRows = null;
}

// Whether a repository is in state.repos (a Set rebuilt when it changes:
// the stream's snapshot asks this of every build).
let repoSet = null;
let repoSetGen = -1;
function knownRepo(name) {
  if (repoSetGen !== state.reposGen || !repoSet) {
    repoSet = new Set(state.repos.map((r) => r.name));
    repoSetGen = state.reposGen;
  }
  return repoSet.has(name);
}

function setBuild(b) {
  const old = state.builds.get(b.name);
  state.builds.set(b.name, b);
  rowsChanged(old, b);
  if (old && old.status !== b.status) {
    clearPending(b.name);
    if (state.watched.has(b.name) || b.name === state.buildName) {
      announce(`Build ${buildLabel(b)} is now ${statusWord(b.status)}`);
    }
  }
}

// -------------------------------------------------------------- actions

function setPending(name, action) {
  clearPending(name);
  const timer = setTimeout(() => { clearPending(name); scheduleRender(); }, PENDING_TIMEOUT_MS);
  state.pending.set(name, { action, timer });
}

function clearPending(name) {
  const p = state.pending.get(name);
  if (p) clearTimeout(p.timer);
  state.pending.delete(name);
}

async function act(name, action) {
  const b = state.builds.get(name);
  if (!b) return;
  state.watched.add(name);
  if (action === "undeploy" || action === "force") {
    undeploy(name, action === "force");
    return;
  }
  setPending(name, action);
  render();
  try {
    const r = await api("POST", `/builds/${encodeURIComponent(name)}/${action}`);
    // the stream may have announced the new status already: do not cover it
    const cur = state.builds.get(name);
    if (cur && cur.status === b.status) announce(`Requested ${ACTION_WORDS[action]} of build ${buildLabel(b)}`);
    // an answer that is a build is the freshest state we have
    if (validBuild(r) && r.name === name && state.builds.has(name)) setBuild(r);
  } catch (e) {
    clearPending(name);
    showMessage(`Could not ${ACTION_WORDS[action]} build ${buildLabel(b)}: ${e.message}`);
  }
  render();
}

// Admin credentials live in sessionStorage (this tab only).
const CRED_KEY = "runboat.admin";

function getCreds() {
  try { return sessionStorage.getItem(CRED_KEY); } catch { return null; }
}

function setCreds(user, password) {
  try {
    if (user === null) sessionStorage.removeItem(CRED_KEY);
    else {
      sessionStorage.setItem(CRED_KEY, b64utf8(`${user}:${password}`));
      sessionStorage.setItem(`${CRED_KEY}.user`, user);
    }
  } catch { /* storage disabled: nothing is remembered */ }
  renderAdmin();
}

function adminUser() {
  try { return getCreds() ? sessionStorage.getItem(`${CRED_KEY}.user`) : null; } catch { return null; }
}

function renderAdmin() {
  const user = adminUser();
  const btn = $("admin-button");
  btn.textContent = user ? `Sign out ${user}` : "Admin sign in";
  btn.setAttribute("aria-label", user ? `Sign out admin ${user}` : "Admin sign in");
}

// Opens a modal <dialog>; resolves with its returnValue when it closes.
function ask(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}

async function login(reason) {
  const d = $("login-dialog");
  $("login-reason").textContent = reason ||
    "Undeploying builds needs the runboat admin credentials. They are kept in this tab only.";
  $("login-form").reset();
  const answer = await ask(d);
  if (answer !== "ok") return false;
  const user = $("login-user").value;
  const password = $("login-password").value;
  if (!user) return false;
  setCreds(user, password);
  return true;
}

// Undeploys a build after a confirmation; force: without its cleanup job
// (every object deleted; its database may be left on the server).
async function undeploy(name, force = false) {
  let b = state.builds.get(name);
  if (!b) return;
  if (!getCreds() && !(await login())) return;
  b = state.builds.get(name);
  if (!b) return;
  $("confirm-title").textContent = force ? "Force the undeploy?" : "Undeploy build?";
  $("confirm-ok").textContent = force ? "Force undeploy" : "Undeploy";
  $("confirm-text").textContent = force
    ? `The cleanup job of build ${buildLabel(b)} (${str(b.commit_info.repo)}) failed. ` +
      "Forcing deletes every object of the build without it: its database may be left behind."
    : `Build ${buildLabel(b)} (${str(b.commit_info.repo)}) and its database will be deleted.`;
  if ((await ask($("confirm-dialog"))) !== "ok") return;
  setPending(name, force ? "force" : "undeploy");
  render();
  try {
    if (force) await api("POST", `/builds/${encodeURIComponent(name)}/force-undeploy`, { auth: getCreds() });
    else await api("DELETE", `/builds/${encodeURIComponent(name)}`, { auth: getCreds() });
    announce(`Requested ${force ? "forced " : ""}undeploy of build ${buildLabel(b)}`);
  } catch (e) {
    clearPending(name);
    if (e.status === 401) setCreds(null);
    showMessage(e.status === 401
      ? `Admin credentials rejected: ${e.message}. Sign in again to undeploy.`
      : `Could not undeploy build ${buildLabel(b)}: ${e.message}`);
  }
  render();
}

// ---------------------------------------------------------------- render

// Renders asked for by the stream (and timers) are batched into an
// animation frame, and spaced so that rendering takes at most about a
// quarter of the main thread: after a render that took d ms, the next one
// waits RENDER_SPACING * d ms. A snapshot or a burst of thousands of events
// then costs a few renders, not one per frame. What the user does (filters,
// buttons) renders at once. While a snapshot is coming (before its marker),
// renders wait LOADING_RENDER_MS (the marker renders at once), and until the
// first snapshot is complete they are spaced by LOADING_RENDER_MS at least.
const RENDER_SPACING = 3;
const LOADING_RENDER_MS = 300;
let renderQueued = false;
let renderNotBefore = 0;
let snapshotTimer = null;

function scheduleRender() {
  if (seen) {
    if (!snapshotTimer) {
      snapshotTimer = setTimeout(() => { snapshotTimer = null; queueRender(); }, LOADING_RENDER_MS);
    }
    return;
  }
  queueRender();
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  const wait = renderNotBefore - performance.now();
  const go = () => requestAnimationFrame(() => {
    renderQueued = false;
    const t0 = performance.now();
    render();
    // the frame's style, layout and paint count too: a message posted now
    // runs once the frame is done
    afterFrame.onmessage = () => {
      const t1 = performance.now();
      const gap = Math.max(RENDER_SPACING * (t1 - t0), state.loaded ? 0 : LOADING_RENDER_MS);
      renderNotBefore = Math.max(renderNotBefore, t1 + gap);
    };
    afterFrameSend.postMessage(0);
  });
  if (wait > 0) setTimeout(go, wait);
  else go();
}
const frameChannel = new MessageChannel();
const afterFrame = frameChannel.port1;
const afterFrameSend = frameChannel.port2;

// Cards and rows by build name / row key, shown or not: the ones a filter
// hid are kept (the least recently shown go beyond KEEP_ELEMENTS) so that
// widening the filter again does not build them anew.
const KEEP_ELEMENTS = 600;
const cardEls = new Map();  // name -> card parts, least recently shown first
const groupEls = new Map(); // key -> group parts, least recently shown first
let focusCard = null;

// Puts exactly `children` in `container`, in order, moving as little as
// possible (a moved element would lose keyboard focus).
function place(container, children) {
  children.forEach((c, i) => {
    if (container.children[i] !== c) container.insertBefore(c, container.children[i] || null);
  });
  while (container.children.length > children.length) container.lastElementChild.remove();
}

// The list shows whole rows, in order, up to about state.limit builds
// (visibleRows): with thousands of builds, only those near the top exist in
// the DOM. The "more" line at the end adds PAGE_BUILDS more when it comes
// within a screen of the viewport (an IntersectionObserver) or when its
// button is pressed; a filter or scope change starts again from the top.
// Cards are kept by build name and only rewritten when their build (or what
// they show of the page's state) changed.
function render() {
  const t0 = performance.now();
  renderFocus();
  const grouped = filterRows(rowsOfAll(), matcher(state));
  const rows = visibleRows(grouped, state.limit);
  const usedGroups = new Set();
  const usedCards = new Set();
  const renderSection = (groups, container, section) => {
    const els = groups.map((g) => {
      usedGroups.add(g.key);
      const ge = groupEls.get(g.key) || createGroup(g);
      groupEls.delete(g.key);
      groupEls.set(g.key, ge);
      updateGroup(ge, g);
      place(ge.cards, g.builds.map((b) => {
        usedCards.add(b.name);
        let c = cardEls.get(b.name);
        if (!c) c = createCard(b.name, false);
        cardEls.delete(b.name);
        cardEls.set(b.name, c);
        updateCard(c, b);
        return c.root;
      }));
      return ge.root;
    });
    place(container, els);
    section.hidden = els.length === 0;
  };
  renderSection(rows.branches, $("branch-groups"), $("section-branches"));
  renderSection(rows.prs, $("pr-groups"), $("section-prs"));
  prune(groupEls, usedGroups, () => true);
  prune(cardEls, usedCards, (name) => state.builds.has(name));
  renderMore(rows);
  renderSummary(state.builds.size, rows.total, grouped.branches.length, grouped.prs.length);
  checkLive();
  const t1 = performance.now();
  renderNotBefore = t1 + RENDER_SPACING * (t1 - t0);
}

// Drops the elements not shown this time that are gone (keep(key) false) or
// beyond KEEP_ELEMENTS, least recently shown first.
function prune(map, used, keep) {
  let extra = map.size - Math.max(KEEP_ELEMENTS, used.size);
  for (const k of Array.from(map.keys())) {
    if (used.has(k)) continue;
    if (extra > 0) {
      map.delete(k);
      extra--;
    } else if (!keep(k)) {
      map.delete(k);
    }
  }
}

let moreObserver = null;
let moreNear = false; // the "more" line is within a screen of the viewport

function renderMore(rows) {
  const more = $("more");
  const hide = rows.hidden === 0;
  if (!hide) $("more-text").textContent = moreText(rows.shown, rows.total);
  if (more.hidden !== hide) more.hidden = hide;
  if (hide || !("IntersectionObserver" in window)) return;
  if (!moreObserver) {
    moreObserver = new IntersectionObserver((entries) => {
      for (const e of entries) moreNear = e.isIntersecting;
      if (moreNear && !$("more").hidden) showMore();
    }, { rootMargin: "0px 0px 100% 0px" });
  }
  // observing anew delivers a fresh entry: the line is still near after
  // the rows just added when they were short
  moreObserver.unobserve(more);
  moreObserver.observe(more);
}

function showMore() {
  state.limit += PAGE_BUILDS;
  scheduleRender();
}

// A filter or scope change shows the top of the new list.
function resetLimit() {
  state.limit = PAGE_BUILDS;
}

function renderSummary(total, shown, branches, prs) {
  $("summary").textContent = summaryText({
    loaded: state.loaded, loadError: state.loadError, repo: state.repo, total, shown, branches, prs,
  });
}

function createGroup(g) {
  const id = `g-${Math.random().toString(36).slice(2, 10)}`;
  const ge = {};
  ge.kind = h("span", { class: "group-kind" });
  ge.link = h("a", { class: "group-link" });
  ge.extra = h("span", { class: "group-extra" });
  ge.repo = h("span", { class: "group-repo" });
  ge.title = h("h3", { class: "group-title", id }, ge.kind, ge.link, ge.extra, ge.repo);
  ge.cards = h("div", { class: "cards" });
  ge.root = h("section", { class: "group", "aria-labelledby": id, "data-group": g.key }, ge.title, ge.cards);
  return ge;
}

function updateGroup(ge, g) {
  const first = g.builds[0];
  ge.root.dataset.repo = g.repo;
  ge.root.dataset.branch = g.branch;
  if (g.pr !== null) {
    ge.root.dataset.pr = String(g.pr);
    ge.kind.textContent = "PR";
    ge.link.textContent = `#${g.pr}`;
    setHref(ge.link, first.repo_pr_link);
    ge.extra.textContent = `→ ${g.branch}`;
  } else {
    delete ge.root.dataset.pr;
    ge.kind.textContent = "Branch";
    ge.link.textContent = g.branch;
    setHref(ge.link, first.repo_target_branch_link);
    ge.extra.textContent = "";
  }
  ge.repo.textContent = state.repo ? "" : g.repo;
}

function createCard(name, big) {
  const c = { name };
  c.dot = h("span", { class: "dot", "aria-hidden": "true" });
  c.statusText = h("span", { class: "status-text" });
  c.badge = h("span", { class: "badge" }, c.dot, c.statusText);
  c.time = h("time", { class: "age" });
  c.head = h("div", { class: "card-head" }, c.badge, c.time);

  c.page = h("a", { class: "card-title" });
  c.repo = h("a", { class: "crumb" });
  c.branch = h("a", { class: "crumb" });
  c.pr = h("a", { class: "crumb" });
  c.commit = h("a", { class: "crumb sha" });
  const sep = () => h("span", { class: "crumb-sep", "aria-hidden": "true" }, "›");
  c.prSep = sep();
  c.crumbs = h("p", { class: "crumbs" }, c.repo, sep(), c.branch, c.prSep, c.pr, sep(), c.commit);
  // why the build is failed, or what runboat is retrying for it (text only)
  c.reason = h("p", { class: "reason", role: "note" });

  c.open = h("a", { class: "btn btn-primary btn-link", target: "_blank", rel: "noopener" }, "Open");
  c.mail = h("a", { class: "btn btn-link", target: "_blank", rel: "noopener" }, "Mail");
  c.notLive = h("span", { class: "not-live" });
  c.initLog = h("a", { class: "text-link", target: "_blank", rel: "noopener" }, "Init log");
  c.log = h("a", { class: "text-link", target: "_blank", rel: "noopener" }, "Log");
  c.cleanupLog = h("a", { class: "text-link", target: "_blank", rel: "noopener" }, "Cleanup log");
  c.links = h("div", { class: "card-links" }, c.open, c.mail, c.notLive,
    h("span", { class: "logs" }, c.initLog, c.log, c.cleanupLog));

  c.buttons = {};
  const actions = h("div", { class: "card-actions" });
  for (const [action, label, cls] of [["start", "Start", "btn"], ["stop", "Stop", "btn"],
    ["reset", "Reset", "btn"], ["undeploy", "Undeploy", "btn btn-danger-outline"],
    ["force", "Force undeploy", "btn btn-danger-outline"]]) {
    // clicks reach act() through onCardClick (one listener for every card)
    const bt = h("button", { type: "button", class: cls, "data-action": action }, label);
    c.buttons[action] = bt;
    actions.append(bt);
  }
  c.actions = actions;
  c.root = h("article", { class: big ? "card card-big" : "card", "data-name": name },
    c.head, c.page, c.crumbs, c.reason, c.links, actions);
  return c;
}

// The click on a card's action button (listened to on the list and the
// build page's card, not on each button).
function onCardClick(e) {
  const bt = e.target instanceof Element ? e.target.closest("button[data-action]") : null;
  const card = bt ? bt.closest("article.card[data-name]") : null;
  if (!card || bt.disabled) return;
  act(card.dataset.name, bt.dataset.action);
}

function updateCard(c, b) {
  const pending = state.pending.get(b.name);
  // what the card shows: the build (replaced, never changed, when it
  // changes), the action pending, whether it is the page's build, the repos
  const stamp = `${pending ? pending.action : ""}|${state.buildName === b.name}|${state.reposGen}`;
  if (c.shown === b && c.stamp === stamp) return;
  c.shown = b;
  c.stamp = stamp;
  const ci = b.commit_info;
  const { status, words } = statusLine(b, pending ? pending.action : null);
  const sha = shortSha(ci.git_commit);
  const pr = prOf(b);
  const label = buildLabel(b);

  c.root.dataset.status = status;
  c.root.setAttribute("aria-label", `Build ${label}, ${STATUS_WORDS[status] || "unknown status"}`);
  c.root.classList.toggle("is-pending", !!pending);
  c.root.classList.toggle("is-current", !c.root.classList.contains("card-big") && b.name === state.buildName);

  c.statusText.textContent = words;
  const reason = str(b.reason);
  c.reason.hidden = !reason;
  c.reason.textContent = reason;
  c.reason.title = reason;

  const created = parseTime(b.created);
  c.created = created;
  c.time.textContent = Number.isFinite(created) ? age(created) : "";
  if (Number.isFinite(created)) {
    c.time.setAttribute("datetime", new Date(created).toISOString());
    c.time.title = `Created ${new Date(created).toLocaleString()}`;
  }

  c.page.textContent = str(b.slug) || b.name;
  c.page.title = `Build page: ${str(b.slug) || b.name}`;
  c.page.setAttribute("href", `/builds/${encodeURIComponent(b.name)}`);
  c.page.setAttribute("aria-label", `Build page of ${label}`);

  c.repo.textContent = str(ci.repo);
  const repoInfo = state.repos.find((r) => r.name === ci.repo);
  setHref(c.repo, repoInfo ? repoInfo.link : null);
  c.branch.textContent = str(ci.target_branch);
  setHref(c.branch, b.repo_target_branch_link);
  c.pr.hidden = c.prSep.hidden = pr === null;
  c.pr.textContent = pr === null ? "" : `#${pr}`;
  setHref(c.pr, b.repo_pr_link);
  c.commit.textContent = sha;
  setHref(c.commit, b.repo_commit_link);
  c.commit.title = str(ci.git_commit);
  c.commit.setAttribute("aria-label", `Commit ${sha}`);

  const started = status === "started";
  c.open.hidden = !(started && setHref(c.open, b.deploy_link));
  c.open.setAttribute("aria-label", `Open the running build ${label}`);
  c.mail.hidden = !(started && setHref(c.mail, b.deploy_link_mailhog));
  c.mail.setAttribute("aria-label", `Mails of build ${label}`);
  c.notLive.hidden = started;
  c.notLive.textContent = started ? "" : "Not running";
  c.initLog.setAttribute("href", `${API}/builds/${encodeURIComponent(b.name)}/init-log`);
  c.initLog.setAttribute("aria-label", `Init log of build ${label}`);
  c.log.setAttribute("href", `${API}/builds/${encodeURIComponent(b.name)}/log`);
  c.log.setAttribute("aria-label", `Log of build ${label}`);

  c.cleanupLog.hidden = status !== "undeploying";
  c.cleanupLog.setAttribute("href", `${API}/builds/${encodeURIComponent(b.name)}/cleanup-log`);
  c.cleanupLog.setAttribute("aria-label", `Cleanup log of build ${label}`);

  const can = allowedActions(status, b.reason);
  c.buttons.force.hidden = !can.force;
  for (const [action, bt] of Object.entries(c.buttons)) {
    bt.disabled = !!pending || !can[action];
    const word = bt.textContent;
    bt.setAttribute("aria-label", `${word} build ${label}`);
  }
}

function renderFocus() {
  const sec = $("focus");
  if (!state.buildName) {
    sec.hidden = true;
    return;
  }
  sec.hidden = false;
  const b = state.builds.get(state.buildName);
  const body = $("focus-body");
  if (!b) {
    focusCard = null;
    if (state.loaded || state.focusMissing) {
      $("focus-title").textContent = "Build not found";
      body.replaceChildren(h("p", { class: "focus-missing" },
        `There is no build named “${state.buildName}”. It may have been undeployed. `,
        h("a", { href: "/" }, "See all builds")));
    } else {
      $("focus-title").textContent = "Build";
      body.replaceChildren(h("p", {}, "Loading…"));
    }
    return;
  }
  const pr = prOf(b);
  $("focus-title").textContent = pr !== null
    ? `${str(b.commit_info.repo)} · PR #${pr} → ${str(b.commit_info.target_branch)}`
    : `${str(b.commit_info.repo)} · ${str(b.commit_info.target_branch)}`;
  if (!focusCard || focusCard.name !== b.name) {
    focusCard = createCard(b.name, true);
    body.replaceChildren(focusCard.root);
  }
  updateCard(focusCard, b);
  const times = [];
  const created = parseTime(b.created);
  const scaled = parseTime(b.last_scaled);
  if (Number.isFinite(created)) times.push(`created ${new Date(created).toLocaleString()}`);
  if (Number.isFinite(scaled)) times.push(`last started or stopped ${new Date(scaled).toLocaleString()}`);
  let extra = focusCard.root.querySelector(".card-times");
  if (!extra) {
    extra = h("p", { class: "card-times" });
    focusCard.root.insertBefore(extra, focusCard.links);
  }
  extra.textContent = times.join(" · ");
  renderLogTail(focusCard, b);
}

// A failed build's focus view shows the end of its init log inline (the
// live pod's, or the one kept when the Job ended): fetched once per failure
// (again once the build has left "failed" and failed anew), text only.
function renderLogTail(card, b) {
  if (!showsLogTail(b)) {
    if (card.logTail) card.logTail.hidden = true;
    card.logTailFor = null;
    return;
  }
  if (!card.logTail) {
    card.logTail = h("section", { class: "log-tail", "aria-label": "End of the init log" },
      h("h3", { class: "log-tail-title" }, "End of the init log"),
      h("pre", { class: "log-tail-text" }));
    card.root.insertBefore(card.logTail, card.links);
  }
  card.logTail.hidden = false;
  if (card.logTailFor === b.name) return;
  const name = b.name;
  card.logTailFor = name;
  const pre = card.logTail.querySelector("pre");
  pre.textContent = "Loading the init log…";
  const show = (t) => { if (card.logTailFor === name) pre.textContent = t; };
  fetch(`${API}/builds/${encodeURIComponent(name)}/init-log`, { cache: "no-store" })
    .then(async (res) => {
      const text = await res.text().catch(() => "");
      if (res.ok) {
        show(logTail(text) || "The init log is empty.");
        return;
      }
      let detail = `${res.status} ${res.statusText || "error"}`;
      try {
        const body = JSON.parse(text);
        if (body && typeof body.detail === "string") detail = body.detail;
      } catch { /* not JSON */ }
      show(res.status === 404 ? `No init log: ${detail}` : `The init log cannot be read: ${detail}`);
    })
    .catch(() => show("The init log cannot be read: the server cannot be reached"));
}

// /builds/{name}?live: go to the instance as soon as it is started.
function checkLive() {
  const banner = $("live-banner");
  if (!state.live || !state.buildName || state.liveDone) {
    banner.hidden = true;
    return;
  }
  const b = state.builds.get(state.buildName);
  if (b && b.status === "started") {
    const u = safeUrl(b.deploy_link);
    if (u) {
      state.liveDone = true;
      banner.hidden = false;
      banner.dataset.key = "redirect";
      banner.replaceChildren(h("p", {}, "The build is started: opening it… ", h("a", { href: u }, "Open it now")));
      location.replace(u);
      return;
    }
  }
  banner.hidden = false;
  const key = b ? `${b.status}|${state.pending.has(b.name)}` : `none|${state.loaded}`;
  if (banner.dataset.key === key) return; // keep the button (and its focus)
  banner.dataset.key = key;
  banner.dataset.status = b ? str(b.status) : "";
  const parts = [];
  if (!b) {
    parts.push(h("p", {}, state.loaded ? "This build does not exist (any more)." : "Looking for the build…"));
  } else if (b.status === "failed") {
    parts.push(h("p", {}, "This build failed to initialize and cannot be started. See its init log below, or reset it."));
  } else if (b.status === "undeploying") {
    parts.push(h("p", {}, "This build is being undeployed and cannot be started."));
  } else {
    const words = statusWord(b.status).toLowerCase();
    parts.push(h("p", {}, `This build is ${words}. You will be taken to it as soon as it is started.`));
    if (b.status === "stopped") {
      const start = h("button", { type: "button", class: "btn btn-primary", id: "live-start" }, "Start it now");
      start.disabled = state.pending.has(b.name);
      start.addEventListener("click", () => act(b.name, "start"));
      parts.push(start);
    }
  }
  banner.replaceChildren(...parts);
}

function tickAges() {
  const now = Date.now();
  const all = Array.from(cardEls.values());
  if (focusCard) all.push(focusCard);
  for (const c of all) {
    if (!Number.isFinite(c.created)) continue;
    const a = age(c.created, now);
    if (c.time.textContent !== a) c.time.textContent = a;
  }
}

// ----------------------------------------------------------------- routing

// The filters as a /builds?... URL (what a user can share).
function syncUrl() {
  if (state.buildName) return;
  const url = filtersUrl(state, location.pathname);
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

function readLocation() {
  const l = parseLocation(location.pathname, location.search);
  state.buildName = l.buildName;
  state.live = l.live;
  state.repo = l.repo;
  state.text = l.text;
  state.status = l.status;
  if (!l.buildName && !l.hasRepo) {
    try { state.repo = localStorage.getItem("runboat.repo") || ""; } catch { /* ignore */ }
  }
}

function changeScope(repo) {
  if (repo === state.repo) return;
  state.repo = repo;
  try { localStorage.setItem("runboat.repo", repo); } catch { /* ignore */ }
  if (state.buildName) {
    // leave the build page for the list of the chosen repository
    location.assign(repo ? `/builds?repo=${encodeURIComponent(repo)}` : "/builds");
    return;
  }
  state.builds = new Map();
  allRows = null;
  state.loaded = false;
  resetLimit();
  attempt = 0;
  renderRepos();
  render();
  syncUrl();
  connect();
}

async function start() {
  readLocation();
  $("text-filter").value = state.text;
  $("status-filter").value = state.status;
  renderAdmin();

  $("repo-select").addEventListener("change", (e) => changeScope(e.target.value));
  $("text-filter").addEventListener("input", (e) => {
    state.text = e.target.value;
    resetLimit();
    syncUrl();
    render();
  });
  $("status-filter").addEventListener("change", (e) => {
    state.status = e.target.value;
    resetLimit();
    syncUrl();
    render();
  });
  $("more-button").addEventListener("click", () => showMore());
  $("builds").addEventListener("click", onCardClick);
  $("focus-body").addEventListener("click", onCardClick);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("admin-button").addEventListener("click", async () => {
    if (getCreds()) {
      setCreds(null);
      showMessage("Signed out.", "info");
    } else if (await login("Sign in to undeploy builds. The credentials are kept in this tab only.")) {
      showMessage("Signed in as admin (checked on the first undeploy).", "info");
    }
  });

  window.addEventListener("online", () => { attempt = 0; connect(); });
  // going offline usually kills the socket without telling: start over
  window.addEventListener("offline", () => connect());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !ws && retryTimer) { attempt = 0; connect(); }
  });
  setInterval(tickAges, AGE_TICK_MS);
  setInterval(fetchStatus, POLL_MS);

  if (state.buildName) {
    // the build page follows the build's repository
    try {
      const b = await api("GET", `/builds/${encodeURIComponent(state.buildName)}`);
      if (validBuild(b)) {
        state.repo = str(b.commit_info.repo);
        setBuild(b);
        state.watched.add(b.name);
        const pr = prOf(b);
        if (!state.text) state.text = pr !== null ? `#${pr}` : str(b.commit_info.target_branch);
        $("text-filter").value = state.text;
      }
    } catch (e) {
      if (e.status === 404) state.focusMissing = true;
      else showMessage(`Could not load build ${state.buildName}: ${e.message}`);
    }
    document.title = `${state.buildName} · runboat`;
  }
  renderRepos();
  render();
  syncUrl();
  fetchRepos();
  fetchStatus();
  connect();
}

start();

// for the browser tests and curious developers
window.runboat = { state, age, safeUrl, tickAges, pageBuilds: PAGE_BUILDS };

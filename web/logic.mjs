// The dashboard's pure logic: no DOM, no network, no timers, no globals
// except what is passed in. app.js does the I/O and the rendering with these;
// test/web/logic.test.mjs tests them with node's test runner
// (`node --test test/web/*.test.mjs`).
//
// Builds are API objects ({name, commit_info: {repo, target_branch, pr,
// git_commit}, status, created, ...}) from a server that relays hostile
// strings: every function here accepts any value and never throws on one.

export const BACKOFF_MIN_MS = 1000;
export const BACKOFF_MAX_MS = 30000;

export const STATUS_WORDS = {
  initializing: "Initializing",
  failed: "Failed",
  stopped: "Stopped",
  stopping: "Stopping",
  starting: "Starting",
  started: "Started",
  undeploying: "Undeploying",
};
export const ACTION_WORDS = {
  start: "start", stop: "stop", reset: "reset", undeploy: "undeploy", force: "force the undeploy",
};

// ------------------------------------------------------------ values

export function str(v) {
  return typeof v === "string" ? v : v === null || v === undefined ? "" : String(v);
}

export function shortSha(sha) {
  return str(sha).slice(0, 7);
}

export function parseTime(s) {
  if (typeof s !== "string") return NaN;
  return Date.parse(s);
}

// "just now", "5 min ago", "3 h ago", "1 day ago", "2 days ago"; "" for a
// time that is not a number. A time in the future is "just now".
export function age(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 24) return `${hrs} h ago`;
  const d = Math.round(hrs / 24);
  return d === 1 ? "1 day ago" : `${d} days ago`;
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// The URL if it is http(s) (absolute, or relative to base), else null.
export function safeUrl(u, base) {
  if (typeof u !== "string" || u === "") return null;
  try {
    const p = new URL(u, base);
    return p.protocol === "http:" || p.protocol === "https:" ? p.href : null;
  } catch {
    return null;
  }
}

// Base64 of the UTF-8 bytes of s (HTTP Basic credentials).
export function b64utf8(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (const x of bytes) bin += String.fromCharCode(x);
  return btoa(bin);
}

// ------------------------------------------------------------ builds

// A build as received, checked enough that rendering cannot throw.
export function validBuild(b) {
  return !!b && typeof b === "object" && typeof b.name === "string" && b.name !== "" &&
    !!b.commit_info && typeof b.commit_info === "object";
}

// The PR number of a build, or null for a branch build.
export function prOf(b) {
  const pr = b.commit_info.pr;
  if (pr === null || pr === undefined || pr === "") return null;
  const n = Number(pr);
  return Number.isInteger(n) ? n : null;
}

// "0d35a10 of 16.0", "0d35a10 of PR #12": how messages name a build.
export function buildLabel(b) {
  const ci = b.commit_info;
  const pr = prOf(b);
  const where = pr !== null ? `PR #${pr}` : str(ci.target_branch);
  return `${shortSha(ci.git_commit) || b.name} of ${where}`;
}

// The word of a status ("Started"), or the status itself when this page
// does not know it.
export function statusWord(status) {
  return Object.hasOwn(STATUS_WORDS, status) ? STATUS_WORDS[status] : str(status);
}

// The status a card shows ("unknown" for a status this page does not know)
// and its words: the init step of an initializing build, the action asked
// and not yet seen done (pendingAction, or null).
export function statusLine(b, pendingAction = null) {
  const status = Object.hasOwn(STATUS_WORDS, b.status) ? b.status : "unknown";
  let words = STATUS_WORDS[status] || `Unknown (${str(b.status)})`;
  if (status === "initializing") {
    if (b.init_status === "todo") words += " · queued";
    else if (b.init_status === "started") words += " · running";
  }
  if (pendingAction) words += ` · ${ACTION_WORDS[pendingAction] || str(pendingAction)} requested`;
  return { status, words };
}

// Which actions a build in that status allows.
// force: an undeploying build whose cleanup job failed (its reason says
// so) may be undeployed without it, by an admin.
export function allowedActions(status, reason = "") {
  return {
    start: status === "stopped",
    stop: status === "started" || status === "starting",
    reset: status !== "undeploying",
    undeploy: status !== "undeploying",
    force: status === "undeploying" && /cleanup job failed/.test(str(reason)),
  };
}

// ------------------------------------------------------------ filters and grouping

// The client-side filters: status (exact, "" = any) and text, which matches
// a PR by number ("12" or "#12") or a target branch by substring (case
// insensitive); "#..." that is not a number matches nothing.
export function matches(b, filters = {}) {
  return matcher(filters)(b);
}

// The same test as a function of a build, with the filters' text worked
// out once (what a render of thousands of builds calls).
export function matcher({ text = "", status = "" } = {}) {
  const t = str(text).trim().toLowerCase();
  const num = /^#?(\d+)$/.exec(t);
  const want = num ? Number(num[1]) : null;
  const prOnly = t.startsWith("#");
  return (b) => {
    if (status && b.status !== status) return false;
    if (!t) return true;
    if (want !== null) {
      const pr = prOf(b);
      if (pr !== null && pr === want) return true;
    }
    if (prOnly) return false;
    return str(b.commit_info.target_branch).toLowerCase().includes(t);
  };
}

// The creation time of a build in ms (NaN when invalid), parsed once per
// build object (builds are replaced, never changed, when they change).
const createdCache = new WeakMap();
export function createdOf(b) {
  let t = createdCache.get(b);
  if (t === undefined) {
    t = parseTime(b.created);
    createdCache.set(b, t);
  }
  return t;
}

// Newest first by creation time; builds without a valid time last; then by
// name, so that the order is total.
export function byNewest(a, b) {
  const ta = createdOf(a);
  const tb = createdOf(b);
  if (Number.isFinite(ta) && Number.isFinite(tb) && ta !== tb) return tb - ta;
  if (Number.isFinite(ta) !== Number.isFinite(tb)) return Number.isFinite(ta) ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

// Rows: one per (repo, target branch) for branch builds and one per (repo, PR).
// Branch rows: by repo, then highest branch first in natural order (18.0,
// 17.0, 16.0, then names); PR rows: by repo, then newest PR (highest number)
// first; the builds of a row newest first. Returns {branches, prs}, each a
// list of {key, repo, branch, pr, builds}.
// (Repositories are ranked once, so that sorting thousands of rows compares
// numbers, and the collator only within a repository's branches.)
export function groupBuilds(list) {
  const groups = new Map();
  for (const b of list) {
    const r = rowOf(b);
    let g = groups.get(r.key);
    if (!g) {
      g = { key: r.key, repo: r.repo, branch: r.branch, pr: r.pr, builds: [] };
      groups.set(r.key, g);
    }
    g.builds.push(b);
  }
  const repos = Array.from(new Set(Array.from(groups.values(), (g) => g.repo)))
    .sort((a, b) => collator.compare(a, b));
  const rank = new Map();
  repos.forEach((r, i) => {
    // repositories the collator finds equal share a rank
    rank.set(r, i > 0 && collator.compare(repos[i - 1], r) === 0 ? rank.get(repos[i - 1]) : i);
  });
  const branches = [];
  const prs = [];
  const ranks = new Map();
  for (const g of groups.values()) {
    if (g.builds.length > 1) g.builds.sort(byNewest);
    ranks.set(g, rank.get(g.repo));
    (g.pr === null ? branches : prs).push(g);
  }
  branches.sort((a, b) => ranks.get(a) - ranks.get(b) || collator.compare(b.branch, a.branch));
  prs.sort((a, b) => ranks.get(a) - ranks.get(b) || b.pr - a.pr);
  return { branches, prs };
}

// The row of a build: {key, repo, branch, pr}, worked out once per build
// object.
const rowCache = new WeakMap();
function rowOf(b) {
  let r = rowCache.get(b);
  if (!r) {
    const pr = prOf(b);
    const repo = str(b.commit_info.repo);
    const branch = str(b.commit_info.target_branch);
    const key = pr !== null ? `pr\u0000${repo}\u0000${pr}` : `br\u0000${repo}\u0000${branch}`;
    r = { key, repo, branch, pr };
    rowCache.set(b, r);
  }
  return r;
}

// The rows of a filtered list from the rows of the whole list (groupBuilds
// of every build): the same order, each row's builds that pass test (a
// matcher), rows left empty dropped. A row whose builds all pass is the
// same object. What a filter keystroke costs, instead of grouping anew.
export function filterRows({ branches, prs }, test) {
  const keep = (rows) => {
    const out = [];
    for (const g of rows) {
      const builds = g.builds.filter(test);
      if (builds.length === g.builds.length) out.push(g);
      else if (builds.length) out.push({ ...g, builds });
    }
    return out;
  };
  return { branches: keep(branches), prs: keep(prs) };
}

// The key of a build's row in groupBuilds.
export function rowKey(b) {
  return rowOf(b).key;
}

// How many builds the list shows at first, and how many more each time the
// end of the list comes near (or "Show more" is pressed).
export const PAGE_BUILDS = 30;

// The rows the list shows for a budget of `limit` builds: rows are shown
// whole, in order (branch rows, then PR rows), until `limit` builds are
// shown (the row that reaches it is the last; at least one row). Returns
// {branches, prs} (the rows to show), shown (builds in them), total (builds
// in every row) and hidden (rows not shown).
export function visibleRows({ branches, prs }, limit) {
  const out = { branches: [], prs: [], shown: 0, total: 0, hidden: 0 };
  const max = Number.isFinite(limit) && limit > 0 ? limit : PAGE_BUILDS;
  for (const [rows, into] of [[branches, out.branches], [prs, out.prs]]) {
    for (const g of rows) {
      out.total += g.builds.length;
      if (out.shown < max) {
        into.push(g);
        out.shown += g.builds.length;
      } else {
        out.hidden++;
      }
    }
  }
  return out;
}

// The line at the end of a list that is not shown whole.
export function moreText(shown, total) {
  return `Showing ${plural(shown, "build", "builds")} of ${total}. ` +
    "More appear as you scroll, or with the button.";
}

// ------------------------------------------------------------ the stream

// The delay before reconnection attempt number `attempt` (0 for the first
// retry): exponential from BACKOFF_MIN_MS, capped at BACKOFF_MAX_MS, with
// "equal jitter" (a delay d becomes d/2 + random * d/2). random in [0, 1).
export function backoffDelay(attempt, random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 10));
  return base / 2 + random * (base / 2);
}

// The stream's query: the page's filters (a URLSearchParams or a string)
// plus batch=1, which asks for the snapshot as arrays of events followed by
// the end-of-snapshot marker (see parseMessage).
export function streamQuery(filters = "") {
  const q = new URLSearchParams(filters);
  q.set("batch", "1");
  return `?${q.toString()}`;
}

// One event (a parsed object) as {event: "upd"|"del", build}, or null when
// it names another event or carries no valid build.
function eventOf(msg) {
  if (!msg || typeof msg !== "object" || Array.isArray(msg) || !validBuild(msg.build)) return null;
  if (msg.event !== "upd" && msg.event !== "del") return null;
  return { event: msg.event, build: msg.build };
}

// One stream message (text) of the default stream as {event, build}, or
// null when it is not JSON, not an object, names another event or carries
// no valid build.
export function parseEvent(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return null; }
  return eventOf(msg);
}

// One message of a ?batch=1 stream as the list of what it says, in order:
// {event: "upd"|"del", build} per event and {event: "synced"} for the
// end-of-snapshot marker. A message is one event, a JSON array of events,
// or the marker {"event": "synced"}; what is not JSON gives [], and invalid
// entries (of an array, or the message itself) are skipped.
export function parseMessage(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return []; }
  const out = [];
  for (const m of Array.isArray(msg) ? msg : [msg]) {
    if (m && typeof m === "object" && m.event === "synced") out.push({ event: "synced" });
    else {
      const e = eventOf(m);
      if (e) out.push(e);
    }
  }
  return out;
}

// Whether the first message of a ?batch=1 stream comes from a server that
// knows the parameter: an array of events or the marker. A server that
// predates it (a rolling upgrade) ignores it and sends single events.
export function batchedStart(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return false; }
  return Array.isArray(msg) || (!!msg && typeof msg === "object" && msg.event === "synced");
}

// The resynchronization with a server that sends no marker (batchedStart
// false): current is the page's Map name -> build, list the GET /builds
// answer (fetched after the socket opened, so at least as new as the
// subscription), seen the Map name -> "upd"|"del" of what the stream said
// since it opened. Returns what to do: remove (names neither listed nor
// announced by an "upd": gone) and add (listed builds the stream has not
// mentioned: the list's version; one the stream mentioned keeps the
// stream's, one it deleted stays deleted).
export function resyncPlan(current, list, seen) {
  const listed = new Map();
  for (const b of Array.isArray(list) ? list : []) if (validBuild(b)) listed.set(b.name, b);
  // the marker's rule (syncedRemovals), but for what the list still has
  const remove = syncedRemovals(current, seen).filter((name) => !listed.has(name));
  const add = [];
  for (const [name, b] of listed) if (!seen.has(name)) add.push(b);
  return { remove, add };
}

// What the end-of-snapshot marker removes (app.js explains it): current is
// the page's Map name -> build, seen the Map name -> "upd"|"del" of what
// the stream said since the socket opened. The marker follows an "upd" of
// every build that existed when the subscription began (or a later event
// of it), so a build of the page that the stream did not announce with an
// "upd" is gone: it was deleted while the page was not listening (one the
// stream deleted is gone already). Returns those names.
export function syncedRemovals(current, seen) {
  const remove = [];
  for (const name of current.keys()) if (seen.get(name) !== "upd") remove.push(name);
  return remove;
}

// ------------------------------------------------------------ counters and summary

// One counter of the top bar: "3 / 5", "2 / 4 +1 queued", "7", or "–" when
// the value is unknown; percent fills its bar; full when at its limit.
export function counterView(value, max, extra = "") {
  const num = (x) => (x !== null && x !== undefined && x !== "" && Number.isFinite(Number(x))
    ? Number(x) : null);
  const v = num(value);
  const m = num(max);
  let text = v === null ? "–" : m !== null ? `${v} / ${m}` : `${v}`;
  if (extra) text += ` ${extra}`;
  const percent = v !== null && m ? Math.min(100, (100 * v) / m) : 0;
  return { text, percent, full: v !== null && m !== null && m > 0 && v >= m };
}

// The line above the builds.
export function summaryText({ loaded, loadError = "", repo = "", total, shown, branches, prs }) {
  if (!loaded) {
    return loadError ? `Could not load the builds (${loadError}). Retrying…` : "Loading builds…";
  }
  const scope = repo ? `in ${repo}` : "";
  if (total === 0) return repo ? `No builds ${scope} yet.` : "No builds yet.";
  if (shown === 0) return `No build matches the filter (${plural(total, "build", "builds")} ${scope}).`;
  const parts = [plural(shown, "build", "builds")];
  if (branches) parts.push(plural(branches, "branch", "branches"));
  if (prs) parts.push(plural(prs, "pull request", "pull requests"));
  return parts.join(" · ") + (shown < total ? ` (of ${total})` : "");
}

// ------------------------------------------------------------ locations

// What a location (pathname, search) asks for: the build page
// (/builds/{name}[?live]) or the list, with its filters: repo (hasRepo says
// whether the URL named one), text (#PR or branch) and status (a known one,
// else "").
export function parseLocation(pathname, search) {
  const q = new URLSearchParams(search);
  const out = { buildName: null, live: false, repo: q.get("repo") || "", hasRepo: q.has("repo") };
  const m = /^\/builds\/([^/]+)\/?$/.exec(pathname);
  if (m) {
    try { out.buildName = decodeURIComponent(m[1]); } catch { out.buildName = m[1]; }
    out.live = q.has("live");
  }
  const tb = q.get("target_branch") || q.get("branch") || "";
  const pr = q.get("pr");
  out.text = pr ? `#${pr}` : tb;
  const st = q.get("status") || "";
  out.status = Object.hasOwn(STATUS_WORDS, st) ? st : "";
  return out;
}

// The filters as the /builds?... URL a user can share (the inverse of
// parseLocation); "/" stays "/" when there is no filter.
export function filtersUrl({ repo = "", text = "", status = "" }, pathname) {
  const q = new URLSearchParams();
  if (repo) q.set("repo", repo);
  const t = str(text).trim();
  const num = /^#(\d+)$/.exec(t);
  if (num) q.set("pr", num[1]);
  else if (t) q.set("target_branch", t);
  if (status) q.set("status", status);
  const s = q.toString();
  return s ? `/builds?${s}` : pathname === "/" ? "/" : "/builds";
}

// ------------------------------------------------------------ init log tail

export const LOG_TAIL_LINES = 20;
export const LOG_TAIL_LINE_CHARS = 400;

// Whether a build's card shows the tail of its init log inline.
export function showsLogTail(b) {
  return !!b && typeof b === "object" && b.status === "failed";
}

// The last `lines` lines of a log (any value: text expected), as plain text
// for textContent: carriage returns end lines (progress bars), control
// characters other than tab go (terminal colours: their ESC and the rest
// of the sequence), each line is cut at LOG_TAIL_LINE_CHARS, and trailing
// blank lines are dropped. "" when there is nothing to show.
export function logTail(text, lines = LOG_TAIL_LINES) {
  if (typeof text !== "string" || !text) return "";
  const n = Number.isInteger(lines) && lines > 0 ? lines : LOG_TAIL_LINES;
  // only the end matters: a bounded slice before splitting a long log
  const end = text.slice(-n * (LOG_TAIL_LINE_CHARS + 200));
  const all = end
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
    .split(/\r\n|\r|\n/)
    .map((l) => l.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ""))
    .map((l) => (l.length > LOG_TAIL_LINE_CHARS ? `${l.slice(0, LOG_TAIL_LINE_CHARS)}…` : l));
  while (all.length && !all[all.length - 1].trim()) all.pop();
  return all.slice(-n).join("\n");
}

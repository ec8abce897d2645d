// The dashboard's pure logic (web/logic.mjs) under node's test runner:
//   node --test test/web/*.test.mjs
// Only node:test and node:assert (Debian 12's nodejs 18 has both).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as L from "../../web/logic.mjs";

const T0 = Date.parse("2024-05-01T12:00:00Z");

let seq = 0;
// A build as the API sends it; fields override the defaults.
function build({ name, repo = "oca/web", branch = "16.0", pr = null, status = "stopped",
  created = "2024-05-01T10:00:00Z", ...rest } = {}) {
  seq++;
  return {
    name: name || `b${seq}`,
    commit_info: { repo, target_branch: branch, pr, git_commit: "0d35a10f161b410f2baa3d416a338d191b6dabc0" },
    status, created, ...rest,
  };
}

const names = (list) => list.map((b) => b.name);

test("age words", () => {
  const at = (s) => L.age(T0 - s * 1000, T0);
  assert.equal(at(0), "just now");
  assert.equal(at(44), "just now");
  assert.equal(at(-3600), "just now"); // a clock ahead of ours
  assert.equal(at(45), "1 min ago");
  assert.equal(at(59 * 60), "59 min ago");
  assert.equal(at(60 * 60), "1 h ago");
  assert.equal(at(23 * 3600), "23 h ago");
  assert.equal(at(24 * 3600), "1 day ago");
  assert.equal(at(36 * 3600), "2 days ago");
  assert.equal(at(400 * 86400), "400 days ago");
  assert.equal(L.age(NaN, T0), "");
  assert.equal(L.age(L.parseTime("not a time"), T0), "");
  assert.equal(L.age(L.parseTime(null), T0), "");
});

test("values never throw on hostile input", () => {
  assert.equal(L.str(null), "");
  assert.equal(L.str(undefined), "");
  assert.equal(L.str(12), "12");
  assert.equal(L.shortSha({}), "[object");
  assert.equal(L.shortSha("0d35a10f161b"), "0d35a10");
  assert.equal(L.plural(1, "build", "builds"), "1 build");
  assert.equal(L.plural(0, "build", "builds"), "0 builds");
  assert.equal(L.b64utf8("admin:pässword"), Buffer.from("admin:pässword").toString("base64"));
});

test("safeUrl keeps http(s) only", () => {
  const base = "http://runboat.test/builds";
  assert.equal(L.safeUrl("https://x.test/a?b", base), "https://x.test/a?b");
  assert.equal(L.safeUrl("/builds/b1", base), "http://runboat.test/builds/b1");
  for (const bad of ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x",
    "vbscript:x", "", null, 42, {}, "http://[::1"]) {
    assert.equal(L.safeUrl(bad, base), null, String(bad));
  }
});

test("validBuild, prOf, buildLabel", () => {
  assert.equal(L.validBuild(build()), true);
  for (const bad of [null, "b1", {}, { name: "" , commit_info: {} }, { name: "b", commit_info: null },
    { name: 3, commit_info: {} }]) {
    assert.equal(L.validBuild(bad), false, JSON.stringify(bad));
  }
  assert.equal(L.prOf(build({ pr: 12 })), 12);
  assert.equal(L.prOf(build({ pr: "12" })), 12);
  assert.equal(L.prOf(build({ pr: null })), null);
  assert.equal(L.prOf(build({ pr: "" })), null);
  assert.equal(L.prOf(build({ pr: "x" })), null);
  assert.equal(L.prOf(build({ pr: 1.5 })), null);
  assert.equal(L.buildLabel(build({ pr: 7 })), "0d35a10 of PR #7");
  assert.equal(L.buildLabel(build({ branch: "17.0" })), "0d35a10 of 17.0");
  const noSha = build({ name: "bx" });
  noSha.commit_info.git_commit = null;
  assert.equal(L.buildLabel(noSha), "bx of 16.0");
});

test("status words and the actions a status allows", () => {
  assert.deepEqual(L.statusLine(build({ status: "started" })), { status: "started", words: "Started" });
  assert.equal(L.statusLine(build({ status: "initializing", init_status: "todo" })).words,
    "Initializing · queued");
  assert.equal(L.statusLine(build({ status: "initializing", init_status: "started" })).words,
    "Initializing · running");
  assert.equal(L.statusLine(build({ status: "stopped" }), "start").words, "Stopped · start requested");
  // unknown, including names of Object.prototype's members
  for (const s of ["weird", "constructor", "__proto__", "toString", null]) {
    const line = L.statusLine(build({ status: s }));
    assert.equal(line.status, "unknown", String(s));
    assert.equal(line.words, `Unknown (${L.str(s)})`);
    assert.equal(L.statusWord(s), L.str(s));
  }
  assert.equal(L.statusWord("undeploying"), "Undeploying");
  assert.deepEqual(L.allowedActions("stopped"), { start: true, stop: false, reset: true, undeploy: true, force: false });
  assert.deepEqual(L.allowedActions("started"), { start: false, stop: true, reset: true, undeploy: true, force: false });
  assert.deepEqual(L.allowedActions("starting"), { start: false, stop: true, reset: true, undeploy: true, force: false });
  assert.deepEqual(L.allowedActions("undeploying"), { start: false, stop: false, reset: false, undeploy: false, force: false });
  assert.deepEqual(L.allowedActions("failed"), { start: false, stop: false, reset: true, undeploy: true, force: false });
  // forcing an undeploy: only when its cleanup job failed
  assert.equal(L.allowedActions("undeploying", "cleanup failed: its cleanup job failed (see its cleanup log)").force, true);
  assert.equal(L.allowedActions("undeploying", "its cleanup job failed: trying again in 10 s (1 of 3)").force, true);
  assert.equal(L.allowedActions("undeploying", null).force, false);
  assert.equal(L.allowedActions("failed", "its cleanup job failed").force, false);
});

test("filters: status, PR number, branch substring", () => {
  const b16 = build({ branch: "16.0", status: "started" });
  const feat = build({ branch: "Feature/Login-16", status: "stopped" });
  const pr12 = build({ branch: "16.0", pr: 12, status: "failed" });
  const all = [b16, feat, pr12];
  const f = (filter) => names(all.filter((b) => L.matches(b, filter)));
  assert.deepEqual(f({}), names(all));
  assert.deepEqual(f({ text: "  " }), names(all));
  assert.deepEqual(f({ status: "failed" }), [pr12.name]);
  assert.deepEqual(f({ text: "16" }), names(all)); // branch substring, every one
  assert.deepEqual(f({ text: "12" }), [pr12.name]); // the PR number
  assert.deepEqual(f({ text: "#12" }), [pr12.name]);
  assert.deepEqual(f({ text: "#16" }), []); // "#" means a PR, none is 16
  assert.deepEqual(f({ text: "#feat" }), []);
  assert.deepEqual(f({ text: "LOGIN" }), [feat.name]); // case-insensitive
  assert.deepEqual(f({ text: "16.0", status: "started" }), [b16.name]);
});

test("byNewest: newest first, invalid times last, then by name", () => {
  const a = build({ name: "a", created: "2024-05-01T10:00:00Z" });
  const b = build({ name: "b", created: "2024-05-02T10:00:00Z" });
  const c = build({ name: "c", created: "garbage" });
  const d = build({ name: "d", created: null });
  const e = build({ name: "e", created: "2024-05-01T10:00:00Z" });
  assert.deepEqual(names([c, a, d, e, b].sort(L.byNewest)), ["b", "a", "e", "c", "d"]);
});

test("grouping by branch and by PR, and their order", () => {
  const list = [
    build({ name: "w16old", repo: "oca/web", branch: "16.0", created: "2024-05-01T10:00:00Z" }),
    build({ name: "w16new", repo: "oca/web", branch: "16.0", created: "2024-05-01T11:00:00Z" }),
    build({ name: "w9", repo: "oca/web", branch: "9.0" }),
    build({ name: "w17", repo: "oca/web", branch: "17.0" }),
    build({ name: "wmain", repo: "oca/web", branch: "main" }),
    build({ name: "a16", repo: "acme/addons", branch: "16.0" }),
    build({ name: "pr3", repo: "oca/web", branch: "16.0", pr: 3 }),
    build({ name: "pr12a", repo: "oca/web", branch: "17.0", pr: 12, created: "2024-05-01T09:00:00Z" }),
    build({ name: "pr12b", repo: "oca/web", branch: "17.0", pr: 12, created: "2024-05-01T12:00:00Z" }),
    build({ name: "apr1", repo: "acme/addons", branch: "16.0", pr: 1 }),
  ];
  const { branches, prs } = L.groupBuilds(list);
  // by repo; within one, highest branch first in natural order (17.0 > 9.0)
  assert.deepEqual(branches.map((g) => `${g.repo} ${g.branch}`),
    ["acme/addons 16.0", "oca/web main", "oca/web 17.0", "oca/web 16.0", "oca/web 9.0"]);
  assert.deepEqual(names(branches[3].builds), ["w16new", "w16old"]);
  assert.equal(branches[0].pr, null);
  // PR rows apart from branch rows (a PR to 16.0 is not in the 16.0 row)
  assert.deepEqual(prs.map((g) => `${g.repo} #${g.pr}`), ["acme/addons #1", "oca/web #12", "oca/web #3"]);
  assert.deepEqual(names(prs[1].builds), ["pr12b", "pr12a"]);
  assert.equal(prs[1].branch, "17.0");
  // keys tell rows apart even when names collide
  const keys = [...branches, ...prs].map((g) => g.key);
  assert.equal(new Set(keys).size, keys.length);
  assert.deepEqual(L.groupBuilds([]), { branches: [], prs: [] });
});

test("grouping: repositories the collator finds equal share a rank, hostile values do not throw", () => {
  const list = [
    build({ name: "x1", repo: "OCA/web", branch: "16.0" }),
    build({ name: "x2", repo: "oca/web", branch: "17.0" }),
    build({ name: "x3", repo: "acme/a", branch: "16.0" }),
    build({ name: "x4", repo: 42, branch: null, pr: "7" }),
  ];
  const { branches, prs } = L.groupBuilds(list);
  // "OCA/web" and "oca/web" compare equal: one repository, branches by number
  assert.deepEqual(branches.map((g) => `${g.repo} ${g.branch}`),
    ["acme/a 16.0", "oca/web 17.0", "OCA/web 16.0"]);
  assert.deepEqual(prs.map((g) => `${g.repo} #${g.pr}`), ["42 #7"]);
  assert.equal("rank" in branches[0], false);
});

test("grouping: the same order as a plain sort, on a big list", () => {
  const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
  const list = [];
  for (let i = 0; i < 3000; i++) {
    const repo = `oca/repo-${(i * 7919) % 97}`;
    const pr = i % 3 === 0 ? null : (i * 31) % 500;
    const branch = ["16.0", "17.0", "18.0", "9.0", "main"][i % 5];
    list.push(build({ repo, branch, pr, created: new Date(T0 - ((i * 104729) % 86400000)).toISOString() }));
  }
  const { branches, prs } = L.groupBuilds(list);
  const plain = (a, b) => collator.compare(a.repo, b.repo);
  const br = [...branches].sort((a, b) => plain(a, b) || collator.compare(b.branch, a.branch));
  const pp = [...prs].sort((a, b) => plain(a, b) || b.pr - a.pr);
  assert.deepEqual(branches.map((g) => g.key), br.map((g) => g.key));
  assert.deepEqual(prs.map((g) => g.key), pp.map((g) => g.key));
  assert.equal(branches.reduce((n, g) => n + g.builds.length, 0) +
    prs.reduce((n, g) => n + g.builds.length, 0), 3000);
  for (const g of [...branches, ...prs]) {
    assert.deepEqual(names(g.builds), names([...g.builds].sort(L.byNewest)));
  }
});

test("matcher: the filters worked out once give what matches gives", () => {
  const list = [
    build({ branch: "16.0" }), build({ branch: "17.0", pr: 12 }), build({ branch: "feat-12", status: "failed" }),
    build({ branch: "x", pr: 120 }), build({ branch: null, pr: "garbage" }),
  ];
  for (const f of [{}, { text: "12" }, { text: "#12" }, { text: " 17 " }, { text: "#x" },
    { status: "failed" }, { text: "FEAT", status: "failed" }, { text: "1", status: "stopped" }]) {
    const m = L.matcher(f);
    assert.deepEqual(list.filter(m).map((b) => b.name), list.filter((b) => L.matches(b, f)).map((b) => b.name),
      JSON.stringify(f));
  }
  assert.deepEqual(names(list.filter(L.matcher({ text: "12" }))), [list[1].name, list[2].name]);
  assert.equal(L.matcher()(list[0]), true);
});

test("createdOf: parsed once per build object, NaN when invalid", () => {
  const b = build({ created: "2024-05-01T10:00:00Z" });
  assert.equal(L.createdOf(b), Date.parse("2024-05-01T10:00:00Z"));
  assert.equal(L.createdOf(b), Date.parse("2024-05-01T10:00:00Z"));
  assert.ok(Number.isNaN(L.createdOf(build({ created: "nope" }))));
  assert.ok(Number.isNaN(L.createdOf(build({ created: 12 }))));
});

test("filterRows: the rows of a filter from the rows of everything", () => {
  const list = [
    build({ name: "a1", branch: "16.0" }), build({ name: "a2", branch: "16.0", status: "failed" }),
    build({ name: "b1", branch: "17.0" }), build({ name: "p1", branch: "17.0", pr: 12, status: "failed" }),
    build({ name: "p2", branch: "16.0", pr: 3 }),
  ];
  const all = L.groupBuilds(list);
  for (const f of [{}, { status: "failed" }, { text: "16" }, { text: "#12" }, { text: "zz" }]) {
    const got = L.filterRows(all, L.matcher(f));
    const want = L.groupBuilds(list.filter(L.matcher(f)));
    const view = (r) => [...r.branches, ...r.prs].map((g) => `${g.key}:${names(g.builds)}`);
    assert.deepEqual(view(got), view(want), JSON.stringify(f));
  }
  // unfiltered rows are the same objects; the whole list is not changed
  const same = L.filterRows(all, L.matcher({}));
  assert.equal(same.branches[0], all.branches[0]);
  L.filterRows(all, L.matcher({ status: "failed" }));
  assert.deepEqual(names(all.branches.find((g) => g.branch === "16.0").builds).sort(), ["a1", "a2"]);
  assert.equal(L.rowKey(list[0]), all.branches.find((g) => g.branch === "16.0").key);
  assert.notEqual(L.rowKey(list[3]), L.rowKey(list[2]));
});

test("visibleRows: whole rows up to the budget, branch rows first", () => {
  const row = (key, n) => ({ key, builds: Array.from({ length: n }, () => build()) });
  const grouped = { branches: [row("a", 2), row("b", 3)], prs: [row("p1", 1), row("p2", 4), row("p3", 1)] };
  const keys = (r) => [...r.branches, ...r.prs].map((g) => g.key);
  let r = L.visibleRows(grouped, 4);
  assert.deepEqual(keys(r), ["a", "b"]); // the row that reaches the budget is shown whole
  assert.deepEqual([r.shown, r.total, r.hidden], [5, 11, 3]);
  r = L.visibleRows(grouped, 6);
  assert.deepEqual(keys(r), ["a", "b", "p1"]);
  assert.deepEqual(r.prs.map((g) => g.key), ["p1"]);
  r = L.visibleRows(grouped, 100);
  assert.deepEqual([r.shown, r.total, r.hidden], [11, 11, 0]);
  // at least one row, whatever its size; a bad budget is the default page
  r = L.visibleRows({ branches: [row("big", 500)], prs: [row("p", 1)] }, 1);
  assert.deepEqual(keys(r), ["big"]);
  assert.equal(L.visibleRows(grouped, NaN).hidden, 0);
  assert.equal(L.visibleRows(grouped, -1).shown, 11);
  assert.deepEqual(L.visibleRows({ branches: [], prs: [] }, 10), { branches: [], prs: [], shown: 0, total: 0, hidden: 0 });
  assert.match(L.moreText(120, 7000), /^Showing 120 builds of 7000\./);
  assert.ok(L.PAGE_BUILDS >= 20);
});

test("backoff: doubles from 1 s, capped at 30 s, equal jitter", () => {
  assert.equal(L.backoffDelay(0, 0), 500);
  assert.equal(L.backoffDelay(0, 0.999999) < 1000, true);
  assert.equal(L.backoffDelay(1, 0), 1000);
  assert.equal(L.backoffDelay(3, 0.5), 6000);
  assert.equal(L.backoffDelay(5, 0), 15000); // 32 s capped to 30 s
  assert.equal(L.backoffDelay(1000, 1), 30000);
});

test("stream messages", () => {
  const b = build({ name: "b1" });
  assert.deepEqual(L.parseEvent(JSON.stringify({ event: "upd", build: b })), { event: "upd", build: b });
  assert.equal(L.parseEvent(JSON.stringify({ event: "del", build: b })).event, "del");
  for (const bad of ["", "{", "null", "[]", "42", JSON.stringify({ event: "upd" }),
    JSON.stringify({ event: "new", build: b }), JSON.stringify({ event: "upd", build: { name: "x" } })]) {
    assert.equal(L.parseEvent(bad), null, bad);
  }
});

test("batched stream messages", () => {
  const b1 = build({ name: "b1" });
  const b2 = build({ name: "b2" });
  const upd = (b) => ({ event: "upd", build: b });
  assert.deepEqual(L.parseMessage(JSON.stringify(upd(b1))), [upd(b1)]);
  assert.deepEqual(L.parseMessage(JSON.stringify([upd(b1), { event: "del", build: b2 }])),
    [upd(b1), { event: "del", build: b2 }]);
  assert.deepEqual(L.parseMessage('{"event":"synced"}'), [{ event: "synced" }]);
  // order kept, invalid entries skipped
  assert.deepEqual(L.parseMessage(JSON.stringify([upd(b1), null, 7, [upd(b2)], { event: "new", build: b2 },
    { event: "upd", build: { name: "x" } }, { event: "synced" }, upd(b2)])),
  [upd(b1), { event: "synced" }, upd(b2)]);
  for (const bad of ["", "{", "null", "[]", "42", '"synced"', JSON.stringify({ event: "upd" })]) {
    assert.deepEqual(L.parseMessage(bad), [], bad);
  }
  assert.equal(L.streamQuery(""), "?batch=1");
  assert.equal(L.streamQuery("?repo=oca%2Fweb"), "?repo=oca%2Fweb&batch=1");
});

test("the marker removes what the stream did not announce", () => {
  const current = new Map(["keep", "gone", "deleted-again", "seen-deleted"].map((n) => [n, build({ name: n })]));
  const seen = new Map([["keep", "upd"], ["seen-deleted", "del"], ["brandnew", "upd"]]);
  assert.deepEqual(L.syncedRemovals(current, seen), ["gone", "deleted-again", "seen-deleted"]);
  assert.deepEqual(L.syncedRemovals(new Map(), seen), []);
});

test("a server without ?batch=1 is told by its first message", () => {
  assert.equal(L.batchedStart(JSON.stringify([{ event: "upd", build: build({ name: "a" }) }])), true);
  assert.equal(L.batchedStart("[]"), true);
  assert.equal(L.batchedStart(JSON.stringify({ event: "synced" })), true);
  // an old server's snapshot: single events
  assert.equal(L.batchedStart(JSON.stringify({ event: "upd", build: build({ name: "a" }) })), false);
  for (const bad of ["", "{", "null", "42", '"synced"']) assert.equal(L.batchedStart(bad), false, bad);
});

test("the list resynchronization (no marker) keeps the stream's word", () => {
  const current = new Map(["keep", "gone", "announced", "deleted"].map((n) => [n, build({ name: n })]));
  const seen = new Map([["announced", "upd"], ["deleted", "del"], ["new-on-stream", "upd"]]);
  const list = [build({ name: "keep" }), build({ name: "announced", status: "stopped" }),
    build({ name: "deleted" }), build({ name: "listed-only" }), { name: "bad" }];
  const plan = L.resyncPlan(current, list, seen);
  // gone: neither listed nor announced; "deleted" stays deleted (the stream said so)
  assert.deepEqual(plan.remove, ["gone"]);
  // the list's version only for builds the stream has not mentioned
  assert.deepEqual(plan.add.map((b) => b.name), ["keep", "listed-only"]);
  assert.deepEqual(L.resyncPlan(new Map(), "not a list", seen), { remove: [], add: [] });
});

test("reconnection converges whatever the interleaving (model of the hub's batched stream)", () => {
  // The server's hub for one batched subscriber: a backlog of names (the
  // snapshot, oldest first, then the marker); a change to a build still in
  // the backlog replaces it in place (conflation), any other is appended.
  // The backlog goes out in arrays of random sizes that never cross the
  // marker; changes may also arrive while the backlog is empty (single
  // events). The page, which held a stale state from before a
  // disconnection, applies the messages as app.js does; it must end equal
  // to the server.
  let rnd = 7;
  const random = () => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 500; round++) {
    const server = new Map();
    const page = new Map();
    for (let i = 0; i < 8; i++) {
      if (random() < 0.5) {
        const b = build({ name: `n${i}`, status: "stopped" });
        server.set(b.name, b);
        if (random() < 0.7) page.set(b.name, build({ name: b.name, status: "started" })); // stale
      } else if (random() < 0.4) {
        page.set(`n${i}`, build({ name: `n${i}` })); // deleted while disconnected
      }
    }
    // the backlog: [name, "upd"|"del"|"marker"]; updates read the server when sent
    const backlog = [...server.keys()].map((n) => [n, "upd"]);
    backlog.push([null, "marker"]);
    const lastDel = new Map(); // name -> its deleted state, for del events
    const messages = [];
    const change = () => {
      const name = `n${Math.floor(random() * 8)}`;
      let kind;
      if (server.has(name) && random() < 0.4) {
        lastDel.set(name, server.get(name));
        server.delete(name);
        kind = "del";
      } else {
        server.set(name, build({ name, status: random() < 0.5 ? "started" : "stopping" }));
        kind = "upd";
      }
      const at = backlog.findIndex(([n]) => n === name);
      if (at >= 0) backlog[at][1] = kind;
      else if (backlog.length) backlog.push([name, kind]);
      else messages.push(JSON.stringify({ event: kind, build: kind === "upd" ? server.get(name) : lastDel.get(name) }));
    };
    const event = ([n, kind]) => ({ event: kind, build: kind === "upd" ? server.get(n) : lastDel.get(n) });
    while (backlog.length || random() < 0.3) {
      if (random() < 0.4) change();
      if (!backlog.length) continue;
      if (backlog[0][1] === "marker") {
        backlog.shift();
        messages.push('{"event":"synced"}');
        continue;
      }
      const arr = [];
      const size = 1 + Math.floor(random() * 3);
      while (arr.length < size && backlog.length && backlog[0][1] !== "marker") arr.push(event(backlog.shift()));
      messages.push(JSON.stringify(arr));
    }
    // the page (app.js's onMessage / onSynced)
    let seen = new Map();
    let synced = 0;
    for (const data of messages) {
      for (const msg of L.parseMessage(data)) {
        if (msg.event === "synced") {
          for (const n of L.syncedRemovals(page, seen)) page.delete(n);
          seen = null;
          synced++;
        } else if (msg.event === "upd") {
          page.set(msg.build.name, msg.build);
          if (seen) seen.set(msg.build.name, "upd");
        } else {
          page.delete(msg.build.name);
          if (seen) seen.set(msg.build.name, "del");
        }
      }
    }
    assert.equal(synced, 1, `round ${round}`);
    const want = [...server.keys()].sort();
    assert.deepEqual([...page.keys()].sort(), want, `round ${round}`);
    for (const n of want) assert.equal(page.get(n).status, server.get(n).status, `round ${round} ${n}`);
  }
});

test("counters", () => {
  assert.deepEqual(L.counterView(3, 5), { text: "3 / 5", percent: 60, full: false });
  assert.deepEqual(L.counterView(5, 5), { text: "5 / 5", percent: 100, full: true });
  assert.deepEqual(L.counterView(9, 5), { text: "9 / 5", percent: 100, full: true });
  assert.deepEqual(L.counterView(2, 4, "+1 queued"), { text: "2 / 4 +1 queued", percent: 50, full: false });
  assert.deepEqual(L.counterView(7, null), { text: "7", percent: 0, full: false });
  assert.deepEqual(L.counterView(0, 0), { text: "0 / 0", percent: 0, full: false });
  for (const bad of [undefined, null, "", "x", {}]) {
    assert.deepEqual(L.counterView(bad, 5), { text: "–", percent: 0, full: false }, String(bad));
  }
});

test("summary line", () => {
  const s = (o) => L.summaryText({ loaded: true, total: 0, shown: 0, branches: 0, prs: 0, ...o });
  assert.equal(L.summaryText({ loaded: false }), "Loading builds…");
  assert.equal(L.summaryText({ loaded: false, loadError: "503 not ready" }),
    "Could not load the builds (503 not ready). Retrying…");
  assert.equal(s({}), "No builds yet.");
  assert.equal(s({ repo: "oca/web" }), "No builds in oca/web yet.");
  assert.equal(s({ total: 4, repo: "oca/web" }), "No build matches the filter (4 builds in oca/web).");
  assert.equal(s({ total: 4, shown: 4, branches: 1, prs: 2 }), "4 builds · 1 branch · 2 pull requests");
  assert.equal(s({ total: 4, shown: 1, branches: 1 }), "1 build · 1 branch (of 4)");
});

test("locations and filter URLs", () => {
  assert.deepEqual(L.parseLocation("/", ""),
    { buildName: null, live: false, repo: "", hasRepo: false, text: "", status: "" });
  assert.deepEqual(L.parseLocation("/builds", "?repo=oca%2Fweb&target_branch=16.0&status=started"),
    { buildName: null, live: false, repo: "oca/web", hasRepo: true, text: "16.0", status: "started" });
  assert.equal(L.parseLocation("/builds", "?branch=main").text, "main");
  assert.equal(L.parseLocation("/builds", "?pr=12&target_branch=16.0").text, "#12");
  assert.equal(L.parseLocation("/builds", "?status=constructor").status, "");
  const page = L.parseLocation("/builds/b%2Fx/", "?live");
  assert.equal(page.buildName, "b/x");
  assert.equal(page.live, true);
  assert.equal(L.parseLocation("/builds/%E0%A4%A", "").buildName, "%E0%A4%A"); // malformed: as is
  assert.equal(L.parseLocation("/builds/a/b", "").buildName, null);

  assert.equal(L.filtersUrl({}, "/"), "/");
  assert.equal(L.filtersUrl({}, "/builds"), "/builds");
  assert.equal(L.filtersUrl({ repo: "oca/web", text: " #12 ", status: "failed" }, "/"),
    "/builds?repo=oca%2Fweb&pr=12&status=failed");
  assert.equal(L.filtersUrl({ text: "feature/x y" }, "/"), "/builds?target_branch=feature%2Fx+y");
  // the round trip
  for (const f of [{ repo: "oca/web", text: "16.0", status: "" }, { repo: "", text: "#7", status: "started" }]) {
    const u = new URL(L.filtersUrl(f, "/"), "http://x");
    const back = L.parseLocation(u.pathname, u.search);
    assert.deepEqual({ repo: back.repo, text: back.text, status: back.status }, f);
  }
});

test("init log tail: the last lines, as text", () => {
  const log = Array.from({ length: 50 }, (_, i) => `line ${i}`).join("\n") + "\n\n";
  const tail = L.logTail(log);
  assert.equal(tail.split("\n").length, 20);
  assert.ok(tail.startsWith("line 30\n"));
  assert.ok(tail.endsWith("line 49"));
  assert.equal(L.logTail(log, 2), "line 48\nline 49");
  assert.equal(L.logTail("a\r\nb\rc"), "a\nb\nc");
  // terminal colours and control characters go; markup stays text
  assert.equal(L.logTail("\x1b[31mERROR\x1b[0m <b>x</b>\x00\x07\tok"), "ERROR <b>x</b>\tok");
  // a long line is cut
  const long = L.logTail("x".repeat(5000));
  assert.equal(long.length, L.LOG_TAIL_LINE_CHARS + 1);
  // hostile values
  for (const v of [null, undefined, 42, {}, [], ""]) assert.equal(L.logTail(v), "");
  assert.equal(L.logTail("a\nb", -1), "a\nb");
  assert.equal(L.logTail("\n\n  \n"), "");
});

test("init log tail shown for failed builds only", () => {
  assert.ok(L.showsLogTail(build({ status: "failed" })));
  for (const s of ["started", "stopped", "initializing", "undeploying"])
    assert.ok(!L.showsLogTail(build({ status: s })));
  assert.ok(!L.showsLogTail(null));
  assert.ok(!L.showsLogTail("failed"));
});

#!/usr/bin/env python3
"""Soak benchmark of runboat (issue 8): MINUTES (30) of random pushes, pull
request events, start/stop clicks and WebSocket subscribers against a
runboat on a private test control plane (RUNBOAT_TEST_CLUSTER=DIR;
test/bench/soak.sh starts one), through the fault-injecting proxy of
test/faultproxy, with faults injected all along, and the invariants checked
continuously.

Workload (rates per minute, Poisson): pushes to BRANCHES branches (new
commits, so later pushes supersede earlier ones), PR events (opened,
synchronize, closed; the fake GitHub is kept in step before each delivery),
start/stop clicks on random settled builds (start a stopped one, stop a
started one; never the same build twice within 30 s), SUBS WebSocket
subscribers of /api/v1/ws (reconnecting when dropped).

Faults (one every FAULT_EVERY s on average, at random among --faults):
  quiet     the workload pauses and every connection idle 5 s is silently
            dropped by the proxy (the production "quiet spell"), then the
            workload resumes
  longidle  the workload pauses 100 s: longer than the apiserver's own idle
            time-out (90 s), no proxy fault (runs only when MINUTES >= 10)
  restart   kube-apiserver restarted (SIGTERM or SIGKILL, alternately)
  freeze    kube-apiserver frozen (SIGSTOP) 15 s, then resumed
  blackhole the proxy forwards nothing for 5-15 s (held data flows after)
  reset     the proxy resets 3 connections mid-answer
  delay     every byte from the apiserver 2 s late, for 20 s
  kill      runboat SIGKILLed and restarted (not in the default set: it
            makes the RSS/fd figures those of a young process)

Invariants, checked all along (violations are listed at the end):
  - a push answered 2xx has its Deployment when answered (read directly
    from the apiserver right after the answer; "unverified" when the
    apiserver cannot answer then), and becomes a build: its Deployment is
    seen initialized, unless a newer push of the same branch/PR superseded
    it or the PR was closed. One accepted for LOST_AFTER s (300) without
    any of these is lost;
  - an action answered 200 was taken when answered (spec.replicas right
    after), 504 is applied within 30 s, 502 is not applied; "already
    stopped" is never the answer to a start;
  - each subscriber's view equals the API's once the run has drained.

Printed (stdout): pushes accepted / built / superseded / lost, webhook and
action latency p50/p99/max, the subscribers' figures, runboat's RSS and
open file descriptors at start and end (max in between), the faults.

usage: soak.py [--minutes 30] [--seed N] [--push-rate 12] [--pr-rate 4]
               [--click-rate 8] [--subs 20] [--branches 10]
               [--fault-every 60] [--faults quiet,restart,...] [--drain 300]
               [--no-cleanup]
"""

import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchlib as bl  # noqa: E402  (puts test/e2e on sys.path)
import requests  # noqa: E402

import fault_helpers as fh  # noqa: E402
import lifecycle_helpers as lh  # noqa: E402

ALL_FAULTS = ("quiet", "longidle", "restart", "freeze", "blackhole", "reset", "delay", "kill")
DEFAULT_FAULTS = ("quiet", "longidle", "restart", "freeze", "blackhole", "reset", "delay")
LOST_AFTER = 300.0
COOLDOWN = 30.0
log = bl.log


class SoakEnv(lh.Env):
    """lifecycle_helpers.Env's readers (builds, build, deployment) over a
    benchlib.Runner, whose runboat may be restarted."""

    def __init__(self, runner, kube, github):  # noqa: D401 - no Env.__init__
        self.runner, self.kube, self.github = runner, kube, github
        self.namespace = runner.namespace

    @property
    def rb(self):
        return self.runner.rb


class Soak:
    def __init__(self, args, kube, cluster, work):
        self.args = args
        self.kube = kube
        self.cluster = cluster
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.running = threading.Event()  # the workload may act
        self.running.set()
        self.lock = threading.Lock()
        self.violations = []
        self.faults = collections.Counter()
        self.fault_log = []
        self.github = bl.FakeGitHub(token="test-token").start()
        self.proxy, kc = fh.start_proxy(cluster, work)
        limits = ("max_initializing = 4\nmax_started = 1000\nmax_deployed = 40\n"
                  "start_after_init = false")
        self.runner = bl.Runner(kube, self.github, work, limits=limits)
        self.runner.kubeconfig = kc
        self.env = SoakEnv(self.runner, kube, self.github)
        self.ledger = fh.Ledger(self.env)
        self.seen = {}  # sha -> {"first", "init", "gone"}: the Deployments seen
        self.verify = {}  # id(delivery) -> "ok" | "missing" | "unverified"
        self.actions = []
        self.cooldown = {}  # build name -> time of the last click
        self.open_prs = {}  # number -> head sha
        self.next_pr = 100
        self.commit = 0
        self.subs = {"connects": 0, "drops": 0, "messages": 0, "views": []}
        self.proc_samples = []  # (t, pid, rss MiB, fds)
        self.kills = 0
        self.t0 = None

    def violation(self, what):
        with self.lock:
            self.violations.append(f"[{time.monotonic() - self.t0:7.1f}s] {what}")
        log("VIOLATION", what)

    def sleep(self, s):
        """Sleeps s seconds; False when the run ends meanwhile."""
        return not self.stop.wait(s)

    def wait_running(self):
        while not self.running.wait(0.5):
            if self.stop.is_set():
                return False
        return not self.stop.is_set()

    def expo(self, per_min):
        return self.rng.expovariate(per_min / 60.0) if per_min > 0 else 3600

    def next_sha(self):
        with self.lock:
            self.commit += 1
            return lh.sha(f"soak {self.args.seed} {self.commit}")

    # ---- workload ----

    def pusher(self):
        while self.sleep(self.expo(self.args.push_rate)) and self.wait_running():
            branch = f"soak-{self.rng.randrange(self.args.branches)}"
            d = self.ledger.push(branch, self.next_sha())
            self.check_recorded(d)

    def pr_events(self):
        while self.sleep(self.expo(self.args.pr_rate)) and self.wait_running():
            with self.lock:
                opened = sorted(self.open_prs)
            r = self.rng.random()
            if not opened or (r < 0.35 and len(opened) < 6):
                with self.lock:
                    n = self.next_pr
                    self.next_pr += 1
                head = self.next_sha()
                d = self.ledger.pr("opened", n, head)
                with self.lock:
                    self.open_prs[n] = head
            elif r < 0.8:
                n = self.rng.choice(opened)
                head = self.next_sha()
                d = self.ledger.pr("synchronize", n, head)
                with self.lock:
                    self.open_prs[n] = head
            else:
                n = self.rng.choice(opened)
                d = self.ledger.pr("closed", n, self.open_prs[n])
                with self.lock:
                    self.open_prs.pop(n, None)
                continue
            self.check_recorded(d)

    def check_recorded(self, d):
        """Right after a 2xx: the Deployment exists (read directly)."""
        if not d.accepted:
            return
        try:
            deps = self.ledger.deployments_by_commit()
        except (requests.RequestException, AssertionError):
            self.verify[id(d)] = "unverified"
            return
        if deps.get(d.sha):
            self.verify[id(d)] = "ok"
        else:
            self.verify[id(d)] = "missing"
            self.violation(f"{d!r}: accepted, but no Deployment right after the answer")

    def clicker(self):
        while self.sleep(self.expo(self.args.click_rate)) and self.wait_running():
            try:
                builds = self.env.builds()
            except (requests.RequestException, AssertionError):
                continue
            now = time.monotonic()
            started = [b for b in builds if b["status"] == "started"]
            cands = [b for b in builds if b["status"] in ("started", "stopped")
                     and now - self.cooldown.get(b["name"], -1e9) > COOLDOWN]
            if not cands:
                continue
            if len(started) > 8:
                cands = [b for b in cands if b["status"] == "started"] or cands
            b = self.rng.choice(cands)
            verb = "stop" if b["status"] == "started" else "start"
            self.cooldown[b["name"]] = now
            try:
                before = fh.replicas(self.env, b["name"])
            except requests.RequestException:
                before = 1 if verb == "stop" else 0
            a = fh.act(self.env, b["name"], verb, timeout=120, before=before, check=False)
            # no other click on this build until judge_later has looked, 30 s
            # after the ANSWER: a slow answer (a 504 after 20 s) must not let
            # the next click come first and be taken for this one's outcome
            self.cooldown[b["name"]] = time.monotonic()
            if a.status == 200:
                try:
                    a.replicas_at_answer = fh.replicas(self.env, b["name"])
                except requests.RequestException:
                    a.replicas_at_answer = "unverified"
            a.t = now
            with self.lock:
                self.actions.append(a)
            self.judge_now(a)
            threading.Thread(target=self.judge_later, args=(a,), daemon=True).start()

    def judge_now(self, a):
        want = "start" if a.verb == "start" else "stop"
        if a.status == 200 and "already" in a.body and f"already {want}" not in a.body:
            self.violation(f"{a!r}: 200 'already' something else")
        elif a.status == 200 and a.replicas_at_answer not in (a.target, "unverified", None) \
                and "already" not in a.body:
            self.violation(f"{a!r}: 200, but spec.replicas {a.replicas_at_answer} right after")

    def judge_later(self, a):
        if self.stop.wait(COOLDOWN - 1):
            return  # the run ended first
        try:
            dep = self.env.deployment(a.name)
        except requests.RequestException:
            return
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return  # undeployed meanwhile (the undeployer)
        rep = dep["spec"].get("replicas", 1)
        if a.status == 502 and rep != a.before:
            self.violation(f"{a!r}: reported failed (502), yet applied: replicas {a.before} -> {rep}")
        elif a.status == 504 and rep != a.target:
            self.violation(f"{a!r}: 504 (to be applied), still replicas {rep} after {COOLDOWN:.0f}s")

    # ---- observers ----

    def poller(self):
        """The Deployments, read directly every 2 s: which commits were
        deployed, initialized, removed."""
        path = f"/apis/apps/v1/namespaces/{self.runner.namespace}/deployments"
        while not self.stop.is_set():
            try:
                r = self.kube.request("GET", path, params={"labelSelector": "runboat/build"},
                                      timeout=5)
                items = r.json()["items"] if r.status_code == 200 else None
            except (requests.RequestException, ValueError):
                items = None
            if items is not None:
                now = time.monotonic()
                present = set()
                for dep in items:
                    ann = dep["metadata"].get("annotations") or {}
                    s = ann.get("runboat/git-commit")
                    present.add(s)
                    e = self.seen.setdefault(s, {"first": now, "init": None, "gone": None})
                    e["gone"] = None
                    if ann.get("runboat/init-status") in ("succeeded", "failed"):
                        e["init"] = e["init"] or ann["runboat/init-status"]
                for s, e in self.seen.items():
                    if s not in present and e["gone"] is None:
                        e["gone"] = now
            self.sample_proc()
            self.stop.wait(2)

    def sample_proc(self):
        rb = self.runner.rb
        if rb is None or rb.proc.poll() is not None:
            return
        try:
            rss, _ = bl.proc_mem_mb(rb.proc.pid)
            fds = len(os.listdir(f"/proc/{rb.proc.pid}/fd"))
        except OSError:
            return
        self.proc_samples.append((time.monotonic(), rb.proc.pid, rss, fds))

    def subscribers(self):
        asyncio.run(self._subscribers())

    async def _subscribers(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        views = [dict() for _ in range(self.args.subs)]
        self.subs["views"] = views

        async def one(i):
            while not self.stop.is_set():
                url = f"ws://127.0.0.1:{self.runner.rb.port}/api/v1/ws"
                try:
                    async with connect(url, open_timeout=10, ping_interval=20,
                                       max_size=1 << 24) as ws:
                        self.subs["connects"] += 1
                        views[i].clear()  # a stream starts with every build
                        while not self.stop.is_set():
                            try:
                                msg = await asyncio.wait_for(ws.recv(), 1.0)
                            except asyncio.TimeoutError:
                                continue
                            ev = json.loads(msg)
                            self.subs["messages"] += 1
                            b = ev.get("build") or {}
                            if ev.get("event") == "del":
                                views[i].pop(b.get("name"), None)
                            else:
                                views[i][b.get("name")] = b.get("status")
                except (OSError, WebSocketException, asyncio.TimeoutError, ValueError,
                        AttributeError):  # AttributeError: runboat being restarted
                    pass
                if not self.stop.is_set():
                    self.subs["drops"] += 1
                    await asyncio.sleep(1)

        await asyncio.gather(*(one(i) for i in range(self.args.subs)))

    def reporter(self):
        while self.sleep(30):
            c = self.classify(final=False)
            s = self.proc_samples[-1] if self.proc_samples else (0, 0, 0, 0)
            log(f"t={time.monotonic() - self.t0:5.0f}s pushes {len(self.pushes())} "
                f"answers {dict(self.ledger.answers())} built {c['built']} pending {c['pending']} "
                f"lost {c['lost']}; actions {len(self.actions)}; subs {self.subs['connects']} "
                f"connects; RSS {s[2]:.1f} MiB fds {s[3]}; violations {len(self.violations)}")

    # ---- faults ----

    def faulter(self):
        kinds = [k for k in self.args.faults if k != "longidle" or self.args.minutes >= 10]
        every = self.args.fault_every
        restarts = 0
        while self.sleep(every * self.rng.uniform(0.5, 1.5)):
            if self.remaining() < 40:
                return
            k = self.rng.choice(kinds)
            if k == "longidle" and self.faults["longidle"] >= max(1, self.args.minutes // 15):
                k = "quiet"
            t = time.monotonic()
            log(f"fault: {k}")
            try:
                self.inject(k, restarts)
            except Exception as e:  # noqa: BLE001 - a fault that failed is reported
                self.violation(f"fault {k} could not be injected: {e!r}")
            finally:
                self.proxy.clear()
                self.running.set()
            if k == "restart":
                restarts += 1
            self.faults[k] += 1
            self.fault_log.append((round(t - self.t0, 1), k, round(time.monotonic() - t, 1)))

    def inject(self, k, restarts):
        p = self.proxy
        if k == "quiet":
            self.running.clear()
            p.idle_drop(5.0)
            self.sleep(8)
            p.clear()
        elif k == "longidle":
            self.running.clear()
            self.sleep(100)
        elif k == "restart":
            sig = "TERM" if restarts % 2 == 0 else "KILL"
            subprocess.run([str(bl.ROOT / "test/cluster/cluster.sh"), "restart-apiserver",
                            str(self.cluster), sig], check=True, capture_output=True, timeout=180)
        elif k == "freeze":
            with fh.paused(self.cluster):
                self.sleep(15)
        elif k == "blackhole":
            p.blackhole()
            self.sleep(self.rng.uniform(5, 15))
        elif k == "reset":
            p.reset(2000, count=3)
            self.sleep(20)
        elif k == "delay":
            p.delay(2.0)
            self.sleep(20)
        elif k == "kill":
            old = self.runner.rb  # stays in place (refusing) until the new one is up
            old.proc.send_signal(signal.SIGKILL)
            old.proc.wait(10)
            self.kills += 1
            self.runner.start(ready_timeout=120)
            old.stop()

    def remaining(self):
        return self.args.minutes * 60 - (time.monotonic() - self.t0)

    # ---- judging ----

    def pushes(self):
        return [d for d in self.ledger.deliveries if d.sha and not (
            d.event == "pull_request" and d.payload["action"] == "closed")]

    def classify(self, final):
        """Counts of the accepted pushes: built, superseded, closed, pending,
        lost (and the lost ones)."""
        c = collections.Counter()
        lost = []
        now = time.monotonic()
        ds = self.pushes()
        closes = [d for d in self.ledger.deliveries
                  if d.event == "pull_request" and d.payload["action"] == "closed"]
        for i, d in enumerate(ds):
            e = self.seen.get(d.sha)
            built = e is not None and e["init"] is not None
            if not d.accepted:
                c["not_accepted"] += 1
                if built:
                    c["not_accepted_built"] += 1
                continue
            c["accepted"] += 1
            if built:
                c["built"] += 1
            elif any(x.key == d.key and x.accepted and x.sent_at > d.sent_at for x in ds[i + 1:]):
                c["superseded"] += 1
            elif any(x.key == d.key and x.sent_at > d.sent_at for x in closes):
                c["closed"] += 1
            elif final or now - self.t0 - (d.sent_at - self.wall0) > LOST_AFTER:
                c["lost"] += 1
                lost.append(d)
            else:
                c["pending"] += 1
        c["lost_list"] = lost
        return c

    def drain(self, timeout):
        """Waits until no accepted push is pending (built, superseded or
        closed), at most timeout s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.classify(final=False)
            if c["pending"] == 0 and all(
                    (self.seen.get(d.sha) or {}).get("init") or not d.accepted
                    for d in self.ledger.builds_wanted()):
                return True
            time.sleep(2)
        return False

    def compare_views(self):
        """Subscribers whose view differs from the API's: [(i, diff)]."""
        try:
            api = {b["name"]: b["status"] for b in self.env.builds()}
        except (requests.RequestException, AssertionError) as e:
            return [(-1, f"API unavailable: {e}")]
        out = []
        for i, v in enumerate(self.subs["views"]):
            if v != api:
                missing = sorted(set(api) - set(v))[:3]
                extra = sorted(set(v) - set(api))[:3]
                status = [(n, v[n], api[n]) for n in api if n in v and v[n] != api[n]][:3]
                out.append((i, f"missing {missing} extra {extra} status {status}"))
        return out

    # ---- the run ----

    def guarded(self, worker):
        """Runs a worker; one that crashes is reported and started again."""
        while not self.stop.is_set():
            try:
                worker()
                return
            except Exception:  # noqa: BLE001 - reported, then retried
                log(f"worker {worker.__name__} crashed (restarted in 1 s):\n"
                    + traceback.format_exc())
                self.stop.wait(1)

    def run(self):
        a = self.args
        self.runner.start()
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.sample_proc()
        workers = [self.pusher, self.pr_events, self.clicker, self.poller, self.subscribers,
                   self.reporter, self.faulter]
        threads = [threading.Thread(target=self.guarded, args=(w,), name=w.__name__, daemon=True)
                   for w in workers]
        for t in threads:
            t.start()
        log(f"soak for {a.minutes} min: runboat pid {self.runner.pid}, proxy :{self.proxy.port}, "
            f"namespace {self.runner.namespace}")
        while self.remaining() > 0:
            time.sleep(1)
        # the end: the workload stops, faults off, everything drains
        self.running.clear()
        self.proxy.clear()
        log("workload stopped; draining")
        drained = self.drain(self.args.drain)
        time.sleep(10)  # the streams catch up
        views = self.compare_views()
        c = self.classify(final=True)
        self.sample_proc()
        self.stop.set()
        for t in threads:
            t.join(30)
        return drained, views, c

    def report(self, drained, views, c):
        a = self.args
        dur = time.monotonic() - self.t0
        ds = self.ledger.deliveries
        answers = collections.Counter(d.status for d in ds)
        print(f"duration: {dur / 60:.1f} min (workload {a.minutes} min, then drained"
              f"{'' if drained else f' NOT fully in {a.drain:.0f} s'}); seed {a.seed}")
        print(f"faults: {sum(self.faults.values())} ({', '.join(f'{k} {n}' for k, n in sorted(self.faults.items()))})")
        pushes = [d for d in ds if d.event == "push"]
        prs = [d for d in ds if d.event == "pull_request"]
        print(f"webhooks sent: {len(ds)} ({len(pushes)} pushes, {len(prs)} PR events); answers "
              + ", ".join(f"{k if k is not None else 'none'}: {n}" for k, n in sorted(
                  answers.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
        v = collections.Counter(self.verify.values())
        print(f"pushes/PR heads accepted: {c['accepted']}: built {c['built']}, superseded by a newer "
              f"one {c['superseded']}, PR closed first {c['closed']}, LOST {c['lost']}; "
              f"Deployment right after the 2xx: {v['ok']} yes, {v['missing']} NO, "
              f"{v['unverified']} unverified (apiserver unavailable)")
        print(f"not accepted: {c['not_accepted']}, built anyway (runboat kept trying / GitHub "
              f"reconciliation): {c['not_accepted_built']}")
        lat = [d.elapsed for d in ds if d.elapsed is not None and d.status is not None]
        print(f"webhook answer latency: {bl.summary(lat, ps=(50, 99))}")
        acts = self.actions
        ac = collections.Counter(x.status for x in acts)
        print(f"actions: {len(acts)} (" + ", ".join(f"{k}: {n}" for k, n in sorted(
            ac.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))) + ")")
        print(f"action latency: {bl.summary([x.elapsed for x in acts], ps=(50, 99))}")
        print(f"subscribers: {a.subs}, connections {self.subs['connects']}, drops "
              f"{self.subs['drops']}, messages {self.subs['messages']}; views differing from the "
              f"API at the end: {len(views)}")
        first = [s for s in self.proc_samples if s[1] == self.proc_samples[0][1]] if self.proc_samples else []
        last = [s for s in self.proc_samples if s[1] == self.proc_samples[-1][1]] if self.proc_samples else []
        if first and last:
            print(f"runboat: RSS {first[0][2]:.1f} MiB at start, {last[-1][2]:.1f} MiB at end "
                  f"(max {max(s[2] for s in self.proc_samples):.1f}); open fds {first[0][3]} at "
                  f"start, {last[-1][3]} at end (max {max(s[3] for s in self.proc_samples)}); "
                  f"restarts (kill fault) {self.kills}")
        st = self.proxy.stats()
        print(f"proxy: {st.get('accepted', 0)} connections, {st.get('idle_dropped', 0)} idle-dropped, "
              f"{st.get('resets', 0)} reset, {st.get('upstream_failed', 0)} upstream refused")
        print("fault log (t s, kind, lasted s): " + ", ".join(f"{t}:{k}:{d}" for t, k, d in self.fault_log))
        for d in c["lost_list"]:
            self.violations.append(f"lost: {d!r}")
        for i, diff in views:
            self.violations.append(f"subscriber {i}: view differs from the API: {diff}")
        print(f"INVARIANT VIOLATIONS: {len(self.violations)}")
        for x in self.violations[:40]:
            print("  " + x)
        if len(self.violations) > 40:
            print(f"  ... and {len(self.violations) - 40} more")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--push-rate", type=float, default=12)
    ap.add_argument("--pr-rate", type=float, default=4)
    ap.add_argument("--click-rate", type=float, default=8)
    ap.add_argument("--subs", type=int, default=20)
    ap.add_argument("--branches", type=int, default=10)
    ap.add_argument("--fault-every", type=float, default=None,
                    help="mean seconds between faults (default 60, less in short runs)")
    ap.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                    help="comma-separated among " + ",".join(ALL_FAULTS))
    ap.add_argument("--drain", type=float, default=300,
                    help="seconds the accepted pushes get to settle after the workload")
    ap.add_argument("--no-cleanup", action="store_true", help="leave the namespace")
    args = ap.parse_args()
    args.faults = [f for f in args.faults.split(",") if f]
    bad = [f for f in args.faults if f not in ALL_FAULTS]
    if bad or not args.faults:
        sys.exit(f"unknown faults {bad}; choose among {','.join(ALL_FAULTS)}")
    if args.fault_every is None:
        args.fault_every = min(60.0, max(15.0, args.minutes * 60 / 6))
    cluster = bl.cluster()
    if cluster.resolve().name == "rb-shared":
        sys.exit("the soak restarts and freezes the apiserver: use a cluster of your own")
    kube = bl.Kube(cluster)
    work = pathlib.Path(os.environ.get("SOAK_WORKDIR") or f"/tmp/runboat-soak-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    bl.header("soak")
    s = Soak(args, kube, cluster, work)
    try:
        drained, views, c = s.run()
        s.report(drained, views, c)
    finally:
        s.stop.set()
        s.running.set()
        s.runner.stop()
        s.proxy.stop()
        s.github.stop()
        if not args.no_cleanup:
            bl.delete_namespace(kube, s.runner.namespace)
        log(f"runboat logs in {work}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Lifecycle benchmark of the release runboat on the test control plane
(RUNBOAT_TEST_CLUSTER=DIR; test/bench/bench_lifecycle.sh starts one).

1. webhook -> build: signed GitHub push webhooks (one per branch), timed
   from the POST to
     (a) every object of the build's deployment mode existing in the cluster
         (Deployment, ConfigMaps, Secret, Service, Ingresses, PVC: as many of
         each kind as `runboat render --mode deployment` gives; seen by our
         own watches, label runboat/build), and
     (b) runboat reporting the build "started" (its SSE stream): init Job
         run by podsim (1 s by default), Deployment scaled up and available.
   A few single builds one after the other, then bursts of N builds (100
   webhooks for 100 branches, all in flight at once by default: --in-flight)
   with the default client rate
   limit ([kubernetes] qps 20, burst 40) and with qps 200, burst 400.
   Limits are raised so that they do not gate the burst (max_initializing =
   N, max_started = N, max_deployed = 2N): the figures are runboat's and the
   control plane's, not the queueing policy's.

2. resync after a restart with M builds (10,000): M Deployments are created
   through the API as runboat leaves a stopped build (its own rendering,
   renamed; init-status succeeded, last-scaled set, replicas 0, unpaused,
   finalizer),
   the control plane is left to settle, then runboat is started (max_deployed
   above M, or its undeployer would start removing builds): time to /readyz
   200 and to /api/v1/status showing M deployed; VmRSS and VmHWM; time of a
   few API reads with M builds. Twice (two restarts).

Every phase has a deadline; the namespaces are deleted at the end (runboat's
finalizers removed first). Figures go to stdout, progress to stderr.

usage: bench_lifecycle.py [--burst N] [--singles K] [--resync M]
                          [--skip-lifecycle] [--skip-resync] [--no-cleanup]
"""

import argparse
import collections
import concurrent.futures
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time

import requests

import benchlib as bl
from benchlib import log


# ---- observers ----

def hangup(resp):
    """Ends a streaming response another thread is reading: shuts the
    socket down (closing a TLS stream under a reader can block)."""
    try:
        resp.raw.connection.sock.shutdown(socket.SHUT_RDWR)
    except Exception:
        pass


class Audit:
    """runboat's API requests, counted from kube-apiserver's audit log
    (test/cluster/cluster.sh with RUNBOAT_AUDIT=1 writes DIR/audit.log):
    requests whose user agent is runboat's, by verb and resource."""

    def __init__(self, cluster_dir):
        self.path = pathlib.Path(cluster_dir) / "audit.log"

    @property
    def on(self):
        return self.path.exists()

    def mark(self):
        return self.path.stat().st_size if self.on else 0

    def count(self, since, namespace):
        """Counter of "verb resource[/subresource]" of runboat's requests
        in namespace (and cluster-wide ones, as "verb resource (cluster)")
        logged after the offset since."""
        out = collections.Counter()
        if not self.on:
            return out
        seen = set()
        with open(self.path, "rb") as f:
            f.seek(since)
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if not ev.get("userAgent", "").startswith("runboat/"):
                    continue
                if ev.get("auditID") in seen:  # a watch: ResponseStarted, then ResponseComplete
                    continue
                seen.add(ev.get("auditID"))
                ref = ev.get("objectRef") or {}
                ns = ref.get("namespace")
                if ns and ns != namespace:
                    continue
                what = ref.get("resource") or ev.get("requestURI", "?").split("?")[0]
                if ref.get("subresource"):
                    what += "/" + ref["subresource"]
                if not ns:
                    what += " (cluster)"
                out[f"{ev.get('verb')} {what}"] += 1
        return out


def print_calls(title, counter, builds):
    total = sum(counter.values())
    print(f"     {title}: {total / builds:.1f} per build ({total} calls, {builds} build"
          f"{'s' if builds != 1 else ''})")
    for what, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"       {n / builds:6.2f}  {what}")


class Watches:
    """Watches every kind the deployment mode renders, label runboat/build,
    in one namespace; remembers when each object was first seen."""

    def __init__(self, kube, namespace, kinds):
        self.kube = kube
        self.namespace = namespace
        self.first = {}  # (build, kind, name) -> monotonic
        self.job_done = {}  # (build, "Job", name) -> first seen succeeded
        self.lock = threading.Lock()
        self.responses = []
        self.threads = []
        for api_version, kind in kinds:
            plural, _ = kube.resource(api_version, kind)
            prefix = "/api/" if "/" not in api_version else "/apis/"
            path = f"{prefix}{api_version}/namespaces/{namespace}/{plural}"
            t = threading.Thread(target=self.run, args=(path, kind), daemon=True)
            self.threads.append(t)
        self.ready = threading.Barrier(len(self.threads) + 1)
        for t in self.threads:
            t.start()
        self.ready.wait(60)

    def run(self, path, kind):
        sel = {"labelSelector": "runboat/build"}
        r = self.kube.request("GET", path, params=dict(sel, limit=1))
        rv = r.json()["metadata"]["resourceVersion"]
        resp = self.kube.request("GET", path, stream=True, timeout=(10, 3600),
                                 params=dict(sel, watch="1", resourceVersion=rv,
                                             timeoutSeconds="3000"))
        self.responses.append(resp)
        self.ready.wait(60)
        try:
            for line in resp.iter_lines(chunk_size=None):
                t = time.monotonic()
                if not line:
                    continue
                ev = json.loads(line)
                if ev.get("type") not in ("ADDED", "MODIFIED"):
                    continue
                meta = ev["object"]["metadata"]
                key = (meta.get("labels", {}).get("runboat/build"), kind, meta["name"])
                with self.lock:
                    self.first.setdefault(key, t)
                    if kind == "Job" and (ev["object"].get("status") or {}).get("succeeded"):
                        self.job_done.setdefault(key, t)
        except Exception:  # closed by stop()
            pass

    def complete_at(self, expected):
        """{build: time all its expected objects existed}."""
        seen = collections.defaultdict(lambda: collections.defaultdict(list))
        with self.lock:
            for (build, kind, _), t in self.first.items():
                seen[build][kind].append(t)
        out = {}
        for build, kinds in seen.items():
            ts = []
            for kind, count in expected.items():
                got = sorted(kinds.get(kind, []))
                if len(got) < count:
                    break
                ts.append(got[count - 1])
            else:
                out[build] = max(ts)
        return out

    def stop(self):
        for r in self.responses:
            hangup(r)


class Events:
    """runboat's SSE stream of every build: when each build was first
    shown, and first shown "started"; its branch."""

    def __init__(self, url):
        self.branch = {}
        self.seen = {}
        self.started = {}
        self.statuses = collections.Counter()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.resp = requests.get(url, stream=True, timeout=(10, 3600))
        assert self.resp.status_code == 200, self.resp.text
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            for line in self.resp.iter_lines(chunk_size=None):
                t = time.monotonic()
                if not line.startswith(b"data: "):
                    continue
                ev = json.loads(line[6:])
                b = ev.get("build") or {}
                name = b.get("name")
                with self.cond:
                    self.branch.setdefault(name, b.get("commit_info", {}).get("target_branch"))
                    self.seen.setdefault(name, t)
                    if ev.get("event") == "upd" and b.get("status") == "started":
                        self.started.setdefault(name, t)
                    self.cond.notify_all()
        except Exception:
            pass

    def wait_started(self, branches, timeout):
        """Waits until a build of every branch is started; returns the
        branches still missing."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                done = {self.branch[n] for n in self.started}
                missing = set(branches) - done
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.cond.wait(min(left, 1))

    def stop(self):
        hangup(self.resp)


# ---- webhook -> started ----

def send_webhooks(runner, branches, inflight=8):
    """POSTs one signed push webhook per branch; returns {branch: (t_post,
    rtt)}."""
    sess = threading.local()
    out = {}

    def one(i_branch):
        i, branch = i_branch
        if not hasattr(sess, "s"):
            sess.s = requests.Session()
        payload = bl.lh.push_payload(branch, bl.lh.sha(f"{branch}"))
        body = json.dumps(payload).encode()
        import hashlib
        import hmac
        h = {"X-GitHub-Event": "push", "Content-Type": "application/json",
             "X-GitHub-Delivery": f"bench-{i}",
             "X-Hub-Signature-256": "sha256=" + hmac.new(bl.SECRET.encode(), body,
                                                         hashlib.sha256).hexdigest()}
        t = time.monotonic()
        r = sess.s.post(runner.url("/webhooks/github"), data=body, headers=h, timeout=30)
        rtt = time.monotonic() - t
        if r.status_code == 503:
            # not recorded within the webhook's wait: GitHub would show a
            # failed delivery (runboat keeps trying); counted, and sent again
            # as GitHub's redelivery would be
            rtt = -rtt
            r = sess.s.post(runner.url("/webhooks/github"), data=body, headers=h, timeout=30)
        if r.status_code not in (200, 202):
            raise RuntimeError(f"webhook for {branch}: {r.status_code} {r.text}")
        return branch, t, rtt

    with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
        for branch, t, rtt in ex.map(one, enumerate(branches)):
            out[branch] = (t, rtt)
    return out


def expected_objects(runner):
    objs = bl.render_deployment(runner.config_path(), "b" + "0" * 32)
    kinds = sorted({(o["apiVersion"], o["kind"]) for o in objs})
    return kinds, collections.Counter(o["kind"] for o in objs)


def measure(runner, watches, events, expected, branches, timeout, inflight=8, audit=None):
    """One batch of webhooks; returns the figures."""
    cpu0 = bl.proc_cpu_s(runner.pid)
    mark = audit.mark() if audit else 0
    posts = send_webhooks(runner, branches, inflight)
    missing = events.wait_started(branches, timeout)
    if missing:
        try:
            now = {b["commit_info"]["target_branch"]: b["status"]
                   for b in requests.get(runner.url("/api/v1/builds"), timeout=30).json()}
            log(f"not started within {timeout}s: " +
                ", ".join(f"{b} ({now.get(b, 'unknown')})" for b in sorted(missing)[:10]))
        except requests.RequestException:
            pass
    t_end = time.monotonic()
    cpu1 = bl.proc_cpu_s(runner.pid)
    time.sleep(1.5)  # let the watches (and the audit log) catch up with the last calls
    complete = watches.complete_at(expected)
    calls = audit.count(mark, runner.namespace) if audit else collections.Counter()
    with events.lock:
        by_branch = {}
        for name, br in events.branch.items():
            if br in posts:
                by_branch[br] = name
        started = dict(events.started)
    with watches.lock:
        job_first = {k[0]: t for k, t in watches.first.items() if k[1] == "Job"}
        job_done = {k[0]: t for k, t in watches.job_done.items()}
    job_time = [job_done[b] - job_first[b] for b in job_done if b in job_first
                and b in by_branch.values()]
    inits = [job_done[by_branch[b]] for b in branches if by_branch.get(b) in job_done]
    objects_lat, started_lat = [], []
    for br, (t_post, _) in posts.items():
        name = by_branch.get(br)
        if name in complete:
            objects_lat.append(complete[name] - t_post)
        if name in started:
            started_lat.append(started[name] - t_post)
    t_first = min(t for t, _ in posts.values())
    last_started = max((started[by_branch[b]] for b in branches
                        if by_branch.get(b) in started), default=t_end)
    return {
        "n": len(branches),
        "inflight": inflight,
        "missing": sorted(missing),
        "post_rtt": [abs(rtt) for _, rtt in posts.values()],
        "not_recorded": sum(1 for _, rtt in posts.values() if rtt < 0),
        "objects": objects_lat,
        "started": started_lat,
        "wall": last_started - t_first,
        "calls": calls,
        "job_time": job_time,
        "initialized": len(inits),
        "all_initialized": (max(inits) - t_first) if inits else None,
        "cpu": cpu1 - cpu0,
        "mem": bl.proc_mem_mb(runner.pid),
    }


def lifecycle_run(kube, github, workdir, label, kube_more, n, singles, timeout, cleanup,
                  inflight=100, max_init=None, audit=None, tag=None):
    max_init = max_init or max(n, 2)
    limits = f"max_initializing = {max_init}\nmax_started = {max(n, 6)}\nmax_deployed = {max(2 * n, 20)}"
    runner = bl.Runner(kube, github, workdir, limits=limits, kube_more=kube_more)
    results = []
    try:
        runner.start()
        kinds, expected = expected_objects(runner)
        watches = Watches(kube, runner.namespace, sorted(set(kinds) | {("batch/v1", "Job")}))
        events = Events(runner.url("/api/v1/build-events"))
        try:
            tag = tag or label.split()[0].replace("/", "-")
            for k in range(singles):
                log(f"{label}: single build {k + 1}/{singles}")
                results.append(("single", measure(runner, watches, events, expected,
                                                  [f"bench/{tag}-single-{k}"], 120,
                                                  audit=audit)))
            if n:
                log(f"{label}: burst of {n} webhooks")
                results.append(("burst", measure(runner, watches, events, expected,
                                                 [f"bench/{tag}-burst-{i:03d}" for i in range(n)],
                                                 timeout, inflight, audit)))
        finally:
            watches.stop()
            events.stop()
        logtext = runner.rb.logs()
        warns = [ln for ln in logtext.splitlines() if " WARN " in ln.upper() or "ERROR" in ln.upper()]
    finally:
        runner.stop()
        if cleanup:
            bl.delete_namespace(kube, runner.namespace)
    return results, warns, describe(expected)


def describe(expected):
    return ", ".join(f"{n} {k}" for k, n in sorted(expected.items()))


def print_lifecycle(label, results, expected_desc, max_init=None):
    print(f"\n== webhook -> build, {label}")
    print(f"   objects checked: {expected_desc}")
    singles = [r for kind, r in results if kind == "single"]
    if singles:
        obj = [x for r in singles for x in r["objects"]]
        st = [x for r in singles for x in r["started"]]
        print(f"   single build, {len(singles)} runs one after the other:")
        print(f"     webhook POST answered     {bl.summary([x for r in singles for x in r['post_rtt']], ps=(50,))}")
        print(f"     -> all objects exist      {bl.summary(obj, ps=(50,))}")
        print(f"     -> started                {bl.summary(st, ps=(50,))}")
        calls = collections.Counter()
        for r in singles:
            calls.update(r["calls"])
        if calls:
            print_calls("API requests, webhook -> started (deploy + initialize + start)", calls,
                        len(singles))
    for kind, r in results:
        if kind != "burst":
            continue
        print(f"   burst of {r['n']} webhooks ({r['inflight']} in flight; a 202 means the "
              "build's Deployment exists):")
        print(f"     webhook POST answered     {bl.summary(r['post_rtt'], ps=(50, 99))}"
              f"; 503 (not recorded within 8 s, redelivered): {r['not_recorded']}")
        print(f"     -> all objects exist      {bl.summary(r['objects'])}")
        print(f"     -> started                {bl.summary(r['started'])}")
        print(f"     wall time, first POST -> last build started: {r['wall']:.1f} s"
              + (f"   MISSING {len(r['missing'])}: {r['missing'][:5]}" if r["missing"] else ""))
        print(f"     runboat CPU during the burst: {r['cpu']:.1f} s; "
              f"VmRSS {r['mem'][0]:.1f} MiB, VmHWM {r['mem'][1]:.1f} MiB")
        if r["all_initialized"] is not None:
            jt = sorted(r["job_time"])
            med = jt[len(jt) // 2] if jt else 0
            line = (f"     all initialized (init Job seen succeeded): {r['initialized']}/{r['n']} "
                    f"after {r['all_initialized']:.1f} s; init Job's own time (seen created -> "
                    f"seen succeeded) p50 {med:.2f} s")
            if max_init:
                bound = r["n"] / max_init * med
                line += (f"; the queue allows {r['n']} / {max_init} x {med:.2f} = {bound:.1f} s: "
                         f"{r['all_initialized'] / bound:.2f}x" if bound else "")
            print(line)
        if r["calls"]:
            print_calls("API requests, first POST -> last started", r["calls"], r["n"])


# ---- resync ----

def kcm_signal(sig):
    subprocess.run([str(bl.ROOT / "test/cluster/cluster.sh"), "kill", str(bl.cluster()),
                    "kube-controller-manager", sig], check=True, capture_output=True)


def count_builds(kube, namespace):
    """How many runboat Deployments the namespace holds (metadata only)."""
    return len(bl.list_all(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments",
                           {"labelSelector": "runboat/build"}, partial=True))


def resync(kube, github, workdir, m, restarts, cleanup, pause_kcm, namespace=None, bins=None):
    bins = bins or [bl.runboat_bin()]
    runner = bl.Runner(kube, github, workdir, namespace=namespace,
                       limits=f"max_deployed = {2 * m}\nmax_started = 6\nmax_initializing = 2")
    out = {"m": m, "runs": []}
    try:
        # a first start, only to have a configuration file to render with
        runner.start()
        config = runner.config_path()
        runner.stop()
        have = count_builds(kube, runner.namespace) if namespace else 0
        if have not in (0, m):
            raise RuntimeError(f"{namespace} holds {have} builds, not 0 or {m}")
        if pause_kcm:
            # kube-controller-manager would otherwise update the 10,000
            # Deployments' status (and make their ReplicaSets) during the
            # measurement; on a small machine it takes it far too long
            log("resync: pausing kube-controller-manager (SIGSTOP)")
            kcm_signal("STOP")
            out["kcm"] = "paused (SIGSTOP) from before the creation to the end: no status churn"
        if have == m:
            log(f"resync: {namespace} already holds {m} builds: reused")
            out["reused"] = namespace
        else:
            log(f"resync: creating {m} Deployments in {runner.namespace}")
            t0 = time.monotonic()
            bl.create_stopped_builds(kube, config, runner.namespace, m)
            out["create_s"] = time.monotonic() - t0
        if not pause_kcm:
            log(f"resync: waiting (at most 300 s) for kube-controller-manager to process them")
            synced = bl.wait_deployments_settled(kube, runner.namespace, m, timeout=300)
            out["kcm"] = (f"running; it had processed {synced}/{m} Deployments when runboat "
                          "was started (the rest was still being processed)")
        for k in range(restarts):
            for b in bins:
                os.environ["RUNBOAT_BIN"] = b
                log(f"resync: start {k + 1}/{restarts} of {b}")
                out["runs"].append(dict(one_restart(runner, m), bin=b))
    finally:
        runner.stop()
        if pause_kcm:
            kcm_signal("CONT")
        if cleanup and not namespace:
            log(f"resync: deleting {runner.namespace}")
            bl.delete_namespace(kube, runner.namespace, wait=600)
    return out


def apiserver_cpu_s():
    """kube-apiserver's utime + stime (s), or None if its pid is not known."""
    try:
        pid = int((bl.cluster() / "pids" / "kube-apiserver.pid").read_text().split()[0])
        return bl.proc_cpu_s(pid)
    except (OSError, ValueError, IndexError):
        return None


def one_restart(runner, m):
    """Starts runboat on the populated namespace and measures its resync."""
    api0 = apiserver_cpu_s()
    t_spawn = runner.start(wait_ready=False)
    t_ready = runner.wait_ready(600)
    deadline = time.monotonic() + 600
    while True:
        st = runner.status()
        if st.get("deployed") == m:
            t_all = time.monotonic()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"status after 600s: {st}")
        time.sleep(0.05)
    cpu = bl.proc_cpu_s(runner.pid)
    api1 = apiserver_cpu_s()
    mem_sync = bl.proc_mem_mb(runner.pid)
    time.sleep(5)
    mem_idle = bl.proc_mem_mb(runner.pid)
    reads = {}
    for what, path in [("GET /api/v1/status", "/api/v1/status"),
                       ("GET /api/v1/builds (all)", "/api/v1/builds"),
                       ("GET /api/v1/builds?repo=acme/repo7", "/api/v1/builds?repo=acme/repo7"),
                       ("GET /api/v1/builds/{name}", f"/api/v1/builds/{bl.build_name(7)}")]:
        ts = []
        size = 0
        for _ in range(5):
            t = time.monotonic()
            r = requests.get(runner.url(path), timeout=60)
            ts.append(time.monotonic() - t)
            size = len(r.content)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        reads[what] = (min(ts), sorted(ts)[2], size)
    mem_after_reads = bl.proc_mem_mb(runner.pid)
    logtext = runner.rb.logs()
    warns = [ln for ln in logtext.splitlines()
             if " WARN " in ln.upper() or "ERROR" in ln.upper()]
    runner.stop()
    return {"ready": t_ready - t_spawn, "all": t_all - t_spawn, "cpu": cpu,
            "api_cpu": api1 - api0 if api0 is not None and api1 is not None else None,
            "mem_sync": mem_sync, "mem_idle": mem_idle, "mem_reads": mem_after_reads,
            "reads": reads, "status": st, "warns": warns,
            "load": " ".join(open("/proc/loadavg").read().split()[:3])}


def print_resync(r):
    m = r["m"]
    print(f"\n== resync after a restart with {m} builds (stopped Deployments created through the API)")
    if r.get("reused"):
        print(f"   namespace {r['reused']} reused (already populated); "
              f"kube-controller-manager: {r.get('kcm', '?')}")
    else:
        print(f"   creating them: {r.get('create_s', 0):.0f} s (32 server-side applies in flight); "
              f"kube-controller-manager: {r.get('kcm', '?')}")
    for i, run in enumerate(r["runs"]):
        print(f"   start {i + 1} ({run['bin']}, load {run['load']}): /readyz 200 after "
              f"{run['ready']:.2f} s; status shows {m} deployed "
              f"after {run['all']:.2f} s; CPU used by then {run['cpu']:.2f} s"
              + (f" (kube-apiserver: {run['api_cpu']:.2f} s)" if run.get("api_cpu") is not None
                 else ""))
        print(f"     memory: at sync VmRSS {run['mem_sync'][0]:.1f} MiB (VmHWM {run['mem_sync'][1]:.1f}); "
              f"5 s later VmRSS {run['mem_idle'][0]:.1f} MiB; after the reads below "
              f"VmRSS {run['mem_reads'][0]:.1f} MiB, VmHWM {run['mem_reads'][1]:.1f} MiB")
        for what, (best, med, size) in run["reads"].items():
            print(f"     {what:38s} best {best * 1000:7.1f} ms, median {med * 1000:7.1f} ms, {size} bytes")
        if run["warns"]:
            print(f"     {len(run['warns'])} warning/error lines in runboat's log, first: {run['warns'][0][:200]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=100,
                    help="webhooks of a burst sent at once (GitHub's deliveries overlap)")
    ap.add_argument("--singles", type=int, default=3)
    ap.add_argument("--resync", type=int, default=10000)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=400, help="deadline of one burst, seconds")
    ap.add_argument("--skip-lifecycle", action="store_true")
    ap.add_argument("--skip-resync", action="store_true")
    ap.add_argument("--only-qps", choices=["default", "200", "queue"], help="one run only")
    ap.add_argument("--raised", default="200:400", metavar="QPS:BURST",
                    help="the client rate limit of the run named 200")
    ap.add_argument("--runs", default="default,200,queue",
                    help="lifecycle runs, comma-separated: default (the default client rate "
                         "limit), 200 (qps 200), queue (default rate limit, max_initializing 2)")
    ap.add_argument("--no-cleanup", action="store_true",
                    help="leave the resync's namespace (when the cluster is thrown away after)")
    ap.add_argument("--namespace",
                    help="the resync's namespace: reused when it already holds the builds "
                         "(else they are created in it), and left in place at the end")
    ap.add_argument("--bins",
                    help="comma-separated runboat binaries restarted in turn on the same "
                         "builds (default RUNBOAT_BIN)")
    ap.add_argument("--pause-kcm", action="store_true",
                    help="pause kube-controller-manager (SIGSTOP) during the resync (only on a "
                         "cluster of your own)")
    args = ap.parse_args()

    kube = bl.Kube(bl.cluster())
    workdir = tempfile.mkdtemp(prefix="rbbench-lifecycle-")
    log(f"runboat {bl.runboat_bin()}, cluster {bl.cluster()}, work dir {workdir}")
    bl.header("bench_lifecycle")
    with bl.FakeGitHub(token="test-token") as github:
        if not args.skip_lifecycle:
            n = args.burst
            q, bu = args.raised.split(":")
            variants = {"default": ("default client rate limit", "", None, args.singles),
                        "200": (f"qps {q}, burst {bu}", f"qps = {q}\nburst = {bu}", None,
                                args.singles),
                        "queue": ("queue: default client rate limit", "", 2, 0)}
            runs = args.runs.split(",")
            if args.only_qps:
                runs = [args.only_qps]
            audit = Audit(bl.cluster())
            if not audit.on:
                log(f"no {audit.path}: API requests not counted (start the cluster with RUNBOAT_AUDIT=1)")
            for run in runs:
                label, kube_more, max_init, singles = variants[run]
                results, warns, desc = lifecycle_run(kube, github, workdir, label, kube_more, n,
                                                     singles, args.timeout, True,
                                                     args.in_flight, max_init, audit, run)
                print_lifecycle(f"{label}; limits max_initializing {max_init or max(n, 2)}, "
                                f"max_started {max(n, 6)}, max_deployed {max(2 * n, 20)}",
                                results, desc, max_init)
                if warns:
                    print(f"   {len(warns)} warning/error lines in runboat's log, e.g.:")
                    for w in warns[:5]:
                        print("     " + w[:220])
                sys_flush()
        if not args.skip_resync:
            bins = [os.path.realpath(b) for b in args.bins.split(",")] if args.bins else None
            r = resync(kube, github, workdir, args.resync, args.restarts, not args.no_cleanup,
                       args.pause_kcm, args.namespace, bins)
            print_resync(r)
            sys_flush()


def sys_flush():
    import sys
    sys.stdout.flush()


if __name__ == "__main__":
    main()

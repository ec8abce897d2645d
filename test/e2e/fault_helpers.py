"""What the fault tests (test_faults.py) and the soak benchmark
(test/bench/soak.py) share: the fault-injecting proxy in front of the test
control plane's kube-apiserver, a ledger of the webhooks sent and of what
runboat answered, the invariants checked on it, actions with their answers,
and pausing a control-plane component (always resumed).

The invariants (issue 8):
  - every push runboat accepted (2xx) is recorded in Kubernetes when it is
    answered (its Deployment exists) and becomes a whole build (every
    object of the deployment mode, initialized);
  - a push answered 503 was not accepted: redelivered once the fault is
    gone, it is accepted, and never makes a second build;
  - an action answered 200 was taken by Kubernetes when answered; 504: it
    is applied later; 502: it was refused and NOT applied (no fault here
    makes Kubernetes refuse anything, so a 502 is itself a failure)."""

import collections
import contextlib
import hashlib
import hmac
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import requests

from conftest import ROOT, runboat_bin
from kube_helpers import read_env_file
from lifecycle_helpers import REPO, SECRET, pr_payload, push_payload, wait_for

sys.path.insert(0, str(ROOT / "test" / "faultproxy"))
from faultproxy import FaultProxy  # noqa: E402

WEBHOOK_LIMIT = 10.0  # GitHub counts a delivery not answered in 10 s as failed
SETTLED = ("started", "stopped")


# ---- the proxy ----

def proxied_kubeconfig(cluster, port, path):
    """Writes to path a copy of the cluster's kubeconfig whose server is the
    proxy on 127.0.0.1:port (the apiserver's certificate covers 127.0.0.1);
    returns path."""
    text = (pathlib.Path(cluster) / "kubeconfig").read_text()
    text, n = re.subn(r"(server:\s*https://127\.0\.0\.1:)\d+", rf"\g<1>{port}", text)
    assert n == 1, "the cluster's kubeconfig has no https://127.0.0.1:PORT server"
    pathlib.Path(path).write_text(text)
    os.chmod(path, 0o600)
    return str(path)


def start_proxy(cluster, workdir):
    """A FaultProxy to the cluster's apiserver and a kubeconfig through it:
    (proxy, kubeconfig path). Stop the proxy with proxy.stop()."""
    env = read_env_file(pathlib.Path(cluster) / "env")
    p = FaultProxy("127.0.0.1", int(env["APISERVER_PORT"])).start()
    kc = proxied_kubeconfig(cluster, p.port, pathlib.Path(workdir) / "kubeconfig-proxied")
    return p, kc


# ---- pausing a component ----

@contextlib.contextmanager
def paused(cluster, component="kube-apiserver"):
    """SIGSTOP a component of the control plane for the duration of the
    block; it is resumed (SIGCONT) whatever happens, and the block's exit
    waits until the apiserver is ready again."""
    cluster = pathlib.Path(cluster)
    # never the team's shared cluster: the other engineers' tests run on it
    assert cluster.resolve().name != "rb-shared", (
        "this test freezes the control plane: run it on a cluster of your own "
        "(test/cluster/cluster.sh start /tmp/rb-NAME)")
    pid = int((cluster / "pids" / f"{component}.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)
        env = read_env_file(cluster / "env")
        s = requests.Session()
        s.cert = (env["ADMIN_CERT"], env["ADMIN_KEY"])

        def ready():
            r = s.get(env["APISERVER_URL"] + "/readyz", verify=env["CA_CERT"], timeout=5)
            return r.status_code == 200

        wait_for(ready, 60, f"{component} ready after SIGCONT")


# ---- webhooks ----

def sign(body):
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


class Delivery:
    """One webhook sent, and what came back."""

    def __init__(self, event, payload, key, sha):
        self.event, self.payload = event, payload
        self.key, self.sha = key, sha  # key: ("branch", name) or ("pr", number)
        self.status = None  # None: no answer (time-out, connection error)
        self.error = None
        self.elapsed = None
        self.sent_at = None
        self.body = ""
        self.redelivered = []  # statuses of the redeliveries

    @property
    def accepted(self):
        return self.status is not None and 200 <= self.status < 300

    def __repr__(self):
        return (f"<{self.event} {self.key} {self.sha[:8] if self.sha else '-'} -> {self.status}"
                f"{' ' + self.error if self.error else ''} in {self.elapsed:.2f}s>"
                if self.elapsed is not None else f"<{self.event} {self.key} unsent>")


class Ledger:
    """The webhooks sent to one runboat (through Env), the fake GitHub kept in
    step (GitHub's state changes before it delivers), and the invariants."""

    def __init__(self, env):
        self.env = env
        self.deliveries = []
        self.lock = threading.Lock()

    def send(self, event, payload, key, sha, timeout=30):
        d = Delivery(event, payload, key, sha)
        with self.lock:
            self.deliveries.append(d)
        self._deliver(d, timeout)
        return d

    def _deliver(self, d, timeout):
        body = json.dumps(d.payload).encode()
        h = {"X-GitHub-Event": d.event, "Content-Type": "application/json",
             "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sign(body)}
        t0 = time.monotonic()
        d.sent_at = time.time()
        try:
            r = requests.post(self.env.rb.url("/webhooks/github"), data=body, headers=h,
                              timeout=timeout)
            status, d.body = r.status_code, r.text[:300]
        except requests.RequestException as e:
            status, d.error = None, type(e).__name__
        elapsed = time.monotonic() - t0
        if d.elapsed is None:
            d.status, d.elapsed = status, elapsed
        return status, elapsed

    def push(self, branch, commit, timeout=30):
        """The branch moves to commit on GitHub, then the push is delivered."""
        self.env.github.set_branch(REPO, branch, commit)
        return self.send("push", push_payload(branch, commit), ("branch", branch), commit, timeout)

    def pr(self, action, number, head, base="16.0", timeout=30):
        self.env.github.set_pull(REPO, number, head, base,
                                 state="closed" if action == "closed" else "open")
        return self.send("pull_request", pr_payload(action, number, head, base),
                         ("pr", number), head, timeout)

    def burst(self, pushes, workers=10):
        """Sends [(branch, sha)] at once; returns the deliveries in order."""
        out = [None] * len(pushes)

        def one(i):
            out[i] = self.push(*pushes[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pushes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return out

    # ---- invariants ----

    def missed_push(self, branch, commit):
        """The branch moves to commit on GitHub, and the delivery fails
        (runboat is down): recorded, not sent. Such a head must be built all
        the same (runboat compares GitHub's heads with its builds)."""
        self.env.github.set_branch(REPO, branch, commit)
        d = Delivery("push", push_payload(branch, commit), ("branch", branch), commit)
        d.error, d.elapsed, d.must = "not delivered (runboat down)", 0.0, True
        with self.lock:
            self.deliveries.append(d)
        return d

    def missed_pr(self, action, number, head, base="16.0"):
        """Same for a pull request event (e.g. closed while runboat is down)."""
        self.env.github.set_pull(REPO, number, head, base,
                                 state="closed" if action == "closed" else "open")
        d = Delivery("pull_request", pr_payload(action, number, head, base), ("pr", number), head)
        d.error, d.elapsed, d.must = "not delivered (runboat down)", 0.0, action != "closed"
        with self.lock:
            self.deliveries.append(d)
        return d

    def builds_wanted(self):
        """The newest delivery of each branch and PR, unless it closed the PR
        or deleted the branch: the heads that must have a settled build.
        (Older accepted pushes of a branch must have been recorded, see
        check_recorded, but may be superseded.)"""
        latest = {}
        for d in self.deliveries:
            latest[d.key] = d
        return [d for d in latest.values()
                if d.sha and not (d.event == "pull_request" and d.payload["action"] == "closed")
                and not (d.event == "push" and d.payload.get("deleted"))]

    def deployments_by_commit(self):
        """{sha: [Deployment]} of the namespace, read directly (not through
        the proxy, not through runboat)."""
        r = self.env.kube.request("GET", f"/apis/apps/v1/namespaces/{self.env.namespace}/deployments",
                                  params={"labelSelector": "runboat/build"})
        assert r.status_code == 200, r.text
        out = collections.defaultdict(list)
        for dep in r.json()["items"]:
            ann = dep["metadata"].get("annotations") or {}
            out[ann.get("runboat/git-commit")].append(dep)
        return out

    def check_recorded(self, deliveries=None):
        """Every accepted delivery has its Deployment now: a 202 is given
        only once the Deployment exists. Returns the failures."""
        deps = self.deployments_by_commit()
        return [f"{d!r}: answered {d.status} but no Deployment carries its commit"
                for d in (self.deliveries if deliveries is None else deliveries)
                if d.accepted and d.sha and not deps.get(d.sha)]

    def redeliver_refused(self, timeout=30):
        """Redelivers every push not accepted (as GitHub's "Redeliver" does);
        returns the ones still not accepted."""
        left = []
        for d in self.builds_wanted():
            if not d.accepted:
                status, elapsed = self._deliver(d, timeout)
                d.redelivered.append(status)
                if status is None or not 200 <= status < 300:
                    left.append(f"{d!r}: redelivered after the fault: {status} in {elapsed:.1f}s")
        return left

    def settled_problems(self):
        """What is still wrong with the builds of the pushes: missing,
        duplicated, not settled (started/stopped), missing objects."""
        problems = []
        builds = self.env.builds()
        by_sha = collections.defaultdict(list)
        for b in builds:
            by_sha[b["commit_info"]["git_commit"]].append(b)
        for d in self.builds_wanted():
            must = (d.accepted or getattr(d, "must", False)
                    or any(s is not None and 200 <= s < 300 for s in d.redelivered))
            found = [b for b in by_sha.get(d.sha, []) if b["status"] != "undeploying"]
            if not found:
                if must:
                    problems.append(f"{d!r}: accepted, no build")
                continue
            if len(found) > 1:
                problems.append(f"{d!r}: {len(found)} builds of one commit")
            b = found[0]
            if b["status"] not in SETTLED:
                problems.append(f"{d!r}: build {b['name']} is {b['status']}"
                                f" (reason {b.get('reason')!r})")
        return problems

    def wait_settled(self, timeout):
        """Waits until settled_problems() is empty; asserts it is then, with
        the problems left and runboat's log in the message."""
        last = []

        def ok():
            last[:] = self.settled_problems()
            return not last

        try:
            wait_for(ok, timeout, "builds of every accepted push")
        except AssertionError:
            raise AssertionError(f"after {timeout}s: " + "; ".join(last) + "\n" + diag(self.env))

    def check_whole(self, expected_kinds):
        """Every build of the pushes has every object of the deployment
        mode (no half-deployed build). Returns the failures."""
        problems = []
        for b in self.env.builds():
            have = collections.Counter(k for k, _ in self.env.objects_of(b["name"]))
            for kind, n in expected_kinds.items():
                if have[kind] < n:
                    problems.append(f"build {b['name']} ({b['commit_info']['git_commit'][:8]}): "
                                    f"{have[kind]} {kind} of {n}")
        return problems

    def answers(self):
        return collections.Counter(d.status for d in self.deliveries)


def deployment_kinds(config):
    """{kind: count} of the objects of the deployment mode, from runboat
    render with this configuration."""
    out = subprocess.run(
        [runboat_bin(), "render", "--config", str(config), "--mode", "deployment", "--repo", REPO,
         "--target-branch", "16.0", "--sha", "0" * 40, "--build-name", "b" + "0" * 32,
         "--format", "json"], check=True, capture_output=True, text=True)
    return collections.Counter(o["kind"] for o in json.loads(out.stdout))


# ---- actions ----

class Action:
    def __init__(self, name, verb, before):
        self.name, self.verb, self.before = name, verb, before
        self.status = None
        self.error = None
        self.elapsed = None
        self.sent_at = None
        self.body = ""
        self.replicas_at_answer = None

    @property
    def target(self):
        return {"start": 1, "stop": 0}[self.verb]

    def __repr__(self):
        return (f"<{self.verb} {self.name} -> {self.status}{' ' + self.error if self.error else ''}"
                f" in {self.elapsed:.2f}s: {self.body[:160]}>")


def replicas(env, name):
    dep = env.deployment(name)  # direct, not through the proxy
    return None if dep is None else dep["spec"].get("replicas", 1)


def act(env, name, verb, timeout=90, before=None, check=True):
    """POSTs start/stop; records the answer and (check) the Deployment's
    replicas right after it. before: the replicas before (read now if None;
    give it when the apiserver cannot answer, e.g. frozen)."""
    a = Action(name, verb, replicas(env, name) if before is None else before)
    t0 = time.monotonic()
    a.sent_at = time.time()
    try:
        r = requests.post(env.rb.url(f"/api/v1/builds/{name}/{verb}"), timeout=timeout)
        a.status, a.body = r.status_code, r.text[:300]
    except requests.RequestException as e:
        a.error = type(e).__name__
    a.elapsed = time.monotonic() - t0
    if a.status == 200 and check:
        a.replicas_at_answer = replicas(env, name)
    return a


def action_problems(env, actions, timeout):
    """The invariants of actions, waiting up to timeout for the ones that
    are to be applied later. Returns the failures."""
    problems = []
    for a in actions:
        want = "started" if a.verb == "start" else "stopped"
        if a.status == 200 and "already" in a.body and f"already {a.verb}" not in a.body:
            problems.append(f"{a!r}: 200 'already' something else than {want}")
        elif a.status == 200:
            if a.replicas_at_answer != a.target and "already" not in a.body:
                problems.append(f"{a!r}: answered 200 but spec.replicas was "
                                f"{a.replicas_at_answer} right after")
        elif a.status == 502:
            problems.append(f"{a!r}: 502 says Kubernetes refused, but nothing here is refusable")
        elif a.status != 504:
            problems.append(f"{a!r}: expected 200, or 504 (not confirmed in time)")
    deadline = time.monotonic() + timeout
    for a in actions:
        want = "started" if a.verb == "start" else "stopped"
        if a.status == 502:
            # refused: must not be applied, even later
            time.sleep(max(0, min(5, deadline - time.monotonic())))
            if replicas(env, a.name) != a.before:
                problems.append(f"{a!r}: reported failed, yet applied "
                                f"(replicas {a.before} -> {replicas(env, a.name)})")
            continue
        try:
            wait_for(lambda: (env.build(a.name) or {}).get("status") == want,
                     max(1, deadline - time.monotonic()), f"{a.name} {want}")
        except AssertionError:
            b = env.build(a.name) or {}
            problems.append(f"{a!r}: build never {want} (now {b.get('status')}, "
                            f"reason {b.get('reason')!r}, replicas {replicas(env, a.name)})")
    return problems


# ---- diagnostics ----

def diag(env, proxy=None, lines=40):
    """The tail of runboat's log (without the access log) and the proxy's
    counters and events, for assertion messages."""
    out = []
    try:
        log = env.rb.logs().splitlines()
        told = [x for x in log if not re.search(r"^\S+ http ", x)]  # not the access log
        out.append(f"--- runboat log ({len(log)} lines), the last but the access log:")
        out += told[-lines:]
    except OSError as e:
        out.append(f"(no runboat log: {e})")
    if proxy is not None:
        out.append(f"--- proxy: {proxy.stats()}; last events (t in s since it started):")
        out += [f"{e['t']:9.3f} conn {e['conn']}: {e['what']}" for e in proxy.events()[-lines:]]
    return "\n".join(out)

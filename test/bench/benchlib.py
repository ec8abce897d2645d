"""What the Python benchmarks of test/bench share: the test control plane
(RUNBOAT_TEST_CLUSTER), a release runboat started on it with a generated
configuration, builds created directly through the Kubernetes API as runboat
itself would have created them, process figures from /proc, percentiles,
and the clean-up of a namespace whose Deployments carry runboat's finalizer.

Reuses the e2e helpers (test/e2e): Kube, Runboat, FakeGitHub, payloads."""

import concurrent.futures
import copy
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "test" / "e2e"))

import requests  # noqa: E402

from conftest import Runboat  # noqa: E402,F401
from fake_github import FakeGitHub  # noqa: E402,F401
from kube_helpers import Kube, read_env_file  # noqa: E402,F401
import lifecycle_helpers as lh  # noqa: E402,F401

REPO = "acme/addons"
IMAGE = lh.IMAGE
SECRET = lh.SECRET
ADMIN = lh.ADMIN
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(time.strftime("[%H:%M:%S]"), *a, file=sys.stderr, flush=True)


def cluster():
    d = os.environ.get("RUNBOAT_TEST_CLUSTER")
    if not d:
        sys.exit("RUNBOAT_TEST_CLUSTER is not set: start a control plane with "
                 "test/cluster/cluster.sh start DIR, or use the .sh wrapper")
    return pathlib.Path(d)


def runboat_bin():
    return os.environ.get("RUNBOAT_BIN", str(ROOT / "build" / "runboat"))


# ---- figures ----

def pct(values, p):
    """The p-th percentile (nearest rank) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def summary(values, scale=1000.0, unit="ms", ps=(50, 95)):
    """'p50 X  p95 Y  max Z (n=N)' of values in seconds, shown in unit."""
    if not values:
        return "no samples"
    s = sorted(values)
    parts = [f"p{p} {pct(s, p) * scale:.0f}" for p in ps]
    return "  ".join(parts) + f"  max {s[-1] * scale:.0f} {unit} (n={len(s)})"


def proc_cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_mb(pid):
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


# ---- runboat ----

class Runner:
    """A release runboat on the control plane, in a namespace of its own,
    with a fake GitHub, admin credentials and a webhook secret."""

    def __init__(self, kube, github, workdir, namespace=None, limits="", kube_more="",
                 server_more="access_log = false"):
        self.kube = kube
        self.github = github
        self.namespace = namespace or ("rbbench-" + uuid.uuid4().hex[:8])
        kube.ensure_namespace(self.namespace)
        self.kubeconfig = kube.kubeconfig
        self.limits = limits
        self.kube_more = kube_more
        self.server_more = server_more
        self.workdir = pathlib.Path(workdir)
        self.n = 0
        self.rb = None

    def start(self, wait_ready=True, ready_timeout=120):
        """Starts runboat; returns the time (monotonic) it was spawned."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        d = pathlib.Path(tempfile.mkdtemp(dir=self.workdir, prefix=f"rb{self.n}-"))
        self.n += 1
        extra = lh.runboat_config(self.github.url, self.limits)
        os.environ["RUNBOAT_BIN"] = runboat_bin()
        t0 = time.monotonic()
        self.rb = Runboat(d, server_extra=self.server_more,
                          kube_extra=f'kubeconfig = "{self.kubeconfig}"\n{self.kube_more}',
                          extra=extra, namespace=self.namespace)
        self.spawned = t0
        if wait_ready:
            self.wait_ready(ready_timeout)
        return t0

    @property
    def pid(self):
        return self.rb.proc.pid

    def url(self, path):
        return self.rb.url(path)

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url("/readyz"), timeout=2).status_code == 200:
                    return time.monotonic()
            except requests.RequestException:
                pass
            if self.rb.proc.poll() is not None:
                raise RuntimeError("runboat exited:\n" + self.rb.logs()[-3000:])
            time.sleep(0.02)
        raise RuntimeError(f"runboat not ready after {timeout}s:\n" + self.rb.logs()[-3000:])

    def status(self):
        return requests.get(self.url("/api/v1/status"), timeout=10).json()

    def stop(self):
        if self.rb:
            rc = self.rb.stop()
            if rc != 0:
                log(f"runboat exited {rc} (log {self.rb.log_path})")
            self.rb = None

    def config_path(self):
        return self.rb.config


def render_deployment(config, name, repo=REPO, branch="16.0", commit=None):
    """The objects runboat renders in deployment mode (runboat render)."""
    out = subprocess.run(
        [runboat_bin(), "render", "--config", str(config), "--mode", "deployment",
         "--repo", repo, "--target-branch", branch, "--sha", commit or lh.sha(0),
         "--build-name", name, "--format", "json"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def rfc3339(t, ms=False):
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return s + (f".{int(t * 1000) % 1000:03d}Z" if ms else "Z")


def build_name(i, salt=""):
    return "b" + hashlib.md5(f"{salt}build {i}".encode()).hexdigest()


class Session(threading.local):
    """One requests session (with the admin certificate) per thread."""

    def __init__(self, kube):
        self.s = requests.Session()
        self.s.cert = kube.session.cert
        self.kube = kube

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        kw["verify"] = self.kube.ca
        return self.s.request(method, self.kube.base + path, **kw)


def create_stopped_builds(kube, config, namespace, n, workers=32, salt="", repos=50,
                          branches=("14.0", "15.0", "16.0", "17.0", "18.0")):
    """Creates n builds' Deployments (only the Deployment: that is all the
    informers and the index look at) as runboat leaves a build that was
    initialized then stopped: init-status succeeded, last-scaled set,
    replicas 0, unpaused (its initialization unpaused it), its finalizer.
    The template is runboat's own rendering of
    one build, renamed. Server-side apply, `workers` at a time. Returns the
    build names."""
    placeholder = "b" + "f" * 32
    objs = render_deployment(config, placeholder)
    dep = [o for o in objs if o["kind"] == "Deployment"][0]
    text = json.dumps(dep)
    assert text.count(placeholder) >= 3
    now = time.time()
    sess = Session(kube)
    names = [build_name(i, salt) for i in range(n)]

    def one(i):
        name = names[i]
        d = json.loads(text.replace(placeholder, name))
        d["metadata"]["namespace"] = namespace
        d["spec"]["paused"] = False
        ann = d["metadata"]["annotations"]
        ann["runboat/repo"] = f"acme/repo{i % repos}"
        ann["runboat/target-branch"] = branches[(i // repos) % len(branches)]
        ann["runboat/pr"] = ""
        ann["runboat/git-commit"] = lh.sha(f"{salt}{i}")
        ann["runboat/init-status"] = "succeeded"
        t = now - 86400 + i  # in the past, distinct
        ann["runboat/created"] = rfc3339(t, ms=True)
        ann["runboat/last-scaled"] = rfc3339(t + 60)
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{d['metadata']['name']}"
        for attempt in range(5):
            try:
                r = sess.request("PATCH", path,
                                 params={"fieldManager": "runboat", "force": "true"},
                                 data=json.dumps(d),
                                 headers={"Content-Type": "application/apply-patch+yaml"})
                if r.status_code in (200, 201):
                    return
                err = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                err = str(e)
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"creating {name}: {err}")

    t0 = time.monotonic()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for _ in ex.map(one, range(n)):
            done += 1
            if done % 1000 == 0:
                log(f"  {done}/{n} Deployments created ({done / (time.monotonic() - t0):.0f}/s)")
    return names


def list_all(kube, path, params=None, partial=False, limit=500):
    """Every item of a paginated list."""
    items = []
    params = dict(params or {})
    params["limit"] = limit
    headers = {}
    if partial:
        headers["Accept"] = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    while True:
        r = kube.request("GET", path, params=params, headers=headers, timeout=120)
        r.raise_for_status()
        j = r.json()
        items += j.get("items") or []
        cont = j["metadata"].get("continue")
        if not cont:
            return items
        params["continue"] = cont


def wait_deployments_settled(kube, namespace, n, timeout=1200):
    """Waits until kube-controller-manager has processed the n Deployments
    (each has its ReplicaSet and status.observedGeneration): then the
    control plane is idle again, as it would be before a runboat restart.
    Returns how many are processed (n, or fewer at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        deps = list_all(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments",
                        {"labelSelector": "runboat/build"})
        synced = sum(1 for d in deps
                     if d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"])
        log(f"  kube-controller-manager has synced {synced}/{n} Deployments")
        if synced >= n or time.monotonic() > deadline:
            return synced
        time.sleep(30)


def delete_namespace(kube, namespace, workers=32, wait=180):
    """Removes runboat's finalizer from every Deployment of the namespace
    (runboat is stopped: nobody else would), then deletes the namespace and
    waits for it to go (bounded)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    try:
        deps = list_all(kube, path, partial=True)
    except requests.RequestException as e:
        log(f"cannot list {namespace}: {e}")
        deps = []
    sess = Session(kube)

    def unfinalize(name):
        sess.request("PATCH", f"{path}/{name}", data=json.dumps({"metadata": {"finalizers": None}}),
                     headers={"Content-Type": "application/merge-patch+json"})

    names = [d["metadata"]["name"] for d in deps if d["metadata"].get("finalizers")]
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        list(ex.map(unfinalize, names))
    kube.request("DELETE", f"/api/v1/namespaces/{namespace}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if kube.request("GET", f"/api/v1/namespaces/{namespace}").status_code == 404:
            return True
        time.sleep(1)
    log(f"namespace {namespace} still terminating after {wait}s (left to the cluster)")
    return False


def deep(o):
    return copy.deepcopy(o)


def header(name):
    """One line naming what was measured: binary, its date, the commit, the
    machine's load."""
    b = runboat_bin()
    try:
        ver = subprocess.run([b, "--version"], capture_output=True, text=True).stdout.strip()
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(b)))
    except OSError as e:
        ver, built = f"({e})", "?"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"# {name}: {ver} ({b}, built {built}, tree at {head}); {os.cpu_count()} CPUs, "
          f"load average {' '.join(load)}", flush=True)

"""What the lifecycle tests share: a runboat wired to the test control plane
(its own namespace per test) and to a fake GitHub, GitHub's example webhook
payloads re-signed with the test secret, and polling helpers."""

import copy
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import SHARED, Runboat
from fake_github import FakeGitHub
from kube_helpers import cluster_dir, Kube

SECRET = "test-webhook-secret"
ADMIN = ("admin", "test-admin-password")
REPO = "acme/addons"
IMAGE = "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest"


def fixture(name):
    with open(SHARED / "fixtures" / "github-webhooks" / name) as f:
        return json.load(f)


def sha(n):
    """A deterministic fake commit sha."""
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


def push_payload(branch, commit, repo=REPO, deleted=False):
    p = fixture("push-with-new-branch.payload.json" if not deleted else "push-payload.json")
    p["ref"] = "refs/heads/" + branch
    p["after"] = "0" * 40 if deleted else commit
    p["deleted"] = deleted
    p["created"] = not deleted
    p["repository"]["full_name"] = repo
    p["repository"]["name"] = repo.split("/")[1]
    return p


def pr_payload(action, number, head, base="16.0", repo=REPO):
    name = {
        "opened": "pull_request-opened.payload.json",
        "synchronize": "pull_request-synchronize.payload.json",
        "reopened": "pull_request-reopened.payload.json",
        "closed": "pull_request-closed.payload.json",
    }[action]
    p = copy.deepcopy(fixture(name))
    p["action"] = action
    p["number"] = number
    p["pull_request"]["number"] = number
    p["pull_request"]["head"]["sha"] = head
    p["pull_request"]["base"]["ref"] = base
    p["repository"]["full_name"] = repo
    p["repository"]["name"] = repo.split("/")[1]
    return p


def runboat_config(github_url, limits="", extra="", github_extra=""):
    """The configuration sections of a runboat under test: admin
    credentials, limits, the fake GitHub and one [[repos]] entry."""
    return f"""
[admin]
user = "{ADMIN[0]}"
password = "{ADMIN[1]}"

[limits]
{limits}

[github]
api_url = "{github_url}"
token = "test-token"
webhook_secret = "{SECRET}"
{github_extra}

[[repos]]
repo = "acme/.*"
image = "{IMAGE}"

{extra}
"""


class Env:
    """One runboat on the control plane, in a namespace of its own."""

    def __init__(self, make_runboat, kube, github, limits="", extra="", env=None, server_extra="",
                 kubeconfig=None, kube_extra="", github_extra=""):
        self.kube = kube
        self.github = github
        self.namespace = "rb-" + uuid.uuid4().hex[:10]
        kube.ensure_namespace(self.namespace)
        # pods are refused until the namespace's default ServiceAccount
        # exists (the controller-manager makes it right after the namespace)
        wait_for(lambda: kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default").status_code == 200,
            60, "the namespace's default ServiceAccount")
        # kubeconfig: another one for runboat (e.g. through a fault proxy)
        self.kubeconfig = kubeconfig or str(cluster_dir() / "kubeconfig")
        self.kube_extra = kube_extra  # more [kubernetes] keys
        self.make_runboat = make_runboat
        self.limits = limits
        self.extra = extra
        self.github_extra = github_extra
        self.server_extra = server_extra
        self.env = env or {}
        self.rb = None
        self.start()

    def start(self):
        self.rb = self.make_runboat(
            server_extra=self.server_extra,
            kube_extra=f'kubeconfig = "{self.kubeconfig}"\n{self.kube_extra}',
            extra=self.config_extra(),
            env=self.env,
            namespace=self.namespace,
        )
        wait_for(lambda: requests.get(self.rb.url("/readyz")).status_code == 200, 30, "readyz")
        return self.rb

    def config_extra(self):
        return runboat_config(self.github.url, self.limits, self.extra, self.github_extra)

    # ---- talking to runboat ----

    def webhook(self, event, payload, secret=SECRET, headers=None):
        body = json.dumps(payload).encode()
        h = {"X-GitHub-Event": event, "Content-Type": "application/json",
             "X-GitHub-Delivery": str(uuid.uuid4())}
        if secret is not None:
            h["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        h.update(headers or {})
        return requests.post(self.rb.url("/webhooks/github"), data=body, headers=h, timeout=10)

    def builds(self, **params):
        r = requests.get(self.rb.url("/api/v1/builds"), params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def build(self, name):
        r = requests.get(self.rb.url("/api/v1/builds/" + name), timeout=10)
        return r.json() if r.status_code == 200 else None

    def status(self):
        return requests.get(self.rb.url("/api/v1/status"), timeout=10).json()

    def post(self, path, auth=None, **kw):
        return requests.post(self.rb.url(path), auth=auth, timeout=30, **kw)

    def delete(self, path, auth=ADMIN, **kw):
        return requests.delete(self.rb.url(path), auth=auth, timeout=30, **kw)

    def wait_build(self, pred, timeout=60, what="a build"):
        """Waits until some build satisfies pred; returns it."""
        found = []

        def check():
            for b in self.builds():
                if pred(b):
                    found.append(b)
                    return True
            return False

        wait_for(check, timeout, what)
        return found[0]

    def wait_status(self, name, status, timeout=60):
        wait_for(lambda: (self.build(name) or {}).get("status") == status, timeout,
                 f"build {name} {status} (now {(self.build(name) or {}).get('status')})")

    # ---- looking at the cluster ----

    def objects_of(self, name):
        """Every object of the build that still exists, as (kind, name)."""
        found = []
        for api, plural, kind in [
            ("/apis/apps/v1", "deployments", "Deployment"),
            ("/apis/batch/v1", "jobs", "Job"),
            ("/api/v1", "configmaps", "ConfigMap"),
            ("/api/v1", "secrets", "Secret"),
            ("/api/v1", "services", "Service"),
            ("/api/v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
            ("/apis/networking.k8s.io/v1", "ingresses", "Ingress"),
        ]:
            r = self.kube.request(
                "GET", f"{api}/namespaces/{self.namespace}/{plural}",
                params={"labelSelector": f"runboat/build={name}"},
            )
            assert r.status_code == 200, r.text
            found += [(kind, o["metadata"]["name"]) for o in r.json()["items"]]
        return found

    def labelled_build_names(self):
        """Build names carried by any object of the namespace."""
        names = set()
        for api, plural in [("/apis/apps/v1", "deployments"), ("/apis/batch/v1", "jobs"),
                            ("/api/v1", "configmaps"), ("/api/v1", "services"),
                            ("/api/v1", "secrets"), ("/apis/networking.k8s.io/v1", "ingresses"),
                            ("/api/v1", "persistentvolumeclaims")]:
            r = self.kube.request("GET", f"{api}/namespaces/{self.namespace}/{plural}",
                                  params={"labelSelector": "runboat/build"})
            for o in r.json()["items"]:
                names.add((plural, o["metadata"]["labels"]["runboat/build"]))
        return names

    def deployment(self, name):
        r = self.kube.request("GET", f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}-odoo")
        return r.json() if r.status_code == 200 else None

    def adopt_builds(self, count, prefix="bulk", workers=8):
        """Creates count stopped builds directly through the API, as a runboat
        (this one or the Python one) would have left them; returns their
        names."""
        from concurrent.futures import ThreadPoolExecutor

        def one(i):
            name = f"b{prefix}{i:05d}"
            dep = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {
                    "name": name + "-odoo", "namespace": self.namespace,
                    "labels": {"runboat/build": name},
                    "annotations": {"runboat/repo": REPO, "runboat/target-branch": f"{prefix}-{i}",
                                    "runboat/pr": "", "runboat/git-commit": sha(10000 + i),
                                    "runboat/init-status": "succeeded"},
                },
                "spec": {"replicas": 0, "selector": {"matchLabels": {"runboat/build": name}},
                         "template": {"metadata": {"labels": {"runboat/build": name}},
                                      "spec": {"containers": [{"name": "odoo", "image": "odoo"}]}}},
            }
            r = self.kube.request("POST", f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
                                  json=dep)
            assert r.status_code == 201, r.text
            return name

        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(one, range(count)))

    def podsim(self, **data):
        """Controls the pod simulator in this namespace (fail, hold, delay_ms)."""
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "podsim", "namespace": self.namespace},
              "data": {k: str(v) for k, v in data.items()}}
        r = self.kube.apply(cm)
        assert r.status_code in (200, 201), r.text

    def kill(self):
        """SIGKILL runboat, as a crash would."""
        self.rb.proc.send_signal(signal.SIGKILL)
        self.rb.proc.wait(10)
        self.rb.expected_rc = -signal.SIGKILL


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def init_status(env, name):
    """The runboat/init-status annotation of name's Deployment."""
    return env.deployment(name)["metadata"]["annotations"]["runboat/init-status"]


def one_initializing_one_waiting(env, branches, commits):
    """Pushes two branches with their init Jobs held running (env made with
    max_initializing = 1); once one initialization runs and the other build
    waits its turn, returns (initializing, waiting), their names."""
    env.podsim(hold="-initialize-")
    for branch, commit in zip(branches, commits):
        r = env.webhook("push", push_payload(branch, commit))
        assert r.status_code == 202, r.text
    wait_for(lambda: len(env.builds()) == 2, 20, "both builds")
    names = [b["name"] for b in env.builds()]
    wait_for(lambda: sorted(init_status(env, n) for n in names) == ["started", "todo"], 60,
             "one initialization started, one waiting")
    running = next(n for n in names if init_status(env, n) == "started")
    return running, next(n for n in names if n != running)


@pytest.fixture
def github():
    with FakeGitHub(token="test-token") as gh:
        yield gh


@pytest.fixture
def make_env(make_runboat, github):
    kube = Kube(cluster_dir())

    envs = []

    def make(**kw):
        env = Env(make_runboat, kube, github, **kw)
        envs.append(env)
        return env

    yield make
    # leave the shared control plane as it was found
    for env in envs:
        kube.request("DELETE", f"/api/v1/namespaces/{env.namespace}")

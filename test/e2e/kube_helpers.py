"""Talking to the test control plane from e2e tests: the cluster started by
test/cluster/cluster.sh (its directory in RUNBOAT_TEST_CLUSTER), a requests
session with the admin client certificate, API discovery, and server-side
apply (dry-run or not)."""

import json
import os
import pathlib
import shlex

import pytest
import requests

FIELD_MANAGER = "runboat-test"


def cluster_dir():
    """The test cluster's directory, or skip the test when there is none."""
    d = os.environ.get("RUNBOAT_TEST_CLUSTER")
    if not d:
        pytest.skip("RUNBOAT_TEST_CLUSTER is not set (no test control plane)")
    return pathlib.Path(d)


def read_env_file(path):
    """The `export NAME='value'` lines of DIR/env as a dict."""
    env = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, _, value = line[len("export "):].partition("=")
        words = shlex.split(value)
        env[name] = words[0] if words else ""
    return env


class Kube:
    """A minimal Kubernetes client: admin client certificate, discovery of
    resource paths, server-side apply."""

    def __init__(self, directory):
        env = read_env_file(pathlib.Path(directory) / "env")
        self.base = env["APISERVER_URL"].rstrip("/")
        self.kubeconfig = env.get("KUBECONFIG")
        self.ca = env["CA_CERT"]
        self.session = requests.Session()
        self.session.cert = (env["ADMIN_CERT"], env["ADMIN_KEY"])
        self._resources = {}

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        # per request: a session-level verify loses to REQUESTS_CA_BUNDLE
        kw["verify"] = self.ca
        return self.session.request(method, self.base + path, **kw)

    def resource(self, api_version, kind):
        """(plural, namespaced) of a kind, from API discovery; None when the
        server does not serve it."""
        if api_version not in self._resources:
            prefix = "/api/" if "/" not in api_version else "/apis/"
            r = self.request("GET", prefix + api_version)
            found = {}
            if r.status_code == 200:
                for res in r.json().get("resources", []):
                    if "/" not in res["name"]:  # not a subresource
                        found[res["kind"]] = (res["name"], res["namespaced"])
            self._resources[api_version] = found
        return self._resources[api_version].get(kind)

    def path(self, obj):
        api_version, kind = obj["apiVersion"], obj["kind"]
        res = self.resource(api_version, kind)
        assert res, f"{api_version} {kind} is not served by the API server"
        plural, namespaced = res
        prefix = "/api/" if "/" not in api_version else "/apis/"
        path = prefix + api_version
        if namespaced:
            path += "/namespaces/" + obj["metadata"]["namespace"]
        return path + "/" + plural + "/" + obj["metadata"]["name"]

    def apply(self, obj, dry_run=False):
        """Server-side apply of obj; returns the response."""
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.request(
            "PATCH",
            self.path(obj),
            params=params,
            data=json.dumps(obj).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )

    def get(self, obj):
        return self.request("GET", self.path(obj))

    def ensure_namespace(self, name):
        r = self.request(
            "POST",
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        assert r.status_code in (201, 409), r.text
        r = self.request("GET", "/api/v1/namespaces/" + name)
        assert r.status_code == 200, r.text
        phase = r.json().get("status", {}).get("phase")
        assert phase == "Active", f"namespace {name} is {phase}"


@pytest.fixture(scope="session")
def kube():
    """A Kube for the test cluster (skips without one)."""
    return Kube(cluster_dir())

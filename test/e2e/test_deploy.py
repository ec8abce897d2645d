"""The deploy/ kustomize base on the real control plane: every manifest is
accepted by the API server (server-side dry run), and runboat, run with its
ServiceAccount's own token in the in-cluster environment, goes through a
whole build lifecycle with the Role and nothing more (least privilege); a
verb taken away shows as one log line naming the verb and the resource."""

import pathlib
import time
import uuid

import pytest
import requests
import yaml

from conftest import ROOT
from kube_helpers import cluster_dir, kube, read_env_file, Kube  # noqa: F401 - fixture
from lifecycle_helpers import (  # noqa: F401 - fixtures
    ADMIN,
    Env,
    github,
    push_payload,
    sha,
    wait_for,
)

DEPLOY = ROOT / "deploy"


def base_documents():
    """(file name, object) of every document the kustomization lists;
    fails when a YAML file of deploy/ is not listed (or a listed one is
    missing)."""
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = kust["resources"]
    present = sorted(p.name for p in DEPLOY.iterdir()
                     if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml")
    assert sorted(listed) == present, f"kustomization.yaml lists {listed}, deploy/ has {present}"
    docs = []
    for name in listed:
        for obj in yaml.safe_load_all((DEPLOY / name).read_text()):
            if obj is not None:
                docs.append((name, obj))
    return kust, docs


def in_namespace(obj, namespace):
    """obj as kustomize's namespace transformer would leave it."""
    obj = yaml.safe_load(yaml.safe_dump(obj))
    obj.setdefault("metadata", {})["namespace"] = namespace
    for s in obj.get("subjects", []):
        if s.get("kind") == "ServiceAccount":
            s["namespace"] = namespace
    return obj


def fresh_namespace(kube):
    ns = "rbd-" + uuid.uuid4().hex[:10]
    kube.ensure_namespace(ns)
    return ns


def test_manifests_accepted_by_dry_run(kube):
    kust, docs = base_documents()
    kinds = sorted(o["kind"] for _, o in docs)
    assert kinds == sorted(["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret",
                            "Deployment", "Service", "Ingress"]), kinds
    ns = fresh_namespace(kube)
    try:
        for name, obj in docs:
            o = in_namespace(obj, ns)
            r = kube.apply(o, dry_run=True)
            assert r.status_code in (200, 201), f"{name}: {o['kind']} refused: {r.text}"
        # a dry run leaves nothing behind
        r = kube.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/runboat")
        assert r.status_code == 404, r.text
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    by_kind = {o["kind"]: o for _, o in docs}
    # nothing cluster-wide: a Role, bound by a RoleBinding, to the ServiceAccount
    rb = by_kind["RoleBinding"]
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": by_kind["Role"]["metadata"]["name"]}
    assert rb["subjects"][0]["name"] == by_kind["ServiceAccount"]["metadata"]["name"]
    dep = by_kind["Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert spec["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = spec["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # the secrets reach runboat as the environment variables config.c reads
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]
           if "secretKeyRef" in e["valueFrom"]}
    # the Lease holder's identity is the pod's name
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    secret = by_kind["Secret"]
    for var in ("RUNBOAT_ADMIN_PASSWORD", "RUNBOAT_GITHUB_TOKEN", "RUNBOAT_GITHUB_WEBHOOK_SECRET"):
        assert env[var]["name"] == secret["metadata"]["name"]
        assert env[var]["key"] in secret["stringData"]
        assert "CHANGE-ME" in secret["stringData"][env[var]["key"]]
    # the configuration is the ConfigMap's runboat.toml, mounted where args say
    cm = by_kind["ConfigMap"]
    assert "runboat.toml" in cm["data"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert c["args"] == ["--config", mount["mountPath"] + "/runboat.toml"]


def test_config_map_is_valid(tmp_path):
    """The ConfigMap's runboat.toml passes runboat --check-config (with the
    kubefiles of this tree, as an install provides them)."""
    import os
    import subprocess

    from conftest import runboat_bin

    _, docs = base_documents()
    cm = next(o for _, o in docs if o["kind"] == "ConfigMap")
    text = cm["data"]["runboat.toml"].replace(
        "[build]\n", f'[build]\nkubefiles = "{ROOT / "kubefiles"}"\n', 1)
    p = tmp_path / "runboat.toml"
    p.write_text(text)
    env = dict(os.environ, RUNBOAT_ADMIN_PASSWORD="x", RUNBOAT_GITHUB_TOKEN="y",
               RUNBOAT_GITHUB_WEBHOOK_SECRET="z")
    r = subprocess.run([runboat_bin(), "--check-config", str(p)], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- runboat as its ServiceAccount ----

def base_object(kind):
    _, docs = base_documents()
    return next(o for _, o in docs if o["kind"] == kind)


class InClusterEnv(Env):
    """An Env whose runboat authenticates as the base's ServiceAccount,
    through the in-cluster configuration (token and CA in a directory, the
    API server as KUBERNETES_SERVICE_HOST/PORT), with the base's Role as
    written or with the changes role_edit makes."""

    def __init__(self, make_runboat, kube, github, sa_dir, role_edit=None, wait_ready=True,
                 **kw):
        self.sa_dir = sa_dir
        self.wait_ready = wait_ready
        self.role_edit = role_edit
        self.prepared = False
        cenv = read_env_file(cluster_dir() / "env")
        env = {
            "KUBECONFIG": str(sa_dir / "no-kubeconfig"),
            "HOME": str(sa_dir),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": cenv["APISERVER_PORT"],
            "RUNBOAT_SERVICE_ACCOUNT_DIR": str(sa_dir),
        }
        self.ca_cert = cenv["CA_CERT"]
        super().__init__(make_runboat, kube, github, env=env, **kw)

    def prepare(self):
        ns = self.namespace
        role = base_object("Role")
        if self.role_edit:
            self.role_edit(role)
        for obj in (base_object("ServiceAccount"), role, base_object("RoleBinding")):
            r = self.kube.apply(in_namespace(obj, ns))
            assert r.status_code in (200, 201), r.text
        sa = base_object("ServiceAccount")["metadata"]["name"]
        r = self.kube.request(
            "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": 3600}})
        assert r.status_code == 201, r.text
        token = r.json()["status"]["token"]
        (self.sa_dir / "token").write_text(token)
        (self.sa_dir / "ca.crt").write_bytes(pathlib.Path(self.ca_cert).read_bytes())
        (self.sa_dir / "namespace").write_text(ns)
        self.token = token
        self.prepared = True

    def start(self):
        if not self.prepared:
            self.prepare()
        # the runboat under test has no kubeconfig at all
        self.kubeconfig = ""
        if self.wait_ready:
            return super().start()
        self.rb = self.make_runboat(kube_extra='kubeconfig = ""', extra=self.config_extra(),
                                    server_extra=self.server_extra, env=self.env,
                                    namespace=self.namespace)
        return self.rb

    def can_i(self, verb, resource, group=""):
        """What the API server says the ServiceAccount may do."""
        r = self.kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": f"system:serviceaccount:{self.namespace}:runboat",
                     "groups": ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}",
                                "system:authenticated"],
                     "resourceAttributes": {"namespace": self.namespace, "verb": verb,
                                            "group": group, "resource": resource}}})
        assert r.status_code == 201, r.text
        return r.json()["status"].get("allowed", False)


@pytest.fixture
def make_incluster(make_runboat, github, tmp_path):
    kube = Kube(cluster_dir())
    envs = []

    def make(**kw):
        d = tmp_path / f"sa{len(envs)}"
        d.mkdir()
        env = InClusterEnv(make_runboat, kube, github, d, **kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        kube.request("DELETE", f"/api/v1/namespaces/{env.namespace}")


def forbidden_lines(env):
    return [line for line in env.rb.logs().splitlines() if "forbidden" in line.lower()]


def test_lifecycle_with_the_role_only(make_incluster, github):
    env = make_incluster()
    logs = env.rb.logs()
    assert "in-cluster" in logs, logs
    # the ServiceAccount cannot do what the Role does not give
    assert env.can_i("patch", "deployments", "apps")
    assert not env.can_i("get", "secrets")
    assert not env.can_i("create", "roles", "rbac.authorization.k8s.io")
    assert not env.can_i("delete", "services")

    r = env.webhook("push", push_payload("16.0", sha(501)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(501), 20, "the build")
    name = b["name"]
    env.wait_status(name, "started", 90)
    # the logs of the init job: pods list + pods/log get
    wait_for(lambda: requests.get(env.rb.url(f"/api/v1/builds/{name}/init-log"),
                                  timeout=10).status_code == 200, 30, "the init log")
    # the log kept when the Job ended (configmaps patch), read back once the
    # init pod is gone (configmaps get)
    cm_path = f"/api/v1/namespaces/{env.namespace}/configmaps/{name}-initlog"
    wait_for(lambda: env.kube.request("GET", cm_path).status_code == 200, 30, "the kept init log")
    sel = f"runboat/build={name},runboat/job-kind=initialize"
    r = env.kube.request("DELETE", f"/api/v1/namespaces/{env.namespace}/pods",
                         params={"labelSelector": sel, "gracePeriodSeconds": "0"})
    assert r.status_code == 200, r.text
    wait_for(lambda: env.kube.request("GET", f"/api/v1/namespaces/{env.namespace}/pods",
                                      params={"labelSelector": sel}).json()["items"] == [],
             30, "the init pods to go")
    r = requests.get(env.rb.url(f"/api/v1/builds/{name}/init-log"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.text == env.kube.request("GET", cm_path).json()["data"]["log"]
    r = env.post(f"/api/v1/builds/{name}/stop")
    assert r.status_code == 200, r.text
    env.wait_status(name, "stopped", 30)
    r = env.post(f"/api/v1/builds/{name}/start")
    assert r.status_code == 200, r.text
    env.wait_status(name, "started", 30)
    # reset: the jobs deleted by label, deployment mode applied again
    r = env.post(f"/api/v1/builds/{name}/reset")
    assert r.status_code == 200, r.text
    env.wait_status(name, "started", 90)
    r = env.delete(f"/api/v1/builds/{name}", auth=ADMIN)
    assert r.status_code == 200, r.text
    wait_for(lambda: env.build(name) is None, 60, "the build to go")
    wait_for(lambda: env.objects_of(name) == [], 30, "the objects to go")
    assert forbidden_lines(env) == [], "\n".join(forbidden_lines(env))


def test_missing_verb_is_one_clear_line(make_incluster, github):
    def without_deletecollection_on_services(role):
        for rule in role["rules"]:
            if "services" in rule["resources"]:
                rule["resources"].remove("services")
        role["rules"].append({"apiGroups": [""], "resources": ["services"],
                              "verbs": ["create", "patch"]})

    env = make_incluster(role_edit=without_deletecollection_on_services)
    assert not env.can_i("deletecollection", "services")
    r = env.webhook("push", push_payload("16.0", sha(502)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(502), 20, "the build")
    name = b["name"]
    env.wait_status(name, "started", 90)
    assert forbidden_lines(env) == []
    r = env.delete(f"/api/v1/builds/{name}", auth=ADMIN)
    assert r.status_code == 200, r.text
    # the cleanup Job runs, then deleting the Services by label is refused
    wait_for(lambda: forbidden_lines(env), 60, "the refusal in the log")
    # leave the controller time to try again (passes, backoff): still one line
    time.sleep(20)
    lines = forbidden_lines(env)
    assert len(lines) == 1, "\n".join(lines)
    line = lines[0]
    assert "deletecollection" in line and '"services"' in line, line
    assert env.namespace in line and name in line, line
    # the build stays visible, undeploying
    assert (env.build(name) or {}).get("status") == "undeploying"



def test_missing_list_verb_is_not_a_flood(make_incluster, github):
    """Without list on jobs the Job informer cannot sync: runboat says so
    once, not at every retry, and stays not ready."""
    def without_list_on_jobs(role):
        for rule in role["rules"]:
            if "jobs" in rule["resources"]:
                rule["verbs"].remove("list")

    env = make_incluster(role_edit=without_list_on_jobs, wait_ready=False)
    assert not env.can_i("list", "jobs", "batch")
    wait_for(lambda: forbidden_lines(env), 30, "the refusal in the log")
    # the informer retries with backoff meanwhile (several times in 20 s)
    time.sleep(20)
    lines = forbidden_lines(env)
    assert len(lines) == 1, "\n".join(lines)
    assert 'cannot list resource "jobs" in API group "batch"' in lines[0], lines[0]
    assert requests.get(env.rb.url("/readyz"), timeout=10).status_code == 503

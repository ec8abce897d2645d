"""Migrating between the Python runboat and this one, both ways, on the real
control plane. The Python runboat's objects are written here as its
kubefiles render them (kustomize: namePrefix `<build>-`, commonLabels
`runboat/build` on objects, selectors and pod templates, commonAnnotations
`runboat/repo`... on objects and pod templates): the PVC `<build>-data`
ReadWriteOnce with requests 200Mi and limits 250Mi, the initialize Job with
backoffLimit 0 and activeDeadlineSeconds 1200, the cleanup Job with image
postgres, completions 1, backoffLimit 6, no deadline, no resources.

- Python → here: runboat adopts such a build, resets it (its apply of the
  deployment mode lands on the Python PVC), takes over a cleanup the Python
  runboat had started (its apply lands on the Python cleanup Job), and
  undeploys, leaving nothing behind.
- here → Python: the PVC and Jobs runboat made accept a server-side apply of
  the Python-shaped ones by another field manager (as `kubectl apply` of the
  Python runboat would change them) without "field is immutable"."""

import json
import subprocess
import uuid

import requests

from conftest import runboat_bin
from lifecycle_helpers import (  # noqa: F401 - fixtures
    ADMIN,
    IMAGE,
    REPO,
    github,
    make_env,
    one_initializing_one_waiting,
    push_payload,
    sha,
    wait_for,
)

PY_MANAGER = "kubectl-client-side-apply"


def common(build, commit, pr=""):
    labels = {"runboat/build": build}
    annotations = {"runboat/repo": REPO, "runboat/target-branch": "16.0", "runboat/pr": pr,
                   "runboat/git-commit": commit}
    return labels, annotations


def meta(name, ns, build, commit, extra_labels=None, extra_ann=None):
    labels, ann = common(build, commit)
    return {"name": name, "namespace": ns, "labels": {**labels, **(extra_labels or {})},
            "annotations": {**ann, **(extra_ann or {})}}


def py_pvc(ns, build, commit):
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": meta(f"{build}-data", ns, build, commit),
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "200Mi"}, "limits": {"storage": "250Mi"}}},
    }


def env_from(build):
    return [{"secretRef": {"name": f"{build}-odoosecretenv"}},
            {"configMapRef": {"name": f"{build}-odooenv"}}]


def py_job(ns, build, commit, kind):
    labels, ann = common(build, commit)
    kl = {**labels, "runboat/job-kind": kind}
    if kind == "initialize":
        container = {
            "name": "initialize", "image": IMAGE,
            "volumeMounts": [{"name": "runboat-scripts", "mountPath": "/runboat"},
                             {"name": "data", "mountPath": "/mnt/data"}],
            "envFrom": env_from(build),
            "args": ["bash", "/runboat/runboat-initialize.sh"],
            "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"},
                          "requests": {"cpu": "1000m", "memory": "1Gi"}},
        }
        volumes = [{"name": "runboat-scripts", "configMap": {"name": f"{build}-runboat-scripts"}},
                   {"name": "data", "persistentVolumeClaim": {"claimName": f"{build}-data"}}]
        extra = {"backoffLimit": 0, "activeDeadlineSeconds": 1200}
    else:
        container = {
            "name": "cleanup", "image": "postgres",
            "volumeMounts": [{"name": "runboat-scripts", "mountPath": "/runboat"}],
            "envFrom": env_from(build),
            "args": ["bash", "/runboat/runboat-cleanup.sh"],
        }
        volumes = [{"name": "runboat-scripts", "configMap": {"name": f"{build}-runboat-scripts"}}]
        extra = {"backoffLimit": 6}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": meta(f"{build}-{kind}", ns, build, commit, {"runboat/job-kind": kind}),
        "spec": {
            "completions": 1, **extra,
            "template": {
                "metadata": {"labels": kl, "annotations": ann},
                "spec": {"enableServiceLinks": False, "containers": [container],
                         "volumes": volumes, "restartPolicy": "Never"},
            },
        },
    }


def py_build(ns, build, commit, init_status="succeeded"):
    """Every object the Python runboat's deployment mode makes (and its
    initialize Job), as it leaves them once initialized."""
    labels, ann = common(build, commit)
    sel = {"app": "odoo", **labels}
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**meta(f"{build}-odoo", ns, build, commit,
                            extra_ann={"runboat/init-status": init_status}),
                     "finalizers": ["runboat/cleanup"]},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {"labels": sel,
                             "annotations": {"kubectl.kubernetes.io/default-container": "odoo",
                                             **ann}},
                "spec": {
                    "terminationGracePeriodSeconds": 10, "enableServiceLinks": False,
                    "containers": [{
                        "name": "odoo", "image": IMAGE,
                        "args": ["bash", "/runboat/runboat-start.sh"],
                        "envFrom": env_from(build),
                        "ports": [{"name": "web", "containerPort": 8069}],
                        "volumeMounts": [{"name": "runboat-scripts", "mountPath": "/runboat"},
                                         {"name": "data", "mountPath": "/mnt/data"}],
                    }],
                    "volumes": [
                        {"name": "runboat-scripts",
                         "configMap": {"name": f"{build}-runboat-scripts"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": f"{build}-data"}},
                    ],
                },
            },
        },
    }
    return [
        py_pvc(ns, build, commit),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{build}-odooenv", ns, build, commit),
         "data": {"PGDATABASE": build, "ADDONS_DIR": "/mnt/data/odoo-addons-dir",
                  "RUNBOAT_GIT_REPO": REPO, "RUNBOAT_GIT_REF": commit}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta(f"{build}-runboat-scripts", ns, build, commit),
         "data": {"runboat-initialize.sh": "true\n", "runboat-start.sh": "true\n",
                  "runboat-cleanup.sh": "true\n"}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": meta(f"{build}-odoosecretenv", ns, build, commit), "type": "Opaque"},
        dep,
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{build}-odoo", ns, build, commit),
         "spec": {"selector": sel, "ports": [{"name": "web", "port": 8069, "targetPort": 8069}]}},
        py_job(ns, build, commit, "initialize"),
    ]


def py_apply(kube, obj, dry_run=False):
    """What the Python runboat's `kubectl apply` of its own version does to
    an existing object: the fields it sets take its values (server-side
    apply by another manager, force=true), the others stay."""
    params = {"fieldManager": PY_MANAGER, "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    return kube.request("PATCH", kube.path(obj), params=params, data=json.dumps(obj).encode(),
                        headers={"Content-Type": "application/apply-patch+yaml"})


def render(env, mode, build, commit):
    """The objects runboat applies in mode for build (runboat render, with
    the configuration of the runboat under test)."""
    r = subprocess.run([runboat_bin(), "render", "--config", str(env.rb.config), "--mode", mode,
                        "--repo", REPO, "--target-branch", "16.0", "--sha", commit,
                        "--build-name", build, "--format", "json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def create(kube, obj):
    r = py_apply(kube, obj)
    assert r.status_code in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: {r.text}"
    return r.json()


def get(kube, obj):
    r = kube.get(obj)
    return r.json() if r.status_code == 200 else None


def test_python_build_taken_over_reset_and_undeployed(make_env):
    env = make_env()
    ns, kube = env.namespace, env.kube
    build, commit = "b" + uuid.uuid4().hex, sha(601)
    objs = py_build(ns, build, commit)
    for o in objs:
        create(kube, o)
    pvc_uid = get(kube, objs[0])["metadata"]["uid"]
    # the Python init Job completes (pod simulator), then runboat (restarted,
    # as after a switch) adopts the build
    wait_for(lambda: (get(kube, objs[-1]).get("status") or {}).get("succeeded") == 1, 60,
             "the Python initialize job")
    env.rb.stop()
    env.start()
    env.wait_status(build, "stopped", 30)
    b = env.build(build)
    assert b["commit_info"] == {"repo": REPO, "target_branch": "16.0", "pr": None,
                                "git_commit": commit}
    # reset: deployment mode applied over the Python PVC, a new init Job
    r = env.post(f"/api/v1/builds/{build}/reset")
    assert r.status_code == 200, r.text
    env.wait_status(build, "started", 90)
    pvc = get(kube, objs[0])
    assert pvc["metadata"]["uid"] == pvc_uid  # the same PVC, not refused, not replaced
    assert pvc["spec"]["resources"] == {"requests": {"storage": "200Mi"},
                                        "limits": {"storage": "250Mi"}}
    assert "refused" not in ((env.build(build) or {}).get("reason") or "")
    r = env.delete(f"/api/v1/builds/{build}")
    assert r.status_code == 200, r.text
    wait_for(lambda: env.build(build) is None, 60, "the build to go")
    wait_for(lambda: env.objects_of(build) == [], 30, f"objects to go: {env.objects_of(build)}")
    assert "immutable" not in env.rb.logs()


def test_python_cleanup_taken_over(make_env):
    """The Python runboat had started undeploying: its cleanup Job runs;
    runboat's cleaner applies its own cleanup mode over it, then finishes."""
    env = make_env()
    ns, kube = env.namespace, env.kube
    build, commit = "b" + uuid.uuid4().hex, sha(602)
    env.podsim(hold=f"^{build}-cleanup-")
    objs = py_build(ns, build, commit)
    for o in objs:
        create(kube, o)
    wait_for(lambda: (get(kube, objs[-1]).get("status") or {}).get("succeeded") == 1, 60,
             "the Python initialize job")
    cleanup = create(kube, py_job(ns, build, commit, "cleanup"))
    dep = next(o for o in objs if o["kind"] == "Deployment")
    r = kube.request("DELETE", kube.path(dep))
    assert r.status_code == 200, r.text  # the finalizer keeps it
    env.rb.stop()
    env.start()
    env.wait_status(build, "undeploying", 30)
    # what runboat's cleaner applies when it (re)starts a cleanup lands on
    # the Python Job: accepted (dry run, runboat's own field manager)
    for o in render(env, "cleanup", build, commit):
        r = kube.request("PATCH", kube.path(o),
                         params={"fieldManager": "runboat", "force": "true", "dryRun": "All"},
                         data=json.dumps(o).encode(),
                         headers={"Content-Type": "application/apply-patch+yaml"})
        assert r.status_code == 200, f"{o['kind']} {o['metadata']['name']}: {r.text}"
    assert get(kube, cleanup)["metadata"]["uid"] == cleanup["metadata"]["uid"]
    assert "immutable" not in env.rb.logs()
    env.podsim(hold="^$")
    wait_for(lambda: env.build(build) is None, 60, "the build to go")
    wait_for(lambda: env.objects_of(build) == [], 30, f"objects to go: {env.objects_of(build)}")


def test_runboat_objects_accept_the_python_apply(make_env):
    env = make_env()
    ns, kube = env.namespace, env.kube
    r = env.webhook("push", push_payload("16.0", sha(603)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(603), 20, "the build")
    build = b["name"]
    env.wait_status(build, "started", 90)

    # the PVC: the Python runboat's reset applies its own (was a 500 there)
    pvc = py_pvc(ns, build, sha(603))
    before = get(kube, pvc)
    assert before["spec"]["resources"]["limits"] == {"storage": "250Mi"}
    r = py_apply(kube, pvc)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["uid"] == before["metadata"]["uid"]
    # the check can fail: a PVC of another shape is refused as immutable
    other = py_pvc(ns, build, sha(603))
    other["spec"]["resources"]["limits"]["storage"] = "300Mi"
    r = py_apply(kube, other, dry_run=True)
    assert r.status_code == 422 and "immutable" in r.text, r.text

    # the initialize Job runboat made
    r = py_apply(kube, py_job(ns, build, sha(603), "initialize"))
    assert r.status_code == 200, r.text

    # the cleanup Job runboat made, while it runs: the Python cleaner's apply
    env.podsim(hold=f"^{build}-cleanup-")
    r = env.delete(f"/api/v1/builds/{build}", auth=ADMIN)
    assert r.status_code == 200, r.text
    job = py_job(ns, build, sha(603), "cleanup")
    wait_for(lambda: get(kube, job) is not None, 60, "runboat's cleanup job")
    made = get(kube, job)
    assert made["spec"]["backoffLimit"] == 6 and "activeDeadlineSeconds" not in made["spec"]
    r = py_apply(kube, job)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["uid"] == made["metadata"]["uid"]
    # and a Job of another shape would have been refused
    other = py_job(ns, build, sha(603), "cleanup")
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:latest"
    r = py_apply(kube, other, dry_run=True)
    assert r.status_code == 422 and "immutable" in r.text, r.text
    env.podsim(hold="^$")
    wait_for(lambda: env.build(build) is None, 60, "the build to go")
    wait_for(lambda: env.objects_of(build) == [], 30, f"objects to go: {env.objects_of(build)}")
    assert requests.get(env.rb.url("/readyz"), timeout=10).status_code == 200


def test_back_to_python_builds_waiting_to_initialize(make_env):
    """Back to the Python runboat: a build still waiting for its turn to
    initialize is a paused Deployment, which the Python runboat's start (a
    scale) would not bring up; unpaused as README.md says, it comes up."""
    env = make_env(limits="max_initializing = 1")
    _, waiting = one_initializing_one_waiting(env, ["w1", "w2"], [sha(610), sha(611)])
    assert env.deployment(waiting)["spec"]["paused"] is True
    env.rb.stop()

    path = f"/apis/apps/v1/namespaces/{env.namespace}/deployments/{waiting}-odoo"
    merge = {"Content-Type": "application/merge-patch+json"}
    r = env.kube.request("PATCH", path, data='{"spec": {"paused": false}}', headers=merge)
    assert r.status_code == 200, r.text
    # the Python runboat's start, once it has initialized the build
    r = env.kube.request("PATCH", path, data='{"spec": {"replicas": 1}}', headers=merge)
    assert r.status_code == 200, r.text
    wait_for(lambda: (env.deployment(waiting).get("status") or {}).get("availableReplicas") == 1,
             60, "the build's pod, available")


def test_scaled_up_while_paused_is_started(make_env):
    """An older runboat (or the Python one, without the README's step)
    initializes a build that was waiting, paused, then scales it up: no pod
    would ever come. runboat sees it paused and scaled up, and starts it,
    which unpauses it."""
    env = make_env(limits="max_initializing = 1")
    _, waiting = one_initializing_one_waiting(env, ["s1", "s2"], [sha(620), sha(621)])
    env.rb.stop()
    # what the other runboat leaves: initialized, scaled up, still paused
    path = f"/apis/apps/v1/namespaces/{env.namespace}/deployments/{waiting}-odoo"
    patch = {"metadata": {"annotations": {"runboat/init-status": "succeeded"}},
             "spec": {"replicas": 1}}
    r = env.kube.request("PATCH", path, data=json.dumps(patch),
                         headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["paused"] is True
    env.start()
    wait_for(lambda: env.build(waiting)["status"] == "started", 60, "the build started")
    assert not env.deployment(waiting)["spec"].get("paused")

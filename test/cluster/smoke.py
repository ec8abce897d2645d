#!/usr/bin/env python3
"""Smoke test of a running test cluster (stdlib only). Run by smoke.sh.

Needs the variables of DIR/env in the environment (APISERVER_URL, CA_CERT,
ADMIN_CERT, ADMIN_KEY, ADMIN_TOKEN, LIMITED_TOKEN, RUNBOAT_CLUSTER_DIR).
"""
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

API = os.environ["APISERVER_URL"]
HERE = os.path.dirname(os.path.abspath(__file__))
NS = "smoke-%d" % int(time.time())
T0 = time.time()


def log(msg):
    print("[smoke %5.1fs] %s" % (time.time() - T0, msg), flush=True)


def ctx(cert=True):
    c = ssl.create_default_context(cafile=os.environ["CA_CERT"])
    if cert:
        c.load_cert_chain(os.environ["ADMIN_CERT"], os.environ["ADMIN_KEY"])
    return c


ADMIN = ctx()
NOCERT = ctx(cert=False)


def req(method, path, body=None, token=None, ctype="application/json", timeout=15, raw=False):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(API + path, data=data, method=method)
    if data is not None:
        r.add_header("Content-Type", ctype)
    if token:
        r.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(r, context=NOCERT if token else ADMIN, timeout=timeout) as resp:
            text = resp.read().decode()
            return resp.status, (text if raw else (json.loads(text) if text else None))
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def must(method, path, body=None, ok=(200, 201), **kw):
    code, obj = req(method, path, body, **kw)
    if code not in ok:
        raise SystemExit("FAIL: %s %s -> %s %s" % (method, path, code, obj))
    return obj


def wait(what, fn, timeout=90):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last is True:
            log("ok: " + what)
            return
        time.sleep(0.3)
    raise SystemExit("FAIL: timeout waiting for %s (last: %s)" % (what, last))


def cond(obj, typ):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == typ:
            return c["status"]
    return None


def pods(selector):
    return must("GET", "/api/v1/namespaces/%s/pods?labelSelector=%s" % (NS, selector))["items"]


def job(name, backoff=0):
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "example.invalid/job:1", "command": ["true"]}],
            }},
        },
    }


def job_state(name):
    j = must("GET", "/apis/batch/v1/namespaces/%s/jobs/%s" % (NS, name))
    if cond(j, "Complete") == "True":
        return "Complete"
    if cond(j, "Failed") == "True":
        return "Failed"
    return "active=%s" % (j.get("status") or {}).get("active")


def main():
    # resourceVersion from before everything, for the compaction check
    old_rv = must("GET", "/api/v1/namespaces")["metadata"]["resourceVersion"]

    must("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    wait("serviceaccount %s/default" % NS,
         lambda: req("GET", "/api/v1/namespaces/%s/serviceaccounts/default" % NS)[0] == 200)

    # Deployment with a PVC that never binds (no provisioner): must still run.
    must("POST", "/api/v1/namespaces/%s/persistentvolumeclaims" % NS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    must("POST", "/apis/apps/v1/namespaces/%s/deployments" % NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "example.invalid/web:1",
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                },
            },
        },
    })

    def available():
        d = must("GET", "/apis/apps/v1/namespaces/%s/deployments/web" % NS)
        st = d.get("status") or {}
        return st.get("availableReplicas") == 1 and cond(d, "Available") == "True" or st
    wait("deployment web available (availableReplicas=1, Available=True)", available)

    # pod logs through kube-apiserver -> podsim's fake kubelet endpoint
    pod = pods("app%3Dweb")[0]["metadata"]["name"]
    code, text = req("GET", "/api/v1/namespaces/%s/pods/%s/log?container=web" % (NS, pod), raw=True)
    if code != 200 or "podsim: log of" not in text:
        raise SystemExit("FAIL: pod log: %s %r" % (code, text))
    log("ok: pod log: %r" % text.splitlines()[0])

    # Jobs: one succeeds, one fails (podsim ConfigMap), one is held.
    must("POST", "/api/v1/namespaces/%s/configmaps" % NS, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podsim"},
        "data": {"fail": "^job-fail-", "hold": "^job-hold-", "delay_ms": "500"}})
    for name in ("job-ok", "job-fail", "job-hold"):
        must("POST", "/apis/batch/v1/namespaces/%s/jobs" % NS, job(name))
    wait("job job-ok Complete", lambda: job_state("job-ok") == "Complete" or job_state("job-ok"))
    wait("job job-fail Failed", lambda: job_state("job-fail") == "Failed" or job_state("job-fail"))
    time.sleep(2)
    st = job_state("job-hold")
    if st != "active=1":
        raise SystemExit("FAIL: held job should be active, is %s" % st)
    log("ok: job job-hold still active while held")
    must("PATCH", "/api/v1/namespaces/%s/configmaps/podsim" % NS, {"data": {"hold": ""}},
         ctype="application/merge-patch+json")
    wait("job job-hold Complete after release", lambda: job_state("job-hold") == "Complete" or job_state("job-hold"))

    # Scale to 0: pods vanish (podsim deletes terminating pods, grace 0).
    must("PATCH", "/apis/apps/v1/namespaces/%s/deployments/web" % NS, {"spec": {"replicas": 0}},
         ctype="application/merge-patch+json")
    wait("deployment web pods gone", lambda: len(pods("app%3Dweb")) == 0 or len(pods("app%3Dweb")))

    # Authorization: the limited token is authenticated but has no rights.
    code, obj = req("GET", "/apis/apps/v1/namespaces/%s/deployments" % NS, token=os.environ["LIMITED_TOKEN"])
    if code != 403:
        raise SystemExit("FAIL: limited token listing deployments: %s %s" % (code, obj))
    log("ok: limited token -> 403")
    code, _ = req("GET", "/apis/apps/v1/namespaces/%s/deployments" % NS, token=os.environ["ADMIN_TOKEN"])
    if code != 200:
        raise SystemExit("FAIL: admin token listing deployments: %s" % code)
    log("ok: admin token -> 200")
    code, _ = req("GET", "/apis/apps/v1/namespaces/%s/deployments" % NS, token="wrong-token")
    if code != 401:
        raise SystemExit("FAIL: bad token: %s" % code)
    log("ok: bad token -> 401")

    # Compaction: a watch from a resourceVersion older than the compaction
    # gets 410 Gone (as an ERROR event of an established watch, or as the
    # response status).
    subprocess.run([os.path.join(HERE, "cluster.sh"), "compact", os.environ["RUNBOAT_CLUSTER_DIR"]],
                   check=True, stdout=subprocess.DEVNULL)
    r = urllib.request.Request(API + "/api/v1/namespaces?watch=1&resourceVersion=%s" % old_rv)
    try:
        with urllib.request.urlopen(r, context=ADMIN, timeout=10) as resp:
            ev = json.loads(resp.readline())
        got = ev["object"].get("code") if ev.get("type") == "ERROR" else ev.get("type")
    except urllib.error.HTTPError as e:
        got = e.code
    if got != 410:
        raise SystemExit("FAIL: watch from compacted rv %s: got %s" % (old_rv, got))
    log("ok: watch from compacted resourceVersion -> 410 Gone")

    # kube-apiserver restart: the cluster keeps working.
    subprocess.run([os.path.join(HERE, "cluster.sh"), "restart-apiserver", os.environ["RUNBOAT_CLUSTER_DIR"]],
                   check=True, stdout=subprocess.DEVNULL)
    must("PATCH", "/apis/apps/v1/namespaces/%s/deployments/web" % NS, {"spec": {"replicas": 1}},
         ctype="application/merge-patch+json")
    wait("deployment web available again after apiserver restart", available)

    # Namespace deletion (namespace controller + garbage collector + podsim).
    must("DELETE", "/api/v1/namespaces/%s" % NS)
    wait("namespace %s deleted" % NS,
         lambda: req("GET", "/api/v1/namespaces/%s" % NS)[0] == 404 or "terminating", timeout=120)
    log("all checks passed")


if __name__ == "__main__":
    main()

"""Crash-looping builds (issue 13, item 5) on the real control plane: the pod
simulator makes the build's Odoo pod crash-loop (Running, not Ready, waiting
in CrashLoopBackOff, restartCount one higher every second: podsim's "crash"
key); runboat's Pod informer sees the restarts and, at [limits]
max_restarts, stops the build (replicas 0) with runboat/reason, a warning
Event and the reason in the API; a start gives it another chance."""

import pytest

from lifecycle_helpers import (  # noqa: F401 - fixtures
    github,
    make_env,
    push_payload,
    sha,
    wait_for,
)


def odoo_pods(env, name):
    r = env.kube.request("GET", f"/api/v1/namespaces/{env.namespace}/pods",
                         params={"labelSelector": f"runboat/build={name},!runboat/job-kind"})
    assert r.status_code == 200, r.text
    return [p for p in r.json()["items"] if "-odoo-" in p["metadata"]["name"]]


def restarts(pod):
    return max([c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", [])],
               default=0)


def runboat_events(env, reason):
    r = env.kube.request("GET", f"/apis/events.k8s.io/v1/namespaces/{env.namespace}/events")
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"]
            if e.get("reportingController") == "runboat" and e.get("reason") == reason]


def require_crashing_podsim(env, name):
    """Skips (never passes) on a control plane whose podsim predates its
    "crash" key: there the pod is just Ready, without restarts."""
    try:
        wait_for(lambda: (env.build(name)["reason"] or "").startswith("crash-looping") or
                 any(restarts(p) > 0 for p in odoo_pods(env, name)), 10, "a restart")
    except AssertionError:
        if any(c["type"] == "Ready" and c["status"] == "True"
               for p in odoo_pods(env, name) for c in p["status"].get("conditions", [])):
            pytest.skip("this control plane's podsim has no 'crash' key (test/cluster/cluster.sh build)")
        raise


def test_crash_looping_build_is_stopped(make_env, github):  # noqa: F811
    env = make_env(limits="max_restarts = 3")
    env.podsim(crash=r"-odoo-")
    env.webhook("push", push_payload("16.0", sha(901)))
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(901), 20, "the build")
    name = b["name"]
    # initialized, started, its pod crash-loops: never "started"
    wait_for(lambda: odoo_pods(env, name), 90, "the build's Odoo pod")
    require_crashing_podsim(env, name)

    # max_restarts reached: stopped for good, with the reason
    wait_for(lambda: (env.build(name)["reason"] or "").startswith("crash-looping"), 60,
             "the crash-looping reason")
    env.wait_status(name, "stopped", 30)
    b = env.build(name)
    assert b["reason"] and b["reason"].startswith("crash-looping"), b
    dep = env.deployment(name)
    assert dep["spec"]["replicas"] == 0
    assert dep["metadata"]["annotations"]["runboat/reason"].startswith("crash-looping")
    wait_for(lambda: runboat_events(env, "CrashLooping"), 15, "the CrashLooping Event")
    ev = runboat_events(env, "CrashLooping")[0]
    assert ev["type"] == "Warning" and ev["regarding"]["name"] == name + "-odoo"
    assert "restarted" in ev["note"]
    # and to GitHub
    wait_for(lambda: any(s["sha"] == sha(901) and s["state"] == "failure" and
                         s.get("description", "").startswith("crash-looping")
                         for s in github.statuses()), 15, "the failure status")
    # it stays stopped: nothing starts it again by itself
    wait_for(lambda: not odoo_pods(env, name), 30, "the pod to go")
    assert env.deployment(name)["spec"]["replicas"] == 0

    # fixed (podsim no longer crashes it): a start clears the reason
    env.podsim(crash="")
    r = env.post(f"/api/v1/builds/{name}/start")
    assert r.status_code == 200, r.text
    env.wait_status(name, "started", 60)
    wait_for(lambda: env.build(name)["reason"] is None, 15, "the reason to be cleared")
    assert "runboat/reason" not in env.deployment(name)["metadata"].get("annotations", {})
    # and GitHub's last word on the commit is no longer the failure
    def last_status():
        mine = [s for s in github.statuses() if s["sha"] == sha(901)]
        return mine[-1] if mine else {}
    wait_for(lambda: last_status().get("state") == "success", 15, "the success status again")


def test_restarts_below_the_limit_or_off(make_env):
    """max_restarts = 0: a crash-looping build is left as it is (starting)."""
    env = make_env(limits="max_restarts = 0")
    env.podsim(crash=r"-odoo-")
    env.webhook("push", push_payload("16.0", sha(902)))
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(902), 20, "the build")
    name = b["name"]
    wait_for(lambda: odoo_pods(env, name), 90, "the build's Odoo pod")
    require_crashing_podsim(env, name)
    wait_for(lambda: any(restarts(p) >= 4 for p in odoo_pods(env, name)), 90,
             "4 restarts of the Odoo pod")
    assert env.build(name)["status"] == "starting"
    assert env.deployment(name)["spec"]["replicas"] == 1
    assert not runboat_events(env, "CrashLooping")

"""Init logs that outlive their pod (issue 13, item 1): when the initialize
Job ends, the log of its pod (the pod simulator's fake kubelet serves a
small text naming the pod and its phase) is kept in a ConfigMap
<build>-initlog owned by the build; /init-log serves it once the pod is
gone and after a restart of runboat; the ConfigMap goes at undeploy."""

import requests

from lifecycle_helpers import (  # noqa: F401 - fixtures
    github,
    make_env,
    push_payload,
    sha,
    wait_for,
)


def kept(env, name):
    r = env.kube.request("GET", f"/api/v1/namespaces/{env.namespace}/configmaps/{name}-initlog")
    return r.json() if r.status_code == 200 else None


def init_pods(env, name):
    r = env.kube.request("GET", f"/api/v1/namespaces/{env.namespace}/pods",
                         params={"labelSelector": f"runboat/build={name},runboat/job-kind=initialize"})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def init_log(env, name):
    return requests.get(env.rb.url(f"/api/v1/builds/{name}/init-log"), timeout=30)


def test_failed_init_log_outlives_its_pod_and_runboat(make_env, github):
    env = make_env()
    env.podsim(fail=".*-initialize-.*")
    env.webhook("push", push_payload("16.0", sha(61)))
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(61), 20, "the build")
    name = b["name"]
    env.wait_status(name, "failed", 60)

    # kept when the Job failed: the pod's log, in a ConfigMap of the build
    wait_for(lambda: kept(env, name) is not None, 30, "the kept init log")
    cm = kept(env, name)
    assert cm["metadata"]["labels"]["runboat/build"] == name
    ann = cm["metadata"]["annotations"]
    assert ann["runboat/init-status"] == "failed", ann
    assert ann["runboat/init-job"].startswith(name), ann
    assert ann["runboat/log-truncated"] == "false", ann
    text = cm["data"]["log"]
    pods = init_pods(env, name)
    assert pods, "the failed Job's pod is still there"
    pod_name = pods[0]["metadata"]["name"]
    assert f"podsim: log of {env.namespace}/{pod_name}" in text, text
    assert "phase Failed" in text, text

    # while the pod exists: its live log
    r = init_log(env, name)
    assert r.status_code == 200, r.text
    assert pod_name in r.text and "phase Failed" in r.text

    # the pods gone (as a TTL, a node drain or a GC would do): the kept log
    r = env.kube.request("DELETE", f"/api/v1/namespaces/{env.namespace}/pods",
                         params={"labelSelector": f"runboat/build={name},runboat/job-kind=initialize",
                                 "gracePeriodSeconds": "0"})
    assert r.status_code == 200, r.text
    wait_for(lambda: init_pods(env, name) == [], 30, "the init pods to go")
    r = init_log(env, name)
    assert r.status_code == 200, r.text
    assert r.text == text
    assert r.headers["Content-Type"].startswith("text/plain")

    # and after runboat restarts (killed, as a crash would)
    env.kill()
    env.start()
    r = init_log(env, name)
    assert r.status_code == 200, r.text
    assert r.text == text
    assert (env.build(name) or {}).get("status") == "failed"

    # undeployed: the kept log goes with the build's other objects
    r = env.delete(f"/api/v1/builds/{name}")
    assert r.status_code == 200, r.text
    wait_for(lambda: env.build(name) is None, 60, "the build to go")
    wait_for(lambda: kept(env, name) is None, 30, "the kept init log to go")
    wait_for(lambda: env.objects_of(name) == [], 30, f"objects of {name}: {env.objects_of(name)}")


def test_succeeded_init_log_is_kept_too(make_env, github):
    env = make_env()
    env.webhook("push", push_payload("16.0", sha(62)))
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(62), 20, "the build")
    name = b["name"]
    env.wait_status(name, "started", 60)
    wait_for(lambda: kept(env, name) is not None, 30, "the kept init log")
    cm = kept(env, name)
    assert cm["metadata"]["annotations"]["runboat/init-status"] == "succeeded"
    assert "phase Succeeded" in cm["data"]["log"], cm["data"]
    # reset: the Jobs (and their pods) are deleted, a new init runs; the
    # kept log becomes that of the new Job's pod (another pod name and uid)
    old = cm["data"]["log"]
    r = env.post(f"/api/v1/builds/{name}/reset")
    assert r.status_code == 200, r.text
    wait_for(lambda: (kept(env, name) or {}).get("data", {}).get("log") not in (None, old), 90,
             "the new init's log")
    assert "phase Succeeded" in kept(env, name)["data"]["log"]
    env.wait_status(name, "started", 60)


def test_many_failed_inits_at_once_are_all_kept(make_env, github):
    # more Jobs ending together than keeps run at once (4): the others wait
    # their turn, none is lost
    env = make_env(limits="max_initializing = 8")
    env.podsim(fail=".*-initialize-.*", delay_ms=1500)
    for i in range(7):
        env.webhook("push", push_payload(f"many-{i}", sha(70 + i)))
    wait_for(lambda: len(env.builds()) == 7, 30, "seven builds")
    names = [b["name"] for b in env.builds()]
    for n in names:
        env.wait_status(n, "failed", 90)
    wait_for(lambda: all(kept(env, n) is not None for n in names), 60, "every kept init log")
    for n in names:
        cm = kept(env, n)
        assert cm["metadata"]["labels"]["runboat/build"] == n
        assert "phase Failed" in cm["data"]["log"]

"""GET /metrics and the Kubernetes Events of build transitions, with the real
binary on the test control plane. The scrape is read by a real parser of the
text format (prometheus_client.parser), so what is checked is what
Prometheus would see."""

import re
import time

import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from lifecycle_helpers import (ADMIN, REPO, github, make_env, push_payload, sha,  # noqa: F401
                               wait_for)


def scrape(env):
    r = requests.get(env.rb.url("/metrics"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.text.endswith("\n")
    return r.text, {f.name: f for f in text_string_to_metric_families(r.text)}


def value(fams, family, sample=None, **labels):
    """The value of the sample (default: the family's own name) with exactly
    these labels, or None."""
    f = fams.get(family)
    if f is None:
        return None
    name = sample or (family + "_total" if f.type == "counter" else family)
    for s in f.samples:
        if s.name == name and s.labels == labels:
            return s.value
    return None


def total(fams, family, **match):
    """Sum of a counter's samples whose labels include match."""
    f = fams[family]
    return sum(s.value for s in f.samples if s.name == family + "_total"
               and all(s.labels.get(k) == v for k, v in match.items()))


def check_histogram(fams, family):
    """Buckets cumulative and +Inf == _count for every series."""
    f = fams[family]
    assert f.type == "histogram"
    series = {}
    for s in f.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        series.setdefault(key, {"buckets": [], "count": None})
        if s.name == family + "_bucket":
            le = float("inf") if s.labels["le"] == "+Inf" else float(s.labels["le"])
            series[key]["buckets"].append((le, s.value))
        elif s.name == family + "_count":
            series[key]["count"] = s.value
    for key, d in series.items():
        b = sorted(d["buckets"])
        assert b and b[-1][0] == float("inf"), (key, b)
        assert all(x[1] <= y[1] for x, y in zip(b, b[1:])), (key, b)
        assert b[-1][1] == d["count"], (key, b, d["count"])
    return series


def test_metrics_after_push_and_build(make_env, github):
    env = make_env()
    _, before = scrape(env)
    assert value(before, "runboat_leader") == 1
    assert total(before, "runboat_webhook_deliveries") == 0
    for fam, typ in [("runboat_builds", "gauge"), ("runboat_init_queue_length", "gauge"),
                     ("runboat_init_duration_seconds", "histogram"),
                     ("runboat_kube_requests", "counter"),
                     ("runboat_kube_request_duration_seconds", "histogram"),
                     ("runboat_webhook_deliveries", "counter"),
                     ("runboat_github_requests", "counter"),
                     ("runboat_github_rate_limit_remaining", "gauge"),
                     ("runboat_stream_subscribers", "gauge"),
                     ("runboat_http_requests", "counter"),
                     ("runboat_http_request_duration_seconds", "histogram"),
                     ("runboat_kube_events", "counter"), ("runboat_leader", "gauge"),
                     ("process_resident_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                     ("process_start_time_seconds", "gauge"), ("process_cpu_seconds", "counter")]:
        assert fam in before and before[fam].type == typ, (fam, before.get(fam))
    assert value(before, "process_resident_memory_bytes") > 1e6
    assert value(before, "process_open_fds") > 3
    assert abs(value(before, "process_start_time_seconds") - time.time()) < 120

    # a push builds, initializes and starts; then a stop
    r = env.webhook("push", push_payload("16.0", sha(301)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(301), 20, "the build")
    name = b["name"]
    env.wait_status(name, "started", 90)
    r = env.post(f"/api/v1/builds/{name}/stop")
    assert r.status_code == 200, r.text
    env.wait_status(name, "stopped", 30)
    wait_for(lambda: any(s["state"] == "success" for s in github.statuses()), 15, "a success status")
    # ignored and refused deliveries are counted with their outcome
    assert env.webhook("push", push_payload("16.0", sha(302)), secret="wrong").status_code == 401
    assert env.webhook("ping", {"zen": "hi", "hook_id": 1}).status_code == 200
    # an event name GitHub never sends is counted as "other", whatever it holds
    assert env.webhook('evil"\\name', {"zen": "hi"}).status_code in (200, 400)
    # an unknown path is counted as "unmatched", never by its raw path
    assert requests.get(env.rb.url('/no/such/"path"'), timeout=5).status_code == 404

    text, fams = scrape(env)
    # webhooks
    assert value(fams, "runboat_webhook_deliveries", event="push", outcome="accepted") == 1
    assert value(fams, "runboat_webhook_deliveries", event="push", outcome="unauthorized") == 1
    assert value(fams, "runboat_webhook_deliveries", event="ping", outcome="pong") == 1
    assert total(fams, "runboat_webhook_deliveries", event="other") == 1
    # Kubernetes calls by verb, resource and code
    kube_lines = "\n".join(line for line in text.splitlines() if line.startswith("runboat_kube_requests_total"))
    assert total(fams, "runboat_kube_requests", verb="apply", resource="deployments") >= 1, kube_lines
    assert total(fams, "runboat_kube_requests", verb="apply", resource="jobs", code="201") == 1, kube_lines
    assert total(fams, "runboat_kube_requests", verb="list", resource="deployments", code="200") >= 1
    assert total(fams, "runboat_kube_requests", verb="list", resource="jobs", code="200") >= 1
    # init-status and replicas are plain patches of the Deployment
    assert total(fams, "runboat_kube_requests", verb="patch", resource="deployments") >= 3, kube_lines
    assert total(fams, "runboat_kube_requests", verb="create", resource="events") >= 4, kube_lines
    series = check_histogram(fams, "runboat_kube_request_duration_seconds")
    assert sum(d["count"] for k, d in series.items() if dict(k).get("verb") == "apply") >= 6
    # no label value names a build, a commit or a raw path
    for f in fams.values():
        for s in f.samples:
            for v in s.labels.values():
                assert name not in v and sha(301)[:12] not in v and '"path"' not in v, s
    # builds by status agree with /api/v1/status
    st = env.status()
    assert value(fams, "runboat_builds", status="stopped") == st["stopped"] == 1
    assert value(fams, "runboat_builds", status="failed") == st["failed"]
    assert (value(fams, "runboat_builds", status="started") +
            value(fams, "runboat_builds", status="starting")) == st["started"]
    assert value(fams, "runboat_builds", status="undeploying") == st["undeploying"]
    assert value(fams, "runboat_init_queue_length") == st["to_initialize"]
    # one initialization, succeeded
    init = check_histogram(fams, "runboat_init_duration_seconds")
    assert init[(("outcome", "succeeded"),)]["count"] == 1
    # HTTP requests by route pattern
    assert value(fams, "runboat_http_requests", method="POST",
                 route="/api/v1/builds/{name}/stop", code="200") == 1
    assert value(fams, "runboat_http_requests", method="POST", route="/webhooks/github",
                 code="202") == 1
    assert value(fams, "runboat_http_requests", method="GET", route="unmatched", code="404") == 1
    assert value(fams, "runboat_http_requests", method="GET", route="/metrics", code="200") == 1
    check_histogram(fams, "runboat_http_request_duration_seconds")
    # GitHub: commit statuses posted, rate limit remaining as the fake says
    assert value(fams, "runboat_github_requests", call="status", outcome="ok") >= 2
    remaining = requests.get(github.url + "/_control/counts", timeout=5).json()["rate_remaining"]
    assert value(fams, "runboat_github_rate_limit_remaining") == remaining
    assert value(fams, "runboat_github_rate_limit") == 5000
    # Events were posted
    assert total(fams, "runboat_kube_events", outcome="posted") >= 4
    assert "# HELP runboat_kube_requests_total " in text


def test_stream_subscribers(make_env):
    env = make_env()
    with requests.get(env.rb.url("/api/v1/build-events"), stream=True, timeout=10) as r:
        assert r.status_code == 200
        wait_for(lambda: value(scrape(env)[1], "runboat_stream_subscribers", kind="sse") == 1, 10,
                 "one SSE subscriber")
        assert value(scrape(env)[1], "runboat_stream_subscribers", kind="websocket") == 0
    wait_for(lambda: value(scrape(env)[1], "runboat_stream_subscribers", kind="sse") == 0, 10,
             "no SSE subscriber")
    with ws_connect(env.rb.url("/api/v1/ws").replace("http://", "ws://")) as ws:
        wait_for(lambda: value(scrape(env)[1], "runboat_stream_subscribers", kind="websocket") == 1,
                 10, "one WebSocket subscriber")
        ws.close()
    wait_for(lambda: value(scrape(env)[1], "runboat_stream_subscribers", kind="websocket") == 0, 10,
             "no WebSocket subscriber")
    _, fams = scrape(env)
    assert value(fams, "runboat_http_requests", method="GET", route="/api/v1/ws", code="101") == 1
    assert value(fams, "runboat_http_requests", method="GET", route="/api/v1/build-events",
                 code="200") == 1


def events_of(env):
    r = env.kube.request("GET", f"/apis/events.k8s.io/v1/namespaces/{env.namespace}/events")
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e.get("reportingController") == "runboat"]


def test_events_on_transitions(make_env):
    env = make_env()
    env.webhook("push", push_payload("16.0", sha(311)))
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(311), 20, "the build")
    name = b["name"]
    env.wait_status(name, "started", 90)
    dep = env.deployment(name)
    # started with its initialization's patch: told by InitializationSucceeded
    for _ in range(2):
        assert env.post(f"/api/v1/builds/{name}/stop").status_code == 200
        env.wait_status(name, "stopped", 30)
        # the second start within a minute: its Event is a duplicate, not posted
        assert env.post(f"/api/v1/builds/{name}/start").status_code == 200
        env.wait_status(name, "started", 30)
    assert env.delete(f"/api/v1/builds/{name}", auth=ADMIN).status_code == 200

    want = {"Deployed", "InitializationStarted", "InitializationSucceeded", "Started", "Stopped",
            "UndeployRequested"}
    wait_for(lambda: want <= {e["reason"] for e in events_of(env)}, 30,
             f"events {want}: {[e['reason'] for e in events_of(env)]}")
    evs = events_of(env)
    for e in evs:
        reg = e["regarding"]
        assert reg["apiVersion"] == "apps/v1" and reg["kind"] == "Deployment", e
        assert reg["name"] == dep["metadata"]["name"] and reg["namespace"] == env.namespace, e
        assert reg.get("uid") == dep["metadata"]["uid"], e
        assert e["type"] == "Normal" and e["action"] and e["note"] and e["reportingInstance"], e
        assert re.fullmatch(r"[A-Z][A-Za-z]+", e["reason"]), e
    by_reason = {}
    for e in evs:
        by_reason.setdefault(e["reason"], []).append(e)
    assert len(by_reason["Started"]) == 1, by_reason["Started"]
    assert len(by_reason["Stopped"]) == 1, by_reason["Stopped"]
    assert by_reason["InitializationSucceeded"][0]["note"] == "Initialized and scaled up"
    assert by_reason["InitializationStarted"][0]["action"] == "Initialize"
    assert REPO in by_reason["Deployed"][0]["note"]
    assert "asked" in by_reason["UndeployRequested"][0]["note"]
    # the story in order (MicroTime strings of one format compare as times)
    order = ["Deployed", "InitializationStarted", "InitializationSucceeded", "Stopped", "Started",
             "UndeployRequested"]
    times = [by_reason[r][0]["eventTime"] for r in order]
    assert times == sorted(times), list(zip(order, times))
    _, fams = scrape(env)
    assert value(fams, "runboat_kube_events", reason="Started", outcome="duplicate") == 1
    assert value(fams, "runboat_kube_events", reason="Stopped", outcome="duplicate") == 1


def test_event_on_init_failure(make_env):
    env = make_env()
    env.podsim(fail=".*-initialize-.*")
    env.webhook("push", push_payload("16.0", sha(312)))
    b = env.wait_build(lambda b: True, 20)
    env.wait_status(b["name"], "failed", 90)
    wait_for(lambda: any(e["reason"] == "InitializationFailed" for e in events_of(env)), 20,
             "an InitializationFailed event")
    e = next(e for e in events_of(env) if e["reason"] == "InitializationFailed")
    assert e["type"] == "Warning"
    assert e["regarding"]["name"] == b["name"] + "-odoo"
    _, fams = scrape(env)
    assert check_histogram(fams, "runboat_init_duration_seconds")[(("outcome", "failed"),)]["count"] == 1

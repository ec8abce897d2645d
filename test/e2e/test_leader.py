"""Two runboat replicas on one namespace, one leader (issue 12, item 4): two
real runboat processes with [kubernetes] leader_election = true on the real
control plane, a coordination.k8s.io/v1 Lease between them.

- exactly one leads and is ready; the standby is not ready (503 "standby:
  leader is X"), serves reads from its warm informers, refuses actions and
  webhooks (503, so that GitHub or the load balancer delivers to the
  leader);
- a leader cut off from the apiserver stops acting (not ready, refuses
  webhooks) within its renew deadline, before the standby takes over;
- SIGTERM of the leader releases the Lease: the standby leads within a few
  seconds (the retry period), leaseTransitions counts the takeover;
- kill -9 of the leader in the middle of a burst of pushes and of an
  undeploy: the standby leads once the Lease expires (~15 s + a retry), the
  pushes that got no 2xx are delivered again to it (as GitHub's redelivery
  would), every push that got a 2xx is built, no commit gets two builds and
  no build two init Jobs, and the interrupted undeploy is finished (no
  orphan object)."""

import collections
import signal
import threading
import time

import requests

import pytest

from fault_helpers import Ledger, diag, start_proxy
from kube_helpers import cluster_dir
from lifecycle_helpers import ADMIN, github, make_env, sha, wait_for  # noqa: F401 - fixtures

LIMITS = """max_initializing = 20
max_started = 20
max_deployed = 60
start_after_init = false"""
KUBE = "leader_election = true"


def second(env, kubeconfig=None):
    """Another runboat with env's configuration (same namespace, same
    Lease), on a port of its own."""
    return env.make_runboat(
        server_extra=env.server_extra,
        kube_extra=f'kubeconfig = "{kubeconfig or env.kubeconfig}"\n{env.kube_extra}',
        extra=env.config_extra(),
        env=env.env,
        namespace=env.namespace,
    )


def readyz(rb):
    try:
        r = requests.get(rb.url("/readyz"), timeout=5)
        return r.status_code, r.json().get("detail", r.json().get("status"))
    except requests.RequestException as e:
        return None, type(e).__name__


def lease(env):
    r = env.kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{env.namespace}/leases/runboat")
    assert r.status_code == 200, r.text
    return r.json()["spec"]


def time_until_ready(rb, timeout):
    """Seconds until rb's /readyz answers 200 (AssertionError after timeout)."""
    t0 = time.monotonic()
    wait_for(lambda: readyz(rb)[0] == 200, timeout, "the standby to lead")
    return time.monotonic() - t0


def logs_of(*rbs):
    return "\n".join(f"--- runboat {i}:\n" + "\n".join(rb.logs().splitlines()[-40:])
                     for i, rb in enumerate(rbs))


def test_one_leader_standby_and_release(make_env, github):
    env = make_env(limits=LIMITS, kube_extra=KUBE)
    a = env.rb
    b = second(env)
    spec = lease(env)
    leader = spec["holderIdentity"]
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0, spec
    assert "became leader" in a.logs(), a.logs()
    # the standby: not ready, saying who leads
    wait_for(lambda: f"standby: leader is {leader}" in b.logs(), 10, "the standby's log line")
    status, detail = readyz(b)
    assert status == 503 and detail == f"standby: leader is {leader}", (status, detail)
    assert readyz(a) == (200, "ready")

    # a push to the leader is built; the standby's index follows it
    led = Ledger(env)
    [d] = led.burst([("16.0", sha("leader 1"))])
    assert d.status == 202, d
    led.wait_settled(60)
    [build] = env.builds()
    name = build["name"]
    wait_for(lambda: [x["name"] for x in requests.get(b.url("/api/v1/builds")).json()] == [name],
             10, "the standby to list the build")
    assert requests.get(b.url(f"/api/v1/builds/{name}")).json()["status"] == "stopped"
    assert requests.get(b.url("/api/v1/status")).status_code == 200

    # the standby refuses to act, and says where to go
    for method, path, auth in [("POST", f"/api/v1/builds/{name}/start", None),
                               ("POST", f"/api/v1/builds/{name}/reset", None),
                               ("DELETE", f"/api/v1/builds/{name}", ADMIN)]:
        r = requests.request(method, b.url(path), auth=auth, timeout=10)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert f"standby: leader is {leader}" in r.json()["detail"], r.text
    env.rb = b
    [d] = led.burst([("16.0-b", sha("sent to the standby"))])
    env.rb = a
    assert d.status == 503 and "leader" in d.body, d
    time.sleep(1)
    assert len(env.builds()) == 1  # the standby did nothing
    assert not led.deployments_by_commit().get(sha("sent to the standby"))

    # SIGTERM: the leader steps down and releases; the standby leads at its
    # next attempt (retry period 2 s, +20 % jitter)
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    took = time_until_ready(b, 15)
    print(f"\nSIGTERM of the leader -> the standby ready in {took:.2f} s")
    assert took < 4.0, f"{took:.1f} s\n{logs_of(a, b)}"
    assert a.proc.wait(30) == 0, a.logs()
    assert "released the Lease" in a.logs(), a.logs()
    assert time.monotonic() - t0 < 15
    spec = lease(env)
    assert spec["holderIdentity"] != leader and spec["leaseTransitions"] == 1, spec
    assert "became leader" in b.logs(), b.logs()

    # the new leader acts: the push the standby refused, delivered again, is
    # built once (its GitHub sync, run at once on taking over, may have
    # found that head first: then the redelivery answers 200)
    env.rb = b
    status, _ = led._deliver(d, 30)
    d.redelivered.append(status)
    assert status in (200, 202), f"{status}\n{diag(env)}"
    led.wait_settled(60)
    assert len(led.deployments_by_commit()[sha("sent to the standby")]) == 1
    r = requests.post(b.url(f"/api/v1/builds/{name}/start"), timeout=30)
    assert r.status_code == 200, r.text


def cleanup_jobs(env, name):
    r = env.kube.request("GET", f"/apis/batch/v1/namespaces/{env.namespace}/jobs",
                         params={"labelSelector": f"runboat/build={name},runboat/job-kind=cleanup"})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def init_jobs_by_build(env):
    r = env.kube.request("GET", f"/apis/batch/v1/namespaces/{env.namespace}/jobs",
                         params={"labelSelector": "runboat/job-kind=initialize"})
    assert r.status_code == 200, r.text
    out = collections.Counter(j["metadata"]["labels"]["runboat/build"] for j in r.json()["items"])
    return out


def test_kill_leader_mid_burst_and_undeploy(make_env, github):
    env = make_env(limits=LIMITS, kube_extra=KUBE)
    a = env.rb
    b = second(env)
    wait_for(lambda: "standby: leader is" in b.logs(), 10, "the standby")
    led = Ledger(env)
    env.podsim(delay_ms=500, hold="^$")

    # a build to undeploy, left in the middle of its cleanup (the cleanup
    # Job's pod held running)
    [d] = led.burst([("gone", sha("to undeploy"))])
    assert d.status == 202, d
    led.wait_settled(60)
    [victim] = [x["name"] for x in env.builds()]
    env.podsim(delay_ms=6000, hold=".*-cleanup-.*")
    r = requests.delete(a.url(f"/api/v1/builds/{victim}"), auth=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: cleanup_jobs(env, victim), 30, "the victim's cleanup job")
    led.deliveries.clear()  # the victim is no longer wanted

    # a burst of pushes (two senders, one after the other each), the leader
    # killed once a few were accepted: some initializing, some in flight,
    # some sent to a dead leader
    pushes = [(f"burst-{i}", sha(f"burst {i}")) for i in range(16)]
    sent = []

    def sender(part):
        for p in part:
            sent.append(led.push(*p, timeout=15))
            time.sleep(0.15)

    threads = [threading.Thread(target=sender, args=(pushes[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(1 for x in sent if x.accepted) >= 5, 30, "5 pushes accepted")
    a.proc.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    a.proc.wait(10)
    a.expected_rc = -signal.SIGKILL
    for t in threads:
        t.join(60)
    accepted = [x for x in sent if x.accepted]
    refused = [x for x in sent if not x.accepted]
    assert len(sent) == 16 and refused, f"the kill came after the burst: {sent}"

    # the Lease expires on the standby's clock: it leads
    time_until_ready(b, 40)
    took = time.monotonic() - t_kill
    print(f"\nkill -9 of the leader -> the standby ready in {took:.1f} s "
          f"({len(accepted)} pushes accepted before, {len(refused)} not)")
    assert took < 25, f"{took:.1f} s\n{logs_of(b)}"
    spec = lease(env)
    assert spec["leaseTransitions"] == 1 and "lost leadership" not in b.logs(), spec
    env.podsim(delay_ms=500, hold="^$")  # the cleanup may end now

    # GitHub redelivers what got no 2xx, to the new leader
    env.rb = b
    problems = led.check_recorded()  # every 2xx was in Kubernetes when answered
    problems += led.redeliver_refused()
    assert not problems, "\n".join(problems) + "\n" + diag(env)
    led.wait_settled(90)

    # one Deployment per commit, one init Job per build, nothing more
    deps = led.deployments_by_commit()
    dupes = {c: len(v) for c, v in deps.items() if len(v) != 1}
    assert not dupes, f"commits with several Deployments: {dupes}"
    assert set(deps) == {s for _, s in pushes}, sorted(deps)
    jobs = init_jobs_by_build(env)
    names = {x["name"] for x in env.builds()}
    assert len(names) == 16
    assert all(n == 1 for n in jobs.values()) and set(jobs) <= names, (jobs, names)

    # the undeploy the old leader left half done is finished by the new one
    wait_for(lambda: not env.objects_of(victim), 60,
             f"the victim's objects to go: {env.objects_of(victim)}")
    assert victim not in {n for _, n in env.labelled_build_names()}
    assert env.build(victim) is None
    assert "became leader" in b.logs()


@pytest.fixture
def proxy(tmp_path):
    """The fault proxy in front of the apiserver (requested before make_env,
    so it outlives runboat)."""
    p, kc = start_proxy(cluster_dir(), tmp_path)
    p.kubeconfig = kc
    yield p
    p.stop()


def test_partitioned_leader_stops_before_takeover(proxy, make_env, github):
    """The leader talks to the apiserver through the proxy, the standby
    directly. The proxy black-holes everything: the leader cannot renew. It
    must stop acting (not ready, webhooks 503) within the renew deadline
    (10 s after its last renewal), and the standby must not lead before
    that; sampled every 0.1 s, the two are never ready together. Once the
    network heals, the old leader sees the new one and stays a standby."""
    env = make_env(limits=LIMITS, kube_extra=KUBE, kubeconfig=proxy.kubeconfig)
    a = env.rb
    b = second(env, kubeconfig=str(cluster_dir() / "kubeconfig"))
    wait_for(lambda: "standby: leader is" in b.logs(), 10, "the standby")
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            t = time.monotonic()
            samples.append((t, readyz(a)[0] == 200, readyz(b)[0] == 200))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        time.sleep(1)
        t0 = time.monotonic()
        proxy.blackhole(True, drop=True)
        wait_for(lambda: readyz(b)[0] == 200, 40, "the standby to lead")
        time.sleep(1)
    finally:
        stop.set()
        sampler.join(10)
    a_lost = next((t for t, ra, _ in samples if t > t0 and not ra), None)
    b_led = next((t for t, _, rb in samples if t > t0 and rb), None)
    both = [t - t0 for t, ra, rb in samples if ra and rb]
    print(f"\npartitioned leader: stopped {a_lost - t0:.1f} s after the cut, "
          f"the standby led {b_led - t0:.1f} s after it")
    assert not both, f"both ready at {both}\n{logs_of(a, b)}"
    assert a_lost is not None and a_lost - t0 < 11.5, logs_of(a)
    assert b_led > a_lost
    assert "lost leadership" in a.logs() and "renew deadline" in a.logs(), a.logs()
    status, detail = readyz(a)
    assert status == 503 and "could not renew" in detail, (status, detail)
    env.rb = a
    d = Ledger(env).push("cut", sha("to the cut-off leader"), timeout=15)
    assert d.status == 503, d

    # healed: the old leader reads the Lease, sees the new leader, stands by
    proxy.clear()
    holder = lease(env)["holderIdentity"]
    wait_for(lambda: readyz(a) == (503, f"standby: leader is {holder}"), 30,
             f"the old leader to stand by (now {readyz(a)})")
    assert readyz(b)[0] == 200

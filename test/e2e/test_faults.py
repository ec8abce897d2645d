"""Faults between runboat and Kubernetes, end to end (issue 8): the real
runboat binary, the real control plane, and the fault-injecting proxy of
test/faultproxy between them (TLS passes through untouched).

The invariant asserted everywhere: every push runboat accepted (2xx) is in
Kubernetes when answered and becomes a whole build; a push not accepted
(503) redelivered later is accepted and makes no second build; an action
answered 200 was taken when answered, 504 is applied later, and nothing is
applied that was reported failed (502: no fault here makes Kubernetes
refuse anything, so a 502 is a lie).

test_apiserver_frozen freezes the cluster's kube-apiserver (SIGSTOP) for 40 s
and always resumes it: run it on a cluster of your own, never a shared one
(CI runs the e2e tests one after the other on its own cluster)."""

import threading
import time

import pytest

from fault_helpers import (
    WEBHOOK_LIMIT,
    Ledger,
    act,
    action_problems,
    replicas,
    deployment_kinds,
    diag,
    paused,
    start_proxy,
)
from kube_helpers import cluster_dir
from lifecycle_helpers import github, make_env, sha, wait_for  # noqa: F401 - fixtures

# Limits that do not gate the tests: every build is the newest of its
# branch, initialized at once, and left stopped after initialization so
# that start and stop can be clicked.
LIMITS = """max_initializing = 10
max_started = 20
max_deployed = 60
start_after_init = false"""
NORMAL = 10.0  # an action answers in normal time: well under this
CONVERGE = 90  # s for every build to settle once the fault is gone


@pytest.fixture
def proxy(tmp_path):
    """The fault proxy in front of the apiserver; proxy.kubeconfig goes
    through it. Requested before make_env, so it outlives runboat."""
    p, kc = start_proxy(cluster_dir(), tmp_path)
    p.kubeconfig = kc
    yield p
    p.stop()


def setup(make_env, proxy=None):
    env = make_env(limits=LIMITS, kubeconfig=proxy.kubeconfig if proxy else None)
    return env, Ledger(env)


def prepare(env, led, stopped=0, started=0, prefix="pre"):
    """Builds made before the fault: `stopped` left stopped, then `started`
    more started. Returns (stopped names, started names)."""
    n = stopped + started
    ds = led.burst([(f"{prefix}-{i}", sha(f"{prefix} {i}")) for i in range(n)])
    assert all(d.status == 202 for d in ds), f"before any fault: {ds}\n{diag(env)}"
    led.wait_settled(60)
    names = {b["commit_info"]["git_commit"]: b["name"] for b in env.builds()}
    names = [names[d.sha] for d in ds]
    for name in names[stopped:]:
        a = act(env, name, "start")
        # a start is never answered "already stopped/stopping" (issue 8)
        assert a.status == 200 and "already" not in a.body, f"before any fault: {a}\n{diag(env)}"
    for name in names[stopped:]:
        try:
            env.wait_status(name, "started", 60)
        except AssertionError as e:
            raise AssertionError(f"before any fault: {e}\n{diag(env)}")
    return names[:stopped], names[stopped:]


def answer_problems(deliveries, allowed=(202, 503), limit=WEBHOOK_LIMIT):
    """Webhooks answered with something else than allowed, or later than
    GitHub waits (a delivery not answered in 10 s counts as failed there)."""
    out = []
    for d in deliveries:
        if d.status not in allowed:
            out.append(f"{d!r}: expected one of {allowed}")
        elif d.elapsed > limit:
            out.append(f"{d!r}: answered after {d.elapsed:.1f}s (GitHub gives up at {limit:.0f}s)")
    return out


def converge(env, led, actions=(), proxy=None):
    """After the fault: the accepted pushes are in Kubernetes, the refused
    ones are accepted when redelivered, every build settles whole, the
    actions' invariants hold."""
    problems = led.check_recorded()
    problems += led.redeliver_refused()
    assert not problems, "\n".join(problems) + "\n" + diag(env, proxy)
    led.wait_settled(CONVERGE)
    problems = action_problems(env, actions, CONVERGE)
    problems += led.check_whole(deployment_kinds(env.rb.config))
    assert not problems, "\n".join(problems) + "\n" + diag(env, proxy)


def in_threads(*fns):
    """Runs the callables at once; returns their results in order."""
    out = [None] * len(fns)

    def run(i):
        out[i] = fns[i]()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(180)
    return out


# ---------------------------------------------------------------------------
# (a) the quiet spell, in seconds


@pytest.mark.parametrize("mode", ["silent", "fin"])
def test_quiet_spell(proxy, make_env, mode):
    """Every connection idle for 2 s is dropped ("silent": no FIN, no RST,
    runboat holds dead connections, as behind a NAT or load balancer that
    forgot them; "fin": closed, as the apiserver does after its idle
    time-out). Then Start of a stopped build and 4 pushes, all at once: they
    answer in normal time, and all become builds."""
    env, led = setup(make_env, proxy)
    [stopped], _ = prepare(env, led, stopped=1)
    proxy.idle_drop(2.0, mode)
    time.sleep(3.5)
    dropped = proxy.stats()["idle_dropped"]
    assert dropped >= 1, f"runboat had no connection to the apiserver to drop: {proxy.stats()}"
    proxy.clear()  # the spell is over; the dead connections stay dead

    pushes = [(f"quiet-{i}", sha(f"quiet {i}")) for i in range(4)]
    results = in_threads(lambda: act(env, stopped, "start"), lambda: led.burst(pushes))
    start, deliveries = results[0], results[1]
    problems = answer_problems(deliveries, allowed=(202,))
    if start.status != 200 or start.elapsed > NORMAL:
        problems.append(f"{start!r}: expected 200 within {NORMAL:.0f}s")
    assert not problems, (f"after a quiet spell ({dropped} idle connections dropped, {mode}):\n"
                          + "\n".join(problems) + "\n" + diag(env, proxy))
    converge(env, led, [start], proxy)


# ---------------------------------------------------------------------------
# (b) each fault during start/stop and a burst of pushes

FAULTS = {
    # name: (inject(proxy), how long it lasts (s) with the requests in
    # flight, push answers allowed, action answers allowed)
    "idle_drop": (lambda p: p.idle_drop(1.0), None, (202,), (200,)),
    "blackhole": (lambda p: p.blackhole(), 10.0, (202, 503), (200, 504)),
    "reset": (lambda p: p.reset(1500, count=4), None, (202, 503), (200, 504)),
    "delay": (lambda p: p.delay(3.0), None, (202, 503), (200, 504)),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_during_actions_and_burst(proxy, make_env, fault):
    inject, lasts, push_ok, action_ok = FAULTS[fault]
    env, led = setup(make_env, proxy)
    [to_start], [to_stop] = prepare(env, led, stopped=1, started=1)
    if fault == "idle_drop":
        inject(proxy)
        time.sleep(2.0)  # every connection of runboat is idle by now: dead
    else:
        inject(proxy)
    before = proxy.stats()

    pushes = [(f"{fault}-{i}", sha(f"{fault} {i}")) for i in range(8)]

    def timer():
        if lasts:
            time.sleep(lasts)
            proxy.clear()

    start, stop, deliveries, _ = in_threads(
        lambda: act(env, to_start, "start"), lambda: act(env, to_stop, "stop"),
        lambda: led.burst(pushes), timer)
    after = proxy.stats()
    proxy.clear()

    problems = answer_problems(deliveries, allowed=push_ok)
    for a in (start, stop):
        if a.status not in action_ok:
            problems.append(f"{a!r}: expected one of {action_ok}")
        elif a.status == 200 and fault == "idle_drop" and a.elapsed > NORMAL:
            problems.append(f"{a!r}: expected within {NORMAL:.0f}s")
    # the fault did hit runboat's traffic
    if fault == "idle_drop" and after.get("idle_dropped", 0) < 1:
        problems.append(f"no connection was idle-dropped: {after}")
    if fault == "reset" and after.get("resets", 0) < 1:
        problems.append(f"no connection was reset: {after}")
    if after.get("bytes_down", 0) <= before.get("bytes_down", 0):
        problems.append(f"no byte from the apiserver during the fault: {before} -> {after}")
    assert not problems, (f"fault {fault}: answers {led.answers()}, {start!r}, {stop!r}\n"
                          + "\n".join(problems) + "\n" + diag(env, proxy))
    converge(env, led, [start, stop], proxy)


# ---------------------------------------------------------------------------
# (c) the apiserver frozen for 40 s during 10 pushes


def test_apiserver_frozen(make_env):
    env, led = setup(make_env)
    [to_start], [to_stop] = prepare(env, led, stopped=1, started=1)
    pushes = [(f"frozen-{i}", sha(f"frozen {i}")) for i in range(10)]
    out = {}

    def pusher():
        ts = []
        for i, p in enumerate(pushes):  # one every 1.5 s, answered in parallel
            t = threading.Thread(target=lambda p=p, i=i: out.__setitem__(i, led.push(*p)))
            t.start()
            ts.append(t)
            time.sleep(1.5)
        for t in ts:
            t.join(120)

    # the Deployments cannot be read while the apiserver is frozen
    def action(verb, name, before):
        out[verb] = act(env, name, verb, before=before, check=False)

    with paused(cluster_dir()):
        t_frozen = time.time()
        th = [threading.Thread(target=pusher),
              threading.Thread(target=action, args=("start", to_start, 0)),
              threading.Thread(target=action, args=("stop", to_stop, 1))]
        for t in th:
            t.start()
        time.sleep(max(0.0, 40 - (time.time() - t_frozen)))
        t_resumed = time.time()
    for t in th:
        t.join(180)

    deliveries = [out[i] for i in range(len(pushes))]
    problems = answer_problems(deliveries)
    for d in deliveries:
        if d.accepted and d.sent_at + d.elapsed < t_resumed:
            problems.append(f"{d!r}: accepted while the apiserver was frozen (nothing can be"
                            " recorded then, so a SIGKILL now would lose it)")
    start, stop = out["start"], out["stop"]
    for a in (start, stop):
        if a.status == 200:  # taken when answered: it shows now
            a.replicas_at_answer = replicas(env, a.name)
        if a.status not in (200, 504):
            problems.append(f"{a!r}: expected 504 (not confirmed in time) or 200 (after the"
                            " resume)")
        elif a.status == 200 and a.sent_at + a.elapsed < t_resumed:
            problems.append(f"{a!r}: answered 200 while the apiserver was frozen")
    assert not problems, (f"frozen 40 s: answers {led.answers()}\n" + "\n".join(problems)
                          + "\n" + diag(env))
    converge(env, led, [start, stop])


# ---------------------------------------------------------------------------
# (d) SIGKILL right after a 202


def test_sigkill_right_after_202(make_env):
    env, led = setup(make_env)
    d = led.push("kill-0", sha("kill 0"))
    env.kill()
    assert d.status == 202, f"{d!r}\n{diag(env)}"
    assert not led.check_recorded([d]), f"{d!r}: no Deployment when runboat died"
    env.start()
    # a burst, and runboat killed as soon as the first push is accepted
    first = threading.Event()
    pushes = [(f"kill-{i}", sha(f"kill {i}")) for i in range(1, 9)]

    def one(p):
        x = led.push(*p)
        if x.accepted:
            first.set()
        return x

    threads = [threading.Thread(target=one, args=(p,)) for p in pushes]
    for t in threads:
        t.start()
    assert first.wait(30), f"no push accepted: {led.deliveries}\n{diag(env)}"
    env.kill()
    for t in threads:
        t.join(60)
    accepted = [x for x in led.deliveries if x.accepted]
    problems = led.check_recorded(accepted)
    assert not problems, "\n".join(problems) + f"\nall: {led.deliveries}\n{diag(env)}"
    env.start()
    converge(env, led)


# ---------------------------------------------------------------------------
# (e) runboat down while 5 pushes and a PR close happen


def test_missed_webhooks_recovered(make_env):
    env, led = setup(make_env)
    d0 = led.push("down-0", sha("down 0"))
    pr = led.pr("opened", 21, sha("pr 21"))
    assert d0.status == 202 and pr.status == 202, f"{d0!r} {pr!r}\n{diag(env)}"
    led.wait_settled(60)
    assert len(env.builds(pr=21)) == 1
    env.rb.stop()
    # while runboat is down, GitHub moves on; its deliveries fail
    missed = [led.missed_push(f"down-{i}", sha(f"down {i} new")) for i in range(5)]
    led.missed_pr("closed", 21, pr.sha)
    env.start()
    problems = []
    try:
        wait_for(lambda: not [d for d in missed if not any(
            b["commit_info"]["git_commit"] == d.sha for b in env.builds())], 60,
            "builds of the pushes made while runboat was down")
    except AssertionError as e:
        problems.append(f"{e}: missing "
                        f"{[d for d in missed if not any(b['commit_info']['git_commit'] == d.sha for b in env.builds())]}")
    try:
        wait_for(lambda: env.builds(pr=21) == [], 60, "the closed PR's build to go")
    except AssertionError as e:
        problems.append(f"{e}: {[(b['name'], b['status']) for b in env.builds(pr=21)]}")
    assert not problems, "\n".join(problems) + "\n" + diag(env)
    led.wait_settled(CONVERGE)

"""A watch whose connection died silently, with no call traffic at all
(issue 8): the real runboat binary, a real kube-apiserver WITH its watch
cache (which sends a BOOKMARK on every watch about every 60 s once the
resource's revision has moved past the watch's start; see README
"Watches and connection health"), and the fault proxy of test/faultproxy
between them.

runboat learns that the server sends periodic bookmarks, every connection
through the proxy is then dropped silently (no FIN, no RST: the client holds
dead connections and nothing tells it), and a build's Deployment is scaled
directly in the apiserver. runboat must see the change well before the
watch's timeoutSeconds (5 to 10 min): a watch that received nothing for
twice the bookmark period plus the margin (about 150 s) is taken for dead.

It takes about 4 minutes (a minute to see the first periodic bookmark, up to
2.5 more for the silence to count). The cluster of RUNBOAT_TEST_CLUSTER is used
when its apiserver runs with --watch-cache=true; otherwise (CI's cluster keeps
the watch cache off for its 410 tests) the test starts a control plane of its
own with RUNBOAT_WATCH_CACHE=true (about 30 s) and stops it at the end."""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from fault_helpers import start_proxy
from kube_helpers import cluster_dir
from lifecycle_helpers import github, make_env  # noqa: F401 - fixtures

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "test" / "cluster" / "cluster.sh"
BOOKMARK_PERIOD = 60  # s: kube-apiserver's defaultBookmarkFrequency (cacher.go)
LEARNED = "sends periodic bookmarks"


def has_watch_cache(d):
    script = pathlib.Path(d) / "run" / "kube-apiserver.sh"
    return script.exists() and "--watch-cache=true" in script.read_text()


@pytest.fixture(scope="module")
def watch_cache_cluster():
    """A control plane whose apiserver has its watch cache on; sets
    RUNBOAT_TEST_CLUSTER to it for this module's tests."""
    old = os.environ.get("RUNBOAT_TEST_CLUSTER")
    if old and has_watch_cache(old):
        yield pathlib.Path(old)
        return
    if not old:
        cluster_dir()  # skips: no control plane to run tests on here
    d = tempfile.mkdtemp(prefix="runboat-wc-cluster.")
    env = dict(os.environ, RUNBOAT_WATCH_CACHE="true")
    r = subprocess.run(["bash", str(CLUSTER_SH), "start", d], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"could not start a control plane with the watch cache:\n{r.stderr}"
    os.environ["RUNBOAT_TEST_CLUSTER"] = d
    try:
        yield pathlib.Path(d)
    finally:
        if old is None:
            os.environ.pop("RUNBOAT_TEST_CLUSTER", None)
        else:
            os.environ["RUNBOAT_TEST_CLUSTER"] = old
        subprocess.run(["bash", str(CLUSTER_SH), "stop", d], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def wc_proxy(watch_cache_cluster, tmp_path):
    p, kc = start_proxy(watch_cache_cluster, tmp_path)
    p.kubeconfig = kc
    yield p
    p.stop()


def status(env, name):
    try:
        return (env.build(name) or {}).get("status")
    except requests.RequestException:
        return None


def test_silently_dead_watch_without_calls(watch_cache_cluster, wc_proxy, make_env):
    env = make_env(kubeconfig=wc_proxy.kubeconfig)
    # two stopped builds made directly in Kubernetes: runboat sees them
    # through its Deployment watch, and the resource's revision moves past
    # the watch's start, so the apiserver's periodic bookmarks flow
    names = env.adopt_builds(2, prefix="quiet")
    for name in names:
        env.wait_status(name, "stopped", 60)
    # the first periodic bookmark comes about 60 s after the watch started
    # (not an assertion here: a runboat that does not say it learnt the
    # period must still fail below, on what matters)
    learned = False
    deadline = time.monotonic() + 2 * BOOKMARK_PERIOD + 30
    while not learned and time.monotonic() < deadline:
        learned = re.search(rf"Deployment .*{LEARNED}", env.rb.logs()) is not None
        time.sleep(0.5)

    wc_proxy.drop_all("silent")  # every connection: the watches' and the calls' ones
    dropped = wc_proxy.stats()
    t0 = time.monotonic()
    scale = env.kube.request(
        "PATCH", f"/apis/apps/v1/namespaces/{env.namespace}/deployments/{names[0]}-odoo",
        data='{"spec": {"replicas": 1}}', headers={"Content-Type": "application/merge-patch+json"})
    assert scale.status_code == 200, scale.text

    bound = 3 * BOOKMARK_PERIOD
    deadline = t0 + bound
    while status(env, names[0]) == "stopped" and time.monotonic() < deadline:
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    logs = env.rb.logs()
    print(f"scale seen after {elapsed:.1f} s")
    assert status(env, names[0]) != "stopped", (
        f"runboat did not see the Deployment scaled {bound} s ago (its watch is dead; "
        f"periodic bookmarks {'seen' if learned else 'never said to be seen'}):\n"
        f"proxy after the drop: {dropped}\n" + logs[-4000:])
    # found by the bookmark rule, not because some call met a dead connection
    assert "calls found dead connections" not in logs, logs[-4000:]
    assert re.search(r"Deployment .*nothing received for", logs), logs[-4000:]

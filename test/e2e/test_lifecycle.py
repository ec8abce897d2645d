"""Builds end to end on the real control plane: GitHub's example webhooks
(re-signed) drive runboat, the real kube-controller-manager computes
Deployment and Job status, the pod simulator plays the kubelet, and a fake
GitHub records commit statuses."""

import shutil
import time
from pathlib import Path

import requests

from lifecycle_helpers import (  # noqa: F401 - fixtures
    ADMIN,
    IMAGE,
    REPO,
    github,
    init_status,
    make_env,
    one_initializing_one_waiting,
    pr_payload,
    push_payload,
    sha,
    wait_for,
)


def test_full_lifecycle(make_env, github):
    env = make_env()
    r = env.webhook("push", push_payload("16.0", sha(1)))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(1), 20, "the build")
    name = b["name"]
    assert b["commit_info"] == {"repo": REPO, "target_branch": "16.0", "pr": None,
                                "git_commit": sha(1)}
    assert b["deploy_link"].startswith("http://acme-addons-16-0-")
    # initialized by the job, then started at once (start_after_init)
    env.wait_status(name, "started", 60)
    dep = env.deployment(name)
    ann = dep["metadata"]["annotations"]
    assert ann["runboat/init-status"] == "succeeded"
    assert ann["runboat/repo"] == REPO and ann["runboat/git-commit"] == sha(1)
    assert "runboat/cleanup" in dep["metadata"]["finalizers"]
    # stop, start
    r = env.post(f"/api/v1/builds/{name}/stop")
    assert r.status_code == 200, r.text
    env.wait_status(name, "stopped", 30)
    assert env.deployment(name)["spec"]["replicas"] == 0
    r = env.post(f"/api/v1/builds/{name}/start")
    assert r.status_code == 200, r.text
    env.wait_status(name, "started", 30)
    # commit statuses: pending at deploy and init, success at the end
    wait_for(lambda: any(s["state"] == "success" for s in github.statuses()), 15, "success status")
    states = [s["state"] for s in github.statuses() if s["sha"] == sha(1)]
    assert states[0] == "pending" and "success" in states
    st = github.statuses()[-1]
    assert st["context"] == "runboat/build"
    assert st["target_url"] == f"{env.rb.base}/builds/{name}?live&repo={REPO.replace('/', '%2F')}&target_branch=16.0"
    # undeploy: cleanup job, then every object gone
    assert env.delete(f"/api/v1/builds/{name}", auth=None).status_code == 401
    r = env.delete(f"/api/v1/builds/{name}")
    assert r.status_code == 200, r.text
    wait_for(lambda: env.build(name) is None, 60, "the build to go")
    wait_for(lambda: env.objects_of(name) == [], 30, f"objects of {name} to go: {env.objects_of(name)}")


def test_init_failure(make_env, github):
    env = make_env()
    env.podsim(fail=".*-initialize-.*")
    env.webhook("push", push_payload("16.0", sha(2)))
    b = env.wait_build(lambda b: True, 20)
    env.wait_status(b["name"], "failed", 60)
    wait_for(lambda: any(s["state"] == "failure" and s["sha"] == sha(2) for s in github.statuses()),
             15, "failure status")
    # a failed build cannot be started (409), reset makes it try again
    assert env.post(f"/api/v1/builds/{b['name']}/start").status_code == 409
    env.podsim(fail="^$")
    assert env.post(f"/api/v1/builds/{b['name']}/reset").status_code == 200
    env.wait_status(b["name"], "started", 60)


def test_paused_until_initialized(make_env):
    """A build waiting for its turn to initialize is a paused Deployment
    without a ReplicaSet: the controller-manager's writes for it wait (a
    burst of deploys costs the control plane less). The patch that records
    its initialization unpauses it; a reset pauses it again, until the next."""
    env = make_env(limits="max_initializing = 1")
    # one initializes (its Job held running), the other waits its turn
    running, waiting = one_initializing_one_waiting(env, ["p1", "p2"], [sha(300), sha(301)])
    names = [running, waiting]

    def replicasets(name):
        r = env.kube.request("GET", f"/apis/apps/v1/namespaces/{env.namespace}/replicasets",
                             params={"labelSelector": f"runboat/build={name}"})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    # (false is left out of what the apiserver answers)
    assert not env.deployment(running)["spec"].get("paused")
    wait_for(lambda: len(replicasets(running)) == 1, 30, "the initializing build's ReplicaSet")
    dep = env.deployment(waiting)
    assert dep["spec"]["paused"] is True and dep["spec"]["replicas"] == 0
    assert replicasets(waiting) == []

    # both initialize, then start (start_after_init), unpaused
    env.podsim(hold="^$")
    wait_for(lambda: all(env.build(n)["status"] == "started" for n in names), 90,
             "both builds started")
    for n in names:
        assert not env.deployment(n)["spec"].get("paused")
        assert len(replicasets(n)) == 1

    # a reset: deployed again as new (paused, 0 replicas, todo; its pod
    # goes), seen while a third build holds the only initialization slot;
    # then initialized (unpaused) and started again
    env.podsim(hold="-initialize-")
    r = env.webhook("push", push_payload("p3", sha(302)))
    assert r.status_code == 202, r.text
    third = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(302), 20, "the third")
    wait_for(lambda: init_status(env, third["name"]) == "started", 60, "the third initializing")
    r = env.post(f"/api/v1/builds/{waiting}/reset")
    assert r.status_code == 200, r.text

    def reset_seen():
        d = env.deployment(waiting)
        return (d["spec"].get("paused") is True and d["spec"]["replicas"] == 0
                and init_status(env, waiting) == "todo"
                and not (d.get("status") or {}).get("replicas")
                and all(rs["spec"]["replicas"] == 0 for rs in replicasets(waiting)))
    wait_for(reset_seen, 60, "the reset build paused, its pod gone")
    env.podsim(hold="^$")
    wait_for(lambda: env.build(waiting)["status"] == "started"
             and init_status(env, waiting) == "succeeded", 90, "the reset build started again")
    assert not env.deployment(waiting)["spec"].get("paused")


def test_limits(make_env):
    env = make_env(limits="max_initializing = 1\nmax_started = 1\nmax_deployed = 3")
    env.podsim(delay_ms=1500)
    seen_initializing = []
    # four branches, and three commits on one of them
    for i, branch in enumerate(["a", "b", "c", "d"]):
        env.webhook("push", push_payload(branch, sha(100 + i)))
    # four initializations one after the other, then the stopper: a loaded
    # machine needs time (this is a wait, not a timed assertion)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = env.status()
        seen_initializing.append(st["initializing"])
        builds = env.builds()
        if len(builds) == 4 and all(b["status"] in ("started", "stopped") for b in builds):
            break
        time.sleep(0.2)
    assert max(seen_initializing) <= 1
    builds = env.builds()
    assert sorted(b["status"] for b in builds) == ["started", "stopped", "stopped", "stopped"]
    # every build is the newest of its branch: none is undeployed even
    # beyond max_deployed
    assert len(builds) == 4
    # newer commits on branch a: the older ones go, down to max_deployed
    env.webhook("push", push_payload("a", sha(200)))
    env.webhook("push", push_payload("a", sha(201)))
    wait_for(lambda: any(b["commit_info"]["git_commit"] == sha(201) and b["status"] == "started"
                         for b in env.builds()), 90, "the newest commit of a started")
    wait_for(lambda: len([b for b in env.builds() if b["status"] != "undeploying"]) <= 4, 60,
             "the undeployer")
    commits_a = [b["commit_info"]["git_commit"] for b in env.builds(branch="a")
                 if b["status"] != "undeploying"]
    assert sha(201) in commits_a and sha(100) not in commits_a
    st = env.status()
    assert st["started"] <= 1


def test_cap_per_branch(make_env):
    env = make_env(limits="max_deployed_per_ref = 2")
    env.webhook("push", push_payload("b", sha(300)))
    for i in range(3):
        env.webhook("push", push_payload("a", sha(301 + i)))
        # each one initialized before the next push: not an obsolete queued
        # build, the cap alone removes it
        wait_for(lambda: any(b["commit_info"]["git_commit"] == sha(301 + i)
                             and b["status"] == "started" for b in env.builds()),
                 90, f"commit {i} of a started")
    # three builds of a, at most two: the oldest (started) goes
    wait_for(lambda: sorted(b["commit_info"]["git_commit"] for b in env.builds(branch="a")
                            if b["status"] != "undeploying") == sorted([sha(302), sha(303)]),
             60, "the oldest build of a to go")
    assert [b["commit_info"]["git_commit"] for b in env.builds(branch="b")] == [sha(300)]


def test_wake_on_request(make_env):
    env = make_env(limits="start_after_init = false\nmax_initializing = 4\nmax_started = 10")
    branches = [f"w{i}" for i in range(7)]
    for i, br in enumerate(branches):
        assert env.webhook("push", push_payload(br, sha(600 + i))).status_code == 202
    wait_for(lambda: len([b for b in env.builds() if b["status"] == "stopped"]) == 7, 120,
             "seven stopped builds")
    builds = {b["commit_info"]["target_branch"]: b for b in env.builds()}
    # the status links of GitHub are the live links
    st = [s for s in env.github.statuses() if s["sha"] == sha(600)][-1]
    assert st["target_url"].startswith(f"{env.rb.base}/builds/{builds['w0']['name']}?live&repo=")
    # a visit to a stopped build's live link starts it; six a minute per address
    for br in branches:
        r = requests.get(env.rb.url(f"/builds/{builds[br]['name']}?live"), allow_redirects=False,
                         timeout=10)
        assert r.status_code == 200 and "no-store" in r.headers.get("Cache-Control", "")
    for br in branches[:6]:
        env.wait_status(builds[br]["name"], "started", 60)
    time.sleep(2)
    assert env.build(builds["w6"]["name"])["status"] == "stopped"
    # started: the live link goes to the instance
    r = requests.get(env.rb.url(f"/builds/{builds['w0']['name']}?live"), allow_redirects=False,
                     timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith("http://"), r.headers
    # gone: the link leads to the newest build of its branch
    assert env.webhook("push", push_payload("w1", sha(700))).status_code == 202
    newer = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(700), 20)
    old = builds["w1"]["name"]
    assert env.delete(f"/api/v1/builds/{old}").status_code == 200
    wait_for(lambda: env.build(old) is None, 90, "the old build of w1 to go")
    q = f"repo={REPO}&target_branch=w1"
    r = requests.get(env.rb.url(f"/builds/{old}?live&{q}"), allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == f"{env.rb.base}/builds/{newer['name']}?live"
    # without the query: the page, which says the build is gone
    r = requests.get(env.rb.url(f"/builds/{old}?live"), allow_redirects=False, timeout=10)
    assert r.status_code == 200


def test_debounced_pushes(make_env):
    env = make_env(github_extra="debounce = 4")
    # three pushes of one branch within the window, one of another branch
    for i in range(3):
        assert env.webhook("push", push_payload("a", sha(500 + i))).status_code == 202
        time.sleep(0.3)
    assert env.webhook("push", push_payload("b", sha(510))).status_code == 202
    jobs = set()

    def init_jobs():
        r = env.kube.request("GET", f"/apis/batch/v1/namespaces/{env.namespace}/jobs",
                             params={"labelSelector": "runboat/job-kind=initialize"})
        jobs.update(j["metadata"]["labels"]["runboat/build"] for j in r.json()["items"])
        return jobs
    # nothing is initialized within the window
    time.sleep(2)
    assert init_jobs() == set()
    newest = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(502), 10)
    other = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(510), 10)
    env.wait_status(newest["name"], "started", 60)
    env.wait_status(other["name"], "started", 60)
    # only the newest of branch a was built; the older ones are gone
    assert init_jobs() == {newest["name"], other["name"]}
    wait_for(lambda: [b["commit_info"]["git_commit"] for b in env.builds(branch="a")] == [sha(502)],
             60, "the older pushes of a to go")


def test_stuck_undeploy_retried_then_forced(make_env, tmp_path):
    # kubefiles whose cleanup Job fails at its first pod (the default one
    # retries its pod 6 times, minutes of the controller-manager's backoff)
    kf = tmp_path / "kubefiles"
    shutil.copytree(Path(__file__).resolve().parents[2] / "kubefiles", kf)
    cleanup = (kf / "cleanup.yaml").read_text()
    assert "backoffLimit: 6" in cleanup
    (kf / "cleanup.yaml").write_text(cleanup.replace("backoffLimit: 6", "backoffLimit: 0"))
    repo = "stuck/addons"
    env = make_env(extra=f'[[repos]]\nrepo = "{repo}"\nimage = "{IMAGE}"\nkubefiles = "{kf}"\n')
    env.webhook("push", push_payload("16.0", sha(40), repo=repo))
    b = env.wait_build(lambda b: b["status"] == "started", 60)
    env.podsim(fail=".*-cleanup-.*")
    r = requests.delete(env.rb.url(f"/api/v1/builds/{b['name']}"), auth=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    # the failed cleanup Job is deleted and made again, after a pause
    env.wait_build(lambda x: x["name"] == b["name"] and "trying again" in (x["reason"] or ""), 60,
                   "the first cleanup retry")
    uids = set()

    def cleanup_jobs():
        r = env.kube.request("GET", f"/apis/batch/v1/namespaces/{env.namespace}/jobs",
                             params={"labelSelector": f"runboat/build={b['name']},runboat/job-kind=cleanup"})
        uids.update(j["metadata"]["uid"] for j in r.json()["items"])
        return len(uids) >= 2
    wait_for(cleanup_jobs, 60, "a second cleanup job")
    r = requests.get(env.rb.url(f"/api/v1/builds/{b['name']}/cleanup-log"), timeout=30)
    assert r.status_code in (200, 404, 502), r.text
    # an admin forces it: every object goes without a cleanup job
    r = env.post(f"/api/v1/builds/{b['name']}/force-undeploy")
    assert r.status_code == 401
    r = env.post(f"/api/v1/builds/{b['name']}/force-undeploy", auth=ADMIN)
    assert r.status_code == 200 and "forced" in r.json()["detail"], r.text
    wait_for(lambda: env.builds() == [], 60, "the build to go")
    for kind in ("apis/apps/v1/namespaces/{ns}/deployments", "apis/batch/v1/namespaces/{ns}/jobs",
                 "api/v1/namespaces/{ns}/services", "api/v1/namespaces/{ns}/persistentvolumeclaims"):
        r = env.kube.request("GET", "/" + kind.format(ns=env.namespace),
                             params={"labelSelector": f"runboat/build={b['name']}"})
        live = [o for o in r.json()["items"] if not o["metadata"].get("deletionTimestamp")]
        assert live == [], (kind, live)


def comment_payload(pr, body, assoc, login="ann-b", repo=REPO):
    """An issue_comment "created" delivery on a PR, in the shape GitHub
    documents for that event."""
    return {"action": "created",
            "issue": {"number": pr, "title": "x", "state": "open",
                      "pull_request": {"url": f"https://api.github.com/repos/{repo}/pulls/{pr}"}},
            "comment": {"id": 1000 + pr, "body": body, "author_association": assoc,
                        "user": {"login": login, "id": 1}},
            "repository": {"full_name": repo, "name": repo.split("/")[1]},
            "sender": {"login": login, "id": 1}}


def test_rebuild_by_pr_comment(make_env, github):
    env = make_env()
    # a PR whose head has no build yet: the comment deploys it
    github.set_pull(REPO, 21, sha(21), "16.0")
    r = env.webhook("issue_comment", comment_payload(21, "/runboat rebuild", "MEMBER"))
    assert r.status_code == 202, r.text
    b = env.wait_build(lambda b: b["commit_info"]["pr"] == 21 and b["status"] == "started", 60)
    assert b["commit_info"]["git_commit"] == sha(21)
    # a second one within the minute: ignored
    r = env.webhook("issue_comment", comment_payload(21, "/runboat rebuild", "OWNER"))
    assert r.status_code == 200 and "ignored" in r.json()["detail"], r.text
    # a PR with a build: the comment resets it, it is initialized again
    r = env.webhook("pull_request", pr_payload("opened", 22, sha(22)))
    assert r.status_code in (202, 503), r.text  # 503: not recorded in 8 s, made anyway
    b = env.wait_build(lambda b: b["commit_info"]["pr"] == 22 and b["status"] == "started", 60)
    github.set_pull(REPO, 22, sha(22), "16.0")
    r = env.webhook("issue_comment", comment_payload(22, "it broke\r\n/runboat rebuild", "COLLABORATOR"))
    assert r.status_code == 202, r.text
    assert "reset" in r.json()["detail"] and b["name"] in r.json()["detail"]
    env.wait_build(lambda x: x["name"] == b["name"] and x["init_status"] != "succeeded", 30,
                   "the build reset")
    env.wait_build(lambda x: x["name"] == b["name"] and x["status"] == "started", 60,
                   "the build started again")
    # acknowledged on GitHub: a pending status says who asked
    wait_for(lambda: any(s["sha"] == sha(22) and s["state"] == "pending"
                         and "@ann-b" in (s.get("description") or "")
                         for s in github.statuses()), 20, "the acknowledging status")
    # someone who may not: nothing
    github.set_pull(REPO, 23, sha(23), "16.0")
    r = env.webhook("issue_comment", comment_payload(23, "/runboat rebuild", "CONTRIBUTOR"))
    assert r.status_code == 200 and "only owners" in r.json()["detail"], r.text
    time.sleep(1)
    assert env.builds(pr=23) == []


def test_pr_lifecycle_and_close(make_env, github):
    env = make_env()
    assert env.webhook("pull_request", pr_payload("opened", 7, sha(7))).status_code == 202
    b = env.wait_build(lambda b: b["commit_info"]["pr"] == 7, 20)
    assert b["repo_pr_link"].endswith("/pull/7")
    assert env.webhook("pull_request", pr_payload("synchronize", 7, sha(8))).status_code == 202
    env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(8), 20)
    # a redelivery does no harm: the build is there already
    r = env.webhook("pull_request", pr_payload("synchronize", 7, sha(8)))
    assert r.status_code == 200 and "already deployed" in r.json()["detail"], r.text
    time.sleep(1)
    assert len([b for b in env.builds(pr=7) if b["commit_info"]["git_commit"] == sha(8)]) == 1
    assert env.webhook("pull_request", pr_payload("closed", 7, sha(8))).status_code == 202
    wait_for(lambda: env.builds(pr=7) == [], 90, "the PR's builds to go")


def test_branch_deleted(make_env):
    env = make_env()
    env.webhook("push", push_payload("feature/x", sha(30)))
    b = env.wait_build(lambda b: True, 20)
    assert b["commit_info"]["target_branch"] == "feature/x"
    r = env.webhook("push", push_payload("feature/x", None, deleted=True))
    assert r.status_code == 202, r.text
    wait_for(lambda: env.builds() == [], 90, "the branch's builds to go")


def test_tags_and_unsupported_repos_are_ignored(make_env):
    env = make_env()
    p = push_payload("16.0", sha(40))
    p["ref"] = "refs/tags/v1"
    assert env.webhook("push", p).status_code == 200
    assert env.webhook("push", push_payload("16.0", sha(41), repo="other/repo")).status_code == 200
    assert env.webhook("ping", {"zen": "hi", "hook_id": 1}).status_code == 200
    time.sleep(1)
    assert env.builds() == []


def test_bad_signatures(make_env):
    env = make_env()
    p = push_payload("16.0", sha(50))
    assert env.webhook("push", p, secret="wrong").status_code == 401
    assert env.webhook("push", p, secret=None).status_code == 401
    r = env.webhook("push", p, headers={"X-Hub-Signature-256": "sha256=zz"})
    assert r.status_code == 401
    time.sleep(1)
    assert env.builds() == []


def test_hostile_branch_names_cannot_inject(make_env):
    env = make_env()
    # valid git branch names full of YAML syntax
    for i, branch in enumerate(['x"y', "a#b", "k=v>w", "{{x}}", "x --- y", "it's", "a,b&c|d",
                                "x\u2028y\u0085z"]):
        branch = branch.replace(" ", "-")
        r = env.webhook("push", push_payload(branch, sha(60 + i)))
        assert r.status_code == 202, (branch, r.text)
    wait_for(lambda: len(env.builds()) == 8, 30, "8 builds")
    for b in env.builds():
        dep = env.deployment(b["name"])
        assert dep["metadata"]["annotations"]["runboat/target-branch"] == b["commit_info"]["target_branch"]
    # what git refuses is refused
    for branch in ["a\nb", "a b", "a..b", "a:b", "-x", "x.lock"]:
        r = env.webhook("push", push_payload(branch, sha(70)))
        assert r.status_code == 400, (branch, r.text)


def test_api_errors(make_env, github):
    env = make_env()
    assert requests.get(env.rb.url("/api/v1/builds/bnope")).status_code == 404
    assert env.post("/api/v1/builds/bnope/start").status_code == 404
    assert requests.get(env.rb.url("/api/v1/builds"), params={"pr": "x"}).status_code == 400
    assert requests.get(env.rb.url("/api/v1/builds"), params={"status": "x"}).status_code == 400
    # cross-origin state changes are refused
    env.webhook("push", push_payload("16.0", sha(80)))
    b = env.wait_build(lambda b: True, 20)
    r = env.post(f"/api/v1/builds/{b['name']}/stop", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # admin routes
    r = env.post("/api/v1/builds/trigger/branch", params={"repo": REPO, "branch": "16.0"})
    assert r.status_code == 401
    github.set_branch(REPO, "16.0", sha(81))
    r = env.post("/api/v1/builds/trigger/branch", params={"repo": REPO, "branch": "16.0"}, auth=ADMIN)
    assert r.status_code == 200, r.text
    env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(81), 20)
    github.set_pull(REPO, 9, sha(82), "16.0")
    r = env.post("/api/v1/builds/trigger/pr", params={"repo": REPO, "pr": "9"}, auth=ADMIN)
    assert r.status_code == 200, r.text
    env.wait_build(lambda b: b["commit_info"]["pr"] == 9, 20)
    r = env.post("/api/v1/builds/trigger/pr", params={"repo": REPO, "pr": "404"}, auth=ADMIN)
    assert r.status_code == 404
    # logs
    r = requests.get(env.rb.url(f"/api/v1/builds/{b['name']}/init-log"))
    assert r.status_code in (200, 404), r.text
    assert requests.get(env.rb.url("/api/v1/builds/bnope/log")).status_code == 404


def test_sigkill_and_restart_converge(make_env):
    env = make_env(limits="max_initializing = 2")
    env.podsim(delay_ms=1000)
    # a 202 is only given once the build's Deployment exists: killed right
    # after the last answer, in the middle of deploys and initializations,
    # runboat loses none of them
    for i in range(4):
        assert env.webhook("push", push_payload(f"k{i}", sha(90 + i))).status_code == 202
    env.kill()
    env.start()
    wait_for(lambda: len(env.builds()) == 4 and all(b["status"] in ("started", "stopped")
                                                     for b in env.builds()), 120, "convergence")
    # and a redelivery does no harm
    for i in range(4):
        r = env.webhook("push", push_payload(f"k{i}", sha(90 + i)))
        assert r.status_code == 200 and "already deployed" in r.json()["detail"], r.text
    # one build per commit, one init job per build
    commits = sorted(b["commit_info"]["git_commit"] for b in env.builds())
    assert commits == sorted(sha(90 + i) for i in range(4))
    r = env.kube.request("GET", f"/apis/batch/v1/namespaces/{env.namespace}/jobs",
                         params={"labelSelector": "runboat/job-kind=initialize"})
    per_build = {}
    for j in r.json()["items"]:
        n = j["metadata"]["labels"]["runboat/build"]
        per_build[n] = per_build.get(n, 0) + 1
    assert all(v == 1 for v in per_build.values()), per_build
    # kill again in the middle of undeploys: no orphan once converged
    names = [b["name"] for b in env.builds()]
    for n in names:
        env.delete(f"/api/v1/builds/{n}")
    time.sleep(0.3)
    env.kill()
    env.start()
    wait_for(lambda: env.builds() == [], 120, "the undeploys to finish")
    wait_for(lambda: env.labelled_build_names() == set(), 30,
             f"no object left: {env.labelled_build_names()}")


def test_form_encoded_webhook(make_env):
    """GitHub's other content type: the JSON in a form field, the signature
    over the raw form body."""
    import hashlib
    import hmac
    import json
    import urllib.parse

    from lifecycle_helpers import SECRET

    env = make_env()
    body = urllib.parse.urlencode({"payload": json.dumps(push_payload("16.0", sha(300)))}).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = requests.post(env.rb.url("/webhooks/github"), data=body, timeout=10, headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": sig,
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 202, r.text
    env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(300), 20)
    r = requests.post(env.rb.url("/webhooks/github"), data=b"nothing=here", timeout=10, headers={
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), b"nothing=here", hashlib.sha256).hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400

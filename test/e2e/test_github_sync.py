"""Missed-webhook recovery on the real control plane: runboat reconciles the
fake GitHub's branches and open PRs with its builds at start-up and every
sync_interval, with conditional requests, pagination and the rate limit
respected, and never undeploys on a listing that failed."""

import re
import time

import pytest

from kube_helpers import Kube, cluster_dir
from lifecycle_helpers import (  # noqa: F401 - fixtures
    REPO,
    Env,
    github,
    push_payload,
    sha,
    wait_for,
)

SYNC_LINE = re.compile(r"github sync (done|incomplete|stopped[^:]*): (\d+) repos .*?"
                       r"(\d+) API requests \((\d+) not modified\)")


class SyncEnv(Env):
    """An Env whose [github] section also holds the sync's keys
    (github_extra)."""

    def syncs(self):
        """The sync summary lines of the running runboat, oldest first:
        (outcome, repos, requests, not_modified)."""
        out = []
        for line in self.rb.logs().splitlines():
            m = SYNC_LINE.search(line)
            if m:
                out.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
        return out

    def has_heads(self, want):
        """True when the targets with builds are exactly want's keys and each
        has a build of want's sha (older builds may still be there, or be
        undeployed by the controller as obsolete)."""
        heads = self.heads()
        return set(heads) == set(want) and all(sha in heads[k] for k, sha in want.items())

    def wait_heads(self, want, timeout=90):
        deadline = time.monotonic() + timeout
        while not self.has_heads(want):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for heads {want}, now {self.heads()}")
            time.sleep(0.3)

    def wait_syncs(self, n, timeout=60):
        wait_for(lambda: len(self.syncs()) >= n, timeout, f"{n} syncs (log: {self.syncs()})")
        return self.syncs()

    def heads(self):
        """{(target_branch, pr): set of shas} of the builds not undeploying."""
        out = {}
        for b in self.builds():
            if b["status"] == "undeploying":
                continue
            key = (b["commit_info"]["target_branch"], b["commit_info"]["pr"])
            out.setdefault(key, set()).add(b["commit_info"]["git_commit"])
        return out


DEFAULT_SYNC = 'sync_interval = 2\nsync_repos = ["acme/addons"]'


@pytest.fixture
def make_sync_env(make_runboat, github):
    kube = Kube(cluster_dir())
    envs = []

    def make(github_extra=DEFAULT_SYNC, **kw):
        env = SyncEnv(make_runboat, kube, github, github_extra=github_extra, **kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        kube.request("DELETE", f"/api/v1/namespaces/{env.namespace}")


def listing_requests(github):
    return [r for r in github.requests()
            if r["path"].split("?")[0].endswith(("/branches", "/pulls"))]


def test_missed_events_recovered_at_start(make_sync_env, github):
    """Heads that never came as webhooks are deployed at start-up; pushes,
    a branch deletion and a PR close that happen while runboat is stopped
    are applied when it starts again."""
    github.set_branch(REPO, "16.0", sha(1))
    github.set_branch(REPO, "feature", sha(2))
    github.set_pull(REPO, 5, sha(3), "16.0")
    github.set_pull(REPO, 6, sha(4), "16.0")
    env = make_sync_env()
    env.wait_heads({("16.0", None): sha(1), ("feature", None): sha(2),
                    ("16.0", 5): sha(3), ("16.0", 6): sha(4)}, 60)
    first = env.wait_syncs(1)[0]
    assert first[0] == "done" and first[1] == 1, first
    log = env.rb.logs()
    assert "acme/addons branch 16.0: head " + sha(1)[:12] + " has no build, deploy" in log

    env.rb.stop()
    # while runboat is down: pushes, a force-push back, a deleted branch,
    # a closed PR, a new PR
    github.set_branch(REPO, "16.0", sha(10))
    github.set_branch(REPO, "17.0", sha(11))
    github.delete_branch(REPO, "feature")
    github.close_pull(REPO, 5)
    github.set_pull(REPO, 6, sha(12), "16.0")
    github.set_pull(REPO, 7, sha(13), "17.0")
    env.start()
    want = {("16.0", None): sha(10), ("17.0", None): sha(11),
            ("16.0", 6): sha(12), ("17.0", 7): sha(13)}
    env.wait_heads(want)
    log = env.rb.logs()
    assert "branch feature was deleted on GitHub, undeploy build" in log
    assert "PR 5 is closed on GitHub, undeploy build" in log
    # every build of the deleted branch and of the closed PR goes
    wait_for(lambda: not [b for b in env.builds()
                          if b["commit_info"]["target_branch"] == "feature"
                          or b["commit_info"]["pr"] == 5], 90, "the undeploys to finish")
    # every head has its build: nothing more to do next time
    n = len(env.syncs())
    env.wait_syncs(n + 1)
    assert env.has_heads(want), env.heads()
    last = [line for line in env.rb.logs().splitlines() if "github sync done" in line][-1]
    assert " 0 deployed, " in last and " 0 builds undeployed" in last, last


def test_second_sync_is_not_modified(make_sync_env, github):
    github.set_branch(REPO, "16.0", sha(20))
    github.set_pull(REPO, 8, sha(21), "16.0")
    env = make_sync_env()
    syncs = env.wait_syncs(2)
    assert syncs[0][2] == 2 and syncs[0][3] == 0, syncs
    assert syncs[1][2] == 2 and syncs[1][3] == 2, syncs
    # the conditional requests carried the ETags
    reqs = listing_requests(github)
    assert reqs[0]["headers"].get("if-none-match") is None
    assert reqs[-1]["headers"]["if-none-match"].startswith('W/"')
    assert all(r["status"] == 304 for r in reqs[2:]), [r["status"] for r in reqs]
    # a push that was missed changes one page: found at the next sync
    github.set_branch(REPO, "16.0", sha(22))
    wait_for(lambda: sha(22) in env.heads().get(("16.0", None), set()), 30, "the new head")


def test_pagination_followed(make_sync_env, github):
    github.set_max_per_page(2)
    for i in range(5):
        github.set_branch(REPO, f"b{i}", sha(30 + i))
    for i in range(3):
        github.set_pull(REPO, 40 + i, sha(40 + i), "b0")
    env = make_sync_env(limits="max_deployed = 50")
    want = {(f"b{i}", None): sha(30 + i) for i in range(5)}
    want.update({("b0", 40 + i): sha(40 + i) for i in range(3)})
    env.wait_heads(want, 60)
    syncs = env.wait_syncs(1)
    assert syncs[0][2] == 3 + 2, syncs  # 3 pages of branches, 2 of PRs
    paths = [r["path"] for r in listing_requests(github)]
    assert any(p.startswith("/repositories/") and "page=3" in p for p in paths), paths
    # a branch on the last page deleted: found absent from the complete
    # listing, confirmed, undeployed
    github.delete_branch(REPO, "b4")
    wait_for(lambda: ("b4", None) not in env.heads(), 30, "b4 undeployed")
    assert ("b0", None) in env.heads() and ("b3", None) in env.heads()


def test_rate_limit_respected(make_sync_env, github):
    github.set_branch(REPO, "16.0", sha(50))
    github.set_rate_limit(remaining=0, reset_in=8)
    env = make_sync_env(github_extra='sync_interval = 1\nsync_repos = ["acme/addons"]')
    syncs = env.wait_syncs(1)
    assert syncs[0][0].startswith("stopped"), syncs
    # refused once, then nothing is sent until the reset
    time.sleep(3)
    assert len(listing_requests(github)) == 1, listing_requests(github)
    assert github.counts()["requests"] == 1
    assert "stopped early for GitHub's rate limit" in env.rb.logs()
    # after the reset, the sync catches up
    wait_for(lambda: sha(50) in env.heads().get(("16.0", None), set()), 30, "the head after the reset")
    # below the reserve (a tenth of the limit), the sync does not start
    github.set_rate_limit(remaining=300, reset_in=20)
    n = len(listing_requests(github))
    wait_for(lambda: sum(1 for s in env.syncs() if s[0].startswith("stopped")) >= 2, 15,
             "a sync stopped by the reserve")
    # at most the one request that saw the low budget
    time.sleep(2)
    assert len(listing_requests(github)) <= n + 2


def test_nothing_undeployed_on_failing_listing(make_sync_env, github):
    github.set_branch(REPO, "16.0", sha(60))
    github.set_branch(REPO, "old", sha(61))
    github.set_pull(REPO, 9, sha(62), "16.0")
    env = make_sync_env()
    wait_for(lambda: len(env.heads()) == 3, 60, f"three heads (now {env.heads()})")
    # the branch and PR listings answer 500 from now on; meanwhile the
    # branch is deleted and the PR closed on GitHub
    github.fail(1000, status=500, path="/branches?")
    github.delete_branch(REPO, "old")
    github.close_pull(REPO, 9)
    n = len(env.syncs())
    syncs = env.wait_syncs(n + 2)
    assert all(s[0] == "incomplete" for s in syncs[n:]), syncs
    # the PR listing was complete: the closed PR goes; the branch stays
    wait_for(lambda: ("16.0", 9) not in env.heads(), 30, "the closed PR undeployed")
    assert ("old", None) in env.heads(), env.heads()
    # a PR listing that fails too: a PR closed now stays
    github.set_pull(REPO, 10, sha(63), "16.0")
    wait_for(lambda: ("16.0", 10) in env.heads(), 30, "PR 10 deployed")
    github.fail(1000, status=500, path="per_page")  # both listings
    github.close_pull(REPO, 10)
    n = len(env.syncs())
    env.wait_syncs(n + 2)
    assert ("16.0", 10) in env.heads() and ("old", None) in env.heads(), env.heads()
    # GitHub answers again: both go
    github.fail(0)
    wait_for(lambda: ("old", None) not in env.heads() and ("16.0", 10) not in env.heads(), 30,
             f"the undeploys once GitHub answers (now {env.heads()})")
    assert ("16.0", None) in env.heads()


def test_sync_off_and_repos_from_index(make_sync_env, github):
    """With sync_interval = 0 nothing is asked of GitHub; by default (a
    token set) the repositories come from the builds."""
    github.set_branch(REPO, "16.0", sha(70))
    env = make_sync_env(github_extra="sync_interval = 0")
    time.sleep(3)
    assert listing_requests(github) == []
    assert env.builds() == []
    env.rb.stop()
    # the default interval (600 s): the start-up sync only, and the repo is
    # known through its build (the [[repos]] pattern acme/.* is no name)
    env.github_extra = ""
    env.start()
    time.sleep(3)
    assert listing_requests(github) == []  # no build yet: no repository
    assert env.webhook("push", push_payload("16.0", sha(71))).status_code == 202
    env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(71), 30)
    env.rb.stop()
    env.start()  # the build's repository is looked at; the head sha(70) is older
    syncs = env.wait_syncs(1)
    assert syncs[0][1] == 1, syncs
    assert len(listing_requests(github)) == 2
    # GitHub's head is sha(70) (a force-push back after the webhook): it
    # has no build, and the newest build predates the listing: deployed
    env.wait_heads({("16.0", None): sha(70)}, 30)

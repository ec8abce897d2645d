"""The dashboard in headless Chromium against a REAL runboat on the test
control plane: signed webhooks create builds, the controller initializes and
starts them (the pod simulator plays the kubelet, the real controllers compute
Job and Deployment status), and the page must follow all of it live, without a
reload. The user's Stop and Start clicks go through the real API and come back
through the real WebSocket stream.

Needs RUNBOAT_TEST_CLUSTER (test/cluster/cluster.sh) and Chromium
(/usr/bin/chromium or $RUNBOAT_CHROMIUM). Screenshots live-desktop.png and
live-phone.png go to $RUNBOAT_SCREENSHOTS (default /tmp/runboat-screenshots).
"""

import os
import re
import time

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

if not os.environ.get("RUNBOAT_TEST_CLUSTER"):
    pytest.skip("RUNBOAT_TEST_CLUSTER is not set (no test control plane)", allow_module_level=True)

from lifecycle_helpers import (  # noqa: E402,F401 - fixtures
    ADMIN,
    REPO,
    github,
    make_env,
    pr_payload,
    push_payload,
    sha,
    wait_for,
)
from test_ui import SHOTS, Backend, Page, browser, expect, shot, stub_instances  # noqa: E402,F401

# generous: a 2-core machine running the control plane, an ASan runboat and Chromium
LIVE = 60_000   # a controller transition, ms
QUICK = 15_000  # what only needs the page / the stream, ms

# Records, for every card of the list, the sequence of statuses it showed
# (consecutive duplicates removed). A MutationObserver sees every change of
# data-status, even one replaced within the same frame (oldValue).
RECORDER = """() => {
  window.__hist = {};
  const note = (name, s) => {
    if (!name || !s) return;
    const h = (window.__hist[name] = window.__hist[name] || []);
    if (h[h.length - 1] !== s) h.push(s);
  };
  const scan = () => document.querySelectorAll('#builds article.card[data-name]')
    .forEach((e) => note(e.dataset.name, e.dataset.status));
  new MutationObserver((recs) => {
    for (const r of recs)
      if (r.type === 'attributes' && r.target.matches('#builds article.card[data-name]'))
        note(r.target.dataset.name, r.oldValue);
    scan();
  }).observe(document.body, { subtree: true, childList: true, attributes: true,
                              attributeFilter: ['data-status'], attributeOldValue: true });
  scan();
}"""


def hold(env, names):
    """The pod simulator keeps the init Job pods of these builds Running
    (nothing else is held); an empty list releases them all."""
    regex = "^(" + "|".join(re.escape(n) for n in names) + ")-initialize-" if names else ""
    env.podsim(hold=regex, delay_ms=1000)


@pytest.fixture
def live_env(make_env):
    """make_env, and at the end the namespace goes: builds undeployed through
    runboat (their cleanup Jobs run), then the namespace deleted. The test
    control plane has a /24 of Service IPs: leftover builds exhaust it."""
    envs = []

    def make(**kw):
        env = make_env(**kw)
        envs.append(env)
        return env

    yield make
    for env in envs:
        try:
            env.podsim(hold="", delay_ms=200)
            if env.rb.proc.poll() is None:
                env.delete("/api/v1/builds", params={"repo": REPO}, auth=ADMIN)
                wait_for(lambda: env.builds() == [], 60, "the undeploys")
        finally:
            # what is left (a failed test): no runboat will remove its finalizer
            ns = env.namespace
            r = env.kube.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments")
            for d in r.json().get("items", []) if r.status_code == 200 else []:
                if d["metadata"].get("finalizers"):
                    env.kube.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/"
                                     + d["metadata"]["name"], json={"metadata": {"finalizers": None}},
                                     headers={"Content-Type": "application/merge-patch+json"})
            env.kube.request("DELETE", f"/api/v1/namespaces/{ns}")


@pytest.fixture
def live_ui(browser):
    """make(env, **context) -> a test_ui.Page on env's runboat; JavaScript
    errors on any page fail the test."""
    pages = []

    def make(env, **ctx):
        ctx.setdefault("viewport", {"width": 1280, "height": 900})
        p = Page(browser, Backend(env.rb.base), **ctx)
        pages.append(p)
        return p

    yield make
    errors = []
    for p in pages:
        errors += p.errors
        p.ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def expect_status(p, env, name, status, timeout=LIVE):
    """The card of build name shows status; when it does not in time, the
    failure says what the API and the Deployment say (page or controller?)."""
    try:
        expect(p.card(name)).to_have_attribute("data-status", status, timeout=timeout)
    except AssertionError as e:
        dep = env.deployment(name) or {}
        meta = dep.get("metadata", {})
        raise AssertionError(
            f"{e}\nAPI: {env.build(name)}\nDeployment rv={meta.get('resourceVersion')} "
            f"annotations={meta.get('annotations')} replicas={dep.get('spec', {}).get('replicas')} "
            f"status={dep.get('status')}\nrunboat log tail:\n"
            + "\n".join(env.rb.logs().splitlines()[-30:])) from None


def wait_instance(page, env, b):
    """The page went to b's (stubbed) instance; otherwise, what the API and the
    Deployment say."""
    try:
        page.wait_for_url(b["deploy_link"] + "**", timeout=LIVE)
    except PlaywrightError as e:
        dep = env.deployment(b["name"]) or {}
        meta = dep.get("metadata", {})
        raise AssertionError(
            f"{e}\nAPI: {env.build(b['name'])}\nDeployment rv={meta.get('resourceVersion')} "
            f"annotations={meta.get('annotations')} replicas={dep.get('spec', {}).get('replicas')}"
            "\nrunboat log tail:\n" + "\n".join(env.rb.logs().splitlines()[-30:])) from None
    expect(page.locator("#instance")).to_contain_text(b["slug"])


def history(p):
    return p.page.evaluate("window.__hist")


def no_horizontal_scroll(page):
    sw, cw = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert sw <= cw, f"horizontal scroll: {sw} > {cw}"


def test_builds_appear_start_stop_and_start_live(live_env, live_ui):
    env = live_env(limits="max_initializing = 2\nmax_started = 6")
    # no init Job finishes until this test says so: "initializing" is observable
    env.podsim(hold="-initialize-", delay_ms=1000)
    p = live_ui(env)
    page = p.open(f"/builds?repo={REPO}")
    expect(page.locator("#builds article.card")).to_have_count(0)
    p.mark()
    page.evaluate(RECORDER)

    # 1. two branches and a PR, by signed webhooks: the cards appear by themselves
    for event, payload in [("push", push_payload("16.0", sha(1))),
                           ("push", push_payload("feature/live-ui", sha(2))),
                           ("pull_request", pr_payload("opened", 42, sha(3), base="16.0"))]:
        r = env.webhook(event, payload)
        assert r.status_code == 202, r.text
    cards = page.locator("#builds article.card")
    expect(cards).to_have_count(3, timeout=QUICK)
    wait_for(lambda: len(env.builds()) == 3, 20, "3 builds in the API")
    by_commit = {b["commit_info"]["git_commit"]: b for b in env.builds()}
    main, feature, pr = (by_commit[sha(i)]["name"] for i in (1, 2, 3))
    assert set(cards.evaluate_all("els => els.map(e => e.dataset.name)")) == {main, feature, pr}
    for name in (main, feature, pr):
        expect(p.card(name)).to_have_attribute("data-status", "initializing", timeout=QUICK)
        expect(p.card(name).locator(".badge")).to_have_text(re.compile(r"^Initializing\b"))
    # max_initializing = 2: two builds run their init Job, the third waits its
    # turn (which one is the controller's choice: they are all as old)
    badges = page.locator("#builds article.card .badge")

    def badge_texts():
        return sorted(badges.all_inner_texts())

    wait_for(lambda: badge_texts() == ["Initializing · queued"] + ["Initializing · running"] * 2,
             LIVE / 1000, f"2 running inits and 1 queued, as the page shows them ({badge_texts()})")
    queued = [n for n in (main, feature, pr)
              if "queued" in p.card(n).locator(".badge").inner_text()]
    assert len(queued) == 1
    late = queued[0]
    first, second = [n for n in (main, feature, pr) if n != late]
    assert env.build(late)["init_status"] == "todo", env.build(late)
    expect(page.locator('#branch-groups section.group[data-branch="16.0"]')).to_have_count(1)
    expect(page.locator('#branch-groups section.group[data-branch="feature/live-ui"]')).to_have_count(1)
    expect(page.locator('#pr-groups section.group[data-pr="42"]')).to_have_count(1)
    expect(page.locator("#summary")).not_to_contain_text("No build")
    # the repository selector learnt the new repository
    expect(page.locator("#repo-select")).to_have_value(REPO)

    # the controller finishes the init of two builds: only their cards start
    # (the third one's init then runs, held)
    hold(env, [late])
    for name in (first, second):
        expect_status(p, env, name, "started")
        card = p.card(name)
        expect(card.locator(".badge")).to_have_text("Started")
        expect(card.get_by_role("link", name="Open the running build")).to_have_attribute(
            "href", re.compile("^" + re.escape(env.build(name)["deploy_link"]) + "/?$"))
    expect(p.card(late)).to_have_attribute("data-status", "initializing")
    expect(p.card(late).locator(".badge")).to_have_text("Initializing · running", timeout=LIVE)
    expect(p.card(late).get_by_role("link", name="Open the running build")).to_have_count(0)
    expect(page.locator('.counter[data-counter="started"] .counter-value')).to_have_text(
        re.compile(r"^2 / 6$"), timeout=QUICK)

    # 2. Stop on a started card: stopping/stopped without a reload
    card = p.card(first)
    stop = card.get_by_role("button", name="Stop build")
    start = card.get_by_role("button", name="Start build")
    expect(start).to_be_disabled()
    expect(stop).to_be_enabled()
    before_stop = history(p)[first]
    assert before_stop[0] == "initializing" and before_stop[-1] == "started", before_stop
    stop.click()
    expect(card).to_have_attribute("data-status", re.compile("^(stopping|stopped)$"), timeout=LIVE)
    expect_status(p, env, first, "stopped")
    expect(card.locator(".badge")).to_have_text("Stopped")
    expect(card.get_by_role("link", name="Open the running build")).to_have_count(0)
    expect(card.locator(".not-live")).to_have_text("Not running")
    expect(start).to_be_enabled(timeout=QUICK)
    assert env.build(first)["status"] == "stopped"
    assert env.deployment(first)["spec"]["replicas"] == 0
    expect(page.locator('.counter[data-counter="started"] .counter-value')).to_have_text(
        re.compile(r"^1 / 6$"), timeout=QUICK)

    # 4. screenshots with every kind of card: stopped, started, initializing
    shot(page, "live-desktop")
    phone = live_ui(env, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    ppage = phone.open(f"/builds?repo={REPO}")
    phone.mark()
    expect(phone.card(first)).to_have_attribute("data-status", "stopped")
    expect(phone.card(late)).to_have_attribute("data-status", "initializing")
    no_horizontal_scroll(ppage)
    shot(ppage, "live-phone")
    for n in ("live-desktop", "live-phone"):
        assert (SHOTS / f"{n}.png").stat().st_size > 10_000

    # ... then Start: starting/started without a reload
    after_stop = history(p)[first][len(before_stop):]
    assert after_stop and after_stop[-1] == "stopped" and set(after_stop) <= {"stopping", "stopped"}, \
        after_stop
    start.click()
    expect(card).to_have_attribute("data-status", re.compile("^(starting|started)$"), timeout=LIVE)
    expect_status(p, env, first, "started")
    expect(card.locator(".badge")).to_have_text("Started")
    expect(card.get_by_role("link", name="Open the running build")).to_be_visible()
    expect(stop).to_be_enabled(timeout=QUICK)
    expect(page.locator("#announcer")).to_contain_text("now Started", timeout=QUICK)
    # the phone page followed the same changes by itself
    expect(phone.card(first)).to_have_attribute("data-status", "started", timeout=QUICK)

    # the last init finishes: its card starts too
    hold(env, [])
    expect_status(p, env, late, "started")
    expect(page.locator('.counter[data-counter="started"] .counter-value')).to_have_text(
        re.compile(r"^3 / 6$"), timeout=QUICK)
    expect(page.locator('.counter[data-counter="initializing"] .counter-value')).to_contain_text(
        "0 / ", timeout=QUICK)
    assert p.not_reloaded() and phone.not_reloaded()

    # what each card went through, as the page showed it
    h = history(p)
    # after the init, each card went from initializing to started (passing
    # through whatever the controller's steps showed: see the print below)
    allowed = {"initializing", "starting", "started", "stopping", "stopped"}
    assert all(set(v) <= allowed for v in h.values()), h
    for name in (second, late):
        assert h[name][0] == "initializing" and h[name][-1] == "started", (name, h[name])
        assert "initializing" not in h[name][1:], (name, h[name])
    after_start = h[first][len(before_stop) + len(after_stop):]
    assert after_start and after_start[-1] == "started" and set(after_start) <= {"starting", "started"}, \
        after_start
    print(f"\ncard histories: {h}")


def test_live_deep_link_redirects_once_started(live_env, live_ui):
    env = live_env()
    env.podsim(hold="-initialize-", delay_ms=1000)
    assert env.webhook("push", push_payload("16.0", sha(11))).status_code == 202
    b = env.wait_build(lambda b: b["commit_info"]["git_commit"] == sha(11), 20, "the build")
    name = b["name"]
    path = f"/builds/{name}?live"
    assert b["deploy_link"].startswith("http://") and b["deploy_link"].endswith(".runboat.test")

    # not started: the page, not a redirect
    r = requests.get(env.rb.url(path), allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"], r.status_code

    # the page waits for the build, then goes to it by itself (the instance
    # host does not resolve here: the browser gets a stub for it)
    p = live_ui(env)
    stub_instances(p.page, p.backend, b)
    page = p.open(path, live=False)
    banner = page.locator("#live-banner")
    expect(banner).to_contain_text("This build is initializing", timeout=QUICK)
    expect(banner).to_contain_text("You will be taken to it as soon as it is started")
    expect(page.locator("#focus article.card-big")).to_have_attribute("data-status", "initializing")
    hold(env, [])
    wait_instance(page, env, b)

    # started: the server answers with the redirect itself
    r = requests.get(env.rb.url(path), allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.status_code
    assert r.headers["Location"].rstrip("/") == b["deploy_link"].rstrip("/")
    assert "no-store" in r.headers.get("Cache-Control", "")
    # without ?live the build page is served as usual
    r = requests.get(env.rb.url(f"/builds/{name}"), allow_redirects=False, timeout=10)
    assert r.status_code == 200
    # the browser follows it straight to the instance host. Playwright's routes
    # do not see requests that follow a server redirect (microsoft/playwright
    # #33882), so the host is not stubbed here and the navigation ends in a DNS
    # error: what matters is the request the browser made after the 302.
    with page.expect_request(lambda r: r.url.startswith(b["deploy_link"])) as followed:
        try:
            page.goto(env.rb.url(path))
        except PlaywrightError as e:
            assert "ERR_NAME_NOT_RESOLVED" in str(e) or "ERR_" in str(e), e
    req = followed.value
    assert req.is_navigation_request()
    assert req.url.rstrip("/") == b["deploy_link"].rstrip("/")
    first = req.redirected_from
    assert first is not None and first.url == env.rb.url(path)
    assert first.response().status == 302

    # stopped: a visit to the link wakes it (wake on request), and the page
    # goes to the instance once it is started
    assert env.post(f"/api/v1/builds/{name}/stop").status_code == 200
    env.wait_status(name, "stopped", 60)
    t0 = time.monotonic()
    page = p.open(path, live=False)
    wait_instance(page, env, b)
    assert env.build(name)["status"] == "started"
    print(f"\nstopped -> instance page after a visit to the live link: {time.monotonic() - t0:.1f} s")

"""Browser tests of the dashboard (web/): headless Chromium (/usr/bin/chromium)
driven by Playwright.

By default they run against test/e2e/fake_api.py, started in-process for each
test. They are written against a `backend` fixture so that they can run against
a real runboat too:

- RUNBOAT_UI_URL=http://127.0.0.1:PORT runs them against that server; tests
  that need to make the server change a build behind the page's back (the
  fake's control hooks) are skipped, the others read what they expect from
  the server's own API. RUNBOAT_UI_ADMIN=user:password enables the admin test.
- Or, from another test module: `from test_ui import *` and define a fixture
  named `backend` returning a subclass of `Backend` (e.g. one that drives the
  real control plane): it replaces this one and every test runs against it.

Screenshots (desktop, desktop dark, phone, build page) go to
$RUNBOAT_SCREENSHOTS (default /tmp/runboat-screenshots).
"""

import json
import os
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fake_api  # noqa: E402

CHROMIUM = os.environ.get("RUNBOAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = pathlib.Path(os.environ.get("RUNBOAT_SCREENSHOTS", "/tmp/runboat-screenshots"))
HOSTILE = "<img src=x onerror=alert(1)>"
T = 10_000  # default expectation timeout, ms

expect.set_options(timeout=T)


# ------------------------------------------------------------------ backends

class Backend:
    """What the tests need from a server. The base class reads the public
    API only; control hooks raise pytest.skip unless a subclass implements them."""

    admin = None  # (user, password) or None

    def __init__(self, base):
        self.base = base.rstrip("/")

    def url(self, path):
        return self.base + path

    def api(self, path):
        with urllib.request.urlopen(self.url("/api/v1" + path), timeout=10) as r:
            return json.load(r)

    def builds(self, **filters):
        q = "&".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in filters.items())
        return self.api("/builds" + (f"?{q}" if q else ""))

    def build(self, name):
        return self.api(f"/builds/{name}")

    def find(self, **want):
        """The newest build whose fields (status, or commit_info keys) match."""
        for b in self.builds():
            ci = b["commit_info"]
            if all((b.get(k) if k in b else ci.get(k)) == v for k, v in want.items()):
                return b
        return None

    # control hooks (changes the page only learns about from the server)
    def set_status(self, name, status, init_status=None):
        pytest.skip("needs a backend that can change a build's status")

    def add_build(self, repo, target_branch, pr=None, status="stopped"):
        pytest.skip("needs a backend that can create builds")

    def remove_build(self, name):
        pytest.skip("needs a backend that can remove builds")

    def drop_websockets(self, refuse_s):
        pytest.skip("needs a backend that can drop WebSockets")

    def fail_next_action(self, status, detail):
        pytest.skip("needs a backend that can make an action fail")

    def set_reason(self, name, reason):
        pytest.skip("needs a backend that can set a build's reason")


class FakeBackend(Backend):
    def __init__(self, server):
        super().__init__(server.fake.base_url)
        self.fake = server.fake
        self.admin = server.fake.admin

    def set_status(self, name, status, init_status=None):
        self.fake.set_status(name, status, init_status)

    def add_build(self, repo, target_branch, pr=None, status="stopped"):
        return self.fake.add_build(repo, target_branch, pr, status=status)

    def remove_build(self, name):
        self.fake.remove_build(name)

    def drop_websockets(self, refuse_s):
        self.fake.drop_ws(refuse_s)

    def fail_next_action(self, status, detail):
        self.fake.set_fail_next(status, detail)

    def set_reason(self, name, reason):
        self.fake.set_reason(name, reason)


@pytest.fixture
def backend():
    url = os.environ.get("RUNBOAT_UI_URL")
    if url:
        b = Backend(url)
        admin = os.environ.get("RUNBOAT_UI_ADMIN")
        if admin:
            user, _, password = admin.partition(":")
            b.admin = (user, password)
        yield b
        return
    server, _ = fake_api.serve(step=0.4)
    try:
        yield FakeBackend(server)
    finally:
        fake_api.stop(server)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A fresh browser context + page that records JavaScript errors and
    dialogs (alert() from injected markup would show up there)."""

    def __init__(self, browser, backend, **ctx):
        self.backend = backend
        self.ctx = browser.new_context(**ctx)
        self.page = self.ctx.new_page()
        self.errors = []
        self.dialogs = []
        self.requests = []  # the paths (and queries) of the page's requests
        self.sockets = []  # the URLs of the page's WebSockets
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(urllib.parse.urlsplit(r.url)))
        self.page.on("websocket", lambda ws: self.sockets.append(ws.url))

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()
        self.page.on("dialog", on_dialog)

    def open(self, path, live=True):
        self.page.goto(self.backend.url(path))
        if live:
            expect(self.page.locator("#conn")).to_have_attribute("data-state", "live")
            expect(self.page.locator("#summary")).not_to_have_text("Loading builds…")
        return self.page

    def card(self, name):
        return self.page.locator(f'#builds article.card[data-name="{name}"]')

    def list_fetches(self):
        """How many times the page asked for a list of builds (GET
        /api/v1/builds, any query)."""
        return sum(1 for u in self.requests if u.path == "/api/v1/builds")

    def mark(self):
        """Marks the document: the mark survives anything but a reload."""
        self.page.evaluate("window.__noReload = 42")

    def not_reloaded(self):
        return self.page.evaluate("window.__noReload") == 42


@pytest.fixture
def ui(browser, backend):
    pages = []

    def make(**ctx):
        ctx.setdefault("viewport", {"width": 1280, "height": 900})
        p = Page(browser, backend, **ctx)
        pages.append(p)
        return p

    yield make
    for p in pages:
        errors = p.errors
        p.ctx.close()
        assert not errors, f"JavaScript errors: {errors}"


def need(backend, **want):
    """A build matching want (see Backend.find), or skip the test."""
    b = backend.find(**want)
    if not b:
        pytest.skip(f"no build with {want}")
    return b


def main_repo(backend):
    """The repository with the most builds."""
    counts = {}
    for b in backend.builds():
        counts[b["commit_info"]["repo"]] = counts.get(b["commit_info"]["repo"], 0) + 1
    if not counts:
        pytest.skip("the server has no builds")
    return max(counts, key=counts.get)


def group(page, kind, value):
    """The row of a branch or PR (by the data attributes, any characters)."""
    container = "#pr-groups" if kind == "pr" else "#branch-groups"
    attr = "pr" if kind == "pr" else "branch"
    rows = page.locator(f"{container} > section.group")
    values = rows.evaluate_all(f"els => els.map(e => e.dataset.{attr})")
    assert values.count(value) == 1, f"{kind} row {value!r} not found once in {values}"
    return rows.nth(values.index(value))


def shot(page, name, full_page=True):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


# --------------------------------------------------------------------- tests

def test_lists_builds_grouped_by_branch_and_pr(ui, backend):
    repo = main_repo(backend)
    builds = backend.builds(repo=repo)
    page = ui().open(f"/builds?repo={repo}")
    expect(page.locator("#repo-select")).to_have_value(repo)
    cards = page.locator("#builds article.card")
    expect(cards).to_have_count(len(builds))

    groups = {}
    for b in builds:
        ci = b["commit_info"]
        key = ("pr", str(ci["pr"])) if ci["pr"] is not None else ("branch", ci["target_branch"])
        groups.setdefault(key, []).append(b)
    for (kind, value), members in groups.items():
        g = group(page, kind, value)
        expect(g.locator(".group-link")).to_have_text(f"#{value}" if kind == "pr" else value)
        # newest first within a row
        members.sort(key=lambda b: b["created"] or "", reverse=True)
        names = g.locator("article.card").evaluate_all("els => els.map(e => e.dataset.name)")
        assert names == [b["name"] for b in members]
        for b in members:
            badge = g.locator(f'article.card[data-name="{b["name"]}"] .badge')
            # status in words, not colour alone
            expect(badge).to_contain_text(b["status"], ignore_case=True)
    # branch rows come before PR rows
    if any(k == "pr" for k, _ in groups) and any(k == "branch" for k, _ in groups):
        order = page.locator("#builds section.section:not([hidden]) h2").all_inner_texts()
        assert order == ["Branches", "Pull requests"] or order == ["BRANCHES", "PULL REQUESTS"]


def test_card_links_and_age(ui, backend):
    b = need(backend, status="started")
    page = ui().open(f"/builds?repo={b['commit_info']['repo']}")
    card = page.locator(f'#builds article.card[data-name="{b["name"]}"]')
    sha = b["commit_info"]["git_commit"][:7]
    expect(card.locator("a.sha")).to_have_text(sha)
    expect(card.locator("a.sha")).to_have_attribute("href", b["repo_commit_link"])
    expect(card.get_by_role("link", name="Open the running build")).to_have_attribute("href", b["deploy_link"])
    expect(card.get_by_role("link", name="Mails of build")).to_have_attribute("href", b["deploy_link_mailhog"])
    expect(card.get_by_role("link", name="Init log")).to_have_attribute(
        "href", f"/api/v1/builds/{b['name']}/init-log")
    expect(card.get_by_role("link", name=re.compile("^Log of build"))).to_have_attribute("href", f"/api/v1/builds/{b['name']}/log")
    expect(card.locator("time.age")).to_have_text(
        re.compile(r"^(just now|\d+ min ago|\d+ h ago|\d+ days? ago)$"))
    # the age follows the clock, without a reload (the page's 15 s ticker)
    page.evaluate("""() => {
        const real = Date.now.bind(Date);
        Date.now = () => real() + 3 * 24 * 3600 * 1000;
        window.runboat.tickAges();
    }""")
    expect(card.locator("time.age")).to_have_text(re.compile(r"^\d+ days ago$"))
    # stopped cards have no live link
    s = backend.find(status="stopped")
    if s and s["commit_info"]["repo"] == b["commit_info"]["repo"]:
        sc = page.locator(f'#builds article.card[data-name="{s["name"]}"]')
        expect(sc.get_by_role("link", name="Open the running build")).to_have_count(0)
        expect(sc.locator(".not-live")).to_have_text("Not running")


def test_ws_push_updates_card_without_reload(ui, backend):
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    card = p.card(b["name"])
    expect(card).to_have_attribute("data-status", "stopped")
    expect(card.locator("button[data-action=start]")).to_be_enabled()
    p.mark()
    backend.set_status(b["name"], "failed", "failed")
    expect(card).to_have_attribute("data-status", "failed")
    expect(card.locator(".badge")).to_have_text("Failed")
    expect(card.locator("button[data-action=start]")).to_be_disabled()
    # the counters follow (throttled re-fetch of /api/v1/status)
    failed = backend.api("/status")["failed"]
    expect(page.locator('.counter[data-counter="failed"] .counter-value')).to_have_text(str(failed))
    # a new build appears, a removed one disappears
    name = backend.add_build(b["commit_info"]["repo"], "19.0", status="initializing")
    expect(p.card(name)).to_have_attribute("data-status", "initializing")
    expect(page.locator('#branch-groups section.group[data-branch="19.0"]')).to_have_count(1)
    backend.remove_build(name)
    expect(p.card(name)).to_have_count(0)
    expect(page.locator('#branch-groups section.group[data-branch="19.0"]')).to_have_count(0)
    assert p.not_reloaded()


def test_stop_then_start(ui, backend):
    b = need(backend, status="started")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    p.mark()
    card = p.card(b["name"])
    stop = card.get_by_role("button", name="Stop build")
    start = card.get_by_role("button", name="Start build")
    expect(start).to_be_disabled()
    stop.click()
    expect(card).to_have_attribute("data-status", "stopped", timeout=60_000)
    expect(card.locator(".badge")).to_have_text("Stopped")
    expect(card.get_by_role("link", name="Open the running build")).to_have_count(0)
    expect(start).to_be_enabled()
    start.click()
    expect(card).to_have_attribute("data-status", "started", timeout=120_000)
    expect(card.get_by_role("link", name="Open the running build")).to_be_visible()
    expect(stop).to_be_enabled()
    assert p.not_reloaded()
    # the polite live region announced it
    expect(page.locator("#announcer")).to_contain_text("now started", ignore_case=True)


def test_reconnect_resyncs_from_snapshot(ui, backend):
    repo = main_repo(backend)
    builds = backend.builds(repo=repo)
    if len(builds) < 2:
        pytest.skip("needs two builds in one repository")
    gone, changed = builds[0], builds[1]
    p = ui()
    page = p.open(f"/builds?repo={repo}")
    p.mark()
    conn = page.locator("#conn")
    backend.drop_websockets(refuse_s=3)
    expect(conn).to_have_attribute("data-state", "reconnecting")
    expect(conn).to_have_text("Reconnecting…")
    # changes the page cannot see while it is disconnected
    backend.remove_build(gone["name"])
    backend.set_status(changed["name"], "undeploying")
    new = backend.add_build(repo, "feature/after-reconnect", status="started")
    expect(conn).to_have_attribute("data-state", "live", timeout=20_000)
    expect(p.card(gone["name"])).to_have_count(0)
    expect(p.card(changed["name"])).to_have_attribute("data-status", "undeploying")
    expect(p.card(new)).to_have_attribute("data-status", "started")
    assert p.not_reloaded()
    # the stream's end-of-snapshot marker did it: no list was fetched, on
    # the first connection or on the reconnection (the poll that covers a
    # refused socket waits 30 s after a synchronization)
    assert len(p.sockets) >= 2 and all("batch=1" in u for u in p.sockets), p.sockets
    assert p.list_fetches() == 0, [u for u in p.requests if u.path == "/api/v1/builds"]
    # and the stream works again after the reconnection
    backend.set_status(new, "stopped")
    expect(p.card(new)).to_have_attribute("data-status", "stopped")
    shot(page, "after-reconnect", full_page=False)


def test_reconnect_to_a_server_without_batch(ui, backend):
    # a rolling upgrade: the page of a new runboat, its socket on an old one
    # that ignores ?batch=1 (single events, no marker): the page falls back to
    # the list fetch and still drops what was deleted while it was away
    if not isinstance(backend, FakeBackend):
        pytest.skip("needs the fake API's old-server mode")
    repo = main_repo(backend)
    builds = backend.builds(repo=repo)
    gone = builds[0]
    backend.fake.legacy_streams = True
    try:
        p = ui()
        page = p.open(f"/builds?repo={repo}")
        p.mark()
        expect(p.card(gone["name"])).to_have_count(1)
        conn = page.locator("#conn")
        backend.drop_websockets(refuse_s=2)
        expect(conn).to_have_attribute("data-state", "reconnecting")
        backend.remove_build(gone["name"])
        new = backend.add_build(repo, "feature/old-server", status="started")
        expect(conn).to_have_attribute("data-state", "live", timeout=20_000)
        expect(p.card(gone["name"])).to_have_count(0)
        expect(p.card(new)).to_have_attribute("data-status", "started")
        expect(page.locator("#summary")).not_to_contain_text("Loading")
        assert p.list_fetches() >= 2, [u for u in p.requests if u.path == "/api/v1/builds"]
        assert p.not_reloaded()
    finally:
        backend.fake.legacy_streams = False


def test_deep_link_filters(ui, backend):
    repo = main_repo(backend)
    builds = backend.builds(repo=repo)
    branch = builds[0]["commit_info"]["target_branch"]
    p = ui()
    page = p.open(f"/builds?repo={urllib.parse.quote(repo)}&target_branch={urllib.parse.quote(branch)}")
    expect(page.locator("#repo-select")).to_have_value(repo)
    expect(page.get_by_label("Branch or PR")).to_have_value(branch)
    want = {b["name"] for b in builds if branch.lower() in b["commit_info"]["target_branch"].lower()}
    cards = page.locator("#builds article.card")
    expect(cards).to_have_count(len(want))
    assert set(cards.evaluate_all("els => els.map(e => e.dataset.name)")) == want

    prs = [b for b in builds if b["commit_info"]["pr"] is not None]
    if prs:
        pr = prs[0]["commit_info"]["pr"]
        page = p.open(f"/builds?repo={urllib.parse.quote(repo)}&pr={pr}")
        expect(page.get_by_label("Branch or PR")).to_have_value(f"#{pr}")
        want = {b["name"] for b in builds if b["commit_info"]["pr"] == pr}
        expect(cards).to_have_count(len(want))
        expect(page.locator("#branch-groups section.group")).to_have_count(0)

    # typing in the filter narrows the list and updates the shareable URL
    page.get_by_label("Branch or PR").fill(branch)
    expect(cards).to_have_count(
        len({b["name"] for b in builds if branch.lower() in b["commit_info"]["target_branch"].lower()}))
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert q["target_branch"] == [branch] and q["repo"] == [repo]
    page.get_by_label("Branch or PR").fill("no-such-branch-anywhere")
    expect(cards).to_have_count(0)
    expect(page.locator("#summary")).to_contain_text("No build matches")


def test_build_page_is_live(ui, backend):
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds/{b['name']}")
    focus = page.locator("#focus article.card-big")
    expect(focus).to_have_attribute("data-name", b["name"])
    expect(page.locator("#focus-title")).to_contain_text(b["commit_info"]["target_branch"])
    # the same build is highlighted in its row below
    expect(p.card(b["name"])).to_have_class(re.compile(r"\bis-current\b"))
    backend.set_status(b["name"], "failed", "failed")
    expect(focus).to_have_attribute("data-status", "failed")
    expect(page.locator("#announcer")).to_contain_text("Failed")

    page = p.open("/builds/bdoesnotexist", live=False)
    expect(page.locator("#focus-title")).to_have_text("Build not found")


def init_log_tail(text, n=20):
    """What the dashboard shows of an init log (web/logic.mjs logTail, for
    logs without control characters or long lines)."""
    lines = re.split(r"\r\n|\r|\n", text)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-n:])


def test_failed_build_shows_its_init_log_tail(ui, backend):
    b = need(backend, status="failed")
    with urllib.request.urlopen(backend.url(f"/api/v1/builds/{b['name']}/init-log"), timeout=10) as r:
        text = r.read().decode()
    p = ui()
    page = p.open(f"/builds/{b['name']}")
    tail = page.locator("#focus .log-tail")
    expect(tail).to_be_visible()
    pre = tail.locator("pre.log-tail-text")
    # the fake's log starts with the time of the request: digits may differ
    want = re.sub(r"\d", r"\\d", re.escape(init_log_tail(text)))
    expect(pre).to_have_text(re.compile("^" + want + "$"))
    # a log's markup stays text
    expect(page.locator("#focus img")).to_have_count(0)
    # only a failed build shows it
    s = need(backend, status="stopped")
    page = p.open(f"/builds/{s['name']}")
    expect(page.locator("#focus article.card-big")).to_have_attribute("data-name", s["name"])
    expect(page.locator("#focus .log-tail:visible")).to_have_count(0)


def stub_instances(page, backend, *builds):
    """Answers for the builds' instance hosts when they are not the server
    under test (real runboat: http://<slug>.<domain>, unresolvable here)."""
    for b in builds:
        origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(b["deploy_link"]))
        if origin != backend.base:
            page.route(re.compile("^" + re.escape(origin) + "(/.*)?$"), lambda route, *, b=b: route.fulfill(
                status=200, content_type="text/html",
                body=f"<!doctype html><h1 id=instance>Odoo instance {b['slug']}</h1>"))


def test_live_deep_link_starts_then_redirects(ui, backend):
    b = need(backend, status="stopped")
    s = backend.find(status="started")
    if not b or not s:
        pytest.skip("needs a stopped and a started build")
    p = ui()
    stub_instances(p.page, backend, b, s)
    page = p.open(f"/builds/{b['name']}?live", live=False)
    banner = page.locator("#live-banner")
    expect(banner).to_contain_text("You will be taken to it as soon as it is started")
    page.get_by_role("button", name="Start it now").click()
    page.wait_for_url(b["deploy_link"], timeout=120_000)
    expect(page.locator("#instance")).to_contain_text(b["slug"])

    # an already started build goes straight to its instance
    page.goto(backend.url(f"/builds/{s['name']}?live"))
    page.wait_for_url(s["deploy_link"])


def test_keyboard_reaches_buttons(ui, backend):
    repo = main_repo(backend)
    p = ui()
    page = p.open(f"/builds?repo={repo}")
    # every control has a label
    for label in ("Repository", "Branch or PR", "Status"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    # the actions are real buttons, reachable with Tab, with a visible focus ring
    reached = None
    for _ in range(80):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => {
            const e = document.activeElement;
            return {tag: e.tagName, action: e.dataset ? e.dataset.action || null : null,
                    outline: getComputedStyle(e).outlineStyle,
                    card: e.closest('article') ? e.closest('article').dataset.name : null};
        }""")
        if info["tag"] == "BUTTON" and info["action"] in ("start", "stop", "reset"):
            reached = info
            break
    assert reached, "Tab never reached a Start/Stop/Reset button"
    assert reached["outline"] != "none"
    # and Enter works on it (Reset is enabled on any build that is not undeploying)
    card = p.card(reached["card"])
    if reached["action"] == "start":
        page.keyboard.press("Enter")
        expect(card.locator(".badge")).not_to_have_text("Stopped")
    # no click handler on non-interactive elements
    assert page.locator("div[onclick], span[onclick], article[onclick]").count() == 0


def test_phone_has_no_horizontal_scroll(ui, backend):
    p = ui(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = p.open("/")
    # all repositories: the most content, long branch names included
    page.locator("#repo-select").select_option("")
    expect(page.locator("#summary")).not_to_have_text("Loading builds…")
    expect(page.locator("#builds article.card").first).to_be_visible()
    sw, cw = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert sw <= cw, f"horizontal scroll at 375 px: {sw} > {cw}"
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
        .map(e => e.tagName + '.' + e.className).slice(0, 5)""")
    assert not wide, f"elements wider than the screen: {wide}"
    shot(page, "phone", full_page=False)
    b = backend.find(status="started") or backend.builds()[0]
    page = p.open(f"/builds/{b['name']}")
    sw, cw = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert sw <= cw
    shot(page, "phone-build-page", full_page=False)


def test_hostile_branch_renders_as_text(ui, backend):
    b = backend.find(target_branch=HOSTILE)
    if not b:
        name = backend.add_build("acme/odoo-addons", HOSTILE)
        b = backend.build(name)
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    card = p.card(b["name"])
    expect(card).to_be_visible()
    expect(group(page, "branch", HOSTILE).locator(".group-link")).to_have_text(HOSTILE)
    expect(card.locator(".crumb").nth(1)).to_have_text(HOSTILE)
    assert page.locator("#builds img").count() == 0
    # the filter box takes it as text too
    page.get_by_label("Branch or PR").fill(HOSTILE)
    expect(page.locator("#builds article.card")).to_have_count(
        len([x for x in backend.builds(repo=b["commit_info"]["repo"])
             if HOSTILE.lower() in x["commit_info"]["target_branch"].lower()]))
    page.wait_for_timeout(300)
    assert p.dialogs == []
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0


def test_reason_is_shown_as_text(ui, backend):
    """A build's reason (a refusal, or what is being retried) is on its
    card, as text, and goes away when cleared."""
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    card = p.card(b["name"])
    expect(card.locator(".reason")).to_be_hidden()
    why = 'applying Service <img src=x onerror=alert(1)> failed: spec.ports: Required value'
    backend.set_reason(b["name"], why)
    expect(card.locator(".reason")).to_have_text(why)
    assert page.locator("#builds img").count() == 0
    backend.set_reason(b["name"], None)
    expect(card.locator(".reason")).to_be_hidden()
    assert p.dialogs == []


def test_action_errors_are_shown(ui, backend):
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    backend.fail_next_action(409, "build is busy, try again later")
    p.card(b["name"]).get_by_role("button", name="Start build").click()
    msg = page.locator("#messages .msg-error")
    expect(msg).to_contain_text("build is busy, try again later")
    expect(page.locator("#messages")).to_have_attribute("aria-live", "assertive")
    # the card is usable again
    expect(p.card(b["name"]).get_by_role("button", name="Start build")).to_be_enabled()
    msg.get_by_role("button", name="Dismiss message").click()
    expect(msg).to_have_count(0)


def test_force_undeploy_after_cleanup_failed(ui, backend):
    if not backend.admin or not isinstance(backend, FakeBackend):
        pytest.skip("forces an undeploy: only against a disposable backend with admin credentials")
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    card = p.card(b["name"])
    force = card.get_by_role("button", name="Force undeploy build")
    # only an undeploying build whose cleanup job failed offers it
    expect(force).to_be_hidden()
    backend.set_status(b["name"], "undeploying")
    expect(card).to_have_attribute("data-status", "undeploying")
    expect(force).to_be_hidden()
    expect(card.get_by_role("link", name="Cleanup log of build")).to_be_visible()
    backend.set_reason(b["name"], "cleanup failed: its cleanup job failed (see its cleanup log; "
                                  "an admin may force the undeploy)")
    expect(force).to_be_visible()
    force.click()
    dialog = page.locator("#login-dialog")
    dialog.get_by_label("User name").fill(backend.admin[0])
    dialog.get_by_label("Password").fill(backend.admin[1])
    dialog.get_by_role("button", name="Sign in").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("without it")
    confirm.get_by_role("button", name="Force undeploy").click()
    expect(card).to_have_count(0)


def test_admin_undeploy(ui, backend):
    if not backend.admin:
        pytest.skip("no admin credentials (RUNBOAT_UI_ADMIN)")
    if not isinstance(backend, FakeBackend):
        pytest.skip("undeploys a build: only against a disposable backend")
    b = need(backend, status="stopped")
    p = ui()
    page = p.open(f"/builds?repo={b['commit_info']['repo']}")
    card = p.card(b["name"])
    undeploy = card.get_by_role("button", name="Undeploy build")

    # wrong password: 401 shown, credentials forgotten
    undeploy.click()
    dialog = page.locator("#login-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("User name").fill(backend.admin[0])
    dialog.get_by_label("Password").fill("wrong")
    dialog.get_by_role("button", name="Sign in").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Undeploy").click()
    expect(page.locator("#messages .msg-error")).to_contain_text("Admin credentials rejected")
    expect(card).to_have_attribute("data-status", "stopped")
    expect(page.locator("#admin-button")).to_have_text("Admin sign in")

    # cancel at the confirmation: nothing happens
    undeploy.click()
    dialog.get_by_label("User name").fill(backend.admin[0])
    dialog.get_by_label("Password").fill(backend.admin[1])
    dialog.get_by_role("button", name="Sign in").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    expect(page.locator("#admin-button")).to_have_text(f"Sign out {backend.admin[0]}")
    assert backend.build(b["name"])["status"] == "stopped"

    # signed in: confirm and it goes
    undeploy.click()
    expect(page.locator("#login-dialog")).to_be_hidden()
    page.locator("#confirm-dialog").get_by_role("button", name="Undeploy").click()
    expect(card).to_have_attribute("data-status", "undeploying")
    expect(card).to_have_count(0)


def test_counters_match_the_api(ui, backend):
    p = ui()
    page = p.open("/")
    s = backend.api("/status")
    c = page.locator(".counter")
    expect(c.filter(has_text="Started").locator(".counter-value")).to_have_text(f"{s['started']} / {s['max_started']}")
    expect(c.filter(has_text="Deployed").locator(".counter-value")).to_have_text(
        f"{s['deployed']} / {s['max_deployed']}")
    expect(c.filter(has_text="Initializing").locator(".counter-value")).to_contain_text(
        f"{s['initializing']} / {s['max_initializing']}")


def test_screenshots(ui, backend):
    repo = main_repo(backend)
    page = ui().open(f"/builds?repo={repo}")
    shot(page, "desktop")
    page = ui(color_scheme="dark").open(f"/builds?repo={repo}")
    shot(page, "desktop-dark")
    b = backend.find(status="started") or backend.builds()[0]
    page = ui().open(f"/builds/{b['name']}")
    shot(page, "build-page", full_page=False)
    for n in ("desktop", "desktop-dark", "build-page"):
        assert (SHOTS / f"{n}.png").stat().st_size > 10_000


def test_offline_then_online(ui, backend):
    p = ui()
    page = p.open("/")
    p.mark()
    p.ctx.set_offline(True)
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(page.locator("#conn")).to_have_text("Offline")
    p.ctx.set_offline(False)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert p.not_reloaded()


def test_lists_builds_without_websocket(ui, backend):
    """Behind a proxy that refuses WebSockets, the page still shows the builds
    (from /api/v1/builds) and says it is not live."""
    backend.drop_websockets(refuse_s=60)
    repo = main_repo(backend)
    p = ui()
    page = p.open(f"/builds?repo={repo}", live=False)
    expect(page.locator("#builds article.card")).to_have_count(len(backend.builds(repo=repo)))
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")


def test_long_list_shows_the_top_then_more(ui, backend):
    """With many builds, only the rows near the top are in the page; the
    "more" line adds more (its button, or scrolling near it); a filter looks
    at every build and starts again from the top; an update of a build not
    shown is not lost."""
    repo = "acme/many"
    names = [backend.add_build(repo, "17.0", pr=1000 + i) for i in range(300)]
    p = ui()
    page = p.open(f"/builds?repo={repo}")
    cards = page.locator("#builds article.card")
    more = page.locator("#more")
    expect(page.locator("#summary")).to_have_text("300 builds · 300 pull requests")
    expect(more).to_be_visible()
    expect(more).to_contain_text("of 300")
    first = cards.count()
    page_size = page.evaluate("window.runboat.pageBuilds")
    assert first == page_size < 300
    # newest PR first: #1299 is shown, #1000 (last) is not
    expect(p.card(names[299])).to_have_count(1)
    expect(p.card(names[0])).to_have_count(0)
    # the filter finds it all the same
    page.fill("#text-filter", "#1000")
    expect(cards).to_have_count(1)
    expect(p.card(names[0])).to_have_count(1)
    expect(more).to_be_hidden()
    page.fill("#text-filter", "")
    expect(cards).to_have_count(first)
    # the button adds a page (and then, being in view, the "more" line may
    # add another by itself)
    page.locator("#more-button").click()
    page.wait_for_function(f"document.querySelectorAll('#builds article.card').length >= {2 * first}")
    # scrolling to the end fills the rest
    for _ in range(40):
        if not more.is_visible():
            break
        page.mouse.wheel(0, 20000)
        page.wait_for_timeout(300)
    expect(cards).to_have_count(300)
    expect(more).to_be_hidden()
    expect(p.card(names[0])).to_have_count(1)
    # a change of a build far down, while only the top is shown
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(cards).to_have_count(first)
    backend.set_status(names[1], "failed", "failed")
    page.select_option("#status-filter", "failed")
    expect(p.card(names[1])).to_have_attribute("data-status", "failed")
    expect(p.card(names[1]).locator(".badge")).to_have_text("Failed")

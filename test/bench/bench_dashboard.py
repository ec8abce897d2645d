"""The dashboard (web/) at the OCA's production size, in headless Chromium.

Starts build/bench/bench_dashboard (runboat's real HTTP surface, API, streams
and embedded web/ files over a fake controller, with 7,000 synthetic builds;
see its header), opens the dashboard in Chromium (Playwright, /usr/bin/chromium
as the UI tests) at 1280x900 and prints:

- first render: from the navigation's start (performance.timeOrigin) to the
  end of the first frame painted once the page holds every build (its state
  has all N and has been synchronized - by the stream's "synced" marker, by
  GET /api/v1/builds before it - the summary no longer says "Loading") - a
  requestAnimationFrame poll, the time taken by a
  message posted from the rAF callback of that frame, which runs after the
  frame's style, layout and paint. Each run in a fresh browser context.
  Also the long tasks (> 50 ms, PerformanceObserver) until then.
- filter keystrokes: for each key typed into the "Branch or PR" field, from
  the input event's timeStamp to the end of the next frame (same trick); and a
  change of the status select.
- scrolling: 20 scrolls of one viewport, each to the end of the next frame.
- bursts of live updates: N builds change in one loop turn of the server;
  from the upsert (wall clock, the server's answer on stdin) and from the
  first event's arrival to the end of the frame after the page received the
  last one (a 'message' listener on the page's WebSocket, added before the
  page's own).
- memory: CDP Performance.getMetrics after a forced GC: JSHeapUsedSize,
  JSHeapTotalSize, Nodes (DOM nodes alive), JSEventListeners; and the
  elements in the document.

  cmake --build build --target bench_dashboard
  ~/.cache/runboat/venv/bin/python test/bench/bench_dashboard.py [--builds 7000] [--runs 3]
      [--server build/bench/bench_dashboard] [--bursts 100,1000] [--array-bytes N]

The page's files are those embedded in the server binary: to compare two
versions of web/, build bench_dashboard from each tree and pass --server.
Wall-clock figures on a loaded machine mostly measure the wait for a core,
so each is printed with the CPU time the page's renderer main thread spent
in it (/proc/PID/task/PID/schedstat of the tab's renderer process, found
with CDP SystemInfo.getProcessInfo): that is what the page costs.
Figures go to stdout, progress to stderr.
"""

import argparse
import mimetypes
import os
import pathlib
import statistics
import subprocess
import sys
import time
import urllib.parse

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RUNBOAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "style-src 'self'; frame-ancestors 'none'")

# Runs before the page's scripts. Everything it records is in window.__bench.
INIT = r"""
(() => {
  const B = window.__bench = { first: null, inputs: [], longtasks: [], burst: null };
  // the end of the frame after now: rAF, then a message (after paint)
  // (the channel is kept referenced until its message: an unreferenced
  // MessagePort may be garbage collected with its message)
  const channels = new Set();
  B.afterPaint = (fn) => requestAnimationFrame(() => {
    const ch = new MessageChannel();
    channels.add(ch);
    ch.port1.onmessage = () => { channels.delete(ch); fn(performance.now()); };
    ch.port2.postMessage(0);
  });
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) B.longtasks.push([e.startTime, e.duration]); })
      .observe({ type: "longtask", buffered: true });
  } catch (e) { /* no long task API */ }
  const complete = () => {
    const r = window.runboat;
    const s = document.getElementById("summary");
    return r && r.state.loaded && r.state.builds.size >= B.expect && s && !/^Loading/.test(s.textContent);
  };
  const poll = () => {
    if (complete()) B.afterPaint((t) => { B.first = t; });
    else requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
  for (const type of ["input", "change"]) {
    document.addEventListener(type, (e) => {
      const t0 = e.timeStamp;
      B.afterPaint((t) => B.inputs.push(t - t0));
    }, true);
  }
  // a listener on every WebSocket before the page's own
  const WS = window.WebSocket;
  window.WebSocket = function (...a) {
    const ws = new WS(...a);
    ws.addEventListener("message", (e) => {
      const b = B.burst;
      if (!b || b.applied !== null || typeof e.data !== "string") return;
      if (b.first === null && e.data.includes(b.tag)) b.first = performance.now();
      if (e.data.includes(b.last)) {
        b.lastAt = performance.now();
        B.afterPaint((t) => { b.applied = t; });
      }
    });
    return ws;
  };
  window.WebSocket.prototype = WS.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


def log(*a):
    print(time.strftime("[%H:%M:%S]"), *a, file=sys.stderr, flush=True)


def fmt(values):
    if not values:
        return "-"
    v = sorted(values)
    return (f"median {statistics.median(v):.0f} ms, min {v[0]:.0f}, max {v[-1]:.0f}"
            f" (n={len(v)})")


class Server:
    def __init__(self, binary, builds, extra=()):
        self.p = subprocess.Popen([binary, "--builds", str(builds), *extra], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.p.stdout.readline().split()
        if len(line) < 4 or line[0] != "port":
            raise SystemExit(f"bench_dashboard server did not start: {line}")
        self.port = int(line[1])
        self.builds = int(line[3])
        self.base = f"http://127.0.0.1:{self.port}"

    def burst(self, n, tag):
        """Asks for a burst; returns (wall clock ms before asking, last name)."""
        t0 = time.time() * 1000
        self.p.stdin.write(f"burst {n} {tag}\n")
        self.p.stdin.flush()
        words = self.p.stdout.readline().split()
        return t0, words[-1]

    def stop(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


def new_page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.add_init_script(INIT + f"\nwindow.__bench.expect = {server.builds};")
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return ctx, page, errors


class Renderer:
    """The CPU time of the tab's renderer main thread. The tab's renderer is
    the renderer process (not the browser's own UI) that used the most CPU:
    only one page is open when it is looked up."""

    def __init__(self, browser):
        cdp = browser.new_browser_cdp_session()
        procs = cdp.send("SystemInfo.getProcessInfo")["processInfo"]
        cdp.detach()
        best = None
        for p in procs:
            if p.get("type") != "renderer":
                continue
            try:
                cmd = pathlib.Path(f"/proc/{p['id']}/cmdline").read_bytes()
            except OSError:
                continue
            if b"--top-chrome-webui" in cmd or b"--extension-process" in cmd:
                continue
            if best is None or p.get("cpuTime", 0) > best.get("cpuTime", 0):
                best = p
        self.pid = best["id"] if best else None

    def cpu_ms(self):
        """ms on a CPU of the main thread so far (None if unknown)."""
        if not self.pid:
            return None
        try:
            return int(pathlib.Path(f"/proc/{self.pid}/task/{self.pid}/schedstat").read_text().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            return None


def metrics(ctx, page):
    cdp = ctx.new_cdp_session(page)
    cdp.send("HeapProfiler.enable")
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("Performance.enable")
    m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
    m["elements"] = page.evaluate("document.getElementsByTagName('*').length")
    m["cards"] = page.evaluate("document.querySelectorAll('#builds article.card').length")
    cdp.detach()
    return m


def print_metrics(label, m):
    print(f"  memory {label}: JS heap used {m['JSHeapUsedSize'] / 2**20:.1f} MiB "
          f"(total {m['JSHeapTotalSize'] / 2**20:.1f} MiB), DOM nodes {int(m['Nodes'])}, "
          f"elements {m['elements']}, cards {m['cards']}, "
          f"JS event listeners {int(m['JSEventListeners'])}")


def first_render(page, server, timeout_s=300):
    page.goto(server.base + "/")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        t = page.evaluate("window.__bench.first")
        if t is not None:
            lt = page.evaluate("window.__bench.longtasks")
            before = [d for s, d in lt if s < t]
            marks = page.evaluate("Object.fromEntries(performance.getEntriesByType('mark')"
                                  ".filter((m) => m.name.startsWith('runboat:'))"
                                  ".map((m) => [m.name.slice(8), Math.round(m.startTime)]))")
            return t, len(before), sum(before), marks
        time.sleep(0.05)
    raise SystemExit("the dashboard never showed every build")


def settle(page, rend, timeout_s=300):
    """Waits until the tab's renderer main thread is idle (under 5% of a
    core over 0.5 s: the stream's snapshot applied); returns the page time
    (ms since navigation) and the main thread's CPU ms until then."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        c0 = rend.cpu_ms()
        time.sleep(0.5)
        c1 = rend.cpu_ms()
        if c0 is None or c1 - c0 < 25:
            break
    return page.evaluate("performance.now()") - 500, rend.cpu_ms()


def wait_inputs(page, n, timeout_s=300):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = page.evaluate("window.__bench.inputs.length")
        if got >= n:
            return page.evaluate("window.__bench.inputs[window.__bench.inputs.length - 1]")
        time.sleep(0.01)
    raise SystemExit("no paint after an input event")


def keystrokes(page, rend):
    """Types filters key by key; returns [(label, ms, CPU ms)]."""
    out = []
    field = page.locator("#text-filter")
    field.focus()
    page.wait_for_timeout(300)

    def key(k, label):
        n = page.evaluate("window.__bench.inputs.length")
        c0 = rend.cpu_ms()
        page.keyboard.press(k)
        ms = wait_inputs(page, n + 1)
        out.append((label, ms, rend.cpu_ms() - c0))
        page.wait_for_timeout(100)

    typed = ""
    for ch in "17.0":
        typed += ch
        key(ch, f"type '{typed}'")
    for _ in range(4):
        typed = typed[:-1]
        key("Backspace", f"back to '{typed}'")
    for ch in "#12":
        typed += ch
        key(ch, f"type '{typed}'")
    for _ in range(3):
        typed = typed[:-1]
        key("Backspace", f"back to '{typed}'")
    # a word of a branch that matches nothing
    for ch in "zz":
        typed += ch
        key(ch, f"type '{typed}'")
    for _ in range(2):
        typed = typed[:-1]
        key("Backspace", f"back to '{typed}'")
    # the status select
    for value, label in (("failed", "status = failed"), ("", "status = any")):
        n = page.evaluate("window.__bench.inputs.length")
        c0 = rend.cpu_ms()
        page.select_option("#status-filter", value)
        # select_option fires input and change: the last is the change
        deadline = time.time() + 300
        while page.evaluate("window.__bench.inputs.length") < n + 2 and time.time() < deadline:
            time.sleep(0.01)
        ms = page.evaluate("window.__bench.inputs[window.__bench.inputs.length - 1]")
        out.append((label, ms, rend.cpu_ms() - c0))
        page.wait_for_timeout(100)
    return out


def scrolls(page, count=20):
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    res = page.evaluate("""async (count) => {
      const out = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        window.scrollBy(0, window.innerHeight);
        const t = await new Promise((r) => window.__bench.afterPaint(r));
        out.push(t - t0);
        await new Promise((r) => setTimeout(r, 50));
      }
      return { out, y: window.scrollY, h: document.documentElement.scrollHeight };
    }""", count)
    return res


def burst(page, server, n, tag):
    page.evaluate("([tag, last]) => { window.__bench.burst = { tag, last, first: null, lastAt: null, applied: null }; }",
                  [f'"{tag} ', f'"{tag} {n - 1}"'])
    t0, _last = server.burst(n, tag)
    deadline = time.time() + 300
    while time.time() < deadline:
        b = page.evaluate("window.__bench.burst")
        if b["applied"] is not None:
            origin = page.evaluate("performance.timeOrigin")
            lt = page.evaluate("window.__bench.longtasks")
            busy = sum(d for s, d in lt if s + d >= b["first"] and s <= b["applied"])
            return (origin + b["applied"] - t0, b["applied"] - b["first"], b["lastAt"] - b["first"], busy)
        time.sleep(0.02)
    raise SystemExit(f"burst {tag}: never applied")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builds", type=int, default=7000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server", default=str(ROOT / "build" / "bench" / "bench_dashboard"))
    ap.add_argument("--bursts", default="100,1000")
    ap.add_argument("--array-bytes", type=int, default=0,
                    help="the server's bound on the batched stream's arrays (0: its default)")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures as they come
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"no Chromium at {CHROMIUM}")
    server = Server(a.server, a.builds, ["--array-bytes", str(a.array_bytes)] if a.array_bytes else [])
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print(f"bench_dashboard: {server.builds} builds, server {a.server}, load average {load}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            firsts, firsts_cpu, settles = [], [], []
            for run in range(a.runs):
                ctx, page, errors = new_page(browser, server)
                t, nlong, long_ms, marks = first_render(page, server)
                rend = Renderer(browser)
                cpu = rend.cpu_ms()
                firsts.append(t)
                if cpu is not None:
                    firsts_cpu.append(cpu)
                idle_at, idle_cpu = settle(page, rend)
                settles.append(idle_at)
                log(f"run {run + 1}: first render {t:.0f} ms")
                print(f"  run {run + 1}: first render {t:.0f} ms "
                      f"({nlong} long tasks, {long_ms:.0f} ms in them; renderer main thread "
                      f"CPU since its start {cpu if cpu is None else round(cpu)} ms); "
                      f"idle (snapshot applied) at {idle_at:.0f} ms, CPU {idle_cpu:.0f} ms")
                if marks:  # the page's own marks (web/app.js), ms since navigation
                    print("    page marks: " + ", ".join(f"{k} {v} ms" for k, v in marks.items()))
                if run < a.runs - 1:
                    if errors:
                        print(f"  JavaScript errors: {errors}")
                    ctx.close()
            print(f"first render, {server.builds} builds: {fmt(firsts)}")
            print(f"first render, renderer main thread CPU: {fmt(firsts_cpu)}")
            print(f"page idle after the load: {fmt(settles)}")
            page.wait_for_timeout(1000)
            print_metrics("after the first render", metrics(ctx, page))

            keys = keystrokes(page, rend)
            print("filter keystrokes (input event -> next frame painted; renderer main thread CPU):")
            for label, ms, cpu in keys:
                print(f"  {label:<18} {ms:6.0f} ms   CPU {cpu:6.0f} ms")
            print(f"filter keystrokes: {fmt([ms for _, ms, _ in keys])}")
            print(f"filter keystrokes, CPU: {fmt([cpu for _, _, cpu in keys])}")

            c0 = rend.cpu_ms()
            s = scrolls(page)
            c1 = rend.cpu_ms()
            print(f"scroll by one viewport (-> next frame painted): {fmt(s['out'])}; "
                  f"scrolled to {s['y']:.0f} of {s['h']} px; CPU {(c1 - c0) / len(s['out']):.0f} ms a scroll")

            for i, n in enumerate(int(x) for x in a.bursts.split(",") if x):
                page.wait_for_timeout(500)
                c0 = rend.cpu_ms()
                total, since_first, recv, busy = burst(page, server, n, f"bench-burst-{i}")
                c1 = rend.cpu_ms()
                print(f"burst of {n} updates: upsert -> painted {total:.0f} ms; first event -> "
                      f"painted {since_first:.0f} ms (all received after {recv:.0f} ms; "
                      f"{busy:.0f} ms of long tasks; CPU {c1 - c0:.0f} ms)")
            page.wait_for_timeout(1000)
            print_metrics("at the end", metrics(ctx, page))
            if errors:
                print(f"JavaScript errors: {errors}")
            ctx.close()
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

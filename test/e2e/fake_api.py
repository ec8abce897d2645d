#!/usr/bin/env python3
"""A stdlib-only fake of runboat's HTTP API, for developing and testing the web
UI (web/) without Kubernetes.

It serves web/ at the same paths as runboat (/, /webui/..., /builds,
/builds/{name}), the /api/v1 routes the UI uses from an in-memory set of builds,
and /api/v1/ws as a real WebSocket (RFC 6455, server side, text frames) that
starts with an "upd" for every matching build and then pushes changes (with
?batch=1, as runboat: the snapshot as JSON arrays of events, at most 50 a
message, then {"event": "synced"}, then single events). Start,
stop, reset and undeploy go through the intermediate statuses over a few
`step` seconds, like the real thing.

    python3 test/e2e/fake_api.py --port 8080          # then open http://127.0.0.1:8080/

Test hooks (also usable by hand with curl), all under /_fake:
    POST /_fake/builds                  {"repo", "target_branch", "pr", "status"?} -> build
    POST /_fake/builds/{name}/status    {"status", "init_status"?}: set and push
    POST /_fake/builds/{name}/remove    ?silent=1: remove without a "del" event
    POST /_fake/ws/drop                 ?refuse=SECONDS: drop every socket, refuse new ones
    POST /_fake/fail-next               {"status", "detail"}: the next action answers that
    GET  /_fake/instance/{slug}         what deploy_link points to (a stand-in Odoo)
"""

import argparse
import base64
import hashlib
import json
import pathlib
import queue
import random
import socket
import struct
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

WEB = pathlib.Path(__file__).resolve().parents[2] / "web"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STATUSES = ("initializing", "failed", "stopped", "stopping", "starting", "started", "undeploying")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


def now_iso(dt=None):
    dt = dt or datetime.now(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def slugify(repo, branch, pr, sha):
    raw = f"{repo.split('/')[-1]}-{branch}" + (f"-pr{pr}" if pr is not None else "") + f"-{sha[:12]}"
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in raw.lower())
    if len(out) > 63:
        h = hashlib.sha256(out.encode()).hexdigest()[:6]
        out = out[:56].rstrip("-") + "-" + h
    return out


class ApiError(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Subscriber:
    def __init__(self, filters):
        self.filters = filters
        self.batched = filters.get("batch") == "1"
        self.q = queue.Queue()


class FakeRunboat:
    """The in-memory state, thread-safe. Methods are the test hooks."""

    def __init__(self, step=1.0, admin=("admin", "admin"), live_redirect=False):
        self.step = step
        self.admin = admin
        self.live_redirect = live_redirect
        self.base_url = "http://127.0.0.1"
        self.lock = threading.RLock()
        self.builds = {}
        self.subs = set()
        self.refuse_ws_until = 0.0
        # a runboat that predates ?batch=1: ignores it (single events, no marker)
        self.legacy_streams = False
        self.fail_next = None
        self.limits = {"max_started": 6, "max_deployed": 40, "max_initializing": 2}
        self.closed = False

    # ---------------------------------------------------------------- data

    def add_build(self, repo, target_branch, pr=None, git_commit=None, status="stopped",
                  init_status=None, age_s=0.0, silent=False):
        sha = git_commit or hashlib.sha1(uuid.uuid4().bytes).hexdigest()
        if init_status is None:
            init_status = {"initializing": "todo", "failed": "failed"}.get(status, "succeeded")
        created = datetime.now(timezone.utc) - timedelta(seconds=age_s)
        b = {
            "name": "b" + uuid.uuid4().hex[:16],
            "repo": repo.lower(),
            "target_branch": target_branch,
            "pr": None if pr in (None, "") else int(pr),
            "git_commit": sha,
            "status": status,
            "init_status": init_status,
            "created": now_iso(created),
            "last_scaled": now_iso(created) if status in ("started", "stopped") else None,
            "gen": 0,
        }
        with self.lock:
            self.builds[b["name"]] = b
            if not silent:
                self._emit("upd", b)
        return b["name"]

    def set_status(self, name, status, init_status=None, silent=False):
        with self.lock:
            b = self.builds[name]
            b["gen"] += 1  # cancels a pending transition
            b["status"] = status
            if init_status is not None:
                b["init_status"] = init_status
            if not silent:
                self._emit("upd", b)

    def set_reason(self, name, reason):
        with self.lock:
            b = self.builds[name]
            b["reason"] = reason
            self._emit("upd", b)

    def remove_build(self, name, silent=False):
        with self.lock:
            b = self.builds.pop(name, None)
            if b and not silent:
                self._emit("del", b)

    def drop_ws(self, refuse_s=0.0):
        """Drops every WebSocket abruptly (no close frame: the browser sees a
        network failure) and refuses new ones for refuse_s seconds."""
        with self.lock:
            self.refuse_ws_until = time.monotonic() + refuse_s
            subs = list(self.subs)
            self.subs.clear()
        for s in subs:
            s.q.put(None)

    def ws_count(self):
        with self.lock:
            return len(self.subs)

    def set_fail_next(self, status, detail):
        with self.lock:
            self.fail_next = (status, detail)

    def close(self):
        self.closed = True
        self.drop_ws()

    def seed(self):
        """A demo data set: a few repos, branches with '/' in the name, PRs,
        a hostile branch name, every status."""
        h = 3600
        a = "oca/server-tools"
        self.add_build(a, "16.0", status="stopped", age_s=30 * h)
        self.add_build(a, "16.0", status="started", age_s=5 * h)
        self.add_build(a, "17.0", status="started", age_s=50 * 60)
        self.add_build(a, "18.0", status="stopped", age_s=3 * h)
        self.add_build(a, "18.0", status="initializing", init_status="started", age_s=4 * 60)
        self.add_build(a, "feature/queue-job-v2", status="failed", age_s=2 * 24 * h)
        self.add_build(a, "17.0", pr=3021, status="stopped", age_s=8 * h)
        self.add_build(a, "17.0", pr=3021, status="started", age_s=20 * 60)
        self.add_build(a, "18.0", pr=3040, status="initializing", init_status="todo", age_s=60)
        self.add_build(a, "16.0", pr=2987, status="failed", age_s=6 * 24 * h)
        w = "oca/web"
        self.add_build(w, "17.0", status="stopped", age_s=26 * h)
        self.add_build(w, "release/17.0/hotfix", status="started", age_s=2 * h)
        self.add_build(w, "17.0", pr=2811, status="stopped", age_s=9 * h)
        x = "acme/odoo-addons"
        self.add_build(x, "main", status="stopped", age_s=12 * h)
        self.add_build(x, "<img src=x onerror=alert(1)>", status="stopped", age_s=7 * h)
        self.add_build(x, "main", pr=7, status="failed", age_s=3 * h)

    # ---------------------------------------------------------------- views

    def to_json(self, b):
        repo, branch, pr, sha = b["repo"], b["target_branch"], b["pr"], b["git_commit"]
        slug = slugify(repo, branch, pr, sha)
        gh = f"https://github.com/{repo}"
        return {
            "name": b["name"],
            "commit_info": {"repo": repo, "target_branch": branch, "pr": pr, "git_commit": sha},
            "deploy_link": f"{self.base_url}/_fake/instance/{slug}",
            "deploy_link_mailhog": f"{self.base_url}/_fake/instance/{slug}/mail",
            "repo_target_branch_link": f"{gh}/tree/{quote(branch, safe='/')}",
            "repo_pr_link": f"{gh}/pull/{pr}" if pr is not None else None,
            "repo_commit_link": f"{gh}/commit/{sha}",
            "webui_link": f"{self.base_url}/builds/{b['name']}",
            "status": b["status"],
            "init_status": b["init_status"],
            "slug": slug,
            "created": b["created"],
            "last_scaled": b["last_scaled"],
            "reason": b.get("reason"),
        }

    @staticmethod
    def matches(b, f):
        if f.get("repo") and b["repo"] != f["repo"].lower():
            return False
        if f.get("target_branch") and b["target_branch"] != f["target_branch"]:
            return False
        if f.get("branch") and (b["target_branch"] != f["branch"] or b["pr"] is not None):
            return False
        if f.get("pr") and str(b["pr"]) != f["pr"]:
            return False
        if f.get("status") and b["status"] != f["status"]:
            return False
        if f.get("build_name") and b["name"] != f["build_name"]:
            return False
        return True

    def list(self, f):
        with self.lock:
            bs = [self.to_json(b) for b in self.builds.values() if self.matches(b, f)]
        return sorted(bs, key=lambda b: b["created"], reverse=True)

    def get(self, name):
        with self.lock:
            b = self.builds.get(name)
            if not b:
                raise ApiError(404, f"build {name} not found")
            return self.to_json(b)

    def repos(self):
        with self.lock:
            names = sorted({b["repo"] for b in self.builds.values()})
        return [{"name": n, "link": f"https://github.com/{n}"} for n in names]

    def status(self):
        with self.lock:
            st = [b["status"] for b in self.builds.values()]
            inits = [b["init_status"] for b in self.builds.values() if b["status"] == "initializing"]
        return {
            "deployed": sum(1 for s in st if s != "undeploying"),
            "max_deployed": self.limits["max_deployed"],
            "failed": st.count("failed"),
            "stopped": st.count("stopped"),
            "started": st.count("started"),
            "max_started": self.limits["max_started"],
            "to_initialize": inits.count("todo"),
            "initializing": inits.count("started"),
            "max_initializing": self.limits["max_initializing"],
            "undeploying": st.count("undeploying"),
        }

    # ---------------------------------------------------------------- stream

    def _emit(self, event, b):
        msg = json.dumps({"event": event, "build": self.to_json(b)})
        for s in self.subs:
            if self.matches(b, s.filters):
                s.q.put(msg)

    def subscribe(self, sub):
        """Registers sub and queues its snapshot atomically, so that no change
        falls between the snapshot and the stream."""
        with self.lock:
            events = [{"event": "upd", "build": self.to_json(b)}
                      for b in sorted(self.builds.values(), key=lambda b: b["created"])
                      if self.matches(b, sub.filters)]
            if sub.batched and not self.legacy_streams:
                for i in range(0, len(events), 50):
                    sub.q.put(json.dumps(events[i:i + 50]))
                sub.q.put(json.dumps({"event": "synced"}))
            else:
                for e in events:
                    sub.q.put(json.dumps(e))
            self.subs.add(sub)

    def unsubscribe(self, sub):
        with self.lock:
            self.subs.discard(sub)

    # ---------------------------------------------------------------- actions

    def _later(self, name, gen, delay, fn):
        def run():
            if self.closed:
                return
            with self.lock:
                b = self.builds.get(name)
                if b and b["gen"] == gen:
                    fn(b)
        t = threading.Timer(delay, run)
        t.daemon = True
        t.start()

    def _check_fail(self):
        if self.fail_next:
            status, detail = self.fail_next
            self.fail_next = None
            raise ApiError(status, detail)

    def _transition(self, b, first, then):
        """Moves b to `first` now and through the (delay, mutate) steps of `then`."""
        b["gen"] += 1
        gen = b["gen"]
        first(b)
        self._emit("upd", b)
        delay = 0.0
        for fn in then:
            delay += self.step

            def step(b, fn=fn):
                fn(b)
                if b["status"] is None:
                    self.builds.pop(b["name"], None)
                    self._emit("del", b)
                else:
                    self._emit("upd", b)
            self._later(b["name"], gen, delay, step)

    def action(self, name, action):
        with self.lock:
            b = self.builds.get(name)
            if not b:
                raise ApiError(404, f"build {name} not found")
            self._check_fail()
            st = b["status"]
            if action == "start":
                if st != "stopped":
                    raise ApiError(409, f"build {name} is {st}, only a stopped build can be started")

                def go(b):
                    b["status"] = "starting"
                    b["last_scaled"] = now_iso()
                self._transition(b, go, [lambda b: b.update(status="started")])
            elif action == "stop":
                if st not in ("started", "starting"):
                    raise ApiError(409, f"build {name} is {st}, only a started build can be stopped")

                def go(b):
                    b["status"] = "stopping"
                    b["last_scaled"] = now_iso()
                self._transition(b, go, [lambda b: b.update(status="stopped")])
            elif action == "reset":
                if st == "undeploying":
                    raise ApiError(409, f"build {name} is undeploying")
                self._transition(
                    b,
                    lambda b: b.update(status="initializing", init_status="todo"),
                    [lambda b: b.update(init_status="started"),
                     lambda b: b.update(init_status="succeeded", status="started", last_scaled=now_iso())],
                )
            elif action == "undeploy":
                if st == "undeploying":
                    raise ApiError(409, f"build {name} is already undeploying")
                self._transition(b, lambda b: b.update(status="undeploying"),
                                 [lambda b: b.update(status=None)])
            elif action == "force-undeploy":
                # the real one answers for any build; it goes at once
                self._transition(b, lambda b: b.update(status="undeploying"),
                                 [lambda b: b.update(status=None)])
            else:
                raise ApiError(404, "no such action")
            return self.to_json(b)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-runboat"
    timeout = 120

    @property
    def fake(self):
        return self.server.fake

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    # ---------------------------------------------------------------- replies

    def reply(self, status, body=b"", ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, detail, headers=None):
        self.reply(status, {"detail": detail}, headers=headers)

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 20:
            raise ApiError(413, "body too large")
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(400, "body is not JSON")

    def static(self, rel):
        rel = rel or "index.html"
        parts = [p for p in rel.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return self.error(404, "no such file")
        path = WEB.joinpath(*parts)
        if not path.is_file():
            return self.error(404, f"no such file: /{rel}")
        ctype = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self.reply(200, path.read_bytes(), ctype, {"X-Content-Type-Options": "nosniff"})

    # ---------------------------------------------------------------- routing

    def route(self):
        u = urlsplit(self.path)
        path = u.path
        q = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        seg = [unquote(s) for s in path.split("/")[1:]]
        m = self.command
        try:
            if path in ("/", "/builds", "/webui", "/webui/") and m in ("GET", "HEAD"):
                return self.static("index.html")
            if len(seg) == 2 and seg[0] == "builds" and m in ("GET", "HEAD"):
                if "live" in q and self.fake.live_redirect:
                    try:
                        b = self.fake.get(seg[1])
                        if b["status"] == "started":
                            return self.reply(302, b"", "text/plain", {"Location": b["deploy_link"]})
                    except ApiError:
                        pass
                return self.static("index.html")
            if seg[0] == "webui" and m in ("GET", "HEAD"):
                return self.static("/".join(seg[1:]))
            if path == "/healthz":
                return self.reply(200, {"status": "ok"})
            if seg[:2] == ["api", "v1"]:
                return self.api(seg[2:], q)
            if seg[0] == "_fake":
                return self.control(seg[1:], q)
            self.error(404, f"no route for {path}")
        except ApiError as e:
            headers = {"WWW-Authenticate": 'Basic realm="runboat"'} if e.status == 401 else None
            self.error(e.status, e.detail, headers)

    do_GET = do_HEAD = do_POST = do_DELETE = lambda self: self.route()

    def api(self, seg, q):
        m = self.command
        f = self.fake
        if seg == ["status"] and m == "GET":
            return self.reply(200, f.status())
        if seg == ["repos"] and m == "GET":
            return self.reply(200, f.repos())
        if seg == ["ws"] and m == "GET":
            return self.websocket(q)
        if seg == ["builds"] and m == "GET":
            if q.get("status") and q["status"] not in STATUSES:
                raise ApiError(400, f"unknown status {q['status']!r}")
            if q.get("pr") and not q["pr"].isdigit():
                raise ApiError(400, "pr must be a number")
            return self.reply(200, f.list(q))
        if len(seg) == 2 and seg[0] == "builds":
            if m == "GET":
                return self.reply(200, f.get(seg[1]))
            if m == "DELETE":
                self.check_admin()
                f.action(seg[1], "undeploy")
                return self.reply(200, {"detail": "undeploying"})
            raise ApiError(405, "method not allowed")
        if len(seg) == 3 and seg[0] == "builds":
            name, what = seg[1], seg[2]
            if what in ("start", "stop", "reset"):
                if m != "POST":
                    raise ApiError(405, "method not allowed")
                return self.reply(200, f.action(name, what))
            if what == "force-undeploy":
                if m != "POST":
                    raise ApiError(405, "method not allowed")
                self.check_admin()
                f.action(name, what)
                return self.reply(200, {"detail": f"build {name}: undeploy forced"})
            if what in ("init-log", "log", "cleanup-log") and m == "GET":
                b = f.get(name)
                lines = [f"{now_iso()} {what} of {b['slug']} ({b['status']})",
                         "odoo: loading modules...", "odoo: modules loaded."]
                if what == "init-log" and b["status"] == "failed":
                    # markup in a log is text (the dashboard shows the tail)
                    lines += [f"ERROR: cannot install <img src=x onerror=alert(1)>", "exit 1"]
                return self.reply(200, "\n".join(lines) + "\n", "text/plain; charset=utf-8")
        raise ApiError(404, "no such API route")

    def check_admin(self):
        h = self.headers.get("Authorization") or ""
        want = base64.b64encode(f"{self.fake.admin[0]}:{self.fake.admin[1]}".encode()).decode()
        if not h.startswith("Basic ") or h[6:].strip() != want:
            raise ApiError(401, "bad or missing admin credentials")

    def control(self, seg, q):
        f = self.fake
        m = self.command
        if len(seg) >= 2 and seg[0] == "instance" and m == "GET":
            slug = seg[1]
            page = (f"<!doctype html><title>Odoo {slug}</title>"
                    f"<h1 id=instance>Odoo instance {slug}</h1>")
            return self.reply(200, page, "text/html; charset=utf-8")
        if m != "POST":
            raise ApiError(405, "method not allowed")
        if seg == ["builds"]:
            d = self.body_json()
            name = f.add_build(d["repo"], d["target_branch"], d.get("pr"), d.get("git_commit"),
                               d.get("status", "stopped"), silent=bool(q.get("silent")))
            return self.reply(200, f.get(name))
        if len(seg) == 3 and seg[0] == "builds" and seg[2] == "status":
            d = self.body_json()
            if d.get("status") not in STATUSES:
                raise ApiError(400, "bad status")
            f.set_status(seg[1], d["status"], d.get("init_status"), silent=bool(q.get("silent")))
            return self.reply(200, f.get(seg[1]))
        if len(seg) == 3 and seg[0] == "builds" and seg[2] == "remove":
            f.remove_build(seg[1], silent=bool(q.get("silent")))
            return self.reply(200, {"detail": "removed"})
        if seg == ["ws", "drop"]:
            f.drop_ws(float(q.get("refuse") or 0))
            return self.reply(200, {"detail": "dropped"})
        if seg == ["fail-next"]:
            d = self.body_json()
            f.set_fail_next(int(d.get("status", 409)), str(d.get("detail", "conflict")))
            return self.reply(200, {"detail": "armed"})
        raise ApiError(404, "no such control route")

    # ---------------------------------------------------------------- websocket

    def websocket(self, q):
        if "websocket" not in (self.headers.get("Upgrade") or "").lower():
            raise ApiError(426, "WebSocket upgrade required")
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            raise ApiError(400, "missing Sec-WebSocket-Key")
        if not self.fake.legacy_streams and q.get("batch", "0") not in ("", "0", "1"):
            raise ApiError(400, f"batch must be 0 or 1, got {q['batch']!r}")
        if time.monotonic() < self.fake.refuse_ws_until:
            raise ApiError(503, "not accepting WebSocket connections right now")
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        sock = self.connection
        sock.settimeout(None)
        sub = Subscriber(q)
        self.fake.subscribe(sub)
        threading.Thread(target=self.ws_reader, args=(sub,), daemon=True).start()
        try:
            while True:
                item = sub.q.get()
                if item is None:
                    break
                if isinstance(item, bytes):
                    sock.sendall(item)
                    if item[0] & 0x0F == 0x8:
                        break
                else:
                    sock.sendall(ws_frame(0x1, item.encode()))
        except OSError:
            pass
        finally:
            self.fake.unsubscribe(sub)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def ws_reader(self, sub):
        """Reads the client's frames: answers pings and close, ignores data."""
        r = self.rfile
        try:
            while True:
                head = r.read(2)
                if len(head) < 2:
                    break
                opcode = head[0] & 0x0F
                n = head[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", r.read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", r.read(8))[0]
                if n > 1 << 16:
                    sub.q.put(ws_frame(0x8, struct.pack("!H", 1009)))
                    return
                mask = r.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(r.read(n)))
                if opcode == 0x8:
                    sub.q.put(ws_frame(0x8, data[:2]))
                    return
                if opcode == 0x9:
                    sub.q.put(ws_frame(0xA, data))
        except (OSError, ValueError, struct.error):
            pass
        sub.q.put(None)


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, fake, verbose=False):
        super().__init__(addr, Handler)
        self.fake = fake
        self.verbose = verbose
        host, port = self.server_address[:2]
        fake.base_url = f"http://{host}:{port}"


def serve(host="127.0.0.1", port=0, step=1.0, seed=True, verbose=False, **kw):
    """Starts a fake in a background thread: returns (server, fake). Stop with
    stop(server)."""
    fake = FakeRunboat(step=step, **kw)
    if seed:
        fake.seed()
    server = Server((host, port), fake, verbose)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, fake


def stop(server):
    server.fake.close()
    server.shutdown()
    server.server_close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--step", type=float, default=1.5, help="seconds per status transition")
    p.add_argument("--admin", default="admin:admin", help="user:password of the admin")
    p.add_argument("--live-redirect", action="store_true", help="answer /builds/{name}?live with a 302 when started")
    p.add_argument("--empty", action="store_true", help="start without the demo builds")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    user, _, password = a.admin.partition(":")
    random.seed()
    server, _ = serve(a.host, a.port, a.step, seed=not a.empty, verbose=a.verbose,
                      admin=(user, password), live_redirect=a.live_redirect)
    print(f"fake runboat on {server.fake.base_url}/ (admin {user}:{password})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop(server)


if __name__ == "__main__":
    main()

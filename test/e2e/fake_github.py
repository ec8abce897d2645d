#!/usr/bin/env python3
"""A small fake of the GitHub REST API, for the tests (stdlib only).

It answers the few calls runboat makes:

  GET  /repos/{owner}/{repo}/branches/{branch}   -> {"name", "commit": {"sha"}}
  GET  /repos/{owner}/{repo}/pulls/{number}      -> {"number", "state", "head", "base"}
  POST /repos/{owner}/{repo}/statuses/{sha}      -> 201, recorded
  GET  /repos/{owner}/{repo}/branches?per_page=&page=
                                                 -> the branches, by name
  GET  /repos/{owner}/{repo}/pulls?state=open|closed|all&per_page=&page=
                                                 -> the PRs, newest first
  (the listings also under /repositories/{id}/..., the form GitHub's Link
  headers use)

Listings are paginated as GitHub does: per_page (default 30, at most 100,
or less when the test lowers max_per_page), a Link header with rel="next",
"last", "first", "prev", and a weak ETag per page: a request whose
If-None-Match matches gets 304 Not Modified, without a body or a Link
header (the ETag is computed over the body alone). A repository
the fake knows nothing of (no branch or PR ever set, not declared with
/_control/repos) answers 404 to the listings, as GitHub does for an
unknown repository.

Every API answer carries X-RateLimit-Limit/-Remaining/-Reset/-Used/
-Resource. Every API request but a 304 uses one request of the budget (as
on GitHub, where a 304 to an authorized conditional request is free);
with none left, requests answer 403 "API rate limit exceeded" until the
reset time, when the budget is full again.

It also has control endpoints for the tests (no authentication, never
failed, not counted):

  PUT  /_control/branches  [{"repo", "branch", "sha"}]   (sha null removes)
  PUT  /_control/pulls     [{"repo", "number", "head_sha", "base_ref",
                             "head_ref"?, "state"?}]     (head_sha null removes)
  PUT  /_control/repos     [{"repo"}]  declares repositories (listings 200)
  PUT  /_control/ratelimit {"limit"?, "remaining"?, "reset_in"?: seconds}
  PUT  /_control/settings  {"max_per_page"?: n}
  GET  /_control/statuses  the recorded statuses, oldest first
  GET  /_control/requests  every API request: {"method", "path", "headers",
                            "status"}
  GET  /_control/counts    {"requests", "not_modified", "listings",
                            "rate_remaining"}
  POST /_control/fail      {"count": N, "status": 500|403|429|..., "headers": {},
                            "body": {...}, "delay": seconds, "path": "..."}:
                            the next N API requests (only those whose path
                            contains "path", when given) fail that way
                            (status 0: only the delay, then answer normally)
  POST /_control/reset     forget everything (tables, records, failures)

Repositories are matched case-insensitively, as GitHub does. Branch names in
paths may be percent-encoded ("feature%2Fx") or not ("feature/x"). When a
token is configured, API requests must carry "Authorization: Bearer <token>"
(or "token <token>"), else 401.

Run it:     python3 fake_github.py --port 0 [--token T]
            (prints "listening on PORT" once ready, serves until killed or
            until its stdin closes when --exit-on-eof is given)
Import it:  with FakeGitHub(token="t") as gh: gh.url, gh.set_branch(...), ...
            (set_branch, delete_branch, set_pull, close_pull, add_repo,
            set_rate_limit, set_max_per_page, fail, statuses, requests,
            counts, reset: the same effects as the control endpoints)
"""

import argparse
import hashlib
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATES = ("pending", "success", "failure", "error")
MAX_BODY = 1 << 20


class State:
    """Everything the fake knows; guarded by one lock."""

    def __init__(self, token=None):
        self.lock = threading.Lock()
        self.token = token
        self.reset()

    def counts(self):
        """Request counters; the caller holds the lock."""
        api = [r for r in self.requests if r["status"] is not None]
        return {
            "requests": len(api),
            "not_modified": sum(1 for r in api if r["status"] == 304),
            "listings": sum(1 for r in api if r["path"].split("?")[0].endswith(("/branches", "/pulls"))),
            "rate_remaining": self.rate_remaining,
        }

    def reset(self):
        self.branches = {}  # (repo lower, branch) -> sha
        self.pulls = {}  # (repo lower, number) -> dict
        self.repos = {}  # repo lower -> id (known repositories)
        self.max_per_page = 100
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self.rate_reset = int(time.time()) + 3600
        self.statuses = []
        self.requests = []
        self.fail_count = 0
        self.fail_status = 500
        self.fail_headers = {}
        self.fail_body = None
        self.fail_delay = 0.0
        self.fail_path = None
        self.next_id = 1

    def know(self, repo):
        """Declares repo (lowercase); the caller holds the lock."""
        if repo not in self.repos:
            self.repos[repo] = 1000 + len(self.repos)

    def rate_headers(self):
        now = int(time.time())
        if now >= self.rate_reset:
            self.rate_remaining = self.rate_limit
            self.rate_reset = now + 3600
        return {
            "X-RateLimit-Limit": self.rate_limit,
            "X-RateLimit-Remaining": self.rate_remaining,
            "X-RateLimit-Reset": self.rate_reset,
            "X-RateLimit-Used": self.rate_limit - self.rate_remaining,
            "X-RateLimit-Resource": "core",
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"

    # ---- plumbing ----

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("fake_github: " + (fmt % args) + "\n")

    @property
    def state(self):
        return self.server.state

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def send_json(self, status, obj, headers=None):
        data = b"" if obj is None or status == 304 else json.dumps(obj).encode()
        record = getattr(self, "record", None)
        merged = {}
        if record is not None:
            # an API answer: count it against the budget, then say what is left
            with self.state.lock:
                record["status"] = status
                if status != 304 and self.state.rate_remaining > 0:
                    self.state.rate_remaining -= 1
                for k, v in self.state.rate_headers().items():
                    merged[k.lower()] = (k, v)
        for k, v in (headers or {}).items():
            merged[k.lower()] = (k, v)
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        for k, v in merged.values():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def not_found(self, message="Not Found"):
        self.send_json(
            404,
            {
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
            },
        )

    def dispatch(self):
        try:
            body = self.read_body()
        except ValueError:
            self.send_json(413, {"message": "too large"})
            return
        path = self.path.split("?", 1)[0]
        self.record = None
        if path.startswith("/_control/"):
            self.control(path, body)
        else:
            self.api(path, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.dispatch()

    # ---- control ----

    def control(self, path, body):
        try:
            payload = json.loads(body) if body else None
            status, obj = self.control_locked(path, payload)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            status, obj = 400, {"message": "bad control request: %r" % (e,)}
        self.send_json(status, obj)

    def control_locked(self, path, payload):
        st = self.state
        with st.lock:
            if path == "/_control/branches" and self.command == "PUT":
                for item in payload or []:
                    key = (item["repo"].lower(), item["branch"])
                    if item.get("sha") is None:
                        st.branches.pop(key, None)
                    else:
                        st.branches[key] = item["sha"]
                    st.know(key[0])
                return 200, {"ok": True}
            if path == "/_control/pulls" and self.command == "PUT":
                for item in payload or []:
                    key = (item["repo"].lower(), int(item["number"]))
                    if item.get("head_sha") is None:
                        st.pulls.pop(key, None)
                    else:
                        st.pulls[key] = dict(item)
                    st.know(key[0])
                return 200, {"ok": True}
            if path == "/_control/repos" and self.command == "PUT":
                for item in payload or []:
                    st.know(item["repo"].lower())
                return 200, {"ok": True}
            if path == "/_control/ratelimit" and self.command == "PUT":
                payload = payload or {}
                st.rate_headers()
                if "limit" in payload:
                    st.rate_limit = int(payload["limit"])
                if "remaining" in payload:
                    st.rate_remaining = int(payload["remaining"])
                if "reset_in" in payload:
                    st.rate_reset = int(time.time() + float(payload["reset_in"]))
                return 200, {"ok": True}
            if path == "/_control/settings" and self.command == "PUT":
                payload = payload or {}
                if "max_per_page" in payload:
                    st.max_per_page = max(1, min(100, int(payload["max_per_page"])))
                return 200, {"ok": True}
            if path == "/_control/counts" and self.command == "GET":
                return 200, st.counts()
            if path == "/_control/statuses" and self.command == "GET":
                return 200, list(st.statuses)
            if path == "/_control/requests" and self.command == "GET":
                return 200, list(st.requests)
            if path == "/_control/fail" and self.command == "POST":
                payload = payload or {}
                st.fail_count = int(payload.get("count", 1))
                st.fail_status = int(payload.get("status", 500))
                st.fail_headers = dict(payload.get("headers") or {})
                st.fail_body = payload.get("body")
                st.fail_delay = float(payload.get("delay", 0))
                st.fail_path = payload.get("path")
                return 200, {"ok": True}
            if path == "/_control/reset" and self.command == "POST":
                st.reset()
                return 200, {"ok": True}
        return 404, {"message": "Not Found"}

    # ---- API ----

    def api(self, path, body):
        st = self.state
        with st.lock:
            self.record = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "status": None,
            }
            st.requests.append(self.record)
            delay = 0.0
            failure = None
            if st.fail_count > 0 and (not st.fail_path or st.fail_path in self.path):
                st.fail_count -= 1
                delay = st.fail_delay
                if st.fail_status:
                    failure = (st.fail_status, st.fail_headers, st.fail_body)
            token = st.token
        if delay:
            time.sleep(delay)
        if failure:
            status, headers, fbody = failure
            if fbody is None:
                fbody = {"message": "fake failure %d" % status}
            self.send_json(status, fbody, headers)
            return
        if token is not None:
            auth = self.headers.get("Authorization", "")
            if auth not in ("Bearer " + token, "token " + token):
                self.send_json(401, {"message": "Bad credentials"})
                return
        with st.lock:
            exhausted = st.rate_headers()["X-RateLimit-Remaining"] == 0
        if exhausted:
            self.send_json(403, {
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            })
            return

        parts = path.split("/")
        query = urllib.parse.parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
        if len(parts) == 4 and parts[1] == "repositories" and self.command == "GET":
            # ["", "repositories", id, kind]: the form of GitHub's Link headers
            with st.lock:
                repo = next((r for r, i in st.repos.items() if str(i) == parts[2]), None)
            if repo is None:
                self.not_found()
            else:
                self.listing(repo, parts[3], query)
            return
        if len(parts) == 5 and parts[1] == "repos" and self.command == "GET":
            self.listing((parts[2] + "/" + parts[3]).lower(), parts[4], query)
            return
        # ["", "repos", owner, repo, kind, rest...]
        if len(parts) < 6 or parts[1] != "repos" or not parts[5]:
            self.not_found()
            return
        repo = (parts[2] + "/" + parts[3]).lower()
        kind = parts[4]
        rest = urllib.parse.unquote("/".join(parts[5:]))
        if kind == "branches" and self.command == "GET":
            self.get_branch(repo, rest)
        elif kind == "pulls" and self.command == "GET" and len(parts) == 6:
            self.get_pull(repo, rest)
        elif kind == "statuses" and self.command == "POST" and len(parts) == 6:
            self.post_status(repo, rest, body)
        elif kind == "tarball" and self.command == "GET" and len(parts) == 6:
            self.get_tarball(repo, rest)
        else:
            self.not_found()

    def get_tarball(self, repo, ref):
        """GET /repos/O/R/tarball/REF (behind the token check, as for a
        private repository): a gzipped tar of one top directory
        "O-R-REF/" holding README.txt (naming repo and ref) and
        addon/__manifest__.py, as GitHub's archives are laid out."""
        import io
        import tarfile
        buf = io.BytesIO()
        top = "%s-%s" % (repo.replace("/", "-"), ref[:7])
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, text in [("README.txt", "%s@%s\n" % (repo, ref)),
                               ("addon/__manifest__.py", "{'name': 'addon'}\n")]:
                data = text.encode()
                info = tarfile.TarInfo("%s/%s" % (top, name))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        with self.state.lock:
            self.record["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def listing(self, repo, kind, query):
        """GET .../branches or .../pulls: one page, with Link and ETag."""
        st = self.state
        with st.lock:
            repo_id = st.repos.get(repo)
            if repo_id is None or kind not in ("branches", "pulls"):
                items = None
            elif kind == "branches":
                items = [
                    {"name": b, "commit": {"sha": sha, "url": "https://api.github.com/repos/%s/commits/%s" % (repo, sha)},
                     "protected": False}
                    for (r, b), sha in sorted(st.branches.items()) if r == repo
                ]
            else:
                want = (query.get("state") or ["open"])[0]
                items = [
                    self.pull_json(repo, n, pr)
                    for (r, n), pr in sorted(st.pulls.items(), key=lambda kv: -kv[0][1])
                    if r == repo and (want == "all" or pr.get("state", "open") == want)
                ]
            max_per_page = st.max_per_page
        if items is None:
            self.not_found()
            return
        try:
            per_page = int((query.get("per_page") or ["30"])[0])
            page = int((query.get("page") or ["1"])[0])
        except ValueError:
            self.send_json(422, {"message": "Validation Failed"})
            return
        per_page = max(1, min(per_page, 100, max_per_page))
        page = max(1, page)
        last = max(1, (len(items) + per_page - 1) // per_page)
        chunk = items[(page - 1) * per_page:page * per_page]
        data = json.dumps(chunk).encode()
        etag = 'W/"%s"' % hashlib.sha256(data).hexdigest()
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        extra = "&state=" + (query.get("state") or ["open"])[0] if kind == "pulls" else ""

        def url(p):
            return "<http://%s/repositories/%d/%s?per_page=%d&page=%d%s>" % (
                host, repo_id, kind, per_page, p, extra)

        links = []
        if page < last:
            links += [url(page + 1) + '; rel="next"', url(last) + '; rel="last"']
        if page > 1:
            links += [url(1) + '; rel="first"', url(page - 1) + '; rel="prev"']
        headers = {"ETag": etag, "Cache-Control": "private, max-age=60, s-maxage=60",
                   "Vary": "Accept, Authorization"}
        if links:
            headers["Link"] = ", ".join(links)
        inm = self.headers.get("If-None-Match")
        if inm and etag in [t.strip() for t in inm.split(",")]:
            # the ETag covers the body only and the 304 has no Link: the
            # hardest case for a client (a full last page may have grown)
            headers.pop("Link", None)
            self.send_json(304, None, headers)
            return
        self.send_json(200, chunk, headers)

    @staticmethod
    def pull_json(repo, n, pr):
        return {
            "number": n,
            "state": pr.get("state", "open"),
            "head": {
                "sha": pr["head_sha"],
                "ref": pr.get("head_ref", "pr-%d" % n),
                "repo": {"full_name": pr.get("head_repo", repo)},
            },
            "base": {
                "ref": pr["base_ref"],
                "repo": {"full_name": repo},
            },
        }

    def get_branch(self, repo, branch):
        with self.state.lock:
            sha = self.state.branches.get((repo, branch))
        if sha is None:
            self.not_found("Branch not found")
            return
        self.send_json(
            200,
            {
                "name": branch,
                "commit": {
                    "sha": sha,
                    "url": "https://api.github.com/repos/%s/commits/%s" % (repo, sha),
                },
                "protected": False,
            },
        )

    def get_pull(self, repo, number):
        try:
            n = int(number)
        except ValueError:
            self.not_found()
            return
        with self.state.lock:
            pr = self.state.pulls.get((repo, n))
        if pr is None:
            self.not_found()
            return
        self.send_json(200, self.pull_json(repo, n, pr))

    def post_status(self, repo, sha, body):
        try:
            req = json.loads(body)
        except ValueError:
            self.send_json(400, {"message": "Problems parsing JSON"})
            return
        errors = []
        if not isinstance(req, dict) or req.get("state") not in STATES:
            errors.append("state")
        else:
            desc = req.get("description")
            if desc is not None and (not isinstance(desc, str) or len(desc) > 140):
                errors.append("description")
        if errors:
            self.send_json(422, {"message": "Validation Failed", "errors": errors})
            return
        with self.state.lock:
            record = {
                "id": self.state.next_id,
                "repo": repo,
                "sha": sha,
                "state": req["state"],
                "description": req.get("description"),
                "target_url": req.get("target_url"),
                "context": req.get("context", "default"),
            }
            self.state.next_id += 1
            self.state.statuses.append(record)
        self.send_json(201, record)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # clients that go away (cancelled requests) are not errors here
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeGitHub:
    """The fake, served from a thread; usable as a context manager."""

    def __init__(self, host="127.0.0.1", port=0, token=None, verbose=False):
        self.state = State(token)
        self.httpd = Server((host, port), Handler)
        self.httpd.state = self.state
        self.httpd.verbose = verbose
        self.port = self.httpd.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread:
            self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # helpers for in-process tests (same effect as the control endpoints)
    def set_branch(self, repo, branch, sha):
        with self.state.lock:
            if sha is None:
                self.state.branches.pop((repo.lower(), branch), None)
            else:
                self.state.branches[(repo.lower(), branch)] = sha
            self.state.know(repo.lower())

    def delete_branch(self, repo, branch):
        self.set_branch(repo, branch, None)

    def set_pull(self, repo, number, head_sha, base_ref, state="open", head_ref=None):
        with self.state.lock:
            item = {"head_sha": head_sha, "base_ref": base_ref, "state": state}
            if head_ref:
                item["head_ref"] = head_ref
            self.state.pulls[(repo.lower(), int(number))] = item
            self.state.know(repo.lower())

    def close_pull(self, repo, number):
        with self.state.lock:
            self.state.pulls[(repo.lower(), int(number))]["state"] = "closed"

    def add_repo(self, repo):
        with self.state.lock:
            self.state.know(repo.lower())

    def set_rate_limit(self, remaining=None, limit=None, reset_in=None):
        with self.state.lock:
            self.state.rate_headers()
            if limit is not None:
                self.state.rate_limit = limit
            if remaining is not None:
                self.state.rate_remaining = remaining
            if reset_in is not None:
                self.state.rate_reset = int(time.time() + reset_in)

    def set_max_per_page(self, n):
        with self.state.lock:
            self.state.max_per_page = max(1, min(100, int(n)))

    def counts(self):
        with self.state.lock:
            return self.state.counts()

    def statuses(self):
        with self.state.lock:
            return [dict(s) for s in self.state.statuses]

    def requests(self):
        with self.state.lock:
            return [dict(r) for r in self.state.requests]

    def fail(self, count, status=500, headers=None, body=None, delay=0.0, path=None):
        with self.state.lock:
            self.state.fail_path = path
            self.state.fail_count = count
            self.state.fail_status = status
            self.state.fail_headers = dict(headers or {})
            self.state.fail_body = body
            self.state.fail_delay = delay

    def reset(self):
        with self.state.lock:
            self.state.reset()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument(
        "--exit-on-eof",
        action="store_true",
        help="exit when stdin is closed (the parent went away)",
    )
    args = ap.parse_args()
    gh = FakeGitHub(args.host, args.port, args.token, args.verbose)
    gh.start()
    print("listening on %d" % gh.port, flush=True)
    try:
        if args.exit_on_eof:
            sys.stdin.read()
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    gh.stop()


if __name__ == "__main__":
    main()

"""Fixtures for the end-to-end tests: the real runboat binary, started with a
generated configuration on a free loopback port."""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("RUNBOAT_SHARED", ROOT.parent / "shared"))


def runboat_bin():
    return os.environ.get("RUNBOAT_BIN", str(ROOT / "build" / "runboat"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASE_CONFIG = """
[server]
listen = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
log_level = "info"
{server_extra}

[kubernetes]
namespace = "{namespace}"
{kube_extra}

[build]
domain = "runboat.test"
kubefiles = "{kubefiles}"

{extra}
"""


class Runboat:
    """A running runboat process and what a test needs to talk to it."""

    def __init__(self, tmp_path, server_extra="", kube_extra="", extra="", env=None,
                 namespace="runboat-e2e"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "runboat.toml"
        self.config.write_text(
            BASE_CONFIG.format(
                port=self.port,
                server_extra=server_extra,
                kube_extra=kube_extra,
                extra=extra,
                kubefiles=ROOT / "kubefiles",
                namespace=namespace,
            )
        )
        self.log_path = tmp_path / "runboat.log"
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        if not kube_extra:
            # no cluster for this test: never pick up the developer's one
            full_env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")
            full_env["HOME"] = str(tmp_path)
        full_env.update(env or {})
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        self.proc = subprocess.Popen(
            [runboat_bin(), "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(self.base + "/healthz", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("runboat did not start:\n" + self.logs())
                time.sleep(0.05)

    def url(self, path):
        return self.base + path

    def connect(self):
        return Conn(self.port)

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


@pytest.fixture
def make_runboat(tmp_path):
    started = []

    def make(**kw):
        d = tmp_path / f"rb{len(started)}"
        d.mkdir()
        rb = Runboat(d, **kw)
        started.append(rb)
        return rb

    yield make
    for rb in started:
        rc = rb.stop()
        # a sanitizer report or a crash at exit fails the test
        expected = getattr(rb, "expected_rc", 0)
        assert rc == expected, f"runboat exited {rc}:\n{rb.logs()}"


@pytest.fixture
def runboat(make_runboat):
    return make_runboat()


class Conn:
    """A raw TCP connection to runboat that reads HTTP/1.1 responses."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = b""

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()

    def response(self, timeout=10):
        """Reads one Content-Length framed response: (status, headers, body),
        or None on EOF before a status line."""
        self.sock.settimeout(timeout)
        data = self.pending
        while b"\r\n\r\n" not in data:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.pending = b""
                if data:
                    raise AssertionError(f"connection closed mid-response: {data!r}")
                return None
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed mid-body")
            rest += chunk
        self.pending = rest[n:]
        return status, headers, rest[:n]

    def closed_within(self, timeout=10):
        """True when the peer closes the connection within timeout (what it
        sends meanwhile is discarded)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

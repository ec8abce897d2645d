"""Quick tests of the fault-injecting proxy itself (a few seconds): plain TCP
against a small server of ours, and TLS passthrough to the test control
plane's kube-apiserver when RUNBOAT_TEST_CLUSTER is set.

    ~/.cache/runboat/venv/bin/python -m pytest -q -p no:cacheprovider test/faultproxy
"""

import json
import os
import pathlib
import socket
import socketserver
import ssl
import threading
import time
import urllib.request

import pytest

from faultproxy import FaultProxy


class Answer(socketserver.BaseRequestHandler):
    """Per line received: "echo X" answers "X\\n", "big N" answers N bytes
    of "x"."""

    def handle(self):
        f = self.request.makefile("rb")
        try:
            for line in f:
                cmd, _, arg = line.strip().partition(b" ")
                if cmd == b"echo":
                    self.request.sendall(arg + b"\n")
                elif cmd == b"big":
                    self.request.sendall(b"x" * int(arg))
        except (ConnectionError, OSError):
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def server():
    srv = Server(("127.0.0.1", 0), Answer)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def proxy(server):
    with FaultProxy("127.0.0.1", server.server_address[1]) as p:
        yield p


def connect(proxy, timeout=2.0):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def ask(sock, word, timeout=2.0):
    sock.settimeout(timeout)
    sock.sendall(b"echo " + word + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            raise EOFError("closed")
        got += chunk
    return got.strip()


def silent(sock, timeout=0.8):
    """True when nothing at all comes (no data, no FIN, no RST) for timeout."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(100)
    except socket.timeout:
        return True
    except ConnectionError:
        return False
    return False  # data, or EOF


def test_forwards_both_ways(proxy):
    with connect(proxy) as s:
        assert ask(s, b"hello") == b"hello"
        s.sendall(b"big 300000\n")
        n = 0
        while n < 300000:
            n += len(s.recv(65536))
        assert n == 300000
    st = proxy.stats()
    assert st["accepted"] == 1 and st["bytes_down"] >= 300006


def test_idle_drop_silent_fin_rst(proxy):
    proxy.idle_drop(0.4)
    a, busy = connect(proxy), connect(proxy)
    assert ask(a, b"1") == b"1"
    for _ in range(8):  # busy stays in use: never idle 0.4 s
        assert ask(busy, b"2") == b"2"
        time.sleep(0.1)
    # a was idle: dropped without FIN or RST; writes still succeed
    assert ask(busy, b"4") == b"4"
    a.sendall(b"echo 3\n")
    assert silent(a, 0.3), "a silently dropped connection must show nothing"
    assert proxy.stats()["dead_now"] == 1
    busy.close()
    # the dead connection, once the client closes it, is forgotten
    a.close()
    time.sleep(0.3)
    assert proxy.stats()["dead_now"] == 0
    proxy.idle_drop(0.3, "fin")
    with connect(proxy) as b:
        assert ask(b, b"5") == b"5"
        time.sleep(0.6)
        b.settimeout(1)
        assert b.recv(10) == b""  # FIN
    proxy.idle_drop(0.3, "rst")
    with connect(proxy) as c:
        assert ask(c, b"6") == b"6"
        time.sleep(0.6)
        c.settimeout(1)
        with pytest.raises(ConnectionResetError):
            c.recv(10)
    proxy.clear()
    with connect(proxy) as d:
        assert ask(d, b"7") == b"7"
        time.sleep(0.6)
        assert ask(d, b"8") == b"8"


def test_drop_all_now(proxy):
    a, b = connect(proxy), connect(proxy)
    assert ask(a, b"1") == b"1" and ask(b, b"2") == b"2"
    assert proxy.drop_all() == 2
    b.sendall(b"echo 3\n")
    assert silent(a) and silent(b)
    with connect(proxy) as c:  # new connections are fine
        assert ask(c, b"4") == b"4"
    a.close()
    b.close()


def test_blackhole_holds_then_resumes(proxy):
    a = connect(proxy)
    assert ask(a, b"1") == b"1"
    proxy.blackhole()
    a.sendall(b"echo 2\n")
    b = connect(proxy)  # accepted, held
    b.sendall(b"echo 3\n")
    assert silent(a) and silent(b)
    proxy.clear()
    a.settimeout(2)
    b.settimeout(2)
    assert a.recv(10) == b"2\n"
    assert b.recv(10) == b"3\n"
    a.close()
    b.close()


def test_blackhole_drop_kills_open_connections(proxy):
    a = connect(proxy)
    assert ask(a, b"1") == b"1"
    proxy.blackhole(drop=True)
    b = connect(proxy)
    b.sendall(b"echo 2\n")
    proxy.clear()
    a.sendall(b"echo 3\n")
    assert silent(a), "an open connection stays dead after the blackhole"
    b.settimeout(2)
    assert b.recv(10) == b"2\n", "a connection made during the blackhole flows after it"
    a.close()
    b.close()


def test_reset_mid_answer(proxy):
    proxy.reset(1000, count=1)
    with connect(proxy) as s:
        s.sendall(b"big 100000\n")
        got = 0
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
        assert got == 1000
    # count 1: the next connection is whole
    with connect(proxy) as s:
        s.sendall(b"big 100000\n")
        got = 0
        s.settimeout(2)
        while got < 100000:
            got += len(s.recv(65536))
    assert proxy.stats()["resets"] == 1


def test_delay_first_byte(proxy):
    with connect(proxy) as s:
        assert ask(s, b"0") == b"0"
        proxy.delay(0.7)
        t0 = time.monotonic()
        assert ask(s, b"1") == b"1"
        assert time.monotonic() - t0 >= 0.7
        proxy.clear()
        t0 = time.monotonic()
        assert ask(s, b"2") == b"2"
        assert time.monotonic() - t0 < 0.5


def test_refuse_closed_and_rst(proxy):
    port = proxy.port
    with connect(proxy) as old:
        assert ask(old, b"0") == b"0"
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert ask(old, b"1") == b"1", "open connections keep working"
        proxy.refuse("rst")
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            with pytest.raises(ConnectionResetError):
                s.sendall(b"echo 2\n")
                s.recv(10)
        proxy.clear()
        with connect(proxy) as s:
            assert proxy.port == port
            assert ask(s, b"3") == b"3"


def test_control_api(server):
    with FaultProxy("127.0.0.1", server.server_address[1], control_port=0) as p:
        base = f"http://127.0.0.1:{p.control_port}"

        def call(method, path, obj=None):
            data = None if obj is None else json.dumps(obj).encode()
            req = urllib.request.Request(base + path, data=data, method=method)
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)

        r = call("POST", "/faults", {"idle_drop": {"after": 0.3}, "delay": {"seconds": 0.2}})
        assert r["faults"] == {"idle_drop": {"after": 0.3, "mode": "silent"}, "delay": {"seconds": 0.2}}
        with connect(p) as s:
            assert ask(s, b"1") == b"1"
            time.sleep(0.6)
            assert silent(s)
        assert call("GET", "/stats")["idle_dropped"] == 1
        assert call("POST", "/clear") == {"ok": True}
        assert call("GET", "/stats")["faults"] == {}
        assert any("idle" in e["what"] for e in call("GET", "/events"))
        with pytest.raises(urllib.error.HTTPError) as e:
            call("POST", "/faults", {"nope": 1})
        assert e.value.code == 400


def test_tls_passthrough_to_apiserver():
    """The apiserver through the proxy: TLS untouched (its certificate
    covers 127.0.0.1), and a silent drop makes a reused connection hang."""
    d = os.environ.get("RUNBOAT_TEST_CLUSTER")
    assert d, "RUNBOAT_TEST_CLUSTER is not set: this test needs the test control plane"
    env = {}
    for line in (pathlib.Path(d) / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = v.strip("'")
    ctx = ssl.create_default_context(cafile=env["CA_CERT"])
    ctx.load_cert_chain(env["ADMIN_CERT"], env["ADMIN_KEY"])
    with FaultProxy("127.0.0.1", int(env["APISERVER_PORT"])) as p:
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")

        def get(path):
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(65536)
            return data.split(b"\r\n", 1)[0]

        assert get("/readyz") == b"HTTP/1.1 200 OK"
        p.drop_all()
        tls.settimeout(1.5)
        with pytest.raises(socket.timeout):
            get("/readyz")
        tls.close()

"""The live streams: WebSocket (/api/v1/ws) with a real client library and
raw sockets, and Server-Sent Events (/api/v1/build-events), on runboat
synced with the test control plane."""

import base64
import json
import os
import socket
import struct
import threading
import time

import pytest
import requests
from websockets.sync.client import connect as ws_connect

from lifecycle_helpers import github, make_env, push_payload, sha, wait_for  # noqa: F401


def ws_url(env, query=""):
    return f"ws://127.0.0.1:{env.rb.port}/api/v1/ws{query}"


class RawWS:
    """A hand-made WebSocket client, to send what a library would not."""

    def __init__(self, port, path="/api/v1/ws", headers=None, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(10)
        key = base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1]) if head else 0
        self.head = head.decode("latin-1")

    def send_frame(self, opcode, payload, fin=True, mask=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            m = os.urandom(4)
            payload = bytes(c ^ m[i % 4] for i, c in enumerate(payload))
            hdr += m
        self.sock.sendall(hdr + payload)

    def recv_frame(self, timeout=10):
        self.sock.settimeout(timeout)

        def need(n):
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError
                self.buf += chunk

        need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        assert not (b1 & 0x80), "the server must not mask"
        need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def close_code(self, timeout=10):
        """Reads until a close frame; returns its code."""
        while True:
            op, payload = self.recv_frame(timeout)
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def eof_within(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except socket.timeout:  # an OSError too: it must come first
            return False
        except OSError:
            return True


@pytest.fixture
def env(make_env):
    return make_env()


def test_handshake_errors(env):
    port = env.rb.port
    assert RawWS(port, headers={"Sec-WebSocket-Version": "12"}).status == 426
    assert RawWS(port, headers={"Sec-WebSocket-Key": "short"}).status == 400
    assert RawWS(port, headers={"Upgrade": None, "Connection": None}).status == 426
    assert RawWS(port, headers={"Origin": "http://evil.example"}).status == 403
    ok = RawWS(port, headers={"Origin": env.rb.base})
    assert ok.status == 101
    assert "Sec-WebSocket-Accept" in ok.head
    assert RawWS(port, path="/api/v1/ws?pr=x").status == 400


def test_snapshot_then_live_updates(env):
    env.webhook("push", push_payload("16.0", sha(1)))
    first = env.wait_build(lambda b: True, 20)
    with ws_connect(ws_url(env)) as ws:
        snap = json.loads(ws.recv(timeout=10))
        assert snap["event"] == "upd" and snap["build"]["name"] == first["name"]
        env.webhook("push", push_payload("17.0", sha(2)))
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "started" not in seen:
            ev = json.loads(ws.recv(timeout=30))
            if ev["build"]["commit_info"]["target_branch"] == "17.0":
                seen.add(ev["build"]["status"])
        assert {"initializing", "started"} <= seen
    # filters: another repo's stream sees nothing of these builds
    with ws_connect(ws_url(env, "?repo=acme/other")) as ws:
        env.post(f"/api/v1/builds/{first['name']}/stop")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2)


def test_batched_snapshot_marker_then_live(env):
    """?batch=1: the snapshot in arrays of events, then {"event": "synced"},
    then single events; bad values refused; the default stream unchanged."""
    env.webhook("push", push_payload("16.0", sha(11)))
    env.webhook("push", push_payload("17.0", sha(12)))
    env.wait_build(lambda b: b["commit_info"]["target_branch"] == "17.0", 20)
    names = [b["name"] for b in requests.get(env.rb.url("/api/v1/builds"), timeout=10).json()]
    assert len(names) == 2
    env.wait_status(names[0], "started", 60)
    assert RawWS(env.rb.port, path="/api/v1/ws?batch=yes").status == 400
    assert requests.get(env.rb.url("/api/v1/build-events?batch=2"), timeout=10).status_code == 400
    with ws_connect(ws_url(env, "?batch=1")) as ws:
        got = []
        while True:
            msg = json.loads(ws.recv(timeout=10))
            if msg == {"event": "synced"}:
                break
            assert isinstance(msg, list) and msg, msg
            got += msg
        assert [e["event"] for e in got] == ["upd", "upd"]
        assert sorted(e["build"]["name"] for e in got) == sorted(names)
        env.post(f"/api/v1/builds/{names[0]}/stop")
        ev = json.loads(ws.recv(timeout=30))
        assert isinstance(ev, dict) and ev["event"] == "upd", ev
    with ws_connect(ws_url(env)) as ws:
        msgs = [json.loads(ws.recv(timeout=10)), json.loads(ws.recv(timeout=10))]
        try:
            while True:
                msgs.append(json.loads(ws.recv(timeout=1)))
        except TimeoutError:
            pass
        # one event per message, no marker
        assert all(isinstance(m, dict) and m["event"] in ("upd", "del") for m in msgs), msgs
        assert {m["build"]["name"] for m in msgs[:2]} == set(names)
    with requests.get(env.rb.url("/api/v1/build-events"), params={"batch": "1"},
                      stream=True, timeout=30) as r:
        assert r.status_code == 200
        data = []
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                data.append(json.loads(line[6:]))
                if data[-1] == {"event": "synced"}:
                    break
        assert all(isinstance(d, list) for d in data[:-1])
        assert sorted(e["build"]["name"] for d in data[:-1] for e in d) == sorted(names)


def test_build_events_sse(env):
    env.webhook("push", push_payload("16.0", sha(3)))
    b = env.wait_build(lambda b: True, 20)
    with requests.get(env.rb.url("/api/v1/build-events"), params={"build_name": b["name"]},
                      stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines(decode_unicode=True)
        for line in lines:
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                assert ev["event"] == "upd" and ev["build"]["name"] == b["name"]
                break
        env.wait_status(b["name"], "started", 60)
        env.post(f"/api/v1/builds/{b['name']}/stop")
        for line in lines:
            if line.startswith("data: ") and json.loads(line[6:])["build"]["status"] == "stopped":
                break


def test_ping_fragments_and_close(env):
    ws = RawWS(env.rb.port)
    assert ws.status == 101
    ws.send_frame(0x9, b"hello")  # ping
    op, payload = ws.recv_frame()
    assert op == 0xA and payload == b"hello"
    # a fragmented text message is reassembled (and ignored)
    ws.send_frame(0x1, b"frag", fin=False)
    ws.send_frame(0x9, b"mid")  # control frames may interleave
    assert ws.recv_frame() == (0xA, b"mid")
    ws.send_frame(0x0, b"ment", fin=True)
    # close handshake: the server answers with the same code and closes
    ws.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
    assert ws.close_code() == 1000
    assert ws.eof_within(5)


def test_frame_level_errors_close_with_1002(env):
    """Errors wslay finds in a frame's header close with 1002 too (RFC 6455
    7.4.1), not with a close frame without a code."""
    cases = [
        (0x9, b"x" * 126, True),   # a control frame over 125 bytes
        (0x9, b"ping", False),     # a fragmented control frame
        (0x8, b"\x03", True),      # a close body of one byte
    ]
    for opcode, payload, fin in cases:
        ws = RawWS(env.rb.port)
        ws.send_frame(opcode, payload, fin=fin)
        assert ws.close_code() == 1002, (opcode, payload, fin)
    # a length not in its shortest form (126 for a 3-byte payload)
    ws = RawWS(env.rb.port)
    m = os.urandom(4)
    ws.sock.sendall(struct.pack("!BBH", 0x81, 0x80 | 126, 3) + m + bytes(c ^ m[i] for i, c in enumerate(b"abc")))
    assert ws.close_code() == 1002
    ws = RawWS(env.rb.port)
    ws.send_frame(0x1, b"bad \xff utf-8")
    assert ws.close_code() == 1007


SMALL_QUARANTINE = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:quarantine_size_mb=16"}


def test_ping_flood_without_reading_is_bounded(make_env):
    """A client floods pings and reads no pong (this took RSS from 13 to
    1,979 MiB in 20 s): the server stops reading it once its pongs wait, so
    the client's sends block, memory stays flat and the others are served."""
    env = make_env(env=SMALL_QUARANTINE)
    pid = env.rb.proc.pid
    flood = RawWS(env.rb.port, rcvbuf=4096)
    assert flood.status == 101
    time.sleep(0.3)
    rss0 = rss_kb(pid)
    m = os.urandom(4)
    ping = struct.pack("!BB", 0x89, 0x80 | 125) + m + bytes((ord("p") ^ m[i % 4]) for i in range(125))
    block = ping * 500
    flood.sock.settimeout(3)
    sent, blocked = 0, False
    t_end = time.monotonic() + 30
    try:
        while sent < 200 * 1024 * 1024 and time.monotonic() < t_end:
            flood.sock.sendall(block)
            sent += len(block)
    except socket.timeout:
        blocked = True
    assert blocked, f"{sent} bytes of pings were all read"
    assert sent < 64 * 1024 * 1024, sent  # the kernel's buffers, not the server
    rss1 = rss_kb(pid)
    assert rss1 - rss0 < 64 * 1024, (rss0, rss1)
    # the others are served
    t0 = time.monotonic()
    assert requests.get(env.rb.url("/healthz"), timeout=5).status_code == 200
    other = RawWS(env.rb.port)
    other.send_frame(0x9, b"still there?")
    while (frame := other.recv_frame(timeout=5))[0] != 0xA:
        pass  # events of the snapshot, if any
    assert frame == (0xA, b"still there?")
    assert time.monotonic() - t0 < 5
    flood.sock.close()


def test_protocol_violations_close(env):
    ws = RawWS(env.rb.port)
    ws.send_frame(0x1, b"unmasked", mask=False)
    assert ws.close_code() == 1002
    ws = RawWS(env.rb.port)
    ws.send_frame(0x1, b"x" * 10000)  # over the 4 KiB limit
    assert ws.close_code() == 1009
    ws = RawWS(env.rb.port)
    ws.send_frame(0x3, b"reserved opcode")
    assert ws.close_code() == 1002
    ws = RawWS(env.rb.port)
    ws.send_frame(0x0, b"continuation without start")
    assert ws.close_code() == 1002
    # the server is fine
    assert requests.get(env.rb.url("/healthz")).status_code == 200


def test_shutdown_closes_streams(env):
    ws = RawWS(env.rb.port)
    assert ws.status == 101
    sse = requests.get(env.rb.url("/api/v1/build-events"), stream=True, timeout=30)
    t0 = time.monotonic()
    env.rb.proc.terminate()
    assert env.rb.proc.wait(15) == 0
    assert time.monotonic() - t0 < 5
    assert ws.close_code() == 1001
    sse.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_consumer(make_env):
    """One client stops reading: its events are conflated, it is closed once
    stalled past the limit, memory stays bounded, and the others keep
    getting every update at once."""
    env = make_env(server_extra="stream_buffer_bytes = 65536\nstream_stall_timeout = 3.0",
                   limits="max_deployed = 100000")
    names = env.adopt_builds(400)
    wait_for(lambda: env.status()["deployed"] == 400, 60, "400 builds")
    stalled = RawWS(env.rb.port, rcvbuf=4096)
    assert stalled.status == 101
    rss0 = rss_kb(env.rb.proc.pid)
    with ws_connect(ws_url(env), max_size=None) as ws:
        seen = 0
        while seen < 400:  # the snapshot
            json.loads(ws.recv(timeout=30))
            seen += 1
        # updates while the stalled client's backlog grows and conflates
        t_end = time.monotonic() + 6
        i = 0
        latencies = []
        while time.monotonic() < t_end:
            name = names[i % len(names)]
            i += 1
            t0 = time.monotonic()
            r = env.kube.request(
                "PATCH", f"/apis/apps/v1/namespaces/{env.namespace}/deployments/{name}-odoo",
                # a new value each time, or there is no change to publish
                data=json.dumps({"metadata": {"annotations": {"runboat/last-scaled":
                                 f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}}}),
                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            while True:
                ev = json.loads(ws.recv(timeout=10))
                if ev["build"]["name"] == name:
                    break
            latencies.append(time.monotonic() - t0)
        assert i > 20
        assert max(latencies) < 5, latencies
    # the stalled client was closed by the server: what it can still read
    # ends (its backlog was dropped, the close handshake timed out)
    assert "read nothing for" in env.rb.logs()
    assert stalled.eof_within(20)
    # bounded: a conflated backlog is a name per build, whatever the number
    # of updates (the margin is wide for AddressSanitizer's quarantine)
    assert rss_kb(env.rb.proc.pid) - rss0 < 256 * 1024
    assert "read nothing for" in env.rb.logs()

#!/usr/bin/env python3
"""Hostile-client floods against the release runboat on the test control
plane (RUNBOAT_TEST_CLUSTER=DIR; test/bench/bench_flood.sh starts one): what
each flood costs runboat in memory, and what it costs everybody else in
/healthz latency.

Each flood runs against a fresh runboat (so that one flood's heap does not
flatter the next) for DURATION seconds (8):
  - pipeline: CONNS (100) connections each send 30,000 pipelined
    `GET /webui/app.js` (a 40 KB answer) and never read;
  - ping: CONNS WebSocket connections (/api/v1/ws) each send 125-byte pings
    as fast as they can and never read a pong;
  - idle: 1,024 sockets from 127.0.0.2 that never send a byte (the other
    clients come from 127.0.0.1);
  - webhook: 40 connections each announce a 25 MB unsigned webhook (a secret
    is configured) and send its body;
  - bodies: CONNS connections each POST a 1 MiB body (the per-request limit)
    to an API route, slowly (64 KiB every 100 ms), again and again.
Printed per flood: runboat's VmRSS before, its peak during (sampled every
100 ms) and after; the /healthz latency of another client during the flood
(a new connection per request, p50/p95/max), and what the flood achieved
(bytes sent, connections refused).

usage: bench_flood.py [--duration 8] [--conns 100] [--only NAME,...] [--max-rss 2048]
                      [--no-cleanup]
  --max-rss: a flood stops early once runboat's VmRSS goes beyond (MiB), so
  that a runboat without these bounds does not take the machine down.
"""

import argparse
import os
import resource
import selectors
import socket
import struct
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as bl  # noqa: E402


class Flood:
    """Client sockets run by threads until stop is set; counts bytes."""

    def __init__(self):
        self.stop = threading.Event()
        self.sent = 0
        self.refused = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.threads = []
        self.socks = []

    def add(self, n):
        with self.lock:
            self.sent += n

    def run(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def end(self):
        self.stop.set()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(10)


def connect(port, source="127.0.0.1", rcvbuf=None, timeout=1.0):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def send_until_stopped(flood, sock, data, repeat):
    """Sends data (repeat times, or for ever with repeat=0), never reading."""
    n = 0
    view = memoryview(data)
    while not flood.stop.is_set() and (repeat == 0 or n < repeat):
        off = 0
        while off < len(view) and not flood.stop.is_set():
            try:
                k = sock.send(view[off:off + 65536])
            except socket.timeout:
                continue  # runboat does not read us: backpressure
            except OSError:
                if not flood.stop.is_set():
                    flood.errors += 1
                return
            off += k
            flood.add(k)
        n += 1


def ws_handshake(port, rcvbuf=4096):
    s = connect(port, rcvbuf=rcvbuf, timeout=5)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s.sendall(("GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("no WebSocket handshake answer")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:200])
    s.settimeout(1.0)
    return s


# ---- the floods ----

def flood_pipeline(rb, flood, args):
    req = b"GET /webui/app.js HTTP/1.1\r\nHost: t\r\n\r\n" * 30000
    for _ in range(args.conns):
        s = connect(rb.port, rcvbuf=8192)
        flood.socks.append(s)
        flood.run(send_until_stopped, flood, s, req, 1)
    return f"{args.conns} connections x 30,000 pipelined GET /webui/app.js, never read"


def flood_ping(rb, flood, args):
    mask = b"\x01\x02\x03\x04"
    ping = struct.pack("!BB", 0x89, 0x80 | 125) + mask + bytes(ord("p") ^ mask[i % 4] for i in range(125))
    block = ping * 500
    for _ in range(args.conns):
        s = ws_handshake(rb.port)
        flood.socks.append(s)
        flood.run(send_until_stopped, flood, s, block, 0)
    return f"{args.conns} WebSocket connections flooding 125-byte pings, never read"


def flood_idle(rb, flood, args):
    for _ in range(1024):
        try:
            flood.socks.append(connect(rb.port, source="127.0.0.2", timeout=5))
        except OSError:
            flood.errors += 1

    def count_refused():
        sel = selectors.DefaultSelector()
        for s in flood.socks:
            sel.register(s, selectors.EVENT_READ)
        seen = set()
        while not flood.stop.is_set():
            for key, _ in sel.select(0.2):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 503"):
                    flood.refused += 1
                seen.add(key.fileobj)
                sel.unregister(key.fileobj)
        sel.close()

    flood.run(count_refused)
    return "1,024 sockets from 127.0.0.2 that never send a byte"


def flood_webhook(rb, flood, args):
    body = b"{" + b"x" * (25 * 1024 * 1024 - 2) + b"}"
    head = (b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))

    def one(flood):
        while not flood.stop.is_set():
            try:
                s = connect(rb.port, timeout=2)
            except OSError:
                flood.errors += 1
                continue
            try:
                s.sendall(head)
                send_until_stopped(flood, s, body, 1)
                s.recv(4096)
            except OSError:
                pass
            finally:
                s.close()

    for _ in range(40):
        flood.run(one, flood)
    return "40 connections looping on 25 MB unsigned webhooks (a secret is configured)"


def flood_bodies(rb, flood, args):
    body = b"x" * (1024 * 1024)
    head = (b"POST /api/v1/builds/trigger/branch?repo=a/b&branch=x HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))

    def one(flood):
        while not flood.stop.is_set():
            s = None
            try:
                s = connect(rb.port, timeout=2)
                s.sendall(head)
                for off in range(0, len(body), 65536):
                    if flood.stop.is_set():
                        break
                    s.sendall(body[off:off + 65536])
                    flood.add(65536)
                    time.sleep(0.1)
                s.recv(4096)
            except OSError:
                flood.errors += 1
            finally:
                if s:
                    s.close()

    for _ in range(args.conns):
        flood.run(one, flood)
    return f"{args.conns} connections looping on slow 1 MiB bodies to an API route"


FLOODS = {
    "pipeline": flood_pipeline,
    "ping": flood_ping,
    "idle": flood_idle,
    "webhook": flood_webhook,
    "bodies": flood_bodies,
}


def healthz_probe(rb, stop, lat, failures):
    """/healthz on a new connection each time, from 127.0.0.1."""
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            r = requests.get(rb.url("/healthz"), timeout=10, headers={"Connection": "close"})
            if r.status_code == 200:
                lat.append(time.monotonic() - t0)
            else:
                failures.append(r.status_code)
        except requests.RequestException as e:
            failures.append(type(e).__name__)
        time.sleep(0.05)


def rss_sampler(pid, stop, peak, limit, over):
    while not stop.is_set():
        try:
            rss, _ = bl.proc_mem_mb(pid)
        except OSError:
            return
        peak[0] = max(peak[0], rss)
        if rss > limit:
            over.set()  # a runboat without bounds: spare the machine
            return
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--only", default=",".join(FLOODS))
    ap.add_argument("--max-rss", type=float, default=2048,
                    help="MiB: a flood is cut short when runboat goes beyond")
    ap.add_argument("--no-cleanup", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kube = bl.Kube(bl.cluster())
    workdir = tempfile.mkdtemp(prefix="rbbench-flood-")
    bl.header("bench_flood")
    print(f"# {args.duration:.0f} s per flood; /healthz from another client, a new connection "
          "each, every 50 ms")
    with bl.FakeGitHub(token="test-token") as github:
        for name in args.only.split(","):
            runner = bl.Runner(kube, github, workdir, server_more="access_log = false")
            try:
                runner.start()
                rb = runner.rb
                quiet = []
                stop = threading.Event()
                t = threading.Thread(target=healthz_probe, args=(rb, stop, quiet, []))
                t.start()
                time.sleep(2)
                stop.set()
                t.join()
                rss0, _ = bl.proc_mem_mb(runner.pid)
                flood = Flood()
                what = FLOODS[name](rb, flood, args)
                stop = threading.Event()
                lat, failures, peak = [], [], [rss0]
                over = threading.Event()
                probes = [threading.Thread(target=healthz_probe, args=(rb, stop, lat, failures)),
                          threading.Thread(target=rss_sampler,
                                           args=(runner.pid, stop, peak, args.max_rss, over))]
                t_flood = time.monotonic()
                for p in probes:
                    p.start()
                over.wait(args.duration)
                elapsed = time.monotonic() - t_flood
                stop.set()
                for p in probes:
                    p.join()
                sent = flood.sent
                flood.end()
                time.sleep(1)
                rss2, _ = bl.proc_mem_mb(runner.pid)
                print(f"\n## {name}: {what}")
                print(f"  runboat VmRSS: {rss0:.0f} MiB before, {peak[0]:.0f} MiB peak, "
                      f"{rss2:.0f} MiB after")
                print(f"  /healthz quiet:   {bl.summary(quiet)}")
                print(f"  /healthz flooded: {bl.summary(lat)}"
                      + (f"; {len(failures)} failed ({sorted(set(map(str, failures)))})"
                         if failures else ""))
                if over.is_set():
                    print(f"  CUT SHORT after {elapsed:.1f} s: VmRSS over --max-rss {args.max_rss:.0f} MiB")
                print(f"  flood: {sent / 1e6:.1f} MB sent in {elapsed:.1f} s"
                      + (f", {flood.refused} connections refused" if flood.refused else "")
                      + (f", {flood.errors} socket errors" if flood.errors else ""), flush=True)
            finally:
                runner.stop()
                if not args.no_cleanup:
                    bl.delete_namespace(kube, runner.namespace)


if __name__ == "__main__":
    main()

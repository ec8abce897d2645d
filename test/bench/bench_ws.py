#!/usr/bin/env python3
"""WebSocket fan-out benchmark of the release runboat on the test control
plane (RUNBOAT_TEST_CLUSTER=DIR; test/bench/bench_ws.sh starts one).

BUILDS builds (100) are created through the Kubernetes API as stopped
builds (benchlib.create_stopped_builds); SUBS subscribers (1,000) connect to
/api/v1/ws (no filter: every event goes to every subscriber), spread over
PROCS client processes (asyncio + the `websockets` library). Then, for
DURATION seconds (30), RATE updates per second (100) are made by patching a
build's Deployment (merge patch of its runboat/last-scaled annotation, build
after build): runboat's informer sees the change, the index emits an `upd`,
the hub sends it to every subscriber.

Each update writes a distinct last-scaled time (a base + the update's
sequence number, in seconds), so a subscriber recovers which update a
message carries from the message alone. Printed:
  - end-to-end latency, from just before the PATCH is sent to the receipt of
    the event by a subscriber: p50/p95/p99/max over every (update,
    subscriber) pair, and how many pairs were never received (the hub
    conflates the events of a slow subscriber: only the latest state of a
    build is sent once it drains; those are counted, not timed);
  - the baseline: the same latency seen by one plain watch of our own on the
    Deployments (kube-apiserver + etcd's watch delay, which runboat's path
    includes); the difference estimates runboat's part (informer, index, hub,
    WebSocket, client);
  - runboat's CPU time over the update phase (utime+stime from /proc), its
    VmRSS/VmHWM, and the client processes' CPU (if they are near 100% of a
    core, the figures are the client's limit, not runboat's).

usage: bench_ws.py [--subs 1000] [--rate 100] [--duration 30] [--builds 100]
                   [--procs 2] [--filtered] [--no-cleanup]
  --filtered: subscriber i filters on repo acme/repo{i % 10} (builds are spread
  over 10 repos), so each event goes to a tenth of the subscribers.
"""

import argparse
import array
import asyncio
import json
import os
import pickle
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))


def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---- client process ----

async def client_main(args):
    """SUBS subscribers on one asyncio loop. Each is an asyncio.Protocol
    driving websockets' sans-I/O ClientProtocol (handshake, framing, control
    frames): ~8 us per message, a few times less than the websockets
    connection API, so that one client process keeps up with more."""
    from websockets.client import ClientProtocol
    from websockets.frames import Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri

    base, count = args.base, args.count
    table = {stamp(base + k).encode(): k for k in range(count)}
    key = b'"last_scaled":"'
    seqs = array.array("i")
    times = array.array("d")
    state = {"ready": 0, "closed_early": 0}
    errors = []
    loop = asyncio.get_running_loop()
    all_ready = asyncio.Event()
    stopping = False
    subs = []

    class Sub(asyncio.Protocol):
        def __init__(self, url, want):
            self.ws = ClientProtocol(parse_uri(url), max_size=1 << 22)
            self.want = want  # messages of the initial snapshot
            self.seen = 0
            self.ready = False
            self.opened = loop.create_future()
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport
            self.ws.send_request(self.ws.connect())
            self.flush()

        def flush(self):
            for d in self.ws.data_to_send():
                if d:
                    self.transport.write(d)

        def data_received(self, data):
            t = time.time()
            self.ws.receive_data(data)
            for ev in self.ws.events_received():
                if isinstance(ev, Response):
                    if ev.status_code != 101:
                        errors.append(f"handshake: {ev.status_code}")
                        self.transport.close()
                    elif not self.opened.done():
                        self.opened.set_result(True)
                    continue
                if ev.opcode != Opcode.TEXT:
                    continue
                if not self.ready:
                    self.seen += 1
                    if self.seen >= self.want:
                        self.ready = True
                        state["ready"] += 1
                        if state["ready"] == len(subs):
                            all_ready.set()
                    continue
                d = ev.data
                j = d.find(key)
                if j >= 0:
                    k = table.get(bytes(d[j + 15:j + 35]))
                    if k is not None:
                        seqs.append(k)
                        times.append(t)
            self.flush()

        def connection_lost(self, exc):
            if not stopping:
                state["closed_early"] += 1
                if exc:
                    errors.append(str(exc))
                all_ready.set()  # do not wait for it
            if not self.opened.done():
                self.opened.set_result(False)

    host, port = args.url.split("//", 1)[1].split("/", 1)[0].split(":")
    sem = asyncio.Semaphore(50)

    async def connect(i):
        url = args.url + (f"?repo=acme/repo{i % 10}" if args.filtered else "")
        want = args.snapshot[i % 10] if args.filtered else args.snapshot[0]
        sub = Sub(url, want)
        subs.append(sub)
        async with sem:
            try:
                await loop.create_connection(lambda: sub, host, int(port))
                await asyncio.wait_for(sub.opened, 60)
            except Exception as e:  # noqa: BLE001 - reported
                errors.append(f"{type(e).__name__}: {e}")
                state["closed_early"] += 1

    await asyncio.gather(*(connect(i) for i in range(args.subs)))
    try:
        await asyncio.wait_for(all_ready.wait(), 120)
    except asyncio.TimeoutError:
        pass
    print(f"ready {state['ready']} {state['closed_early']} {errors[:1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop" or EOF
    stopping = True
    for sub in subs:
        if sub.transport:
            sub.transport.abort()
    with open(args.out, "wb") as f:
        pickle.dump({"seqs": seqs.tobytes(), "times": times.tobytes(), "ready": state["ready"],
                     "closed_early": state["closed_early"], "errors": errors[:5]}, f)
    print("done", flush=True)


def run_client(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--subs", type=int)
    ap.add_argument("--base", type=int)
    ap.add_argument("--count", type=int)
    ap.add_argument("--snapshot", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--filtered", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.subs + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.subs + 1000), hard))
    asyncio.run(client_main(args))


# ---- the benchmark ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--builds", type=int, default=100)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--filtered", action="store_true")
    ap.add_argument("--no-cleanup", action="store_true")
    args = ap.parse_args()

    sys.path.insert(0, HERE)
    import benchlib as bl
    from benchlib import log

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.subs + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    kube = bl.Kube(bl.cluster())
    workdir = tempfile.mkdtemp(prefix="rbbench-ws-")
    count = int(args.rate * args.duration) + 10
    base = int(time.time()) - 10 * 86400
    log(f"runboat {bl.runboat_bin()}, cluster {bl.cluster()}, work dir {workdir}")
    bl.header("bench_ws")
    clients = []
    with bl.FakeGitHub(token="test-token") as github:
        runner = bl.Runner(kube, github, workdir,
                           limits=f"max_deployed = {2 * args.builds + 20}",
                           server_more=f"access_log = false\nmax_connections = {args.subs + 1000}")
        try:
            runner.start()
            log(f"creating {args.builds} builds in {runner.namespace}")
            names = bl.create_stopped_builds(kube, runner.config_path(), runner.namespace,
                                             args.builds, workers=16, salt="ws", repos=10)
            deadline = time.monotonic() + 120
            while runner.status().get("deployed") != args.builds:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"runboat sees {runner.status()}")
                time.sleep(0.2)
            snapshot = [sum(1 for i in range(args.builds) if i % 10 == r) for r in range(10)] \
                if args.filtered else [args.builds]

            # subscribers
            url = runner.url("/api/v1/ws").replace("http://", "ws://")
            per = [args.subs // args.procs + (1 if p < args.subs % args.procs else 0)
                   for p in range(args.procs)]
            log(f"connecting {args.subs} subscribers in {args.procs} processes")
            t_conn = time.monotonic()
            for p, n in enumerate(per):
                out = os.path.join(workdir, f"client{p}.pickle")
                cmd = [sys.executable, os.path.abspath(__file__), "--client", "--url", url,
                       "--subs", str(n), "--base", str(base), "--count", str(count),
                       "--snapshot", ",".join(map(str, snapshot)), "--out", out]
                if args.filtered:
                    cmd.append("--filtered")
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
                clients.append((proc, out))
            connected = 0
            for proc, _ in clients:
                line = proc.stdout.readline().split(" ", 3)
                if not line or line[0] != "ready":
                    raise RuntimeError(f"client: {line}")
                connected += int(line[1])
                if int(line[2]):
                    log(f"client: {line[2]} subscribers closed early: {line[3].strip()}")
            t_conn = time.monotonic() - t_conn
            log(f"{connected} subscribers connected and had their snapshot in {t_conn:.1f}s; "
                f"runboat VmRSS {bl.proc_mem_mb(runner.pid)[0]:.1f} MiB")

            # baseline: our own watch of the Deployments
            path = f"/apis/apps/v1/namespaces/{runner.namespace}/deployments"
            table = {stamp(base + k): k for k in range(count)}
            watch_seen = {}
            r = kube.request("GET", path, params={"labelSelector": "runboat/build", "limit": 1})
            rv = r.json()["metadata"]["resourceVersion"]
            wresp = kube.request("GET", path, stream=True, timeout=(10, 3600),
                                 params={"labelSelector": "runboat/build", "watch": "1",
                                         "resourceVersion": rv,
                                         "timeoutSeconds": str(int(args.duration) + 300)})

            def watch():
                try:
                    for line in wresp.iter_lines(chunk_size=None):
                        t = time.time()
                        if not line:
                            continue
                        ev = json.loads(line)
                        ann = ev["object"]["metadata"].get("annotations", {})
                        k = table.get(ann.get("runboat/last-scaled"))
                        if k is not None:
                            watch_seen.setdefault(k, t)
                except Exception:
                    pass

            wt = threading.Thread(target=watch, daemon=True)
            wt.start()
            time.sleep(1)

            # updates
            sent = {}
            rtts = []
            sess = bl.Session(kube)
            lock = threading.Lock()
            import queue
            q = queue.Queue()

            def patcher():
                while True:
                    k = q.get()
                    if k is None:
                        return
                    name = names[k % len(names)]
                    body = json.dumps({"metadata": {"annotations": {
                        "runboat/last-scaled": stamp(base + k)}}})
                    t = time.time()
                    r = sess.request("PATCH", f"{path}/{name}-odoo", data=body,
                                     headers={"Content-Type": "application/merge-patch+json"})
                    t2 = time.time()
                    if r.status_code == 200:
                        with lock:
                            sent[k] = t
                            rtts.append(t2 - t)
                    else:
                        log(f"patch {k}: {r.status_code} {r.text[:200]}")

            workers = [threading.Thread(target=patcher, daemon=True) for _ in range(64)]
            for w in workers:
                w.start()
            n_updates = int(args.rate * args.duration)
            log(f"{n_updates} updates at {args.rate:.0f}/s")
            cpu0 = bl.proc_cpu_s(runner.pid)
            ccpu0 = [bl.proc_cpu_s(p.pid) for p, _ in clients]
            rss_max = 0
            t0 = time.monotonic()
            behind = 0
            for k in range(n_updates):
                target = t0 + k / args.rate
                now = time.monotonic()
                if target > now:
                    time.sleep(target - now)
                elif now - target > 0.1:
                    behind += 1
                q.put(k)
                if k % int(args.rate) == 0:
                    rss_max = max(rss_max, bl.proc_mem_mb(runner.pid)[0])
            for _ in workers:
                q.put(None)
            for w in workers:
                w.join(30)
            t_sent = time.monotonic() - t0
            cpu1 = bl.proc_cpu_s(runner.pid)
            ccpu1 = [bl.proc_cpu_s(p.pid) for p, _ in clients]
            mem = bl.proc_mem_mb(runner.pid)
            log(f"sent in {t_sent:.1f}s; draining for 5s")
            # let the last events arrive
            time.sleep(5)
            cpu2 = bl.proc_cpu_s(runner.pid)
            mem2 = bl.proc_mem_mb(runner.pid)
            for proc, _ in clients:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            results = []
            for proc, out in clients:
                proc.stdout.readline()
                proc.wait(60)
                with open(out, "rb") as f:
                    results.append(pickle.load(f))
            try:
                wresp.raw.connection.sock.shutdown(socket.SHUT_RDWR)
            except Exception:
                pass
            logtext = runner.rb.logs()
        finally:
            for proc, _ in clients:
                if proc.poll() is None:
                    proc.kill()
            runner.stop()
            if not args.no_cleanup:
                bl.delete_namespace(kube, runner.namespace)

    # figures
    lat = []
    received = 0
    for res in results:
        seqs = array.array("i")
        seqs.frombytes(res["seqs"])
        times = array.array("d")
        times.frombytes(res["times"])
        received += len(seqs)
        for k, t in zip(seqs, times):
            s = sent.get(k)
            if s is not None:
                lat.append(t - s)
    if args.filtered:
        expected = sum(sum(1 for i in range(args.subs) if i % 10 == (k % len(names)) % 10)
                       for k in sent)
    else:
        expected = len(sent) * args.subs
    base_lat = [watch_seen[k] - sent[k] for k in sent if k in watch_seen]
    ps = (50, 95, 99)
    print(f"\n== WebSocket fan-out: {args.subs} subscribers ({'filtered by repo, 1/10 each' if args.filtered else 'no filter'}), "
          f"{args.builds} builds, {len(sent)} updates at {args.rate:.0f}/s over {t_sent:.1f} s"
          + (f" ({behind} sent >100 ms late)" if behind else ""))
    print(f"   connecting {args.subs} subscribers + their snapshot of {args.builds} builds: {t_conn:.1f} s")
    print(f"   PATCH round trip                       {bl.summary(rtts, ps=ps)}")
    print(f"   baseline: PATCH -> our own watch      {bl.summary(base_lat, ps=ps)}"
          f"  ({len(base_lat)}/{len(sent)} seen)")
    print(f"   end to end: PATCH -> subscriber        {bl.summary(lat, ps=ps)}")
    if lat and base_lat:
        print("   runboat's part (end to end minus baseline, same percentile): "
              + "  ".join(f"p{p} {(bl.pct(lat, p) - bl.pct(base_lat, p)) * 1000:.0f}" for p in ps) + " ms")
    print(f"   deliveries: {received} received of {expected} expected "
          f"({expected - received} not received: conflated by the hub or lost)")
    closed = sum(r["closed_early"] for r in results)
    if closed:
        print(f"   {closed} subscribers closed early: {[e for r in results for e in r['errors']][:3]}")
    print(f"   runboat CPU over the update phase: {cpu1 - cpu0:.2f} s in {t_sent:.1f} s "
          f"({100 * (cpu1 - cpu0) / t_sent:.0f}% of a core); +{cpu2 - cpu1:.2f} s in the 5 s after")
    print(f"   runboat memory: VmRSS max {max(rss_max, mem[0]):.1f} MiB during, {mem2[0]:.1f} MiB after; "
          f"VmHWM {mem2[1]:.1f} MiB")
    print("   client processes CPU over the update phase: "
          + ", ".join(f"{(b - a) / t_sent * 100:.0f}%" for a, b in zip(ccpu0, ccpu1))
          + " of a core each")
    warns = [ln for ln in logtext.splitlines() if " WARN " in ln.upper() or "ERROR" in ln.upper()]
    if warns:
        print(f"   {len(warns)} warning/error lines in runboat's log, e.g.: {warns[0][:200]}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        run_client(sys.argv[2:])
    else:
        main()
